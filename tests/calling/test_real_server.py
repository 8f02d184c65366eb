"""Against a real OpenAI-compatible server: llama.cpp's ``llama-server`` with a tiny random model.

The session fixture ``llama_server`` (tests/conftest.py) builds the server from the pinned
llama-cpp-python sdist when the cache has none (scripts/real_server.py) and starts it with 8
slots. Every way it differs from OpenAI's API that Assay must handle is exercised here: usage
(cached tokens too) on plain and streamed calls, the ``content: null`` first chunk, the
usage-only last chunk, extra fields, the served model's own name and fingerprint, integer error
codes, a prompt longer than the context, ``samples: K``, seeded repeatable calls, and the
capacity sweep whose pooled connections once failed after streamed responses.
"""

import asyncio
import json
from datetime import date

import aiohttp
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import assay.capacity
import assay.store
from assay.calling import CallOptions, call_chat
from assay.config import DatasetConfig, parse_model
from assay.providers import Context
from assay.providers.openai_compat import OpenAIProvider
from assay.responses import read_responses
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

MAX_TOKENS = 16
ALIAS = "tiny-llama"


def _provider(base_url: str, **extra) -> OpenAIProvider:
    params = {"max_tokens": MAX_TOKENS, "temperature": 0, "seed": 7, **extra.pop("params", {})}
    cfg = parse_model(
        {
            "provider": "openai",
            "model": "whatever-was-asked",
            "base_url": base_url,
            "params": params,
            "max_concurrency": 8,
            "max_attempts": 3,
            "timeout_s": 60,
            **extra,
        }
    )
    return OpenAIProvider(cfg, Context("tiny", DatasetConfig(source="x.parquet"), None, lambda p: p))


def _ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


async def _with(provider, fn):
    await provider.start()
    try:
        return await fn(provider)
    finally:
        await provider.close()


def _run(provider, fn):
    return asyncio.run(_with(provider, fn))


async def _raw(url: str, body: dict) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as s:
        async with s.post(url + "/chat/completions", json=body) as r:
            return r.status, dict(r.headers), await r.read()


# ------------------------------------------------------------------------------------------- plain calls


def test_a_plain_call_reads_usage_the_served_name_and_fingerprint(llama_server):
    status, _, raw = asyncio.run(
        _raw(llama_server.base_url, {"model": "whatever-was-asked", "messages": _ask("hello"), "max_tokens": MAX_TOKENS})
    )
    data = json.loads(raw)
    assert status == 200 and "timings" in data  # a non-standard field, which the provider ignores
    assert data["model"] == ALIAS  # the request's model is ignored

    async def twice(p):
        return await p.call(_ask("a question about billing")), await p.call(_ask("a question about billing"))

    first, second = _run(_provider(llama_server.base_url), twice)
    for r in (first, second):
        assert r.output and r.prompt_tokens > 5 and r.completion_tokens == MAX_TOKENS
        assert r.response_model == ALIAS
        assert r.system_fingerprint == f"b1-{llama_server.build.llama_cpp_commit}"
    # the same prompt again: the slot's KV cache holds its prefix, and usage says so
    assert second.cached_tokens is not None and second.cached_tokens > 0


def test_a_streamed_call_reads_the_null_first_chunk_and_the_usage_only_last_one(llama_server):
    body = {
        "model": "x",
        "messages": _ask("tell me about refunds"),
        "max_tokens": MAX_TOKENS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    status, headers, raw = asyncio.run(_raw(llama_server.base_url, body))
    events = [
        json.loads(line[5:]) for line in raw.decode().splitlines() if line.startswith("data:") and line[5:].strip() != "[DONE]"
    ]
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == MAX_TOKENS

    r = _run(_provider(llama_server.base_url), lambda p: p.stream(_ask("tell me about refunds")))
    assert r.chunks == MAX_TOKENS and r.completion_tokens == MAX_TOKENS and r.prompt_tokens > 5
    assert r.output and 0 < r.ttft_s <= r.latency_s and r.itl_s > 0
    assert r.response_model == ALIAS and r.system_fingerprint.startswith("b1-")


def test_streamed_and_plain_calls_give_the_same_answer_at_temperature_zero(llama_server):
    async def both(p):
        plain = await p.call(_ask("what is my order status"))
        streamed = await p.stream(_ask("what is my order status"))
        return plain, streamed

    plain, streamed = _run(_provider(llama_server.base_url), both)
    assert plain.output == streamed.output and plain.completion_tokens == streamed.completion_tokens


def test_seeded_temperature_zero_calls_one_at_a_time_repeat(llama_server):
    got = []

    async def collect(p):
        for _ in range(2):  # two runs of the engine, the response cache off
            rows = []
            await call_chat(
                p,
                [_ask("a seeded question")],
                options=CallOptions(cache_mode="off"),
                on_chunk=lambda c: rows.extend(c.output),  # noqa: B023  (awaited in this iteration)
            )
            got.append(rows[0])

    p = _provider(llama_server.base_url, max_concurrency=1)
    asyncio.run(collect(p))
    assert got[0] and got[0] == got[1]


# ------------------------------------------------------------------------------------------- errors


def test_integer_error_codes_become_error_kinds(llama_server):
    status, _, raw = asyncio.run(_raw(llama_server.base_url, {"model": "x"}))  # no messages
    err = json.loads(raw)["error"]
    assert status == 400 and isinstance(err["code"], int) and err["type"] == "invalid_request_error"

    p = _provider(llama_server.base_url)
    e = p._http_error(status, raw, {})
    assert e.status == 400 and not e.retryable and "invalid_request_error" in str(e)
    from assay.calling.retry import error_kind

    assert error_kind(e) == "http_400"


@pytest.mark.parametrize("stream", [False, True])
def test_a_prompt_longer_than_the_context_is_its_own_kind_and_not_retried(llama_server, stream):
    too_long = _ask("billing refund " * 20000)  # ~40k tokens, the context holds 32k
    p = _provider(llama_server.base_url, stream=stream)
    rows = {}

    async def go(p):
        return await call_chat(
            p,
            [too_long, _ask("short")],
            options=CallOptions(cache_mode="off"),
            on_chunk=lambda c: rows.update(zip(c.index, zip(c.error, c.attempts))),
        )

    st = asyncio.run(go(p))
    assert st["error_kinds"] == {"context_length": 1} and st["retries"] == 0
    error, attempts = rows[0]
    assert attempts == 1 and "exceed_context_size_error" in error
    assert rows[1] == (None, 1)


# ------------------------------------------------------------------------------------------- whole runs


def _config(tmp_path, base_url, n=6, model_extra="", pipeline_extra=""):
    rows = [{"id": f"t{i:02d}", "text": f"ticket {i}: my invoice is wrong", "label": "billing"} for i in range(n)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          tiny:
            provider: openai
            model: tiny
            base_url: {base_url}
            params: {{max_tokens: {MAX_TOKENS}, temperature: 0.8, seed: 3}}
            max_concurrency: 8
            hosting: {{usd_per_gpu_hour: 1.2, gpus: 1, replicas: 1}}
            {model_extra}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "{{text}}"}}
            models: [tiny]
            metrics: [accuracy]
            bootstrap: 0
            {pipeline_extra}
    """,
    )
    return str(cfg)


def test_a_streamed_sampled_run_records_ttft_usage_and_the_served_name(tmp_path, llama_server):
    cfg = _config(tmp_path, llama_server.base_url, model_extra="stream: true", pipeline_extra="samples: 3")
    ctx = run_local(cfg, "p", date(2026, 12, 5))
    resp = read_responses(ctx.folder).to_pandas()
    assert len(resp) == 18 and resp["error"].isna().all() and sorted(resp["sample"].unique()) == [0, 1, 2]
    # each sample is its own call, priced on its own usage: one choice's tokens each
    assert (resp["completion_tokens"] == MAX_TOKENS).all() and (resp["prompt_tokens"] > 5).all()
    assert resp["ttft_s"].notna().all() and (resp["ttft_s"] <= resp["latency_s"]).all()
    assert (resp["response_model"] == ALIAS).all() and resp["system_fingerprint"].str.startswith("b1-").all()
    served = ctx.folder.manifest()["stages"]["invoke"]["served"]["tiny"]
    assert served["requested"] == "tiny" and served["response_model"] == [ALIAS]
    costs = ctx.folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    assert costs.loc["tiny", "completion_tokens"] == 18 * MAX_TOKENS
    ok = resp["ttft_s"]
    assert costs.loc["tiny", "ttft_p50_s"] == pytest.approx(ok.quantile(0.5))
    assert costs.loc["tiny", "ttft_p95_s"] == pytest.approx(ok.quantile(0.95))
    assert "TTFT p50" in ctx.folder.read_bytes(assay.store.REPORT).decode()


def test_sequential_streams_cost_no_errors_though_the_server_closes_each_connection(llama_server):
    """The sweep's failure: llama.cpp's server closes the connection after each streamed response,
    unannounced, and the next request written to it once it was pooled died with 'Can not write
    request body' (every other request at concurrency 1)."""
    opened = []

    async def go(p):
        trace = aiohttp.TraceConfig()

        async def on_create(session, ctx, params):
            opened.append(1)

        trace.on_connection_create_end.append(on_create)
        trace.freeze()
        p._session._trace_configs.append(trace)
        return [await p.stream(_ask(f"question {i}")) for i in range(30)], p.reconnects

    got, reconnects = _run(_provider(llama_server.base_url, max_concurrency=1), go)
    assert all(r.completion_tokens == MAX_TOKENS for r in got)
    # found out once, then each stream asks for (and gets) a connection of its own
    assert reconnects == 1 and len(opened) == 30


def test_capacity_sweep_of_the_real_server_and_the_run_priced_at_it(tmp_path, llama_server):
    from flows.cli.main import app

    cfg = _config(tmp_path, llama_server.base_url)
    res = CliRunner().invoke(
        app,
        ["capacity", "tiny", "-c", cfg, "--concurrency", "1,2,4,8", "--requests", "16", "--slo", "p95_latency_s=30,error_rate=0"],
    )
    assert res.exit_code == 0, res.output
    store = Store(tmp_path / "runs")
    sweep = pd.read_parquet(store.capacity().path("tiny.parquet"))
    assert sorted(sweep["concurrency"].unique()) == [1, 2, 4, 8]
    assert sweep["error"].isna().all(), sweep["error"].dropna().tolist()[:3]
    assert (sweep["completion_tokens"] == MAX_TOKENS).all() and sweep["ttft_s"].notna().all()
    rec = assay.capacity.read_record(store, "tiny")
    rps = rec["operating_point"]["rps"]
    assert rps > 0 and {lv["errors"] for lv in rec["levels"]} == {0}

    ctx = run_local(cfg, "p", date(2026, 12, 5))
    costs = ctx.folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    assert costs.loc["tiny", "throughput_rps"] == pytest.approx(rps)
    assert costs.loc["tiny", "cost_per_1k_usd"] == pytest.approx(1.2 / (3600 * rps) * 1000)
    assert ctx.folder.manifest()["capacity"]["tiny"]["used"] is True
