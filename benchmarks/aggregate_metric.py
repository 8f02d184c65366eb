"""Score stage with an ``evaluate`` module that only returns an aggregate, costing ``t`` per example.

Two modules, each run as a real pipeline (replay model, ``metrics: [{path: ..., workers: 4}]``)
through ``assay.stages.run_local``; the figure is the score stage's own time from the run's
manifest (``stages.score.seconds``), against one whole-set computation of the module measured in
the same process just before:

* mean:     ``{"acc": correct / n}``, a mean of per-example values. Limit: 2.5 x (one whole-set
            computation) + 1 s (the stage computes the whole set once per model and each example
            once, in 4 forked workers, then never again).
* not mean: macro-F1 over the labels. Limit: ``bootstrap_budget_s`` + 2 x (one computation)
            (the probe and the resamples share the time budget).

``evaluate`` itself is imported before the runs: it imports torch and transformers (about 4 s
here), once per process whatever the module costs.

    python benchmarks/aggregate_metric.py                          # t = 5 ms, 200 examples, budget 25 s
    python benchmarks/aggregate_metric.py --t 0.002 --budget 10    # quicker
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import textwrap
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODULE = """
import time
import datasets
import evaluate

T = {t!r}


class Aggregate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="aggregate only", citation="", inputs_description="",
                                   features=datasets.Features({{"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}}))

    def _compute(self, predictions, references):
        time.sleep(T * len(predictions))  # a subprocess, a service call, ... per example
{body}
"""

MEAN = """
        return {"acc": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}
"""

MACRO_F1 = """
        f1 = []
        for lab in sorted(set(references)):
            tp = sum(1 for p, r in zip(predictions, references) if p == r == lab)
            fp = sum(1 for p, r in zip(predictions, references) if p == lab != r)
            fn = sum(1 for p, r in zip(predictions, references) if r == lab != p)
            f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"macro_f1": sum(f1) / len(f1)}
"""


def _write(d: Path, n: int, t: float, body: str, key: str, workers: int, budget: float) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    labels = ["billing", "refund", "other"]
    ids = list(range(n))
    refs = [labels[i % 3] for i in ids]
    outs = [r if i % 4 else labels[(i + 1) % 3] for i, r in enumerate(refs)]
    pq.write_table(pa.table({"id": ids, "text": ["t"] * n, "label": refs}), d / "data.parquet")
    pq.write_table(pa.table({"id": ids, "output": outs}), d / "log.parquet")
    (d / "module.py").write_text(MODULE.format(t=t, body=textwrap.indent(textwrap.dedent(body), " " * 8)))
    cfg = d / "pipelines.yaml"
    cfg.write_text(
        textwrap.dedent(f"""
        artifacts: {d}/runs
        models:
          m: {{provider: replay, source: log.parquet, price: {{input_per_mtok: 1.0, output_per_mtok: 1.0}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            models: [m]
            metrics: [{{path: module.py, workers: {workers}, bootstrap_budget_s: {budget}, args: {{key: {key}}}}}]
            cache: off
    """)
    )
    return cfg


def _one_computation(d: Path, n: int) -> float:
    """One whole-set computation of the module, median of three."""
    import evaluate
    import pyarrow.parquet as pq

    m = evaluate.load(str(d / "module.py"), keep_in_memory=True)
    refs = pq.read_table(d / "data.parquet")["label"].to_pylist()
    outs = pq.read_table(d / "log.parquet")["output"].to_pylist()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        m.compute(predictions=outs, references=refs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def case(name: str, body: str, key: str, n: int, t: float, workers: int, budget: float) -> dict:
    from assay.stages import run_local

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cfg = _write(d, n, t, body, key, workers, budget)
        one = _one_computation(d, n)
        ctx = run_local(str(cfg), "p", date(2026, 11, 1))
        manifest = ctx.folder.manifest()
        stage = manifest["stages"]["score"]
        seconds = float(stage["seconds"])
        how = (stage.get("aggregate_metrics") or {}).get("module", {})
        plan = (stage.get("bootstrap_budgets") or {}).get("module", {})
        import pandas as pd

        row = pd.read_parquet(ctx.folder.path("metrics.parquet")).iloc[0]
    limit = 2.5 * one + 1.0 if name == "mean" else budget + 2 * one
    print(
        f"{name:9s} n={n} t={t * 1000:g} ms workers={workers}: score stage {seconds:.2f} s, one whole-set computation "
        f"{one:.2f} s -> limit {limit:.2f} s ({seconds / limit:.2f} of it) {'OK' if seconds <= limit else 'MISSED'}; "
        f"scored {how.get('scored')}, probe {how.get('probe_s', 0):.2f} s, resamples {int(row['resamples'])}"
        + (f" (bootstrap_budget_s {budget:g})" if plan else "")
    )
    return {
        "case": name,
        "n": n,
        "t": t,
        "workers": workers,
        "budget_s": budget,
        "score_s": seconds,
        "one_s": one,
        "limit_s": limit,
        "scored": how.get("scored"),
        "probe_s": how.get("probe_s"),
        "resamples": int(row["resamples"]),
        "note": row["note"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("which", nargs="*", default=["mean", "not-mean"])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--t", type=float, default=0.005, help="seconds per example of one computation")
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--budget", type=float, default=25.0, help="bootstrap_budget_s of the run")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_EVALUATE_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    t0 = time.perf_counter()
    import evaluate  # noqa: F401  (torch and transformers: once per process, not the module's cost)

    print(f"import evaluate: {time.perf_counter() - t0:.1f} s (before the runs)")
    out = []
    if "mean" in a.which:
        out.append(case("mean", MEAN, "acc", a.n, a.t, a.workers, a.budget))
    if "not-mean" in a.which:
        out.append(case("not-mean", MACRO_F1, "macro_f1", a.n, a.t, a.workers, a.budget))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=2, default=str))
    return 0 if all(r["score_s"] <= r["limit_s"] for r in out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
