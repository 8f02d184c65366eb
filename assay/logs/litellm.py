"""LiteLLM proxy spend logs (format ``litellm``): rows of the ``LiteLLM_SpendLogs`` table, exported as
CSV, JSON (an array of rows, as ``/spend/logs`` returns them) or JSON lines.

Read after BerriAI/litellm ``schema.prisma`` (model ``LiteLLM_SpendLogs`` as on the main branch in late 2026, with ``completionStartTime``,
``request_duration_ms``, ``session_id``, ``status``):
``request_id``, ``call_type``, ``spend``, ``prompt_tokens``, ``completion_tokens``, ``startTime``,
``endTime``, ``completionStartTime``, ``model``, ``model_group``, ``custom_llm_provider``, ``metadata``
(JSON), ``request_tags`` (JSON), ``messages`` (JSON: the request's messages, ``{}`` when the proxy
does not store prompts), ``response`` (JSON: the OpenAI-shaped response), ``status``, ``session_id``,
``user``, ``end_user``, ``team_id``...

* a chat call is a row whose ``call_type`` is ``completion`` / ``acompletion`` (a row without it
  counts as one); embeddings, images, audio, ... are skipped and counted;
* ``spend`` is the provider cost LiteLLM computed (``provider_cost_usd``); the answer is
  ``response.choices[0].message`` (its text, else its tool calls as JSON); ``model`` is the response's
  model, else the row's; ``cached_tokens`` from ``prompt_tokens_details.cached_tokens`` of the
  response's (or the metadata's) usage;
* ``status: failure`` marks a failed call (kept, with ``error``);
* the other columns, and the keys of ``metadata`` (with those of its ``requester_metadata`` and
  ``spend_logs_metadata``, where a request's own metadata goes), are attribute columns. The hashed
  API key (``api_key``, ``metadata.user_api_key``), ``cache_key`` and the raw ``proxy_server_request``
  are left out.
"""

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
    records,
    rows_table,
    utc_micros,
)

SUFFIXES = (".csv", ".json", ".jsonl", ".ndjson", ".csv.gz", ".json.gz", ".jsonl.gz", ".ndjson.gz")
CHAT_CALLS = ("completion", "acompletion")
USED = {
    "request_id",
    "call_type",
    "spend",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "startTime",
    "endTime",
    "completionStartTime",
    "model",
    "messages",
    "response",
    "metadata",
    "status",
    "request_duration_ms",
}
DROPPED = {"api_key", "cache_key", "proxy_server_request", "user_api_key"}
NESTED_METADATA = ("requester_metadata", "spend_logs_metadata")


def read(source: str, on_incomplete: str = "error", storage_options: dict | None = None) -> tuple[pa.Table, ReadStats]:
    """The chat calls of LiteLLM spend logs (a file, folder or glob) as the standard table."""
    stats = ReadStats()
    std = {k: [] for k in STANDARD_NAMES}
    attrs = []
    for path in list_files(source, storage_options, SUFFIXES):
        stats.files += 1
        for line, row, why in records(path, storage_options):
            where = f"{path}:{line}"
            if row is None:
                bad_line(stats, on_incomplete, where, why)
                continue
            stats.records += 1
            try:
                got = _row(row, where, stats, on_incomplete)
            except (ValueError, TypeError, KeyError) as e:
                raise LogError(f"{where}: {e}") from None
            if got is None:
                continue
            values, extra = got
            for k in std:
                std[k].append(values.get(k))
            attrs.append(extra)
            stats.chat += 1
            stats.failed += values.get("error") is not None
    return rows_table(std, attrs), stats


def _row(row: dict, where: str, stats: ReadStats, on_incomplete: str):
    call = row.get("call_type")
    if call not in (None, "") and call not in CHAT_CALLS:
        stats.non_chat += 1
        return None
    rid = row.get("request_id")
    if rid in (None, ""):
        raise ValueError("the row has no request_id")
    where = f"{where} request_id {rid}"
    messages = maybe_json(row.get("messages"))
    if isinstance(messages, dict) and isinstance(messages.get("messages"), list):
        messages = messages["messages"]
    response = maybe_json(row.get("response"))
    failed = str(row.get("status") or "").lower() in ("failure", "failed", "error")
    if not isinstance(messages, list) or not messages:
        incomplete(stats, on_incomplete, where, "no messages (the proxy stores them only with store_prompts_in_spend_logs)")
        return None
    msgs = [openai_message(m if isinstance(m, dict) else {"role": "user", "content": m}) for m in messages]
    answer, served, usage = None, None, {}
    if isinstance(response, dict) and response:
        choices = response.get("choices") or []
        if choices:
            c = choices[0]
            msg = c.get("message") if isinstance(c, dict) else None
            if isinstance(msg, dict):
                m = openai_message(msg)
                answer = m["content"] if m["content"] is not None else m["tool_calls"]
            elif isinstance(c, dict) and isinstance(c.get("text"), str):
                answer = c["text"]
        served = response.get("model")
        usage = response.get("usage") or {}
    elif isinstance(response, str) and response.strip():
        answer = response
    error = None
    if failed:
        error = _error_text(response, row)
    elif answer is None:
        incomplete(stats, on_incomplete, where, "no response (choices[0].message)")
        return None
    metadata = maybe_json(row.get("metadata"))
    metadata = metadata if isinstance(metadata, dict) else {}
    if not usage and isinstance(metadata.get("usage_object"), dict):
        usage = metadata["usage_object"]
    details = usage.get("prompt_tokens_details") or {}
    start, end = utc_micros(row.get("startTime")), utc_micros(row.get("endTime"))
    first = utc_micros(row.get("completionStartTime"))
    values = {
        "example_id": str(rid),
        "messages": msgs,
        "output": answer,
        "model": served or row.get("model") or None,
        "request_time": start,
        "prompt_tokens": _int(row.get("prompt_tokens"), "prompt_tokens"),
        "completion_tokens": _int(row.get("completion_tokens"), "completion_tokens"),
        "cached_tokens": _int(details.get("cached_tokens") if isinstance(details, dict) else None, "cached_tokens"),
        "latency_s": (end - start) / 1e6 if start is not None and end is not None else None,
        "ttft_s": (first - start) / 1e6 if start is not None and first is not None else None,
        "provider_cost_usd": _float(row.get("spend"), "spend"),
        "error": error,
    }
    extra = {k: _scalar(maybe_json(v)) for k, v in row.items() if k not in USED and k not in DROPPED}
    for k, v in metadata.items():
        if k in DROPPED or k == "usage_object":
            continue
        if k in NESTED_METADATA and isinstance(v, dict):
            extra.update({kk: _scalar(vv) for kk, vv in v.items()})
        else:
            extra.setdefault(k, _scalar(v))
    return values, extra


def _scalar(v):
    """An attribute value as a column can hold it: scalars and lists of text as they are, objects as JSON text."""
    if isinstance(v, dict) or (isinstance(v, list) and not all(isinstance(x, str) for x in v)):
        return json_text(v)
    return v


def _int(v, what: str):
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        raise ValueError(f"{what} is {v!r}, not a whole number")
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {v!r}, not a whole number") from None
    if f != int(f):
        raise ValueError(f"{what} is {v!r}, not a whole number")
    return int(f)


def _float(v, what: str):
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} is {v!r}, not a number") from None


def _error_text(response, row) -> str:
    meta = maybe_json(row.get("metadata"))
    if isinstance(meta, dict) and isinstance(meta.get("error_information"), dict):
        info = meta["error_information"]
        return str(info.get("error_message") or info.get("error_class") or "failure")
    if isinstance(response, dict) and response.get("error"):
        return str(response["error"])
    return "failure"
