"""A pipeline's metrics and costs over time, read straight from the Parquet tree.

Every *complete* run folder ``<root>/<pipeline>/<as_of>/<run_id>/`` contributes its
``metrics.parquet`` (overall slice by default) and ``costs.parquet``. Both are read as one
pyarrow dataset each over the run folders' files, with ``as_of`` and ``run_id`` taken from
the directory names (directory partitioning), so the history costs one scan and no index.
No Prefect here; ``assay history`` prints what :func:`history` returns.
"""

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow.fs import FSSpecHandler, PyFileSystem

import assay.store
from assay.gates import gates_passed
from assay.store import RunFolder, Store

COLUMNS = [
    "as_of",
    "run_id",
    "model",
    "metric",
    "slice",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "cost_per_1k_usd",
    "monthly_cost_usd",
    "gates",
    "response_model",
    "system_fingerprint",
    "model_changed",
]
METRIC_COLUMNS = ["model", "metric", "slice", "value", "ci_low", "ci_high", "n"]
COST_COLUMNS = ["model", "cost_per_1k_usd", "monthly_cost_usd"]


def _dataset(store: Store, pipeline: str, runs: list[RunFolder], name: str) -> ds.Dataset | None:
    files = [r for r in runs if r.exists(name)]
    if not files:
        return None
    part = ds.partitioning(pa.schema([("as_of", pa.string()), ("run_id", pa.string())]))
    paths = [r._loc(name) for r in files]
    base = store._loc(pipeline)
    fs = None
    if store.remote:
        fs = PyFileSystem(FSSpecHandler(store.fs))
    # the schema of the newest run wins; older files lacking a column read as nulls
    return ds.dataset(
        paths, format="parquet", partitioning=part, partition_base_dir=base, filesystem=fs, schema=_unified_schema(paths, fs)
    )


def _unified_schema(paths: list[str], fs) -> pa.Schema | None:
    # lazy: keeps pyarrow out of start-up
    import pyarrow.parquet as pq

    schemas = []
    for p in paths:
        if fs is None:
            schemas.append(pq.read_schema(p))
        else:
            with fs.open_input_file(p) as f:
                schemas.append(pq.read_schema(f))
    try:
        unified = pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return None
    for name in ("as_of", "run_id"):
        if unified.get_field_index(name) < 0:
            unified = unified.append(pa.field(name, pa.string()))
    return unified


def history(
    root: str,
    pipeline: str,
    metric: str | None = None,
    slice: str = "all",
    include_failed_gates: bool = True,
    manifests: list[tuple[RunFolder, dict]] | None = None,
) -> pd.DataFrame:
    """One row per (as_of, run_id, model, metric) of every complete run, oldest first
    (by as_of, then the run's start time).

    Columns: as_of, run_id, model, metric, slice, value, ci_low, ci_high, n, cost_per_1k_usd,
    monthly_cost_usd, gates ("passed", "failed", "inconclusive" or "" when the run had no gates),
    response_model, system_fingerprint (what the endpoint said it served, from the manifest's
    ``drift``; see :mod:`assay.drift`) and model_changed (the fields that changed since the run before).
    ``metric`` keeps one metric; ``slice`` picks the slice (``all`` = overall). ``manifests``:
    the pipeline's run folders with their manifests, when the caller has read them already.
    """
    store = Store(root)
    # each manifest read once (a long history has hundreds, each with its prices)
    pairs = manifests if manifests is not None else [(r, r.manifest() or {}) for r in store.runs(pipeline)]
    manifests = {(r.as_of, r.run_id): (r, m) for r, m in pairs if m.get("status") == "complete"}
    if not include_failed_gates:
        manifests = {k: (r, m) for k, (r, m) in manifests.items() if gates_passed(m) is not False}
    runs = [r for r, _ in manifests.values()]
    verdict, started, drift = {}, {}, {}
    for r, m in manifests.values():
        g = gates_passed(m)
        verdict[(r.as_of, r.run_id)] = (
            ""
            if g is None
            else ("failed" if not g else "inconclusive" if (m.get("gates") or {}).get("verdict") == "inconclusive" else "passed")
        )
        started[(r.as_of, r.run_id)] = str(m.get("started_at") or "")
        for model, d in (m.get("drift") or {}).items():
            drift[(r.as_of, r.run_id, model)] = d
    mds = _dataset(store, pipeline, runs, assay.store.METRICS)
    if mds is None:
        return pd.DataFrame(columns=COLUMNS)
    flt = ds.field("slice") == slice
    if metric is not None:
        flt = flt & (ds.field("metric") == metric)
    cols = [c for c in METRIC_COLUMNS if c in mds.schema.names] + ["as_of", "run_id"]
    metrics = mds.to_table(columns=cols, filter=flt).to_pandas()
    cds = _dataset(store, pipeline, runs, assay.store.COSTS)
    if cds is not None:
        ccols = [c for c in COST_COLUMNS if c in cds.schema.names] + ["as_of", "run_id"]
        costs = cds.to_table(columns=ccols).to_pandas()
        costs = costs.drop_duplicates(["as_of", "run_id", "model"], keep="first")
        out = metrics.merge(costs, on=["as_of", "run_id", "model"], how="left")
    else:
        out = metrics
    for c in COLUMNS:
        if c not in out.columns:
            out[c] = pd.NA if c != "gates" else ""
    keys = list(zip(out["as_of"], out["run_id"]))
    out["gates"] = [verdict.get(k, "") for k in keys]
    dk = [drift.get((a, r, m)) or {} for a, r, m in zip(out["as_of"], out["run_id"], out["model"])]
    out["response_model"] = [d.get("response_model") for d in dk]
    out["system_fingerprint"] = [d.get("system_fingerprint") for d in dk]
    out["model_changed"] = [", ".join(sorted(d.get("changed") or {})) for d in dk]
    # run ids sort by start time to the second; the manifest's started_at breaks ties within one
    out["_started"] = [started.get(k, "") for k in keys]
    out = out.sort_values(["as_of", "_started", "run_id", "model", "metric"], kind="stable")
    out = out[COLUMNS].reset_index(drop=True)
    return out
