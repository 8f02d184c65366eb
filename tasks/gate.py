"""The quality gates as a Prefect task: check a complete run, record the verdict, fail loudly."""

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from assay.run import GateFailed, RunContext, _update_manifest
from tasks.report import artifact_key


@task(name="gate", cache_policy=NO_CACHE, retries=0)
def gate(ctx: RunContext) -> dict | None:
    """Check the run's metrics against the pipeline's ``gates:`` (see ``assay.gates``).

    Records the verdict as ``gates`` in manifest.json, publishes the markdown artifact
    ``<pipeline>-gates`` (what broke, by how much, on which slice, against which run) and raises
    ``GateFailed`` with a one-line message when a check fails, so that the flow run ends Failed
    and ``assay run`` exits 3. A pipeline without gates returns None and publishes nothing.
    """
    gates = ctx.cfg.gates
    if not gates:
        return None
    from assay.gates import check_run  # pandas: imported only by pipelines that have gates

    rf = ctx.folder
    report = check_run(rf, gates)
    verdict = report.to_dict()
    _update_manifest(ctx, gates=verdict)
    create_markdown_artifact(key=artifact_key(ctx.pipeline, "gates"), markdown=report.markdown(ctx.pipeline, rf.as_of, rf.run_id),
                             description=f"{ctx.pipeline} {ctx.as_of}: gates {'passed' if report.passed else 'FAILED'}")
    if not report.passed:
        raise GateFailed(f"{ctx.pipeline} {ctx.as_of}: {report.message()}")
    get_run_logger().info("gates passed (%d checks)", len(report.checks))
    return verdict
