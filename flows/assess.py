"""The ``assess`` flow: one assessment run, one Prefect task per stage.

No ``from __future__ import annotations`` here: Prefect builds the UI's run form from the
real annotations, and a served flow with a ``date`` parameter breaks without them.
"""

from datetime import date

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from assay.run import RunContext, fail, finish, start_run
from tasks.cost import cost
from tasks.invoke import invoke
from tasks.load import load
from tasks.report import report
from tasks.score import score


def evaluation_date(as_of: date | None, timezone: str | None = None) -> date:
    """``as_of`` when given, else the date of the run's scheduled start (never the wall clock)."""
    if as_of is not None:
        return as_of
    scheduled = flow_run.scheduled_start_time
    if timezone:
        scheduled = scheduled.in_timezone(timezone) if hasattr(scheduled, "in_timezone") else scheduled.astimezone(_tz(timezone))
    return scheduled.date()


def _tz(name: str):
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _flow_run_record() -> dict:
    """Which Prefect flow run made the run folder, for its manifest (``prefect``).

    Written when the run ends, not when it starts: with ``assay run`` another process is writing
    the manifest while the stages run (see ``assay.ahead``).
    """
    return {"prefect": {"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name}} if flow_run.id else {}


def run_stages(ctx: RunContext) -> str:
    """Chain the stages; on failure mark the manifest failed (keeping partial artifacts) and re-raise."""
    stage = "load"
    try:
        load(ctx)
        stage = "invoke"
        invoke(ctx)
        stage = "score"
        score(ctx)
        stage = "cost"
        cost(ctx)
        stage = "report"
        report(ctx)
    except BaseException as e:
        fail(ctx, stage, f"{type(e).__name__}: {e}" if not str(e) else str(e), **_flow_run_record())
        raise
    finish(ctx, **_flow_run_record())
    # Gates run on a complete run: its artifacts stand, but a broken gate fails the flow run.
    if ctx.cfg.gates:
        from tasks.gate import gate

        gate(ctx)
    return ctx.folder.url


@flow(name="assess", log_prints=False, persist_result=False)
def assess(pipeline: str, as_of: date | None = None, models: list[str] | None = None, sample: int | None = None,
           config: str = "pipelines.yaml", artifacts: str | None = None, cache: str | None = None) -> str:
    """Assess the candidate models of one pipeline: load, invoke, score, cost, report.

    Args:
        pipeline: a pipeline name from the config file.
        as_of: the evaluation date (defaults to the date of the scheduled start).
        models: the models to include (default: all the pipeline's models).
        sample: number of examples to sample (default: the pipeline's setting).
        config: path to pipelines.yaml.
        artifacts: artifact root (path or fsspec URL) overriding the config's.
        cache: response cache mode: use, refresh or off.
    """
    from assay.config import load_config

    loaded = load_config(config)
    p = loaded.pipeline(pipeline)
    day = evaluation_date(as_of, p.schedule.timezone if p.schedule else None)
    ctx = start_run(config, pipeline, day, models=models or None, sample=sample, artifacts=artifacts,
                    cache_mode=cache, loaded=loaded)
    get_run_logger().info("run folder: %s%s", ctx.folder.url, " (resumed)" if ctx.resumed else "")
    return run_stages(ctx)
