"""``assay run``: one assessment through Prefect, watched from the terminal.

The terminal shows a progress bar per model (calls, errors, the model's own dollars), the
stages' one-line summaries (the same lines the Prefect UI shows), and at the end the result
table and the decisions; the run folder is the last line of standard output. Prefect's own
console lines appear only with ``--debug``, so they cannot tear the progress display; every
line still reaches the Prefect UI.
"""

import contextlib
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from datetime import date

import typer

import assay.store
from assay.store import Store, open_run
from flows.cli.common import (
    CONFIG_OPT,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_GATE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    err,
    load_pipeline,
    parse_date,
)
from flows.cli.whatif import policy_table


def run(
    pipeline: str = typer.Argument(..., help="Pipeline name from the config."),
    config: str = CONFIG_OPT,
    as_of: str | None = typer.Option(None, "--as-of", help="Evaluation date YYYY-MM-DD (default: today)."),
    models: str | None = typer.Option(None, "--models", help="Comma-separated subset of the pipeline's models."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="Number of examples to sample."),
    artifacts: str | None = typer.Option(None, "--artifacts", help="Artifact root: a path or fsspec URL."),
    cache: str | None = typer.Option(None, "--cache", help="Response cache: use, refresh or off."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on a terminal."),
    debug: bool = typer.Option(False, "--debug", help="Show Prefect's own log lines and the tracebacks of failures."),
):
    """Run one assessment through Prefect; print the result table, then the run folder as the last line."""
    # here, not at the top: the metric and provider registries the preflight needs would slow the
    # start of every other command (``assay --help``, ``list``)
    from assay.config import ConfigError
    from assay.preflight import preflight
    from assay.runs import check_models

    if cache is not None and cache not in ("use", "refresh", "off"):
        err(f"--cache: expected use, refresh or off, got {cache!r}")
        raise typer.Exit(EXIT_CONFIG)
    day = parse_date(as_of, "--as-of") or date.today()
    loaded = load_pipeline(config, pipeline)
    try:
        chosen = check_models(loaded, pipeline, [m.strip() for m in models.split(",") if m.strip()] if models else None)
        # the preflight: the files, the dataset, the metric files are checked before a run folder or a
        # Prefect flow run exists; every problem is named, exit 2, nothing written. What it checked
        # and prepared is handed to the flow, which does not check the request again.
        checked = preflight(loaded, pipeline, day, models=chosen if models else None, sample=sample, artifacts=artifacts)
    except ConfigError as e:
        err(e.format())
        raise typer.Exit(EXIT_CONFIG) from None
    code, folder = execute(checked, config, cache, progress, debug)
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
    # lazy: keeps prefect out of the CLI
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    if "heartbeat_frequency" in get_current_settings().flows.model_fields_set:
        return contextlib.nullcontext()
    return temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


class _Terminal(logging.Handler):
    """The terminal's view of a run: a progress bar per model and the stages' log lines above it."""

    def __init__(self, bar: bool):
        super().__init__(logging.INFO)
        # lazy: keeps rich out of the CLI
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 120)
        self.progress = None
        self.tasks: dict[str, int] = {}
        if bar and self.console.is_terminal:
            # lazy: keeps rich out of the CLI
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} it/s  errors {task.fields[errors]}  ${task.fields[usd]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self.start: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        # lazy: keeps rich out of the CLI
        from rich.markup import escape

        msg = escape(record.getMessage())
        style = {logging.WARNING: "yellow", logging.ERROR: "red", logging.CRITICAL: "red"}.get(record.levelno)
        self.console.print(f"[{style}]{msg}[/]" if style else msg, soft_wrap=True)

    def __call__(self, model, done, total, errors, usd):
        if self.progress is None:
            return
        if model not in self.tasks:
            self.tasks[model] = self.progress.add_task(model, total=total, rate="0", errors=0, usd="0.0000")
            self.start[model] = time.monotonic()
        dt = max(1e-6, time.monotonic() - self.start[model])
        self.progress.update(self.tasks[model], completed=done, rate=f"{done / dt:,.0f}", errors=errors, usd=f"{usd:.4f}")

    @contextlib.contextmanager
    def attached(self):
        # lazy: keeps yaml, pydantic out of the CLI
        from assay.runs import progress

        logger = logging.getLogger("assay")
        level, propagate = logger.level, logger.propagate
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the terminal shows each line once, here
        if self.progress is not None:
            self.progress.start()
        try:
            with progress.watching(self):
                yield self
        finally:
            if self.progress is not None:
                self.progress.stop()
            logger.removeHandler(self)
            logger.setLevel(level)
            logger.propagate = propagate


def execute(checked, config: str, cache: str | None, progress: bool = False, debug: bool = False) -> tuple[int, str | None]:
    """Run the assess flow in this process for a request whose preflight passed (``checked``, an
    :class:`assay.preflight.Checked`);
    print the result; return (exit code, run folder)."""
    # Before Prefect configures its logging: the terminal is the progress bar, Assay's lines and
    # Assay's one-line verdict; Prefect's console lines (and a failure's traceback) only with
    # --debug. The Prefect UI gets every line either way.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DEBUG" if debug else "CRITICAL")
    problem = prefect_api_problem()
    if problem:
        checked.release()
        err(problem)
        return EXIT_CONFIG, None
    terminal = _Terminal(bar=progress)
    try:
        with terminal.attached():
            stop_orphaned_temporary_servers()
            # lazy: keeps numpy, pyarrow, fsspec, jsonschema, prefect, rich, yaml, pydantic out of the CLI
            from flows.assess import outcome, run_checked

            with _heartbeats():
                state = run_checked(checked, config, cache, return_state=True)
    except KeyboardInterrupt:
        err("interrupted: the run is kept as failed with what it wrote; the same command resumes it")
        return EXIT_INTERRUPTED, None
    finally:
        checked.release()
    out = outcome(state)
    if out.folder and out.status in ("complete", "gate failed"):
        print_result(out.folder, checked.pipeline)
    if out.status == "complete":
        _say_inconclusive(out.folder)
        return EXIT_OK, out.folder
    if out.status == "gate failed":
        err(f"gate failed: {out.message.removeprefix('gate: ')}")
        return EXIT_GATE, out.folder
    where = f"; partial artifacts in {out.folder}; the same command resumes the run" if out.folder else ""
    err(f"run failed: {out.message}{where}")
    return EXIT_FAILED, out.folder


def _say_inconclusive(folder: str) -> None:
    """An inconclusive gate exits 0 (nothing is shown broken; an exit code that fails a job on noise
    would cry wolf) and says so on stderr, with what could not be decided."""
    root, pipeline, as_of, run_id = folder.rstrip("/").rsplit("/", 3)
    gates = (Store(root).run(pipeline, date.fromisoformat(as_of), run_id).manifest() or {}).get("gates") or {}
    if gates.get("verdict") == "inconclusive":
        lines = gates.get("inconclusive") or []
        err(
            f"gate inconclusive (exit 0, not a failure): {lines[0] if lines else ''}"
            + (f"; and {len(lines) - 1} more" if len(lines) > 1 else "")
        )


def prefect_api_problem() -> str | None:
    """Why the configured Prefect API cannot be used, or None (reachable, or none configured:
    Prefect then starts a temporary server for the run)."""
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        return None
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/health", timeout=10) as r:
            if r.status == 200:
                return None
            reason = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        reason = str(getattr(e, "reason", None) or e)
    return (
        f"cannot reach the Prefect API at {url} ({reason}): start it with `prefect server start`, "
        "or unset PREFECT_API_URL to run with a temporary server"
    )


def stop_orphaned_temporary_servers() -> list[int]:
    """Stop Prefect temporary servers left behind by a killed ``assay run`` of this Prefect home.

    Prefect starts its temporary server as a child process; when its parent is killed
    (``kill -9``) the server lives on, orphaned. Such a process is recognised by Prefect's own
    marker in its environment (``PREFECT__SERVER_EPHEMERAL=1``), this ``PREFECT_HOME``, and a
    parent that is gone (it was re-parented to init). Linux only (it reads /proc); elsewhere a
    no-op. Returns the pids stopped.
    """
    # lazy: keeps prefect out of the CLI
    from prefect.settings import get_current_settings

    if not os.path.isdir("/proc"):
        return []
    home = str(get_current_settings().home)
    stopped = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if env.get(b"PREFECT__SERVER_EPHEMERAL") != b"1" or ppid != 1:
            continue
        if os.path.realpath(env.get(b"PREFECT_HOME", b"").decode() or os.path.expanduser("~/.prefect")) != os.path.realpath(home):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
            stopped.append(pid)
        except OSError:
            pass
    if stopped:
        logging.getLogger("assay").info(
            "stopped %d Prefect temporary server(s) left by a killed run: pid %s", len(stopped), ", ".join(map(str, stopped))
        )
    return stopped


def interval_notes(metrics, metric: str) -> list[str]:
    """What the score stage noted about the headline metric's intervals (too few examples or
    clusters for the CLT, too few successes), one line per note with the models it concerns."""
    if "note" not in metrics:
        return []
    rows = metrics[(metrics["metric"] == metric) & (metrics["slice"] == "all")]
    by_note: dict[str, list[str]] = {}
    for model, note in zip(rows["model"], rows["note"]):
        if isinstance(note, str) and note:
            by_note.setdefault(note, []).append(str(model))
    return [f"note ({', '.join(models)}): {note}" for note, models in by_note.items()]


def print_result(folder: str, pipeline: str) -> None:
    """The result table (per model: the headline metric with its interval, cost per 1,000 requests,
    monthly cost, p95 latency, errors; the recommended row marked ✓), the recommendation in the
    words of summary.md and report.html, and the decisions, on standard output."""
    # lazy: keeps rich out of the CLI
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # lazy: keeps pandas, numpy, pyarrow, yaml, pydantic out of the CLI
    from assay.report import summary
    from assay.report.decision import COLUMNS, headline_rows, headline_titles
    from assay.runs import Manifest

    rf = open_run(folder)
    m = Manifest.of(rf)
    cfg = summary.run_config(m.data)
    metrics, costs = rf.read_table(assay.store.METRICS).to_pandas(), rf.read_table(assay.store.COSTS).to_pandas()
    be = rf.read_table(assay.store.BREAKEVEN).to_pandas() if rf.exists(assay.store.BREAKEVEN) else None
    table = summary.headline(metrics, costs, cfg)
    policies = rf.read_table(assay.store.POLICIES).to_pandas() if rf.exists(assay.store.POLICIES) else None
    dec = summary.decisions(table, cfg, policies)
    rec = dec.pop("recommendation")
    titles = headline_titles(cfg)
    t = Table(title=f"{pipeline} {m.as_of}: {dec['first_metric']} (95% CI) and cost", title_justify="left")
    for col in COLUMNS:
        t.add_column(titles[col], justify="left" if col == "model" else "right")
    for r in headline_rows(table, cfg, rec):
        t.add_row(*[escape(r[c]) + (" ✓" if c == "model" and r["recommended"] else "") for c in COLUMNS])
    con = Console(highlight=False, width=None if sys.stdout.isatty() else 120)
    con.print(t)
    for line in interval_notes(metrics, dec["first_metric"]):
        con.print(escape(line), soft_wrap=True)
    if policies is not None and len(policies):
        con.print(policy_table(policies, cfg, rec, "cascades and routes (from the answers above, no new calls)", compact=True))
    con.print(escape(rec.sentence), soft_wrap=True)
    for line in summary.decision_lines(dec, be if be is not None else costs.iloc[0:0]):
        con.print(f"- {escape(line)}")
    sys.stdout.flush()
