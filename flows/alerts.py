"""Alerts from ``alerts:`` as Prefect automations and notification blocks, kept in step with the config.

For each pipeline, its alerts (its own ``alerts:``, else the top-level one) name destinations;
each destination is a Prefect notification block (``webhook`` → Custom Webhook, ``slack`` →
Slack Webhook) whose URL is read from the environment variable the config names and stored by
Prefect as a secret (a SecretStr/SecretDict field: the API and the UI show it obfuscated), and
each (pipeline, destination, event) is one automation:

* an Assay event (``gate.failed``, ``run.failed``, ``model.changed``, ...): a reactive trigger on
  ``assay.<event>`` from resource ``assay.pipeline.<name>`` whose ``assay.alert`` label is
  ``true`` (a gate failure that does not meet the ``sustained:`` rule is labelled ``false``);
* ``late`` (scheduled pipelines only): a proactive trigger on the pipeline's deployment: a flow
  run that went Late or Pending and did not reach Completed, Failed or Cancelled within
  ``late_after`` (Prefect's own crash-detection pattern, keyed per flow run).

:func:`sync_alerts` is idempotent: it reads the automations Assay made (named
``assay/<pipeline>/<destination>/<event>`` and tagged ``assay-alert``), updates those that
changed, creates those missing, and deletes those the config no longer names (and any
duplicate), so a second ``assay serve`` neither duplicates nor loses one. Automations that are
not Assay's are never touched. ``assay serve``, ``assay deploy`` and ``assay alerts sync`` call it.
"""

import os
import re
from dataclasses import dataclass, field
from datetime import timedelta

MANAGED_TAG = "assay-alert"
PREFIX = "assay/"
#: what a flow run reaches when it is over, for the late alert (Crashed is not here: a crashed
#: nightly sends no event of Assay's own, so it is reported late)
FINISHED = {"prefect.flow-run.Completed", "prefect.flow-run.Failed", "prefect.flow-run.Cancelled"}
STARTED = {"prefect.flow-run.Pending", "prefect.flow-run.Late"}


class AlertsError(ValueError):
    """The alerts cannot be synced as configured (an unset URL variable, say); says which key."""


def automation_name(pipeline: str, destination: str, event: str) -> str:
    """The automation of one alert: ``assay/<pipeline>/<destination>/<event>``."""
    return f"{PREFIX}{pipeline}/{destination}/{event}"


def block_name(kind: str, env_var: str) -> str:
    """The notification block of a destination: one per kind and URL variable (lowercase, dashes)."""
    return "assay-" + kind + "-" + re.sub(r"[^a-z0-9]+", "-", env_var.lower()).strip("-")


@dataclass
class Planned:
    """One automation the config asks for."""

    name: str
    pipeline: str
    destination: str
    event: str
    block: str  # the block name whose document id the action needs
    trigger: object
    subject: str
    body: str
    description: str


@dataclass
class SyncReport:
    """What one sync did, by automation name (no URL in it)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: why"
    blocks: list[str] = field(default_factory=list)

    @property
    def automations(self) -> list[str]:
        return sorted(self.created + self.updated + self.unchanged)


# templates ------------------------------------------------------------------------------------
_LINKS = (
    "{% if event.payload.flow_run_url %}\nFlow run: {{ event.payload.flow_run_url }}{% endif %}"
    "{% if event.payload.report_url %}\nReport: {{ event.payload.report_url }}{% endif %}"
)
_GATE = (
    "\nGate: {{ event.payload.gate }} on {{ event.payload.metric }}"
    "{% if event.payload.model %} [{{ event.payload.model }}]{% endif %}, slice {{ event.payload.slice }}: "
    "value {{ event.payload.value }}, threshold {{ event.payload.threshold }}"
    "{% if event.payload.difference is not none %}, difference {{ event.payload.difference }}{% endif %}"
    "{% if event.payload.interval %} (95% CI {{ event.payload.interval[0] }} to {{ event.payload.interval[1] }}){% endif %}"
    "{% if event.payload.p_adjusted is not none %}, adjusted p {{ event.payload.p_adjusted }}{% endif %}"
    "{% if event.payload.reason %}; {{ event.payload.reason }}{% endif %}"
)


def _body(event: str) -> str:
    head = "Pipeline: {{ event.payload.pipeline }}\nDate: {{ event.payload.as_of }}\nVerdict: {{ event.payload.verdict }}"
    extra = _GATE if event.startswith("gate.") else ""
    return head + extra + _LINKS


def _subject(event: str) -> str:
    what = {
        "gate.failed": "gate failed",
        "gate.inconclusive": "gate inconclusive",
        "run.failed": "run failed",
        "run.completed": "run completed",
        "model.changed": "model changed",
        "cost.over_budget": "over budget",
    }[event]
    return "[assay] " + what + ": {{ event.payload.pipeline }} {{ event.payload.as_of }}"


def _ui_base() -> str | None:
    from prefect.settings import get_current_settings  # lazy: only a sync of alerts needs Prefect's automation API

    s = get_current_settings()
    ui = s.ui_url or (s.api.url[:-4] if s.api.url and s.api.url.rstrip("/").endswith("/api") else None)
    return ui.rstrip("/") if ui else None


# the plan -------------------------------------------------------------------------------------
def plan(
    loaded, pipelines: list[str] | None = None, deployment_ids: dict[str, str] | None = None
) -> tuple[list[Planned], dict[str, tuple[str, str]], list[str]]:
    """The automations the config asks for, the blocks they use (name -> (kind, env var)), and
    the alerts that cannot be made (``late`` of a pipeline without a schedule or deployment)."""
    # lazy: only a sync of alerts needs Prefect's automation API
    from prefect.events.schemas.automations import EventTrigger, Posture

    from assay.alerting import ALERT_LABEL, resource_id

    cfg = loaded.config
    out, blocks, skipped = [], {}, []
    ui = _ui_base()
    for p in pipelines or list(cfg.pipelines):
        alerts = cfg.alerts_of(p)
        if alerts is None:
            continue
        for dest_name, dest in alerts.destinations.items():
            bname = block_name(dest.kind, dest.url_env)
            blocks[bname] = (dest.kind, dest.url_env)
            for ev in dest.events:
                name = automation_name(p, dest_name, ev)
                desc = (
                    f"Managed by Assay from {loaded.path.name} (alerts of pipeline {p}, destination {dest_name}): "
                    "`assay alerts sync` rewrites or removes it."
                )
                if ev == "late":
                    sched = cfg.pipelines[p].schedule
                    dep = (deployment_ids or {}).get(p)
                    if sched is None:
                        skipped.append(f"{name}: pipeline {p} has no schedule")
                        continue
                    if dep is None:
                        skipped.append(
                            f"{name}: no deployment assess/{p} on the server yet (run `assay serve` or `assay deploy`)"
                        )
                        continue
                    late = alerts.late_after_seconds
                    trigger = EventTrigger(
                        after=set(STARTED),
                        expect=set(FINISHED),
                        for_each={"prefect.resource.id"},
                        match={"prefect.resource.id": "prefect.flow-run.*"},
                        match_related={"prefect.resource.id": f"prefect.deployment.{dep}"},
                        posture=Posture.Proactive,
                        threshold=1,
                        within=timedelta(seconds=late),
                    )
                    link = f"\nDeployment: {ui}/deployments/deployment/{dep}" if ui else ""
                    out.append(
                        Planned(
                            name,
                            p,
                            dest_name,
                            ev,
                            bname,
                            trigger,
                            f"[assay] late: {p} has not finished its scheduled run",
                            f"Pipeline: {p}\nVerdict: {p}: a run of the nightly deployment assess/{p} has not "
                            f"finished within {alerts.late_after} of its scheduled start "
                            f"({sched.cron} {sched.timezone}).{link}",
                            desc,
                        )
                    )
                    continue
                trigger = EventTrigger(
                    expect={f"assay.{ev}"},
                    match={"prefect.resource.id": resource_id(p), ALERT_LABEL: "true"},
                    posture=Posture.Reactive,
                    threshold=1,
                    within=timedelta(0),
                )
                out.append(Planned(name, p, dest_name, ev, bname, trigger, _subject(ev), _body(ev), desc))
    return out, blocks, skipped


def missing_env(loaded, pipelines: list[str] | None = None, environ: dict | None = None) -> list[str]:
    """The URL variables the alerts of ``pipelines`` name that are not set (checked before a server changes)."""
    env = os.environ if environ is None else environ
    cfg = loaded.config
    out = set()
    for p in pipelines or list(cfg.pipelines):
        alerts = cfg.alerts_of(p)
        for dest in alerts.destinations.values() if alerts is not None else ():
            if not env.get(dest.url_env):
                out.add(dest.url_env)
    return sorted(out)


def _save_block(name: str, kind: str, url: str):
    """Save (create or overwrite) the notification block; return its document id."""
    # lazy: only a sync of alerts needs Prefect's notification blocks
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook

    if kind == "slack":
        block = SlackWebhook(url=url)
    else:
        # the URL lives in the block's secrets, which Prefect stores as a secret; the request's
        # url field names it by placeholder only
        block = CustomWebhookNotificationBlock(
            name=name,
            url="{{url}}",
            secrets={"url": url},
            json_data={"subject": "{{subject}}", "text": "{{body}}", "source": "assay"},
        )
    return block.save(name, overwrite=True)


def deployment_ids(pipelines: list[str]) -> dict[str, str]:
    """The ids of the deployments ``assess/<pipeline>`` the server has (pipelines without one are left out)."""
    # lazy: only a sync of alerts needs Prefect's client
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from flows.serve import deployment_name

    out = {}
    with get_client(sync_client=True) as client:
        for p in pipelines:
            try:
                out[p] = str(client.read_deployment_by_name(deployment_name(p)).id)
            except ObjectNotFound:
                continue
    return out


def _canon(v):
    """A JSON dump with sets in a stable order (the server's copy of a set iterates in another one)."""
    if isinstance(v, (set, frozenset)):
        return sorted((_canon(x) for x in v), key=repr)
    if isinstance(v, dict):
        return {k: _canon(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    return v


def _same(existing, wanted) -> bool:
    def dump(a):
        return {
            "trigger": _canon(a.trigger.model_dump(exclude={"id"})),
            "actions": [_canon(x.model_dump()) for x in a.actions],
            "description": a.description,
            "enabled": a.enabled,
            "tags": sorted(getattr(a, "tags", []) or []),
        }

    return dump(existing) == dump(wanted)


def sync_alerts(loaded, pipelines: list[str] | None = None, environ: dict | None = None) -> SyncReport:
    """Make the server's Assay automations match the config's alerts (see the module docstring).

    ``pipelines`` narrows the sync to those pipelines (their automations only: others are left
    alone); by default every pipeline of the config is synced and Assay automations of
    pipelines the config no longer has are removed. Raises :class:`AlertsError` when a URL
    variable is not set (before anything on the server changes).
    """
    # lazy: only a sync of alerts needs Prefect's client
    from prefect import get_client
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore

    env = os.environ if environ is None else environ
    names = list(pipelines or loaded.config.pipelines)
    planned, blocks, skipped = plan(loaded, names, deployment_ids(names))
    missing = missing_env(loaded, names, env)
    if missing:
        raise AlertsError(
            f"{loaded.path}: alerts: environment variable(s) {', '.join(missing)} not set: each holds "
            "an alert destination's URL (see alerts.destinations.*.url)"
        )
    report = SyncReport(skipped=skipped)
    block_ids = {}
    for bname, (kind, var) in sorted(blocks.items()):
        block_ids[bname] = _save_block(bname, kind, env[var])
        report.blocks.append(bname)
    wanted = {}
    for pl in planned:
        wanted[pl.name] = AutomationCore(
            name=pl.name,
            description=pl.description,
            enabled=True,
            tags=[MANAGED_TAG, "assay"],
            trigger=pl.trigger,
            actions=[SendNotification(block_document_id=block_ids[pl.block], subject=pl.subject, body=pl.body)],
        )
    with get_client(sync_client=True) as client:
        ours = [a for a in client.read_automations() if a.name.startswith(PREFIX) and MANAGED_TAG in (a.tags or [])]
        seen = set()
        for a in sorted(ours, key=lambda a: str(a.created) if getattr(a, "created", None) else ""):
            pipeline = a.name[len(PREFIX) :].split("/", 1)[0]
            if a.name in wanted and a.name not in seen:
                seen.add(a.name)
                if _same(a, wanted[a.name]):
                    report.unchanged.append(a.name)
                else:
                    client.update_automation(a.id, wanted[a.name])
                    report.updated.append(a.name)
            elif pipelines is None or pipeline in names:
                client.delete_automation(a.id)
                report.deleted.append(a.name)
        for name, automation in wanted.items():
            if name not in seen:
                client.create_automation(automation)
                report.created.append(name)
    return report


def managed_automations() -> list:
    """The automations Assay manages on the server (name ``assay/...``, tag ``assay-alert``)."""
    from prefect import get_client  # lazy: only a sync of alerts needs Prefect's client

    with get_client(sync_client=True) as client:
        return [a for a in client.read_automations() if a.name.startswith(PREFIX) and MANAGED_TAG in (a.tags or [])]


def describe(report: SyncReport) -> list[str]:
    """Lines for a terminal: what changed on the server (names only, never a URL)."""
    lines = [
        f"alerts: {len(report.automations)} automation(s): {len(report.created)} created, "
        f"{len(report.updated)} updated, {len(report.unchanged)} unchanged, {len(report.deleted)} removed"
    ]
    lines += [f"  + {n}" for n in report.created] + [f"  ~ {n}" for n in report.updated]
    lines += [f"  - {n}" for n in report.deleted] + [f"  skipped {s}" for s in report.skipped]
    return lines
