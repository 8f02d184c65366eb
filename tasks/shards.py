"""The shard tasks of a run on a cluster (``runner:``): one Prefect task per invoke shard (model ×
rows) and per score chunk, submitted to the flow's task runner (prefect-dask's ``DaskTaskRunner``),
so they run in the cluster's worker processes and show in the UI as task runs of the stage.

Each task is a thin wrapper around a Prefect-free function of ``assay.stages``; its ``assay`` log
lines reach the Prefect API from the worker (:func:`tasks.logs.assay_logs_to_prefect`).
"""

from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed, wait

from assay.runs import RunContext, RunFailed
from assay.stages import invoke as invoke_stage
from assay.stages import score as score_stage
from tasks.logs import assay_logs_to_prefect


@task(name="invoke-shard", cache_policy=NO_CACHE, retries=0, task_run_name="invoke-{shard.name}")
def invoke_shard(ctx: RunContext, shard: invoke_stage.Shard) -> dict:
    """Answer one shard's rows with its model; its parts and journal go to its own folder."""
    with assay_logs_to_prefect():
        return invoke_stage.run_shard(ctx, shard)


@task(name="score-chunk", cache_policy=NO_CACHE, retries=0, task_run_name="score-{key}-{number}")
def score_chunk(ctx: RunContext, key: str, number: int, chunk: invoke_stage.Packed):
    """One chunk's per-example scores of one metric."""
    with assay_logs_to_prefect():
        return score_stage.score_chunk(ctx, key, chunk)


def _gather(futures, what: str, on_done=None) -> list:
    """Every future's result, in order, once all have finished: a failed one fails the stage after
    the others have kept their work (an invoke shard's parts and journal stay for the resume).
    ``on_done(result)`` is told of each success as it comes."""
    if on_done is not None:
        for f in as_completed(futures):
            if f.state.is_completed():
                on_done(f.result())
    wait(futures)
    failed = [f for f in futures if f.state.is_failed() or f.state.is_crashed()]
    if failed:
        try:
            failed[0].result()
        except Exception as e:  # noqa: BLE001  (its message, in the stage's one line)
            raise RunFailed(f"{len(failed)} of {len(futures)} {what} failed; first: {str(e) or type(e).__name__}") from e
        raise RunFailed(f"{len(failed)} of {len(futures)} {what} failed")
    return [f.result() for f in futures]


def map_invoke(ctx: RunContext, shards: list, on_done=None) -> list[dict]:
    """Run the invoke shards on the flow's task runner; their figures, in order."""
    return _gather(invoke_shard.map(unmapped(ctx), shards), "invoke shards", on_done)


def map_score(ctx: RunContext, key: str, chunks: list) -> list:
    """Score the chunks of one metric on the flow's task runner; their results, in order."""
    return _gather(score_chunk.map(unmapped(ctx), key, list(range(len(chunks))), chunks), f"score chunks of {key}")
