"""Prefect tasks, one module per stage: each is a thin, named step around ``assay.stages.<stage>.run``.

A task runs its stage in the flow's own process and returns what the stage returns (an artifact
path, or what the UI shows). An expected failure (bad data, the budget guard, too many errors)
ends the task Failed with Assay's one-line message instead of a traceback; anything else is a
bug and keeps its traceback.
"""

from assay.config import ConfigError
from assay.runs import RunFailed

#: Failures Assay explains in one line: the message says what to fix.
EXPECTED = (RunFailed, ConfigError, FileNotFoundError, ValueError)


def run_stage(stage, ctx):
    """``stage.run(ctx)``; an expected failure becomes a Failed state carrying its message."""
    from prefect.states import Failed

    try:
        return stage.run(ctx)
    except EXPECTED as e:
        return Failed(message=f"{stage.NAME}: {e}")


def run_stage_with(fn, ctx, *args):
    """``fn(ctx, *args)`` (a stage's sharded path), with the expected failures of :func:`run_stage`."""
    from prefect.states import Failed

    try:
        return fn(ctx, *args)
    except EXPECTED as e:
        return Failed(message=f"{fn.__module__.rsplit('.', 1)[-1]}: {e}")


def for_stage(name: str):
    """The Prefect task of stage ``name``."""
    from tasks import cost, gate, invoke, load, report, score

    return {"load": load.load, "invoke": invoke.invoke, "score": score.score, "cost": cost.cost, "report": report.report,
            "gate": gate.gate}[name]
