"""``assay compare``: two runs side by side — config, data, prices, results, paired differences."""

from datetime import date

import pytest
from typer.testing import CliRunner

from assay import stats as ST
from assay.report.compare import build_compare, config_changes, flatten
from assay.testing.synthetic import write_run


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    a = write_run(str(root), "p", date(2026, 1, 1), seed=1, models=3, examples=300)
    # B: a stricter gate and worse models on the same examples
    b = write_run(str(root), "p", date(2026, 1, 2), seed=2, models=3, examples=300, drift=-0.2, gate_min=0.8)
    out = root / "compare.html"
    return a, b, build_compare(a, b, str(out)), out.read_text()


def test_flatten_and_config_changes():
    assert flatten({"a": {"b": 1, "c": [1, 2]}}) == {"a.b": "1", "a.c": "[1, 2]"}
    changes = config_changes({"config": {"x": {"y": 1}}}, {"config": {"x": {"y": 2, "z": 3}}})
    assert changes == [{"key": "x.y", "a": "1", "b": "2"}, {"key": "x.z", "a": "(not set)", "b": "3"}]


def test_compare_names_what_changed(pair):
    a, b, result, html = pair
    keys = {c["key"] for c in result["config_changes"]}
    assert "pipeline.gates.accuracy.min" in keys
    assert result["shared_examples"] == 300 and result["same_data"]
    assert "pipeline.gates.accuracy.min" in html and "300 examples in both runs" in html
    assert result["recommendation_a"].replace("<", "&lt;") in html and result["recommendation_b"].replace("<", "&lt;") in html


def test_compare_paired_differences_on_shared_examples(pair):
    a, b, result, html = pair
    import pandas as pd

    d = result["differences"].set_index("model")
    sa = pd.read_parquet(a.path("scores.parquet")).pivot(index="example_id", columns="model", values="value")
    sb = pd.read_parquet(b.path("scores.parquet")).pivot(index="example_id", columns="model", values="value")
    for m in ("model-00", "model-01", "model-02"):
        assert d.loc[m, "diff"] == pytest.approx((sb[m] - sa[m]).mean())
        assert d.loc[m, "lo"] <= d.loc[m, "diff"] <= d.loc[m, "hi"] and d.loc[m, "n"] == 300
        # the score stage's paired interval (comparisons.parquet's), not a bootstrap of the page's own
        pr = ST.paired(sb[m].loc[sa.index].to_numpy(float), sa[m].to_numpy(float))
        assert (d.loc[m, "lo"], d.loc[m, "hi"]) == pytest.approx((pr.ci_low, pr.ci_high), rel=1e-12)
    assert (d["verdict"] == "A better").any()  # B drifted down by 0.2
    fig = html[html.index("data-chart='paired'") :]
    assert "<svg" in fig[: fig.index("</figure>")]


def test_assay_compare_command(pair, tmp_path):
    from flows.cli.main import app

    a, b, _, _ = pair
    out = tmp_path / "c.html"
    r = CliRunner().invoke(app, ["compare", a.url, b.url, "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists() and r.output.strip().splitlines()[-1] == str(out)
    assert "setting(s) differ; same data, 300 shared examples" in r.output
    bad = CliRunner().invoke(app, ["compare", a.url, str(tmp_path)])
    assert bad.exit_code == 2
