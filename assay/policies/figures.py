"""The figures of a policy, from what it did on each example (:class:`~assay.policies.simulate.Outcome`).

Over the examples it is scored on (every example for a cascade; those outside the learning part for
a route), with the single models measured on the same examples:

* ``quality``: the mean of the headline metric over the answers it gave, with a seeded percentile
  bootstrap interval over examples (``quality_ci_low``/``quality_ci_high``);
* ``cost_per_1k_usd``: 1,000 × the mean dollars per request, a cascade paying every model it called
  (and a judge rule each grade it asked); ``monthly_cost_usd`` at the pipeline's volume, each model it
  needs priced by :func:`assay.costing.monthly_cost_usd` at the share of requests it gets: a policy is
  an option of its own whose floor is the floors of the services it needs (``floor_monthly_usd``),
  paid however rarely a service is called. A cascade needs every model of its chain up (any request
  may escalate to the last); a route needs the models its routes send requests to (``needs``);
* ``latency_p95_s``: the 95th percentile of the per-request latency, calls in sequence added up;
* ``escalated``: the share of requests that went past the first step; ``calls_per_request``;
* ``apgr``: (Q_policy − Q_weak) / (Q_strong − Q_weak), the share of the gap between the weakest and
  the strongest of its models that the policy recovers (RouteLLM's APGR), with its interval;
* ``apgr_curve``: RouteLLM's average over the sweep — the PGR of each threshold's point averaged
  over the share of requests that call the strong model (trapezoids, over the range the sweep covers);
* ``saving``: at matched quality, 1 − its cost / the cost of ``matched_model``, the cheapest single
  model (of the run) whose quality reaches the policy's; its bootstrap interval is against that
  model, and ``matched_share`` the share of resamples in which it is still the cheapest model that
  reaches the policy's quality; NaN when no single model reaches it.

Every interval comes from one set of resampled examples, so the policy and the single models are
compared on the same resamples.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from assay.costing import monthly_cost_usd
from assay.policies import simulate as SIM
from assay.policies.answers import Answers

NAN = float("nan")
ALPHA = 0.05

POLICY_COLUMNS = [
    "policy",
    "kind",
    "models",
    "rule",
    "threshold",
    "metric",
    "n",
    "quality",
    "quality_ci_low",
    "quality_ci_high",
    "cost_per_1k_usd",
    "monthly_cost_usd",
    "floor_monthly_usd",
    "needs",
    "latency_p95_s",
    "escalated",
    "calls_per_request",
    "answered_by",
    "weak_model",
    "strong_model",
    "apgr",
    "apgr_ci_low",
    "apgr_ci_high",
    "apgr_curve",
    "matched_model",
    "matched_cost_per_1k_usd",
    "matched_share",
    "saving",
    "saving_ci_low",
    "saving_ci_high",
    "saving_per_1k_usd",
    "values_json",
    "routes",
    "note",
]
SWEEP_COLUMNS = [
    "policy",
    "parameter",
    "threshold",
    "quality",
    "cost_per_1k_usd",
    "latency_p95_s",
    "escalated",
    "strong_share",
    "apgr",
    "configured",
]


def _mean(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else NAN


def _p95(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.percentile(x, 95)) if len(x) else NAN


def resample_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray | None:
    """Bootstrap means of each column of ``values`` (examples × columns, NaN left out): (resamples ×
    columns), the examples drawn with replacement, seeded; None without resamples."""
    n = values.shape[0]
    if resamples <= 0 or n < 2:
        return None
    rng = np.random.default_rng(seed)
    ok = ~np.isnan(values)
    v = np.where(ok, values, 0.0)
    out = np.empty((resamples, values.shape[1]))
    batch = max(1, 4_000_000 // max(1, n * values.shape[1]))
    for lo in range(0, resamples, batch):
        b = min(batch, resamples - lo)
        idx = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo : lo + b] = (counts @ v) / (counts @ ok.astype(float))
    return out


def _interval(boot: np.ndarray | None) -> tuple[float, float]:
    if boot is None:
        return NAN, NAN
    b = boot[~np.isnan(boot)]
    if len(b) < 2:
        return NAN, NAN
    return float(np.percentile(b, 100 * ALPHA / 2)), float(np.percentile(b, 100 * (1 - ALPHA / 2)))


def needed(a: Answers, o: SIM.Outcome, mask: np.ndarray, members: list[str], cascade: bool) -> list[str]:
    """The models whose services a policy needs up: every model of a cascade (any request may
    escalate to the last), the models a route sends requests to."""
    if cascade:
        return list(members)
    return [name for j, name in enumerate(a.models) if o.called[mask, j].any()]


def floor_of(a: Answers, names: list[str]) -> float:
    """A policy's monthly floor: the sum of the always-on floors of the services it needs."""
    # lazy: keeps pandas out of start-up
    from assay.costing import monthly_terms

    total = 0.0
    for name in names:
        _, b = monthly_terms(a.kinds.get(name, "unpriced"), a.fixed_monthly.get(name, 0.0), a.floor_monthly.get(name))
        total += b
    return total


def _monthly(a: Answers, o: SIM.Outcome, mask: np.ndarray, monthly_requests: int | None, names: list[str]) -> float:

    if not monthly_requests:
        return NAN
    total = 0.0
    m = int(mask.sum())
    for name in names:
        j = a.index(name)
        calls = o.called[mask, j]
        # a needed service never called here still pays its fixed cost (the volume it gets is 0)
        per = float(np.mean(a.cost[mask, j][calls])) if calls.any() else 0.0
        total += monthly_cost_usd(
            a.kinds.get(name, "unpriced"),
            a.fixed_monthly.get(name, 0.0),
            per,
            monthly_requests * calls.sum() / m,
            a.floor_monthly.get(name),
        )
    extra = o.cost[mask] - (a.cost[mask] * o.called[mask]).sum(axis=1)  # what no model's line holds: judge grades
    return total + float(np.nanmean(extra)) * monthly_requests if np.isfinite(np.nanmean(extra)) else total


def figures(
    a: Answers,
    o: SIM.Outcome,
    mask: np.ndarray,
    members: list[str],
    resamples: int = 1000,
    seed: int = 0,
    monthly_requests: int | None = None,
    cascade: bool = True,
) -> dict:
    """The figures of one policy (see the module docstring) on the examples of ``mask``; ``members``
    are its models (the weak and strong ends of its APGR); ``cascade``: whether it is a cascade
    (it needs every member up) or a route (it needs the members it routes to)."""
    sign = 1.0 if a.higher_is_better else -1.0
    rows = np.flatnonzero(mask)
    needs = needed(a, o, mask, members, cascade)
    q_pol = o.values(a.quality)[rows]
    c_pol = o.cost[rows]
    q_single = a.quality[rows]
    c_single = a.cost[rows]
    quality, cost = _mean(q_pol), _mean(c_pol)
    singles_q = np.array([_mean(q_single[:, j]) for j in range(len(a.models))])
    singles_c = np.array([_mean(c_single[:, j]) for j in range(len(a.models))])
    boot = resample_means(np.column_stack([q_pol, c_pol, q_single, c_single]), resamples, seed)
    k = len(a.models)
    bq, bc = (boot[:, 0], boot[:, 1]) if boot is not None else (None, None)
    bqs, bcs = (boot[:, 2 : 2 + k], boot[:, 2 + k :]) if boot is not None else (None, None)

    mem = [a.index(m) for m in members]
    known = [j for j in mem if not np.isnan(singles_q[j])]
    weak = min(known, key=lambda j: sign * singles_q[j]) if known else None
    strong = max(known, key=lambda j: sign * singles_q[j]) if known else None
    apgr = lo_a = hi_a = NAN
    if weak is not None and singles_q[strong] != singles_q[weak]:
        apgr = (quality - singles_q[weak]) / (singles_q[strong] - singles_q[weak])
        if boot is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                lo_a, hi_a = _interval((bq - bqs[:, weak]) / (bqs[:, strong] - bqs[:, weak]))

    # matched quality: the cheapest single model at least as good as the policy
    def matched(q_p, q_s, c_s):
        ok = (sign * q_s >= sign * q_p - 1e-12) & ~np.isnan(c_s)
        return int(np.flatnonzero(ok)[np.argmin(c_s[ok])]) if ok.any() else None

    mj = matched(quality, singles_q, singles_c)
    saving = lo_s = hi_s = NAN
    if mj is not None and singles_c[mj] > 0:
        saving = 1 - cost / singles_c[mj]
    matched_share = NAN
    if mj is not None and boot is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            if singles_c[mj] > 0:  # against that model, on the same resamples
                lo_s, hi_s = _interval(np.where(bcs[:, mj] > 0, 1 - bc / bcs[:, mj], NAN))
            # how often that model is still the cheapest one that reaches the policy's quality
            ok = (sign * bqs >= sign * bq[:, None] - 1e-12) & ~np.isnan(bcs)
            jr = np.where(ok.any(axis=1), np.argmin(np.where(ok, bcs, np.inf), axis=1), -1)
            matched_share = float(np.mean(jr == mj))
    lo_q, hi_q = _interval(bq)
    answered = {a.models[j]: round(float(np.mean(o.chosen[rows] == j)), 6) for j in range(k) if (o.chosen[rows] == j).any()}
    values = {m: _mean(o.values(v)[rows]) for m, v in a.scores.items()}
    return {
        "metric": a.metric,
        "n": int(len(rows)),
        "quality": quality,
        "quality_ci_low": lo_q,
        "quality_ci_high": hi_q,
        "cost_per_1k_usd": cost * 1000,
        "monthly_cost_usd": _monthly(a, o, mask, monthly_requests, needs),
        "floor_monthly_usd": floor_of(a, needs),
        "needs": ", ".join(needs),
        "latency_p95_s": _p95(o.latency[rows]),
        "escalated": float(np.mean(o.escalated[rows])) if len(rows) else NAN,
        "calls_per_request": float(o.called[rows].sum(axis=1).mean()) if len(rows) else NAN,
        "strong_share": float(np.mean(o.called[rows, strong])) if strong is not None and len(rows) else NAN,
        "singles_quality": {a.models[j]: singles_q[j] for j in mem},
        "answered_by": json.dumps(answered),
        "weak_model": a.models[weak] if weak is not None else None,
        "strong_model": a.models[strong] if strong is not None else None,
        "apgr": apgr,
        "apgr_ci_low": lo_a,
        "apgr_ci_high": hi_a,
        "matched_model": a.models[mj] if mj is not None else None,
        "matched_cost_per_1k_usd": singles_c[mj] * 1000 if mj is not None else NAN,
        "saving": saving,
        "saving_ci_low": lo_s,
        "saving_ci_high": hi_s,
        "matched_share": matched_share,
        "saving_per_1k_usd": (singles_c[mj] - cost) * 1000 if mj is not None else NAN,
        "values_json": json.dumps({m: (None if math.isnan(v) else v) for m, v in values.items()}),
    }


def average_pgr(strong_share, quality, q_weak: float, q_strong: float) -> float:
    """The performance gap recovered, ``(Q − Q_weak) / (Q_strong − Q_weak)``, averaged over the share
    of requests sent to the strong model (the area under the PGR curve by trapezoids, divided by the
    range of shares covered); NaN without a gap or with fewer than two distinct shares."""
    x = np.asarray(strong_share, dtype=float)
    q = np.asarray(quality, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(q))
    x, q = x[ok], q[ok]
    if not (math.isfinite(q_weak) and math.isfinite(q_strong)) or q_strong == q_weak:
        return NAN
    pgr = (q - q_weak) / (q_strong - q_weak)
    frame = pd.DataFrame({"x": x, "p": pgr}).groupby("x", sort=True)["p"].mean()
    if len(frame) < 2:
        return NAN
    xs, ps = frame.index.to_numpy(float), frame.to_numpy(float)
    return float(np.sum((xs[1:] - xs[:-1]) * (ps[1:] + ps[:-1]) / 2) / (xs[-1] - xs[0]))


def rule_text(rule, threshold: float | None = None) -> str:
    """A rule in words: ``confidence ≥ 0.8``, ``valid json``, ``agree``, ``judge ≥ 0.7``."""
    t = threshold if threshold is not None else getattr(rule, "threshold", None)
    if rule.kind == "confidence":
        return f"confidence ≥ {t:g}"
    if rule.kind == "judge":
        return f"{rule.metric} ≥ {t:g}"
    if rule.kind == "valid":
        what = [
            w
            for w, on in (
                ("json", rule.json_),
                ("schema", rule.schema_ is not None),
                ("regex", rule.regex is not None),
                ("labels", bool(rule.labels)),
            )
            if on
        ]
        return "valid " + "+".join(what)
    return rule.kind


def thresholds(a: Answers, models: list[str], rule, points: int = 21) -> list[float]:
    """The thresholds a sweep prices: quantiles of the values the rule compares (the confidences
    or grades of every model but the last), and the configured one."""
    vals = []
    for m in models[:-1]:
        j = a.index(m)
        v = a.confidence[:, j] if rule.kind == "confidence" else a.scores[rule.metric][:, j]
        vals.append(v[~np.isnan(v)])
    v = np.concatenate(vals) if vals else np.zeros(0)
    grid = set(np.round(np.quantile(v, np.linspace(0, 1, points)), 6).tolist()) if len(v) else set()
    grid |= {0.0, 1.0, float(rule.threshold)}
    return sorted(x for x in grid if 0 <= x <= 1)


TOLERANCES = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0)
LAMBDAS = (0.0, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0)
