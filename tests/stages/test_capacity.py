"""The serving operating point (``assay capacity``): the SLO grammar, the per-level figures by hand,
the sweep against the test server's queueing latency (whose right operating point is computed here
from the server's formula), the cost stage pricing at the recorded throughput, and the CLI's exit codes.

The queueing server (``OpenAIServer(latency=L, itl=I, slots=K)``, see assay/testing/openai_server.py):
a request that arrives with ``n`` requests in flight (itself included) streams its first token after
``L * f`` and each further one ``I * f`` later, ``f = 1 + (n - 1) / K``. Under ``c`` closed-loop
clients every request after the first wave arrives with ``n = c``, so the median request of a level
(3 of its 4 waves) has TTFT ``L * f(c)`` and latency ``(L + I * (T - 1)) * f(c)`` for ``T`` tokens.
"""

import asyncio
import json
import math
from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import assay.capacity
import assay.store
from assay.config import OpenAIModel
from assay.reprice import reprice
from assay.reproduce import reproduce
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

LAT, ITL, SLOTS = 0.04, 0.008, 4
ANSWER = "billing refund account technical"  # 32 characters: the server streams it as 8 tokens
TOKENS = 8
LEVELS = [1, 2, 4, 8, 16]
USD_PER_GPU_HOUR, GPUS = 2.0, 2
API_IN, API_OUT = 1.0, 4.0


def _f(c: int) -> float:
    return 1 + (c - 1) / SLOTS


def _ttft(c: int) -> float:
    return LAT * _f(c)


def _latency(c: int) -> float:
    return (LAT + ITL * (TOKENS - 1)) * _f(c)


def _by_hand(latency_bound: float, ttft_bound: float = math.inf) -> int:
    """The right operating point: of the levels whose median latency and TTFT are within the bounds,
    the one with the highest throughput ``c / latency(c)``."""
    ok = [c for c in LEVELS if _latency(c) <= latency_bound and _ttft(c) <= ttft_bound]
    return max(ok, key=lambda c: c / _latency(c))


FAKE_SERVER = dict(latency=LAT, itl=ITL, slots=SLOTS)  # the options of the module's shared fake server (conftest.py's ``server``)


def _config(tmp_path, base_url: str, gpu_extra: str = "", usd: float = USD_PER_GPU_HOUR, hosting_extra: str = "") -> str:
    rows = [{"id": f"t{i:02d}", "text": f"ticket {i}\nANSWER: {ANSWER}", "label": ANSWER} for i in range(12)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data.parquet")
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          gpu:
            provider: openai
            model: mock-model
            base_url: {base_url}
            params: {{max_tokens: 16{gpu_extra}}}
            max_concurrency: 4
            hosting: {{usd_per_gpu_hour: {usd}, gpus: {GPUS}, replicas: 1{hosting_extra}}}
          api:
            provider: openai
            model: gpt-4o-mini
            base_url: {base_url}
            price: {{input_per_mtok: {API_IN}, output_per_mtok: {API_OUT}}}
          tfidf: {{provider: sklearn}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "{{text}}"}}
            models: [gpu, api]
            metrics: [accuracy]
            cost: {{monthly_requests: 1000000}}
            bootstrap: 0
    """,
    )
    return str(cfg)


def _app():
    from flows.cli.main import app

    return app


# ------------------------------------------------------------------------------------------------ the SLO


def test_slo_clauses_default_to_p95_and_a_bad_clause_is_named():
    slo = assay.capacity.parse_slo("p95_latency_s=2, ttft_s=0.5,p50_itl_s=0.05,error_rate=0")
    assert slo.bounds == {(95, "latency"): 2.0, (95, "ttft"): 0.5, (50, "itl"): 0.05}
    assert slo.error_rate == 0.0
    assert slo.as_dict() == {"p95_latency_s": 2.0, "p95_ttft_s": 0.5, "p50_itl_s": 0.05, "error_rate": 0.0}
    assert (
        assay.capacity.parse_slo(None).bounds == {}
        and assay.capacity.parse_slo(None).error_rate == assay.capacity.DEFAULT_ERROR_RATE
    )
    for text, says in [
        ("p95_latency=2", "'p95_latency=2': unknown key 'p95_latency' (did you mean"),
        ("ttft_s=fast", "'ttft_s=fast': 'fast' is not a number"),
        ("latency_s", "'latency_s': expected key=value"),
        ("error_rate=2", "between 0 and 1"),
        ("latency_s=0", "above 0"),
        ("itl_s=-1", ">= 0"),
    ]:
        with pytest.raises(assay.capacity.CapacityError, match=None) as e:
            assay.capacity.parse_slo(f"p95_latency_s=2,{text}")
        assert says in str(e.value), (text, str(e.value))
    assert assay.capacity.parse_levels("8,1, 2,2") == [1, 2, 8]
    assert assay.capacity.parse_levels(None) == [1, 2, 4, 8, 16, 32, 64]
    for bad in ("1,x", "0", ","):
        with pytest.raises(assay.capacity.CapacityError, match="--concurrency"):
            assay.capacity.parse_levels(bad)


def test_level_figures_and_the_choice_by_hand():
    # Two levels of four requests each, made up: latencies, TTFTs, ITLs and tokens known exactly.
    rows = []
    lat = {1: [1.0, 1.2, 1.4, 1.6], 4: [1.5, 2.5, 3.0, 3.5]}
    for c, lats in lat.items():
        for i, x in enumerate(lats):
            rows.append(
                {
                    "concurrency": c,
                    "request": i,
                    "error": None,
                    "latency_s": x,
                    "ttft_s": x / 4,
                    "itl_s": 0.01,
                    "prompt_tokens": 10,
                    "completion_tokens": 20,
                    "wall_s": 2.0 if c == 1 else 1.0,
                }
            )
    rows[-1].update(error="HTTP 500: boom", latency_s=0.1, ttft_s=None, itl_s=None, completion_tokens=None)
    df = pd.DataFrame(rows)
    slo = assay.capacity.parse_slo("p95_latency_s=2.9,error_rate=0.3")
    t = assay.capacity.summarize(df, slo).set_index("concurrency")
    # level 1: 4 successes over 2 s; level 4: 3 successes (one 500) over 1 s
    assert t.loc[1, "rps"] == 2.0 and t.loc[4, "rps"] == 3.0
    assert t.loc[1, "output_tok_s"] == 40.0 and t.loc[4, "output_tok_s"] == 60.0
    assert t.loc[4, "errors"] == 1 and t.loc[4, "error_rate"] == 0.25
    assert t.loc[1, "latency_p95_s"] == pytest.approx(np.percentile([1.0, 1.2, 1.4, 1.6], 95))  # 1.57
    assert t.loc[4, "latency_p95_s"] == pytest.approx(np.percentile([1.5, 2.5, 3.0], 95))  # 2.95: over 2.9
    assert t.loc[4, "ttft_p50_s"] == pytest.approx(2.5 / 4)
    # goodput: successes each within 2.9 s, per second: level 1 all 4 / 2 s; level 4: 1.5 and 2.5 / 1 s
    assert t.loc[1, "goodput_rps"] == 2.0 and t.loc[4, "goodput_rps"] == 2.0
    assert bool(t.loc[1, "meets_slo"]) and not bool(t.loc[4, "meets_slo"])
    assert t.loc[4, "missed"] == "p95_latency_s 2.95 > 2.9"
    assert assay.capacity.choose(t.reset_index())["concurrency"] == 1
    # a looser SLO: both meet it and level 4 has the higher throughput
    assert (
        assay.capacity.choose(assay.capacity.summarize(df, assay.capacity.parse_slo("latency_s=3,error_rate=0.25")))[
            "concurrency"
        ]
        == 4
    )
    # a tighter error bound: level 4's one failure in four breaks it
    assert (
        "error_rate 0.25 > 0.01"
        in assay.capacity.summarize(df, assay.capacity.parse_slo("latency_s=3")).set_index("concurrency").loc[4, "missed"]
    )
    assert assay.capacity.choose(assay.capacity.summarize(df, assay.capacity.parse_slo("latency_s=0.5"))) is None
    # throughputs within 2 % of the best are a tie, won by the lower concurrency
    near = pd.DataFrame({"concurrency": [8, 16], "rps": [10.0, 10.15], "meets_slo": [True, True]})
    assert assay.capacity.choose(near)["concurrency"] == 8


def test_the_record_goes_stale_when_what_serves_changes_not_when_the_price_does():
    base = OpenAIModel(model="m", base_url="http://x/v1", params={"max_tokens": 16}, hosting={"usd_per_gpu_hour": 1.0})
    same = [
        base.model_copy(update={"hosting": base.hosting.model_copy(update={"usd_per_gpu_hour": 9.0, "replicas": 3})}),
        base.model_copy(update={"max_concurrency": 99, "price_ref": "openai/gpt-4o"}),
    ]
    changed = [
        base.model_copy(update={"params": {"max_tokens": 64}}),
        base.model_copy(update={"base_url": "http://y/v1"}),
        base.model_copy(update={"hosting": base.hosting.model_copy(update={"gpus": 2})}),
    ]
    h = assay.capacity.capacity_hash(base)
    assert all(assay.capacity.capacity_hash(m) == h for m in same)
    assert all(assay.capacity.capacity_hash(m) != h for m in changed)


def test_the_servers_stream_reads_with_the_openai_sdk(server):
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="mock-model",
            stream=True,
            stream_options={"include_usage": True},
            messages=[{"role": "user", "content": f"ANSWER: {ANSWER}"}],
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == TOKENS
    assert chunks[-1].usage.completion_tokens == TOKENS and not chunks[-1].choices
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


# ------------------------------------------------------------------------------------------------ the golden sweep


def test_sweep_finds_the_queueing_servers_operating_point_and_the_cost_stage_prices_at_it(tmp_path, server):
    cfg = _config(tmp_path, server.base_url)
    bound = 0.35  # median latency: level 8 at 0.264 s is within it, level 16 at 0.456 s is not
    expected = _by_hand(bound)
    assert expected == 8
    res = CliRunner().invoke(
        _app(),
        [
            "capacity",
            "gpu",
            "-c",
            cfg,
            "--pipeline",
            "p",
            "--concurrency",
            ",".join(map(str, LEVELS)),
            "--slo",
            f"p50_latency_s={bound},error_rate=0",
        ],
    )
    assert res.exit_code == 0, res.output
    assert f"operating point: concurrency {expected}," in res.output

    store = Store(tmp_path / "runs")
    rec = assay.capacity.read_record(store, "gpu")
    assert rec["operating_point"]["concurrency"] == expected
    assert rec["slo"] == {"p50_latency_s": bound, "error_rate": 0.0}
    assert rec["prompts"] == "pipeline p (12 examples)" and rec["measured_at"][:10] == date.today().isoformat()
    levels = pd.DataFrame(rec["levels"]).set_index("concurrency")
    sweep = pd.read_parquet(store.capacity().path("gpu.parquet"))
    assert sorted(sweep["concurrency"].unique()) == LEVELS and sweep["error"].isna().all()
    assert (sweep["completion_tokens"] == TOKENS).all()
    assert store.pipelines() == []  # _capacity/ is no pipeline

    # streamed timings as the server was told to produce them (a timer cannot fire early; the slack
    # is the client's own time on a busy machine)
    one = sweep[sweep["concurrency"] == 1]
    assert LAT <= one["ttft_s"].median() <= LAT + 0.02
    assert one["itl_s"].median() == pytest.approx(ITL, abs=0.003)
    for c in LEVELS:
        assert _latency(c) * 0.98 <= levels.loc[c, "latency_p50_s"] <= _latency(c) + 0.05, c
        assert _ttft(c) * 0.98 <= levels.loc[c, "ttft_p50_s"] <= _ttft(c) + 0.03, c
    assert levels["rps"].is_monotonic_increasing  # the queueing model's throughput rises with c

    # the same sweep under an SLO that TTFT binds: computed by hand from the formula again
    ttft_bound = 0.09  # level 4 at 0.07 s, level 8 at 0.11 s
    assert _by_hand(bound, ttft_bound) == 4
    again = assay.capacity.summarize(sweep, assay.capacity.parse_slo(f"p50_latency_s={bound},p50_ttft_s={ttft_bound}"))
    assert assay.capacity.choose(again)["concurrency"] == 4

    # a run of the pipeline: the hosted model is priced at the recorded throughput
    ctx = run_local(cfg, "p", date(2026, 11, 30))
    costs = ctx.folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    rps = rec["operating_point"]["rps"]
    usd_per_hour = USD_PER_GPU_HOUR * GPUS
    assert costs.loc["gpu", "throughput_rps"] == pytest.approx(rps)
    assert costs.loc["gpu", "cost_per_1k_usd"] == pytest.approx(usd_per_hour / (3600 * rps) * 1000)
    pj = json.loads(costs.loc["gpu", "price_json"])
    assert pj["throughput_source"] == f"capacity: concurrency {expected}, measured {rec['measured_at'][:10]}"
    m = ctx.folder.manifest()
    assert m["capacity"]["gpu"]["used"] is True and m["capacity"]["gpu"]["concurrency"] == expected
    assert "api" not in m["capacity"]
    report = ctx.folder.read_bytes(assay.store.REPORT).decode()  # the report's price line names the source
    assert f"throughput {rps:.1f} req/s (capacity: concurrency {expected}, measured" in report
    # break-even against the API at that operating point: while the always-on replica's capacity
    # (rps * 3600 * 730 requests a month) is not used up, the self-hosted month costs its floor,
    # so it is cheaper above floor / API cost per request
    resp = pd.concat([pd.read_parquet(ctx.folder.path(f"responses/{p}")) for p in ctx.folder.listdir("responses")])
    api = resp[resp["model"] == "api"]
    c_api = float((api["prompt_tokens"] * API_IN + api["completion_tokens"] * API_OUT).sum()) / 1e6 / len(api)
    floor = usd_per_hour * 730
    be = ctx.folder.read_table(assay.store.BREAKEVEN).to_pandas().set_index(["option", "api"]).loc[("gpu", "api")]
    assert usd_per_hour / (3600 * rps) < c_api
    assert be["breakeven_monthly_requests"] == pytest.approx(floor / c_api)

    # repricing and reproducing price at the run's recorded operating point, with the record gone
    store.capacity().remove("gpu.json")
    again = reprice(ctx.folder)
    assert again.costs.set_index("model").loc["gpu", "cost_per_1k_usd"] == pytest.approx(costs.loc["gpu", "cost_per_1k_usd"])
    rep = reproduce(ctx.folder.url)
    assert {r["artifact"]: r["status"] for r in rep.rows}["costs.parquet"] in ("identical", "same content"), rep.rows


def test_a_new_price_keeps_the_record_and_a_changed_model_ignores_it(tmp_path, server):
    cfg = _config(tmp_path, server.base_url)
    res = CliRunner().invoke(_app(), ["capacity", "gpu", "-c", cfg, "--concurrency", "2", "--requests", "4"])
    assert res.exit_code == 0, res.output
    rps = assay.capacity.read_record(Store(tmp_path / "runs"), "gpu")["operating_point"]["rps"]

    cfg = _config(tmp_path, server.base_url, usd=3.0)  # another GPU price: the same serving
    costs = run_local(cfg, "p", date(2026, 11, 30)).folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    assert costs.loc["gpu", "throughput_rps"] == pytest.approx(rps)
    assert costs.loc["gpu", "cost_per_1k_usd"] == pytest.approx(3.0 * GPUS / (3600 * rps) * 1000)

    cfg = _config(tmp_path, server.base_url, gpu_extra=", temperature: 0.5")  # what the endpoint is asked changed
    ctx = run_local(cfg, "p", date(2026, 11, 30))
    costs = ctx.folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    assert json.loads(costs.loc["gpu", "price_json"])["throughput_source"] == "measured"
    assert costs.loc["gpu", "throughput_rps"] == pytest.approx(
        ctx.folder.manifest()["stages"]["invoke"]["models"]["gpu"]["throughput_rps"]
    )
    note = ctx.folder.manifest()["capacity"]["gpu"]
    assert note["used"] is False and note["reason"].startswith("stale")

    cfg = _config(tmp_path, server.base_url, hosting_extra=", throughput_rps: 7.5")
    costs = run_local(cfg, "p", date(2026, 11, 30)).folder.read_table(assay.store.COSTS).to_pandas().set_index("model")
    assert costs.loc["gpu", "throughput_rps"] == 7.5  # an explicit throughput outranks a record


# ------------------------------------------------------------------------------------------------ the CLI


def test_capacity_cli_exit_codes(tmp_path, server):
    cfg = _config(tmp_path, server.base_url)
    run = CliRunner().invoke
    app = _app()
    res = run(app, ["capacity", "gpuu", "-c", cfg])
    assert res.exit_code == 2 and "unknown model 'gpuu'; did you mean 'gpu'" in res.output
    res = run(app, ["capacity", "api", "-c", cfg])
    assert res.exit_code == 2 and "models.api: no hosting:" in res.output and "endpoints you run" in res.output
    res = run(app, ["capacity", "tfidf", "-c", cfg])
    assert res.exit_code == 2 and "provider sklearn has no endpoint" in res.output
    res = run(app, ["capacity", "gpu", "-c", cfg, "--slo", "p95_latency_s=2,tfft_s=0.5"])
    assert res.exit_code == 2 and "clause 'tfft_s=0.5': unknown key 'tfft_s'" in res.output
    res = run(app, ["capacity", "gpu", "-c", cfg, "--concurrency", "1,two"])
    assert res.exit_code == 2 and "'two' is not a whole number" in res.output
    res = run(app, ["capacity", "gpu", "-c", cfg, "--pipeline", "nope"])
    assert res.exit_code == 2 and "pipelines.nope" in res.output
    res = run(app, ["capacity", "gpu", "-c", cfg, "--format", "xml"])
    assert res.exit_code == 2

    # no level meets the SLO: exit 1, the table is still shown, and nothing is priced from the record
    res = run(app, ["capacity", "gpu", "-c", cfg, "--concurrency", "1,2", "--requests", "2", "--slo", "latency_s=0.01"])
    assert res.exit_code == 1, res.output
    assert "no concurrency level of gpu meets the SLO (p95_latency_s <= 0.01, error_rate <= 0.01)" in res.output
    assert "p95_latency_s" in res.output and "capacity of gpu" in res.output
    assert assay.capacity.read_record(Store(tmp_path / "runs"), "gpu")["operating_point"] is None
    assert (
        assay.capacity.operating_points(
            Store(tmp_path / "runs"),
            {
                "gpu": OpenAIModel.model_validate(
                    {
                        "model": "mock-model",
                        "base_url": server.base_url,
                        "params": {"max_tokens": 16},
                        "hosting": {"usd_per_gpu_hour": 2.0, "gpus": 2},
                    }
                )
            },
        )["gpu"]["reason"]
        == "no concurrency level met the SLO"
    )

    # json: the levels and the chosen level, machine-readable
    res = run(app, ["capacity", "gpu", "-c", cfg, "--concurrency", "1", "--requests", "2", "--format", "json", "--no-record"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output[res.output.index("{") : res.output.rindex("}") + 1])
    assert out["operating_point"] == 1 and out["levels"][0]["requests"] == 2

    # an endpoint that does not answer: exit 1, saying so
    (tmp_path / "down.yaml").write_text(open(cfg).read().replace(server.base_url, "http://127.0.0.1:9/v1"))
    res = run(app, ["capacity", "gpu", "-c", str(tmp_path / "down.yaml"), "--concurrency", "1", "--requests", "1"])
    assert res.exit_code == 1 and "gpu does not answer at http://127.0.0.1:9/v1" in res.output


def test_a_server_that_closes_the_connection_after_each_stream_costs_no_errors(fake_server):
    """As llama.cpp's server does, unannounced: a pooled connection is found closed only when the
    next request is written to it. Neither the sweep nor a streamed invoke counts that as the
    endpoint's error; the provider finds it out once and asks for ``Connection: close`` after."""
    from types import SimpleNamespace

    from assay.calling import CallOptions, call_chat
    from assay.providers.openai_compat import OpenAIProvider

    srv = fake_server(itl=0.001)
    cfg = OpenAIModel(
        model="mock-model", base_url=srv.base_url, params={"max_tokens": 16}, max_concurrency=4, hosting={"usd_per_gpu_hour": 1.0}
    )
    prompts = [[{"role": "user", "content": f"ticket {i}\nANSWER: {ANSWER}"}] for i in range(8)]
    df = assay.capacity.sweep("gpu", cfg, prompts, [1, 4], requests=24)
    assert len(df) == 48 and df["error"].isna().all(), df["error"].dropna().tolist()[:2]

    streamed = cfg.model_copy(update={"stream": True})
    p = OpenAIProvider(streamed, SimpleNamespace(model_name="gpu", extra={}, ctx=None))
    st = asyncio.run(call_chat(p, prompts * 3, options=CallOptions(cache_mode="off")))
    assert st["errors"] == 0 and st["retries"] == 0
    assert 1 <= p.reconnects <= 4  # at most once per pooled connection, when it is found out
