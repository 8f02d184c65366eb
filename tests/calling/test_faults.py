"""Endpoint faults injected by the project's own test server, and a secret that must not escape."""

import logging
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from assay.responses import read_responses
from assay.runs import Manifest
from assay.stages import run_local
from tests.conftest import write_config

KEY = "sk-assay-test-9f8e7d6c5b4a3210"
#: fault -> (succeeds after a retry?, attempts, the kind each failed attempt counts as)
EXPECTED = {
    "429": (True, 2, "http_429"),
    "429DATE": (True, 2, "http_429"),
    "429BARE": (True, 2, "http_429"),
    "500": (True, 2, "http_500"),
    "502": (True, 2, "http_502"),
    "503": (True, 2, "http_503"),
    "RESET": (True, 2, "connection"),
    "TRUNCATED": (True, 2, "connection"),
    "BADJSON": (True, 2, "bad_json"),
    "NOUSAGE": (True, 1, None),
    "NOCHOICES": (False, 3, "no_choices"),
    "SLOW": (False, 3, "timeout"),
    "400": (False, 1, "http_400"),
    "401": (False, 1, "http_401"),
    "ECHOAUTH": (False, 1, "http_400"),
}


def expected_kinds() -> tuple[dict, dict]:
    """(retry_kinds, error_kinds) the run of :data:`EXPECTED` must record: every attempt but a
    final error's is a retry of its fault's kind."""
    retries: dict[str, int] = {}
    errors: dict[str, int] = {}
    for ok, attempts, kind in EXPECTED.values():
        if attempts > 1:
            retries[kind] = retries.get(kind, 0) + attempts - 1
        if not ok:
            errors[kind] = errors.get(kind, 0) + 1
    return retries, errors


def fault_workspace(tmp_path: Path, base_url: str, faults: list[str] | None = None) -> Path:
    """One example per fault of :data:`EXPECTED` (or of ``faults``), a pipeline ``p`` calling
    ``base_url`` with the key in ``$FAULTS_KEY`` (which the caller sets to :data:`KEY`); returns the config."""
    faults = list(EXPECTED) if faults is None else faults
    ids = [f"f{i:02d}" for i in range(len(faults))]
    pq.write_table(
        pa.table({"id": ids, "text": [f"hello TRIGGER:{f}" for f in faults], "label": ["x"] * len(faults)}),
        tmp_path / "data.parquet",
    )
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          live: {{provider: openai, model: mock-model, base_url: {base_url}, api_key_env: FAULTS_KEY,
                  timeout_s: 1, max_attempts: 3, price: {{input_per_mtok: 1, output_per_mtok: 1}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "{{text}}"}}
            models: [live]
            metrics: [accuracy]
            max_error_rate: 1.0
            bootstrap: 0
    """,
    )
    return cfg


def test_each_fault_is_retried_or_recorded_and_the_key_never_escapes(tmp_path, monkeypatch, caplog, fake_server):
    faults = list(EXPECTED)
    ids = [f"f{i:02d}" for i in range(len(faults))]
    monkeypatch.setenv("FAULTS_KEY", KEY)
    srv = fake_server(latency=0.0, slow_seconds=3.0)
    cfg = fault_workspace(tmp_path, srv.base_url)
    with caplog.at_level(logging.DEBUG):
        ctx = run_local(str(cfg), "p", date(2026, 11, 1))
    assert srv.stats(include_prompts=False)["had_auth"] > 0  # the key was sent
    srv.stop()
    rows = read_responses(ctx.folder).to_pandas().set_index("example_id")
    assert len(rows) == len(faults)  # no row lost or doubled
    for fid, fault in zip(ids, faults):
        ok, attempts, _ = EXPECTED[fault]
        r = rows.loc[fid]
        assert (not isinstance(r["error"], str)) == ok, (fault, r["error"])
        assert int(r["attempts"]) == attempts, (fault, r["attempts"])
    # each fault counted once per attempt under its kind, in the manifest and the stage's line
    retries, errors = expected_kinds()
    m = Manifest.of(ctx.folder)
    assert m.retry_kinds == {"live": retries} and m.error_kinds == {"live": errors}
    st = m.model_stats["live"]
    assert sum(retries.values()) == st["retries"] and sum(errors.values()) == st["errors"]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("invoke: live:"))
    assert "timeout: 2" in line and "http_400: 2" in line, line
    assert "[redacted]" in rows.loc[ids[faults.index("ECHOAUTH")], "error"]
    # the key is in no artifact, manifest, cache entry or log line
    for path in Path(tmp_path / "runs").rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in caplog.text


def test_the_key_reaches_no_prefect_artifact_parameter_or_log(tmp_path, monkeypatch, prefect_server, fake_server):
    """The same faults through the ``assess`` flow on a Prefect server, then everything the server
    holds about the flow run, read back through its client: no trace of the key."""
    import json
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.assess import assess

    monkeypatch.setenv("FAULTS_KEY", KEY)
    srv = fake_server(latency=0.0, slow_seconds=3.0)
    # without the plain 400, the echoed key's error is the first (and only) of its kind: the
    # stage's line of first errors carries it, redacted, to the server
    cfg = fault_workspace(tmp_path, srv.base_url, [f for f in EXPECTED if f != "400"])
    state = assess(pipeline="p", as_of=date(2026, 11, 1), config=str(cfg), artifacts=str(tmp_path / "runs"), return_state=True)
    assert srv.stats(include_prompts=False)["had_auth"] > 0
    srv.stop()
    assert state.is_completed(), state
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # log lines reach the server in the background: wait for every one
    folder = Path(state.result())
    fid = UUID(json.loads((folder / "manifest.json").read_text())["prefect"]["flow_run_id"])
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(fid)
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[fid])))
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[fid])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[fid])))
    # the run did publish what is scanned: the summary, the headline table, the progress, the stage lines
    assert {"p-summary", "p-headline"} <= {a.key for a in arts} and any(a.type == "progress" for a in arts), arts
    assert any(lg.message.startswith("invoke: live:") for lg in logs), [lg.message for lg in logs]
    texts = {
        "flow run parameters": json.dumps(fr.parameters, default=str),
        "flow run": fr.model_dump_json(),
        **{f"task run {t.name}": t.model_dump_json() for t in tasks},
        **{f"artifact {a.key or a.id}": a.model_dump_json() for a in arts},
        **{f"log {i}": lg.model_dump_json() for i, lg in enumerate(logs)},
    }
    leaks = [where for where, text in texts.items() if KEY in text]
    assert not leaks, leaks
    # and the scan saw the echoed header: its error reached the server's logs, with the key cut out
    echoed = [lg.message for lg in logs if "the first error of each kind" in lg.message]
    assert echoed and "http_400" in echoed[0] and "[redacted]" in echoed[0], echoed
