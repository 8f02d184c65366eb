"""OpenInference LLM spans (format ``openinference``: Arize Phoenix and the OpenInference
instrumentations), exported as OTLP JSON lines (:mod:`assay.logs.otlp`).

Read after the OpenInference semantic conventions (Arize-ai/openinference ``spec/semantic_conventions.md``
and ``spec/llm_spans.md`` as on the main branch in late 2026, which added ``llm.cost.*`` and
``llm.token_count.prompt_details.*``):

* a chat call is a span with ``openinference.span.kind`` = ``LLM``; every other kind (``CHAIN``,
  ``RETRIEVER``, ``EMBEDDING``, ``TOOL``, ``AGENT``, ...) and spans without it are skipped and counted;
* its conversation is the flattened ``llm.input_messages.<i>.message.role`` / ``.content`` / ``.name``
  / ``.tool_call_id``, with ``.contents.<j>.message_content.type`` / ``.text`` for content in parts and
  ``.tool_calls.<k>.tool_call.id`` / ``.function.name`` / ``.function.arguments``; its answer is
  ``llm.output_messages.0.*`` (else ``output.value`` when it is text);
* ``llm.model_name`` (else ``llm.response.model_name``, ``llm.request.model_name``),
  ``llm.token_count.prompt`` / ``.completion`` / ``.prompt_details.cache_read``, ``llm.cost.total``
  (else ``llm.cost.prompt`` + ``llm.cost.completion``) as the provider-reported cost.

The flattened message keys are gathered per span in Python (they are many keys of a few values);
every other attribute becomes a column as in :mod:`assay.logs.otel`.
"""

import re

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.logs import otlp
from assay.logs.common import (
    MESSAGES,
    LogError,
    ReadStats,
    incomplete,
    json_text,
    standard_table,
    tool_call,
)

SUFFIXES = otlp.SUFFIXES
#: flattened lists: read into messages, or left out (documents, embeddings, tool schemas)
FLATTENED = (
    "llm.input_messages.",
    "llm.output_messages.",
    "llm.tools.",
    "llm.prompts.",
    "llm.choices.",
    "embedding.embeddings.",
    "retrieval.documents.",
    "reranker.input_documents.",
    "reranker.output_documents.",
)
CONSUMED = (
    "llm.model_name",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.prompt_details.cache_read",
    "llm.cost.total",
    "output.value",
    "input.value",
)
_KEY = re.compile(r"^llm\.(input|output)_messages\.(\d+)\.message\.(.+)$")


def read(source: str, on_incomplete: str = "error", storage_options: dict | None = None) -> tuple[pa.Table, ReadStats]:
    """The LLM spans of an OTLP JSON-lines export of OpenInference traces as the standard table."""
    return otlp.read_spans(source, on_incomplete, storage_options, _block_table)


def _block_table(block: otlp.Block, stats: ReadStats, on_incomplete: str) -> pa.Table | None:
    spans = block.spans
    stats.records += block.n
    kv = spans.field("attributes")
    attrs = otlp.pivot(kv, skip_prefixes=FLATTENED)
    kind = attrs.get("openinference.span.kind")
    if kind is None:
        stats.non_chat += block.n
        return None
    is_llm = pc.fill_null(pc.equal(pc.utf8_upper(pc.cast(kind, pa.string())), "LLM"), False)
    rows = np.flatnonzero(otlp.np_of(is_llm))
    stats.non_chat += block.n - len(rows)
    if not len(rows):
        return None
    msgs_in, msgs_out = _messages(kv, rows)
    out_value = otlp.text_attr(block, attrs.get("output.value"), "output.value", rows)
    out_mime = attrs.get("output.mime_type")
    out_mime = out_mime.take(pa.array(rows)).to_pylist() if out_mime is not None else [None] * len(rows)
    out_value = out_value.to_pylist() if out_value is not None else [None] * len(rows)
    status = spans.field("status")
    failed = pc.fill_null(pc.equal(status.field("code").take(pa.array(rows)), 2), False).to_pylist()
    status_msg = status.field("message").take(pa.array(rows)).to_pylist()
    keep = np.ones(len(rows), bool)
    messages, outputs, errors = [], [], []
    for k in range(len(rows)):
        m_in, m_out = msgs_in[k], msgs_out[k]
        answer = None
        if m_out:
            first = m_out[0]
            answer = first["content"] if first["content"] is not None else first["tool_calls"]
        elif out_value[k] is not None and (out_mime[k] or "text/plain").startswith("text/"):
            answer = out_value[k]
        why = None
        if not m_in:
            why = "no llm.input_messages.* attributes (was content capture off?)"
        elif answer is None and not failed[k]:
            why = "no llm.output_messages.* attributes and no text output.value"
        if why:
            incomplete(stats, on_incomplete, block.where(int(rows[k])), why)
            keep[k] = False
        messages.append(m_in)
        outputs.append(answer)
        errors.append((status_msg[k] or "error") if failed[k] else None)

    take = pa.array(rows)
    start, start_ns = otlp.nanos_to_time(spans.field("startTimeUnixNano").take(take))
    _, end_ns = otlp.nanos_to_time(spans.field("endTimeUnixNano").take(take))
    model = None
    for key in ("llm.model_name", "llm.response.model_name", "llm.request.model_name"):
        c = otlp.text_attr(block, attrs.get(key), key, rows)
        if c is not None:
            model = c if model is None else pc.coalesce(model, c)
    cost = otlp.float_attr(block, attrs.get("llm.cost.total"), "llm.cost.total", rows)
    parts = [otlp.float_attr(block, attrs.get(k), k, rows) for k in ("llm.cost.prompt", "llm.cost.completion")]
    if all(p is not None for p in parts):
        summed = pc.add(parts[0], parts[1])
        cost = summed if cost is None else pc.coalesce(cost, summed)
    cols = {
        "example_id": spans.field("spanId").take(take),
        "messages": pa.array(messages, MESSAGES),
        "output": pa.array(outputs, pa.string()),
        "model": model,
        "request_time": start,
        "prompt_tokens": otlp.int_attr(block, attrs.get("llm.token_count.prompt"), "llm.token_count.prompt", rows),
        "completion_tokens": otlp.int_attr(block, attrs.get("llm.token_count.completion"), "llm.token_count.completion", rows),
        "cached_tokens": otlp.int_attr(
            block, attrs.get("llm.token_count.prompt_details.cache_read"), "llm.token_count.prompt_details.cache_read", rows
        ),
        "latency_s": pc.divide(pc.cast(pc.subtract(end_ns, start_ns), pa.float64()), 1e9),
        "provider_cost_usd": cost,
        "error": pa.array(errors, pa.string()),
    }
    extra = {"trace_id": spans.field("traceId").take(take), "span_name": spans.field("name").take(take)}
    for k, v in block.resource.items():
        extra[k] = v.take(take)
    for k, v in attrs.items():
        if k not in CONSUMED:
            v = v.take(take)
            if v.null_count < len(v):
                extra[k] = v
    table = standard_table(cols, extra, len(rows))
    if not keep.all():
        table = table.filter(pa.array(keep))
    stats.chat += table.num_rows
    stats.failed += pc.sum(pc.is_valid(table["error"])).as_py() or 0
    return table


def _messages(kv: pa.ListArray, rows: np.ndarray) -> tuple[list, list]:
    """The input and output messages of the spans at ``rows``, from their flattened attributes."""
    sub = kv.take(pa.array(rows))
    flat = sub.flatten()
    parent = otlp.np_of(pc.list_parent_indices(sub))
    keys = flat.field("key")
    wanted = pc.fill_null(
        pc.or_(pc.starts_with(keys, "llm.input_messages."), pc.starts_with(keys, "llm.output_messages.")), False
    )
    sel = np.flatnonzero(otlp.np_of(wanted))
    vals = flat.field("value").take(pa.array(sel))
    values = [otlp.any_value(v) for v in vals.to_pylist()]
    per_span: list[dict] = [{} for _ in range(len(rows))]
    for key, value, p in zip(keys.take(pa.array(sel)).to_pylist(), values, parent[sel]):
        m = _KEY.match(key)
        if not m:
            continue
        side, i, rest = m.group(1), int(m.group(2)), m.group(3)
        per_span[p].setdefault(side, {}).setdefault(i, {})[rest] = value
    ins, outs = [], []
    for d in per_span:
        ins.append([_message(d["input"][i]) for i in sorted(d.get("input", {}))])
        outs.append([_message(d["output"][i]) for i in sorted(d.get("output", {}))])
    return ins, outs


_CONTENT = re.compile(r"^contents\.(\d+)\.message_content\.(type|text)$")
_CALL = re.compile(r"^tool_calls\.(\d+)\.tool_call\.(id|function\.name|function\.arguments)$")


def _message(f: dict) -> dict:
    """One message from its flattened fields (``role``, ``content``, ``contents.N...``, ``tool_calls.N...``)."""
    content = f.get("content")
    parts: dict[int, dict] = {}
    calls: dict[int, dict] = {}
    for k, v in f.items():
        m = _CONTENT.match(k)
        if m:
            parts.setdefault(int(m.group(1)), {})[m.group(2)] = v
            continue
        m = _CALL.match(k)
        if m:
            calls.setdefault(int(m.group(1)), {})[m.group(2)] = v
    if content is None and parts:
        texts = [p.get("text") for _, p in sorted(parts.items()) if p.get("type", "text") == "text" and p.get("text") is not None]
        content = "\n".join(texts) if texts else None
    if content is not None and not isinstance(content, str):
        content = json_text(content)
    tcs = [tool_call(c.get("id"), c.get("function.name"), c.get("function.arguments")) for _, c in sorted(calls.items())]
    return {
        "role": f.get("role"),
        "content": content,
        "name": f.get("name"),
        "tool_call_id": f.get("tool_call_id"),
        "tool_calls": json_text(tcs) if tcs else None,
    }


__all__ = ["LogError", "read"]
