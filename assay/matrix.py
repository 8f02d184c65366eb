"""The model × pipeline matrix: each pipeline's latest complete run, one headline number per model.

:func:`matrix` returns a long table, one row per (pipeline, model)::

    pipeline, model, metric, value, ci_low, ci_high, cost_per_1k_usd, run_id, as_of,
    higher_is_better, status

``value``/``ci_*`` are the metric's overall (``slice == "all"``) row of metrics.parquet,
``cost_per_1k_usd`` the model's row of costs.parquet (a judge's own cost is not added).
The headline metric is the one asked for, else the pipeline's first metric. A pipeline with
no complete run, or whose latest complete run lacks the metric, is one row with ``model``
None and ``status`` saying why. :func:`pivot` turns the long table into the model ×
pipeline grid of cells like ``0.873 · $0.014/1k``.
"""

from __future__ import annotations

import math

import pandas as pd

import assay.store
from assay.config import LoadedConfig
from assay.runs import artifacts_root
from assay.store import RunFolder, Store

__all__ = ["COLUMNS", "matrix", "latest_complete_run", "pivot", "cell", "format_cost"]

COLUMNS = [
    "pipeline",
    "model",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "cost_per_1k_usd",
    "run_id",
    "as_of",
    "higher_is_better",
    "status",
]

OK = "ok"
NO_RUN = "no complete run"


def latest_complete_run(store: Store, pipeline: str) -> RunFolder | None:
    """The complete run with the latest as_of; among those, the one that finished last."""
    runs = store.complete_runs(pipeline)
    if not runs:
        return None

    def key(rf: RunFolder):
        m = rf.manifest() or {}
        return (rf.as_of, str(m.get("finished_at") or ""), rf.run_id)

    return max(runs, key=key)


def _float(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _pipeline_rows(loaded: LoadedConfig, store: Store, name: str, metric: str | None) -> list[dict]:
    p = loaded.config.pipelines[name]
    headline = metric or p.metric_specs()[0].key
    base = {
        "pipeline": name,
        "model": None,
        "metric": headline,
        "value": math.nan,
        "ci_low": math.nan,
        "ci_high": math.nan,
        "cost_per_1k_usd": math.nan,
        "run_id": None,
        "as_of": None,
        "higher_is_better": None,
    }
    rf = latest_complete_run(store, name)
    if rf is None:
        return [{**base, "status": NO_RUN}]
    base.update(run_id=rf.run_id, as_of=rf.as_of)
    try:
        metrics = rf.read_table(assay.store.METRICS).to_pandas()
    except FileNotFoundError:
        return [{**base, "status": "no metrics.parquet in the latest complete run"}]
    sel = metrics[(metrics["metric"] == headline) & (metrics["slice"] == "all")]
    if sel.empty:
        have = ", ".join(dict.fromkeys(metrics["metric"].astype(str))) or "none"
        return [{**base, "status": f"metric {headline!r} not in the latest complete run (it has: {have})"}]
    costs = {}
    try:
        ct = rf.read_table(assay.store.COSTS).to_pandas()
        if "kind" in ct.columns:
            ct = ct[ct["kind"] != "judge"]
        costs = {str(r["model"]): _float(r.get("cost_per_1k_usd")) for _, r in ct.iterrows()}
    except FileNotFoundError:
        pass
    rows = []
    for _, r in sel.iterrows():
        hib = r.get("higher_is_better")
        rows.append(
            {
                **base,
                "model": str(r["model"]),
                "value": _float(r["value"]),
                "ci_low": _float(r.get("ci_low")),
                "ci_high": _float(r.get("ci_high")),
                "cost_per_1k_usd": costs.get(str(r["model"]), math.nan),
                "higher_is_better": None if hib is None or pd.isna(hib) else bool(hib),
                "status": OK,
            }
        )
    return rows


def matrix(
    loaded: LoadedConfig, metric: str | None = None, artifacts: str | None = None, pipelines: list[str] | None = None
) -> pd.DataFrame:
    """The long table for every pipeline of the config (or ``pipelines``), in config order.

    ``artifacts`` overrides the artifact root as ``assay run --artifacts`` does.
    """
    store = Store(artifacts_root(loaded, artifacts))
    names = list(pipelines) if pipelines else list(loaded.config.pipelines)
    rows = []
    for name in names:
        loaded.pipeline(name)  # a ConfigError naming the known pipelines
        rows += _pipeline_rows(loaded, store, name, metric)
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("value", "ci_low", "ci_high", "cost_per_1k_usd"):
        df[c] = df[c].astype(float)
    for c in ("model", "run_id", "as_of", "higher_is_better"):  # missing stays None, not NaN
        df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


def format_cost(usd_per_1k: float) -> str:
    """``$0.014/1k``; a dash when the cost is unknown."""
    if usd_per_1k is None or (isinstance(usd_per_1k, float) and math.isnan(usd_per_1k)):
        return "$?/1k"
    c = float(usd_per_1k)
    if c == 0:
        text = "0"
    elif abs(c) >= 100:
        text = f"{c:,.0f}"
    elif abs(c) >= 1:
        text = f"{c:.2f}"
    elif abs(c) >= 0.001:
        text = f"{c:.3f}"
    else:
        text = f"{c:.2g}"
    return f"${text}/1k"


def cell(value: float, cost_per_1k: float, digits: int = 3) -> str:
    """One matrix cell: ``0.873 · $0.014/1k``."""
    v = "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"
    return f"{v} · {format_cost(cost_per_1k)}"


def pivot(long: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Models as rows, pipelines as columns (config order), formatted cells; empty where a model
    is not in a pipeline's run. A pipeline without a usable run keeps its (empty) column."""
    pipes = list(dict.fromkeys(long["pipeline"]))
    ok = long[long["status"] == OK]
    models = list(dict.fromkeys(ok["model"]))
    grid = pd.DataFrame("", index=pd.Index(models, name="model"), columns=pipes, dtype=object)
    for r in ok.itertuples():
        grid.loc[r.model, r.pipeline] = cell(r.value, r.cost_per_1k_usd, digits)
    return grid
