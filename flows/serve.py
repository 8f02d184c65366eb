"""Serve every pipeline of a config as a Prefect deployment: nightly schedules and UI runs.

``assay serve`` registers one deployment per pipeline, named ``assess/<pipeline>`` (flow
``assess``, deployment = the pipeline name), with the pipeline's ``schedule`` (cron + timezone)
where it has one, and then serves them from this process (no work pool, no worker): the
process polls the server and runs each flow run in a subprocess of its own. It does what
``prefect.serve`` does, through ``Runner.add_flow`` rather than ``prefect.serve(*deployments)``
(see :func:`serve_pipelines` for why).

Each deployment runs a small *wrapper flow* built for its pipeline (also named ``assess``), so
that the UI's "Custom run" form is typed for that pipeline:

* ``pipeline``: a one-value dropdown, fixed to the pipeline;
* ``as_of``: a date picker; left at None, a scheduled run assesses the date of its scheduled
  start in the schedule's timezone (``flows.assess.evaluation_date``);
* ``models``: a multi-select of the pipeline's models (default: all of them);
* ``sample``: a number; 0 (the default) = the pipeline's ``dataset.sample`` (every example when
  it has none); a number at least the dataset's size = every example;
* ``config``: the absolute path of the served pipelines.yaml;
* ``artifacts``: an artifact root overriding the config's ("" = the config's);
* ``cache``: use / refresh / off.

Apart from ``as_of`` (where None means "the scheduled date") the parameters are plain typed
values with defaults, because the UI renders ``X | None`` as type tabs the user has to click.
The wrapper calls ``flows.assess.assess.fn`` inside its own flow run, so a served run is one
flow run with the same tasks as ``assay run``; ``flows/assess.py`` itself is unchanged.

Once the deployments are registered, the config's ``alerts:`` are synced to Prefect automations
(:mod:`flows.alerts`), before the first run is served.

Shutdown: ``pause_on_shutdown`` is False by default. ``assay serve`` is meant to run under a
service manager (systemd, k8s, docker restart policies), and Prefect's default (True) pauses
every schedule when the process stops, so a restart or a crash would silently stop the
nightly runs until someone un-pauses them. With False, runs scheduled while the process is
down stay Scheduled (Late) and are run, each with its own scheduled date, when serving resumes.
Registering again un-pauses a deployment in any case (Prefect sends ``paused=False``). Pass
``--pause-on-shutdown`` to get Prefect's behaviour.
"""

import asyncio
import enum
import re
from datetime import date
from typing import Literal

from prefect import flow
from prefect.exceptions import TerminationSignal
from prefect.schedules import Cron

FLOW_NAME = "assess"


def deployment_name(pipeline: str) -> str:
    """The full name ``run_deployment`` and the UI use: ``assess/<pipeline>``."""
    return f"{FLOW_NAME}/{pipeline}"


def pipeline_flow(loaded, pipeline: str):
    """A flow named ``assess`` whose parameters are typed and defaulted for one pipeline."""
    # lazy: keeps numpy, pyarrow out of start-up
    from flows.assess import assess

    p = loaded.pipeline(pipeline)
    config_path = str(loaded.path.resolve())
    names = tuple(p.models)
    # a one-member Enum: the UI shows a dropdown (a one-value Literal becomes a JSON-schema
    # "const", which the form renders as a free text box)
    Pipeline = enum.Enum("Pipeline", {_ident(pipeline): pipeline}, type=str)
    Model = Literal[names]
    Cache = Literal["use", "refresh", "off"]

    def assess_pipeline(
        pipeline: Pipeline = Pipeline(pipeline),  # noqa: B008  (the UI's run form shows the defaults)
        as_of: date | None = None,
        models: list[Model] = list(names),  # noqa: B006  (never changed; the form shows it)
        sample: int = 0,
        config: str = config_path,
        artifacts: str = "",
        cache: Cache = p.cache,
    ) -> str:
        chosen = [str(m) for m in models] if models else None
        return assess.fn(
            pipeline=getattr(pipeline, "value", pipeline),
            as_of=as_of,
            models=chosen,
            sample=sample if sample > 0 else None,
            config=config,
            artifacts=artifacts or None,
            cache=str(cache),
        )

    assess_pipeline.__name__ = assess_pipeline.__qualname__ = f"assess_{_ident(pipeline)}"
    assess_pipeline.__doc__ = f"""Assess the candidate models of pipeline {pipeline}: load, invoke, score, cost, report, gates.

    Args:
        pipeline: the pipeline this deployment assesses.
        as_of: the evaluation date; empty (None) = the date of the scheduled start ({p.schedule.timezone if p.schedule else "UTC"}).
        models: the models to include (default: all of the pipeline's models).
        sample: number of examples to sample; 0 = the pipeline's dataset.sample (every example when it has none).
        config: path of the pipelines.yaml this process serves.
        artifacts: artifact root (path or fsspec URL); empty = the config's artifacts.
        cache: response cache mode: use, refresh or off.
    """
    return flow(
        name=FLOW_NAME, log_prints=False, persist_result=False, description=p.description or f"Assess pipeline {pipeline}"
    )(assess_pipeline)


def _ident(name: str) -> str:
    return re.sub(r"\W+", "_", name).strip("_") or "pipeline"


def serve_pipelines(
    config: str, pipelines: list[str] | None = None, limit: int | None = None, pause_on_shutdown: bool = False, on_registered=None
) -> None:
    """Register one deployment per pipeline and serve them from this process until interrupted.

    This is ``prefect.serve`` with one difference that matters here: each deployment is added
    with ``Runner.add_flow`` (what ``flow.serve`` does), which keeps the in-memory flow, so a run
    executes that flow object in a subprocess. ``prefect.serve(*flow.to_deployment(...))``
    registers deployments *without* their flows, and the runner then re-imports each run's
    flow from the deployment's entrypoint (``flows/serve.py:assess_<pipeline>``), which a flow
    built per pipeline at start-up does not have: every run would crash with "Function with
    name 'assess_<pipeline>' not found".
    """
    # lazy: keeps prefect out of start-up
    from prefect.runner import Runner

    # lazy: keeps numpy, pyarrow out of start-up
    from assay.preflight import load_checked

    loaded = load_checked(config)
    runner = Runner(name="assay-serve", pause_on_shutdown=pause_on_shutdown, limit=limit)
    for name in pipelines or list(loaded.config.pipelines):
        p = loaded.pipeline(name)
        runner.add_flow(
            pipeline_flow(loaded, name),
            name=name,
            schedules=[Cron(p.schedule.cron, timezone=p.schedule.timezone)] if p.schedule else None,
            parameters={"pipeline": name, "config": str(loaded.path.resolve())},
            description=p.description or f"Assess pipeline {name} ({', '.join(p.models)})",
            tags=["assay", name],
            version=loaded.config_hash(name)[:12],
        )
    if on_registered is not None:  # the alerts' automations need the deployments' ids
        on_registered(loaded)
    try:
        asyncio.run(runner.start())
    except (KeyboardInterrupt, TerminationSignal):
        pass
