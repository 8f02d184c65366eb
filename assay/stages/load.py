"""The load stage: read the dataset source, filter it to as_of, sample it; write dataset.parquet.

A resumed run keeps the examples it already has when the source is unchanged (same fingerprint),
so a resumed invoke stage skips exactly the examples answered before the interruption. The
preflight (:mod:`assay.preflight`) has read and prepared the same table with the same functions
before the run folder existed; it is taken from the run's context (``ctx.prepared``) rather than
read again, when the source is unchanged.
"""

import logging
import time

import assay.dataset
from assay import store
from assay.runs import RunContext, RunFailed
from assay.runs.manifest import record_stage

NAME = "load"
log = logging.getLogger("assay.load")


def run(ctx: RunContext) -> str:
    """Write dataset.parquet (kept as it is for a resumed run whose source is unchanged)."""
    t0 = time.perf_counter()
    counts = None
    cfg = ctx.cfg
    rf = ctx.folder
    src = ctx.loaded.resolve_path(cfg.dataset.source)
    fp = assay.dataset.fingerprint(src, cfg.dataset.format)
    if ctx.resumed and rf.exists(store.DATASET) and ctx.manifest.dataset.get("fingerprint") == fp:
        log.info("load: resumed run keeps its %s examples (source unchanged)", ctx.manifest.dataset.get("rows"))
        return rf.path(store.DATASET)
    # what the preflight of this request prepared, when the source is still the one it read
    got = ctx.prepared.take(src, cfg.dataset, cfg.prompt, ctx.as_of, ctx.sample) if ctx.prepared is not None else None
    ctx.prepared = None
    if got is None:
        got = assay.dataset.prepared_source(src, cfg.dataset, cfg.prompt, ctx.as_of, ctx.sample)
    end = assay.dataset.partition_end(cfg.dataset, ctx.as_of) if cfg.dataset.partition else None
    where = (
        f" up to {end}" + (f" ({cfg.dataset.partition.lag} before as_of {ctx.as_of})" if end != ctx.as_of else "")
        if cfg.dataset.partition
        else ""
    )
    rows = got.rows if isinstance(got, assay.dataset.Streamed) else got[0].num_rows
    if rows == 0:
        raise RunFailed(f"no examples in {cfg.dataset.source}{where}")
    if isinstance(got, assay.dataset.Streamed):  # ids already in order: written batch by batch, never whole in memory
        read = got.read
        with rf.table_writer(store.DATASET, got.schema()) as w:
            for t in got.batches():
                w.write_table(t)
    else:
        table, read = got
        counts = assay.dataset.log_stats(table)
        if counts is not None:
            log.info(
                "load: %s log %s: %d records in %d file(s): %d chat calls, %d non-chat skipped, %d incomplete skipped%s",
                cfg.dataset.format,
                cfg.dataset.source,
                counts["records"],
                counts["files"],
                counts["chat"],
                counts["non_chat"],
                counts["incomplete"],
                (f", {counts['failed']} failed calls (error set)" if counts["failed"] else "")
                + (f", {counts['duplicates']} duplicates left out" if counts.get("duplicates") else ""),
            )
        rf.write_table(store.DATASET, table)
        del table
    ctx.update_manifest(
        dataset={
            "source": cfg.dataset.source,
            "fingerprint": fp,
            "rows": rows,
            **({"format": cfg.dataset.format, "log": counts} if counts is not None else {}),
        }
    )
    record_stage(rf, NAME, t0, [store.DATASET], {"rows": rows})
    log.info("load: %d examples from %s%s (%d rows read)", rows, cfg.dataset.source, where, read)
    return rf.path(store.DATASET)
