"""The invoke stage as a Prefect task, with a progress artifact for runs watched in the UI."""

import time

from prefect import task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE

from assay.run import RunContext, adopt_or_run, invoke_stage


@task(name="invoke", cache_policy=NO_CACHE, retries=0)
def invoke(ctx: RunContext) -> str:
    """Call every model on every example; shards are written as they finish (resumable)."""
    n_models = len(ctx.models)
    done_by_model: dict[str, int] = {}
    state = {"id": None, "last": 0.0, "pct": -1.0}

    def on_progress(model, done, total, errors, usd):
        done_by_model[model] = done
        pct = 100.0 * sum(done_by_model.values()) / max(1, total * n_models)
        now = time.monotonic()
        # the UI needs no more than a few updates a second; each one is a database write
        if pct < 100 and now - state["last"] < 1.0:
            return
        state["last"] = now
        try:
            if state["id"] is None:
                state["id"] = create_progress_artifact(progress=pct, description=f"invoke: {ctx.pipeline}")
            elif pct != state["pct"]:
                update_progress_artifact(artifact_id=state["id"], progress=pct)
            state["pct"] = pct
        except Exception:  # progress display must never fail a run
            pass

    return adopt_or_run(ctx, "invoke", invoke_stage, on_progress=on_progress)
