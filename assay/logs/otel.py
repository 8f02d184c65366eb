"""OpenTelemetry GenAI spans (format ``otel``), from OTLP JSON lines (:mod:`assay.logs.otlp`).

Read after the GenAI semantic conventions v1.37.0 (open-telemetry/semantic-conventions
``docs/gen-ai/gen-ai-spans.md``, ``gen-ai-input-messages.json``, ``gen-ai-output-messages.json``,
``non-normative/examples-llm-calls.md``):

* a chat call is a span with ``gen_ai.operation.name`` ``chat``, ``generate_content`` or
  ``text_completion`` (or, before the operation name existed, any span with ``gen_ai.system`` /
  ``gen_ai.provider.name`` and no operation); every other span (HTTP, ``embeddings``,
  ``execute_tool``, ``invoke_agent``, ...) is skipped and counted;
* its conversation is ``gen_ai.input.messages`` (a JSON array of ``{role, parts: [{type, content}
  | {type: tool_call, id, name, arguments} | {type: tool_call_response, id, response}], name}``),
  with ``gen_ai.system_instructions`` (a JSON array of parts) as a leading system message; its
  answer is the first of ``gen_ai.output.messages``;
* before v1.37 the content was in span events: ``gen_ai.system.message``, ``gen_ai.user.message``,
  ``gen_ai.assistant.message`` (``content``, ``tool_calls``), ``gen_ai.tool.message`` (``content``,
  ``id``) and ``gen_ai.choice`` (``message`` or ``content``, ``index``) — semantic conventions
  v1.28–v1.36 ``gen-ai-events.md`` — and, earlier still, ``gen_ai.content.prompt`` /
  ``gen_ai.content.completion`` with ``gen_ai.prompt`` / ``gen_ai.completion`` (v1.26–v1.27);
* ``gen_ai.response.model`` (else ``gen_ai.request.model``), ``gen_ai.usage.input_tokens`` /
  ``output_tokens`` (``prompt_tokens`` / ``completion_tokens`` before v1.27),
  ``gen_ai.usage.cache_read.input_tokens``; the span's start is the request time, its duration the
  latency; OTel carries no cost.

Spans whose messages are plain text are turned into rows by Arrow alone (the JSON attributes of a
block parsed as one JSON-lines buffer); spans with tool calls, system instructions or events are
read one by one in Python.
"""

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from assay.logs import otlp
from assay.logs.common import (
    MESSAGE,
    MESSAGES,
    LogError,
    ReadStats,
    incomplete,
    json_text,
    openai_message,
    standard_table,
    text_of,
    tool_call,
)

SUFFIXES = otlp.SUFFIXES
CHAT_OPERATIONS = ("chat", "generate_content", "text_completion")
TOOL_PARTS = ("tool_call", "tool_call_response", "server_tool_call", "server_tool_call_response")
IN, OUT, SYS = "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions"
#: attributes read into the standard columns, so not repeated as attribute columns
CONSUMED = (
    IN,
    OUT,
    SYS,
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.completion_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.response.time_to_first_chunk",
)

_PART = pa.struct([("type", pa.string()), ("content", pa.string())])
_FAST = pa.schema(
    [
        ("i", pa.list_(pa.struct([("role", pa.string()), ("name", pa.string()), ("parts", pa.list_(_PART))]))),
        ("o", pa.list_(pa.struct([("role", pa.string()), ("parts", pa.list_(_PART))]))),
    ]
)
_FAST_PARSE = pj.ParseOptions(explicit_schema=_FAST, unexpected_field_behavior="ignore")


def read(source: str, on_incomplete: str = "error", storage_options: dict | None = None) -> tuple[pa.Table, ReadStats]:
    """The chat spans of an OTLP JSON-lines export (a file, folder or glob) as the standard table."""
    return otlp.read_spans(source, on_incomplete, storage_options, _block_table)


def _block_table(block: otlp.Block, stats: ReadStats, on_incomplete: str) -> pa.Table | None:
    spans = block.spans
    stats.records += block.n
    attrs = otlp.pivot(spans.field("attributes"))
    op = attrs.get("gen_ai.operation.name")
    system = attrs.get("gen_ai.provider.name", attrs.get("gen_ai.system"))
    is_chat = pa.array(np.zeros(block.n, bool))
    if op is not None:
        is_chat = pc.fill_null(pc.is_in(pc.cast(op, pa.string()), pa.array(CHAT_OPERATIONS)), False)
    if system is not None:
        no_op = pc.is_null(op) if op is not None else pa.array(np.ones(block.n, bool))
        is_chat = pc.or_(is_chat, pc.and_(pc.is_valid(system), no_op))
    rows = np.flatnonzero(otlp.np_of(is_chat))
    stats.non_chat += block.n - len(rows)
    if not len(rows):
        return None
    inp = otlp.text_attr(block, attrs.get(IN), IN, rows)
    out = otlp.text_attr(block, attrs.get(OUT), OUT, rows)
    sysi = otlp.text_attr(block, attrs.get(SYS), SYS, rows)
    status = spans.field("status")
    failed = pc.fill_null(pc.equal(otlp.take(status.field("code"), rows), 2), False)
    err_msg = pc.if_else(
        failed, pc.coalesce(otlp.take(status.field("message"), rows), pa.scalar("error")), pa.scalar(None, pa.string())
    )

    n = len(rows)
    fast = np.zeros(n, bool)
    if inp is not None and out is not None:
        ok = pc.and_(pc.is_valid(inp), pc.is_valid(out))
        if sysi is not None:
            ok = pc.and_(ok, pc.is_null(sysi))
        fast = otlp.np_of(pc.fill_null(ok, False)).copy()
    keep = np.ones(n, bool)
    fast_idx = np.flatnonzero(fast)
    if len(fast_idx):
        got = _fast(otlp.take(inp, fast_idx), otlp.take(out, fast_idx))
        if got is None:  # Arrow could not take them (a part whose content is not text): one by one
            fast[:] = False
            fast_idx = fast_idx[:0]
        elif not got[2].all():  # messages not in the parts shape, or no answer text: one by one
            fast[fast_idx[~got[2]]] = False
            got = (got[0].filter(pa.array(got[2])), got[1].filter(pa.array(got[2])))
            fast_idx = np.flatnonzero(fast)
    slow_idx = np.flatnonzero(~fast)
    slow_msgs, slow_out = [], []
    if len(slow_idx):
        events = spans.field("events").take(pa.array(rows[slow_idx])).to_pylist()
        inp_py = inp.take(pa.array(slow_idx)).to_pylist() if inp is not None else [None] * len(slow_idx)
        out_py = out.take(pa.array(slow_idx)).to_pylist() if out is not None else [None] * len(slow_idx)
        sys_py = sysi.take(pa.array(slow_idx)).to_pylist() if sysi is not None else [None] * len(slow_idx)
        failed_py = failed.take(pa.array(slow_idx)).to_pylist()
        for k, j in enumerate(slow_idx):
            where = block.where(int(rows[j]))
            try:
                msgs, answer = _one(inp_py[k], out_py[k], sys_py[k], events[k])
            except (ValueError, TypeError) as e:
                raise LogError(f"{where}: {e}") from None
            why = None
            if not msgs:
                why = f"no {IN} attribute and no gen_ai.*.message events (was content capture off?)"
            elif answer is None and not failed_py[k]:
                why = (
                    f"{OUT} holds no text and no tool call"
                    if out_py[k] is not None
                    else f"no {OUT} attribute and no gen_ai.choice event"
                )
            if why:
                incomplete(stats, on_incomplete, where, why)
                keep[j] = False
            slow_msgs.append(msgs)
            slow_out.append(answer)
    # the two kinds back in span order
    if len(fast_idx) and len(slow_idx):
        order = np.argsort(np.concatenate([fast_idx, slow_idx]), kind="stable")
        m = pa.concat_arrays([got[0], pa.array(slow_msgs, MESSAGES)]).take(pa.array(order))
        o = pa.concat_arrays([got[1], pa.array(slow_out, pa.string())]).take(pa.array(order))
    elif len(fast_idx):
        m, o = got[0], got[1]
    else:
        m, o = pa.array(slow_msgs, MESSAGES), pa.array(slow_out, pa.string())

    def take(col):
        return otlp.take(col, rows)

    start, start_ns = otlp.nanos_to_time(take(spans.field("startTimeUnixNano")))
    _, end_ns = otlp.nanos_to_time(take(spans.field("endTimeUnixNano")))
    latency = pc.divide(pc.cast(pc.subtract(end_ns, start_ns), pa.float64()), 1e9)
    model = otlp.text_attr(block, attrs.get("gen_ai.response.model"), "gen_ai.response.model", rows)
    req_model = otlp.text_attr(block, attrs.get("gen_ai.request.model"), "gen_ai.request.model", rows)
    if model is None:
        model = req_model
    elif req_model is not None:
        model = pc.coalesce(model, req_model)
    cols = {
        "example_id": take(spans.field("spanId")),
        "messages": m,
        "output": o,
        "model": model,
        "request_time": start,
        "prompt_tokens": _first(
            otlp.int_attr(block, attrs.get(k), k, rows) for k in ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
        ),
        "completion_tokens": _first(
            otlp.int_attr(block, attrs.get(k), k, rows) for k in ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
        ),
        "cached_tokens": otlp.int_attr(
            block, attrs.get("gen_ai.usage.cache_read.input_tokens"), "gen_ai.usage.cache_read.input_tokens", rows
        ),
        "latency_s": latency,
        "ttft_s": otlp.float_attr(
            block, attrs.get("gen_ai.response.time_to_first_chunk"), "gen_ai.response.time_to_first_chunk", rows
        ),
        "error": err_msg,
    }
    extra = {"trace_id": take(spans.field("traceId")), "span_name": take(spans.field("name"))}
    for k, v in block.resource.items():
        extra[k] = take(v)
    for k, v in attrs.items():
        if k not in CONSUMED:
            v = take(v)
            if v.null_count < len(v):  # a key only other spans have (http.*, gen_ai.tool.*) is not a column
                extra[k] = v
    table = standard_table(cols, extra, n)
    if not keep.all():
        table = table.filter(pa.array(keep))
    stats.chat += table.num_rows
    stats.failed += pc.sum(pc.is_valid(table["error"])).as_py() or 0
    return table


def _first(cols):
    out = None
    for c in cols:
        if c is None:
            continue
        out = c if out is None else pc.coalesce(out, c)
    return out


# ------------------------------------------------------------------------------------------------ Arrow path
def _fast(inp: pa.Array, out: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray] | None:
    """Text-only input and output messages, parsed by Arrow as one JSON-lines buffer: (messages,
    output text, whether each row was read whole), or None when Arrow cannot take them. A row whose
    messages have no ``parts`` (another shape), that has no message, that holds a tool call or a tool's
    response, or whose answer has no text is not read whole: the caller reads it in Python."""
    # a newline outside a JSON string is white space, and inside one it is not valid JSON: out of the way
    clean = [pc.replace_substring(pc.replace_substring(a, "\n", " "), "\r", " ") for a in (inp, out)]
    lines = otlp.concat_text([pa.scalar('{"i":'), clean[0], pa.scalar(',"o":'), clean[1], pa.scalar("}\n")])
    try:
        t = pj.read_json(pa.BufferReader(otlp.values_buffer(lines)), parse_options=_FAST_PARSE)
    except pa.ArrowInvalid:
        return None
    if t.num_rows != len(inp):
        return None
    i = t["i"].combine_chunks()
    o = t["o"].combine_chunks()
    msgs = i.flatten()
    content = _join_text(msgs.field("parts"))
    none = pa.nulls(len(msgs), pa.string())
    as_msg = pa.StructArray.from_arrays([msgs.field("role"), content, msgs.field("name"), none, none], fields=list(MESSAGE))
    offsets = i.offsets
    if offsets[0].as_py():
        offsets = pc.subtract(offsets, offsets[0])
    messages = pa.ListArray.from_arrays(offsets, as_msg, type=MESSAGES, mask=i.is_null() if i.null_count else None)
    first = (
        pc.list_element(pc.if_else(pc.greater(pc.list_value_length(o), 0), o, pa.scalar(None, o.type)), 0)
        if len(o)
        else o.flatten()
    )
    output = _join_text(first.field("parts")) if len(o) else pa.array([], pa.string())
    if len(o) and first.null_count:
        output = pc.if_else(pc.is_null(first), pa.scalar(None, pa.string()), output)
    no_parts = otlp.np_of(pc.is_null(msgs.field("parts")))
    parent = otlp.np_of(pc.list_parent_indices(i))
    whole = np.bincount(parent[no_parts], minlength=len(i)) == 0
    # tool calls and their responses carry JSON of any shape (arguments, results), which this schema
    # leaves out: such rows are read in Python
    for lists, owner in ((msgs.field("parts"), parent), (first.field("parts") if len(o) else None, None)):
        if lists is None:
            continue
        tool = otlp.np_of(pc.fill_null(pc.is_in(lists.flatten().field("type"), pa.array(TOOL_PARTS)), False))
        if tool.any():
            rows_of = otlp.np_of(pc.list_parent_indices(lists))[tool]
            whole[owner[rows_of] if owner is not None else rows_of] = False
    whole &= otlp.np_of(pc.fill_null(pc.greater(pc.list_value_length(i), 0), False))
    whole &= otlp.np_of(pc.is_valid(output))
    return messages, output, whole


def _join_text(parts: pa.ListArray) -> pa.Array:
    """The text parts of each list of parts joined with a newline (null where none is text)."""
    flat = parts.flatten()
    parent = otlp.np_of(pc.list_parent_indices(parts))
    is_text = pc.fill_null(pc.or_kleene(pc.equal(flat.field("type"), "text"), pc.is_null(flat.field("type"))), False)
    is_text = otlp.np_of(pc.and_(is_text, pc.is_valid(flat.field("content"))))
    counts = np.bincount(parent[is_text], minlength=len(parts))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    texts = flat.field("content").filter(pa.array(is_text))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), texts), "\n")
    return pc.if_else(pa.array(counts > 0), joined, pa.scalar(None, pa.string()))


# ------------------------------------------------------------------------------------------------ one span in Python
def _one(inp: str | None, out: str | None, sysi: str | None, events: list | None) -> tuple[list[dict], str | None]:
    """One span's (messages, answer) from its attributes, else from its events."""
    msgs: list[dict] = []
    answer = None
    if sysi is not None:
        text = text_of(_json(sysi, SYS))
        if text:
            msgs.append({"role": "system", "content": text, "name": None, "tool_call_id": None, "tool_calls": None})
    if inp is not None:
        value = _json(inp, IN)
        if not isinstance(value, list):
            raise ValueError(f"{IN} is a JSON {type(value).__name__}, not a list of messages")
        for m in value:
            msgs.extend(semconv_message(m))
    if out is not None:
        value = _json(out, OUT)
        if not isinstance(value, list):
            raise ValueError(f"{OUT} is a JSON {type(value).__name__}, not a list of messages")
        answer = _answer(semconv_message(value[0])) if value else None
    if inp is None or out is None:
        ev_msgs, ev_answer = _from_events(events or [])
        if inp is None and sysi is None:
            msgs = ev_msgs
        elif inp is None:
            msgs += ev_msgs
        if out is None:
            answer = ev_answer
    return msgs, answer


def _json(text: str, key: str):
    try:
        return json.loads(text)
    except ValueError as e:
        raise ValueError(f"attribute {key} is not JSON ({e}): {text[:80]!r}") from None


def semconv_message(m) -> list[dict]:
    """A GenAI semconv message (``role``, ``parts``, ``name``) as :data:`MESSAGE` rows: its text parts
    joined, its ``tool_call`` parts as OpenAI tool calls, each ``tool_call_response`` part as a tool message."""
    if not isinstance(m, dict):
        raise ValueError(f"a message is a JSON {type(m).__name__}, not an object")
    if "parts" not in m:  # an OpenAI-shaped message in the same place
        return [openai_message(m)]
    texts, calls, out = [], [], []
    for p in m.get("parts") or []:
        kind = p.get("type") if isinstance(p, dict) else None
        if kind in ("text", None) and isinstance(p.get("content"), str):
            texts.append(p["content"])
        elif kind == "tool_call":
            calls.append(tool_call(p.get("id"), p.get("name"), p.get("arguments")))
        elif kind == "tool_call_response":
            resp = p.get("response", p.get("result"))
            out.append(
                {
                    "role": "tool",
                    "content": resp if isinstance(resp, str) else json_text(resp),
                    "name": None,
                    "tool_call_id": p.get("id"),
                    "tool_calls": None,
                }
            )
    if texts or calls or not out:
        role = m.get("role")
        out.insert(
            0,
            {
                "role": role,
                "content": "\n".join(texts) if texts else None,
                "name": m.get("name"),
                "tool_call_id": None,
                "tool_calls": json_text(calls) if calls else None,
            },
        )
    return out


def _answer(msgs: list[dict]) -> str | None:
    """The answer text of an output message; a tool-calling answer without text is its tool calls (JSON)."""
    if not msgs:
        return None
    m = msgs[0]
    return m["content"] if m["content"] is not None else m["tool_calls"]


def _from_events(events: list) -> tuple[list[dict], str | None]:
    msgs: list[dict] = []
    answer, best = None, None
    for e in events:
        name = (e or {}).get("name") or ""
        a = otlp.attrs_dict(e.get("attributes"))
        if name in ("gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message"):
            role = a.get("role") or name.split(".")[1]
            calls = a.get("tool_calls")
            calls = json.loads(calls) if isinstance(calls, str) and calls.strip().startswith("[") else calls
            msgs.append(
                openai_message(
                    {
                        "role": role,
                        "content": _maybe_json_text(a.get("content")),
                        "tool_call_id": a.get("id") if role == "tool" else None,
                        "tool_calls": calls,
                    }
                )
            )
        elif name == "gen_ai.choice":
            index = a.get("index") or 0
            if best is not None and index >= best:
                continue
            msg = a.get("message")
            if isinstance(msg, str) and msg.strip().startswith("{"):
                msg = json.loads(msg)
            if isinstance(msg, dict):
                row = openai_message(msg)
                answer = row["content"] if row["content"] is not None else row["tool_calls"]
            else:
                answer = _maybe_json_text(a.get("content", msg))
            best = index
        elif name == "gen_ai.content.prompt":
            msgs.extend(_prompt_value(a.get("gen_ai.prompt")))
        elif name == "gen_ai.content.completion":
            done = _prompt_value(a.get("gen_ai.completion"), role="assistant")
            if done:
                answer = done[0]["content"] if done[0]["content"] is not None else done[0]["tool_calls"]
    return msgs, answer


def _maybe_json_text(v):
    """Event content: text, or JSON text of parts (some instrumentations) as their text."""
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return text_of(json.loads(v))
        except ValueError:
            return v
    return text_of(v)


def _prompt_value(v, role: str = "user") -> list[dict]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON list of OpenAI messages, or plain text."""
    if v is None:
        return []
    if isinstance(v, str) and v.strip()[:1] in "[{":
        try:
            parsed = json.loads(v)
            parsed = parsed if isinstance(parsed, list) else [parsed]
            return [openai_message(m) if isinstance(m, dict) else openai_message({"role": role, "content": m}) for m in parsed]
        except ValueError:
            pass
    return [openai_message({"role": role, "content": v})]
