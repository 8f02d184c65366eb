"""Assay's Prefect events: what a finished run emits, for the Event Feed and the automations.

The events and their payloads are data computed by :mod:`assay.alerting` from the run folder
(the gate stage's verdicts in the manifest, the drift record, the cost table); this module only
sends them with ``prefect.events.emit_event``. Each event's resource is the pipeline
(``assay.pipeline.<name>``, labelled with the pipeline's name and ``assay.alert``) and its
related resource is the flow run that made it, so the Event Feed of a run shows them and an
automation's message can link to the run.
"""

import logging

from assay.alerting import ALERT_LABEL, resource_id, run_events

log = logging.getLogger("assay.events")


def flow_run_url() -> str | None:
    """The UI address of the running flow run (None outside a flow run or without a UI URL)."""
    from prefect.runtime import flow_run  # lazy: Prefect's event code only when an event is sent

    if not flow_run.id:
        return None
    try:
        from prefect.utilities.urls import url_for

        return url_for("flow-run", obj_id=str(flow_run.id))
    except Exception:  # noqa: BLE001  (no UI URL configured: the message simply has no link)
        return None


def emit_run_events(
    pipeline: str, as_of, status: str, *, folder=None, manifest: dict | None = None, message: str = "", loaded=None
) -> list:
    """Emit the events of one finished run (see :func:`assay.alerting.run_events`); returns the
    Prefect events sent. Never raises: telling people must not change how the run ended."""
    try:
        return _emit(pipeline, as_of, status, folder, manifest, message, loaded)
    except Exception as e:  # noqa: BLE001
        log.warning("events: not emitted (%s: %s)", type(e).__name__, e)
        return []


def _emit(pipeline, as_of, status, folder, manifest, message, loaded) -> list:
    # lazy: Prefect's event client only when an event is sent
    from prefect.events import emit_event
    from prefect.runtime import flow_run

    from assay.report.links import report_url

    if manifest is None and folder is not None:
        manifest = folder.manifest() or {}
    max_usd = sustained = None
    if loaded is not None and pipeline in loaded.config.pipelines:
        max_usd = loaded.config.pipelines[pipeline].cost.max_usd
        alerts = loaded.config.alerts_of(pipeline)
        sustained = alerts.sustained if alerts is not None else None
    links = {
        "flow_run_url": flow_run_url(),
        "report_url": report_url(folder) if folder is not None and status == "complete" else None,
    }
    related = []
    if flow_run.id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{flow_run.id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": flow_run.name or "",
            }
        )
    sent = []
    # Emitted from the flow, not from a task: a task run's context can still be current here (the
    # first stage's, seen in the Event Feed), and Prefect's events worker would name that task
    # run as a related resource of every event.
    from prefect.context import TaskRunContext

    token = TaskRunContext.__var__.set(None)
    try:
        _send(emit_event, pipeline, as_of, status, manifest, folder, message, max_usd, sustained, links, related, sent)
    finally:
        TaskRunContext.__var__.reset(token)
    return sent


def _send(emit_event, pipeline, as_of, status, manifest, folder, message, max_usd, sustained, links, related, sent):
    for name, payload, alert in run_events(
        pipeline,
        str(as_of),
        status,
        manifest,
        folder=folder,
        message=message,
        max_usd=max_usd,
        sustained_rule=sustained,
        links=links,
    ):
        resource = {
            "prefect.resource.id": resource_id(pipeline),
            "prefect.resource.name": pipeline,
            "assay.pipeline": pipeline,
            ALERT_LABEL: "true" if alert else "false",
        }
        ev = emit_event(event=name, resource=resource, related=related, payload=payload)
        log.info("event: %s%s", name, "" if alert else " (no alert: sustained rule not met)")
        sent.append(ev)
