"""``assay matrix``: model × pipeline, each pipeline's latest complete run. Exit codes: 0 ok, 2 configuration or usage error."""

import math

import typer

from assay.config import ConfigError
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, check_root_option, err, load

FORMATS = ("table", "csv", "json")


def matrix(
    config: str = CONFIG_OPT,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Headline metric (default: each pipeline's first metric)."),
    artifacts: str | None = typer.Option(
        None, "--artifacts", callback=check_root_option, help="Artifact root: a path or fsspec URL."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json (csv/json: the long table)."),
):
    """Model × pipeline: each pipeline's latest complete run, its headline metric and cost per 1,000 requests."""
    # lazy: keeps pandas, numpy, pyarrow out of the CLI
    from assay.matrix import matrix as build
    from assay.matrix import pivot

    if fmt not in FORMATS:
        err(f"--format: expected {', '.join(FORMATS)}, got {fmt!r}")
        raise typer.Exit(EXIT_CONFIG)
    loaded = load(config)
    try:
        long = build(loaded, metric=metric, artifacts=artifacts)
    except ConfigError as e:
        err(e.format())
        raise typer.Exit(EXIT_CONFIG) from None
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
    # lazy: keeps rich out of the CLI
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
