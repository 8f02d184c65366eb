"""Run a recorded run again from its manifest and say whether every artifact matches.

The reproduction uses the recorded config (not today's pipelines.yaml), checks that the
dataset source still has the recorded fingerprint, serves model calls from the response
cache, and takes the recorded measurements (invoke wall time, compute and training time)
as inputs to the cost model, since a measurement cannot be reproduced, only reused.
"""

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

import assay.store
from assay.config import ConfigError, recorded_config
from assay.dataset import fingerprint
from assay.errors import AssayError
from assay.responses import read_responses
from assay.runs import Manifest, start_run
from assay.stages import run_stages
from assay.store import RunFolder

#: Columns that are measurements of one execution, not results (compared, but reported apart).
TIMING = {
    "responses": ["latency_s", "started_at", "attempts", "cached"],
    "costs": [
        "cache_hits",
        "latency_p50_s",
        "latency_p95_s",
        "latency_p99_s",
        "throughput_rps",
        "latency_p05_s",
        "latency_p25_s",
        "latency_p75_s",
    ],
}
PARQUET = [
    assay.store.DATASET,
    assay.store.SCORES,
    assay.store.METRICS,
    assay.store.GENERALIZATION,
    assay.store.COMPARISONS,
    assay.store.COSTS,
    assay.store.BREAKEVEN,
]


class ReproduceError(AssayError, ValueError):
    """The run folder cannot be reproduced (missing manifest, changed dataset, ...)."""


@dataclass
class Reproduction:
    original: str
    reproduced: str
    rows: list[dict] = field(default_factory=list)  # artifact, status, detail

    @property
    def matches(self) -> bool:
        return all(r["status"] in ("identical", "same content") for r in self.rows)


def _frame(rf: RunFolder, name: str) -> pd.DataFrame:
    if name == assay.store.RESPONSES:
        return read_responses(rf).to_pandas().sort_values(["model", "example_id", "sample"]).reset_index(drop=True)
    return rf.read_table(name).to_pandas()


def compare(a: RunFolder, b: RunFolder) -> list[dict]:
    rows = []
    for name in [assay.store.RESPONSES] + PARQUET:
        if not a.exists(name):
            continue
        if name != assay.store.RESPONSES and a.hash(name) == b.hash(name):
            rows.append({"artifact": name, "status": "identical", "detail": a.hash(name)[:12]})
            continue
        fa, fb = _frame(a, name), _frame(b, name)
        key = "responses" if name == assay.store.RESPONSES else name.split(".")[0]
        timing = [c for c in TIMING.get(key, []) if c in fa.columns]
        ca, cb = fa.drop(columns=timing, errors="ignore"), fb.drop(columns=timing, errors="ignore")
        if list(ca.columns) == list(cb.columns) and ca.shape == cb.shape and ca.equals(cb):
            rows.append(
                {
                    "artifact": name,
                    "status": "same content",
                    "detail": f"re-measured: {', '.join(timing)}" if timing else "equal values, different bytes",
                }
            )
        else:
            diff = [c for c in ca.columns if c not in cb.columns or not ca[c].equals(cb[c])] if ca.shape == cb.shape else ["rows"]
            rows.append({"artifact": name, "status": "differs", "detail": ", ".join(diff[:8])})
    return rows


def reproduce(path: str, artifacts: str | None = None, project: str | None = None) -> Reproduction:
    """Re-run the recorded run into ``artifacts`` (default ``<root>/_reproductions``) and compare.

    The recorded config's relative paths (dataset, replay logs, metric files) resolve against the
    folder of the config file the run was started from, as recorded; on a machine where that
    folder is not (a run made elsewhere on a shared object store), against ``project``, by default
    the current directory. The dataset's fingerprint check makes sure it is the same data."""
    try:
        src = assay.store.open_run(path)
    except assay.store.NotARunFolder as e:
        raise ReproduceError(str(e)) from None
    m = src.manifest() or {}
    if m.get("status") != "complete":
        raise ReproduceError(f"{path} is not a complete run (status {m.get('status')!r})")
    try:
        # an unset ${VAR} is an error: the models are called again, and must be the ones the run called
        loaded = recorded_config(m, unset_env="error", source=src.path(assay.store.MANIFEST))
    except ConfigError as e:
        raise ReproduceError(str(e)) from None
    recorded_file = Path(m.get("config_file") or "pipelines.yaml")
    if project is not None or not recorded_file.parent.is_dir():
        loaded.path = Path(project or os.getcwd()).resolve() / recorded_file.name
        loaded.base_dir = loaded.path.parent
    pipeline = m["pipeline"]
    request = m.get("request") or {}
    models = request.get("models") or loaded.pipeline(pipeline).models
    if loaded.config_hash(pipeline, models) != m["config_hash"]:
        raise ReproduceError("the recorded config resolves differently now (an environment variable it uses changed)")
    p = loaded.pipeline(pipeline)
    source = loaded.resolve_path(p.dataset.source)
    fp = fingerprint(source, p.dataset.format)
    if fp != (m.get("dataset") or {}).get("fingerprint"):
        raise ReproduceError(
            f"dataset {source} changed since the run (fingerprint {fp[:19]}…, recorded "
            f"{str((m.get('dataset') or {}).get('fingerprint'))[:19]}…)"
        )
    out = artifacts or src.store.url("_reproductions")
    ctx = start_run(
        str(loaded.path),
        pipeline,
        date.fromisoformat(m["as_of"]),
        models=models,
        sample=request.get("sample"),
        artifacts=out,
        cache_mode="use",
        loaded=loaded,
        new=True,
    )
    ctx.cache_file = m.get("cache")
    ctx.measurements = Manifest(m).model_stats
    ctx.recorded_capacity = m.get("capacity") or {}
    ctx.update_manifest(reproduces=src.url)
    run_stages(ctx, gates=False)
    return Reproduction(src.url, ctx.folder.url, compare(src, ctx.folder))
