"""Cost reconciliation: a replayed log's provider-reported cost beside Assay's computed cost
(logged tokens × each request date's price) in costs.parquet, and the report's line above 2 %."""

import math
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.costing.reconcile import compare, lines, with_reconciliation
from assay.stages import run_local
from tests.conftest import write_config

PRICE_IN, PRICE_OUT = 0.15, 0.60  # USD per million tokens


def test_compare_leaves_out_requests_missing_either_figure():
    got = compare([1.0, None, 2.0, float("nan")], [1.1, 5.0, 2.2, 1.0])
    assert got["reported_cost_usd"] == pytest.approx(3.0) and got["computed_cost_usd"] == pytest.approx(3.3)
    assert got["cost_difference_usd"] == pytest.approx(0.3) and got["cost_difference_share"] == pytest.approx(0.1)
    assert got["reconciled_requests"] == 2 and got["reported_cost_source"] == "provider"
    assert got["computed_cost_source"] == "computed"
    assert compare([None, None], [1.0, 2.0]) is None


def test_lines_only_above_the_threshold():
    import pandas as pd

    table = pd.DataFrame({"model": ["inc", "close", "plain"]})
    out = with_reconciliation(table, {"inc": compare([1.0], [1.05]), "close": compare([1.0], [1.01])})
    assert math.isnan(out.set_index("model").loc["plain", "reported_cost_usd"])
    got = lines(out)
    assert len(got) == 1 and got[0].startswith("inc: Assay computes $1.05 for 1 requests") and "+5.0%" in got[0]
    assert with_reconciliation(table, {}) is table


def write(tmp_path, bill_factor: float, with_costs: bool = True):
    times = [datetime(2026, 11, 4, 9, tzinfo=UTC), datetime(2026, 11, 5, 9, tzinfo=UTC), datetime(2026, 11, 5, 18, tzinfo=UTC)]
    pt, ct = [1000, 2000, 4000], [100, 300, 500]
    computed = [(p * PRICE_IN + c * PRICE_OUT) / 1e6 for p, c in zip(pt, ct)]
    cols = {
        "example_id": ["a", "b", "c"],
        "request_time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "prompt": ["hi", "hello", "hey"],
        "output": ["x", "y", "z"],
        "prompt_tokens": pt,
        "completion_tokens": ct,
    }
    if with_costs:
        cols["provider_cost_usd"] = [v * bill_factor for v in computed[:2]] + [None]  # one request without a bill
    pq.write_table(pa.table(cols), tmp_path / "log.parquet")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          incumbent: {{provider: replay, output_column: output,
                      price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}}}
        pipelines:
          p:
            dataset: {{source: log.parquet, id: example_id}}
            models: [incumbent]
            metrics: [output_length]
            bootstrap: 0
    """,
    )
    return str(tmp_path / "pipelines.yaml"), computed


def test_the_bill_beside_the_computed_cost(tmp_path):
    cfg, computed = write(tmp_path, bill_factor=1 / 1.05)  # the provider billed ~4.8 % less than the tokens say
    ctx = run_local(cfg, "p", date(2026, 11, 6))
    costs = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model")
    row = costs.loc["incumbent"]
    # only the two requests with a reported cost are compared, on both sides
    assert row.reconciled_requests == 2
    assert row.computed_cost_usd == pytest.approx(sum(computed[:2]))
    assert row.reported_cost_usd == pytest.approx(sum(computed[:2]) / 1.05)
    assert row.cost_difference_usd == pytest.approx(row.computed_cost_usd - row.reported_cost_usd)
    assert row.cost_difference_share == pytest.approx(0.05)
    assert (row.reported_cost_source, row.computed_cost_source) == ("provider", "computed")
    assert row.cost_usd == pytest.approx(sum(computed))  # the run's cost line itself is Assay's, over every request
    summary = open(ctx.folder.path("summary.md")).read()
    assert "## Cost checks" in summary and "Provider-reported cost differs: incumbent: Assay computes" in summary
    assert "+5.0%" in summary
    assert "Provider-reported cost differs" in open(ctx.folder.path("report.html")).read()


def test_within_two_percent_no_line(tmp_path):
    cfg, _ = write(tmp_path, bill_factor=1 / 1.01)
    ctx = run_local(cfg, "p", date(2026, 11, 6))
    costs = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model")
    assert costs.loc["incumbent", "cost_difference_share"] == pytest.approx(0.01)
    assert "Provider-reported cost differs" not in open(ctx.folder.path("summary.md")).read()


def test_no_reported_costs_no_columns(tmp_path):
    cfg, _ = write(tmp_path, bill_factor=1.0, with_costs=False)
    ctx = run_local(cfg, "p", date(2026, 11, 6))
    assert "reported_cost_usd" not in ctx.folder.read_table("costs.parquet").column_names


def test_a_replay_of_a_litellm_log_reconciles_its_spend(tmp_path):
    """The incumbent replayed from a LiteLLM spend log (``format: litellm``), whose ``spend`` is the
    provider-reported cost: its row of costs.parquet compares it with the tokens × price."""
    import json

    from tests.logs.test_logs import spend_rows

    (tmp_path / "spend.json").write_text(json.dumps(spend_rows()))
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          incumbent: {{provider: replay, source: spend.json, format: litellm, model: gpt-4o-mini-2024-07-18,
                      price: {{input_per_mtok: 0.165, output_per_mtok: 0.60}}}}
        pipelines:
          p:
            dataset: {{source: spend.json, format: litellm}}
            prompt: {{messages: messages}}
            models: [incumbent]
            metrics: [output_length]
            max_error_rate: 0.5
            bootstrap: 0
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "p", date(2024, 10, 28))
    row = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model").loc["incumbent"]
    computed = (88 * 0.165 + 9 * 0.60) / 1e6  # the failed call (no answer, no spend) is left out
    assert row.reconciled_requests == 1 and row.computed_cost_usd == pytest.approx(computed)
    assert row.reported_cost_usd == pytest.approx(0.0000186)
    assert row.cost_difference_share == pytest.approx(computed / 0.0000186 - 1)
    assert "Provider-reported cost differs: incumbent" in open(ctx.folder.path("summary.md")).read()
