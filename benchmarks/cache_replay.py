"""Cache lookups, the single-process SQLite file against the shared segment cache, in one run.

A replay of a cached run looks up every request's key at once (``get_many``). With N keys
(default 20,000) cached, each side is timed on the same keys, taking turns (``--reps`` rounds, best
time each):

* sqlite    ``ResponseCache`` (one SQLite file, today's cache of single-process runs): open + get_many.
* segments  ``SegmentCache`` with a warm local index (a machine that has read the segments before,
            the case of every run after the first): open (which lists the segment folder) + get_many.
* cold      ``SegmentCache`` on a machine that has never read the folder: open (list, read every
            segment into a new local index) + get_many. Paid once per machine and folder.

Target: segments/sqlite <= 1.05 (a lookup must not get slower). Local folders; the same code reads
an s3:// folder through fsspec (tests/calling/test_cache.py).

    python benchmarks/cache_replay.py [--n 20000] [--reps 5]
"""

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assay.cache import ResponseCache, SegmentCache, cache_key  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args(argv)
    rng = random.Random(0)
    identity = {"provider": "openai", "model": "mock-model", "params": {"temperature": 0}}
    items = [
        (
            cache_key(identity, [{"role": "user", "content": f"ticket {i}"}]),
            {
                "output": rng.choice(["billing", "technical", "account"]),
                "prompt_tokens": 30 + i % 7,
                "completion_tokens": 1,
                "cached_tokens": 0,
                "cache_write_tokens": 0,
                "latency_s": 0.05,
                "started_at": 1.7e9 + i,
            },
        )
        for i in range(a.n)
    ]
    keys = [k for k, _ in items]
    rng.shuffle(keys)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        old = ResponseCache(str(tmp / "responses.sqlite"))
        old.put_many(items)
        old.close()
        segs = str(tmp / "segments")
        w = SegmentCache(segs, index_dir=str(tmp / "index-writer"))
        for lo in range(0, a.n, 500):  # as the engine stores them: a chunk at a time, a segment per 20,000
            w.put_many(items[lo : lo + 500])
        w.close()
        warm_index = str(tmp / "index-warm")
        SegmentCache(segs, index_dir=warm_index).close()

        def sqlite():
            c = ResponseCache(str(tmp / "responses.sqlite"))
            n = len(c.get_many(keys))
            c.close()
            return n

        def segments():
            c = SegmentCache(segs, index_dir=warm_index)
            n = len(c.get_many(keys))
            c.close()
            return n

        def cold():
            idx = tmp / "index-cold"
            shutil.rmtree(idx, ignore_errors=True)
            c = SegmentCache(segs, index_dir=str(idx))
            n = len(c.get_many(keys))
            c.close()
            return n

        times = {"sqlite": [], "segments": [], "cold": []}
        for _ in range(a.reps):
            for name, fn in (("sqlite", sqlite), ("segments", segments), ("cold", cold)):
                t0 = time.perf_counter()
                found = fn()
                times[name].append(time.perf_counter() - t0)
                assert found == a.n, (name, found)
    best = {k: min(v) for k, v in times.items()}
    print(f"cache     {a.n:,} keys looked up at once, best of {a.reps}:")
    print(f"          sqlite (one file, single-process runs): {best['sqlite'] * 1000:.1f} ms")
    print(
        f"          segments, warm local index:              {best['segments'] * 1000:.1f} ms "
        f"-> {best['segments'] / best['sqlite']:.2f} of sqlite (limit 1.05) {'OK' if best['segments'] <= 1.05 * best['sqlite'] else 'MISSED'}"
    )
    print(
        f"          segments, new machine (index rebuilt):   {best['cold'] * 1000:.1f} ms "
        f"-> {best['cold'] / best['sqlite']:.2f} of sqlite (once per machine)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
