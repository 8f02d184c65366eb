"""The responses artifact: ``responses/part-<model>-<seq>.parquet``, one row per (example, model, sample).

``sample`` is 0..K−1 for a model called K times per example (repeated sampling), 0 otherwise; a
part written before the column existed reads as sample 0. Parts are written as the invoke stage
goes; a resumed run compacts a model's earlier parts into one (keeping successes only) and calls
the rest again. Readers see one row per (example, model, sample): a success over an error, a
later row over an earlier one.
"""

import hashlib
import json
import os
import re
import time
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.store import RESPONSES, RunFolder

RESPONSE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("model", pa.string()),
        ("sample", pa.int32()),  # 0..K-1: which of the K calls of this example (repeated sampling); 0 for one call
        ("output", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("cache_write_tokens", pa.int64()),
        ("latency_s", pa.float64()),
        ("started_at", pa.timestamp("us", tz="UTC")),
        ("attempts", pa.int32()),
        ("cached", pa.bool_()),
        ("error", pa.string()),
        ("confidence", pa.float64()),  # 0..1 where the provider gave one (log-probabilities, class probabilities)
        # what the endpoint said it served: its model name (a self-hosted server names its own model,
        # whatever the request asked for) and its build fingerprint (null when it gives none)
        ("response_model", pa.string()),
        ("system_fingerprint", pa.string()),
        ("ttft_s", pa.float64()),  # time to the first content token of a streamed call (``stream: true``)
    ]
)
COLUMNS = RESPONSE_SCHEMA.names
#: fields added after ``sample``: a journal line's columns come after it in this order
_LATER = ("response_model", "system_fingerprint", "ttft_s")
#: the fields of a journal line (a JSON array), in order: ``sample`` after the older fields, so
#: that a line written before it existed (one field short) reads as sample 0, and the later
#: fields after it (null in a line written before them)
JOURNAL_FIELDS = [n for n in COLUMNS if n not in ("model", "sample") + _LATER] + ["sample", *_LATER]


def safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", model)


def part_name(model: str, seq: int) -> str:
    return f"{RESPONSES}/part-{safe_name(model)}-{seq:05d}.parquet"


def part_names(run: RunFolder, model: str) -> list[str]:
    prefix = f"part-{safe_name(model)}-"
    # the rest must be the sequence number: model ``a``'s prefix is also the start of model ``a-b``'s parts
    return [
        n
        for n in run.listdir(RESPONSES)
        if n.startswith(prefix) and n.endswith(".parquet") and n[len(prefix) : -len(".parquet")].isdigit()
    ]


def journal_path(run: RunFolder, model: str) -> str:
    """Where a model's per-call journal lives: beside its parts on a local root; on a remote root,
    on this machine's disk (a journal is what a resume on this machine needs)."""
    name = f"journal-{safe_name(model)}.jsonl"
    if not run.store.remote:
        return run._loc(f"{RESPONSES}/{name}")
    base = os.environ.get("ASSAY_LOCK_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "assay", "locks")
    return os.path.join(base, "journals", hashlib.sha256(run.url.encode()).hexdigest()[:32], name)


def remote_journal(run: RunFolder, model: str) -> str | None:
    """On a remote root, the folder of the run folder where a model's journal is also uploaded
    (``responses/journal-<model>.d/``, one immutable object per upload, see
    :class:`assay.calling.fanout.Journal`), so that a resume on another machine repays only the
    calls of the last few seconds; None on a local root."""
    return f"{RESPONSES}/journal-{safe_name(model)}.d" if run.store.remote else None


def drop_remote_journal(run: RunFolder, model: str, keep: str | None = None) -> None:
    """Delete a model's uploaded journal objects (but ``keep``)."""
    d = remote_journal(run, model)
    if d is None:
        return
    for n in run.listdir(d):
        if n != keep:
            run.remove(f"{d}/{n}")


def empty() -> pa.Table:
    """No responses. (``Schema.empty_table`` and ``pa.array`` of Python objects import pandas,
    half a second before a fresh run's first call.)"""
    return pa.Table.from_batches([], schema=RESPONSE_SCHEMA)


def read_journal(run: RunFolder, model: str) -> tuple[pa.Table, list[dict]]:
    """What a killed run journaled for ``model``: the calls it finished (a torn last line is
    dropped), and the measurements of each earlier attempt (its last snapshot: ``wall_s``, ``ok``)."""
    path = journal_path(run, model)
    width = len(JOURNAL_FIELDS)
    cols: list[list] = [[] for _ in range(width)]
    attempts: dict[str, dict] = {}
    sources = []  # this machine's journal, then (on a remote root) every upload of any machine's
    if os.path.exists(path):
        with open(path, "rb") as f:
            sources.append(f.read().splitlines())
    d = remote_journal(run, model)
    if d is not None:
        sources += [run.read_bytes(f"{d}/{n}").splitlines() for n in run.listdir(d)]
    for lines in sources:  # a call in two sources is one row after dedupe
        for line in lines:
            try:
                item = json.loads(line)
            except ValueError:
                break  # the line being written when the process died
            if isinstance(item, list):  # one call per line (journals written before the columns)
                item = {"c": [[v] for v in item]}
            if "c" in item:  # a write's calls, column by column in JOURNAL_FIELDS order
                got = item["c"]
                n = len(got[0])
                for i in range(width):  # a column added since the journal was written is null
                    cols[i].extend(got[i] if i < len(got) else [None] * n)
            else:
                attempts[item["attempt"]] = item  # a later snapshot of an attempt supersedes its earlier ones
    if not cols[0]:
        return empty(), list(attempts.values())
    cols = dict(zip(JOURNAL_FIELDS, cols))
    n = len(cols["example_id"])
    s = RESPONSE_SCHEMA
    arrays = []
    for f in s:
        if f.name == "model":
            arrays.append(pa.array([model] * n, pa.string()))
        elif f.name == "sample":
            arrays.append(pa.array([0 if v is None else v for v in cols["sample"]], f.type))
        elif f.name == "started_at":
            arrays.append(pa.array(cols[f.name], pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(cols[f.name], f.type))
    return pa.Table.from_arrays(arrays, schema=s), list(attempts.values())


def read_responses(run: RunFolder, model: str | None = None) -> pa.Table:
    """All responses of a run (or one model), one row per (example, model, sample): the last successful wins."""
    names = part_names(run, model) if model else [n for n in run.listdir(RESPONSES) if n.endswith(".parquet")]
    if not names:
        return empty()
    tables = [_conform(run.read_table(f"{RESPONSES}/{n}")) for n in names]
    return dedupe(pa.concat_tables(tables))


def _conform(t: pa.Table) -> pa.Table:
    """A part as :data:`RESPONSE_SCHEMA`; a column added since the part was written is null (and
    ``sample`` 0: such a part holds one call per example)."""
    for f in RESPONSE_SCHEMA:
        if f.name not in t.column_names:
            t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
    t = t.select(COLUMNS).cast(RESPONSE_SCHEMA)
    if t["sample"].null_count:
        t = t.set_column(COLUMNS.index("sample"), "sample", pc.fill_null(t["sample"], pa.scalar(0, pa.int32())))
    return t


def dedupe(t: pa.Table) -> pa.Table:
    """Keep one row per (example_id, model, sample), preferring a success over an error, later over earlier."""
    if t.num_rows == 0:
        return t
    # one code per (example_id, model, sample) from hash kernels (Table.group_by would load Arrow's
    # query engine, acero, a quarter of a second per process); numpy picks each group's best row
    parts = [pc.cast(t["example_id"], pa.large_string()), pc.cast(t["model"], pa.large_string())]
    if "sample" in t.column_names:
        parts.append(pc.cast(pc.fill_null(t["sample"], 0), pa.large_string()))
    key = pc.binary_join_element_wise(*parts, pa.scalar("\x00", pa.large_string())).combine_chunks()
    codes = pc.dictionary_encode(key).indices.to_numpy(zero_copy_only=False)
    if len(np.unique(codes)) == t.num_rows:
        return t
    ok = pc.is_null(t["error"]).to_numpy(zero_copy_only=False)
    order = np.lexsort((np.arange(t.num_rows), ok, codes))  # by group, then errors before successes, then position
    last = np.ones(len(order), dtype=bool)
    last[:-1] = codes[order][1:] != codes[order][:-1]
    return t.take(pa.array(np.sort(order[last])))  # the kept rows, in their original order


class Resumed(NamedTuple):
    """What earlier attempts of a model left: the examples answered, the next part number, the
    recorded time of those answers (``latency_s`` summed), each attempt's measurements, and the
    (example, sample) pairs answered."""

    ids: set[str]
    seq: int
    latency_s: float
    attempts: list[dict]
    pairs: set[tuple[str, int]] = frozenset()


def compact(run: RunFolder, model: str) -> Resumed:
    """Resume: keep the successful responses of earlier attempts in one part; return what they left.

    The journal's calls go into that part; what stays in the journal is each earlier attempt's
    last measurement, so that a run killed again still carries them."""
    names = part_names(run, model)
    journaled, attempts = read_journal(run, model)
    path = journal_path(run, model)
    if not names and not journaled.num_rows:
        if os.path.exists(path) and not attempts:
            os.remove(path)
        if not attempts:
            drop_remote_journal(run, model)
        return Resumed(set(), 0, 0.0, attempts, set())
    parts = read_responses(run, model)
    t = dedupe(pa.concat_tables([parts, journaled])) if journaled.num_rows else parts
    ok = t.filter(pc.is_null(t["error"]))
    seq = max((int(n.rsplit("-", 1)[1].split(".")[0]) for n in names), default=-1) + 1
    if len(names) > 1 or ok.num_rows != t.num_rows or journaled.num_rows:
        run.write_table(part_name(model, seq), ok)
        for n in names:
            run.remove(f"{RESPONSES}/{n}")
        seq += 1
    if os.path.exists(path):  # its calls are in the part just written: keep only the measurements
        if attempts:
            with open(path + ".tmp", "wb") as f:
                f.write("".join(json.dumps(a) + "\n" for a in attempts).encode())
            os.replace(path + ".tmp", path)
        else:
            os.remove(path)
    d = remote_journal(run, model)
    if d is not None and run.listdir(d):  # the same on the shared root, for another machine's resume
        keep = None
        if attempts:
            keep = f"compacted-{time.time():.6f}.jsonl"
            run.write_text(f"{d}/{keep}", "".join(json.dumps(a) + "\n" for a in attempts))
        drop_remote_journal(run, model, keep=keep)
    latency = pc.sum(ok["latency_s"]).as_py() or 0.0
    eids = ok["example_id"].to_pylist()
    return Resumed(set(eids), seq, float(latency), attempts, set(zip(eids, ok["sample"].to_pylist())))


def served(run: RunFolder, requested: dict[str, str | None]) -> dict[str, dict]:
    """Per model whose endpoint named another model than the one requested (``requested``: model
    name → its config's ``model``), the distinct served names and system fingerprints in its
    responses: a self-hosted server answers under its own name, and a provider may route a
    request to a newer snapshot. Models served under their requested name are left out."""
    want = ["model", "response_model", "system_fingerprint"]
    seen: dict[str, tuple[set, set]] = {}
    for n in run.listdir(RESPONSES):
        if not n.endswith(".parquet"):
            continue
        if "response_model" not in run.parquet_schema(f"{RESPONSES}/{n}")[0].names:
            continue  # written before the column
        t = run.read_table(f"{RESPONSES}/{n}", columns=want)
        for model, rm, fp in zip(*(t[c].to_pylist() for c in want)):
            names, fps = seen.setdefault(model, (set(), set()))
            if rm is not None:
                names.add(rm)
            if fp is not None:
                fps.add(fp)
    out = {}
    for model, (names, fps) in sorted(seen.items()):
        if names and names != {requested.get(model)}:
            out[model] = {"requested": requested.get(model), "response_model": sorted(names), "system_fingerprint": sorted(fps)}
    return out
