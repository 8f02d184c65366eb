"""Operations commands of the ``assay`` CLI: serve, deploy, alerts sync, backfill, history.

Exit codes: 0 ok (an inconclusive gate included: nothing is shown broken), 1 a run failed, 2 configuration
error, 3 a gate broke.
"""

import json
import math
import os
import sys

import typer

from assay.config import ConfigError
from assay.runs import artifacts_root
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, EXIT_FAILED, check_root_option, err, load, load_pipeline, parse_date


def _api_url() -> str | None:
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def _ui_url(api_url: str) -> str:
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    if ui:
        return ui.rstrip("/")
    return api_url[:-4] if api_url.rstrip("/").endswith("/api") else api_url


def serve(
    config: str = CONFIG_OPT,
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most this many flow runs at once in this process."),
    pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p", help="Serve only these pipelines (repeatable)."),
    pause_on_shutdown: bool = typer.Option(False, "--pause-on-shutdown/--keep-schedules",
                                           help="Pause the schedules when this process stops (Prefect's default). "
                                                "Off by default: under systemd/k8s a restart must not stop the nightly runs."),
):
    """Serve every pipeline as the Prefect deployment assess/<pipeline>, with its schedule.

    Needs a Prefect server: start one with `prefect server start`, point this process at it
    with PREFECT_API_URL (e.g. http://127.0.0.1:4200/api), then open the UI, pick the
    deployment and use Run > Custom run to choose as_of, models and sample. Runs execute in
    subprocesses of this process (no work pool, no worker); scheduled runs assess the date of
    their scheduled start in the schedule's timezone. Stop an old `assay serve` before starting
    a new one: a stale process keeps picking up runs with its old code.
    """
    loaded = load(config)
    names = list(pipeline) if pipeline else list(loaded.config.pipelines)
    for n in names:
        try:
            loaded.pipeline(n)
        except ConfigError as e:
            err(e.format())
            raise typer.Exit(EXIT_CONFIG) from None
    if not names:
        err(f"{config}: no pipelines to serve")
        raise typer.Exit(EXIT_CONFIG)
    url = _reachable_api("assay serve")
    _check_alert_env(loaded, names)
    # lazy: keeps fsspec, jsonschema, prefect, rich out of the CLI
    from flows.serve import deployment_name, serve_pipelines

    typer.echo(f"serving {len(names)} deployment(s) from {loaded.path.resolve()}:")
    for n in names:
        s = loaded.config.pipelines[n].schedule
        typer.echo(f"  {deployment_name(n)}  " + (f"cron {s.cron!r} ({s.timezone})" if s else "no schedule (runs from the UI or API)"))
    typer.echo(f"UI: {_ui_url(url)}/deployments   (stop with Ctrl-C)")
    sys.stdout.flush()
    serve_pipelines(str(loaded.path), names, limit=limit, pause_on_shutdown=pause_on_shutdown,
                    on_registered=lambda lc: sync_and_print(lc, names if pipeline else None))


def _check_alert_env(loaded, names) -> None:
    """Exit 2 before anything is registered when an alert's URL variable is not set."""
    from flows.alerts import missing_env  # lazy: keeps prefect out of the CLI

    missing = missing_env(loaded, names)
    if missing:
        err(f"{loaded.path}: alerts: environment variable(s) {', '.join(missing)} not set: each holds an alert "
            "destination's URL (alerts.destinations.<name>.webhook|slack.url)")
        raise typer.Exit(EXIT_CONFIG)


def sync_and_print(loaded, pipelines=None) -> None:
    """Sync the config's alerts to the server's automations and print what changed (names only)."""
    from flows.alerts import describe, sync_alerts  # lazy: keeps prefect out of the CLI

    report = sync_alerts(loaded, pipelines)
    configured = loaded.config.alerts is not None or any(p.alerts is not None for p in loaded.config.pipelines.values())
    if not (configured or report.deleted):
        return  # no alerts: nothing to say
    for line in describe(report):
        typer.echo(line)
    sys.stdout.flush()


def alerts_sync(
    config: str = CONFIG_OPT,
    pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p", help="Sync only these pipelines' alerts (repeatable)."),
):
    """Create, update or remove the Prefect automations of the config's alerts: (idempotent).

    What `assay serve` and `assay deploy` do on start, for runs made with `assay run` against a
    server: one automation per pipeline, destination and event, named
    assay/<pipeline>/<destination>/<event>; automations the config no longer names are removed.
    The destinations' URLs are read from the environment variables the config names.
    """
    loaded = load(config)
    names = list(pipeline) if pipeline else list(loaded.config.pipelines)
    for n in names:
        try:
            loaded.pipeline(n)
        except ConfigError as e:
            err(e.format())
            raise typer.Exit(EXIT_CONFIG) from None
    _reachable_api("assay alerts sync")
    _check_alert_env(loaded, names)
    sync_and_print(loaded, names if pipeline else None)


def _reachable_api(what: str) -> str:
    """PREFECT_API_URL, checked to answer; exit 2 when unset, 1 when it does not answer."""
    url = _api_url()
    if not url:
        err(f"{what} needs a Prefect server: run `prefect server start` and set PREFECT_API_URL "
            "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api).")
        raise typer.Exit(EXIT_CONFIG)
    # lazy: keeps prefect out of the CLI
    from prefect import get_client

    try:
        with get_client(sync_client=True) as client:
            problem = client.api_healthcheck()
    except Exception as e:  # noqa: BLE001
        problem = e
    if problem is not None:
        err(f"cannot reach the Prefect API at {url}: {problem}")
        raise typer.Exit(EXIT_FAILED)
    return url


def deploy(
    config: str = CONFIG_OPT,
    pool: str = typer.Option("assay", "--pool", help="Work pool to deploy to; a process pool of this name is created if missing."),
    pipeline: list[str] | None = typer.Option(None, "--pipeline", "-p", help="Deploy only these pipelines (repeatable)."),
    source: str | None = typer.Option(None, "--source",
                                         help="Where workers get the project folder (pipelines.yaml, data): a folder they "
                                              "can read (default: the config's folder) or a git URL they clone."),
    branch: str | None = typer.Option(None, "--branch", help="Git branch of a git --source."),
    image: str | None = typer.Option(None, "--image", help="Image for docker/kubernetes pools (job variable `image`)."),
    job_variable: list[str] | None = typer.Option(None, "--job-variable", "-j",
                                                     help="KEY=VALUE for the pool's job template (repeatable; VALUE may be "
                                                          "JSON, e.g. -j 'env={\"AWS_REGION\": \"eu-west-1\"}' or -j namespace=assay)."),
):
    """Register every pipeline as the deployment assess/<pipeline> on a Prefect work pool.

    The same deployments as `assay serve` (schedule, typed run form), run by workers:
    `prefect worker start --pool NAME` on any machine with Assay installed and the project
    folder readable (or cloned from --source). Runs started by the schedule, the UI, the API
    or `assay backfill` then execute on the workers. Registering again updates the deployments.
    """
    loaded = load(config)
    names = list(pipeline) if pipeline else list(loaded.config.pipelines)
    for n in names:
        try:
            loaded.pipeline(n)
        except ConfigError as e:
            err(e.format())
            raise typer.Exit(EXIT_CONFIG) from None
    if not names:
        err(f"{config}: no pipelines to deploy")
        raise typer.Exit(EXIT_CONFIG)
    url = _reachable_api("assay deploy")
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
    _check_alert_env(loaded, names)
    deployed = deploy_pipelines(str(loaded.path), names, pool=pool, source=source, branch=branch, image=image,
                                job_variables=variables)
    typer.echo(f"{'created' if created else 'using'} work pool {pool!r} ({pool_type}); "
               f"deployed {len(deployed)} deployment(s) from {source or loaded.path.resolve().parent}:")
    for d in deployed:
        typer.echo(f"  {d.name}  {d.schedule}")
    sync_and_print(loaded, names if pipeline else None)
    typer.echo(f"start a worker: prefect worker start --pool {pool}   UI: {_ui_url(url)}/deployments")


def backfill(
    pipeline: str = typer.Argument(..., help="Pipeline name from the config."),
    start: str = typer.Option(..., "--start", help="First date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last date, YYYY-MM-DD (inclusive)."),
    config: str = CONFIG_OPT,
    force: bool = typer.Option(False, "--force", help="Run dates that already have a complete run again."),
    concurrency: int = typer.Option(2, "--concurrency", "-k", min=1, help="At most this many dates in flight."),
    artifacts: str | None = typer.Option(None, "--artifacts", callback=check_root_option, help="Artifact root: a path or fsspec URL."),
    local: bool = typer.Option(False, "--local", help="Run in this process even when a served deployment exists."),
    timeout: float | None = typer.Option(None, "--timeout", min=1,
                                            help="Served mode: stop waiting for a date's run after this many seconds."),
):
    """Assess every date from --start to --end (inclusive): one run per date, idempotent.

    Dates with a complete run are skipped unless --force, so an interrupted backfill started
    again does only the missing dates. When PREFECT_API_URL points at a server where
    `assay serve` serves assess/<pipeline>, each date becomes a flow run of that deployment
    (tag "backfill", at most --concurrency in flight) and this command waits for them;
    otherwise the assess flow runs here, --concurrency dates at a time on threads.
    Prints date -> status and run folder. Exit 1 if a date failed (or timed out), 3 if a gate broke.
    """
    # lazy: keeps pandas, numpy, pyarrow, fsspec, jsonschema, prefect, rich out of the CLI
    from flows.backfill import backfill as run_backfill

    loaded = load_pipeline(config, pipeline)
    d0, d1 = parse_date(start, "--start"), parse_date(end, "--end")
    if d1 < d0:
        err(f"--end {d1} is before --start {d0}")
        raise typer.Exit(EXIT_CONFIG)

    def on_start(mode, reason, plan):
        where = f"deployment assess/{pipeline}" if mode == "served" else f"this process ({reason})"
        err(f"backfill {pipeline} {d0}..{d1}: {len(plan.todo)} to run, {len(plan.skipped)} already complete; running in {where}")

    def on_result(r):
        err(f"  {r.day}  {r.status}" + (f"  {r.message.splitlines()[0][:160]}" if r.message and r.status != "complete" else ""))

    report = run_backfill(str(loaded.path), pipeline, d0, d1, force=force, concurrency=concurrency, artifacts=artifacts,
                          local=local, loaded=loaded, on_start=on_start, on_result=on_result, timeout=timeout)
    _print_backfill(report)
    raise typer.Exit(report.exit_code)


def _print_backfill(report) -> None:
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"backfill {report.pipeline} ({report.mode})")
    for col in ("date", "status", "gates", "flow run", "run folder"):
        t.add_column(col, overflow="fold")
    style = {"complete": "green", "skipped": "dim", "gate failed": "yellow"}
    for r in report.results:
        t.add_row(r.day.isoformat(), f"[{style.get(r.status, 'red')}]{r.status}[/]", r.gates or "–", r.flow_run or "–", r.folder or "–")
    Console(width=max(160, Console().width)).print(t)


def history(
    pipeline: str = typer.Argument(..., help="Pipeline name."),
    config: str = CONFIG_OPT,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Only this metric."),
    slice_: str = typer.Option("all", "--slice", help="Slice to show (all = overall; e.g. channel=email)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    artifacts: str | None = typer.Option(None, "--artifacts", callback=check_root_option, help="Artifact root: a path or fsspec URL."),
):
    """Metrics and costs of every complete run of a pipeline, oldest first.

    Read straight from the Parquet tree under the artifact root (metrics.parquet and
    costs.parquet of each complete run folder): one row per as_of, run and model (and metric)
    with value, ci_low, ci_high, cost_per_1k_usd, monthly_cost_usd and the gate verdict.
    """
    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    from assay.history import history as load_history

    if fmt not in ("table", "csv", "json"):
        err(f"--format: expected table, csv or json, got {fmt!r}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = load(config)
    root = artifacts_root(loaded, artifacts)
    df = load_history(root, pipeline, metric=metric, slice=slice_)
    if df.empty:
        if pipeline not in loaded.config.pipelines:
            err(f"no pipeline {pipeline!r} in {config} and no runs of it under {root}")
            raise typer.Exit(EXIT_CONFIG)
        err(f"no complete runs of {pipeline} under {root}" + (f" with metric {metric!r}" if metric else ""))
    if fmt == "csv":
        sys.stdout.write(df.to_csv(index=False))
    elif fmt == "json":
        records = json.loads(df.to_json(orient="records", double_precision=15))
        typer.echo(json.dumps(records, indent=2))
    elif not df.empty:
        _print_history(df, pipeline, root)


def _print_history(df, pipeline: str, root: str) -> None:
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    def num(v, f="{:.4f}"):
        try:
            return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f.format(v)
        except (TypeError, ValueError):
            return str(v)

    t = Table(title=f"history of {pipeline} ({root})")
    cols = ["as_of", "run_id", "model", "metric", "value", "95% CI", "n", "$/1k req", "$/month", "gates", "model changed"]
    for c in cols:
        t.add_column(c, justify="right" if c in ("value", "n", "$/1k req", "$/month") else "left")
    for r in df.itertuples(index=False):
        t.add_row(r.as_of, r.run_id, r.model, r.metric, num(r.value), f"{num(r.ci_low)}–{num(r.ci_high)}", num(r.n, "{:.0f}"),
                  num(r.cost_per_1k_usd, "{:.4f}"), num(r.monthly_cost_usd, "{:,.2f}"), r.gates or "–",
                  r.model_changed or "")
    Console(width=max(160, Console().width)).print(t)
