"""``assay plan``: how many examples (and samples per example) a run needs to detect a difference.

From the latest complete run of a pipeline: for every metric and model pair of comparisons.parquet,
the variance of one example's paired difference — ``se² · n``, so a clustered run's design effect
carries over — and, when the responses carried several samples per example, its split into the
between-example part and the within-example (sampling) part. Then, for a difference ``detect``
found by a two-sided test at ``alpha`` with ``power`` (:func:`assay.stats.examples_needed`)::

    n = (z_{1−α/2} + z_{power})² · (var_between + var_within / K) / detect²

With one model (no pairs), the same for a change of one model's value (metrics.parquet, slice
``all``). Nothing here imports Prefect.
"""

from __future__ import annotations

import math

import pandas as pd

import assay.store
from assay import stats as ST
from assay.store import RunFolder

COLUMNS = ["metric", "model_a", "model_b", "n_run", "samples_run", "mde_run", "samples", "examples_needed", "basis"]


def _f(v) -> float:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return float("nan")
    return v


def plan(
    rf: RunFolder,
    detect: float,
    alpha: float = ST.ALPHA,
    power: float = ST.POWER,
    metric: str | None = None,
    samples: list[int] | None = None,
) -> pd.DataFrame:
    """One row per metric, model pair and samples-per-example K: the examples needed to detect ``detect``."""
    rows = []
    comp = rf.read_table(assay.store.COMPARISONS).to_pandas() if rf.exists(assay.store.COMPARISONS) else pd.DataFrame()
    mets = rf.read_table(assay.store.METRICS).to_pandas()
    overall = mets[mets["slice"] == "all"]
    run_k = overall.set_index(["model", "metric"])["samples"] if "samples" in overall else None
    units = []
    if len(comp) and "se" in comp:
        for r in comp.itertuples(index=False):
            k_run = float("nan")
            if run_k is not None:
                ks = [_f(run_k.get((m, r.metric))) for m in (r.model_a, r.model_b)]
                k_run = max(ks) if not all(math.isnan(k) for k in ks) else float("nan")
            units.append(
                (
                    r.metric,
                    r.model_a,
                    r.model_b,
                    int(r.n),
                    _f(r.se),
                    _f(getattr(r, "var_between", None)),
                    _f(getattr(r, "var_within", None)),
                    k_run,
                    "paired difference",
                )
            )
    else:
        for r in overall.itertuples(index=False):
            units.append(
                (
                    r.metric,
                    r.model,
                    None,
                    int(r.n),
                    _f(getattr(r, "se", None)),
                    _f(getattr(r, "var_between", None)),
                    _f(getattr(r, "var_within", None)),
                    _f(getattr(r, "samples", None)),
                    "change of one model",
                )
            )
    for m, a, b, n, se, vb, vw, k_run, basis in units:
        if metric is not None and m != metric:
            continue
        mde_run = ST.mde(se, alpha, power) if not math.isnan(se) else float("nan")
        if not math.isnan(vw) and not math.isnan(vb):
            ks = sorted(set(samples or [1, 2, 4, 8]) | ({int(round(k_run))} if not math.isnan(k_run) else set()))
            for k in ks:
                rows.append([m, a, b, n, k_run, mde_run, k, ST.examples_needed(vb + vw / k, detect, alpha, power), basis])
        else:
            var = se**2 * n if not math.isnan(se) else float("nan")
            rows.append(
                [
                    m,
                    a,
                    b,
                    n,
                    k_run if not math.isnan(k_run) else 1,
                    mde_run,
                    1 if math.isnan(k_run) else int(k_run),
                    ST.examples_needed(var, detect, alpha, power) if not math.isnan(var) else -1,
                    basis,
                ]
            )
    return pd.DataFrame(rows, columns=COLUMNS)
