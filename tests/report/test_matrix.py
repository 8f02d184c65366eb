"""The model × pipeline matrix over real runs (``run_local``): latest complete run, headline
metric, cost per 1,000 requests; pipelines without a complete run; the CLI's three formats."""

import json
import math
from datetime import date
from io import StringIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from assay.config import load_config
from assay.matrix import COLUMNS, cell, format_cost, latest_complete_run, matrix, pivot
from assay.runs import fail, start_run
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

DAY1, DAY2 = date(2026, 11, 1), date(2026, 11, 2)
LABELS = ["billing", "technical", "account", "refund"]

CONFIG = """
artifacts: runs
models:
  good: {provider: replay, output_column: good, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
  half: {provider: replay, output_column: half, price: {input_per_mtok: 10.0, output_per_mtok: 20.0}}
  free: {provider: replay, output_column: good}
pipelines:
  triage:
    dataset: {source: data.parquet, id: id, reference: label}
    prompt: {template: "{text}"}
    models: [good, half]
    metrics: [accuracy, macro_f1]
    bootstrap: 20
  routing:
    dataset: {source: data.parquet, id: id, reference: label}
    prompt: {template: "{text}"}
    models: [half, free]
    metrics: [exact_match, accuracy]
    bootstrap: 20
  never-run:
    dataset: {source: data.parquet, id: id, reference: label}
    models: [good]
    metrics: [accuracy]
"""


def cost_per_1k(pt, ct, pin, pout):
    return (pt * pin + ct * pout) / 1e6 * 1000  # every request has the same tokens here


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    d = tmp_path_factory.mktemp("matrix")
    rows = []
    for i in range(8):
        label = LABELS[i % 4]
        rows.append(
            {
                "id": f"e{i}",
                "text": f"ticket {i}",
                "label": label,
                "good": label,
                "half": label if i % 2 == 0 else "other",
                "prompt_tokens": 100,
                "completion_tokens": 10,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), d / "data.parquet")
    write_config(d, CONFIG)
    cfg = str(d / "pipelines.yaml")
    run_local(cfg, "triage", DAY1)  # older: both models
    latest = run_local(cfg, "triage", DAY2, models=["half"])  # the latest complete run: one model
    routing = run_local(cfg, "routing", DAY1)
    # a later run that failed does not count
    ctx = start_run(cfg, "routing", DAY2, models=["free"])
    fail(ctx, "invoke", "boom")
    return {"dir": d, "cfg": cfg, "triage": latest, "routing": routing}


def test_long_table(project):
    loaded = load_config(project["cfg"])
    df = matrix(loaded)
    assert list(df.columns) == COLUMNS
    assert df["pipeline"].tolist() == ["triage", "routing", "routing", "never-run"]
    rows = {(r.pipeline, r.model): r for r in df.itertuples()}

    t = rows[("triage", "half")]  # the latest complete run of triage ran only "half"
    assert t.metric == "accuracy" and t.value == pytest.approx(0.5)
    assert t.run_id == project["triage"].run_id and t.as_of == "2026-11-02" and t.status == "ok"
    assert t.ci_low <= t.value <= t.ci_high
    assert t.cost_per_1k_usd == pytest.approx(cost_per_1k(100, 10, 10.0, 20.0))  # 1.2 USD per 1k

    r_half, r_free = rows[("routing", "half")], rows[("routing", "free")]
    assert r_half.metric == r_free.metric == "exact_match"  # routing's first metric
    assert r_half.value == pytest.approx(0.5) and r_free.value == pytest.approx(1.0)
    assert r_free.as_of == "2026-11-01" and r_free.run_id == project["routing"].run_id  # the failed later run is skipped
    assert math.isnan(r_free.cost_per_1k_usd)  # no price for "free"

    n = rows[("never-run", None)]
    assert n.status == "no complete run" and math.isnan(n.value) and n.run_id is None


def test_metric_option_and_missing_metric(project):
    loaded = load_config(project["cfg"])
    df = matrix(loaded, metric="macro_f1")
    triage = df[df.pipeline == "triage"].iloc[0]
    assert triage.metric == "macro_f1" and triage.status == "ok"
    routing = df[df.pipeline == "routing"]
    assert len(routing) == 1 and routing.iloc[0].model is None
    assert routing.iloc[0].status.startswith("metric 'macro_f1' not in the latest complete run (it has: exact_match, accuracy")
    assert routing.iloc[0].run_id == project["routing"].run_id


def test_latest_complete_run_and_artifacts_override(project, tmp_path):
    store = Store(project["dir"] / "runs")
    assert latest_complete_run(store, "triage").run_id == project["triage"].run_id
    assert latest_complete_run(store, "never-run") is None
    # another artifact root has no runs at all
    df = matrix(load_config(project["cfg"]), artifacts=str(tmp_path / "elsewhere"))
    assert (df["status"] == "no complete run").all() and len(df) == 3


def test_pivot_and_cells(project):
    df = matrix(load_config(project["cfg"]))
    grid = pivot(df)
    assert list(grid.columns) == ["triage", "routing", "never-run"]
    assert list(grid.index) == ["half", "free"]
    assert grid.loc["half", "triage"] == "0.500 · $1.20/1k"
    assert grid.loc["half", "routing"] == "0.500 · $1.20/1k"
    assert grid.loc["free", "routing"] == "1.000 · $?/1k"
    assert grid.loc["free", "triage"] == "" and grid.loc["half", "never-run"] == ""
    assert cell(0.8734, 0.01412) == "0.873 · $0.014/1k"
    assert [format_cost(c) for c in (0.0, 0.00012, 2.5, 1234.0)] == ["$0/1k", "$0.00012/1k", "$2.50/1k", "$1,234/1k"]


def _cli(*args):
    from flows.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_cli_formats(project):
    cfg = project["cfg"]
    res = _cli("matrix", "--config", cfg)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "0.500 · $1.20/1k" in out and "1.000 · $?/1k" in out
    assert "never-run: no complete run" in out
    assert "exact_match" in out and "accuracy" in out

    res = _cli("matrix", "--config", cfg, "--format", "csv")
    assert res.exit_code == 0, res.output
    csv = pd.read_csv(StringIO(res.output))
    assert list(csv.columns) == COLUMNS and len(csv) == 4

    res = _cli("matrix", "--config", cfg, "--format", "json", "--metric", "accuracy")
    assert res.exit_code == 0, res.output
    records = json.loads(res.output)
    assert {(r["pipeline"], r["model"]) for r in records} == {
        ("triage", "half"),
        ("routing", "half"),
        ("routing", "free"),
        ("never-run", None),
    }
    assert all(r["metric"] == "accuracy" for r in records)

    assert _cli("matrix", "--config", cfg, "--format", "xml").exit_code == 2
    assert _cli("matrix", "--config", str(project["dir"] / "missing.yaml")).exit_code == 2
