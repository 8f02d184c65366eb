"""The score stage's logic: per-example scores, aggregates with error bars, slices, comparisons.

A failed call (no output) scores as wrong: dropping it would flatter a model that errors. A
metric that fails on an example (an exception, a timeout in its worker) records a *score error*
on that example's row of scores.parquet (``score_error``) and leaves it out of the mean; the
stage goes on.

Error bars follow E. Miller, "Adding Error Bars to Evals" (arXiv 2411.00640), beside the
percentile bootstrap (``ci_low``/``ci_high``): the CLT standard error (``se``; clustered with
``dataset.cluster``), a Wilson interval for pass/fail scores, a note when n is too small for the
CLT, the split of the variance into between- and within-example parts when responses carry a
``sample`` index (several calls per example: the samples are averaged per example, never
pooled), paired differences with their SE, interval and correlation, and the minimum detectable
effect at 80 % power (see :mod:`assay.stats`).

Responses may have several rows per (example, model), told apart by an integer ``sample``
column (0..K-1); without it, or with one sample, there is one row per (example, model).
"""

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from assay import stats as ST
from assay.errors import DataError
from assay.metrics.adapter import EvaluateMetric
from assay.metrics.builtin import BUILTINS

#: above this many examples a mean's interval is the normal approximation, not a bootstrap
NORMAL_APPROX_N = 200_000

#: resamples for metrics that are not a mean of per-example scores (macro-F1, BLEU, ...)
CORPUS_RESAMPLES = 200

#: a corpus metric that is recomputed on every resample gets no interval below this many
MIN_CORPUS_RESAMPLES = 20

#: default bootstrap budget (whole recomputations per metric and run) of a corpus metric
#: without a vectorised path; a metric class can set its own ``bootstrap_budget``
CORPUS_BUDGET = 1000

#: default time budget (seconds per metric and run) of the per-example probe and the bootstrap of
#: a metric that recomputes on every resample (``bootstrap_budget_s``)
BUDGET_S = 60.0

METRIC_COLUMNS = [
    "model",
    "metric",
    "slice",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "errors",
    "higher_is_better",
    "se",
    "n_clusters",
    "wilson_low",
    "wilson_high",
    "exact_low",
    "exact_high",
    "mde",
    "samples",
    "var_between",
    "var_within",
    "resamples",
    "score_errors",
    "note",
]
COMPARISON_COLUMNS = [
    "metric",
    "model_a",
    "model_b",
    "diff",
    "p_value",
    "se",
    "ci_low",
    "ci_high",
    "correlation",
    "se_a",
    "se_b",
    "n",
    "n_clusters",
    "mde",
    "var_between",
    "var_within",
]


@dataclass
class ScoreResult:
    scores: pd.DataFrame  # example_id, model, metric, value, detail, score_error, samples
    metrics: pd.DataFrame  # METRIC_COLUMNS
    generalization: pd.DataFrame  # per model and metric: overall, worst/best slice, gaps
    comparisons: pd.DataFrame  # COMPARISON_COLUMNS: paired bootstrap p-value and paired CLT statistics
    computations: dict = field(default_factory=dict)  # metric key -> whole recomputations (corpus metrics)
    budgets: dict = field(default_factory=dict)  # metric key -> {budget, overall, slices} resamples used
    probes: dict = field(default_factory=dict)  # metric key -> how an aggregate-only module was scored (manifest)


def _nanmean(values) -> float:
    """Mean ignoring NaN; NaN (without a warning) when every value is NaN, e.g. all ungradable."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def _recomputes(metric, each) -> bool:
    """True for a metric whose bootstrap recomputes it whole on every resample."""
    return not (metric.decomposable and each is not None) and not hasattr(metric, "resample_aggregates")


def _cluster_members(clusters: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    _, inv = np.unique(clusters, return_inverse=True)
    order = np.argsort(inv, kind="mergesort")
    bounds = np.flatnonzero(np.diff(inv[order])) + 1
    return inv, np.split(order, bounds)


def _cluster_index_rows(rng, members: list[np.ndarray], k: int, pad: int) -> np.ndarray:
    """``k`` cluster-bootstrap resamples as rows of example indices, padded with ``pad`` to one width."""
    rows = [np.concatenate([members[c] for c in rng.integers(0, len(members), size=len(members))]) for _ in range(k)]
    width = max(len(r) for r in rows)
    out = np.full((k, width), pad, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def bootstrap_stats(
    metric, preds: list, refs: list, each: np.ndarray | None, resamples: int, seed: int, clusters: np.ndarray | None = None
) -> np.ndarray | None:
    """The metric on ``resamples`` bootstrap resamples of the examples (of the clusters, with
    ``clusters``), or None when there are none (too few examples, no resamples, or above
    :data:`NORMAL_APPROX_N` for a mean, whose interval is then the closed form). A mean of
    ``each`` reads neither ``preds`` nor ``refs`` (they may be None)."""
    n = len(preds) if preds is not None else len(each)
    if resamples <= 0 or n < 2:
        return None
    rng = np.random.default_rng(seed)
    if metric.decomposable and each is not None and n > NORMAL_APPROX_N:
        return None
    if metric.decomposable and each is not None and clusters is not None:
        vals = np.asarray(each, dtype=float)
        ok = ~np.isnan(vals)
        inv = np.unique(clusters, return_inverse=True)[1]
        g = int(inv.max()) + 1
        sums = np.bincount(inv[ok], weights=vals[ok], minlength=g)
        counts = np.bincount(inv[ok], minlength=g).astype(float)
        stats = np.empty(resamples)
        step = max(1, 2_000_000 // g)
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, g, size=(k, g))
            with np.errstate(invalid="ignore", divide="ignore"):
                stats[lo : lo + k] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
        return stats
    if metric.decomposable and each is not None:
        vals = np.asarray(each, dtype=float)
        stats = np.empty(resamples)
        step = max(1, 2_000_000 // n)  # keep the index matrix to a few MB
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample of only NaN scores
            for lo in range(0, resamples, step):
                k = min(step, resamples - lo)
                idx = rng.integers(0, n, size=(k, n))
                stats[lo : lo + k] = np.nanmean(vals[idx], axis=1)
        return stats
    if hasattr(metric, "resample_aggregates"):
        stats = np.empty(resamples)
        step = max(1, 2_000_000 // n)
        if clusters is not None:
            # whole clusters; rows padded with an extra example whose reference is missing (left out)
            members = _cluster_members(clusters)[1]
            pp, rr = list(preds) + [None], list(refs) + [None]
            for lo in range(0, resamples, step):
                k = min(step, resamples - lo)
                stats[lo : lo + k] = metric.resample_aggregates(pp, rr, _cluster_index_rows(rng, members, k, n))
            return stats
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            stats[lo : lo + k] = metric.resample_aggregates(preds, refs, rng.integers(0, n, size=(k, n)))
        return stats
    # corpus metrics recompute on every resample: capped so a run stays interactive
    resamples = min(resamples, CORPUS_RESAMPLES)
    stats = np.empty(resamples)
    p, r = np.asarray(preds, dtype=object), np.asarray(refs, dtype=object)
    members = _cluster_members(clusters)[1] if clusters is not None else None
    for b in range(resamples):
        if members is None:
            idx = rng.integers(0, n, size=n)
        else:
            idx = np.concatenate([members[c] for c in rng.integers(0, len(members), size=len(members))])
        stats[b] = metric.aggregate(list(p[idx]), list(r[idx]))
    return stats


def bootstrap_ci(
    metric,
    preds: list,
    refs: list,
    each: np.ndarray | None,
    resamples: int,
    seed: int,
    alpha: float = 0.05,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap interval; vectorised when the metric is a mean of per-example scores."""
    return _interval(metric, each, bootstrap_stats(metric, preds, refs, each, resamples, seed, clusters), resamples, alpha)


def _interval(metric, each, stats, resamples: int, alpha: float = 0.05) -> tuple[float, float]:
    if stats is None:
        n = 0 if each is None else len(each)
        if metric.decomposable and each is not None and n > NORMAL_APPROX_N and resamples > 0:
            # For a mean over this many examples the bootstrap distribution is normal to within
            # its own resampling noise; the closed form costs nothing.
            vals = np.asarray(each, dtype=float)
            vals = vals[~np.isnan(vals)]
            if len(vals) < 2:
                return (np.nan, np.nan)
            half = ST.z_two_sided(alpha) * float(vals.std(ddof=1)) / np.sqrt(len(vals))
            return float(vals.mean() - half), float(vals.mean() + half)
        return (np.nan, np.nan)
    lo, hi = np.nanpercentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def _paired_diffs(
    metric, preds_a, preds_b, refs, each_a, each_b, resamples: int, seed: int, clusters: np.ndarray | None = None
) -> tuple[float, np.ndarray | None]:
    n = len(refs) if refs is not None else len(each_a)
    if n < 2 or resamples <= 0:
        return np.nan, None
    rng = np.random.default_rng(seed)
    if metric.decomposable and each_a is not None and each_b is not None:
        d = np.asarray(each_a, float) - np.asarray(each_b, float)
        observed = float(np.nanmean(d)) if (~np.isnan(d)).any() else float("nan")
        diffs = np.empty(resamples)
        if clusters is not None:
            ok = ~np.isnan(d)
            inv = np.unique(clusters, return_inverse=True)[1]
            g = int(inv.max()) + 1
            sums = np.bincount(inv[ok], weights=d[ok], minlength=g)
            counts = np.bincount(inv[ok], minlength=g).astype(float)
            step = max(1, 2_000_000 // g)
            for lo in range(0, resamples, step):
                k = min(step, resamples - lo)
                idx = rng.integers(0, g, size=(k, g))
                with np.errstate(invalid="ignore", divide="ignore"):
                    diffs[lo : lo + k] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
            return observed, diffs
        step = max(1, 2_000_000 // n)
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(k, n))
            diffs[lo : lo + k] = np.nanmean(d[idx], axis=1)
    elif hasattr(metric, "resample_aggregates"):
        observed = metric.aggregate(preds_a, refs) - metric.aggregate(preds_b, refs)
        diffs = np.empty(resamples)
        step = max(1, 2_000_000 // n)
        if clusters is not None:
            members = _cluster_members(clusters)[1]
            pa_, pb_, rr = list(preds_a) + [None], list(preds_b) + [None], list(refs) + [None]
            for lo in range(0, resamples, step):
                k = min(step, resamples - lo)
                idx = _cluster_index_rows(rng, members, k, n)
                diffs[lo : lo + k] = metric.resample_aggregates(pa_, rr, idx) - metric.resample_aggregates(pb_, rr, idx)
            return observed, diffs
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(k, n))
            diffs[lo : lo + k] = metric.resample_aggregates(preds_a, refs, idx) - metric.resample_aggregates(preds_b, refs, idx)
    else:
        resamples = min(resamples, CORPUS_RESAMPLES)
        a, b, r = (np.asarray(x, dtype=object) for x in (preds_a, preds_b, refs))
        observed = metric.aggregate(list(a), list(r)) - metric.aggregate(list(b), list(r))
        diffs = np.empty(resamples)
        members = _cluster_members(clusters)[1] if clusters is not None else None
        for i in range(resamples):
            if members is None:
                idx = rng.integers(0, n, size=n)
            else:
                idx = np.concatenate([members[c] for c in rng.integers(0, len(members), size=len(members))])
            diffs[i] = metric.aggregate(list(a[idx]), list(r[idx])) - metric.aggregate(list(b[idx]), list(r[idx]))
    return observed, diffs


def _p_value(observed: float, diffs: np.ndarray | None) -> float:
    if diffs is None:
        return np.nan
    # shift the bootstrap distribution to the null of no difference
    centred = diffs - np.nanmean(diffs)
    return float((np.sum(np.abs(centred) >= abs(observed)) + 1) / (len(diffs) + 1))


def paired_bootstrap(
    metric, preds_a, preds_b, refs, each_a, each_b, resamples: int, seed: int, clusters: np.ndarray | None = None
) -> tuple[float, float]:
    """Difference A − B on the same examples and a two-sided bootstrap p-value for 'no difference'."""
    observed, diffs = _paired_diffs(metric, preds_a, preds_b, refs, each_a, each_b, resamples, seed, clusters)
    if diffs is None:
        return (np.nan, np.nan)
    return observed, _p_value(observed, diffs)


# --------------------------------------------------------------------------------------------- per-example scores


@dataclass
class _Scored:
    """One metric's per-example results for one model (one row per example)."""

    values: dict  # sub-key ("" for the metric's own key) -> per-example scores or None
    details: list | None = None
    errors: list | None = None  # score error per example (None where it scored)
    split: dict = field(default_factory=dict)  # sub-key -> per-example (within-variance, samples) arrays


def _score_rows(metric, preds: list, refs: list, rows: list | None, inputs: list | None):
    """Run a metric over rows (one per response): ({sub-key: values}, details, errors)."""
    if hasattr(metric, "score_examples"):  # function metrics, pass_at_k: per example, maybe in workers
        res = metric.score_examples(preds, refs, rows)
        return res.values, res.details, res.errors
    if getattr(metric, "needs_inputs", False):
        each = metric.score_each(preds, refs, inputs=inputs)
    else:
        each = metric.score_each(preds, refs)
    details = getattr(metric, "last_details", None)
    if details is not None and len(details) != len(preds):
        details = None
    return {"": each}, details, None


def _combine(metric, ex_index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-example scores from per-sample ones: the metric's own rule (pass@k), else the mean."""
    combine = getattr(metric, "combine_samples", None)
    if combine is not None:
        return np.asarray(combine(ex_index, values, n), dtype=float)
    ok = ~np.isnan(values)
    s = np.bincount(ex_index[ok], weights=values[ok], minlength=n)
    c = np.bincount(ex_index[ok], minlength=n)
    out = np.full(n, np.nan)
    np.divide(s, c, out=out, where=c > 0)
    return out


def _within(ex_index: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per example: the sample variance of its scores (NaN with fewer than 2) and its sample count."""
    ok = ~np.isnan(values)
    k = np.bincount(ex_index[ok], minlength=n).astype(float)
    s = np.bincount(ex_index[ok], weights=values[ok], minlength=n)
    ss = np.bincount(ex_index[ok], weights=values[ok] ** 2, minlength=n)
    w = np.full(n, np.nan)
    multi = k > 1
    w[multi] = np.maximum(0.0, (ss[multi] - s[multi] ** 2 / k[multi]) / (k[multi] - 1))
    return w, k


def _split(w: np.ndarray, k: np.ndarray, each: np.ndarray) -> tuple[float, float, float]:
    """(between, within, mean samples) of a group from per-example within-variances and means."""
    ok = ~np.isnan(each) & (k > 0)
    if not ok.any():
        return np.nan, np.nan, np.nan
    K = float(k[ok].mean())
    wv = w[ok]
    within = float(np.nanmean(wv)) if (~np.isnan(wv)).any() else np.nan
    total = float(np.var(each[ok], ddof=1)) if ok.sum() > 1 else np.nan
    between = total if np.isnan(within) else max(0.0, total - within / K)
    return between, within, K


def _budget(
    metric,
    spec_budget: int | None,
    resamples: int,
    n_models: int,
    n_groups: int,
    n_pairs: int,
    budget_s: float | None = None,
    unit_s: float | None = None,
    spent_s: float = 0.0,
) -> dict:
    """Resamples per interval for a corpus metric that recomputes on every resample.

    The budget is in whole computations: ``spec_budget`` (or the metric's ``bootstrap_budget``),
    and at most as many as fit in what is left of ``budget_s`` seconds after ``spent_s`` (the
    per-example probe), one computation taking ``unit_s`` (measured). Overall intervals and
    comparisons come first (up to :data:`CORPUS_RESAMPLES` each, a comparison costing two
    computations per resample), slices share what is left; fewer than
    :data:`MIN_CORPUS_RESAMPLES` means no interval.
    """
    budget = int(spec_budget if spec_budget is not None else getattr(metric, "bootstrap_budget", CORPUS_BUDGET))
    by = "count"
    if budget_s is not None and unit_s:
        fit = int(max(0.0, budget_s - spent_s) // unit_s)
        if fit < budget:
            budget, by = fit, "time"
    want = min(resamples, CORPUS_RESAMPLES)
    units = n_models + 2 * n_pairs
    overall = min(want, budget // max(1, units))
    if overall < MIN_CORPUS_RESAMPLES:
        overall = 0
    left = budget - overall * units
    slice_units = n_models * max(0, n_groups - 1)
    per_slice = min(overall, left // slice_units) if slice_units else overall  # no slices: nothing to share
    if per_slice < MIN_CORPUS_RESAMPLES:
        per_slice = 0
    return {
        "budget": budget,
        "overall": overall,
        "slices": per_slice,
        "wanted": want,
        "used": overall * units + per_slice * slice_units,
        "by": by,
        "budget_s": budget_s,
        "computation_s": unit_s,
        "probe_s": spent_s,
    }


class _Counting:
    """Counts a metric's whole computations (aggregate calls) while the bootstrap runs."""

    def __init__(self, metric):
        self._m = metric
        self.count = 0

    def __getattr__(self, name):
        return getattr(self._m, name)

    def aggregate(self, preds, refs):
        self.count += 1
        return self._m.aggregate(preds, refs)


def _groups(ds: pd.DataFrame, slices: list[str], held_out: dict | None) -> list[tuple[str, np.ndarray]]:
    groups = [("all", np.ones(len(ds), dtype=bool))]
    for col in slices:
        for value in sorted(ds[col].dropna().unique().tolist(), key=str):
            groups.append((f"{col}={value}", (ds[col] == value).to_numpy()))
    if held_out:
        mask = np.zeros(len(ds), dtype=bool)
        for col, values in held_out.items():
            mask |= ds[col].isin(values).to_numpy()
        groups.append(("held_out", mask))
        groups.append(("in_distribution", ~mask))
    return groups


def _model_rows(resp: pd.DataFrame, model: str, ids: pd.Series, sampled: bool):
    """One model's responses aligned with the examples: (example index per row, outputs, failed)."""
    r = resp[resp["model"] == model]
    if not sampled:
        r = r.set_index("example_id").reindex(ids)
        ex = np.arange(len(ids))
    else:
        pos = pd.Series(np.arange(len(ids)), index=ids.values)
        r = r[r["example_id"].astype(str).isin(pos.index)]
        r = r.sort_values(["example_id", "sample"], kind="mergesort")
        ex = pos.loc[r["example_id"].astype(str)].to_numpy()
        missing = np.setdiff1d(np.arange(len(ids)), ex)
        if len(missing):  # no response at all: one failed row, so the example counts as wrong
            extra = pd.DataFrame(
                {"example_id": ids.values[missing], "model": model, "output": None, "error": "no response", "sample": 0}
            )
            r = pd.concat([r, extra], ignore_index=True)
            ex = np.concatenate([ex, missing])
    preds = [None if (isinstance(o, float) and np.isnan(o)) else o for o in r["output"].tolist()]
    errors = r["error"].notna().to_numpy() | r["output"].isna().to_numpy()
    return ex.astype(np.int64), preds, errors


def _group_rows(
    model: str,
    out_key: str,
    metric,
    m_used,
    hib: bool,
    each: np.ndarray | None,
    preds: list | None,
    refs_all: list | None,
    groups: list,
    errors: np.ndarray,
    n_score_err: np.ndarray,
    w,
    k,
    note_parts: list,
    plan: dict | None,
    resamples: int,
    seed: int,
    clusters: np.ndarray | None,
    sampled: bool,
    alpha: float,
    power: float,
) -> list[dict]:
    """metrics.parquet's rows of one model and metric: one per group (slice) with examples.

    ``preds`` and ``refs_all`` (one per example) are only read for a metric that is not a mean of
    ``each`` (a corpus metric), so a decomposable metric may be given None for both: its figures
    come from the per-example scores alone (see :func:`score_batches`)."""
    rows = []
    recompute = plan is not None

    for gi, (name, mask) in enumerate(groups):
        n = int(mask.sum())
        if n == 0:
            continue
        # every example (the "all" group): views, not copies of millions of scores
        idx = np.flatnonzero(mask) if n < len(mask) else slice(None)
        e = None if each is None else each[idx]
        cl = None if clusters is None else clusters[idx]
        decomposable = metric.decomposable and e is not None
        p = rf = None
        if not decomposable:  # a corpus metric needs the texts; a mean only its per-example scores
            at = range(len(mask)) if isinstance(idx, slice) else idx
            p = [preds[i] for i in at]
            rf = [refs_all[i] for i in at]
        value = _nanmean(e) if decomposable else float(m_used.aggregate(p, rf))
        r_here = resamples
        if recompute:
            r_here = plan["overall" if name == "all" else "slices"]
        note_parts_g = []
        boot = bootstrap_stats(m_used, p, rf, e, r_here, seed + gi, cl)
        lo, hi = _interval(metric, e, boot, r_here)
        used = 0 if boot is None else len(boot)
        se = n_cl = np.nan
        wl = wh = el = eh = np.nan
        vb = vw = ks = np.nan
        successes = None
        n_valid = n
        if decomposable:
            _, se, n_valid, n_cl = ST.mean_se(e, cl)
            if clusters is None and ST.is_proportion(e):
                successes = float(np.nansum(e))
                wl, wh = ST.wilson(successes, n_valid, alpha)
                if n_valid <= ST.EXACT_MAX_N:
                    el, eh = ST.clopper_pearson(successes, n_valid, alpha)
            if sampled and w is not None:
                vb, vw, ks = _split(w[idx], k[idx], e)
        elif boot is not None and len(boot) > 1:
            se = float(np.nanstd(boot, ddof=1))
        if cl is not None and not decomposable:
            n_cl = len(np.unique(cl))
        notes = list(note_parts) + note_parts_g
        if decomposable and n_valid:
            small = ST.small_n_note(n_valid, None if clusters is None else int(n_cl), successes)
            if small:
                notes.append(small)
        if recompute and r_here < plan["wanted"] and resamples > 0:
            if plan.get("by") == "time":
                notes.append(
                    f"bootstrap_budget_s {plan['budget_s']:g} (one computation {plan['computation_s']:.3g} s): "
                    f"{r_here} resamples" + ("" if r_here else f" (no interval: fewer than {MIN_CORPUS_RESAMPLES} fit)")
                )
            else:
                notes.append(f"bootstrap_budget {plan['budget']}: {r_here} resamples" + ("" if r_here else " (no interval)"))
        rows.append(
            {
                "model": model,
                "metric": out_key,
                "slice": name,
                "value": value,
                "n": n,
                "ci_low": lo,
                "ci_high": hi,
                "errors": int(errors[idx].sum()),
                "higher_is_better": hib,
                "se": se,
                "n_clusters": int(n_cl) if clusters is not None and not np.isnan(n_cl) else np.nan,
                "wilson_low": wl,
                "wilson_high": wh,
                "exact_low": el,
                "exact_high": eh,
                "mde": ST.mde(se, alpha, power) if not np.isnan(se) else np.nan,
                "samples": ks,
                "var_between": vb,
                "var_within": vw,
                "resamples": used,
                "score_errors": int(n_score_err[idx].sum()),
                "note": "; ".join(notes) or None,
            }
        )
    return rows


class _Mean:
    """The metric of per-example scores whose value is their mean (for :func:`paired_comparison`)."""

    decomposable = True


def paired_comparison(
    each_a,
    each_b,
    clusters: np.ndarray | None = None,
    resamples: int = 1000,
    seed: int = 0,
    alpha: float = ST.ALPHA,
    power: float = ST.POWER,
) -> dict:
    """A − B of two arrays of per-example scores on the same examples (NaN where one has none):
    the difference, its paired bootstrap p-value, and its paired CLT standard error, interval,
    correlation and minimum detectable effect, clustered by ``clusters`` when given.

    The one computation of a paired difference: the score stage's comparisons.parquet (models of
    one run) and the compare page (one model in two runs) both call it."""
    ea, eb = np.asarray(each_a, float), np.asarray(each_b, float)
    observed, diffs = _paired_diffs(_Mean, None, None, None, ea, eb, resamples, seed, clusters)
    pr = ST.paired(ea, eb, clusters, alpha)
    return {
        "diff": observed,
        "p_value": _p_value(observed, diffs),
        "se": pr.se,
        "ci_low": pr.ci_low,
        "ci_high": pr.ci_high,
        "correlation": pr.correlation,
        "se_a": pr.se_a,
        "se_b": pr.se_b,
        "n": pr.n,
        "n_clusters": pr.n_clusters if clusters is not None else np.nan,
        "mde": ST.mde(pr.se, alpha, power),
    }


def _comparisons(
    entries: dict,
    models: list,
    per_model: dict,
    plans: dict,
    counters: dict,
    resamples: int,
    seed: int,
    clusters: np.ndarray | None,
    refs_all: list | None,
    sampled: bool,
    alpha: float,
    power: float,
) -> pd.DataFrame:
    """comparisons.parquet: each pair of models on each metric (paired bootstrap and paired CLT figures).
    ``refs_all`` and ``per_model[m]["preds"]`` are only read for corpus metrics (may be None otherwise)."""
    comparisons = []
    for out_key, (metric, _hib) in entries.items():
        m_used = counters.get(out_key, metric)
        for i, a in enumerate(models):
            for b in models[i + 1 :]:
                ea, eb = per_model[a]["each"].get(out_key), per_model[b]["each"].get(out_key)
                r_here = plans[out_key]["overall"] if out_key in plans else resamples
                row = {"metric": out_key, "model_a": a, "model_b": b}
                if metric.decomposable and ea is not None and eb is not None:
                    row.update(paired_comparison(ea, eb, clusters, r_here, seed, alpha, power))
                    vb = vw = np.nan
                    if sampled:
                        (wa, ka), (wb, kb) = per_model[a]["split"][out_key], per_model[b]["split"][out_key]
                        if wa is not None and wb is not None:
                            ok = ~(np.isnan(ea) | np.isnan(eb))
                            d = (ea - eb)[ok]
                            vw = float(np.nanmean(wa[ok])) + float(np.nanmean(wb[ok])) if len(d) else np.nan
                            if not np.isnan(vw) and len(d) > 1:
                                vb = max(
                                    0.0,
                                    float(np.var(d, ddof=1))
                                    - float(np.nanmean(wa[ok])) / float(ka[ok].mean())
                                    - float(np.nanmean(wb[ok])) / float(kb[ok].mean()),
                                )
                    row.update(var_between=vb, var_within=vw)
                else:
                    observed, diffs = _paired_diffs(
                        m_used, per_model[a]["preds"], per_model[b]["preds"], refs_all, ea, eb, r_here, seed, clusters
                    )
                    se = float(np.nanstd(diffs, ddof=1)) if diffs is not None and len(diffs) > 1 else np.nan
                    q = ST.z_two_sided(alpha)
                    n_ok = sum(1 for r in refs_all if r is not None and not (isinstance(r, float) and np.isnan(r)))
                    row.update(
                        diff=observed,
                        p_value=_p_value(observed, diffs),
                        se=se,
                        ci_low=observed - q * se,
                        ci_high=observed + q * se,
                        correlation=np.nan,
                        se_a=np.nan,
                        se_b=np.nan,
                        n=n_ok,
                        n_clusters=len(np.unique(clusters)) if clusters is not None else np.nan,
                        mde=ST.mde(se, alpha, power) if not np.isnan(se) else np.nan,
                        var_between=np.nan,
                        var_within=np.nan,
                    )
                comparisons.append(row)
    comparisons_df = pd.DataFrame(comparisons, columns=COMPARISON_COLUMNS)
    comparisons_df["n"] = comparisons_df["n"].astype("int64")
    comparisons_df["n_clusters"] = comparisons_df["n_clusters"].astype("Int64")
    return comparisons_df


def _metrics_frame(rows: list[dict]) -> pd.DataFrame:
    metrics_df = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    for col in ("n_clusters", "resamples", "score_errors"):
        metrics_df[col] = metrics_df[col].astype("Int64" if col == "n_clusters" else "int64")
    return metrics_df


def score(
    dataset: pa.Table,
    responses: pa.Table,
    metrics: dict,
    slices: list[str],
    resamples: int = 1000,
    seed: int = 0,
    held_out: dict[str, list[str]] | None = None,
    inputs: list[str] | None = None,
    cluster: str | None = None,
    budgets: dict[str, int] | None = None,
    alpha: float = ST.ALPHA,
    power: float = ST.POWER,
    deterministic: set[str] | frozenset = frozenset(),
    score_rows=None,
    budgets_s: dict[str, float] | None = None,
) -> ScoreResult:
    """Score every model's responses against the references with each metric.

    ``metrics`` maps a metric key to a built metric (see ``assay.metrics``). A metric with
    ``needs_inputs = True`` (an LLM judge) also gets ``inputs``: the prompt each example was
    asked with. A metric that sets ``last_details`` (a list aligned with the examples, e.g.
    a judge's raw answers) has them kept in scores.parquet's ``detail`` column. A metric with
    ``score_examples`` (function metrics, ``pass_at_k``) is called per example with the example's
    row, may give several named scores (metric ``key.name``) and records score errors.

    ``cluster`` names a dataset column whose equal values mark examples that are not independent:
    standard errors and bootstrap resamples are then by cluster. ``budgets`` (metric key -> whole
    recomputations) bounds the bootstrap of corpus metrics that recompute on every resample.
    ``deterministic`` names models that answer an example the same way every time (batch
    providers): when other models are sampled, their within-example variance is 0, not unknown.
    ``score_rows(key, metric, preds, refs, rows, inputs, model=...)``, when given, replaces the per-example
    scoring of each (model, metric) (the score stage passes one that scores chunks on a cluster).

    A metric with ``probe`` (an ``evaluate`` module) that gives no per-example scores is probed
    first (:meth:`~assay.metrics.adapter.EvaluateMetric.probe`, within ``budgets_s[key]`` seconds,
    :data:`BUDGET_S` by default): when it is a mean of per-example values, those values are its
    scores from then on (intervals, slices, comparisons without recomputing it); otherwise its
    bootstrap resamples within what is left of that time. ``probes`` in the result says which.
    """
    ds = dataset.to_pandas(types_mapper=None)
    ids = ds["example_id"].astype(str)
    n_ex = len(ds)
    refs_all = ds["reference"].tolist() if "reference" in ds else [None] * n_ex
    resp = responses.to_pandas()
    sampled = "sample" in resp.columns and resp["sample"].notna().any() and resp["sample"].nunique() > 1
    if "sample" in resp.columns and not sampled:
        resp = resp.drop_duplicates(["example_id", "model"], keep="last")
    models = list(dict.fromkeys(resp["model"].tolist()))
    groups = _groups(ds, slices, held_out)
    clusters = ST.cluster_codes(ds[cluster].tolist()) if cluster else None
    need_rows = any(getattr(m, "needs_rows", False) for m in metrics.values())
    rows_all = ds.to_dict("records") if need_rows else None
    n_pairs = len(models) * (len(models) - 1) // 2
    plans: dict[str, dict] = {}
    counters: dict[str, _Counting] = {}

    aligned = {}
    for model in models:
        ex, preds_long, failed_long = _model_rows(resp, model, ids, sampled)
        first = np.ones(len(ex), dtype=bool)
        if sampled:  # rows are sorted by example then sample, except the placeholder rows at the end
            order = np.argsort(ex, kind="mergesort")
            ex, preds_long, failed_long = ex[order], [preds_long[i] for i in order], failed_long[order]
            first = np.r_[True, ex[1:] != ex[:-1]] if len(ex) else np.zeros(0, bool)
        aligned[model] = (ex, preds_long, failed_long, first)
    probes, probed = _probe_aggregates(metrics, models, aligned, refs_all, sampled, budgets_s or {})

    score_frames, rows = [], []
    per_model: dict[str, dict] = {}
    entries: dict[str, tuple] = {}  # output key -> (metric, higher_is_better)
    for model in models:
        ex, preds_long, failed_long, first = aligned[model]
        preds = [preds_long[i] for i in np.flatnonzero(first)]  # one (the first sample) per example
        errors = np.bincount(ex, weights=failed_long.astype(float), minlength=n_ex)
        per_model[model] = {"preds": preds, "each": {}, "split": {}}
        for key, metric in metrics.items():
            if hasattr(metric, "for_model"):  # a metric that compares models (pairwise) counts its calls per model
                metric.for_model(model)
            refs_long = [refs_all[i] for i in ex] if sampled else refs_all
            rows_long = None if rows_all is None else ([rows_all[i] for i in ex] if sampled else rows_all)
            inputs_long = None if inputs is None else ([inputs[i] for i in ex] if sampled else inputs)
            if key in probed:  # an aggregate-only module found to be a mean: its probe's per-example values
                values, details, serr = {"": probed[key][model]}, None, None
            elif score_rows is None:
                values, details, serr = _score_rows(metric, preds_long, refs_long, rows_long, inputs_long)
            else:
                values, details, serr = score_rows(key, metric, preds_long, refs_long, rows_long, inputs_long, model=model)
            score_err = None
            if serr is not None and any(e is not None for e in serr):
                score_err = [None] * n_ex
                for j, e in enumerate(serr):
                    if e is not None:
                        i = int(ex[j])
                        score_err[i] = e if score_err[i] is None else f"{score_err[i]}; {e}"
            n_score_err = np.array([e is not None for e in score_err]) if score_err is not None else np.zeros(n_ex, bool)
            if sampled and details is not None:
                details = [details[j] for j in np.flatnonzero(first)]
            for sub, each_long in values.items():
                out_key = key if sub == "" else f"{key}.{sub}"
                hib_of = getattr(metric, "higher_is_better_of", None)
                hib = bool(hib_of(sub)) if (hib_of is not None and sub) else bool(metric.higher_is_better)
                entries.setdefault(out_key, (metric, hib))
                note_parts = []
                if each_long is None:
                    each = None
                    w = k = None
                elif sampled:
                    each_long = np.asarray(each_long, float)
                    each = _combine(metric, ex, each_long, n_ex)
                    w, k = _within(ex, each_long, n_ex)
                    if model in deterministic:  # one answer, whatever the number of calls: nothing varies
                        w = np.where(k > 0, 0.0, np.nan)
                else:
                    each = np.asarray(each_long, float)
                    w = k = None
                if sampled and not (metric.decomposable and each is not None):
                    note_parts.append("a corpus metric: computed on each example's first sample")
                if key in probes:
                    note_parts.append(probes[key].note)
                per_model[model]["each"][out_key] = each
                per_model[model]["split"][out_key] = (w, k)
                if each is not None:
                    frame = {
                        "example_id": ids.values,
                        "model": model,
                        "metric": out_key,
                        "value": np.asarray(each, dtype=float),
                        "detail": details if details is not None and len(details) == n_ex else [None] * n_ex,
                    }
                    if score_err is not None:
                        frame["score_error"] = score_err
                    if sampled:
                        frame["samples"] = k.astype(np.int64)
                    score_frames.append(pd.DataFrame(frame))
                recompute = _recomputes(metric, each)
                m_used = metric
                if recompute:
                    if out_key not in plans:
                        counters[out_key] = _Counting(metric)
                        pr = probes.get(key)
                        unit = getattr(metric, "computation_s", None) if pr is not None else None
                        if not unit:  # one computation, timed: the unit of the time budget
                            t = time.perf_counter()
                            counters[out_key].aggregate(preds, refs_all)
                            unit = time.perf_counter() - t
                        plans[out_key] = _budget(
                            metric,
                            (budgets or {}).get(key),
                            resamples,
                            len(models),
                            len(groups),
                            n_pairs,
                            budget_s=(budgets_s or {}).get(key, BUDGET_S),
                            unit_s=unit,
                            spent_s=pr.probe_s if pr is not None else 0.0,
                        )
                    m_used = counters[out_key]
                rows += _group_rows(
                    model,
                    out_key,
                    metric,
                    m_used,
                    hib,
                    each,
                    preds,
                    refs_all,
                    groups,
                    errors,
                    n_score_err,
                    w,
                    k,
                    note_parts,
                    plans.get(out_key) if recompute else None,
                    resamples,
                    seed,
                    clusters,
                    sampled,
                    alpha,
                    power,
                )
    metrics_df = _metrics_frame(rows)
    cols = ["example_id", "model", "metric", "value", "detail"]
    if score_frames:
        scores_df = pd.concat(score_frames, ignore_index=True)
        if "score_error" not in scores_df:
            scores_df["score_error"] = None
        scores_df["score_error"] = scores_df["score_error"].astype(object).where(scores_df["score_error"].notna(), None)
    else:
        scores_df = pd.DataFrame(columns=cols + ["score_error"])
    comparisons_df = _comparisons(
        entries, models, per_model, plans, counters, resamples, seed, clusters, refs_all, sampled, alpha, power
    )
    computations = {k: c.count for k, c in counters.items()}
    return ScoreResult(
        scores_df,
        metrics_df,
        generalization(metrics_df),
        comparisons_df,
        computations,
        plans,
        {
            k: {
                "scored": "per example" if p.mean else "whole set, resampled",
                "note": p.note,
                "whole_s": round(p.whole_s, 4),
                "probe_s": round(p.probe_s, 4),
                "probe_skipped": p.skipped,
            }
            for k, p in probes.items()
        },
    )


def _probe_aggregates(metrics: dict, models: list, aligned: dict, refs_all: list, sampled: bool, budgets_s: dict):
    """(probes, probed): each aggregate-only module's :class:`~assay.metrics.adapter.Probe`, and for those
    that are a mean, their per-example values by model (one per response row)."""
    probes, probed = {}, {}
    for key, metric in metrics.items():
        if not hasattr(metric, "probe") or not models:
            continue
        inputs = {}
        for model in models:
            ex, preds_long = aligned[model][0], aligned[model][1]
            inputs[model] = (preds_long, [refs_all[i] for i in ex] if sampled else refs_all)
        if metric.score_each(*inputs[models[0]]) is not None:  # the module returns a per-example list itself
            continue
        pr = metric.probe(inputs, budgets_s.get(key, BUDGET_S))
        probes[key] = pr
        if pr.mean:
            metric.decomposable = True
            probed[key] = pr.each
    return probes, probed


def generalization(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric: the overall value, the worst and best slice, the gap, held-out gap."""
    out = []
    if metrics_df.empty:
        return pd.DataFrame(
            columns=[
                "model",
                "metric",
                "overall",
                "worst_slice",
                "worst_value",
                "best_slice",
                "best_value",
                "gap",
                "in_distribution",
                "held_out",
                "held_out_gap",
            ]
        )
    for (model, metric), g in metrics_df.groupby(["model", "metric"], sort=False):
        hib = bool(g["higher_is_better"].iloc[0])
        overall = g.loc[g["slice"] == "all", "value"]
        sl = g[g["slice"].str.contains("=", regex=False)]
        row = {
            "model": model,
            "metric": metric,
            "overall": float(overall.iloc[0]) if len(overall) else np.nan,
            "worst_slice": None,
            "worst_value": np.nan,
            "best_slice": None,
            "best_value": np.nan,
            "gap": np.nan,
            "in_distribution": np.nan,
            "held_out": np.nan,
            "held_out_gap": np.nan,
        }
        if len(sl):
            srt = sl.sort_values("value", ascending=hib)
            worst, best = srt.iloc[0], srt.iloc[-1]
            row.update(
                worst_slice=worst["slice"],
                worst_value=float(worst["value"]),
                best_slice=best["slice"],
                best_value=float(best["value"]),
                gap=abs(float(best["value"]) - float(worst["value"])),
            )
        ind = g.loc[g["slice"] == "in_distribution", "value"]
        ho = g.loc[g["slice"] == "held_out", "value"]
        if len(ind) and len(ho):
            row.update(
                in_distribution=float(ind.iloc[0]),
                held_out=float(ho.iloc[0]),
                held_out_gap=float(ind.iloc[0]) - float(ho.iloc[0]) if hib else float(ho.iloc[0]) - float(ind.iloc[0]),
            )
        out.append(row)
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------ by record batch
class NotStreamed(Exception):
    """A metric that turned out not to score example by example: the whole-table path scores it."""


def streams(metric) -> bool:
    """Whether a metric can be scored batch by batch (:func:`score_batches`): a built-in mean of
    per-example scores that needs neither the dataset rows, nor the prompts, nor keeps details."""
    return (
        bool(metric.decomposable)
        and type(metric) in BUILTINS.values()
        and hasattr(metric, "score_each")
        and not isinstance(metric, EvaluateMetric)  # decomposable only once a module returned per-example scores
        and not hasattr(metric, "score_examples")
        and not getattr(metric, "needs_rows", False)
        and not getattr(metric, "needs_inputs", False)
        and not hasattr(metric, "combine_samples")
    )


def score_batches(
    n_ex: int,
    models: list[str],
    metrics: dict,
    batches,
    groups: list[tuple[str, np.ndarray]],
    resamples: int = 1000,
    seed: int = 0,
    clusters: np.ndarray | None = None,
    on_scores=None,
    alpha: float = ST.ALPHA,
    power: float = ST.POWER,
) -> ScoreResult:
    """:func:`score` for metrics that :func:`streams` (one response per example and model), with
    the texts read batch by batch: ``batches(model)`` yields ``(predictions, references, failed)``
    for consecutive examples (lists and a bool array), in the dataset's order. Only the numbers
    are kept whole (a float per example, model and metric), so memory does not grow with the texts.

    ``on_scores(model, key, values)`` is given each model's per-example scores of each metric, in
    the order of :func:`score`'s scores table (which is None here: the caller writes it). Figures
    are the same as :func:`score`'s on the same data.
    """
    rows: list[dict] = []
    per_model: dict[str, dict] = {}
    entries: dict[str, tuple] = {}
    no_errors = np.zeros(n_ex, bool)
    for model in models:
        scored = {key: np.empty(n_ex) for key in metrics}
        errors = np.zeros(n_ex, bool)  # failed calls (counted per group: a sum of booleans)
        at = 0
        for preds, refs, failed in batches(model):
            k = len(preds)
            if at + k > n_ex:
                raise DataError(f"model {model}: more responses than the {n_ex} examples")
            errors[at : at + k] = failed
            for key, metric in metrics.items():
                v = metric.score_each(preds, refs)
                if v is None:
                    raise NotStreamed(f"{key} gave no per-example scores")
                scored[key][at : at + k] = v
            at += k
        if at != n_ex:
            raise DataError(f"model {model}: {at} responses for {n_ex} examples")
        per_model[model] = {"preds": None, "each": {}, "split": {}}
        for key, metric in metrics.items():
            each = scored.pop(key)
            hib = bool(metric.higher_is_better)
            entries.setdefault(key, (metric, hib))
            per_model[model]["each"][key] = each
            per_model[model]["split"][key] = (None, None)
            if on_scores is not None:
                on_scores(model, key, each)
            rows += _group_rows(
                model,
                key,
                metric,
                metric,
                hib,
                each,
                None,
                None,
                groups,
                errors,
                no_errors,
                None,
                None,
                [],
                None,
                resamples,
                seed,
                clusters,
                False,
                alpha,
                power,
            )
    metrics_df = _metrics_frame(rows)
    comparisons_df = _comparisons(entries, models, per_model, {}, {}, resamples, seed, clusters, None, False, alpha, power)
    return ScoreResult(None, metrics_df, generalization(metrics_df), comparisons_df, {}, {})
