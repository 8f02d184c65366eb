"""The cost stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.runs import RunContext
from assay.stages import cost as stage
from tasks.failures import run_stage


@task(name="cost", cache_policy=NO_CACHE, retries=0)
def cost(ctx: RunContext) -> str:
    """Price every model's calls at the run's date; write costs.parquet and breakeven.parquet."""
    return run_stage(stage, ctx)
