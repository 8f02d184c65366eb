"""The report stage (assay.report): summary.md and report.html from a real run, the one
recommendation sentence, the charts and the ``assay report`` command."""

import json
import re
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import assay.store
from assay.config import PipelineConfig, load_config
from assay.report import build_report
from assay.report import format as fmt
from assay.report.decision import headline_rows, recommend
from assay.report.summary import paired_differences
from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 1)
LABELS = ["billing", "technical", "account", "billing"]

CONFIG = """
artifacts: runs
models:
  good:
    provider: replay
    source: good.parquet
    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}
  "weak<i>":
    provider: replay
    source: weak.parquet
    price: {input_per_mtok: 0.5, output_per_mtok: 1.0}
pipelines:
  p:
    dataset: {source: data.parquet, id: id, reference: label, slices: [lang], held_out: {lang: [en]}}
    models: [good, "weak<i>"]
    metrics: [accuracy]
    cost: {monthly_requests: 1000000}
    gates: {accuracy: {min: 0.8}}
    bootstrap: 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"], "label": LABELS, "lang": ["de", "de", "en", "en"]}),
        d / "data.parquet",
    )
    # good: all right, 100 prompt + 10 completion tokens each -> (100 * 1 + 10 * 2) / 1e6 = $0.00012 a request
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3, 4],
                "output": LABELS,
                "prompt_tokens": [100] * 4,
                "completion_tokens": [10] * 4,
                "latency_s": [0.2] * 4,
            }
        ),
        d / "good.parquet",
    )
    # weak: wrong on id 4 (lang en), (100 * 0.5 + 10 * 1) / 1e6 = $0.00006 a request
    pq.write_table(
        pa.table(
            {
                "id": [1, 2, 3, 4],
                "output": LABELS[:3] + ["refund"],
                "prompt_tokens": [100] * 4,
                "completion_tokens": [10] * 4,
                "latency_s": [0.1] * 4,
            }
        ),
        d / "weak.parquet",
    )
    write_config(d, CONFIG)
    ctx = run_local(str(d / "pipelines.yaml"), "p", DAY)
    root = Path(ctx.folder.url)
    return {
        "ctx": ctx,
        "summary": (root / assay.store.SUMMARY).read_text(),
        "html": (root / assay.store.REPORT).read_text(),
        "dir": d,
        "root": root,
    }


def _weak_ci(run) -> str:
    m = pd.read_parquet(run["root"] / assay.store.METRICS)
    w = m[(m.model == "weak<i>") & (m.slice == "all")].iloc[0]
    return f"[{w.ci_low:.3f}, {w.ci_high:.3f}]"


def test_summary_leads_with_the_recommendation_and_the_headline_table(run):
    md = run["summary"]
    lines = md.splitlines()
    assert lines[0] == "# p — 2026-11-01"
    assert f"Run `{run['ctx'].run_id}`, 4 examples." in md
    rec = next(line for line in lines if line.startswith("**Recommendation:**"))
    header = lines.index("| model | accuracy (95% CI) | $/1k req | $/month at 1,000,000 | p95 latency | errors | deploy |")
    assert lines.index(rec) < header and lines[header - 2] == "## Models"
    good, weak = lines[header + 2], lines[header + 3]
    # cost per 1k: 1000 * $0.00012 = $0.12; monthly: 1e6 * $0.00012 = $120; latency 0.2 s everywhere
    assert good == "| good | 1.000 [1.000, 1.000] | $0.1200 | $120 | 200 ms | 0 | ✓ |", good
    # 3 of 4 right; $0.06 per 1k, $60 a month; not recommended
    assert weak == f"| weak<i> | 0.750 {_weak_ci(run)} | $0.0600 | $60.00 | 100 ms | 0 |  |", weak
    assert "Monthly figures at 1,000,000 requests per month." in md
    assert "nan" not in md.lower()


def test_the_recommendation_sentence(run):
    # only good passes accuracy >= 0.8; weak is cheaper but fails, so it is the runner-up that fails
    expected = (
        "Deploy good: the only option that passes every gate (accuracy ≥ 0.8), at $120 a month for 1,000,000 "
        "requests, with accuracy 1.000 [1.000, 1.000]. Runner-up: weak<i>, at $60.00 a month, with accuracy "
        f"0.750 {_weak_ci(run)}, but it fails accuracy 0.750 < 0.8."
    )
    assert f"**Recommendation:** {expected}" in run["summary"]
    assert f"id='recommendation'>{expected.replace('<', '&lt;').replace('>', '&gt;')}</p>" in run["html"]


def test_summary_decisions(run):
    md = run["summary"]
    assert "- Cheapest option that passes every quality bar: **good**" in md
    # on the monthly cost at the configured volume (the floors count there)
    assert "- Quality/cost Pareto front (accuracy vs monthly cost at 1,000,000 requests): good, weak<i>" in md
    assert "## Generalization" in md and "## Paired comparisons" in md
    # the held-out gap: in distribution (de: both right) minus held out (en: weak 1 of 2)
    assert "| weak<i> | accuracy | 0.750 | lang=en | 0.500 | 0.500 | 0.500 |" in md


def test_report_html_is_self_contained(run):
    html = run["html"]
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</body></html>")
    # nothing fetched from elsewhere: no remote (or protocol-relative) src/href, no scripts, links or imports
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.I) == []
    assert not re.search(r"<script|<link|<iframe|@import|@font-face|url\((?!#)", html, flags=re.I)
    assert "default-src 'none'" in html and "<style>" in html


def test_report_sections_come_in_the_decision_order(run):
    html = run["html"]
    order = [
        "id='recommendation'",
        "id='headline'",
        "id='quality-cost'",
        "id='volume'",
        "id='slices'",
        "id='paired'",
        "id='latency'",
        "id='history'",
        "<footer>",
    ]
    at = [html.index(s) for s in order]
    assert at == sorted(at), dict(zip(order, at))
    # every chart is an inline SVG drawn by Vega (its marks carry Vega's role classes)
    for key in ("quality-cost", "volume", "slices", "paired", "latency", "history"):
        fig = html[html.index(f"data-chart='{key}'") :]
        fig = fig[: fig.index("</figure>")]
        assert "<svg" in fig and "role-mark" in fig, key
    # the recommended row is marked
    assert re.search(r"<tr class='recommended'><td class='t'>good <span class='mark'>✓ recommended</span>", html)


def test_report_marks_the_worst_slice_and_the_held_out_gap(run):
    html = run["html"]
    fig = html[html.index("data-chart='slices'") :]
    fig = fig[: fig.index("</figure>")]
    assert "weak&lt;i&gt; (held-out gap +0.500)" in fig
    assert "worst lang=en (0.500, gap 0.500), held-out gap +0.500" in fig


def test_report_shows_no_nan_and_collapses_long_tables(run):
    html = run["html"]
    text = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    assert not re.search(r"\bnan\b", text, flags=re.I)
    assert "<details><summary>All metrics and slices" in html  # not open
    assert "<details open><summary>Costs (2 rows)" in html  # short ones are


def test_report_footer_records_what_reproduces_the_run(run):
    html = run["html"]
    footer = html[html.index("<footer>") :]
    m = run["ctx"].folder.manifest()
    assert m["config_hash"] in footer and m["dataset"]["fingerprint"] in footer
    assert f"pandas {m['versions']['pandas']}" in footer
    assert f"good: config, $1.00 in / $2.00 out per M tokens, prices in force {DAY.isoformat()}" in footer


def test_report_escapes_model_names(run):
    text = re.sub(r"<svg.*?</svg>", "", run["html"], flags=re.S)
    assert "weak<i>" not in text and "weak&lt;i&gt;" in text


def test_build_report_returns_rows_and_is_recorded(run):
    ctx = run["ctx"]
    m = ctx.folder.manifest()
    assert m["status"] == "complete"
    assert set(m["stages"]["report"]["artifacts"]) == {assay.store.SUMMARY, assay.store.REPORT}
    assert set(m["stages"]["report"]["timings"]) >= {"quality-cost", "history", "total"}
    out = build_report(ctx.folder, load_config(run["dir"] / "pipelines.yaml").pipeline("p"), "p")
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["good"]["accuracy"] == 1.0 and rows["weak<i>"]["accuracy"] == 0.75
    assert rows["good"]["cost_per_1k_usd"] == pytest.approx(0.12)
    assert rows["weak<i>"]["monthly_cost_usd"] == pytest.approx(60.0)
    assert out["decisions"]["cheapest_passing"] == "good"
    assert out["report"] == ctx.folder.path(assay.store.REPORT)
    assert [r["recommended"] for r in out["headline"]] == ["✓", ""]
    # building again from the same artifacts writes the same summary
    assert out["markdown"] == run["summary"]


def test_the_terminal_prints_the_same_sentence(run, capsys):
    from flows.cli.run import print_result

    print_result(run["ctx"].folder.url, "p")
    out = capsys.readouterr().out
    sentence = run["summary"].split("**Recommendation:** ", 1)[1].split("\n", 1)[0]
    assert sentence in out.replace("\n", " ") or sentence in out
    assert "good ✓" in out and "$/month at 1,000,000" in out and "Cheapest option that passes every quality bar: good" in out


def test_assay_report_writes_the_report_again(run):
    from flows.cli.main import app

    root = run["root"]
    (root / assay.store.REPORT).unlink()
    (root / assay.store.SUMMARY).unlink()
    r = CliRunner().invoke(app, ["report", str(root)])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == str(root / assay.store.REPORT)
    assert (root / assay.store.SUMMARY).read_text() == run["summary"]
    assert "id='history'" in (root / assay.store.REPORT).read_text()
    bad = CliRunner().invoke(app, ["report", str(run["dir"])])
    assert bad.exit_code == 2 and "not a run folder" in bad.output


# --------------------------------------------------------------------------------------- the sentence alone
def _cfg(gates=None, monthly=1000):
    return PipelineConfig.model_validate(
        {
            "dataset": {"source": "x.parquet", "reference": "label"},
            "models": ["a"],
            "metrics": ["accuracy"],
            "cost": {"monthly_requests": monthly},
            "gates": gates or {},
        }
    )


def _table(rows):
    return pd.DataFrame(
        [
            {
                "model": m,
                "accuracy": v,
                "accuracy_ci_low": v - 0.01,
                "accuracy_ci_high": v + 0.01,
                "cost_per_1k_usd": c,
                "monthly_cost_usd": c,
                "latency_p95_s": 0.5,
                "errors": 0,
            }
            for m, v, c in rows
        ]
    )


def test_recommend_the_cheapest_passing_with_the_next_as_runner_up():
    t = _table([("big", 0.95, 9.0), ("small", 0.90, 1.0), ("tiny", 0.70, 0.1), ("mid", 0.91, 3.0)])
    rec = recommend(t, _cfg({"accuracy": {"min": 0.85}}))
    assert rec.model == "small" and rec.runner_up == "mid" and rec.passing == ["big", "small", "mid"]
    assert rec.sentence.startswith(
        "Deploy small: the cheapest option that passes every gate (accuracy ≥ 0.85), at $1.00 a month "
        "for 1,000 requests, with accuracy 0.900 [0.890, 0.910]. Runner-up: mid, at $3.00 a month"
    )
    assert [r["recommended"] for r in headline_rows(t, _cfg(), rec)] == [False, True, False, False]


def test_recommend_says_why_none_passes():
    t = _table([("a", 0.80, 1.0), ("b", 0.84, 2.0)])
    rec = recommend(t, _cfg({"accuracy": {"min": 0.85}}))
    assert rec.model is None and rec.runner_up == "a"
    assert rec.sentence.startswith(
        "No option passes every gate (accuracy ≥ 0.85): b fails accuracy 0.840 < 0.85; a fails accuracy 0.800 < 0.85. Closest: b"
    )


def test_recommend_without_gates_recommends_nothing():
    rec = recommend(_table([("a", 0.80, 1.0), ("b", 0.90, 2.0)]), _cfg())
    assert rec.model is None
    assert rec.sentence.startswith("No gates are configured, so no option is recommended: the best accuracy is b")
    assert "the cheapest is a" in rec.sentence


# --------------------------------------------------------------------------------------- paired differences
def test_the_reports_paired_interval_is_comparisons_parquets_on_a_clustered_dataset(tmp_path):
    """The report, summary.md and paired_differences read the paired difference, its interval and
    its p-value from comparisons.parquet, where the score stage computed them by cluster; the
    report used to recompute an unclustered bootstrap of its own, narrower on clustered data."""
    rng = np.random.default_rng(5)
    n, k = 240, 12  # 12 conversations of 20 turns: model A is right on whole conversations or wrong on them
    conv = [f"c{i // (n // k)}" for i in range(n)]
    a_right = {c: rng.random() < 0.6 for c in set(conv)}
    ids = list(range(n))
    labels = ["yes"] * n
    a_out = ["yes" if a_right[c] else "no" for c in conv]
    b_out = ["yes" if rng.random() < 0.5 else "no" for _ in ids]
    pq.write_table(pa.table({"id": ids, "text": ["t"] * n, "label": labels, "conv": conv}), tmp_path / "data.parquet")
    for name, out in (("a", a_out), ("b", b_out)):
        pq.write_table(pa.table({"id": ids, "output": out}), tmp_path / f"{name}.parquet")
    write_config(
        tmp_path,
        """
        artifacts: runs
        models:
          A: {provider: replay, source: a.parquet, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
          B: {provider: replay, source: b.parquet, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
        pipelines:
          p:
            dataset: {source: data.parquet, id: id, reference: label, cluster: conv}
            models: [A, B]
            metrics: [accuracy]
            bootstrap: 500
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "p", DAY)
    root = Path(ctx.folder.url)
    comp = pd.read_parquet(root / assay.store.COMPARISONS)
    c = comp[comp.metric == "accuracy"].iloc[0]
    assert (c.model_a, c.model_b) == ("A", "B") and c.n_clusters == k
    # clustered: wider than the interval of the 240 examples taken as independent
    d = np.array([x == "yes" for x in a_out], float) - np.array([x == "yes" for x in b_out], float)
    assert c.ci_high - c.ci_low > 1.5 * 2 * 1.96 * d.std(ddof=1) / np.sqrt(n)
    pairs = paired_differences(comp, "accuracy", ["A", "B"])
    assert pairs.iloc[0][["diff", "lo", "hi", "p_value"]].tolist() == [c["diff"], c.ci_low, c.ci_high, c.p_value]
    turned = paired_differences(comp, "accuracy", ["B", "A"]).iloc[0]
    assert (turned["diff"], turned["lo"], turned["hi"]) == (-c["diff"], -c.ci_high, -c.ci_low)
    html = (root / assay.store.REPORT).read_text()
    tables = html[html.index("The numbers behind the charts") :]
    at = tables.index("<td class='t'>A − B</td>") if "<td class='t'>A − B</td>" in tables else tables.index(">A − B<")
    row = tables[at : tables.index("</tr>", at)]
    assert fmt.interval(c.ci_low, c.ci_high) in row, row[:500]
    # the chart draws the same interval
    assert f"interval: {c.ci_low:.12g}".replace("-", "−") in html and f"hi: {c.ci_high:.12g}" in html
    assert fmt.interval(c.ci_low, c.ci_high) in (root / assay.store.SUMMARY).read_text()


def test_numbers_for_people():
    assert [fmt.volume(x) for x in (2e6, 60706861, 2.1, 2000, 15000, float("inf"))] == [
        "2M",
        "60.7M",
        "2",
        "2,000",
        "15k",
        "never",
    ]
    assert [fmt.seconds(x) for x in (1.5, 0.773, 0.00011)] == ["1.50 s", "773 ms", "110 µs"]
    assert fmt.with_interval(0.85, float("nan"), None) == "0.850" and fmt.signed(-0.05) == "−0.050"
    assert fmt.missing(pd.NA) and fmt.missing(np.float32("nan")) and not fmt.missing(0)


def test_a_fresh_report_shows_the_gate_verdict(run, tmp_path):
    """The gate runs before the report, so a run's own report (not only a rebuilt one) says
    which gates broke; the run is complete and the gate's failure still propagates."""
    import shutil

    from assay.runs import GateFailed, start_run
    from assay.stages import run_stages

    for f in ("data.parquet", "good.parquet", "weak.parquet", "pipelines.yaml"):
        shutil.copy(run["dir"] / f, tmp_path / f)
    ctx = start_run(str(tmp_path / "pipelines.yaml"), "p", DAY)
    with pytest.raises(GateFailed):
        run_stages(ctx)
    root = Path(ctx.folder.url)
    page = (root / assay.store.REPORT).read_text()
    assert "<strong>Gates:</strong> FAILED, 1 of 2 checks: accuracy[weak&lt;i&gt;] 0.75 &lt; min 0.8" in page
    assert "**Gates:** FAILED, 1 of 2 checks" in (root / assay.store.SUMMARY).read_text()
    assert json.loads((root / "manifest.json").read_text())["status"] == "complete"
    assert "Gates:" not in run["html"]  # a run whose gates were not checked says nothing of them


def test_the_latency_chart_reads_the_cost_stages_percentiles(run):
    """Every latency percentile of a run is computed once, in the cost stage; the report's chart reads them."""
    from assay.report.summary import RunTables
    from assay.store import Store

    (rf,) = Store(str(run["dir"] / "runs")).runs("p")
    costs = pd.read_parquet(rf.path(assay.store.COSTS)).set_index("model")
    lat = RunTables.read(rf).latencies().set_index("model")
    assert list(lat.index) == ["good", "weak<i>"]
    for q in ("p05", "p25", "p50", "p75", "p95", "p99"):
        assert (lat[q] == costs.loc[lat.index, f"latency_{q}_s"]).all(), q
