"""``assay plan``: the examples (and samples per example) needed to detect a difference. Exit codes: 0 ok,
2 configuration or usage error (no complete run to plan from)."""

import typer

from assay.store import Store
from flows.cli.common import ARTIFACTS_OPT, CONFIG_OPT, EXIT_CONFIG, err, load_pipeline

FORMATS = ("table", "csv", "json")


def plan(
    pipeline: str = typer.Argument(..., help="The pipeline to plan for."),
    detect: float = typer.Option(
        ..., "--detect", "-d", help="The difference to detect, in the metric's units (0.02 = 2 points of accuracy)."
    ),
    config: str = CONFIG_OPT,
    artifacts: str | None = ARTIFACTS_OPT,
    metric: str | None = typer.Option(None, "--metric", "-m", help="Only this metric."),
    samples: str | None = typer.Option(
        None, "--samples", help="Samples per example to consider, e.g. 1,2,4 (needs a run with samples)."
    ),
    power: float = typer.Option(0.8, "--power", help="Power of the test."),
    alpha: float = typer.Option(0.05, "--alpha", help="Two-sided significance level."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
):
    """How many examples (and samples per example) are needed to detect a difference of DETECT between
    two models, at the given power and significance, from the variances of the latest complete run."""
    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.matrix import latest_complete_run
    from assay.planning import plan as make_plan
    from assay.runs import artifacts_root

    if fmt not in FORMATS or not detect > 0 or not 0 < power < 1 or not 0 < alpha < 1:
        err("--detect must be > 0, --power and --alpha between 0 and 1, --format one of " + ", ".join(FORMATS))
        raise typer.Exit(EXIT_CONFIG)
    try:
        ks = [int(k) for k in samples.split(",")] if samples else None
    except ValueError:
        err(f"--samples: expected numbers like 1,2,4, got {samples!r}")
        raise typer.Exit(EXIT_CONFIG) from None
    loaded = load_pipeline(config, pipeline)
    rf = latest_complete_run(Store(artifacts_root(loaded, artifacts)), pipeline)
    if rf is None:
        err(f"{pipeline}: no complete run to plan from; run `assay run {pipeline}` first")
        raise typer.Exit(EXIT_CONFIG)
    table = make_plan(rf, detect, alpha=alpha, power=power, metric=metric, samples=ks)
    if fmt == "csv":
        typer.echo(table.to_csv(index=False), nl=False)
        return
    if fmt == "json":
        typer.echo(table.to_json(orient="records", indent=2))
        return
    typer.echo(
        f"{pipeline}: to detect a difference of {detect:g} at power {power:g}, two-sided alpha {alpha:g} "
        f"(from run {rf.run_id}, {rf.as_of})"
    )
    for r in table.itertuples(index=False):
        who = f"{r.model_a} vs {r.model_b}" if r.model_b else f"{r.model_a}"
        need = "cannot tell (no variance in this run)" if r.examples_needed < 0 else f"{r.examples_needed:,} examples"
        k = f" x {r.samples} samples" if r.samples and r.samples > 1 else ""
        typer.echo(f"  {r.metric:<14} {who:<34} {need}{k}   (this run: n={r.n_run:,}, detects {r.mde_run:.4g})")
