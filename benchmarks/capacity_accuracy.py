"""How exactly ``assay capacity`` measures: streamed timings against what the server was told to do.

Starts the fake OpenAI-compatible server on 127.0.0.1 (its own process) with a fixed time to first
token and inter-token latency and no queueing (``slots=0``), so every request should take the same
time at any concurrency; the sweep's measured medians minus the configured values are then the
client's own overhead (Python, aiohttp, the event loop, this machine's other load). A second sweep
at zero latency gives the most streamed requests per second the client itself can drive: an
endpoint faster than that is measured as the client's limit, not its own.

    python benchmarks/capacity_accuracy.py [--levels 1,4,16,64] [--requests 256]
"""

import argparse

from assay import capacity
from assay.config import OpenAIModel
from assay.testing.openai_server import OpenAIServer

TTFT, ITL = 0.05, 0.005
ANSWER = "x" * 64  # 16 tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", default="1,4,16,64")
    ap.add_argument("--requests", type=int, default=256)
    args = ap.parse_args()
    levels = capacity.parse_levels(args.levels)
    prompts = [[{"role": "user", "content": f"ANSWER: {ANSWER}"}]]
    slo = capacity.parse_slo(None)
    tokens = len(ANSWER) // 4

    with OpenAIServer(latency=TTFT, itl=ITL) as srv:
        cfg = OpenAIModel(model="m", base_url=srv.base_url, hosting={"usd_per_gpu_hour": 1.0})
        t = capacity.summarize(capacity.sweep("m", cfg, prompts, levels, args.requests), slo)
    latency = TTFT + ITL * (tokens - 1)
    print(
        f"configured: TTFT {TTFT * 1000:.1f} ms, ITL {ITL * 1000:.2f} ms, latency {latency * 1000:.1f} ms "
        f"({tokens} tokens); {args.requests} requests per level"
    )
    print("concurrency  TTFT p50 - configured  ITL p50 - configured  latency p50 - configured  req/s (ideal)")
    for r in t.itertuples():
        print(
            f"{r.concurrency:>11}  {(r.ttft_p50_s - TTFT) * 1000:>17.2f} ms  {(r.itl_p50_s - ITL) * 1000:>16.3f} ms"
            f"  {(r.latency_p50_s - latency) * 1000:>21.2f} ms  {r.rps:8.1f} ({r.concurrency / latency:.1f})"
        )

    with OpenAIServer() as srv:
        cfg = OpenAIModel(model="m", base_url=srv.base_url, hosting={"usd_per_gpu_hour": 1.0})
        t = capacity.summarize(capacity.sweep("m", cfg, prompts, [64], 4096), slo)
    print(
        f"client limit at no latency, concurrency 64, {tokens}-token streams: {t.rps.iloc[0]:.0f} req/s "
        f"({t.output_tok_s.iloc[0]:.0f} tok/s)"
    )


if __name__ == "__main__":
    main()
