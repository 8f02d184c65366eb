"""The score stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.runs import RunContext
from assay.stages import score as stage
from tasks import run_stage


@task(name="score", cache_policy=NO_CACHE, retries=0)
def score(ctx: RunContext) -> str:
    """Per-example scores, aggregates with bootstrap intervals, slices; write metrics.parquet."""
    return run_stage(stage, ctx)
