"""What `assay run` leaves behind when it is killed, and what it says when Prefect is unreachable."""

import os
import signal
import subprocess
import sys
import time

from tests.helpers import write_replay_inputs


def _orphans(home: str) -> list[int]:
    """Prefect temporary servers of ``home`` whose parent is gone."""
    out = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            env = open(f"/proc/{pid}/environ", "rb").read()
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
        if b"PREFECT__SERVER_EPHEMERAL=1" in env and f"PREFECT_HOME={home}".encode() in env and ppid == 1:
            out.append(pid)
    return out


def _servers_of(pid: int) -> list[int]:
    kids = []
    for p in (int(x) for x in os.listdir("/proc") if x.isdigit()):
        try:
            if int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(p)
        except (OSError, ValueError):
            pass
    return kids


def test_a_killed_run_leaves_no_temporary_server_behind_the_next_run(tmp_path, project_root):
    home = str(tmp_path / "prefect-home")
    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "y"], artifacts=str(tmp_path / "runs"))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=home, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120")
    cmd = [sys.executable, "-m", "flows.cli", "run", "p", "--config", cfg, "--as-of", "2026-11-01", "--no-progress"]
    run = subprocess.Popen(cmd, env=env, cwd=project_root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not _servers_of(run.pid) and time.time() < deadline:  # Prefect starts its temporary server
        time.sleep(0.2)
    assert _servers_of(run.pid), "no temporary server was started"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    deadline = time.time() + 10
    while not _orphans(home) and time.time() < deadline:
        time.sleep(0.2)
    left = _orphans(home)
    assert left, "expected the killed run's temporary server to be orphaned"
    try:
        r = subprocess.run(cmd, env=env, cwd=project_root, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "stopped 1 Prefect temporary server(s) left by a killed run" in r.stderr
        deadline = time.time() + 10
        while _orphans(home) and time.time() < deadline:
            time.sleep(0.2)
        assert _orphans(home) == []
    finally:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def test_an_unreachable_prefect_api_is_one_line_and_exit_2(tmp_path, project_root):
    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "y"], artifacts=str(tmp_path / "runs"))
    env = dict(os.environ, PREFECT_API_URL="http://127.0.0.1:9/api")
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "p", "--config", cfg],
        env=env,
        cwd=project_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]  # one line
    assert "cannot reach the Prefect API at http://127.0.0.1:9/api" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()  # nothing written
