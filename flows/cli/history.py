"""``assay history``: a pipeline's metric figures over its past runs.

Exit codes: 0 ok (an inconclusive gate included: nothing is shown broken), 1 a run failed, 2 configuration
error, 3 a gate broke.
"""

import json
import math
import sys

import typer

from assay.runs import artifacts_root
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, check_root_option, err, load


def history(
    pipeline: str = typer.Argument(..., help="Pipeline name."),
    config: str = CONFIG_OPT,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Only this metric."),
    slice_: str = typer.Option("all", "--slice", help="Slice to show (all = overall; e.g. channel=email)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
    artifacts: str | None = typer.Option(
        None, "--artifacts", callback=check_root_option, help="Artifact root: a path or fsspec URL."
    ),
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
        t.add_row(
            r.as_of,
            r.run_id,
            r.model,
            r.metric,
            num(r.value),
            f"{num(r.ci_low)}–{num(r.ci_high)}",
            num(r.n, "{:.0f}"),
            num(r.cost_per_1k_usd, "{:.4f}"),
            num(r.monthly_cost_usd, "{:,.2f}"),
            r.gates or "–",
            r.model_changed or "",
        )
    Console(width=max(160, Console().width)).print(t)
