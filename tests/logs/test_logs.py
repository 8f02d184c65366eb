"""Production log readers (assay.logs): each format built here after its public specification, not
after Assay's own writer, read into the standard columns; the malformed cases; and a pipeline whose
dataset and replay model read the same OTel export, run through ``assay run``.

Specifications the samples follow:
* OTLP/JSON (opentelemetry-proto ``examples/trace.json``; the Collector's file exporter writes int64
  as strings) with GenAI semantic conventions v1.37.0 (``docs/gen-ai/non-normative/examples-llm-calls.md``:
  the tool-call and system-instruction examples), the v1.28–1.36 events (``gen_ai.user.message``,
  ``gen_ai.choice``) and v1.26 ``gen_ai.content.prompt`` / ``gen_ai.content.completion``;
* OpenInference ``spec/llm_spans.md`` and ``spec/semantic_conventions.md`` (flattened
  ``llm.input_messages.N.message.*``, ``llm.token_count.*``, ``llm.cost.total``);
* Langfuse "Blob Storage Export Field Reference" (observations_v2, snake_case; older camelCase);
* LiteLLM ``schema.prisma`` ``LiteLLM_SpendLogs``;
* OpenAI Batch API request input / output objects.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.logs import FORMATS, MESSAGES, STANDARD_NAMES, LogError, read_log

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------ OTLP helpers
def av(v):
    """An OTLP/JSON AnyValue as the Collector writes it (int64 as a string)."""
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    if isinstance(v, float):
        return {"doubleValue": v}
    if isinstance(v, list):
        return {"arrayValue": {"values": [av(x) for x in v]}}
    return {"stringValue": v}


def kv(d: dict) -> list:
    return [{"key": k, "value": av(v)} for k, v in d.items()]


def span(
    span_id,
    name,
    attrs,
    start=1_793_000_000_000_000_000,
    dur_ms=800,
    events=None,
    status=None,
    trace="4bf92f3577b34da6a3ce929d0e0e4736",
):
    s = {
        "traceId": trace,
        "spanId": span_id,
        "parentSpanId": "",
        "name": name,
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + dur_ms * 1_000_000),
        "attributes": kv(attrs),
        "status": status or {},
    }
    if events is not None:
        s["events"] = events
    return s


def export_line(spans, service="support-bot") -> str:
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {"attributes": kv({"service.name": service, "deployment.environment.name": "prod"})},
                    "scopeSpans": [
                        {"scope": {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"}, "spans": spans}
                    ],
                }
            ]
        }
    )


def parts(role, *texts, **extra):
    return {"role": role, "parts": [{"type": "text", "content": t} for t in texts], **extra}


SYSTEM = parts("system", "You are a helpful bot")
TOOL_CALL = {
    "role": "assistant",
    "parts": [
        {"type": "tool_call", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather", "arguments": {"location": "Paris"}}
    ],
}
TOOL_RESPONSE = {
    "role": "tool",
    "parts": [{"type": "tool_call_response", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "response": "rainy, 57°F"}],
}


def chat_attrs(inp, out, model="gpt-4", served="gpt-4-0613", tin=52, tout=47, **more):
    a = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": served,
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.usage.input_tokens": tin,
        "gen_ai.usage.output_tokens": tout,
        "gen_ai.input.messages": json.dumps(inp),
        "gen_ai.output.messages": json.dumps(out),
    }
    a.update(more)
    return a


def otel_export(folder: Path) -> Path:
    """Two files of a Collector export: multi-turn chats of two models (one with a tool call, one with
    system instructions), an HTTP span, an embeddings span, a tool execution and an old-style span."""
    folder.mkdir(parents=True, exist_ok=True)
    day1 = [
        span(
            "a000000000000001",
            "POST /chat",
            {"http.request.method": "POST", "http.route": "/chat", "http.response.status_code": 200},
        ),
        span(
            "a000000000000002",
            "chat gpt-4",
            chat_attrs(
                [SYSTEM, parts("user", "Tell me a joke about OpenTelemetry")],
                [
                    parts(
                        "assistant",
                        "Why did the developer bring OpenTelemetry to the party?",
                        "To trace the fun!",
                        finish_reason="stop",
                    )
                ],
                **{"app.feature": "jokes", "user.tier": "free", "gen_ai.usage.cache_read.input_tokens": 32},
            ),
        ),
        span(
            "a000000000000003",
            "embeddings text-embedding-3-small",
            {
                "gen_ai.operation.name": "embeddings",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "text-embedding-3-small",
                "gen_ai.usage.input_tokens": 9,
            },
        ),
    ]
    day1b = [
        span(
            "a000000000000004",
            "chat gpt-4",
            chat_attrs(
                [parts("user", "Weather in Paris?")],
                [TOOL_CALL],
                tin=47,
                tout=17,
                **{"app.feature": "weather", "user.tier": "pro"},
            ),
        ),
        span(
            "a000000000000005",
            "execute_tool get_weather",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "get_weather"},
        ),
        span(
            "a000000000000006",
            "chat gpt-4",
            chat_attrs(
                [parts("user", "Weather in Paris?"), TOOL_CALL, TOOL_RESPONSE],
                [parts("assistant", "The weather in Paris is currently rainy with a temperature of 57°F.", finish_reason="stop")],
                tin=97,
                tout=52,
                **{"app.feature": "weather", "user.tier": "pro"},
            ),
            start=1_793_000_002_000_000_000,
        ),
    ]
    (folder / "traces-1.jsonl").write_text(export_line(day1) + "\n" + export_line(day1b, service="weather-bot") + "\n")
    # a second writer: numbers where the Collector writes strings (the opentelemetry-proto example's shape)
    claude = span(
        "b000000000000001",
        "chat claude",
        chat_attrs(
            [parts("user", "Hi"), parts("assistant", "Hello! How can I help?"), parts("user", "Tell me a joke")],
            [parts("assistant", "A haiku walks into a bar.", finish_reason="stop")],
            model="claude-sonnet-4",
            served="claude-sonnet-4-20250514",
            tin=30,
            tout=9,
            **{"app.feature": "jokes", "user.tier": "pro"},
            **{"gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}])},
        ),
        start=1_793_086_400_000_000_000,
    )
    raw = json.loads(export_line([claude]))
    sp = raw["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    sp["startTimeUnixNano"] = int(sp["startTimeUnixNano"])
    sp["endTimeUnixNano"] = int(sp["endTimeUnixNano"])
    for a in sp["attributes"]:
        if "intValue" in a["value"]:
            a["value"]["intValue"] = int(a["value"]["intValue"])
    (folder / "traces-2.jsonl").write_text(json.dumps(raw) + "\n")
    return folder


# ------------------------------------------------------------------------------------------------ otel
def test_otel_reads_chat_spans_into_the_standard_columns(tmp_path):
    src = otel_export(tmp_path / "otel")
    t, stats = read_log("otel", str(src))
    assert t.column_names[: len(STANDARD_NAMES)] == STANDARD_NAMES
    assert t.schema.field("messages").type == MESSAGES
    assert t.schema.field("request_time").type == pa.timestamp("us", tz="UTC")
    assert stats.records == 7 and stats.chat == 4 and stats.non_chat == 3 and stats.incomplete == 0 and stats.files == 2
    rows = {r["example_id"]: r for r in t.to_pylist()}
    assert set(rows) == {"a000000000000002", "a000000000000004", "a000000000000006", "b000000000000001"}
    joke = rows["a000000000000002"]
    assert [m["role"] for m in joke["messages"]] == ["system", "user"]
    assert joke["messages"][1]["content"] == "Tell me a joke about OpenTelemetry"
    assert joke["output"] == "Why did the developer bring OpenTelemetry to the party?\nTo trace the fun!"  # two text parts
    assert joke["model"] == "gpt-4-0613" and joke["prompt_tokens"] == 52 and joke["completion_tokens"] == 47
    assert joke["cached_tokens"] == 32 and joke["latency_s"] == pytest.approx(0.8) and joke["provider_cost_usd"] is None
    assert joke["app.feature"] == "jokes" and joke["service.name"] == "support-bot" and joke["gen_ai.request.model"] == "gpt-4"
    assert joke["request_time"].isoformat() == "2026-10-26T07:33:20+00:00"
    # the tool-calling turn: its answer is the tool call; the next turn carries the call and the tool's response
    call = rows["a000000000000004"]
    assert json.loads(call["output"])[0]["function"] == {"name": "get_weather", "arguments": '{"location": "Paris"}'}
    follow = rows["a000000000000006"]
    assert [m["role"] for m in follow["messages"]] == ["user", "assistant", "tool"]
    assert json.loads(follow["messages"][1]["tool_calls"])[0]["id"] == "call_VSPygqKTWdrhaFErNvMV18Yl"
    assert follow["messages"][2] == {
        "role": "tool",
        "content": "rainy, 57°F",
        "name": None,
        "tool_call_id": "call_VSPygqKTWdrhaFErNvMV18Yl",
        "tool_calls": None,
    }
    assert follow["service.name"] == "weather-bot"
    # a writer with JSON numbers, and system instructions as a leading system message
    claude = rows["b000000000000001"]
    assert [m["role"] for m in claude["messages"]] == ["system", "user", "assistant", "user"]
    assert claude["messages"][0]["content"] == "Be brief." and claude["model"] == "claude-sonnet-4-20250514"
    assert claude["prompt_tokens"] == 30 and claude["output"] == "A haiku walks into a bar."
    # attributes only non-chat spans had are no columns; array attributes are lists
    assert "http.route" not in t.column_names and "gen_ai.tool.name" not in t.column_names
    assert joke["gen_ai.response.finish_reasons"] == ["stop"]


def test_otel_older_conventions_events_and_content_events(tmp_path):
    """Spans of semantic conventions before v1.37: gen_ai.system with gen_ai.*.message and gen_ai.choice
    events (v1.28-1.36), and gen_ai.content.prompt/completion events (v1.26)."""

    def ev(name, attrs):
        return {"timeUnixNano": "1793000000100000000", "name": name, "attributes": kv(attrs)}

    old = span(
        "c000000000000001",
        "chat gpt-4o",
        {
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 20,
            "gen_ai.usage.completion_tokens": 5,
        },
        events=[
            ev("gen_ai.system.message", {"gen_ai.system": "openai", "content": "You greet people"}),
            ev("gen_ai.user.message", {"gen_ai.system": "openai", "content": "Hello, say 'Hi' back to me"}),
            ev(
                "gen_ai.choice",
                {
                    "gen_ai.system": "openai",
                    "index": 0,
                    "finish_reason": "stop",
                    "message": json.dumps({"role": "assistant", "content": "Hi"}),
                },
            ),
        ],
    )
    older = span(
        "c000000000000002",
        "openai.chat",
        {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-3.5-turbo"},
        events=[
            ev("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([{"role": "user", "content": "2+2?"}])}),
            ev("gen_ai.content.completion", {"gen_ai.completion": "4"}),
        ],
    )
    (tmp_path / "old.jsonl").write_text(export_line([old, older]) + "\n")
    t, stats = read_log("otel", str(tmp_path / "old.jsonl"))
    rows = {r["example_id"]: r for r in t.to_pylist()}
    assert stats.chat == 2
    assert [(m["role"], m["content"]) for m in rows["c000000000000001"]["messages"]] == [
        ("system", "You greet people"),
        ("user", "Hello, say 'Hi' back to me"),
    ]
    assert rows["c000000000000001"]["output"] == "Hi" and rows["c000000000000001"]["prompt_tokens"] == 20
    assert rows["c000000000000001"]["model"] == "gpt-4o"  # no response model: the requested one
    assert rows["c000000000000002"]["messages"][0]["content"] == "2+2?" and rows["c000000000000002"]["output"] == "4"


def test_otel_truncated_line_is_an_error_naming_the_line_or_skipped(tmp_path):
    src = otel_export(tmp_path / "otel")
    good = (src / "traces-1.jsonl").read_text()
    (src / "traces-1.jsonl").write_text(
        good
        + export_line([span("d000000000000001", "chat gpt-4", chat_attrs([parts("user", "x")], [parts("assistant", "y")]))])[:150]
        + "\n"
    )
    with pytest.raises(LogError, match=r"traces-1\.jsonl:3: not a JSON object .*truncated"):
        read_log("otel", str(src))
    t, stats = read_log("otel", str(src), on_incomplete="skip")
    assert stats.incomplete == 1 and stats.chat == 4 and t.num_rows == 4


def test_otel_span_without_messages(tmp_path):
    """Content capture off: a chat span with usage but no messages. An error naming the file, line,
    span and the missing attribute, or skipped and counted."""
    no_content = span(
        "e000000000000001",
        "chat gpt-4",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4",
            "gen_ai.usage.input_tokens": 52,
        },
    )
    no_output = span(
        "e000000000000002",
        "chat gpt-4",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4",
            "gen_ai.input.messages": json.dumps([parts("user", "hi")]),
        },
    )
    ok = span("e000000000000003", "chat gpt-4", chat_attrs([parts("user", "a")], [parts("assistant", "b")]))
    (tmp_path / "t.jsonl").write_text(export_line([ok]) + "\n" + export_line([no_content, no_output]) + "\n")
    with pytest.raises(LogError, match=r"t\.jsonl:2 span e000000000000001: no gen_ai\.input\.messages attribute"):
        read_log("otel", str(tmp_path / "t.jsonl"))
    t, stats = read_log("otel", str(tmp_path / "t.jsonl"), on_incomplete="skip")
    assert t["example_id"].to_pylist() == ["e000000000000003"] and stats.incomplete == 2 and stats.chat == 1
    assert any("e000000000000002: no gen_ai.output.messages" in e for e in stats.examples)


def test_otel_failed_call_is_kept_with_its_error(tmp_path):
    failed = span(
        "f000000000000001",
        "chat gpt-4",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4",
            "gen_ai.input.messages": json.dumps([parts("user", "hi")]),
            "error.type": "RateLimitError",
        },
        status={"code": 2, "message": "Rate limit reached"},
    )
    (tmp_path / "t.jsonl").write_text(export_line([failed]) + "\n")
    t, stats = read_log("otel", str(tmp_path / "t.jsonl"))
    r = t.to_pylist()[0]
    assert r["output"] is None and r["error"] == "Rate limit reached" and stats.failed == 1 and stats.chat == 1


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("gen_ai.usage.input_tokens", "many", r"attribute gen_ai\.usage\.input_tokens is 'many' \(string\), not a whole number"),
        ("gen_ai.usage.output_tokens", 3.5, r"attribute gen_ai\.usage\.output_tokens is 3\.5 \(double\), not a whole number"),
        ("gen_ai.input.messages", 7, r"attribute gen_ai\.input\.messages is 7 \(int64\), not text"),
        ("gen_ai.input.messages", "{not json", r"attribute gen_ai\.input\.messages is not JSON"),
    ],
)
def test_otel_attributes_of_the_wrong_type(tmp_path, key, value, message):
    attrs = chat_attrs([parts("user", "a")], [parts("assistant", "b")])
    attrs[key] = value
    (tmp_path / "t.jsonl").write_text(export_line([span("g000000000000001", "chat gpt-4", attrs)]) + "\n")
    with pytest.raises(LogError, match=r"t\.jsonl:1 span g000000000000001: " + message):
        read_log("otel", str(tmp_path / "t.jsonl"))


def test_otel_token_counts_as_digit_text_are_read(tmp_path):
    attrs = chat_attrs([parts("user", "a")], [parts("assistant", "b")])
    attrs["gen_ai.usage.input_tokens"] = "12"
    (tmp_path / "t.jsonl").write_text(export_line([span("g000000000000002", "chat gpt-4", attrs)]) + "\n")
    assert read_log("otel", str(tmp_path / "t.jsonl"))[0]["prompt_tokens"].to_pylist() == [12]


def test_otel_empty_day_file_and_glob(tmp_path):
    src = otel_export(tmp_path / "otel")
    (src / "traces-3.jsonl").write_text("")  # a day without traffic
    t, stats = read_log("otel", str(src / "traces-*.jsonl"))
    assert t.num_rows == 4 and stats.files == 3
    t, stats = read_log("otel", str(src / "traces-3.jsonl"))
    assert t.num_rows == 0 and t.column_names == STANDARD_NAMES and stats.records == 0
    with pytest.raises(FileNotFoundError, match="no log files at"):
        read_log("otel", str(tmp_path / "nothing-*.jsonl"))


def test_otel_reads_from_an_fsspec_url(tmp_path):
    import fsspec

    src = otel_export(tmp_path / "otel")
    fs = fsspec.filesystem("memory")
    for p in src.iterdir():
        fs.pipe(f"/logs-test/{p.name}", p.read_bytes())
    t, stats = read_log("otel", "memory://logs-test")
    assert t.num_rows == 4 and stats.files == 2


# ------------------------------------------------------------------------------------------------ openinference
def oi_span(span_id, kind, attrs, **kw):
    return span(span_id, "llm", {"openinference.span.kind": kind, **attrs}, **kw)


def test_openinference_llm_spans(tmp_path):
    """The llm_spans.md examples: a tool call from gpt-3.5-turbo-0613, then the synthesis call with the
    tool's result; a CHAIN span around them is skipped."""
    system = "You are a Shakespearean writing assistant."
    first = oi_span(
        "0100000000000001",
        "LLM",
        {
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": system,
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "what is 23 times 87",
            "llm.model_name": "gpt-3.5-turbo-0613",
            "llm.invocation_parameters": '{"model": "gpt-3.5-turbo-0613", "temperature": 0.1}',
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "multiply",
            "llm.output_messages.0.message.tool_calls.0.tool_call.function.arguments": '{\n  "a": 23,\n  "b": 87\n}',
            "llm.token_count.prompt": 229,
            "llm.token_count.completion": 21,
            "llm.token_count.total": 250,
            "llm.cost.total": 0.000375,
            "session.id": "s-1",
            "metadata": '{"app": "poet"}',
        },
    )
    second = oi_span(
        "0100000000000002",
        "LLM",
        {
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": system,
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": "what is 23 times 87",
            "llm.input_messages.2.message.role": "assistant",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "multiply",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"a": 23, "b": 87}',
            "llm.input_messages.3.message.role": "tool",
            "llm.input_messages.3.message.content": "2001",
            "llm.input_messages.3.message.name": "multiply",
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.contents.0.message_content.type": "text",
            "llm.output_messages.0.message.contents.0.message_content.text": "The product of 23 times 87 is 2001.",
            "output.value": "The product of 23 times 87 is 2001.",
            "output.mime_type": "text/plain",
            "llm.model_name": "gpt-3.5-turbo-0613",
            "llm.token_count.prompt": 259,
            "llm.token_count.completion": 14,
            "llm.token_count.prompt_details.cache_read": 128,
            "llm.cost.prompt": 0.0003,
            "llm.cost.completion": 0.00002,
            "session.id": "s-1",
        },
    )
    chain = oi_span("0100000000000003", "CHAIN", {"input.value": "what is 23 times 87", "output.value": "2001"})
    retriever = oi_span("0100000000000004", "RETRIEVER", {"retrieval.documents.0.document.content": "x"})
    (tmp_path / "phoenix.jsonl").write_text(export_line([chain, first, second, retriever]) + "\n")
    t, stats = read_log("openinference", str(tmp_path / "phoenix.jsonl"))
    assert stats.records == 4 and stats.chat == 2 and stats.non_chat == 2
    rows = {r["example_id"]: r for r in t.to_pylist()}
    a, b = rows["0100000000000001"], rows["0100000000000002"]
    assert [m["role"] for m in a["messages"]] == ["system", "user"] and a["messages"][0]["content"] == system
    assert json.loads(a["output"]) == [
        {"id": None, "type": "function", "function": {"name": "multiply", "arguments": '{\n  "a": 23,\n  "b": 87\n}'}}
    ]
    assert a["provider_cost_usd"] == pytest.approx(0.000375) and a["prompt_tokens"] == 229 and a["model"] == "gpt-3.5-turbo-0613"
    assert [m["role"] for m in b["messages"]] == ["system", "user", "assistant", "tool"]
    assert b["messages"][3]["name"] == "multiply" and b["messages"][3]["content"] == "2001"
    assert json.loads(b["messages"][2]["tool_calls"])[0]["function"]["name"] == "multiply"
    assert b["output"] == "The product of 23 times 87 is 2001." and b["cached_tokens"] == 128
    assert b["provider_cost_usd"] == pytest.approx(0.00032)  # prompt + completion when there is no total
    assert b["session.id"] == "s-1"
    assert not any(c.startswith("llm.input_messages") for c in t.column_names)


def test_openinference_llm_span_without_input_messages(tmp_path):
    (tmp_path / "p.jsonl").write_text(export_line([oi_span("0200000000000001", "LLM", {"llm.model_name": "gpt-4o"})]) + "\n")
    with pytest.raises(LogError, match=r"p\.jsonl:1 span 0200000000000001: no llm\.input_messages"):
        read_log("openinference", str(tmp_path / "p.jsonl"))
    t, stats = read_log("openinference", str(tmp_path / "p.jsonl"), on_incomplete="skip")
    assert t.num_rows == 0 and stats.incomplete == 1


# ------------------------------------------------------------------------------------------------ langfuse
def langfuse_rows():
    base = {
        "trace_id": "t-1",
        "project_id": "p-1",
        "environment": "production",
        "parent_observation_id": "",
        "level": "DEFAULT",
        "status_message": "",
        "version": "",
        "user_id": "u-42",
        "session_id": "sess-7",
        "trace_name": "support",
        "tags": ["beta"],
    }
    return [
        {
            **base,
            "id": "obs-1",
            "type": "GENERATION",
            "name": "answer",
            "start_time": "2024-05-29 13:46:19.963000",
            "end_time": "2024-05-29 13:46:21.463000",
            "completion_start_time": "2024-05-29 13:46:20.163000",
            "input": json.dumps(
                [
                    {"role": "system", "content": "Be kind."},
                    {"role": "user", "content": "Refund?"},
                    {"role": "assistant", "content": "Which order?"},
                    {"role": "user", "content": [{"type": "text", "text": "Order 12"}]},
                ]
            ),
            "output": json.dumps({"role": "assistant", "content": "Refund issued for order 12."}),
            "provided_model_name": "gpt-4o",
            "model_parameters": '{"temperature":0.7}',
            "usage_details": {"input": 500, "output": 120, "total": 620, "input_cached_tokens": 256},
            "cost_details": {"input": 0.00125, "output": 0.0012, "total": 0.00245},
            "total_cost": 0.00245,
            "metadata": {"app.feature": "refunds"},
            "prompt_name": "support-v3",
            "prompt_version": 3,
        },
        {
            **base,
            "id": "obs-2",
            "type": "SPAN",
            "name": "retrieve",
            "start_time": "2024-05-29 13:46:19.000000",
            "input": "q",
            "output": "docs",
        },
        {
            **base,
            "id": "obs-3",
            "type": "GENERATION",
            "name": "answer",
            "start_time": "2024-05-29 14:00:00.000000",
            "end_time": "2024-05-29 14:00:01.000000",
            "input": "What are your opening hours?",
            "output": "9 to 5.",
            "provided_model_name": "claude-3-5-haiku",
            "usage_details": {"input": 7, "output": 4},
            "cost_details": {"input": 0.00001, "output": 0.00002},
            "metadata": {},
        },
    ]


def test_langfuse_jsonl_and_parquet_exports(tmp_path):
    folder = tmp_path / "export" / "p-1" / "observations_v2"
    folder.mkdir(parents=True)
    rows = langfuse_rows()
    (folder / "2024-05-29T14-00.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "export" / "p-1" / "scores").mkdir()
    (tmp_path / "export" / "p-1" / "scores" / "2024-05-29T14-00.jsonl").write_text(
        '{"id": "s-1", "name": "helpful", "value": 1}\n'
    )
    t, stats = read_log("langfuse", str(tmp_path / "export"))
    assert stats.records == 3 and stats.chat == 2 and stats.non_chat == 1 and stats.files == 1
    r = {x["example_id"]: x for x in t.to_pylist()}
    g = r["obs-1"]
    assert [m["content"] for m in g["messages"]] == ["Be kind.", "Refund?", "Which order?", "Order 12"]
    assert g["output"] == "Refund issued for order 12." and g["model"] == "gpt-4o"
    assert (g["prompt_tokens"], g["completion_tokens"], g["cached_tokens"]) == (500, 120, 256)
    assert (
        g["provider_cost_usd"] == pytest.approx(0.00245)
        and g["latency_s"] == pytest.approx(1.5)
        and g["ttft_s"] == pytest.approx(0.2)
    )
    assert g["request_time"].isoformat() == "2024-05-29T13:46:19.963000+00:00"
    assert g["app.feature"] == "refunds" and g["user_id"] == "u-42" and g["prompt_name"] == "support-v3"
    assert r["obs-3"]["messages"][0] == {
        "role": "user",
        "content": "What are your opening hours?",
        "name": None,
        "tool_call_id": None,
        "tool_calls": None,
    }
    assert r["obs-3"]["provider_cost_usd"] == pytest.approx(0.00003)  # no total: the sum of the parts
    # the same observations as Parquet (maps and lists as Parquet has them), with the older camelCase names
    camel = [
        {
            {
                "start_time": "startTime",
                "end_time": "endTime",
                "completion_start_time": "completionStartTime",
                "usage_details": "usageDetails",
                "cost_details": "costDetails",
                "provided_model_name": "providedModelName",
            }.get(k, k): v
            for k, v in row.items()
            if k != "metadata"
        }
        for row in rows
    ]
    table = pa.Table.from_pylist(camel)
    pq.write_table(table, tmp_path / "obs.parquet")
    t2, _ = read_log("langfuse", str(tmp_path / "obs.parquet"))
    assert t2.num_rows == 2 and t2["output"].to_pylist() == t["output"].to_pylist()
    assert t2["prompt_tokens"].to_pylist() == [500, 7]


def test_langfuse_generation_without_output_and_wrong_usage(tmp_path):
    rows = langfuse_rows()
    rows[0]["output"] = None
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(LogError, match=r"o\.jsonl:1 observation obs-1: no output"):
        read_log("langfuse", str(tmp_path / "o.jsonl"))
    rows = langfuse_rows()
    rows[2]["usage_details"] = {"input": "seven", "output": 4}
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(LogError, match=r"o\.jsonl:3 observation obs-3: usage_details\.input is 'seven', not a whole number"):
        read_log("langfuse", str(tmp_path / "o.jsonl"))


# ------------------------------------------------------------------------------------------------ litellm
def spend_rows():
    msgs = [
        {"role": "system", "content": "You are a travel agent."},
        {"role": "user", "content": "Flights to Rome?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search_flights", "arguments": '{"to": "FCO"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '[{"flight": "AZ 101"}]'},
    ]
    resp = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1730000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "AZ 101 leaves at 9:05."}}],
        "usage": {
            "prompt_tokens": 88,
            "completion_tokens": 9,
            "total_tokens": 97,
            "prompt_tokens_details": {"cached_tokens": 64},
        },
    }
    common = {
        "api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
        "user": "",
        "team_id": "team-a",
        "end_user": "cust-9",
        "cache_hit": "False",
        "cache_key": "Cache OFF",
        "custom_llm_provider": "openai",
        "api_base": "https://api.openai.com/v1",
        "requester_ip_address": "",
        "session_id": "sess-1",
    }
    return [
        {
            **common,
            "request_id": "chatcmpl-1",
            "call_type": "acompletion",
            "spend": 0.0000186,
            "total_tokens": 97,
            "prompt_tokens": 88,
            "completion_tokens": 9,
            "startTime": "2024-10-27T03:33:19.123000+00:00",
            "endTime": "2024-10-27T03:33:20.373000+00:00",
            "completionStartTime": "2024-10-27T03:33:19.523000+00:00",
            "model": "gpt-4o-mini",
            "model_group": "travel-default",
            "metadata": {
                "user_api_key": "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b",
                "user_api_key_alias": "travel-app",
                "requester_metadata": {"app.feature": "flights"},
                "status": "success",
            },
            "request_tags": ["prod"],
            "messages": msgs,
            "response": resp,
            "status": "success",
        },
        {
            **common,
            "request_id": "emb-1",
            "call_type": "aembedding",
            "spend": 0.000001,
            "total_tokens": 5,
            "prompt_tokens": 5,
            "completion_tokens": 0,
            "startTime": "2024-10-27T03:34:00+00:00",
            "endTime": "2024-10-27T03:34:00.200000+00:00",
            "model": "text-embedding-3-small",
            "metadata": {},
            "messages": {},
            "response": {},
            "status": "success",
        },
        {
            **common,
            "request_id": "chatcmpl-2",
            "call_type": "acompletion",
            "spend": 0.0,
            "total_tokens": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "startTime": "2024-10-27T03:35:00+00:00",
            "endTime": "2024-10-27T03:35:30+00:00",
            "model": "claude-3-5-sonnet",
            "metadata": {"error_information": {"error_class": "Timeout", "error_message": "Request timed out"}},
            "messages": [{"role": "user", "content": "Hotels in Rome?"}],
            "response": {},
            "status": "failure",
        },
    ]


def test_litellm_spend_logs_json_and_csv(tmp_path):
    rows = spend_rows()
    (tmp_path / "spend.json").write_text(json.dumps(rows))
    t, stats = read_log("litellm", str(tmp_path / "spend.json"))
    assert stats.records == 3 and stats.chat == 2 and stats.non_chat == 1 and stats.failed == 1
    r = {x["example_id"]: x for x in t.to_pylist()}
    a = r["chatcmpl-1"]
    assert [m["role"] for m in a["messages"]] == ["system", "user", "assistant", "tool"]
    assert a["messages"][3]["tool_call_id"] == "call_1" and "search_flights" in a["messages"][2]["tool_calls"]
    assert a["output"] == "AZ 101 leaves at 9:05." and a["model"] == "gpt-4o-mini-2024-07-18"
    assert a["provider_cost_usd"] == pytest.approx(0.0000186) and a["cached_tokens"] == 64
    assert a["latency_s"] == pytest.approx(1.25) and a["ttft_s"] == pytest.approx(0.4)
    assert a["model_group"] == "travel-default" and a["app.feature"] == "flights" and a["user_api_key_alias"] == "travel-app"
    # the hashed key is never carried
    assert "api_key" not in t.column_names and "user_api_key" not in t.column_names and "cache_key" not in t.column_names
    assert r["chatcmpl-2"]["output"] is None and r["chatcmpl-2"]["error"] == "Request timed out"
    # a CSV dump of the table: JSON columns as JSON text
    import csv

    with open(tmp_path / "spend.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) + ["completionStartTime", "model_group"])
        w.writeheader()
        for row in rows:
            w.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    t2, _ = read_log("litellm", str(tmp_path / "spend.csv"))
    assert t2["output"].to_pylist() == t["output"].to_pylist() and t2["prompt_tokens"].to_pylist() == [88, 0]


def test_litellm_row_without_stored_messages(tmp_path):
    rows = spend_rows()
    rows[0]["messages"] = {}
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(LogError, match=r"s\.jsonl:1 request_id chatcmpl-1: no messages"):
        read_log("litellm", str(tmp_path / "s.jsonl"))
    t, stats = read_log("litellm", str(tmp_path / "s.jsonl"), on_incomplete="skip")
    assert t["example_id"].to_pylist() == ["chatcmpl-2"] and stats.incomplete == 1


# ------------------------------------------------------------------------------------------------ openai-batch
def batch_files(folder: Path, extra_output: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    inputs = [
        {
            "custom_id": "request-1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {
                "model": "gpt-4o-mini",
                "temperature": 0,
                "max_tokens": 100,
                "metadata": {"ticket": "T-1"},
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "Hello world!"},
                ],
            },
        },
        {
            "custom_id": "request-2",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": "Say hi"}]}]},
        },
        {
            "custom_id": "request-3",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": "x"},
        },
        {
            "custom_id": "request-4",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Too long"}]},
        },
    ]
    outputs = [
        {
            "id": "batch_req_1",
            "custom_id": "request-2",
            "response": {
                "status_code": 200,
                "request_id": "req_2",
                "body": {
                    "id": "chatcmpl-2",
                    "object": "chat.completion",
                    "created": 1711652795,
                    "model": "gpt-4o-mini-2024-07-18",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
                },
            },
            "error": None,
        },
        {
            "id": "batch_req_2",
            "custom_id": "request-1",
            "response": {
                "status_code": 200,
                "request_id": "req_1",
                "body": {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1711652789,
                    "model": "gpt-4o-mini-2024-07-18",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "Hello! How can I assist you today?"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": 22,
                        "completion_tokens": 9,
                        "total_tokens": 31,
                        "prompt_tokens_details": {"cached_tokens": 0},
                    },
                },
            },
            "error": None,
        },
        {
            "id": "batch_req_3",
            "custom_id": "request-3",
            "response": {"status_code": 200, "body": {"object": "list", "data": []}},
            "error": None,
        },
    ]
    errors = [
        {
            "id": "batch_req_4",
            "custom_id": "request-4",
            "response": {
                "status_code": 400,
                "request_id": "req_4",
                "body": {"error": {"message": "maximum context length exceeded", "type": "invalid_request_error"}},
            },
            "error": None,
        }
    ]
    if extra_output:
        outputs.append(
            {
                "id": "batch_req_9",
                "custom_id": "request-9",
                "response": {"status_code": 200, "body": {"choices": [{"message": {"role": "assistant", "content": "?"}}]}},
                "error": None,
            }
        )
    (folder / "batch_input.jsonl").write_text("\n".join(json.dumps(x) for x in inputs) + "\n")
    (folder / "batch_output.jsonl").write_text("\n".join(json.dumps(x) for x in outputs) + "\n")
    (folder / "batch_errors.jsonl").write_text("\n".join(json.dumps(x) for x in errors) + "\n")
    return folder


def test_openai_batch_input_joined_with_output(tmp_path):
    t, stats = read_log("openai-batch", str(batch_files(tmp_path / "b")))
    assert stats.records == 4 and stats.chat == 3 and stats.non_chat == 1 and stats.failed == 1
    r = {x["example_id"]: x for x in t.to_pylist()}
    assert r["request-1"]["output"] == "Hello! How can I assist you today?" and r["request-1"]["prompt_tokens"] == 22
    assert [m["role"] for m in r["request-1"]["messages"]] == ["system", "user"] and r["request-1"]["ticket"] == "T-1"
    assert r["request-1"]["temperature"] == 0 and r["request-1"]["batch_request_id"] == "batch_req_2"
    assert r["request-2"]["messages"][0]["content"] == "Say hi" and r["request-2"]["model"] == "gpt-4o-mini-2024-07-18"
    assert r["request-2"]["request_time"].isoformat() == "2024-03-28T19:06:35+00:00"
    assert r["request-4"]["output"] is None and "maximum context length exceeded" in r["request-4"]["error"]


def test_openai_batch_output_line_without_its_input(tmp_path):
    src = batch_files(tmp_path / "b", extra_output=True)
    with pytest.raises(LogError, match=r"batch_output\.jsonl:4 custom_id request-9: an output line without its input line"):
        read_log("openai-batch", str(src))
    t, stats = read_log("openai-batch", str(src), on_incomplete="skip")
    assert stats.incomplete == 1 and t.num_rows == 3
    # and only the output file: every line lacks its input
    t, stats = read_log("openai-batch", str(src / "batch_output.jsonl"), on_incomplete="skip")
    assert t.num_rows == 0 and stats.incomplete == 4


def test_unknown_format_and_on_incomplete_value():
    with pytest.raises(ValueError, match="unknown log format 'jaeger'"):
        read_log("jaeger", "x")
    with pytest.raises(ValueError, match="on_incomplete must be one of error, skip"):
        read_log("otel", "x", on_incomplete="ignore")


def test_the_config_knows_the_same_formats():
    from assay.config.schema import LOG_FORMATS

    assert set(LOG_FORMATS) == set(FORMATS)


# ------------------------------------------------------------------------------------------------ wired in
def test_config_errors_name_the_key_path(tmp_path):
    from assay.config import ConfigError, load_config

    (tmp_path / "pipelines.yaml").write_text(
        "models:\n"
        "  inc: {provider: replay, format: zipkin, source: logs/}\n"
        "  inc2: {provider: replay, format: otel, output_column: output}\n"
        "pipelines:\n"
        "  p:\n"
        "    dataset: {source: logs/, format: otel, on_incomplete: ignore}\n"
        "    models: [inc]\n"
        "    metrics: [output_length]\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "pipelines.yaml")
    paths = {p for p, _, _ in e.value.problems}
    assert "models.inc.format" in paths and "pipelines.p.dataset.on_incomplete" in paths
    assert any(p.startswith("models.inc2") and "give its source" in m for p, m, _ in e.value.problems)


def test_replay_model_picks_its_rows_and_serves_logged_answers(tmp_path):
    from assay.config import DatasetConfig, ReplayModel
    from assay.dataset import prepare, read_source
    from assay.providers import Context, build

    src = otel_export(tmp_path / "otel")
    ds = DatasetConfig(source=str(src), format="otel")
    assert ds.id == "example_id"
    table = prepare(read_source(str(src), "otel"), ds, None, None)
    ctx = Context("claude", ds, None, lambda p: p)
    p = build("claude", ReplayModel(format="otel", source=str(src), model="claude-sonnet-4"), ctx)
    p.prepare(table)
    out = p.run_batch(table)
    got = dict(zip(table["example_id"].to_pylist(), out["output"]))
    # the request model picks claude's one call; the gpt-4 calls have no response from this model
    assert got["b000000000000001"] == "A haiku walks into a bar." and got["a000000000000002"] is None
    assert out["prompt_tokens"][table["example_id"].to_pylist().index("b000000000000001")] == 30
    assert p.logged_request_times
    bad = build("x", ReplayModel(format="otel", source=str(src), model="gpt-5"), ctx)
    with pytest.raises(ValueError, match=r"has no calls of model 'gpt-5' \(it holds: claude-sonnet-4-20250514, gpt-4-0613\)"):
        bad.prepare(table)


def test_assay_run_on_an_otel_export_replayed(tmp_path, prefect_server):
    """A pipeline whose dataset is an OTel export and whose replay model reads the same export: the
    load line counts what was skipped, each example's response is the logged answer with its
    tokens, and the request is priced at its own day."""
    from prefect.settings import PREFECT_API_URL

    src = ROOT / "data" / "production_traffic" / "otel"
    cfg = tmp_path / "pipelines.yaml"
    cfg.write_text(
        f"artifacts: {tmp_path / 'runs'}\n"
        "models:\n"
        f"  incumbent: {{provider: replay, format: otel, source: {src}, model: gpt-4o-mini,\n"
        "              price: {input_per_mtok: 0.15, output_per_mtok: 0.6}}\n"
        "pipelines:\n"
        "  traffic:\n"
        f"    dataset: {{source: {src}, format: otel, slices: [app.feature], partition: {{column: request_time, window: 1d}}}}\n"
        "    models: [incumbent]\n"
        "    metrics: [output_length]\n"
        "    bootstrap: 20\n"
    )
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_LOGGING_LEVEL="INFO", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "flows.cli", "run", "traffic", "--config", str(cfg), "--as-of", "2026-11-03", "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    folder = Path(r.stdout.strip().splitlines()[-1])
    expected, _ = read_log("otel", str(src / "traces-2026-11-03.jsonl"))
    assert f"load: otel log {src}: " in r.stderr and "non-chat skipped" in r.stderr
    ds = pq.read_table(folder / "dataset.parquet")
    assert sorted(ds["example_id"].to_pylist()) == sorted(expected["example_id"].to_pylist())  # the day's chat calls
    resp = pa.concat_tables(pq.read_table(p) for p in sorted((folder / "responses").glob("*.parquet")))
    by_id = {r["example_id"]: r for r in resp.to_pylist()}
    for row in expected.to_pylist():
        got = by_id[row["example_id"]]
        assert got["output"] == row["output"] and got["prompt_tokens"] == row["prompt_tokens"] and got["error"] is None
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["dataset"]["log"]["non_chat"] > 0 and manifest["dataset"]["format"] == "otel"


def test_preflight_names_a_log_source_without_files(tmp_path):
    from datetime import date

    from assay.config import ConfigError, load_config
    from assay.preflight import preflight

    src = otel_export(tmp_path / "otel")
    (tmp_path / "pipelines.yaml").write_text(
        "models:\n"
        f"  inc: {{provider: replay, format: otel, source: {tmp_path / 'missing'}}}\n"
        "pipelines:\n"
        "  p:\n"
        f"    dataset: {{source: {tmp_path / 'empty'}, format: otel}}\n"
        "    models: [inc]\n"
        "    metrics: [output_length]\n"
        "  q:\n"
        f"    dataset: {{source: {src}, format: otel, slices: [app.feature]}}\n"
        "    models: [inc]\n"
        "    metrics: [output_length]\n"
    )
    (tmp_path / "empty").mkdir()
    loaded = load_config(tmp_path / "pipelines.yaml")
    with pytest.raises(ConfigError) as e:
        preflight(loaded, "p", date(2026, 11, 3))
    found = {p: m for p, m, _ in e.value.problems}
    assert "no log files at" in found["pipelines.p.dataset.source"]
    assert "no log files at" in found["models.inc.source"]
    # the attributes of the log are columns the config can name
    with pytest.raises(ConfigError) as e:
        preflight(loaded, "q", date(2026, 11, 3))
    assert {p for p, _, _ in e.value.problems} == {"models.inc.source"}


def test_otel_messages_in_another_shape_beside_parts_based_ones(tmp_path):
    """An instrumentation that writes OpenAI-shaped messages ({role, content}) into
    gen_ai.input.messages, and an answer with a reasoning part before its text, in one block with
    ordinary spans: each read as it is, none with its content lost."""
    plain = span("h000000000000001", "chat gpt-4", chat_attrs([parts("user", "a")], [parts("assistant", "b")]))
    openai_shape = span(
        "h000000000000002",
        "chat gpt-4",
        chat_attrs(
            [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}], [parts("assistant", "hello")]
        ),
    )
    reasoning = span(
        "h000000000000003",
        "chat o3",
        chat_attrs(
            [parts("user", "joke?")],
            [{"role": "assistant", "parts": [{"type": "reasoning", "content": "think"}, {"type": "text", "content": "A joke."}]}],
        ),
    )
    only_reasoning = span(
        "h000000000000004",
        "chat o3",
        chat_attrs([parts("user", "x")], [{"role": "assistant", "parts": [{"type": "reasoning", "content": "hmm"}]}]),
    )
    (tmp_path / "t.jsonl").write_text(export_line([plain, openai_shape, reasoning, only_reasoning]) + "\n")
    with pytest.raises(LogError, match=r"h000000000000004: gen_ai\.output\.messages holds no text and no tool call"):
        read_log("otel", str(tmp_path / "t.jsonl"))
    t, stats = read_log("otel", str(tmp_path / "t.jsonl"), on_incomplete="skip")
    rows = {r["example_id"]: r for r in t.to_pylist()}
    assert t["example_id"].to_pylist() == ["h000000000000001", "h000000000000002", "h000000000000003"]
    assert [(m["role"], m["content"]) for m in rows["h000000000000002"]["messages"]] == [("system", "Be brief."), ("user", "hi")]
    assert rows["h000000000000003"]["output"] == "A joke." and rows["h000000000000001"]["output"] == "b"
    assert stats.incomplete == 1


def test_otel_an_attribute_of_different_kinds_in_two_files_becomes_text(tmp_path):
    a = chat_attrs([parts("user", "a")], [parts("assistant", "b")], **{"app.build": 1042})
    b = chat_attrs([parts("user", "c")], [parts("assistant", "d")], **{"app.build": "1043-rc1"})
    (tmp_path / "1.jsonl").write_text(export_line([span("i000000000000001", "chat gpt-4", a)]) + "\n")
    (tmp_path / "2.jsonl").write_text(export_line([span("i000000000000002", "chat gpt-4", b)]) + "\n")
    t, _ = read_log("otel", str(tmp_path))
    assert t.schema.field("app.build").type == pa.string() and t["app.build"].to_pylist() == ["1042", "1043-rc1"]


def test_langfuse_legacy_export_joins_its_traces(tmp_path):
    root = tmp_path / "p-1"
    (root / "observations").mkdir(parents=True)
    (root / "traces").mkdir()
    rows = [{k: v for k, v in r.items() if k not in ("user_id", "session_id", "trace_name", "tags")} for r in langfuse_rows()]
    (root / "observations" / "2024-05-29.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (root / "traces" / "2024-05-29.jsonl").write_text(
        json.dumps({"id": "t-1", "name": "support", "user_id": "u-42", "session_id": "sess-7", "tags": ["beta"], "release": "v9"})
        + "\n"
    )
    t, stats = read_log("langfuse", str(tmp_path))
    assert stats.files == 1 and t.num_rows == 2
    r = t.to_pylist()[0]
    assert (r["user_id"], r["session_id"], r["trace_name"], r["release"], r["tags"]) == (
        "u-42",
        "sess-7",
        "support",
        "v9",
        ["beta"],
    )


def test_a_span_exported_twice_is_read_once(tmp_path):
    src = otel_export(tmp_path / "otel")
    (src / "traces-retry.jsonl").write_text((src / "traces-1.jsonl").read_text().splitlines()[0] + "\n")
    t, stats = read_log("otel", str(src))
    assert t.num_rows == 4 and stats.duplicates == 1 and stats.chat == 4
    assert sorted(t["example_id"].to_pylist()) == ["a000000000000002", "a000000000000004", "a000000000000006", "b000000000000001"]
