"""assay reproduce: the same run again from its manifest, responses from the cache."""

import subprocess
import sys
from datetime import date

import pyarrow.parquet as pq
import pytest

from assay.reproduce import ReproduceError, reproduce
from assay.stages import run_local
from tests.stages.test_invoke import DAY, make_config


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test")


def test_reproduce_matches_without_calling_any_model(tmp_path, fake_server):
    srv = fake_server(latency=0.0)
    cfg = make_config(tmp_path, srv.base_url, n=30)
    ctx = run_local(str(cfg), "p", DAY)
    calls = srv.stats()["requests_total"]
    srv.stop()
    # the endpoint is gone: every response must come from the cache
    cfg.write_text("this: [is not the config the run used\n")  # today's file is irrelevant
    result = reproduce(ctx.folder.url)
    assert calls == 30
    assert result.matches, result.rows
    statuses = {r["artifact"]: r["status"] for r in result.rows}
    assert statuses["metrics.parquet"] == "identical" and statuses["scores.parquet"] == "identical"
    assert statuses["responses"] == "same content"
    assert "_reproductions" in result.reproduced


def test_reproduce_refuses_a_changed_dataset(tmp_path, fake_server):
    srv = fake_server(latency=0.0)
    cfg = make_config(tmp_path, srv.base_url, n=10)
    ctx = run_local(str(cfg), "p", DAY)
    srv.stop()
    t = pq.read_table(tmp_path / "data.parquet")
    pq.write_table(t.slice(0, 9), tmp_path / "data.parquet")
    with pytest.raises(ReproduceError, match="changed since the run"):
        reproduce(ctx.folder.url)


def test_reproduce_detects_a_different_result(tmp_path, fake_server):
    srv = fake_server(latency=0.0)
    cfg = make_config(tmp_path, srv.base_url, n=10)
    ctx = run_local(str(cfg), "p", DAY)
    # a cache that now answers differently (e.g. edited by hand) must not pass unnoticed
    import json
    import sqlite3

    db = sqlite3.connect(tmp_path / "cache" / "responses.sqlite")
    key, value = db.execute("SELECT key, value FROM responses LIMIT 1").fetchone()
    v = json.loads(value)
    v["output"] = "something else"
    db.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(v), key))
    db.commit()
    db.close()
    result = reproduce(ctx.folder.url)
    srv.stop()
    assert not result.matches
    assert {r["artifact"]: r["status"] for r in result.rows}["responses"] == "differs"


def test_cli_reproduce_exit_codes(tmp_path, project_root):
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "reproduce", str(tmp_path / "a" / "p" / "2026-01-01" / "r")],
        capture_output=True,
        text=True,
        cwd=project_root,
    )
    assert r.returncode == 2 and "no manifest.json" in r.stderr
    ctx = run_local(
        str(project_root / "pipelines.yaml"),
        "support-triage",
        date(2026, 9, 30),
        artifacts=str(tmp_path / "runs"),
        models=["gpt-4o-mini"],
    )
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "reproduce", ctx.folder.url], capture_output=True, text=True, cwd=project_root
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(str(tmp_path / "runs" / "_reproductions"))
