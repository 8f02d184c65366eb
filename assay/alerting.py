"""What a finished run tells people: its events as data (names, small payloads), no Prefect here.

The gate stage writes its verdicts into the manifest; this module turns a run's manifest (and
its cost table) into the list of events the flow layer emits (``flows/events.py``) and the
automations built from ``alerts:`` react to. Every event concerns the pipeline's resource
``assay.pipeline.<name>``; its payload is small, documented in docs/alerts.md, and built only
from figures already recorded in the run folder (nothing is computed a second time here, and no
URL, key or config value that could be a secret is copied in).

Events (see :data:`EVENTS`):

``assay.run.completed``   the run finished (its artifacts stand), whatever the gates said
``assay.run.failed``      a stage failed, or the config could not run at all
``assay.gate.failed``     a gate check failed (one event per run, the worst check in it)
``assay.gate.inconclusive`` no check failed but one could not decide (interval or MDE)
``assay.model.changed``   a model's ``response_model`` or ``system_fingerprint`` changed since the last complete run
``assay.cost.over_budget`` the run's calls cost more than ``cost.max_usd`` (or the budget guard stopped them)
"""

from typing import Any

from assay.store import RunFolder, Store

PREFIX = "assay."
EVENTS = (
    "assay.run.completed",
    "assay.run.failed",
    "assay.gate.failed",
    "assay.gate.inconclusive",
    "assay.model.changed",
    "assay.cost.over_budget",
)
#: the label of the pipeline's resource that says whether the event should page (``sustained:``)
ALERT_LABEL = "assay.alert"
#: at most this many check lines ride along in a gate event's payload
MAX_CHECKS = 5


def resource_id(pipeline: str) -> str:
    """The Prefect resource id of a pipeline: ``assay.pipeline.<name>``."""
    return f"assay.pipeline.{pipeline}"


def _round(v: Any) -> Any:
    return round(v, 6) if isinstance(v, float) else v


def gate_payload(check: dict) -> dict:
    """The documented fields of one gate check: which gate, metric, slice, value, threshold, the
    difference with its 95% interval and the adjusted p-value (as the gate stage recorded them)."""
    keep = {
        "gate": check.get("rule"),
        "model": check.get("model"),
        "metric": check.get("metric"),
        "slice": check.get("slice"),
        "value": check.get("value"),
        "threshold": check.get("threshold"),
        "previous": check.get("previous"),
        "difference": check.get("drop"),
        "interval": ([check.get("ci_low"), check.get("ci_high")] if check.get("ci_low") is not None else None),
        "mde": check.get("mde"),
        "p_value": check.get("p_value"),
        "p_adjusted": check.get("p_adjusted"),
        "correction": check.get("correction"),
        "method": check.get("method"),
        "reason": check.get("note"),
    }
    return {k: ([_round(x) for x in v] if isinstance(v, list) else _round(v)) for k, v in keep.items()}


def _worst(checks: list[dict], verdict: str) -> list[dict]:
    picked = [c for c in checks if c.get("verdict", "fail" if not c.get("passed", True) else "pass") == verdict]
    return sorted(picked, key=lambda c: -(c.get("drop") or 0))


def gate_verdict(manifest: dict) -> str | None:
    """``pass``, ``fail`` or ``inconclusive`` as the manifest's gates record it; None without gates."""
    g = manifest.get("gates")
    if not isinstance(g, dict) or "passed" not in g:
        return None
    return g.get("verdict") or ("pass" if g["passed"] else "fail")


def sustained(store: Store, pipeline: str, run_id: str, of: int) -> int:
    """How many of the latest ``of`` complete runs of the pipeline (up to and including ``run_id``,
    in (as_of, run id) order) had a failed gate."""
    runs = [rf for rf in store.runs(pipeline) if (rf.manifest() or {}).get("status") == "complete"]
    runs.sort(key=lambda rf: (rf.as_of, rf.run_id))
    idx = next((i for i, rf in enumerate(runs) if rf.run_id == run_id), len(runs) - 1)
    upto = runs[: idx + 1]
    return sum(1 for rf in upto[-of:] if gate_verdict(rf.manifest() or {}) == "fail")


def verdict_line(pipeline: str, as_of: str, status: str, manifest: dict, message: str = "") -> str:
    """The one-line verdict a message leads with."""
    v = gate_verdict(manifest)
    g = manifest.get("gates") or {}
    if status != "complete":
        return f"{pipeline} {as_of}: run failed: {message}".rstrip(": ")
    if v == "fail":
        lines = g.get("failures") or []
        return f"{pipeline} {as_of}: gate failed: {lines[0] if lines else 'see the report'}" + (
            f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        )
    if v == "inconclusive":
        lines = g.get("inconclusive") or []
        return f"{pipeline} {as_of}: gate inconclusive: {lines[0] if lines else 'see the report'}"
    return f"{pipeline} {as_of}: {'gates passed' if v == 'pass' else 'complete'}"


def _over_budget(manifest: dict, max_usd: float | None, status: str, message: str) -> dict | None:
    """Over ``cost.max_usd``: the budget guard stopped the calls, or the dollars the invoke stage
    recorded as spent (the figure the guard counts) passed it."""
    if max_usd is None:
        return None
    if status != "complete" and "budget guard" in (message or ""):
        return {"max_usd": max_usd, "cost_usd": None, "reason": "the budget guard stopped the calls"}
    spent = ((manifest.get("stages") or {}).get("invoke") or {}).get("usd")
    if isinstance(spent, (int, float)) and spent > max_usd:
        return {"max_usd": max_usd, "cost_usd": round(float(spent), 6), "reason": "the run's calls cost more than cost.max_usd"}
    return None


def run_events(
    pipeline: str,
    as_of: str,
    status: str,
    manifest: dict | None,
    *,
    folder: RunFolder | None = None,
    message: str = "",
    max_usd: float | None = None,
    sustained_rule: Any = None,
    links: dict | None = None,
) -> list[tuple[str, dict, bool]]:
    """The events of one finished run: ``(event name, payload, alert)`` in the order they are emitted.

    ``status`` is ``complete`` (the run's artifacts stand, gates failed or not) or ``failed``;
    ``sustained_rule`` (``{fail: k, of: n}``) makes a gate failure page only when the gates failed in
    k of the last n complete runs (``alert`` is False otherwise; the event is still emitted);
    ``links`` (``flow_run_url``, ``report_url``) go into every payload.
    """
    m = manifest or {}
    run_id = m.get("run_id") or (folder.run_id if folder is not None else None)
    base = {"pipeline": pipeline, "as_of": as_of, "run_id": run_id, "status": status}
    base.update({k: v for k, v in (links or {}).items() if v})
    line = verdict_line(pipeline, as_of, status, m, message)
    out: list[tuple[str, dict, bool]] = []
    if status == "complete":
        v = gate_verdict(m)
        out.append(("assay.run.completed", {**base, "verdict": line, "gates": v}, True))
        checks = (m.get("gates") or {}).get("checks") or []
        for verdict, name in (("fail", "assay.gate.failed"), ("inconclusive", "assay.gate.inconclusive")):
            if v != verdict:
                continue
            worst = _worst(checks, verdict)
            payload = {
                **base,
                "verdict": line,
                **(gate_payload(worst[0]) if worst else {}),
                "checks": len(worst),
                "lines": ((m.get("gates") or {}).get("failures" if verdict == "fail" else "inconclusive") or [])[:MAX_CHECKS],
            }
            alert = True
            if verdict == "fail" and sustained_rule is not None and folder is not None and run_id:
                k, n = _kn(sustained_rule)
                failed = sustained(folder.store, pipeline, run_id, n)
                alert = failed >= k
                payload["sustained"] = {"failed": failed, "of": n, "needed": k, "met": alert}
            out.append((name, payload, alert))
    else:
        out.append(
            (
                "assay.run.failed",
                {**base, "verdict": line, "error": (message or "")[:500], "stage": (m.get("error") or {}).get("stage")},
                True,
            )
        )
    drift = m.get("drift") or {}
    changed = {model: d for model, d in drift.items() if isinstance(d, dict) and d.get("changed")}
    if changed:
        models = sorted(changed)
        desc = "; ".join(
            f"{mo}: " + ", ".join(f"{k} {v['before']!r} -> {v['after']!r}" for k, v in changed[mo]["changed"].items())
            for mo in models
        )
        out.append(
            (
                "assay.model.changed",
                {
                    **base,
                    "verdict": f"{pipeline} {as_of}: model changed behind its name: {desc}",
                    "models": {mo: changed[mo]["changed"] for mo in models},
                    "compared_with": next(iter(changed.values())).get("compared_with"),
                },
                True,
            )
        )
    over = _over_budget(m, max_usd, status, message)
    if over:
        out.append(
            ("assay.cost.over_budget", {**base, "verdict": f"{pipeline} {as_of}: over budget: {over['reason']}", **over}, True)
        )
    return out


def _kn(rule: Any) -> tuple[int, int]:
    if isinstance(rule, dict):
        return int(rule["fail"]), int(rule["of"])
    return int(rule.fail), int(rule.of)
