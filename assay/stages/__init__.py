"""The stages of a run, defined once, and the one loop that chains them.

Each stage module (``load``, ``invoke``, ``score``, ``cost``, ``report``) has a ``run(ctx)``
that reads its inputs from the run folder, writes its own artifacts and records itself in the
manifest. :func:`run_stages` chains them and marks the run complete or failed; the Prefect flow
(``flows/assess.py``), :func:`run_local` and ``assay reproduce`` all go through it, the flow
wrapping each stage in its Prefect task (``call``). The gate runs between cost and report;
its verdict is part of the report and of the finished run.
"""

import logging
from collections.abc import Callable
from datetime import date
from typing import Any

from assay import drift
from assay.report import engine
from assay.runs import RunContext, fail, finish, start_run
from assay.stages import cost, gate, invoke, load, report, score

#: The stages, in order.
STAGES = (load, invoke, score, cost, report)
#: Their names (the Prefect tasks of ``tasks/`` have the same names).
NAMES = tuple(s.NAME for s in STAGES)


def message(e: BaseException) -> str:
    return str(e) or type(e).__name__


def run_stages(
    ctx: RunContext,
    call: Callable[[Any, RunContext], Any] | None = None,
    on_end: Callable[[], dict] | None = None,
    gates: bool = True,
) -> RunContext:
    """Run every stage on ``ctx`` (``call(stage, ctx)`` runs one; default ``stage.run(ctx)``),
    checking the pipeline's gates (``call(gate, ctx)``, when it has any) after the cost stage and
    before the report, so the report shows the verdict; then mark the run complete.

    On a failure the manifest says which stage failed and why, the partial artifacts stay (the
    same request resumes them), and the exception propagates. A broken gate is not a failed run:
    its verdict is recorded, the report is still written and the run marked complete (its
    artifacts stand), then the gate's exception propagates. A run killed at any point, the gate
    included, stays unfinished and resumable. ``on_end()`` gives extra manifest keys to record
    with the end (the Prefect flow run, say).
    """
    call = call or (lambda stage, c: stage.run(c))
    extra = on_end or dict
    engine.start()  # the report's chart engine starts in a child process while the models are called
    todo = STAGES[:-1] + ((gate,) if gates and ctx.cfg.gates else ()) + STAGES[-1:]
    broken = None
    for stage in todo:
        try:
            call(stage, ctx)
        except BaseException as e:
            if stage is gate and ctx.manifest.get("gates", {}).get("passed") is False:
                broken = e  # the verdict stands; the report shows it, then the run says so
                continue
            fail(ctx, stage.NAME, message(e), **extra())
            raise
    _drift(ctx)
    finish(ctx, **extra())
    if broken is not None:
        raise broken
    return ctx


def _drift(ctx: RunContext) -> None:
    """Record what the endpoints said they served against the previous run (assay.drift); a
    problem there is logged, never a failed run."""
    try:
        drift.record(ctx)
    except Exception as e:  # noqa: BLE001
        logging.getLogger("assay.drift").warning("drift: not recorded (%s: %s)", type(e).__name__, e)


def run_local(config_path: str, pipeline: str, as_of: date, **kw) -> RunContext:
    """Start (or resume) a run and run every stage in this process, without Prefect (for tests
    and library use); ``kw`` as for :func:`assay.runs.start_run`. Gates are not checked."""
    ctx = start_run(config_path, pipeline, as_of, **kw)
    return run_stages(ctx, gates=False)


__all__ = ["NAMES", "STAGES", "run_local", "run_stages"]
