"""Backfill: one assessment run per date of a range, idempotent and visible in the Prefect UI.

Prefect 3 has no backfill feature of its own, so this is a small driver (PREFECT_NOTES b):

* **Planning.** Every date from start to end (inclusive) that already has a complete run
  (manifest status ``complete`` under ``<root>/<pipeline>/<date>/``) is skipped, unless
  ``force``. A run whose gates failed is complete too: its artifacts stand. So a backfill that
  was interrupted and is started again does only the missing dates.
* **Served mode.** When a Prefect API is configured and reachable (``PREFECT_API_URL``) and the
  deployment ``assess/<pipeline>`` exists and something runs it (status READY: an ``assay serve``
  process polls it, or, for a deployment made by ``assay deploy``, a worker polls its work pool),
  each date becomes a flow run of that deployment, created with
  ``run_deployment(..., parameters={"as_of": date}, timeout=0, tags=["backfill"],
  idempotency_key="<pipeline>:<date>")``. At most ``concurrency`` runs are in flight; the driver
  polls their states and starts the next date when one ends. The idempotency key makes a
  restarted driver re-attach to a date's run that is still scheduled or running instead of
  starting a second one. When the run behind a key has already ended (it failed, or its folder
  was removed) the driver moves on to ``<key>:retry-<n>`` and gets a fresh run. ``force`` adds
  a nonce (``:force-<random>``) so that every forced date gets a new run.
* **Local mode.** Without a served deployment, the ``assess`` flow runs in this process for
  each date, ``concurrency`` dates at a time on threads (each flow run is I/O-bound: model calls
  and Parquet writes; ``concurrency=1`` runs them one after another). The runs still show in
  the UI when an API is configured. A killed local backfill leaves its runs ``running``;
  the next backfill resumes them (``assay.runs.start_run``).

With ``concurrency > 1`` dates run side by side, so a date's ``max_drop`` gate compares with the
latest good run that is complete when its gate runs (an earlier date may still be running).

The status of a date is ``complete``, ``skipped`` (already complete), ``gate failed`` (the run
completed but a quality gate broke), ``failed``, ``crashed`` or ``cancelled``.
"""

import contextvars
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import date, timedelta

from prefect import get_client, tags
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings

from assay.config import LoadedConfig
from assay.gates import gates_passed
from assay.preflight import load_checked
from assay.runs import artifacts_root
from assay.store import RunFolder, Store
from flows.assess import assess, outcome
from flows.serve import deployment_name

FAILED = ("failed", "crashed", "cancelled", "timed out")


@dataclass
class DateResult:
    """What happened to one date of a backfill."""

    day: date
    status: str
    folder: str | None = None
    flow_run: str | None = None
    gates: str = ""  # passed | failed | "" (no gates)
    message: str = ""


@dataclass
class Plan:
    todo: list[date] = field(default_factory=list)
    skipped: list[DateResult] = field(default_factory=list)


def dates_between(start: date, end: date) -> list[date]:
    """Every date from start to end, inclusive."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _verdict(rf: RunFolder | None) -> str:
    if rf is None:
        return ""
    g = gates_passed(rf.manifest())
    return "" if g is None else ("passed" if g else "failed")


def plan(store: Store, pipeline: str, days: list[date], force: bool = False) -> Plan:
    """Split the dates into those to run and those that already have a complete run."""
    out = Plan()
    for d in days:
        done = store.complete_runs(pipeline, d.isoformat())
        if done and not force:
            rf = done[-1]
            out.skipped.append(DateResult(d, "skipped", rf.url, gates=_verdict(rf), message="already complete"))
        else:
            out.todo.append(d)
    return out


def _latest_run(store: Store, pipeline: str, d: date) -> RunFolder | None:
    runs = store.runs(pipeline, d.isoformat())
    return runs[-1] if runs else None


# where to run -------------------------------------------------------------------------------
def served_deployment(pipeline: str):
    """The deployment ``assess/<pipeline>`` when an API is configured, reachable and serving it.

    Returns ``(deployment or None, reason)``; the reason says why the local mode is used.
    """
    url = get_current_settings().api.url
    if not url:
        return None, "no PREFECT_API_URL"
    try:
        with get_client(sync_client=True) as client:
            err = client.api_healthcheck()
            if err is not None:
                return None, f"Prefect API at {url} is not reachable ({err})"
            try:
                dep = client.read_deployment_by_name(deployment_name(pipeline))
            except ObjectNotFound:
                return None, f"no deployment {deployment_name(pipeline)} on {url}"
    except Exception as e:  # noqa: BLE001  (connection refused, timeouts)
        return None, f"Prefect API at {url} is not reachable ({type(e).__name__})"
    status = getattr(getattr(dep, "status", None), "value", None)
    if status is not None and status != "READY":
        where = f"a worker: prefect worker start --pool {dep.work_pool_name}" if dep.work_pool_name else "`assay serve`"
        return None, f"deployment {deployment_name(pipeline)} exists but nothing runs it (status {status}); start {where}"
    return dep, "served"


# served mode ---------------------------------------------------------------------------------
def _final_status(store: Store, pipeline: str, d: date, fr) -> DateResult:
    state = fr.state
    stype = state.type.value if state is not None else "UNKNOWN"
    rf = _latest_run(store, pipeline, d)
    gates = _verdict(rf)
    msg = (state.message or "") if state is not None else ""
    if stype == "COMPLETED":
        status = "complete"
    elif stype == "FAILED":
        status = (
            "gate failed"
            if ("GateFailed" in msg or (gates == "failed" and (rf.manifest() or {}).get("status") == "complete"))
            else "failed"
        )
    else:
        status = stype.lower()
    return DateResult(d, status, rf.url if rf else None, fr.name, gates, msg if status != "complete" else "")


def run_served(
    pipeline: str,
    days: list[date],
    store: Store,
    concurrency: int = 2,
    force: bool = False,
    artifacts: str | None = None,
    poll: float = 1.0,
    timeout: float | None = None,
    on_result: Callable[[DateResult], None] | None = None,
) -> list[DateResult]:
    """Create (or re-attach to) a flow run of ``assess/<pipeline>`` per date; wait for all of them.

    ``timeout`` (seconds per date, from its submission) stops waiting for a run that does not
    end, e.g. because the serve process died; the date is reported ``timed out`` and its flow
    run is left as it is (a later backfill re-attaches to it while it is not final).
    """
    # lazy: keeps prefect out of start-up
    from prefect.deployments import run_deployment

    name = deployment_name(pipeline)
    nonce = f":force-{uuid.uuid4().hex[:8]}" if force else ""
    extra = {"artifacts": artifacts} if artifacts else {}

    def submit(d: date):
        base = f"{pipeline}:{d.isoformat()}{nonce}"
        for attempt in range(1000):
            key = base if attempt == 0 else f"{base}:retry-{attempt}"
            fr = run_deployment(
                name,
                parameters={"as_of": d.isoformat(), **extra},
                timeout=0,
                idempotency_key=key,
                tags=["backfill"],
                flow_run_name=f"backfill-{pipeline}-{d.isoformat()}",
                as_subflow=False,
            )
            # an ended run behind this key belongs to an earlier attempt: the date is still missing
            if fr.state is None or not fr.state.is_final():
                return fr
        raise RuntimeError(f"{pipeline} {d}: too many earlier attempts")

    queue = list(days)
    in_flight: dict = {}
    results: list[DateResult] = []
    with get_client(sync_client=True) as client:
        while queue or in_flight:
            while queue and len(in_flight) < max(1, concurrency):
                d = queue.pop(0)
                fr = submit(d)
                in_flight[fr.id] = (d, time.monotonic())
            time.sleep(poll)
            for fid, (d, t0) in list(in_flight.items()):
                fr = client.read_flow_run(fid)
                if fr.state is not None and fr.state.is_final():
                    r = _final_status(store, pipeline, d, fr)
                elif timeout is not None and time.monotonic() - t0 > timeout:
                    state = fr.state.type.value if fr.state is not None else "unknown"
                    r = DateResult(
                        d, "timed out", None, fr.name, message=f"still {state} after {timeout:.0f}s (is `assay serve` running?)"
                    )
                else:
                    continue
                del in_flight[fid]
                results.append(r)
                if on_result:
                    on_result(r)
    return results


# local mode ----------------------------------------------------------------------------------
def run_local(
    config: str,
    pipeline: str,
    days: list[date],
    store: Store,
    concurrency: int = 1,
    artifacts: str | None = None,
    on_result: Callable[[DateResult], None] | None = None,
) -> list[DateResult]:
    """Run the ``assess`` flow in this process for each date, ``concurrency`` at a time."""
    lock = threading.Lock()

    def one(d: date) -> DateResult:
        fid = f"backfill-{pipeline}-{d.isoformat()}"
        with tags("backfill"):
            state = assess.with_options(flow_run_name=fid)(
                pipeline=pipeline, as_of=d, config=config, artifacts=artifacts, return_state=True
            )
        out = outcome(state)
        rf = _latest_run(store, pipeline, d)
        folder = out.folder or (rf.url if rf else None)
        gates = _verdict(rf)
        if out.status == "gate failed":
            gates = gates or "failed"
        return DateResult(d, out.status, folder, fid, gates, out.message)

    results: list[DateResult] = []

    def record(r: DateResult):
        with lock:
            results.append(r)
        if on_result:
            on_result(r)

    if concurrency <= 1 or len(days) <= 1:
        for d in days:
            record(one(d))
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
            # each thread runs in a copy of this context, so Prefect settings set in code
            # (temporary_settings, profiles) reach the flow runs, not only environment variables
            futures = [pool.submit(contextvars.copy_context().run, one, d) for d in days]
            for f in as_completed(futures):
                record(f.result())
    return results


# the command ---------------------------------------------------------------------------------
@dataclass
class BackfillReport:
    pipeline: str
    mode: str  # served | local
    reason: str
    results: list[DateResult]

    @property
    def exit_code(self) -> int:
        """1 when a date failed (or timed out), else 3 when a gate broke, else 0."""
        if any(r.status in FAILED for r in self.results):
            return 1
        if any(r.status == "gate failed" for r in self.results):
            return 3
        return 0


def backfill(
    config: str,
    pipeline: str,
    start: date,
    end: date,
    force: bool = False,
    concurrency: int = 2,
    artifacts: str | None = None,
    local: bool = False,
    loaded: LoadedConfig | None = None,
    on_start: Callable[[str, str, Plan], None] | None = None,
    on_result: Callable[[DateResult], None] | None = None,
    poll: float = 1.0,
    timeout: float | None = None,
) -> BackfillReport:
    """Run the missing dates of a range (all of them with ``force``); see the module docstring."""
    loaded = loaded or load_checked(config)
    loaded.pipeline(pipeline)
    root = artifacts_root(loaded, artifacts)
    store = Store(root)
    p = plan(store, pipeline, dates_between(start, end), force)
    dep, reason = (None, "--local") if local else served_deployment(pipeline)
    mode = "served" if dep is not None else "local"
    if on_start:
        on_start(mode, reason, p)
    if not p.todo:
        results = []
    elif dep is not None:
        results = run_served(
            pipeline,
            p.todo,
            store,
            concurrency,
            force,
            artifacts=root if artifacts else None,
            poll=poll,
            timeout=timeout,
            on_result=on_result,
        )
    else:
        results = run_local(
            str(loaded.path), pipeline, p.todo, store, concurrency, artifacts=root if artifacts else None, on_result=on_result
        )
    allr = sorted(p.skipped + results, key=lambda r: r.day)
    return BackfillReport(pipeline, mode, reason, allr)
