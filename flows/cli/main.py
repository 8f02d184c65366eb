"""The ``assay`` command line: every command, registered here and nowhere else.

``assay --help`` and ``python -m flows.cli --help`` run this same ``app``. Commands import
Prefect only when they run a flow, so ``validate`` and ``list`` are quick.
"""

import typer

from flows.cli import capacity, costs, ops, plan, policies, quality, reports, run, runs
from flows.cli import config as config_cmds
from flows.cli.common import apply_environment_defaults

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Assess LLMs for production: quality, generalization, cost.")

app.command()(config_cmds.validate)
app.command("list")(config_cmds.list_)
app.command()(run.run)
app.command()(ops.serve)
app.command()(ops.deploy)
app.command()(ops.backfill)
app.command()(ops.history)
app.command()(quality.matrix)
app.command()(costs.reprice)
app.command()(capacity.capacity)
app.command()(policies.whatif)
app.command()(runs.reproduce)
app.command()(reports.report)
app.command()(reports.compare)
app.command()(reports.dashboard)
app.command()(plan.plan)

alerts_app = typer.Typer(no_args_is_help=True, help="Alerts as Prefect automations (see docs/alerts.md).")
alerts_app.command("sync")(ops.alerts_sync)
app.add_typer(alerts_app, name="alerts")


def main() -> None:
    """The ``assay`` console script."""
    apply_environment_defaults()
    app()


if __name__ == "__main__":
    main()
