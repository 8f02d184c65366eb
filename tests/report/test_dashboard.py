"""``assay dashboard``: a static site over an artifact root, from the Parquet tree alone."""

import os
import re
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assay.report.dashboard import build_dashboard
from assay.testing.synthetic import write_history, write_run


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("dash") / "runs"
    runs = write_history(str(root), pipelines=2, runs=6, models=3, slices=4, examples=120, failed_every=3)
    # a run folder that never finished is listed, but has no report to link
    failed = write_run(str(root), "pipeline-0", date(2025, 1, 7), run_id="20250107T030000-aaaaaaaa-0001", examples=50)
    m = failed.manifest()
    failed.write_json("manifest.json", {**m, "status": "failed"})
    (root / "_cache").mkdir()  # the response cache is not a pipeline
    out = tmp_path_factory.mktemp("site")
    result = build_dashboard(str(root), str(out))
    return {"root": root, "out": out, "result": result, "runs": runs}


def test_dashboard_writes_an_index_and_a_page_per_pipeline(site):
    out = site["out"]
    assert site["result"]["pipelines"] == ["pipeline-0", "pipeline-1"]
    assert {Path(p).relative_to(out).as_posix() for p in site["result"]["pages"]} == {
        "index.html",
        "pipelines/pipeline-0.html",
        "pipelines/pipeline-1.html",
    }
    index = (out / "index.html").read_text()
    assert "<script" not in index and not re.search(r"(?:src|href)=['\"]?(?:https?:)?//", index)
    for p in ("pipeline-0", "pipeline-1"):
        assert f"data-chart='history-{p}'" in index and f"href='pipelines/{p}.html'" in index


def test_dashboard_shows_the_latest_result_and_the_matrix(site):
    from assay.report.decision import recommend
    from assay.report.summary import RunTables, headline

    index = (site["out"] / "index.html").read_text()
    latest = [r for r in site["runs"] if r.pipeline == "pipeline-1"][-1]
    rt = RunTables.read(latest)
    sentence = recommend(headline(rt.metrics, rt.costs, rt.cfg), rt.cfg).sentence
    assert sentence.replace("<", "&lt;") in index
    assert f"latest complete run {latest.as_of}" in index
    matrix = index[index.index("id='matrix'") : index.index("id='pipelines'")]
    t = headline(rt.metrics, rt.costs, rt.cfg).set_index("model")
    v = t.loc["model-00"]
    assert re.search(rf"model-00</td>.*{v['accuracy']:.3f} · ", matrix, flags=re.S)


def test_pipeline_page_lists_every_run_with_its_gate_and_report(site):
    out, root = site["out"], site["root"]
    page = (out / "pipelines" / "pipeline-0.html").read_text()
    rows = re.findall(r"<tr class=''>(.*?)</tr>", page[page.index("id='runs'") :], flags=re.S)
    assert len(rows) == 7  # six complete runs and the failed one, newest first
    assert "failed</td>" in rows[0] and "report" not in rows[0]
    assert sum("<span class='bad'>failed</span>" in r for r in rows) == 2  # every third run's gates failed
    links = re.findall(r"<a href='([^']+)'>report</a>", page)
    assert len(links) == 6
    # relative links that resolve to each complete run's report.html
    expected = {Path(r.path("report.html")).resolve() for r in site["runs"] if r.pipeline == "pipeline-0"}
    assert {(out / "pipelines" / link).resolve() for link in links} == expected
    assert all(str(root) not in link for link in links)


def test_dashboard_links_by_url_when_the_root_is_published(site, tmp_path):
    build_dashboard(str(site["root"]), str(tmp_path), base_url="https://reports.example/assay/")
    page = (tmp_path / "pipelines" / "pipeline-1.html").read_text()
    latest = [r for r in site["runs"] if r.pipeline == "pipeline-1"][-1]
    assert f"href='https://reports.example/assay/pipeline-1/{latest.as_of}/{latest.run_id}/report.html'" in page


def test_assay_dashboard_command(site, tmp_path):
    from flows.cli.main import app

    r = CliRunner().invoke(app, ["dashboard", "--artifacts", str(site["root"]), "--out", str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1] == os.path.abspath(tmp_path / "site" / "index.html")
    assert "2 pipeline(s), 13 run(s)" in r.output
