"""The pairwise judge: verdict parsing and combining, and whole runs judged by the fake
OpenAI-compatible server: win/tie/loss rates with intervals in metrics.parquet, a gate and the
recommendation on the win rate, one judge call at most per (model, example, order), the calls of
the night before reused, the judge priced on its own line."""

import json
from datetime import date

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.metrics.pairwise import combine, pairwise_messages, parse_verdict
from assay.stages import run_local
from tests.conftest import write_config


@pytest.mark.parametrize(
    "reply, verdict",
    [
        ("Verdict: A", "A"),
        ("verdict: b", "B"),
        ("**Verdict:** tie", "tie"),
        ("A is clearer.\n\nVerdict: Answer A", "A"),
        ("Verdict - B", "B"),
        ("Verdict: A\nOn reflection... Verdict: B", "B"),
        ("B", "B"),
        ("tie.", "tie"),
        ("Verdict: draw", "tie"),
        ("I prefer neither", None),
        ("", None),
        (None, None),
        ("Verdict: C", None),
    ],
)
def test_parse_verdict(reply, verdict):
    assert parse_verdict(reply) == verdict


def test_both_orders_must_agree():
    # the candidate is answer A in the first order, answer B in the second
    assert combine("A", "B") == "win" and combine("B", "A") == "loss"
    assert combine("A", "A") == "tie" and combine("B", "B") == "tie"  # position bias: disagreeing orders
    assert combine("tie", "B") == "tie" and combine("A", "tie") == "tie" and combine("tie", "tie") == "tie"
    assert combine(None, "A") is None


def test_prompt_shows_the_conversation_and_both_answers():
    msgs = pairwise_messages("[user]\nhello", "first", "second", "Be right.")
    user = msgs[1]["content"]
    assert "[Conversation]\n[user]\nhello" in user and "[Answer A]\nfirst" in user and "[Answer B]\nsecond" in user
    assert "Be right." in user and "Verdict: A" in msgs[0]["content"]


# --------------------------------------------------------------------------------------- a run

# The fake server answers a judge prompt with the first ``ANSWER:`` line in it: a line in answer A
# wins over one in answer B, like a judge that favours what it reads first. So an answer holding
# "ANSWER: Verdict: A" (it says it is better when shown first) and an incumbent holding "ANSWER:
# Verdict: B" make a win in both orders; without the incumbent's line the orders disagree: a tie.
WIN = "Your refund is on its way.\nANSWER: Verdict: A"
LOSE = "No idea.\nANSWER: Verdict: B"
INC_MILD = "We are looking into it."
INC_WEAK = "We are looking into it, sorry.\nANSWER: Verdict: B"
INC_STRONG = "Refund issued today, reference 42.\nANSWER: Verdict: A"

#: example -> (incumbent's answer, good candidate's, weak candidate's)
ROWS = {
    "e1": (INC_WEAK, WIN, LOSE),  # good: win both orders; weak: its own B first (loss), then the incumbent's B (win): tie
    "e2": (INC_STRONG, WIN, LOSE),  # good: A first, then the incumbent's A: tie; weak: loss
    "e3": (INC_MILD, WIN, INC_MILD),  # good: A, then its own A as B: the orders disagree, tie; weak: identical, tie
    "e4": (INC_WEAK, WIN, None),  # good: win; weak: failed call, a loss without a judge call
    "e5": (INC_STRONG, "Verdict text without a line", LOSE),  # good: B-first A, then the incumbent's A: loss... see below
}
# e5, good: order 1 shows the incumbent as B; the only ANSWER line is the incumbent's "Verdict: A" -> A (candidate);
# order 2 shows the incumbent as A -> "Verdict: A" (incumbent): the orders disagree, a tie.
GOOD = {"e1": "win", "e2": "tie", "e3": "tie", "e4": "win", "e5": "tie"}
WEAK = {"e1": "tie", "e2": "loss", "e3": "tie", "e4": "loss", "e5": "loss"}
# judge calls: two per example whose answers differ and whose candidate answered
CALLS = {"good": 2 * 5, "weak": 2 * 3}  # weak: e3 identical, e4 failed

PRICE_IN, PRICE_OUT = 5.0, 20.0


def write(tmp_path, base_url, rows=ROWS):
    data = []
    for eid, (inc, good, weak) in rows.items():
        conv = [
            {"role": "system", "content": "You are the support assistant of Acme."},
            {"role": "user", "content": f"Where is my refund for order {eid}?"},
        ]
        data.append(
            {
                "example_id": eid,
                "messages": json.dumps(conv),
                "output": inc,
                "out_good": good,
                "out_weak": weak,
                "app.feature": "refunds" if eid in ("e1", "e2", "e3") else "billing",
            }
        )
    pq.write_table(pa.Table.from_pylist(data), tmp_path / "traffic.parquet")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          incumbent: {{provider: replay, output_column: output}}
          good: {{provider: replay, output_column: out_good}}
          weak: {{provider: replay, output_column: out_weak}}
          grader:
            provider: openai
            model: mock-model
            base_url: "{base_url}"
            params: {{temperature: 0, max_tokens: 32}}
            price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}
        pipelines:
          nightly:
            dataset: {{source: traffic.parquet, id: example_id, slices: [app.feature]}}
            prompt: {{messages: messages}}
            models: [incumbent, good, weak]
            metrics:
              - name: pairwise
                judge: grader
                against: incumbent
                args: {{rubric: "Which reply resolves the customer's problem?"}}
            gates: {{pairwise.not_worse: {{min: 0.45}}}}
            max_error_rate: 0.5
            bootstrap: 50
    """,
    )
    return str(tmp_path / "pipelines.yaml")


def _rate(outcomes: dict, which: str) -> float:
    return sum(1 for o in outcomes.values() if o == which) / len(outcomes)


def test_a_pairwise_run_end_to_end(tmp_path, server):
    server.reset()
    cfg = write(tmp_path, server.base_url)
    ctx = run_local(cfg, "nightly", date(2026, 11, 6))
    rf = ctx.folder
    # at most one call per (model, example, order); here exactly the pairs that needed a verdict
    assert server.stats()["requests_total"] == CALLS["good"] + CALLS["weak"]
    usage = rf.manifest()["stages"]["score"]["judges"]["pairwise"]
    assert usage["requests"] == CALLS["good"] + CALLS["weak"] and usage["calls_by_model"] == {"good": 10, "weak": 6}
    assert usage["calls_by_model"].get("incumbent", 0) == 0  # against itself: identical answers, no call

    scores = rf.read_table("scores.parquet").to_pandas().set_index(["model", "metric", "example_id"])
    for model, want in (("good", GOOD), ("weak", WEAK)):
        for eid, outcome in want.items():
            assert scores.loc[(model, "pairwise.win", eid), "value"] == (outcome == "win"), (model, eid)
            assert scores.loc[(model, "pairwise.tie", eid), "value"] == (outcome == "tie"), (model, eid)
            assert scores.loc[(model, "pairwise", eid), "value"] == {"win": 1, "tie": 0.5, "loss": 0}[outcome]
    assert scores.loc[("good", "pairwise", "e1"), "detail"].startswith("win (candidate first: A; incumbent first: B)")

    m = rf.read_table("metrics.parquet").to_pandas()
    overall = m[m.slice == "all"].set_index(["model", "metric"])
    for model, want in (("good", GOOD), ("weak", WEAK)):
        for sub in ("win", "tie", "loss"):
            row = overall.loc[(model, f"pairwise.{sub}")]
            assert row.value == pytest.approx(_rate(want, sub)) and row.n == 5
            eps = 1e-12
            assert row.wilson_low - eps <= row.value <= row.wilson_high + eps and row.ci_low <= row.value <= row.ci_high
        assert overall.loc[(model, "pairwise.not_worse"), "value"] == pytest.approx(1 - _rate(want, "loss"))
    assert not overall.loc[("good", "pairwise.loss"), "higher_is_better"]
    assert overall.loc[("incumbent", "pairwise.tie"), "value"] == 1.0
    assert m[(m.slice == "app.feature=refunds") & (m.metric == "pairwise.win")].set_index("model").loc["good", "n"] == 3

    # the judge on its own cost line
    costs = rf.read_table("costs.parquet").to_pandas().set_index("model")
    line = costs.loc["judge:grader"]
    assert line["kind"] == "judge" and line["requests"] == 16
    assert line["cost_usd"] == pytest.approx((usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT) / 1e6)

    # the recommendation on "not worse in more than 45 %": good (1.0) and the incumbent (1.0, against
    # itself) pass, weak (0.4) fails; with no prices on the replays, the cheapest passing is chosen
    from assay.config import load_config
    from assay.report.decision import recommend
    from assay.report.summary import headline

    pipe = load_config(cfg).pipeline("nightly")
    rec = recommend(headline(m, costs.reset_index(), pipe), pipe)
    assert "weak" in rec.failing and "pairwise.not_worse" in " ".join(rec.failing["weak"])
    assert set(rec.passing) == {"good", "incumbent"}
    assert "pairwise.not_worse" in (
        rf.read_text("summary.md") if hasattr(rf, "read_text") else open(rf.path("summary.md")).read()
    )


def test_the_next_night_reuses_the_verdicts_of_pairs_that_come_back(tmp_path, server):
    server.reset()
    cfg = write(tmp_path, server.base_url)
    run_local(cfg, "nightly", date(2026, 11, 6))
    first = server.stats()["requests_total"]
    # the next night: the same conversations and answers but one, whose good answer changed
    rows = dict(ROWS)
    rows["e2"] = (INC_STRONG, "Refund sent, and a voucher.\nANSWER: Verdict: A", LOSE)
    write(tmp_path, server.base_url, rows)
    ctx = run_local(cfg, "nightly", date(2026, 11, 7))
    assert server.stats()["requests_total"] == first + 2  # only the changed pair, in its two orders
    usage = ctx.folder.manifest()["stages"]["score"]["judges"]["pairwise"]
    assert usage["cache_hits"] == 16 - 2 and usage["requests"] == 16


def test_against_must_be_a_model_of_the_pipeline(tmp_path, server):
    from assay.config import ConfigError
    from assay.preflight import load_checked

    cfg = write(tmp_path, server.base_url)
    text = open(cfg).read().replace("against: incumbent", "against: yesterday")
    open(cfg, "w").write(text)
    with pytest.raises(ConfigError, match="against: 'yesterday' is not one of the pipeline's models"):
        load_checked(cfg)


def test_against_is_only_for_the_pairwise_metric(tmp_path, server):
    from assay.config import ConfigError
    from assay.preflight import load_checked

    cfg = write(tmp_path, server.base_url)
    text = open(cfg).read().replace("name: pairwise", "name: judge")
    open(cfg, "w").write(text)
    with pytest.raises(ConfigError, match="against applies to the pairwise metric"):
        load_checked(cfg)
