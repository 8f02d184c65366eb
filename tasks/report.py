"""The report stage as a Prefect task: files in the run folder and the summary in the UI."""

import re

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from assay.runs import RunContext
from assay.stages import report as stage
from tasks import run_stage


def artifact_key(pipeline: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    base = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-") or "pipeline"
    return f"{base}-{suffix}"


@task(name="report", cache_policy=NO_CACHE, retries=0)
def report(ctx: RunContext) -> str:
    """Write summary.md and report.html; publish the summary in the UI as markdown artifact
    ``<pipeline>-summary``: its tables, its decisions and a link to report.html.

    One artifact, not a table and a markdown copy of it: each costs a write on the Prefect
    server at the very end of the run, and the Parquet files hold the data.
    """
    out = run_stage(stage, ctx)
    if isinstance(out, State):
        return out
    link = out["report"] if "://" in out["report"] else "file://" + out["report"]
    create_markdown_artifact(key=artifact_key(ctx.pipeline, "summary"),
                             markdown=f"{out['markdown'].rstrip()}\n\nFull report: [report.html]({link})\n",
                             description=f"{ctx.pipeline} {ctx.as_of}: metrics, costs and decisions per model")
    return out["report"]
