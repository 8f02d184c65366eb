"""The alerts page's screenshot: the Prefect UI's Event Feed after a nightly run whose gate failed.

    python docs/event_feed.py        # writes docs/event-feed.png

Starts ``prefect server start`` on a free loopback port with a throwaway PREFECT_HOME (offline),
runs ``assay run`` of a small replay pipeline whose ``min`` gate fails against it (so the feed
holds ``assay.run.completed`` and ``assay.gate.failed`` beside Prefect's own flow-run events),
then opens the Event Feed in headless Chromium (Debian's ``chromium``, through Playwright).
Every process it starts is stopped before it returns.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

CONFIG = """
artifacts: runs
models:
  candidate: {provider: replay, output_column: out}
pipelines:
  support-triage:
    dataset: {source: tickets.parquet, id: id, reference: label, slices: [channel]}
    prompt: {template: "{text}"}
    models: [candidate]
    metrics: [accuracy]
    bootstrap: 200
    gates: {accuracy: {min: 0.9}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    import httpx
    import numpy as np
    import pandas as pd
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="assay-event-feed-") as tmp:
        tmp = Path(tmp)
        n = 120
        rng = np.random.default_rng(3)
        labels = rng.choice(["billing", "technical", "account"], n)
        out = np.where(rng.random(n) < 0.84, labels, "account")
        pd.DataFrame(
            {
                "id": [f"t{i:03d}" for i in range(n)],
                "text": [f"ticket {i}" for i in range(n)],
                "label": labels,
                "channel": rng.choice(["email", "chat"], n),
                "out": out,
            }
        ).to_parquet(tmp / "tickets.parquet")
        (tmp / "pipelines.yaml").write_text(CONFIG)
        port = _free_port()
        api, ui = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            {
                "PREFECT_HOME": str(tmp / "home"),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_UI_API_URL": api,
                "PREFECT_SERVER_UI_API_URL": api,
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            }
        )
        log = open(tmp / "server.log", "wb")
        server = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            for _ in range(240):
                try:
                    if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise SystemExit(f"the Prefect server did not start; see {tmp / 'server.log'}")
            run_env = {**env, "PREFECT_API_URL": api, "PREFECT_UI_URL": ui, "PREFECT_HOME": str(tmp / "client")}
            r = subprocess.run(
                [sys.executable, "-m", "flows.cli", "run", "support-triage", "--as-of", "2026-11-24", "--no-progress"],
                cwd=tmp,
                env=run_env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            print(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "", f"(exit {r.returncode})")
            time.sleep(3)  # the events reach the feed
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1180}, device_scale_factor=1)
                page.goto(f"{ui}/events", wait_until="networkidle")
                page.wait_for_timeout(2500)
                shot = ROOT / "docs" / "event-feed.png"
                page.screenshot(path=str(shot), full_page=False)
                print(shot)
                browser.close()
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            try:
                os.killpg(server.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            log.close()


if __name__ == "__main__":
    main()
