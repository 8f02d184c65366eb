"""Langfuse observations (format ``langfuse``), from the blob-storage export: Parquet, JSON lines,
JSON or CSV files (gzip-compressed or not).

Read after the Langfuse "Blob Storage Export Field Reference" (langfuse-docs
``blob-storage-export-fields.mdx``, 2026: enriched ``observations_v2/`` and legacy ``observations/``
with snake_case fields; the older exports' camelCase names — ``startTime``, ``completionStartTime``,
``usageDetails``, ``costDetails``, ``providedModelName`` — are read too):

* a chat call is an observation of ``type`` ``GENERATION``; spans, events, embeddings, tools, ... are
  skipped and counted. Given a folder, only the files under ``observations_v2/`` (else
  ``observations/``) are read when it has such a folder; legacy ``traces/`` files there give each
  observation its trace's ``user_id``, ``session_id``, ``tags``, ``release`` and ``trace_name``;
* its conversation is ``input`` (JSON: a list of OpenAI-shaped messages, or ``{"messages": [...]}``;
  plain text is one user message); its answer ``output`` (JSON: a message, a ``choices`` response,
  or text);
* ``provided_model_name`` is the model; ``usage_details`` ``input`` / ``output`` /
  ``input_cached_tokens`` (or ``cache_read_input_tokens``) the tokens; ``cost_details.total`` (else
  ``total_cost``) the provider cost; ``start_time`` the request time, ``end_time`` −
  ``start_time`` the latency, ``completion_start_time`` − ``start_time`` the time to first token;
* ``level: ERROR`` marks a failed call (kept, with ``error`` = ``status_message``);
* the other fields and the keys of ``metadata`` are attribute columns.
"""

import json
import os

import pyarrow as pa

from assay.logs.common import (
    STANDARD_NAMES,
    LogError,
    ReadStats,
    bad_line,
    incomplete,
    json_text,
    list_files,
    maybe_json,
    openai_message,
    read_bytes,
    records,
    rows_table,
    text_of,
    utc_micros,
)

SUFFIXES = (".parquet", ".jsonl", ".ndjson", ".json", ".csv", ".jsonl.gz", ".ndjson.gz", ".json.gz", ".csv.gz")
#: camelCase names of older exports -> the current snake_case names
CAMEL = {
    "traceId": "trace_id",
    "projectId": "project_id",
    "startTime": "start_time",
    "endTime": "end_time",
    "completionStartTime": "completion_start_time",
    "parentObservationId": "parent_observation_id",
    "statusMessage": "status_message",
    "providedModelName": "provided_model_name",
    "modelParameters": "model_parameters",
    "usageDetails": "usage_details",
    "costDetails": "cost_details",
    "totalCost": "total_cost",
    "promptName": "prompt_name",
    "promptVersion": "prompt_version",
    "promptId": "prompt_id",
    "timeToFirstToken": "time_to_first_token",
    "modelId": "model_id",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "userId": "user_id",
    "sessionId": "session_id",
    "traceName": "trace_name",
    "calculatedTotalCost": "total_cost",
}
USED = {
    "id",
    "type",
    "input",
    "output",
    "start_time",
    "end_time",
    "completion_start_time",
    "provided_model_name",
    "model",
    "usage_details",
    "cost_details",
    "total_cost",
    "metadata",
    "level",
    "status_message",
    "latency",
    "time_to_first_token",
    "usage",
    "input_price",
    "output_price",
    "total_price",
}
TRACE_FIELDS = {"user_id": "user_id", "session_id": "session_id", "tags": "tags", "release": "release", "name": "trace_name"}


def read(source: str, on_incomplete: str = "error", storage_options: dict | None = None) -> tuple[pa.Table, ReadStats]:
    """The generations of a Langfuse blob-storage export (a file, folder or glob) as the standard table."""
    stats = ReadStats()
    files = list_files(source, storage_options, SUFFIXES)
    obs, traces = _split(files)
    trace_info = {}
    for path in traces:
        for _, row, _ in _rows(path, storage_options):
            if row and row.get("id") is not None:
                trace_info[str(row["id"])] = {new: row.get(old) for old, new in TRACE_FIELDS.items()}
    std = {k: [] for k in STANDARD_NAMES}
    attrs = []
    for path in obs:
        stats.files += 1
        for line, row, why in _rows(path, storage_options):
            where = f"{path}:{line}"
            if row is None:
                bad_line(stats, on_incomplete, where, why)
                continue
            stats.records += 1
            row = {CAMEL.get(k, k): v for k, v in row.items()}
            if str(row.get("type") or "").upper() != "GENERATION":
                stats.non_chat += 1
                continue
            where = f"{where} observation {row.get('id')}"
            try:
                got = _generation(row, where, stats, on_incomplete)
            except (ValueError, TypeError) as e:
                raise LogError(f"{where}: {e}") from None
            if got is None:
                continue
            values, extra = got
            for k, v in trace_info.get(str(row.get("trace_id")), {}).items():
                extra.setdefault(k, v)
            for k in std:
                std[k].append(values.get(k))
            attrs.append(extra)
            stats.chat += 1
            stats.failed += values["error"] is not None
    return rows_table(std, attrs), stats


def _split(files: list[str]) -> tuple[list[str], list[str]]:
    """(observation files, legacy trace files) of an export folder's files."""

    def under(name):
        return [f for f in files if f"/{name}/" in f.replace(os.sep, "/")]

    v2, legacy, traces = under("observations_v2"), under("observations"), under("traces")
    if v2:
        return v2, []
    if legacy:
        return legacy, traces
    skip = set(under("scores")) | set(under("manifests")) | set(traces)
    return [f for f in files if f not in skip], []


def _rows(path: str, storage_options: dict | None):
    if path.lower().endswith(".parquet"):
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(pa.BufferReader(read_bytes(path, storage_options))).read()
        except Exception as e:  # noqa: BLE001  (pyarrow's errors for a corrupt file)
            raise LogError(f"{path}: not a readable Parquet file: {type(e).__name__}: {e}") from None
        return [(k + 1, _plain(r), None) for k, r in enumerate(table.to_pylist())]
    return records(path, storage_options)


def _plain(row: dict) -> dict:
    """A Parquet row's map columns (lists of (key, value) pairs) as dicts."""
    out = {}
    for k, v in row.items():
        if isinstance(v, list) and v and all(isinstance(x, tuple) and len(x) == 2 for x in v):
            v = dict(v)
        out[k] = v
    return out


def _generation(row: dict, where: str, stats: ReadStats, on_incomplete: str):
    failed = str(row.get("level") or "").upper() == "ERROR"
    msgs = _input_messages(maybe_json(row.get("input")))
    if not msgs:
        incomplete(stats, on_incomplete, where, "no input (the generation's messages)")
        return None
    answer = _answer(maybe_json(row.get("output")))
    error = (row.get("status_message") or "error") if failed else None
    if answer is None and not failed:
        incomplete(stats, on_incomplete, where, "no output")
        return None
    usage = _dict(row.get("usage_details"), "usage_details")
    cost = _dict(row.get("cost_details"), "cost_details")
    start, end = utc_micros(row.get("start_time")), utc_micros(row.get("end_time"))
    first = utc_micros(row.get("completion_start_time"))
    total = cost.get("total")
    if total is None:
        total = row.get("total_cost")
    if total is None and cost:
        total = sum(float(v) for k, v in cost.items() if v is not None)
    values = {
        "example_id": str(row.get("id")),
        "messages": msgs,
        "output": answer,
        "model": row.get("provided_model_name") or row.get("model") or None,
        "request_time": start,
        "prompt_tokens": _int(usage.get("input", usage.get("prompt_tokens")), "usage_details.input"),
        "completion_tokens": _int(usage.get("output", usage.get("completion_tokens")), "usage_details.output"),
        "cached_tokens": _int(
            next(
                (
                    usage[k]
                    for k in ("input_cached_tokens", "cache_read_input_tokens", "input_cache_read")
                    if usage.get(k) is not None
                ),
                None,
            ),
            "usage_details.input_cached_tokens",
        ),
        "latency_s": (end - start) / 1e6 if start is not None and end is not None else None,
        "ttft_s": (first - start) / 1e6 if start is not None and first is not None else None,
        "provider_cost_usd": float(total) if total is not None else None,
        "error": error,
    }
    extra = {k: (json_text(v) if isinstance(v, dict) else v) for k, v in row.items() if k not in USED}
    meta = maybe_json(row.get("metadata"))
    if isinstance(meta, dict):
        for k, v in meta.items():
            extra.setdefault(k, json_text(v) if isinstance(v, (dict, list)) else v)
    return values, extra


def _dict(v, what: str) -> dict:
    v = maybe_json(v)
    if v is None or v == "":
        return {}
    if not isinstance(v, dict):
        raise ValueError(f"{what} is {v!r}, not an object of figures")
    return v


def _int(v, what: str):
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{what} is {v!r}, not a whole number")
    try:
        f = float(v)
    except ValueError:
        raise ValueError(f"{what} is {v!r}, not a whole number") from None
    if f != int(f):
        raise ValueError(f"{what} is {v!r}, not a whole number")
    return int(f)


def _input_messages(v) -> list[dict]:
    if v is None or v == "":
        return []
    if isinstance(v, dict) and isinstance(v.get("messages"), list):
        v = v["messages"]
    if isinstance(v, list):
        return [openai_message(m) if isinstance(m, dict) else openai_message({"role": "user", "content": m}) for m in v]
    if isinstance(v, dict) and "role" in v:
        return [openai_message(v)]
    return [openai_message({"role": "user", "content": v if isinstance(v, str) else json.dumps(v)})]


def _answer(v):
    if v is None or v == "":
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("choices"), list) and v["choices"]:
        v = v["choices"][0].get("message") or v["choices"][0]
    if isinstance(v, list) and v and isinstance(v[0], dict) and "role" in v[0]:
        v = v[-1]
    if isinstance(v, dict) and ("content" in v or "tool_calls" in v):
        m = openai_message(v)
        return m["content"] if m["content"] is not None else m["tool_calls"]
    return text_of(v) if isinstance(v, list) else json_text(v)
