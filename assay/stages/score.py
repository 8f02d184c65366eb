"""The score stage: per-example scores, aggregates with bootstrap intervals, slices and paired
comparisons; writes scores.parquet, metrics.parquet, generalization.parquet, comparisons.parquet.

LLM judges are metrics that call a model; their usage is recorded with the stage so that the
cost stage can price it.
"""

import logging
import time

import pyarrow as pa
import pyarrow.compute as pc

from assay import stats as ST
from assay import store
from assay.metrics import EvaluateMetric, build_metric
from assay.prompting import render_messages, transcript
from assay.providers import PROVIDERS, Context, build
from assay.responses import read_responses
from assay.runs import RunContext
from assay.runs.manifest import record_stage
from assay.stages.invoke import Packed

NAME = "score"
log = logging.getLogger("assay.score")


def build_metrics(ctx: RunContext) -> dict:
    """The pipeline's metrics, built; a judge metric gets its judge model's provider and the run's cache."""
    cfg = ctx.cfg
    out = {}
    for spec in cfg.metric_specs():
        judge = None
        if spec.judge:
            judge = build(
                spec.judge,
                ctx.loaded.config.models[spec.judge],
                Context(spec.judge, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline),
            )
        metric = build_metric(spec, str(ctx.loaded.base_dir), judge=judge)
        if judge is not None and hasattr(metric, "set_cache"):  # the judge's calls go through the run's response cache
            metric.set_cache(ctx.cache_path(), ctx.cache_mode)
        out[spec.key] = metric
    return out


def inputs_text(ctx: RunContext, dataset) -> list[str]:
    """What each example asked: the rendered user prompt, else its input fields."""
    cfg = ctx.cfg
    if cfg.prompt is not None and cfg.prompt.messages is not None:  # the whole conversation the answer continues
        return [transcript(m) for m in render_messages(cfg.prompt, dataset)]
    if cfg.prompt is not None:
        return [m[-1]["content"] for m in render_messages(cfg.prompt, dataset)]
    fields = cfg.dataset.input or [c for c in dataset.column_names if c not in ("example_id", "reference")][:1]
    cols = [dataset[f].cast(pa.string()).to_pylist() for f in fields]
    return ["\n".join(v or "" for v in vals) for vals in zip(*cols)]


def give_against(ctx: RunContext, metrics: dict, dataset, responses, inputs) -> None:
    """Hand a metric that compares models (``against:``, the pairwise judge) the answers of the
    model it compares with, in the dataset's order (its first sample of each example)."""
    # lazy: keeps pandas out of start-up
    import pandas as pd

    for key, metric in metrics.items():
        against = getattr(metric, "against", None)
        if against is None or not hasattr(metric, "set_against"):
            continue
        if against not in ctx.models:
            raise ValueError(f"metric {key}: against {against!r} is not among the run's models ({', '.join(ctx.models)})")
        r = responses.filter(pa_equal(responses["model"], against)).to_pandas()
        if "sample" in r:
            r = r.sort_values("sample", kind="mergesort").drop_duplicates("example_id", keep="first")
        r = r.set_index("example_id")
        ok = r["output"].where(r["error"].isna()) if "error" in r else r["output"]
        ids = pd.Index(dataset["example_id"].cast("string").to_pylist())
        outputs = [None if pd.isna(v) else v for v in ok.reindex(ids).tolist()]
        metric.set_against(outputs, inputs)


def pa_equal(column, value):
    """``column == value`` as an Arrow mask."""
    return pc.equal(column, value)


def read_scored_responses(rf):
    """The run's responses: with several samples per (example, model) (``samples:``, see
    :mod:`assay.scoring`), every sample's row, the last one of each (example, model, sample) winning."""
    return read_responses(rf)


def deterministic_models(ctx: RunContext) -> set[str]:
    """The run's models whose provider answers an example the same way every time (batch
    providers: a conventional model, a function, a replayed log): their within-example variance
    is 0, not unknown, when other models of the run are sampled."""
    models = ctx.loaded.config.models
    return {m for m in ctx.models if getattr(PROVIDERS.get(models[m].provider), "kind", None) == "batch"}


#: rows per batch of the streamed score stage
BATCH_ROWS = 65_536


class _NotAligned(Exception):
    """The responses are not one per example in the dataset's order: the whole-table path scores them."""


class _Rows:
    """Consecutive rows of a stream of record batches, taken ``k`` at a time."""

    def __init__(self, batches):
        self._it = iter(batches)
        self._buf: list = []
        self._have = 0

    def take(self, k: int):
        while self._have < k:
            b = next(self._it, None)
            if b is None:
                break
            if b.num_rows:
                self._buf.append(b)
                self._have += b.num_rows
        if not self._buf:
            return None
        t = pa.Table.from_batches(self._buf).combine_chunks()
        head, rest = t.slice(0, k), t.slice(k)
        self._buf = rest.to_batches() if rest.num_rows else []
        self._have = rest.num_rows
        return head


def _string_column(schema, name: str) -> bool:
    i = schema.get_field_index(name)
    return i >= 0 and (pa.types.is_string(schema.field(i).type) or pa.types.is_large_string(schema.field(i).type))


def score_streaming(ctx: RunContext, metrics: dict):
    """Score batch by batch (:func:`assay.scoring.score_batches`) and write scores.parquet row group
    by row group; None when the whole-table path is needed: a metric that does not stream
    (corpus metrics, judges, function metrics, user modules), several samples per example, text
    columns that are not strings, or responses that are not one per example in the dataset's
    order (a resumed run's parts, say; found while reading, and then nothing is written)."""
    # lazy: keeps pandas out of start-up
    import pandas as pd

    # lazy: keeps pandas out of start-up
    from assay.scoring import NotStreamed, _groups, score_batches, streams

    rf, cfg = ctx.folder, ctx.cfg
    if not metrics or not all(streams(m) for m in metrics.values()):
        return None
    schema, n_ex = rf.parquet_schema(store.DATASET)
    held = list(cfg.dataset.held_out or {})
    group_cols = list(dict.fromkeys(list(cfg.dataset.slices) + held))
    has_ref = "reference" in schema.names
    if (has_ref and not _string_column(schema, "reference")) or not all(_string_column(schema, c) for c in group_cols):
        return None
    names = [n for n in rf.listdir(store.RESPONSES) if n.endswith(".parquet")] if rf.exists(store.RESPONSES) else []
    parts: dict[str, list[str]] = {}
    lo = hi = None
    for n in names:
        sch, rows = rf.parquet_schema(f"{store.RESPONSES}/{n}")
        if not rows:
            continue
        if "sample" in sch.names:
            mm = pc.min_max(rf.read_table(f"{store.RESPONSES}/{n}", columns=["sample"])["sample"]).as_py()
            if mm["min"] is not None:
                lo = mm["min"] if lo is None else min(lo, mm["min"])
                hi = mm["max"] if hi is None else max(hi, mm["max"])
        first = next(rf.iter_batches(f"{store.RESPONSES}/{n}", ["model"], batch_size=1))
        parts.setdefault(first["model"][0].as_py(), []).append(n)
    if lo is not None and lo != hi:
        return None  # several samples per example: the whole-table path averages them
    models = list(parts)
    frame = {}
    if group_cols:
        t = rf.read_table(store.DATASET, columns=group_cols)
        frame = {c: t[c].dictionary_encode().to_pandas() for c in group_cols}  # a few codes per example, not its text
        del t
    groups = _groups(pd.DataFrame(frame, index=pd.RangeIndex(n_ex)), list(cfg.dataset.slices), cfg.dataset.held_out)
    clusters = None
    if cfg.dataset.cluster:
        col = rf.read_table(store.DATASET, columns=[cfg.dataset.cluster])[cfg.dataset.cluster]
        clusters = ST.cluster_codes(
            col.dictionary_encode().to_pandas().astype(object)
            if _string_column(rf.parquet_schema(store.DATASET)[0], cfg.dataset.cluster)
            else col.to_pylist()
        )
        del col

    def batches(model):
        ds = _Rows(rf.iter_batches(store.DATASET, ["example_id"] + (["reference"] if has_ref else []), BATCH_ROWS))
        resp = _Rows(
            b
            for n in parts[model]
            for b in rf.iter_batches(f"{store.RESPONSES}/{n}", ["example_id", "output", "error"], BATCH_ROWS)
        )
        while True:
            r = resp.take(BATCH_ROWS)
            if r is None:
                break
            d = ds.take(r.num_rows)
            if d is None or d.num_rows != r.num_rows or not d["example_id"].equals(r["example_id"]):
                raise _NotAligned(model)
            failed = pc.or_(pc.is_valid(r["error"]), pc.is_null(r["output"])).to_numpy(zero_copy_only=False)
            refs = d["reference"].to_pylist() if has_ref else [None] * d.num_rows
            yield r["output"].cast(pa.string()).to_pylist(), refs, failed
        if ds.take(1) is not None:
            raise _NotAligned(model)

    out_schema = pa.schema(
        [
            ("example_id", pa.string()),
            ("model", pa.string()),
            ("metric", pa.string()),
            ("value", pa.float64()),
            ("detail", pa.null()),
            ("score_error", pa.null()),
        ]
    )
    try:
        with rf.table_writer(store.SCORES, out_schema) as w:

            def on_scores(model, key, each):
                lo = 0
                for b in rf.iter_batches(store.DATASET, ["example_id"], BATCH_ROWS):
                    k = b.num_rows
                    w.write_table(
                        pa.table(
                            [
                                b["example_id"],
                                pa.array([model] * k, pa.string()),
                                pa.array([key] * k, pa.string()),
                                pa.array(each[lo : lo + k], pa.float64()),
                                pa.nulls(k),
                                pa.nulls(k),
                            ],
                            schema=out_schema,
                        )
                    )
                    lo += k

            res = score_batches(
                n_ex, models, metrics, batches, groups, cfg.bootstrap, seed=0, clusters=clusters, on_scores=on_scores
            )
    except _NotAligned as e:
        log.info("score: the responses of %s are not one per example in the dataset's order; scoring the whole tables", e)
        return None
    except NotStreamed as e:
        log.info("score: %s; scoring the whole tables", e)
        return None
    del groups, clusters
    return res


def run(ctx: RunContext, score_rows=None) -> str:
    """The stage; ``score_rows`` as for :func:`assay.scoring.score` (see :func:`sharded`)."""
    # lazy: keeps pandas out of start-up
    from assay.scoring import score

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    metrics = build_metrics(ctx)
    # batch by batch in this process; a cluster's score shards (score_rows) take the whole tables
    res = score_streaming(ctx, metrics) if score_rows is None else None
    if res is None:  # a metric or a responses folder that needs the whole tables (see score_streaming)
        dataset = rf.read_table(store.DATASET)
        responses = read_scored_responses(rf)
        inputs = inputs_text(ctx, dataset) if any(getattr(m, "needs_inputs", False) for m in metrics.values()) else None
        give_against(ctx, metrics, dataset, responses, inputs)
        budgets = {s.key: s.bootstrap_budget for s in cfg.metric_specs() if s.bootstrap_budget is not None}
        res = score(
            dataset,
            responses,
            metrics,
            cfg.dataset.slices,
            cfg.bootstrap,
            seed=0,
            held_out=cfg.dataset.held_out,
            inputs=inputs,
            cluster=cfg.dataset.cluster,
            budgets=budgets,
            deterministic=deterministic_models(ctx),
            score_rows=score_rows,
            budgets_s={s.key: s.bootstrap_budget_s for s in cfg.metric_specs()},
        )
        del dataset, responses
        rf.write_table(store.SCORES, res.scores)
    rf.write_table(store.METRICS, res.metrics)
    rf.write_table(store.GENERALIZATION, res.generalization)
    rf.write_table(store.COMPARISONS, res.comparisons)
    judges = {
        key: {**m.usage, **({"calls_by_model": dict(m.calls_by_model)} if hasattr(m, "calls_by_model") else {})}
        for key, m in metrics.items()
        if getattr(m, "usage", None)
    }
    extra = {"judges": judges} if judges else {}
    computations = {k: int(getattr(m, "computations", 0)) for k, m in metrics.items() if getattr(m, "computations", 0)}
    if res.probes:
        extra["aggregate_metrics"] = res.probes
    if res.budgets:
        extra["bootstrap_budgets"] = {
            k: {**v, "computations": computations.get(k.split(".")[0], res.computations.get(k))} for k, v in res.budgets.items()
        }
    record_stage(rf, NAME, t0, [store.SCORES, store.METRICS, store.GENERALIZATION, store.COMPARISONS], extra or None)
    for key, pr in res.probes.items():
        if pr["scored"] == "per example":
            log.info(
                "score: %s: %s (whole set %.3g s, probe %.3g s); intervals, slices and comparisons without recomputing it",
                key,
                pr["note"],
                pr["whole_s"],
                pr["probe_s"],
            )
        else:
            (log.warning if pr["probe_skipped"] else log.info)(
                "score: %s: %s; its bootstrap recomputes it within bootstrap_budget_s", key, pr["note"]
            )
    for key, plan in res.budgets.items():
        if plan.get("by") == "time" and (plan["overall"] < plan["wanted"] or plan["slices"] < plan["wanted"]):
            log.warning(
                "score: %s recomputes its whole value on every resample (one computation %.3g s): bootstrap_budget_s "
                "%g allows %d resamples per overall interval and comparison, %d per slice%s; %d computations in all.",
                key,
                plan["computation_s"],
                plan["budget_s"],
                plan["overall"],
                plan["slices"],
                " (no interval: fewer than 20 fit)" if not plan["overall"] else "",
                res.computations.get(key, 0),
            )
        elif plan["overall"] < plan["wanted"] or plan["slices"] < plan["wanted"]:
            advice = (
                " Return per-example scores from compute (a list under `key`) or use a function metric for full intervals."
                if isinstance(metrics.get(key), EvaluateMetric)
                else ""
            )
            log.warning(
                "score: %s only aggregates the whole corpus, so its bootstrap recomputes it: bootstrap_budget %d "
                "allows %d resamples per overall interval and comparison, %d per slice (%s); %d computations in all.%s",
                key,
                plan["budget"],
                plan["overall"],
                plan["slices"],
                "no slice intervals" if not plan["slices"] else "fewer than asked",
                res.computations.get(key, 0),
                advice,
            )
    overall = res.metrics[res.metrics["slice"] == "all"]
    for r in overall.itertuples():
        how = res.probes.get(r.metric)
        log.info(
            "score: %s %s = %.4f [%.4f, %.4f] (n=%d, errors=%d%s)",
            r.model,
            r.metric,
            r.value,
            r.ci_low,
            r.ci_high,
            r.n,
            r.errors,
            "" if how is None else f"; {how['scored']}",
        )
    if res.scores is not None and "score_error" in res.scores and len(res.scores):
        failed = res.scores[res.scores["score_error"].notna()]
        for (model, metric), g in failed.groupby(["model", "metric"], sort=False):
            log.warning(
                "score: %s %s: %d score error(s), left out of the mean; first: %s",
                model,
                metric,
                len(g),
                g["score_error"].iloc[0],
            )
    for key, usage in judges.items():
        log.info("score: judge %s made %d calls (%d errors)", key, usage.get("requests", 0), usage.get("errors", 0))
    return rf.path(store.METRICS)


# --- score shards on a cluster (``runner:``) ------------------------------------------------------
#
# The per-example scores of a metric are a function of each example alone, so they are computed
# in shards wherever the runner has workers; aggregates, intervals, slices and comparisons need
# every example and stay in the stage's process. A judge (a metric that calls a model and counts
# its usage) is scored in the stage's process, so its usage is counted once, where it is recorded.

#: the metrics a worker process built, per run (built once per process, not once per shard)
_METRICS: dict = {}


def _metric(ctx: RunContext, key: str):
    if _METRICS.get("run") != ctx.folder.url:
        _METRICS.clear()
        _METRICS.update(run=ctx.folder.url, built=build_metrics(ctx))
    return _METRICS["built"][key]


def score_shard(ctx: RunContext, key: str, shard):
    """One shard's per-example scores of metric ``key``: (values by sub-key, details, errors).
    ``shard`` is a :class:`~assay.stages.invoke.Packed` (preds, refs, rows, inputs); so is the result."""
    # lazy: keeps pandas out of start-up
    from assay.scoring import _score_rows

    preds, refs, rows, inputs = shard.value
    values, details, errors = _score_rows(_metric(ctx, key), preds, refs, rows, inputs)
    return Packed(({k: (None if v is None else list(v)) for k, v in values.items()}, details, errors))


def shardable(metric) -> bool:
    """Whether a metric's per-example scores may be computed away from the stage (not a judge)."""
    return getattr(metric, "usage", None) is None and not hasattr(metric, "set_cache")


def sharded(ctx: RunContext, map_shards, shard_rows: int):
    """A ``score_rows`` for :func:`run`: splits each (model, metric)'s rows into shards of
    ``shard_rows``, has ``map_shards(ctx, key, shards) -> [results of score_shard]`` score them,
    and joins the results in order. A judge, or a single shard, is scored here."""
    # lazy: keeps pandas out of start-up
    from assay.scoring import _score_rows

    def score_rows(key, metric, preds, refs, rows, inputs, model=None):
        n = len(preds)
        if not shardable(metric) or n <= shard_rows:
            return _score_rows(metric, preds, refs, rows, inputs)
        spans = [(lo, min(n, lo + shard_rows)) for lo in range(0, n, shard_rows)]
        shards = [
            Packed((preds[a:b], refs[a:b], None if rows is None else rows[a:b], None if inputs is None else inputs[a:b]))
            for a, b in spans
        ]
        log.info("score: %s%s: %d shards of up to %d rows", f"{model} " if model else "", key, len(shards), shard_rows)
        results = [r.value for r in map_shards(ctx, key, shards)]
        values: dict = {}
        for sub in results[0][0]:
            parts = [r[0].get(sub) for r in results]
            values[sub] = None if any(p is None for p in parts) else [v for p in parts for v in p]
        details = None if any(r[1] is None for r in results) else [d for r in results for d in r[1]]
        errors = (
            None
            if all(r[2] is None for r in results)
            else [e for r, (a, b) in zip(results, spans) for e in (r[2] if r[2] is not None else [None] * (b - a))]
        )
        return values, details, errors

    return score_rows
