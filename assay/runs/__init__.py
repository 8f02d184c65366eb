"""Runs: the run context, the run folder's manifest, and who watches a run's progress."""

from assay.runs.context import (
    GateFailed,
    RunContext,
    RunFailed,
    artifacts_root,
    cache_file_for,
    check_models,
    fail,
    finish,
    start_run,
)
from assay.runs.manifest import Manifest

__all__ = [
    "GateFailed",
    "Manifest",
    "RunContext",
    "RunFailed",
    "artifacts_root",
    "cache_file_for",
    "check_models",
    "fail",
    "finish",
    "start_run",
]
