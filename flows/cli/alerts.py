"""``assay alerts sync``: the config's alerts as the Prefect server's automations.

Exit codes: 0 ok (an inconclusive gate included: nothing is shown broken), 1 a run failed, 2 configuration
error, 3 a gate broke.
"""

import sys

import typer

from assay.config import ConfigError
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, err, load, reachable_api


def check_alert_env(loaded, names) -> None:
    """Exit 2 before anything is registered when an alert's URL variable is not set."""
    from flows.alerts import missing_env  # lazy: keeps prefect out of the CLI

    missing = missing_env(loaded, names)
    if missing:
        err(
            f"{loaded.path}: alerts: environment variable(s) {', '.join(missing)} not set: each holds an alert "
            "destination's URL (alerts.destinations.<name>.webhook|slack.url)"
        )
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
    reachable_api("assay alerts sync")
    check_alert_env(loaded, names)
    sync_and_print(loaded, names if pipeline else None)
