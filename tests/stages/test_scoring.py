"""The score stage's logic (assay.scoring): intervals, paired tests, slices and generalization."""

import math

import numpy as np
import pyarrow as pa
import pytest

from assay.metrics.classification import Accuracy, MacroF1
from assay.scoring import NORMAL_APPROX_N, bootstrap_ci, generalization, paired_bootstrap, score

ACC = Accuracy()


def _each(n_right: int, n: int) -> np.ndarray:
    """n per-example scores with n_right ones, interleaved (not sorted)."""
    out = np.zeros(n)
    out[np.linspace(0, n - 1, n_right).round().astype(int)] = 1.0
    assert out.sum() == n_right
    return out


# ------------------------------------------------------------------------------------------------ bootstrap_ci


def test_bootstrap_ci_contains_the_mean_and_narrows_with_n():
    widths = {}
    for n in (100, 1000):
        each = _each(int(0.7 * n), n)
        lo, hi = bootstrap_ci(ACC, [None] * n, [None] * n, each, resamples=1000, seed=3)
        assert lo < 0.7 < hi
        widths[n] = hi - lo
    # normal approximation: 2 * 1.96 * sqrt(0.7 * 0.3 / n) = 0.180 (n=100), 0.057 (n=1000)
    assert widths[100] == pytest.approx(0.180, abs=0.04)
    assert widths[1000] == pytest.approx(0.057, abs=0.015)
    # sqrt(10) ≈ 3.2 times narrower
    assert widths[1000] < widths[100] / 2


def test_bootstrap_ci_is_reproducible_with_its_seed():
    each = _each(37, 60)
    a = bootstrap_ci(ACC, [None] * 60, [None] * 60, each, resamples=500, seed=11)
    b = bootstrap_ci(ACC, [None] * 60, [None] * 60, each, resamples=500, seed=11)
    c = bootstrap_ci(ACC, [None] * 60, [None] * 60, each, resamples=500, seed=12)
    assert a == b
    assert a != c


def test_bootstrap_ci_degenerate_inputs():
    assert all(math.isnan(v) for v in bootstrap_ci(ACC, ["a"], ["a"], np.array([1.0]), 100, 0))  # n < 2
    assert all(math.isnan(v) for v in bootstrap_ci(ACC, ["a", "b"], ["a", "b"], np.array([1.0, 1.0]), 0, 0))
    # every example right: the interval is [1, 1]
    assert bootstrap_ci(ACC, ["a"] * 5, ["a"] * 5, np.ones(5), 200, 0) == (1.0, 1.0)


def test_bootstrap_ci_normal_approximation_for_huge_n():
    n = NORMAL_APPROX_N + 1
    each = _each(n // 4, n)  # mean ≈ 0.25
    lo, hi = bootstrap_ci(ACC, [None] * n, [None] * n, each, 1000, 0)
    m, sd = each.mean(), each.std(ddof=1)
    half = 1.959964 * sd / math.sqrt(n)
    assert lo == pytest.approx(m - half, abs=1e-6) and hi == pytest.approx(m + half, abs=1e-6)


def test_bootstrap_ci_for_a_corpus_metric_contains_the_value():
    refs = ["a", "b", "c"] * 20
    preds = [r if i % 4 else "a" for i, r in enumerate(refs)]  # every 4th answer is "a"
    f1 = MacroF1()
    value = f1.aggregate(preds, refs)
    lo, hi = bootstrap_ci(f1, preds, refs, f1.score_each(preds, refs), 200, 0)
    assert lo <= value <= hi and hi - lo > 0


# ------------------------------------------------------------------------------------------------ paired_bootstrap


def test_paired_bootstrap_clearly_better_model():
    n = 200
    a = _each(180, n)  # 90 % right
    b = _each(100, n)  # 50 % right
    diff, p = paired_bootstrap(ACC, [None] * n, [None] * n, [None] * n, a, b, 1000, 0)
    assert diff == pytest.approx(0.4)
    # 0.4 is about 9 standard errors away from 0: no resample reaches it, p = 1 / 1001
    assert p < 0.01
    # and the other way round
    diff, p = paired_bootstrap(ACC, [None] * n, [None] * n, [None] * n, b, a, 1000, 0)
    assert diff == pytest.approx(-0.4) and p < 0.01


def test_paired_bootstrap_identical_models():
    each = _each(130, 200)
    diff, p = paired_bootstrap(ACC, [None] * 200, [None] * 200, [None] * 200, each, each.copy(), 1000, 0)
    assert diff == 0.0 and p == 1.0


def test_paired_bootstrap_small_difference_is_not_significant():
    # the models disagree on 4 of 200 examples, 3 to 1 in A's favour: diff 0.01, p large
    a = np.ones(200)
    b = np.ones(200)
    b[[10, 50, 90]] = 0
    a[[130]] = 0
    diff, p = paired_bootstrap(ACC, [None] * 200, [None] * 200, [None] * 200, a, b, 1000, 5)
    assert diff == pytest.approx(0.01)
    assert p > 0.2
    assert paired_bootstrap(ACC, [None] * 200, [None] * 200, [None] * 200, a, b, 1000, 5) == (diff, p)


# ------------------------------------------------------------------------------------------------ score()

#  id  reference  lang channel | A          | B
#  e1  billing    de   email   | billing  ✓ | billing  ✓
#  e2  technical  de   email   | technical✓ | account  ✗
#  e3  account    de   chat    | (HTTP 500)✗| account  ✓
#  e4  billing    de   chat    | account  ✗ | billing  ✓
#  e5  technical  en   email   | technical✓ | technical✓
#  e6  account    en   email   | account  ✓ | account  ✓
#  e7  billing    en   chat    | billing  ✓ | (timeout)✗
#  e8  technical  en   chat    | billing  ✗ | technical✓
#
#  A: all 5/8 = .625 (1 error)  de 2/4 = .5  en 3/4 = .75  email 4/4 = 1  chat 1/4 = .25
#  B: all 6/8 = .75  (1 error)  de 3/4       en 3/4        email 3/4      chat 3/4
#  held_out = {lang: [en]}: A held_out .75, in_distribution .5; B .75 and .75
DATASET = pa.table(
    {
        "example_id": [f"e{i}" for i in range(1, 9)],
        "reference": ["billing", "technical", "account", "billing", "technical", "account", "billing", "technical"],
        "lang": ["de"] * 4 + ["en"] * 4,
        "channel": ["email", "email", "chat", "chat", "email", "email", "chat", "chat"],
    }
)
OUT_A = ["billing", "technical", None, "account", "technical", "account", "billing", "billing"]
ERR_A = [None, None, "HTTP 500: boom", None, None, None, None, None]
OUT_B = ["billing", "account", "account", "billing", "technical", "account", None, "technical"]
ERR_B = [None, None, None, None, None, None, "timeout after 60s", None]


def responses(order=None) -> pa.Table:
    rows = []
    for model, outs, errs in (("A", OUT_A, ERR_A), ("B", OUT_B, ERR_B)):
        for i, (o, e) in enumerate(zip(outs, errs)):
            rows.append({"example_id": f"e{i + 1}", "model": model, "output": o, "error": e})
    if order is not None:
        rows = [rows[i] for i in order]
    return pa.Table.from_pylist(
        rows,
        schema=pa.schema([("example_id", pa.string()), ("model", pa.string()), ("output", pa.string()), ("error", pa.string())]),
    )


@pytest.fixture(scope="module")
def result():
    return score(DATASET, responses(), {"accuracy": ACC}, ["lang", "channel"], resamples=200, seed=0, held_out={"lang": ["en"]})


def _m(result, model, sl):
    df = result.metrics
    row = df[(df.model == model) & (df.metric == "accuracy") & (df.slice == sl)]
    assert len(row) == 1, (model, sl)
    return row.iloc[0]


EXPECTED = {
    #            slice:            (value, n, errors)
    "A": {
        "all": (5 / 8, 8, 1),
        "lang=de": (0.5, 4, 1),
        "lang=en": (0.75, 4, 0),
        "channel=chat": (0.25, 4, 1),
        "channel=email": (1.0, 4, 0),
        "held_out": (0.75, 4, 0),
        "in_distribution": (0.5, 4, 1),
    },
    "B": {
        "all": (6 / 8, 8, 1),
        "lang=de": (0.75, 4, 0),
        "lang=en": (0.75, 4, 1),
        "channel=chat": (0.75, 4, 1),
        "channel=email": (0.75, 4, 0),
        "held_out": (0.75, 4, 1),
        "in_distribution": (0.75, 4, 0),
    },
}


@pytest.mark.parametrize("model", ["A", "B"])
def test_score_slices_values_counts_and_errors(result, model):
    got = set(result.metrics[result.metrics.model == model]["slice"])
    assert got == set(EXPECTED[model])
    for sl, (value, n, errors) in EXPECTED[model].items():
        row = _m(result, model, sl)
        assert row["value"] == pytest.approx(value), sl
        assert (row["n"], row["errors"]) == (n, errors), sl
        assert bool(row["higher_is_better"]) is True


def test_score_failed_calls_are_wrong_per_example(result):
    s = result.scores.set_index(["model", "example_id"])["value"]
    assert s[("A", "e3")] == 0.0 and s[("B", "e7")] == 0.0  # failed calls
    assert s[("A", "e4")] == 0.0 and s[("A", "e1")] == 1.0
    assert len(result.scores) == 16 and set(result.scores.metric) == {"accuracy"}


def test_score_intervals_bracket_the_values(result):
    m = result.metrics
    ok = m[m.value.between(0.01, 0.99)]
    assert len(ok) > 0
    assert ((ok.ci_low <= ok.value) & (ok.value <= ok.ci_high)).all()
    # a slice where every answer is right has the interval [1, 1]
    row = _m(result, "A", "channel=email")
    assert (row.ci_low, row.ci_high) == (1.0, 1.0)


def test_score_comparisons(result):
    c = result.comparisons
    assert len(c) == 1
    row = c.iloc[0]
    assert (row.metric, row.model_a, row.model_b) == ("accuracy", "A", "B")
    assert row["diff"] == pytest.approx(5 / 8 - 6 / 8)  # -0.125
    assert 0 < row.p_value <= 1


def test_generalization_worst_slice_and_gaps(result):
    g = result.generalization.set_index("model")
    a = g.loc["A"]
    assert a.overall == pytest.approx(0.625)
    assert (a.worst_slice, a.worst_value) == ("channel=chat", 0.25)
    assert (a.best_slice, a.best_value) == ("channel=email", 1.0)
    assert a.gap == pytest.approx(0.75)
    # in_distribution (de) .5 minus held_out (en) .75
    assert (a.in_distribution, a.held_out) == (0.5, 0.75)
    assert a.held_out_gap == pytest.approx(-0.25)
    b = g.loc["B"]
    assert b.worst_value == 0.75 and b.gap == 0.0 and b.held_out_gap == 0.0


def test_generalization_lower_is_better():
    import pandas as pd

    # for a cost-like metric the worst slice is the highest; the held-out gap is held_out - in_distribution
    m = pd.DataFrame(
        {
            "model": "X",
            "metric": "len",
            "slice": ["all", "a=1", "a=2", "a=3", "held_out", "in_distribution"],
            "value": [5.0, 2.0, 9.0, 4.0, 7.0, 3.0],
            "higher_is_better": False,
        }
    )
    row = generalization(m).iloc[0]
    assert (row.worst_slice, row.worst_value, row.best_slice, row.best_value) == ("a=2", 9.0, "a=1", 2.0)
    assert row.gap == 7.0 and row.held_out_gap == 4.0


def test_score_does_not_depend_on_the_order_of_responses():
    a = score(DATASET, responses(), {"accuracy": ACC}, ["lang"], resamples=50, seed=0)
    b = score(DATASET, responses(order=list(range(15, -1, -1))), {"accuracy": ACC}, ["lang"], resamples=50, seed=0)
    cols = ["model", "metric", "slice", "value", "n", "errors", "ci_low", "ci_high"]
    # models are listed in order of first appearance; the figures themselves must not change
    key = ["model", "slice"]
    sa = a.metrics[cols].sort_values(key).reset_index(drop=True)
    sb = b.metrics[cols].sort_values(key).reset_index(drop=True)
    assert len(sa) == 6 and sa.equals(sb)
    # no held_out: no held_out rows and NaN gaps
    assert not a.metrics.slice.isin(["held_out", "in_distribution"]).any()
    assert a.generalization.held_out_gap.isna().all()


def test_missing_response_counts_as_wrong_and_as_an_error():
    # drop A's answer for e1 (right in the table above): A falls to 4/8 with 2 errors
    resp = responses().filter(pa.array([not (i == 0) for i in range(16)]))
    res = score(DATASET, resp, {"accuracy": ACC}, [], resamples=0, seed=0)
    row = _m(res, "A", "all")
    assert row["value"] == pytest.approx(4 / 8) and row["errors"] == 2 and row["n"] == 8
    assert math.isnan(row["ci_low"])  # resamples=0: no interval


# ------------------------------------------------------------------------------------------------ error bars (Miller)


def test_metrics_have_clt_se_wilson_and_mde(result):
    row = _m(result, "A", "all")
    # 5 of 8 right: se = sd(ddof=1) / sqrt(8)
    vals = np.array([1, 1, 0, 0, 1, 1, 1, 0], float)
    assert row["se"] == pytest.approx(vals.std(ddof=1) / math.sqrt(8))
    from assay.stats import mde, wilson

    assert (row["wilson_low"], row["wilson_high"]) == pytest.approx(wilson(5, 8))
    assert row["mde"] == pytest.approx(mde(row["se"]))
    assert "too few for the CLT" in row["note"]  # n = 8
    assert pd_isna(row["n_clusters"]) and row["score_errors"] == 0 and row["resamples"] == 200


def pd_isna(v) -> bool:
    import pandas as pd

    return bool(pd.isna(v))


def test_comparisons_have_paired_se_interval_and_correlation(result):
    from assay.stats import paired

    row = result.comparisons.iloc[0]
    sc = result.scores.pivot(index="example_id", columns="model", values="value")
    pr = paired(sc["A"].to_numpy(), sc["B"].to_numpy())
    assert row["se"] == pytest.approx(pr.se) and row["correlation"] == pytest.approx(pr.correlation)
    assert row["ci_low"] == pytest.approx(row["diff"] - 1.959964 * pr.se, abs=1e-6)
    assert row["n"] == 8 and row["mde"] > 0


def test_clustered_examples_widen_the_error_bars():
    # 40 clusters of 5 examples whose answers are all right or all wrong: 40 independent units, not 200
    n = 200
    cl = np.repeat(np.arange(40), 5)
    right = np.repeat(np.arange(40) % 3 != 0, 5)
    ds = pa.table({"example_id": [f"x{i:03d}" for i in range(n)], "reference": ["y"] * n, "doc": cl})
    resp = pa.table(
        {
            "example_id": [f"x{i:03d}" for i in range(n)],
            "model": ["M"] * n,
            "output": ["y" if r else "n" for r in right],
            "error": pa.nulls(n, pa.string()),
        }
    )
    plain = score(ds, resp, {"accuracy": ACC}, [], resamples=500, seed=0).metrics.iloc[0]
    clus = score(ds, resp, {"accuracy": ACC}, [], resamples=500, seed=0, cluster="doc").metrics.iloc[0]
    assert clus["n_clusters"] == 40 and clus["value"] == plain["value"]
    # within-cluster correlation 1: the SE grows by about sqrt(5)
    assert clus["se"] / plain["se"] == pytest.approx(math.sqrt(5), rel=0.05)
    assert (clus["ci_high"] - clus["ci_low"]) > 1.8 * (plain["ci_high"] - plain["ci_low"])
    assert math.isnan(clus["wilson_low"])  # Wilson assumes independent examples


def test_repeated_samples_are_averaged_per_example_with_a_variance_split():
    # 4 examples x 3 samples; per example right 3/3, 2/3, 1/3, 0/3
    rights = [3, 2, 1, 0]
    rows = []
    for i, k in enumerate(rights):
        for s in range(3):
            rows.append({"example_id": f"e{i}", "model": "M", "output": "y" if s < k else "n", "error": None, "sample": s})
    resp = pa.Table.from_pylist(rows)
    ds = pa.table({"example_id": [f"e{i}" for i in range(4)], "reference": ["y"] * 4})
    res = score(ds, resp, {"accuracy": ACC}, [], resamples=100, seed=0)
    row = res.metrics.iloc[0]
    assert row["value"] == pytest.approx(0.5) and row["n"] == 4 and row["samples"] == 3
    per_example = np.array([1, 2 / 3, 1 / 3, 0])
    assert row["se"] == pytest.approx(per_example.std(ddof=1) / 2)  # n = 4 examples, not 12 samples
    within = np.mean([0, 1 / 3, 1 / 3, 0])  # sample variances (ddof 1) of [1,1,1], [1,1,0], [1,0,0], [0,0,0]
    assert row["var_within"] == pytest.approx(within)
    assert row["var_between"] == pytest.approx(per_example.var(ddof=1) - within / 3)
    sc = res.scores.set_index("example_id")
    assert sc.loc["e1", "value"] == pytest.approx(2 / 3) and sc.loc["e1", "samples"] == 3


class _Corpus(MacroF1):
    """macro-F1 without its vectorised resampling: recomputed on every resample."""

    resample_aggregates = None

    def __getattribute__(self, name):
        if name == "resample_aggregates":
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_corpus_metric_bootstrap_is_bounded_by_its_budget():
    res = score(DATASET, responses(), {"f1": _Corpus()}, ["lang", "channel"], resamples=1000, seed=0, budgets={"f1": 150})
    # 2 models + 1 pair (2 computations per resample) = 4 units: 37 resamples each; slices: 150 - 148 = 2 left, none
    plan = res.budgets["f1"]
    assert (plan["overall"], plan["slices"]) == (37, 0)
    m = res.metrics
    overall = m[m.slice == "all"]
    assert (overall.resamples == 37).all() and overall.note.str.contains("bootstrap_budget 150").all()
    assert m[m.slice != "all"].ci_low.isna().all()
    # every computation of the metric, point values included, is counted: well under one per resample per slice
    assert res.computations["f1"] <= 150 + 2 * 9 + 2


def test_clustered_bootstrap_of_a_vectorised_corpus_metric():
    # macro-F1 over clusters whose examples are all right or all wrong: resampling clusters widens the interval
    n = 240
    cl = np.repeat(np.arange(30), 8)
    labels = np.array(["a", "b", "c"])
    refs = labels[np.arange(n) % 3]
    right = np.repeat(np.arange(30) % 4 != 0, 8)
    outs = np.where(right, refs, "zz")
    ds = pa.table({"example_id": [f"x{i:03d}" for i in range(n)], "reference": refs.tolist(), "doc": cl})
    resp = pa.table(
        {
            "example_id": [f"x{i:03d}" for i in range(n)],
            "model": ["M"] * n,
            "output": outs.tolist(),
            "error": pa.nulls(n, pa.string()),
        }
    )
    f1 = MacroF1()
    plain = score(ds, resp, {"f1": f1}, [], resamples=400, seed=0).metrics.iloc[0]
    clus = score(ds, resp, {"f1": f1}, [], resamples=400, seed=0, cluster="doc").metrics.iloc[0]
    assert clus["value"] == plain["value"] and clus["n_clusters"] == 30
    assert clus["ci_low"] <= clus["value"] <= clus["ci_high"]
    assert (clus["ci_high"] - clus["ci_low"]) > 1.8 * (plain["ci_high"] - plain["ci_low"])
    assert clus["se"] > 1.8 * plain["se"]  # the bootstrap SE of a corpus metric
