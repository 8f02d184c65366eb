"""What every command of the ``assay`` CLI shares: options, exit codes, config loading, errors.

Exit codes: 0 success, 1 failed run, 2 configuration or usage error, 3 a quality gate broke,
130 interrupted (Ctrl-C; the run is kept and the same command resumes it).
"""

import os
from datetime import date, datetime

import typer


def check_root_option(value: str | None) -> str | None:
    """``--artifacts``: a path or a URL of a storage protocol Assay can use, else a usage error (exit 2)."""
    if value is None:
        return value
    # lazy: keeps yaml, pydantic out of the CLI
    from assay.config.schema import check_root

    try:
        return check_root(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


CONFIG_OPT = typer.Option("pipelines.yaml", "--config", "-c", help="Path to pipelines.yaml.")
ARTIFACTS_OPT = typer.Option(None, "--artifacts", help="Artifact root: a path or fsspec URL.", callback=check_root_option)
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_GATE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def apply_environment_defaults() -> None:
    """Defaults for a Prefect started by Assay, unless the user set them: offline (no analytics
    from the server, no telemetry from the client), and a start-up timeout long enough for the
    temporary server's first start (database migrations) on a busy two-core machine."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def err(msg: str) -> None:
    typer.echo(msg, err=True)


def load(config: str):
    """The validated config, its sections checked against each other; exit 2 naming every problem otherwise."""
    # lazy: keeps yaml, pydantic out of the CLI
    from assay.config import ConfigError
    from assay.preflight import load_checked

    try:
        return load_checked(config)
    except ConfigError as e:
        err(e.format())
        raise typer.Exit(EXIT_CONFIG) from None


def load_pipeline(config: str, pipeline: str):
    """The config, checked to have ``pipeline``; exit 2 naming the problem otherwise."""
    # lazy: keeps yaml, pydantic out of the CLI
    from assay.config import ConfigError

    loaded = load(config)
    try:
        loaded.pipeline(pipeline)
    except ConfigError as e:
        err(e.format())
        raise typer.Exit(EXIT_CONFIG) from None
    return loaded


def parse_date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        err(f"{name}: expected a date as YYYY-MM-DD, got {value!r}")
        raise typer.Exit(EXIT_CONFIG) from None


def _api_url() -> str | None:
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    return get_current_settings().api.url


def ui_url(api_url: str) -> str:
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    ui = get_current_settings().ui_url
    if ui:
        return ui.rstrip("/")
    return api_url[:-4] if api_url.rstrip("/").endswith("/api") else api_url


def reachable_api(what: str) -> str:
    """PREFECT_API_URL, checked to answer; exit 2 when unset, 1 when it does not answer."""
    url = _api_url()
    if not url:
        err(
            f"{what} needs a Prefect server: run `prefect server start` and set PREFECT_API_URL "
            "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api)."
        )
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
