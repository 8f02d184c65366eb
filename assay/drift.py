"""Drift behind the same name: what the endpoint said it served, run against run.

Each response row records ``response_model`` (the model name the endpoint answered under) and
``system_fingerprint`` (its build, where the provider gives one). A provider can move a model
name to a new snapshot, or change the serving stack behind it, without a word; the only trace
is in these two fields. :func:`record` reads the values this run's calls returned, per
configured model (the most frequent value of each field), compares them with the latest
complete run of the same pipeline before this one, and writes the manifest's ``drift``::

    drift:
      gpt-4o-mini:
        response_model: gpt-4o-mini-2024-07-18
        system_fingerprint: fp_44709d6fcb
        compared_with: {run_id: ..., as_of: ...}
        changed: {system_fingerprint: {before: fp_0ba0d124f1, after: fp_44709d6fcb}}

``changed`` is there only when a field known in both runs differs; the flow layer turns it into
the ``assay.model.changed`` event, and ``assay history`` shows the values per run. Responses
served from the cache repeat the fields of the call that filled the cache.
"""

import logging
from collections import Counter

import assay.store
from assay.store import RunFolder

log = logging.getLogger("assay.drift")
FIELDS = ("response_model", "system_fingerprint")


def observed(rf: RunFolder) -> dict[str, dict[str, str | None]]:
    """Per model of the run's responses, the most frequent non-null value of each field (None
    when no response gave one; a run written before the columns existed gives nothing)."""
    counts: dict[str, dict[str, Counter]] = {}
    for name in rf.listdir(assay.store.RESPONSES):
        if not name.endswith(".parquet"):
            continue
        path = f"{assay.store.RESPONSES}/{name}"
        if not set(FIELDS) <= set(rf.parquet_schema(path)[0].names):
            continue
        t = rf.read_table(path, columns=["model", *FIELDS])
        cols = [t[c].to_pylist() for c in ("model", *FIELDS)]
        for model, *values in zip(*cols):
            per = counts.setdefault(model, {f: Counter() for f in FIELDS})
            for f, v in zip(FIELDS, values):
                if v is not None:
                    per[f][v] += 1
    return {m: {f: (c[f].most_common(1)[0][0] if c[f] else None) for f in FIELDS} for m, c in sorted(counts.items())}


def previous_complete(rf: RunFolder) -> RunFolder | None:
    """The latest complete run of the pipeline before this one (earlier as_of, or the same as_of and
    an earlier run id)."""
    for other in reversed(rf.store.runs(rf.pipeline)):
        if (other.as_of, other.run_id) >= (rf.as_of, rf.run_id):
            continue
        if (other.manifest() or {}).get("status") == "complete":
            return other
    return None


def compare(now: dict, before: dict | None, models: list[str], previous: RunFolder | None) -> dict:
    """The ``drift`` record of the configured ``models`` (see the module docstring)."""
    out = {}
    for m in models:
        if m not in now:
            continue
        rec = dict(now[m])
        if previous is not None and before and m in before:
            rec["compared_with"] = {"run_id": previous.run_id, "as_of": previous.as_of}
            changed = {
                f: {"before": before[m][f], "after": now[m][f]}
                for f in FIELDS
                if before[m].get(f) is not None and now[m].get(f) is not None and before[m][f] != now[m][f]
            }
            if changed:
                rec["changed"] = changed
        out[m] = rec
    return out


def record(ctx) -> dict:
    """Compare this run's served names and fingerprints with the previous complete run's and write
    the manifest's ``drift`` (only when the run's responses carry the fields); returns it."""
    rf = ctx.folder
    now = observed(rf)
    if not now:
        return {}
    prev = previous_complete(rf)
    before = observed(prev) if prev is not None else None
    drift = compare(now, before, list(ctx.models), prev)
    if drift:
        ctx.update_manifest(drift=drift)
    for m, rec in drift.items():
        for f, ch in (rec.get("changed") or {}).items():
            log.warning(
                "drift: %s: %s changed from %s to %s since run %s (%s)",
                m,
                f,
                ch["before"],
                ch["after"],
                rec["compared_with"]["run_id"],
                rec["compared_with"]["as_of"],
            )
    return drift
