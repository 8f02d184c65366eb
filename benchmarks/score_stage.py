"""Score-stage benchmarks: a corpus-only user metric, code execution in worker processes, and a big run.

    python benchmarks/score_stage.py                 # all three (a few minutes on two cores)
    python benchmarks/score_stage.py corpus exec     # some of them
    python benchmarks/score_stage.py --old corpus    # corpus figure with the scoring code of 41d0821 too

Each figure runs in a fresh subprocess (so its peak RSS is its own) and times ``assay.scoring.score``,
the score stage's computation (reading and writing the artifacts adds well under a second).

* corpus: an ``evaluate`` module given by ``path:`` that only returns an aggregate (a mean: the
  probe finds it and scores it per example), on 10,000 examples x 2 models, one slice column of 4
  values, ``bootstrap: 1000``: seconds and how many times the module was computed on a whole set.
* exec: ``pass_at_k`` on 200 problems (each candidate a subprocess), 1 worker against 4.
* big: 100,000 examples x 2 models x 3 built-in metrics (accuracy, exact_match, macro_f1) x 4 slice
  columns, ``bootstrap: 1000``: seconds and peak RSS.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MODULE = """
import datasets
import evaluate

CALLS = {"n": 0}


class Agreement(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="share of predictions equal to their reference", citation="",
                                   inputs_description="", features=datasets.Features(
                                       {"predictions": datasets.Value("string"), "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        CALLS["n"] += 1
        return {"agreement": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}
"""


def _data(n, models, seed=0, slices=1):
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    labels = np.array(["billing", "technical", "account", "shipping", "refund", "other"])
    ref = labels[rng.integers(0, 6, n)]
    cols = {"example_id": [f"x{i:06d}" for i in range(n)], "reference": ref.tolist()}
    for s in range(slices):
        cols[f"s{s}"] = [f"v{v}" for v in rng.integers(0, 4, n)]
    rows = {"example_id": [], "model": [], "output": [], "error": []}
    for m, acc in models:
        out = np.where(rng.random(n) < acc, ref, labels[rng.integers(0, 6, n)])
        rows["example_id"] += cols["example_id"]
        rows["model"] += [m] * n
        rows["output"] += out.tolist()
        rows["error"] += [None] * n
    return pa.table(cols), pa.table(rows)


def corpus(old: bool = False):
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_EVALUATE_OFFLINE"] = "1"
    from assay.config import MetricSpec
    from assay.metrics import build_metric

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "agreement.py").write_text(MODULE)
        metric = build_metric(MetricSpec(path="agreement.py", args={"key": "agreement"}), base_dir=tmp)
        ds, resp = _data(10_000, [("A", 0.8), ("B", 0.75)])
        if old:
            import importlib.util

            src = subprocess.run(
                ["git", "-C", str(ROOT), "show", "41d0821:assay/scoring.py"], capture_output=True, text=True, check=True
            ).stdout
            Path(tmp, "old_scoring.py").write_text(src)
            spec = importlib.util.spec_from_file_location("old_scoring", Path(tmp, "old_scoring.py"))
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            score = mod.score
        else:
            from assay.scoring import score
        module_calls = sys.modules[metric.module.__module__].CALLS if hasattr(metric.module, "__module__") else None
        t = time.perf_counter()
        res = score(ds, resp, {"agreement": metric}, ["s0"], resamples=1000, seed=0)
        dt = time.perf_counter() - t
        calls = module_calls["n"] if module_calls is not None else metric.computations
        out = {
            "figure": "corpus-only evaluate module, 10,000 examples x 2 models, 1 slice column (4 values), bootstrap 1000",
            "code": "41d0821" if old else "this",
            "seconds": round(dt, 2),
            "module_computations": calls,
        }
        if not old:  # a mean of per-example values: probed, then scored per example (no budget); else its budget
            out["resamples"] = res.budgets.get("agreement") or int(res.metrics["resamples"].iloc[0])
            out["scored"] = (res.probes.get("agreement") or {}).get("scored")
        return out


def exec_(workers: int):
    import pyarrow as pa

    from assay.metrics.code import PassAtK
    from assay.scoring import score

    n = 200
    outs, tests = [], []
    for i in range(n):
        right = i % 4 != 0
        outs.append(f"def f(x):\n    return x * {i} + {0 if right else 1}\n")
        tests.append(f"assert f(3) == {3 * i}\nassert f(0) == 0\n")
    ds = pa.table({"example_id": [f"p{i:03d}" for i in range(n)], "reference": tests})
    resp = pa.table(
        {"example_id": [f"p{i:03d}" for i in range(n)], "model": ["M"] * n, "output": outs, "error": pa.nulls(n, pa.string())}
    )
    t = time.perf_counter()
    res = score(ds, resp, {"pass_at_k": PassAtK(workers=workers, timeout_s=10)}, [], resamples=1000)
    dt = time.perf_counter() - t
    return {
        "figure": f"pass_at_k, 200 problems, {workers} worker(s)",
        "seconds": round(dt, 2),
        "value": float(res.metrics.iloc[0]["value"]),
    }


def big():
    import resource

    from assay.metrics.classification import Accuracy, ExactMatch, MacroF1
    from assay.scoring import score

    ds, resp = _data(100_000, [("A", 0.8), ("B", 0.78)], slices=4)
    t = time.perf_counter()
    score(
        ds,
        resp,
        {"accuracy": Accuracy(), "exact_match": ExactMatch(), "macro_f1": MacroF1()},
        ["s0", "s1", "s2", "s3"],
        resamples=1000,
        seed=0,
    )
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    return {
        "figure": "100,000 examples x 2 models x 3 built-in metrics x 4 slice columns (4 values each), bootstrap 1000",
        "seconds": round(dt, 1),
        "peak_rss_mb": round(rss),
    }


def _child(name: str, arg: str | None):
    sys.path.insert(0, str(ROOT))
    fn = {"corpus": lambda: corpus(arg == "old"), "exec": lambda: exec_(int(arg)), "big": big}[name]
    print(json.dumps(fn()))


def main(argv):
    old = "--old" in argv
    names = [a for a in argv if not a.startswith("--")] or ["corpus", "exec", "big"]
    jobs = []
    for name in names:
        if name == "corpus":
            jobs += [("corpus", "old")] if old else []
            jobs += [("corpus", "new")]
        elif name == "exec":
            jobs += [("exec", "1"), ("exec", "4")]
        else:
            jobs += [(name, None)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    for name, arg in jobs:
        r = subprocess.run([sys.executable, __file__, "--child", name, arg or ""], capture_output=True, text=True, env=env)
        line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-2000:]
        print(line, flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3] or None)
    else:
        main(sys.argv[1:])
