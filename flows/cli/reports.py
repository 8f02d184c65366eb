"""Report commands of the ``assay`` CLI: report, compare, dashboard.

Each reads artifacts only (no model is called, no Prefect is started). Exit codes: 0 ok,
2 a path that is not a run folder (or an artifact it needs is missing) or a usage error.
"""

import os

import typer

from assay.report import engine
from assay.store import NotARunFolder, open_run
from flows.cli.common import CONFIG_OPT, EXIT_CONFIG, check_root_option, err, load


def _open(path: str, what: str):
    try:
        return open_run(path)
    except NotARunFolder as e:
        err(f"{what}: {e}")
        raise typer.Exit(EXIT_CONFIG) from None


def report(run_folder: str = typer.Argument(..., help="A run folder: <artifacts>/<pipeline>/<as_of>/<run_id>.")):
    """Write a run's summary.md and report.html again from its artifacts; print the report's path."""
    engine.start()  # the chart engine starts (about a second) while the tables are read
    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.report.summary import build_report, run_config

    rf = _open(run_folder, "report")
    try:
        out = build_report(rf, run_config(rf.manifest() or {}), rf.pipeline)
    except (FileNotFoundError, ValueError) as e:
        err(f"report: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    typer.echo(out["recommendation"])
    typer.echo(out["report"])


def compare(
    run_a: str = typer.Argument(..., help="The first run folder (A)."),
    run_b: str = typer.Argument(..., help="The second run folder (B)."),
    out: str | None = typer.Option(None, "--out", "-o", help="The page to write (default: compare-<A>-<B>.html here)."),
):
    """Write a page setting two runs side by side: what changed in config, data and prices, the
    results of each, and the paired differences B − A on the examples they share."""
    engine.start()
    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.report.compare import build_compare

    a, b = _open(run_a, "compare"), _open(run_b, "compare")
    path = out or f"compare-{a.run_id}-{b.run_id}.html"
    if os.path.dirname(os.path.abspath(path)):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        result = build_compare(a, b, path)
    except (FileNotFoundError, ValueError) as e:
        err(f"compare: {e}")
        raise typer.Exit(EXIT_CONFIG) from None
    changed = len(result["config_changes"])
    typer.echo(
        f"{changed} config setting(s) differ; {'same' if result['same_data'] else 'different'} data, "
        f"{result['shared_examples']:,} shared examples; prices changed for: "
        f"{', '.join(result['prices_changed']) or 'none'}"
    )
    typer.echo(os.path.abspath(path))


def dashboard(
    out: str = typer.Option(..., "--out", "-o", help="The folder to write the site into."),
    artifacts: str | None = typer.Option(
        None,
        "--artifacts",
        callback=check_root_option,
        help="Artifact root: a path or fsspec URL (default: the config's artifacts:).",
    ),
    config: str = CONFIG_OPT,
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        help="The URL at which the artifact root is published, "
        "for the links to each run's report (default: $ASSAY_ARTIFACTS_URL; else "
        "relative paths).",
    ),
):
    """Write a static site over every pipeline and date in the artifact root, from the Parquet tree alone:
    latest result per pipeline, the model × use-case matrix, history charts, links to each run's report."""
    engine.start()
    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.report.dashboard import build_dashboard

    root = artifacts
    if root is None:
        # lazy: keeps yaml, pydantic out of the CLI
        from assay.runs import artifacts_root

        root = artifacts_root(load(config), None)
    result = build_dashboard(root, out, base_url)
    typer.echo(
        f"{len(result['pipelines'])} pipeline(s), {result['runs']:,} run(s); {len(result['pages'])} page(s) in "
        f"{result['timings']['total']:.2f} s"
    )
    typer.echo(os.path.abspath(os.path.join(out, "index.html")))
