"""``kill -9`` in every stage, then the same command: the run completes, its artifacts equal an
uninterrupted run's, and no model call is paid for twice beyond what was in flight.

Each run is a real ``assay run`` process against the session's Prefect server and a local
OpenAI-compatible server; ``tests/killpoints.py`` kills it while it writes a chosen artifact.
"""

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.reproduce import compare
from assay.store import Store
from tests.conftest import write_config

N, C, SHARD = 60, 4, 10
STAGES = ["load", "invoke", "score", "cost", "report", "gate"]
ARMED = "import sys, tests.killpoints as k; k.arm(sys.argv.pop(1)); from flows.cli.main import main; main()"


def _config(tmp: Path, base_url: str, root: Path, n: int = N, c: int = C, shard: int = SHARD) -> Path:
    N, C, SHARD = n, c, shard
    ids = [f"t{i:03d}" for i in range(N)]
    labels = ["billing", "refund", "other"] * (N // 3)
    pq.write_table(
        pa.table({"id": ids, "text": [f"ticket {i} about {lab}" for i, lab in zip(ids, labels)], "label": labels}),
        tmp / "data.parquet",
    )
    pq.write_table(
        pa.table({"id": ids, "output": labels[::-1], "prompt_tokens": [30] * N, "completion_tokens": [2] * N}),
        tmp / "log.parquet",
    )
    cfg = write_config(
        tmp,
        f"""
        artifacts: {root}
        models:
          live:
            provider: openai
            model: mock-model
            base_url: {base_url}
            max_concurrency: {C}
            price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
          logged: {{provider: replay, source: log.parquet, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{system: "labels: billing, refund, other", template: "{{text}}"}}
            models: [live, logged]
            metrics: [accuracy, macro_f1]
            shard_size: {SHARD}
            cache: off
            bootstrap: 50
            gates: {{accuracy: {{min: 0.0}}}}
    """,
    )
    return cfg


FAKE_SERVER = dict(latency=0.02)  # the options of the module's shared fake server (conftest.py's ``server``)


@pytest.fixture(scope="module")
def setup(tmp_path_factory, prefect_server, project_root, server):
    from prefect.settings import PREFECT_API_URL

    tmp = tmp_path_factory.mktemp("kills")
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value(), PYTHONPATH=str(project_root))
    base = _config(tmp, server.base_url, tmp / "baseline")
    r = subprocess.run(_cmd(base), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    (baseline,) = Store(tmp / "baseline").complete_runs("p")
    return tmp, server, env, baseline


def _cmd(cfg: Path, armed: str | None = None) -> list[str]:
    head = [sys.executable, "-c", ARMED, armed] if armed else [sys.executable, "-m", "flows.cli"]
    return head + ["run", "p", "--config", str(cfg), "--as-of", "2026-11-01", "--no-progress"]


@pytest.mark.parametrize("stage", STAGES)
def test_kill_in_a_stage_then_the_same_command_completes_the_same_run(setup, stage, project_root):
    tmp, srv, env, baseline = setup
    work = tmp / f"killed-{stage}"
    work.mkdir()
    root = work / "runs"
    cfg = _config(work, srv.base_url, root)
    srv.reset()
    killed = subprocess.run(_cmd(cfg, armed=stage), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    calls_before = srv.stats(include_prompts=False)["requests_total"]
    (run,) = Store(root).runs("p")
    assert run.manifest()["status"] == "running"
    again = subprocess.run(_cmd(cfg), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert Path(again.stdout.strip().splitlines()[-1]) == Path(run.url)  # the same run folder, resumed
    m = run.manifest()
    assert m["status"] == "complete" and len(m["resumes"]) == 1 and m["gates"]["passed"] is True
    # every artifact has the uninterrupted run's content (timing columns aside)
    rows = compare(baseline, run)
    assert rows and all(r["status"] in ("identical", "same content") for r in rows), rows
    # nothing was paid twice beyond the shard being written and the calls in flight at the kill
    calls = srv.stats(include_prompts=False)["requests_total"]
    repaid = calls - N
    # every finished call was journaled before its slot started another: only the calls in flight are paid again
    assert 0 <= repaid <= C, (calls_before, calls)
    if stage != "invoke" and stage != "load":
        assert calls == calls_before == N  # after invoke: no call repeated at all


def test_a_resumed_self_hosted_models_measurements_cover_every_attempt(setup, project_root):
    """A self-hosted model (``hosting:``, priced by its measured throughput) killed in invoke and
    resumed: the throughput and the cost cover every row, each attempt's measured time and
    successes summed, not only the calls the resumed attempt made."""
    import json

    import pandas as pd

    tmp, srv, env, _ = setup
    work = tmp / "killed-hosted"
    work.mkdir()
    cfg = _config(work, srv.base_url, work / "runs")
    cfg.write_text(
        cfg.read_text().replace(
            "    price: {input_per_mtok: 1.0, output_per_mtok: 2.0}\n", "    hosting: {usd_per_gpu_hour: 2.0}\n", 1
        )
    )
    assert "hosting:" in cfg.read_text()
    killed = subprocess.run(_cmd(cfg, armed="invoke"), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert killed.returncode == -9, killed.stderr[-3000:]
    again = subprocess.run(_cmd(cfg), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    (run,) = Store(work / "runs").runs("p")
    st = run.manifest()["stages"]["invoke"]["models"]["live"]
    first, second = st["attempts"]
    # the killed attempt wrote two parts of SHARD rows before it died, and journaled what followed
    # (on a loaded machine the calls can all finish, journaled, before the writer thread reaches
    # the third part, where the kill is armed: then the resumed attempt makes none)
    assert 2 * SHARD <= first["ok"] <= N and first["wall_s"] > 0
    assert second["ok"] == st["called"] - st["errors"] and first["ok"] + second["ok"] == N == st["resumed"] + st["called"]
    assert st["wall_s"] == first["wall_s"] + second["wall_s"]
    assert st["throughput_rps"] == N / st["wall_s"]
    costs = pd.read_parquet(run.path("costs.parquet")).set_index("model")
    assert costs.loc["live", "kind"] == "self-hosted" and costs.loc["live", "throughput_rps"] == st["throughput_rps"]
    assert costs.loc["live", "cost_usd"] == pytest.approx(N * 2.0 / (st["throughput_rps"] * 3600))
    assert json.loads(costs.loc["live", "price_json"])["throughput_source"] == "measured"


@pytest.mark.parametrize("concurrency", [8, 32])
def test_a_kill_in_invoke_repays_at_most_the_calls_in_flight(setup, concurrency, project_root, fake_server):
    """Calls that finish at scattered times (latency 10-50 ms), many slots: a kill while a part is
    written, then the same command; the calls made twice are at most ``max_concurrency``."""
    _, _, env, _ = setup
    n, shard = 600, 100
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        srv = fake_server(latency=0.01, jitter=0.04)
        work = Path(d)
        cfg = _config(work, srv.base_url, work / "runs", n=n, c=concurrency, shard=shard)
        killed = subprocess.run(_cmd(cfg, armed="invoke"), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
        assert killed.returncode == -9, killed.stderr[-3000:]
        before = srv.stats(include_prompts=False)["requests_total"]
        assert before < n  # killed part-way: the resumed run has calls left to make
        again = subprocess.run(_cmd(cfg), capture_output=True, text=True, env=env, cwd=project_root, timeout=300)
        assert again.returncode == 0, again.stderr[-3000:]
        repaid = srv.stats(include_prompts=False)["requests_total"] - n
        assert 0 <= repaid <= concurrency, (before, repaid)
        (run,) = Store(work / "runs").complete_runs("p")
        assert pq.read_table(run.path("scores.parquet")).num_rows >= n
        srv.stop()
