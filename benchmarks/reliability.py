"""Reliability figures, measured by running Assay against what goes wrong: prints Markdown tables.

1. bad inputs   every row of ``tests/config/test_preflight.BAD_INPUTS`` through ``assay run``: the exit
                code and the first line of what it printed (nothing may be written).
2. kills        ``kill -9`` of ``assay run`` in each stage (``tests/killpoints.py``), then the same
                command: whether the run completed in the same folder with the uninterrupted
                run's artifacts, and how many model calls were paid for twice.
3. faults       every endpoint fault the test server injects (``assay/testing/openai_server.py``),
                on a run of one example per fault: what the run recorded for it (retried to
                success, or the error on its row) and after how many attempts; then the
                per-kind counts the manifest recorded (``retry_kinds``, ``error_kinds``).

Starts its own ``prefect server start`` and OpenAI-compatible server on 127.0.0.1.

    python benchmarks/reliability.py              # all three
    python benchmarks/reliability.py faults       # some
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from invoke_throughput import OFFLINE, PrefectServer  # noqa: E402


def bad_inputs() -> None:
    from tests.config import test_preflight

    print("| bad input | exit | what `assay run` printed (first problem) | written |\n|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, bad in enumerate(test_preflight.BAD_INPUTS):
            d = Path(tmp) / f"case{i:02d}"
            d.mkdir()
            _, _, r = test_preflight._assay_run(d, bad)
            lines = [ln.strip() for ln in r.stderr.strip().splitlines()]
            first = lines[1] if len(lines) > 1 and lines[0].endswith("problem(s)") else (lines[-1] if lines else "")
            first = first.replace(str(d) + "/", "").replace("|", "\\|")
            written = "yes" if (d / "runs").exists() else "nothing"
            print(f"| {bad.name} | {r.returncode} | {first[:150]} | {written} |")


def kills() -> None:
    from assay.reproduce import compare
    from assay.store import Store
    from assay.testing.openai_server import OpenAIServer
    from tests.calling import test_kills

    print(
        "| killed in | resumed in the same folder | artifacts equal an uninterrupted run's | calls made | paid twice |\n"
        "|---|---|---|---|---|"
    )
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(latency=0.02) as srv:
        tmp = Path(tmp)
        with PrefectServer(tmp / "server-home") as server:
            env = dict(
                os.environ, PREFECT_HOME=str(tmp / "client-home"), PREFECT_API_URL=server.url, PYTHONPATH=str(ROOT), **OFFLINE
            )
            base = test_kills._config(tmp, srv.base_url, tmp / "baseline")
            subprocess.run(test_kills._cmd(base), env=env, cwd=ROOT, capture_output=True, check=True)
            (baseline,) = Store(tmp / "baseline").complete_runs("p")
            for stage in test_kills.STAGES:
                work = tmp / f"killed-{stage}"
                work.mkdir()
                cfg = test_kills._config(work, srv.base_url, work / "runs")
                srv.reset()
                subprocess.run(test_kills._cmd(cfg, armed=stage), env=env, cwd=ROOT, capture_output=True)
                again = subprocess.run(test_kills._cmd(cfg), env=env, cwd=ROOT, capture_output=True, text=True)
                (run,) = Store(work / "runs").runs("p")
                same = again.returncode == 0 and Path(again.stdout.strip().splitlines()[-1]) == Path(run.url)
                equal = all(r["status"] in ("identical", "same content") for r in compare(baseline, run))
                calls = srv.stats(include_prompts=False)["requests_total"]
                print(f"| {stage} | {'yes' if same else 'NO'} | {'yes' if equal else 'NO'} | {calls} | {calls - test_kills.N} |")
    print(f"\n({test_kills.N} examples; the live model at concurrency {test_kills.C}, shards of {test_kills.SHARD} responses.)")


def faults() -> None:
    from datetime import date

    import pandas as pd

    from assay.responses import read_responses
    from assay.runs import Manifest
    from assay.stages import run_local
    from assay.testing.openai_server import OpenAIServer
    from tests.calling import test_faults

    print("| fault injected | outcome on the row | attempts | error recorded |\n|---|---|---|---|")
    os.environ["FAULTS_KEY"] = test_faults.KEY
    with tempfile.TemporaryDirectory() as tmp, OpenAIServer(latency=0.0, slow_seconds=3.0) as srv:
        ctx = run_local(str(test_faults.fault_workspace(Path(tmp), srv.base_url)), "p", date(2026, 11, 1))
        rows = read_responses(ctx.folder).to_pandas().set_index("example_id")
        for i, fault in enumerate(test_faults.EXPECTED):
            r = rows.loc[f"f{i:02d}"]
            err = None if pd.isna(r["error"]) else str(r["error"])
            out = None if pd.isna(r["output"]) else str(r["output"])
            outcome = f"succeeded: {out!r}" if err is None else "recorded as an error"
            shown = "" if err is None else err[:90].replace("|", "\\|")
            print(f"| {fault} | {outcome} | {int(r['attempts'])} | {shown} |")
        m = Manifest.of(ctx.folder)
        print("\nper kind, from the manifest (`stages.invoke.models.live`):\n\n| kind | retries | final errors |\n|---|---|---|")
        retries, errors = m.retry_kinds["live"], m.error_kinds["live"]
        for kind in sorted(set(retries) | set(errors)):
            print(f"| `{kind}` | {retries.get(kind, 0)} | {errors.get(kind, 0)} |")
        print(f"| all | {sum(retries.values())} | {sum(errors.values())} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", nargs="*", default=["bad", "kills", "faults"])
    a = ap.parse_args(argv)
    for name, fn in (("bad", bad_inputs), ("kills", kills), ("faults", faults)):
        if name in a.which:
            print(f"\n### {name}\n")
            fn()
    return 0


if __name__ == "__main__":
    sys.exit(main())
