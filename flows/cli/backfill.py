"""``assay backfill``: one run per date of a range, locally or on the server.

Exit codes: 0 ok (an inconclusive gate included: nothing is shown broken), 1 a run failed, 2 configuration
error, 3 a gate broke.
"""

import typer

from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, check_root_option, err, load_pipeline, parse_date


def backfill(
    pipeline: str = typer.Argument(..., help="Pipeline name from the config."),
    start: str = typer.Option(..., "--start", help="First date, YYYY-MM-DD."),
    end: str = typer.Option(..., "--end", help="Last date, YYYY-MM-DD (inclusive)."),
    config: str = CONFIG_OPT,
    force: bool = typer.Option(False, "--force", help="Run dates that already have a complete run again."),
    concurrency: int = typer.Option(2, "--concurrency", "-k", min=1, help="At most this many dates in flight."),
    artifacts: str | None = typer.Option(
        None, "--artifacts", callback=check_root_option, help="Artifact root: a path or fsspec URL."
    ),
    local: bool = typer.Option(False, "--local", help="Run in this process even when a served deployment exists."),
    timeout: float | None = typer.Option(
        None, "--timeout", min=1, help="Served mode: stop waiting for a date's run after this many seconds."
    ),
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

    report = run_backfill(
        str(loaded.path),
        pipeline,
        d0,
        d1,
        force=force,
        concurrency=concurrency,
        artifacts=artifacts,
        local=local,
        loaded=loaded,
        on_start=on_start,
        on_result=on_result,
        timeout=timeout,
    )
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
        t.add_row(
            r.day.isoformat(), f"[{style.get(r.status, 'red')}]{r.status}[/]", r.gates or "–", r.flow_run or "–", r.folder or "–"
        )
    Console(width=max(160, Console().width)).print(t)
