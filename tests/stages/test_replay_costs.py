"""A replayed self-hosted deployment is priced from what its log recorded, so the same run gives the
same dollars in one process, on a Dask cluster, resumed, reproduced and repriced.

The log (built below) has 40 requests in 20 pairs: pair k starts both its requests at 10·k s, one
taking 0.2 s and one 0.5 s. Every expected figure is worked from that and the config:

* busy time: each pair keeps the deployment busy 0.5 s (the longer request covers the shorter), the
  pairs never overlap: 20 · 0.5 = 10 s; 40 requests / 10 s = 4 requests/s;
* mean latency (0.2 + 0.5) / 2 = 0.35 s; Little's law at max_concurrency 8: 8 / 0.35 = 22.857 req/s;
* 3.6 USD an hour: per request 3.6 / (T · 3600) = 1 / (1000 · T) USD; the floor 1 · 3.6 · 730 = 2628.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 1)
N = 40
LABELS = ["billing", "technical", "account"]
START = datetime(2026, 10, 1, 8, 0, tzinfo=UTC)
#: the columns that hold dollars (and the throughput they come from)
DOLLARS = [
    "cost_usd",
    "cost_per_1k_usd",
    "cost_per_correct_usd",
    "monthly_cost_usd",
    "fixed_monthly_usd",
    "floor_monthly_usd",
    "usd_per_hour",
    "throughput_rps",
]

BUSY_RPS = N / (20 * 0.5)  # 4 requests/s
LITTLE_RPS = 8 / ((0.2 + 0.5) / 2)  # 22.857 requests/s
USD_PER_HOUR = 3.6


def write_project(d: Path, runner: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    ids = [f"t{i:03d}" for i in range(N)]
    labels = [LABELS[i % 3] for i in range(N)]
    pq.write_table(
        pa.table({"ticket_id": ids, "text": [f"ticket {i}" for i in range(N)], "label": labels}), d / "tickets.parquet"
    )
    (d / "logs").mkdir(exist_ok=True)
    outputs = [lab if i % 4 else "other" for i, lab in enumerate(labels)]  # 30 of 40 right
    log = pa.table(
        {
            "ticket_id": ids,
            "output": outputs,
            "prompt_tokens": [100] * N,
            "completion_tokens": [2] * N,
            "latency_s": [0.2 if i % 2 == 0 else 0.5 for i in range(N)],
            "logged_at": pa.array([START + timedelta(seconds=10 * (i // 2)) for i in range(N)], pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(log, d / "logs" / "deployment.parquet")
    text = f"""
    artifacts: {d}/runs
    {runner}
    models:
      api:            # the same log priced per token
        provider: replay
        model: m
        source: logs/deployment.parquet
        price: {{input_per_mtok: 1.0, output_per_mtok: 4.0}}
      gpu-busy:       # no concurrency configured: the log's busy time
        provider: replay
        source: logs/deployment.parquet
        hosting: {{usd_per_gpu_hour: {USD_PER_HOUR}, replicas: 1}}
      gpu-little:     # the deployment held 8 requests in flight: Little's law
        provider: replay
        source: logs/deployment.parquet
        max_concurrency: 8
        hosting: {{usd_per_gpu_hour: {USD_PER_HOUR}, replicas: 1}}
    pipelines:
      p:
        dataset: {{source: tickets.parquet, id: ticket_id, reference: label, input: [text]}}
        models: [api, gpu-busy, gpu-little]
        metrics: [accuracy]
        cost: {{monthly_requests: 1000000}}
        shard_size: 5
        bootstrap: 0
    """
    p = write_config(d, text)
    return p


def dollars(folder) -> pd.DataFrame:
    from assay.store import open_run

    rf = folder if hasattr(folder, "read_table") else open_run(str(folder))
    return rf.read_table("costs.parquet").to_pandas().set_index("model").sort_index()[DOLLARS]


def test_replayed_throughput_comes_from_the_log(tmp_path):
    ctx = run_local(str(write_project(tmp_path)), "p", DAY)
    c = dollars(ctx.folder)
    assert c.loc["gpu-busy", "throughput_rps"] == pytest.approx(BUSY_RPS, rel=1e-12)
    assert c.loc["gpu-little", "throughput_rps"] == pytest.approx(LITTLE_RPS, rel=1e-12)
    for name, rps in (("gpu-busy", BUSY_RPS), ("gpu-little", LITTLE_RPS)):
        per_request = USD_PER_HOUR / (rps * 3600)
        assert c.loc[name, "cost_usd"] == pytest.approx(N * per_request, rel=1e-12)
        assert c.loc[name, "cost_per_1k_usd"] == pytest.approx(1000 * per_request, rel=1e-12)
        assert c.loc[name, "cost_per_correct_usd"] == pytest.approx(N * per_request / 30, rel=1e-12)
        # 1,000,000 requests need 1e6 * per_request: 69.4 USD (busy) or 12.2 USD (Little), below the floor
        assert c.loc[name, "floor_monthly_usd"] == pytest.approx(1 * USD_PER_HOUR * 730)
        assert c.loc[name, "monthly_cost_usd"] == pytest.approx(max(USD_PER_HOUR * 730, 1e6 * per_request))
    # the manifest names the source of each throughput
    serving = ctx.folder.manifest()["serving"]
    assert serving["gpu-busy"]["throughput_source"].startswith("log: 40 requests in 10.0 s of the logged deployment's busy time")
    assert serving["gpu-busy"]["throughput_log"]["busy_s"] == pytest.approx(10.0)
    assert serving["gpu-little"]["throughput_source"].startswith("log: Little's law, 8 in flight (max_concurrency)")
    assert serving["gpu-little"]["assumption"] == "1 always-on replica at $3.6/hour, $2,628.00 a month whatever the volume"


def test_resumed_reproduced_and_repriced_runs_give_the_same_dollars(tmp_path):
    from assay.reprice import reprice
    from assay.reproduce import reproduce
    from assay.runs import start_run
    from assay.stages import cost, invoke, load, score

    cfg = write_project(tmp_path)
    whole = dollars(run_local(str(cfg), "p", DAY).folder)

    # resumed: an attempt that kept only part of a model's rows (a killed run), then the same request again
    ctx = start_run(str(cfg), "p", DAY, new=True)
    load.run(ctx)
    invoke.run(ctx)
    rf = ctx.folder
    for n in [n for n in rf.listdir("responses") if n.endswith(".parquet") and "gpu-" in n]:
        path = rf.path(f"responses/{n}")
        pq.write_table(pq.read_table(path).slice(0, N // 2 + 3), path)  # the first 23 rows were written
    invoke.run(ctx)
    models = rf.manifest()["stages"]["invoke"]["models"]
    assert models["gpu-busy"]["resumed"] == N // 2 + 3 and models["gpu-busy"]["called"] == N - (N // 2 + 3)
    score.run(ctx)
    cost.run(ctx)
    pd.testing.assert_frame_equal(dollars(rf), whole, check_exact=True)

    # repriced with the recorded prices, even after the invoke's own figures were changed
    m = rf.manifest()
    for st in m["stages"]["invoke"]["models"].values():
        st["wall_s"], st["throughput_rps"] = 1e-6, 1e9  # what reading the log fast would have said
    rf.write_json("manifest.json", m)
    pd.testing.assert_frame_equal(reprice(rf.url).costs.set_index("model").sort_index()[DOLLARS], whole, check_exact=True)

    # reproduced: the recorded run again, into another folder
    first = run_local(str(cfg), "p", DAY, new=True)
    r = reproduce(first.folder.url)
    pd.testing.assert_frame_equal(dollars(r.reproduced), whole, check_exact=True)


def test_the_same_replay_run_on_a_dask_cluster_costs_the_same_dollars(tmp_path, prefect_server):
    from flows.assess import assess

    local = assess(pipeline="p", as_of=DAY, config=str(write_project(tmp_path / "local")), return_state=True)
    dask = assess(
        pipeline="p",
        as_of=DAY,
        config=str(write_project(tmp_path / "dask", "runner: {dask: local, workers: 2, shard_rows: 7}")),
        return_state=True,
    )
    assert local.is_completed(), local
    assert dask.is_completed(), dask
    import json

    m = json.loads((Path(dask.result()) / "manifest.json").read_text())
    assert m["stages"]["invoke"]["runner"]["processes"] == 2  # it did run on the cluster's two workers
    a, b = dollars(local.result()), dollars(dask.result())
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.loc["gpu-busy", "throughput_rps"] == pytest.approx(BUSY_RPS, rel=1e-12)
