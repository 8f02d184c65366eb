"""The gate: check a complete run against the pipeline's ``gates:`` and record the verdict.

It runs after the cost stage and before the report (which shows the verdict); a broken gate
raises :class:`assay.runs.GateFailed`, the report is still written and the run marked complete
(its artifacts stand), and the run's caller fails loudly (``assay run`` exits 3).
"""

import logging

from assay.runs import GateFailed, RunContext

NAME = "gate"
log = logging.getLogger("assay.gate")


def check(ctx: RunContext):
    """The :class:`assay.gates.GateReport` of the run, recorded in its manifest as ``gates``."""
    from assay.gates import check_run  # pandas: imported only by pipelines that have gates

    report = check_run(ctx.folder, ctx.cfg.gates, baseline=ctx.cfg.baseline)
    ctx.update_manifest(gates=report.to_dict())
    return report


def verdict(ctx: RunContext, report):
    """Log the verdict; raise GateFailed when a check failed."""
    if not report.passed:
        raise GateFailed(f"{ctx.pipeline} {ctx.as_of}: {report.message()}")
    if report.verdict == "inconclusive":
        log.warning("gate: inconclusive (not a failure): %s", report.message())
        return report
    log.info("gate: passed (%d checks)", len(report.checks))
    return report


def run(ctx: RunContext):
    """Check the run and raise GateFailed when a check fails."""
    return verdict(ctx, check(ctx))
