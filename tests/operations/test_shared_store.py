"""Two machines sharing one s3:// artifact root (moto's S3 server, started by tests/operations/test_s3_store.py's fixture).

Machine A is a subprocess with its own HOME, ASSAY_LOCK_DIR and project folder; machine B is this
test process, with another HOME, lock dir and project folder, and its own s3fs client. Nothing
passes between them but the bucket: A's project folder is deleted once A is done, as a machine
that is gone. B then lists A's runs in its history, skips A's dates in a backfill, reprices and
reproduces A's run, builds the dashboard and a comparison from A's runs; and two runs of the same
request at once, on the two machines, never share a run folder (the lease object), while a
killed run's folder is taken over once its lease has expired.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest

from tests.conftest import write_config
from tests.helpers import write_replay_inputs
from tests.operations.test_s3_store import _forget_s3fs_instances, _keys, moto_endpoint, s3  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
D1, D2, D3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)


def project(tmp_path: Path, name: str, root: str) -> Path:
    d = tmp_path / name / "project"
    d.mkdir(parents=True)
    write_replay_inputs(d, ["x", "y", "y", "y"], artifacts=root)  # wrong on id 3: accuracy 0.75
    return d


def machine_env(tmp_path: Path, name: str, **extra) -> dict:
    """This process's environment (the S3 endpoint and keys) with a HOME and lock dir of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        HOME=str(tmp_path / name / "home"),
        ASSAY_LOCK_DIR=str(tmp_path / name / "locks"),
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        **extra,
    )
    return env


def on_machine(env: dict, cwd: Path, code: str, timeout: float = 180) -> dict:
    """Run ``code`` in a new interpreter on "machine" ``env``; it prints one JSON line last."""
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


RUN_DATES = """
import json, sys
from datetime import date
from assay.stages import run_local
out = {d: run_local("pipelines.yaml", "p", date.fromisoformat(d)).folder.url for d in sys.argv[1:]}
print(json.dumps(out))
"""


def test_machine_b_works_on_the_runs_machine_a_made(tmp_path, s3, monkeypatch):
    from assay.history import history
    from assay.report.dashboard import build_dashboard
    from assay.reprice import reprice
    from assay.reproduce import reproduce
    from assay.store import Store, open_run
    from flows.backfill import backfill, dates_between, plan

    bucket, client = s3
    root = f"s3://{bucket}/runs"
    a = project(tmp_path, "a", root)
    code = RUN_DATES.replace("sys.argv[1:]", repr([D1.isoformat(), D2.isoformat()]))
    made = on_machine(machine_env(tmp_path, "a"), a, code)
    shutil.rmtree(tmp_path / "a")  # machine A is gone: only the bucket is left

    b = project(tmp_path, "b", root)
    monkeypatch.chdir(b)
    monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "b" / "locks"))
    _forget_s3fs_instances()

    # history: A's two runs, from the bucket
    h = history(root, "p")
    assert [u.rsplit("/", 1)[1] for u in made.values()] == list(h.run_id)
    assert list(h.as_of) == [D1.isoformat(), D2.isoformat()] and list(h.value) == [pytest.approx(0.75)] * 2

    # backfill: A's dates are done; only D3 is left to run
    store = Store(root)
    assert plan(store, "p", dates_between(D1, D3)).todo == [D3]
    report = backfill(str(b / "pipelines.yaml"), "p", D1, D2)
    assert [(r.day, r.status) for r in report.results] == [(D1, "skipped"), (D2, "skipped")]
    assert [r.folder for r in report.results] == [made[D1.isoformat()], made[D2.isoformat()]]

    # reprice A's run, and write the repricing into its folder in the bucket
    rf = open_run(made[D1.isoformat()])
    recorded = rf.read_table("costs.parquet").to_pandas()
    rp = reprice(rf, as_of=None, write=True)
    assert rp.costs.cost_usd.tolist() == pytest.approx(recorded.cost_usd.tolist())
    prefix = f"runs/p/{D1.isoformat()}/{rf.run_id}/"
    names = {k[len(prefix) :] for k in _keys(client, bucket, prefix)}
    assert {f"costs-{D1.isoformat()}.parquet", f"breakeven-{D1.isoformat()}.parquet"} <= names
    assert D1.isoformat() in (open_run(made[D1.isoformat()]).manifest().get("repriced") or {})

    # reproduce A's run here: A's project folder is gone, so the recorded relative paths resolve in this one
    rep = reproduce(made[D2.isoformat()])
    assert rep.matches, rep.rows
    assert rep.reproduced.startswith(f"{root}/_reproductions/p/{D2.isoformat()}/")
    assert {r["artifact"] for r in rep.rows} >= {"responses", "dataset.parquet", "metrics.parquet", "costs.parquet"}

    # the dashboard over A's runs (the reproduction's folder is no pipeline of its own)
    out = tmp_path / "site"
    result = build_dashboard(root, str(out))
    assert result["pipelines"] == ["p"] and result["runs"] == 2
    page = (out / "pipelines" / "p.html").read_text()
    for url in made.values():
        assert f"{url}/report.html" in page

    # compare two of A's runs
    from assay.report.compare import build_compare

    cmp = build_compare(open_run(made[D1.isoformat()]), open_run(made[D2.isoformat()]), str(tmp_path / "cmp.html"))
    assert cmp["same_data"] and cmp["shared_examples"] == 4 and cmp["config_changes"] == []
    assert (tmp_path / "cmp.html").read_text().count("<table") >= 1


def test_two_runs_of_one_request_at_once_on_two_machines_never_share_a_folder(tmp_path, s3, monkeypatch):
    """A starts the run and holds it; B's same request meanwhile starts a folder of its own; both complete."""
    from assay.responses import read_responses
    from assay.runs import start_run
    from assay.stages import run_stages
    from assay.store import Store, open_run

    bucket, client = s3
    root = f"s3://{bucket}/runs"
    a = project(tmp_path, "a", root)
    go = tmp_path / "go"
    code = f"""
import json, os, time, pathlib
from datetime import date
from assay.runs import start_run
from assay.stages import run_stages
ctx = start_run("pipelines.yaml", "p", date.fromisoformat({D1.isoformat()!r}))
print(json.dumps({{"started": ctx.folder.url}}), flush=True)
while not pathlib.Path({str(go)!r}).exists():
    time.sleep(0.05)
run_stages(ctx)
print(json.dumps({{"done": ctx.folder.url}}), flush=True)
"""
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=machine_env(tmp_path, "a"),
        cwd=a,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        a_url = json.loads(line)["started"]
        a_run = a_url.rsplit("/", 1)[1]
        lock = json.loads(client.get_object(Bucket=bucket, Key=f"runs/p/{D1.isoformat()}/{a_run}/.lock")["Body"].read())
        assert lock["pid"] == proc.pid

        b = project(tmp_path, "b", root)
        monkeypatch.chdir(b)
        monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "b" / "locks"))
        # A's folder is `running` with the same request: B would resume it, but A holds it
        ctx = start_run("pipelines.yaml", "p", D1)
        assert not ctx.resumed and ctx.run_id != a_run
        run_stages(ctx)
        go.write_text("")
        out, errs = proc.communicate(timeout=180)
        assert proc.returncode == 0, errs[-3000:]
        assert json.loads(out.strip().splitlines()[-1]) == {"done": a_url}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    done = Store(root).complete_runs("p", D1.isoformat())
    assert sorted(r.run_id for r in done) == sorted([a_run, ctx.run_id])
    for rf in done:
        m = rf.manifest()
        assert m["run_id"] == rf.run_id and m["status"] == "complete" and not m.get("resumes")
        assert read_responses(rf).num_rows == 4  # each folder holds its own run's four answers, once
        assert rf.listdir("responses") == ["part-rep-00000.parquet"]
        assert not rf.exists(".lock")  # released when the run finished
    assert open_run(a_url).manifest()["run_id"] == a_run


def test_a_killed_runs_folder_is_taken_over_once_its_lease_expires(tmp_path, s3, monkeypatch):
    from assay.runs import start_run
    from assay.stages import run_stages

    bucket, client = s3
    root = f"s3://{bucket}/runs"
    a = project(tmp_path, "a", root)
    code = f"""
import json, time
from datetime import date
from assay.runs import start_run
ctx = start_run("pipelines.yaml", "p", date.fromisoformat({D1.isoformat()!r}))
print(json.dumps({{"started": ctx.folder.url}}), flush=True)
time.sleep(600)
"""
    ttl = 3
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=machine_env(tmp_path, "a", ASSAY_LOCK_TTL_S=str(ttl)),
        cwd=a,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line, proc.stderr.read()[-3000:]
        a_run = json.loads(line)["started"].rsplit("/", 1)[1]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    key = f"runs/p/{D1.isoformat()}/{a_run}/.lock"
    lock = json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())  # left behind by the kill
    while time.time() <= lock["expires"]:
        time.sleep(0.1)

    b = project(tmp_path, "b", root)
    monkeypatch.chdir(b)
    monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "b" / "locks"))
    ctx = start_run("pipelines.yaml", "p", D1)
    assert ctx.resumed and ctx.run_id == a_run  # the expired lease was taken over
    assert json.loads(client.get_object(Bucket=bucket, Key=key)["Body"].read())["pid"] == os.getpid()
    run_stages(ctx)
    assert ctx.folder.manifest()["status"] == "complete"
    assert not ctx.folder.exists(".lock")


@pytest.mark.parametrize("expired", [False, True])
def test_of_many_contenders_for_one_lease_exactly_one_wins(s3, expired):
    """The conditional puts: If-None-Match for a new lease, If-Match on the expired one's ETag."""
    from assay.runs.lease import LOCK, Lease
    from assay.store import Store

    bucket, client = s3
    rf = Store(f"s3://{bucket}/runs").run("p", D1, "20261101T000000-race")
    if expired:
        client.put_object(
            Bucket=bucket,
            Key=f"runs/p/{D1.isoformat()}/{rf.run_id}/{LOCK}",
            Body=json.dumps({"owner": "dead", "expires": time.time() - 1}).encode(),
        )
    barrier = threading.Barrier(8)
    won: list[Lease] = []

    def contend():
        lease = Lease(rf, ttl=60)
        barrier.wait()
        if lease.acquire():
            won.append(lease)

    threads = [threading.Thread(target=contend) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    held = json.loads(client.get_object(Bucket=bucket, Key=f"runs/p/{D1.isoformat()}/{rf.run_id}/{LOCK}")["Body"].read())
    assert held["owner"] == won[0].owner
    assert not Lease(rf, ttl=60).acquire()  # live: nobody else gets it
    won[0].release()
    assert not rf.exists(LOCK)
    again = Lease(rf, ttl=60)
    assert again.acquire()
    again.release()


def _lock_body(client, bucket, rf):
    from assay.runs.lease import LOCK

    return json.loads(client.get_object(Bucket=bucket, Key=f"runs/p/{rf.as_of}/{rf.run_id}/{LOCK}")["Body"].read())


def _until(predicate, timeout: float, what: str):
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def test_a_held_lease_is_renewed_and_a_lost_one_is_left_to_its_new_holder(s3):
    from assay.runs.lease import LOCK, Lease
    from assay.store import Store

    bucket, client = s3
    rf = Store(f"s3://{bucket}/runs").run("p", D1, "20261101T000000-renew")
    lease = Lease(rf, ttl=1)
    assert lease.acquire()
    first = _lock_body(client, bucket, rf)["expires"]
    _until(lambda: _lock_body(client, bucket, rf)["expires"] > first, 30, "the heartbeat to renew the lease")
    assert _lock_body(client, bucket, rf)["owner"] == lease.owner

    # another process takes it over (as after a stall past the expiry): the holder's next renewal
    # fails its If-Match, it knows it lost the lease, and releasing leaves the new holder's object
    client.put_object(
        Bucket=bucket,
        Key=f"runs/p/{D1.isoformat()}/{rf.run_id}/{LOCK}",
        Body=json.dumps({"owner": "other", "expires": time.time() + 600}).encode(),
    )
    _until(lambda: lease.lost, 30, "the holder to notice it lost the lease")
    lease.release()
    assert _lock_body(client, bucket, rf)["owner"] == "other"


def chat_project(tmp_path: Path, name: str, root: str, base_url: str, n: int, c: int) -> Path:
    """A project on "machine" ``name``: one chat model at concurrency ``c`` on ``n`` examples, with
    parts so large (``shard_size``) that only the journal keeps the calls of a run killed early."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = tmp_path / name / "project"
    d.mkdir(parents=True)
    ids = [f"t{i:03d}" for i in range(n)]
    pq.write_table(pa.table({"id": ids, "text": [f"ticket {i}" for i in ids], "label": ["x"] * n}), d / "data.parquet")
    write_config(
        d,
        f"""
        artifacts: {root}
        models:
          live: {{provider: openai, model: mock-model, base_url: {base_url}, max_concurrency: {c},
                  price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "{{text}}"}}
            models: [live]
            metrics: [accuracy]
            shard_size: 100000
            cache: off
            bootstrap: 0
    """,
    )
    return d


def test_a_run_killed_on_one_machine_resumes_on_another_paying_only_the_last_seconds_again(
    tmp_path, s3, monkeypatch, fake_server
):
    """Machine A is killed in invoke before it wrote any part: its journal on A's disk is gone with
    A, but its uploads to the shared root (every ASSAY_JOURNAL_UPLOAD_S) let machine B resume
    without asking again for what A had answered, except the calls of the last interval."""
    from assay.stages import run_local

    bucket, client = s3
    root = f"s3://{bucket}/runs"
    n, c = 120, 4
    code = "from datetime import date\nfrom assay.stages import run_local\nrun_local('pipelines.yaml', 'p', date(2026, 11, 1))\n"
    srv = fake_server(latency=0.05)
    a = chat_project(tmp_path, "a", root, srv.base_url, n, c)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=a,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=machine_env(tmp_path, "a", ASSAY_LOCK_TTL_S="2", ASSAY_JOURNAL_UPLOAD_S="0.2"),
    )
    try:
        deadline = time.time() + 120
        while srv.stats(include_prompts=False)["requests_total"] < n // 2 and time.time() < deadline:
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            time.sleep(0.02)
        time.sleep(0.5)  # at least two uploads since
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    before = srv.stats(include_prompts=False)["requests_total"]
    assert n // 2 <= before < n, "the kill must land in the middle of invoke"
    shutil.rmtree(tmp_path / "a")  # machine A, its disk and its local journal, are gone
    keys = [k for k in _keys(client, bucket) if k.endswith("/.lock")]
    assert len(keys) == 1 and not [k for k in _keys(client, bucket) if "/responses/part-" in k]
    lock = json.loads(client.get_object(Bucket=bucket, Key=keys[0])["Body"].read())
    while time.time() <= lock["expires"]:
        time.sleep(0.1)
    b = chat_project(tmp_path, "b", root, srv.base_url, n, c)
    monkeypatch.chdir(b)
    monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "b" / "locks"))
    ctx = run_local("pipelines.yaml", "p", D1)
    after = srv.stats(include_prompts=False)["requests_total"]
    srv.stop()
    assert ctx.resumed and ctx.folder.manifest()["status"] == "complete"
    repaid = after - n
    # without the uploads B would ask again for all `before` calls; with them, only the calls that
    # finished after A's last upload (0.2 s at most c / 0.05 s = 80 calls/s) and those in flight
    assert 0 <= repaid <= 16 + 2 * c + 8, (before, after)
    assert after - before < n - n // 2 + 16 + 2 * c + 8
    from assay.responses import read_responses

    got = read_responses(ctx.folder)
    assert got.num_rows == n and got["error"].null_count == n
    assert not [k for k in _keys(client, bucket) if "journal-" in k]  # folded into the parts, then removed
