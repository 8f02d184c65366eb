"""The report stage: summary.md (the headline table and the decisions) and a self-contained
report.html; returns what the Prefect UI artifacts show."""

import logging
import time

from assay import store as S
from assay.runs import RunContext
from assay.runs.manifest import record_stage

NAME = "report"
log = logging.getLogger("assay.report")


def run(ctx: RunContext) -> dict:
    # lazy: keeps pandas out of start-up
    from assay.report import build_report

    t0 = time.perf_counter()
    out = build_report(ctx.folder, ctx.cfg, ctx.pipeline)
    # how long the charts took (vl-convert's engine starts on the first, once per process)
    record_stage(ctx.folder, NAME, t0, [S.SUMMARY, S.REPORT], {"timings": out["timings"]})
    log.info("report: %s", out["recommendation"])
    log.info("report: %s", out["report"])
    return out
