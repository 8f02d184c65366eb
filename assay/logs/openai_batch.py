"""OpenAI Batch files (format ``openai-batch``): a batch's input file joined with its output file (and
its error file) on ``custom_id``.

Read after the OpenAI API's OpenAPI specification 2.3.0 (``BatchRequestInput``, and
``BatchRequestOutput``: "the per-line object of the batch output and error files"): an input
line is ``{custom_id, method, url, body}``; an output (or error) line is ``{id, custom_id, response:
{status_code, request_id, body} | null, error: {code, message} | null}``. ``source:`` names the files of both
kinds (a folder or a glob); each line's kind is told by its fields.

* a chat call is an input line whose ``url`` is ``/v1/chat/completions``; other endpoints (embeddings,
  completions, responses) are skipped and counted;
* its conversation is ``body.messages``; its answer ``response.body.choices[0].message`` (its text,
  else its tool calls as JSON); ``model``, the token counts (``usage.prompt_tokens``,
  ``completion_tokens``, ``prompt_tokens_details.cached_tokens``) and the request time (``created``)
  come from the response body; a Batch file has no latency and no cost;
* a non-200 ``status_code`` or an ``error`` marks a failed call (kept, with ``error``);
* an output line without its input line, and an input line without an output line, are incomplete;
* the request's other scalar ``body`` fields (``temperature``, ``max_tokens``, ...) and the keys of
  ``body.metadata`` are attribute columns, with the output line's ``id`` as ``batch_request_id`` and
  the response's ``request_id``.
"""

import pyarrow as pa

from assay.logs.common import (
    LogError,
    ReadStats,
    bad_line,
    incomplete,
    json_text,
    list_files,
    openai_message,
    records,
    rows_table,
)

SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
CHAT_URL = "/v1/chat/completions"


def read(source: str, on_incomplete: str = "error", storage_options: dict | None = None) -> tuple[pa.Table, ReadStats]:
    """The chat requests of Batch input files joined with their output lines, as the standard table."""
    stats = ReadStats()
    inputs: dict[str, tuple[str, dict]] = {}
    outputs: dict[str, tuple[str, dict]] = {}
    for path in list_files(source, storage_options, SUFFIXES):
        stats.files += 1
        for line, obj, why in records(path, storage_options):
            where = f"{path}:{line}"
            if obj is None:
                bad_line(stats, on_incomplete, where, why)
                continue
            cid = obj.get("custom_id")
            if cid is None:
                raise LogError(f"{where}: a Batch line without custom_id")
            if "body" in obj or "url" in obj:
                if cid in inputs:
                    raise LogError(
                        f"{where}: custom_id {cid!r} is also the input at {inputs[cid][0]} (custom_ids are unique in a batch)"
                    )
                inputs[cid] = (where, obj)
            elif "response" in obj or "error" in obj:
                outputs[cid] = (where, obj)
            else:
                raise LogError(f"{where}: neither a Batch input line (url, body) nor an output line (response, error)")
    std = {
        k: []
        for k in (
            "example_id",
            "messages",
            "output",
            "model",
            "request_time",
            "prompt_tokens",
            "completion_tokens",
            "cached_tokens",
            "error",
        )
    }
    attrs = []
    for cid, (where, _out) in outputs.items():
        if cid not in inputs:
            stats.records += 1
            incomplete(
                stats,
                on_incomplete,
                f"{where} custom_id {cid}",
                "an output line without its input line (is the batch's input file in source?)",
            )
    for cid, (where, inp) in inputs.items():
        stats.records += 1
        url = str(inp.get("url") or "")
        if url.rstrip("/") != CHAT_URL:
            stats.non_chat += 1
            continue
        body = inp.get("body")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body["messages"]:
            incomplete(stats, on_incomplete, f"{where} custom_id {cid}", "no body.messages")
            continue
        if cid not in outputs:
            incomplete(
                stats,
                on_incomplete,
                f"{where} custom_id {cid}",
                "no output line with this custom_id (is the batch's output file in source?)",
            )
            continue
        owhere, out = outputs[cid]
        try:
            values, extra = _pair(cid, body, out)
        except (ValueError, TypeError, AttributeError) as e:
            raise LogError(f"{owhere} custom_id {cid}: {e}") from None
        if values["output"] is None and values["error"] is None:
            incomplete(stats, on_incomplete, f"{owhere} custom_id {cid}", "no response.body.choices[0].message")
            continue
        for k in std:
            std[k].append(values.get(k))
        attrs.append(extra)
        stats.chat += 1
        stats.failed += values["error"] is not None
    return rows_table(std, attrs), stats


def _pair(cid: str, body: dict, out: dict) -> tuple[dict, dict]:
    resp = out.get("response") or {}
    if not isinstance(resp, dict):
        raise ValueError(f"response is a {type(resp).__name__}, not an object")
    rbody = resp.get("body") or {}
    status = resp.get("status_code")
    error = None
    if out.get("error"):
        e = out["error"]
        error = str(e.get("message") or e.get("code")) if isinstance(e, dict) else str(e)
    elif status is not None and int(status) != 200:
        e = rbody.get("error") if isinstance(rbody, dict) else None
        error = f"HTTP {status}: " + (str(e.get("message")) if isinstance(e, dict) else json_text(rbody) or "")
    answer = None
    choices = rbody.get("choices") if isinstance(rbody, dict) else None
    if choices:
        m = openai_message(choices[0].get("message") or {})
        answer = m["content"] if m["content"] is not None else m["tool_calls"]
    usage = (rbody.get("usage") if isinstance(rbody, dict) else None) or {}
    details = usage.get("prompt_tokens_details") or {}
    created = rbody.get("created") if isinstance(rbody, dict) else None
    values = {
        "example_id": str(cid),
        "messages": [openai_message(m) for m in body["messages"]],
        "output": answer,
        "model": (rbody.get("model") if isinstance(rbody, dict) else None) or body.get("model"),
        "request_time": int(created) * 1_000_000 if created is not None else None,
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "cached_tokens": details.get("cached_tokens"),
        "error": error,
    }
    for k in ("prompt_tokens", "completion_tokens", "cached_tokens"):
        if values[k] is not None and (isinstance(values[k], bool) or not isinstance(values[k], int)):
            raise ValueError(f"usage.{k} is {values[k]!r}, not a whole number")
    extra = {
        k: v
        for k, v in body.items()
        if k not in ("messages", "model", "metadata") and (v is None or isinstance(v, (str, int, float, bool)))
    }
    if isinstance(body.get("metadata"), dict):
        extra.update({k: v for k, v in body["metadata"].items() if v is None or isinstance(v, (str, int, float, bool))})
    extra["batch_request_id"] = out.get("id")
    extra["request_id"] = resp.get("request_id")
    return values, extra
