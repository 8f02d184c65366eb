"""The assess flow end to end on the shipped example, through a real Prefect server."""

import json
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from assay.store import Store


@pytest.fixture(scope="module")
def example_run(tmp_path_factory, prefect_server, project_root):
    from flows.assess import assess

    tmp = tmp_path_factory.mktemp("flow")
    text = (project_root / "pipelines.yaml").read_text().replace(" data/", f" {project_root}/data/")
    cfg = tmp / "pipelines.yaml"
    cfg.write_text(text)
    state = assess(
        pipeline="support-triage", as_of=date(2026, 11, 24), config=str(cfg), artifacts=str(tmp / "runs"), return_state=True
    )
    return state, tmp


def test_flow_completes_and_writes_every_artifact(example_run):
    state, tmp = example_run
    assert state.is_completed(), state
    folder = Path(state.result())
    assert folder.parent.name == "2026-11-24" and folder.parent.parent.name == "support-triage"
    for name in (
        "dataset.parquet",
        "scores.parquet",
        "metrics.parquet",
        "generalization.parquet",
        "costs.parquet",
        "breakeven.parquet",
        "summary.md",
        "report.html",
        "manifest.json",
    ):
        assert (folder / name).exists(), name
    assert list((folder / "responses").glob("part-*.parquet"))


def test_artifact_schemas(example_run):
    state, _ = example_run
    folder = Path(state.result())
    ds = pd.read_parquet(folder / "dataset.parquet")
    assert {"example_id", "text", "reference", "channel", "language"} <= set(ds.columns)
    assert ds["example_id"].is_unique and len(ds) == 1200
    resp = pd.concat(pd.read_parquet(p) for p in (folder / "responses").glob("*.parquet"))
    assert {"example_id", "model", "output", "prompt_tokens", "completion_tokens", "latency_s", "error"} <= set(resp.columns)
    assert len(resp) == 3 * 1200
    assert resp.groupby("model").size().to_dict() == {"gpt-4o-mini": 1200, "llama-3.1-8b": 1200, "tfidf-logreg": 1200}
    m = pd.read_parquet(folder / "metrics.parquet")
    assert {"model", "metric", "slice", "value", "n", "ci_low", "ci_high"} <= set(m.columns)
    overall = m[m.slice == "all"]
    assert set(overall.metric) == {"accuracy", "macro_f1"}
    assert (overall.ci_low <= overall.value).all() and (overall.value <= overall.ci_high).all()
    assert {"language=de", "channel=email"} <= set(m.slice)
    c = pd.read_parquet(folder / "costs.parquet")
    assert {"model", "requests", "prompt_tokens", "completion_tokens", "cost_usd", "cost_per_1k_usd"} <= set(c.columns)
    assert set(c.kind) == {"api", "self-hosted", "conventional"}


def test_manifest(example_run):
    state, _ = example_run
    folder = Path(state.result())
    m = json.loads((folder / "manifest.json").read_text())
    assert m["status"] == "complete" and m["pipeline"] == "support-triage" and m["as_of"] == "2026-11-24"
    assert len(m["config_hash"]) == 64 and m["dataset"]["fingerprint"].startswith("sha256:")
    assert {"prefect", "pyarrow", "python"} <= set(m["versions"])
    assert m["prices"]["gpt-4o-mini"]["source"] == "genai-prices"
    for stage in ("load", "invoke", "score", "cost", "report"):
        assert m["stages"][stage]["seconds"] >= 0
    assert all(len(h) == 64 for h in m["stages"]["score"]["artifacts"].values())


def test_prefect_ui_artifacts(example_run):
    from prefect.artifacts import Artifact

    state, _ = example_run
    md = Artifact.get("support-triage-summary")
    assert md is not None and md.type == "markdown"
    for model in ("gpt-4o-mini", "llama-3.1-8b", "tfidf-logreg"):
        assert f"| {model} |" in md.data
    assert f"[report.html](file://{Path(state.result()) / 'report.html'})" in md.data
    # the summary leads with the recommendation (the sentence of summary.md), then the headline table
    summary = (Path(state.result()) / "summary.md").read_text()
    sentence = summary.split("**Recommendation:** ", 1)[1].split("\n", 1)[0]
    assert md.data.index(f"**Recommendation:** {sentence}") < md.data.index("| model | accuracy (95% CI) |")
    assert sentence.startswith("Deploy ") and md.description.endswith(sentence)
    # a table artifact of the headline: one row per model, the recommended one marked
    table = Artifact.get("support-triage-headline")
    assert table is not None and table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["model"] for r in rows] == ["gpt-4o-mini", "llama-3.1-8b", "tfidf-logreg"]
    assert sum(r["recommended"] == "✓" for r in rows) == 1
    assert {"accuracy (95% CI)", "$/1k req", "$/month at 2,000,000", "p95 latency", "errors"} <= set(rows[0])
    # no link artifact: a file:// report cannot be opened from the UI's page
    assert Artifact.get("support-triage-report") is None


def test_link_artifact_when_the_artifact_root_is_published(tmp_path, prefect_server, monkeypatch):
    from prefect.artifacts import Artifact

    from flows.assess import assess
    from tests.helpers import write_replay_inputs

    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "x"])
    monkeypatch.setenv("ASSAY_ARTIFACTS_URL", "https://reports.example/assay/")
    state = assess(pipeline="p", as_of=date(2026, 5, 1), config=cfg, artifacts=str(tmp_path / "runs"), return_state=True)
    assert state.is_completed(), state
    folder = Path(state.result())
    url = f"https://reports.example/assay/p/2026-05-01/{folder.name}/report.html"
    link = Artifact.get("p-report")
    assert link is not None and url in link.data  # Prefect stores a link artifact as markdown
    assert f"[report.html]({url})" in Artifact.get("p-summary").data


def test_generalization_reveals_the_language_gap(example_run):
    state, _ = example_run
    g = pd.read_parquet(Path(state.result()) / "generalization.parquet")
    llama = g[(g.model == "llama-3.1-8b") & (g.metric == "accuracy")].iloc[0]
    assert llama.worst_slice in ("language=de", "language=fr") and llama.gap > 0.1


def test_cli_run_prints_the_run_folder_last(tmp_path, prefect_server, project_root):
    from prefect.settings import PREFECT_API_URL

    text = (project_root / "pipelines.yaml").read_text().replace(" data/", f" {project_root}/data/")
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(text)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_LOGGING_LEVEL="INFO")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "support-triage",
            "--config",
            str(cfg),
            "--as-of",
            "2026-10-01",
            "--models",
            "gpt-4o-mini,tfidf-logreg",
            "--sample",
            "200",
            "--artifacts",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout.strip().splitlines()
    folder = Path(out[-1])
    assert folder.exists() and folder.parent.name == "2026-10-01"
    # the result table and the decisions come before the run folder
    table = "\n".join(out[:-1])
    assert "accuracy (95% CI)" in table and "$/1k req" in table and "Cheapest option that passes every quality bar" in table
    assert all(model in table for model in ("gpt-4o-mini", "tfidf-logreg"))
    assert "load: 200 examples" in r.stderr and "score: gpt-4o-mini accuracy" in r.stderr
    resp = pd.concat(pd.read_parquet(p) for p in (folder / "responses").glob("*.parquet"))
    assert set(resp.model) == {"gpt-4o-mini", "tfidf-logreg"} and resp.groupby("model").size().max() == 200
    # only tickets created up to the as_of date
    ds = pd.read_parquet(folder / "dataset.parquet")
    assert pd.to_datetime(ds["created_at"]).max() <= pd.Timestamp("2026-10-01")
    # The flow run shows one completed task per stage (and the gate), and what the flow and the
    # stages logged reached the server before the command left.
    fr, tasks, logs = prefect_view(json.loads((folder / "manifest.json").read_text()))
    assert fr.state.is_completed()
    assert {t.name.rsplit("-", 1)[0]: t.state.type.value for t in tasks} == {
        "load": "COMPLETED",
        "invoke": "COMPLETED",
        "score": "COMPLETED",
        "cost": "COMPLETED",
        "report": "COMPLETED",
        "gate": "COMPLETED",
    }
    assert any(f"run folder: {folder}" in m for m in logs), logs
    assert any(m.startswith("load: 200 examples") for m in logs), logs
    assert any(m.startswith("invoke: gpt-4o-mini: ") for m in logs), logs
    assert any(m.startswith("score: tfidf-logreg accuracy = ") for m in logs), logs
    assert any(m.startswith("cost: gpt-4o-mini (api): ") for m in logs), logs


def prefect_view(manifest: dict):
    """(flow run, its task runs, its log messages) on the test server, for a run folder's manifest."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    fid = UUID(manifest["prefect"]["flow_run_id"])
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(fid)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
        logs = [lg.message for lg in client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fid])))]
    return fr, tasks, logs


FAILING_METRIC = """
import datasets
import evaluate


class Broken(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="fails", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        raise ZeroDivisionError("the metric broke")
"""


def test_cli_a_failing_stage_fails_its_own_task(tmp_path, prefect_server, project_root):
    """A stage that fails fails its own task in the flow run; the run folder keeps what the earlier
    stages wrote, and the command exits 1 with the stage's error."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "broken.py").write_text(FAILING_METRIC)
    text = (project_root / "pipelines.yaml").read_text().replace(" data/", f" {project_root}/data/")
    text = text.replace("metrics: [accuracy, macro_f1]", "metrics: [accuracy, {path: broken.py}]")
    assert "broken.py" in text
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(text)
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "support-triage",
            "--config",
            str(cfg),
            "--as-of",
            "2026-10-01",
            "--models",
            "tfidf-logreg",
            "--sample",
            "50",
            "--artifacts",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "the metric broke" in r.stderr
    (run,) = Store(tmp_path / "runs").runs("support-triage")
    m = run.manifest()
    assert m["status"] == "failed" and m["error"]["stage"] == "score" and "the metric broke" in m["error"]["message"]
    assert run.exists("responses") or run.listdir("responses")
    fr, tasks, _ = prefect_view(m)
    assert fr.state.is_failed()
    assert {t.name.rsplit("-", 1)[0]: t.state.type.value for t in tasks} == {
        "load": "COMPLETED",
        "invoke": "COMPLETED",
        "score": "FAILED",
    }


def test_cli_exit_codes_for_bad_input(tmp_path, project_root):
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "no-such-pipeline", "--config", str(project_root / "pipelines.yaml")],
        capture_output=True,
        text=True,
        cwd=project_root,
        timeout=60,
    )
    assert r.returncode == 2 and "unknown pipeline 'no-such-pipeline'" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "support-triage", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        cwd=project_root,
        timeout=60,
    )
    assert r.returncode == 2 and "missing.yaml" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "support-triage", "--no-such-option"],
        capture_output=True,
        text=True,
        cwd=project_root,
        timeout=60,
    )
    assert r.returncode == 2 and "--no-such-option" in r.stderr


FAILING_MODEL = """
def answer(rows):
    raise RuntimeError("the model is down")
"""


def test_cli_failed_run_exits_1(tmp_path, prefect_server, project_root):
    """A run that fails at run time (a model that fails every call: nothing the preflight can see)
    exits 1; the run folder says at which stage and why."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "failing.py").write_text(FAILING_MODEL)
    pq.write_table(
        pa.table({"id": [f"e{i}" for i in range(10)], "text": [f"ticket {i}" for i in range(10)], "label": ["billing"] * 10}),
        tmp_path / "data.parquet",
    )
    (tmp_path / "pipelines.yaml").write_text(f"""
artifacts: {tmp_path}/runs
models:
  fn: {{provider: python, function: "failing:answer"}}
pipelines:
  p:
    dataset: {{source: data.parquet, id: id, reference: label}}
    prompt: {{template: "{{text}}"}}
    models: [fn]
    metrics: [accuracy]
""")
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(tmp_path))
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "p", "--config", str(tmp_path / "pipelines.yaml"), "--as-of", "2026-10-01"],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-3000:]
    assert "run failed: invoke: 10 of 10 calls failed" in r.stderr and "the model is down" in r.stderr
    (run,) = Store(tmp_path / "runs").runs("p")
    assert run.manifest()["status"] == "failed" and run.manifest()["error"]["stage"] == "invoke"


def test_cli_missing_dataset_is_named_before_anything_is_written(tmp_path, prefect_server, project_root):
    """A dataset file that is not there is a preflight error: exit 2 naming the key path and the
    file, no traceback, no run folder and no flow run on the Prefect server."""
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL

    def flow_runs() -> int:
        with get_client(sync_client=True) as client:
            return len(client.read_flow_runs())

    text = (project_root / "pipelines.yaml").read_text().replace(" data/", f" {project_root}/data/")
    text = text.replace("support_triage/test.parquet", "support_triage/no-such-file.parquet")
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(text)
    before = flow_runs()
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "support-triage", "--config", str(cfg), "--artifacts", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    line = 1 + text.splitlines().index(next(x for x in text.splitlines() if "no-such-file.parquet" in x))
    assert (
        f"pipelines.support-triage.dataset.source (line {line}): dataset file not found: "
        f"{project_root / 'data' / 'support_triage' / 'no-such-file.parquet'}"
    ) in r.stderr
    assert "Traceback" not in r.stderr and not r.stdout.strip()
    assert not (tmp_path / "runs").exists()
    assert flow_runs() == before


def test_metrics_match_the_golden_table(example_run, project_root):
    state, _ = example_run
    got = pd.read_parquet(Path(state.result()) / "metrics.parquet")
    want = pd.read_csv(project_root / "tests" / "golden" / "support-triage" / "metrics.csv")
    key = ["model", "metric", "slice"]
    merged = want.merge(got, on=key, how="outer", suffixes=("_want", "_got"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"][key]
    for col in ("value", "ci_low", "ci_high"):
        assert (merged[f"{col}_want"] - merged[f"{col}_got"]).abs().max() < 1e-9, col
    assert (merged["n_want"] == merged["n_got"]).all() and (merged["errors_want"] == merged["errors_got"]).all()


def test_cli_turns_flow_heartbeats_off_unless_configured():
    """A foreground `assay run` does not wait for Prefect's heartbeat thread at the end of the flow,
    unless the user configured heartbeats (for a zombie-detection automation, say)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from flows.cli.run import _heartbeats

    assert get_current_settings().flows.heartbeat_frequency == 180  # Prefect's default
    with _heartbeats():
        assert get_current_settings().flows.heartbeat_frequency is None
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 60}):
        with _heartbeats():
            assert get_current_settings().flows.heartbeat_frequency == 60


CRASHY_MODEL = """
import os


def answer(rows):
    marker = os.environ["CRASH_MARKER"]
    if not os.path.exists(marker):  # the first run dies in the middle of calling the model
        open(marker, "w").close()
        os._exit(9)
    return [r["text"].split()[-1] for r in rows]
"""


def test_cli_a_run_killed_in_the_middle_resumes_with_the_same_command(tmp_path, prefect_server, project_root):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "crashy.py").write_text(CRASHY_MODEL)
    pq.write_table(
        pa.table(
            {
                "id": [f"e{i}" for i in range(30)],
                "text": [f"ticket {i} about billing" for i in range(30)],
                "label": ["billing"] * 30,
            }
        ),
        tmp_path / "data.parquet",
    )
    (tmp_path / "pipelines.yaml").write_text(f"""
artifacts: {tmp_path}/runs
models:
  fn: {{provider: python, function: "crashy:answer"}}
pipelines:
  p:
    dataset: {{source: data.parquet, id: id, reference: label}}
    prompt: {{template: "{{text}}"}}
    models: [fn]
    metrics: [accuracy]
""")
    env = dict(
        os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(tmp_path), CRASH_MARKER=str(tmp_path / "crashed")
    )
    cmd = [sys.executable, "-m", "flows.cli", "run", "p", "--config", str(tmp_path / "pipelines.yaml"), "--as-of", "2026-10-01"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert r.returncode == 9, r.stderr[-3000:]  # the process died with the model
    (run,) = Store(tmp_path / "runs").runs("p")
    assert run.manifest()["status"] == "running" and "invoke" not in run.manifest()["stages"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert Path(r.stdout.strip().splitlines()[-1]) == Path(run.url)  # the same run folder, resumed
    m = run.manifest()
    assert m["status"] == "complete" and len(m["resumes"]) == 1
    assert pd.read_parquet(Path(run.url) / "metrics.parquet").query("slice == 'all'")["value"].iloc[0] == 1.0


def test_the_flow_records_its_parameters_as_prefect_would_without_importing_fastapi():
    """``assess`` serializes its plain parameters itself (Prefect's encoder imports FastAPI, 0.2 s
    of every run's start); the record must equal Prefect's own, and other values still go to Prefect."""
    import subprocess
    import sys
    from datetime import date

    from prefect import Flow

    from flows.assess import assess

    for params in (
        {
            "pipeline": "p",
            "as_of": date(2026, 11, 1),
            "models": ["a", "b"],
            "sample": None,
            "config": "c.yaml",
            "artifacts": None,
            "cache": "use",
        },
        {
            "pipeline": "p",
            "as_of": None,
            "models": None,
            "sample": 40,
            "config": "c.yaml",
            "artifacts": "s3://b/r",
            "cache": None,
        },
        {"pipeline": "p", "as_of": date(2026, 1, 2), "models": ("x",), "sample": 3, "config": "c.yaml"},
    ):
        assert assess.serialize_parameters(params) == Flow.serialize_parameters(assess, params), params
    odd = {"pipeline": "p", "as_of": {"nested": date(2026, 1, 2)}}
    assert (
        assess.serialize_parameters(odd)
        == Flow.serialize_parameters(assess, odd)
        == {"pipeline": "p", "as_of": {"nested": "2026-01-02"}}
    )
    code = (
        "import sys; from datetime import date; from flows.assess import assess; "
        "assess.serialize_parameters({'pipeline': 'p', 'as_of': date(2026, 11, 1), 'models': ['a']}); "
        "assert 'fastapi' not in sys.modules"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_checked_request_is_not_checked_again_and_its_dataset_is_read_once(tmp_path, prefect_server, monkeypatch):
    """``assay run`` checks the request, then runs the flow with what the check returned: the flow
    runs no preflight of its own, and the dataset the preflight read is the one the load stage
    writes (one read in all). A flow started any other way (here: called directly, as a schedule,
    the UI or a backfill start it) runs its own preflight, once."""
    import assay.dataset
    import flows.assess
    from assay.config import load_config
    from assay.preflight import preflight
    from tests.helpers import write_replay_inputs

    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "x"])
    reads, checks = [], []
    real_read, real_plan, real_preflight = assay.dataset.read_source, assay.dataset.plan_streamed, flows.assess.preflight
    monkeypatch.setattr(assay.dataset, "read_source", lambda *a, **k: reads.append(a[0]) or real_read(*a, **k))
    monkeypatch.setattr(assay.dataset, "plan_streamed", lambda *a, **k: reads.append(a[0]) or real_plan(*a, **k))
    monkeypatch.setattr(flows.assess, "preflight", lambda *a, **k: checks.append(a[1]) or real_preflight(*a, **k))
    checked = preflight(load_config(cfg), "p", date(2026, 5, 1), artifacts=str(tmp_path / "runs"))
    assert len(reads) == 1
    state = flows.assess.run_checked(checked, cfg, return_state=True)
    assert state.is_completed(), state
    assert checks == [] and len(reads) == 1
    ds = checked.loaded.pipeline("p")
    assert checked.dataset.take(str(tmp_path / "data.parquet"), ds.dataset, ds.prompt, date(2026, 5, 1), None) is None  # let go
    rows = Store(str(tmp_path / "runs")).run("p", date(2026, 5, 1), Path(state.result()).name).read_table("dataset.parquet")
    assert rows.num_rows == 4
    state = flows.assess.assess(
        pipeline="p", as_of=date(2026, 5, 2), config=cfg, artifacts=str(tmp_path / "runs"), return_state=True
    )
    assert state.is_completed(), state
    assert checks == ["p"] and len(reads) == 2
