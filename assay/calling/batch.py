"""The batch runner: a :class:`~assay.providers.base.BatchProvider` over many rows, shard by shard.

The same cache, budget, chunks and progress as :func:`assay.calling.engine.call_chat`: outputs
are looked up per example (one bulk lookup) when the provider caches its responses, the rest are
run in shards of ``chunk_size`` rows (at least 50,000 for providers that are ``free_to_redo``)
in a worker thread, each shard charged to the budget and handed on as one chunk. A shard whose
``run_batch`` raises becomes error rows: one failed shard does not sink the run.
"""

import asyncio
import logging
import time
from collections.abc import Callable

import pyarrow as pa

from assay.cache import ResponseCache
from assay.calling.budget import Budget
from assay.calling.engine import EXAMPLE_CHARS, CallOptions, Chunk, Ticker, Writer, hits_chunk, lookup, new_stats
from assay.calling.retry import EXCEPTION, ROW_ERROR
from assay.providers.base import BatchProvider

log = logging.getLogger("assay.calling")

#: the smallest shard of a provider that is free to redo
FREE_SHARD = 50_000


def _col(cols: dict, key: str, n: int) -> list:
    v = cols.get(key)
    return [None] * n if v is None else list(v)


def batch_chunk(index: list, cols: dict, started_us: int) -> Chunk:
    """A provider's columns for the rows at ``index`` as a chunk; a row without its own ``started_at``
    gets the shard's start, a failed row without output keeps no token counts."""
    n = len(index)
    out, err = _col(cols, "output", n), _col(cols, "error", n)
    if len(out) != n or len(err) != n:
        raise ValueError(f"run_batch returned {len(out)} outputs for {n} rows")
    tokens = [_col(cols, k, n) for k in ("prompt_tokens", "completion_tokens", "cached_tokens")]
    for j in range(n):
        if err[j] is not None and out[j] is None:
            for t in tokens:
                t[j] = None
    started = [started_us if s is None else int(s) for s in _col(cols, "started_at", n)]
    return Chunk(
        index,
        out,
        *tokens,
        [None] * n,
        _col(cols, "latency_s", n),
        started,
        [1] * n,
        [False] * n,
        err,
        _col(cols, "confidence", n),
    )


async def run_batches(
    provider: BatchProvider,
    rows: pa.Table,
    *,
    name: str | None = None,
    identity: dict | None = None,
    cache: ResponseCache | None = None,
    options: CallOptions | None = None,
    budget: Budget | None = None,
    on_chunk: Callable[[Chunk], None] | None = None,
    on_progress: Callable[[int, int, float], None] | None = None,
) -> dict:
    """Run every row once (chunk indexes are row positions); return the stats, as :func:`call_chat`.

    ``stats["cached_latency_s"]`` is the recorded time of the rows served from the cache (what
    generating them again would take).
    """
    if not isinstance(provider, BatchProvider):
        raise TypeError(f"run_batches needs a BatchProvider, got {type(provider).__name__}")
    opts = options or CallOptions()
    t_start = time.perf_counter()
    name = name or provider.ctx.model_name
    n = rows.num_rows
    stats = new_stats(1)
    shard = opts.chunk_size if not provider.free_to_redo else max(opts.chunk_size, FREE_SHARD)
    if opts.cache_mode == "off" or not provider.cache_responses:
        cache = None
    writer = Writer(on_chunk, cache, None)
    todo = range(n)  # positions; a list only once cache hits are taken out
    done = [0]

    def report() -> None:
        on_progress(done[0], stats["errors"], stats["usd"])

    ticker = Ticker(report if on_progress is not None else None, opts.progress_every_s)
    try:
        if cache is not None:
            inputs = await asyncio.to_thread(provider.cache_inputs, rows)
            keys, hits = await asyncio.to_thread(lookup, cache, identity, None, inputs, opts.cache_mode == "use")
            writer.keys = keys
            if hits:
                hit_index = [j for j in range(n) if keys[j] in hits]
                todo = [j for j in range(n) if keys[j] not in hits]
                stats["cache_hits"] = done[0] = len(hit_index)
                stats["cached_latency_s"] = sum(hits[keys[j]].get("latency_s") or 0.0 for j in hit_index)
                for lo in range(0, len(hit_index), shard):
                    part = hit_index[lo : lo + shard]
                    writer.submit(lambda part=part: hits_chunk(part, [hits[keys[j]] for j in part]))
                if on_progress is not None:
                    report()
        rest = rows if len(todo) == n else rows.take(pa.array(todo, pa.int64()))
        if todo:
            await asyncio.to_thread(provider.prepare, rest)
        ticker.start()
        for lo in range(0, len(todo), shard):
            if budget is not None and budget.stopped:  # another model's shard hit cost.max_usd
                break
            part = rest.slice(lo, shard)
            index = todo[lo : lo + part.num_rows]
            started_us = int(time.time() * 1_000_000)
            kind = ROW_ERROR
            try:
                cols = await asyncio.to_thread(provider.run_batch, part)
                chunk = batch_chunk(index, cols, started_us)
            except Exception as e:  # noqa: BLE001  (recorded on the shard's rows)
                msg = f"{type(e).__name__}: {e}"
                log.error("model %s: batch failed: %s", name, msg)
                k = len(index)
                chunk = batch_chunk(index, {"output": [None] * k, "error": [msg] * k}, started_us)
                kind = EXCEPTION
            ok = [i for i, e in enumerate(chunk.error) if e is None]
            stats["errors"] += len(index) - len(ok)
            if len(index) > len(ok):
                stats["error_kinds"][kind] = stats["error_kinds"].get(kind, 0) + len(index) - len(ok)
                stats["error_examples"].setdefault(kind, next(e for e in chunk.error if e is not None)[:EXAMPLE_CHARS])
            stats["called"] += len(index)
            done[0] += len(index)
            usd = 0.0
            if budget is not None:
                usd = budget.charge(
                    name,
                    sum(chunk.prompt_tokens[i] or 0 for i in ok),
                    sum(chunk.completion_tokens[i] or 0 for i in ok),
                    sum(chunk.cached_tokens[i] or 0 for i in ok),
                )
                stats["usd"] += usd
            writer.submit(lambda chunk=chunk: chunk)
            left = len(todo) - (lo + len(index))
            if budget is not None and left:
                if not budget.check_next(name, usd / len(ok) if ok else 0.0, min(shard, left)):
                    break
        await writer.drain()
    finally:
        ticker.stop()
        writer.close()
    stats["wall_s"] = time.perf_counter() - t_start
    if on_progress is not None:
        report()
    return stats
