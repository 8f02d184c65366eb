"""The report stage (assay.report): summary.md and a self-contained report.html from a real run."""

import re
import textwrap
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay import store as S
from assay.config import load_config
from assay.report import build_report
from assay.stages import run_local

DAY = date(2026, 11, 1)
LABELS = ["billing", "technical", "account", "billing"]

CONFIG = """
artifacts: runs
models:
  good:
    provider: replay
    source: good.parquet
    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}
  "weak<i>":
    provider: replay
    source: weak.parquet
    price: {input_per_mtok: 0.5, output_per_mtok: 1.0}
pipelines:
  p:
    dataset: {source: data.parquet, id: id, reference: label, slices: [lang]}
    models: [good, "weak<i>"]
    metrics: [accuracy]
    cost: {monthly_requests: 1000000}
    gates: {accuracy: {min: 0.8}}
    bootstrap: 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"], "label": LABELS,
                             "lang": ["de", "de", "en", "en"]}), d / "data.parquet")
    # good: all right, 100 prompt + 10 completion tokens each -> (100 * 1 + 10 * 2) / 1e6 = $0.00012 a request
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "output": LABELS, "prompt_tokens": [100] * 4,
                             "completion_tokens": [10] * 4, "latency_s": [0.2] * 4}), d / "good.parquet")
    # weak: wrong on id 4, (100 * 0.5 + 10 * 1) / 1e6 = $0.00006 a request
    pq.write_table(pa.table({"id": [1, 2, 3, 4], "output": LABELS[:3] + ["refund"], "prompt_tokens": [100] * 4,
                             "completion_tokens": [10] * 4, "latency_s": [0.1] * 4}), d / "weak.parquet")
    (d / "pipelines.yaml").write_text(textwrap.dedent(CONFIG))
    ctx = run_local(str(d / "pipelines.yaml"), "p", DAY)
    root = Path(ctx.folder.url)
    return {"ctx": ctx, "summary": (root / S.SUMMARY).read_text(), "html": (root / S.REPORT).read_text(), "dir": d}


def test_summary_has_the_models_table(run):
    md = run["summary"]
    assert md.startswith("# p — 2026-11-01\n")
    assert f"Run `{run['ctx'].run_id}`, 4 examples." in md
    lines = md.splitlines()
    header = lines.index("| model | accuracy | errors | cost_per_1k_usd | monthly_cost_usd | latency_p50_s |")
    assert lines[header - 2] == "## Models"
    assert lines[header + 1] == "|---|---|---|---|---|---|"
    good, weak = lines[header + 2], lines[header + 3]
    # cost per 1k: 1000 * $0.00012 = $0.12; monthly: 1e6 * $0.00012 = $120
    assert re.fullmatch(r"\| good \| 1\.000 \[1\.000, 1\.000\] \| 0 \| \$0\.1200 \| \$120 \| 0\.200 \|", good), good
    # 3 of 4 right; $0.06 per 1k, $60 a month
    assert re.fullmatch(r"\| weak<i> \| 0\.750 \[\d\.\d{3}, 1\.000\] \| 0 \| \$0\.0600 \| \$60\.00 \| 0\.100 \|", weak), weak
    assert "Monthly figures at 1,000,000 requests per month." in md


def test_summary_decisions(run):
    md = run["summary"]
    # only "good" passes accuracy >= 0.8; both are on the Pareto front (weak is cheaper, good is better)
    assert "- Cheapest model that passes every quality bar: **good**" in md
    assert "- Quality/cost Pareto front (accuracy vs cost per 1k): good, weak<i>" in md
    assert "## Generalization" in md and "## Paired comparisons" in md


def test_report_html_is_self_contained(run):
    html = run["html"]
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</body></html>")
    # nothing fetched from elsewhere: no remote (or protocol-relative) src/href, no scripts, links or imports
    assert re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, flags=re.I) == []
    assert not re.search(r"<script|<link|<iframe|@import|@font-face|url\(", html, flags=re.I)
    assert "<style>" in html


def test_report_html_has_an_inline_svg_and_the_tables(run):
    html = run["html"]
    svg = html[html.index("<svg"): html.index("</svg>")]
    assert svg.count("<circle") == 2  # one point per model
    assert "good (1.000)" in svg and "weak&lt;i&gt; (0.750)" in svg
    for title in ("<h2>Models</h2>", "<h2>Costs</h2>", "<h2>Slices</h2>", "<h2>Generalization</h2>", "<h2>Decisions</h2>"):
        assert title in html
    assert "<li>Cheapest model that passes every quality bar: good</li>" in html


def test_report_escapes_model_names(run):
    # the model named weak<i> must never become markup
    assert "weak<i>" not in run["html"]
    assert "weak&lt;i&gt;" in run["html"]


def test_build_report_returns_rows_and_is_recorded(run):
    ctx = run["ctx"]
    m = ctx.folder.manifest()
    assert m["status"] == "complete"
    assert set(m["stages"]["report"]["artifacts"]) == {S.SUMMARY, S.REPORT}
    out = build_report(ctx.folder, load_config(run["dir"] / "pipelines.yaml").pipeline("p"), "p")
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["good"]["accuracy"] == 1.0 and rows["weak<i>"]["accuracy"] == 0.75
    assert rows["good"]["cost_per_1k_usd"] == pytest.approx(0.12)
    assert rows["weak<i>"]["monthly_cost_usd"] == pytest.approx(60.0)
    assert out["decisions"]["cheapest_passing"] == "good"
    assert out["report"] == ctx.folder.path(S.REPORT)
    # building again from the same artifacts writes the same summary
    assert out["markdown"] == run["summary"]
