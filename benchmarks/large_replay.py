"""Large data, measured: a replay assessment of N rows (default 10,000,000) as a user runs it.

Generates, once, a synthetic replay use case into ``--dir`` (a temporary folder by default):
``data.parquet`` (id, text, label, channel, language) and a production log ``log.parquet`` (id,
output, token counts, latency, logged_at), both written in row groups so the generator itself
stays small, and a ``pipelines.yaml`` with one replay model (priced as an API model), accuracy
and exact_match, two slice columns and ``bootstrap: 200``. Then it runs ``assay run`` in a new
process, as a user would (Prefect's ephemeral server included), and measures:

- wall time of the whole command, and rows per second (dataset rows / wall seconds);
- peak RSS of the whole process tree (the command and every child, the Prefect server and the
  chart engine included), polled every 50 ms with psutil, and the peak of the largest single
  process (``getrusage(RUSAGE_CHILDREN).ru_maxrss``);
- each stage's seconds (from manifest.json) and the tree's peak RSS while each stage ran (the
  window ends at the stage's log line on the command's output);
- the bytes on disk (inputs and the run folder).

The limit is 2 GB of peak RSS for the whole tree; the ratio peak / 2 GB is printed. With two or
more sizes (``--rows 1000000,10000000``; one size is run after a 10,000-row run, which gives the
fixed cost) a line through the measured figures (fixed cost + per row) projects time, memory and
disk to ``--project`` rows (100,000,000 by default) and says which resource runs out first on
this machine (its RAM against the 2 GB limit too, the free disk under ``--dir``, and the time a
nightly run may take, ``--night-hours``).

    python benchmarks/large_replay.py                        # 10M rows
    python benchmarks/large_replay.py --rows 1000000,3000000 # two sizes and the fitted projection
    python benchmarks/large_replay.py --rows 1000000 --dir /tmp/assay-large   # keep the inputs

The load average is printed beside each wall time: the machine is shared, and wall time moves
with its load while the memory figures do not.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
LIMIT_GB = 2.0
OFFLINE = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}
LABELS = np.array(["billing", "shipping", "returns", "account", "technical", "other"])
CHANNELS = np.array(["email", "chat", "phone", "web"])
LANGUAGES = np.array(["en", "de", "fr", "es", "it"])
BATCH = 1_000_000
STAGES = ("load", "invoke", "score", "cost", "report")


def generate(folder: Path, n: int, seed: int = 7) -> None:
    """Write data.parquet, log.parquet and pipelines.yaml for ``n`` rows (skipped when present)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "rows.txt"
    if stamp.exists() and stamp.read_text().strip() == str(n):
        return
    rng = np.random.default_rng(seed)
    data_schema = pa.schema(
        [("id", pa.string()), ("text", pa.string()), ("label", pa.string()), ("channel", pa.string()), ("language", pa.string())]
    )
    log_schema = pa.schema(
        [
            ("id", pa.string()),
            ("output", pa.string()),
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("latency_s", pa.float64()),
            ("logged_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    t0 = np.datetime64("2026-10-01T00:00:00", "us").astype(np.int64)
    with pq.ParquetWriter(folder / "data.parquet", data_schema) as dw, pq.ParquetWriter(folder / "log.parquet", log_schema) as lw:
        for lo in range(0, n, BATCH):
            k = min(BATCH, n - lo)
            idx = np.arange(lo, lo + k)
            ids = pa.array(np.char.add("t", np.char.zfill(idx.astype(str), 9)))
            label = rng.integers(0, len(LABELS), k)
            right = rng.random(k) < 0.82
            out = np.where(right, label, rng.integers(0, len(LABELS), k))
            text = pa.array(np.char.add(np.char.add("Ticket ", idx.astype(str)), ": my order has a problem, please help."))
            dw.write_table(
                pa.table(
                    [
                        ids,
                        text,
                        pa.array(LABELS[label]),
                        pa.array(CHANNELS[rng.integers(0, 4, k)]),
                        pa.array(LANGUAGES[rng.integers(0, 5, k)]),
                    ],
                    schema=data_schema,
                )
            )
            logged = t0 + rng.integers(0, 30 * 86_400_000_000, k)
            lw.write_table(
                pa.table(
                    [
                        ids,
                        pa.array(LABELS[out]),
                        pa.array(rng.integers(60, 140, k)),
                        pa.array(rng.integers(1, 4, k)),
                        pa.array(rng.lognormal(-1.5, 0.4, k)),
                        pa.array(logged, pa.timestamp("us", tz="UTC")),
                    ],
                    schema=log_schema,
                )
            )
    (folder / "pipelines.yaml").write_text(
        textwrap.dedent(f"""
        artifacts: {folder}/runs
        models:
          logged:
            provider: replay
            model: gpt-4o-mini
            source: log.parquet
            price: {{input_per_mtok: 0.15, output_per_mtok: 0.60}}
        pipelines:
          large:
            dataset: {{source: data.parquet, id: id, reference: label, slices: [channel, language]}}
            models: [logged]
            metrics: [accuracy, exact_match]
            cost: {{monthly_requests: 2000000}}
            bootstrap: 200
    """)
    )
    stamp.write_text(str(n))


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def measure(folder: Path, n: int, keep_runs: bool = False) -> dict:
    """One ``assay run large`` over the generated use case: wall time, peak RSS, stage figures."""
    shutil.rmtree(folder / "runs", ignore_errors=True)
    env = dict(os.environ, **OFFLINE, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [
        sys.executable,
        "-m",
        "flows.cli.main",
        "run",
        "large",
        "--config",
        str(folder / "pipelines.yaml"),
        "--as-of",
        "2026-11-01",
        "--no-progress",
    ]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    samples: list[tuple[float, int]] = []
    lines: list[tuple[float, str]] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            total = 0
            try:
                for p in [ps] + ps.children(recursive=True):
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            samples.append((time.perf_counter() - t0, total))
            stop.wait(0.05)

    def read():
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=read, daemon=True)]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    stop.set()
    for t in threads:
        t.join(5)
    load1 = os.getloadavg()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # 1: a gate failed, the run itself completed
        print("\n".join(line for _, line in lines[-40:]))
        raise RuntimeError(f"assay run exited {code}")
    run_dirs = sorted((folder / "runs").glob("large/*/*"))
    manifest = json.loads((run_dirs[-1] / "manifest.json").read_text())
    stage_s = {k: v.get("seconds") for k, v in (manifest.get("stages") or {}).items()}
    # the tree's peak while each stage ran: from the previous stage's log line to this one's
    marks, prev = {}, 0.0
    for name in STAGES:
        hit = next((t for t, line in lines if re.search(rf"\b{name}: ", line) and t >= prev), None)
        if hit is None:
            continue
        marks[name] = max((r for t, r in samples if prev <= t <= hit), default=0) / 1e9
        prev = hit
    marks["after report"] = max((r for t, r in samples if t >= prev), default=0) / 1e9
    peak_tree = max((r for _, r in samples), default=0) / 1e9
    out = {
        "rows": n,
        "seconds": secs,
        "rows_per_s": n / secs,
        "peak_tree_gb": peak_tree,
        "peak_process_gb": usage.ru_maxrss * 1024 / 1e9,
        "stage_seconds": stage_s,
        "stage_peak_gb": marks,
        "input_bytes": (folder / "data.parquet").stat().st_size + (folder / "log.parquet").stat().st_size,
        "run_bytes": _du(folder / "runs"),
        "load_before": load0,
        "load_after": load1,
        "exit": code,
    }
    if not keep_runs:
        shutil.rmtree(folder / "runs", ignore_errors=True)
    return out


def report(r: dict) -> None:
    la = f"load average {r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after"
    print(f"replay {r['rows']:,} rows: {r['seconds']:.1f} s, {r['rows_per_s']:,.0f} rows/s ({la})")
    print(
        f"  peak RSS, process tree {r['peak_tree_gb']:.2f} GB -> {r['peak_tree_gb'] / LIMIT_GB:.2f} of the {LIMIT_GB:.0f} GB "
        f"limit {'OK' if r['peak_tree_gb'] < LIMIT_GB else 'MISSED'}; largest single process {r['peak_process_gb']:.2f} GB"
    )
    print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["stage_seconds"].items() if v is not None))
    print("  tree peak while each stage ran: " + ", ".join(f"{k} {v:.2f} GB" for k, v in r["stage_peak_gb"].items()))
    print(f"  disk: inputs {r['input_bytes'] / 1e9:.2f} GB, run folder {r['run_bytes'] / 1e9:.2f} GB")


def _fit(xs, ys):
    """(fixed, per row) of a line through the points; proportional through 0 for one point."""
    if len(xs) == 1:
        return 0.0, ys[0] / xs[0]
    slope, fixed = np.polyfit(np.array(xs, float), np.array(ys, float), 1)
    return float(fixed), float(slope)


def project(results: list[dict], rows: int, folder: Path, night_hours: float) -> None:
    xs = [r["rows"] for r in results]
    fig = {}
    for key in ("seconds", "peak_tree_gb"):
        fixed, per = _fit(xs, [r[key] for r in results])
        fig[key] = fixed + per * rows
    disk_fixed, disk_per = _fit(xs, [r["input_bytes"] + r["run_bytes"] for r in results])
    fig["disk_gb"] = (disk_fixed + disk_per * rows) / 1e9
    ram = psutil.virtual_memory().total / 1e9
    free = (shutil.disk_usage(folder).free + sum(r["input_bytes"] for r in results[-1:])) / 1e9
    night = night_hours * 3600
    shares = {"memory": fig["peak_tree_gb"] / ram, "disk": fig["disk_gb"] / free, "time": fig["seconds"] / night}
    first = max(shares, key=shares.get)
    how = "a line through the measured sizes" if len(xs) > 1 else f"proportional to the {xs[0]:,}-row run"
    print(f"projection to {rows:,} rows ({how}):")
    print(
        f"  time {fig['seconds'] / 60:.1f} min ({fig['seconds'] / night:.2f} of a {night_hours:g} h night), "
        f"peak RSS {fig['peak_tree_gb']:.2f} GB ({shares['memory']:.2f} of this machine's {ram:.1f} GB), "
        f"disk {fig['disk_gb']:.1f} GB ({shares['disk']:.2f} of the {free:.0f} GB free)"
    )
    print(
        f"  runs out first: {first} ({shares[first]:.2f} of what this machine has); the peak is "
        f"{fig['peak_tree_gb'] / LIMIT_GB:.2f} of the {LIMIT_GB:.0f} GB limit"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", default="10000000", help="rows, or several sizes separated by commas (default 10,000,000)")
    ap.add_argument("--dir", help="where the inputs are generated (kept, and reused for the same size); default a temp dir")
    ap.add_argument("--project", type=int, default=100_000_000, help="the size to project to")
    ap.add_argument("--night-hours", type=float, default=8.0, help="the time a nightly run may take")
    ap.add_argument("--keep-runs", action="store_true", help="keep the run folder (in --dir)")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in a.rows.split(",") if s.strip()]
    if len(sizes) == 1 and sizes[0] > 10_000:  # a small run first: the fixed cost of the projection's line
        sizes = [10_000] + sizes
    tmp = None if a.dir else tempfile.TemporaryDirectory(prefix="assay-large-")
    base = Path(a.dir or tmp.name)
    results = []
    try:
        for n in sizes:
            folder = base / f"rows-{n}"
            t0 = time.perf_counter()
            generate(folder, n)
            print(f"inputs for {n:,} rows ready in {time.perf_counter() - t0:.1f} s ({folder})", flush=True)
            r = measure(folder, n, a.keep_runs)
            report(r)
            results.append(r)
            sys.stdout.flush()
        project(results, a.project, base, a.night_hours)
    finally:
        if tmp is not None:
            tmp.cleanup()
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))
    return 0 if all(r["peak_tree_gb"] < LIMIT_GB for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
