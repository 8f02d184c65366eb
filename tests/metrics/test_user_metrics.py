"""User metrics per example: plain functions (in process, async, in worker processes with time and
memory limits), evaluate modules that return per-example lists, the bounded bootstrap of
corpus-only modules, and the pass_at_k code-execution metric."""

import math
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pytest

from assay.config import MetricSpec
from assay.metrics import build_metric
from assay.metrics.code import PassAtK, extract_code, pass_at_k_estimate
from assay.scoring import MIN_CORPUS_RESAMPLES, score
from tests.conftest import write_config

FUNCS = """
import asyncio, time

def score(output, reference, row, bonus=0.0):
    if output == "boom":
        raise RuntimeError("cannot score this")
    if output == "hang":
        time.sleep(60)
    if output == "hog":
        blob = bytearray(1500 * 2 ** 20)
        return len(blob)
    if output == "text":
        return "not a number"
    return {"match": float(output == reference) + bonus, "chars": len(output), "lang_de": row.get("lang") == "de"}

def plain(output, reference, row):
    return output == reference

async def judged(output, reference, row):
    await asyncio.sleep(0.001)
    if output == "hang":
        await asyncio.sleep(60)
    return 1.0 if output == reference else 0.0
"""


@pytest.fixture
def funcs(tmp_path):
    (tmp_path / "my_metrics.py").write_text(FUNCS)
    return tmp_path


def dataset(n, refs=None, **cols):
    return pa.table({"example_id": [f"e{i:03d}" for i in range(n)], "reference": refs or ["a"] * n, **cols})


def responses(outputs, model="M"):
    n = len(outputs)
    return pa.table(
        {
            "example_id": [f"e{i:03d}" for i in range(n)],
            "model": [model] * n,
            "output": outputs,
            "error": [None if o is not None else "HTTP 500" for o in outputs],
        }
    )


def test_function_metric_in_process_named_scores_and_score_errors(funcs):
    m = build_metric(
        MetricSpec(path="my_metrics.py", function="score", args={"bonus": 0.5, "higher_is_better": {"chars": False}}),
        base_dir=str(funcs),
    )
    ds = dataset(5, lang=["de", "en", "de", "en", "de"])
    res = score(ds, responses(["a", "b", "boom", None, "text"]), {"score": m}, ["lang"], resamples=100)
    mt = res.metrics.set_index(["metric", "slice"])
    assert set(res.metrics.metric) == {"score.match", "score.chars", "score.lang_de"}
    # match: 1.5, 0.5, (error), 0 (failed call), (error) -> mean of 3
    assert mt.loc[("score.match", "all"), "value"] == pytest.approx((1.5 + 0.5 + 0) / 3)
    assert mt.loc[("score.match", "all"), "score_errors"] == 2 and mt.loc[("score.match", "all"), "errors"] == 1
    assert bool(mt.loc[("score.chars", "all"), "higher_is_better"]) is False
    assert mt.loc[("score.chars", "all"), "value"] == pytest.approx(1.0)  # the failed call has no length: left out
    # the row reaches the function: lang_de is 1 on the German rows that scored
    assert mt.loc[("score.lang_de", "lang=de"), "value"] == pytest.approx(1.0)
    sc = res.scores[res.scores.metric == "score.match"].set_index("example_id")
    assert sc.loc["e002", "score_error"] == "RuntimeError: cannot score this" and math.isnan(sc.loc["e002", "value"])
    assert "not a number" in sc.loc["e004", "score_error"] and sc.loc["e000", "score_error"] is None


def test_function_metric_by_module_name(funcs, monkeypatch):
    monkeypatch.syspath_prepend(str(funcs))
    m = build_metric(MetricSpec(function="my_metrics:plain"))
    assert m.name == "plain" and m.score_each(["a", "b"], ["a", "a"]).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        build_metric(MetricSpec(function="my_metrics:nope"))


def test_async_function_metric_with_a_timeout(funcs):
    m = build_metric(MetricSpec(path="my_metrics.py", function="judged", timeout_s=0.5, workers=8), base_dir=str(funcs))
    assert m.is_async and not m.in_workers()
    t = time.perf_counter()
    r = m.score_examples(["a"] * 20 + ["hang"], ["a"] * 21, None)
    assert time.perf_counter() - t < 5
    assert r.values[""][:20].tolist() == [1.0] * 20 and math.isnan(r.values[""][20])
    assert r.errors[20] == "timed out after 0.5 s"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="memory limits are enforced on Linux")
def test_worker_processes_time_out_and_limit_memory_without_crashing(funcs):
    m = build_metric(
        MetricSpec(path="my_metrics.py", function="score", workers=2, timeout_s=3, memory_mb=300), base_dir=str(funcs)
    )
    assert m.in_workers()
    t = time.perf_counter()
    r = m.score_examples(["a", "hang", "hog", "boom", "b", "a"], ["a"] * 6, [{"lang": "de"}] * 6)
    elapsed = time.perf_counter() - t
    assert elapsed < 20, elapsed  # the hung example is killed at 3 s, not waited for
    assert r.values["match"].tolist()[:1] == [1.0] and r.values["match"][4] == 0.0 and r.values["match"][5] == 1.0
    assert r.errors[1] == "timed out after 3 s"
    assert "MemoryError" in r.errors[2] or "died" in r.errors[2]
    assert r.errors[3] == "RuntimeError: cannot score this"
    assert r.errors[0] is None and r.errors[5] is None


def test_worker_processes_are_faster_than_one(funcs):
    (funcs / "slow.py").write_text("import time\ndef slow(o, r, row):\n    time.sleep(0.4)\n    return 1\n")
    one = build_metric(MetricSpec(path="slow.py", function="slow", workers=1), base_dir=str(funcs))
    four = build_metric(MetricSpec(path="slow.py", function="slow", workers=4), base_dir=str(funcs))
    t = time.perf_counter()
    one.score_examples(["x"] * 20, ["x"] * 20, None)
    t1 = time.perf_counter() - t
    t = time.perf_counter()
    four.score_examples(["x"] * 20, ["x"] * 20, None)
    t4 = time.perf_counter() - t
    # 20 x 0.4 s one at a time, against 5 x 0.4 s plus starting the workers (which a loaded machine slows)
    assert t1 > 8 and t4 < 0.6 * t1, (t1, t4)


def test_config_checks_function_metrics(tmp_path, funcs):
    from assay.config import ConfigError
    from assay.preflight import load_checked

    (funcs / "data.csv").write_text("id,text,label\n1,a,a\n")
    cfg = funcs / "pipelines.yaml"
    cfg.write_text("""
models:
  m: {provider: replay, output_column: text}
pipelines:
  p:
    dataset: {source: data.csv, id: id, reference: label}
    models: [m]
    metrics:
      - {path: my_metrics.py, function: score}
      - {path: my_metrics.py, function: nope}
      - {path: missing.py, function: score}
      - {name: accuracy, workers: 2}
      - {path: my_metrics.py, function: judged, memory_mb: 100}
    gates: {score.match: {min: 0.5}, other: {min: 1}}
""")
    with pytest.raises(ConfigError) as e:
        load_checked(str(cfg))
    text = e.value.format()
    assert "metrics[1].function" in text and "no attribute 'nope'" in text
    assert "metrics[2].path" in text and "metric file not found" in text
    assert "workers applies to per-example metrics" in text
    assert "memory_mb needs worker processes" in text
    assert "gate on metric 'other'" in text and "'score.match'" not in text


# ------------------------------------------------------------------------------------------------ evaluate modules

PER_EXAMPLE_MODULE = """
import datasets
import evaluate


class Overlap(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="per-example overlap", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        per = [float(p == r) for p, r in zip(predictions, references)]
        return {"overlap": sum(per) / len(per), "per_example": per}
"""


@pytest.fixture
def overlap_module(tmp_path, monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.setenv(var, "1")
    (tmp_path / "overlap.py").write_text(PER_EXAMPLE_MODULE)
    return tmp_path


def test_evaluate_module_with_a_per_example_list_is_scored_per_example(overlap_module):
    per = build_metric(MetricSpec(path="overlap.py", args={"key": "per_example"}), base_dir=str(overlap_module))
    rng = np.random.default_rng(0)
    n = 300
    refs = [str(x) for x in rng.choice(list("abc"), n)]
    outs = [r if rng.random() < 0.7 else "z" for r in refs]
    ds = dataset(n, refs=refs, half=["x" if i % 2 else "y" for i in range(n)])
    res = score(ds, responses(outs), {"overlap": per}, ["half"], resamples=1000)
    assert per.decomposable and per.computations == 1  # one computation, whatever the resamples and slices
    row = res.metrics[res.metrics.slice == "all"].iloc[0]
    assert row["value"] == pytest.approx(np.mean([o == r for o, r in zip(outs, refs)]))
    assert row["resamples"] == 1000 and row["se"] > 0 and not math.isnan(row["wilson_low"])
    assert len(res.scores) == n


AGGREGATE_MODULES = {
    # a mean that only returns its aggregate, at a cost per example (a subprocess, a service, ...)
    "slow_mean": """
        total = 0.0
        for p, r in zip(predictions, references):
            time.sleep(0.002)
            total += float(p == r)
        return {"acc": total / len(predictions)}
    """,
    # macro-F1 over the reference labels: not a mean of per-example values; each computation costs 20 ms
    "macro": """
        time.sleep(0.02)
        f1 = []
        for lab in sorted(set(references)):
            tp = sum(1 for p, r in zip(predictions, references) if p == r == lab)
            fp = sum(1 for p, r in zip(predictions, references) if p == lab != r)
            fn = sum(1 for p, r in zip(predictions, references) if r == lab != p)
            f1.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
        return {"macro_f1": sum(f1) / len(f1)}
    """,
    # a rank correlation needs at least two examples: it fails on any single one
    "pairs_only": """
        if len(predictions) < 2:
            raise ValueError("needs at least two examples")
        return {"acc": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}
    """,
    # a mean, but one example hangs and another raises when computed alone
    "flaky": """
        if predictions == ["hang"]:
            time.sleep(30)
        if predictions == ["boom"]:
            raise RuntimeError("cannot score boom alone")
        return {"acc": sum(p == r for p, r in zip(predictions, references)) / len(predictions)}
    """,
}

AGGREGATE_TEMPLATE = """
import time
import datasets
import evaluate


class Aggregate(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="aggregate only", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
BODY
"""


@pytest.fixture
def aggregate_modules(tmp_path, monkeypatch):
    import textwrap

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.setenv(var, "1")
    for name, body in AGGREGATE_MODULES.items():
        (tmp_path / f"{name}.py").write_text(AGGREGATE_TEMPLATE.replace("BODY", textwrap.indent(textwrap.dedent(body), " " * 8)))

    def build(name, **spec):
        return build_metric(MetricSpec(path=f"{name}.py", **spec), base_dir=str(tmp_path))

    return build


def _two_models(n):
    refs = [["a", "b", "c"][i % 3] for i in range(n)]
    ds = dataset(n, refs=refs, half=["x" if i % 2 else "y" for i in range(n)])
    resp = pa.concat_tables(
        [
            responses([r if i % 4 else "b" for i, r in enumerate(refs)], "A"),
            responses([r if i % 5 else "c" for i, r in enumerate(refs)], "B"),
        ]
    )
    return ds, resp, refs


def test_an_aggregate_only_module_that_is_a_mean_is_scored_per_example(aggregate_modules):
    m = aggregate_modules("slow_mean", workers=2, timeout_s=5)
    n = 120
    ds, resp, refs = _two_models(n)
    res = score(ds, resp, {"acc": m}, ["half"], resamples=1000)
    # two whole computations (one per model), one per example in the workers, and no recomputation after
    assert m.computations == 2 and res.computations == {} and res.budgets == {}
    assert res.probes["acc"]["scored"] == "per example" and "mean of its per-example values" in res.probes["acc"]["note"]
    mt = res.metrics.set_index(["model", "slice"])
    for model, outs in (
        ("A", resp.filter(pa.compute.equal(resp["model"], "A"))["output"].to_pylist()),
        ("B", resp.filter(pa.compute.equal(resp["model"], "B"))["output"].to_pylist()),
    ):
        want = np.mean([o == r for o, r in zip(outs, refs)])
        assert mt.loc[(model, "all"), "value"] == pytest.approx(want, rel=1e-12)
        # the interval is the vectorised bootstrap of the per-example values, on slices too, with the CLT figures
        assert mt.loc[(model, "all"), "resamples"] == 1000 and mt.loc[(model, "half=x"), "resamples"] == 1000
        assert mt.loc[(model, "all"), "se"] > 0 and not math.isnan(mt.loc[(model, "half=x"), "ci_low"])
        assert "scored per example" in mt.loc[(model, "all"), "note"]
    assert len(res.scores) == 2 * n and set(res.scores["value"].unique()) <= {0.0, 1.0}
    c = res.comparisons.iloc[0]
    assert not math.isnan(c["se"]) and c["n"] == n  # the paired CLT statistics need per-example values


def test_an_aggregate_only_module_that_is_not_a_mean_resamples_within_its_time_budget(aggregate_modules):
    m = aggregate_modules("macro", workers=2)
    n = 60
    ds, resp, _ = _two_models(n)
    res = score(ds, resp.filter(pa.compute.equal(resp["model"], "A")), {"f1": m}, [], resamples=1000, budgets_s={"f1": 2.0})
    assert res.probes["f1"]["scored"] == "whole set, resampled"
    assert "not a mean of per-example values" in res.probes["f1"]["note"]
    plan = res.budgets["f1"]
    assert plan["by"] == "time" and plan["computation_s"] >= 0.02
    # the probe's time comes out of the budget; what is left buys whole computations of about 20 ms
    assert MIN_CORPUS_RESAMPLES <= plan["overall"] <= (2.0 - plan["probe_s"]) / 0.02
    row = res.metrics.iloc[0]
    assert row["resamples"] == plan["overall"] and row["ci_low"] <= row["value"] <= row["ci_high"]
    assert "bootstrap_budget_s 2 (one computation" in row["note"] and "not a mean" in row["note"]
    assert m.computations <= plan["overall"] + 2

    # a budget too small for 20 resamples: no interval, and the note says why
    m2 = aggregate_modules("macro", workers=2)
    res = score(ds, resp.filter(pa.compute.equal(resp["model"], "A")), {"f1": m2}, [], resamples=1000, budgets_s={"f1": 0.3})
    row = res.metrics.iloc[0]
    assert row["resamples"] == 0 and math.isnan(row["ci_low"]) and not math.isnan(row["value"])
    assert "no interval: fewer than 20 fit" in row["note"]
    # and the probe, which would have taken longer than the budget, was skipped
    assert res.probes["f1"]["probe_skipped"] and "per-example probe skipped" in row["note"]


def test_an_aggregate_only_module_that_fails_on_single_examples_is_resampled_whole(aggregate_modules):
    m = aggregate_modules("pairs_only", workers=2)
    n = 40
    ds, resp, refs = _two_models(n)
    res = score(ds, resp, {"acc": m}, [], resamples=1000, budgets_s={"acc": 5.0})
    assert res.probes["acc"]["scored"] == "whole set, resampled"
    assert "fails on a single example (ValueError: needs at least two examples)" in res.probes["acc"]["note"]
    row = res.metrics[res.metrics.model == "A"].iloc[0]
    outs = resp.filter(pa.compute.equal(resp["model"], "A"))["output"].to_pylist()
    assert row["value"] == pytest.approx(np.mean([o == r for o, r in zip(outs, refs)]))
    assert row["resamples"] >= MIN_CORPUS_RESAMPLES and not math.isnan(row["ci_low"])
    assert res.scores.empty or "acc" not in set(res.scores["metric"])


def test_the_probe_runs_each_example_under_timeout_s_and_a_failure_means_no_per_example_scores(aggregate_modules):
    m = aggregate_modules("flaky", workers=2, timeout_s=1)
    n = 30
    outs = ["a"] * n
    outs[3], outs[7] = "hang", "boom"
    t = time.perf_counter()
    res = score(dataset(n), responses(outs), {"acc": m}, [], resamples=1000, budgets_s={"acc": 20.0})
    assert time.perf_counter() - t < 20  # the hanging example was stopped at its timeout, not waited for
    note = res.probes["acc"]["note"]
    assert res.probes["acc"]["scored"] == "whole set, resampled" and "2 of 30 examples failed" in note
    assert res.metrics.iloc[0]["value"] == pytest.approx(28 / 30)


# ------------------------------------------------------------------------------------------------ pass_at_k


def test_extract_code_and_the_estimator():
    assert extract_code("Here:\n```python\nx = 1\n```\nthanks") == "x = 1\n"
    assert extract_code("```\ny = 2\n```") == "y = 2\n"
    assert extract_code("z = 3") == "z = 3"
    assert pass_at_k_estimate(5, 0, 1) == 0.0 and pass_at_k_estimate(5, 5, 3) == 1.0
    assert pass_at_k_estimate(4, 2, 1) == pytest.approx(0.5)
    assert pass_at_k_estimate(4, 1, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(4, 2))
    assert math.isnan(pass_at_k_estimate(1, 1, 2))


def test_pass_at_k_runs_candidates_with_their_tests():
    m = build_metric(MetricSpec(name="pass_at_k", workers=3, timeout_s=2))
    assert isinstance(m, PassAtK)
    outs = [
        "```python\ndef add(a, b):\n    return a + b\n```",
        "def add(a, b):\n    return a - b",
        "def add(a, b):\n    while True:\n        pass",
        "def add(a, b) return",
        None,
        "import os\nos._exit(0)",
    ]
    tests = ["assert add(2, 3) == 5"] * 5 + [None]
    t = time.perf_counter()
    r = m.score_examples(outs, tests, None)
    assert time.perf_counter() - t < 10
    v = r.values[""]
    assert v[:5].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0] and math.isnan(v[5])
    assert r.details[0] == "passed" and "AssertionError" in r.details[1] and r.details[2] == "timed out after 2 s"
    assert "SyntaxError" in r.details[3] and r.details[5] == "no tests"
    assert all(e is None for e in r.errors)


def test_pass_at_k_with_samples_uses_the_unbiased_estimator():
    # problem 0: 2 of 4 samples pass; problem 1: 0 of 4; pass@1 = (0.5 + 0) / 2, pass@2 = (1 - 1/6 + 0) / 2
    good, bad = "def f():\n    return 1", "def f():\n    return 2"
    rows = []
    for i, outs in enumerate([[good, bad, good, bad], [bad] * 4]):
        for s, o in enumerate(outs):
            rows.append({"example_id": f"p{i}", "model": "M", "output": o, "error": None, "sample": s})
    ds = pa.table({"example_id": ["p0", "p1"], "reference": ["assert f() == 1"] * 2})
    for k, want in ((1, 0.25), (2, (1 - 1 / 6) / 2)):
        res = score(ds, pa.Table.from_pylist(rows), {"pass": PassAtK(k=k, workers=4)}, [], resamples=50)
        row = res.metrics.iloc[0]
        assert row["value"] == pytest.approx(want) and row["samples"] == 4 and row["n"] == 2


def test_score_stage_reads_every_sample_of_the_responses(tmp_path):
    from datetime import date

    from assay.stages.score import read_scored_responses
    from assay.store import Store

    rf = Store(tmp_path).run("p", date(2026, 1, 1), "r1")
    rows = [
        {"example_id": "e1", "model": "M", "output": o, "error": e, "sample": s}
        for s, (o, e) in enumerate([("a", None), ("b", None), (None, "HTTP 500")])
    ]
    rf.write_table("responses/part-M-00000.parquet", pa.Table.from_pylist(rows))
    # a retried sample: the later success wins over the earlier error
    rf.write_table(
        "responses/part-M-00001.parquet",
        pa.Table.from_pylist([{"example_id": "e1", "model": "M", "output": "c", "error": None, "sample": 2}]),
    )
    t = read_scored_responses(rf).to_pandas().sort_values("sample")
    assert t["sample"].tolist() == [0, 1, 2] and t["output"].tolist() == ["a", "b", "c"]
    # a part written before the sample column existed: one row per (example, model), read as sample 0
    rf2 = Store(tmp_path).run("p", date(2026, 1, 1), "r2")
    from assay.responses import RESPONSE_SCHEMA

    old = pa.schema([f for f in RESPONSE_SCHEMA if f.name != "sample"])
    rf2.write_table(
        "responses/part-M-00000.parquet", pa.Table.from_pylist([{"example_id": "e1", "model": "M", "output": "a"}], schema=old)
    )
    t2 = read_scored_responses(rf2)
    assert t2.num_rows == 1 and t2["sample"].to_pylist() == [0]


def test_assay_run_probes_an_aggregate_only_module_and_says_so(tmp_path, prefect_server, project_root, monkeypatch):
    """A whole ``assay run`` (Prefect flow, the stage's worker processes forked from it): the module
    is found to be a mean, and the log line, metrics.parquet's note and the manifest say so."""
    import json
    import os
    import subprocess
    import textwrap

    import pandas as pd
    from prefect.settings import PREFECT_API_URL

    from assay.store import Store

    body = AGGREGATE_MODULES["slow_mean"]
    (tmp_path / "slow_mean.py").write_text(AGGREGATE_TEMPLATE.replace("BODY", textwrap.indent(textwrap.dedent(body), " " * 8)))
    n = 60
    (tmp_path / "data.csv").write_text("id,text,label\n" + "".join(f"{i},{'ab'[i % 2]},a\n" for i in range(n)))
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          m: {{provider: replay, output_column: text}}
        pipelines:
          p:
            dataset: {{source: data.csv, id: id, reference: label}}
            models: [m]
            metrics: [{{path: slow_mean.py, workers: 2, timeout_s: 5, args: {{key: acc}}}}]
    """,
    )
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "p",
            "--config",
            str(tmp_path / "pipelines.yaml"),
            "--as-of",
            "2026-10-01",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "score: m slow_mean = 0.5000" in r.stderr and "; per example)" in r.stderr, r.stderr[-3000:]
    (run,) = Store(str(tmp_path / "runs")).complete_runs("p")
    probe = json.loads(open(run.path("manifest.json")).read())["stages"]["score"]["aggregate_metrics"]["slow_mean"]
    assert probe["scored"] == "per example" and probe["probe_s"] > 0
    m = pd.read_parquet(run.path("metrics.parquet")).iloc[0]
    assert "scored per example" in m["note"] and m["resamples"] == 1000
