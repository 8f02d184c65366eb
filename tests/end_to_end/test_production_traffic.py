"""The shipped production-traffic example: yesterday's OTel export assessed nightly, offline (the
run starts the fake OpenAI-compatible server itself for ``base_url: assay-fake:``)."""

from collections import Counter
from datetime import date

import pyarrow.compute as pc
import pytest

from assay.responses import read_responses
from assay.stages import run_local


def test_the_example_runs_offline_on_yesterdays_traffic(example_config):
    from assay.testing import local

    ctx = run_local(str(example_config), "production-traffic", date(2026, 11, 6))
    rf = ctx.folder
    ds = rf.read_table("dataset.parquet")
    # lag 1d: the run dated the 6th assesses the 5th, the last complete day
    days = set(pc.cast(pc.cast(ds["request_time"], "date32"), "string").to_pylist())
    assert days == {"2026-11-05"}
    # the stratified sample: 60 of the day's chat calls, every feature present
    assert ds.num_rows == 60 and set(Counter(ds["app.feature"].to_pylist())) == {
        "support-chat",
        "order-tracking",
        "product-advice",
    }
    m = rf.manifest()
    est = m["cost_estimate"]
    assert est["rows"] == 60 and 0 < est["usd"] <= 1.0 and est["prompt_tokens"] == "logged"
    assert set(est["models"]) == {"gpt-4.1-nano", "gpt-5-mini", "judge:judge-gpt-4o"}
    # the actual cost beside it, the judge's from the cost stage; the estimate errs high
    assert set(est["actual_models"]) == set(est["models"]) and est["actual_usd"] <= est["usd"]
    assert est["actual_usd"] == pytest.approx(sum(est["actual_models"].values()))
    resp = read_responses(rf).to_pandas()
    assert resp[resp.model != "support-bot"]["error"].isna().all()
    # the pairwise judge: every candidate's rates with intervals; at most 2 calls per (candidate, example)
    usage = m["stages"]["score"]["judges"]["pairwise"]
    assert 0 < usage["requests"] <= 2 * 2 * 60 and usage["errors"] == 0
    metrics = rf.read_table("metrics.parquet").to_pandas()
    overall = metrics[metrics.slice == "all"].set_index(["model", "metric"])
    for cand in ("gpt-4.1-nano", "gpt-5-mini"):
        for sub in ("win", "tie", "loss", "not_worse"):
            row = overall.loc[(cand, f"pairwise.{sub}")]
            assert 0 <= row.value <= 1 and row.n == 60 and not row[["wilson_low", "wilson_high"]].isna().any()
    # dollars: the incumbent priced per request date, the candidates at the run's date, the judge on its line
    assert m["prices"]["support-bot"]["by_date"].keys() == {"2026-11-05"}
    assert m["prices"]["gpt-5-mini"]["by_date"].keys() == {"2026-11-06"}
    costs = rf.read_table("costs.parquet").to_pandas().set_index("model")
    assert costs.loc["judge:judge-gpt-4o", "requests"] == usage["requests"]
    summary = open(rf.path("summary.md")).read()
    assert "pairwise" in summary and "Estimated before calling" in summary

    # the next night's run of the same day: every call and verdict from the response cache
    before = local._server.stats(include_prompts=False)["requests_total"]
    again = run_local(str(example_config), "production-traffic", date(2026, 11, 6))
    assert local._server.stats(include_prompts=False)["requests_total"] == before
    assert again.folder.manifest()["stages"]["score"]["judges"]["pairwise"]["cache_hits"] == usage["requests"]


def test_the_fake_servers_demo_rules():
    from assay.metrics.pairwise import pairwise_messages
    from assay.testing.openai_server import pairwise_verdict, respond

    conv = "[system]\nBe kind.\n\n[user]\nMy tent pole snapped on the second night\n\n[assistant]\nSorry!\n\n[user]\nCan you replace the tent pole quickly?"
    on_topic, off_topic = "We replace the tent pole quickly, free.", "Thanks for writing."
    a_first = pairwise_messages(conv, on_topic, off_topic, "Which helps?")[1]["content"]
    b_first = pairwise_messages(conv, off_topic, on_topic, "Which helps?")[1]["content"]
    assert pairwise_verdict(a_first) == "Verdict: A" and pairwise_verdict(b_first) == "Verdict: B"  # position-blind
    assert pairwise_verdict(pairwise_messages(conv, on_topic, on_topic + " Yes.", "r")[1]["content"]) == "Verdict: tie"
    assert pairwise_verdict("hello") is None
    words = ["WORDS: small=2, big=4"]
    assert respond("one two three four five six", words, [], "small") == "one two"
    assert respond("one two three four five six", words, [], "big") == "one two three four"
    assert respond("one two three four five six", words, [], "other") == "one two three four five"
