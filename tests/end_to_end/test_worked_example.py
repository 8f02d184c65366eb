"""The shipped example's dollars, worked from its config and its logs as docs/costs-worked-example.md
works them by hand: every expected figure below is arithmetic on pipelines.yaml, the replayed logs
and (for the baseline's compute, the one measured figure) the run's own recorded seconds."""

import json
from datetime import date

import pandas as pd
import pytest

from assay import store
from assay.config import load_config
from assay.pricing import quote
from assay.responses import read_responses
from assay.stages import run_local

AS_OF = date(2026, 12, 5)


def test_the_shipped_examples_costs_and_decisions_by_hand(example_config, project_root):
    from assay.report import summary

    loaded = load_config(example_config)
    models, pipe = loaded.config.models, loaded.pipeline("support-triage")
    M = pipe.cost.monthly_requests
    ctx = run_local(str(example_config), "support-triage", AS_OF)
    rf = ctx.folder
    costs = rf.read_table(store.COSTS).to_pandas().set_index("model")
    ids = set(rf.read_table(store.DATASET, columns=["example_id"]).column("example_id").to_pylist())

    # gpt-4o-mini: its logged tokens at genai-prices' price (one price over the logged days)
    log = pd.read_parquet(project_root / "data/support_triage/logs/gpt-4o-mini.parquet")
    log = log[log["ticket_id"].astype(str).isin(ids)]
    q = quote(models["gpt-4o-mini"], AS_OF)
    c_api = (log["prompt_tokens"].sum() * q.input_per_mtok + log["completion_tokens"].sum() * q.output_per_mtok) / 1e6 / len(log)
    assert costs.loc["gpt-4o-mini", "monthly_cost_usd"] == pytest.approx(M * c_api, rel=1e-9)

    # llama-3.1-8b: Little's law on the logged latencies at the configured concurrency; the floor binds
    llama, lat = models["llama-3.1-8b"], pd.read_parquet(project_root / "data/support_triage/logs/llama-3.1-8b.parquet")
    rate = llama.hosting.usd_per_gpu_hour * llama.hosting.gpus
    rps = llama.max_concurrency / lat[lat["ticket_id"].astype(str).isin(ids)]["latency_s"].mean()
    assert costs.loc["llama-3.1-8b", "throughput_rps"] == pytest.approx(rps, rel=1e-12)
    floor_llama = llama.hosting.replicas * rate * 730
    assert costs.loc["llama-3.1-8b", "monthly_cost_usd"] == pytest.approx(max(floor_llama, M * rate / (rps * 3600)))

    # tfidf-logreg: one always-on instance at its configured price, plus training (measured) amortised
    comp = models["tfidf-logreg"].compute
    floor = comp.instances * comp.usd_per_hour * 730
    st = rf.manifest()["stages"]["invoke"]["models"]["tfidf-logreg"]
    training = st["train_s"] * comp.usd_per_hour / 3600 / comp.amortise_months
    per_request = st["compute_s"] / 1200 * comp.usd_per_hour / 3600
    tf = costs.loc["tfidf-logreg"]
    assert tf["floor_monthly_usd"] == pytest.approx(floor) and floor == pytest.approx(15.184)
    assert tf["monthly_cost_usd"] == pytest.approx(training + max(floor, M * per_request), rel=1e-9)
    be = rf.read_table(store.BREAKEVEN).to_pandas().set_index(["option", "api"])
    assert be.loc[("tfidf-logreg", "gpt-4o-mini"), "breakeven_monthly_requests"] == pytest.approx((floor + training) / c_api)
    assert be.loc[("llama-3.1-8b", "gpt-4o-mini"), "breakeven_monthly_requests"] == pytest.approx(floor_llama / c_api)

    # the cascade: tfidf-logreg on every request, gpt-4o-mini on those below 0.6 confidence
    resp = read_responses(rf).to_pandas()
    conf = resp[resp["model"] == "tfidf-logreg"].set_index("example_id")["confidence"]
    escalated = conf.index[conf < 0.6]
    g = resp[resp["model"] == "gpt-4o-mini"].set_index("example_id").loc[escalated]
    per_escalated = (
        (g["prompt_tokens"].sum() * q.input_per_mtok + g["completion_tokens"].sum() * q.output_per_mtok) / 1e6 / len(g)
    )
    pol = rf.read_table(store.POLICIES).to_pandas().set_index("policy").loc["tfidf-then-gpt"]
    share = len(escalated) / len(conf)
    assert pol["monthly_cost_usd"] == pytest.approx(tf["monthly_cost_usd"] + M * share * per_escalated, rel=1e-9)
    assert pol["floor_monthly_usd"] == pytest.approx(floor) and pol["needs"] == "tfidf-logreg, gpt-4o-mini"

    # the decisions: the baseline is cheapest; the cascade is on the front, dominates gpt-4o-mini, is the runner-up
    m = rf.manifest()
    cfg = summary.run_config(m)
    table = summary.headline(rf.read_table(store.METRICS).to_pandas(), rf.read_table(store.COSTS).to_pandas(), cfg)
    dec = summary.decisions(table, cfg, rf.read_table(store.POLICIES).to_pandas())
    assert dec["recommendation"].model == "tfidf-logreg" and dec["recommendation"].runner_up == "tfidf-then-gpt"
    assert dec["pareto_labels"] == ["tfidf-logreg", "tfidf-then-gpt (cascade)"]
    assert any(line.startswith("The cascade tfidf-then-gpt dominates gpt-4o-mini") for line in dec["dominated"])
    assert "tfidf-logreg is priced as 1 always-on instance at $0.0208/hour, $15.18 a month whatever the volume" in dec["serving"]
    assert m["serving"]["llama-3.1-8b"]["throughput_source"].startswith("log: Little's law, 16 in flight")
    assert json.loads(costs.loc["tfidf-logreg", "price_json"])["instances"] == 1
