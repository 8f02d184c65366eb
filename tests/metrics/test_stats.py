"""assay.stats against independent computations: statsmodels and scipy (golden references)."""

import math

import numpy as np
import pytest

from assay import stats

sm = pytest.importorskip("statsmodels.api")


def test_clustered_se_equals_statsmodels_cluster_robust_intercept():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(40), rng.integers(1, 9, size=40))  # 40 clusters of 1-8 examples
    effect = rng.normal(0, 0.3, size=40)[g]  # examples of a cluster move together
    y = (rng.random(len(g)) < 0.6 + effect.clip(-0.5, 0.35)).astype(float)
    fit = sm.OLS(y, np.ones(len(y))).fit(cov_type="cluster", cov_kwds={"groups": g})
    mean, se, n, n_clusters = stats.mean_se(y, g)
    assert mean == pytest.approx(fit.params[0], abs=1e-12)
    assert se == pytest.approx(fit.bse[0], rel=1e-10)
    assert (n, n_clusters) == (len(y), 40)
    # clustering widens the error bar here; with every example its own cluster it is the plain SE
    _, plain, _, _ = stats.mean_se(y)
    assert se > plain
    assert stats.mean_se(y, np.arange(len(y)))[1] == pytest.approx(plain, rel=1e-12)
    ols = sm.OLS(y, np.ones(len(y))).fit()
    assert plain == pytest.approx(ols.bse[0], rel=1e-10)


def test_clustered_se_ignores_nan_scores():
    y = np.array([1, 0, np.nan, 1, 1, 0, 1, np.nan, 0, 1.0])
    g = np.array([0, 0, 0, 1, 1, 2, 2, 3, 3, 3])
    ok = ~np.isnan(y)
    fit = sm.OLS(y[ok], np.ones(ok.sum())).fit(cov_type="cluster", cov_kwds={"groups": g[ok]})
    assert stats.mean_se(y, g)[1] == pytest.approx(fit.bse[0], rel=1e-10)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (17, 20), (1, 1), (480, 1000)])
def test_wilson_equals_statsmodels_and_scipy(k, n):
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    lo, hi = stats.wilson(k, n)
    slo, shi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (lo, hi) == pytest.approx((slo, shi), abs=1e-12)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert (lo, hi) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_mde_and_examples_needed_equal_statsmodels_normal_power():
    from statsmodels.stats.power import NormalIndPower

    power = NormalIndPower()
    sd, n = 0.45, 800
    # ratio=0: the one-sample (paired differences) normal test
    effect = power.solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=0, alternative="two-sided")
    assert stats.mde(sd / math.sqrt(n)) == pytest.approx(effect * sd, rel=1e-4)
    need = power.solve_power(effect_size=0.02 / sd, alpha=0.05, power=0.8, ratio=0, alternative="two-sided")
    assert stats.examples_needed(sd**2, 0.02) == math.ceil(need - 1e-6)
    # scipy closed form: (z_.975 + z_.8)^2 = 7.849
    from scipy.stats import norm

    assert (stats.z_two_sided() + stats.z(0.8)) ** 2 == pytest.approx((norm.ppf(0.975) + norm.ppf(0.8)) ** 2, rel=1e-12)


def test_paired_se_is_the_formula_with_the_correlation():
    rng = np.random.default_rng(1)
    hard = rng.random(500)
    a = (rng.random(500) > hard * 0.8).astype(float)
    b = (rng.random(500) > hard * 0.9).astype(float)
    a[[3, 70]] = np.nan  # not shared: left out of the pair
    p = stats.paired(a, b)
    ok = ~np.isnan(a)
    se_a, se_b = a[ok].std(ddof=1) / math.sqrt(ok.sum()), b[ok].std(ddof=1) / math.sqrt(ok.sum())
    rho = np.corrcoef(a[ok], b[ok])[0, 1]
    assert p.n == 498 and p.correlation == pytest.approx(rho, rel=1e-12)
    assert (p.se_a, p.se_b) == pytest.approx((se_a, se_b), rel=1e-12)
    assert p.se == pytest.approx(math.sqrt(se_a**2 + se_b**2 - 2 * rho * se_a * se_b), rel=1e-12)
    assert p.diff == pytest.approx(np.mean(a[ok] - b[ok]))
    assert p.ci_low == pytest.approx(p.diff - 1.959964 * p.se, abs=1e-6)
    # a positive correlation makes the paired SE smaller than for independent samples
    assert rho > 0 and p.se < math.sqrt(se_a**2 + se_b**2)
    # the same as statsmodels' paired (one-sample on differences) standard error
    d = a[ok] - b[ok]
    assert p.se == pytest.approx(sm.OLS(d, np.ones(len(d))).fit().bse[0], rel=1e-10)


def test_variance_split_recovers_between_and_within():
    rng = np.random.default_rng(3)
    n, K = 4000, 5
    p = rng.beta(2, 2, size=n)  # each example's true pass rate
    scores = (rng.random((n, K)) < p[:, None]).astype(float)
    split = stats.variance_split(np.repeat(np.arange(n), K), scores.ravel())
    # between: Var(p) of Beta(2,2) = 0.05; within: E[p(1-p)] = 0.2
    assert split.between == pytest.approx(0.05, abs=0.006)
    assert split.within == pytest.approx(0.2, abs=0.005)
    assert split.samples == K
    # the SE of the mean of per-example means is sqrt((between + within / K) / n)
    per_example = scores.mean(axis=1)
    assert per_example.var(ddof=1) == pytest.approx(split.between + split.within / K, rel=1e-9)
    # one sample per example: no within-example variance to split off
    one = stats.variance_split(np.arange(10), np.arange(10.0))
    assert math.isnan(one.within) and one.between == pytest.approx(np.var(np.arange(10.0), ddof=1))


@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")])
def test_p_adjust_equals_statsmodels_multipletests(method, sm_method):
    from statsmodels.stats.multitest import multipletests

    p = np.array([0.001, 0.04, 0.03, 0.2, 0.012, 0.5, 0.04, 0.9])
    assert stats.p_adjust(p, method) == pytest.approx(multipletests(p, alpha=0.05, method=sm_method)[1], abs=1e-12)
    assert stats.p_adjust(p, "none").tolist() == p.tolist()
    with pytest.raises(ValueError, match="correction must be one of"):
        stats.p_adjust(p, "sidak-ish")


def test_small_n_note():
    assert "too few for the CLT" in stats.small_n_note(12, successes=6)
    assert stats.small_n_note(200, successes=100) is None
    assert "2 failures" in stats.small_n_note(200, successes=198)
    assert "clusters" in stats.small_n_note(400, n_clusters=12)
