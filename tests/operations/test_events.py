"""Assay's events as data (assay.alerting), the alerts: schema, and the automations planned from it."""

import json
from datetime import date

import pytest

from assay.alerting import gate_verdict, run_events, sustained
from assay.config import ConfigError, load_config
from assay.config.schema import AlertsConfig, AssayConfig, duration_seconds


def gate_manifest(verdict: str, status: str = "complete") -> dict:
    check = {
        "model": "m",
        "metric": "accuracy",
        "slice": "channel=email",
        "rule": "max_drop",
        "value": 0.8,
        "threshold": 0.02,
        "previous": 0.9,
        "drop": 0.1,
        "p_value": 0.001,
        "p_adjusted": 0.004,
        "correction": "holm over 4 checks",
        "method": "paired_bootstrap",
        "ci_low": 0.05,
        "ci_high": 0.15,
        "mde": 0.03,
        "verdict": verdict,
        "passed": verdict != "fail",
        "note": None,
    }
    return {
        "status": status,
        "run_id": "r1",
        "gates": {
            "passed": verdict != "fail",
            "verdict": verdict,
            "checks": [check],
            "failures": ["accuracy[m] dropped 0.1"] if verdict == "fail" else [],
            "inconclusive": ["accuracy[m] dropped 0.1 vs"] if verdict == "inconclusive" else [],
        },
    }


def test_a_failed_gate_is_one_event_with_the_documented_fields():
    evs = run_events(
        "support",
        "2024-01-05",
        "complete",
        gate_manifest("fail"),
        links={"flow_run_url": "http://ui/runs/flow-run/1", "report_url": None},
    )
    assert [e[0] for e in evs] == ["assay.run.completed", "assay.gate.failed"]
    _, p, alert = evs[1]
    assert alert
    assert (p["gate"], p["metric"], p["slice"], p["value"], p["threshold"]) == (
        "max_drop",
        "accuracy",
        "channel=email",
        0.8,
        0.02,
    )
    assert p["difference"] == 0.1 and p["interval"] == [0.05, 0.15] and p["p_adjusted"] == 0.004
    assert p["verdict"] == "support 2024-01-05: gate failed: accuracy[m] dropped 0.1"
    assert p["flow_run_url"] == "http://ui/runs/flow-run/1" and "report_url" not in p
    assert len(json.dumps(p)) < 2000  # small


def test_inconclusive_and_failed_runs_and_passing_ones():
    assert [e[0] for e in run_events("p", "d", "complete", gate_manifest("inconclusive"))] == [
        "assay.run.completed",
        "assay.gate.inconclusive",
    ]
    assert [e[0] for e in run_events("p", "d", "complete", gate_manifest("pass"))] == ["assay.run.completed"]
    ((name, payload, _),) = run_events("p", "d", "failed", {"error": {"stage": "invoke"}}, message="boom")
    assert name == "assay.run.failed" and payload["stage"] == "invoke" and payload["error"] == "boom"
    assert gate_verdict({"gates": {"passed": False}}) == "fail" and gate_verdict({}) is None


def test_a_model_change_and_an_over_budget_run_are_events():
    m = gate_manifest("pass")
    m["drift"] = {
        "gpt": {
            "changed": {"system_fingerprint": {"before": "fp_a", "after": "fp_b"}},
            "compared_with": {"run_id": "r0", "as_of": "2024-01-04"},
        }
    }
    evs = run_events("p", "d", "failed", m, message="budget guard: stopped", max_usd=1.0)
    names = [e[0] for e in evs]
    assert names == ["assay.run.failed", "assay.model.changed", "assay.cost.over_budget"]
    changed = evs[1][1]
    assert changed["models"] == {"gpt": {"system_fingerprint": {"before": "fp_a", "after": "fp_b"}}}
    assert "fp_a" in changed["verdict"] and changed["compared_with"]["run_id"] == "r0"
    assert evs[2][1]["reason"] == "the budget guard stopped the calls"
    spent = {**gate_manifest("pass"), "stages": {"invoke": {"usd": 1.25}}}
    ((_, p, _),) = [e for e in run_events("p", "d", "complete", spent, max_usd=1.0) if e[0] == "assay.cost.over_budget"]
    assert p["cost_usd"] == 1.25 and p["max_usd"] == 1.0
    assert not [e for e in run_events("p", "d", "complete", spent, max_usd=2.0) if e[0] == "assay.cost.over_budget"]


def test_sustained_counts_failed_gates_over_the_last_n_complete_runs(tmp_path):
    from assay.store import Store

    store = Store(str(tmp_path))
    verdicts = ["fail", "pass", "fail", "pass", "fail"]
    ids = []
    for i, v in enumerate(verdicts):
        rf = store.run("p", date(2024, 1, i + 1), f"2024010{i + 1}T000000-a")
        rf.write_json("manifest.json", {"status": "complete", "gates": {"passed": v != "fail", "verdict": v}})
        ids.append(rf.run_id)
    assert sustained(store, "p", ids[4], 3) == 2  # fail, pass, fail
    assert sustained(store, "p", ids[3], 3) == 1  # pass, fail, pass
    assert sustained(store, "p", ids[4], 5) == 3
    last = store.run("p", date(2024, 1, 5), ids[4])
    m = {"status": "complete", "run_id": ids[4], **{"gates": gate_manifest("fail")["gates"]}}
    (_, (_, p, alert)) = run_events("p", "2024-01-05", "complete", m, folder=last, sustained_rule={"fail": 3, "of": 3})
    assert not alert and p["sustained"] == {"failed": 2, "of": 3, "needed": 3, "met": False}
    (_, (_, p, alert)) = run_events("p", "2024-01-05", "complete", m, folder=last, sustained_rule={"fail": 2, "of": 3})
    assert alert and p["sustained"]["met"]


def test_alerts_schema_defaults_and_errors():
    a = AlertsConfig.model_validate({"destinations": {"ops": {"slack": {"url": "${SLACK_URL}"}}}})
    d = a.destinations["ops"]
    assert d.kind == "slack" and d.url_env == "SLACK_URL"
    assert d.events == ["gate.failed", "run.failed", "model.changed", "late"]
    assert a.late_after_seconds == 6 * 3600 and duration_seconds("90s") == 90
    for bad, words in [
        ({"destinations": {"ops": {"webhook": {"url": "https://hooks.example/abc"}}}}, "write it as ${ENV_VAR}"),
        ({"destinations": {"ops": {"webhook": {"url": "${A}"}, "slack": {"url": "${B}"}}}}, "one of webhook"),
        ({"destinations": {"ops": {"webhook": {"url": "${A}"}, "events": ["gate.broke"]}}}, "gate.failed"),
        ({"late_after": "5s"}, "at least 10s"),
        ({"late_after": "soon"}, "not a duration"),
        ({"sustained": {"fail": 3, "of": 2}}, "cannot exceed"),
    ]:
        with pytest.raises(Exception, match=None) as e:
            AlertsConfig.model_validate(bad)
        assert words in str(e.value), (bad, str(e.value))


def test_a_run_never_needs_the_alert_url_and_the_hash_ignores_alerts(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_HOOK", raising=False)
    base = """
models:
  m: {provider: replay, output_column: out}
%s
pipelines:
  p:
    dataset: {source: d.parquet, id: id, reference: label}
    models: [m]
    metrics: [accuracy]
"""
    import pandas as pd

    pd.DataFrame({"id": ["a"], "label": ["x"], "out": ["x"]}).to_parquet(tmp_path / "d.parquet")
    plain, alerted = tmp_path / "a.yaml", tmp_path / "b.yaml"
    plain.write_text(base % "")
    alerted.write_text(base % 'alerts: {destinations: {ops: {webhook: {url: "${NOT_SET_HOOK}"}}}}')
    a, b = load_config(plain), load_config(alerted)  # no "environment variable is not set"
    assert a.config_hash("p") == b.config_hash("p")
    assert b.config.alerts_of("p").destinations["ops"].url_env == "NOT_SET_HOOK"
    bad = tmp_path / "c.yaml"
    bad.write_text(base % 'alerts: {destinations: {ops: {webhook: {url: "https://secret.example/x"}}}}')
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert "alerts.destinations.ops.webhook.url" in e.value.format()


def test_a_pipelines_alerts_replace_the_top_level_ones():
    cfg = AssayConfig.model_validate(
        {
            "alerts": {"destinations": {"ops": {"webhook": {"url": "${A}"}}}},
            "pipelines": {
                "p": {"dataset": {"source": "x"}, "models": ["m"], "metrics": ["accuracy"]},
                "q": {
                    "dataset": {"source": "x"},
                    "models": ["m"],
                    "metrics": ["accuracy"],
                    "alerts": {"destinations": {"team": {"slack": {"url": "${B}"}, "events": ["gate.inconclusive"]}}},
                },
            },
        }
    )
    assert list(cfg.alerts_of("p").destinations) == ["ops"] and list(cfg.alerts_of("q").destinations) == ["team"]


def test_the_planned_automations_match_what_the_events_carry(tmp_path):
    """Each planned trigger listens for the event name and resource Assay emits, with assay.alert true."""
    from flows.alerts import automation_name, block_name, plan

    text = """
models:
  m: {provider: replay, output_column: out}
alerts:
  destinations:
    ops: {webhook: {url: "${HOOK}"}, events: [gate.failed, gate.inconclusive, late]}
pipelines:
  p:
    schedule: {cron: "0 2 * * *"}
    dataset: {source: d.parquet, id: id, reference: label}
    models: [m]
    metrics: [accuracy]
"""
    import pandas as pd

    pd.DataFrame({"id": ["a"], "label": ["x"], "out": ["x"]}).to_parquet(tmp_path / "d.parquet")
    (tmp_path / "p.yaml").write_text(text)
    loaded = load_config(tmp_path / "p.yaml")
    planned, blocks, skipped = plan(loaded, deployment_ids={"p": "00000000-0000-0000-0000-000000000001"})
    assert [p.name for p in planned] == [automation_name("p", "ops", e) for e in ("gate.failed", "gate.inconclusive", "late")]
    assert blocks == {block_name("webhook", "HOOK"): ("webhook", "HOOK")} and not skipped
    t = planned[0].trigger
    assert t.expect == {"assay.gate.failed"} and t.match.root == {
        "prefect.resource.id": "assay.pipeline.p",
        "assay.alert": "true",
    }
    late = planned[2].trigger
    assert late.posture == "Proactive" and late.within.total_seconds() == 6 * 3600
    assert "prefect.flow-run.Completed" in late.expect and "prefect.flow-run.Late" in late.after
    _, _, skipped = plan(loaded, deployment_ids={})
    assert skipped and "no deployment assess/p" in skipped[0]
