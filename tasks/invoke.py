"""The invoke stage as a Prefect task, with a progress artifact for runs watched in the UI."""

import time

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from assay.runs import RunContext, progress
from assay.stages import invoke as stage
from tasks.failures import run_stage, run_stage_with
from tasks.shards import map_invoke


class _UIProgress:
    """The share of calls done, as a Prefect progress artifact: at most one update a second
    (each one is a database write on the server)."""

    def __init__(self, ctx: RunContext):
        self.ctx = ctx
        self.done: dict[str, int] = {}
        self.id = None
        self.last = 0.0
        self.pct = -1.0

    def __call__(self, model, done, total, errors, usd):
        self.done[model] = done
        pct = 100.0 * sum(self.done.values()) / max(1, total * len(self.ctx.models))
        now = time.monotonic()
        if pct < 100 and now - self.last < 1.0:
            return
        self.last = now
        if self.id is None:
            self.id = create_progress_artifact(progress=pct, description=f"invoke: {self.ctx.pipeline}")
        elif pct != self.pct:
            update_progress_artifact(artifact_id=self.id, progress=pct)
        self.pct = pct


@task(name="invoke", cache_policy=NO_CACHE, retries=0)
def invoke(ctx: RunContext) -> str:
    """Call every model on every example; shards are written as they finish (resumable). With a
    ``runner:``, the shards are Prefect tasks of their own on the cluster (``tasks/shards.py``)."""
    if ctx.runner is not None:
        with progress.watching(_UIProgress(ctx)):
            return run_stage_with(stage.run_sharded, ctx, map_invoke)
    with progress.watching(_UIProgress(ctx)):
        return run_stage(stage, ctx)
