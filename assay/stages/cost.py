"""The cost stage: price every model's calls; write costs.parquet and breakeven.parquet (and, with
``policies:``, policies.parquet and policy_sweep.parquet: see :mod:`assay.policies`).

An API model's tokens are priced at the price in force on the day of each request: the run's
as_of for live calls (a backfill is priced as it would have been then), the logged day for
replayed logs with a ``logged_at`` column. Every quote used is recorded in the manifest
(``prices``: per model, per date; ``judge_prices`` for LLM judges), so a past run's dollars
never change and ``assay reprice`` can reproduce them (:mod:`assay.costing.ledger`).
"""

import json
import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

import assay.store
from assay.dataset import read_source
from assay.pricing import DatedQuotes, quote, token_cost
from assay.report.format import missing, usd
from assay.responses import read_responses
from assay.runs import RunContext
from assay.runs.manifest import record_stage

NAME = "cost"
log = logging.getLogger("assay.cost")


#: rows per batch when the responses are read batch by batch
BATCH_ROWS = 65_536
#: the response columns a cost row is computed from
COST_INPUTS = (
    "model",
    "error",
    "cached",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cache_write_tokens",
    "latency_s",
    "started_at",
    "ttft_s",
)


def usages(rf, models: dict, stats: dict, as_of: str, quote_of):
    """Each model's :class:`assay.costing.Usage` read batch by batch, with the quotes it is priced
    at: ``({model: Usage}, quotes)``, the models in the order the whole table lists them. None
    when a model's parts are not one row per example with the ids in increasing order (as the
    invoke stage writes them; a resumed run's parts may repeat an example, and only the whole,
    deduplicated table prices those right)."""
    # lazy: keeps pandas out of start-up
    import assay.costing

    names = [n for n in rf.listdir(assay.store.RESPONSES) if n.endswith(".parquet")] if rf.exists(assay.store.RESPONSES) else []
    parts: dict[str, list[str]] = {}
    for n in names:
        if rf.parquet_schema(f"{assay.store.RESPONSES}/{n}")[1]:
            first = next(rf.iter_batches(f"{assay.store.RESPONSES}/{n}", ["model"], batch_size=1))
            parts.setdefault(first["model"][0].as_py(), []).append(n)

    def batches(model, columns):
        for n in parts[model]:
            have = set(rf.parquet_schema(f"{assay.store.RESPONSES}/{n}")[0].names)
            yield from rf.iter_batches(f"{assay.store.RESPONSES}/{n}", [c for c in columns if c in have], BATCH_ROWS)

    # first pass: the ids are in increasing order (so each example once), and the days to price at
    days: dict[str, set] = {}
    for model in parts:
        last = None
        dated = model in models
        for b in batches(model, ["example_id", "model", "started_at"]):
            ids = b["example_id"]
            if ids.null_count or (len(ids) > 1 and not pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py()):
                return None
            if last is not None and not pc.less(pa.scalar(last), ids[0]).as_py():
                return None
            last = ids[-1].as_py()
            if dated and "started_at" in b.schema.names:
                days.setdefault(model, set()).update(assay.costing.request_dates(b.to_pandas(), models, stats, as_of).unique())
    quotes = assay.costing.dated_quotes(models, days, as_of, quote_of)
    out = {}
    for model in parts:
        q = quotes.get(model)
        kind = assay.costing.model_kind(models.get(model), q)
        u = assay.costing.Usage()
        for b in batches(model, list(COST_INPUTS)):
            df = b.to_pandas()
            if kind == "api":
                df[assay.costing.PRICE_DATE] = assay.costing.request_dates(df, models, stats, as_of)
            u = u + assay.costing.usage_of(df, q, kind == "api", assay.costing.replayed(models.get(model)))
        out[model] = u
    return out, quotes


def run(ctx: RunContext) -> str:
    # lazy: keeps pandas out of start-up
    import assay.costing
    from assay.capacity import operating_points

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    manifest = ctx.manifest
    stats = manifest.model_stats
    correct = assay.costing.correct_counts(rf.read_table(assay.store.METRICS).to_pandas())
    all_models = ctx.loaded.config.models
    models = {k: all_models[k] for k in ctx.models}
    as_of = ctx.as_of.isoformat()
    quote_of = lambda name, day: quote(models[name], day)  # noqa: E731
    streamed = usages(rf, models, stats, as_of, quote_of)
    if streamed is not None:
        responses, quotes = streamed
    else:  # parts that are not one row per example in order: the whole table, deduplicated
        responses = read_responses(rf).to_pandas()
        responses[assay.costing.PRICE_DATE] = assay.costing.request_dates(responses, models, stats, as_of)
        quotes = assay.costing.dated_quotes(models, responses, as_of, quote_of)
    judge_rows, judge_quotes = assay.costing.judge_costs(cfg, manifest, lambda judge: quote(all_models[judge], ctx.as_of))
    capacity = ctx.recorded_capacity  # a reproduction: what the recorded run used
    if capacity is None:
        capacity = operating_points(rf.store, models)  # `assay capacity` records: used, or why not
    table, be = assay.costing.cost_tables(
        responses, models, quotes, stats, cfg.cost.monthly_requests, correct, judge_rows, capacity
    )
    table = reconciled(ctx, table, models, quotes, stats, as_of)
    rf.write_table(assay.store.COSTS, table)
    rf.write_table(assay.store.BREAKEVEN, be)
    changes = {"prices": assay.costing.prices_record(quotes, as_of), "serving": serving_record(table)}
    est = manifest.get("cost_estimate")
    if isinstance(est, dict) and judge_rows:  # the judges' actual cost beside their estimate
        judged = {r["model"]: round(float(r["cost_usd"]), 6) for r in judge_rows if r["cost_usd"] == r["cost_usd"]}
        actual = {**(est.get("actual_models") or {}), **judged}
        changes["cost_estimate"] = {**est, "actual_models": actual, "actual_usd": round(sum(actual.values()), 6)}
    if capacity:
        changes["capacity"] = capacity
    if judge_quotes:
        raw_models = ctx.loaded.raw.get("models") or {}
        changes["judge_prices"] = {j: {**q.to_dict(), "model_config": raw_models.get(j)} for j, q in judge_quotes.items()}
    ctx.update_manifest(**changes)
    written = [assay.store.COSTS, assay.store.BREAKEVEN]
    if cfg.policies:  # cascades and routes, priced and scored from the answers and costs just recorded
        # lazy: keeps pandas out of start-up
        from assay.policies import write_policies

        written += write_policies(rf, cfg, ctx.models)
    record_stage(rf, NAME, t0, written)
    for r in table.itertuples():
        monthly = getattr(r, "monthly_cost_usd", None)
        log.info(
            "cost: %s (%s): %s for %d requests, %s per 1k%s%s",
            r.model,
            r.kind,
            usd(r.cost_usd),
            r.requests,
            usd(r.cost_per_1k_usd),
            "" if missing(monthly) else f", {usd(monthly)}/month",
            _throughput(r),
        )
    return rf.path(assay.store.COSTS)


def reported_costs(ctx: RunContext, name: str, mcfg) -> dict | None:
    """A replayed model's provider-reported cost per example id: the dataset's ``provider_cost_usd``
    for a replay of a dataset column, the log's for a replay of a log file; None without one."""
    # lazy: keeps pandas out of start-up
    from assay.costing.reconcile import REPORTED

    rf = ctx.folder
    if mcfg.source is None:
        if REPORTED not in rf.parquet_schema(assay.store.DATASET)[0].names:
            return None
        t = rf.read_table(assay.store.DATASET, columns=["example_id", REPORTED])
        return dict(zip(t["example_id"].to_pylist(), t[REPORTED].to_pylist()))
    fmt = getattr(mcfg, "format", None)
    try:
        t = read_source(ctx.loaded.resolve_path(mcfg.source), fmt, on_incomplete=getattr(mcfg, "on_incomplete", "error"))
    except Exception:  # noqa: BLE001  (the invoke stage read this log: a log it cannot read again has no costs to compare)
        return None
    key = "example_id" if fmt is not None else (ctx.cfg.dataset.id or "example_id")  # a production log's own ids
    if REPORTED not in t.column_names or key not in t.column_names:
        return None
    return dict(zip(t[key].cast("string").to_pylist(), t[REPORTED].to_pylist()))


def reconciled(ctx: RunContext, table, models: dict, quotes: dict, stats: dict, as_of: str):
    """costs.parquet's table with, on each replayed model's row whose log reports what each request
    cost, the reported and the computed totals side by side (:mod:`assay.costing.reconcile`)."""
    # lazy: keeps pandas out of start-up
    import assay.costing
    from assay.costing.reconcile import compare, lines, with_reconciliation

    figures = {}
    for name, mcfg in models.items():
        if mcfg.provider != "replay" or quotes.get(name) is None or not quotes[name].priced:
            continue
        reported = reported_costs(ctx, name, mcfg)
        if not reported or all(v is None for v in reported.values()):
            continue
        r = read_responses(ctx.folder).to_pandas()
        r = r[(r["model"] == name) & r["error"].isna()]
        if "sample" in r:
            r = r.drop_duplicates("example_id", keep="last")
        dates = assay.costing.request_dates(r, {name: mcfg}, stats, as_of)
        q = quotes[name]
        cols = [r[c].astype(float).to_numpy() for c in ("prompt_tokens", "completion_tokens", "cached_tokens")]
        computed = (
            q.token_cost(dates.to_numpy(), *cols)
            if isinstance(q, DatedQuotes)
            else np.asarray(token_cost(q, *cols), dtype=float) * np.ones(len(r))
        )
        got = compare([reported.get(e) for e in r["example_id"]], computed)
        if got is not None:
            figures[name] = got
    out = with_reconciliation(table, figures)
    for line in lines(out):
        log.warning("cost: %s", line)
    return out


def serving_record(table) -> dict:
    """The manifest's ``serving``: per served option (self-hosted, conventional) what its monthly cost
    assumes (the always-on floor, in words and dollars) and which throughput priced it, from where."""
    # lazy: keeps pandas out of start-up
    import assay.costing

    out = {}
    for _, r in table[table["kind"].isin(assay.costing.FIXED_COST_KINDS)].iterrows():
        pj = json.loads(r["price_json"])
        rec = {
            "kind": r["kind"],
            "assumption": assay.costing.serving_text(r),
            "usd_per_hour": pj.get("usd_per_hour"),
            "floor_monthly_usd": pj.get("floor_monthly_usd"),
            "fixed_monthly_usd": float(r["fixed_monthly_usd"]),
        }
        if r["kind"] == "self-hosted":
            rec.update(
                replicas=pj.get("replicas"),
                throughput_rps=pj.get("throughput_rps"),
                throughput_source=pj.get("throughput_source"),
            )
            if pj.get("throughput_log"):
                rec["throughput_log"] = pj["throughput_log"]
        else:
            rec.update(instances=pj.get("instances"), compute_source=pj.get("compute_source"))
        out[str(r["model"])] = rec
    return out


def _throughput(r) -> str:
    """ ", at 93.0 req/s (capacity: concurrency 16, ...)" for a self-hosted line: which throughput priced it."""
    if r.kind == "conventional":
        # lazy: keeps pandas out of start-up
        from assay.costing import serving_text

        return f"; {serving_text(r)}"
    if r.kind != "self-hosted" or missing(r.throughput_rps):
        return ""
    source = json.loads(r.price_json).get("throughput_source") or "unknown"
    return f", at {r.throughput_rps:.1f} req/s ({source})"
