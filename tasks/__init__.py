"""Prefect tasks, one module per stage: each is a thin, named step around ``assay.stages.<stage>.run``.

A task runs its stage in the flow's own process and returns what the stage returns (an artifact
path, or what the UI shows). A failure Assay expects (:class:`assay.errors.AssayError`: bad
config or data, a provider that cannot be set up, a metric that cannot be built, the budget
guard, too many errors) ends the task Failed with Assay's one-line message instead of a
traceback (:mod:`tasks.failures`). Anything else is a bug (in Assay or a library it calls, even a
``ValueError`` from pyarrow) and is raised as it is, so Prefect logs its traceback (shown on the
terminal with ``--debug``).
"""

from tasks import cost, gate, invoke, load, report, score
from tasks.failures import EXPECTED, run_stage, run_stage_with

__all__ = ["EXPECTED", "for_stage", "run_stage", "run_stage_with"]


def for_stage(name: str):
    """The Prefect task of stage ``name``."""
    return {
        "load": load.load,
        "invoke": invoke.invoke,
        "score": score.score,
        "cost": cost.cost,
        "report": report.report,
        "gate": gate.gate,
    }[name]
