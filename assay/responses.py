"""The responses artifact: ``responses/part-<model>-<seq>.parquet``, one row per (example, model).

Parts are written as the invoke stage goes; a resumed run compacts a model's earlier parts into
one (keeping successes only) and calls the rest again. Readers see one row per (example, model):
a success over an error, a later row over an earlier one.
"""

import re
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from assay.store import RESPONSES, RunFolder

RESPONSE_SCHEMA = pa.schema([
    ("example_id", pa.string()),
    ("model", pa.string()),
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
])
COLUMNS = RESPONSE_SCHEMA.names


def safe_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", model)


def part_name(model: str, seq: int) -> str:
    return f"{RESPONSES}/part-{safe_name(model)}-{seq:05d}.parquet"


def part_names(run: RunFolder, model: str) -> list[str]:
    prefix = f"part-{safe_name(model)}-"
    # the rest must be the sequence number: model ``a``'s prefix is also the start of model ``a-b``'s parts
    return [n for n in run.listdir(RESPONSES) if n.startswith(prefix) and n.endswith(".parquet")
            and n[len(prefix):-len(".parquet")].isdigit()]


def journal_path(run: RunFolder, model: str) -> str:
    """Where a model's per-call journal lives: beside its parts on a local root; on a remote root,
    on this machine's disk (a journal is what a resume on this machine needs)."""
    import hashlib
    import os

    name = f"journal-{safe_name(model)}.jsonl"
    if not run.store.remote:
        return run._loc(f"{RESPONSES}/{name}")
    base = os.environ.get("ASSAY_LOCK_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "assay", "locks")
    return os.path.join(base, "journals", hashlib.sha256(run.url.encode()).hexdigest()[:32], name)


def empty() -> pa.Table:
    """No responses. (``Schema.empty_table`` and ``pa.array`` of Python objects import pandas,
    half a second before a fresh run's first call.)"""
    return pa.Table.from_batches([], schema=RESPONSE_SCHEMA)


def read_journal(run: RunFolder, model: str) -> tuple[pa.Table, list[dict]]:
    """What a killed run journaled for ``model``: the calls it finished (a torn last line is
    dropped), and the measurements of each earlier attempt (its last snapshot: ``wall_s``, ``ok``)."""
    import json
    import os

    path = journal_path(run, model)
    rows = []
    attempts: dict[str, dict] = {}
    if os.path.exists(path):
        with open(path, "rb") as f:
            for line in f:
                try:
                    item = json.loads(line)
                except ValueError:
                    break  # the line being written when the process died
                if isinstance(item, dict):
                    attempts[item["attempt"]] = item  # a later snapshot of an attempt supersedes its earlier ones
                else:
                    rows.append(item)
    if not rows:
        return empty(), list(attempts.values())
    width = len(RESPONSE_SCHEMA) - 1
    rows = [r + [None] * (width - len(r)) for r in rows]  # a journal written before a column was added
    cols = list(zip(*rows)) if rows else [[] for _ in range(width)]
    s = RESPONSE_SCHEMA
    arrays = [pa.array(cols[0], pa.string()), pa.array([model] * len(rows), pa.string())]
    for i, f in enumerate(list(s)[2:], start=1):
        arrays.append(pa.array(cols[i], pa.int64()).cast(f.type) if f.name == "started_at" else pa.array(cols[i], f.type))
    return pa.Table.from_arrays(arrays, schema=s), list(attempts.values())


def read_responses(run: RunFolder, model: str | None = None) -> pa.Table:
    """All responses of a run (or one model), one row per (example, model): the last successful wins."""
    names = part_names(run, model) if model else [n for n in run.listdir(RESPONSES) if n.endswith(".parquet")]
    if not names:
        return empty()
    tables = [_conform(run.read_table(f"{RESPONSES}/{n}")) for n in names]
    return dedupe(pa.concat_tables(tables))


def _conform(t: pa.Table) -> pa.Table:
    """A part as :data:`RESPONSE_SCHEMA`; a column added since the part was written is null."""
    for f in RESPONSE_SCHEMA:
        if f.name not in t.column_names:
            t = t.append_column(f.name, pa.nulls(t.num_rows, f.type))
    return t.select(COLUMNS).cast(RESPONSE_SCHEMA)


def dedupe(t: pa.Table) -> pa.Table:
    """Keep one row per (example_id, model), preferring a success over an error, later over earlier."""
    if t.num_rows == 0:
        return t
    import numpy as np

    # one code per (example_id, model) from hash kernels (Table.group_by would load Arrow's query
    # engine, acero, a quarter of a second per process); numpy picks each group's best row
    key = pc.binary_join_element_wise(pc.cast(t["example_id"], pa.large_string()), pc.cast(t["model"], pa.large_string()),
                                      pa.scalar("\x00", pa.large_string())).combine_chunks()
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
    recorded time of those answers (``latency_s`` summed), and each attempt's measurements."""

    ids: set[str]
    seq: int
    latency_s: float
    attempts: list[dict]


def compact(run: RunFolder, model: str) -> Resumed:
    """Resume: keep the successful responses of earlier attempts in one part; return what they left.

    The journal's calls go into that part; what stays in the journal is each earlier attempt's
    last measurement, so that a run killed again still carries them."""
    import json
    import os

    names = part_names(run, model)
    journaled, attempts = read_journal(run, model)
    path = journal_path(run, model)
    if not names and not journaled.num_rows:
        if os.path.exists(path) and not attempts:
            os.remove(path)
        return Resumed(set(), 0, 0.0, attempts)
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
    latency = pc.sum(ok["latency_s"]).as_py() or 0.0
    return Resumed(set(ok["example_id"].to_pylist()), seq, float(latency), attempts)
