"""The ``assess`` flow: one assessment run, one Prefect task per stage, in this process.

However the flow is started (``assay run``, a schedule, the UI, a backfill, a worker), it runs
the same loop (:func:`assay.stages.run_stages`) with each stage wrapped in its task from
``tasks/``, so the flow run shows one task per stage with its real duration, its outcome and
the stage's own log lines.

No ``from __future__ import annotations`` here: Prefect builds the UI's run form from the
real annotations, and a served flow with a ``date`` parameter breaks without them.
"""

import logging
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from prefect import Flow, get_run_logger
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL
from prefect.states import Failed

from assay.config import ConfigError, load_config
from assay.preflight import Checked, preflight
from assay.runs import RunContext, start_run
from assay.stages import run_stages
from assay.store import Store
from flows.events import emit_run_events
from tasks import for_stage
from tasks.logs import assay_logs_to_prefect


class StageFailed(RuntimeError):
    """A stage's task ended Failed; the message is the stage's own."""


def evaluation_date(as_of: date | None, timezone: str | None = None) -> date:
    """``as_of`` when given, else the date of the run's scheduled start (never the wall clock)."""
    if as_of is not None:
        return as_of
    scheduled = flow_run.scheduled_start_time
    if timezone:
        scheduled = scheduled.astimezone(ZoneInfo(timezone))
    return scheduled.date()


class _NoEmptyTraceback(logging.Filter):
    """Prefect logs a task that returned a Failed state with ``exc_info=True`` but no exception in
    flight, which prints a stray ``NoneType: None`` under the line; drop the empty exc_info."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[0] is None:
            record.exc_info = None
        return True


logging.getLogger("prefect.task_runs").addFilter(_NoEmptyTraceback())


def _flow_run_record() -> dict:
    """Which Prefect flow run made the run folder, for its manifest (``prefect``)."""
    return {"prefect": {"flow_run_id": str(flow_run.id), "flow_run_name": flow_run.name}} if flow_run.id else {}


def _call(stage, ctx):
    state = for_stage(stage.NAME)(ctx, return_state=True)
    if state.is_failed():
        raise StageFailed(state.message or f"{stage.NAME} failed")
    return state.result()


class _PlainParameters(Flow):
    """A flow whose plain parameters (text, numbers, dates, lists of text, None; a run's context as
    its folder) are serialized for the flow run's record directly, as FastAPI's ``jsonable_encoder`` would; Prefect imports
    FastAPI for that encoder (0.2 s of every ``assay run``'s start, a trivial flow has no
    parameters to pay it). Anything else goes through Prefect's own serialization."""

    def serialize_parameters(self, parameters: dict) -> dict:
        out = {}
        for k, v in parameters.items():
            if v is None or isinstance(v, (str, int, float)):
                out[k] = v
            elif isinstance(v, RunContext):  # a run passed to a subflow is recorded as its folder
                out[k] = v.folder.url
            elif isinstance(v, dict) and all(isinstance(x, (str, dict)) for x in v.values()):  # a manifest record
                out[k] = v
            elif type(v) is date:
                out[k] = v.isoformat()
            elif isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v):
                out[k] = list(v)
            else:
                return super().serialize_parameters(parameters)
        return out


def assess(
    pipeline: str,
    as_of: date | None = None,
    models: list[str] | None = None,
    sample: int | None = None,
    config: str = "pipelines.yaml",
    artifacts: str | None = None,
    cache: str | None = None,
) -> str:
    """Assess the candidate models of one pipeline: load, invoke, score, cost, report, gates.

    Returns the run folder. A failed stage or a broken gate ends the flow run Failed with the
    stage's one-line message; the run folder keeps what was written, and the same request resumes it.
    A config, dataset or file that cannot work ends the flow run Failed before any run folder
    exists, with one line per problem (the preflight: assay.preflight).

    Args:
        pipeline: a pipeline name from the config file.
        as_of: the evaluation date (defaults to the date of the scheduled start).
        models: the models to include (default: all the pipeline's models).
        sample: number of examples to sample (default: the pipeline's setting).
        config: path to pipelines.yaml.
        artifacts: artifact root (path or fsspec URL) overriding the config's.
        cache: response cache mode: use, refresh or off.
    """
    day = as_of
    try:
        loaded = load_config(config)
        p = loaded.pipeline(pipeline)
        day = evaluation_date(as_of, p.schedule.timezone if p.schedule else None)
        checked = preflight(loaded, pipeline, day, models=models or None, sample=sample, artifacts=artifacts)
    except ConfigError as e:  # before start_run: no run folder is made for a run that cannot work
        get_run_logger().error("%s", e.format())
        # the event names the problems' key paths only: a message may quote a value from the environment
        where = ", ".join(path or "<root>" for path, _, _ in e.problems[:5])
        emit_run_events(
            pipeline,
            day or "",
            "failed",
            manifest={},
            message=f"the preflight found {len(e.problems)} problem(s) in {e.source}: {where}",
        )
        return Failed(message=e.format())
    return _run_checked(checked, config, cache)


def _run_checked(checked: Checked, config: str, cache: str | None) -> str:
    """The run of a request its preflight passed: start (or resume) it, then every stage, taking
    the dataset the preflight prepared. The prepared dataset is let go of however the run ends."""
    try:
        ctx = start_run(
            config,
            checked.pipeline,
            checked.as_of,
            models=checked.models,
            sample=checked.sample,
            artifacts=checked.artifacts,
            cache_mode=cache,
            loaded=checked.loaded,
            prepared=checked.dataset,
        )
        get_run_logger().info("run folder: %s%s", ctx.folder.url, " (resumed)" if ctx.resumed else "")
        with assay_logs_to_prefect():
            try:
                if ctx.runner is None:
                    run_stages(ctx, call=_call, on_end=_flow_run_record)
                else:
                    on_dask(ctx)
            except StageFailed as e:
                _tell(ctx, checked.loaded, str(e))
                return Failed(message=str(e), data=ctx.folder.url)
            except BaseException as e:
                _tell(ctx, checked.loaded, str(e) or type(e).__name__)
                raise
            _tell(ctx, checked.loaded)
        return ctx.folder.url
    finally:
        checked.release()


def run_checked(checked: Checked, config: str, cache: str | None = None, **options):
    """Run the ``assess`` flow, in this process, for a request whose preflight has just passed
    (``assay run``): the same flow, name and parameters (recorded from ``checked``), whose run
    takes ``checked`` as a value instead of checking the request again and reading the dataset a
    second time. ``options`` go to the flow call (``return_state=True``, say).

    ``checked`` holds a prepared dataset, which must not become a flow parameter (parameters are
    stored in Prefect's database), so it is bound into a flow made for this one call.
    """

    def assess(
        pipeline: str,
        as_of: date | None = None,
        models: list[str] | None = None,
        sample: int | None = None,
        config: str = "pipelines.yaml",
        artifacts: str | None = None,
        cache: str | None = None,
    ) -> str:
        return _run_checked(checked, config, cache)

    assess.__doc__ = _assess_fn.__doc__
    flow = _PlainParameters(assess, name="assess", log_prints=False, persist_result=False)
    return flow(
        pipeline=checked.pipeline,
        as_of=checked.as_of,
        models=checked.models,
        sample=checked.sample,
        config=config,
        artifacts=checked.artifacts,
        cache=cache,
        **options,
    )


def _tell(ctx, loaded, message: str = "") -> None:
    """Emit the run's events (``flows/events.py``) from what its run folder records: a run whose
    manifest says complete (its gates may have failed) is complete; anything else failed."""
    manifest = ctx.folder.manifest() or {}
    status = "complete" if manifest.get("status") == "complete" else "failed"
    emit_run_events(ctx.pipeline, ctx.as_of, status, folder=ctx.folder, manifest=manifest, message=message, loaded=loaded)


def dask_task_runner(runner):
    """prefect-dask's task runner for a ``runner:``: the scheduler at its address, or a LocalCluster
    of ``workers`` processes (one thread each) started for the run and closed with it. The local
    workers are told this process's Prefect API, so their task runs and logs land in this run."""
    # lazy: optional (the dask extra)
    from prefect_dask import DaskTaskRunner

    if runner.dask != "local":
        return DaskTaskRunner(address=runner.dask)
    api = PREFECT_API_URL.value()
    if not api:  # this process runs on Prefect's temporary server: the workers join it rather than start their own
        # lazy: keeps prefect out of start-up
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        server.start()  # already running: this only reads its address
        api = server.api_url
    env = {"PREFECT_API_URL": api}
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": runner.workers or 2,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
            "env": env,
        },
    )


def on_dask(ctx):
    """The stages of ``ctx`` in a subflow whose task runner is the pipeline's Dask cluster: the
    stage tasks run here as always; the invoke and score shards they map run on the cluster."""
    stages_on_dask.with_options(task_runner=dask_task_runner(ctx.runner))(ctx, _flow_run_record())  # the parent made the folder


def _stages_on_dask(run, record) -> None:
    """Every stage of the run ``run`` (a RunContext started by ``assess``: left unannotated, so that
    Prefect passes it as it is), with this flow's Dask task runner; ``record`` is the parent flow
    run, for the manifest."""
    with assay_logs_to_prefect():
        run_stages(run, call=_call, on_end=lambda: record)


stages_on_dask = _PlainParameters(_stages_on_dask, name="assess-on-dask", log_prints=False, persist_result=False)


_assess_fn = assess
assess = _PlainParameters(assess, name="assess", log_prints=False, persist_result=False)


@dataclass
class Outcome:
    """How one ``assess`` flow run ended, for the commands that start one."""

    status: str  # complete | gate failed | failed | crashed | cancelled
    folder: str | None  # the run folder (None when the run never got one)
    message: str = ""


def outcome(state) -> Outcome:
    """The :class:`Outcome` of a finished ``assess`` flow run's final state. A failed run whose
    manifest says complete failed at its gates (its artifacts stand)."""
    try:
        folder = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001  (a crash before the flow returned: no folder to report)
        folder = None
    if not isinstance(folder, str):
        folder = None
    if state.is_completed():
        return Outcome("complete", folder)
    message = state.message or state.type.value.lower()
    if folder is not None:
        root, pipeline, as_of, run_id = folder.rstrip("/").rsplit("/", 3)
        manifest = Store(root).run(pipeline, date.fromisoformat(as_of), run_id).manifest() or {}
        if manifest.get("status") == "complete" and (manifest.get("gates") or {}).get("passed") is False:
            return Outcome("gate failed", folder, message)
    return Outcome("crashed" if state.is_crashed() else "cancelled" if state.is_cancelled() else "failed", folder, message)
