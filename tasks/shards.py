"""The shard tasks of a run on a cluster (``runner:``): one Prefect task per invoke shard (model ×
rows) and per score chunk, submitted to the flow's task runner (prefect-dask's ``DaskTaskRunner``),
so they run in the cluster's worker processes and show in the UI as task runs of the stage.

Each task is a thin wrapper around a Prefect-free function of ``assay.stages``; its ``assay`` log
lines reach the Prefect API from the worker (:func:`tasks.logs.assay_logs_to_prefect`).
"""

from prefect import task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from assay.runs import RunContext, RunFailed
from assay.stages import invoke as invoke_stage
from assay.stages import score as score_stage
from tasks.logs import assay_logs_to_prefect


@task(name="invoke-shard", cache_policy=NO_CACHE, retries=0, task_run_name="invoke-{shard.name}")
def invoke_shard(ctx: RunContext, shard: invoke_stage.Shard) -> invoke_stage.ShardFigures:
    """Answer one shard's rows with its model; its parts and journal go to its own folder."""
    with assay_logs_to_prefect():
        return invoke_stage.run_shard(ctx, shard)


@task(name="score-chunk", cache_policy=NO_CACHE, retries=0, task_run_name="score-{key}-{number}")
def score_chunk(ctx: RunContext, key: str, number: int, chunk: invoke_stage.Packed):
    """One chunk's per-example scores of one metric."""
    with assay_logs_to_prefect():
        return score_stage.score_chunk(ctx, key, chunk)


def _outcome(future) -> tuple[bool, object]:
    try:
        return True, future.result()
    except Exception as e:  # noqa: BLE001  (a failed task, or a Dask error such as KilledWorker)
        return False, e


def _gather(futures, what: str, on_done=None) -> list:
    """Every future's result, in order, once all have finished: a failed one fails the stage after
    the others have kept their work (an invoke shard's parts and journal stay for the resume).
    ``on_done(result)`` is told of each success as it comes."""
    outcomes: dict[int, tuple[bool, object]] = {}
    try:
        for f in as_completed(futures):
            outcomes[id(f)] = _outcome(f)
            if outcomes[id(f)][0] and on_done is not None:
                on_done(outcomes[id(f)][1])
    except Exception:  # noqa: BLE001  (the rest are waited for one by one below)
        pass
    for f in futures:
        if id(f) not in outcomes:
            outcomes[id(f)] = _outcome(f)
    failed = [outcomes[id(f)][1] for f in futures if not outcomes[id(f)][0]]
    if failed:
        e = failed[0]
        raise RunFailed(f"{len(failed)} of {len(futures)} {what} failed; first: {type(e).__name__}: {str(e)[:300]}") from e
    return [outcomes[id(f)][1] for f in futures]


def map_invoke(ctx: RunContext, shards: list, on_done=None) -> list[invoke_stage.ShardFigures]:
    """Run the invoke shards on the flow's task runner; their figures, in order."""
    return _gather(invoke_shard.map(unmapped(ctx), shards), "invoke shards", on_done)


def map_score(ctx: RunContext, key: str, chunks: list) -> list:
    """Score the chunks of one metric on the flow's task runner; their results, in order."""
    return _gather(score_chunk.map(unmapped(ctx), key, list(range(len(chunks))), chunks), f"score chunks of {key}")
