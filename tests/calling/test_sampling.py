"""Repeated sampling (``samples: K``): the config, K real requests per example against the
OpenAI-compatible test server, the cache and resume per (example, sample), the variance split and
``assay plan`` on the produced responses, the exact interval, and pass@k on the code-generation
example."""

import json
import math
import os
import runpy
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import ConfigError, load_config
from assay.preflight import load_checked
from assay.responses import RESPONSE_SCHEMA, read_journal, read_responses
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

DAY = date(2026, 11, 1)
ROOT = Path(__file__).resolve().parents[2]
LABELS = ["billing", "technical", "account"]


FAKE_SERVER = dict(latency=0.002)  # the options of the module's shared fake server (conftest.py's ``server``)


# ------------------------------------------------------------------------------------------------ config

BASE = """
artifacts: runs
models:
  live: {{provider: openai, model: mock-model, base_url: "http://127.0.0.1:9/v1"{live}}}
  other: {{provider: openai, model: gpt-4o, base_url: "http://127.0.0.1:9/v1"}}
  base: {{provider: sklearn{base}}}
pipelines:
  p:
    dataset: {{source: data.parquet, id: id, reference: label}}
    prompt: {{template: "{{text}}"}}
    models: [live, other, base]
    metrics: [accuracy]
    {pipe}
"""


def _load(tmp_path, live: str = "", base: str = "", pipe: str = "", check: bool = True):
    p = write_config(tmp_path, BASE.format(live=live, base=base, pipe=pipe))
    return load_checked(p) if check else load_config(p)


def _problems(tmp_path, **kw) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, **kw)
    return [(path, msg) for path, msg, _line in e.value.problems]


def test_samples_per_model_per_pipeline_and_per_model_in_a_pipeline(tmp_path):
    loaded = _load(tmp_path, live=", samples: 3", check=False)
    p, models = loaded.pipeline("p"), loaded.config.models
    assert [p.samples_of(m, models[m]) for m in ("live", "other", "base")] == [3, 1, 1]
    loaded = _load(tmp_path, live=", samples: 3", pipe="samples: 5", check=False)
    p = loaded.pipeline("p")
    assert [p.samples_of(m, models[m]) for m in ("live", "other", "base")] == [5, 5, 5]  # the pipeline's overrides
    loaded = _load(tmp_path, live=", samples: 3", pipe="samples: {other: 4}", check=False)
    p = loaded.pipeline("p")
    assert [p.samples_of(m, models[m]) for m in ("live", "other", "base")] == [3, 4, 1]


@pytest.mark.parametrize(
    "kw, path, words",
    [
        ({"live": ", samples: 0"}, "models.live.samples", "greater than or equal to 1"),
        ({"live": ", samples: 1001"}, "models.live.samples", "less than or equal to 1000"),
        ({"live": ", samples: two"}, "models.live.samples", "valid integer"),
        ({"base": ", samples: 3"}, "models.base.samples", "samples is an option of provider 'openai'"),
        ({"pipe": "samples: 0"}, "pipelines.p.samples", "between 1 and 1000"),
        ({"pipe": "samples: true"}, "pipelines.p.samples", "whole number of calls per example"),
        ({"pipe": "samples: {live: -2}"}, "pipelines.p.samples", "samples.live must be between 1 and 1000"),
        ({"pipe": "samples: {live: 2.5}"}, "pipelines.p.samples", "samples.live must be a whole number"),
        ({"pipe": "samples: {lve: 2}"}, "pipelines.p.samples.lve", "not one of the pipeline's models (live, other, base)"),
    ],
)
def test_bad_samples_name_their_key_path(tmp_path, kw, path, words):
    found = _problems(tmp_path, **kw)
    assert any(p == path and words in m for p, m in found), found


def test_one_sample_keeps_the_config_hash_and_more_change_it(tmp_path):
    plain = _load(tmp_path, check=False).config_hash("p")
    assert _load(tmp_path, live=", samples: 1", check=False).config_hash("p") == plain
    assert _load(tmp_path, live=", samples: 2", check=False).config_hash("p") != plain
    assert _load(tmp_path, pipe="samples: 2", check=False).config_hash("p") != plain
    assert _load(tmp_path, pipe="samples: {live: 2}", check=False).config_hash("p") != plain


# ------------------------------------------------------------------------------------------------ a sampled run

N = 12
#: per example, the answers the server gives its requests in turn (ANSWERS: [...]): right k of 3 times
RIGHT = [i % 4 for i in range(N)]  # 0..3 right answers of 3 (3 means all)


def _answers(i: int) -> list[str]:
    right, wrong = LABELS[i % 3], LABELS[(i + 1) % 3]
    k = min(RIGHT[i], 3)
    return [right] * k + [wrong] * (3 - k)


def _sampled_config(
    tmp: Path, base_url: str, samples: int = 3, n: int = N, extra_pipe: str = "", concurrency: int = 8, answers: bool = True
) -> Path:
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        text = f"ticket {i} about {label}"
        if answers:
            text += "\nANSWERS: " + json.dumps(_answers(i))
        rows.append({"id": f"e{i:03d}", "text": text, "label": label, "lang": ["en", "de"][i % 2]})
    pq.write_table(pa.Table.from_pylist(rows), tmp / "data.parquet")
    cfg = write_config(
        tmp,
        f"""
        artifacts: {tmp}/runs
        cache_dir: {tmp}/cache
        models:
          live:
            provider: openai
            model: mock-model
            base_url: {base_url}
            params: {{temperature: 0.8, max_tokens: 8}}
            max_concurrency: {concurrency}
            samples: {samples}
            price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
          logged: {{provider: replay, output_column: label, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label, slices: [lang]}}
            prompt: {{system: "labels: billing, technical, account", template: "{{text}}"}}
            models: [live, logged]
            metrics: [accuracy]
            shard_size: 10
            bootstrap: 50
            {extra_pipe}
    """,
    )
    return cfg


def test_a_sampled_run_makes_k_requests_per_example_and_splits_the_variance(tmp_path, server, caplog):
    import logging

    server.reset()
    cfg = _sampled_config(tmp_path, server.base_url, samples=3, extra_pipe="samples: {logged: 3}")
    with caplog.at_level(logging.INFO, logger="assay"):
        ctx = run_local(str(cfg), "p", DAY)
    rf = ctx.folder
    assert server.stats(include_prompts=False)["requests_total"] == 3 * N  # each sample its own request
    resp = read_responses(rf).to_pandas()
    live = resp[resp.model == "live"]
    assert len(live) == 3 * N and live.error.isna().all()
    assert (
        live.groupby("example_id")["sample"].apply(sorted)
        == pd.Series([[0, 1, 2]] * N, index=live.example_id.unique()).sort_index()
    ).all()
    for i in range(N):  # each example's 3 answers are the 3 the server had for it (in whatever order they came)
        got = sorted(live.loc[live.example_id == f"e{i:03d}", "output"])
        assert got == sorted(_answers(i))
    # the replay model answers each example once, and says why
    logged = resp[resp.model == "logged"]
    assert len(logged) == N and (logged["sample"] == 0).all()
    assert any("logged: samples 3 asked, but provider replay answers each example once" in r.getMessage() for r in caplog.records)
    # costs count every request
    costs = rf.read_table("costs.parquet").to_pandas().set_index("model")
    assert costs.loc["live", "requests"] == 3 * N and costs.loc["logged", "requests"] == N
    expected = (live.prompt_tokens.sum() * 1.0 + live.completion_tokens.sum() * 2.0) / 1e6
    assert costs.loc["live", "cost_usd"] == pytest.approx(expected)
    inv = rf.manifest()["stages"]["invoke"]
    assert inv["rows"] == 4 * N and inv["models"]["live"]["samples"] == 3 and inv["models"]["live"]["called"] == 3 * N

    # the variance split, by hand from the responses on disk
    raw = pd.concat([pd.read_parquet(p) for p in Path(rf.url, "responses").glob("part-live-*.parquet")])
    ds = pd.read_parquet(rf.path("dataset.parquet")).set_index("example_id")
    raw["right"] = (raw["output"] == raw["example_id"].map(ds["reference"])).astype(float)
    per = raw.groupby("example_id")["right"]
    means, variances = per.mean(), per.var(ddof=1)
    within = variances.mean()
    between = max(0.0, means.var(ddof=1) - within / 3)
    m = rf.read_table("metrics.parquet").to_pandas().set_index(["model", "metric", "slice"])
    row = m.loc[("live", "accuracy", "all")]
    assert row["value"] == pytest.approx(means.mean()) and row["n"] == N and row["samples"] == 3
    assert row["var_within"] == pytest.approx(within) and row["var_between"] == pytest.approx(between)
    assert row["se"] == pytest.approx(means.std(ddof=1) / math.sqrt(N))  # over examples, never over 3N samples
    assert np.isnan(row["wilson_low"]) and np.isnan(row["exact_low"])  # per-example means are no pass/fail
    rl = m.loc[("logged", "accuracy", "all")]
    assert rl["samples"] == 1 and rl["var_within"] == 0.0 and rl["value"] == 1.0
    assert rl["exact_low"] == pytest.approx(0.025 ** (1 / N)) and rl["exact_high"] == 1.0
    sc = rf.read_table("scores.parquet").to_pandas().set_index(["model", "example_id"])
    assert sc.loc[("live", "e001"), "value"] == pytest.approx(RIGHT[1] / 3) and sc.loc[("live", "e001"), "samples"] == 3

    # the paired comparison's split, and assay plan from it
    c = rf.read_table("comparisons.parquet").to_pandas().iloc[0]
    d = means - 1.0  # live − logged per example (logged is always right)
    assert c["var_within"] == pytest.approx(within)
    assert c["var_between"] == pytest.approx(max(0.0, d.var(ddof=1) - within / 3))
    from assay import stats as ST
    from assay.planning import plan

    t = plan(rf, 0.1, samples=[1, 2, 8]).set_index("samples")
    assert list(t.index) == [1, 2, 3, 8] and (t["samples_run"] == 3).all()
    for k in (1, 2, 3, 8):
        assert t.loc[k, "examples_needed"] == ST.examples_needed(c["var_between"] + c["var_within"] / k, 0.1)
    assert t.loc[1, "examples_needed"] > t.loc[8, "examples_needed"]
    summary = Path(rf.path("summary.md")).read_text()
    assert "exact 95%" in summary and "var within" in summary


def test_a_cached_sampled_run_replays_all_samples(tmp_path, server):
    server.reset()
    cfg = _sampled_config(tmp_path, server.base_url, samples=3)
    first = run_local(str(cfg), "p", DAY)
    assert server.stats(include_prompts=False)["requests_total"] == 3 * N
    again = run_local(str(cfg), "p", DAY, new=True)
    assert server.stats(include_prompts=False)["requests_total"] == 3 * N  # not one request more
    a = read_responses(first.folder).to_pandas().sort_values(["model", "example_id", "sample"]).reset_index(drop=True)
    b = read_responses(again.folder).to_pandas().sort_values(["model", "example_id", "sample"]).reset_index(drop=True)
    assert b[b.model == "live"].cached.all() and (a.output == b.output).all()
    # sample 0 keeps a single call's key: the same config without sampling is all cache hits...
    one = _sampled_config(tmp_path, server.base_url, samples=1)
    single = run_local(str(one), "p", DAY)
    assert server.stats(include_prompts=False)["requests_total"] == 3 * N
    s = read_responses(single.folder).to_pandas()
    s = s[s.model == "live"].set_index("example_id")
    assert len(s) == N and s.cached.all() and (s["sample"] == 0).all()
    a0 = a[(a.model == "live") & (a["sample"] == 0)].set_index("example_id")
    assert (s.output == a0.output.reindex(s.index)).all()
    # ... and more samples pay only for the new ones
    five = _sampled_config(tmp_path, server.base_url, samples=5)
    run_local(str(five), "p", DAY)
    assert server.stats(include_prompts=False)["requests_total"] == 5 * N


def test_a_single_call_runs_cache_key_is_what_it_was():
    from assay.cache import cache_key, key_maker
    from assay.calling.fanout import sample_key

    ident = {"provider": "openai", "model": "m", "params": {}}
    msgs = [{"role": "user", "content": "hi"}]
    k0 = key_maker(ident)(msgs)
    assert k0 == cache_key(ident, msgs) and sample_key(k0, 0) == k0
    assert len({sample_key(k0, s) for s in range(5)}) == 5


RUNNER = """
import sys
from datetime import date
from assay.stages import run_local
run_local(sys.argv[1], "p", date(2026, 11, 1))
"""


def test_kill_then_resume_repays_only_the_calls_in_flight(tmp_path, fake_server):
    n, k, c = 60, 3, 4
    srv = fake_server(latency=0.03)
    cfg = _sampled_config(tmp_path, srv.base_url, samples=k, n=n, concurrency=c, answers=False, extra_pipe="cache: off")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(cfg)], env=env)
    parts_dir = None
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            runs = Store(tmp_path / "runs").runs("p")
            if runs:
                parts_dir = Path(runs[0].url) / "responses"
                if parts_dir.exists() and len(list(parts_dir.glob("part-live-*.parquet"))) >= 3:
                    break
            time.sleep(0.02)
        time.sleep(0.05)  # a few calls journaled beyond the last part
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = srv.stats(include_prompts=False)["requests_total"]
    assert 0 < before < n * k, "the kill must land in the middle of invoke"
    (rf,) = Store(tmp_path / "runs").runs("p")
    parts = pd.concat([pd.read_parquet(p) for p in parts_dir.glob("part-live-*.parquet")])
    journaled, _ = read_journal(rf, "live")
    jt = journaled.to_pandas()
    kept = set(zip(parts.example_id, parts["sample"])) | set(
        zip(jt.loc[jt.error.isna(), "example_id"], jt.loc[jt.error.isna(), "sample"])
    )
    assert {s for _, s in kept} == {0, 1, 2}  # the journal and the parts carry the sample index
    ctx = run_local(str(cfg), "p", DAY)
    after = srv.stats(include_prompts=False)["requests_total"]
    srv.stop()
    assert ctx.resumed
    assert after - before == n * k - len(kept)  # only what was not kept is asked again
    # and what was lost is at most the calls in flight (c) and the finished calls not yet journaled
    # (at most c: the journal writes after every c calls or 0.1 s), as in tests/calling/test_kills.py
    assert before - len(kept) <= 2 * c
    raw = pd.concat([pd.read_parquet(p) for p in (Path(ctx.folder.url) / "responses").glob("part-live-*.parquet")])
    assert len(raw) == n * k and not raw.duplicated(["example_id", "sample"]).any()
    m = ctx.folder.read_table("metrics.parquet").to_pandas().set_index(["model", "slice"])
    assert m.loc[("live", "all"), "samples"] == k and ctx.folder.manifest()["status"] == "complete"


def test_parts_and_journal_lines_from_before_sampling_read_as_sample_0(tmp_path):
    from assay.calling.fanout import Journal
    from assay.responses import dedupe, journal_path

    rf = Store(tmp_path / "runs").run("p", DAY, "r1")
    old = pa.table({"example_id": ["a", "b"], "model": ["m", "m"], "output": ["x", "y"], "error": [None, None]})
    rf.write_table("responses/part-m-00000.parquet", old)
    t = read_responses(rf, "m")
    assert t.schema == RESPONSE_SCHEMA and t["sample"].to_pylist() == [0, 0]
    path = journal_path(rf, "m")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:  # a line as journals were written before the sample index (12 fields)
        f.write(json.dumps(["c", "z", 1, 1, 0, 0, 0.1, 1_700_000_000_000_000, 1, False, None, None]) + "\n")
    j = Journal(rf, "m", ["c"], time.perf_counter(), lambda: None, samples=[2])
    from assay.calling.engine import Chunk

    j(Chunk([0], ["w"], [1], [1], [0], [0], [0.1], [1_700_000_000_000_000], [1], [False], [None], [None]))
    j.close(remove=False)
    got, _ = read_journal(rf, "m")
    assert got["example_id"].to_pylist() == ["c", "c"] and got["sample"].to_pylist() == [0, 2]
    assert got["output"].to_pylist() == ["z", "w"]
    both = dedupe(pa.concat_tables([t, got, got]))
    assert sorted(zip(both["example_id"].to_pylist(), both["sample"].to_pylist())) == [("a", 0), ("b", 0), ("c", 0), ("c", 2)]


# ------------------------------------------------------------------------------------------------ the exact interval


@pytest.mark.parametrize("x, n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (13, 16), (7, 200), (500, 1000), (999, 1000)])
def test_clopper_pearson_matches_scipy_and_statsmodels(x, n):
    from scipy.stats import binomtest
    from statsmodels.stats.proportion import proportion_confint

    from assay.stats import clopper_pearson

    lo, hi = clopper_pearson(x, n)
    ci = binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
    assert lo == pytest.approx(ci.low, abs=1e-10) and hi == pytest.approx(ci.high, abs=1e-10)
    sl, sh = proportion_confint(x, n, alpha=0.05, method="beta")
    assert lo == pytest.approx(sl, abs=1e-10) and hi == pytest.approx(sh, abs=1e-10)
    lo90, hi90 = clopper_pearson(x, n, alpha=0.1)
    ci90 = binomtest(x, n).proportion_ci(confidence_level=0.9, method="exact")
    assert lo90 == pytest.approx(ci90.low, abs=1e-10) and hi90 == pytest.approx(ci90.high, abs=1e-10)


def test_the_exact_interval_is_in_metrics_up_to_1000_examples():
    from scipy.stats import binomtest

    from assay.config.schema import MetricSpec
    from assay.metrics import build_metric
    from assay.scoring import score

    acc = build_metric(MetricSpec(name="accuracy"))
    for n, has in ((40, True), (1000, True), (1001, False)):
        ids = [f"e{i}" for i in range(n)]
        ds = pa.table({"example_id": ids, "reference": ["y"] * n})
        right = (np.arange(n) % 10) < 7
        resp = pa.table(
            {"example_id": ids, "model": ["M"] * n, "output": np.where(right, "y", "n").tolist(), "error": [None] * n}
        )
        row = score(ds, resp, {"accuracy": acc}, [], resamples=0).metrics.iloc[0]
        if has:
            ci = binomtest(int(right.sum()), n).proportion_ci(method="exact")
            assert row["exact_low"] == pytest.approx(ci.low, abs=1e-10) and row["exact_high"] == pytest.approx(ci.high, abs=1e-10)
            assert row["exact_low"] < row["value"] < row["exact_high"]
        else:
            assert np.isnan(row["exact_low"]) and np.isnan(row["exact_high"]) and not np.isnan(row["wilson_low"])


# ------------------------------------------------------------------------------------------------ pass@k on the code example


def _problems_with_answers(tmp: Path) -> tuple[Path, dict[str, int]]:
    """The shipped problems, each with five programs for the server to hand out in turn: c right ones
    (the example's right answer) and 5 − c wrong ones (its wrong answer), c = 0..5 over the problems."""
    made = runpy.run_path(str(ROOT / "data" / "make_codegen.py"), run_name="not_main")
    answers = {p[0]: (p[6], p[7]) for p in made["P"]}
    right_of = {}
    rows = [json.loads(line) for line in (ROOT / "data" / "codegen" / "problems.jsonl").read_text().splitlines() if line.strip()]
    for i, r in enumerate(rows):
        good, bad = answers[r["problem_id"]]
        if r["problem_id"] == "math-gcd":  # its wrong answer never returns: a quick wrong one keeps the test fast
            bad = "def gcd(a, b):\n    return 1"
        c = i % 6
        right_of[r["problem_id"]] = c
        programs = [f"```python\n{good}\n```"] * c + [f"```python\n{bad}\n```"] * (5 - c)
        r["answers"] = json.dumps(programs)
    path = tmp / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, right_of


def test_pass_at_k_with_five_samples_on_the_code_example(tmp_path, server):
    server.reset()
    _, right_of = _problems_with_answers(tmp_path)
    shipped = (ROOT / "data" / "codegen" / "pipelines.yaml").read_text()
    assert "pass_at_k" in shipped  # the example this follows
    pipelines = "".join(
        textwrap.dedent(f"""
      codegen-{k}:
        dataset: {{source: problems.jsonl, id: problem_id, reference: tests, slices: [topic], cluster: family}}
        prompt:
          system: "You write correct, short Python. Answer with one function in a ```python block."
          template: "{{prompt}}\\nANSWERS: {{answers}}"
        models: [coder]
        metrics:
          - {{name: pass_at_k, workers: 4, timeout_s: 5, memory_mb: 512, args: {{k: {k}}}}}
        bootstrap: 100
    """)
        for k in (1, 5)
    )
    cfg = write_config(
        tmp_path,
        textwrap.dedent(f"""
        artifacts: {tmp_path}/runs
        cache_dir: {tmp_path}/cache
        models:
          coder:
            provider: openai
            model: mock-model
            base_url: {server.base_url}
            samples: 5
            params: {{temperature: 0.8, max_tokens: 256}}
        pipelines:
    """)
        + textwrap.indent(pipelines, "  "),
    )
    one = run_local(str(cfg), "codegen-1", DAY)
    five = run_local(str(cfg), "codegen-5", DAY)  # the same requests: all from the cache
    assert server.stats(include_prompts=False)["requests_total"] == 5 * len(right_of)

    def estimate(n, c, k):  # Chen et al. (2021), written out
        return 1.0 - math.comb(n - c, k) / math.comb(n, k) if n - c >= k else 1.0

    for ctx, k in ((one, 1), (five, 5)):
        s = ctx.folder.read_table("scores.parquet").to_pandas().set_index("example_id")
        for pid, c in right_of.items():
            assert s.loc[pid, "value"] == pytest.approx(estimate(5, c, k)), (pid, c, k, s.loc[pid, "detail"])
            assert s.loc[pid, "samples"] == 5
        m = ctx.folder.read_table("metrics.parquet").to_pandas().set_index(["metric", "slice"]).loc[("pass_at_k", "all")]
        want = np.mean([estimate(5, c, k) for c in right_of.values()])
        assert m["value"] == pytest.approx(want) and m["n"] == len(right_of) and m["samples"] == 5
        assert m["n_clusters"] == 8
    # pass@1 is the share of right programs, pass@5 the share of problems with any
    assert np.mean([c / 5 for c in right_of.values()]) == pytest.approx(
        one.folder.read_table("metrics.parquet").to_pandas().query("slice == 'all'")["value"].iloc[0]
    )
    assert five.folder.read_table("metrics.parquet").to_pandas().query("slice == 'all'")["value"].iloc[0] == pytest.approx(
        np.mean([c > 0 for c in right_of.values()])
    )
