"""The calling engine on its own: in-process providers, no server.

What the invoke stage and the judge rely on: columnar chunks in order, the cache (bulk lookups,
stores after the caller has the chunk, no start when everything is cached), retries, the budget,
progress a few times a second, failures that are not lost, and the two provider kinds kept apart.
"""

import asyncio
import time

import pyarrow as pa
import pytest

from assay.cache import ResponseCache, cache_key, key_maker
from assay.calling import Budget, CallOptions, Chunk, call_chat, run_batches
from assay.config import DatasetConfig, parse_model
from assay.providers import BatchProvider, CallResult, ChatProvider, Context, ProviderError


def _ctx(name="m"):
    return Context(name, DatasetConfig(source="x.parquet"), None, lambda p: p)


class Echo(ChatProvider):
    """Replies with the request's text; ``fail(text, attempt)`` may return an error to raise."""

    def __init__(self, max_concurrency=4, max_attempts=3, delay=0.002, fail=None, rpm=None):
        super().__init__(
            parse_model(
                dict(provider="openai", model="echo", max_concurrency=max_concurrency, max_attempts=max_attempts, rpm=rpm)
            ),
            _ctx(),
        )
        self.delay, self.fail = delay, fail or (lambda text, attempt: None)
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = self.started = self.closed = 0

    async def start(self):
        self.started += 1

    async def close(self):
        self.closed += 1

    async def call(self, messages):
        text = messages[-1]["content"]
        self.attempts[text] = self.attempts.get(text, 0) + 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        err = self.fail(text, self.attempts[text])
        if err is not None:
            raise err
        return CallResult(text.upper(), prompt_tokens=10, completion_tokens=2)


def requests(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def run(coro):
    return asyncio.run(coro)


def test_key_maker_gives_the_cache_keys():
    ident = {"provider": "openai", "model": "m", "params": {"b": 1, "a": [1, 2]}, "prompt_version": "v1"}
    for msgs in requests(3) + [[{"content": 'é "x"', "role": "system"}, {"role": "user", "content": "y"}], {"id": 3, "n": None}]:
        assert key_maker(ident)(msgs) == cache_key(ident, msgs)


def test_results_come_in_ordered_columnar_chunks():
    p = Echo(max_concurrency=4)
    chunks: list[Chunk] = []
    t0 = time.time()
    st = run(call_chat(p, requests(23), options=CallOptions(chunk_size=5), on_chunk=chunks.append))
    assert [len(c) for c in chunks] == [5, 5, 5, 5, 3]
    c = Chunk.concat(chunks)
    assert sorted(c.index) == list(range(23))
    assert all(c.output[i] == f"Q{j}" for i, j in enumerate(c.index))
    assert c.prompt_tokens == [10] * 23 and c.error == [None] * 23 and c.attempts == [1] * 23 and not any(c.cached)
    assert all(0 < x < 1 for x in c.latency_s)
    assert all(t0 - 1 <= s / 1e6 <= time.time() + 1 for s in c.started_at)  # µs since the epoch
    assert st == {**st, "called": 23, "cache_hits": 0, "retries": 0, "errors": 0, "concurrency": 4}
    assert set(st) == {
        "called",
        "cache_hits",
        "retries",
        "errors",
        "retry_kinds",
        "error_kinds",
        "error_examples",
        "usd",
        "wall_s",
        "concurrency",
    }
    assert st["retry_kinds"] == st["error_kinds"] == st["error_examples"] == {}
    assert p.max_in_flight == 4 and p.started == p.closed == 1


def test_retries_and_final_errors_are_recorded_on_the_row():
    def fail(text, attempt):
        if text == "q1" and attempt == 1:
            return ProviderError("HTTP 429", status=429, retry_after=0.01)
        if text == "q2":
            return ProviderError("HTTP 400: bad", status=400)
        if text == "q3":
            return RuntimeError("a provider bug")
        if text == "q4":
            return ProviderError("HTTP 503", status=503, retry_after=0.0)
        return None

    p = Echo(fail=fail, max_attempts=3)
    chunks: list[Chunk] = []
    st = run(call_chat(p, requests(6), on_chunk=chunks.append))
    c = Chunk.concat(chunks)
    row = {j: i for i, j in enumerate(c.index)}
    assert c.attempts[row[1]] == 2 and c.error[row[1]] is None and c.output[row[1]] == "Q1"
    assert c.attempts[row[2]] == 1 and c.error[row[2]] == "HTTP 400: bad" and c.output[row[2]] is None
    assert c.attempts[row[3]] == 1 and c.error[row[3]] == "RuntimeError: a provider bug"
    assert c.attempts[row[4]] == 3 and c.error[row[4]] == "HTTP 503" and c.prompt_tokens[row[4]] is None
    assert st["errors"] == 3 and st["retries"] == 1 + 2 and st["called"] == 6
    assert st["retry_kinds"] == {"http_429": 1, "http_503": 2}
    assert st["error_kinds"] == {"http_400": 1, "exception": 1, "http_503": 1}
    # the first message of each kind, as on its row, for the stage's log line
    assert st["error_examples"] == {
        "http_400": "HTTP 400: bad",
        "exception": "RuntimeError: a provider bug",
        "http_503": "HTTP 503",
    }


def test_the_cache_serves_repeats_and_a_fully_cached_batch_never_starts_the_provider(tmp_path):
    cache = ResponseCache(str(tmp_path / "c.sqlite"))
    ident = {"model": "echo"}
    p = Echo()
    st = run(call_chat(p, requests(10), identity=ident, cache=cache))
    assert st["called"] == 10 and len(cache) == 10
    p2 = Echo()
    chunks: list[Chunk] = []
    st = run(call_chat(p2, requests(12), identity=ident, cache=cache, options=CallOptions(chunk_size=4), on_chunk=chunks.append))
    assert st["cache_hits"] == 10 and st["called"] == 2 and sorted(p2.attempts) == ["q10", "q11"]
    c = Chunk.concat(chunks)
    hit = [i for i, j in enumerate(c.index) if j < 10]
    assert all(c.cached[i] and c.attempts[i] == 0 and c.output[i] == f"Q{c.index[i]}" for i in hit)
    assert all(c.started_at[i] and c.latency_s[i] for i in hit)  # the original call's, as recorded
    p3 = Echo()
    st = run(call_chat(p3, requests(12), identity=ident, cache=cache))
    assert st["cache_hits"] == 12 and p3.started == p3.closed == 0
    # another identity is another model: nothing shared
    assert run(call_chat(Echo(), requests(3), identity={"model": "other"}, cache=cache))["cache_hits"] == 0
    # refresh calls again and stores; off ignores the cache; errors are never stored
    p4 = Echo(fail=lambda t, a: ProviderError("HTTP 400", status=400) if t == "q0" else None)
    st = run(call_chat(p4, requests(2), identity={"model": "x"}, cache=cache, options=CallOptions(cache_mode="refresh")))
    assert st["called"] == 2 and cache.get_many([cache_key({"model": "x"}, requests(2)[0])]) == {}
    assert len(cache.get_many([cache_key({"model": "x"}, requests(2)[1])])) == 1
    assert run(call_chat(Echo(), requests(3), identity=ident, cache=cache, options=CallOptions(cache_mode="off")))["called"] == 3
    # a cache without the model's identity would serve one model's answers to another
    with pytest.raises(ValueError, match="needs the provider's identity"):
        run(call_chat(Echo(), requests(3), cache=cache))
    cache.close()


def test_a_response_is_cached_only_once_the_caller_has_it(tmp_path):
    """The cache store follows on_chunk: a chunk the caller could not record is not cached, and its
    failure fails the call instead of being lost."""
    cache = ResponseCache(str(tmp_path / "c.sqlite"))
    seen = []

    def on_chunk(chunk):
        if len(seen) == 1:
            raise OSError("disk full")
        seen.append(chunk)

    with pytest.raises(OSError, match="disk full"):
        run(
            call_chat(
                Echo(max_concurrency=2),
                requests(20),
                identity={},
                cache=cache,
                options=CallOptions(chunk_size=5),
                on_chunk=on_chunk,
            )
        )
    recorded = {k for k in (cache_key({}, requests(20)[j]) for j in seen[0].index)}
    assert set(cache.get_many([cache_key({}, r) for r in requests(20)])) == recorded
    cache.close()


def test_the_budget_stops_before_the_next_chunk_would_exceed_it():
    budget = Budget(max_usd=0.25, price=lambda model, p, c, k: (p + c) / 100)  # 0.12 USD a call
    chunks: list[Chunk] = []
    st = run(
        call_chat(Echo(max_concurrency=1), requests(10), budget=budget, options=CallOptions(chunk_size=1), on_chunk=chunks.append)
    )
    # 0.12 spent, next 0.12 fits (0.24); 0.24 spent, the next would not: stop after two
    assert st["called"] == 2 and len(chunks) == 2
    assert budget.spent == pytest.approx(0.24) and st["usd"] == pytest.approx(0.24)
    assert "cost.max_usd 0.25 would be exceeded by the next shard of m" in budget.stopped
    # a stopped budget stops every model that shares it
    assert run(call_chat(Echo(), requests(5), budget=budget))["called"] == 0


def test_progress_at_once_then_throttled_and_at_the_end():
    seen = []
    run(
        call_chat(
            Echo(max_concurrency=2, delay=0.01),
            requests(60),
            on_progress=lambda *a: seen.append(a),
            options=CallOptions(progress_every_s=0.05),
        )
    )
    dones = [s[0] for s in seen]
    assert dones == sorted(dones) and dones[-1] == 60 and seen[-1][1] == 0
    assert 3 <= len(seen) <= 15  # 0.3 s of calls: a report every 50 ms, not one per call


def test_rate_limits_hold():
    t0 = time.perf_counter()
    run(call_chat(Echo(max_concurrency=8, delay=0.0, rpm=600), requests(15)))  # 10 a second, a burst of 10
    assert time.perf_counter() - t0 >= 0.4


class Rows(BatchProvider):
    def __init__(self, fail_on=None, free=False):
        super().__init__(parse_model(dict(provider="python", function="m:f")), _ctx())
        self.fail_on, self.shards, self.prepared = fail_on, [], None
        type(self).free_to_redo = free

    def prepare(self, rows):
        self.prepared = rows.num_rows

    def run_batch(self, rows):
        ids = rows["id"].to_pylist()
        self.shards.append(len(ids))
        if self.fail_on in ids:
            raise RuntimeError("shard broke")
        return {
            "output": [f"o{i}" for i in ids],
            "error": [None] * len(ids),
            "prompt_tokens": [3] * len(ids),
            "latency_s": [0.5] * len(ids),
        }


def test_batch_runner_shards_caches_and_turns_a_failed_shard_into_error_rows(tmp_path):
    rows = pa.table({"id": list(range(10)), "text": [f"t{i}" for i in range(10)]})
    p = Rows(fail_on=7)
    chunks: list[Chunk] = []
    cache = ResponseCache(str(tmp_path / "c.sqlite"))
    st = run(run_batches(p, rows, identity={"f": 1}, cache=cache, options=CallOptions(chunk_size=4), on_chunk=chunks.append))
    assert p.shards == [4, 4, 2] and p.prepared == 10
    c = Chunk.concat(chunks)
    assert c.index == list(range(10))
    assert [e for e in c.error if e] == ["RuntimeError: shard broke"] * 4 and st["errors"] == 4 and st["called"] == 10
    assert len(cache) == 6  # the successes
    # again: the six from the cache, only the failed shard's rows run (and prepared) again
    p2 = Rows()
    st = run(run_batches(p2, rows, identity={"f": 1}, cache=cache, options=CallOptions(chunk_size=4)))
    assert st["cache_hits"] == 6 and st["called"] == 4 and p2.prepared == 4 and p2.shards == [4]
    assert st["cached_latency_s"] == pytest.approx(3.0)
    cache.close()
    # providers that are free to redo use large shards
    big = Rows(free=True)
    run(run_batches(big, rows, options=CallOptions(chunk_size=4)))
    assert big.shards == [10]
    Rows.free_to_redo = False


def test_each_runner_takes_its_own_kind_only():
    with pytest.raises(TypeError, match="needs a ChatProvider"):
        run(call_chat(Rows(), requests(1)))
    with pytest.raises(TypeError, match="needs a BatchProvider"):
        run(run_batches(Echo(), pa.table({"id": [1]})))
    assert Echo.kind == "chat" and Rows.kind == "batch"
