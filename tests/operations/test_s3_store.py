"""The artifact store on a real S3-compatible server (moto's standalone server, started here).

Nothing in assay is told about the server: the endpoint reaches s3fs (through botocore) from the
``AWS_ENDPOINT_URL_S3`` environment variable, exactly as it would for a user pointing assay at MinIO,
Ceph or LocalStack. Every object is checked with boto3 against the bucket itself, not through s3fs.
"""

import hashlib
import io
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, date, datetime

import boto3
import fsspec.config
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay.store
from assay.store import Store
from tests.helpers import write_replay_inputs

DAY = date(2026, 11, 1)
PREFIX = "runs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's S3-compatible server in a child process on a free 127.0.0.1 port; stopped afterwards."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"moto server exited with {proc.returncode}:\n{log.read().decode(errors='replace')}")
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except urllib.error.HTTPError:
                break  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("moto server did not answer within 30 s")
                time.sleep(0.05)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _forget_s3fs_instances():
    """fsspec caches filesystem instances by their arguments (not the environment): start clean."""
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture()
def s3(moto_endpoint, monkeypatch, tmp_path):
    """A fresh bucket on the server; the environment points every AWS client (s3fs included) at it.

    Yields (bucket, boto3 client). ``HOME`` is a temporary directory too: with a remote artifact
    root, the response cache defaults to ``~/.cache/assay``.
    """
    for var in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
        "AWS_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    # fsspec read its FSSPEC_S3_* variables when it was imported; those would override the endpoint
    monkeypatch.delitem(fsspec.config.conf, "s3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    _forget_s3fs_instances()
    bucket = f"assay-{uuid.uuid4().hex[:12]}"
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=bucket)
    try:
        yield bucket, client
    finally:
        _forget_s3fs_instances()


def _keys(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under a prefix, straight from the server: {key: body}."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def _accuracy(rf) -> float:
    m = rf.read_table(assay.store.METRICS).to_pandas()
    return float(m[(m.metric == "accuracy") & (m.slice == "all")].iloc[0].value)


def _next_second(run_id: str) -> None:
    """Run ids sort by their start second: wait until a new run gets a later one."""
    while datetime.now(UTC).strftime("%Y%m%dT%H%M%S") <= run_id[:15]:
        time.sleep(0.02)


# ------------------------------------------------------------------------------------------------ tests


def test_a_whole_run_lands_in_the_bucket(tmp_path, s3):
    from assay.responses import read_responses
    from assay.stages import run_local

    bucket, client = s3
    root = f"s3://{bucket}/{PREFIX}"
    cfg = write_replay_inputs(tmp_path, ["x", "y", "y", "y"])  # wrong on id 3
    ctx = run_local(cfg, "p", DAY, artifacts=root)
    rf = ctx.folder
    assert rf.url == f"{root}/p/2026-11-01/{ctx.run_id}"
    assert not (tmp_path / "local-runs").exists()  # nothing went to the local default

    manifest = rf.manifest()
    assert manifest["status"] == "complete"
    assert set(manifest["stages"]) == {"load", "invoke", "score", "cost", "report"}
    # with a remote root the response cache is the root's shared segment folder (tests/calling/test_cache.py)
    assert manifest["cache"] == f"{root}/_cache/segments"

    # every artifact is an object in the bucket, with the bytes the manifest hashed
    run_prefix = f"{PREFIX}/p/2026-11-01/{ctx.run_id}/"
    objects = _keys(client, bucket, run_prefix)
    names = {k[len(run_prefix) :] for k in objects}
    assert {
        assay.store.DATASET,
        assay.store.SCORES,
        assay.store.METRICS,
        assay.store.GENERALIZATION,
        "comparisons.parquet",
        assay.store.COSTS,
        assay.store.BREAKEVEN,
        assay.store.SUMMARY,
        assay.store.REPORT,
        assay.store.MANIFEST,
    } <= names
    assert [n for n in names if n.startswith(f"{assay.store.RESPONSES}/")] == [f"{assay.store.RESPONSES}/part-rep-00000.parquet"]
    assert not [n for n in names if ".tmp-" in n]
    assert set(_keys(client, bucket)) == set(objects)  # nothing outside the run folder (no _cache/)
    recorded = {name: h for st in manifest["stages"].values() for name, h in st.get("artifacts", {}).items()}
    assert set(recorded) >= {
        assay.store.DATASET,
        f"{assay.store.RESPONSES}/part-rep-00000.parquet",
        assay.store.METRICS,
        assay.store.COSTS,
        assay.store.SUMMARY,
    }
    for name, h in recorded.items():
        assert hashlib.sha256(objects[run_prefix + name]).hexdigest() == h, name
    assert json.loads(objects[run_prefix + assay.store.MANIFEST]) == manifest

    # the artifacts read back, through the store and straight from the bucket
    assert read_responses(rf).num_rows == 4
    assert _accuracy(rf) == pytest.approx(3 / 4)
    raw = pq.read_table(io.BytesIO(objects[run_prefix + assay.store.METRICS])).to_pandas()
    acc = raw[(raw.metric == "accuracy") & (raw.slice == "all")].iloc[0]
    assert acc.model == "rep" and acc.value == pytest.approx(3 / 4) and acc.n == 4
    costs = pq.read_table(io.BytesIO(objects[run_prefix + assay.store.COSTS])).to_pandas()
    assert list(costs.model) == ["rep"]
    assert b"rep" in objects[run_prefix + assay.store.SUMMARY] and objects[run_prefix + assay.store.REPORT].lstrip().startswith(
        b"<"
    )


def test_complete_runs_and_history_over_the_bucket(tmp_path, s3):
    from assay.history import history
    from assay.stages import run_local

    bucket, client = s3
    root = f"s3://{bucket}/{PREFIX}"
    cfg = write_replay_inputs(tmp_path, ["x", "y", "y", "y"])
    first = run_local(cfg, "p", DAY, artifacts=root)
    _next_second(first.run_id)
    write_replay_inputs(tmp_path, ["x", "y", "x", "y"])  # the log now has every answer right
    second = run_local(cfg, "p", DAY, artifacts=root)
    assert second.run_id != first.run_id and not second.resumed

    # a run that never finished is listed, but is not complete
    Store(root).run("p", DAY, "29991231T000000-unfinished").write_json(assay.store.MANIFEST, {"status": "running"})

    store = Store(root)  # a new Store on the same URL
    assert store.remote and store.protocol == "s3"
    assert store.pipelines() == ["p"]
    assert [r.run_id for r in store.runs("p")] == [first.run_id, second.run_id, "29991231T000000-unfinished"]
    done = store.complete_runs("p")
    assert [(r.as_of, r.run_id) for r in done] == [("2026-11-01", first.run_id), ("2026-11-01", second.run_id)]
    assert [r.run_id for r in store.complete_runs("p", "2026-11-01")] == [first.run_id, second.run_id]
    assert store.complete_runs("p", "2026-10-31") == [] and store.runs("nope") == []
    assert [_accuracy(r) for r in done] == [pytest.approx(0.75), pytest.approx(1.0)]

    h = history(root, "p")
    assert list(h.run_id) == [first.run_id, second.run_id]
    assert list(h.as_of) == ["2026-11-01", "2026-11-01"]
    assert set(h.model) == {"rep"} and set(h.metric) == {"accuracy"} and set(h.slice) == {"all"}
    assert list(h.value) == [pytest.approx(0.75), pytest.approx(1.0)]
    assert list(h.n) == [4, 4]
    assert h.cost_per_1k_usd.notna().all() and list(h.gates) == ["", ""]
    assert len(history(root, "p", metric="accuracy")) == 2
    assert history(root, "p", metric="nope").empty


def test_rewriting_an_artifact_leaves_one_object_with_the_new_content(s3):
    bucket, client = s3
    root = f"s3://{bucket}/{PREFIX}"
    rf = Store(root).run("p", DAY, "r1")
    first = pa.table({"v": list(range(10))})
    second = pa.table({"v": list(range(100, 1100)), "w": ["z"] * 1000})  # another size and schema
    rf.write_table(assay.store.SCORES, first)
    assert rf.read_table(assay.store.SCORES).equals(first)
    rf.write_table(assay.store.SCORES, second)
    rf.write_json(assay.store.MANIFEST, {"k": 1})
    rf.write_json(assay.store.MANIFEST, {"k": 2, "status": "complete"})

    objects = _keys(client, bucket, f"{PREFIX}/p/2026-11-01/r1/")
    assert sorted(objects) == [
        f"{PREFIX}/p/2026-11-01/r1/{assay.store.MANIFEST}",
        f"{PREFIX}/p/2026-11-01/r1/{assay.store.SCORES}",
    ]
    assert pq.read_table(io.BytesIO(objects[f"{PREFIX}/p/2026-11-01/r1/{assay.store.SCORES}"])).equals(second)
    assert json.loads(objects[f"{PREFIX}/p/2026-11-01/r1/{assay.store.MANIFEST}"]) == {"k": 2, "status": "complete"}
    # the same store, and a fresh filesystem instance, both read the second content
    assert rf.read_table(assay.store.SCORES).equals(second) and rf.manifest() == {"k": 2, "status": "complete"}
    _forget_s3fs_instances()
    again = Store(root).run("p", DAY, "r1")
    assert again.read_table(assay.store.SCORES).equals(second)
    assert again.read_table(assay.store.SCORES, columns=["w"]).column_names == ["w"]
    assert again.listdir("") == [assay.store.MANIFEST, assay.store.SCORES]
    assert [r.run_id for r in Store(root).complete_runs("p")] == ["r1"]


def test_a_failed_run_resumes_in_the_bucket(tmp_path, s3):
    """Resume compacts the earlier responses into a new part and deletes the old parts (``_remove``)."""
    from assay.responses import read_responses
    from assay.runs import RunFailed
    from assay.stages import run_local

    bucket, client = s3
    root = f"s3://{bucket}/{PREFIX}"
    cfg = write_replay_inputs(tmp_path, ["x", "y", None, "y"])  # id 3 has no logged response: 25% errors
    with pytest.raises(RunFailed, match="max_error_rate"):
        run_local(cfg, "p", DAY, artifacts=root)
    [failed] = Store(root).runs("p")
    assert failed.manifest()["status"] == "failed" and Store(root).complete_runs("p") == []

    write_replay_inputs(tmp_path, ["x", "y", "x", "y"])
    ctx = run_local(cfg, "p", DAY, artifacts=root)
    assert ctx.resumed and ctx.run_id == failed.run_id
    run_prefix = f"{PREFIX}/p/2026-11-01/{ctx.run_id}/{assay.store.RESPONSES}/"
    assert sorted(k[len(run_prefix) :] for k in _keys(client, bucket, run_prefix)) == [
        "part-rep-00001.parquet",
        "part-rep-00002.parquet",
    ]  # 00000 (with the error) was removed
    resp = read_responses(ctx.folder).to_pandas()
    assert len(resp) == 4 and resp["error"].isna().all()
    assert _accuracy(ctx.folder) == pytest.approx(1.0)
    assert [r.run_id for r in Store(root).complete_runs("p")] == [ctx.run_id]


def test_a_store_sees_runs_that_other_processes_write(s3):
    """A long-lived process sees the runs other processes add after it has listed the same date.

    That is what the backfill driver does in served mode: ``plan`` lists a date's runs
    (``complete_runs``), a Prefect worker then runs the date, and ``_final_status`` takes the
    date's newest run folder (``runs(...)[-1]``) for the status, folder and gates it reports.
    ``assay history`` in a notebook or a dashboard process is the same. Another writer is
    boto3 here: anything but this process's s3fs instance.
    """
    bucket, client = s3
    root = f"s3://{bucket}/{PREFIX}"
    store = Store(root)
    store.run("p", DAY, "20261101T080000-aaaaaaaa-0001").write_json(assay.store.MANIFEST, {"status": "failed"})
    assert store.complete_runs("p", DAY.isoformat()) == []  # the driver's plan: the date is to be run

    # a worker process runs the date: a new run folder, complete
    later = "20261101T090000-aaaaaaaa-0002"
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/p/2026-11-01/{later}/{assay.store.MANIFEST}", Body=b'{"status": "complete"}')

    assert store.runs("p", DAY.isoformat())[-1].run_id == later
    assert [r.run_id for r in Store(root).complete_runs("p")] == [later]


def test_a_capacity_record_lands_in_the_bucket_and_is_no_pipeline(s3):
    import pandas as pd

    from assay import capacity

    bucket, client = s3
    store = Store(f"s3://{bucket}/{PREFIX}")
    record = {"model": "gpu", "config_hash": "h", "operating_point": {"concurrency": 8, "rps": 12.5}}
    sweep = pd.DataFrame({"concurrency": [1, 8], "latency_s": [0.1, 0.3]})
    capacity.write_record(store, "gpu", record, sweep)
    keys = _keys(client, bucket, f"{PREFIX}/_capacity/")
    assert sorted(keys) == [f"{PREFIX}/_capacity/gpu.json", f"{PREFIX}/_capacity/gpu.parquet"]
    assert json.loads(keys[f"{PREFIX}/_capacity/gpu.json"])["operating_point"]["rps"] == 12.5
    assert pq.read_table(io.BytesIO(keys[f"{PREFIX}/_capacity/gpu.parquet"])).column("latency_s").to_pylist() == [0.1, 0.3]
    assert capacity.read_record(store, "gpu")["sweep"] == "gpu.parquet"
    assert capacity.read_record(store, "other") is None
    assert store.pipelines() == []
