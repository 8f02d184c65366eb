"""The load stage's logic (assay.dataset): reading every local format, ids, filtering, sampling.

Every source is a real file written into tmp_path; expected rows are worked out by hand.
"""

import csv
import hashlib
import json
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import DatasetConfig, Partition, PromptConfig, Sample
from assay.dataset import (
    DatasetError,
    detect_format,
    example_ids,
    fingerprint,
    parse_window,
    prepare,
    read_source,
    template_fields,
)

AS_OF = date(2026, 11, 1)
PROMPT = PromptConfig(template="Ticket: {text}")

# Ids deliberately out of order in the file: the prepared table is sorted by example_id.
ROWS = [
    {"id": "t03", "text": "refund please", "label": "billing", "lang": "de", "n": 3},
    {"id": "t01", "text": "app crashes", "label": "technical", "lang": "en", "n": 1},
    {"id": "t02", "text": "reset password", "label": "account", "lang": "en", "n": 2},
    {"id": "t05", "text": "double charge", "label": "billing", "lang": "fr", "n": 5},
    {"id": "t04", "text": "login fails", "label": "account", "lang": "de", "n": 4},
]


def write_parquet(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def write_csv(path: Path, rows: list[dict]) -> str:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_json_array(path: Path, rows: list[dict]) -> str:
    path.write_text(json.dumps(rows, indent=1))
    return str(path)


def cfg(**kw) -> DatasetConfig:
    base = {"source": "unused.parquet", "id": "id", "reference": "label", "slices": ["lang"]}
    base.update(kw)
    return DatasetConfig(**{k: v for k, v in base.items() if v is not None})


# ------------------------------------------------------------------------------------------------ formats


def test_every_format_gives_the_same_prepared_table(tmp_path):
    sources = {
        "parquet": write_parquet(tmp_path / "d.parquet", ROWS),
        "csv": write_csv(tmp_path / "d.csv", ROWS),
        "jsonl": write_jsonl(tmp_path / "d.jsonl", ROWS),
        "json": write_json_array(tmp_path / "d.json", ROWS),
    }
    prepared = {}
    for fmt, src in sources.items():
        assert detect_format(src, None) == fmt
        raw = read_source(src)
        assert raw.num_rows == 5 and raw.column_names == ["id", "text", "label", "lang", "n"], fmt
        prepared[fmt] = prepare(raw, cfg(), PROMPT, AS_OF)
    ref = prepared["parquet"]
    # example_id first, then reference (a copy of label), then the file's columns; sorted by id
    assert ref.column_names == ["example_id", "reference", "id", "text", "label", "lang", "n"]
    assert ref["example_id"].to_pylist() == ["t01", "t02", "t03", "t04", "t05"]
    assert ref["reference"].to_pylist() == ["technical", "account", "billing", "account", "billing"]
    assert ref["n"].to_pylist() == [1, 2, 3, 4, 5]
    for fmt, t in prepared.items():
        assert t.equals(ref), f"{fmt} differs from parquet:\n{t.schema}\nvs\n{ref.schema}"


def test_format_detection(tmp_path):
    assert detect_format("a/b/DATA.PARQUET", None) == "parquet"  # case-insensitive extension
    assert detect_format("x.pq", None) == "parquet"
    assert detect_format("x.ndjson", None) == "jsonl"
    assert detect_format("s3://bucket/x.csv?version=3", None) == "csv"  # query string ignored
    assert detect_format(str(tmp_path / "whatever.txt"), "csv") == "csv"  # explicit format wins
    # an explicit format reads a file whose extension says nothing
    src = write_csv(tmp_path / "rows.txt", ROWS)
    assert read_source(src, "csv").num_rows == 5


def test_unknown_extension_is_a_clear_error(tmp_path):
    existing = tmp_path / "data.xlsx"
    existing.write_bytes(b"not a spreadsheet")
    with pytest.raises(DatasetError, match=r"cannot tell the format of .*data\.xlsx.*set dataset\.format"):
        read_source(str(existing))
    with pytest.raises(DatasetError, match="dataset.format"):
        detect_format(str(tmp_path / "missing" / "data.xlsx"), None)


def test_missing_file_names_the_file(tmp_path):
    src = str(tmp_path / "nowhere" / "test.parquet")
    with pytest.raises(FileNotFoundError, match=r"nowhere/test\.parquet"):
        read_source(src)
    with pytest.raises(FileNotFoundError, match=r"nowhere/test\.parquet"):
        fingerprint(src)


def test_fingerprint_follows_the_content(tmp_path):
    p = tmp_path / "d.jsonl"
    write_jsonl(p, ROWS)
    fp1 = fingerprint(str(p))
    # sha256 of the bytes, computed independently
    assert fp1 == "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest()
    write_jsonl(p, ROWS)  # same bytes again: same fingerprint
    assert fingerprint(str(p)) == fp1
    write_jsonl(p, ROWS[:-1])  # one row less
    assert fingerprint(str(p)) != fp1
    write_jsonl(p, [dict(ROWS[0], text="refund please!")] + ROWS[1:])  # one character changed
    fp3 = fingerprint(str(p))
    assert fp3 != fp1 and fp3.startswith("sha256:")


# ------------------------------------------------------------------------------------------------ ids


def test_template_fields_and_windows():
    assert template_fields("{a} and {b.x} and {c[0]} and {a} {d!r} {e:>5}") == ["a", "b", "c", "d", "e"]
    assert parse_window("1d") == timedelta(days=1)
    assert parse_window("24h") == timedelta(hours=24)
    assert parse_window("2w") == timedelta(days=14)


def test_id_column_becomes_text_example_id():
    t = pa.table({"num": [30, 10, 20], "text": ["c", "a", "b"], "label": ["x", "y", "z"]})
    out = prepare(t, cfg(id="num", slices=[]), PROMPT, None)
    assert out.schema.field("example_id").type == pa.string()
    # sorted as text: "10" < "20" < "30"
    assert out["example_id"].to_pylist() == ["10", "20", "30"]
    assert out["num"].to_pylist() == [10, 20, 30]  # the original column is kept as it was
    assert out["reference"].to_pylist() == ["y", "z", "x"]


def _hash(*values) -> str:
    return hashlib.sha256("\x1f".join(values).encode()).hexdigest()[:16]


def test_hashed_ids_are_stable_and_depend_on_the_inputs():
    t = pa.table({"text": ["refund please", "app crashes"], "label": ["billing", "technical"], "lang": ["de", "en"]})
    c = cfg(id=None, slices=[])
    a = prepare(t, c, PROMPT, None)
    b = prepare(t, c, PROMPT, None)
    assert a["example_id"].to_pylist() == b["example_id"].to_pylist()
    # the template uses only {text}: the id is the hash of the text alone
    expected = {_hash("refund please"): "billing", _hash("app crashes"): "technical"}
    assert dict(zip(a["example_id"].to_pylist(), a["reference"].to_pylist())) == expected
    # a different input gives a different id; the same input in another table the same id
    t2 = pa.table({"text": ["refund please!", "app crashes"], "label": ["billing", "technical"], "lang": ["de", "en"]})
    ids2 = set(prepare(t2, c, PROMPT, None)["example_id"].to_pylist())
    assert ids2 == {_hash("refund please!"), _hash("app crashes")}
    # with dataset.input the hash covers every input field, joined by \x1f
    ids3 = prepare(t, cfg(id=None, slices=[], input=["text", "lang"]), PROMPT, None)["example_id"].to_pylist()
    assert sorted(ids3) == sorted([_hash("refund please", "de"), _hash("app crashes", "en")])
    # nulls hash as empty text
    assert example_ids(pa.table({"a": [None]}), None, ["a"]).to_pylist() == [_hash("")]


def test_duplicate_ids_are_an_error_naming_the_fix():
    t = pa.table({"id": ["a", "b", "a"], "text": ["x", "y", "z"], "label": ["l", "l", "l"]})
    with pytest.raises(DatasetError, match=r"not unique \(1 duplicates\); set dataset\.id to a unique column"):
        prepare(t, cfg(slices=[]), PROMPT, None)
    # hashed ids collide when two examples have the same input
    t = pa.table({"text": ["same", "same", "other"], "label": ["a", "b", "c"]})
    with pytest.raises(DatasetError, match="set dataset.id"):
        prepare(t, cfg(id=None, slices=[]), PROMPT, None)


def test_reference_column_replaces_an_existing_reference_column():
    t = pa.table({"id": [2, 1], "text": ["b", "a"], "label": ["B", "A"], "reference": ["junk2", "junk1"]})
    out = prepare(t, cfg(slices=[]), PROMPT, None)
    assert out.column_names.count("reference") == 1
    assert out["reference"].to_pylist() == ["A", "B"]
    # reference: reference keeps the column as it is
    out = prepare(t, cfg(slices=[], reference="reference"), PROMPT, None)
    assert out.column_names.count("reference") == 1 and out["reference"].to_pylist() == ["junk1", "junk2"]
    # an example_id column in the source is replaced by the computed one
    t = pa.table({"example_id": ["zz", "yy"], "id": [2, 1], "text": ["b", "a"], "label": ["B", "A"]})
    out = prepare(t, cfg(slices=[]), PROMPT, None)
    assert out.column_names.count("example_id") == 1 and out["example_id"].to_pylist() == ["1", "2"]


@pytest.mark.parametrize(
    "kw, prompt, needle",
    [
        ({"id": "ticket_id"}, PROMPT, "dataset.id column 'ticket_id'"),
        ({"reference": "gold"}, PROMPT, "dataset.reference column 'gold'"),
        ({"slices": ["lang", "channel"]}, PROMPT, "dataset.slices column 'channel'"),
        ({"partition": Partition(column="created_at")}, PROMPT, "dataset.partition.column 'created_at'"),
        ({}, PromptConfig(template="{subject}: {text}"), "input field 'subject' (used by the prompt template)"),
        ({"input": ["text", "body"]}, PROMPT, "dataset.input column 'body'"),
    ],
)
def test_missing_columns_are_named_with_the_available_ones(kw, prompt, needle):
    t = pa.Table.from_pylist(ROWS)
    with pytest.raises(DatasetError) as e:
        prepare(t, cfg(**kw), prompt, AS_OF)
    msg = str(e.value)
    assert needle in msg
    assert "(columns: id, text, label, lang, n)" in msg


def test_several_missing_columns_are_reported_together():
    t = pa.Table.from_pylist(ROWS)
    with pytest.raises(DatasetError) as e:
        prepare(t, cfg(id="tid", reference="gold"), PROMPT, AS_OF)
    assert "'tid'" in str(e.value) and "'gold'" in str(e.value)


def test_each_problem_names_its_key_path_and_the_file():
    """What prepare() finds is also a list of (key path within the pipeline, message), for the
    preflight; with ``source`` the messages name the file."""
    t = pa.Table.from_pylist(ROWS)
    with pytest.raises(DatasetError) as e:
        prepare(
            t,
            cfg(id="tid", slices=["lang", "channel"]),
            PromptConfig(template="{subject}: {text}"),
            AS_OF,
            source="/data/x.parquet",
        )
    cols = " not in /data/x.parquet (columns: id, text, label, lang, n)"
    assert e.value.problems == [
        (("dataset", "id"), "dataset.id column 'tid'" + cols),
        (("dataset", "slices", 1), "dataset.slices column 'channel'" + cols),
        (("prompt", "template"), "input field 'subject' (used by the prompt template)" + cols),
    ]
    dup = pa.table({"id": ["a", "b", "a"], "text": ["x", "y", "z"], "label": ["l", "l", "l"]})
    with pytest.raises(DatasetError) as e:
        prepare(dup, cfg(slices=[]), PROMPT, None, source="/data/x.parquet")
    ((key, msg),) = e.value.problems
    assert key == ("dataset", "id") and "'a'" in msg and "/data/x.parquet" in msg


def test_a_prepared_source_is_taken_once_and_only_for_its_own_request(tmp_path):
    import assay.dataset

    src = write_parquet(tmp_path / "d.parquet", ROWS)
    c = cfg(slices=[])
    key = assay.dataset.prepared_key(src, c, PROMPT, AS_OF, None)
    table, n = assay.dataset.load_prepared(src, c, PROMPT, AS_OF)
    assert n == 5 and key is not None
    assert assay.dataset.PreparedSource(key, (table, n)).take(src, c, PROMPT, AS_OF, sample=2) is None  # another request
    kept = assay.dataset.PreparedSource(key, (table, n))
    assert kept.take(src, c, PROMPT, AS_OF, None)[0] is table
    assert kept.take(src, c, PROMPT, AS_OF, None) is None  # taken: nothing is held any more
    kept = assay.dataset.PreparedSource(key, (table, n))
    write_parquet(tmp_path / "d.parquet", ROWS[:3])  # a changed file is read again
    assert kept.take(src, c, PROMPT, AS_OF, None) is None
    assert assay.dataset.load_prepared(src, c, PROMPT, AS_OF)[1] == 3
    assert (
        assay.dataset.prepared_key("some/dataset", cfg(slices=[], format="hf"), PROMPT, AS_OF, None) is None
    )  # no version to tell
    (tmp_path / "bad.parquet").write_bytes(b"junk")
    with pytest.raises(assay.dataset.UnreadableSource, match=r"cannot read .*bad\.parquet as parquet"):
        assay.dataset.load_prepared(str(tmp_path / "bad.parquet"), c, PROMPT, AS_OF)


# ------------------------------------------------------------------------------------------------ partitions

# One example per day; as_of = 2026-11-01.
DAYS = [date(2026, 10, 25), date(2026, 10, 26), date(2026, 10, 27), date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]


def _dated(values, typ=None) -> pa.Table:
    return pa.table(
        {
            "id": [f"d{i}" for i in range(len(values))],
            "text": [f"x{i}" for i in range(len(values))],
            "label": ["a"] * len(values),
            "when": pa.array(values, typ),
        }
    )


def _kept(table: pa.Table, window: str | None, as_of=AS_OF) -> list[str]:
    c = cfg(slices=[], partition=Partition(column="when", window=window))
    return prepare(table, c, PROMPT, as_of)["example_id"].to_pylist()


# d0=10-25 d1=10-26 d2=10-27 d3=10-31 d4=11-01 d5=11-02
#   no window: everything up to and including 11-01 -> d0..d4
#   1d / 24h:  (10-31, 11-01]                       -> d4
#   7d:        (10-25, 11-01]                       -> d1 d2 d3 d4 (10-25 itself is excluded)
EXPECTED_BY_WINDOW = {
    None: ["d0", "d1", "d2", "d3", "d4"],
    "1d": ["d4"],
    "24h": ["d4"],
    "7d": ["d1", "d2", "d3", "d4"],
}


@pytest.mark.parametrize("window", list(EXPECTED_BY_WINDOW))
def test_partition_on_a_date32_column(window):
    assert _kept(_dated(DAYS, pa.date32()), window) == EXPECTED_BY_WINDOW[window]


@pytest.mark.parametrize("window", list(EXPECTED_BY_WINDOW))
def test_partition_on_an_iso_string_column(window):
    # dates, date-times and date-times with an offset: the first ten characters are the day
    values = [
        "2026-10-25T23:59:59",
        "2026-10-26",
        "2026-10-27T00:00:00Z",
        "2026-10-31",
        "2026-11-01T23:59:59.999",
        "2026-11-02T00:00:00",
    ]
    assert _kept(_dated(values, pa.string()), window) == EXPECTED_BY_WINDOW[window]


@pytest.mark.parametrize("window", list(EXPECTED_BY_WINDOW))
def test_partition_on_a_utc_timestamp_column(window):
    # each day's first or last second, so an off-by-one at midnight shows
    utc = UTC
    values = [
        datetime(2026, 10, 25, 23, 59, 59, tzinfo=utc),
        datetime(2026, 10, 26, 0, 0, 0, tzinfo=utc),
        datetime(2026, 10, 27, 12, 0, tzinfo=utc),
        datetime(2026, 10, 31, 23, 59, 59, tzinfo=utc),
        datetime(2026, 11, 1, 0, 0, 0, tzinfo=utc),
        datetime(2026, 11, 2, 0, 0, 0, tzinfo=utc),
    ]
    assert _kept(_dated(values, pa.timestamp("us", tz="UTC")), window) == EXPECTED_BY_WINDOW[window]


def test_partition_dates_a_tz_aware_timestamp_in_utc():
    """dataset.py: "tz-aware timestamps are dated in UTC, so a run's window does not move".

    A column stored with tz=America/New_York holds instants; their UTC day decides:
      d0 = 2026-11-01T02:00Z  (2026-10-31 22:00 EDT)  -> UTC day 11-01 -> kept by a 1d window at 11-01
      d1 = 2026-11-02T03:00Z  (2026-11-01 22:00 EST)  -> UTC day 11-02 -> after as_of, dropped
      d2 = 2026-11-01T12:00Z  (2026-11-01 07:00 EST)  -> UTC day 11-01 -> kept
    """
    utc = UTC
    values = [
        datetime(2026, 11, 1, 2, 0, tzinfo=utc),
        datetime(2026, 11, 2, 3, 0, tzinfo=utc),
        datetime(2026, 11, 1, 12, 0, tzinfo=utc),
    ]
    t = _dated(values, pa.timestamp("us", tz="America/New_York"))
    assert _kept(t, "1d") == ["d0", "d2"]
    assert _kept(t, None) == ["d0", "d2"]


def test_partition_on_a_naive_timestamp_and_other_types():
    values = [datetime(2026, 10, 31, 23, 59, 59), datetime(2026, 11, 1, 0, 0), datetime(2026, 11, 2, 0, 0)]
    assert _kept(_dated(values, pa.timestamp("s")), "1d") == ["d1"]
    with pytest.raises(DatasetError, match="partition column has type int64"):
        _kept(_dated([1, 2, 3], pa.int64()), None)


def test_no_as_of_means_no_filter():
    assert _kept(_dated(DAYS, pa.date32()), "1d", as_of=None) == ["d0", "d1", "d2", "d3", "d4", "d5"]


def test_partition_gives_the_same_rows_from_every_format(tmp_path):
    # CSV reads the column as date32, JSONL as a timestamp, the JSON array and Parquet as strings
    rows = [{"id": f"d{i}", "text": f"x{i}", "label": "a", "when": d.isoformat()} for i, d in enumerate(DAYS)]
    c = cfg(slices=[], partition=Partition(column="when", window="7d"))
    for src in (
        write_parquet(tmp_path / "d.parquet", rows),
        write_csv(tmp_path / "d.csv", rows),
        write_jsonl(tmp_path / "d.jsonl", rows),
        write_json_array(tmp_path / "d.json", rows),
    ):
        assert prepare(read_source(src), c, PROMPT, AS_OF)["example_id"].to_pylist() == EXPECTED_BY_WINDOW["7d"], src


# ------------------------------------------------------------------------------------------------ sampling


def _many(n=50) -> pa.Table:
    return pa.table({"id": [f"s{i:03d}" for i in range(n)], "text": [f"t{i}" for i in range(n)], "label": ["a"] * n})


def test_seeded_sampling_is_reproducible_and_seed_dependent():
    t = _many()
    c1 = cfg(slices=[], sample=Sample(n=10, seed=1))
    a = prepare(t, c1, PROMPT, None)["example_id"].to_pylist()
    b = prepare(t, c1, PROMPT, None)["example_id"].to_pylist()
    assert len(a) == 10 and len(set(a)) == 10 and a == b
    assert a == sorted(a)  # the sample keeps the stable order
    other = prepare(t, cfg(slices=[], sample=Sample(n=10, seed=2)), PROMPT, None)["example_id"].to_pylist()
    assert len(other) == 10 and set(other) != set(a)
    # the file's row order does not matter: the same seed picks the same examples
    shuffled = t.take(pa.array(random.Random(7).sample(range(50), 50)))
    assert prepare(shuffled, c1, PROMPT, None)["example_id"].to_pylist() == a


def test_sample_argument_overrides_the_config():
    t = _many()
    c = cfg(slices=[], sample=Sample(n=10, seed=1))
    assert prepare(t, c, PROMPT, None, sample=4).num_rows == 4
    assert prepare(t, c, PROMPT, None, sample=30).num_rows == 30
    # a sample larger than the data keeps everything
    assert prepare(t, c, PROMPT, None, sample=500).num_rows == 50
    # no sample anywhere: everything
    assert prepare(t, cfg(slices=[]), PROMPT, None).num_rows == 50
    # the override still uses the configured seed: the same 4 every time
    assert (
        prepare(t, c, PROMPT, None, sample=4)["example_id"].to_pylist()
        == prepare(t, c, PROMPT, None, sample=4)["example_id"].to_pylist()
    )


def test_sampling_happens_after_the_partition_filter():
    # 6 dated rows, the 7d window keeps 4 (d1..d4); a sample of 3 must come from those 4
    t = _dated(DAYS, pa.date32())
    c = cfg(slices=[], partition=Partition(column="when", window="7d"), sample=Sample(n=3, seed=5))
    ids = prepare(t, c, PROMPT, AS_OF)["example_id"].to_pylist()
    assert len(ids) == 3 and set(ids) <= {"d1", "d2", "d3", "d4"}
