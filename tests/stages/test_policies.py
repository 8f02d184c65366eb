"""Cascades and routes scored and priced from recorded answers (assay.policies), the policies:
config, the cost stage's policies.parquet and ``assay whatif``.

The golden figures are worked out by hand in the comments; nothing here calls a model again
except the end-to-end run, which calls the project's OpenAI-compatible test server once per example.
"""

import json
import math
import textwrap
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from assay import store
from assay.config import ConfigError
from assay.config.schema import PipelineConfig
from assay.policies import answers, evaluate, evaluate_one, from_run
from assay.policies import simulate as SIM
from assay.policies.figures import average_pgr, figures
from assay.preflight import load_checked
from tests.conftest import write_config

# --------------------------------------------------------------------------------------------- the tiny run
# Ten examples e0..e9, two models:
#   small: self-hosted, $1 per 1,000 requests ($0.001 a request, priced by time), always-on floor $100/month,
#          latency 0.1 s, confidence  0.95 0.90 0.85 0.30 0.20 0.99 0.60 0.70 0.10 0.50
#          correct                       1    1    0    0    0    1    1    0    0    1     -> accuracy 0.5
#   big:   API at $1,000 per million input and $2,000 per million output tokens; 10 prompt tokens and
#          i completion tokens on example i: $0.01 + $0.002·i a request ($0.19 over the ten, $19 per 1,000);
#          latency 1 + 0.1·i s
#          correct                       1    1    1    1    0    1    1    1    1    0     -> accuracy 0.8
SMALL_CONF = [0.95, 0.90, 0.85, 0.30, 0.20, 0.99, 0.60, 0.70, 0.10, 0.50]
SMALL_OK = [1, 1, 0, 0, 0, 1, 1, 0, 0, 1]
BIG_OK = [1, 1, 1, 1, 0, 1, 1, 1, 1, 0]
LABELS = ["x", "y"] * 5


def _pipeline(policies: dict | None = None, monthly: int | None = 50_000) -> dict:
    return {
        "dataset": {"source": "d.parquet", "id": "id", "reference": "label", "slices": ["lang"]},
        "models": ["small", "big"],
        "metrics": ["accuracy"],
        "bootstrap": 200,
        "cost": {"monthly_requests": monthly},
        "gates": {"accuracy": {"min": 0.65}},
        "policies": policies or {},
    }


def write_tiny_run(root) -> store.RunFolder:
    """The run folder of the ten examples above, as the score and cost stages leave it."""
    rf = store.Store(root).run("tiny", date(2026, 11, 1), "r1")
    ids = [f"e{i}" for i in range(10)]
    rf.write_table(store.DATASET, pa.table({"example_id": ids, "text": ids, "reference": LABELS, "lang": ["en", "de"] * 5}))
    wrong = {"x": "y", "y": "x"}
    rows = []
    for i in range(10):
        rows.append(
            {
                "example_id": ids[i],
                "model": "small",
                "output": LABELS[i] if SMALL_OK[i] else wrong[LABELS[i]],
                "prompt_tokens": None,
                "completion_tokens": None,
                "latency_s": 0.1,
                "error": None,
                "confidence": SMALL_CONF[i],
            }
        )
        rows.append(
            {
                "example_id": ids[i],
                "model": "big",
                "output": LABELS[i] if BIG_OK[i] else wrong[LABELS[i]],
                "prompt_tokens": 10,
                "completion_tokens": i,
                "latency_s": 1 + 0.1 * i,
                "error": None,
                "confidence": None,
            }
        )
    resp = pd.DataFrame(rows)
    rf.write_table(f"{store.RESPONSES}/part-all-00000.parquet", pa.Table.from_pandas(resp, preserve_index=False))
    scores = pd.DataFrame(
        [
            {
                "example_id": r["example_id"],
                "model": r["model"],
                "metric": "accuracy",
                "value": float(r["output"] == LABELS[int(r["example_id"][1:])]),
                "detail": None,
            }
            for r in rows
        ]
    )
    rf.write_table(store.SCORES, scores)
    rf.write_table(
        store.METRICS,
        pd.DataFrame(
            [
                {
                    "model": "small",
                    "metric": "accuracy",
                    "slice": "all",
                    "value": 0.5,
                    "n": 10,
                    "ci_low": 0.2,
                    "ci_high": 0.8,
                    "errors": 0,
                    "higher_is_better": True,
                },
                {
                    "model": "big",
                    "metric": "accuracy",
                    "slice": "all",
                    "value": 0.8,
                    "n": 10,
                    "ci_low": 0.5,
                    "ci_high": 1.0,
                    "errors": 0,
                    "higher_is_better": True,
                },
            ]
        ),
    )
    price = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0, "source": "config"}
    from assay.costing import COST_COLUMNS

    rf.write_table(
        store.COSTS,
        pd.DataFrame(
            [
                {
                    "model": "small",
                    "kind": "self-hosted",
                    "requests": 10,
                    "errors": 0,
                    "cost_usd": 0.01,
                    "cost_per_1k_usd": 1.0,
                    "monthly_cost_usd": 100.0,
                    "fixed_monthly_usd": 100.0,
                    "latency_p95_s": 0.1,
                    "price_json": "{}",
                },
                {
                    "model": "big",
                    "kind": "api",
                    "requests": 10,
                    "errors": 0,
                    "cost_usd": 0.19,
                    "cost_per_1k_usd": 19.0,
                    "monthly_cost_usd": 950.0,
                    "fixed_monthly_usd": 0.0,
                    "latency_p95_s": 1.855,
                    "price_json": json.dumps(price),
                },
            ],
            columns=COST_COLUMNS,
        ),
    )
    rf.write_json(
        store.MANIFEST,
        {
            "pipeline": "tiny",
            "as_of": "2026-11-01",
            "run_id": "r1",
            "status": "complete",
            "config": {"pipeline": _pipeline(), "models": {}},
        },
    )
    return rf


def _cfg(policies: dict, monthly: int | None = 50_000) -> PipelineConfig:
    return PipelineConfig.model_validate(_pipeline(policies, monthly))


CASCADE = {"kind": "cascade", "models": ["small", "big"], "rule": {"kind": "confidence", "threshold": 0.8}}


def test_cascade_by_hand(tmp_path):
    rf = write_tiny_run(tmp_path)
    cfg = _cfg({"c": CASCADE})
    a = from_run(rf, cfg)
    # per-row costs: small $0.001 each; big $0.01 + $0.002·i (tokens × the recorded price)
    assert a.cost[:, a.index("small")] == pytest.approx([0.001] * 10)
    assert a.cost[:, a.index("big")] == pytest.approx([0.01 + 0.002 * i for i in range(10)])
    table, sweep = evaluate(a, cfg.policies, resamples=200, seed=0, monthly_requests=50_000)
    r = table.iloc[0]
    # small's confidence ≥ 0.8 on e0, e1, e2, e5: those 4 are answered by small, the other 6 escalate
    assert r["escalated"] == pytest.approx(0.6)
    assert r["calls_per_request"] == pytest.approx(1.6)
    assert json.loads(r["answered_by"]) == {"small": pytest.approx(0.4), "big": pytest.approx(0.6)}
    # answers: e0 s1, e1 s1, e2 s0, e3 b1, e4 b0, e5 s1, e6 b1, e7 b1, e8 b1, e9 b0 -> 7 of 10
    assert r["quality"] == pytest.approx(0.7)
    assert r["quality_ci_low"] <= 0.7 <= r["quality_ci_high"]
    # cost: 10 × $0.001 for small, plus big on e3, e4, e6, e7, e8, e9: 6 × $0.01 + $0.002 × (3+4+6+7+8+9 = 37)
    # = $0.06 + $0.074 = $0.134; ($0.01 + $0.134) / 10 = $0.0144 a request -> $14.40 per 1,000
    assert r["cost_per_1k_usd"] == pytest.approx(14.4)
    # latency: 0.1 s on the 4 answered by small; 0.1 + (1 + 0.1·i) on the escalated ones:
    # 1.4 1.5 1.7 1.8 1.9 2.0. Sorted: 0.1 ×4, 1.4, 1.5, 1.7, 1.8, 1.9, 2.0; the 95th percentile
    # (linear, position 0.95 × 9 = 8.55) = 1.9 + 0.55 × 0.1 = 1.955
    assert r["latency_p95_s"] == pytest.approx(1.955)
    # APGR against small (0.5) and big (0.8): (0.7 − 0.5) / (0.8 − 0.5) = 2/3
    assert (r["weak_model"], r["strong_model"]) == ("small", "big")
    assert r["apgr"] == pytest.approx(2 / 3)
    # matched quality: the cheapest single model with accuracy ≥ 0.7 is big ($19 per 1,000):
    # saving 1 − 14.4 / 19 = 0.242105...; $4.60 per 1,000
    assert r["matched_model"] == "big"
    assert r["saving"] == pytest.approx(1 - 14.4 / 19)
    assert r["saving_per_1k_usd"] == pytest.approx(4.6)
    assert r["saving_ci_low"] <= r["saving"] <= r["saving_ci_high"]
    # monthly at 50,000 requests: small's always-on floor $100 (50,000 × $0.001 = $50 is below it), plus
    # big on 60 % of them at the mean cost of its escalated calls, $0.134 / 6: 30,000 × 0.134 / 6 = $670
    assert r["monthly_cost_usd"] == pytest.approx(770.0)
    # the sweep: threshold 0 keeps every answer of small (0.5 at $1 per 1,000), 1.0 escalates all
    # (0.8 at $1 + $19 = $20 per 1,000); the configured 0.8 is the row above
    by_t = sweep.set_index("threshold")
    assert by_t.loc[0.0, "quality"] == pytest.approx(0.5) and by_t.loc[0.0, "cost_per_1k_usd"] == pytest.approx(1.0)
    assert by_t.loc[1.0, "quality"] == pytest.approx(0.8) and by_t.loc[1.0, "cost_per_1k_usd"] == pytest.approx(20.0)
    assert by_t.loc[0.8, "configured"] and by_t.loc[0.8, "quality"] == pytest.approx(0.7)
    assert sweep["configured"].sum() == 1


def test_cascade_rules_valid_agree_judge(tmp_path):
    rf = write_tiny_run(tmp_path)
    a = from_run(rf, _cfg({}))
    # valid: every answer is a label (x or y), so nothing escalates
    o = SIM.cascade(
        a,
        ["small", "big"],
        _cfg({"v": {"kind": "cascade", "models": ["small", "big"], "rule": {"kind": "valid", "labels": True}}})
        .policies["v"]
        .rule,
    )
    assert not o.escalated.any() and (o.chosen == a.index("small")).all()
    # regex that only "x" passes: the examples where small answered y escalate. The labels are
    # x y x y x y x y x y and small's wrong answers (e2 e3 e4 e7 e8) flip them, so small answers
    # x y y x y y x x y y -> y on e1 e2 e4 e5 e8 e9: 6 escalate
    o = SIM.cascade(
        a,
        ["small", "big"],
        _cfg({"v": {"kind": "cascade", "models": ["small", "big"], "rule": {"kind": "valid", "regex": "x"}}}).policies["v"].rule,
    )
    assert o.escalated.tolist() == [False, True, True, False, True, True, False, False, True, True]
    # judge: the grade is accuracy itself here; small's right answers are kept, the rest escalate
    # (e2 e3 e4 e7 e8): quality = small's 5 right + big on those 5 (1 1 0 1 1 = 4) -> 0.9
    pol = _cfg(
        {"j": {"kind": "cascade", "models": ["small", "big"], "rule": {"kind": "judge", "metric": "accuracy", "threshold": 0.5}}}
    ).policies["j"]
    row, _ = evaluate_one(a, "j", pol, resamples=0)
    assert row["quality"] == pytest.approx(0.9) and row["escalated"] == pytest.approx(0.5)
    # agree needs three models: small (x y y x y y x x y y, as above) and big, whose wrong answers on
    # e4 and e9 flip the label (x y x y y y x y x x), agree on e0 e1 e4 e5 e6; e2 e3 e7 e8 e9 go to
    # the third model
    b = answers(
        pd.DataFrame({"example_id": a.ids, "reference": LABELS}),
        pd.concat([_resp(a, "small"), _resp(a, "big"), _resp(a, "big", "big2")]),
        pd.concat([_scores(a, "small"), _scores(a, "big"), _scores(a, "big", "big2")]),
        pd.DataFrame(
            [
                {"model": m, "kind": "conventional", "cost_per_1k_usd": c, "cost_usd": c / 100}
                for m, c in (("small", 1.0), ("big", 2.0), ("big2", 3.0))
            ]
        ),
        "accuracy",
    )
    rule = _cfg({"g": {"kind": "cascade", "models": ["small", "big", "big2"], "rule": {"kind": "agree"}}}).policies["g"].rule
    o = SIM.cascade(b, ["small", "big", "big2"], rule)
    assert o.escalated.tolist() == [False, False, True, True, False, False, False, True, True, True]
    # e4: both wrong the same way, so the agreed (wrong) answer of small is given
    assert o.chosen[4] == b.index("small")
    # cost per request: small + big always ($0.001 + $0.002), big2 on 5 of 10 ($0.003 × 0.5): $0.0045
    assert o.cost.mean() == pytest.approx(0.003 + 0.0015)


def _resp(a, model, name=None):
    j = a.index(model)
    return pd.DataFrame(
        {"example_id": a.ids, "model": name or model, "output": a.output[:, j], "error": None, "latency_s": a.latency[:, j]}
    )


def _scores(a, model, name=None):
    return pd.DataFrame(
        {"example_id": a.ids, "model": name or model, "metric": "accuracy", "value": a.quality[:, a.index(model)]}
    )


def test_apgr_on_a_known_curve():
    """The area version of APGR (the sweep's PGR averaged over the share sent to the strong model,
    RouteLLM's figure): a random router recovers the gap in proportion, 1/2; PGR = x² gives 1/3;
    PGR = √x gives 2/3 (checked against scipy's quadrature)."""
    from scipy.integrate import quad

    x = np.linspace(0, 1, 201)
    for f in (lambda t: t, lambda t: t**2, np.sqrt):
        q = 0.6 + 0.3 * f(x)  # weak 0.6, strong 0.9
        exact = quad(f, 0, 1)[0]
        assert average_pgr(x, q, 0.6, 0.9) == pytest.approx(exact, abs=2e-3)
    # points out of order and a duplicate share are fine; a gap of zero has no APGR
    assert average_pgr([1, 0, 0.5, 0.5], [0.9, 0.6, 0.75, 0.75], 0.6, 0.9) == pytest.approx(0.5)
    assert math.isnan(average_pgr([0, 1], [0.7, 0.7], 0.7, 0.7))


def _slice_answers(n=400, seed=3):
    """Two models on two languages: cheap A is as good as B on en (0.9 against 0.9) and far worse
    on de (0.5 against 0.9); A costs $1 per 1,000, B $10."""
    rng = np.random.default_rng(seed)
    lang = np.array(["en", "de"] * (n // 2))
    a_ok = np.where(lang == "en", rng.random(n) < 0.9, rng.random(n) < 0.5).astype(float)
    b_ok = (rng.random(n) < 0.9).astype(float)
    ids = [f"t{i}" for i in range(n)]
    ds = pd.DataFrame({"example_id": ids, "reference": "x", "lang": lang})
    resp = pd.concat(
        [
            pd.DataFrame({"example_id": ids, "model": m, "output": "x", "error": None, "latency_s": lat})
            for m, lat in (("A", 0.1), ("B", 0.5))
        ]
    )
    scores = pd.concat(
        [pd.DataFrame({"example_id": ids, "model": m, "metric": "accuracy", "value": v}) for m, v in (("A", a_ok), ("B", b_ok))]
    )
    costs = pd.DataFrame(
        [
            {"model": "A", "kind": "conventional", "cost_per_1k_usd": 1.0, "cost_usd": n / 1000},
            {"model": "B", "kind": "conventional", "cost_per_1k_usd": 10.0, "cost_usd": 10 * n / 1000},
        ]
    )
    return answers(ds, resp, scores, costs, "accuracy", slices=["lang"]), a_ok, b_ok, lang


def test_route_learns_the_right_model_per_slice():
    a, a_ok, b_ok, lang = _slice_answers()
    pol = PipelineConfig.model_validate(
        {**_pipeline({"r": {"kind": "route", "column": "lang", "tolerance": 0.05}}), "models": ["A", "B"]}
    ).policies["r"]
    row, sweep = evaluate_one(a, "r", pol, resamples=200)
    assert json.loads(row["routes"]) == {"de": "B", "en": "A"}
    # scored on the half it was not learned on: A's answers on en, B's on de, computed here directly
    learn = SIM.learn_mask(a.n, 0.5, 0)
    assert learn.sum() == 200
    ev = ~learn
    expected = np.where(lang == "en", a_ok, b_ok)[ev].mean()
    assert row["n"] == 200 and row["quality"] == pytest.approx(expected)
    assert row["cost_per_1k_usd"] == pytest.approx(np.where(lang == "en", 1.0, 10.0)[ev].mean())
    assert row["escalated"] == 0.0
    # tolerance 0 picks the best on each slice; tolerance 1 the cheapest everywhere
    by = {r["threshold"]: r for r in sweep}
    assert by[0.0]["cost_per_1k_usd"] >= row["cost_per_1k_usd"] - 1e-12
    assert by[1.0]["cost_per_1k_usd"] == pytest.approx(1.0)
    # a large λ (quality given up per dollar per 1,000) also sends everything to A
    lam = PipelineConfig.model_validate(
        {**_pipeline({"r": {"kind": "route", "column": "lang", "lambda": 1.0}}), "models": ["A", "B"]}
    ).policies["r"]
    row, _ = evaluate_one(a, "r", lam, resamples=0)
    assert json.loads(row["routes"]) == {"de": "A", "en": "A"}


def test_quality_interval_matches_scipy_bootstrap():
    """The policy's interval is a percentile bootstrap over examples: with many resamples it agrees
    with scipy's percentile bootstrap of the same per-example scores."""
    from scipy.stats import bootstrap

    a, a_ok, b_ok, lang = _slice_answers(n=600)
    o = SIM.cascade(
        a,
        ["A", "B"],
        _cfg({"c": {"kind": "cascade", "models": ["A", "B"], "rule": {"kind": "judge", "metric": "accuracy", "threshold": 0.5}}})
        .policies["c"]
        .rule,
    )
    f = figures(a, o, np.ones(a.n, bool), ["A", "B"], resamples=4000, seed=1)
    per = o.values(a.quality)
    ref = bootstrap((per,), np.mean, n_resamples=4000, method="percentile", random_state=2).confidence_interval
    assert f["quality_ci_low"] == pytest.approx(ref.low, abs=0.006)
    assert f["quality_ci_high"] == pytest.approx(ref.high, abs=0.006)


def _policy_config(tmp_path, policies: str):
    pq.write_table(
        pa.table({"id": [1, 2], "text": ["a", "b"], "label": ["x", "y"], "lang": ["en", "de"]}), tmp_path / "d.parquet"
    )
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(
        textwrap.dedent("""
        models:
          a: {provider: replay, output_column: text}
          b: {provider: replay, output_column: label}
        pipelines:
          p:
            dataset: {source: d.parquet, id: id, reference: label, slices: [lang]}
            models: [a, b]
            metrics: [accuracy]
            policies:
    """)
        + textwrap.indent(textwrap.dedent(policies), " " * 6)
    )
    with pytest.raises(ConfigError) as e:
        load_checked(cfg)
    return e.value.format()


def test_policy_config_errors_name_the_key_path(tmp_path):
    text = _policy_config(
        tmp_path,
        """
        c1: {kind: cascade, models: [a, zz], rule: {kind: confidence, threshold: 0.5}}
        c2: {kind: route, column: channel}
        c3: {kind: cascade, models: [a, b], rule: {kind: judge, threshold: 0.5}}
    """,
    )
    assert "pipelines.p.policies.c1.models[1] (line 12): model 'zz' is not one of the pipeline's models (a, b)" in text
    assert "pipelines.p.policies.c2.column (line 13)" in text and "dataset.slices" in text
    assert "pipelines.p.policies.c3.rule.metric (line 14)" in text
    text = _policy_config(
        tmp_path,
        """
        c1: {kind: cascad, models: [a, b]}
        c2: {kind: cascade, models: [a, b], rule: {kind: agre}}
        c3: {kind: cascade, models: [a, b], rule: {kind: confidence, threshold: 2}}
        c4: {kind: cascade, models: [a, b], rule: {kind: agree}}
    """,
    )
    assert "pipelines.p.policies.c1.kind (line 12): unknown policy kind 'cascad'; did you mean 'cascade'?" in text
    assert "pipelines.p.policies.c2.rule.kind (line 13): unknown rule kind 'agre'; did you mean 'agree'?" in text
    assert "pipelines.p.policies.c3.rule.threshold (line 14)" in text
    assert "pipelines.p.policies.c4 (line 15): an agree rule compares the first two models" in text


# --------------------------------------------------------------------------------------------- assay whatif
def _whatif(*args):
    from flows.cli.main import app

    return CliRunner().invoke(app, ["whatif", *map(str, args)])


def test_whatif_prints_the_cascade_and_rejects_bad_input(tmp_path):
    rf = write_tiny_run(tmp_path)
    r = _whatif(rf.url, "--cascade", "small,big", "--rule", "confidence:0.8", "--format", "json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["policy"]["quality"] == pytest.approx(0.7) and out["policy"]["cost_per_1k_usd"] == pytest.approx(14.4)
    assert out["policy"]["escalated"] == pytest.approx(0.6) and out["policy"]["apgr"] == pytest.approx(2 / 3)
    assert any(s["configured"] and s["threshold"] == 0.8 for s in out["sweep"])
    r = _whatif(rf.url, "--cascade", "small,big", "--rule", "confidence:0.8")
    assert r.exit_code == 0 and "small → big" in r.output and "confidence ≥ 0.8" in r.output and "60.0%" in r.output
    r = _whatif(rf.url, "--cascade", "small,big", "--rule", "confidence:0.8", "--format", "csv")
    row = pd.read_csv(__import__("io").StringIO(r.output))
    assert r.exit_code == 0 and row["quality"].iloc[0] == pytest.approx(0.7)
    r = _whatif(rf.url, "--route", "lang", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.output)["policy"]["n"] == 5
    for bad, words in (
        (["--cascade", "small,huge", "--rule", "confidence:0.8"], "model 'huge' is not in this run"),
        (["--cascade", "small,big", "--rule", "confident:0.8"], "is not a rule"),
        (["--cascade", "small,big", "--rule", "confidence:high"], "is not a threshold"),
        (["--cascade", "small,big", "--rule", "confidence:1.5"], "rule.threshold"),
        (["--cascade", "small,big"], "needs --rule"),
        (["--route", "channel"], "not a slice column"),
        (["--route", "lang", "--cascade", "small,big"], "give --cascade"),
    ):
        r = _whatif(rf.url, *bad)
        assert r.exit_code == 2, (bad, r.output)
        assert words in r.output, (bad, r.output)
    assert _whatif(tmp_path / "nowhere", "--route", "lang").exit_code == 2


# --------------------------------------------------------------------------------------------- end to end
def test_run_with_policies_through_the_test_server(tmp_path, fake_server):
    """A live model on the test server (asked for log-probabilities because a cascade escalates on
    its confidence) and a replayed strong one: the run writes policies.parquet, the confidences in
    responses are the ones the server gave, and the summary shows the cascade."""
    from assay.stages import run_local

    n = 40
    rng = np.random.default_rng(5)
    label = rng.choice(["billing", "refund"], n)
    conf = np.round(rng.uniform(0.05, 0.99, n), 2)
    # the small model is right when it is sure (confidence ≥ 0.5) and guesses "billing" otherwise
    guess = np.where(conf >= 0.5, label, "billing")
    pq.write_table(
        pa.table(
            {
                "id": list(range(n)),
                "guess": guess.tolist(),
                "conf": [f"{c:.2f}" for c in conf],
                "label": label.tolist(),
                "lang": ["en", "de"] * (n // 2),
            }
        ),
        tmp_path / "d.parquet",
    )
    srv = fake_server(latency=0.0)
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          small:
            provider: openai
            model: small-1
            base_url: {srv.base_url}
            price: {{input_per_mtok: 0.1, output_per_mtok: 0.4}}
          big:
            provider: replay
            output_column: label
            hosting: {{usd_per_gpu_hour: 3.6, throughput_rps: 1}}
        pipelines:
          p:
            dataset: {{source: d.parquet, id: id, reference: label, slices: [lang]}}
            prompt: {{template: "ANSWER: {{guess}}\\nCONFIDENCE: {{conf}}\\nTicket."}}
            models: [small, big]
            metrics: [accuracy]
            bootstrap: 100
            cost: {{monthly_requests: 100000}}
            policies:
              sure-or-big: {{kind: cascade, models: [small, big], rule: {{kind: confidence, threshold: 0.5}}}}
              by-lang: {{kind: route, column: lang}}
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "p", date(2026, 11, 2), cache_mode="off")
    srv.stop()
    rf = ctx.folder
    from assay.responses import read_responses

    resp = read_responses(rf).to_pandas()
    small = resp[resp["model"] == "small"].set_index("example_id").sort_index(key=lambda s: s.astype(int))
    assert small["confidence"].to_numpy() == pytest.approx(conf.astype(float))
    assert resp.loc[resp["model"] == "big", "confidence"].isna().all()
    pol = rf.read_table(store.POLICIES).to_pandas().set_index("policy")
    c = pol.loc["sure-or-big"]
    # escalated where the confidence is below 0.5; then big (always right) answers: quality 1.0
    assert c["escalated"] == pytest.approx(float(np.mean(conf < 0.5)))
    assert c["quality"] == pytest.approx(1.0)
    # the small model's own accuracy: right when sure, and a guess of billing is right on billing tickets
    small_acc = float(np.mean(guess == label))
    assert c["weak_model"] == "small" and c["strong_model"] == "big" and c["apgr"] == pytest.approx(1.0)
    assert small_acc < 1.0
    sweep = rf.read_table(store.POLICY_SWEEP).to_pandas()
    assert set(sweep["policy"]) == {"sure-or-big", "by-lang"} and sweep["configured"].sum() == 2
    summary = rf.read_bytes(store.SUMMARY).decode()
    assert "## Cascades and routes" in summary and "sure-or-big" in summary and "small → big" in summary
    assert "policies.parquet" in (rf.manifest()["stages"]["cost"]["artifacts"])
    assert "sure-or-big" in rf.read_bytes(store.REPORT).decode()


def test_a_cheaper_passing_policy_becomes_the_recommendation(tmp_path):
    import assay.report.summary
    from assay.policies import write_policies

    rf = write_tiny_run(tmp_path)
    cfg = _cfg({"c": CASCADE})
    write_policies(rf, cfg)
    rt = assay.report.summary.RunTables.read(rf, cfg)
    table = assay.report.summary.headline(rt.metrics, rt.costs, cfg)
    # gate accuracy ≥ 0.65: small (0.5) fails; big (0.8) passes at $950 a month; the cascade (0.7)
    # passes at $770 a month (see test_cascade_by_hand): the cascade is recommended, big is the runner-up
    dec = assay.report.summary.decisions(table, cfg, rt.policies)
    rec = dec["recommendation"]
    assert rec.policy and rec.model == "c" and rec.runner_up == "big" and dec["cheapest_passing"] == "c (cascade)"
    assert rec.sentence.startswith("Deploy the cascade c (small → big; confidence ≥ 0.8)")
    assert "$770 a month" in rec.sentence and "big, at $950 a month" in rec.sentence
    assay.report.summary.build_report(rf, cfg, "tiny", history=False)
    assert "✓" in rf.read_bytes(store.SUMMARY).decode().split("## Cascades and routes")[1].split("##")[0]
    # the report's decision box: the front over single models and the policy, on the monthly cost
    box = rf.read_bytes(store.REPORT).decode().split("id='decision-box'>")[1].split("</ul>")[0]
    assert "<li>Quality/cost Pareto front (accuracy vs monthly cost at 50,000 requests): small, big, c (cascade)</li>" in box
    # a bar the cascade misses (0.75): big stays the recommendation, in the same words as without policies
    strict = PipelineConfig.model_validate({**_pipeline({"c": CASCADE}), "gates": {"accuracy": {"min": 0.75}}})
    with_pol, without = (
        assay.report.summary.decisions(table, strict, rt.policies)["recommendation"],
        assay.report.summary.decisions(table, strict)["recommendation"],
    )
    assert not with_pol.policy and with_pol.model == "big" and with_pol.sentence == without.sentence


def test_a_cascade_pays_the_floor_of_every_service_it_needs_even_one_it_never_called(tmp_path):
    rf = write_tiny_run(tmp_path)
    cfg = _cfg({"c": {**CASCADE, "rule": {"kind": "confidence", "threshold": 0.0}}})
    a = from_run(rf, cfg)
    # big served on its own machine too: an always-on floor of $500 a month, $0 at the margin here
    a.kinds["big"], a.fixed_monthly["big"], a.floor_monthly["big"] = "self-hosted", 500.0, 500.0
    row = evaluate(a, cfg.policies, resamples=0, monthly_requests=50_000)[0].iloc[0]
    # threshold 0: small answers every request and big is never called, yet a request may escalate to
    # it, so it must be up: floors 100 (small, written before floors were recorded: its fixed cost)
    # + 500 (big); small's 50,000 × $0.001 = $50 stays under its floor: 100 + 500 = 600 a month
    assert row["escalated"] == 0 and row["needs"] == "small, big"
    assert row["floor_monthly_usd"] == pytest.approx(100 + 500)
    assert row["monthly_cost_usd"] == pytest.approx(max(100, 50_000 * 0.001) + 500)


def _options(policy_quality: float, policy_monthly: float):
    """A headline table of two single models and one cascade with the given accuracy and monthly cost."""
    cfg = PipelineConfig.model_validate(_pipeline({"c": CASCADE}, monthly=1_000_000))
    table = pd.DataFrame(
        {
            "model": ["cheap", "api"],
            "kind": ["conventional", "api"],
            "accuracy": [0.85, 0.87],
            "accuracy_ci_low": [0.83, 0.85],
            "accuracy_ci_high": [0.87, 0.89],
            "cost_per_1k_usd": [0.0001, 0.0144],
            "monthly_cost_usd": [15.18, 14.43],
            "serving": ["1 always-on instance at $0.0208/hour", ""],
        }
    )
    table.loc[1, "monthly_cost_usd"] = 28.86
    pols = pd.DataFrame(
        [
            {
                "policy": "c",
                "kind": "cascade",
                "models": "cheap → api",
                "rule": "confidence ≥ 0.6",
                "metric": "accuracy",
                "quality": policy_quality,
                "quality_ci_low": policy_quality - 0.02,
                "quality_ci_high": policy_quality + 0.02,
                "cost_per_1k_usd": 0.004,
                "monthly_cost_usd": policy_monthly,
                "floor_monthly_usd": 15.18,
                "needs": "cheap, api",
                "values_json": json.dumps({"accuracy": policy_quality}),
            }
        ]
    )
    return table, pols, cfg


def test_a_policy_is_an_option_in_the_pareto_front_the_dominance_lines_and_the_runner_up():
    import assay.report.summary
    from assay.report.decision import dominated, pareto

    table, pols, cfg = _options(0.898, 23.30)
    # on monthly cost at the configured volume: cheap ($15.18, 0.85) and the cascade ($23.30, 0.898) are
    # on the front; api ($28.86, 0.87) is worse and dearer than the cascade
    front, col = pareto(table, cfg, pols)
    assert col == "monthly_cost_usd" and front == ["cheap", "c"]
    assert pareto(table, cfg)[0] == ["cheap", "api"]  # without the policy api is on it
    assert dominated(table, cfg, pols) == [
        "The cascade c dominates api: accuracy 0.898 against 0.870, at $23.30 against $28.86 a month at 1,000,000 requests"
    ]
    dec = assay.report.summary.decisions(table, cfg, pols)
    rec = dec["recommendation"]
    # cheap passes (0.85 ≥ 0.65) at the lowest monthly cost; the cascade passes more cheaply than api: runner-up
    assert rec.model == "cheap" and not rec.policy and rec.runner_up == "c"
    assert "at $15.18 a month (the floor: 1 always-on instance at $0.0208/hour)" in rec.sentence
    assert "Runner-up: the cascade c (cheap → api; confidence ≥ 0.6), at $23.30 a month" in rec.sentence
    lines = assay.report.summary.decision_lines(
        dec, pd.DataFrame(columns=["option", "api", "breakeven_monthly_requests", "note"])
    )
    assert "Quality/cost Pareto front (accuracy vs monthly cost at 1,000,000 requests): cheap, c (cascade)" in lines
    assert any(line.startswith("The cascade c dominates api") for line in lines)
    # a baseline paid per call says so instead of naming a floor
    table.loc[0, "serving"] = "paid per call only, no always-on instance, at $0.0208/hour of compute"
    assert (
        "at $15.18 a month (paid per call only, no always-on instance, at $0.0208/hour of compute)"
        in assay.report.summary.decisions(table, cfg, pols)["recommendation"].sentence
    )
    # a dearer cascade dominates nothing, and api is the runner-up again
    table, pols, cfg = _options(0.898, 30.0)
    assert dominated(table, cfg, pols) == []
    assert assay.report.summary.decisions(table, cfg, pols)["recommendation"].runner_up == "api"
