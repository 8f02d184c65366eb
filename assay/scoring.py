"""The score stage's logic: per-example scores, aggregates with bootstrap intervals, slices.

A failed call (no output) scores as wrong: dropping it would flatter a model that errors.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa


#: above this many examples a mean's interval is the normal approximation, not a bootstrap
NORMAL_APPROX_N = 200_000

#: resamples for metrics that are not a mean of per-example scores (macro-F1, BLEU, ...)
CORPUS_RESAMPLES = 200


@dataclass
class ScoreResult:
    scores: pd.DataFrame          # example_id, model, metric, value
    metrics: pd.DataFrame         # model, metric, slice, value, n, ci_low, ci_high, errors
    generalization: pd.DataFrame  # per model and metric: overall, worst/best slice, gaps
    comparisons: pd.DataFrame     # paired bootstrap: metric, model_a, model_b, diff, p_value


def _nanmean(values) -> float:
    """Mean ignoring NaN; NaN (without a warning) when every value is NaN, e.g. all ungradable."""
    v = np.asarray(values, dtype=float)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else float("nan")


def bootstrap_ci(metric, preds: list, refs: list, each: np.ndarray | None, resamples: int, seed: int,
                 alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval; vectorised when the metric is a mean of per-example scores."""
    n = len(preds)
    if resamples <= 0 or n < 2:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    if metric.decomposable and each is not None and n > NORMAL_APPROX_N:
        # For a mean over this many examples the bootstrap distribution is normal to within
        # its own resampling noise; the closed form costs nothing.
        vals = np.asarray(each, dtype=float)
        vals = vals[~np.isnan(vals)]
        if len(vals) < 2:
            return (np.nan, np.nan)
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - alpha / 2)
        half = z * float(vals.std(ddof=1)) / np.sqrt(len(vals))
        return float(vals.mean() - half), float(vals.mean() + half)
    if metric.decomposable and each is not None:
        vals = np.asarray(each, dtype=float)
        stats = np.empty(resamples)
        step = max(1, 2_000_000 // n)  # keep the index matrix to a few MB
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(k, n))
            stats[lo:lo + k] = np.nanmean(vals[idx], axis=1)
    elif hasattr(metric, "resample_aggregates"):
        stats = np.empty(resamples)
        step = max(1, 2_000_000 // n)
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            stats[lo:lo + k] = metric.resample_aggregates(preds, refs, rng.integers(0, n, size=(k, n)))
    else:
        # corpus metrics recompute on every resample: capped so a run stays interactive
        resamples = min(resamples, CORPUS_RESAMPLES)
        stats = np.empty(resamples)
        p, r = np.asarray(preds, dtype=object), np.asarray(refs, dtype=object)
        for b in range(resamples):
            idx = rng.integers(0, n, size=n)
            stats[b] = metric.aggregate(list(p[idx]), list(r[idx]))
    lo, hi = np.nanpercentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def paired_bootstrap(metric, preds_a, preds_b, refs, each_a, each_b, resamples: int, seed: int) -> tuple[float, float]:
    """Difference A − B on the same examples and a two-sided bootstrap p-value for 'no difference'."""
    n = len(refs)
    if n < 2 or resamples <= 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    if metric.decomposable and each_a is not None and each_b is not None:
        d = np.asarray(each_a, float) - np.asarray(each_b, float)
        observed = float(np.nanmean(d))
        diffs = np.empty(resamples)
        step = max(1, 2_000_000 // n)
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(k, n))
            diffs[lo:lo + k] = np.nanmean(d[idx], axis=1)
    elif hasattr(metric, "resample_aggregates"):
        observed = metric.aggregate(preds_a, refs) - metric.aggregate(preds_b, refs)
        diffs = np.empty(resamples)
        step = max(1, 2_000_000 // n)
        for lo in range(0, resamples, step):
            k = min(step, resamples - lo)
            idx = rng.integers(0, n, size=(k, n))
            diffs[lo:lo + k] = metric.resample_aggregates(preds_a, refs, idx) - metric.resample_aggregates(preds_b, refs, idx)
    else:
        resamples = min(resamples, CORPUS_RESAMPLES)
        a, b, r = (np.asarray(x, dtype=object) for x in (preds_a, preds_b, refs))
        observed = metric.aggregate(list(a), list(r)) - metric.aggregate(list(b), list(r))
        diffs = np.empty(resamples)
        for i in range(resamples):
            idx = rng.integers(0, n, size=n)
            diffs[i] = metric.aggregate(list(a[idx]), list(r[idx])) - metric.aggregate(list(b[idx]), list(r[idx]))
    # shift the bootstrap distribution to the null of no difference
    centred = diffs - np.nanmean(diffs)
    p = float((np.sum(np.abs(centred) >= abs(observed)) + 1) / (resamples + 1))
    return observed, p


def score(dataset: pa.Table, responses: pa.Table, metrics: dict, slices: list[str], resamples: int = 1000,
          seed: int = 0, held_out: dict[str, list[str]] | None = None, inputs: list[str] | None = None) -> ScoreResult:
    """Score every model's responses against the references with each metric.

    ``metrics`` maps a metric key to a built metric (see ``assay.metrics``). A metric with
    ``needs_inputs = True`` (an LLM judge) also gets ``inputs``: the prompt each example was
    asked with. A metric that sets ``last_details`` (a list aligned with the examples, e.g.
    a judge's raw answers) has them kept in scores.parquet's ``detail`` column.
    """
    ds = dataset.to_pandas(types_mapper=None)
    ids = ds["example_id"].astype(str)
    refs_all = ds["reference"].tolist() if "reference" in ds else [None] * len(ds)
    resp = responses.to_pandas()
    models = list(dict.fromkeys(resp["model"].tolist()))
    score_frames, rows = [], []
    per_model: dict[str, dict] = {}
    for model in models:
        r = resp[resp["model"] == model].set_index("example_id")
        r = r.reindex(ids)
        preds = [None if (isinstance(o, float) and np.isnan(o)) else o for o in r["output"].tolist()]
        errors = r["error"].notna().to_numpy() | r["output"].isna().to_numpy()
        per_model[model] = {"preds": preds, "errors": errors, "each": {}}
        for key, metric in metrics.items():
            if getattr(metric, "needs_inputs", False):
                each = metric.score_each(preds, refs_all, inputs=inputs)
            else:
                each = metric.score_each(preds, refs_all)
            per_model[model]["each"][key] = each
            details = getattr(metric, "last_details", None)
            if each is not None:
                score_frames.append(pd.DataFrame({"example_id": ids.values, "model": model, "metric": key,
                                                  "value": np.asarray(each, dtype=float),
                                                  "detail": details if details is not None and len(details) == len(ids)
                                                  else [None] * len(ids)}))
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
            for gi, (name, mask) in enumerate(groups):
                n = int(mask.sum())
                if n == 0:
                    continue
                idx = np.flatnonzero(mask)
                p = [preds[i] for i in idx]
                rf = [refs_all[i] for i in idx]
                e = None if each is None else np.asarray(each, float)[idx]
                value = (_nanmean(e) if (metric.decomposable and e is not None) else float(metric.aggregate(p, rf)))
                lo, hi = bootstrap_ci(metric, p, rf, e, resamples, seed + gi)
                rows.append({"model": model, "metric": key, "slice": name, "value": value, "n": n,
                             "ci_low": lo, "ci_high": hi, "errors": int(errors[idx].sum()),
                             "higher_is_better": bool(metric.higher_is_better)})
    metrics_df = pd.DataFrame(rows, columns=["model", "metric", "slice", "value", "n", "ci_low", "ci_high", "errors", "higher_is_better"])
    scores_df = pd.concat(score_frames, ignore_index=True) if score_frames else pd.DataFrame(columns=["example_id", "model", "metric", "value", "detail"])
    comparisons = []
    for key, metric in metrics.items():
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                diff, p = paired_bootstrap(metric, per_model[a]["preds"], per_model[b]["preds"], refs_all,
                                           per_model[a]["each"][key], per_model[b]["each"][key], resamples, seed)
                comparisons.append({"metric": key, "model_a": a, "model_b": b, "diff": diff, "p_value": p})
    comparisons_df = pd.DataFrame(comparisons, columns=["metric", "model_a", "model_b", "diff", "p_value"])
    return ScoreResult(scores_df, metrics_df, generalization(metrics_df), comparisons_df)


def generalization(metrics_df: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric: the overall value, the worst and best slice, the gap, held-out gap."""
    out = []
    if metrics_df.empty:
        return pd.DataFrame(columns=["model", "metric", "overall", "worst_slice", "worst_value", "best_slice", "best_value",
                                     "gap", "in_distribution", "held_out", "held_out_gap"])
    for (model, metric), g in metrics_df.groupby(["model", "metric"], sort=False):
        hib = bool(g["higher_is_better"].iloc[0])
        overall = g.loc[g["slice"] == "all", "value"]
        sl = g[g["slice"].str.contains("=", regex=False)]
        row = {"model": model, "metric": metric, "overall": float(overall.iloc[0]) if len(overall) else np.nan,
               "worst_slice": None, "worst_value": np.nan, "best_slice": None, "best_value": np.nan, "gap": np.nan,
               "in_distribution": np.nan, "held_out": np.nan, "held_out_gap": np.nan}
        if len(sl):
            srt = sl.sort_values("value", ascending=hib)
            worst, best = srt.iloc[0], srt.iloc[-1]
            row.update(worst_slice=worst["slice"], worst_value=float(worst["value"]), best_slice=best["slice"],
                       best_value=float(best["value"]), gap=abs(float(best["value"]) - float(worst["value"])))
        ind = g.loc[g["slice"] == "in_distribution", "value"]
        ho = g.loc[g["slice"] == "held_out", "value"]
        if len(ind) and len(ho):
            row.update(in_distribution=float(ind.iloc[0]), held_out=float(ho.iloc[0]),
                       held_out_gap=float(ind.iloc[0]) - float(ho.iloc[0]) if hib else float(ho.iloc[0]) - float(ind.iloc[0]))
        out.append(row)
    return pd.DataFrame(out)
