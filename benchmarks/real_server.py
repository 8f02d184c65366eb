"""Assay against a real server (llama.cpp's ``llama-server``, tiny model): its own cost must not show.

Builds the server if the cache has none (``scripts/real_server.py``), starts it with 8 slots, and
measures, the two sides taking turns (``--reps`` rounds, best time of each side compared):

1. invoke   N=500 requests, ``max_tokens`` 16, concurrency 8: the invoke stage's seconds (manifest
            ``stages.invoke.seconds``, the response cache off) against a bare aiohttp client
            sending the same requests (one ClientSession, plain JSON, no retries, nothing
            recorded). Target: ratio <= 1.05.
2. capacity ``assay capacity``'s sweep at concurrency 8 (:func:`assay.capacity.sweep`, streamed
            requests): requests/s against a bare closed-loop client at the same concurrency that
            streams the same requests and reads each to its end. Target: within 5 %.

Two more figures for docs/real-servers.md, printed, with no target:

3. determinism  temperature 0, a fixed seed, 8 requests at once: of 60 examples asked 3 times
                each, how many got differing answers (batched inference is not bit-reproducible);
4. sweep        ``assay capacity`` over ``--levels`` (the CLI, as a user runs it), then the
                pipeline priced at the recorded operating point: its $/1k requests at
                ``--usd-per-gpu-hour``.

    python benchmarks/real_server.py                   # invoke and capacity, 3 rounds
    python benchmarks/real_server.py invoke capacity --reps 5
    python benchmarks/real_server.py determinism sweep --levels 1,2,4,8,16 --requests 256
"""

import argparse
import asyncio
import importlib.util
import json
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

from assay.testing.llama_server import LlamaServer  # noqa: E402

DAY = date(2026, 12, 5)
MAX_TOKENS = 16
C = 8
INVOKE_LIMIT = 1.05
CAPACITY_LIMIT = 0.05


def _texts(n: int) -> list[str]:
    return [f"Ticket #{i}: I was charged twice for my subscription this month, please refund one." for i in range(n)]


def _messages(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def write_config(
    tmp: Path, base_url: str, n: int, params: str = "", usd_per_gpu_hour: float = 1.0, pipeline_extra: str = ""
) -> Path:
    pq.write_table(
        pa.table({"id": [f"e{i:05d}" for i in range(n)], "text": _texts(n), "label": ["billing"] * n}), tmp / "data.parquet"
    )
    cfg = tmp / "pipelines.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        artifacts: {tmp}/runs
        models:
          tiny:
            provider: openai
            model: tiny
            base_url: {base_url}
            params: {{max_tokens: {MAX_TOKENS}{params}}}
            max_concurrency: {C}
            hosting: {{usd_per_gpu_hour: {usd_per_gpu_hour}}}
        pipelines:
          bench:
            dataset: {{source: data.parquet, id: id, reference: label}}
            prompt: {{template: "{{text}}"}}
            models: [tiny]
            metrics: [accuracy]
            cache: off
            bootstrap: 0
            {pipeline_extra}
    """)
    )
    return cfg


def invoke_seconds(cfg: Path) -> float:
    """Load + invoke in this process; the manifest's ``stages.invoke.seconds``."""
    from assay.runs import start_run
    from assay.stages import invoke, load

    ctx = start_run(str(cfg), "bench", DAY, new=True)
    load.run(ctx)
    invoke.run(ctx)
    inv = ctx.folder.manifest()["stages"]["invoke"]
    if inv["errors"]:
        raise SystemExit(f"invoke: {inv['errors']} errors: {inv['models']['tiny'].get('error_examples')}")
    return inv["seconds"]


async def bare_invoke(base_url: str, n: int) -> float:
    """N plain requests at concurrency C through one aiohttp session: seconds."""
    import aiohttp

    url = base_url + "/chat/completions"
    texts = _texts(n)
    errors = []
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=C), headers={"Content-Type": "application/json"}
    ) as session:
        it = iter(range(n))

        async def worker():
            for i in it:
                body = json.dumps({"model": "tiny", "messages": _messages(texts[i]), "max_tokens": MAX_TOKENS})
                async with session.post(url, data=body) as r:
                    raw = await r.read()
                    if r.status != 200:
                        errors.append(r.status)
                    else:
                        json.loads(raw)["choices"][0]["message"]["content"]

        await asyncio.gather(*(worker() for _ in range(C)))
    if errors:
        raise SystemExit(f"bare client: {len(errors)} errors, e.g. {errors[0]}")
    return time.perf_counter() - t0


async def bare_streamed_rps(base_url: str, n: int) -> float:
    """N streamed requests from C closed-loop clients, each read to the end of its body: req/s.
    Each asks for ``Connection: close``: llama.cpp's server closes the connection after a stream
    anyway, and a pooled one fails the next request written to it."""
    import aiohttp

    url = base_url + "/chat/completions"
    texts = _texts(n)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=C), headers={"Content-Type": "application/json", "Connection": "close"}
    ) as session:
        it = iter(range(n))

        async def worker():
            for i in it:
                body = json.dumps(
                    {
                        "model": "tiny",
                        "messages": _messages(texts[i]),
                        "max_tokens": MAX_TOKENS,
                        "stream": True,
                        "stream_options": {"include_usage": True},
                    }
                )
                async with session.post(url, data=body) as r:
                    async for _ in r.content.iter_any():
                        pass
                    if r.status != 200:
                        raise SystemExit(f"bare streamed client: HTTP {r.status}")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(C)))
        return n / (time.perf_counter() - t0)


def assay_sweep_rps(base_url: str, n: int) -> float:
    """``assay capacity``'s sweep at concurrency C alone: the level's req/s."""
    from assay import capacity
    from assay.config import parse_model

    cfg = parse_model(
        dict(
            provider="openai",
            model="tiny",
            base_url=base_url,
            params={"max_tokens": MAX_TOKENS},
            hosting={"usd_per_gpu_hour": 1.0},
        )
    )
    df = capacity.sweep("tiny", cfg, [_messages(t) for t in _texts(n)], [C], requests=n)
    if df["error"].notna().any():
        raise SystemExit(f"sweep: {int(df['error'].notna().sum())} errors, e.g. {df['error'].dropna().iloc[0]}")
    level = capacity.summarize(df, capacity.parse_slo(None)).iloc[0]
    return float(level["rps"])


def _runs(xs) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


def bench_invoke(srv: LlamaServer, n: int, reps: int) -> bool:
    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(Path(d), srv.base_url, n)
        asyncio.run(bare_invoke(srv.base_url, min(n, 64)))  # warm the server
        invoke_seconds(cfg)  # and the imports
        bare, assay = [], []
        for _ in range(reps):
            bare.append(asyncio.run(bare_invoke(srv.base_url, n)))
            assay.append(invoke_seconds(cfg))
    ratio = min(assay) / min(bare)
    print(
        f"invoke   N={n} max_tokens={MAX_TOKENS} C={C}: bare aiohttp {min(bare):.2f}s ({n / min(bare):.1f} req/s; "
        f"runs {_runs(bare)}), Assay invoke stage {min(assay):.2f}s ({n / min(assay):.1f} req/s; runs {_runs(assay)}): "
        f"ratio {ratio:.3f} (target <= {INVOKE_LIMIT})"
    )
    return ratio <= INVOKE_LIMIT


def bench_capacity(srv: LlamaServer, n: int, reps: int) -> bool:
    asyncio.run(bare_streamed_rps(srv.base_url, min(n, 64)))
    bare, assay = [], []
    for _ in range(reps):
        bare.append(asyncio.run(bare_streamed_rps(srv.base_url, n)))
        assay.append(assay_sweep_rps(srv.base_url, n))
    ratio = max(assay) / max(bare)
    print(
        f"capacity C={C} N={n}: bare closed-loop {max(bare):.1f} req/s (runs {_runs(bare)}), assay capacity "
        f"{max(assay):.1f} req/s (runs {_runs(assay)}): ratio {ratio:.3f} (target >= {1 - CAPACITY_LIMIT:.2f}: "
        f"at most {100 * CAPACITY_LIMIT:.0f}% below the bare client)"
    )
    return ratio >= 1 - CAPACITY_LIMIT


def determinism(srv: LlamaServer, examples: int = 60, samples: int = 3) -> None:
    """Temperature 0, a fixed seed, 8 requests at once on 8 slots, the cache off: how many examples
    get differing answers among their samples (an ``assay run`` with ``samples:``)."""

    from assay.responses import read_responses
    from assay.stages import run_local

    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(
            Path(d), srv.base_url, examples, params=", temperature: 0, seed: 1", pipeline_extra=f"samples: {samples}"
        )
        ctx = run_local(str(cfg), "bench", DAY)
        resp = read_responses(ctx.folder).to_pandas()
    assert resp["error"].isna().all() and len(resp) == examples * samples
    differ = resp.groupby("example_id")["output"].nunique()
    print(
        f"determinism: temperature 0, seed 1, {C} slots, {C} requests at once, {examples} examples x {samples} "
        f"samples: {int((differ > 1).sum())} of {examples} examples got differing answers"
    )


def sweep(srv: LlamaServer, levels: str, usd_per_gpu_hour: float, requests: int) -> None:
    """``assay capacity`` of the real server over ``levels`` (the CLI as a user runs it), then an
    ``assay run`` priced at the recorded operating point: its $/1k requests."""
    import subprocess

    with tempfile.TemporaryDirectory() as d:
        cfg = write_config(Path(d), srv.base_url, 40, usd_per_gpu_hour=usd_per_gpu_hour)
        env = {**__import__("os").environ, "PYTHONPATH": str(ROOT), "COLUMNS": "140"}
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "flows.cli.main",
                "capacity",
                "tiny",
                "-c",
                str(cfg),
                "--concurrency",
                levels,
                "--requests",
                str(requests),
                "--slo",
                "p95_latency_s=2,error_rate=0.01",
                "-f",
                "csv",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
        )
        print(out.stderr.strip())
        print(out.stdout.strip())
        if out.returncode != 0:
            raise SystemExit(f"assay capacity failed (exit {out.returncode})")
        from assay.stages import run_local

        ctx = run_local(str(cfg), "bench", DAY)  # the stages `assay run` runs, in this process
        row = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model").loc["tiny"]
        print(
            f"sweep: priced at ${usd_per_gpu_hour}/GPU-hour and {row['throughput_rps']:.1f} req/s: "
            f"${row['cost_per_1k_usd']:.4f} per 1k requests ({json.loads(row['price_json']).get('throughput_source')})"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("which", nargs="*", help="invoke, capacity (the default: both), determinism, sweep")
    ap.add_argument("--levels", default="1,2,4,8,16", help="sweep: the concurrency levels")
    ap.add_argument("--requests", type=int, default=256, help="sweep: requests per level")
    ap.add_argument("--usd-per-gpu-hour", type=float, default=1.2, help="sweep: the hourly price to cost at")
    ap.add_argument("-n", type=int, default=500, help="requests per measurement")
    ap.add_argument("--reps", type=int, default=3, help="rounds, the two sides taking turns")
    args = ap.parse_args(argv)
    which = args.which or ["invoke", "capacity"]
    known = {"invoke", "capacity", "determinism", "sweep"}
    if set(which) - known:
        ap.error(f"unknown figure(s): {', '.join(sorted(set(which) - known))}")
    spec = importlib.util.spec_from_file_location("real_server", ROOT / "scripts" / "real_server.py")
    script = sys.modules["real_server"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.ensure()
    ok = True
    with LlamaServer(built.binary, built.model) as srv:
        print(
            f"llama-server {built.version} (llama.cpp {built.llama_cpp_commit}), {srv.parallel} slots, "
            f"{srv.threads} threads, model {built.model.name}"
        )
        if "invoke" in which:
            ok &= bench_invoke(srv, args.n, args.reps)
        if "capacity" in which:
            ok &= bench_capacity(srv, args.n, args.reps)
        if "determinism" in which:
            determinism(srv)
        if "sweep" in which:
            sweep(srv, args.levels, args.usd_per_gpu_hour, args.requests)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
