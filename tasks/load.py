"""The load stage as a Prefect task."""

from prefect import task
from prefect.cache_policies import NO_CACHE

from assay.runs import RunContext
from assay.stages import load as stage
from tasks.failures import run_stage


@task(name="load", cache_policy=NO_CACHE, retries=0)
def load(ctx: RunContext) -> str:
    """Read the dataset, filter it to as_of, sample it; write dataset.parquet."""
    return run_stage(stage, ctx)
