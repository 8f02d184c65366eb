"""The load stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.run import RunContext, adopt_or_run, load_stage


@task(name="load", cache_policy=NO_CACHE, retries=0)
def load(ctx: RunContext) -> str:
    """Read the dataset, filter it to as_of, sample it; write dataset.parquet."""
    return adopt_or_run(ctx, "load", load_stage)
