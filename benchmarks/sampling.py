"""Repeated sampling (``samples: K``): what K calls per example cost beyond the calls themselves.

Against the project's OpenAI-compatible server (its own process) on 127.0.0.1, with latency L
and concurrency C, the same number of requests R two ways, taking turns (``--reps`` rounds,
each side's best time compared):

1. sampled   R/K examples × ``samples: K``: the invoke stage's seconds (manifest).
2. single    R examples × one call: the same.
   Target: sampled / single <= 1.05 (the per-(example, sample) bookkeeping, keys and journal
   cost nothing next to the calls).
3. replay    the sampled run again from the response cache: seconds, and requests made (0).
4. exact     the Clopper–Pearson interval at n = 1,000 (the largest the score stage computes):
             milliseconds per interval.

    python benchmarks/sampling.py            # R = 8,000, K = 4, L = 50 ms, C = 64
    python benchmarks/sampling.py --quick    # R = 800
"""

import argparse
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assay.testing.openai_server import OpenAIServer  # noqa: E402

DAY = date(2026, 11, 1)
LIMIT = 1.05


def write_config(tmp: Path, base_url: str, n: int, k: int, c: int, cache: str) -> Path:
    ids = [f"e{i:07d}" for i in range(n)]
    text = [f"Review #{i}: the product was positive overall, would buy again." for i in range(n)]
    pq.write_table(pa.table({"id": ids, "text": text, "label": ["positive"] * n}), tmp / "data.parquet")
    cfg = tmp / "pipelines.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        artifacts: {tmp}/runs
        cache_dir: {tmp}/cache
        models:
          fake:
            provider: openai
            model: mock-model
            base_url: {base_url}
            params: {{max_tokens: 8, temperature: 0.7}}
            max_concurrency: {c}
            samples: {k}
            price: {{input_per_mtok: 0.15, output_per_mtok: 0.6}}
        pipelines:
          bench:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt:
              system: "Classify the sentiment. labels: positive, negative, neutral"
              template: "{{text}}"
            models: [fake]
            metrics: [accuracy]
            cache: {cache}
    """)
    )
    return cfg


def invoke_seconds(cfg: Path) -> float:
    from assay.runs import start_run
    from assay.stages import invoke, load

    ctx = start_run(str(cfg), "bench", DAY, new=True)
    load.run(ctx)
    invoke.run(ctx)
    return ctx.folder.manifest()["stages"]["invoke"]["seconds"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=8000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    r = 800 if a.quick else a.requests
    k = a.samples
    sampled, single = [], []
    with tempfile.TemporaryDirectory() as d, OpenAIServer(latency=a.latency) as srv:
        for i in range(a.reps):
            for name, n, kk, out in (("sampled", r // k, k, sampled), ("single", r, 1, single)):
                tmp = Path(d) / f"{name}-{i}"
                tmp.mkdir()
                out.append(invoke_seconds(write_config(tmp, srv.base_url, n, kk, a.concurrency, "off")))
        tmp = Path(d) / "cached"
        tmp.mkdir()
        cfg = write_config(tmp, srv.base_url, r // k, k, a.concurrency, "use")
        invoke_seconds(cfg)
        before = srv.stats(include_prompts=False)["requests_total"]
        replay = invoke_seconds(cfg)
        replay_requests = srv.stats(include_prompts=False)["requests_total"] - before
    from assay.stats import clopper_pearson

    t = time.perf_counter()
    for x in range(0, 1001, 10):
        clopper_pearson(x, 1000)
    exact_ms = (time.perf_counter() - t) / 101 * 1000
    ratio = min(sampled) / min(single)
    print(
        f"requests R={r}, K={k}, L={a.latency * 1000:g} ms, C={a.concurrency}; floor R·L/C = {r * a.latency / a.concurrency:.2f} s"
    )
    print(f"sampled  {r // k} examples x {k}: best {min(sampled):.2f} s  ({', '.join(f'{x:.2f}' for x in sampled)})")
    print(f"single   {r} examples x 1: best {min(single):.2f} s  ({', '.join(f'{x:.2f}' for x in single)})")
    print(f"ratio sampled/single = {ratio:.3f} (limit {LIMIT}): {'ok' if ratio <= LIMIT else 'MISSED'}")
    print(f"replay of the sampled run from the cache: {replay:.2f} s, {replay_requests} requests")
    print(f"exact interval at n=1000: {exact_ms:.2f} ms each")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
