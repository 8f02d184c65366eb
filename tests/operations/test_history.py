"""History over real run folders made by ``assay.stages.run_local`` on a tiny replay pipeline."""

import json
from datetime import date

import numpy as np
import pandas as pd
import pytest

import assay.store
from assay.history import COLUMNS, history
from assay.runs import start_run
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

CONFIG = """
artifacts: runs
models:
  good: {{provider: replay, output_column: good, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
  bad: {{provider: replay, output_column: bad}}
pipelines:
  tiny:
    dataset: {{source: data.parquet, id: id, reference: label, slices: [channel], partition: {{column: created_at}}}}
    prompt: {{template: "{{text}}"}}
    models: [good, bad]
    metrics: [accuracy, macro_f1]
    cost: {{monthly_requests: 100000}}
    bootstrap: 50
"""


def make_tiny(tmp_path, n: int = 60):
    """A dataset with logged outputs of two replay models (good ~90%, bad ~60%) over five days."""
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b"], n)
    df = pd.DataFrame(
        {
            "id": [f"t{i:03d}" for i in range(n)],
            "text": [f"ticket {i}" for i in range(n)],
            "label": labels,
            "channel": rng.choice(["email", "chat"], n),
            "created_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 5, unit="D"),
            "good": [lab if rng.random() < 0.9 else "x" for lab in labels],
            "bad": [lab if rng.random() < 0.6 else "x" for lab in labels],
            "prompt_tokens": 20,
            "completion_tokens": 1,
        }
    )
    df.to_parquet(tmp_path / "data.parquet")
    return write_config(tmp_path, CONFIG.format())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hist")
    cfg = make_tiny(tmp)
    # out of order on purpose: history sorts by as_of, then run id
    ctxs = [run_local(str(cfg), "tiny", date(2024, 1, d), cache_mode="off") for d in (5, 2, 3)]
    again = run_local(str(cfg), "tiny", date(2024, 1, 3), cache_mode="off", new=True)  # a second run of one date
    start_run(str(cfg), "tiny", date(2024, 1, 4), new=True)  # never finished: not in history
    ctxs[0].update_manifest(gates={"passed": False, "checks": []})
    ctxs[1].update_manifest(gates={"passed": True, "checks": []})
    return cfg, str(tmp / "runs"), ctxs + [again]


def test_history_rows_order_and_values(runs):
    cfg, root, ctxs = runs
    h = history(root, "tiny")
    assert list(h.columns) == COLUMNS
    # 4 complete runs x 2 models x 2 metrics, overall slice only
    assert len(h) == 16 and set(h["slice"]) == {"all"}
    keys = list(dict.fromkeys(zip(h["as_of"], h["run_id"])))
    assert [k[0] for k in keys] == ["2024-01-02", "2024-01-03", "2024-01-03", "2024-01-05"]
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)  # newest last
    assert keys[1][1] == ctxs[2].run_id and keys[2][1] == ctxs[3].run_id
    assert "2024-01-04" not in set(h["as_of"])  # the unfinished run
    for ctx in ctxs:
        rf = ctx.folder
        m = rf.read_table(assay.store.METRICS).to_pandas()
        m = m[m["slice"] == "all"]
        c = rf.read_table(assay.store.COSTS).to_pandas().set_index("model")
        got = h[h["run_id"] == ctx.run_id]
        for r in got.itertuples():
            src = m[(m["model"] == r.model) & (m["metric"] == r.metric)].iloc[0]
            assert r.value == pytest.approx(src["value"]) and r.n == src["n"]
            assert r.ci_low == pytest.approx(src["ci_low"]) and r.ci_high == pytest.approx(src["ci_high"])
            assert r.cost_per_1k_usd == pytest.approx(c.loc[r.model, "cost_per_1k_usd"], nan_ok=True)
            assert r.monthly_cost_usd == pytest.approx(c.loc[r.model, "monthly_cost_usd"], nan_ok=True)
    # the partition filter makes later dates see more examples
    good = h[(h["model"] == "good") & (h["metric"] == "accuracy")]
    assert list(good["n"]) == [24, 36, 36, 60]
    priced = h[h["model"] == "good"]["cost_per_1k_usd"]
    assert (priced > 0).all()
    assert set(h[h["run_id"] == ctxs[0].run_id]["gates"]) == {"failed"}
    assert set(h[h["run_id"] == ctxs[1].run_id]["gates"]) == {"passed"}
    assert set(h[h["run_id"] == ctxs[2].run_id]["gates"]) == {""}


def test_history_filters_metric_and_slice(runs):
    _, root, _ = runs
    h = history(root, "tiny", metric="accuracy")
    assert set(h["metric"]) == {"accuracy"} and len(h) == 8
    s = history(root, "tiny", metric="accuracy", slice="channel=chat")
    assert set(s["slice"]) == {"channel=chat"} and len(s) == 8
    assert (s["n"].to_numpy() < h["n"].to_numpy()).all()
    assert history(root, "tiny", metric="nope").empty
    assert history(root, "other").empty and list(history(root, "other").columns) == COLUMNS


def test_history_command_formats(runs):
    from typer.testing import CliRunner

    from flows.cli.main import app

    cfg, root, ctxs = runs
    r = CliRunner().invoke(app, ["history", "tiny", "--config", str(cfg), "--format", "json", "--metric", "accuracy"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) == 8 and rows[-1]["as_of"] == "2024-01-05" and rows[0]["as_of"] == "2024-01-02"
    r = CliRunner().invoke(app, ["history", "tiny", "--config", str(cfg), "--format", "csv"])
    assert r.exit_code == 0 and r.stdout.splitlines()[0].startswith("as_of,run_id,model,metric")
    assert len(r.stdout.splitlines()) == 17
    r = CliRunner().invoke(app, ["history", "tiny", "--config", str(cfg)])
    assert r.exit_code == 0 and "2024-01-05" in r.stdout
    r = CliRunner().invoke(app, ["history", "tiny", "--config", str(cfg), "--format", "xml"])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["history", "nope", "--config", str(cfg)])
    assert r.exit_code == 2


def test_history_reads_a_store_with_an_older_schema(tmp_path):
    """A run written before a column existed still reads (the missing column is null)."""
    store = Store(tmp_path)
    for d, extra in (("2024-01-01", False), ("2024-01-02", True)):
        rf = store.run("p", date.fromisoformat(d), f"{d}-r")
        m = pd.DataFrame({"model": ["m"], "metric": ["accuracy"], "slice": ["all"], "value": [0.5], "n": [10]})
        if extra:
            m["ci_low"], m["ci_high"] = [0.4], [0.6]
        rf.write_table(assay.store.METRICS, m)
        rf.write_json(assay.store.MANIFEST, {"status": "complete"})
    h = history(str(tmp_path), "p")
    assert list(h["as_of"]) == ["2024-01-01", "2024-01-02"]
    assert pd.isna(h["ci_low"].iloc[0]) and h["ci_low"].iloc[1] == pytest.approx(0.4)
    assert h["cost_per_1k_usd"].isna().all()
