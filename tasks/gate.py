"""The quality gates as a Prefect task: check a complete run, record the verdict, fail loudly."""

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed

from assay.runs import GateFailed, RunContext
from assay.stages import gate as stage
from tasks.report import artifact_key


@task(name="gate", cache_policy=NO_CACHE, retries=0)
def gate(ctx: RunContext) -> dict:
    """Check the run's metrics against the pipeline's ``gates:`` (see ``assay.gates``).

    Records the verdict as ``gates`` in manifest.json and publishes the markdown artifact
    ``<pipeline>-gates`` (what broke, by how much, on which slice, against which run). A broken
    gate ends the task Failed with a one-line message, so that the flow run ends Failed and
    ``assay run`` exits 3.
    """
    report = stage.check(ctx)
    rf = ctx.folder
    create_markdown_artifact(
        key=artifact_key(ctx.pipeline, "gates"),
        markdown=report.markdown(ctx.pipeline, rf.as_of, rf.run_id),
        description=f"{ctx.pipeline} {ctx.as_of}: gates {'passed' if report.passed else 'FAILED'}",
    )
    try:
        stage.verdict(ctx, report)
    except GateFailed as e:
        return Failed(message=f"gate: {e}")
    return report.to_dict()
