"""Invoke shards and score chunks on a real Dask cluster (``runner:``), through prefect-dask.

Every test starts what it needs: the OpenAI-compatible test server on 127.0.0.1, a Prefect test
server, and a LocalCluster of two worker processes (started by the run, or by the test and passed
by its address).
"""

import json
import os
import textwrap
from datetime import date
from pathlib import Path
from uuid import UUID

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.responses import read_responses
from assay.store import open_run
from tests.conftest import write_config

LABELS = ["billing", "technical", "account"]
DAY = date(2026, 11, 1)
N = 60
#: columns that hold when and how long, not what: equal runs may differ there
TIMING = {"latency_s", "started_at", "wall_s", "compute_s", "throughput_rps"}


def write_dataset(path: Path, n: int = N, logged_tokens: int | None = None) -> None:
    rows = [
        {
            "id": f"e{i:05d}",
            "text": f"ticket {i} about {LABELS[i % 3]} please help",
            "label": LABELS[i % 3],
            "lang": "en" if i % 2 else "de",
        }
        for i in range(n)
    ]
    if logged_tokens is not None:  # token counts logged with the examples: what the estimate before calling reads
        rows = [{**r, "prompt_tokens": logged_tokens, "completion_tokens": logged_tokens} for r in rows]
    pq.write_table(pa.Table.from_pylist(rows), path)


def dask_config(
    d: Path,
    base_url: str,
    runner: str = "",
    pipeline_runner: str = "",
    extra_models: str = "",
    models: str = "[fake, fake-long]",
    pipeline_extra: str = "",
) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    write_dataset(d / "data.parquet")
    text = f"""
    artifacts: {d}/runs
    {runner}
    models:
      fake:
        provider: openai
        model: mock-model
        base_url: {base_url}
        api_key_env: ASSAY_TEST_KEY
        params: {{temperature: 0, max_tokens: 8}}
        max_concurrency: 4
        price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
      fake-long:
        provider: openai
        model: gpt-4o-mini
        base_url: {base_url}
        api_key_env: ASSAY_TEST_KEY
        params: {{temperature: 0, max_tokens: 16}}
        max_concurrency: 4
        price: {{input_per_mtok: 0.5, output_per_mtok: 1.0}}
{textwrap.indent(textwrap.dedent(extra_models), "      ")}
    pipelines:
      p:
        dataset: {{source: data.parquet, id: id, reference: label, slices: [lang]}}
        prompt:
          system: "labels: billing, technical, account"
          template: "{{text}}"
        models: {models}
        metrics: [accuracy, exact_match]
        shard_size: 5
        bootstrap: 50
        {pipeline_runner}
        {pipeline_extra}
    """
    return write_config(d, text)


@pytest.fixture(autouse=True)
def api_key(monkeypatch, tmp_path):
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test-SECRET-5f3a9c")
    monkeypatch.setenv("ASSAY_CACHE_INDEX", str(tmp_path / "index"))


FAKE_SERVER = dict(latency=0.01)  # the options of the module's shared fake server (conftest.py's ``server``)


def run_flow(cfg: Path):
    from flows.assess import assess

    state = assess(pipeline="p", as_of=DAY, config=str(cfg), return_state=True)
    return state


def frame(folder: str, name: str, sort: list[str]) -> pd.DataFrame:
    rf = open_run(folder)
    df = read_responses(rf).to_pandas() if name == "responses" else rf.read_table(name).to_pandas()
    df = df.drop(columns=[c for c in df.columns if c in TIMING or c.startswith("latency_")])
    return df.sort_values(sort).reset_index(drop=True)


def prefect_records(folder: str):
    """The Prefect task runs and log lines of the flow run that made ``folder`` (and its subflow)."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    fid = UUID(json.loads((Path(folder) / "manifest.json").read_text())["prefect"]["flow_run_id"])
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[fid]))
        )
        ids = [fid, *(c.id for c in children)]
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)
        logs, page = [], None
        while page is None or len(page) == 200:
            page = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200, offset=len(logs))
            logs += page
    return children, tasks, logs


def test_a_run_on_a_two_worker_local_cluster_equals_the_local_run(tmp_path, server, prefect_server):
    sampled = "samples: {fake: 2}"  # repeated sampling: each shard asks its rows twice
    local = run_flow(dask_config(tmp_path / "local", server.base_url, pipeline_extra=sampled))
    assert local.is_completed(), local
    dask = run_flow(
        dask_config(
            tmp_path / "dask", server.base_url, runner="runner: {dask: local, workers: 2, shard_rows: 7}", pipeline_extra=sampled
        )
    )
    assert dask.is_completed(), dask
    a, b = local.result(), dask.result()
    # the runner is not part of the run's identity: same config hash, same run id suffix
    ma, mb = (json.loads((Path(f) / "manifest.json").read_text()) for f in (a, b))
    assert ma["config_hash"] == mb["config_hash"] and a.rsplit("-", 2)[1] == b.rsplit("-", 2)[1]
    ra, rb = frame(a, "responses", ["model", "example_id", "sample"]), frame(b, "responses", ["model", "example_id", "sample"])
    assert len(ra) == 3 * N and sorted(set(ra["sample"])) == [0, 1]
    pd.testing.assert_frame_equal(ra, rb)
    for name, keys in (
        ("scores.parquet", ["model", "metric", "example_id"]),
        ("metrics.parquet", ["model", "metric", "slice"]),
        ("costs.parquet", ["model"]),
        ("comparisons.parquet", ["metric", "model_a", "model_b"]),
    ):
        pd.testing.assert_frame_equal(frame(a, name, keys), frame(b, name, keys), check_dtype=False, obj=name)
    # the shards ran on the cluster's two processes, each wrote its own files, and none is left over
    run = mb["stages"]["invoke"]["runner"]
    assert run["dask"] == "local" and run["shards"] == 2 * -(-N // 7) and run["processes"] == 2, run
    assert mb["stages"]["invoke"]["models"]["fake"]["shards"] == -(-N // 7)
    assert not (Path(b) / "responses" / "_shards").exists()
    assert len([n for n in os.listdir(Path(b) / "responses") if n.endswith(".parquet")]) == 2 * -(-N // 7)
    # they are Prefect task runs of the run, and their assay log lines reached the Prefect API from the workers
    children, tasks, logs = prefect_records(b)
    assert [c.name for c in children] and children[0].flow_id is not None
    names = [t.name for t in tasks]
    assert sum(n.startswith("invoke-fake.") or n.startswith("invoke-fake-long.") for n in names) == run["shards"], names
    assert sum(n.startswith("score-") for n in names) >= 2 * 2 * -(-N // 7), names
    assert {"load", "invoke", "score", "cost", "report"} <= {n.rsplit("-", 1)[0] for n in names}, names
    shard_lines = [lg for lg in logs if lg.message.startswith("invoke: shard ")]
    assert len(shard_lines) == run["shards"] and all(lg.task_run_id is not None for lg in shard_lines), [
        lg.message for lg in logs
    ]
    assert any(lg.message.startswith("invoke: fake: 9 shards") for lg in logs)
    # the second run's calls filled the shared cache as segments, one per shard
    segs = os.listdir(tmp_path / "dask" / "runs" / "_cache" / "segments")
    assert len(segs) == run["shards"] and all(s.startswith("seg-") for s in segs)


def test_an_existing_scheduler_by_its_address_and_a_cached_replay(tmp_path, server, prefect_server):
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        cfg = dask_config(
            tmp_path / "w", server.base_url, pipeline_runner=f"runner: {{dask: '{cluster.scheduler_address}'}}", models="[fake]"
        )
        first = run_flow(cfg)
        assert first.is_completed(), first
        server.reset()
        # a new run of the same request (the first is complete) on the same cluster: every answer from the shared cache
        from flows.assess import assess

        again = assess(pipeline="p", as_of=date(2026, 11, 2), config=str(cfg), return_state=True)
        assert again.is_completed(), again
        assert server.stats()["requests_total"] == 0
        from distributed import Client

        with Client(cluster.scheduler_address) as client:  # the runs used the cluster and left it running
            workers = client.scheduler_info()["workers"]
    m = json.loads((Path(again.result()) / "manifest.json").read_text())
    inv = m["stages"]["invoke"]
    assert inv["runner"]["dask"] == cluster.scheduler_address and inv["runner"]["shards"] == N // 5
    assert inv["models"]["fake"]["cache_hits"] == N and inv["models"]["fake"]["called"] == 0
    assert len(workers) == 2
    pd.testing.assert_frame_equal(
        frame(first.result(), "responses", ["example_id"]).drop(columns=["cached", "attempts"]),
        frame(again.result(), "responses", ["example_id"]).drop(columns=["cached", "attempts"]),
    )


def killing_model(rows: list[dict]) -> list[str]:
    """A python model that answers with the label, records every row it answers, and, once, kills
    the process it runs in (a cluster worker) in the middle of a shard, at the row named by
    $ASSAY_TEST_KILL_AT."""
    flag = os.environ["ASSAY_TEST_KILL_FLAG"]
    always = os.environ.get("ASSAY_TEST_KILL_ALWAYS") == "1"
    if any(r["id"] == os.environ["ASSAY_TEST_KILL_AT"] for r in rows) and (always or not os.path.exists(flag)):
        Path(flag).write_text(str(os.getpid()))
        import time

        time.sleep(1.0)  # killed while computing this part: the shard's previous part is on disk by then
        os._exit(1)
    with open(os.environ["ASSAY_TEST_CALLS"], "a") as f:
        f.write("".join(r["id"] + "\n" for r in rows))
    return [r["label"] for r in rows]


def test_a_worker_killed_in_a_shard_loses_nothing_and_pays_nothing_twice(tmp_path, prefect_server, monkeypatch):
    """The worker running a shard dies after the shard's first part is written: Dask runs the
    shard again on a live worker, which resumes from the shard's own folder; every row is answered
    exactly once and the run's responses are complete."""
    monkeypatch.setenv("ASSAY_TEST_KILL_FLAG", str(tmp_path / "killed"))
    monkeypatch.setenv("ASSAY_TEST_KILL_AT", "e00027")  # the second part (rows 25–29) of the shard of rows 20–29
    monkeypatch.setenv("ASSAY_TEST_CALLS", str(tmp_path / "calls.txt"))
    cfg = dask_config(
        tmp_path / "k",
        "http://127.0.0.1:9/v1",
        runner="runner: {dask: local, workers: 2, shard_rows: 10}",
        models="[py]",
        extra_models='py: {provider: python, function: "tests.operations.test_dask:killing_model", max_concurrency: 1}',
    )
    state = run_flow(cfg)
    assert state.is_completed(), state
    assert (tmp_path / "killed").exists()  # a worker did die
    calls = (tmp_path / "calls.txt").read_text().split()
    assert sorted(calls) == [f"e{i:05d}" for i in range(N)]  # each row once: the killed shard's first part was kept
    resp = frame(state.result(), "responses", ["example_id"])
    assert (
        len(resp) == N
        and resp["error"].isna().all()
        and (resp["output"] == resp["example_id"].map(lambda e: LABELS[int(e[1:]) % 3])).all()
    )
    m = json.loads((Path(state.result()) / "manifest.json").read_text())
    # the shard run again resumed its first part (5 rows); a shard that had finished on the dead worker
    # before its result reached the scheduler is run again too, and resumes all of its rows
    assert m["status"] == "complete" and m["stages"]["invoke"]["models"]["py"]["resumed"] >= 5


NO_DASK = """
import sys, tempfile
from pathlib import Path
from datetime import date
import flows.assess, tasks.invoke, tasks.score
from assay.stages import run_local
from tests.helpers import write_replay_inputs
d = Path(tempfile.mkdtemp())
ctx = run_local(write_replay_inputs(d, ["x", "y", "y", "y"]), "p", date(2026, 11, 1))
assert ctx.folder.manifest()["status"] == "complete"
print(sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed", "prefect_dask")))
"""


def test_without_a_runner_dask_is_never_imported():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-c", NO_DASK], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_the_budget_holds_across_shards(tmp_path, server, prefect_server):
    """``cost.max_usd`` split evenly among the shards: each stops on its share, the run fails with
    the budget guard, and what was spent over all shards stays within ``max_usd``."""
    server.reset()
    max_usd = 0.0006
    cfg = dask_config(
        tmp_path / "b",
        server.base_url,
        runner="runner: {dask: local, workers: 2, shard_rows: 20}",
        models="[fake]",
        pipeline_extra=f"cost: {{max_usd: {max_usd}}}",
    )
    # logged token counts below the real ones: the estimate before calling passes, the guard stops the shards
    write_dataset(tmp_path / "b" / "data.parquet", logged_tokens=1)
    state = run_flow(cfg)
    assert state.is_failed() and "budget guard" in state.message and "split evenly among the 3 shards" in state.message, state
    folder = next((tmp_path / "b" / "runs" / "p").rglob("manifest.json"))
    m = json.loads(folder.read_text())
    inv = m["stages"]["invoke"]
    assert m["status"] == "failed" and m["error"]["stage"] == "invoke"
    assert 0 < inv["usd"] <= max_usd and inv["models"]["fake"]["called"] < N, inv
    assert server.stats()["requests_total"] == inv["models"]["fake"]["called"]
    # what the shards answered is in responses/, for the resume
    assert len(read_responses(open_run(str(folder.parent)))) == inv["models"]["fake"]["called"]


def test_a_shard_that_keeps_failing_fails_the_stage_and_the_resume_calls_only_what_is_missing(
    tmp_path, prefect_server, monkeypatch
):
    """A shard whose worker dies every time it runs: Dask gives up on it, the invoke stage fails
    once the other shards are done, and their folders stay. The same request resumes the run: it
    folds every shard folder into responses/ and shards only the rows still missing."""
    import dask
    import distributed  # noqa: F401  (its config defaults are loaded before the override below, which would drop them on exit)

    monkeypatch.setenv("ASSAY_TEST_KILL_FLAG", str(tmp_path / "killed"))
    monkeypatch.setenv("ASSAY_TEST_KILL_AT", "e00027")
    monkeypatch.setenv("ASSAY_TEST_KILL_ALWAYS", "1")
    monkeypatch.setenv("ASSAY_TEST_CALLS", str(tmp_path / "calls.txt"))
    cfg = dask_config(
        tmp_path / "f",
        "http://127.0.0.1:9/v1",
        runner="runner: {dask: local, workers: 2, shard_rows: 10}",
        models="[py]",
        extra_models='py: {provider: python, function: "tests.operations.test_dask:killing_model", max_concurrency: 1}',
    )
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # the first death is the last
        first = run_flow(cfg)
    # the dead shard, and any other the scheduler had queued on the dead worker
    assert first.is_failed() and "of 6 invoke shards failed; first: KilledWorker" in first.message, first
    runs = list((tmp_path / "f" / "runs" / "p").rglob("manifest.json"))
    folder = runs[0].parent
    assert len(runs) == 1 and json.loads(runs[0].read_text())["status"] == "failed"
    left = sorted(os.listdir(folder / "responses" / "_shards"))
    assert "py.00002" in left and len(left) >= 5  # the shards' folders, the dead one's with its first part
    calls = (tmp_path / "calls.txt").read_text().split()
    assert len(set(calls)) == len(calls) and {f"e{i:05d}" for i in range(20, 25)} <= set(calls)
    assert not {f"e{i:05d}" for i in range(25, 30)} & set(calls)
    answered = len(calls)

    monkeypatch.setenv("ASSAY_TEST_KILL_ALWAYS", "0")  # the flag file exists: no more deaths
    again = run_flow(cfg)
    assert again.is_completed(), again
    assert Path(again.result()) == folder  # the same run, resumed
    calls = (tmp_path / "calls.txt").read_text().split()
    assert sorted(calls) == [f"e{i:05d}" for i in range(N)]  # each row once over both attempts
    m = json.loads((folder / "manifest.json").read_text())
    inv = m["stages"]["invoke"]
    assert m["status"] == "complete" and inv["models"]["py"]["resumed"] == answered, inv
    assert inv["runner"]["shards"] == -(-(N - answered) // 10) >= 1
    assert not (folder / "responses" / "_shards").exists()
    resp = frame(str(folder), "responses", ["example_id"])
    assert len(resp) == N and resp["error"].isna().all()
