"""Prefect tasks, one module per stage: each is a thin, named step around ``assay.stages.<stage>.run``.

A task runs its stage in the flow's own process and returns what the stage returns (an artifact
path, or what the UI shows). A failure Assay expects (:class:`assay.errors.AssayError`: bad
config or data, a provider that cannot be set up, a metric that cannot be built, the budget
guard, too many errors) ends the task Failed with Assay's one-line message instead of a
traceback. Anything else is a bug (in Assay or a library it calls, even a ``ValueError`` from
pyarrow) and is raised as it is, so Prefect logs its traceback (shown on the terminal with
``--debug``).
"""

from assay.errors import AssayError

#: Failures Assay explains in one line: the message says what to fix.
EXPECTED = (AssayError,)


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
