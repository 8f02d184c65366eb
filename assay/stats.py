"""Error bars as E. Miller recommends in "Adding Error Bars to Evals" (arXiv 2411.00640).

Closed forms on per-example scores, in numpy and the standard library, so that the score stage
pays no import of scipy or statsmodels and works on arrays of any size at once; each function
is checked against scipy's or statsmodels' own computation in tests/metrics/test_stats.py.

* :func:`mean_se` — the CLT standard error of a mean, clustered (cluster-robust, CR1: the same
  small-sample factor G/(G−1) as statsmodels' ``cov_type="cluster"``) when the examples come in
  clusters that are not independent (several questions on one passage, say);
* :func:`wilson` — the Wilson score interval of a proportion, sound where the CLT interval is not
  (small n, a share near 0 or 1);
* :func:`clopper_pearson` — the exact (Clopper–Pearson) interval of a proportion, from the
  binomial distribution itself (for n up to :data:`EXACT_MAX_N`);
* :func:`variance_split` — with several samples per example, the variance of a score split into
  its between-example and within-example (sampling) parts;
* :func:`paired` — the difference of two models on the same examples: its SE, interval and the
  correlation of the two models' scores;
* :func:`mde`, :func:`examples_needed` — power: the smallest difference a run can detect, and the
  examples (and samples per example) needed to detect a given one;
* :func:`p_adjust` — Holm and Benjamini–Hochberg corrections for many tests at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

ALPHA = 0.05
POWER = 0.8
#: below this many examples (or clusters) a CLT interval is not to be trusted
MIN_CLT_N = 30
#: and a proportion needs at least this many successes and failures for it
MIN_CLT_COUNT = 5

CORRECTIONS = ("holm", "bh", "bonferroni", "none")
#: the largest n the exact interval is computed for (above it, Wilson's is as good)
EXACT_MAX_N = 1000


def z(q: float) -> float:
    """The standard normal quantile at ``q``."""
    return NormalDist().inv_cdf(q)


def z_two_sided(alpha: float = ALPHA) -> float:
    return z(1 - alpha / 2)


def _clean(values, clusters=None) -> tuple[np.ndarray, np.ndarray | None]:
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    if clusters is None:
        return v[ok], None
    c = np.asarray(clusters)
    return v[ok], c[ok]


def cluster_codes(labels) -> np.ndarray:
    """Integer codes 0..G-1 for cluster labels (None/NaN is a cluster of its own per example)."""
    # lazy: keeps pandas out of start-up
    import pandas as pd

    s = pd.Series(labels, dtype=object)
    codes, _ = pd.factorize(s, use_na_sentinel=True)
    missing = codes < 0
    if missing.any():  # an example without a cluster label stands alone
        codes = codes.copy()
        codes[missing] = codes.max() + 1 + np.arange(int(missing.sum()))
    return codes.astype(np.int64)


def mean_se(values, clusters=None) -> tuple[float, float, int, int]:
    """``(mean, se, n, n_clusters)`` of the non-NaN ``values``.

    Without clusters, ``se = sd / sqrt(n)`` (ddof 1). With ``clusters`` (one integer code per
    example), the cluster-robust standard error of the mean,
    ``se² = G/(G−1) · Σ_c (Σ_{i∈c} (x_i − x̄))² / n²`` — which is the unclustered one when every
    example is its own cluster.
    """
    v, c = _clean(values, clusters)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), 0, 0
    m = float(v.mean())
    if c is None:
        se = float(v.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return m, se, n, n
    _, inv = np.unique(c, return_inverse=True)
    g = int(inv.max()) + 1
    if g < 2:
        return m, float("nan"), n, g
    sums = np.bincount(inv, weights=v - m, minlength=g)
    se = math.sqrt(g / (g - 1) * float(np.sum(sums**2))) / n
    return m, se, n, g


def wilson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``successes / n`` (NaN when n = 0)."""
    if n <= 0:
        return float("nan"), float("nan")
    q = z_two_sided(alpha)
    p = successes / n
    denom = 1 + q * q / n
    centre = (p + q * q / (2 * n)) / denom
    half = q * math.sqrt(p * (1 - p) / n + q * q / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _binom_tail(x: int, n: int, p: float, lf: np.ndarray, upper: bool) -> float:
    """P(X ≥ x) (``upper``) or P(X ≤ x) for X ~ Binomial(n, p), summed in log space."""
    k = np.arange(x, n + 1) if upper else np.arange(0, x + 1)
    logpmf = lf[n] - lf[k] - lf[n - k] + k * math.log(p) + (n - k) * math.log1p(-p)
    top = logpmf.max()
    return float(math.exp(top) * np.exp(logpmf - top).sum())


def clopper_pearson(successes: float, n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The exact (Clopper–Pearson) interval of a proportion ``successes / n``: the p whose binomial
    tail at the observed count is ``alpha / 2`` on each side (0 and 1 at the ends), which is the
    beta-quantile form ``Beta(α/2; x, n−x+1)``, ``Beta(1−α/2; x+1, n−x)``. Found by bisection on
    the binomial tail (no scipy), to 1e-13; NaN when n = 0."""
    if n <= 0:
        return float("nan"), float("nan")
    x = int(round(successes))
    lf = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=float)))])
    half = alpha / 2

    def solve(f) -> float:  # f increasing in p on (0, 1): the p where f(p) = half
        lo, hi = 0.0, 1.0
        while hi - lo > 1e-13:
            mid = (lo + hi) / 2
            if f(mid) < half:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    # the lower end: where P(X ≥ x), which rises with p, is α/2
    low = 0.0 if x == 0 else solve(lambda p: _binom_tail(x, n, p, lf, upper=True))
    # the upper end for x is one minus the lower end for n − x failures, by symmetry
    high = 1.0 if x == n else 1.0 - solve(lambda p: _binom_tail(n - x, n, p, lf, upper=True))
    return low, high


def is_proportion(values) -> bool:
    """True when every non-NaN value is 0 or 1 (a pass/fail score)."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return len(v) > 0 and bool(np.all((v == 0) | (v == 1)))


def small_n_note(n: int, n_clusters: int | None = None, successes: float | None = None) -> str | None:
    """Why a CLT interval should not be trusted here, or None."""
    units = n if n_clusters is None else n_clusters
    what = "examples" if n_clusters is None or n_clusters == n else "clusters"
    if units < MIN_CLT_N:
        return (
            f"only {units} {what}: too few for the CLT; use the Wilson interval"
            if successes is not None and what == "examples"
            else f"only {units} {what}: too few for the CLT interval"
        )
    if successes is not None and min(successes, n - successes) < MIN_CLT_COUNT:
        return (
            f"{int(min(successes, n - successes))} {'successes' if successes < n - successes else 'failures'}: "
            "too few for the CLT; use the Wilson interval"
        )
    return None


@dataclass
class VarianceSplit:
    between: float  # variance of the examples' true mean scores
    within: float  # mean variance of one example's score across samples
    samples: float  # mean number of samples per example


def variance_split(example_index, values) -> VarianceSplit:
    """Split the variance of per-sample scores ``values`` (example ``example_index[j]`` for each).

    ``within`` is the mean over examples (with at least two samples) of the sample variance of
    their scores (ddof 1); ``between`` is the variance of the per-example means less the part the
    sampling noise adds to it, ``within / K`` (K the mean number of samples), floored at 0. Then
    the variance of a run's mean over n examples is ``(between + within / K) / n``.
    """
    idx = np.asarray(example_index, dtype=np.int64)
    v = np.asarray(values, dtype=float)
    ok = ~np.isnan(v)
    idx, v = idx[ok], v[ok]
    if len(v) == 0:
        return VarianceSplit(float("nan"), float("nan"), float("nan"))
    _, inv = np.unique(idx, return_inverse=True)
    g = int(inv.max()) + 1
    k = np.bincount(inv, minlength=g).astype(float)
    s = np.bincount(inv, weights=v, minlength=g)
    ss = np.bincount(inv, weights=v * v, minlength=g)
    means = s / k
    multi = k > 1
    within = float(np.mean((ss[multi] - k[multi] * means[multi] ** 2) / (k[multi] - 1))) if multi.any() else float("nan")
    K = float(k.mean())
    total = float(means.var(ddof=1)) if g > 1 else float("nan")
    between = total if math.isnan(within) else max(0.0, total - within / K)
    return VarianceSplit(between, max(0.0, within) if not math.isnan(within) else within, K)


@dataclass
class Paired:
    diff: float
    se: float
    ci_low: float
    ci_high: float
    correlation: float
    se_a: float
    se_b: float
    n: int
    n_clusters: int


def paired(a, b, clusters=None, alpha: float = ALPHA) -> Paired:
    """Model A − model B on the examples both have a score for (per-example scores ``a``, ``b``).

    ``se`` is the (clustered) standard error of the mean difference, which for unclustered
    examples is ``sqrt(se_a² + se_b² − 2 ρ se_a se_b)`` with ``ρ`` the correlation of the two
    models' scores: the more the models agree on which examples are hard, the smaller it is.
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    c = None if clusters is None else np.asarray(clusters)[ok]
    n = len(a)
    nan = float("nan")
    if n == 0:
        return Paired(nan, nan, nan, nan, nan, nan, nan, 0, 0)
    diff, se, _, g = mean_se(a - b, c)
    _, se_a, _, _ = mean_se(a, c)
    _, se_b, _, _ = mean_se(b, c)
    sa, sb = a.std(), b.std()
    rho = float(np.mean((a - a.mean()) * (b - b.mean())) / (sa * sb)) if n > 1 and sa > 0 and sb > 0 else nan
    q = z_two_sided(alpha)
    return Paired(diff, se, diff - q * se, diff + q * se, rho, se_a, se_b, n, g)


def mde(se: float, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at ``alpha`` detects with ``power``, given the
    standard error ``se`` of the estimate: ``(z_{1−α/2} + z_{power}) · se``."""
    return (z_two_sided(alpha) + z(power)) * se


def examples_needed(var_per_example: float, detect: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Examples needed so that a difference of ``detect`` is found with ``power`` by a two-sided
    test at ``alpha``, when one example's (paired) score difference has variance ``var_per_example``:
    ``n = (z_{1−α/2} + z_{power})² · var / detect²``, rounded up."""
    if not (detect > 0) or not math.isfinite(var_per_example) or not var_per_example > 0:
        return -1  # nothing to go on (no variance in the run)
    return max(1, math.ceil((z_two_sided(alpha) + z(power)) ** 2 * var_per_example / detect**2 - 1e-9))


def p_adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted p-values (reject where adjusted < alpha): ``holm`` (family-wise error, step-down
    Bonferroni), ``bh`` (Benjamini–Hochberg false discovery rate), ``bonferroni`` or ``none``."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    if m == 0 or method == "none":
        return p.copy()
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p, kind="mergesort")
    ps = p[order]
    if method == "holm":
        adj = np.maximum.accumulate((m - np.arange(m)) * ps)
    elif method == "bh":
        adj = np.minimum.accumulate(m / np.arange(m, 0, -1) * ps[::-1])[::-1]
    else:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {method!r}")
    out = np.empty(m)
    out[order] = np.minimum(1.0, adj)
    return out
