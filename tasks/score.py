"""The score stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.runs import RunContext
from assay.stages import invoke as invoke_stage
from assay.stages import score as stage
from tasks.failures import run_stage, run_stage_with
from tasks.shards import map_score


@task(name="score", cache_policy=NO_CACHE, retries=0)
def score(ctx: RunContext) -> str:
    """Per-example scores, aggregates with bootstrap intervals, slices; write metrics.parquet."""
    if ctx.runner is not None:  # per-example scores in chunks on the cluster (tasks/shards.py)
        return run_stage_with(stage.run, ctx, stage.chunked(ctx, map_score, invoke_stage.shard_rows(ctx)))
    return run_stage(stage, ctx)
