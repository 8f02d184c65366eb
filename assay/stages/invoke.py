"""The invoke stage: every chosen model on every example; writes responses/part-*.parquet as
shards finish, so a killed run resumes without paying twice for what it already has.

The engine (concurrency, rate limits, retries, cache, budget) is :mod:`assay.calling`; this
module builds the providers, the prices and the cache for one run, and records what happened.
"""

import asyncio
import logging
import time

from assay import store as S
from assay.runs import RunContext, RunFailed, progress
from assay.report.format import usd
from assay.runs.manifest import record_stage

NAME = "invoke"
log = logging.getLogger("assay.invoke")

#: what a reproduction takes from the recorded run instead of measuring again
MEASUREMENTS = ("wall_s", "compute_s", "train_s", "throughput_rps")


def kinds(counts: dict | None) -> str:
    """`` (http_429: 2, timeout: 1)`` for a log line, most frequent first; empty for none."""
    if not counts:
        return ""
    return " (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) + ")"


def examples(counts: dict, messages: dict, most: int = 3) -> str:
    """``http_400: "HTTP 400: …"; timeout: "…"`` for a log line: the first message of each of the
    ``most`` most frequent error kinds (messages are redacted on the rows they come from)."""
    order = sorted(messages, key=lambda k: (-counts.get(k, 0), k))
    shown = "; ".join(f'{k}: "{messages[k]}"' for k in order[:most])
    return shown + (f"; {len(order) - most} more kind(s) in the manifest" if len(order) > most else "")


def run(ctx: RunContext) -> str:
    from assay import calling as I
    from assay.cache import ResponseCache
    from assay.pricing import call_pricer, quote
    from assay.providers import Context, build

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    models = ctx.loaded.config.models
    from assay.providers.base import BatchProvider

    asked = cfg.confidence_models()  # a cascade escalates on their confidence: ask for log-probabilities
    providers = {name: build(name, models[name], Context(name, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline,
                                                         {"logprobs": True} if name in asked else {}))
                 for name in ctx.models}
    # only the columns the providers read: a replayed log needs the ids alone, not the texts
    available = rf.parquet_schema(S.DATASET)[0].names
    wanted = [p.columns(available) if isinstance(p, BatchProvider) else None for p in providers.values()]
    columns = None if any(w is None for w in wanted) else list(dict.fromkeys(["example_id"] + [c for w in wanted for c in w]))
    dataset = rf.read_table(S.DATASET, columns=columns)
    pricers = {m: call_pricer(quote(models[m], ctx.as_of)) for m in ctx.models}

    def price(model, p, c, cached):
        f = pricers.get(model)
        return f(p, c, cached) if f is not None else 0.0

    budget = I.Budget(max_usd=cfg.cost.max_usd, price=price)
    from assay.providers.base import BatchProvider

    samples = {}
    for name, p in providers.items():
        k = cfg.samples_of(name, models[name])
        if k > 1 and isinstance(p, BatchProvider):
            log.info("invoke: %s: samples %d asked, but provider %s answers each example once (the same answer every "
                     "time: no within-example variance); called once per example", name, k, models[name].provider)
            k = 1
        samples[name] = k
    total = dataset.num_rows

    def on_progress(model, done, errors, usd):
        progress.report(model, done, total * samples.get(model, 1), errors, usd)

    opts = I.Options(shard_size=cfg.shard_size, cache_mode=ctx.cache_mode, on_progress=on_progress)
    cpath = ctx.cache_path()
    cache = ResponseCache(cpath) if cpath else None
    log.info("invoke: %d examples × %d model(s): %s", total, len(providers),
             ", ".join(n if samples[n] == 1 else f"{n} (×{samples[n]} samples)" for n in providers))
    try:
        stats = asyncio.run(I.invoke_all(providers, dataset, cfg.prompt, rf, cache, opts, budget, samples=samples))
    finally:
        if cache is not None:
            cache.close()
    for name, p in providers.items():
        st = stats[name]
        st.update(p.stats())
        # outputs served from the cache are costed as if computed again, as cached API calls are
        # priced as if paid: their recorded time counts in the compute a conventional model is priced by
        cached_s = st.pop("cached_latency_s", 0.0)
        if cached_s and "compute_s" in st:
            st["compute_s"] += cached_s
        made = st.get("called", 0) - st.get("errors", 0)
        # a resumed run's figures cover every row, not only this attempt's: the examples earlier
        # attempts answered count with their recorded time in the compute, and those attempts'
        # measured time and successes in the throughput
        resumed_s = st.pop("resumed_latency_s", 0.0)
        if resumed_s and "compute_s" in st:
            st["compute_s"] += resumed_s
        earlier = st.pop("earlier_attempts", None) or []
        if earlier:
            st["attempts"] = earlier + [{"wall_s": st.get("wall_s") or 0.0, "ok": made}]
            st["wall_s"] = sum(a["wall_s"] for a in st["attempts"])
            made = sum(a["ok"] for a in st["attempts"])
        if made > 0 and st.get("wall_s"):
            st["throughput_rps"] = made / st["wall_s"]
        recorded = (ctx.measurements or {}).get(name) or {}
        st.update({k: recorded[k] for k in MEASUREMENTS if k in recorded})
        log.info("invoke: %s: %d calls, %d cache hits, %d resumed, %d retries%s, %d errors%s%s", name, st.get("called", 0),
                 st.get("cache_hits", 0), st.get("resumed", 0), st.get("retries", 0), kinds(st.get("retry_kinds")),
                 st.get("errors", 0), kinds(st.get("error_kinds")), f", {usd(st['usd'])} in API tokens" if st.get("usd") else "")
        if st.get("error_examples"):
            log.warning("invoke: %s: the first error of each kind: %s", name, examples(st["error_kinds"], st["error_examples"]))
    # one response per (example, model, sample) is on disk: what earlier attempts kept (successes
    # only, compacted) and one row for each request handled now, so the counts need no read-back
    rows = sum(st["resumed"] + st["cache_hits"] + st["called"] for st in stats.values())
    n_err = sum(st["errors"] for st in stats.values())
    share = n_err / rows if rows else 0.0
    extra = {"models": stats, "rows": rows, "errors": n_err, "usd": round(budget.spent, 6)}
    record_stage(rf, NAME, t0, [f"{S.RESPONSES}/"], extra)
    if budget.stopped:
        raise RunFailed(f"budget guard: {budget.stopped}")
    expected = dataset.num_rows * sum(samples[m] for m in ctx.models)
    if rows < expected:
        raise RunFailed(f"only {rows} of {expected} responses were produced")
    if share > cfg.max_error_rate:
        raise RunFailed(f"{n_err} of {rows} calls failed ({share:.1%}), above max_error_rate {cfg.max_error_rate:.0%}; "
                        "see the error column in responses/")
    return rf.url + "/" + S.RESPONSES
