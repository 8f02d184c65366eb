"""``assay reprice``: a recorded run's costs under other prices.

Exit codes: 0 ok, 2 a bad run folder or usage error.
"""

import typer

from flows.cli.common import EXIT_CONFIG, err, parse_date


def reprice(
    run_folder: str = typer.Argument(..., help="A run folder: <artifacts>/<pipeline>/<as_of>/<run_id>."),
    as_of: str | None = typer.Option(
        None,
        "--as-of",
        help="Price every request at this date's prices, YYYY-MM-DD "
        "(default: the prices recorded in the run, which reproduce its costs).",
    ),
    write: bool = typer.Option(
        False,
        "--write/--no-write",
        help="Write costs-<date>.parquet and breakeven-<date>.parquet "
        "next to the originals and record the repricing in the manifest.",
    ),
):
    """Recompute a run's costs at another date's prices without calling any model; print old vs new.

    Reads responses/, manifest.json (the recorded config, stats and prices) and metrics.parquet.
    Without --as-of, each request is priced as the run priced it (from the prices recorded in the
    manifest, so a past run's dollars never change); with --as-of, every request of every model is
    priced at that date's prices. Self-hosted and conventional models are priced by time and do not
    change. Exit 2 when the folder is not a finished run (the missing file is named).
    """
    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    from assay.reprice import RepriceError, format_comparison
    from assay.reprice import reprice as do_reprice

    day = parse_date(as_of, "--as-of")
    try:
        result = do_reprice(run_folder, day, write=write)
    except RepriceError as e:
        err(f"reprice: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    typer.echo(format_comparison(result))
    for path in result.written:
        typer.echo(f"wrote {path}")
