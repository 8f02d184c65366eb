"""`assay deploy` to a REAL process work pool, and runs executed by a REAL worker.

Starts ``prefect server start`` on a free loopback port with its own PREFECT_HOME, registers the
deployments with ``assay deploy --pool <pool>`` (which creates the process pool), then starts
``prefect worker start --pool <pool>`` as a subprocess. A scheduled run, a run created through the
API as the UI's Custom run does, and ``assay backfill`` over two dates all execute on that
worker, which imports the flow from its entrypoint and runs it in the project folder the
deployment's pull step names. Every process started here is stopped here (the worker with two
SIGTERMs), also when a test fails.
"""

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from tests.operations.test_operations import (
    CONFIG,
    ROOT,
    free_port,
    make_data,
    migrated_template,
    snapshot_db,
    start,
    stop,
    tail,
    wait_for,
)
from tests.operations.test_operations import wait_runs as operations_wait_runs

POOL = "assay-test-pool"


def stop_worker(p: subprocess.Popen) -> None:
    """A worker stops on its second SIGTERM (the first asks it to finish what it runs)."""
    for _ in range(2):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass
    stop(p)


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """A Prefect server, `assay deploy --pool` of a two-pipeline config, and a process worker."""
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("deploy")
    project = tmp / "project"  # the project folder the deployments name as their source
    project.mkdir()
    make_data(project)
    cfg = project / "pipelines.yaml"
    cfg.write_text(CONFIG.replace(", max_drop: 0.05", ""))  # each date stands alone here
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
            "ASSAY_LOCK_DIR": str(tmp / "locks"),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        }
    )
    server_env = {
        **base,
        "PREFECT_UI_API_URL": url,
        "PREFECT_SERVER_UI_API_URL": url,
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
    # the worker starts in another folder than the project: the pull step must move the run there
    worker_env = {**base, "PREFECT_API_URL": url, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_HEARTBEAT_SECONDS": "5"}
    server_log, worker_log = tmp / "server.log", tmp / "worker.log"
    template = migrated_template()
    if template.exists():
        import shutil

        shutil.copyfile(template, home / "prefect.db")
    server = worker = None
    try:
        server = start(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
            server_log,
            tmp,
        )

        def healthy():
            if server.poll() is not None:
                raise AssertionError(f"prefect server exited\n{tail(server_log)}")
            try:
                return httpx.get(f"{url}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 120, "the Prefect server", server_log)
        if not template.exists():
            try:
                snapshot_db(home / "prefect.db", template)
            except Exception:  # noqa: BLE001  (only a speed-up)
                pass
        with temporary_settings(updates={PREFECT_API_URL: url}):
            from prefect import get_client

            deployed = cli_here("deploy", "--pool", POOL, "--config", str(cfg))
            assert deployed.exit_code == 0, deployed.output
            worker_dir = tmp / "worker-cwd"
            worker_dir.mkdir()
            worker = start(
                [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process"],
                worker_env,
                worker_log,
                worker_dir,
            )
            with get_client(sync_client=True) as client:

                def ready():
                    if worker.poll() is not None:
                        raise AssertionError(f"worker exited with {worker.returncode}\n{tail(worker_log)}")
                    deps = [client.read_deployment_by_name(f"assess/{p}") for p in ("tiny", "strict")]
                    return deps if all(getattr(d.status, "value", None) == "READY" for d in deps) else None

                deps = wait_for(ready, 90, "the deployments to be READY (a worker polling the pool)", worker_log)
                yield SimpleNamespace(
                    url=url,
                    cfg=cfg,
                    project=project,
                    runs=project / "runs",
                    client=client,
                    deployments={d.name: d for d in deps},
                    worker_log=worker_log,
                    output=deployed.output,
                )
    finally:
        if worker is not None:
            stop_worker(worker)
        if server is not None:
            stop(server)


def cli_here(*args):
    from typer.testing import CliRunner

    from flows.cli.main import app

    return CliRunner().invoke(app, list(args))


def wait_runs(pool, ids, timeout=180):
    return operations_wait_runs(pool, ids, timeout, pool.worker_log)


def complete_folders(pool, pipeline, day):
    import json

    d = pool.runs / pipeline / day
    out = []
    for p in sorted(d.iterdir()) if d.exists() else []:
        m = p / "manifest.json"
        if m.exists() and json.loads(m.read_text()).get("status") == "complete":
            out.append(p)
    return out


def test_deploy_registers_typed_deployments_on_the_pool(pool):
    tiny, strict = pool.deployments["tiny"], pool.deployments["strict"]
    assert tiny.work_pool_name == POOL and strict.work_pool_name == POOL
    wp = pool.client.read_work_pool(POOL)
    assert wp.type == "process"  # created by assay deploy
    assert f"created work pool '{POOL}' (process)" in pool.output
    assert tiny.entrypoint == "flows.deploy.assess_deployed"
    assert tiny.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(pool.project)}}]
    (sched,) = tiny.schedules
    assert sched.schedule.cron == "0 2 * * *" and sched.schedule.timezone == "Europe/Berlin" and sched.active
    assert strict.schedules == []
    # the config is found relative to the project folder the run starts in
    assert tiny.parameters == {"pipeline": "tiny", "config": "pipelines.yaml"}
    # the same typed form as `assay serve`
    props = tiny.parameter_openapi_schema["properties"]
    assert list(props)[:4] == ["pipeline", "as_of", "models", "sample"]
    assert tiny.parameter_openapi_schema["definitions"]["Pipeline"]["enum"] == ["tiny"]
    assert {"type": "string", "format": "date"} in props["as_of"]["anyOf"]
    assert props["models"]["items"]["enum"] == ["good", "bad"] and props["models"]["default"] == ["good", "bad"]
    assert props["sample"]["type"] == "integer" and props["config"]["default"] == "pipelines.yaml"
    assert props["cache"]["enum"] == ["use", "refresh", "off"]
    assert tiny.enforce_parameter_schema


def test_a_parameter_outside_the_form_is_refused_by_the_server(pool):
    with pytest.raises(Exception, match="(?i)validation|nope"):
        pool.client.create_flow_run_from_deployment(pool.deployments["tiny"].id, parameters={"models": ["nope"]})


def test_scheduled_and_ui_runs_execute_on_the_worker(pool):
    from prefect.states import Scheduled

    dep = pool.deployments["tiny"]
    ui_run = pool.client.create_flow_run_from_deployment(
        dep.id, parameters={"as_of": "2024-01-03", "models": ["good"], "sample": 20}
    )
    # as the scheduler makes them (here in the past): no as_of, the date comes from the schedule (Berlin)
    sched_run = pool.client.create_flow_run_from_deployment(
        dep.id, state=Scheduled(scheduled_time=datetime(2024, 1, 4, 23, 30, tzinfo=UTC))
    )
    done = wait_runs(pool, [ui_run.id, sched_run.id])
    for fr in done.values():
        assert fr.state.is_completed(), (fr.state, tail(pool.worker_log))
        assert fr.work_pool_name == POOL
    import json

    (ui_folder,) = complete_folders(pool, "tiny", "2024-01-03")
    m = json.loads((ui_folder / "manifest.json").read_text())
    assert m["request"] == {"models": ["good"], "sample": 20}
    assert m["prefect"]["flow_run_id"] == str(ui_run.id)
    (sched_folder,) = complete_folders(pool, "tiny", "2024-01-05")  # 23:30 UTC is the next day in Berlin
    m = json.loads((sched_folder / "manifest.json").read_text())
    assert m["request"]["models"] == ["good", "bad"] and m["prefect"]["flow_run_id"] == str(sched_run.id)
    assert (sched_folder / "metrics.parquet").exists() and (sched_folder / "report.html").exists()
    # the worker ran them: its log names both flow runs
    log = pool.worker_log.read_text(errors="replace")
    assert str(ui_run.id) in log and str(sched_run.id) in log


def test_backfill_runs_on_the_worker_and_skips_what_is_done(pool):
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterTags

    res = cli_here(
        "backfill", "tiny", "--start", "2024-01-01", "--end", "2024-01-02", "--config", str(pool.cfg), "--timeout", "240"
    )
    assert res.exit_code == 0, res.output + tail(pool.worker_log)
    assert "running in deployment assess/tiny" in res.output
    for day in ("2024-01-01", "2024-01-02"):
        assert len(complete_folders(pool, "tiny", day)) == 1, day
    runs = pool.client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=["backfill"]), deployment_id=FlowRunFilterDeploymentId(any_=[pool.deployments["tiny"].id])
        )
    )
    assert len(runs) == 2 and all(r.state.is_completed() and r.work_pool_name == POOL for r in runs)

    again = cli_here("backfill", "tiny", "--start", "2024-01-01", "--end", "2024-01-02", "--config", str(pool.cfg))
    assert again.exit_code == 0, again.output
    assert "0 to run, 2 already complete" in again.output


def test_a_deployment_from_a_git_source_is_cloned_by_the_run(pool, tmp_path):
    """`--source <git URL>`: the run's pull step clones the project (here a local bare repository,
    by file:// URL: git needs no network for it) and runs in the clone."""
    import json

    def git(*args, cwd):
        subprocess.run(
            ["git", *args],
            cwd=cwd,
            check=True,
            capture_output=True,
            env={
                **os.environ,
                "GIT_AUTHOR_NAME": "t",
                "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t",
                "GIT_COMMITTER_EMAIL": "t@example.com",
            },
        )

    work = tmp_path / "checkout"
    work.mkdir()
    (work / "pipelines.yaml").write_bytes((pool.project / "pipelines.yaml").read_bytes())
    make_data(work, n=30)  # other data than the project folder's (60 rows), to tell which one a run read
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "pipelines.yaml", "data.parquet", cwd=work)
    git("commit", "-q", "-m", "project", cwd=work)
    bare = tmp_path / "project.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)

    res = cli_here(
        "deploy",
        "--pool",
        POOL,
        "--config",
        str(work / "pipelines.yaml"),
        "-p",
        "tiny",
        "--source",
        f"file://{bare}",
        "--branch",
        "main",
    )
    assert res.exit_code == 0, res.output
    dep = pool.client.read_deployment_by_name("assess/tiny")
    (step,) = dep.pull_steps
    assert step["prefect.deployments.steps.git_clone"]["repository"] == f"file://{bare}"
    assert dep.parameters == {"pipeline": "tiny", "config": "pipelines.yaml"}  # relative to the repository's root
    out = tmp_path / "git-runs"
    fr = pool.client.create_flow_run_from_deployment(dep.id, parameters={"as_of": "2024-01-04", "artifacts": str(out)})
    done = wait_runs(pool, [fr.id])[fr.id]
    assert done.state.is_completed(), (done.state, tail(pool.worker_log))
    (folder,) = (out / "tiny" / "2024-01-04").iterdir()
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "complete" and m["prefect"]["flow_run_id"] == str(fr.id)
    # the run read the clone's data, not the project folder's the other deployments name
    import pandas as pd

    def rows_up_to(path, day):
        return int((pd.read_parquet(path)["created_at"] < pd.Timestamp(day) + pd.Timedelta(days=1)).sum())

    assert m["dataset"]["rows"] == rows_up_to(work / "data.parquet", "2024-01-04")
    assert m["dataset"]["rows"] != rows_up_to(pool.project / "data.parquet", "2024-01-04")
    assert m["config_file"] == "pipelines.yaml"  # found relative to the folder the run started in
