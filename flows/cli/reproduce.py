"""``assay reproduce``: run a recorded run again and compare every artifact."""

import typer

from flows.cli.common import EXIT_CONFIG, EXIT_FAILED, check_root_option, err


def reproduce(
    run_folder: str = typer.Argument(..., help="A run folder: <artifacts>/<pipeline>/<as_of>/<run_id>."),
    artifacts: str | None = typer.Option(
        None,
        "--artifacts",
        callback=check_root_option,
        help="Where to write the reproduction (default: <artifacts>/_reproductions).",
    ),
    project: str | None = typer.Option(
        None,
        "--project",
        help="Folder the recorded config's relative paths resolve "
        "against (default: the recorded config's folder, else the current one).",
    ),
):
    """Run a recorded run again from its manifest (recorded config, cached responses) and
    report whether every artifact matches. Exit 0 when all match, 1 otherwise."""
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.reproduce import ReproduceError
    from assay.reproduce import reproduce as run_reproduce

    try:
        result = run_reproduce(run_folder, artifacts, project=project)
    except ReproduceError as e:
        err(f"cannot reproduce: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    con = Console()
    t = Table(title=f"reproduction of {result.original}")
    for col in ("artifact", "status", "detail"):
        t.add_column(col)
    for r in result.rows:
        style = {"identical": "green", "same content": "green", "differs": "red"}[r["status"]]
        t.add_row(r["artifact"], f"[{style}]{r['status']}[/{style}]", r["detail"])
    con.print(t)
    typer.echo(result.reproduced)
    raise typer.Exit(0 if result.matches else EXIT_FAILED)
