"""Policies: deployments of several models — cascades and routes — priced and scored from a run's
recorded answers, without a single new model call.

* :mod:`assay.policies.answers` — a run's answers as per-example × per-model arrays (score, dollars,
  seconds, failure, output, confidence);
* :mod:`assay.policies.simulate` — what a cascade or a route would have done on each example;
* :mod:`assay.policies.figures` — its quality with an interval, cost per 1,000 requests, p95 latency,
  share escalated, APGR and saving at matched quality, and the sweep of its threshold.

:func:`evaluate` runs every policy of a pipeline (the cost stage writes ``policies.parquet`` and
``policy_sweep.parquet`` from it); ``assay whatif`` runs one given on the command line.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from assay import store
from assay.policies import simulate as SIM
from assay.policies.answers import Answers, answers, from_run, row_costs
from assay.policies.figures import LAMBDAS, POLICY_COLUMNS, SWEEP_COLUMNS, TOLERANCES, average_pgr, figures, rule_text, thresholds
from assay.report.format import usd

log = logging.getLogger("assay.policies")

__all__ = [
    "Answers",
    "POLICY_COLUMNS",
    "SWEEP_COLUMNS",
    "answers",
    "evaluate",
    "evaluate_one",
    "from_run",
    "row_costs",
    "write_policies",
]


def _sweep_row(a: Answers, name: str, o, mask, members, parameter: str, value: float, configured: bool) -> dict:
    f = figures(a, o, mask, members, resamples=0)
    f.pop("singles_quality")
    return {
        "policy": name,
        "parameter": parameter,
        "threshold": float(value),
        "quality": f["quality"],
        "cost_per_1k_usd": f["cost_per_1k_usd"],
        "latency_p95_s": f["latency_p95_s"],
        "escalated": f["escalated"],
        "strong_share": f["strong_share"],
        "apgr": f["apgr"],
        "configured": configured,
    }


def evaluate_one(
    a: Answers, name: str, pol, resamples: int = 1000, seed: int = 0, monthly_requests: int | None = None
) -> tuple[dict, list[dict]]:
    """One policy's row of policies.parquet and its sweep rows."""
    sweep: list[dict] = []
    if pol.kind == "cascade":
        cache: dict = {}
        o = SIM.cascade(a, pol.models, pol.rule, cache=cache)
        mask = np.ones(a.n, dtype=bool)
        members = list(pol.models)
        thr = getattr(pol.rule, "threshold", None)
        row = {
            "policy": name,
            "kind": "cascade",
            "models": " → ".join(pol.models),
            "rule": rule_text(pol.rule),
            "threshold": float(thr) if thr is not None else float("nan"),
            "routes": None,
            "note": None,
        }
        if pol.sweep and thr is not None:
            for t in thresholds(a, pol.models, pol.rule):
                sweep.append(
                    _sweep_row(
                        a,
                        name,
                        SIM.cascade(a, pol.models, pol.rule, t, cache),
                        mask,
                        members,
                        pol.rule.kind,
                        t,
                        abs(t - thr) < 1e-12,
                    )
                )
        if pol.rule.kind == "confidence":
            missing = [m for m in pol.models[:-1] if np.isnan(a.confidence[:, a.index(m)]).all()]
            if missing:
                row["note"] = (
                    f"no confidence recorded for {', '.join(missing)}: every answer of "
                    f"{'it' if len(missing) == 1 else 'them'} is escalated"
                )
    else:
        members = list(pol.models or a.models)
        learn = SIM.learn_mask(a.n, pol.learn, pol.seed)
        mask = ~learn
        routes = SIM.learn_route(a, members, pol.column, learn, pol.tolerance, pol.lambda_)
        o = SIM.route(a, pol.column, routes)
        lam = pol.lambda_
        tol = pol.tolerance if pol.tolerance is not None or lam is not None else 0.01
        objective = f"λ = {lam:g}" if lam is not None else f"tolerance {tol:g}"
        row = {
            "policy": name,
            "kind": "route",
            "models": ", ".join(members),
            "rule": f"by {pol.column}, {objective}, learned on {pol.learn:.0%} (seed {pol.seed})",
            "threshold": float(lam if lam is not None else tol),
            "routes": _routes_json({k: v for k, v in routes.items() if k is not None}),
            "note": None,
        }
        if pol.sweep:
            grid = sorted(set(LAMBDAS if lam is not None else TOLERANCES) | {float(lam if lam is not None else tol)})
            for g in grid:
                r = SIM.learn_route(a, members, pol.column, learn, None if lam is not None else g, g if lam is not None else None)
                sweep.append(
                    _sweep_row(
                        a,
                        name,
                        SIM.route(a, pol.column, r),
                        mask,
                        members,
                        "lambda" if lam is not None else "tolerance",
                        g,
                        abs(g - (lam if lam is not None else tol)) < 1e-12,
                    )
                )
    row.update(figures(a, o, mask, members, resamples, seed, monthly_requests, pol.kind == "cascade"))
    singles = row.pop("singles_quality")
    row.pop("strong_share")
    weak, strong = row["weak_model"], row["strong_model"]
    row["apgr_curve"] = (
        average_pgr([s["strong_share"] for s in sweep], [s["quality"] for s in sweep], singles[weak], singles[strong])
        if sweep and weak is not None
        else float("nan")
    )
    return row, sweep


def _routes_json(routes: dict) -> str:
    return json.dumps({str(k): v for k, v in routes.items()}, sort_keys=True)


def evaluate(
    a: Answers, policies: dict, resamples: int = 1000, seed: int = 0, monthly_requests: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(policies, sweep) tables for every policy whose models are all in ``a`` (a run narrowed with
    ``--models`` skips the others, saying so)."""
    rows, sweep = [], []
    for name, pol in policies.items():
        need = list(pol.models or [])
        absent = [m for m in need if m not in a.models]
        if absent:
            log.info("policies: %s skipped: %s not in this run", name, ", ".join(absent))
            continue
        row, sw = evaluate_one(a, name, pol, resamples, seed, monthly_requests)
        rows.append(row)
        sweep += sw
    return (pd.DataFrame(rows, columns=POLICY_COLUMNS), pd.DataFrame(sweep, columns=SWEEP_COLUMNS).astype({"configured": bool}))


def write_policies(rf, cfg, models: list[str] | None = None) -> list[str]:
    """Evaluate a pipeline's ``policies:`` on a run folder (its responses, scores and costs) and
    write policies.parquet and policy_sweep.parquet; return their names."""
    a = from_run(rf, cfg, models)
    table, sweep = evaluate(a, cfg.policies, cfg.bootstrap, 0, cfg.cost.monthly_requests)
    rf.write_table(store.POLICIES, table)
    rf.write_table(store.POLICY_SWEEP, sweep)
    for r in table.itertuples():
        log.info(
            "policy: %s (%s, %s): %s %.4f [%.4f, %.4f], %s per 1k, %.1f%% escalated, APGR %s, saving %s%s",
            r.policy,
            r.models,
            r.rule,
            r.metric,
            r.quality,
            r.quality_ci_low,
            r.quality_ci_high,
            usd(r.cost_per_1k_usd),
            100 * r.escalated,
            "–" if r.apgr != r.apgr else f"{r.apgr:.2f}",
            "–" if r.saving != r.saving else f"{r.saving:.0%} vs {r.matched_model}",
            f" ({r.note})" if r.note else "",
        )
    return [store.POLICIES, store.POLICY_SWEEP]
