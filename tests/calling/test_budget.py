"""A budget before spending: stratified samples, the invoke stage's estimate before any paid call,
the stop (nothing called) or the shrink above ``cost.max_usd``, and estimate and actual cost in the
manifest; against the fake OpenAI-compatible server."""

import json
from collections import Counter
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.calling.estimate import CHARS_PER_TOKEN, DEFAULT_OUTPUT_TOKENS, TOKENS_PER_MESSAGE, estimate
from assay.config import DatasetConfig, OpenAIModel
from assay.dataset import allocate, prepare
from assay.runs import RunFailed
from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 6)


@pytest.mark.parametrize(
    "sizes, n, want",
    [
        ([50, 30, 20], 10, [5, 3, 2]),
        ([97, 2, 1], 10, [8, 1, 1]),  # every non-empty stratum gets one; the big one gives way
        ([5, 0, 5], 4, [2, 0, 2]),  # an empty stratum gets none
        ([3, 3, 3, 3], 2, [1, 1, 1, 1]),  # more strata than n: one each
        ([4, 4], 20, [4, 4]),  # n above the rows: everything
    ],
)
def test_allocate(sizes, n, want):
    assert allocate(sizes, n).tolist() == want


def test_stratified_sample_is_proportional_seeded_and_covers_every_stratum():
    feats = ["billing"] * 700 + ["login"] * 250 + ["refund"] * 45 + ["legal"] * 5
    t = pa.table({"id": [f"r{i:04d}" for i in range(1000)], "app.feature": feats})
    cfg = DatasetConfig(source="x", id="id", sample={"n": 100, "seed": 3, "by": ["app.feature"]})
    got = prepare(t, cfg, None, None)
    counts = Counter(got["app.feature"].to_pylist())
    assert counts == {"billing": 70, "login": 25, "refund": 4, "legal": 1}
    assert prepare(t, cfg, None, None)["id"].to_pylist() == got["id"].to_pylist()  # the seed fixes it
    other = prepare(t, DatasetConfig(source="x", id="id", sample={"n": 100, "seed": 4, "by": ["app.feature"]}), None, None)
    assert other["id"].to_pylist() != got["id"].to_pylist()


def test_stratifying_by_a_missing_column_is_named():
    from assay.dataset import DatasetError

    t = pa.table({"id": ["a", "b"], "x": [1, 2]})
    with pytest.raises(DatasetError, match="dataset.sample.by column 'app.feature'"):
        prepare(t, DatasetConfig(source="x", id="id", sample={"n": 1, "by": ["app.feature"]}), None, None)


def test_estimate_uses_logged_tokens_else_characters():
    t = pa.table({"example_id": ["a", "b"], "prompt_tokens": [100, None], "completion_tokens": [40, 10]})
    reqs = [
        [{"role": "user", "content": "x" * 1000}],
        [{"role": "system", "content": "y" * 10}, {"role": "user", "content": "z" * 30}],
    ]
    price = lambda p, c, k: p * 1e-6 + c * 2e-6  # noqa: E731
    capped = OpenAIModel(model="m", params={"max_tokens": 16})
    free = OpenAIModel(model="m")
    est = estimate(t, reqs, {"capped": capped, "free": free}, {"capped": price, "free": price}, {"free": 2})
    b_prompt = -(-40 // CHARS_PER_TOKEN) + 2 * TOKENS_PER_MESSAGE
    # the logged completion tokens capped by max_tokens: 40 -> 16, 10 stays
    assert est.models["capped"] == pytest.approx((100 + b_prompt) * 1e-6 + (16 + 10) * 2e-6)
    # no max_tokens: the incumbent's logged completion tokens, and two samples per example
    assert est.models["free"] == pytest.approx(2 * ((100 + b_prompt) * 1e-6 + (40 + 10) * 2e-6))
    assert est.prompt_source == "characters+logged" and est.output_source["free"] == "logged completion_tokens"
    nolog = estimate(t.select(["example_id"]), reqs, {"free": free, "capped": capped}, {"free": price, "capped": price}, {})
    assert nolog.output_source == {"free": f"default {DEFAULT_OUTPUT_TOKENS}", "capped": "max_tokens"}
    assert nolog.models["capped"] == pytest.approx(((1000 // 4 + 3) + b_prompt) * 1e-6 + 2 * 16 * 2e-6)
    assert est.fits(est.usd) == 2 and est.fits(est.usd / 2 + 1e-12) == 1


PRICE_IN, PRICE_OUT = 2.0, 8.0  # USD per million tokens


def write(tmp_path, base_url, max_usd, on_over="stop", n=40):
    feats = ["billing"] * 24 + ["login"] * 12 + ["refund"] * 4
    rows = [
        {
            "example_id": f"t{i:03d}",
            "app.feature": feats[i % len(feats)],
            "messages": json.dumps(
                [
                    {"role": "system", "content": "You help customers."},
                    {"role": "user", "content": f"ANSWER: reply number {i} " + "x" * 200},
                ]
            ),
            "prompt_tokens": 70,
            "completion_tokens": 30,
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "traffic.parquet")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          cand-a: {{provider: openai, model: mock-model, base_url: "{base_url}", params: {{max_tokens: 20}},
                   price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}}}
          cand-b: {{provider: openai, model: gpt-4o-mini, base_url: "{base_url}",
                   price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}}}
        pipelines:
          nightly:
            dataset: {{source: traffic.parquet, id: example_id, sample: {{n: 20, seed: 1, by: [app.feature]}}}}
            prompt: {{messages: messages}}
            models: [cand-a, cand-b]
            metrics: [output_length]
            cost: {{max_usd: {max_usd}, on_over_budget: {on_over}}}
            bootstrap: 0
    """,
    )
    return str(tmp_path / "pipelines.yaml")


def per_example_usd() -> float:
    # logged prompt tokens (70) for both; output: the logged 30, capped by cand-a's max_tokens 20
    return (70 * PRICE_IN + 20 * PRICE_OUT) / 1e6 + (70 * PRICE_IN + 30 * PRICE_OUT) / 1e6


def test_over_budget_stops_before_any_call(tmp_path, server):
    server.reset()
    cap = per_example_usd() * 20 / 2
    cfg = write(tmp_path, server.base_url, cap)
    with pytest.raises(RunFailed) as e:
        run_local(cfg, "nightly", DAY)
    msg = str(e.value)
    assert "\n" not in msg and "estimated cost" in msg and "for 20 examples" in msg and "above cost.max_usd" in msg
    assert "a sample of 10 examples would fit" in msg and "nothing was called" in msg
    assert server.stats()["requests_total"] == 0


def test_shrink_fits_the_sample_and_records_estimate_and_actual(tmp_path, server):
    server.reset()
    cap = per_example_usd() * 12.5
    cfg = write(tmp_path, server.base_url, cap, on_over="shrink")
    ctx = run_local(cfg, "nightly", DAY)
    ds = ctx.folder.read_table("dataset.parquet")
    assert ds.num_rows == 12
    assert set(ds["app.feature"].to_pylist()) == {"billing", "login", "refund"}  # still stratified
    assert server.stats()["requests_total"] == 24  # two candidates × 12
    m = ctx.folder.manifest()
    est = m["cost_estimate"]
    assert est["rows"] == 12 and est["shrunk_from"]["rows"] == 20 and est["max_usd"] == pytest.approx(cap)
    assert est["usd"] == pytest.approx(per_example_usd() * 12) and est["usd"] <= cap
    assert est["prompt_tokens"] == "logged" and est["output_tokens"] == {
        "cand-a": "logged completion_tokens (capped by max_tokens)",
        "cand-b": "logged completion_tokens",
    }
    # the actual spend (the fake server's tokens: its own count, not the logged one) beside the estimate
    assert est["actual_usd"] == pytest.approx(m["stages"]["invoke"]["usd"]) and est["actual_usd"] > 0
    assert m["dataset"]["rows"] == 12 and m["dataset"]["shrunk_from"] == 20


def test_within_budget_runs_the_whole_sample(tmp_path, server):
    server.reset()
    cfg = write(tmp_path, server.base_url, per_example_usd() * 20 * 1.01)
    ctx = run_local(cfg, "nightly", DAY)
    assert ctx.folder.read_table("dataset.parquet").num_rows == 20
    assert server.stats()["requests_total"] == 40
    assert ctx.folder.manifest()["cost_estimate"]["usd"] == pytest.approx(per_example_usd() * 20)


def test_the_judges_calls_are_in_the_estimate():
    from assay.calling.estimate import JUDGE_INSTRUCTION_TOKENS, add_judges

    t = pa.table({"example_id": ["a", "b"], "prompt_tokens": [100, 200], "completion_tokens": [10, 30]})
    price = lambda p, c, k: p * 1e-6 + c * 4e-6  # noqa: E731
    est = estimate(t, None, {"cand": OpenAIModel(model="m")}, {"cand": price}, {})
    before = est.usd
    judge = OpenAIModel(model="j", params={"max_tokens": 50})
    add_judges(est, [("pairwise", "j", judge, 4)], {"j": price})
    # four calls per example (two candidates × two orders), each the conversation, two answers and the instructions
    want = sum(4 * ((p + 2 * a + JUDGE_INSTRUCTION_TOKENS) * 1e-6 + 50 * 4e-6) for p, a in ((100, 10), (200, 30)))
    assert est.models["judge:j"] == pytest.approx(want) and est.usd == pytest.approx(before + want)
    assert sum(est.per_example) == pytest.approx(est.usd)
