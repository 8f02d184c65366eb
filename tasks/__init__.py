"""Prefect tasks, one module per stage: each is a thin, named step around ``assay.stages.<stage>.run``.

A task runs its stage in the flow's own process and returns what the stage returns (an artifact
path, or what the UI shows). An expected failure (bad data, the budget guard, too many errors)
ends the task Failed with Assay's one-line message instead of a traceback (:mod:`tasks.failures`);
anything else is a bug and keeps its traceback.
"""

from tasks import cost, gate, invoke, load, report, score


def for_stage(name: str):
    """The Prefect task of stage ``name``."""
    return {"load": load.load, "invoke": invoke.invoke, "score": score.score, "cost": cost.cost, "report": report.report,
            "gate": gate.gate}[name]
