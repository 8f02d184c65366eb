"""The report stage as a Prefect task: files in the run folder and artifacts in the UI."""

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from assay.run import RunContext, report_stage


def artifact_key(pipeline: str, suffix: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    import re

    base = re.sub(r"[^a-z0-9-]+", "-", pipeline.lower()).strip("-") or "pipeline"
    return f"{base}-{suffix}"


@task(name="report", cache_policy=NO_CACHE, retries=0)
def report(ctx: RunContext) -> str:
    """Write summary.md and report.html; publish the summary table, markdown and a link."""
    out = report_stage(ctx)
    create_table_artifact(key=artifact_key(ctx.pipeline, "summary"), table=out["rows"],
                          description=f"{ctx.pipeline} {ctx.as_of}: metrics and costs per model")
    create_markdown_artifact(key=artifact_key(ctx.pipeline, "summary-md"), markdown=out["markdown"],
                             description=f"{ctx.pipeline} {ctx.as_of} summary")
    link = out["report"]
    if "://" not in link:
        link = "file://" + link
    create_link_artifact(key=artifact_key(ctx.pipeline, "report"), link=link, link_text="report.html",
                         description=f"{ctx.pipeline} {ctx.as_of} report")
    return out["report"]
