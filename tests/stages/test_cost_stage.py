"""The cost stage end to end: price per request date, reprice, the budget guard, cost per correct
answer and the golden cost table. Every expected dollar figure is computed by hand in a comment.

genai-prices records OpenAI's o3 price cut on 2025-06-10: 10/40 -> 2/8 USD per million input/output
tokens (cached input 0.5 on both sides); the replay logs below straddle that date.
"""

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import assay.store
from assay import costing
from assay.config import OpenAIModel, parse_model
from assay.pricing import PriceQuote, clear_cache, quote, token_cost
from assay.reprice import RepriceError, reprice
from assay.responses import read_responses
from assay.runs import RunFailed
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "costs"
O3 = OpenAIModel(model="o3", price_ref="openai/o3")
AS_OF = date(2025, 6, 30)  # after the price cut

# ticket, label, logged output, prompt, completion, cached tokens, logged_at
LOG = [
    ("t1", "billing", "billing", 1000, 1000, 0, "2025-06-05T10:00:00+00:00"),
    ("t2", "billing", "refund", 2000, 500, 0, "2025-06-09T23:59:59+00:00"),
    ("t3", "technical", "Technical", 1000, 1000, 0, "2025-06-09T23:30:00-02:00"),  # 2025-06-10 01:30 UTC
    ("t4", "account", "account", 3000, 2000, 1000, "2025-06-20T12:00:00+00:00"),
]
# Each request at the price of its own day:
#   t1 (06-05, 10/40): (1000*10 + 1000*40) / 1e6                  = 0.05
#   t2 (06-09, 10/40): (2000*10 +  500*40) / 1e6                  = 0.04
#   t3 (06-10, 2/8):   (1000*2  + 1000*8)  / 1e6                  = 0.01
#   t4 (06-20, 2/8):   (2000*2 + 1000*0.5 + 2000*8) / 1e6         = 0.0205
PER_DAY = {"t1": 0.05, "t2": 0.04, "t3": 0.01, "t4": 0.0205}
TOTAL_PER_DAY = 0.1205
# Everything at the old price (2025-06-01): 0.05 + 0.04 + 0.05 + (2000*10 + 1000*0.5 + 2000*40)/1e6 = 0.1005
TOTAL_OLD = 0.2405
# Everything at the new price (the run's as_of, or 2025-07-01): 0.01 + 0.008 + 0.01 + 0.0205
TOTAL_NEW = 0.0485


@pytest.fixture(autouse=True)
def _fresh_quotes():
    clear_cache()
    yield
    clear_cache()


def _utc(s: str) -> datetime:
    return datetime.fromisoformat(s).astimezone(UTC)


def _replay_config(tmp_path: Path) -> Path:
    tickets = pa.table(
        {"ticket_id": [r[0] for r in LOG], "text": [f"ticket about {r[1]}" for r in LOG], "label": [r[1] for r in LOG]}
    )
    pq.write_table(tickets, tmp_path / "tickets.parquet")
    (tmp_path / "logs").mkdir()
    cols = {
        "ticket_id": [r[0] for r in LOG],
        "output": [r[2] for r in LOG],
        "prompt_tokens": [r[3] for r in LOG],
        "completion_tokens": [r[4] for r in LOG],
        "cached_tokens": [r[5] for r in LOG],
        "latency_s": [0.5, 0.5, 0.5, 0.5],
    }
    pq.write_table(
        pa.table({**cols, "logged_at": pa.array([_utc(r[6]) for r in LOG], pa.timestamp("us", tz="UTC"))}),
        tmp_path / "logs" / "o3.parquet",
    )
    pq.write_table(pa.table(cols), tmp_path / "logs" / "o3-nolog.parquet")
    text = f"""
    artifacts: {tmp_path}/runs
    cache_dir: {tmp_path}/cache
    models:
      o3-log:       # replayed log with logged_at: each request at its own day's price
        provider: replay
        model: o3
        source: logs/o3.parquet
        price_ref: openai/o3
      o3-nolog:     # the same log without logged_at: priced at the run's as_of
        provider: replay
        model: o3
        source: logs/o3-nolog.parquet
        price_ref: openai/o3
      gpu:          # self-hosted, priced by time: 3.6 USD/h at 1 request/s = 0.001 USD/request
        provider: replay
        source: logs/o3.parquet
        hosting: {{usd_per_gpu_hour: 3.6, replicas: 1, throughput_rps: 1.0}}
    pipelines:
      acc:
        dataset: {{source: tickets.parquet, id: ticket_id, reference: label, input: [text]}}
        models: [o3-log, o3-nolog, gpu]
        metrics: [accuracy, {{name: exact_match, args: {{ignore_case: false}}}}, macro_f1]
        cost: {{monthly_requests: 1000}}
        bootstrap: 0
      em:
        dataset: {{source: tickets.parquet, id: ticket_id, reference: label, input: [text]}}
        models: [o3-log]
        metrics: [macro_f1, {{name: exact_match, args: {{ignore_case: false}}}}]
        bootstrap: 0
      nocorrect:
        dataset: {{source: tickets.parquet, id: ticket_id, reference: label, input: [text]}}
        models: [o3-log]
        metrics: [macro_f1]
        bootstrap: 0
    """
    p = write_config(tmp_path, text)
    return p


@pytest.fixture()
def replay_run(tmp_path):
    cfg = _replay_config(tmp_path)
    ctx = run_local(str(cfg), "acc", AS_OF)
    return ctx


def _costs(folder, name="costs.parquet") -> pd.DataFrame:
    return folder.read_table(name).to_pandas().set_index("model")


# ------------------------------------------------------------------------------------------------ 2. per request date


def test_replayed_requests_are_priced_at_their_own_days_price(replay_run):
    rf = replay_run.folder
    resp = read_responses(rf).to_pandas()
    log = resp[resp.model == "o3-log"].set_index("example_id")
    # the log's logged_at became started_at (UTC): t3 was logged 23:30 at UTC-2, i.e. 01:30 UTC on 06-10
    for tid, *_, logged in LOG:
        assert log.loc[tid, "started_at"] == pd.Timestamp(_utc(logged))
    assert log.loc["t3", "started_at"] == pd.Timestamp("2025-06-10T01:30:00Z")

    c = _costs(rf)
    assert c.loc["o3-log", "kind"] == "api" and c.loc["o3-log", "price_source"] == "genai-prices"
    assert c.loc["o3-log", "cost_usd"] == pytest.approx(TOTAL_PER_DAY, abs=1e-12)
    assert c.loc["o3-log", "cost_per_1k_usd"] == pytest.approx(TOTAL_PER_DAY / 4 * 1000)  # 30.125
    assert c.loc["o3-log", "monthly_cost_usd"] == pytest.approx(TOTAL_PER_DAY / 4 * 1000)  # 1000 requests a month
    # no logged_at: every request at the run's as_of (new price)
    assert c.loc["o3-nolog", "cost_usd"] == pytest.approx(TOTAL_NEW, abs=1e-12)
    # priced by time, not by date: 4 requests * 3.6 / 3600 = 0.004
    assert c.loc["gpu", "kind"] == "self-hosted" and c.loc["gpu", "cost_usd"] == pytest.approx(0.004)

    # the headline dollars are the sum over rows, each at the quote of its own UTC day
    rows = [token_cost(quote(O3, r.started_at), r.prompt_tokens, r.completion_tokens, r.cached_tokens) for r in log.itertuples()]
    assert rows == pytest.approx([PER_DAY[t] for t in log.index], abs=1e-12)
    assert c.loc["o3-log", "cost_usd"] == pytest.approx(sum(rows), abs=1e-15)

    # the compact price line: two periods, one per price
    pj = json.loads(c.loc["o3-log", "price_json"])
    assert pj["priced_by"] == "request date" and pj["dates"] == 4
    assert (pj["first_date"], pj["last_date"]) == ("2025-06-05", "2025-06-20")
    assert [(p["from"], p["to"], p["dates"], p["input_per_mtok"], p["output_per_mtok"]) for p in pj["periods"]] == [
        ("2025-06-05", "2025-06-09", 2, 10.0, 40.0),
        ("2025-06-10", "2025-06-20", 2, 2.0, 8.0),
    ]
    assert PriceQuote.from_dict(c.loc["o3-nolog", "price_json"]).input_per_mtok == 2.0

    # every quote used is in the manifest, per model and per date
    m = rf.manifest()
    p = m["prices"]["o3-log"]
    assert p["priced_by"] == "request date (logged_at)" and p["source"] == "genai-prices"
    assert (p["as_of"], p["input_per_mtok"]) == ("2025-06-30", 2.0)  # the run date's quote, for reference
    assert {d: (q["input_per_mtok"], q["output_per_mtok"], q["cached_input_per_mtok"]) for d, q in p["by_date"].items()} == {
        "2025-06-05": (10.0, 40.0, 0.5),
        "2025-06-09": (10.0, 40.0, 0.5),
        "2025-06-10": (2.0, 8.0, 0.5),
        "2025-06-20": (2.0, 8.0, 0.5),
    }
    assert all(q["as_of"] == d for d, q in p["by_date"].items())
    assert m["prices"]["o3-nolog"]["priced_by"] == "run date" and list(m["prices"]["o3-nolog"]["by_date"]) == ["2025-06-30"]
    assert list(m["prices"]["gpu"]["by_date"]) == ["2025-06-30"]
    assert m["stages"]["invoke"]["models"]["o3-log"]["logged_request_times"] is True
    assert "logged_request_times" not in m["stages"]["invoke"]["models"]["o3-nolog"]


FAKE_SERVER = dict(latency=0.002)  # the options of the module's shared fake server (conftest.py's ``server``)


def _live_config(
    tmp_path: Path,
    base_url: str,
    n: int = 40,
    model_extra: str = "",
    pipeline_extra: str = "",
    max_concurrency: int = 4,
    logged_tokens: int | None = None,
) -> Path:
    labels = ["billing", "technical", "account"]
    rows = [
        {"id": f"e{i:05d}", "text": f"ticket {i} about {labels[i % 3]} please help", "label": labels[i % 3]} for i in range(n)
    ]
    if logged_tokens is not None:  # token counts logged with the examples: what the estimate before calling reads
        rows = [{**r, "prompt_tokens": logged_tokens, "completion_tokens": logged_tokens} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    text = f"""
    artifacts: {tmp_path}/runs
    cache_dir: {tmp_path}/cache
    models:
      live:
        provider: openai
        model: o3
        base_url: {base_url}
        api_key_env: ASSAY_TEST_KEY
        params: {{max_tokens: 8}}
        max_concurrency: {max_concurrency}
        {model_extra}
    pipelines:
      p:
        dataset: {{source: data.parquet, id: id, reference: label}}
        prompt:
          system: "labels: billing, technical, account"
          template: "{{text}}"
        models: [live]
        metrics: [accuracy]
        shard_size: 10
        bootstrap: 0
        {pipeline_extra}
    """
    p = write_config(tmp_path, text)
    return p


@pytest.fixture()
def api_key(monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test-cost")


def test_live_calls_are_priced_at_the_runs_as_of(tmp_path, server, api_key):
    # A backfill is priced as it would have been then: the calls happen today, the prices are as_of's.
    cfg = _live_config(tmp_path, server.base_url)
    before = run_local(str(cfg), "p", date(2025, 6, 1))
    after = run_local(str(cfg), "p", date(2025, 7, 1))  # the same calls, from Assay's cache
    for ctx, (inp, out) in ((before, (10.0, 40.0)), (after, (2.0, 8.0))):
        resp = read_responses(ctx.folder).to_pandas()
        expected = (resp.prompt_tokens.sum() * inp + resp.completion_tokens.sum() * out) / 1e6
        assert _costs(ctx.folder).loc["live", "cost_usd"] == pytest.approx(expected)
        p = ctx.folder.manifest()["prices"]["live"]
        assert p["priced_by"] == "run date" and list(p["by_date"]) == [ctx.as_of.isoformat()]
        assert p["input_per_mtok"] == inp
    assert read_responses(after.folder).to_pandas()["cached"].all()


# ------------------------------------------------------------------------------------------------ 1. reprice


def test_reprice_reproduces_the_recorded_costs_exactly(replay_run, monkeypatch):
    rf = replay_run.folder
    recorded = rf.read_table("costs.parquet").to_pandas()
    recorded_be = rf.read_table("breakeven.parquet").to_pandas()
    # whatever genai-prices says today, a past run's dollars do not change: the recorded prices are used
    import assay.pricing

    clear_cache()
    monkeypatch.setattr(assay.pricing, "_lookup", lambda *a, **k: PriceQuote(99.0, 99.0, source="genai-prices"))
    r = reprice(rf.url)
    assert r.recorded and r.label == "2025-06-30" and not r.written
    pd.testing.assert_frame_equal(r.costs, recorded)
    pd.testing.assert_frame_equal(r.breakeven, recorded_be)
    cmp = r.comparison.set_index("model")
    for col in ("cost_usd", "cost_per_1k_usd", "monthly_cost_usd"):
        assert (cmp[f"{col}_old"] == cmp[f"{col}_new"]).all()
    assert set(rf.listdir(".")) >= {"costs.parquet"} and not any(n.startswith("costs-") for n in rf.listdir("."))


def test_reprice_at_another_date_prices_every_request_at_that_dates_price(replay_run):
    rf = replay_run.folder
    before = rf.hash("costs.parquet")
    r = reprice(rf.url, date(2025, 6, 1), write=True)
    new = r.costs.set_index("model")
    assert new.loc["o3-log", "cost_usd"] == pytest.approx(TOTAL_OLD, abs=1e-12)
    assert new.loc["o3-nolog", "cost_usd"] == pytest.approx(TOTAL_OLD, abs=1e-12)
    assert new.loc["o3-log", "cost_per_1k_usd"] == pytest.approx(TOTAL_OLD / 4 * 1000)  # 60.125
    assert new.loc["o3-log", "monthly_cost_usd"] == pytest.approx(TOTAL_OLD / 4 * 1000)  # 1000 requests a month
    assert new.loc["o3-log", "cost_per_correct_usd"] == pytest.approx(TOTAL_OLD / 3)  # accuracy: 3 of 4
    assert new.loc["gpu", "cost_usd"] == pytest.approx(0.004)  # priced by time
    q = PriceQuote.from_dict(new.loc["o3-log", "price_json"])
    assert (q.input_per_mtok, q.output_per_mtok, q.as_of) == (10.0, 40.0, "2025-06-01")
    cmp = r.comparison.set_index("model")
    assert cmp.loc["o3-log", "cost_usd_old"] == pytest.approx(TOTAL_PER_DAY, abs=1e-12)
    assert cmp.loc["o3-log", "cost_usd_new"] == pytest.approx(TOTAL_OLD, abs=1e-12)
    assert cmp.loc["o3-nolog", "cost_usd_old"] == pytest.approx(TOTAL_NEW, abs=1e-12)
    # written next to the originals, which are untouched
    assert rf.hash("costs.parquet") == before
    pd.testing.assert_frame_equal(rf.read_table("costs-2025-06-01.parquet").to_pandas(), r.costs)
    assert rf.exists("breakeven-2025-06-01.parquet")
    m = rf.manifest()
    entry = m["repriced"]["2025-06-01"]
    assert entry["prices"] == "quoted" and entry["costs"] == "costs-2025-06-01.parquet"
    assert entry["cost_usd"]["o3-log"] == pytest.approx(TOTAL_OLD)
    assert entry["quotes"]["o3-log"]["input_per_mtok"] == 10.0
    assert set(entry["artifacts"]) == {"costs-2025-06-01.parquet", "breakeven-2025-06-01.parquet"}
    assert m["status"] == "complete"

    later = reprice(rf.url, "2025-07-01").costs.set_index("model")
    assert later.loc["o3-log", "cost_usd"] == pytest.approx(TOTAL_NEW, abs=1e-12)


def test_reprice_keeps_an_unset_variable_and_reproduce_refuses_it(replay_run, monkeypatch):
    """One rule for an unset ${VAR} in a recorded config (assay.config.recorded_config): repricing calls
    nothing and keeps the placeholder; reproducing calls the models again and names the variable."""
    from assay.reproduce import ReproduceError, reproduce

    rf = replay_run.folder
    m = rf.manifest()
    m["config"]["models"]["o3-log"]["source"] = "${ASSAY_UNSET_LOG}"
    rf.write_json(assay.store.MANIFEST, m)
    monkeypatch.delenv("ASSAY_UNSET_LOG", raising=False)
    again = reprice(rf.url).costs.set_index("model")
    assert again.loc["o3-log", "cost_usd"] == pytest.approx(TOTAL_PER_DAY, abs=1e-12)
    with pytest.raises(ReproduceError, match=r"config\.models\.o3-log\.source: environment variable ASSAY_UNSET_LOG is not set"):
        reproduce(rf.url)
    m["config"]["models"]["o3-log"]["sauce"] = m["config"]["models"]["o3-log"].pop("source")
    rf.write_json(assay.store.MANIFEST, m)
    with pytest.raises(RepriceError, match=r"config\.models\.o3-log\.sauce: not an option of provider 'replay'"):
        reprice(rf.url)


def test_reprice_cli(replay_run, tmp_path):
    from flows.cli.main import app

    rf = replay_run.folder
    runner = CliRunner()
    res = runner.invoke(app, ["reprice", rf.url, "--as-of", "2025-06-01", "--write"])
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("o3-log"))
    assert "0.1205" in line and "0.2405" in line and "30.125" in line and "60.125" in line
    assert "costs-2025-06-01.parquet" in res.output
    res = runner.invoke(app, ["reprice", rf.url])
    assert res.exit_code == 0 and "recorded" in res.output

    res = runner.invoke(app, ["reprice", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and "not found" in res.output
    res = runner.invoke(app, ["reprice", rf.url, "--as-of", "June"])
    assert res.exit_code == 2
    import shutil

    copy = tmp_path / "copy" / "acc" / "2025-06-30" / "r1"
    shutil.copytree(rf.url, copy)
    (copy / "metrics.parquet").unlink()
    res = runner.invoke(app, ["reprice", str(copy)])
    assert res.exit_code == 2 and "metrics.parquet" in res.output
    with pytest.raises(RepriceError, match="metrics.parquet"):
        reprice(copy)
    shutil.rmtree(copy / "responses")
    with pytest.raises(RepriceError, match="responses"):
        reprice(copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(RepriceError, match="manifest.json"):
        reprice(copy)


# ------------------------------------------------------------------------------------------------ 3. budget guard


def test_budget_guard_stops_a_live_run_before_the_next_shard_would_exceed_max_usd(tmp_path, server, api_key):
    server.reset()
    # ~20 tokens a call at 1000 USD per million tokens: ~0.02 USD a call, ~0.2 USD a shard of 10, 0.8 USD for all 40
    max_usd = 0.5
    # logged token counts far below the real ones: the estimate before calling (0.08 USD) passes, the
    # guard while calling is what stops the run
    cfg = _live_config(
        tmp_path,
        server.base_url,
        model_extra="price: {input_per_mtok: 1000, output_per_mtok: 1000}",
        pipeline_extra=f"cost: {{max_usd: {max_usd}}}",
        logged_tokens=1,
    )
    with pytest.raises(RunFailed, match="budget guard"):
        run_local(str(cfg), "p", date(2026, 11, 1))
    run = Store(tmp_path / "runs").runs("p")[0]
    m = run.manifest()
    assert m["status"] == "failed" and m["error"]["stage"] == "invoke"
    assert "max_usd" in m["error"]["message"]
    resp = read_responses(run).to_pandas()
    assert 10 <= len(resp) < 40 and resp["error"].isna().all()  # the partial responses are kept
    spent = float(((resp.prompt_tokens + resp.completion_tokens) * 1000 / 1e6).sum())
    assert m["stages"]["invoke"]["usd"] == pytest.approx(spent, abs=1e-6)
    shard_estimate = spent / len(resp) * 10
    assert spent <= max_usd + shard_estimate  # never more than one shard's estimate over
    assert spent + 1.5 * shard_estimate > max_usd  # it stopped because the next shard would not fit
    assert server.stats()["requests_total"] == len(resp)


def _stopped_by_the_budget(tmp_path):
    """Run pipeline ``p`` of tmp_path/pipelines.yaml, which cost.max_usd must stop; (run folder, manifest)."""
    with pytest.raises(RunFailed, match="max_usd"):
        run_local(str(tmp_path / "pipelines.yaml"), "p", date(2026, 11, 1))
    run = Store(tmp_path / "runs").runs("p")[0]
    m = run.manifest()
    assert m["status"] == "failed" and "max_usd" in m["error"]["message"]
    return run, m


def test_budget_guard_stops_a_batch_provider(tmp_path, monkeypatch):
    # a python function answering 1000 prompt tokens per row at 1 USD/MTok: 0.001 USD a row, 0.01 a shard of 10
    (tmp_path / "tokens_model.py").write_text(
        "def answer(rows):\n    return [{'output': r['label'], 'prompt_tokens': 1000, 'completion_tokens': 0} for r in rows]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rows = [{"id": f"e{i:03d}", "text": f"ticket {i}", "label": "billing"} for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    write_config(
        tmp_path,
        f"""
    artifacts: {tmp_path}/runs
    models:
      fn:
        provider: python
        function: tokens_model:answer
        price: {{input_per_mtok: 1.0, output_per_mtok: 1.0}}
    pipelines:
      p:
        dataset: {{source: data.parquet, id: id, reference: label, input: [text]}}
        models: [fn]
        metrics: [accuracy]
        shard_size: 10
        bootstrap: 0
        cost: {{max_usd: 0.025}}
    """,
    )
    # shard 1: spent 0.01, next ≈ 0.01 -> 0.02 <= 0.025 goes on; shard 2: spent 0.02 + 0.01 > 0.025 -> stop
    run, m = _stopped_by_the_budget(tmp_path)
    assert read_responses(run).num_rows == 20
    assert m["stages"]["invoke"]["usd"] == pytest.approx(0.02)


def test_budget_guard_stops_a_replay_with_prices(tmp_path):
    # Replays use shards of 50 000 rows. 60 000 rows of 1000 prompt tokens at 1 USD/MTok = 0.001 USD a row:
    # shard 1 costs 50 USD; the remaining 10 000 rows ≈ 10 USD; 50 + 10 > 55 -> stop before them.
    n = 60_000
    ids = [f"t{i:06d}" for i in range(n)]
    pq.write_table(pa.table({"ticket_id": ids, "text": ["x"] * n, "label": ["billing"] * n}), tmp_path / "tickets.parquet")
    pq.write_table(
        pa.table({"ticket_id": ids, "output": ["billing"] * n, "prompt_tokens": [1000] * n, "completion_tokens": [0] * n}),
        tmp_path / "log.parquet",
    )
    write_config(
        tmp_path,
        f"""
    artifacts: {tmp_path}/runs
    models:
      logged:
        provider: replay
        source: log.parquet
        price: {{input_per_mtok: 1.0, output_per_mtok: 1.0}}
    pipelines:
      p:
        dataset: {{source: tickets.parquet, id: ticket_id, reference: label, input: [text]}}
        models: [logged]
        metrics: [accuracy]
        bootstrap: 0
        cost: {{max_usd: 55}}
    """,
    )
    run, m = _stopped_by_the_budget(tmp_path)
    assert read_responses(run).num_rows == 50_000
    assert m["stages"]["invoke"]["usd"] == pytest.approx(50.0)


# ------------------------------------------------------------------------------------------------ 4. cost per correct


def test_cost_per_correct_answer_uses_the_correctness_metric(replay_run, tmp_path):
    # acc pipeline: accuracy (normalised) counts t1, t3 ("Technical") and t4: 3 correct, although
    # exact_match (case-sensitive here) is computed too -- accuracy comes first
    c = _costs(replay_run.folder)
    assert c.loc["o3-log", "cost_per_correct_usd"] == pytest.approx(TOTAL_PER_DAY / 3)  # 0.040167
    assert c.loc["o3-nolog", "cost_per_correct_usd"] == pytest.approx(TOTAL_NEW / 3)
    assert c.loc["gpu", "cost_per_correct_usd"] == pytest.approx(0.004 / 3)
    cfg = tmp_path / "pipelines.yaml"
    # em pipeline: no accuracy, so exact_match (case-sensitive): "Technical" != "technical" -> 2 correct
    em = run_local(str(cfg), "em", AS_OF)
    assert _costs(em.folder).loc["o3-log", "cost_per_correct_usd"] == pytest.approx(TOTAL_PER_DAY / 2)  # 0.06025
    # no correctness metric: unknown
    none = run_local(str(cfg), "nocorrect", AS_OF)
    assert math.isnan(_costs(none.folder).loc["o3-log", "cost_per_correct_usd"])


# ------------------------------------------------------------------------------------------------ 5. golden


def test_golden_costs():
    inputs = json.loads((GOLDEN / "inputs.json").read_text())
    expected = json.loads((GOLDEN / "expected.json").read_text())
    responses = pd.read_csv(
        GOLDEN / "responses.csv",
        dtype={
            "model": str,
            "example_id": str,
            "output": str,
            "prompt_tokens": "Int64",
            "completion_tokens": "Int64",
            "cached_tokens": "Int64",
            "cache_write_tokens": "Int64",
            "latency_s": float,
            "cached": bool,
            "error": str,
        },
    )
    models = {k: parse_model(v) for k, v in inputs["models"].items()}
    quotes = {k: quote(m, inputs["as_of"]) for k, m in models.items()}
    table = costing.cost_table(responses, models, quotes, inputs["stats"], inputs["monthly_requests"], inputs["correct"])
    assert list(table["model"]) == list(expected["costs"])
    got = table.set_index("model")
    for model, want in expected["costs"].items():
        for col, v in want.items():
            have = got.loc[model, col]
            if v is None:
                assert math.isnan(have), (model, col)
            elif isinstance(v, str):
                assert have == v, (model, col)
            elif isinstance(v, int) and col not in ("monthly_requests",):
                assert have == v and float(have).is_integer(), (model, col)
            else:
                assert have == pytest.approx(v, rel=1e-9, abs=1e-15), (model, col, have, v)
    be = costing.breakeven(table)
    assert [(r.option, r.api) for r in be.itertuples()] == [(b["option"], b["api"]) for b in expected["breakeven"]]
    assert be["breakeven_monthly_requests"].tolist() == pytest.approx(
        [b["breakeven_monthly_requests"] for b in expected["breakeven"]], rel=1e-9
    )


def test_reprice_a_judged_run_reprices_the_judge_too(tmp_path, server, api_key):
    # the judge (o3 behind the fake server, priced from genai-prices) is called at the run's date
    rows = [{"id": f"e{i}", "question": f"Capital number {i}?", "label": "Paris", "out": "Paris"} for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    write_config(
        tmp_path,
        f"""
    artifacts: {tmp_path}/runs
    cache_dir: {tmp_path}/cache
    models:
      a: {{provider: replay, output_column: out, price: {{input_per_mtok: 1.0, output_per_mtok: 1.0}}}}
      grader:
        provider: openai
        model: o3
        base_url: {server.base_url}
        api_key_env: ASSAY_TEST_KEY
        params: {{max_tokens: 16}}
    pipelines:
      qa:
        dataset: {{source: data.parquet, id: id, reference: label}}
        prompt: {{template: "Question: {{question}}"}}
        models: [a]
        metrics: [accuracy, {{name: judge, judge: grader, args: {{rubric: "Right city?", scale: [1, 5]}}}}]
        bootstrap: 0
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "qa", AS_OF)
    rf = ctx.folder
    m = rf.manifest()
    usage = m["stages"]["score"]["judges"]["judge"]
    assert usage["prompt_tokens"] > 0
    jp = m["judge_prices"]["grader"]
    assert (jp["input_per_mtok"], jp["as_of"], jp["model_config"]["model"]) == (2.0, "2025-06-30", "o3")
    line = _costs(rf).loc["judge:grader"]
    assert line["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 2 + usage["completion_tokens"] * 8) / 1e6)

    same = reprice(rf.url)
    pd.testing.assert_frame_equal(same.costs, rf.read_table("costs.parquet").to_pandas())
    old = reprice(rf.url, "2025-06-01").costs.set_index("model")
    assert old.loc["judge:grader", "cost_usd"] == pytest.approx(
        (usage["prompt_tokens"] * 10 + usage["completion_tokens"] * 40) / 1e6
    )
    assert PriceQuote.from_dict(old.loc["judge:grader", "price_json"]).as_of == "2025-06-01"


def test_replay_reads_logged_at_in_any_form():
    from datetime import date as _date
    from zoneinfo import ZoneInfo

    from assay.providers.replay import _utc_micros

    midnight = 1749513600_000000  # 2025-06-10T00:00:00Z in µs
    cases = [
        pa.array(["2025-06-09T22:00:00-02:00", "2025-06-10", None]),  # text with an offset
        pa.array([datetime(2025, 6, 10), datetime(2025, 6, 10), None], pa.timestamp("s")),  # naive: UTC
        pa.array(
            [datetime(2025, 6, 10, 2, tzinfo=ZoneInfo("Europe/Berlin"))] * 2 + [None], pa.timestamp("ms", tz="Europe/Berlin")
        ),  # 02:00 Berlin = 00:00 UTC
        pa.array([_date(2025, 6, 10)] * 2 + [None]),  # dates
    ]
    for arr in cases:
        got = _utc_micros(pa.chunked_array([arr])).to_pylist()
        assert got[2] is None and got[1] == midnight, arr
    assert _utc_micros(pa.chunked_array([cases[0]])).to_pylist()[0] == midnight
