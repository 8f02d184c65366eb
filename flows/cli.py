"""The ``assay`` command line.

Exit codes: 0 success, 1 failed run, 2 configuration error, 3 a quality gate broke.
Commands import Prefect only when they run a flow, so ``validate`` and ``list`` are quick.
"""

import os
import sys
from datetime import date, datetime
from typing import Optional

import typer

import flows  # noqa: F401  (sets the offline Prefect environment before Prefect is imported)

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Assess LLMs for production: quality, generalization, cost.")

CONFIG_OPT = typer.Option("pipelines.yaml", "--config", "-c", help="Path to pipelines.yaml.")
EXIT_FAILED, EXIT_CONFIG, EXIT_GATE = 1, 2, 3


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


def _config_error() -> type:
    """``ConfigError``, imported when needed: ``assay run`` forks before the config code loads."""
    from assay.config import ConfigError

    return ConfigError


def _load(config: str):
    from assay.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as e:
        _err(e.format())
        raise typer.Exit(EXIT_CONFIG)


def _load_pipeline(config: str, pipeline: str):
    """The config, checked to have ``pipeline``; exit 2 naming the problem otherwise."""
    loaded = _load(config)
    try:
        loaded.pipeline(pipeline)
    except _config_error() as e:
        _err(e.format())
        raise typer.Exit(EXIT_CONFIG)
    return loaded


def _parse_date(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        _err(f"{name}: expected a date as YYYY-MM-DD, got {value!r}")
        raise typer.Exit(EXIT_CONFIG)


@app.command()
def validate(config: str = CONFIG_OPT):
    """Check a pipelines.yaml; every problem names its key path and line."""
    loaded = _load(config)
    c = loaded.config
    typer.echo(f"{config}: OK ({len(c.pipelines)} pipeline(s), {len(c.models)} model(s))")


@app.command("list")
def list_(config: str = CONFIG_OPT):
    """Show the pipelines and models of a config."""
    from rich.console import Console
    from rich.table import Table

    loaded = _load(config)
    c = loaded.config
    con = Console()
    t = Table(title="pipelines")
    for col in ("pipeline", "dataset", "models", "metrics", "schedule"):
        t.add_column(col)
    for name, p in c.pipelines.items():
        t.add_row(name, p.dataset.source, ", ".join(p.models), ", ".join(s.key for s in p.metric_specs()),
                  f"{p.schedule.cron} ({p.schedule.timezone})" if p.schedule else "–")
    con.print(t)
    t = Table(title="models")
    for col in ("model", "provider", "target", "pricing"):
        t.add_column(col)
    for name, m in c.models.items():
        target = m.model or m.source or m.function or m.path or m.estimator or m.train or ""
        if m.base_url:
            target += f" @ {m.base_url}"
        pricing = ("self-hosted" if m.hosting else "explicit" if m.price else "compute" if m.compute or m.provider == "sklearn"
                   else f"genai-prices ({m.price_ref or m.model})")
        t.add_row(name, m.provider, target, pricing)
    con.print(t)


class _Progress:
    """A terminal progress bar per model: items/s, errors and dollars so far."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("{task.fields[rate]} it/s  errors {task.fields[errors]}  ${task.fields[usd]}"),
                          TimeElapsedColumn(), transient=False, console=Console(stderr=True))
        self.tasks: dict[str, int] = {}
        self.start: dict[str, float] = {}

    def __call__(self, model, done, total, errors, usd):
        import time

        if model not in self.tasks:
            self.tasks[model] = self.p.add_task(model, total=total, rate="0", errors=0, usd="0.0000")
            self.start[model] = time.monotonic()
        dt = max(1e-6, time.monotonic() - self.start[model])
        self.p.update(self.tasks[model], completed=done, rate=f"{done / dt:,.0f}", errors=errors, usd=f"{usd:.4f}")


@app.command()
def run(
    pipeline: str = typer.Argument(..., help="Pipeline name from the config."),
    config: str = CONFIG_OPT,
    as_of: Optional[str] = typer.Option(None, "--as-of", help="Evaluation date YYYY-MM-DD (default: today)."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated subset of the pipeline's models."),
    sample: Optional[int] = typer.Option(None, "--sample", min=1, help="Number of examples to sample."),
    artifacts: Optional[str] = typer.Option(None, "--artifacts", help="Artifact root: a path or fsspec URL."),
    cache: Optional[str] = typer.Option(None, "--cache", help="Response cache: use, refresh or off."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
):
    """Run one assessment through Prefect; print the run folder as the last line."""
    if cache is not None and cache not in ("use", "refresh", "off"):
        _err(f"--cache: expected use, refresh or off, got {cache!r}")
        raise typer.Exit(EXIT_CONFIG)
    day = _parse_date(as_of, "--as-of") or date.today()
    chosen = [m.strip() for m in models.split(",") if m.strip()] if models else None
    # Fork before the config and Prefect load: the child imports the stage code meanwhile.
    # The ``assay`` command forked it before the command line was parsed; in-process callers
    # (tests) fork here.
    global _AHEAD
    ahead, _AHEAD = _AHEAD, None
    if ahead is None:
        from assay.ahead import Ahead

        ahead = Ahead.fork()
    try:
        loaded = _load_pipeline(config, pipeline)
        if chosen:
            unknown = [m for m in chosen if m not in loaded.config.pipelines[pipeline].models]
            if unknown:
                _err(f"--models: {', '.join(unknown)} not in pipelines.{pipeline}.models "
                     f"({', '.join(loaded.config.pipelines[pipeline].models)})")
                raise typer.Exit(EXIT_CONFIG)
    except BaseException:
        if ahead is not None:
            ahead.cancel()
        raise
    code, folder = execute(pipeline, day, chosen, sample, config, artifacts, cache, progress, ahead=ahead)
    if folder:
        typer.echo(folder)
    raise typer.Exit(code)


def _heartbeats():
    """Prefect's flow-run heartbeats for a foreground ``assay run``: off unless configured.

    The heartbeat thread sleeps in one-second steps and the flow waits for it to notice the end,
    which adds up to a second to every run. Heartbeats let an automation mark a flow run Crashed
    when its process dies; a foreground run's death is seen where it was started, so they are off
    here unless ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` is set. Served runs keep Prefect's default.
    """
    import contextlib

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def execute(pipeline, day, models, sample, config, artifacts, cache, progress=False, ahead=None) -> tuple[int, str | None]:
    """Run the assess flow; return (exit code, run folder).

    With ``ahead`` (see ``assay.ahead``) the stages run in that child while Prefect starts.
    """
    from assay import run as R
    from assay.config import ConfigError

    bar = None
    if progress and sys.stderr.isatty():
        bar = _Progress()
        bar.p.start()
        R.PROGRESS_HOOKS.append(bar)
    try:
        ctx = R.prepare(config, pipeline, day, models=models, sample=sample, artifacts=artifacts, cache_mode=cache)
    except ConfigError as e:
        if ahead is not None:
            ahead.cancel()
        _err(e.format())
        return EXIT_CONFIG, None
    if ahead is not None:
        ahead.hand_over(ctx)
    from assay.run import GateFailed
    from flows.assess import assess

    try:
        with _heartbeats():
            state = assess(pipeline=pipeline, as_of=day, models=models, sample=sample, config=config,
                           artifacts=artifacts, cache=cache, return_state=True)
    finally:
        if bar is not None:
            bar.p.stop()
            R.PROGRESS_HOOKS.remove(bar)
    if state.is_completed():
        return 0, state.result()
    try:
        state.result()
    except GateFailed as e:
        _err(f"gate failed: {e}")
        return EXIT_GATE, ctx.folder.url
    except ConfigError as e:
        _err(e.format())
        return EXIT_CONFIG, None
    except Exception as e:
        _err(f"run failed: {e}")
    return EXIT_FAILED, ctx.folder.url


def _exit_now(code) -> None:
    """Leave at once after a flow ran: flush Prefect's log and event queues, stop Prefect's
    temporary server if this process started one, then skip the interpreter's teardown of every
    imported module (about a second). Any doubt, and the normal exit runs instead.
    """
    if "prefect" not in sys.modules:
        return
    try:
        from prefect._internal.concurrency.services import _QueueServiceBase

        _QueueServiceBase.drain_all(timeout=30)
        server = sys.modules.get("prefect.server.api.server")
        if server is not None:  # the temporary server: its exit handler would stop it
            for instance in list(server.SubprocessASGIServer._instances.values()):
                instance.stop()
    except Exception:
        return
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


#: The child that runs the stages of ``assay run`` (see ``assay.ahead``), forked by
#: ``flows.entry`` before the command line loads.
_AHEAD = None


def main(ahead=None):
    """The command line; ``ahead`` is the stage process ``flows.entry`` forked for ``assay run``."""
    import flows.cli as this  # under `python -m`, this module is __main__, not flows.cli

    this._AHEAD = ahead
    # more commands register themselves on `app` when imported
    import flows.cli_ops  # noqa: F401  (serve, backfill, history)
    import flows.cli_costs  # noqa: F401  (reprice)
    import flows.cli_quality  # noqa: F401  (matrix)
    import flows.cli_runs  # noqa: F401  (reproduce)
    try:
        this.app()
    except SystemExit as e:
        _exit_now(e.code)
        raise


if __name__ == "__main__":
    from flows.entry import main as entry

    entry()
