"""The one model caller: every request to a chat model goes through :func:`call_chat`.

Given a :class:`~assay.providers.base.ChatProvider` and a list of requests (chat message lists),
it serves what it can from the response cache (one bulk lookup), then runs the rest with a fixed
pool of ``max_concurrency`` workers pulling from one iterator, so the endpoint always has that
many requests in flight; within ``rpm``/``tpm``; with retries; charging the run's budget shard by
shard and stopping before the next shard would exceed it. Results come out in columnar
:class:`Chunk`\\ s of at most ``chunk_size`` rows, handed in order to ``on_chunk`` on a writer
thread, and stored in the cache after ``on_chunk`` has them (so a response is never in the cache
without being wherever the caller records it).

The per-call path is one await of ``provider.call`` and one list append; everything else
(columns, cache records, pricing, progress) is done per chunk or on a timer.
"""

import asyncio
import logging
import operator
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields

from assay.cache import ResponseCache, key_maker
from assay.calling.budget import Budget
from assay.calling.limits import RateLimiter, estimate_tokens
from assay.calling.retry import RetryPolicy, call_with_retries, count
from assay.providers.base import ChatProvider

log = logging.getLogger("assay.calling")

CACHE_MODES = ("use", "refresh", "off")


@dataclass
class CallOptions:
    cache_mode: str = "use"  # use | refresh | off
    chunk_size: int = 500
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    progress_every_s: float = 0.25  # a few updates a second: every item would flood a terminal

    def __post_init__(self):
        if self.cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {', '.join(CACHE_MODES)}, got {self.cache_mode!r}")


@dataclass
class Chunk:
    """Results as columns; ``index`` is each row's position in the list of requests."""

    index: list
    output: list
    prompt_tokens: list
    completion_tokens: list
    cached_tokens: list
    cache_write_tokens: list
    latency_s: list
    started_at: list  # µs since the epoch (UTC), or None
    attempts: list  # 0 for a cache hit
    cached: list  # served from the response cache
    error: list  # None for a success
    confidence: list | None = None  # 0..1 per row where the provider gave one (see CallResult)
    response_model: list | None = None  # the model name the endpoint said it served
    system_fingerprint: list | None = None
    ttft_s: list | None = None  # time to first token of a streamed call

    def __post_init__(self):
        for name in _OPTIONAL:
            if getattr(self, name) is None:
                setattr(self, name, [None] * len(self.index))

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def concat(cls, chunks: Sequence["Chunk"]) -> "Chunk":
        return cls(*([v for c in chunks for v in getattr(c, f.name)] for f in fields(cls)))


#: Chunk columns that a provider may leave unset (all None)
_OPTIONAL = ("confidence", "response_model", "system_fingerprint", "ttft_s")

#: how much of an error's message the stats keep as its kind's example
EXAMPLE_CHARS = 240


def new_stats(concurrency: int) -> dict:
    """A caller's figures: ``retry_kinds`` and ``error_kinds`` count retries and final errors by
    :func:`~assay.calling.retry.error_kind`; ``error_examples`` holds the first final error's
    message of each kind (as recorded on its row, so already redacted)."""
    return {
        "called": 0,
        "cache_hits": 0,
        "retries": 0,
        "errors": 0,
        "retry_kinds": {},
        "error_kinds": {},
        "error_examples": {},
        "usd": 0.0,
        "wall_s": 0.0,
        "concurrency": concurrency,
    }


def hits_chunk(index: list, values: list[dict]) -> Chunk:
    """Cache records (see :func:`cache_record`) as a chunk."""

    def col(k):
        return [v.get(k) for v in values]

    started = [None if s is None else int(s * 1_000_000) for s in col("started_at")]
    n = len(index)
    return Chunk(
        index,
        col("output"),
        col("prompt_tokens"),
        col("completion_tokens"),
        col("cached_tokens"),
        col("cache_write_tokens"),
        col("latency_s"),
        started,
        [0] * n,
        [True] * n,
        [None] * n,
        col("confidence"),
        col("response_model"),
        col("system_fingerprint"),
        col("ttft_s"),
    )


def cache_records(chunk: Chunk, keys: Sequence[str]) -> list[tuple[str, dict]]:
    """The chunk's fresh successes as (key, record); ``started_at`` in seconds since the epoch."""
    c = chunk
    return [
        (
            keys[j],
            {
                "output": c.output[i],
                "prompt_tokens": c.prompt_tokens[i],
                "completion_tokens": c.completion_tokens[i],
                "cached_tokens": c.cached_tokens[i],
                "cache_write_tokens": c.cache_write_tokens[i],
                "latency_s": c.latency_s[i],
                **{k: getattr(c, k)[i] for k in _OPTIONAL if getattr(c, k)[i] is not None},
                "started_at": None if c.started_at[i] is None else c.started_at[i] / 1_000_000,
            },
        )
        for i, j in enumerate(c.index)
        if c.error[i] is None and not c.cached[i]
    ]


class Writer:
    """One thread that takes finished chunks, in order: the caller's ``on_chunk``, then the cache."""

    def __init__(self, on_chunk: Callable[[Chunk], None] | None, cache: ResponseCache | None, keys: Sequence[str] | None):
        self.on_chunk, self.cache, self.keys = on_chunk, cache, keys
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, build: Callable[[], Chunk]) -> None:
        """Build a chunk and hand it on, off the event loop; a failure of an earlier one is raised here."""
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="assay-writer")
        self._pending.append(self._pool.submit(self._take, build))

    def _take(self, build: Callable[[], Chunk]) -> None:
        chunk = build()
        if self.on_chunk is not None:
            self.on_chunk(chunk)
        if self.cache is not None and self.keys is not None:
            self.cache.put_many(cache_records(chunk, self.keys))

    async def drain(self) -> None:
        for f in self._pending:
            await asyncio.wrap_future(f)
        self.close()

    def close(self) -> None:
        """Wait for what was submitted (even when cancelled: what finished is kept) and raise its failure."""
        pending, self._pending = self._pending, []
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for f in pending:
            f.result()


class Ticker:
    """Calls ``report()`` every ``every_s`` seconds on the event loop until stopped."""

    def __init__(self, report: Callable[[], None] | None, every_s: float):
        self.report, self.every_s = report, every_s
        self._handle = None

    def start(self) -> None:
        if self.report is not None:
            self._handle = asyncio.get_running_loop().call_later(self.every_s, self._tick)

    def _tick(self) -> None:
        self.report()
        self._handle = asyncio.get_running_loop().call_later(self.every_s, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def lookup(cache: ResponseCache, identity: dict | None, keys: Sequence[str] | None, requests: Sequence, use: bool):
    """(keys, hits): the requests' cache keys, and the cached records of those it has (when ``use``)."""
    if keys is None:
        if identity is None:
            raise ValueError("a cached call needs the provider's identity (or the keys): without it, models would share answers")
        make = key_maker(identity)
        keys = [make(r) for r in requests]
    return keys, (cache.get_many(keys) if use else {})


async def call_chat(
    provider: ChatProvider,
    requests: Sequence[list[dict]],
    *,
    name: str | None = None,
    identity: dict | None = None,
    keys: Sequence[str] | None = None,
    cache: ResponseCache | None = None,
    options: CallOptions | None = None,
    budget: Budget | None = None,
    on_chunk: Callable[[Chunk], None] | None = None,
    on_calls: Callable[[Chunk], None] | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Answer every request once; return the stats (:func:`new_stats`: ``called, cache_hits, retries,
    errors, retry_kinds, error_kinds, usd, wall_s, concurrency``).

    The cache key of a request is ``cache_key(identity, request)`` unless ``keys`` gives them;
    ``cache`` None, ``options.cache_mode`` off or ``provider.cache_responses`` False leave the cache
    out. ``on_progress(done, errors, usd)`` is called a few times a second and once at the end.
    ``on_calls(chunk)`` gets every finished call before its slot starts the next one (and before
    each chunk goes to ``on_chunk``): a journal there loses to a kill only the calls in flight, at
    most ``max_concurrency``. The calls that finish in one turn of the event loop share one
    ``on_calls`` (a group commit), so the journal's writes stay few when calls are fast.
    The provider is started only when something is left to call after the cache.
    """
    if not isinstance(provider, ChatProvider):
        raise TypeError(f"call_chat needs a ChatProvider, got {type(provider).__name__}")
    opts = options or CallOptions()
    perf = time.perf_counter
    t_start = perf()
    name = name or provider.ctx.model_name
    cfg = provider.cfg
    n = len(requests)
    stats = new_stats(cfg.max_concurrency)
    if opts.cache_mode == "off" or not provider.cache_responses:
        cache = None
    pending: Sequence[int] = range(n)
    writer = Writer(on_chunk, cache, None)
    if cache is not None:
        keys, hits = await asyncio.to_thread(lookup, cache, identity, keys, requests, opts.cache_mode == "use")
        writer.keys = keys
        if hits:
            hit_index = [j for j in range(n) if keys[j] in hits]
            stats["cache_hits"] = len(hit_index)
            done_hits = set(hit_index)
            pending = [j for j in range(n) if j not in done_hits]
            size = opts.chunk_size
            for lo in range(0, len(hit_index), size):
                part = hit_index[lo : lo + size]
                writer.submit(lambda part=part: hits_chunk(part, [hits[keys[j]] for j in part]))

    calls: list[tuple] = []  # (index, result, started (perf_counter), latency, attempts, error): the unflushed calls
    flushed = {"done": stats["cache_hits"]}
    price = budget.cost if budget is not None else None

    def usd_of(items) -> float:
        if price is None:
            return 0.0
        p = c = k = 0
        for it in items:
            r = it[1]
            if r is not None:
                p += r.prompt_tokens or 0
                c += r.completion_tokens or 0
                k += r.cached_tokens or 0
        return price(name, p, c, k)

    def report() -> None:
        items = calls[:]
        on_progress(flushed["done"] + len(items), stats["errors"], stats["usd"] + usd_of(items))

    # the wall clock at a perf_counter reading, for started_at: one clock read per call, not two
    wall0, perf0 = time.time(), perf()

    def build(items: list[tuple]) -> Chunk:
        idx, res, t0s, lat, att, err = (list(col) for col in zip(*items))
        return Chunk(
            idx,
            [r and r.output for r in res],
            [r and r.prompt_tokens for r in res],
            [r and r.completion_tokens for r in res],
            [r and r.cached_tokens for r in res],
            [r and r.cache_write_tokens for r in res],
            lat,
            [int((wall0 + t - perf0) * 1_000_000) for t in t0s],
            att,
            [False] * len(idx),
            err,
            [r and r.confidence for r in res],
            [r and r.response_model for r in res],
            [r and r.system_fingerprint for r in res],
            [r and r.ttft_s for r in res],
        )

    chunk_size = opts.chunk_size
    it = iter(pending)

    journaled = [0]

    def journal() -> None:
        if on_calls is not None and len(calls) > journaled[0]:
            on_calls(build(calls[journaled[0] :]))
            journaled[0] = len(calls)

    def flush(check_budget: bool = False) -> None:
        journal()
        items = calls[:]
        calls.clear()
        journaled[0] = 0
        if not items:
            return
        flushed["done"] += len(items)
        if budget is not None:
            usd = usd_of(items)
            budget.spent += usd
            stats["usd"] += usd
            left = operator.length_hint(it)
            if check_budget and left:
                ok = sum(1 for x in items if x[1] is not None)
                budget.check_next(name, usd / ok if ok else 0.0, min(chunk_size, left))
        writer.submit(lambda: build(items))

    ticker = Ticker(report if on_progress is not None else None, opts.progress_every_s)
    loop = asyncio.get_running_loop()
    commit = [None]  # the future the slots that finished this turn wait on: resolved once their calls are journaled

    def journal_turn() -> None:
        fut, commit[0] = commit[0], None
        try:
            journal()
        except BaseException as e:  # noqa: BLE001  (the waiting slots raise it)
            fut.set_exception(e)
        else:
            fut.set_result(None)

    def journaled_call():
        """A future resolved when the calls finished so far are journaled (one write per loop turn)."""
        if commit[0] is None:
            commit[0] = loop.create_future()
            loop.call_soon(journal_turn)
        return commit[0]

    if on_progress is not None and stats["cache_hits"]:
        report()
    started = False
    try:
        if pending:
            await provider.start()
            started = True
            limiter = RateLimiter(cfg.rpm, cfg.tpm)
            limiter = limiter if limiter.active else None
            max_tokens = int(cfg.params.get("max_tokens") or cfg.params.get("max_completion_tokens") or 256)
            policy = RetryPolicy(cfg.max_attempts, cfg.timeout_s, opts.backoff_base_s, opts.backoff_max_s)
            call = provider.call
            append = calls.append
            retry_kinds, error_kinds, examples = stats["retry_kinds"], stats["error_kinds"], stats["error_examples"]

            async def worker():
                for j in it:
                    if budget is not None and budget.stopped:  # this model's or another's next shard would not fit
                        return
                    m = requests[j]
                    est = 0
                    if limiter is not None:
                        est = estimate_tokens(m, max_tokens)
                        await limiter.acquire(est)
                    t0 = perf()
                    try:
                        r = await call(m)
                    except Exception as e:  # noqa: BLE001  (retried, or recorded on the row)
                        r, t0, lat, att, err, kinds = await call_with_retries(call, m, policy, limiter, est, failed=(e, t0))
                        stats["retries"] += att - 1
                        count(retry_kinds, kinds[: att - 1])
                        if err is not None:
                            stats["errors"] += 1
                            count(error_kinds, kinds[-1:])
                            examples.setdefault(kinds[-1], err[:EXAMPLE_CHARS])
                        append((j, r, t0, lat, att, err))
                    else:
                        append((j, r, t0, perf() - t0, 1, None))
                    if len(calls) >= chunk_size:
                        flush(check_budget=True)
                    elif on_calls is not None:
                        await journaled_call()  # this slot's next call starts only once this one is durable

            ticker.start()
            workers = [asyncio.ensure_future(worker()) for _ in range(min(cfg.max_concurrency, len(pending)))]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for w in workers:
                    w.cancel()
                raise
        flush()
        await writer.drain()
    finally:
        ticker.stop()
        flush()  # whatever finished is kept, even when we are cancelled or failed
        try:
            if started:
                await provider.close()
        finally:
            writer.close()
    stats["called"] = flushed["done"] - stats["cache_hits"]
    stats["wall_s"] = perf() - t_start
    if on_progress is not None:
        report()
    return stats
