"""Alerts against the real thing: a Prefect server with its automations services, a webhook receiver.

One ``prefect server start`` per module (own PREFECT_HOME, offline, the late-runs service on a
short clock), an HTTP receiver on 127.0.0.1 started here, ``assay deploy`` of a small replay
config whose ``alerts:`` name the receiver through an environment variable. Runs are made by
``assay run`` subprocesses pointed at the server, as a user's nightly would be.
"""

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_config
from tests.operations.test_operations import ROOT, free_port, migrated_template, snapshot_db, start, stop, tail, wait_for

HOOK_ENV = "ASSAY_TEST_ALERT_HOOK"
FAKE_ENV = "ASSAY_TEST_FAKE_URL"
SECRET_TOKEN = "s3cr3t-t0ken-in-the-url"

CONFIG = """
artifacts: runs
models:
  m: {provider: replay, output_column: out}
  chat: {provider: openai, model: mock-model, base_url: "${%(fake)s}", api_key_env: ASSAY_TEST_KEY,
         params: {temperature: 0, max_tokens: 8}, max_attempts: 2}
alerts:
  late_after: 10s
  destinations:
    ops: {webhook: {url: "${%(env)s}"}}
pipelines:
  strict:
    schedule: {cron: "0 2 * * *", timezone: UTC}
    dataset: {source: strict.parquet, id: id, reference: label}
    prompt: {template: "{text}"}
    models: [m]
    metrics: [accuracy]
    bootstrap: 50
    gates: {accuracy: {min: 0.99}}
  noisy:
    dataset: {source: noisy.parquet, id: id, reference: label}
    prompt: {template: "{text}"}
    models: [m]
    metrics: [accuracy]
    bootstrap: 50
    gates: {accuracy: {max_drop: 0.02}}
  drifty:
    dataset: {source: strict.parquet, id: id, reference: label}
    prompt: {template: "{text}"}
    models: [chat]
    metrics: [accuracy]
    bootstrap: 0
    cache: "off"
""" % {"env": HOOK_ENV, "fake": FAKE_ENV}


def data(path, n: int, wrong: int) -> None:
    """``n`` examples whose replayed output is right except for the first ``wrong`` ones."""
    labels = np.array(["a", "b"] * (n // 2))
    out = labels.copy()
    out[:wrong] = "x"
    pd.DataFrame(
        {"id": [f"e{i:03d}" for i in range(n)], "text": [f"t{i}" for i in range(n)], "label": labels, "out": out}
    ).to_parquet(path)


class Receiver:
    """An HTTP server on 127.0.0.1 that records every POST (path and JSON body)."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {"raw": body.decode(errors="replace")}
                received.append({"path": self.path, "json": doc, "at": time.monotonic(), "wall": time.time()})
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook/{SECRET_TOKEN}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def matching(self, text: str) -> list[dict]:
        return [r for r in self.received if text in json.dumps(r["json"])]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def cli_here(*args):
    from typer.testing import CliRunner

    from flows.cli.main import app

    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A Prefect server (automations and late-runs services on), a receiver, `assay deploy` of CONFIG."""
    import httpx
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    tmp = tmp_path_factory.mktemp("alerts")
    project = tmp / "project"
    project.mkdir()
    data(project / "strict.parquet", 40, 4)
    data(project / "noisy.parquet", 40, 0)
    cfg = write_config(project, CONFIG)
    home = tmp / "prefect-home"
    home.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    ui = f"http://127.0.0.1:{port}"
    receiver = Receiver()
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
        "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "2",
        **{
            f"PREFECT_SERVER_SERVICES_{svc}_ENABLED": "false"
            for svc in (
                "CANCELLATION_CLEANUP",
                "DB_VACUUM",
                "FOREMAN",
                "SCHEDULER",
                "PAUSE_EXPIRATIONS",
                "REPOSSESSOR",
                "CLEANUP_RECONCILER",
            )
        },
    }
    client_env = {
        **base,
        "PREFECT_API_URL": url,
        "PREFECT_UI_URL": ui,
        "PREFECT_HOME": str(tmp / "client-home"),
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    }
    server_log = tmp / "server.log"
    template = migrated_template()
    if template.exists():
        import shutil

        shutil.copyfile(template, home / "prefect.db")
    server = None
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
        os.environ[HOOK_ENV] = receiver.url
        os.environ.setdefault(FAKE_ENV, "http://127.0.0.1:9/v1")  # loading the config; a run gets the real one
        os.environ.setdefault("ASSAY_TEST_KEY", "sk-test-not-a-secret")
        with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_UI_URL: ui}):
            deployed = cli_here("deploy", "--pool", "assay-alerts-test", "--config", str(cfg))
            assert deployed.exit_code == 0, deployed.output
            yield SimpleNamespace(
                url=url,
                ui=ui,
                cfg=cfg,
                project=project,
                receiver=receiver,
                env=client_env,
                server_log=server_log,
                deploy_output=deployed.output,
                tmp=tmp,
            )
    finally:
        os.environ.pop(HOOK_ENV, None)
        receiver.close()
        if server is not None:
            stop(server)


def assay_run(srv, pipeline: str, as_of: str, fake_url: str = "http://127.0.0.1:9/v1") -> subprocess.CompletedProcess:
    """``assay run`` in its own process against the test server, as a nightly would be (the alert
    URL's variable is not set there: a run never needs it)."""
    env = {**srv.env, FAKE_ENV: fake_url, "ASSAY_TEST_KEY": "sk-test-not-a-secret"}
    env.pop(HOOK_ENV, None)
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", pipeline, "--config", str(srv.cfg), "--as-of", as_of, "--no-progress"],
        env=env,
        cwd=srv.project,
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_events(srv, name: str, since: datetime) -> list[dict]:
    import httpx

    body = {"filter": {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}, "limit": 50}
    r = httpx.post(f"{srv.url}/events/filter", json=body, timeout=10)
    r.raise_for_status()
    return r.json()["events"]


def managed(srv):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.alerts import managed_automations

    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        return sorted(a.name for a in managed_automations())


EXPECTED = sorted(
    [f"assay/{p}/ops/{e}" for p in ("strict", "noisy", "drifty") for e in ("gate.failed", "run.failed", "model.changed")]
    + ["assay/strict/ops/late"]
)


def test_deploy_creates_one_automation_per_alert_and_a_second_sync_neither_duplicates_nor_loses(srv):
    assert "alerts: 10 automation(s): 10 created" in srv.deploy_output, srv.deploy_output
    assert "skipped assay/noisy/ops/late: pipeline noisy has no schedule" in srv.deploy_output
    assert managed(srv) == EXPECTED
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        again = cli_here("alerts", "sync", "--config", str(srv.cfg))
        assert again.exit_code == 0, again.output
        assert "10 automation(s): 0 created, 0 updated, 10 unchanged, 0 removed" in again.output
        assert managed(srv) == EXPECTED
        # the secret URL is stored by Prefect as a secret: not in any automation, not in the output
        from prefect import get_client

        with get_client(sync_client=True) as client:
            dumped = json.dumps([a.model_dump(mode="json") for a in client.read_automations()])
            blocks = client._client.post("/block_documents/filter", json={}).json()
        assert SECRET_TOKEN not in dumped and SECRET_TOKEN not in again.output + srv.deploy_output
        assert SECRET_TOKEN not in json.dumps(blocks)


def test_a_failed_gate_makes_exactly_one_post_with_the_documented_fields(srv):
    since = datetime.now(UTC) - timedelta(seconds=5)
    r = assay_run(srv, "strict", "2024-01-05")
    assert r.returncode == 3, r.stderr[-3000:]
    t0 = time.monotonic()
    got = wait_for(lambda: srv.receiver.matching("gate failed: strict"), 60, "the gate.failed POST", srv.server_log)
    time.sleep(5)  # nothing else for this run may follow (run.completed is not an alert by default)
    posts = srv.receiver.matching("strict 2024-01-05")
    assert len(posts) == 1 and got[0]["at"] - t0 < 60, posts
    (ev,) = read_events(srv, "assay.gate.failed", since)
    occurred = datetime.fromisoformat(ev["occurred"].replace("Z", "+00:00")).timestamp()
    print(f"\ngate.failed POST arrived {got[0]['wall'] - occurred:.2f} s after the event occurred")
    doc = posts[0]["json"]
    assert doc["subject"] == "[assay] gate failed: strict 2024-01-05" and doc["source"] == "assay"
    text = doc["text"]
    assert "Pipeline: strict" in text and "Date: 2024-01-05" in text
    assert "Verdict: strict 2024-01-05: gate failed: accuracy[m] 0.9 < min 0.99" in text
    assert "Gate: min on accuracy [m], slice all: value 0.9, threshold 0.99" in text
    assert f"Flow run: {srv.ui}/runs/flow-run/" in text
    assert ev["resource"]["prefect.resource.id"] == "assay.pipeline.strict"
    assert any(r["prefect.resource.id"].startswith("prefect.flow-run.") for r in ev["related"])
    assert not any(r["prefect.resource.id"].startswith("prefect.task-run.") for r in ev["related"]), ev["related"]
    p = ev["payload"]
    assert {
        "pipeline",
        "as_of",
        "run_id",
        "verdict",
        "gate",
        "metric",
        "slice",
        "value",
        "threshold",
        "difference",
        "interval",
        "p_adjusted",
        "flow_run_url",
    } <= set(p)
    assert (p["gate"], p["metric"], p["slice"], p["value"], p["threshold"]) == ("min", "accuracy", "all", 0.9, 0.99)
    assert len(read_events(srv, "assay.run.completed", since)) >= 1
    assert SECRET_TOKEN not in json.dumps(ev)


def test_an_inconclusive_run_makes_no_post(srv):
    first = assay_run(srv, "noisy", "2024-01-01")
    assert first.returncode == 0, first.stderr[-3000:]
    data(srv.project / "noisy.parquet", 40, 2)  # a 0.05 drop on 40 examples: beyond max_drop 0.02, within noise
    since = datetime.now(UTC) - timedelta(seconds=5)
    second = assay_run(srv, "noisy", "2024-01-02")
    assert second.returncode == 0, second.stderr[-3000:]  # inconclusive is not a broken gate
    assert "gate inconclusive" in second.stderr
    ev = wait_for(lambda: read_events(srv, "assay.gate.inconclusive", since), 30, "the gate.inconclusive event")
    p = ev[0]["payload"]
    assert p["difference"] == pytest.approx(0.05) and p["interval"][0] < 0.02 < p["interval"][1]
    assert "interval straddles max_drop" in p["reason"]
    time.sleep(10)
    assert srv.receiver.matching("noisy") == []


def test_a_late_nightly_fires_the_proactive_alert(srv):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Scheduled

    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        with get_client(sync_client=True) as client:
            dep = client.read_deployment_by_name("assess/strict")
            # due now; no worker serves the pool, so it goes Late and never finishes
            run = client.create_flow_run_from_deployment(dep.id, state=Scheduled(scheduled_time=datetime.now(UTC)))
    got = wait_for(lambda: srv.receiver.matching("[assay] late: strict"), 90, "the late POST", srv.server_log)
    assert len(got) == 1
    assert "has not finished within 10s of its scheduled start" in got[0]["json"]["text"]
    assert str(dep.id) in got[0]["json"]["text"]
    assert run.id


def test_an_alert_removed_from_the_config_removes_its_automations_and_leaves_others_alone(srv, tmp_path):
    from prefect.automations import Automation
    from prefect.events.actions import DoNothing
    from prefect.events.schemas.automations import EventTrigger
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        theirs = Automation(name="assay/someone-else", trigger=EventTrigger(expect={"x"}), actions=[DoNothing()]).create()
        cfg = tmp_path / "pipelines.yaml"
        text = srv.cfg.read_text().replace(
            '    ops: {webhook: {url: "${%s}"}}' % HOOK_ENV,
            '    ops: {webhook: {url: "${%s}"}, events: [gate.failed]}' % HOOK_ENV,
        )
        cfg.write_text(text.replace("source: ", f"source: {srv.project}/"))
        out = cli_here("alerts", "sync", "--config", str(cfg))
        assert out.exit_code == 0, out.output
        assert managed(srv) == ["assay/drifty/ops/gate.failed", "assay/noisy/ops/gate.failed", "assay/strict/ops/gate.failed"]
        assert "7 removed" in out.output
        assert Automation.read(name="assay/someone-else").id == theirs.id
        back = cli_here("alerts", "sync", "--config", str(srv.cfg))
        assert back.exit_code == 0 and managed(srv) == EXPECTED, back.output


def test_an_unset_url_variable_is_a_config_error_naming_it(srv, monkeypatch):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.delenv(HOOK_ENV)
    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        out = cli_here("alerts", "sync", "--config", str(srv.cfg))
    assert out.exit_code == 2 and HOOK_ENV in out.output
    assert managed(srv) == EXPECTED


def test_a_changed_system_fingerprint_raises_model_changed(srv, fake_server):
    for day, fp in (("2024-02-01", "fp_before"), ("2024-02-02", "fp_after")):
        since = datetime.now(UTC) - timedelta(seconds=5)
        fake = fake_server(system_fingerprint=fp)
        r = assay_run(srv, "drifty", day, fake.base_url)
        fake.stop()
        assert r.returncode == 0, r.stderr[-3000:]
    ev = wait_for(lambda: read_events(srv, "assay.model.changed", since), 30, "the model.changed event")
    assert len(ev) == 1
    p = ev[0]["payload"]
    assert p["models"] == {"chat": {"system_fingerprint": {"before": "fp_before", "after": "fp_after"}}}
    assert p["compared_with"]["as_of"] == "2024-02-01"
    got = wait_for(lambda: srv.receiver.matching("model changed: drifty"), 60, "the model.changed POST", srv.server_log)
    time.sleep(3)
    assert len(srv.receiver.matching("drifty")) == 1
    assert "fp_before" in got[0]["json"]["text"] and "fp_after" in got[0]["json"]["text"]
    from assay.history import history

    h = history(str(srv.project / "runs"), "drifty")
    assert list(h["system_fingerprint"]) == ["fp_before", "fp_after"] and list(h["model_changed"]) == ["", "system_fingerprint"]


def test_a_slack_destination_is_prefects_slack_block_with_the_url_kept_secret(srv):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.alerts import _save_block, block_name

    url = f"https://hooks.slack.com/services/T0001/B0001/{SECRET_TOKEN.upper().replace('-', '')}"
    name = block_name("slack", "TEAM_SLACK_URL")
    with temporary_settings(updates={PREFECT_API_URL: srv.url}):
        block_id = _save_block(name, "slack", url)
        assert _save_block(name, "slack", url) == block_id  # saved again in place, not a second block
        with get_client(sync_client=True) as client:
            doc = client.read_block_document(block_id, include_secrets=False)
            secret = client.read_block_document(block_id, include_secrets=True)
    assert doc.block_type.slug == "slack-webhook" and doc.name == "assay-slack-team-slack-url"
    assert SECRET_TOKEN.upper().replace("-", "") not in json.dumps(doc.data, default=str)
    assert secret.data["url"] == url


def test_a_second_assay_serve_leaves_one_automation_per_alert(srv):
    """`assay serve` (a real serving process) syncs the alerts once its deployments are registered;
    serving again, as a restart does, changes nothing."""
    outputs = []
    for _ in range(2):
        log = srv.tmp / f"serve-{len(outputs)}.log"
        env = {
            **srv.env,
            HOOK_ENV: os.environ[HOOK_ENV],
            FAKE_ENV: "http://127.0.0.1:9/v1",
            "ASSAY_TEST_KEY": "sk-test-not-a-secret",
        }
        p = start([sys.executable, "-m", "flows.cli", "serve", "--config", str(srv.cfg)], env, log, srv.project)
        try:
            wait_for(
                lambda: "automation(s)" in log.read_text(errors="replace") or p.poll() is not None,  # noqa: B023
                120,
                "assay serve to sync its alerts",
                log,
            )
            assert p.poll() is None, tail(log)
        finally:
            stop(p)
        outputs.append(log.read_text(errors="replace"))
    assert "alerts: 10 automation(s): 0 created, 0 updated, 10 unchanged, 0 removed" in outputs[1], outputs[1]
    assert managed(srv) == EXPECTED
    assert SECRET_TOKEN not in "".join(outputs)
