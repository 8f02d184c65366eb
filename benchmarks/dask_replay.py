"""A 1,000,000-row replay assessment on a two-worker local Dask cluster, end to end.

The ``assess`` flow (on a temporary Prefect server of its own) with ``runner: {dask: local,
workers: 2, shard_rows: R}``: load, the invoke and score shards on the cluster's two worker
processes, cost and report in the flow's process. Printed: wall seconds of the whole run, rows per
second, the peak memory (RSS) of the largest process (the flow's or a worker's, sampled every
0.2 s with psutil over the whole process tree) and of the tree at its peak; with ``--compare``, the
same assessment in one process (``run_local``, no Prefect) in the same run, for the ratio.

    python benchmarks/dask_replay.py                    # 1,000,000 rows, shards of 100,000
    python benchmarks/dask_replay.py --n 100000 --compare
"""

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
}

FLOW_RUN = """
import sys
from datetime import date
from flows.assess import assess
state = assess(pipeline="replay", as_of=date(2026, 11, 1), config=sys.argv[1], return_state=True)
assert state.is_completed(), state
print(state.result())
"""

LOCAL_RUN = """
import sys
from datetime import date
from assay.stages import run_local
print(run_local(sys.argv[1], "replay", date(2026, 11, 1)).folder.url)
"""


def write_inputs(tmp: Path, n: int, runner: str) -> Path:
    ids = pa.array([f"e{i:07d}" for i in range(n)])
    labels = pa.array(["positive", "negative", "neutral"] * (n // 3) + ["positive"] * (n % 3))
    text = pa.array([f"Review #{i}: the product was fine." for i in range(n)])
    pq.write_table(pa.table({"id": ids, "text": text, "label": labels}), tmp / "data.parquet")
    out = pa.array(["positive", "negative", "negative"] * (n // 3) + ["positive"] * (n % 3))
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "output": out,
                "prompt_tokens": pa.array([40] * n, pa.int64()),
                "completion_tokens": pa.array([1] * n, pa.int64()),
                "latency_s": pa.array([0.2] * n, pa.float64()),
            }
        ),
        tmp / "log.parquet",
    )
    p = tmp / f"pipelines-{'dask' if runner else 'local'}.yaml"
    p.write_text(
        textwrap.dedent(f"""
        artifacts: {tmp}/runs-{"dask" if runner else "local"}
        {runner}
        models:
          logged: {{provider: replay, model: gpt-4o-mini, source: log.parquet, price_ref: openai/gpt-4o-mini}}
        pipelines:
          replay:
            dataset: {{source: data.parquet, id: id, reference: label}}
            models: [logged]
            metrics: [accuracy]
            bootstrap: 200
    """)
    )
    return p


def measured(code: str, cfg: Path, env: dict) -> dict:
    """Run ``code`` in a new process; wall seconds, and the peak RSS of its largest process and of its tree."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(cfg)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    top = psutil.Process(proc.pid)
    peaks: dict[int, tuple[str, int]] = {}
    tree_peak = [0]
    done = threading.Event()

    def sample():
        while not done.is_set():
            try:
                procs = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    name = " ".join(p.cmdline()[1:3])[:60]
                except psutil.Error:
                    continue
                total += rss
                if rss > peaks.get(p.pid, ("", 0))[1]:
                    peaks[p.pid] = (name, rss)
            tree_peak[0] = max(tree_peak[0], total)
            done.wait(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, err = proc.communicate()
    secs = time.perf_counter() - t0
    done.set()
    t.join()
    if proc.returncode != 0:
        raise RuntimeError(f"run failed:\n{err[-3000:]}")
    pid, (name, rss) = max(peaks.items(), key=lambda kv: kv[1][1])
    return {
        "seconds": secs,
        "peak_gb": rss / 1e9,
        "peak_process": "flow" if pid == proc.pid else f"pid {pid} ({name})",
        "tree_gb": tree_peak[0] / 1e9,
        "processes": len(peaks),
        "folder": out.strip().splitlines()[-1],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--shard-rows", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compare", action="store_true", help="also the same assessment in one process")
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = dict(
            os.environ,
            **OFFLINE,
            PREFECT_HOME=str(tmp / "prefect"),
            ASSAY_CACHE_INDEX=str(tmp / "index"),
            ASSAY_LOCK_DIR=str(tmp / "locks"),
        )
        env.pop("PREFECT_API_URL", None)
        runner = f"runner: {{dask: local, workers: {a.workers}, shard_rows: {a.shard_rows}}}"
        cfg = write_inputs(tmp, a.n, runner)
        r = measured(FLOW_RUN, cfg, env)
        import json

        m = json.loads((Path(r["folder"]) / "manifest.json").read_text())
        inv = m["stages"]["invoke"]
        print(
            f"dask      replay of {a.n:,} rows on a {a.workers}-worker LocalCluster, shards of {a.shard_rows:,} "
            f"({inv['runner']['shards']} shards on {inv['runner']['processes']} processes): {r['seconds']:.1f} s wall "
            f"(flow process, Prefect's temporary server and the cluster's start included), {a.n / r['seconds']:,.0f} rows/s"
        )
        from datetime import datetime

        run_s = (datetime.fromisoformat(m["finished_at"]) - datetime.fromisoformat(m["started_at"])).total_seconds()
        print(
            f"          the run itself (manifest started_at to finished_at): {run_s:.1f} s, {a.n / run_s:,.0f} rows/s; stages: "
            + ", ".join(f"{k} {v.get('seconds', 0):.1f} s" for k, v in m["stages"].items())
        )
        print(
            f"          peak RSS of the largest process: {r['peak_gb']:.2f} GB ({r['peak_process']}); "
            f"of the whole tree ({r['processes']} processes): {r['tree_gb']:.2f} GB"
        )
        if a.compare:
            local = measured(LOCAL_RUN, write_inputs(tmp, a.n, ""), env)
            print(
                f"local     the same in one process (run_local, no Prefect): {local['seconds']:.1f} s wall, "
                f"{a.n / local['seconds']:,.0f} rows/s, peak RSS {local['peak_gb']:.2f} GB -> dask/local wall "
                f"{r['seconds'] / local['seconds']:.2f}, largest-process memory {r['peak_gb'] / local['peak_gb']:.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
