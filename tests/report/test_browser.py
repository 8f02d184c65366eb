"""The report, a compare page and a dashboard, opened in a real browser (headless Chromium).

Each page must load with no console error, send no request other than for the page itself,
draw every chart (an SVG with Vega's marks in it, inside the page's width), show no NaN, and be
readable with JavaScript off. Debian's ``chromium`` is launched through Playwright
(``executable_path``); ``.ci/run`` installs it. Without it the tests are skipped, except under
CI, where they fail.
"""

import os
import shutil
from datetime import date
from pathlib import Path

import pytest

from assay.report.compare import build_compare
from assay.report.dashboard import build_dashboard
from assay.report.summary import build_report, run_config
from assay.testing.synthetic import write_history, write_run

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for p in (os.environ.get("ASSAY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser")):
        if p and os.path.exists(p):
            return p
    return None


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs Debian's chromium before the tests")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # the test extra: a missing one is an error, not a skip

    with sync_playwright() as p:
        # Playwright gives each launch a fresh profile directory of its own
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser") / "runs"
    a = write_run(str(root), "triage", date(2026, 3, 1), seed=5, models=4, slices=9, examples=400, gates=True, held_out=True)
    b = write_run(str(root), "triage", date(2026, 3, 2), seed=6, models=4, slices=9, examples=400, drift=-0.1, held_out=True)
    for rf in (a, b):
        build_report(rf, run_config(rf.manifest()), rf.pipeline)
    write_history(str(root), pipelines=1, runs=20, models=3, slices=4, examples=80, failed_every=7)
    cmp_path = tmp_path_factory.mktemp("cmp") / "compare.html"
    build_compare(a, b, str(cmp_path))
    site = tmp_path_factory.mktemp("site")
    build_dashboard(str(root), str(site))
    return {
        "report": Path(b.path("report.html")),
        "compare": cmp_path,
        "dashboard": site / "index.html",
        "pipeline": site / "pipelines" / "triage.html",
    }


def _open(browser, path: Path, javascript: bool = True):
    ctx = browser.new_context(java_script_enabled=javascript, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors, requests = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    url = path.resolve().as_uri()
    page.goto(url, wait_until="load")
    return ctx, page, errors, [r for r in requests if r != url]


CHECK_CHARTS = """() => [...document.querySelectorAll('figure.chart')].map(f => {
  const svg = f.querySelector('svg'); if (!svg) return {key: f.dataset.chart, svg: false};
  const r = svg.getBoundingClientRect(), fr = f.getBoundingClientRect();
  const marks = svg.querySelectorAll('.role-mark > path, .role-mark > line, .role-mark > circle, .role-mark > rect, .role-mark > text, .role-mark > g');
  let drawn = 0; for (const m of marks) { const b = m.getBoundingClientRect(); if (b.width > 0 || b.height > 0) drawn++; }
  return {key: f.dataset.chart, svg: true, width: r.width, height: r.height, marks: marks.length, drawn: drawn,
          right: r.right, figureRight: fr.left + f.clientWidth, scroll: f.scrollWidth - f.clientWidth};
})"""


def _check(browser, path: Path, expect: set[str]):
    ctx, page, errors, requests = _open(browser, path)
    try:
        assert errors == [], errors
        assert requests == [], requests  # nothing left the page: no font, script, image or data request
        charts = page.evaluate(CHECK_CHARTS)
        assert {c["key"] for c in charts} >= expect, charts
        for c in charts:
            assert c["svg"] and c["width"] > 100 and c["height"] > 50, c
            assert c["marks"] > 0 and c["drawn"] > 0, c
            assert c["right"] <= c["figureRight"] + 1 and c["scroll"] <= 0, c  # nothing runs off the page
        text = page.inner_text("body")
        assert "NaN" not in text and "nan " not in text.lower()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
        return page, text
    finally:
        ctx.close()


def test_report_in_chromium(browser, pages):
    _check(browser, pages["report"], {"quality-cost", "volume", "slices", "paired", "latency", "history"})


def test_report_readable_with_javascript_off(browser, pages):
    ctx, page, errors, requests = _open(browser, pages["report"], javascript=False)
    try:
        assert errors == [] and requests == []
        rec = page.locator("#recommendation")
        assert rec.is_visible() and rec.inner_text().startswith(("Deploy ", "No option passes"))
        assert page.locator("figure.chart svg").count() == 6
        # long tables start collapsed, and open on a click without any script
        details = page.locator("details", has_text="All metrics and slices")
        assert details.get_attribute("open") is None
        assert not page.locator("details:has-text('All metrics and slices') table").is_visible()
        details.locator("summary").click()
        assert page.locator("details:has-text('All metrics and slices') table").is_visible()
    finally:
        ctx.close()


def test_compare_page_in_chromium(browser, pages):
    _, text = _check(browser, pages["compare"], {"runs", "paired"})
    assert "Config" in text and "Prices" in text


def test_dashboard_in_chromium(browser, pages):
    _, text = _check(browser, pages["dashboard"], {"history-triage", "history-pipeline-0"})
    assert "Models × use cases" in text
    _check(browser, pages["pipeline"], {"history"})
