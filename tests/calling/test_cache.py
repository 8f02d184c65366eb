"""The response cache shared by processes and machines: immutable segments plus a local index.

Segments on the local disk written by two processes at once, two "machines" (two index folders)
reading one segment folder, and two machines sharing one s3:// artifact root on moto's S3 server:
the second replays an assessment with zero requests to the endpoint.
"""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from assay.cache import ResponseCache, SegmentCache, open_cache
from tests.conftest import write_config
from tests.operations.test_s3_store import _forget_s3fs_instances, _keys, moto_endpoint, s3  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]


def records(prefix: str, n: int) -> list[tuple[str, dict]]:
    return [(f"{prefix}-{i:06d}", {"output": f"answer {prefix} {i}", "prompt_tokens": i, "latency_s": 0.01}) for i in range(n)]


def test_a_segment_is_written_once_and_read_by_another_machine(tmp_path):
    seg = str(tmp_path / "shared" / "segments")
    a = SegmentCache(seg, index_dir=str(tmp_path / "index-a"))
    a.put_many(records("k", 300))
    assert a.get_many(["k-000001"])["k-000001"]["output"] == "answer k 1"  # this process sees its own records at once
    a.close()
    names = os.listdir(seg)
    assert a.written == names and len(names) == 1 and names[0].startswith("seg-") and names[0].endswith(".parquet")
    import hashlib

    assert names[0] == "seg-" + hashlib.sha256((Path(seg) / names[0]).read_bytes()).hexdigest() + ".parquet"
    b = SegmentCache(seg, index_dir=str(tmp_path / "index-b"))  # another machine: an empty index, rebuilt from the listing
    assert b.read == names
    keys = [k for k, _ in records("k", 300)]
    hits = b.get_many(keys + ["missing"])
    assert len(hits) == 300 and hits["k-000299"] == {"output": "answer k 299", "prompt_tokens": 299, "latency_s": 0.01}
    assert b.refresh() == 0  # nothing new: the listing alone
    b.close()
    assert os.listdir(seg) == names  # reading wrote nothing shared


def test_a_segment_is_flushed_every_segment_rows(tmp_path, monkeypatch):
    import assay.cache

    monkeypatch.setattr(assay.cache, "SEGMENT_ROWS", 100)
    c = SegmentCache(str(tmp_path / "segments"), index_dir=str(tmp_path / "index"))
    for lo in range(0, 250, 50):
        c.put_many(records(f"b{lo}", 50))
    assert len(os.listdir(tmp_path / "segments")) == 2  # at 100 and 200 waiting records
    assert len(c) == 250
    c.close()
    assert len(os.listdir(tmp_path / "segments")) == 3


WRITER = """
import sys
from assay.cache import SegmentCache
seg, index, prefix = sys.argv[1:4]
c = SegmentCache(seg, index_dir=index)
for lo in range(0, 2000, 100):
    c.put_many([(f"{prefix}-{i}", {"output": str(i)}) for i in range(lo, lo + 100)])
    c.refresh()
c.close()
print(len(c.written))
"""


def test_two_processes_of_one_machine_share_the_folder_and_the_index(tmp_path):
    seg, index = str(tmp_path / "segments"), str(tmp_path / "index")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, seg, index, p], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for p in ("a", "b")
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert len(os.listdir(seg)) == 2  # one segment per writer: no file written by both
    c = SegmentCache(seg, index_dir=index)
    assert c.read == []  # the shared index has both already
    hits = c.get_many([f"{p}-{i}" for p in "ab" for i in range(2000)])
    assert len(hits) == 4000 and hits["b-1999"] == {"output": "1999"}
    fresh = SegmentCache(seg, index_dir=str(tmp_path / "index-2"))
    assert len(fresh.read) == 2 and len(fresh) == 4000


def test_the_single_process_cache_is_read_for_what_the_segments_lack(tmp_path):
    legacy = str(tmp_path / "responses.sqlite")
    old = ResponseCache(legacy)
    old.put_many(records("old", 10))
    old.close()
    c = open_cache(str(tmp_path / "segments"), legacy=legacy)
    assert isinstance(c, SegmentCache)
    c.put_many(records("new", 5))
    hits = c.get_many([k for k, _ in records("old", 10) + records("new", 5)])
    assert len(hits) == 15
    c.close()
    assert isinstance(open_cache(str(tmp_path / "other.sqlite")), ResponseCache)


def cache_config(d: Path, root: str, base_url: str) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    labels = ["billing", "technical", "account"]
    pq.write_table(
        pa.Table.from_pylist(
            [{"id": f"e{i:04d}", "text": f"ticket {i} about {labels[i % 3]}", "label": labels[i % 3]} for i in range(30)]
        ),
        d / "data.parquet",
    )
    return write_config(
        d,
        artifacts=root,
        models={
            "fake": {
                "provider": "openai",
                "model": "mock-model",
                "base_url": base_url,
                "api_key_env": "ASSAY_TEST_KEY",
                "params": {"temperature": 0, "max_tokens": 8},
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            }
        },
        pipelines={
            "p": {
                "dataset": {"source": "data.parquet", "id": "id", "reference": "label"},
                "prompt": {"system": "labels: billing, technical, account", "template": "{text}"},
                "models": ["fake"],
                "metrics": ["accuracy"],
                "shard_size": 10,
                "bootstrap": 20,
            }
        },
    )


def test_two_machines_share_the_cache_on_s3_the_second_replays_with_zero_requests(tmp_path, s3, monkeypatch, fake_server):
    from assay.stages import run_local

    bucket, client = s3
    root = f"s3://{bucket}/runs"
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test-SECRET-5f3a9c")
    srv = fake_server(latency=0.0)
    monkeypatch.setenv("ASSAY_CACHE_INDEX", str(tmp_path / "a" / "index"))
    monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "a" / "locks"))
    first = run_local(str(cache_config(tmp_path / "a", root, srv.base_url)), "p", date(2026, 11, 1))
    assert srv.stats()["requests_total"] == 30
    assert first.folder.manifest()["cache"] == f"{root}/_cache/segments"
    segs = [k for k in _keys(client, bucket, "runs/_cache/segments/")]
    assert len(segs) == 1 and segs[0].rsplit("/", 1)[1].startswith("seg-")

    srv.reset()
    monkeypatch.setenv("ASSAY_CACHE_INDEX", str(tmp_path / "b" / "index"))  # machine B: its own index, its own disk
    monkeypatch.setenv("ASSAY_LOCK_DIR", str(tmp_path / "b" / "locks"))
    second = run_local(str(cache_config(tmp_path / "b", root, srv.base_url)), "p", date(2026, 11, 2))
    assert srv.stats()["requests_total"] == 0
    srv.stop()
    inv = second.folder.manifest()["stages"]["invoke"]["models"]["fake"]
    assert inv["cache_hits"] == 30 and inv["called"] == 0
    assert not any(".sqlite" in k for k in _keys(client, bucket))  # no SQLite file on the shared store
    assert (tmp_path / "b" / "index").is_dir() and not (tmp_path / "a" / "index").samefile(tmp_path / "b" / "index")
    assert len([k for k in _keys(client, bucket, "runs/_cache/segments/")]) == 1  # the replay wrote no segment
