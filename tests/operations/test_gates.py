"""Gate logic on hand-made metrics and per-example scores (no Prefect, no runs)."""

from datetime import date

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

import assay.store
from assay.gates import RunData, check_run, evaluate, paired_drop_p_value, previous_good_run
from assay.store import Store

COLS = ["model", "metric", "slice", "value", "n", "ci_low", "ci_high", "errors", "higher_is_better"]


def metrics(*rows) -> pd.DataFrame:
    """rows: (model, metric, slice, value[, ci_low, ci_high[, higher_is_better]])."""
    out = []
    for r in rows:
        model, metric, sl, value = r[:4]
        lo, hi = (r[4], r[5]) if len(r) >= 6 else (value - 0.05, value + 0.05)
        hib = r[6] if len(r) >= 7 else True
        out.append([model, metric, sl, value, 100, lo, hi, 0, hib])
    return pd.DataFrame(out, columns=COLS)


def scores(model: str, metric: str, values, ids=None) -> pd.DataFrame:
    ids = ids if ids is not None else [f"e{i:04d}" for i in range(len(values))]
    return pd.DataFrame({"example_id": ids, "model": model, "metric": metric, "value": np.asarray(values, float)})


def run_from_scores(
    sc: pd.DataFrame, examples: pd.DataFrame | None = None, run_id="r", as_of="2024-01-01", slice_col: str | None = None
) -> RunData:
    """Metrics computed from per-example scores (overall and per slice), as the score stage would."""
    rows = []
    for (model, metric), g in sc.groupby(["model", "metric"]):
        rows.append((model, metric, "all", g["value"].mean()))
        if slice_col is not None:
            ex = g.merge(examples, on="example_id")
            for v, gg in ex.groupby(slice_col):
                rows.append((model, metric, f"{slice_col}={v}", gg["value"].mean()))
    return RunData(metrics(*rows), sc, examples, run_id, as_of)


def by_rule(report, rule, model=None, sl="all"):
    return [c for c in report.checks if c.rule == rule and (model is None or c.model == model) and c.slice == sl]


def test_min_and_max_check_every_model_overall():
    cur = RunData(
        metrics(
            ("good", "accuracy", "all", 0.90),
            ("bad", "accuracy", "all", 0.60),
            ("good", "accuracy", "channel=chat", 0.10),  # slices are not min-checked
            ("good", "output_length", "all", 12.0, 11, 13, False),
            ("bad", "output_length", "all", 40.0, 38, 42, False),
        )
    )
    rep = evaluate({"accuracy": {"min": 0.75}, "output_length": {"max": 30}}, cur, None)
    assert not rep.passed
    mins = {c.model: c for c in by_rule(rep, "min")}
    assert mins["good"].passed and not mins["bad"].passed
    assert mins["bad"].value == pytest.approx(0.60) and mins["bad"].threshold == 0.75
    maxes = {c.model: c for c in by_rule(rep, "max")}
    assert maxes["good"].passed and not maxes["bad"].passed
    assert len(rep.checks) == 4  # overall only: the slice row is not a min check
    msg = rep.message()
    assert "accuracy[bad] 0.6 < min 0.75" in msg and "output_length[bad] 40 > max 30" in msg
    assert "\n" not in msg
    d = rep.to_dict()
    assert d["passed"] is False and len(d["failures"]) == 2
    assert set(d["checks"][0]) >= {
        "model",
        "metric",
        "slice",
        "rule",
        "value",
        "threshold",
        "previous",
        "drop",
        "p_value",
        "passed",
    }


def test_min_fails_on_a_missing_value_and_a_missing_metric():
    cur = RunData(metrics(("m", "accuracy", "all", float("nan"))))
    rep = evaluate({"accuracy": {"min": 0.5}, "macro_f1": {"min": 0.5}}, cur, None)
    assert [c.passed for c in rep.checks] == [False, False]
    assert rep.checks[1].note.startswith("metric not in")


def test_no_previous_run_passes_max_drop_with_a_note():
    cur = RunData(metrics(("m", "accuracy", "all", 0.5)))
    rep = evaluate({"accuracy": {"max_drop": 0.02}}, cur, None)
    assert rep.passed and rep.previous is None
    (c,) = rep.checks
    assert c.rule == "max_drop" and c.previous is None and c.note == "no previous good run"
    assert "No previous good run" in rep.markdown("p", "2024-01-01", "r")


def test_real_drop_fails_with_a_paired_bootstrap():
    n = 200
    prev_v = np.ones(n)
    prev_v[:20] = 0  # 0.90
    cur_v = prev_v.copy()
    cur_v[20:40] = 0  # 0.80: 20 examples got worse, none better
    prev = run_from_scores(scores("m", "accuracy", prev_v), run_id="p")
    cur = run_from_scores(scores("m", "accuracy", cur_v), run_id="c")
    rep = evaluate({"accuracy": {"max_drop": 0.02}}, cur, prev)
    (c,) = by_rule(rep, "max_drop")
    assert not c.passed and not rep.passed
    assert c.method == "paired_bootstrap" and c.n_paired == n
    assert c.drop == pytest.approx(0.10) and c.previous == pytest.approx(0.90) and c.value == pytest.approx(0.80)
    assert c.p_value < 0.01
    assert rep.previous == {"run_id": "p", "as_of": "2024-01-01"}
    assert "dropped 0.1" in rep.message() and "max_drop 0.02" in rep.message()


def test_drop_within_noise_is_inconclusive_not_a_failure():
    # 20 examples: 3 got worse, 1 got better: a 0.10 drop that a handful of examples explain
    prev_v = np.array([1] * 16 + [0] * 4, float)
    cur_v = prev_v.copy()
    cur_v[[0, 1, 2]] = 0
    cur_v[16] = 1
    prev = run_from_scores(scores("m", "accuracy", prev_v))
    cur = run_from_scores(scores("m", "accuracy", cur_v))
    rep = evaluate({"accuracy": {"max_drop": 0.02}}, cur, prev)
    (c,) = by_rule(rep, "max_drop")
    assert c.drop == pytest.approx(0.10)
    assert c.p_value >= 0.05 and c.passed and c.verdict == "inconclusive"
    assert c.ci_low < 0.02 < c.ci_high and "within noise" in c.note
    assert rep.passed and rep.verdict == "inconclusive"
    assert rep.passed


def test_drop_smaller_than_max_drop_passes_even_when_certain():
    n = 1000
    prev_v = np.ones(n)
    cur_v = prev_v.copy()
    cur_v[:10] = 0  # a certain 0.01 drop, allowed by max_drop 0.02
    rep = evaluate(
        {"accuracy": {"max_drop": 0.02}},
        run_from_scores(scores("m", "accuracy", cur_v)),
        run_from_scores(scores("m", "accuracy", prev_v)),
    )
    assert rep.passed and rep.checks[0].drop == pytest.approx(0.01)


def test_confidence_intervals_when_there_are_no_per_example_scores():
    prev = RunData(metrics(("m", "macro_f1", "all", 0.80, 0.77, 0.83)))
    far = RunData(metrics(("m", "macro_f1", "all", 0.70, 0.67, 0.73)))  # ci_high 0.73 < 0.80 - 0.02
    near = RunData(metrics(("m", "macro_f1", "all", 0.75, 0.65, 0.85)))  # wide interval reaches 0.78
    gate = {"macro_f1": {"max_drop": 0.02}}
    (c,) = evaluate(gate, far, prev).checks
    assert c.method == "ci" and c.p_value is None and not c.passed
    (c,) = evaluate(gate, near, prev).checks
    assert c.method == "ci" and c.passed and c.verdict == "inconclusive" and "within noise" in c.note


def test_lower_is_better_metric_drops_when_it_rises():
    prev = RunData(metrics(("m", "latency", "all", 1.0, 0.95, 1.05, False)))
    cur = RunData(metrics(("m", "latency", "all", 1.5, 1.4, 1.6, False)))
    (c,) = evaluate({"latency": {"max_drop": 0.1}}, cur, prev).checks
    assert c.drop == pytest.approx(0.5) and not c.passed


def test_model_missing_from_previous_run_is_not_compared():
    prev = RunData(metrics(("old", "accuracy", "all", 0.9)))
    cur = RunData(metrics(("new", "accuracy", "all", 0.1)))
    (c,) = evaluate({"accuracy": {"max_drop": 0.02}}, cur, prev).checks
    assert c.passed and c.previous is None and "not in the previous run" in c.note


def test_worst_slice_is_reported_and_a_slice_regression_fails():
    n, chat = 400, 40
    ids = [f"e{i:04d}" for i in range(n)]
    examples = pd.DataFrame({"example_id": ids, "channel": ["chat"] * chat + ["email"] * (n - chat)})
    prev_v = np.ones(n)
    cur_v = prev_v.copy()
    cur_v[:15] = 0  # 15 of 40 chat examples break: chat -0.375, overall -0.0375
    prev = run_from_scores(scores("m", "accuracy", prev_v, ids), examples, "p", slice_col="channel")
    cur = run_from_scores(scores("m", "accuracy", cur_v, ids), examples, "c", slice_col="channel")
    rep = evaluate({"accuracy": {"max_drop": 0.05}}, cur, prev)
    overall = by_rule(rep, "max_drop", "m", "all")[0]
    assert overall.passed and overall.drop == pytest.approx(0.0375)
    (worst,) = [c for c in rep.checks if c.slice != "all"]
    assert worst.slice == "channel=chat" and worst.drop == pytest.approx(0.375)
    assert worst.n_paired == chat and worst.p_value < 0.025 and not worst.passed
    assert not rep.passed
    assert "on slice channel=chat" in rep.message()
    md = rep.markdown("p", "2024-01-02", "c")
    assert "channel=chat" in md and "**FAIL**" in md and "What broke" in md


def test_worst_slice_without_failures_is_the_largest_drop():
    ids = [f"e{i:04d}" for i in range(100)]
    examples = pd.DataFrame({"example_id": ids, "channel": ["a"] * 50 + ["b"] * 50})
    prev_v = np.ones(100)
    cur_v = prev_v.copy()
    cur_v[[60]] = 0  # one example in slice b
    rep = evaluate(
        {"accuracy": {"max_drop": 0.05}},
        run_from_scores(scores("m", "accuracy", cur_v, ids), examples, slice_col="channel"),
        run_from_scores(scores("m", "accuracy", prev_v, ids), examples, slice_col="channel"),
    )
    assert rep.passed
    (worst,) = [c for c in rep.checks if c.slice != "all"]
    assert worst.slice == "channel=b" and worst.drop == pytest.approx(0.02)


def test_paired_p_value_is_one_sided_against_the_allowance():
    assert paired_drop_p_value(np.zeros(50), 0.0) == pytest.approx(1.0)
    assert paired_drop_p_value(np.ones(50), 0.5) < 0.001
    assert paired_drop_p_value(np.array([]), 0.1) == 1.0


# previous good run and the whole check on run folders --------------------------------------
def _write_run(store: Store, as_of: str, run_id: str, status: str, values, gates_passed=None):
    rf = store.run("p", date.fromisoformat(as_of), run_id)
    sc = scores("m", "accuracy", values)
    rf.write_table(assay.store.SCORES, sc)
    rf.write_table(assay.store.METRICS, metrics(("m", "accuracy", "all", float(np.mean(values)))))
    rf.write_table(assay.store.DATASET, pd.DataFrame({"example_id": sc["example_id"], "text": "x"}))
    m = {"status": status, "as_of": as_of, "run_id": run_id}
    if gates_passed is not None:
        m["gates"] = {"passed": gates_passed}
    rf.write_json(assay.store.MANIFEST, m)
    return rf


def test_previous_good_run_and_check_run(tmp_path):
    store = Store(tmp_path)
    good = np.ones(100)
    _write_run(store, "2024-01-01", "20240101T000000-a", "complete", good)  # no verdict: counts as good
    _write_run(store, "2024-01-02", "20240102T000000-a", "complete", good * 0, gates_passed=False)  # broken: skipped
    _write_run(store, "2024-01-03", "20240103T000000-a", "failed", good)  # not complete: skipped
    _write_run(store, "2024-01-04", "20240104T000000-a", "complete", good, gates_passed=True)
    later = _write_run(store, "2024-01-04", "20240104T010000-b", "complete", np.r_[np.zeros(30), np.ones(70)])
    _write_run(store, "2024-01-05", "20240105T000000-a", "complete", good, gates_passed=True)  # later: never "previous"

    prev = previous_good_run(store, "p", "2024-01-04", "20240104T010000-b")
    assert (prev.as_of, prev.run_id) == ("2024-01-04", "20240104T000000-a")  # same date, earlier run id
    prev = previous_good_run(store, "p", "2024-01-04", "20240104T000000-a")
    assert (prev.as_of, prev.run_id) == ("2024-01-01", "20240101T000000-a")  # skips failed gates and failed runs
    assert previous_good_run(store, "p", "2024-01-01", "20240101T000000-a") is None

    rep = check_run(later, {"accuracy": {"min": 0.5, "max_drop": 0.02}})
    assert rep.previous == {"run_id": "20240104T000000-a", "as_of": "2024-01-04"}
    drop = by_rule(rep, "max_drop")[0]
    assert drop.method == "paired_bootstrap" and drop.drop == pytest.approx(0.3) and not drop.passed
    assert by_rule(rep, "min")[0].passed


def _slice_check(name, p):
    from assay.gates import Check

    return Check("m", "accuracy", name, "max_drop", 0.8, 0.02, previous=0.9, drop=0.1, p_value=p, method="paired_bootstrap")


@pytest.mark.parametrize(
    "correction,failing",
    [("bonferroni", ["s0"]), ("holm", ["s0", "s1", "s2"]), ("bh", ["s0", "s1", "s2"]), ("none", ["s0", "s1", "s2"])],
)
def test_slice_checks_are_corrected_for_multiple_comparisons(correction, failing):
    from statsmodels.stats.multitest import multipletests

    from assay.gates import GateReport, _correct

    p = [0.01, 0.015, 0.02, 0.3]
    checks = [_slice_check(f"s{i}", v) for i, v in enumerate(p)]
    _correct([(c, correction) for c in checks], 0.05)
    assert [c.slice for c in checks if not c.passed] == failing
    if correction != "none":
        sm = {"bonferroni": "bonferroni", "holm": "holm", "bh": "fdr_bh"}[correction]
        assert [c.p_adjusted for c in checks] == pytest.approx(multipletests(p, method=sm)[1])
    assert all(c.correction == f"{correction} over 4 checks" for c in checks)
    md = GateReport(checks=checks).markdown("p", "2024-01-01", "r")
    assert f"corrected for multiple comparisons: **{correction} over 4 checks**" in md
    assert f"({correction} over 4 checks)" in checks[0].describe()


def test_gate_correction_is_configurable_and_defaults_to_holm():
    from assay.config import Gate

    assert Gate(max_drop=0.02).correction == "holm"
    assert Gate(max_drop=0.02, correction="bh").correction == "bh"
    with pytest.raises(ValidationError):
        Gate(max_drop=0.02, correction="sidak")


def test_a_pinned_baseline_catches_slow_drift_that_night_to_night_checks_miss(tmp_path):
    """Five nights each losing 1 point on the same 400 examples: night to night every drop is within
    max_drop 0.02; against the pinned first night the 4-point loss fails, on the shared examples."""
    from assay.config import Baseline
    from assay.gates import BaselineNotFound, baseline_run

    store = Store(tmp_path)
    n = 400
    folders = []
    for night in range(5):
        v = np.ones(n)
        v[: 4 * night] = 0  # 4 more wrong examples each night (1 point)
        day = f"2024-03-0{night + 1}"
        folders.append(_write_run(store, day, f"2024030{night + 1}T000000-a", "complete", v, gates_passed=True))
    gate = {"accuracy": {"max_drop": 0.02}}
    nightly = check_run(folders[-1], gate)
    assert nightly.previous["run_id"] == "20240304T000000-a" and nightly.verdict != "fail"
    pinned = check_run(folders[-1], gate, baseline=Baseline(run="20240301T000000-a"))
    c = by_rule(pinned, "max_drop")[0]
    assert pinned.previous == {"run_id": "20240301T000000-a", "as_of": "2024-03-01", "baseline": True}
    assert c.method == "paired_bootstrap" and c.n_paired == n and c.drop == pytest.approx(0.04)
    assert c.verdict == "fail" and c.ci_low > 0.02
    by_date = check_run(folders[-1], gate, baseline=Baseline(as_of="2024-03-01"))
    assert by_date.previous["run_id"] == "20240301T000000-a" and by_date.verdict == "fail"
    with pytest.raises(BaselineNotFound, match="pipelines.p.baseline: no complete run of p with run nope"):
        baseline_run(store, "p", Baseline(run="nope"))


def test_the_correction_covers_every_metric_and_slice_of_a_model():
    """Two gated metrics × (overall + 2 slices) = 6 paired tests of one model, adjusted together."""
    n = 200
    prev_v = np.ones(n)
    cur_v = prev_v.copy()
    cur_v[:14] = 0  # a 0.07 drop
    sc_prev = pd.concat([scores("m", "accuracy", prev_v), scores("m", "exact", prev_v)])
    sc_cur = pd.concat([scores("m", "accuracy", cur_v), scores("m", "exact", cur_v)])
    ids = scores("m", "accuracy", prev_v)["example_id"]
    examples = pd.DataFrame({"example_id": ids, "lang": ["de" if i % 2 else "en" for i in range(n)]})

    def rows(values):
        out = []
        for metric in ("accuracy", "exact"):
            out.append(("m", metric, "all", float(values.mean())))
            for lang, sel in (("de", slice(1, None, 2)), ("en", slice(0, None, 2))):
                out.append(("m", metric, f"lang={lang}", float(values[sel].mean())))
        return metrics(*out)

    prev = RunData(rows(prev_v), sc_prev, examples, "r0", "2024-01-01")
    cur = RunData(rows(cur_v), sc_cur, examples, "r1", "2024-01-02")
    rep = evaluate({"accuracy": {"max_drop": 0.02}, "exact": {"max_drop": 0.02, "correction": "bonferroni"}}, cur, prev)
    drops = by_rule(rep, "max_drop")
    assert {c.correction for c in drops} == {"holm over 6 checks", "bonferroni over 6 checks"}
    assert all(c.p_adjusted >= c.p_value for c in drops)
