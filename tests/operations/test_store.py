"""The artifact store (assay.store) on a local directory and on fsspec's in-memory filesystem."""

import hashlib
import json
import os
import re
import threading
import uuid
from datetime import date

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay.store
from assay.store import RunFolder, Store

DAY = date(2026, 11, 1)


@pytest.fixture()
def mem_root():
    """A fresh root on fsspec's memory filesystem, removed afterwards."""
    bucket = f"assay-test-{uuid.uuid4().hex[:8]}"
    yield f"memory://{bucket}/root"
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{bucket}"):
        fs.rm(f"/{bucket}", recursive=True)


def _all_files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


# ------------------------------------------------------------------------------------------------ local


def test_local_writes_land_whole_and_leave_no_temp_files(tmp_path):
    store = Store(tmp_path / "runs")
    rf = store.run("p", DAY, "r1")
    for k in range(3):  # overwrite the same artifacts: each write replaces the file
        rf.write_table(assay.store.DATASET, pa.table({"k": [k] * (k + 1)}))
        rf.write_json(assay.store.MANIFEST, {"status": "running", "k": k})
        rf.write_text(assay.store.SUMMARY, f"# run {k}\n")
        rf.write_table(f"{assay.store.RESPONSES}/part-m-{k:05d}.parquet", pa.table({"k": [k]}))
    files = _all_files(tmp_path / "runs")
    assert files == [
        f"p/2026-11-01/r1/{n}"
        for n in (
            "dataset.parquet",
            "manifest.json",
            "responses/part-m-00000.parquet",
            "responses/part-m-00001.parquet",
            "responses/part-m-00002.parquet",
            "summary.md",
        )
    ]
    assert rf.read_table(assay.store.DATASET)["k"].to_pylist() == [2, 2, 2]
    assert rf.manifest() == {"status": "running", "k": 2}
    assert rf.read_bytes(assay.store.SUMMARY) == b"# run 2\n"
    # write_json is sorted, indented and ends with a newline
    assert (tmp_path / "runs/p/2026-11-01/r1/manifest.json").read_text() == '{\n  "k": 2,\n  "status": "running"\n}\n'


def test_local_writes_accept_dataframes(tmp_path):
    import pandas as pd

    rf = Store(tmp_path).run("p", DAY, "r1")
    path = rf.write_table(assay.store.METRICS, pd.DataFrame({"a": [1, 2]}, index=[7, 8]))
    assert path == str(tmp_path / "p/2026-11-01/r1/metrics.parquet")
    t = pq.read_table(path)
    assert t.column_names == ["a"] and t["a"].to_pylist() == [1, 2]  # no index column


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    """Atomic writes are for readers: while writers replace an artifact, a reader gets the old
    or a new file whole, never a torn one. Runs until the first bad read, at most 2 s."""
    rf = Store(tmp_path).run("p", DAY, "r1")
    n = 20_000
    tables = {i: pa.table({"v": pa.array(range(i * n, (i + 1) * n))}) for i in range(4)}
    rf.write_table(assay.store.SCORES, tables[0])
    errors, reads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                t = rf.read_table(assay.store.SCORES)
                first = t["v"][0].as_py()
                assert t.num_rows == n and first % n == 0 and t["v"][-1].as_py() == first + n - 1
                reads[0] += 1
            except Exception as e:  # noqa: BLE001  (a torn read shows up here)
                errors.append(repr(e))
                stop.set()

    def writer(i):
        while not stop.is_set():
            rf.write_table(assay.store.SCORES, tables[i])

    threads = [threading.Thread(target=reader) for _ in range(2)]
    threads += [threading.Thread(target=writer, args=(i,)) for i in range(1, 4)]
    for t in threads:
        t.start()
    stop.wait(2.0)
    stop.set()
    for t in threads:
        t.join()
    assert errors == [], f"{len(errors)} torn read(s) after {reads[0]} good ones"
    assert reads[0] > 0
    assert [f for f in _all_files(tmp_path) if ".tmp-" in f] == []


def test_listdir_skips_temporary_files(tmp_path):
    rf = Store(tmp_path).run("p", DAY, "r1")
    assert rf.listdir(assay.store.RESPONSES) == []
    rf.write_table(f"{assay.store.RESPONSES}/part-b-00000.parquet", pa.table({"x": [2]}))
    rf.write_table(f"{assay.store.RESPONSES}/part-a-00000.parquet", pa.table({"x": [1]}))
    # a writer killed between writing and renaming leaves this behind
    (tmp_path / "p/2026-11-01/r1/responses/part-a-00001.parquet.tmp-deadbeef").write_bytes(b"half a file")
    assert rf.listdir(assay.store.RESPONSES) == ["part-a-00000.parquet", "part-b-00000.parquet"]
    assert [rf.read_table(f"{assay.store.RESPONSES}/{n}")["x"].to_pylist() for n in rf.listdir(assay.store.RESPONSES)] == [
        [1],
        [2],
    ]


def test_runs_are_listed_oldest_first(tmp_path):
    store = Store(tmp_path)
    made = [
        ("2026-11-02", "20261102T010000-aaaa"),
        ("2026-10-30", "20261030T230000-bbbb"),
        ("2026-11-01", "20261101T120000-cccc"),
        ("2026-11-01", "20261101T080000-dddd"),
    ]
    for as_of, run_id in made:
        store.run("p", date.fromisoformat(as_of), run_id).write_json(assay.store.MANIFEST, {"status": "running"})
    store.run("q", DAY, "x").write_json(assay.store.MANIFEST, {"status": "complete"})
    assert store.pipelines() == ["p", "q"]
    assert [(r.as_of, r.run_id) for r in store.runs("p")] == [
        ("2026-10-30", "20261030T230000-bbbb"),
        ("2026-11-01", "20261101T080000-dddd"),
        ("2026-11-01", "20261101T120000-cccc"),
        ("2026-11-02", "20261102T010000-aaaa"),
    ]
    assert [r.run_id for r in store.runs("p", "2026-11-01")] == ["20261101T080000-dddd", "20261101T120000-cccc"]
    assert store.runs("p", "2026-01-01") == [] and store.runs("nope") == []
    # complete runs only, same order; a broken or missing manifest is not complete
    store.run("p", DAY, "20261101T120000-cccc").write_json(assay.store.MANIFEST, {"status": "complete"})
    store.run("p", date(2026, 10, 30), "20261030T230000-bbbb").write_json(assay.store.MANIFEST, {"status": "complete"})
    store.run("p", date(2026, 11, 2), "20261102T010000-aaaa").write_text(assay.store.MANIFEST, '{"status": "compl')
    os.makedirs(tmp_path / "p/2026-11-02/20261102T020000-eeee")
    assert [r.run_id for r in store.complete_runs("p")] == ["20261030T230000-bbbb", "20261101T120000-cccc"]
    assert [r.run_id for r in store.complete_runs("p", "2026-11-02")] == []
    assert store.run("p", date(2026, 11, 2), "20261102T010000-aaaa").manifest() is None


def test_new_run_ids_sort_by_time_and_carry_the_config_hash(tmp_path):
    store = Store(tmp_path)
    rid = store.new_run_id("0123456789abcdef")
    assert re.fullmatch(r"\d{8}T\d{6}-01234567-[0-9a-f]{4}", rid)
    assert store.new_run_id("0123456789abcdef") != rid  # a random suffix keeps same-second runs apart


def test_missing_artifact_names_the_path(tmp_path):
    rf = Store(tmp_path / "runs").run("p", DAY, "r1")
    expected = os.path.join(str((tmp_path / "runs").resolve()), "p", "2026-11-01", "r1", "metrics.parquet")
    with pytest.raises(FileNotFoundError) as e:
        rf.read_table(assay.store.METRICS)
    assert expected in str(e.value)
    with pytest.raises(FileNotFoundError):
        rf.read_bytes("summary.md")
    assert not rf.exists(assay.store.METRICS) and rf.manifest() is None


def test_file_urls_and_paths(tmp_path):
    a, b = Store(f"file://{tmp_path}/"), Store(tmp_path)
    assert not a.remote and a.base == b.base
    rf = a.run("p", DAY, "r1")
    assert rf.url == os.path.join(b.base, "p", "2026-11-01", "r1")
    assert rf.path("x.parquet") == os.path.join(rf.url, "x.parquet")
    rf.write_text("notes.txt", "hello")
    assert rf.hash("notes.txt") == hashlib.sha256(b"hello").hexdigest()


def test_open_run_from_a_path_names_what_is_missing(tmp_path):
    rf = Store(tmp_path / "runs").run("p", DAY, "r1")
    with pytest.raises(assay.store.NotARunFolder, match=r"no manifest\.json in .*r1: run folder not found"):
        assay.store.open_run(rf.url)
    rf.write_text(assay.store.SUMMARY, "# hi\n")
    with pytest.raises(assay.store.NotARunFolder, match=r"no manifest\.json in .*r1: not a run folder"):
        assay.store.open_run(rf.url)
    rf.write_json(assay.store.MANIFEST, {"status": "complete"})
    for given in (rf.url, rf.url + "/", f"file://{rf.url}", os.path.relpath(rf.url)):
        got = assay.store.open_run(given)
        assert (got.pipeline, got.as_of, got.run_id, got.url) == ("p", "2026-11-01", "r1", rf.url)
    assert assay.store.open_run(rf) is rf
    (tmp_path / "runs" / "p" / "latest" / "r1").mkdir(parents=True)
    with pytest.raises(assay.store.NotARunFolder, match=r"'latest' in .* is not a date"):
        assay.store.open_run(tmp_path / "runs" / "p" / "latest" / "r1")


# ------------------------------------------------------------------------------------------------ memory://


def test_memory_store_round_trips(mem_root):
    store = Store(mem_root)
    assert store.remote and store.protocol == "memory"
    rf = store.run("p", DAY, "r1")
    assert rf.url == f"{mem_root}/p/2026-11-01/r1"
    assert rf.write_table(assay.store.DATASET, pa.table({"a": [1, 2, 3]})) == f"{mem_root}/p/2026-11-01/r1/dataset.parquet"
    assert rf.read_table(assay.store.DATASET)["a"].to_pylist() == [1, 2, 3]
    assert rf.read_table(assay.store.DATASET, columns=["a"]).column_names == ["a"]
    rf.write_json(assay.store.MANIFEST, {"status": "complete", "n": 3})
    assert rf.manifest() == {"status": "complete", "n": 3}
    assert rf.read_json(assay.store.MANIFEST) == {"status": "complete", "n": 3}
    rf.write_text(assay.store.SUMMARY, "# hi\n")
    assert (
        rf.read_bytes(assay.store.SUMMARY) == b"# hi\n" and rf.hash(assay.store.SUMMARY) == hashlib.sha256(b"# hi\n").hexdigest()
    )
    assert rf.exists(assay.store.DATASET) and not rf.exists(assay.store.METRICS)
    # the object really is in fsspec's memory filesystem, under the bucket
    fs = fsspec.filesystem("memory")
    raw = fs.cat("/" + mem_root.split("://", 1)[1] + "/p/2026-11-01/r1/manifest.json")
    assert json.loads(raw)["n"] == 3


def test_memory_listdir_parts_and_missing(mem_root):
    rf = Store(mem_root).run("p", DAY, "r1")
    assert rf.listdir(assay.store.RESPONSES) == []
    rf.write_table(f"{assay.store.RESPONSES}/part-m-00001.parquet", pa.table({"x": [2]}))
    rf.write_table(f"{assay.store.RESPONSES}/part-m-00000.parquet", pa.table({"x": [1]}))
    rf.write_text(f"{assay.store.RESPONSES}/part-m-00002.parquet.tmp-0badf00d", "junk")
    assert rf.listdir(assay.store.RESPONSES) == ["part-m-00000.parquet", "part-m-00001.parquet"]
    assert [rf.read_table(f"{assay.store.RESPONSES}/{n}")["x"].to_pylist() for n in rf.listdir(assay.store.RESPONSES)] == [
        [1],
        [2],
    ]
    with pytest.raises(FileNotFoundError, match=re.escape(f"{mem_root}/p/2026-11-01/r1/costs.parquet")):
        rf.read_table(assay.store.COSTS)
    assert Store(mem_root).run("p", DAY, "r2").manifest() is None


def test_open_run_from_a_url(mem_root):
    rf = Store(mem_root).run("p", DAY, "r1")
    with pytest.raises(
        assay.store.NotARunFolder, match=re.escape(f"no manifest.json in {mem_root}/p/2026-11-01/r1: not a run folder")
    ):
        assay.store.open_run(rf.url)
    rf.write_json(assay.store.MANIFEST, {"status": "complete"})
    got = assay.store.open_run(rf.url + "/")
    assert (got.store.root, got.pipeline, got.as_of, got.run_id) == (mem_root, "p", "2026-11-01", "r1")
    with pytest.raises(assay.store.NotARunFolder, match="not a run folder"):
        assay.store.open_run("memory://p/2026-11-01/r1")  # no root left


def test_memory_runs_and_complete_runs(mem_root):
    store = Store(mem_root)
    assert store.pipelines() == [] and store.runs("p") == []
    for as_of, run_id, status in [
        ("2026-11-02", "r3", "complete"),
        ("2026-10-31", "r9", "running"),
        ("2026-11-01", "r2", "complete"),
        ("2026-11-01", "r1", "failed"),
    ]:
        store.run("p", date.fromisoformat(as_of), run_id).write_json(assay.store.MANIFEST, {"status": status})
    assert store.pipelines() == ["p"]
    assert [(r.as_of, r.run_id) for r in store.runs("p")] == [
        ("2026-10-31", "r9"),
        ("2026-11-01", "r1"),
        ("2026-11-01", "r2"),
        ("2026-11-02", "r3"),
    ]
    assert [r.run_id for r in store.runs("p", "2026-11-01")] == ["r1", "r2"]
    assert [(r.as_of, r.run_id) for r in store.complete_runs("p")] == [("2026-11-01", "r2"), ("2026-11-02", "r3")]
    # a second Store on the same URL sees the same runs
    assert [r.run_id for r in Store(mem_root + "/").runs("p")] == ["r9", "r1", "r2", "r3"]
    assert isinstance(store.runs("p")[0], RunFolder)


def test_a_whole_run_on_a_memory_store(tmp_path, mem_root):
    from assay.responses import read_responses
    from assay.stages import run_local
    from tests.helpers import write_replay_inputs

    cfg = write_replay_inputs(tmp_path, ["x", "y", "y", "y"], artifacts="runs")
    ctx = run_local(cfg, "p", DAY, artifacts=mem_root, cache_mode="off")
    assert ctx.folder.url.startswith(mem_root + "/p/2026-11-01/")
    assert not (tmp_path / "runs").exists()  # nothing went to the local default
    [rf] = Store(mem_root).complete_runs("p")
    assert rf.run_id == ctx.run_id
    assert read_responses(rf).num_rows == 4
    m = rf.read_table(assay.store.METRICS).to_pandas()
    assert m[(m.slice == "all")].iloc[0].value == pytest.approx(3 / 4)  # wrong on id 3
    names = {p.rsplit("/", 1)[-1] for p in fsspec.filesystem("memory").ls("/" + rf.url.split("://", 1)[1], detail=False)}
    assert {
        assay.store.DATASET,
        assay.store.METRICS,
        assay.store.COSTS,
        assay.store.SUMMARY,
        assay.store.REPORT,
        assay.store.MANIFEST,
    } <= names


@pytest.mark.parametrize(
    "pipeline, run_id",
    [
        ("../../escape", "r1"),
        ("a/b", "r1"),
        ("..", "r1"),
        (".hidden", "r1"),
        ("p", "../r1"),
        ("p", "r\x001"),
        ("p", "r\n1"),
        ("", "r1"),
        ("p", "a\\b"),
    ],
)
def test_a_name_cannot_climb_out_of_the_artifact_root(tmp_path, pipeline, run_id):
    with pytest.raises(ValueError, match="cannot name a folder"):
        Store(tmp_path / "root").run(pipeline, DAY, run_id)
    assert not (tmp_path / "root").exists() and list(tmp_path.iterdir()) == []


def test_a_run_id_given_by_a_user_is_checked_and_a_folder_assay_cannot_make_is_no_run(tmp_path, mem_root):
    """``assay reproduce``/``report``/``reprice``/``compare`` take a run folder from the user: a run id
    of ``..`` (or with a control character) is a NotARunFolder naming it, never a traceback; a folder
    in the artifact root with a control character in its name is listed as no run (history, matrix)."""
    for bad in (f"{mem_root}/p/2026-11-01/..", f"{mem_root}/p/2026-11-01/r\x07", f"{mem_root}/../2026-11-01/r1"):
        with pytest.raises(assay.store.NotARunFolder, match="not a run folder: .*cannot name a folder"):
            assay.store.open_run(bad)
    store = Store(tmp_path / "root")
    good = store.run("p", DAY, "r1")
    good.write_json(assay.store.MANIFEST, {"status": "complete"})
    (tmp_path / "root" / "p" / DAY.isoformat() / "r\x1b2").mkdir()
    assert [r.run_id for r in store.runs("p")] == ["r1"]


def test_dedupe_keeps_one_row_per_example_and_model_preferring_later_successes():
    from assay.responses import RESPONSE_SCHEMA, dedupe

    ids = [f"t{i:03d}" for i in range(20)] + [f"t{i:03d}" for i in range(30)]
    errors = [None] * 20 + ["boom"] * 5 + [None] * 25  # t000..t004 failed again later: the earlier success wins
    t = pa.table({"example_id": ids, "model": ["m"] * 50, "output": [f"{i}" for i in range(50)], "error": errors})
    d = dedupe(t).to_pandas()
    assert sorted(d["example_id"]) == sorted(set(ids)) and not d["example_id"].duplicated().any()
    got = dict(zip(d["example_id"], d["output"]))
    assert got["t000"] == "0" and got["t005"] == "25" and got["t029"] == "49"
    assert RESPONSE_SCHEMA.names[0] == "example_id"


def test_dedupe_across_parts_and_models_matches_a_pandas_reference():
    """Responses concatenated from several parts (chunks) and models: one row per (example, model),
    a success over an error, a later row over an earlier one, in the original order; and without
    loading Arrow's query engine (a quarter of a second per run)."""
    import random
    import subprocess
    import sys

    from assay.responses import dedupe

    rng = random.Random(3)
    parts = []
    for p in range(4):
        n = 40
        parts.append(
            pa.table(
                {
                    "example_id": [f"e{rng.randrange(30):02d}" for _ in range(n)],
                    "model": [rng.choice(["a", "b"]) for _ in range(n)],
                    "output": [f"p{p}-{i}" for i in range(n)],
                    "error": [rng.choice([None, None, "boom"]) for _ in range(n)],
                }
            )
        )
    t = pa.concat_tables(parts)
    assert t.column("example_id").num_chunks == 4
    got = dedupe(t).to_pandas()
    df = t.to_pandas().reset_index(names="pos")
    df["ok"] = df["error"].isna()
    want = df.sort_values(["ok", "pos"]).groupby(["example_id", "model"]).tail(1).sort_values("pos")
    assert list(got["output"]) == list(want["output"])
    code = (
        "import sys, pyarrow as pa; from assay.responses import dedupe; "
        "dedupe(pa.table({'example_id': ['x', 'x'], 'model': ['m', 'm'], 'error': [None, 'e']})); "
        "print('pyarrow.acero' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    ).stdout
    assert out.strip() == "False"
