"""Production logs as datasets and replays: one reader per format, one table shape for all.

:func:`read_log` reads ``source`` (a file, a folder or a glob; a local path or an fsspec URL) in one
of :data:`FORMATS` and returns one Arrow table with the standard columns of
:data:`assay.logs.common.STANDARD` (``example_id``, ``messages``, ``output``, ``model``,
``request_time``, the token counts, ``latency_s``, ``ttft_s``, ``provider_cost_usd``, ``error``)
followed by the record's other attributes as columns named by their keys, and the counts of what it
read (:class:`ReadStats`). The load stage and the ``replay`` provider both call it; neither knows a
format.
"""

import importlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.logs.common import (
    MESSAGE,
    MESSAGES,
    STANDARD,
    STANDARD_NAMES,
    LogError,
    ReadStats,
    list_files,
)

#: format name -> the module whose ``read(source, on_incomplete, storage_options)`` reads it
FORMATS = {
    "otel": "assay.logs.otel",
    "openinference": "assay.logs.openinference",
    "langfuse": "assay.logs.langfuse",
    "litellm": "assay.logs.litellm",
    "openai-batch": "assay.logs.openai_batch",
}
ON_INCOMPLETE = ("error", "skip")


def read_log(
    format: str, source: str, *, on_incomplete: str = "error", storage_options: dict | None = None
) -> tuple[pa.Table, ReadStats]:
    """The chat calls of a production log as one table (see the module's docstring) and the counts
    of records read, chat calls kept, non-chat records skipped and incomplete ones skipped.

    A chat record without its messages or its answer is a :class:`LogError` naming the file, the
    line or record and the missing field, or with ``on_incomplete="skip"`` left out and counted.
    A source that names no file is a FileNotFoundError."""
    if format not in FORMATS:
        raise ValueError(f"unknown log format {format!r} (known: {', '.join(FORMATS)})")
    if on_incomplete not in ON_INCOMPLETE:
        raise ValueError(f"on_incomplete must be one of {', '.join(ON_INCOMPLETE)}, got {on_incomplete!r}")
    reader = importlib.import_module(FORMATS[format])
    table, stats = reader.read(source, on_incomplete=on_incomplete, storage_options=storage_options)
    return _first_of_each(table, stats)


def _first_of_each(table: pa.Table, stats: ReadStats) -> tuple[pa.Table, ReadStats]:
    """One row per ``example_id``: the first (an exporter that retried wrote the span twice, an
    export window read twice); the others are counted as duplicates."""
    n = table.num_rows
    if n < 2 or pc.count_distinct(table["example_id"]).as_py() == n:
        return table, stats
    from assay.logs.otlp import np_of  # lazy: the OTLP reader only for its format

    order = pc.sort_indices(table["example_id"])  # stable: the first of equal ids stays first
    ids = table["example_id"].take(order)
    same = np_of(pc.fill_null(pc.equal(ids.slice(1), ids.slice(0, n - 1)), False))
    drop = np_of(order)[1:][same]
    keep = np.ones(n, bool)
    keep[drop] = False
    stats.duplicates += int((~keep).sum())
    stats.chat -= int((~keep).sum())
    return table.filter(pa.array(keep)), stats


def log_files(format: str, source: str, storage_options: dict | None = None) -> list[str]:
    """The files a read of ``source`` in ``format`` would read (FileNotFoundError when none)."""
    reader = importlib.import_module(FORMATS[format])
    return list_files(source, storage_options, getattr(reader, "SUFFIXES", ()))


__all__ = [
    "FORMATS",
    "MESSAGE",
    "MESSAGES",
    "ON_INCOMPLETE",
    "STANDARD",
    "STANDARD_NAMES",
    "LogError",
    "ReadStats",
    "log_files",
    "read_log",
]
