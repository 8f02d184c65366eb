"""The LLM-as-judge metric: grade parsing, the metric on an in-process judge, and a whole run
judged by the fake OpenAI-compatible server (scores, details, usage, cost, no call twice)."""

import asyncio
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import DatasetConfig, MetricSpec, OpenAIModel
from assay.errors import MetricError
from assay.metrics import METRICS, build_metric
from assay.metrics.judge import PROMPT_VERSION, LLMJudge, judge_messages, parse_grade
from assay.providers import BatchProvider, CallResult, ChatProvider, Context, ProviderError
from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 1)


# ---------------------------------------------------------------------------------------
# parsing


@pytest.mark.parametrize(
    "reply, grade",
    [
        ("Grade: 4", 4),
        ("grade:4", 4),
        ("GRADE: 4", 4),
        ("Grade = 3", 3),
        ("Grade - 3", 3),
        ("Grade – 2", 2),
        ("4/5", 4),
        ("4 / 5", 4),
        ("I'd give it 4 out of 5.", 4),
        ("Score: 4 out of 5", 4),
        ("Score: 3/5", 3),
        ("**4**", 4),
        ("I rate it **5**.", 5),
        ("__2__", 2),
        ("**Grade:** 4", 4),
        ("Grade: **4**", 4),
        ("**Score**: 3/5", 3),
        ("**Final grade: 5**", 5),
        ('{"grade": 4}', 4),
        ('{"Score": 2, "reason": "vague"}', 2),
        ('{"grade": "4"}', 4),
        ('{"rating": 3.5}', 3.5),
        ('```json\n{"grade": 5, "explanation": "exact"}\n```', 5),
        ('My verdict follows.\n{"grade": 1, "reason": "wrong city"}', 1),
        ("4", 4),
        (" 4.\n", 4),
        ("(3)", 3),
        ("`2`", 2),
        ("5!", 5),
        ("The answer names the right city but misses the date.\n\nGrade: 3", 3),
        ("The answer is correct.\n4", 4),
        ("4\nThe answer is mostly correct.", 4),
        ("Criterion A score: 2. Criterion B score: 5. Final grade: 4", 4),  # the last labelled grade wins
        ("Grade: 3\nA score of 5 would need the date as well.", 3),  # ... but the requested line form comes first
        ("- **Grade:** 2\n- Reason: it names a different city; a grade of 4 needs the right one", 2),
        ("The overall score is 4.", 4),
        ("I would give a score of 2", 2),
        ("Rating (1-5): 2", 2),
        ("Grade: four", 4),
        ("Score: Five", 5),
        ("Grade: 4.5", 4.5),
        ("Grade: -1", -1),
        ("Grade: 7", 7),  # parsed; out of range is the metric's call
    ],
)
def test_parse_grade(reply, grade):
    assert parse_grade(reply, hi=5) == grade


@pytest.mark.parametrize(
    "reply",
    [
        None,
        "",
        "   ",
        "no idea",
        "The answer is good.",
        "The answer is 3/4 right",  # a fraction of something else
        '{"reason": "no grade here"}',
        "Score: 80%",
        "The grades vary",
        "Grade: N/A",
    ],
)
def test_unparseable_replies(reply):
    assert parse_grade(reply, hi=5) is None


def test_fraction_needs_the_top_of_the_scale():
    assert parse_grade("8/10", hi=10) == 8
    assert parse_grade("8/10", hi=5) is None
    assert parse_grade("8/10") is None


# ---------------------------------------------------------------------------------------
# the metric with an in-process judge


class FakeJudge(ChatProvider):
    """Answers from a function of the answer being graded; counts calls and concurrency."""

    def __init__(self, reply=None, max_concurrency=4, max_attempts=3, fail=None, delay=0.01):
        super().__init__(
            OpenAIModel(
                model="fake-judge", max_concurrency=max_concurrency, max_attempts=max_attempts, params={"temperature": 0}
            ),
            Context("grader", DatasetConfig(source="x.parquet"), None, lambda p: p),
        )
        self.reply = reply or (lambda answer: "Grade: 5")
        self.fail = fail or (lambda answer, attempt: None)
        self.delay = delay
        self.calls: list[str] = []
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0
        self.started = self.closed = 0

    async def start(self):
        self.started += 1

    async def close(self):
        self.closed += 1

    async def call(self, messages):
        user = messages[-1]["content"]
        answer = user.split("[Answer to grade]\n", 1)[1].split("\n[End of answer to grade]", 1)[0]
        self.attempts[answer] = self.attempts.get(answer, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        err = self.fail(answer, self.attempts[answer])
        if err is not None:
            raise err
        self.calls.append(answer)
        return CallResult(self.reply(answer), prompt_tokens=100, completion_tokens=3)


def judge_metric(provider, **args):
    return build_metric(MetricSpec(name="judge", judge="grader", args=args), judge=provider)


def test_registered_and_built_with_a_provider():
    assert "judge" in METRICS
    p = FakeJudge()
    m = judge_metric(p, rubric="Be right.", scale=[0, 10], pass_threshold=7)
    assert isinstance(m, LLMJudge) and m.name == "judge" and m.judge is p
    assert m.needs_inputs and m.decomposable and m.higher_is_better
    assert m.options == {
        "judge": "grader",
        "rubric": "Be right.",
        "scale": [0.0, 10.0],
        "pass_threshold": 7.0,
        "prompt_version": PROMPT_VERSION,
    }
    # without a provider (outside a run) it knows the model's name, and says so when asked to score
    named = build_metric(MetricSpec(name="judge", judge="grader"))
    assert named.judge == "grader"
    with pytest.raises(ValueError, match="without a provider for model 'grader'"):
        named.score_each(["a"], ["b"], inputs=["q"])


@pytest.mark.parametrize(
    "args, match",
    [
        ({"scale": [5, 1]}, "low < high"),
        ({"scale": [1]}, "two numbers"),
        ({"scale": "1-5"}, "two numbers"),
        ({"pass_threshold": 6}, "outside the scale"),
        ({"rubric": "  "}, "non-empty"),
        ({"rubrik": "x"}, "bad options"),
    ],
)
def test_bad_options(args, match):
    with pytest.raises(ValueError, match=match):
        judge_metric(FakeJudge(), **args)


def test_needs_a_judge_model():
    with pytest.raises(ValueError, match="needs a judge model"):
        build_metric(MetricSpec(name="judge"))


def test_a_batch_provider_cannot_judge():
    class Batchy(BatchProvider):
        def run_batch(self, rows):
            return {"output": ["Grade: 5"] * rows.num_rows, "error": [None] * rows.num_rows}

    fake = FakeJudge()
    with pytest.raises(ValueError, match="cannot answer prompts"):
        judge_metric(Batchy(fake.cfg, fake.ctx))

    class DuckTyped:  # has a call(), but is no ChatProvider: the engine would not know how to drive it
        async def call(self, messages):
            return CallResult("Grade: 5")

    with pytest.raises(ValueError, match=r"cannot answer prompts: a judge must be a chat model"):
        judge_metric(DuckTyped())


def test_prompt_holds_rubric_question_reference_and_answer():
    msgs = judge_messages("Paris", "What is the capital of France?", "Paris", "Be exact.", (1, 5))
    assert [m["role"] for m in msgs] == ["system", "user"]
    user = msgs[1]["content"]
    for part in (
        "Be exact.",
        "What is the capital of France?",
        "[Reference answer]\nParis",
        "[Answer to grade]\nParis",
        "1 to 5",
    ):
        assert part in user
    assert "Grade: <n>" in msgs[0]["content"] and "a whole number from 1 (worst) to 5 (best)" in msgs[0]["content"]
    # no reference, no question: those sections are left out; several references are listed
    bare = judge_messages("x", None, None, "r", (0, 1))[1]["content"]
    assert "[Reference" not in bare and "[Question]" not in bare
    multi = judge_messages("x", "q", ["a", "b"], "r", (1, 5))[1]["content"]
    assert "Reference answers (any is acceptable)]\n- a\n- b" in multi
    # the prompt never has a line of its own starting with ANSWER: (the fake server's answer line)
    assert not any(line.startswith("ANSWER:") for m in msgs for line in m["content"].splitlines())


def test_scores_details_and_failed_outputs():
    replies = {"good": "Grade: 5", "ok": "Score: 3 out of 5", "bad": "**1**", "huh": "I cannot tell.", "wild": "Grade: 9"}
    p = FakeJudge(reply=lambda a: replies[a])
    m = judge_metric(p)
    preds = ["good", "ok", "bad", "huh", "wild", None]
    s = m.score_each(preds, ["r"] * 6, inputs=["q"] * 6)
    assert s[:3].tolist() == [1.0, 0.5, 0.0]
    assert math.isnan(s[3]) and math.isnan(s[4])  # unparseable, out of range
    assert s[5] == 0.0  # a failed call is wrong, and not sent to the judge
    assert m.last_details == ["Grade: 5", "Score: 3 out of 5", "**1**", "I cannot tell.", "Grade: 9", None]
    assert sorted(p.calls) == sorted(replies)
    assert m.usage == {
        "requests": 5,
        "prompt_tokens": 500,
        "completion_tokens": 15,
        "errors": 0,
        "cache_hits": 0,
        "deduplicated": 0,
    }
    assert p.started == p.closed == 1
    # the mean ignores NaN, as for every decomposable metric
    assert np.nanmean(s) == pytest.approx((1 + 0.5 + 0 + 0) / 4)


def test_pass_threshold_makes_it_a_pass_rate():
    p = FakeJudge(reply=lambda a: f"Grade: {a}")
    m = judge_metric(p, pass_threshold=4)
    assert m.score_each(["5", "4", "3", "x"], [None] * 4, inputs=None).tolist()[:3] == [1.0, 1.0, 0.0]


def test_identical_triples_are_graded_once_across_calls():
    p = FakeJudge()
    m = judge_metric(p)
    m.score_each(["a", "a", "b"], ["r", "r", "r"], inputs=["q", "q", "q"])
    assert sorted(p.calls) == ["a", "b"]
    # a second model: "a" with the same question and reference is known; other question or reference is not
    s = m.score_each(["a", "a", "a", "b"], ["r", "r2", "r", "r"], inputs=["q", "q", "q2", "q"])
    assert s.tolist() == [1.0] * 4
    assert sorted(p.calls) == ["a", "a", "a", "b"]
    assert m.usage["requests"] == 4 and m.usage["deduplicated"] == 3
    assert m.last_details == ["Grade: 5"] * 4


def test_concurrency_is_the_judge_models():
    p = FakeJudge(max_concurrency=3, delay=0.02)
    m = judge_metric(p)
    m.score_each([f"a{i}" for i in range(12)], ["r"] * 12, inputs=["q"] * 12)
    assert len(p.calls) == 12 and p.max_in_flight == 3


def test_retries_and_judge_errors():
    def fail(answer, attempt):
        if answer == "flaky" and attempt == 1:
            return ProviderError("HTTP 429", status=429, retry_after=0.01)
        if answer == "broken":
            return ProviderError("HTTP 400: bad", status=400)
        return None

    p = FakeJudge(fail=fail)
    m = judge_metric(p, max_error_rate=0.5)
    s = m.score_each(["flaky", "broken", "fine"], ["r"] * 3, inputs=["q"] * 3)
    assert s[0] == 1.0 and math.isnan(s[1]) and s[2] == 1.0
    assert p.attempts["flaky"] == 2 and p.attempts["broken"] == 1  # 400 is not retried
    assert m.last_details[1] == "[judge error] HTTP 400: bad"
    assert m.usage["errors"] == 1 and m.usage["requests"] == 3
    # above max_error_rate (default 10%) the scoring fails, naming the first error
    with pytest.raises(MetricError, match=r"1 of 2 calls failed.*HTTP 400"):
        judge_metric(FakeJudge(fail=fail)).score_each(["broken", "fine"], ["r"] * 2, inputs=["q"] * 2)


def test_works_inside_a_running_event_loop():
    p = FakeJudge()
    m = judge_metric(p)

    async def main():  # e.g. a notebook: the metric runs its calls on a loop of its own
        return m.score_each(["a", "b"], ["r", "r"], inputs=["q", "q"])

    assert asyncio.run(main()).tolist() == [1.0, 1.0]


def test_the_response_cache_is_used(tmp_path):
    path = str(tmp_path / "cache" / "responses.sqlite")
    p1 = FakeJudge()
    m1 = judge_metric(p1)
    m1.set_cache(path, "use")
    m1.score_each(["a", "b"], ["r", "r"], inputs=["q", "q"])
    assert len(p1.calls) == 2
    p2 = FakeJudge()
    m2 = judge_metric(p2)
    m2.set_cache(path, "use")
    assert m2.score_each(["a", "b", "c"], ["r"] * 3, inputs=["q"] * 3).tolist() == [1.0] * 3
    assert p2.calls == ["c"]
    assert m2.usage["cache_hits"] == 2 and m2.usage["requests"] == 3  # cached gradings are priced as if paid
    p3 = FakeJudge()
    m3 = judge_metric(p3)
    m3.set_cache(path, "refresh")
    m3.score_each(["a"], ["r"], inputs=["q"])
    assert p3.calls == ["a"]


# ---------------------------------------------------------------------------------------
# a whole run, judged by the fake OpenAI-compatible server

# (question, reference, model a's output, model b's output); the fake judge replies with the
# text after "ANSWER:" in its prompt, i.e. in the replayed output being graded
ROWS = [
    ("Capital of France?", "Paris", "Paris\nANSWER: Grade: 5", "Paris\nANSWER: Grade: 5"),
    ("Capital of Italy?", "Rome", "Milan\nANSWER: Grade: 2", "Rome\nANSWER: **4**"),
    ("Capital of Spain?", "Madrid", "Madrid\nANSWER: 4/5", "ANSWER: no idea"),
    ("Capital of Peru?", "Lima", "ANSWER: Grade: 9", "Lima\nANSWER: Score: 3 out of 5"),
    ("Capital of Chad?", None, 'N\'Djamena\nANSWER: {"grade": 1}', None),
    ("Capital of France?", "Paris", "Paris\nANSWER: Grade: 5", "Paris\nANSWER: Grade: 5"),  # e0's triple again
]
EXPECTED = {  # example -> (model a, model b) normalised scores on the 1..5 scale
    "e0": (1.0, 1.0),
    "e1": (0.25, 0.75),
    "e2": (0.75, None),
    "e3": (None, 0.5),
    "e4": (0.0, 0.0),
    "e5": (1.0, 1.0),
}
REPLIES = {
    "e0": ("Grade: 5", "Grade: 5"),
    "e1": ("Grade: 2", "**4**"),
    "e2": ("4/5", "no idea"),
    "e3": ("Grade: 9", "Score: 3 out of 5"),
    "e4": ('{"grade": 1}', None),
    "e5": ("Grade: 5", "Grade: 5"),
}
RUBRIC = "Is the capital city right?"
PRICE_IN, PRICE_OUT = 3.0, 15.0


def make_config(tmp_path: Path, base_url: str) -> Path:
    rows = [{"id": f"e{i}", "question": q, "label": r, "out_a": a, "out_b": b} for i, (q, r, a, b) in enumerate(ROWS)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          a: {{provider: replay, output_column: out_a}}
          b: {{provider: replay, output_column: out_b}}
          grader:
            provider: openai
            model: mock-model
            base_url: {base_url}
            params: {{temperature: 0, max_tokens: 16}}
            max_concurrency: 4
            price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}
        pipelines:
          qa:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "Question: {{question}}"}}
            models: [a, b]
            metrics:
              - name: judge
                judge: grader
                args: {{rubric: "{RUBRIC}", scale: [1, 5]}}
            max_error_rate: 0.2
            bootstrap: 20
    """,
    )
    return tmp_path / "pipelines.yaml"


def _tokens(text_chars: int) -> int:
    return (text_chars + 3) // 4  # the fake server's count: ceil(chars / 4)


def expected_usage() -> dict:
    """What the fake server bills for the distinct gradings of the run, by hand."""
    seen, pt, ct = set(), 0, 0
    for q, ref, *outs in ROWS:
        for out in outs:
            if out is None or (q, ref, out) in seen:
                continue
            seen.add((q, ref, out))
            msgs = judge_messages(out, f"Question: {q}", ref, RUBRIC, (1, 5))
            pt += _tokens(sum(len(m["content"]) for m in msgs))
            ct += max(1, _tokens(len(out.split("ANSWER: ", 1)[1])))
    return {"requests": len(seen), "prompt_tokens": pt, "completion_tokens": ct}


def test_a_judged_run_end_to_end(tmp_path, server):
    server.reset()
    cfg = make_config(tmp_path, server.base_url)
    ctx = run_local(str(cfg), "qa", DAY)
    rf = ctx.folder
    want = expected_usage()
    # 12 answers: one failed call (not judged), e0 is alike for a and b, e5 repeats e0 for both
    assert want["requests"] == 8
    assert server.stats()["requests_total"] == 8  # no triple graded twice

    scores = rf.read_table("scores.parquet").to_pandas()
    scores = scores[scores.metric == "judge"].set_index(["model", "example_id"])
    for eid, pair in EXPECTED.items():
        for model, value, reply in zip(("a", "b"), pair, REPLIES[eid]):
            row = scores.loc[(model, eid)]
            if reply is None:  # the replayed call failed: wrong, not judged
                assert value == 0.0 and row.value == 0.0 and pd.isna(row.detail)
            elif value is None:
                assert math.isnan(row.value) and row.detail == reply  # unparseable / out of range: raw reply kept
            else:
                assert row.value == pytest.approx(value) and row.detail == reply

    metrics = rf.read_table("metrics.parquet").to_pandas()
    overall = metrics[(metrics.metric == "judge") & (metrics.slice == "all")].set_index("model")
    assert overall.loc["a", "value"] == pytest.approx((1 + 0.25 + 0.75 + 0 + 1) / 5)
    assert overall.loc["b", "value"] == pytest.approx((1 + 0.75 + 0.5 + 0 + 1) / 5)
    assert overall.loc["b", "errors"] == 1 and bool(overall.loc["a", "higher_is_better"])

    usage = rf.manifest()["stages"]["score"]["judges"]["judge"]
    assert {k: usage[k] for k in want} == want
    assert usage["errors"] == 0 and usage["cache_hits"] == 0 and usage["deduplicated"] == 11 - 8

    costs = rf.read_table("costs.parquet").to_pandas().set_index("model")
    line = costs.loc["judge:grader"]
    usd = (want["prompt_tokens"] * PRICE_IN + want["completion_tokens"] * PRICE_OUT) / 1e6
    assert line["kind"] == "judge" and line["requests"] == 8
    assert line["cost_usd"] == pytest.approx(usd)
    assert line["cost_per_1k_usd"] == pytest.approx(usd / 8 * 1000)
    assert {"a", "b"} <= set(costs.index)

    # a second run grades from the response cache: no new call, the same scores and cost line
    ctx2 = run_local(str(cfg), "qa", DAY)
    assert ctx2.run_id != ctx.run_id
    assert server.stats()["requests_total"] == 8
    usage2 = ctx2.folder.manifest()["stages"]["score"]["judges"]["judge"]
    assert usage2["cache_hits"] == 8 and usage2["requests"] == 8
    scores2 = ctx2.folder.read_table("scores.parquet").to_pandas().set_index(["model", "example_id"])
    assert np.allclose(scores2["value"], scores["value"].reindex(scores2.index), equal_nan=True)
    assert ctx2.folder.read_table("costs.parquet").to_pandas().set_index("model").loc[
        "judge:grader", "cost_usd"
    ] == pytest.approx(usd)
