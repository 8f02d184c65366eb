"""The pure cost model (assay.pricing, assay.costing): every formula against hand-computed numbers."""

import datetime as dt
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from assay.config import Compute, Gate, Hardware, Hosting, OpenAIModel, Price, SklearnModel
from assay.costing import (
    HOURS_PER_MONTH,
    breakeven,
    cheapest_passing,
    cost_table,
    hardware_usd_per_hour,
    hosting_usd_per_hour,
    monthly_cost_usd,
    pareto_front,
)
from assay.pricing import DatedQuotes, PriceQuote, clear_cache, quote, token_cost


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    yield
    clear_cache()


def _genai_model(provider_id: str, model_id: str):
    """The model entry in genai-prices' bundled data, read directly (independently of assay.pricing)."""
    from genai_prices.data import providers

    provider = next(p for p in providers if p.id == provider_id)
    return next(m for m in provider.models if m.id == model_id)


def cfg_price(**kw) -> OpenAIModel:
    return OpenAIModel(model="m", price=Price(**kw))


# ------------------------------------------------------------------------------------------------ imports


def test_imports_are_light():
    # neither prefect nor genai_prices (0.6 s) is imported until a genai-prices lookup is made
    code = (
        "import sys, assay.pricing, assay.costing; "
        "print([m for m in sys.modules if m.split('.')[0] in ('prefect', 'genai_prices')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ------------------------------------------------------------------------------------------------ token_cost


def test_token_cost_with_cached_and_cache_write_tokens():
    q = quote(
        cfg_price(input_per_mtok=2.0, output_per_mtok=8.0, cached_input_per_mtok=0.5, cache_write_per_mtok=2.5),
        dt.date(2025, 1, 1),
    )
    # prompt 10 000 of which 4 000 read from cache and 1 000 written to it; 500 completion tokens:
    #   uncached 5 000 * 2.0 = 10 000
    #   cached   4 000 * 0.5 =  2 000
    #   write    1 000 * 2.5 =  2 500
    #   output     500 * 8.0 =  4 000
    #   total 18 500 / 1e6 = 0.0185 USD
    assert token_cost(q, 10_000, 500, 4_000, 1_000) == pytest.approx(0.0185)
    assert isinstance(token_cost(q, 10_000, 500, 4_000, 1_000), float)


def test_token_cost_cached_price_falls_back_to_input_price():
    q = quote(cfg_price(input_per_mtok=2.0, output_per_mtok=8.0), dt.date(2025, 1, 1))
    # no cached/cache-write prices: every prompt token at 2.0 -> (10 000*2 + 500*8)/1e6 = 0.024
    assert token_cost(q, 10_000, 500, 4_000, 1_000) == pytest.approx(0.024)


def test_token_cost_vectorised_numpy_and_pandas_nullable():
    q = PriceQuote(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5, source="config")
    # row 0: (1000*1 + 100*2)/1e6                   = 0.0012
    # row 1: (500*1 + 500*0.5 + 100*2)/1e6          = 0.00095
    # row 2: cached NA counts 0 -> 2000*1/1e6        = 0.002
    prompt = np.array([1000, 1000, 2000])
    completion = np.array([100, 100, 0])
    cached = pd.Series([0, 500, None], dtype="Int64")
    got = token_cost(q, prompt, completion, cached)
    np.testing.assert_allclose(got, [0.0012, 0.00095, 0.002])
    got = token_cost(q, pd.Series(prompt), pd.Series(completion), cached, pd.Series([None] * 3, dtype="Int64"))
    np.testing.assert_allclose(got, [0.0012, 0.00095, 0.002])


def test_token_cost_unpriced_is_nan():
    assert math.isnan(token_cost(PriceQuote(source="none"), 100, 100))
    assert np.isnan(token_cost(PriceQuote(source="none"), np.array([1, 2]), np.array([1, 2]))).all()


# ------------------------------------------------------------------------------------------------ quote


def test_config_price_wins_over_price_ref():
    m = OpenAIModel(model="gpt-4o-mini", price_ref="openai/gpt-4o-mini", price=Price(input_per_mtok=1, output_per_mtok=3))
    q = quote(m, dt.date(2025, 3, 1))
    assert (q.source, q.input_per_mtok, q.output_per_mtok, q.cached_input_per_mtok) == ("config", 1.0, 3.0, None)
    assert q.as_of == "2025-03-01"


def test_genai_prices_gpt_4o_mini_matches_its_data():
    import genai_prices

    day = dt.date(2025, 1, 15)
    q = quote(OpenAIModel(model="gpt-4o-mini"), day)  # provider inferred by genai-prices
    assert q.source == "genai-prices"
    assert (q.provider_id, q.model_id, q.as_of) == ("openai", "gpt-4o-mini", "2025-01-15")
    # OpenAI's list price for gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per MTok
    assert (q.input_per_mtok, q.cached_input_per_mtok, q.output_per_mtok) == (0.15, 0.075, 0.6)
    assert q.cache_write_per_mtok is None
    # ... which is what genai-prices' own data holds for that date
    ts = dt.datetime(2025, 1, 15, 12, tzinfo=dt.UTC)
    mp = _genai_model("openai", "gpt-4o-mini").get_prices(ts)
    assert (float(mp.input_mtok), float(mp.cache_read_mtok), float(mp.output_mtok)) == (0.15, 0.075, 0.6)
    # and token_cost agrees with genai_prices.calc_price on the same usage (input_tokens includes cache reads):
    # 6 000 uncached * 0.15 = 900; 4 000 cached * 0.075 = 300; 500 out * 0.6 = 300 -> 1 500 / 1e6 = 0.0015
    usage = genai_prices.Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=500)
    calc = genai_prices.calc_price(usage, "gpt-4o-mini", provider_id="openai", genai_request_timestamp=ts)
    assert float(calc.total_price) == pytest.approx(0.0015)
    assert token_cost(q, 10_000, 500, 4_000) == pytest.approx(0.0015)
    # price_ref "provider/model" gives the same
    q2 = quote(OpenAIModel(model="whatever", price_ref="openai/gpt-4o-mini"), day)
    assert (q2.input_per_mtok, q2.output_per_mtok, q2.provider_id) == (0.15, 0.6, "openai")


def test_price_change_between_dates_openai_o3():
    # genai-prices records OpenAI's o3 price cut on 2025-06-10: $10/$40 -> $2/$8 per MTok (cached $0.5 both)
    data = _genai_model("openai", "o3")
    starts = [cp.constraint.start_date for cp in data.prices if cp.constraint is not None]
    assert dt.date(2025, 6, 10) in starts
    m = OpenAIModel(model="o3")
    before, after = quote(m, dt.date(2025, 6, 9)), quote(m, dt.date(2025, 6, 10))
    assert (before.input_per_mtok, before.output_per_mtok) == (10.0, 40.0)
    assert (after.input_per_mtok, after.output_per_mtok) == (2.0, 8.0)
    assert before.cached_input_per_mtok == after.cached_input_per_mtok == 0.5
    # 1 000 prompt + 1 000 completion tokens: before (1000*10 + 1000*40)/1e6 = 0.05; after (1000*2 + 1000*8)/1e6 = 0.01
    assert token_cost(before, 1000, 1000) == pytest.approx(0.05)
    assert token_cost(after, 1000, 1000) == pytest.approx(0.01)
    # datetimes are reduced to their UTC date
    late = dt.datetime(2025, 6, 9, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))  # 2025-06-10 01:30 UTC
    assert quote(m, late).input_per_mtok == 2.0


def test_quotes_are_cached_per_model_and_date():
    m = OpenAIModel(model="o3")
    a, b = quote(m, dt.date(2025, 1, 2)), quote(m, dt.date(2025, 1, 2))
    assert a is b
    assert quote(m, dt.date(2025, 7, 1)) is not a


def test_bundled_data_only_never_fetched(monkeypatch):
    import genai_prices
    import httpx2
    from genai_prices import data_snapshot

    def no_network(*a, **k):
        raise AssertionError("genai-prices tried to fetch prices")

    monkeypatch.setattr(httpx2, "get", no_network)
    # even if something in the process had started UpdatePrices (a fetched snapshot, here an empty one),
    # quote() reads the data bundled with the package
    monkeypatch.setattr(data_snapshot, "_custom_snapshot", data_snapshot.DataSnapshot([], from_auto_update=True))
    q = quote(OpenAIModel(model="gpt-4o-mini"), dt.date(2025, 1, 15))
    assert (q.source, q.input_per_mtok) == ("genai-prices", 0.15)
    assert genai_prices.update_prices._shared_updater.thread is None  # no background updater running


def test_unknown_and_non_api_models_are_unpriced():
    day = dt.date(2025, 1, 1)
    q = quote(OpenAIModel(model="my-finetune-xyz"), day)
    assert q.source == "none" and q.input_per_mtok is None and q.output_per_mtok is None and not q.priced
    assert quote(OpenAIModel(model="x", price_ref="nosuch/o3"), day).source == "none"
    assert quote(SklearnModel(estimator="majority"), day).source == "none"
    hosted = OpenAIModel(model="gpt-4o-mini", hosting=Hosting(usd_per_gpu_hour=1))
    assert quote(hosted, day).source == "none"


def test_time_of_day_prices_take_the_prevailing_rate():
    # genai-prices stores deepseek-chat's off-peak discount ($0.135/$0.55) as the unconditional price and
    # the standard rate ($0.27 in, $0.07 cached, $1.10 out) as a 00:30-16:30 UTC window: 16 h of 24
    q = quote(OpenAIModel(model="deepseek-chat"), dt.date(2026, 1, 5))
    assert (q.provider_id, q.input_per_mtok, q.cached_input_per_mtok, q.output_per_mtok) == ("deepseek", 0.27, 0.07, 1.1)
    assert "16 h" in q.note


def test_tiered_prices_take_the_base_tier():
    # claude-sonnet-4-6 before 2026-03-13: $3 input (+tiers: $6 above 200k prompt tokens), $15 output
    q = quote(OpenAIModel(model="claude-sonnet-4-6"), dt.date(2026, 1, 5))  # genai-prices infers anthropic
    assert (q.input_per_mtok, q.output_per_mtok, q.cached_input_per_mtok, q.cache_write_per_mtok) == (3.0, 15.0, 0.3, 3.75)
    assert "tiered" in q.note


def test_quote_round_trips_through_dict_and_json():
    q = quote(OpenAIModel(model="o3"), dt.date(2025, 6, 9))
    assert PriceQuote.from_dict(q.to_dict()) == q
    assert PriceQuote.from_dict(json.dumps(q.to_dict())) == q
    assert PriceQuote.from_dict({**q.to_dict(), "future_field": 1}) == q


def test_dated_quotes_price_each_request_at_its_own_day():
    m = OpenAIModel(model="o3")
    before, after = quote(m, dt.date(2025, 6, 9)), quote(m, dt.date(2025, 6, 10))
    dq = DatedQuotes({"2025-06-09": before, "2025-06-10": after}, default=after)
    assert dq.priced and dq.source == "genai-prices"
    assert dq.for_date("2025-06-09") is before and dq.for_date(None) is after and dq.for_date("2025-01-01") is after
    # 1000 prompt + 1000 completion tokens: 0.05 at 10/40, 0.01 at 2/8; 01:30 UTC on 06-10 (given at UTC-2 on 06-09)
    # is the new price; a row without a date takes the default (0.01)
    late = dt.datetime(2025, 6, 9, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-2)))
    usd = dq.token_cost(["2025-06-09", late, None], [1000] * 3, [1000] * 3)
    assert usd.tolist() == pytest.approx([0.05, 0.01, 0.01])

    df = _responses("o3", 3, prompt=1000, completion=1000)
    df["price_date"] = ["2025-06-09", "2025-06-10", None]
    r = cost_table(df, {"o3": m}, {"o3": dq}, {"o3": {"wall_s": 1.0}}, 300).iloc[0]
    assert r["kind"] == "api" and r["price_source"] == "genai-prices"
    assert r["cost_usd"] == pytest.approx(0.07)  # 0.05 + 0.01 + 0.01
    assert r["cost_per_1k_usd"] == pytest.approx(0.07 / 3 * 1000)
    assert r["monthly_cost_usd"] == pytest.approx(7.0)  # 0.07 / 3 * 300
    pj = json.loads(r["price_json"])
    assert pj["priced_by"] == "request date" and pj["dates"] == 2 and pj["as_of"] == "2025-06-10"
    assert [(p["from"], p["to"], p["input_per_mtok"]) for p in pj["periods"]] == [
        ("2025-06-09", "2025-06-09", 10.0),
        ("2025-06-10", "2025-06-10", 2.0),
    ]
    # without a price_date column every row takes the default
    assert cost_table(df.drop(columns="price_date"), {"o3": m}, {"o3": dq}, {}, None).iloc[0]["cost_usd"] == pytest.approx(0.03)
    # one date: the price line is that day's quote, as with a plain quote
    assert DatedQuotes({"2025-06-09": before}, after).to_dict() == before.to_dict()
    # consecutive dates at one price are one period
    dq3 = DatedQuotes({d: quote(m, d) for d in ("2025-06-08", "2025-06-09", "2025-06-11")}, after)
    assert [(p["from"], p["to"], p["dates"]) for p in dq3.to_dict()["periods"]] == [
        ("2025-06-08", "2025-06-09", 2),
        ("2025-06-11", "2025-06-11", 1),
    ]
    # a day without a price makes its rows, and so the total, unknown
    hole = DatedQuotes({"2025-06-09": PriceQuote(source="none")}, after)
    assert math.isnan(hole.token_cost(["2025-06-09"], [1], [1])[0])


# ------------------------------------------------------------------------------------------------ hourly prices

HW = Hardware(
    purchase_usd=30_000, depreciation_years=3, power_kw=0.7, pue=1.4, usd_per_kwh=0.15, maintenance_rate=0.1, utilisation=1.0
)
# depreciation 30 000 / (3*8760)   = 1.14155251
# maintenance  30 000 * 0.1 / 8760 = 0.34246575
# power        0.7 * 1.4 * 0.15    = 0.147
# total                            = 1.63101826 USD per machine-hour
HW_USD_PER_HOUR = 1.63101826


def test_hardware_usd_per_hour():
    assert hardware_usd_per_hour(HW, 1) == pytest.approx(HW_USD_PER_HOUR)
    # at 50 % utilisation the busy hours pay for the idle ones: 1.63101826 / 0.5 = 3.26203653
    assert hardware_usd_per_hour(HW.model_copy(update={"utilisation": 0.5}), 1) == pytest.approx(3.26203653)


def test_hosting_usd_per_hour():
    assert hosting_usd_per_hour(Hosting(usd_per_gpu_hour=2.5, gpus=2)) == 5.0  # 2.5 * 2
    assert hosting_usd_per_hour(Hosting(hardware=HW, gpus=4)) == pytest.approx(HW_USD_PER_HOUR)


# ------------------------------------------------------------------------------------------------ cost_table


def _responses(model, n, *, cached=0, errors=0, prompt=100, completion=10, latency=1.0):
    rows = []
    for i in range(n):
        rows.append(
            {
                "example_id": f"e{i}",
                "model": model,
                "output": "x",
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "cached_tokens": None,
                "cache_write_tokens": None,
                "latency_s": latency,
                "started_at": pd.Timestamp("2025-01-01", tz="UTC"),
                "attempts": 1,
                "cached": i < cached,
                "error": "boom" if i >= n - errors else None,
            }
        )
    return pd.DataFrame(rows)


def test_api_cost_table_row():
    m = cfg_price(input_per_mtok=1.0, output_per_mtok=2.0, cached_input_per_mtok=0.5)
    q = quote(m, dt.date(2025, 1, 1))
    df = pd.DataFrame(
        {
            "example_id": ["a", "b", "c", "d"],
            "model": "api",
            "prompt_tokens": pd.array([1000, 1000, 2000, None], dtype="Int64"),
            "completion_tokens": pd.array([100, 100, 0, None], dtype="Int64"),
            "cached_tokens": pd.array([0, 500, None, None], dtype="Int64"),
            "cache_write_tokens": pd.array([None] * 4, dtype="Int64"),
            "latency_s": [1.0, 2.0, 3.0, 10.0],
            "cached": [False, True, False, False],
            "error": [None, None, None, "timeout"],
        }
    )
    t = cost_table(df, {"api": m}, {"api": q}, {"api": {"wall_s": 4.0, "concurrency": 2}}, 10_000, {"api": 2})
    r = t.iloc[0]
    assert (r["model"], r["kind"], r["requests"], r["errors"], r["cache_hits"]) == ("api", "api", 4, 1, 1)
    assert (r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"]) == (4000, 200, 500)
    # rows: 0.0012 + 0.00095 (cache hit: still priced) + 0.002 + 0 (error, no tokens) = 0.00415 USD
    assert r["cost_usd"] == pytest.approx(0.00415)
    assert r["cost_per_1k_usd"] == pytest.approx(1.0375)  # 0.00415 / 4 * 1000
    assert r["cost_per_correct_usd"] == pytest.approx(0.002075)  # 0.00415 / 2
    assert r["monthly_cost_usd"] == pytest.approx(10.375)  # 0.00415 / 4 * 10 000
    assert r["fixed_monthly_usd"] == 0.0 and r["monthly_requests"] == 10_000
    # latencies of the 3 successful rows [1, 2, 3]: p50 2, p95 1 + 0.95*2 = 2.9, p99 2.98
    assert (r["latency_p50_s"], r["latency_p95_s"], r["latency_p99_s"]) == pytest.approx((2.0, 2.9, 2.98))
    # throughput: successful rows not served from Assay's cache (a, c) / wall 4 s = 0.5 rps
    assert r["throughput_rps"] == pytest.approx(0.5)
    assert r["price_source"] == "config"
    assert PriceQuote.from_dict(json.loads(r["price_json"])) == q
    assert math.isnan(r["usd_per_hour"])


def test_unpriced_model_and_missing_correctness():
    m = OpenAIModel(model="my-finetune-xyz")
    q = quote(m, dt.date(2025, 1, 1))
    t = cost_table(_responses("ft", 3), {"ft": m}, {"ft": q}, {"ft": {"wall_s": 1.0}}, None)
    r = t.iloc[0]
    assert r["kind"] == "unpriced" and r["price_source"] == "none"
    for c in ("cost_usd", "cost_per_1k_usd", "cost_per_correct_usd", "monthly_cost_usd"):
        assert math.isnan(r[c])
    assert r["prompt_tokens"] == 300


def test_self_hosted_from_gpu_hour_price_and_monthly_floor():
    m = OpenAIModel(model="llama", base_url="http://x", hosting=Hosting(usd_per_gpu_hour=2.0, gpus=1, replicas=1))
    # 100 rows, 20 served from Assay's response cache: 80 real requests in 40 s -> 2 rps
    df = _responses("llama", 100, cached=20)
    t = cost_table(df, {"llama": m}, {}, {"llama": {"wall_s": 40.0, "concurrency": 8}}, 1_000_000)
    r = t.iloc[0]
    assert r["kind"] == "self-hosted" and r["price_source"] == "hosting"
    assert r["throughput_rps"] == pytest.approx(2.0)
    assert r["usd_per_hour"] == 2.0
    # per request 2 / (2*3600) = 1/3600 USD; this run 100/3600 = 0.0277778; per 1k 0.277778
    assert r["cost_usd"] == pytest.approx(100 / 3600)
    assert r["cost_per_1k_usd"] == pytest.approx(0.2777778)
    # floor: 1 replica * 2 USD/h * 730 h = 1460 USD/month, capacity 2 rps * 3600 * 730 = 5 256 000 requests
    assert r["fixed_monthly_usd"] == pytest.approx(1460.0)
    # 1 000 000 requests need 1e6/3600 = 277.8 USD of GPU time: under the floor -> 1460
    assert r["monthly_cost_usd"] == pytest.approx(1460.0)
    per_req = 1 / 3600
    # 10 000 000 requests need 10e6/7200 = 1388.89 h > 730 floor hours:
    #   floor + (1388.89 - 730) * 2 = 1460 + 1317.78 = 2777.78 = 10e6 * per_req
    assert monthly_cost_usd("self-hosted", 1460.0, per_req, 10_000_000) == pytest.approx(2777.7778)
    assert monthly_cost_usd("self-hosted", 1460.0, per_req, 10_000_000) == pytest.approx(
        1460 + (10_000_000 / (2 * 3600) - HOURS_PER_MONTH) * 2.0
    )
    # exactly at the floor's capacity both expressions meet
    assert monthly_cost_usd("self-hosted", 1460.0, per_req, 5_256_000) == pytest.approx(1460.0)
    # no volume: no monthly figure
    t = cost_table(df, {"llama": m}, {}, {"llama": {"wall_s": 40.0}}, None)
    assert math.isnan(t.iloc[0]["monthly_cost_usd"])


def test_self_hosted_from_hardware_with_throughput_override():
    m = OpenAIModel(model="llama", base_url="http://x", hosting=Hosting(hardware=HW, replicas=2, throughput_rps=4.0))
    t = cost_table(_responses("llama", 10), {"llama": m}, {}, {"llama": {"wall_s": 100.0}}, 0)
    r = t.iloc[0]
    assert r["throughput_rps"] == 4.0  # the override, not the measured 10/100 = 0.1
    assert r["usd_per_hour"] == pytest.approx(HW_USD_PER_HOUR)
    # per request 1.63101826 / (4*3600) = 0.000113265; 10 requests = 0.00113265
    assert r["cost_per_1k_usd"] == pytest.approx(0.113265, rel=1e-5)
    assert r["cost_usd"] == pytest.approx(0.00113265, rel=1e-5)
    # floor: 2 replicas * 1.63101826 * 730 = 2381.2867; at 0 requests the floor is still paid
    assert r["fixed_monthly_usd"] == pytest.approx(2381.2867)
    assert r["monthly_cost_usd"] == pytest.approx(2381.2867)
    hw = json.loads(r["price_json"])
    assert hw["replicas"] == 2 and hw["throughput_source"] == "override" and hw["hardware"]["purchase_usd"] == 30_000


def test_conventional_with_training_amortisation():
    m = SklearnModel(estimator="logreg")  # no compute: Compute() defaults, 0.10 USD/h, 1 instance, 12 months
    assert Compute().usd_per_hour == 0.10 and Compute().amortise_months == 12 and Compute().instances == 1
    t = cost_table(
        _responses("clf", 1000),
        {"clf": m},
        {},
        {"clf": {"wall_s": 50.0, "compute_s": 36.0, "train_s": 7200.0}},
        1_000_000,
        {"clf": 900},
    )
    r = t.iloc[0]
    assert r["kind"] == "conventional" and r["price_source"] == "compute"
    assert r["usd_per_hour"] == 0.10
    # per request (36 s / 1000) * 0.10 / 3600 = 1e-6 USD; this run 0.001 USD; per 1k 0.001
    assert r["cost_usd"] == pytest.approx(0.001)
    assert r["cost_per_1k_usd"] == pytest.approx(0.001)
    assert r["cost_per_correct_usd"] == pytest.approx(0.001 / 900)
    # training 7200 s * 0.10 / 3600 = 0.20 USD, over 12 months = 0.0166667 USD/month; the one always-on
    # instance 1 * 0.10 * 730 = 73 USD/month: fixed (paid at no volume) = 73.0166667
    assert r["floor_monthly_usd"] == pytest.approx(1 * 0.10 * 730)
    assert r["fixed_monthly_usd"] == pytest.approx(73 + 0.2 / 12)
    # monthly at 1e6 requests: needed hours 1e6 * 0.036 s / 3600 = 10 h * 0.10 = 1 USD, below the floor:
    # 0.0166667 + max(73, 1) = 73.0166667
    assert r["monthly_cost_usd"] == pytest.approx(0.2 / 12 + max(73, 1e6 * 0.036 / 3600 * 0.10))
    # beyond the floor's capacity (730 h = 73,000,000 requests at 0.036 s) the compute hours are paid:
    # at 1e8 requests 1e8 * 1e-6 = 100 USD > 73
    assert monthly_cost_usd("conventional", r["fixed_monthly_usd"], 1e-6, 1e8, r["floor_monthly_usd"]) == pytest.approx(
        0.2 / 12 + 100
    )
    assert json.loads(r["price_json"])["instances"] == 1
    # explicit compute config, paid per call (a serverless function): no floor
    m2 = SklearnModel(estimator="logreg", compute=Compute(usd_per_hour=3.6, amortise_months=2, instances=0))
    r2 = cost_table(_responses("clf", 1000), {"clf": m2}, {}, {"clf": {"compute_s": 36.0, "train_s": 100.0}}, 500).iloc[0]
    # per request 0.036 * 3.6 / 3600 = 3.6e-5; training 100 * 3.6 / 3600 = 0.1 -> 0.05/month; 0.05 + 500*3.6e-5 = 0.068
    assert r2["cost_per_1k_usd"] == pytest.approx(0.036)
    assert r2["floor_monthly_usd"] == 0 and r2["fixed_monthly_usd"] == pytest.approx(0.05)
    assert r2["monthly_cost_usd"] == pytest.approx(0.068)
    # three always-on instances: 0.05 + max(3 * 3.6 * 730, 500 * 3.6e-5) = 0.05 + 7884
    m3 = SklearnModel(estimator="logreg", compute=Compute(usd_per_hour=3.6, amortise_months=2, instances=3))
    r3 = cost_table(_responses("clf", 1000), {"clf": m3}, {}, {"clf": {"compute_s": 36.0, "train_s": 100.0}}, 500).iloc[0]
    assert r3["monthly_cost_usd"] == pytest.approx(0.05 + 3 * 3.6 * 730)


def test_a_python_model_served_on_its_own_instances_pays_their_floor():
    from assay.config import PythonModel
    from assay.costing import serving_text

    m = PythonModel(function="pkg.mod:fn", compute=Compute(usd_per_hour=0.5, instances=2))
    r = cost_table(_responses("py", 100), {"py": m}, {}, {"py": {"compute_s": 7.2}}, 250_000).iloc[0]
    # per request 7.2 s / 100 * 0.5 / 3600 = 1e-5 USD; 250,000 requests need 250,000 * 0.072 s = 5 h = 2.5 USD;
    # the two always-on instances 2 * 0.5 * 730 = 730 USD: the floor binds
    assert r["kind"] == "conventional" and r["cost_per_1k_usd"] == pytest.approx(0.01)
    assert r["floor_monthly_usd"] == pytest.approx(2 * 0.5 * 730) and r["monthly_cost_usd"] == pytest.approx(730)
    assert serving_text(r) == "2 always-on instances at $0.5/hour, $730.00 a month whatever the volume"
    # beyond the floor's capacity (1460 instance-hours = 73,000,000 requests) each request pays its compute
    assert monthly_cost_usd("conventional", r["fixed_monthly_usd"], 1e-5, 1e8, r["floor_monthly_usd"]) == pytest.approx(1000)
    serverless = PythonModel(function="pkg.mod:fn", compute=Compute(usd_per_hour=0.5, instances=0))
    r0 = cost_table(_responses("py", 100), {"py": serverless}, {}, {"py": {"compute_s": 7.2}}, 250_000).iloc[0]
    assert r0["monthly_cost_usd"] == pytest.approx(2.5)
    assert serving_text(r0) == "paid per call only, no always-on instance, at $0.5/hour of compute"


def test_zero_correct_is_infinite_cost_per_correct():
    m = cfg_price(input_per_mtok=1.0, output_per_mtok=1.0)
    t = cost_table(_responses("a", 2), {"a": m}, {"a": quote(m, dt.date(2025, 1, 1))}, {}, None, {"a": 0})
    assert t.iloc[0]["cost_per_correct_usd"] == math.inf


# ------------------------------------------------------------------------------------------------ breakeven


def _mixed_costs():
    api = cfg_price(input_per_mtok=5.0, output_per_mtok=20.0)
    hosted = OpenAIModel(
        model="llama", base_url="http://x", hosting=Hosting(usd_per_gpu_hour=2.0, replicas=1, throughput_rps=2.0)
    )
    clf = SklearnModel(estimator="logreg")
    dear = OpenAIModel(model="slow", base_url="http://x", hosting=Hosting(usd_per_gpu_hour=36.0, replicas=1, throughput_rps=1.0))
    df = pd.concat(
        [
            _responses("api", 10, prompt=100, completion=25),
            _responses("llama", 10),
            _responses("clf", 1000),
            _responses("dear", 10),
        ]
    )
    models = {"api": api, "llama": hosted, "clf": clf, "dear": dear}
    stats = {"clf": {"compute_s": 36.0, "train_s": 7200.0}}
    return cost_table(df, models, {"api": quote(api, dt.date(2025, 1, 1))}, stats, 1_000_000)


def test_breakeven_self_hosted_vs_api():
    costs = _mixed_costs()
    # api: (100*5 + 25*20)/1e6 = 0.001 USD per request
    assert costs.set_index("model").loc["api", "cost_per_1k_usd"] == pytest.approx(1.0)
    be = breakeven(costs).set_index(["option", "api"])
    assert len(be) == 3
    r = be.loc[("llama", "api")]
    # llama: floor 1460 USD/month, 1/3600 USD per request. While the floor binds the option costs 1460,
    # the API 0.001*M: breakeven 1460 / 0.001 = 1 460 000 requests (below the floor's 5 256 000 capacity)
    assert r["option_fixed_monthly_usd"] == pytest.approx(1460.0)
    assert r["option_usd_per_request"] == pytest.approx(1 / 3600)
    assert r["api_usd_per_request"] == pytest.approx(0.001)
    m = r["breakeven_monthly_requests"]
    assert m == pytest.approx(1_460_000)
    # plug the volume into both monthly formulas: equal there, the option cheaper above, dearer below
    opt = lambda v: monthly_cost_usd("self-hosted", 1460.0, 1 / 3600, v)  # noqa: E731
    api = lambda v: monthly_cost_usd("api", 0.0, 0.001, v)  # noqa: E731
    assert opt(m) == pytest.approx(api(m)) == pytest.approx(1460.0)
    assert opt(m + 1000) < api(m + 1000) and opt(m - 1000) > api(m - 1000)
    assert opt(50_000_000) < api(50_000_000)  # still cheaper after capacity scales: 13 888.9 < 50 000


def test_breakeven_conventional_and_never():
    be = breakeven(_mixed_costs()).set_index(["option", "api"])
    r = be.loc[("clf", "api")]
    # clf: training 0.2/12 = 0.0166667 USD/month + an always-on instance 0.10 * 730 = 73 USD/month, 1e-6 per
    # request; api 0.001 per request. While the floor binds (1e-6*M <= 73, M <= 73e6) clf costs 73.0166667:
    #   73.0166667 = 0.001*M  ->  M = 73,016.67 (well inside the floor's capacity)
    m = r["breakeven_monthly_requests"]
    fixed = 73 + 0.2 / 12
    assert r["option_fixed_monthly_usd"] == pytest.approx(fixed)
    assert m == pytest.approx(fixed / 0.001)
    assert monthly_cost_usd("conventional", fixed, 1e-6, m, 73.0) == pytest.approx(monthly_cost_usd("api", 0, 0.001, m))
    assert monthly_cost_usd("conventional", fixed, 1e-6, m * 1.01, 73.0) < monthly_cost_usd("api", 0, 0.001, m * 1.01)
    # paid per call (instances: 0) it is the old line: training / (api - clf per request) = 16.683 requests
    assert monthly_cost_usd("conventional", 0.2 / 12, 1e-6, (0.2 / 12) / (0.001 - 1e-6), 0.0) == pytest.approx(
        monthly_cost_usd("api", 0, 0.001, (0.2 / 12) / (0.001 - 1e-6))
    )
    # dear: 36 USD/h at 1 rps = 36/3600 = 0.01 USD per request > api's 0.001: never cheaper
    r = be.loc[("dear", "api")]
    assert r["option_usd_per_request"] == pytest.approx(0.01)
    assert r["breakeven_monthly_requests"] == math.inf and "never" in r["note"]


# ------------------------------------------------------------------------------------------------ choosing


def _table():
    return pd.DataFrame(
        {
            "model": ["a", "b", "c", "d", "e"],
            "accuracy": [0.90, 0.80, 0.95, 0.90, np.nan],
            "cost_per_1k_usd": [1.0, 2.0, 3.0, 1.0, 0.1],
            "monthly_cost_usd": [100.0, 50.0, 300.0, 120.0, 10.0],
        }
    )


def test_pareto_front():
    t = _table()
    # b (0.80, 2.0) is dominated by a (0.90, 1.0); a and d tie, so neither dominates the other;
    # c is the best and dearest; e has no quality and is not on the front
    assert pareto_front(t, "accuracy").tolist() == [True, False, True, True, False]
    # lower-is-better quality (e.g. an error rate): now b (0.80) is best
    lower = pareto_front(t, "accuracy", higher_is_better=False).tolist()
    assert lower == [True, True, False, True, False]
    # on monthly cost: a (0.90, 100) dominates d (0.90, 120); b (0.80, 50) is cheapest
    assert pareto_front(t, "accuracy", "monthly_cost_usd").tolist() == [True, True, True, False, False]


def test_cheapest_passing():
    t = _table()
    # passing accuracy >= 0.85: a (100), c (300), d (120) -> a (b is cheaper but fails; e has no accuracy)
    assert cheapest_passing(t, {"accuracy": {"min": 0.85}}) == "a"
    assert cheapest_passing(t, {"accuracy": Gate(min=0.85)}) == "a"
    assert cheapest_passing(t, {"accuracy": {"min": 0.92}}) == "c"
    assert cheapest_passing(t, {"accuracy": {"min": 0.99}}) is None
    assert cheapest_passing(t, {"accuracy": {"max": 0.85}}) == "b"
    # bars on metrics the table lacks are skipped: everything with a cost passes -> e (10)
    assert cheapest_passing(t, {"bleu": {"min": 0.5}}) == "e"
    # no volume: fall back to cost per 1k; a and d tie at 1.0 -> the first, a
    t2 = t.assign(monthly_cost_usd=np.nan)
    assert cheapest_passing(t2, {"accuracy": {"min": 0.85}}) == "a"
    assert cheapest_passing(t2.assign(cost_per_1k_usd=[5.0, 2.0, 3.0, 1.5, 0.1]), {"accuracy": {"min": 0.85}}) == "d"
