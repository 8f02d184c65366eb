"""The documentation's screenshots (README.md and docs/reports.md): the shipped example's report.html and a dashboard over three of its
runs, taken with headless Chromium (Debian's ``chromium``, through Playwright).

    python docs/screenshots.py        # writes docs/report.png and docs/dashboard.png

The runs go through ``run_local`` (the stages without Prefect) into a temporary artifact root.
"""

import sys
import tempfile
from datetime import date
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


def main() -> None:
    from playwright.sync_api import sync_playwright

    from assay.report.dashboard import build_dashboard
    from assay.stages import run_local

    with tempfile.TemporaryDirectory(prefix="assay-shots-") as tmp:
        # the config beside the shipped one, so the run records the data as data/... (as a user's run does)
        text = (ROOT / "pipelines.yaml").read_text().replace("artifacts: data/runs", f"artifacts: {tmp}/runs")
        cfg = ROOT / ".screenshots-pipelines.yaml"
        cfg.write_text(text)
        try:
            ctx = None
            for day in (date(2026, 11, 10), date(2026, 11, 17), date(2026, 11, 24)):
                ctx = run_local(str(cfg), "support-triage", day)
        finally:
            cfg.unlink()
        build_dashboard(f"{tmp}/runs", f"{tmp}/site")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1240, "height": 900}, device_scale_factor=1)
            for url, out in (
                (Path(ctx.folder.path("report.html")).as_uri(), ROOT / "docs" / "report.png"),
                (Path(f"{tmp}/site/index.html").as_uri(), ROOT / "docs" / "dashboard.png"),
            ):
                page.goto(url, wait_until="load")
                page.screenshot(path=str(out), full_page=True)
                print(out)
            browser.close()


if __name__ == "__main__":
    main()
