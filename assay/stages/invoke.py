"""The invoke stage: every chosen model on every example; writes responses/part-*.parquet as
shards finish, so a killed run resumes without paying twice for what it already has.

The engine (concurrency, rate limits, retries, cache, budget) is :mod:`assay.calling`; this
module builds the providers, the prices and the cache for one run, and records what happened.
"""

import asyncio
import logging
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

import assay.calling
import assay.store
from assay.calling.engine import new_stats
from assay.calling.estimate import add_judges
from assay.calling.estimate import estimate as estimate_calls
from assay.dataset import stratified_positions
from assay.figures import CallFigures
from assay.pricing import call_pricer, is_api_model, quote
from assay.prompting import render_requests
from assay.providers import PROVIDERS, BatchProvider, Context, build
from assay.report.format import usd
from assay.responses import compact, dedupe, journal_path, part_name, part_names, read_journal, read_responses, safe_name, served
from assay.runs import RunContext, RunFailed, progress
from assay.runs.manifest import edit, record_stage

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


def recorded_time_in_compute(st: dict) -> None:
    """A model's compute counts the recorded time of the rows this attempt did not compute: outputs
    served from the cache (costed as if computed again, as cached API calls are priced as if paid)
    and the examples earlier attempts answered."""
    for k in ("cached_latency_s", "resumed_latency_s"):
        s = st.pop(k, 0.0)
        if s and "compute_s" in st:
            st["compute_s"] += s


def settle(ctx: RunContext, name: str, st: dict, shards: str = "") -> None:
    """A model's figures as the manifest keeps them (a reproduction takes the recorded
    measurements), and its log lines: calls, cache hits, retries and errors by kind, dollars."""
    recorded = (ctx.measurements or {}).get(name) or {}
    st.update({k: recorded[k] for k in MEASUREMENTS if k in recorded})
    log.info(
        "invoke: %s: %s%d calls, %d cache hits, %d resumed, %d retries%s, %d errors%s%s",
        name,
        shards,
        st.get("called", 0),
        st.get("cache_hits", 0),
        st.get("resumed", 0),
        st.get("retries", 0),
        kinds(st.get("retry_kinds")),
        st.get("errors", 0),
        kinds(st.get("error_kinds")),
        f", {usd(st['usd'])} in API tokens" if st.get("usd") else "",
    )
    if st.get("error_examples"):
        log.warning("invoke: %s: the first error of each kind: %s", name, examples(st["error_kinds"], st["error_examples"]))


def add_served(ctx: RunContext, extra: dict) -> None:
    """The manifest's ``served``: per chat model whose endpoint answered under another name than the
    one requested, the served names and system fingerprints (see :func:`assay.responses.served`)."""
    models = ctx.loaded.config.models
    requested = {m: getattr(models[m], "model", None) for m in ctx.models if getattr(models[m], "provider", None) == "openai"}
    if requested:
        got = served(ctx.folder, requested)
        if got:
            extra["served"] = got
            for m, s in got.items():
                log.info(
                    "invoke: %s: requested %s, served as %s%s",
                    m,
                    s["requested"],
                    ", ".join(s["response_model"]),
                    f" (system_fingerprint {', '.join(s['system_fingerprint'])})" if s["system_fingerprint"] else "",
                )


def complete(rf, expected: int, rows: int, n_err: int, max_error_rate: float) -> str:
    """The responses folder, once every expected response is there and few enough calls failed."""
    if rows < expected:
        raise RunFailed(f"only {rows} of {expected} responses were produced")
    share = n_err / rows if rows else 0.0
    if share > max_error_rate:
        raise RunFailed(
            f"{n_err} of {rows} calls failed ({share:.1%}), above max_error_rate {max_error_rate:.0%}; "
            "see the error column in responses/"
        )
    return rf.url + "/" + assay.store.RESPONSES


def estimate_first(ctx: RunContext) -> dict | None:
    """Before any paid call: the estimated cost of the run's paid models on the sample
    (:mod:`assay.calling.estimate`), logged and recorded in the manifest (``cost_estimate``); above
    ``cost.max_usd``, a :class:`RunFailed` naming the estimate, the cap and the sample size that
    would fit, or with ``cost.on_over_budget: shrink`` the sample redrawn (with its seed, and its
    strata when ``sample.by``) at the size that fits. None when no model of the run is paid."""
    cfg, rf = ctx.cfg, ctx.folder
    models = ctx.loaded.config.models
    paid = {m: models[m] for m in ctx.models if models[m].provider != "replay" and is_api_model(models[m])}
    pricers = {m: call_pricer(quote(c, ctx.as_of)) for m, c in paid.items()}
    pricers = {m: p for m, p in pricers.items() if p is not None}
    # the judges' calls: (metric, judge model, its config, calls per example)
    judges = [
        (
            s.name,
            s.judge,
            models[s.judge],
            2 * len([m for m in ctx.models if m != s.against]) if s.name == "pairwise" else len(ctx.models),
        )
        for s in cfg.metric_specs()
        if s.judge and s.judge in models and s.name in ("judge", "pairwise")
    ]
    judge_pricers = {j: call_pricer(quote(c, ctx.as_of)) for _, j, c, _ in judges}
    if not pricers and not any(judge_pricers.values()):
        return None
    dataset = rf.read_table(assay.store.DATASET)
    requests = render_requests(cfg.prompt, dataset) if cfg.prompt is not None else None
    samples = {m: shard_samples(ctx, m) for m in pricers}

    def estimate(table, reqs, paid, pricers, samples):
        return add_judges(estimate_calls(table, reqs, paid, pricers, samples), judges, judge_pricers)

    est = estimate(dataset, requests, paid, pricers, samples)
    cap = cfg.cost.max_usd
    each = ", ".join(f"{m} {usd(v)}" for m, v in est.models.items())
    log.info(
        "invoke: estimated cost before calling: %s for %d examples (%s; prompt tokens from %s)%s",
        usd(est.usd),
        est.rows,
        each,
        est.prompt_source,
        "" if cap is None else f"; cost.max_usd {usd(cap)}",
    )
    record = est.to_dict()
    if cap is not None and est.usd > cap:
        fit = est.fits(cap)
        if cfg.cost.on_over_budget == "shrink" and fit >= 1:
            sample = cfg.dataset.sample
            seed = sample.seed if sample else 0
            if sample is not None and sample.by:
                pos = stratified_positions(dataset, sample.by, fit, seed)
            else:
                pos = np.sort(np.random.default_rng(seed).choice(dataset.num_rows, size=fit, replace=False))
            smaller = dataset.take(pa_positions(pos))
            while fit > 1:  # strata's minimum of one may push a small sample past the cap: one fewer until it fits
                est2 = estimate(
                    smaller, render_requests(cfg.prompt, smaller) if cfg.prompt is not None else None, paid, pricers, samples
                )
                if est2.usd <= cap:
                    break
                fit -= 1
                pos = (
                    stratified_positions(dataset, sample.by, fit, seed)
                    if sample is not None and sample.by
                    else np.sort(np.random.default_rng(seed).choice(dataset.num_rows, size=fit, replace=False))
                )
                smaller = dataset.take(pa_positions(pos))
            else:
                est2 = estimate(
                    smaller, render_requests(cfg.prompt, smaller) if cfg.prompt is not None else None, paid, pricers, samples
                )
            rf.write_table(assay.store.DATASET, smaller)
            digest = rf.hash(assay.store.DATASET)

            def shrunk(m: dict) -> None:  # the load stage's record names the dataset the run goes on with
                m["dataset"] = {**(m.get("dataset") or {}), "rows": smaller.num_rows, "shrunk_from": dataset.num_rows}
                arts = ((m.get("stages") or {}).get("load") or {}).get("artifacts")
                if isinstance(arts, dict) and assay.store.DATASET in arts:
                    arts[assay.store.DATASET] = digest

            edit(rf, shrunk)
            log.warning(
                "invoke: the estimate %s for %d examples is above cost.max_usd %s: the sample is shrunk to %d "
                "examples (estimated %s)",
                usd(est.usd),
                est.rows,
                usd(cap),
                smaller.num_rows,
                usd(est2.usd),
            )
            record = {**est2.to_dict(), "shrunk_from": {"rows": est.rows, "usd": round(est.usd, 6)}}
        else:
            ctx.update_manifest(cost_estimate={**record, "max_usd": cap, "fits_rows": fit})
            advice = (
                f"a sample of {fit} examples would fit (dataset.sample.n: {fit}), or set cost.on_over_budget: shrink"
                if fit >= 1
                else "not even one example fits"
            )
            raise RunFailed(
                f"estimated cost {usd(est.usd)} for {est.rows} examples ({each}) is above cost.max_usd "
                f"{usd(cap)}; {advice}; nothing was called"
            )
    record["max_usd"] = cap
    ctx.update_manifest(cost_estimate=record)
    return record


def pa_positions(pos):
    """Row positions as an Arrow array for ``take``."""
    return pa.array(pos, pa.int64())


def actual_next_to_estimate(ctx: RunContext, estimate: dict | None, stats: dict) -> None:
    """The invoke stage's spend per model beside the estimate made before it, in ``cost_estimate``."""
    if estimate is None:
        return
    actual = {
        m: round(float((stats.get(m) or {}).get("usd") or 0.0), 6)
        for m in estimate.get("models", {})
        if not m.startswith("judge:")
    }  # the judges' calls are made by the score stage: the cost stage adds them
    ctx.update_manifest(cost_estimate={**estimate, "actual_usd": round(sum(actual.values()), 6), "actual_models": actual})


def run(ctx: RunContext) -> str:
    t0 = time.perf_counter()
    estimated = estimate_first(ctx)
    rf = ctx.folder
    cfg = ctx.cfg
    models = ctx.loaded.config.models
    asked = cfg.confidence_models()  # a cascade escalates on their confidence: ask for log-probabilities
    providers = {
        name: build(
            name,
            models[name],
            Context(
                name, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline, {"logprobs": True} if name in asked else {}
            ),
        )
        for name in ctx.models
    }
    # only the columns the providers read: a replayed log needs the ids alone, not the texts
    available = rf.parquet_schema(assay.store.DATASET)[0].names
    wanted = [p.columns(available) if isinstance(p, BatchProvider) else None for p in providers.values()]
    columns = None if any(w is None for w in wanted) else list(dict.fromkeys(["example_id"] + [c for w in wanted for c in w]))
    dataset = rf.read_table(assay.store.DATASET, columns=columns)
    pricers = {m: call_pricer(quote(models[m], ctx.as_of)) for m in ctx.models}

    def price(model, p, c, cached):
        f = pricers.get(model)
        return f(p, c, cached) if f is not None else 0.0

    budget = assay.calling.Budget(max_usd=cfg.cost.max_usd, price=price)
    samples = {}
    for name, p in providers.items():
        k = cfg.samples_of(name, models[name])
        if k > 1 and isinstance(p, BatchProvider):
            log.info(
                "invoke: %s: samples %d asked, but provider %s answers each example once (the same answer every "
                "time: no within-example variance); called once per example",
                name,
                k,
                models[name].provider,
            )
            k = 1
        samples[name] = k
    total = dataset.num_rows

    def on_progress(model, done, errors, usd):
        progress.report(model, done, total * samples.get(model, 1), errors, usd)

    opts = assay.calling.Options(shard_size=cfg.shard_size, cache_mode=ctx.cache_mode, on_progress=on_progress)
    cache = ctx.open_cache()
    log.info(
        "invoke: %d examples × %d model(s): %s",
        total,
        len(providers),
        ", ".join(n if samples[n] == 1 else f"{n} (×{samples[n]} samples)" for n in providers),
    )
    try:
        stats = asyncio.run(assay.calling.invoke_all(providers, dataset, cfg.prompt, rf, cache, opts, budget, samples=samples))
    finally:
        if cache is not None:
            cache.close()
    for name, p in providers.items():
        st = stats[name]
        st.update(p.stats())
        recorded_time_in_compute(st)
        made = st.get("called", 0) - st.get("errors", 0)
        # a resumed run's throughput covers every row, not only this attempt's: those attempts'
        # measured time and successes count in it
        earlier = st.pop("earlier_attempts", None) or []
        if earlier:
            st["attempts"] = earlier + [{"wall_s": st.get("wall_s") or 0.0, "ok": made}]
            st["wall_s"] = sum(a["wall_s"] for a in st["attempts"])
            made = sum(a["ok"] for a in st["attempts"])
        if made > 0 and st.get("wall_s"):
            st["throughput_rps"] = made / st["wall_s"]
        settle(ctx, name, st)
    # one response per (example, model, sample) is on disk: what earlier attempts kept (successes
    # only, compacted) and one row for each request handled now, so the counts need no read-back
    rows = sum(st["resumed"] + st["cache_hits"] + st["called"] for st in stats.values())
    n_err = sum(st["errors"] for st in stats.values())
    extra = {"models": stats, "rows": rows, "errors": n_err, "usd": round(budget.spent, 6)}
    if estimated is not None:
        extra["estimate_usd"] = estimated["usd"]
    add_served(ctx, extra)
    record_stage(rf, NAME, t0, [f"{assay.store.RESPONSES}/"], extra)
    actual_next_to_estimate(ctx, estimated, stats)
    if budget.stopped:
        raise RunFailed(f"budget guard: {budget.stopped}")
    return complete(rf, dataset.num_rows * sum(samples[m] for m in ctx.models), rows, n_err, cfg.max_error_rate)


# --- the sharded path: invoke on a cluster (``runner:``) -------------------------------------------
#
# The flow's process plans the shards (:func:`plan_shards`), the runner runs :func:`run_shard` for
# each one wherever it has workers, and the flow's process merges them (:func:`merge_shards`). A
# shard keeps its parts and its journal in its own folder (:class:`assay.store.ShardFolder`), so no
# two processes write one file; the merge folds each shard into one part of the run's responses/.
# ``cost.max_usd`` is split evenly among the shards of an attempt: each stops on its own share.

#: a shard folder's record of its model (in the shard's own ``responses/``)
SHARD_RECORD = f"{assay.store.RESPONSES}/shard.json"


class Packed:
    """A shard's bulky argument (row positions, a chunk's answers) as one opaque object: the task
    runner pickles it whole, where it would walk a plain list item by item looking for futures
    (Prefect does, for each task's inputs: seconds for 100,000 rows)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __getstate__(self):
        return self.value

    def __setstate__(self, value):
        self.value = value

    def __len__(self) -> int:
        return len(self.value)


@dataclass(frozen=True)
class Shard:
    """Rows ``rows`` (positions in dataset.parquet, :class:`Packed`) of one model, with the
    shard's share of the budget."""

    model: str
    number: int
    rows: Packed
    max_usd: float | None = None

    @property
    def name(self) -> str:
        return f"{safe_name(self.model)}.{self.number:05d}"

    @property
    def span(self) -> str:
        rows = self.rows.value
        return f"rows {rows[0]}–{rows[-1]}" if len(rows) else "no rows"


def shard_rows(ctx: RunContext) -> int:
    """Rows per shard: the runner's ``shard_rows``, else the pipeline's ``shard_size``."""
    r = ctx.runner
    return (r.shard_rows if r is not None and r.shard_rows else None) or ctx.cfg.shard_size


def fold_shards(ctx: RunContext) -> int:
    """Fold every shard folder into the run's ``responses/`` (one part per shard: its parts and
    journaled calls, one row per example), then remove the folder; returns the rows folded."""
    rf = ctx.folder
    n = 0
    seqs: dict[str, int] = {}
    for name in assay.store.shard_names(rf):
        view = assay.store.ShardFolder(rf, name)
        try:
            model = view.read_json(SHARD_RECORD)["model"]
        except FileNotFoundError:
            view.clear()  # a shard that never started has nothing to keep
            continue
        parts = read_responses(view, model)
        journaled, _ = read_journal(view, model)
        t = dedupe(pa.concat_tables([parts, journaled])) if journaled.num_rows else parts
        if t.num_rows:
            if model not in seqs:
                seqs[model] = max((int(p.rsplit("-", 1)[1].split(".")[0]) for p in part_names(rf, model)), default=-1) + 1
            rf.write_table(part_name(model, seqs[model]), t)
            seqs[model] += 1
            n += t.num_rows
        jp = journal_path(view, model)
        view.clear()
        if os.path.exists(jp):
            os.remove(jp)
    if not rf.store.remote:
        try:
            os.rmdir(rf._loc(assay.store.SHARDS))
        except OSError:
            pass
    return n


def shard_samples(ctx: RunContext, model: str) -> int:
    """Calls per example of ``model`` in a sharded run: the pipeline's ``samples``, 1 for a batch
    provider (as :func:`run` decides, from the provider's config rather than a built provider)."""
    mcfg = ctx.loaded.config.models[model]
    k = ctx.cfg.samples_of(model, mcfg)
    return 1 if k > 1 and issubclass(PROVIDERS.get(mcfg.provider), BatchProvider) else k


def plan_shards(ctx: RunContext) -> tuple[list[Shard], dict]:
    """Fold what an interrupted attempt left, then split each model's unanswered rows into shards
    of :func:`shard_rows`; also returns, per model, how many rows earlier attempts answered."""
    fold_shards(ctx)
    rf = ctx.folder
    ids = rf.read_table(assay.store.DATASET, columns=["example_id"])["example_id"].to_pylist()
    size = shard_rows(ctx)
    todo: dict[str, list[int]] = {}
    resumed: dict[str, int] = {}
    for model in ctx.models:
        done = compact(rf, model)
        k = shard_samples(ctx, model)
        if k == 1:
            todo[model] = [i for i, e in enumerate(ids) if e not in done.ids]
        else:  # a row is done when all its samples are (a shard asks all the samples of its rows)
            todo[model] = [i for i, e in enumerate(ids) if any((e, j) not in done.pairs for j in range(k))]
        resumed[model] = (len(ids) - len(todo[model])) * k
    plan = [
        (m, k, Packed(np.asarray(rows[lo : lo + size], dtype=np.int64)))
        for m, rows in todo.items()
        for k, lo in enumerate(range(0, len(rows), size))
    ]
    max_usd = ctx.cfg.cost.max_usd
    share = None if max_usd is None or not plan else max_usd / len(plan)
    return [Shard(m, k, rows, share) for m, k, rows in plan], resumed


#: the dataset of the run a worker process last read (shards of one run read it once per process)
_DATASET: dict = {}


def _dataset(ctx: RunContext):
    rf = ctx.folder
    if _DATASET.get("url") != rf.url:
        _DATASET.clear()
        _DATASET.update(url=rf.url, table=rf.read_table(assay.store.DATASET))
    return _DATASET["table"]


@dataclass
class ShardFigures:
    """What one invoke shard came to: its model's call figures, and how and where it ran
    (``stopped``: why the budget stopped it, if it did; ``spent``: its dollars so far)."""

    model: str
    shard: str
    rows: int
    figures: CallFigures
    concurrency: int
    stopped: str | None
    spent: float
    host: str


def run_shard(ctx: RunContext, shard: Shard) -> ShardFigures:
    """Answer one shard's rows with its model, in this process (a cluster worker): the shard's
    parts and journal go to its own folder, its cache records to a new segment of the shared
    cache. Returns the shard's figures (the engine's and the provider's)."""
    cfg = ctx.cfg
    rf = ctx.folder
    model = shard.model
    view = assay.store.ShardFolder(rf, shard.name)
    if not view.exists(SHARD_RECORD):
        view.write_json(SHARD_RECORD, {"model": model, "rows": len(shard.rows)})
    table = _dataset(ctx)
    rows = shard.rows.value
    contiguous = len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows)
    sub = table.slice(int(rows[0]), len(rows)) if contiguous else table.take(pa.array(rows, pa.int64()))
    mcfg = ctx.loaded.config.models[model]
    extras = {"logprobs": True} if model in cfg.confidence_models() else {}
    provider = build(model, mcfg, Context(model, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline, extras))
    pricer = call_pricer(quote(mcfg, ctx.as_of))

    def price(m, p, c, cached):
        return pricer(p, c, cached) if pricer is not None else 0.0

    budget = assay.calling.Budget(max_usd=shard.max_usd, price=price)
    opts = assay.calling.Options(shard_size=cfg.shard_size, cache_mode=ctx.cache_mode)
    cache = ctx.open_cache(sharded=True)
    try:
        st = asyncio.run(
            assay.calling.invoke_model(
                model, provider, sub, cfg.prompt, view, cache, opts, budget, samples=shard_samples(ctx, model)
            )
        )
    finally:
        if cache is not None:
            cache.close()
    st.update(provider.stats())
    st.pop("earlier_attempts", None)
    log.info(
        "invoke: shard %s (%s of %s): %d calls, %d cache hits, %d resumed, %d errors%s",
        shard.name,
        shard.span,
        model,
        st.get("called", 0),
        st.get("cache_hits", 0),
        st.get("resumed", 0),
        st.get("errors", 0),
        f", {usd(st['usd'])}" if st.get("usd") else "",
    )
    return ShardFigures(
        model,
        shard.name,
        len(shard.rows),
        CallFigures.of(st),
        st.get("concurrency") or 0,
        budget.stopped,
        budget.spent,
        f"{platform.node()}:{os.getpid()}",
    )


def merge_shards(ctx: RunContext, shards: list[Shard], results: list[ShardFigures], resumed: dict, t0: float) -> str:
    """Fold the shards' parts into responses/, record the stage with per-model figures summed over
    shards (``shards``: how many ran), and fail as :func:`run` does (budget, missing rows, errors)."""
    rf = ctx.folder
    cfg = ctx.cfg
    fold_shards(ctx)
    wall = time.perf_counter() - t0
    stats: dict[str, dict] = {}
    for model in ctx.models:
        mine = [r for r in results if r.model == model]
        figures = sum((r.figures for r in mine), CallFigures())
        st = {**new_stats(max((r.concurrency for r in mine), default=0)), **figures.as_dict()}
        st["resumed"] = resumed.get(model, 0) + (figures.resumed or 0)
        st["shards"] = len(mine)
        st["wall_s"] = wall
        recorded_time_in_compute(st)
        made = st.get("called", 0) - st.get("errors", 0)
        if made > 0 and wall:
            st["throughput_rps"] = made / wall
        stats[model] = st
        settle(ctx, model, st, f"{len(mine)} shards, ")
    rows = sum(st["resumed"] + st["cache_hits"] + st["called"] for st in stats.values())
    n_err = sum(st["errors"] for st in stats.values())
    spent = sum(r.spent for r in results)
    runner = ctx.runner
    extra = {
        "models": stats,
        "rows": rows,
        "errors": n_err,
        "usd": round(spent, 6),
        "runner": {
            "dask": runner.dask if runner else None,
            "shards": len(shards),
            "shard_rows": shard_rows(ctx),
            "processes": len({r.host for r in results}),
        },
    }
    add_served(ctx, extra)
    record_stage(rf, NAME, t0, [f"{assay.store.RESPONSES}/"], extra)
    stopped = [r.stopped for r in results if r.stopped]
    if stopped:
        raise RunFailed(f"budget guard: {stopped[0]} (cost.max_usd is split evenly among the {len(shards)} shards)")
    expected = rf.read_table(assay.store.DATASET, columns=["example_id"]).num_rows * sum(
        shard_samples(ctx, m) for m in ctx.models
    )
    return complete(rf, expected, rows, n_err, cfg.max_error_rate)


def run_sharded(ctx: RunContext, map_shards) -> str:
    """The invoke stage with its shards run by ``map_shards(ctx, shards, on_done) -> [figures]`` (a
    runner's map: the Prefect tasks of ``tasks/shards.py`` on Dask; ``on_done(figures)`` as each
    shard finishes, for the progress display), merged here."""
    t0 = time.perf_counter()
    estimated = estimate_first(ctx)
    shards, resumed = plan_shards(ctx)
    log.info(
        "invoke: %d shard(s) of up to %d rows over %d model(s)%s",
        len(shards),
        shard_rows(ctx),
        len(ctx.models),
        f"; cost.max_usd {ctx.cfg.cost.max_usd} split into {usd(ctx.cfg.cost.max_usd / len(shards))} per shard"
        if ctx.cfg.cost.max_usd is not None and shards
        else "",
    )
    total = ctx.folder.read_table(assay.store.DATASET, columns=["example_id"]).num_rows
    done = {m: [resumed.get(m, 0), 0, 0.0] for m in ctx.models}  # rows, errors, usd

    def on_done(st: ShardFigures) -> None:
        d = done[st.model]
        d[0] += st.rows
        d[1] += st.figures.errors or 0
        d[2] += st.figures.usd or 0.0
        progress.report(st.model, d[0], total, d[1], d[2])

    for m in ctx.models:
        progress.report(m, done[m][0], total, 0, 0.0)
    results = map_shards(ctx, shards, on_done) if shards else []
    try:
        return merge_shards(ctx, shards, results, resumed, t0)
    finally:
        actual_next_to_estimate(ctx, estimated, ctx.manifest.model_stats)
