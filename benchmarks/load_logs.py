"""Loading an OpenTelemetry export: spans per second and peak memory of ``read_log("otel", ...)``.

Writes N chat spans (default 1,000,000) of about 1 KB each as OTLP JSON lines (the Collector's file
exporter shape, GenAI semantic conventions v1.37: a system and a user message in
``gen_ai.input.messages``, the answer in ``gen_ai.output.messages``, usage, models, three application
attributes; ten spans per export request, one file per 100,000 spans) in a temporary folder, then
reads the folder in a fresh process and prints its spans per second and peak RSS against the targets
(at least 50,000 spans/s on two cores; under 1.5 GB), its spans per CPU second, and the ratio to a
baseline measured in the same process: Arrow's JSON parse of the same files alone.

    python benchmarks/load_logs.py                       # 1,000,000 spans in a temp folder, removed after
    python benchmarks/load_logs.py --spans 200000 --dir /tmp/otel-bench   # keep the files
"""

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TARGET_RATE = 50_000
TARGET_RSS_GB = 1.5
PER_LINE = 10
PER_FILE = 100_000

WORDS = (
    "order refund shipping parcel invoice password account delivery warranty size tent jacket stove filter "
    "charge card email reset carrier tracking return exchange discount voucher"
).split()


def _attr(key, value):
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


def _span(rng: random.Random, i: int, t0: int) -> dict:
    question = " ".join(rng.choice(WORDS) for _ in range(12))
    answer = " ".join(rng.choice(WORDS) for _ in range(8))
    inp = json.dumps(
        [
            {"role": "system", "parts": [{"type": "text", "content": "Support assistant; answer briefly."}]},
            {"role": "user", "parts": [{"type": "text", "content": question}]},
        ]
    )
    out = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": answer}], "finish_reason": "stop"}])
    start = t0 + i * 50_000_000
    return {
        "traceId": f"{rng.getrandbits(128):032x}",
        "spanId": f"{i:016x}",
        "parentSpanId": "",
        "name": "chat gpt-4o-mini",
        "kind": 3,
        "startTimeUnixNano": str(start),
        "endTimeUnixNano": str(start + rng.randrange(300, 2500) * 1_000_000),
        "attributes": [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.provider.name", "openai"),
            _attr("gen_ai.request.model", "gpt-4o-mini"),
            _attr("gen_ai.response.model", "gpt-4o-mini-2024-07-18"),
            _attr("gen_ai.usage.input_tokens", rng.randrange(50, 400)),
            _attr("gen_ai.usage.output_tokens", rng.randrange(20, 200)),
            _attr("gen_ai.input.messages", inp),
            _attr("gen_ai.output.messages", out),
            _attr("app.feature", rng.choice(["support-chat", "order-tracking", "product-advice"])),
            _attr("user.tier", rng.choice(["free", "plus", "business"])),
            _attr("conversation.id", f"conv-{i // 3:08d}"),
        ],
        "status": {},
    }


def generate(folder: str, spans: int, seed: int = 7) -> int:
    """Write ``spans`` chat spans under ``folder``; returns the bytes written."""
    rng = random.Random(seed)
    os.makedirs(folder, exist_ok=True)
    resource_ = {"attributes": [_attr("service.name", "support-bot"), _attr("deployment.environment.name", "production")]}
    scope = {"name": "opentelemetry.instrumentation.openai_v2", "version": "2.1b0"}
    t0 = 1_793_000_000 * 10**9
    size = 0
    for f in range(0, spans, PER_FILE):
        lines = []
        for i in range(f, min(f + PER_FILE, spans), PER_LINE):
            batch = [_span(rng, j, t0) for j in range(i, min(i + PER_LINE, spans))]
            lines.append(
                json.dumps(
                    {"resourceSpans": [{"resource": resource_, "scopeSpans": [{"scope": scope, "spans": batch}]}]},
                    separators=(",", ":"),
                )
            )
        data = ("\n".join(lines) + "\n").encode()
        with open(os.path.join(folder, f"traces-{f // PER_FILE:04d}.jsonl"), "wb") as fh:
            fh.write(data)
        size += len(data)
    return size


def read_once(folder: str) -> None:
    """In this (fresh) process: read the folder, print one JSON line of figures."""
    from assay.logs import read_log

    t, c = time.perf_counter(), time.process_time()
    table, stats = read_log("otel", folder)
    dt, cpu = time.perf_counter() - t, time.process_time() - c
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    nbytes, spans = table.nbytes, table.num_rows
    del table
    # the baseline, in the same process under the same load: Arrow's JSON reader parsing the same
    # files against the same OTLP schema and nothing else (the floor of any Arrow-based reader)
    from assay.logs import otlp
    from assay.logs.common import line_blocks

    t, c = time.perf_counter(), time.process_time()
    for name in sorted(os.listdir(folder)):
        for _, data in line_blocks(os.path.join(folder, name)):
            otlp._parse(data)
    base, base_cpu = time.perf_counter() - t, time.process_time() - c
    print(
        json.dumps(
            {
                "spans": spans,
                "records": stats.records,
                "seconds": dt,
                "cpu": cpu,
                "rss": rss,
                "table_bytes": nbytes,
                "load": os.getloadavg()[0],
                "parse_s": base,
                "parse_cpu": base_cpu,
            }
        )
    )


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spans", type=int, default=1_000_000)
    ap.add_argument("--dir", help="where the export is written (kept); default a temp folder, removed after")
    ap.add_argument("--read", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.read:
        read_once(args.read)
        return
    folder = args.dir or tempfile.mkdtemp(prefix="assay-otel-bench-")
    try:
        have = sum(1 for f in os.listdir(folder) if f.endswith(".jsonl")) if os.path.isdir(folder) else 0
        if have != -(-args.spans // PER_FILE):
            shutil.rmtree(folder, ignore_errors=True)
            t = time.perf_counter()
            size = generate(folder, args.spans)
            print(
                f"wrote {args.spans:,} spans ({size / 1e9:.2f} GB, {size / args.spans:.0f} bytes per span) in "
                f"{time.perf_counter() - t:.0f} s to {folder}"
            )
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.environ.get("PYTHONPATH", "")]
            ),
        }
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--read", folder], capture_output=True, text=True, env=env)
        if r.returncode:
            sys.exit(r.stderr)
        got = json.loads(r.stdout.strip().splitlines()[-1])
        rate = got["spans"] / got["seconds"]
        rss_gb = got["rss"] / 1e9
        print(
            f"read {got['spans']:,} chat spans ({got['records']:,} records) in {got['seconds']:.1f} s "
            f"({got['cpu']:.1f} s of CPU; machine load average {got['load']:.1f} on {os.cpu_count()} cores), "
            f"table {got['table_bytes'] / 1e9:.2f} GB in memory"
        )
        cpu_rate = got["spans"] / got["cpu"]
        print(
            f"spans/s: {rate:,.0f} (target >= {TARGET_RATE:,}: {'ok' if rate >= TARGET_RATE else 'MISSED'}, "
            f"ratio {rate / TARGET_RATE:.2f})"
        )
        # the wall time of a read on an otherwise idle machine is at most its CPU time (the work is
        # CPU-bound, and the parse of the next block overlaps the rest): a floor of the idle rate
        print(
            f"spans per CPU second: {cpu_rate:,.0f} (ratio {cpu_rate / TARGET_RATE:.2f} to the target; the rate an "
            f"otherwise idle machine would at least reach)"
        )
        print(
            f"baseline, Arrow's JSON parse of the same files alone: {got['parse_s']:.1f} s ({got['parse_cpu']:.1f} s of CPU); "
            f"the read takes {got['seconds'] / got['parse_s']:.2f}x its wall time, {got['cpu'] / got['parse_cpu']:.2f}x its CPU"
        )
        print(
            f"peak RSS: {rss_gb:.2f} GB (target < {TARGET_RSS_GB} GB: {'ok' if rss_gb < TARGET_RSS_GB else 'MISSED'}, "
            f"ratio {rss_gb / TARGET_RSS_GB:.2f})"
        )
    finally:
        if not args.dir:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
