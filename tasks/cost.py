"""The cost stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.run import RunContext, adopt_or_run, cost_stage


@task(name="cost", cache_policy=NO_CACHE, retries=0)
def cost(ctx: RunContext) -> str:
    """Price every model's calls at the run's date; write costs.parquet and breakeven.parquet."""
    return adopt_or_run(ctx, "cost", cost_stage)
