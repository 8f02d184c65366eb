"""The score stage: per-example scores, aggregates with bootstrap intervals, slices and paired
comparisons; writes scores.parquet, metrics.parquet, generalization.parquet, comparisons.parquet.

LLM judges are metrics that call a model; their usage is recorded with the stage so that the
cost stage can price it.
"""

import logging
import time

from assay import store as S
from assay.runs import RunContext
from assay.runs.manifest import record_stage

NAME = "score"
log = logging.getLogger("assay.score")


def build_metrics(ctx: RunContext) -> dict:
    """The pipeline's metrics, built; a judge metric gets its judge model's provider and the run's cache."""
    from assay.metrics import build_metric
    from assay.providers import Context, build

    cfg = ctx.cfg
    out = {}
    for spec in cfg.metric_specs():
        judge = None
        if spec.judge:
            judge = build(spec.judge, ctx.loaded.config.models[spec.judge],
                          Context(spec.judge, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline))
        metric = build_metric(spec, str(ctx.loaded.base_dir), judge=judge)
        if judge is not None and hasattr(metric, "set_cache"):  # the judge's calls go through the run's response cache
            metric.set_cache(ctx.cache_path(), ctx.cache_mode)
        out[spec.key] = metric
    return out


def inputs_text(ctx: RunContext, dataset) -> list[str]:
    """What each example asked: the rendered user prompt, else its input fields."""
    import pyarrow as pa

    from assay.prompting import render_messages

    cfg = ctx.cfg
    if cfg.prompt is not None:
        return [m[-1]["content"] for m in render_messages(cfg.prompt, dataset)]
    fields = cfg.dataset.input or [c for c in dataset.column_names if c not in ("example_id", "reference")][:1]
    cols = [dataset[f].cast(pa.string()).to_pylist() for f in fields]
    return ["\n".join(v or "" for v in vals) for vals in zip(*cols)]


def read_scored_responses(rf):
    """The run's responses: with several samples per (example, model) (``samples:``, see
    :mod:`assay.scoring`), every sample's row, the last one of each (example, model, sample) winning."""
    from assay.responses import read_responses

    return read_responses(rf)


def deterministic_models(ctx: RunContext) -> set[str]:
    """The run's models whose provider answers an example the same way every time (batch
    providers: a conventional model, a function, a replayed log): their within-example variance
    is 0, not unknown, when other models of the run are sampled."""
    from assay.providers import PROVIDERS

    models = ctx.loaded.config.models
    return {m for m in ctx.models if getattr(PROVIDERS.get(models[m].provider), "kind", None) == "batch"}


def run(ctx: RunContext, score_rows=None) -> str:
    """The stage; ``score_rows`` as for :func:`assay.scoring.score` (see :func:`chunked`)."""
    from assay.scoring import score

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    dataset = rf.read_table(S.DATASET)
    responses = read_scored_responses(rf)
    metrics = build_metrics(ctx)
    inputs = inputs_text(ctx, dataset) if any(getattr(m, "needs_inputs", False) for m in metrics.values()) else None
    budgets = {s.key: s.bootstrap_budget for s in cfg.metric_specs() if s.bootstrap_budget is not None}
    res = score(dataset, responses, metrics, cfg.dataset.slices, cfg.bootstrap, seed=0, held_out=cfg.dataset.held_out,
                inputs=inputs, cluster=cfg.dataset.cluster, budgets=budgets, deterministic=deterministic_models(ctx),
                score_rows=score_rows)
    rf.write_table(S.SCORES, res.scores)
    rf.write_table(S.METRICS, res.metrics)
    rf.write_table(S.GENERALIZATION, res.generalization)
    rf.write_table(S.COMPARISONS, res.comparisons)
    judges = {key: m.usage for key, m in metrics.items() if getattr(m, "usage", None)}
    extra = {"judges": judges} if judges else {}
    computations = {k: int(getattr(m, "computations", 0)) for k, m in metrics.items() if getattr(m, "computations", 0)}
    if res.budgets:
        extra["bootstrap_budgets"] = {k: {**v, "computations": computations.get(k.split(".")[0], res.computations.get(k))}
                                      for k, v in res.budgets.items()}
    record_stage(rf, NAME, t0, [S.SCORES, S.METRICS, S.GENERALIZATION, S.COMPARISONS], extra or None)
    for key, plan in res.budgets.items():
        if plan["overall"] < plan["wanted"] or plan["slices"] < plan["wanted"]:
            from assay.metrics import EvaluateMetric

            advice = (" Return per-example scores from compute (a list under `key`) or use a function metric for full "
                      "intervals." if isinstance(metrics.get(key), EvaluateMetric) else "")
            log.warning("score: %s only aggregates the whole corpus, so its bootstrap recomputes it: bootstrap_budget %d "
                        "allows %d resamples per overall interval and comparison, %d per slice (%s); %d computations in all.%s",
                        key, plan["budget"], plan["overall"], plan["slices"],
                        "no slice intervals" if not plan["slices"] else "fewer than asked", res.computations.get(key, 0), advice)
    overall = res.metrics[res.metrics["slice"] == "all"]
    for r in overall.itertuples():
        log.info("score: %s %s = %.4f [%.4f, %.4f] (n=%d, errors=%d)", r.model, r.metric, r.value, r.ci_low, r.ci_high, r.n,
                 r.errors)
    if "score_error" in res.scores and len(res.scores):
        failed = res.scores[res.scores["score_error"].notna()]
        for (model, metric), g in failed.groupby(["model", "metric"], sort=False):
            log.warning("score: %s %s: %d score error(s), left out of the mean; first: %s", model, metric, len(g),
                        g["score_error"].iloc[0])
    for key, usage in judges.items():
        log.info("score: judge %s made %d calls (%d errors)", key, usage.get("requests", 0), usage.get("errors", 0))
    return rf.path(S.METRICS)


# --- score chunks on a cluster (``runner:``) ------------------------------------------------------
#
# The per-example scores of a metric are a function of each example alone, so they are computed
# in chunks wherever the runner has workers; aggregates, intervals, slices and comparisons need
# every example and stay in the stage's process. A judge (a metric that calls a model and counts
# its usage) is scored in the stage's process, so its usage is counted once, where it is recorded.

#: the metrics a worker process built, per run (built once per process, not once per chunk)
_METRICS: dict = {}


def _metric(ctx: RunContext, key: str):
    if _METRICS.get("run") != ctx.folder.url:
        _METRICS.clear()
        _METRICS.update(run=ctx.folder.url, built=build_metrics(ctx))
    return _METRICS["built"][key]


def score_chunk(ctx: RunContext, key: str, chunk):
    """One chunk's per-example scores of metric ``key``: (values by sub-key, details, errors).
    ``chunk`` is a :class:`~assay.stages.invoke.Packed` (preds, refs, rows, inputs); so is the result."""
    from assay.scoring import _score_rows
    from assay.stages.invoke import Packed

    preds, refs, rows, inputs = chunk.value
    values, details, errors = _score_rows(_metric(ctx, key), preds, refs, rows, inputs)
    return Packed(({k: (None if v is None else list(v)) for k, v in values.items()}, details, errors))


def shardable(metric) -> bool:
    """Whether a metric's per-example scores may be computed away from the stage (not a judge)."""
    return getattr(metric, "usage", None) is None and not hasattr(metric, "set_cache")


def chunked(ctx: RunContext, map_chunks, chunk_rows: int):
    """A ``score_rows`` for :func:`run`: splits each (model, metric)'s rows into chunks of
    ``chunk_rows``, has ``map_chunks(ctx, key, chunks) -> [results of score_chunk]`` score them,
    and joins the results in order. A judge, or a single chunk, is scored here."""
    from assay.scoring import _score_rows

    def score_rows(key, metric, preds, refs, rows, inputs):
        n = len(preds)
        if not shardable(metric) or n <= chunk_rows:
            return _score_rows(metric, preds, refs, rows, inputs)
        spans = [(lo, min(n, lo + chunk_rows)) for lo in range(0, n, chunk_rows)]
        from assay.stages.invoke import Packed

        chunks = [Packed((preds[a:b], refs[a:b], None if rows is None else rows[a:b], None if inputs is None else inputs[a:b]))
                  for a, b in spans]
        log.info("score: %s: %d chunks of up to %d rows", key, len(chunks), chunk_rows)
        results = [r.value for r in map_chunks(ctx, key, chunks)]
        values: dict = {}
        for sub in results[0][0]:
            parts = [r[0].get(sub) for r in results]
            values[sub] = None if any(p is None for p in parts) else [v for p in parts for v in p]
        details = None if any(r[1] is None for r in results) else [d for r in results for d in r[1]]
        errors = None if all(r[2] is None for r in results) else [e for r, (a, b) in zip(results, spans)
                                                                   for e in (r[2] if r[2] is not None else [None] * (b - a))]
        return values, details, errors

    return score_rows
