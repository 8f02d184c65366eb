"""Deploy every pipeline of a config to a Prefect work pool: runs execute on workers, not here.

``assay deploy`` registers the same deployments as ``assay serve`` — ``assess/<pipeline>``, with
the pipeline's schedule and the typed run form — but to a work pool, so a worker
(``prefect worker start --pool NAME``) of any type (process, docker, kubernetes, ...) on any
machine runs them. A worker has no copy of the flow built in this process, so every deployment
names one module-level flow, :func:`assess_deployed` (entrypoint ``flows.deploy.assess_deployed``,
imported from the Assay installed where the run executes), and its *source* is the project
folder: the folder that holds pipelines.yaml, its data and metric files. Prefect's pull step puts
the project there before the run: ``set_working_directory`` for a folder the worker can read (the
same machine, a shared volume, baked into an image), ``git_clone`` for a git URL.

The run form stays typed per pipeline: each deployment's ``parameter_openapi_schema`` is the
schema of the per-pipeline wrapper ``assay serve`` builds (:func:`flows.serve.pipeline_flow`:
pipeline dropdown, as_of date picker, models multi-select, sample, config, artifacts, cache),
while the flow the worker imports takes the same parameters as plain values. The server checks
every run's parameters against that schema (``enforce_parameter_schema``), so a run started by
the API, the UI or a backfill can only name the pipeline's own models.

The ``config`` parameter is the config's path inside the project folder, relative, so it
resolves in the folder the pull step prepares wherever that is; a config outside a local
source folder is recorded by its absolute path (it must then be at that path on the worker).

No ``from __future__ import annotations`` here: Prefect reads the real annotations (a ``date``
parameter breaks otherwise).
"""

import os
import subprocess
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlparse

from prefect import flow, get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron
from prefect.utilities.callables import parameter_schema

from flows.serve import FLOW_NAME, deployment_name, pipeline_flow

ENTRYPOINT = "flows.deploy.assess_deployed"
DEFAULT_POOL = "assay"


@flow(name=FLOW_NAME, log_prints=False, persist_result=False)
def assess_deployed(
    pipeline: str,
    as_of: date | None = None,
    models: list[str] | None = None,
    sample: int = 0,
    config: str = "pipelines.yaml",
    artifacts: str = "",
    cache: str = "",
) -> str:
    """Assess the candidate models of one pipeline on a worker: load, invoke, score, cost, report, gates.

    The same run as ``assay run`` and a served run (``flows.assess.assess`` inside this flow run);
    each deployment's run form types these parameters for its pipeline.

    Args:
        pipeline: the pipeline this deployment assesses.
        as_of: the evaluation date; empty (None) = the date of the scheduled start.
        models: the models to include (default: all of the pipeline's models).
        sample: number of examples to sample; 0 = the pipeline's dataset.sample.
        config: path of pipelines.yaml, relative to the project folder the run starts in.
        artifacts: artifact root (path or fsspec URL); empty = the config's artifacts.
        cache: response cache mode: use, refresh or off; empty = the pipeline's.
    """
    # lazy: keeps numpy, pyarrow out of start-up
    from flows.assess import assess

    return assess.fn(
        pipeline=pipeline,
        as_of=as_of,
        models=[str(m) for m in models] if models else None,
        sample=sample if sample > 0 else None,
        config=config,
        artifacts=artifacts or None,
        cache=str(cache) if cache else None,
    )


def is_git_url(source: str) -> bool:
    """A source that Prefect clones (``git_clone``) rather than uses in place."""
    u = urlparse(source)
    return u.scheme == "git" or u.path.endswith(".git") or source.startswith("git@")


def _git_toplevel(folder: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", folder, "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def config_in_source(config_path: str, source: str) -> str:
    """The ``config`` parameter a worker resolves in the folder the pull step prepares."""
    config_path = os.path.abspath(config_path)
    base = _git_toplevel(os.path.dirname(config_path)) if is_git_url(source) else os.path.abspath(source)
    if base and os.path.commonpath([base, config_path]) == base:
        return os.path.relpath(config_path, base).replace(os.sep, "/")
    return os.path.basename(config_path) if is_git_url(source) else config_path


@dataclass
class Deployed:
    """One registered deployment, for the command to print."""

    name: str
    id: str
    schedule: str


def ensure_pool(pool: str, pool_type: str = "process") -> tuple[str, bool]:
    """The pool's type, creating a pool of ``pool_type`` when there is none by that name.

    Only a process pool is created here (its job template ships with Prefect); docker and
    kubernetes pools need their worker package and are created with ``prefect work-pool create``.
    """
    with get_client(sync_client=True) as client:
        try:
            return client.read_work_pool(pool).type, False
        except ObjectNotFound:
            pass
        if pool_type != "process":
            raise ValueError(f"no work pool {pool!r}: create it with `prefect work-pool create {pool} --type {pool_type}`")
        # lazy: keeps prefect out of start-up
        from prefect.workers.process import ProcessWorker

        client.create_work_pool(
            WorkPoolCreate(name=pool, type="process", base_job_template=ProcessWorker.get_default_base_job_template())
        )
        return "process", True


def _storage(source: str, branch: str | None):
    # lazy: keeps prefect out of start-up
    from prefect.runner.storage import GitRepository, create_storage_from_source

    if is_git_url(source):
        return GitRepository(url=source, branch=branch)
    return create_storage_from_source(os.path.abspath(source))


def deploy_pipelines(
    config: str,
    pipelines: list[str] | None = None,
    pool: str = DEFAULT_POOL,
    source: str | None = None,
    branch: str | None = None,
    image: str | None = None,
    job_variables: dict | None = None,
) -> list[Deployed]:
    """Register ``assess/<pipeline>`` for each pipeline to ``pool`` (see the module docstring)."""
    # lazy: keeps prefect out of start-up
    from prefect.deployments.runner import RunnerDeployment

    # lazy: keeps numpy, pyarrow out of start-up
    from assay.preflight import load_checked

    loaded = load_checked(config)
    config_path = str(loaded.path.resolve())
    source = source or os.path.dirname(config_path)
    param_config = config_in_source(config_path, source)
    jv = dict(job_variables or {})
    if image:
        jv["image"] = image
    out = []
    for name in pipelines or list(loaded.config.pipelines):
        p = loaded.pipeline(name)
        dep = RunnerDeployment.from_storage(
            storage=_storage(source, branch),
            entrypoint=ENTRYPOINT,
            name=name,
            schedules=[Cron(p.schedule.cron, timezone=p.schedule.timezone)] if p.schedule else None,
            parameters={"pipeline": name, "config": param_config},
            description=p.description or f"Assess pipeline {name} ({', '.join(p.models)})",
            tags=["assay", name],
            version=loaded.config_hash(name)[:12],
            work_pool_name=pool,
            job_variables=jv,
        )
        # the run form of `assay serve`'s wrapper for this pipeline; its config default is where
        # the worker finds the file
        schema = parameter_schema(pipeline_flow(loaded, name))
        schema.properties["config"]["default"] = param_config
        dep._parameter_openapi_schema = schema
        dep_id = dep.apply(work_pool_name=pool)
        out.append(
            Deployed(
                deployment_name(name),
                str(dep_id),
                f"cron {p.schedule.cron!r} ({p.schedule.timezone})" if p.schedule else "no schedule",
            )
        )
    return out
