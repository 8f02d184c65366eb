"""The report stage as a Prefect task: files in the run folder and the outcome in the UI."""

import re

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from assay.report.links import report_url
from assay.runs import RunContext
from assay.stages import report as stage
from tasks.failures import run_stage


def artifact_key(pipeline: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    base = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-") or "pipeline"
    return f"{base}-{suffix}"


@task(name="report", cache_policy=NO_CACHE, retries=0)
def report(ctx: RunContext) -> str:
    """Write summary.md and report.html; publish the outcome in the UI:

    * markdown artifact ``<pipeline>-summary``: the recommendation, the headline table, the
      decisions, generalization, and where report.html is;
    * table artifact ``<pipeline>-headline``: the headline table (one row per model);
    * link artifact ``<pipeline>-report``: report.html by URL, when the artifact root is published
      (``ASSAY_ARTIFACTS_URL``, see :mod:`assay.report.links`); a ``file://`` link would not open
      from the UI's web page.
    """
    out = run_stage(stage, ctx)
    if isinstance(out, State):
        return out
    desc = f"{ctx.pipeline} {ctx.as_of}"
    url = report_url(ctx.folder)
    link = url or (out["report"] if "://" in out["report"] else "file://" + out["report"])
    create_markdown_artifact(
        key=artifact_key(ctx.pipeline, "summary"),
        markdown=f"{out['markdown'].rstrip()}\n\nFull report: [report.html]({link})\n",
        description=f"{desc}: {out['recommendation']}",
    )
    create_table_artifact(
        key=artifact_key(ctx.pipeline, "headline"),
        table=out["headline"],
        description=f"{desc}: per model the headline metric, costs, p95 latency and errors; ✓ recommended",
    )
    if url:
        create_link_artifact(
            key=artifact_key(ctx.pipeline, "report"),
            link=url,
            link_text=f"report.html of {desc}",
            description=f"{desc}: the decision on one page",
        )
    return out["report"]
