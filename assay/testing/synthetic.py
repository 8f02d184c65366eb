"""Synthetic run folders, written as the stages write them, for the report's tests and benchmarks.

:func:`write_run` makes one complete run folder with every artifact the report, the compare page
and the dashboard read (dataset, responses, scores, metrics per slice, generalization,
comparisons, costs of all three kinds, break-even volumes, manifest with a recorded config),
from seeded random per-example scores, so the aggregates are consistent with the examples.
No model is called and nothing is timed, so a report can be built for any size of run.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd

import assay.store
from assay.costing import COST_COLUMNS, breakeven, monthly_cost_usd
from assay.store import RunFolder, Store

KINDS = ("api", "self-hosted", "conventional")


def _slice_columns(slices: int) -> dict[str, list[str]]:
    """``slices`` slice values spread over up to three columns (region, product, channel)."""
    names = ["region", "product", "channel"]
    per = [slices // 3 + (1 if i < slices % 3 else 0) for i in range(3)] if slices >= 3 else [slices, 0, 0]
    return {n: [f"{n[:3]}{j:02d}" for j in range(k)] for n, k in zip(names, per) if k}


def pipeline_config(
    models: list[str], slice_cols: list[str], monthly: int = 2_000_000, gate_min: float = 0.7, held_out: dict | None = None
) -> dict:
    ds = {"source": "synthetic.parquet", "id": "example_id", "reference": "label", "slices": slice_cols}
    if held_out:
        ds["held_out"] = held_out
    return {
        "description": "Synthetic run for the report's tests and benchmarks.",
        "dataset": ds,
        "models": models,
        "metrics": ["accuracy"],
        "cost": {"monthly_requests": monthly},
        "gates": {"accuracy": {"min": gate_min, "max_drop": 0.05}},
        "bootstrap": 200,
    }


def write_run(
    root: str,
    pipeline: str = "synthetic",
    as_of: date = date(2026, 1, 1),
    run_id: str | None = None,
    models: int = 3,
    slices: int = 6,
    examples: int = 600,
    seed: int = 0,
    gates: bool | None = None,
    drift: float = 0.0,
    monthly: int = 2_000_000,
    gate_min: float = 0.7,
    held_out: bool = False,
) -> RunFolder:
    """One complete run folder under ``root``; returns it. ``drift`` shifts every model's accuracy
    (a later run that got worse, say); ``gates`` records a gate verdict (None: none recorded)."""
    rng = np.random.default_rng(seed)
    names = [f"model-{i:02d}" for i in range(models)]
    cols = _slice_columns(slices)
    ids = [f"ex{i:06d}" for i in range(examples)]
    ds = pd.DataFrame(
        {"example_id": ids, "text": [f"ticket {i}" for i in range(examples)], "reference": rng.choice(["a", "b", "c"], examples)}
    )
    for c, values in cols.items():
        ds[c] = rng.choice(values, examples)
    ho = {next(iter(cols)): [cols[next(iter(cols))][0]]} if held_out and cols else None
    run_id = run_id or f"{as_of:%Y%m%d}T020000-{hashlib.sha256(f'{pipeline}{seed}'.encode()).hexdigest()[:8]}-{seed % 10000:04d}"
    rf = Store(root).run(pipeline, as_of, run_id)
    rf.write_table(assay.store.DATASET, ds)

    base = np.clip(0.62 + 0.3 * rng.random(models) + drift, 0.05, 0.99)
    slice_effect = {f"{c}={v}": rng.normal(0, 0.05) for c, vs in cols.items() for v in vs}
    scores, metrics, responses = [], [], []
    for m, b in zip(names, base):
        p = np.full(examples, b)
        for c in cols:
            p = p + ds[c].map(lambda v, c=c: slice_effect[f"{c}={v}"]).to_numpy()
        each = (rng.random(examples) < np.clip(p, 0.01, 0.99)).astype(float)
        scores.append(pd.DataFrame({"example_id": ids, "model": m, "metric": "accuracy", "value": each, "detail": None}))
        latency = rng.lognormal(np.log(0.05 + 0.6 * rng.random()), 0.35, examples)
        responses.append(
            pd.DataFrame(
                {
                    "example_id": ids,
                    "model": m,
                    "output": "a",
                    "prompt_tokens": 90,
                    "completion_tokens": 2,
                    "cached_tokens": 0,
                    "latency_s": latency,
                    "attempts": 1,
                    "cached": False,
                    "error": None,
                }
            )
        )
        groups = [("all", np.ones(examples, bool))] + [
            (f"{c}={v}", (ds[c] == v).to_numpy()) for c, vs in cols.items() for v in vs
        ]
        if ho:
            mask = ds[next(iter(ho))].isin(next(iter(ho.values()))).to_numpy()
            groups += [("held_out", mask), ("in_distribution", ~mask)]
        for g, mask in groups:
            n = int(mask.sum())
            if not n:
                continue
            v = float(each[mask].mean())
            se = (v * (1 - v) / n) ** 0.5
            metrics.append(
                {
                    "model": m,
                    "metric": "accuracy",
                    "slice": g,
                    "value": v,
                    "n": n,
                    "ci_low": max(0.0, v - 1.96 * se),
                    "ci_high": min(1.0, v + 1.96 * se),
                    "errors": 0,
                    "higher_is_better": True,
                }
            )
    rf.write_table(f"{assay.store.RESPONSES}/part-00000.parquet", pd.concat(responses, ignore_index=True))
    sc = pd.concat(scores, ignore_index=True)
    rf.write_table(assay.store.SCORES, sc)
    mdf = pd.DataFrame(metrics)
    rf.write_table(assay.store.METRICS, mdf)

    gen = []
    for m in names:
        sl = mdf[(mdf["model"] == m) & mdf["slice"].str.contains("=")]
        overall = float(mdf[(mdf["model"] == m) & (mdf["slice"] == "all")]["value"].iloc[0])
        w, bst = sl.loc[sl["value"].idxmin()], sl.loc[sl["value"].idxmax()]
        hv = mdf[(mdf["model"] == m) & (mdf["slice"] == "held_out")]["value"]
        iv = mdf[(mdf["model"] == m) & (mdf["slice"] == "in_distribution")]["value"]
        gen.append(
            {
                "model": m,
                "metric": "accuracy",
                "overall": overall,
                "worst_slice": w["slice"],
                "worst_value": float(w["value"]),
                "best_slice": bst["slice"],
                "best_value": float(bst["value"]),
                "gap": float(bst["value"] - w["value"]),
                "in_distribution": float(iv.iloc[0]) if len(iv) else np.nan,
                "held_out": float(hv.iloc[0]) if len(hv) else np.nan,
                "held_out_gap": float(iv.iloc[0] - hv.iloc[0]) if len(hv) and len(iv) else np.nan,
            }
        )
    rf.write_table(assay.store.GENERALIZATION, pd.DataFrame(gen))
    wide = sc.pivot(index="example_id", columns="model", values="value")
    comp = [
        {"metric": "accuracy", "model_a": a, "model_b": b2, "diff": float((wide[a] - wide[b2]).mean()), "p_value": 0.01}
        for i, a in enumerate(names)
        for b2 in names[i + 1 :]
    ]
    rf.write_table(assay.store.COMPARISONS, pd.DataFrame(comp, columns=["metric", "model_a", "model_b", "diff", "p_value"]))
    costs = write_costs(rf, names, examples, monthly, rng)
    models_cfg = {}
    for m, kind in zip(names, costs["kind"]):
        models_cfg[m] = (
            {"provider": "replay", "source": "log.parquet", "price": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}}
            if kind == "api"
            else {"provider": "replay", "source": "log.parquet", "hosting": {"usd_per_gpu_hour": 1.2}}
            if kind == "self-hosted"
            else {"provider": "sklearn", "estimator": "tfidf-logreg"}
        )
    cfg = {"models": models_cfg, "pipeline": pipeline_config(names, list(cols), monthly, gate_min, ho)}
    started = datetime(as_of.year, as_of.month, as_of.day, 2, tzinfo=UTC)
    prices = {
        m: {
            "as_of": as_of.isoformat(),
            "source": "genai-prices" if k == "api" else "none",
            "by_date": {
                (as_of - timedelta(days=d)).isoformat(): {"input_per_mtok": 0.15, "output_per_mtok": 0.6} for d in range(30)
            }
            if k == "api"
            else {},
        }
        for m, k in zip(names, costs["kind"])
    }
    manifest = {
        "pipeline": pipeline,
        "as_of": as_of.isoformat(),
        "run_id": run_id,
        "status": "complete",
        "config": cfg,
        "config_hash": hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest(),
        "dataset": {
            "fingerprint": "sha256:" + hashlib.sha256(",".join(ids).encode()).hexdigest(),
            "rows": examples,
            "source": "synthetic.parquet",
        },
        "versions": {"assay": "0.1.0", "python": "3.11"},
        "prices": prices,
        "started_at": started.isoformat(),
        "finished_at": (started + timedelta(minutes=1)).isoformat(),
        "stages": {},
    }
    if gates is not None:
        manifest["gates"] = {"passed": bool(gates), "checks": [], "failures": [] if gates else ["accuracy dropped"]}
    rf.write_json(assay.store.MANIFEST, manifest)
    return rf


def write_costs(rf: RunFolder, names: list[str], requests: int, monthly: int, rng) -> pd.DataFrame:
    """costs.parquet and breakeven.parquet: the models cycle through the three kinds."""
    rows = []
    for i, m in enumerate(names):
        kind = KINDS[i % 3]
        per_req = {
            "api": 1e-5 * (1 + 4 * rng.random()),
            "self-hosted": 4e-6 * (1 + rng.random()),
            "conventional": 3e-9 * (1 + rng.random()),
        }[kind]
        fixed = {"api": 0.0, "self-hosted": 876.0 * (1 + i % 2), "conventional": 3e-5}[kind]
        pj = (
            {
                "source": "genai-prices",
                "first_date": "2025-12-01",
                "last_date": rf.as_of,
                "priced_by": "request date",
                "periods": [{"input_per_mtok": 0.15, "output_per_mtok": 0.6}],
            }
            if kind == "api"
            else {"usd_per_hour": 1.2, "replicas": 1, "throughput_rps": 55.0, "throughput_source": "measured"}
            if kind == "self-hosted"
            else {"usd_per_hour": 0.1, "amortise_months": 12}
        )
        p50 = 0.05 + rng.random()
        rows.append(
            {
                "model": m,
                "kind": kind,
                "requests": requests,
                "errors": 0,
                "cache_hits": 0,
                "prompt_tokens": 90 * requests,
                "completion_tokens": 2 * requests,
                "cached_tokens": 0,
                "cost_usd": per_req * requests,
                "cost_per_1k_usd": per_req * 1000,
                "cost_per_correct_usd": per_req * 1.2,
                "latency_p50_s": p50,
                "latency_p95_s": p50 * 1.8,
                "latency_p99_s": p50 * 2.4,
                "throughput_rps": 55.0,
                "monthly_requests": float(monthly),
                "monthly_cost_usd": float(
                    monthly_cost_usd(kind, fixed, per_req, monthly, fixed if kind == "self-hosted" else 0.0)
                ),
                "fixed_monthly_usd": fixed,
                "floor_monthly_usd": fixed if kind == "self-hosted" else 0.0,
                "usd_per_hour": np.nan if kind == "api" else 1.2,
                "price_source": {"api": "genai-prices", "self-hosted": "hosting", "conventional": "compute"}[kind],
                "price_json": json.dumps(pj),
            }
        )
    costs = pd.DataFrame(rows, columns=COST_COLUMNS)
    rf.write_table(assay.store.COSTS, costs)
    rf.write_table(assay.store.BREAKEVEN, breakeven(costs))
    return costs


def write_history(
    root: str,
    pipelines: int = 3,
    runs: int = 365,
    models: int = 3,
    slices: int = 6,
    examples: int = 200,
    start: date = date(2025, 1, 1),
    failed_every: int = 50,
) -> list[RunFolder]:
    """``runs`` daily complete runs of each of ``pipelines`` pipelines; every ``failed_every``-th
    run's gates failed."""
    out = []
    for p in range(pipelines):
        for d in range(runs):
            out.append(
                write_run(
                    root,
                    f"pipeline-{p}",
                    start + timedelta(days=d),
                    models=models,
                    slices=slices,
                    examples=examples,
                    seed=p * 100_000 + d,
                    gates=(d % failed_every != failed_every - 1),
                    drift=0.02 * np.sin(d / 30),
                )
            )
    return out
