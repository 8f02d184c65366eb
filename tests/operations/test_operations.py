"""Operations end to end against a REAL Prefect server: serve, a UI-style run, backfill, gates.

Starts ``prefect server start`` on a free loopback port with its own PREFECT_HOME (used only by
the subprocesses), ``assay serve`` against it, and drives both through the API the way the UI
and the CLI do. Every process started here is stopped here, also when a test fails.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
# `assay serve` started together with the server: the interpreter imports Prefect and the flows
# while the server starts, waits for the API (PREFECT_API_URL), then runs the real command.
SERVE_WHEN_UP = [
    sys.executable,
    "-c",
    (
        "import os, time, httpx, flows.serve, flows.assess, flows.cli.main\n"
        "url, t0 = os.environ['PREFECT_API_URL'] + '/health', time.monotonic()\n"
        "while time.monotonic() - t0 < 150:\n"
        "    try:\n"
        "        if httpx.get(url, timeout=2).status_code == 200: break\n"
        "    except httpx.HTTPError: pass\n"
        "    time.sleep(0.3)\n"
        "from flows.cli.main import main; main()"
    ),
]

CONFIG = """
artifacts: runs
models:
  good: {provider: replay, output_column: good, price: {input_per_mtok: 1.0, output_per_mtok: 2.0}}
  bad: {provider: replay, output_column: bad}
pipelines:
  tiny:
    description: A tiny replay pipeline for the operations tests.
    schedule: {cron: "0 2 * * *", timezone: Europe/Berlin}
    dataset: &ds {source: data.parquet, id: id, reference: label, slices: [channel], partition: {column: created_at}}
    prompt: &prompt {template: "{text}"}
    models: [good, bad]
    metrics: [accuracy]
    cost: {monthly_requests: 100000}
    bootstrap: 50
    gates: {accuracy: {min: 0.3, max_drop: 0.05}}
  strict:
    dataset: *ds
    prompt: *prompt
    models: [good, bad]
    metrics: [accuracy]
    bootstrap: 50
    gates: {accuracy: {min: 0.99}}
"""


def make_data(tmp: Path, n: int = 60) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(["a", "b"], n)
    pd.DataFrame(
        {
            "id": [f"t{i:03d}" for i in range(n)],
            "text": [f"ticket {i}" for i in range(n)],
            "label": labels,
            "channel": rng.choice(["email", "chat"], n),
            "created_at": pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(n) % 5, unit="D"),
            "good": [lab if rng.random() < 0.9 else "x" for lab in labels],
            "bad": [lab if rng.random() < 0.6 else "x" for lab in labels],
        }
    ).to_parquet(tmp / "data.parquet")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, env, log: Path, cwd) -> subprocess.Popen:
    f = open(log, "wb")
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    p._log = f  # closed in stop()
    return p


def stop(p: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL; then whatever is left of its own process group (flow-run subprocesses)."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    p._log.close()


def tail(path: Path, n: int = 60) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except FileNotFoundError:
        return ""


def migrated_template() -> Path:
    """Where a migrated Prefect database is kept between test sessions (per Prefect version)."""
    import tempfile

    import prefect

    return Path(tempfile.gettempdir()) / f"assay-tests-prefect-{prefect.__version__}.db"


def snapshot_db(src: Path, dst: Path) -> None:
    """A consistent copy of a live SQLite database (the backup API), published atomically."""
    import sqlite3

    tmp = dst.with_name(f"{dst.name}.{os.getpid()}.tmp")
    with sqlite3.connect(src) as a, sqlite3.connect(tmp) as b:
        a.backup(b)
    os.replace(tmp, dst)


def wait_for(predicate, timeout: float, what: str, log: Path | None = None, every: float = 0.5):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail(log) if log else ''}")


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    """A real Prefect server and `assay serve` of a two-pipeline config; the test process talks to the server."""
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("ops")
    make_data(tmp)
    cfg = write_config(tmp, CONFIG)
    home = tmp / "prefect-home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "INFO",
        }
    )
    server_env = {
        **base,
        "PREFECT_UI_API_URL": url,
        "PREFECT_SERVER_UI_API_URL": url,
        # a test needs the API only: no UI bundle to copy, no background services but the
        # ones that record task runs and events (fewer processes on a busy CI box)
        "PREFECT_SERVER_UI_ENABLED": "false",
        **{
            f"PREFECT_SERVER_SERVICES_{svc}_ENABLED": "false"
            for svc in (
                "CANCELLATION_CLEANUP",
                "DB_VACUUM",
                "EVENT_LOGGER",
                "FOREMAN",
                "LATE_RUNS",
                "SCHEDULER",
                "PAUSE_EXPIRATIONS",
                "REPOSSESSOR",
                "CLEANUP_RECONCILER",
                "TRIGGERS",
            )
        },
    }
    client_env = {**base, "PREFECT_API_URL": url, "PREFECT_RUNNER_POLL_FREQUENCY": "1"}
    server_log, serve_log = tmp / "server.log", tmp / "serve.log"
    # A fresh database spends ~20 s of a slow 2-core box in migrations: the first session keeps a
    # snapshot of its freshly migrated database and later sessions start from a copy of it.
    template = migrated_template()
    if template.exists():
        import shutil

        shutil.copyfile(template, home / "prefect.db")
    procs = []
    try:
        procs.append(
            start(
                [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                server_env,
                server_log,
                tmp,
            )
        )

        def healthy():
            if procs[0].poll() is not None:
                template.unlink(missing_ok=True)  # in case a bad snapshot was the cause
                raise AssertionError(f"prefect server exited\n{tail(server_log)}")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        serve_cmd = SERVE_WHEN_UP + ["serve", "--config", str(cfg)]
        if template.exists():
            procs.append(start(serve_cmd, client_env, serve_log, tmp))
        wait_for(healthy, 120, "the Prefect server", server_log)
        if not template.exists():
            # snapshot before anything registers: the template must hold no deployments or runs
            try:
                snapshot_db(home / "prefect.db", template)
            except Exception:  # noqa: BLE001  (only a speed-up)
                pass
            procs.append(start(serve_cmd, client_env, serve_log, tmp))
        serve = procs[-1]
        with temporary_settings(updates={PREFECT_API_URL: url}):
            from prefect import get_client

            with get_client(sync_client=True) as client:

                def ready():
                    if serve.poll() is not None:
                        raise AssertionError(f"assay serve exited with {serve.returncode}\n{tail(serve_log)}")
                    try:
                        deps = [client.read_deployment_by_name(f"assess/{p}") for p in ("tiny", "strict")]
                    except Exception:  # noqa: BLE001  (not registered yet: asked again)
                        return None
                    return deps if all(getattr(d.status, "value", None) == "READY" for d in deps) else None

                deps = wait_for(ready, 90, "the served deployments", serve_log)
                yield SimpleNamespace(
                    url=url,
                    env=client_env,
                    cfg=cfg,
                    tmp=tmp,
                    runs=tmp / "runs",
                    client=client,
                    deployments={d.name: d for d in deps},
                    serve_log=serve_log,
                )
    finally:
        for p in reversed(procs):
            stop(p)


def wait_runs(env, ids, timeout=120, log=None):
    """Poll flow runs through ``env.client`` until every one is in a final state; return them by
    id (``log``, default ``env.serve_log``, is shown if they do not finish)."""
    done = {}

    def check():
        for i in ids:
            if i not in done:
                fr = env.client.read_flow_run(i)
                if fr.state is not None and fr.state.is_final():
                    done[i] = fr
        return len(done) == len(ids)

    wait_for(check, timeout, f"flow runs {ids}", log if log is not None else env.serve_log)
    return done


def run_folders(ops, pipeline, day):
    d = ops.runs / pipeline / day
    return sorted(p for p in d.iterdir() if p.is_dir()) if d.exists() else []


def artifacts(ops, key, flow_run_id=None):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    f = ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
    if flow_run_id is not None:
        f.flow_run_id = ArtifactFilterFlowRunId(any_=[flow_run_id])
    return ops.client.read_artifacts(artifact_filter=f)


def backfill_runs(ops, pipeline):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterTags

    dep = ops.deployments[pipeline]
    return ops.client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["backfill"]), deployment_id=FlowRunFilterDeploymentId(any_=[dep.id])
        )
    )


def cli_here(*args):
    """The `assay` command line in this process, whose Prefect settings point at the test server
    (`assay serve` is the real command in a subprocess; an interpreter start-up costs seconds here)."""
    from typer.testing import CliRunner

    from flows.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_serve_registers_typed_deployments_with_schedules(ops):
    tiny, strict = ops.deployments["tiny"], ops.deployments["strict"]
    assert tiny.work_pool_name is None  # served from the process, no work pool
    (sched,) = tiny.schedules
    assert sched.schedule.cron == "0 2 * * *" and sched.schedule.timezone == "Europe/Berlin" and sched.active
    assert strict.schedules == []
    assert tiny.parameters == {"pipeline": "tiny", "config": str(ops.cfg)}
    schema = tiny.parameter_openapi_schema
    props = schema["properties"]
    assert list(props)[:4] == ["pipeline", "as_of", "models", "sample"]
    assert schema["definitions"]["Pipeline"]["enum"] == ["tiny"]  # a one-choice dropdown
    assert {"type": "string", "format": "date"} in props["as_of"]["anyOf"]  # a date picker
    assert props["models"]["type"] == "array" and props["models"]["items"]["enum"] == ["good", "bad"]
    assert props["models"]["default"] == ["good", "bad"]
    assert props["sample"]["type"] == "integer" and props["sample"]["default"] == 0
    assert props["config"]["default"] == str(ops.cfg)
    assert props["cache"]["enum"] == ["use", "refresh", "off"]
    assert "evaluation date" in props["as_of"]["description"]


def test_runs_started_through_the_api_like_the_ui(ops):
    from prefect.states import Scheduled

    dep = ops.deployments["tiny"]
    # "Custom run" in the UI: POST /deployments/{id}/create_flow_run with the form's values
    ui_run = ops.client.create_flow_run_from_deployment(
        dep.id, parameters={"as_of": "2024-01-03", "models": ["good"], "sample": 20}
    )
    # a scheduled run (as the scheduler makes them, here in the past): no as_of, the date comes from the schedule
    sched_run = ops.client.create_flow_run_from_deployment(
        dep.id, state=Scheduled(scheduled_time=datetime(2024, 1, 4, 1, 30, tzinfo=UTC))
    )
    done = wait_runs(ops, [ui_run.id, sched_run.id])
    for fr in done.values():
        assert fr.state.is_completed(), (fr.state, tail(ops.serve_log))
    # the UI run: its own date, models and sample reached the flow
    (folder,) = run_folders(ops, "tiny", "2024-01-03")
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "complete" and m["as_of"] == "2024-01-03"
    assert m["request"] == {"models": ["good"], "sample": 20}
    assert m["gates"]["passed"] is True
    for name in ("metrics.parquet", "scores.parquet", "costs.parquet", "report.html"):
        assert (folder / name).exists(), name
    metrics = pd.read_parquet(folder / "metrics.parquet")
    assert set(metrics["model"]) == {"good"} and metrics.loc[metrics["slice"] == "all", "n"].item() == 20
    # 01:30 UTC on Jan 4 is 02:30 in Berlin: the scheduled run assesses 2024-01-04
    (folder4,) = run_folders(ops, "tiny", "2024-01-04")
    m4 = json.loads((folder4 / "manifest.json").read_text())
    assert m4["status"] == "complete" and m4["request"]["models"] == ["good", "bad"]
    # the UI shows the outcome: the summary (of the chosen model only) and the gate verdict of each run
    (summary,) = artifacts(ops, "tiny-summary", ui_run.id)
    assert summary.type == "markdown"
    assert "| good |" in summary.data and "| bad |" not in summary.data
    (gates,) = artifacts(ops, "tiny-gates", ui_run.id)
    assert gates.type == "markdown" and "Gates passed" in gates.data
    # the stages' own lines reached the UI, attached to their tasks, for a served run too
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def stage_lines():
        logs = ops.client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[ui_run.id])))
        return logs, {lg.message.split(":", 1)[0] for lg in logs if lg.task_run_id is not None}

    deadline = time.time() + 30  # the server stores log batches a moment after the run ends
    logs, staged = stage_lines()
    while not {"load", "invoke", "score", "cost", "report", "gate"} <= staged and time.time() < deadline:
        time.sleep(0.5)
        logs, staged = stage_lines()
    assert {"load", "invoke", "score", "cost", "report", "gate"} <= staged, [lg.message for lg in logs]
    assert any(lg.message.startswith("score: good accuracy = ") for lg in logs)


def test_backfill_against_the_served_deployment_is_idempotent(ops):
    r = cli_here(
        "backfill",
        "tiny",
        "--start",
        "2024-01-04",
        "--end",
        "2024-01-06",
        "--config",
        str(ops.cfg),
        "--concurrency",
        "2",
        "--timeout",
        "120",
    )
    assert r.exit_code == 0, r.output
    assert "running in deployment assess/tiny" in r.stderr
    lines = {ln.split("│")[1].strip(): ln for ln in r.stdout.splitlines() if ln.startswith("│ 2024-")}
    assert "skipped" in lines["2024-01-04"]  # the scheduled run above made it
    assert "complete" in lines["2024-01-05"] and "complete" in lines["2024-01-06"]
    for day in ("2024-01-05", "2024-01-06"):
        (folder,) = run_folders(ops, "tiny", day)
        assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    runs = backfill_runs(ops, "tiny")
    assert sorted(fr.parameters["as_of"] for fr in runs) == ["2024-01-05", "2024-01-06"]
    assert sorted(fr.idempotency_key for fr in runs) == ["tiny:2024-01-05", "tiny:2024-01-06"]
    assert all(fr.state.is_completed() for fr in runs)

    again = cli_here("backfill", "tiny", "--start", "2024-01-04", "--end", "2024-01-06", "--config", str(ops.cfg))
    assert again.exit_code == 0, again.output
    assert "0 to run, 3 already complete" in again.stderr
    assert again.stdout.count("skipped") == 3
    assert len(backfill_runs(ops, "tiny")) == 2  # nothing new in Prefect
    assert len(run_folders(ops, "tiny", "2024-01-05")) == 1  # nor on disk


def test_local_backfill_runs_the_flow_here_on_threads(ops):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterTags

    r = cli_here(
        "backfill",
        "tiny",
        "--start",
        "2024-01-06",
        "--end",
        "2024-01-08",
        "--config",
        str(ops.cfg),
        "--local",
        "--concurrency",
        "2",
    )
    assert r.exit_code == 0, r.output
    assert "2 to run, 1 already complete; running in this process (--local)" in r.stderr
    for day in ("2024-01-07", "2024-01-08"):
        (folder,) = run_folders(ops, "tiny", day)
        assert json.loads((folder / "manifest.json").read_text())["status"] == "complete"
    local = ops.client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["backfill"]), deployment_id=FlowRunFilterDeploymentId(is_null_=True)
        )
    )
    assert sorted(fr.name for fr in local) == ["backfill-tiny-2024-01-07", "backfill-tiny-2024-01-08"]
    assert all(fr.state.is_completed() for fr in local)


def test_a_broken_gate_fails_the_run_and_the_cli_exits_3(ops):
    # `assay run` runs the flow in the CLI's process, through Prefect: the flow run ends Failed
    # with the gate's message, the manifest says complete with a failed verdict, and the command exits 3
    r = cli_here("run", "strict", "--config", str(ops.cfg), "--as-of", "2024-01-03", "--no-progress")
    assert r.exit_code == 3, r.output
    assert "gate failed" in r.stderr and "< min 0.99" in r.stderr
    (folder,) = run_folders(ops, "strict", "2024-01-03")
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "complete"  # the artifacts stand
    assert m["gates"]["passed"] is False
    assert any("< min 0.99" in f for f in m["gates"]["failures"])
    # the report, written after the gate, shows the verdict (and the history marks this run failed)
    page = (folder / "report.html").read_text()
    assert "<strong>Gates:</strong> FAILED" in page and "&lt; min 0.99" in page
    assert "**Gates:** FAILED" in (folder / "summary.md").read_text()

    # through the served deployment: the date with a gate-failed (but complete) run is skipped,
    # the other one runs, its flow run ends Failed, the markdown says what broke; exit 3
    b = cli_here(
        "backfill", "strict", "--start", "2024-01-02", "--end", "2024-01-03", "--config", str(ops.cfg), "--timeout", "120"
    )
    assert b.exit_code == 3, b.output
    lines = {ln.split("│")[1].strip(): ln for ln in b.stdout.splitlines() if ln.startswith("│ 2024-")}
    assert "gate failed" in lines["2024-01-02"] and "skipped" in lines["2024-01-03"]
    (fr,) = backfill_runs(ops, "strict")
    assert fr.parameters["as_of"] == "2024-01-02"
    assert fr.state.is_failed() and (fr.state.message or "").startswith("gate: ") and "< min 0.99" in fr.state.message
    (md,) = artifacts(ops, "strict-gates", fr.id)
    assert md.type == "markdown"
    assert "Gates FAILED" in md.data and "< min 0.99" in md.data and "**FAIL**" in md.data
