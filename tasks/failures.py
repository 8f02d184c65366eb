"""Expected failures of a stage task: a Failed state with Assay's one-line message, no traceback."""

from prefect.states import Failed

from assay.errors import AssayError

#: Failures Assay explains in one line: the message says what to fix.
EXPECTED = (AssayError,)


def run_stage(stage, ctx):
    """``stage.run(ctx)``; an expected failure becomes a Failed state carrying its message."""
    try:
        return stage.run(ctx)
    except EXPECTED as e:
        return Failed(message=f"{stage.NAME}: {e}")


def run_stage_with(fn, ctx, *args):
    """``fn(ctx, *args)`` (a stage's sharded path), with the expected failures of :func:`run_stage`."""
    try:
        return fn(ctx, *args)
    except EXPECTED as e:
        return Failed(message=f"{fn.__module__.rsplit('.', 1)[-1]}: {e}")
