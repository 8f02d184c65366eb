"""Commands that put Assay on a Prefect server: ``assay serve`` and ``assay deploy``.

Exit codes: 0 ok (an inconclusive gate included: nothing is shown broken), 1 a run failed, 2 configuration
error, 3 a gate broke.
"""

import json
import os
import sys

import typer

from assay.config import ConfigError
from flows.cli.alerts import check_alert_env, sync_and_print
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, err, load, reachable_api, ui_url


def _chosen(config, pipeline, verb: str):
    """The loaded config and the pipelines a serve or deploy names (all by default); exit 2 naming
    an unknown pipeline, or when there is none."""
    loaded = load(config)
    names = list(pipeline) if pipeline else list(loaded.config.pipelines)
    for n in names:
        try:
            loaded.pipeline(n)
        except ConfigError as e:
            err(e.format())
            raise typer.Exit(EXIT_CONFIG) from None
    if not names:
        err(f"{config}: no pipelines to {verb}")
        raise typer.Exit(EXIT_CONFIG)
    return loaded, names


def serve(
    config: str = CONFIG_OPT,
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many flow runs at once in this process."),
    pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p", help="Serve only these pipelines (repeatable)."),
    pause_on_shutdown: bool = typer.Option(
        False,
        "--pause-on-shutdown/--keep-schedules",
        help="Pause the schedules when this process stops (Prefect's default). "
        "Off by default: under systemd/k8s a restart must not stop the nightly runs.",
    ),
):
    """Serve every pipeline as the Prefect deployment assess/<pipeline>, with its schedule.

    Needs a Prefect server: start one with `prefect server start`, point this process at it
    with PREFECT_API_URL (e.g. http://127.0.0.1:4200/api), then open the UI, pick the
    deployment and use Run > Custom run to choose as_of, models and sample. Runs execute in
    subprocesses of this process (no work pool, no worker); scheduled runs assess the date of
    their scheduled start in the schedule's timezone. Stop an old `assay serve` before starting
    a new one: a stale process keeps picking up runs with its old code.
    """
    loaded, names = _chosen(config, pipeline, "serve")
    url = reachable_api("assay serve")
    check_alert_env(loaded, names)
    # lazy: keeps fsspec, jsonschema, prefect, rich out of the CLI
    from flows.serve import deployment_name, serve_pipelines

    typer.echo(f"serving {len(names)} deployment(s) from {loaded.path.resolve()}:")
    for n in names:
        s = loaded.config.pipelines[n].schedule
        typer.echo(
            f"  {deployment_name(n)}  " + (f"cron {s.cron!r} ({s.timezone})" if s else "no schedule (runs from the UI or API)")
        )
    typer.echo(f"UI: {ui_url(url)}/deployments   (stop with Ctrl-C)")
    sys.stdout.flush()
    serve_pipelines(
        str(loaded.path),
        names,
        limit=limit,
        pause_on_shutdown=pause_on_shutdown,
        on_registered=lambda lc: sync_and_print(lc, names if pipeline else None),
    )


def deploy(
    config: str = CONFIG_OPT,
    pool: str = typer.Option(
        "assay", "--pool", help="Work pool to deploy to; a process pool of this name is created if missing."
    ),
    pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p", help="Deploy only these pipelines (repeatable)."),
    source: str | None = typer.Option(
        None,
        "--source",
        help="Where workers get the project folder (pipelines.yaml, data): a folder they "
        "can read (default: the config's folder) or a git URL they clone.",
    ),
    branch: str | None = typer.Option(None, "--branch", help="Git branch of a git --source."),
    image: str | None = typer.Option(None, "--image", help="Image for docker/kubernetes pools (job variable `image`)."),
    job_variable: list[str] | None = typer.Option(
        None,
        "--job-variable",
        "-j",
        help="KEY=VALUE for the pool's job template (repeatable; VALUE may be "
        'JSON, e.g. -j \'env={"AWS_REGION": "eu-west-1"}\' or -j namespace=assay).',
    ),
):
    """Register every pipeline as the deployment assess/<pipeline> on a Prefect work pool.

    The same deployments as `assay serve` (schedule, typed run form), run by workers:
    `prefect worker start --pool NAME` on any machine with Assay installed and the project
    folder readable (or cloned from --source). Runs started by the schedule, the UI, the API
    or `assay backfill` then execute on the workers. Registering again updates the deployments.
    """
    loaded, names = _chosen(config, pipeline, "deploy")
    url = reachable_api("assay deploy")
    # lazy: keeps fsspec, jsonschema, prefect, rich out of the CLI
    from flows.deploy import deploy_pipelines, ensure_pool, is_git_url

    if source and not is_git_url(source) and not os.path.isdir(source):
        err(f"--source: {source} is neither a folder nor a git URL")
        raise typer.Exit(EXIT_CONFIG)
    variables = {}
    for item in job_variable or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            err(f"--job-variable: expected KEY=VALUE, got {item!r}")
            raise typer.Exit(EXIT_CONFIG)
        try:
            variables[key.strip()] = json.loads(value)
        except ValueError:
            variables[key.strip()] = value
    try:
        pool_type, created = ensure_pool(pool)
    except ValueError as e:
        err(str(e))
        raise typer.Exit(EXIT_CONFIG) from None
    check_alert_env(loaded, names)
    deployed = deploy_pipelines(
        str(loaded.path), names, pool=pool, source=source, branch=branch, image=image, job_variables=variables
    )
    typer.echo(
        f"{'created' if created else 'using'} work pool {pool!r} ({pool_type}); "
        f"deployed {len(deployed)} deployment(s) from {source or loaded.path.resolve().parent}:"
    )
    for d in deployed:
        typer.echo(f"  {d.name}  {d.schedule}")
    sync_and_print(loaded, names if pipeline else None)
    typer.echo(f"start a worker: prefect worker start --pool {pool}   UI: {ui_url(url)}/deployments")
