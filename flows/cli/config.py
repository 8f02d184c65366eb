"""Config commands of the ``assay`` CLI: validate, list."""

import typer

from flows.cli.common import CONFIG_OPT, load


def validate(config: str = CONFIG_OPT):
    """Check a pipelines.yaml; every problem names its key path and line."""
    loaded = load(config)
    c = loaded.config
    typer.echo(f"{config}: OK ({len(c.pipelines)} pipeline(s), {len(c.models)} model(s))")


def _pricing(m) -> str:
    if getattr(m, "hosting", None):
        return "self-hosted"
    if getattr(m, "price", None):
        return "explicit"
    if getattr(m, "compute", None) or m.provider == "sklearn":
        return "compute"
    return f"genai-prices ({getattr(m, 'price_ref', None) or getattr(m, 'model', None)})"


def list_(config: str = CONFIG_OPT):
    """Show the pipelines and models of a config."""
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.table import Table

    c = load(config).config
    con = Console()
    t = Table(title="pipelines")
    for col in ("pipeline", "dataset", "models", "metrics", "schedule"):
        t.add_column(col)
    for name, p in c.pipelines.items():
        t.add_row(
            name,
            p.dataset.source,
            ", ".join(p.models),
            ", ".join(s.key for s in p.metric_specs()),
            f"{p.schedule.cron} ({p.schedule.timezone})" if p.schedule else "–",
        )
    con.print(t)
    t = Table(title="models")
    for col in ("model", "provider", "target", "pricing"):
        t.add_column(col)
    for name, m in c.models.items():
        t.add_row(name, m.provider, m.target, _pricing(m))
    con.print(t)
