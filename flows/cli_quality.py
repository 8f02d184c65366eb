"""Quality commands of the ``assay`` CLI: matrix.

Imported by ``flows.cli.main()``, which registers these commands on its typer ``app``.
Exit codes as in ``flows.cli``: 0 ok, 2 configuration or usage error.
"""

import math
import sys
from typing import Optional

import typer

from flows.cli import _config_error, CONFIG_OPT, EXIT_CONFIG, _err, _load


def _app() -> typer.Typer:
    """The typer app that ``main()`` runs: ``flows.cli.app``, or that of ``python -m flows.cli``
    (which runs the module as ``__main__``, a second copy with its own ``app``)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name == "flows.cli" and isinstance(getattr(main, "app", None), typer.Typer):
        return main.app
    from flows.cli import app

    return app


app = _app()

FORMATS = ("table", "csv", "json")


@app.command()
def matrix(
    config: str = CONFIG_OPT,
    metric: Optional[str] = typer.Option(None, "--metric", "-m", help="Headline metric (default: each pipeline's first metric)."),
    artifacts: Optional[str] = typer.Option(None, "--artifacts", help="Artifact root: a path or fsspec URL."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (csv/json: the long table)."),
):
    """Model × pipeline: each pipeline's latest complete run, its headline metric and cost per 1,000 requests."""
    from assay.matrix import matrix as build, pivot

    if fmt not in FORMATS:
        _err(f"--format: expected {', '.join(FORMATS)}, got {fmt!r}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = _load(config)
    try:
        long = build(loaded, metric=metric, artifacts=artifacts)
    except _config_error() as e:
        _err(e.format())
        raise typer.Exit(EXIT_CONFIG)
    if fmt == "csv":
        typer.echo(long.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        typer.echo(long.to_json(orient="records", indent=2))
        return
    _print_table(long, pivot(long))


def _best(long, pipeline) -> set[str]:
    ok = long[(long["pipeline"] == pipeline) & (long["status"] == "ok")].dropna(subset=["value"])
    if ok.empty:
        return set()
    hib = ok["higher_is_better"].iloc[0]
    best = ok["value"].max() if hib is not False else ok["value"].min()
    return set(ok.loc[ok["value"] == best, "model"])


def _print_table(long, grid) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    con = Console()
    t = Table(title="model × pipeline (latest complete run)")
    t.add_column("model")
    pipes = list(grid.columns)
    best = {}
    for p in pipes:
        rows = long[long["pipeline"] == p]
        first = rows.iloc[0]
        sub = f"{first['metric']}" + (f", {first['as_of']}" if first["as_of"] else "")
        t.add_column(f"{escape(p)}\n[dim]{escape(sub)}[/dim]")
        best[p] = _best(long, p)
    for model, row in grid.iterrows():
        cells = []
        for p in pipes:
            text = escape(row[p]) if row[p] else "[dim]–[/dim]"
            cells.append(f"[bold]{text}[/bold]" if model in best[p] and row[p] else text)
        t.add_row(escape(str(model)), *cells)
    con.print(t)
    for r in long[long["status"] != "ok"].itertuples():
        con.print(f"[yellow]{escape(r.pipeline)}[/yellow]: {escape(r.status)}")
    judged = long[(long["status"] == "ok") & long["cost_per_1k_usd"].map(lambda c: isinstance(c, float) and math.isnan(c))]
    if len(judged):
        con.print("[dim]$?/1k: no price for that model in its run[/dim]")
