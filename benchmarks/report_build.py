"""How long the report, the dashboard and the report stage take, each against its limit.

    python benchmarks/report_build.py            # all three figures (about a minute)
    python benchmarks/report_build.py report     # some of them: report, dashboard, stage

* ``report``: report.html and summary.md of a synthetic run of 20 models × 60 slices (1,200
  examples; :mod:`assay.testing.synthetic`), built in a new process: the first build (which
  starts the chart engine's process, as ``assay report`` does, while it reads the tables; a run
  starts it at its beginning) and a second one in the same process. Limit 2 s.
* ``dashboard``: ``assay dashboard`` over 365 daily runs of 3 pipelines (1,095 run folders),
  in a new process. Limit 10 s.
* ``stage``: what the report stage adds to a run of the shipped example (``run_local`` of
  ``support-triage``, new process): ``stages.report.seconds`` in its manifest. No limit; the
  figure goes in docs/performance.md.

Each figure is the best of ``--repeat`` runs (default 3), printed as wall seconds and as a ratio
against its limit, with the process's CPU seconds beside it (on a machine other work keeps busy,
the wall figure grows and the CPU figure does not).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}

REPORT = """
import json, sys, time
t0 = time.perf_counter()
from assay.store import open_run
from assay.report.summary import build_report, run_config
rf = open_run(sys.argv[1])
cfg = run_config(rf.manifest())
t1, c1 = time.perf_counter(), time.process_time()
first = build_report(rf, cfg, rf.pipeline)
t2, c2 = time.perf_counter(), time.process_time()
second = build_report(rf, cfg, rf.pipeline)
t3, c3 = time.perf_counter(), time.process_time()
import resource
from assay.report import engine
engine.stop()  # the chart engine's child process: its CPU counts too
u = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"imports": t1 - t0, "first": t2 - t1, "second": t3 - t2, "first_cpu": c2 - c1, "second_cpu": c3 - c2,
                  "engine_cpu": u.ru_utime + u.ru_stime, "timings": second["timings"]}))
"""

DASHBOARD = """
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
from assay.report.dashboard import build_dashboard
out = build_dashboard(sys.argv[1], sys.argv[2])
print(json.dumps({"total": time.perf_counter() - t0, "cpu": time.process_time() - c0, "runs": out["runs"],
                  "timings": out["timings"]}))
"""

STAGE = """
import json, sys
from datetime import date
from assay.stages import run_local
ctx = run_local(sys.argv[1], "support-triage", date(2026, 11, 24))
m = ctx.folder.manifest()
print(json.dumps({k: v["seconds"] for k, v in m["stages"].items()} | {"timings": m["stages"]["report"].get("timings")}))
"""


def _python(code: str, *args: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *args], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=900)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def _line(name: str, seconds: float, limit: float | None, note: str = "") -> None:
    ratio = f"{seconds / limit:.2f} of the limit ({limit:g} s)" if limit else "no limit"
    print(f"{name:<58} {seconds:7.2f} s   {ratio}{'   ' + note if note else ''}", flush=True)


def bench_report(tmp: str, repeat: int) -> None:
    from assay.testing.synthetic import write_run

    rf = write_run(os.path.join(tmp, "report"), "wide", models=20, slices=60, examples=1200, held_out=True, seed=1)
    runs = [_python(REPORT, rf.url) for _ in range(repeat)]
    first = min(r["first"] for r in runs)
    second = min(r["second"] for r in runs)
    _line(
        "report, 20 models × 60 slices, first build in a process",
        first,
        2.0,
        f"(CPU {min(r['first_cpu'] for r in runs):.2f} s, the chart engine's process "
        f"{min(r['engine_cpu'] for r in runs):.2f} s for both builds; +{min(r['imports'] for r in runs):.2f} s imports)",
    )
    best = min(runs, key=lambda r: r["second"])
    charts = sum(v for k, v in best["timings"].items() if k not in ("data", "total"))
    _line(
        "report, 20 models × 60 slices, built again (engine started)",
        second,
        2.0,
        f"(CPU {best['second_cpu']:.2f} s; charts {charts:.2f} s, data {best['timings']['data']:.2f} s)",
    )


def bench_dashboard(tmp: str, repeat: int) -> None:
    from assay.testing.synthetic import write_history

    root = os.path.join(tmp, "history")
    t = time.perf_counter()
    write_history(root, pipelines=3, runs=365, models=3, slices=6, examples=200)
    print(f"(wrote 1,095 synthetic run folders in {time.perf_counter() - t:.0f} s)", flush=True)
    runs = [_python(DASHBOARD, root, os.path.join(tmp, f"site-{i}")) for i in range(repeat)]
    best = min(runs, key=lambda r: r["total"])
    _line(
        "dashboard, 365 runs × 3 pipelines, new process",
        best["total"],
        10.0,
        f"(CPU {best['cpu']:.2f} s; read {best['timings']['read']:.2f} s, charts {best['timings']['charts']:.2f} s, write {best['timings']['write']:.2f} s)",
    )


def bench_stage(tmp: str, repeat: int) -> None:
    text = (ROOT / "pipelines.yaml").read_text().replace("artifacts: data/runs", f"artifacts: {tmp}/stage-runs")
    cfg = Path(tmp) / "pipelines.yaml"
    cfg.write_text(text.replace(" data/", f" {ROOT}/data/"))
    runs = [_python(STAGE, str(cfg)) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["report"])
    whole = sum(v for k, v in best.items() if k != "timings")
    charts = sum(v for k, v in (best["timings"] or {}).items() if k not in ("data", "total"))
    _line(
        "report stage of the shipped example (stages.report.seconds)",
        best["report"],
        None,
        f"(charts {charts:.2f} s; all stages {whole:.2f} s)",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("figures", nargs="*", help="report, dashboard, stage (default: all three)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    unknown = set(args.figures) - {"report", "dashboard", "stage"}
    if unknown:
        ap.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory(prefix="assay-report-bench-") as tmp:
        for f in args.figures or ["report", "dashboard", "stage"]:
            {"report": bench_report, "dashboard": bench_dashboard, "stage": bench_stage}[f](tmp, args.repeat)


if __name__ == "__main__":
    main()
