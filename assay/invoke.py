"""The invoke stage's engine: concurrent, rate-limited, retried, cached and resumable calls.

Per model, a fixed pool of ``max_concurrency`` worker coroutines pulls items from one
iterator, so the endpoint always has that many requests in flight and per-item work is
the call itself. Results go into columnar buffers; every ``shard_size`` results become one
Parquet part (and one cache write), so a killed run loses at most one shard of work and
pays for none of it again: a resumed run skips every example that already has a response.
"""

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Callable

import pyarrow as pa

from assay.cache import ResponseCache, cache_key
from assay.providers.base import CallResult, Provider, ProviderError
from assay.responses import COLUMNS, RESPONSE_SCHEMA, compact, part_name
from assay.store import RunFolder

log = logging.getLogger("assay.invoke")


@dataclass
class Options:
    shard_size: int = 500
    cache_mode: str = "use"  # use | refresh | off
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    on_progress: Callable[[str, int, int, float], None] | None = None  # (model, done, errors, the model's usd)


@dataclass
class Budget:
    """Spend so far across models, priced by a callable per model; None = unlimited."""

    max_usd: float | None = None
    price: Callable[[str, int, int, int], float] | None = None  # (model, prompt, completion, cached) -> usd
    spent: float = 0.0
    stopped: str | None = None

    def charge(self, model: str, r: CallResult) -> float:
        if self.price is None:
            return 0.0
        usd = self.price(model, r.prompt_tokens or 0, r.completion_tokens or 0, r.cached_tokens or 0)
        self.spent += usd
        return usd

    def allows(self, next_shard_usd: float) -> bool:
        if self.max_usd is None:
            return True
        return self.spent + next_shard_usd <= self.max_usd


class RateLimiter:
    """Token buckets for requests and tokens per minute, shared by one model's workers."""

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        now = time.monotonic()
        self._r = (rpm or 0) / 60.0, min(rpm or 0, max(1.0, (rpm or 0) / 60.0)), now  # rate, tokens, t
        self._t = (tpm or 0) / 60.0, min(tpm or 0, max(1.0, (tpm or 0) / 60.0)), now
        self._lock = asyncio.Lock()

    @staticmethod
    def _take(bucket, cost, cap):
        rate, tokens, t = bucket
        now = time.monotonic()
        tokens = min(cap, tokens + (now - t) * rate)
        if tokens >= cost:
            return (rate, tokens - cost, now), 0.0
        return (rate, tokens, now), (cost - tokens) / rate

    async def acquire(self, tokens: int) -> None:
        if not self.rpm and not self.tpm:
            return
        async with self._lock:
            while True:
                wait = 0.0
                if self.rpm:
                    self._r, w = self._take(self._r, 1, max(1.0, self.rpm / 60.0))
                    if w:
                        wait = max(wait, w)
                if self.tpm and not wait:
                    cap = max(float(tokens), self.tpm / 60.0)
                    self._t, w = self._take(self._t, tokens, cap)
                    if w:
                        # give back the request token we took
                        if self.rpm:
                            rate, tk, t = self._r
                            self._r = (rate, tk + 1, t)
                        wait = max(wait, w)
                if not wait:
                    return
                await asyncio.sleep(wait)


class _Buffer:
    """Columnar buffer of response rows for one model."""

    def __init__(self, model: str):
        self.model = model
        self.cols: dict[str, list] = {c: [] for c in COLUMNS}
        self.cache_items: list[tuple[str, dict]] = []

    def __len__(self):
        return len(self.cols["example_id"])

    def add(self, example_id, r: CallResult | None, latency, started, attempts, cached, error):
        c = self.cols
        c["example_id"].append(example_id)
        c["model"].append(self.model)
        c["output"].append(r.output if r else None)
        c["prompt_tokens"].append(r.prompt_tokens if r else None)
        c["completion_tokens"].append(r.completion_tokens if r else None)
        c["cached_tokens"].append(r.cached_tokens if r else None)
        c["cache_write_tokens"].append(r.cache_write_tokens if r else None)
        c["latency_s"].append(latency)
        c["started_at"].append(int(started * 1_000_000) if started is not None else None)
        c["attempts"].append(attempts)
        c["cached"].append(cached)
        c["error"].append(error)

    def take(self) -> tuple[pa.Table, list]:
        arrays = []
        for f in RESPONSE_SCHEMA:
            vals = self.cols[f.name]
            if f.name == "started_at":
                arrays.append(pa.array(vals, pa.int64()).cast(f.type))
            else:
                arrays.append(pa.array(vals, f.type))
        table = pa.Table.from_arrays(arrays, schema=RESPONSE_SCHEMA)
        items = self.cache_items
        self.cols = {c: [] for c in COLUMNS}
        self.cache_items = []
        return table, items


async def _call_with_retries(provider: Provider, messages, limiter: RateLimiter, est_tokens: int, opts: Options):
    cfg = provider.cfg
    attempt = 0
    while True:
        attempt += 1
        await limiter.acquire(est_tokens)
        started = time.time()
        t0 = time.perf_counter()
        try:
            # providers enforce cfg.timeout_s themselves: a wait_for here would cost a task per call
            r = await provider.call(messages)
            return r, time.perf_counter() - t0, started, attempt, None
        except asyncio.TimeoutError:
            err = ProviderError(f"timeout after {cfg.timeout_s}s", retryable=True)
        except ProviderError as e:
            err = e
        except Exception as e:  # a provider bug must not sink the run: record it on the row
            err = ProviderError(f"{type(e).__name__}: {e}", retryable=False)
        if not err.retryable or attempt >= cfg.max_attempts:
            return None, time.perf_counter() - t0, started, attempt, str(err)
        delay = err.retry_after if err.retry_after is not None else min(opts.backoff_max_s, opts.backoff_base_s * 2 ** (attempt - 1))
        # full jitter on computed backoff; a server's Retry-After is honoured as given (plus a little)
        delay = delay + random.uniform(0, 0.1 * delay) if err.retry_after is not None else random.uniform(0.5 * delay, delay)
        await asyncio.sleep(delay)


async def invoke_model(name: str, provider: Provider, dataset: pa.Table, prompt, run: RunFolder,
                       cache: ResponseCache | None, opts: Options, budget: Budget) -> dict:
    """Produce one response per example for one model, writing parts as shards complete."""
    t_start = time.perf_counter()
    done_ids, seq = compact(run, name)
    ids = dataset["example_id"].to_pylist()
    todo = [i for i, e in enumerate(ids) if e not in done_ids]
    stats = {"resumed": len(done_ids), "called": 0, "cache_hits": 0, "errors": 0, "retries": 0, "usd": 0.0,
             "concurrency": provider.cfg.max_concurrency if not provider.batch else 1}
    buf = _Buffer(name)
    state = {"seq": seq, "done": len(done_ids), "errors": 0}

    def flush():
        if not len(buf):
            return
        table, items = buf.take()
        run.write_table(part_name(name, state["seq"]), table)
        state["seq"] += 1
        if cache is not None and items and opts.cache_mode != "off":
            cache.put_many(items)

    last_progress = [0.0]

    def progress(force: bool = True):
        # a few updates a second: every item would flood a terminal, every shard is too rare
        if opts.on_progress:
            now = time.monotonic()
            if force or now - last_progress[0] >= 0.25:
                last_progress[0] = now
                opts.on_progress(name, state["done"], state["errors"], stats["usd"])

    progress()  # the bar shows the model and its total (and what a resumed run already has) at once
    if not todo:
        return {**stats, "wall_s": 0.0}

    # (no take on a fresh run: building any Arrow array from Python objects imports pandas, half
    # a second before the first call)
    sub = dataset if len(todo) == dataset.num_rows else dataset.take(pa.array(todo, pa.int64()))
    if provider.batch:
        # Cheap, free-to-redo providers (replay, conventional models) use large shards:
        # thousands of tiny parts would cost more than they protect.
        shard = opts.shard_size if provider.cacheable else max(opts.shard_size, 50_000)
        if hasattr(provider, "prepare"):
            await asyncio.to_thread(provider.prepare, sub)
        for lo in range(0, sub.num_rows, shard):
            if budget.stopped:  # another model's shard hit cost.max_usd
                break
            rows = sub.slice(lo, shard)
            started = time.time()
            try:
                cols = await asyncio.to_thread(provider.run_batch, rows)
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                log.error("model %s: batch failed: %s", name, msg)
                cols = {"output": [None] * rows.num_rows, "error": [msg] * rows.num_rows}
            n = rows.num_rows
            shard_usd, shard_ok = 0.0, 0
            for j, eid in enumerate(rows["example_id"].to_pylist()):
                r = CallResult(output=cols["output"][j],
                               prompt_tokens=_get(cols, "prompt_tokens", j), completion_tokens=_get(cols, "completion_tokens", j),
                               cached_tokens=_get(cols, "cached_tokens", j))
                err = _get(cols, "error", j)
                buf.add(eid, r if err is None or r.output is not None else None, _get(cols, "latency_s", j), started, 1, False, err)
                row_started = _get(cols, "started_at", j)
                if row_started is not None:
                    # the provider's own request time (a replayed log's logged_at), µs since the epoch UTC
                    buf.cols["started_at"][-1] = int(row_started)
                if err is None:
                    usd = budget.charge(name, r)
                    stats["usd"] += usd
                    shard_usd += usd
                    shard_ok += 1
                else:
                    state["errors"] += 1
            state["done"] += n
            stats["called"] += n
            flush()
            progress()
            left = sub.num_rows - (lo + n)
            next_usd = (shard_usd / shard_ok if shard_ok else 0.0) * min(shard, left)
            if left and not budget.allows(next_usd):
                budget.stopped = (f"cost.max_usd {budget.max_usd} would be exceeded by the next shard of {name} "
                                  f"(spent {budget.spent:.4f} USD, next shard ≈ {next_usd:.4f} USD)")
                break
        stats["errors"] = state["errors"]
        stats["wall_s"] = time.perf_counter() - t_start
        return stats

    await provider.start()
    try:
        msgs = _render(prompt, sub)
        identity = provider.identity()
        use_cache = cache is not None and opts.cache_mode != "off" and provider.cacheable
        keys = [cache_key(identity, m) for m in msgs] if use_cache else None
        sub_ids = sub["example_id"].to_pylist()
        pending = list(range(len(sub_ids)))
        if use_cache and opts.cache_mode == "use":
            hits = cache.get_many(keys)
            pending = []
            for j, k in enumerate(keys):
                v = hits.get(k)
                if v is None:
                    pending.append(j)
                    continue
                r = CallResult(v.get("output"), v.get("prompt_tokens"), v.get("completion_tokens"), v.get("cached_tokens"),
                               v.get("cache_write_tokens"))
                buf.add(sub_ids[j], r, v.get("latency_s"), v.get("started_at"), 0, True, None)
                stats["cache_hits"] += 1
                state["done"] += 1
                if len(buf) >= opts.shard_size:
                    flush()
            progress()
        max_tokens = int(provider.cfg.params.get("max_tokens") or provider.cfg.params.get("max_completion_tokens") or 256)
        limiter = RateLimiter(provider.cfg.rpm, provider.cfg.tpm)
        it = iter(pending)
        shard_usd = [0.0, 0]  # dollars and items since the last flush, to estimate the next shard

        async def worker():
            for j in it:
                if budget.stopped:
                    return
                m = msgs[j]
                est = sum(len(x["content"]) for x in m) // 4 + max_tokens
                r, latency, started, attempts, err = await _call_with_retries(provider, m, limiter, est, opts)
                stats["called"] += 1
                stats["retries"] += attempts - 1
                if err is None:
                    usd = budget.charge(name, r)
                    stats["usd"] += usd
                    shard_usd[0] += usd
                    shard_usd[1] += 1
                    if use_cache:
                        buf.cache_items.append((keys[j], {"output": r.output, "prompt_tokens": r.prompt_tokens,
                                                          "completion_tokens": r.completion_tokens, "cached_tokens": r.cached_tokens,
                                                          "cache_write_tokens": r.cache_write_tokens, "latency_s": latency,
                                                          "started_at": started}))
                else:
                    state["errors"] += 1
                buf.add(sub_ids[j], r, latency, started, attempts, False, err)
                state["done"] += 1
                progress(force=False)
                if len(buf) >= opts.shard_size:
                    per_item = shard_usd[0] / shard_usd[1] if shard_usd[1] else 0.0
                    flush()
                    progress()
                    shard_usd[0], shard_usd[1] = 0.0, 0
                    if not budget.allows(per_item * opts.shard_size):
                        budget.stopped = (f"cost.max_usd {budget.max_usd} would be exceeded by the next shard "
                                          f"(spent {budget.spent:.4f} USD, next shard ≈ {per_item * opts.shard_size:.4f} USD)")
                        return

        workers = [asyncio.create_task(worker()) for _ in range(min(provider.cfg.max_concurrency, max(1, len(pending))))]
        try:
            await asyncio.gather(*workers)
        finally:
            # whatever finished is kept, even when we are cancelled or failed
            flush()
            progress()
    finally:
        await provider.close()
    stats["errors"] = state["errors"]
    stats["wall_s"] = time.perf_counter() - t_start
    return stats


def _get(cols: dict, key: str, j: int):
    v = cols.get(key)
    return None if v is None else v[j]


def _render(prompt, rows: pa.Table) -> list[list[dict]]:
    from assay.prompting import render_messages

    if prompt is None:
        raise ValueError("this model needs a prompt: set the pipeline's prompt.template")
    return render_messages(prompt, rows)


async def invoke_all(providers: dict[str, Provider], dataset: pa.Table, prompt, run: RunFolder,
                     cache: ResponseCache | None, opts: Options, budget: Budget) -> dict[str, dict]:
    """All models concurrently (different endpoints do not wait for one another)."""
    names = list(providers)
    results = await asyncio.gather(*(invoke_model(n, providers[n], dataset, prompt, run, cache, opts, budget) for n in names))
    return dict(zip(names, results))
