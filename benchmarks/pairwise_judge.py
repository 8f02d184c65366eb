"""The pairwise judge's calls: at most one per (candidate, example, order), and the night before's
verdicts reused when the same pair of answers comes back.

Against the project's OpenAI-compatible server (its own process) on 127.0.0.1: N production
conversations, an incumbent replayed from the log and two candidates (one whose answers differ
from the incumbent's on every example, one whose answers equal it on a share of them), judged by
``pairwise`` in both orders.

1. night 1    judge calls made (the server's count) against the bound 2 × candidates × N,
              and the score stage's seconds.
   Target: calls <= bound.
2. night 2    the same traffic, with a share of the first candidate's answers changed: calls made
              (only the changed pairs, two orders each), cache hits, and the share of judge
              requests served from the response cache.

    python benchmarks/pairwise_judge.py            # N = 2,000, 10 % changed
    python benchmarks/pairwise_judge.py --quick    # N = 200
"""

import argparse
import json
import sys
import tempfile
import textwrap
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assay.testing.openai_server import OpenAIServer  # noqa: E402


def write(tmp: Path, base_url: str, n: int, changed: float, night: int) -> Path:
    rows = []
    for i in range(n):
        conv = [
            {"role": "system", "content": "You are Acme's support assistant."},
            {"role": "user", "content": f"My order {i} has not arrived. What can you do?"},
            {"role": "assistant", "content": "Let me check the tracking for you."},
            {"role": "user", "content": "Thanks, and can I get a refund if it is lost?"},
        ]
        first = f"Order {i}: a replacement ships today; refund if lost.\nANSWER: Verdict: {'AB'[i % 2]}"
        if night == 2 and i < int(n * changed):
            first = f"Order {i}: replacement and a voucher, refund if lost.\nANSWER: Verdict: A"
        second = f"Order {i} is on its way." if i % 3 else f"Incumbent reply to order {i}."
        rows.append(
            {
                "example_id": f"c{i:06d}",
                "messages": json.dumps(conv),
                "output": f"Incumbent reply to order {i}.",
                "cand_a": first,
                "cand_b": second,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), tmp / "traffic.parquet")
    cfg = tmp / "pipelines.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        artifacts: {tmp}/runs
        cache_dir: {tmp}/cache
        models:
          incumbent: {{provider: replay, output_column: output}}
          cand-a: {{provider: replay, output_column: cand_a}}
          cand-b: {{provider: replay, output_column: cand_b}}
          grader: {{provider: openai, model: mock-model, base_url: "{base_url}", max_concurrency: 64,
                   price: {{input_per_mtok: 2.5, output_per_mtok: 10}}}}
        pipelines:
          nightly:
            dataset: {{source: traffic.parquet, id: example_id}}
            prompt: {{messages: messages}}
            models: [incumbent, cand-a, cand-b]
            metrics: [{{name: pairwise, judge: grader, against: incumbent}}]
            bootstrap: 200
    """)
    )
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--changed", type=float, default=0.10)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n = 200 if a.quick else a.n
    from assay.stages import run_local

    candidates = 2
    bound = 2 * candidates * n
    with tempfile.TemporaryDirectory() as d, OpenAIServer(latency=0.002) as srv:
        tmp = Path(d)
        cfg = write(tmp, srv.base_url, n, a.changed, 1)
        ctx = run_local(str(cfg), "nightly", date(2026, 11, 6))
        calls1 = srv.stats(include_prompts=False)["requests_total"]
        score = ctx.folder.manifest()["stages"]["score"]
        usage1 = score["judges"]["pairwise"]
        identical = sum(1 for i in range(n) if i % 3 == 0)  # cand-b equals the incumbent there: a tie, no call
        print(f"night 1: {n} conversations × {candidates} candidates × 2 orders")
        print(
            f"  judge calls made   {calls1:>8,}   bound {bound:,}   ({calls1 / bound:.3f} of the bound; target <= 1)"
            f"   {'OK' if calls1 <= bound else 'OVER'}"
        )
        print(f"  by candidate       {usage1.get('calls_by_model')}   (cand-b: {identical:,} identical answers need none)")
        print(f"  score stage        {score['seconds']:.2f} s")
        write(tmp, srv.base_url, n, a.changed, 2)
        ctx2 = run_local(str(cfg), "nightly", date(2026, 11, 7))
        calls2 = srv.stats(include_prompts=False)["requests_total"] - calls1
        usage2 = ctx2.folder.manifest()["stages"]["score"]["judges"]["pairwise"]
        expected = 2 * int(n * a.changed)
        print(f"night 2: {a.changed:.0%} of cand-a's answers changed")
        print(
            f"  judge calls made   {calls2:>8,}   expected {expected:,} (the changed pairs, two orders each)"
            f"   {'OK' if calls2 == expected else 'MISMATCH'}"
        )
        print(
            f"  cache hits         {usage2['cache_hits']:>8,}   of {usage2['requests']:,} judge requests "
            f"({usage2['cache_hits'] / max(1, usage2['requests']):.1%} reused from night 1)"
        )
    return 0 if calls1 <= bound and calls2 == expected else 1


if __name__ == "__main__":
    sys.exit(main())
