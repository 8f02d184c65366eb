"""The invoke stage against a real OpenAI-compatible server started on 127.0.0.1.

Retries, the response cache, resume after kill -9, concurrency and rate limits, and
secrets that must never reach an artifact.
"""

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.responses import read_responses
from assay.runs import RunFailed, start_run
from assay.stages import run_local
from assay.store import Store
from tests.conftest import write_config

LABELS = ["billing", "technical", "account"]
DAY = date(2026, 11, 1)


def make_dataset(path: Path, n: int, triggers: dict[int, str] | None = None) -> Path:
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        text = f"ticket {i} about {label} please help"
        if triggers and i in triggers:
            text += f" TRIGGER:{triggers[i]}"
        rows.append({"id": f"e{i:05d}", "text": text, "label": label, "lang": "en" if i % 2 else "de"})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def make_config(
    tmp_path: Path, base_url: str, extra_model: str = "", pipeline_extra: str = "", n: int = 40, triggers=None
) -> Path:
    make_dataset(tmp_path / "data.parquet", n, triggers)
    text = f"""
    artifacts: {tmp_path}/runs
    cache_dir: {tmp_path}/cache
    models:
      fake:
        provider: openai
        model: mock-model
        base_url: {base_url}
        api_key_env: ASSAY_TEST_KEY
        params: {{temperature: 0, max_tokens: 8}}
        max_concurrency: 8
        max_attempts: 3
        price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
        {extra_model}
    pipelines:
      p:
        dataset: {{source: data.parquet, id: id, reference: label, slices: [lang]}}
        prompt:
          system: "labels: billing, technical, account"
          template: "{{text}}"
        models: [fake]
        metrics: [accuracy]
        shard_size: 10
        bootstrap: 50
        {pipeline_extra}
    """
    p = write_config(tmp_path, text)
    return p


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test-SECRET-5f3a9c")


FAKE_SERVER = dict(latency=0.005)  # the options of the module's shared fake server (conftest.py's ``server``)


def test_openai_provider_end_to_end(tmp_path, server):
    server.reset()
    cfg = make_config(tmp_path, server.base_url)
    ctx = run_local(str(cfg), "p", DAY)
    rf = ctx.folder
    resp = read_responses(rf).to_pandas()
    assert len(resp) == 40 and resp["example_id"].is_unique
    assert (resp["error"].isna()).all()
    assert (resp["output"] == pd.Series([LABELS[int(e[1:]) % 3] for e in resp["example_id"]])).all()
    assert (resp["prompt_tokens"] > 0).all() and (resp["completion_tokens"] >= 1).all()
    assert (resp["latency_s"] > 0).all() and (resp["attempts"] == 1).all() and not resp["cached"].any()
    assert resp["started_at"].notna().all()
    metrics = rf.read_table("metrics.parquet").to_pandas()
    acc = metrics[(metrics.metric == "accuracy") & (metrics.slice == "all")].iloc[0]
    assert acc.value == 1.0 and acc.n == 40
    assert set(metrics.slice) == {"all", "lang=de", "lang=en"}
    costs = rf.read_table("costs.parquet").to_pandas().set_index("model")
    expected = (resp.prompt_tokens.sum() * 1.0 + resp.completion_tokens.sum() * 2.0) / 1e6
    assert costs.loc["fake", "cost_usd"] == pytest.approx(expected)
    assert server.stats()["had_auth"] >= 40
    manifest = rf.manifest()
    assert manifest["status"] == "complete"
    assert set(manifest["stages"]) >= {"load", "invoke", "score", "cost", "report"}


def test_retries_and_non_retryable_errors(tmp_path, server):
    server.reset()
    triggers = {0: "500", 1: "429", 2: "400", 3: "401"}
    cfg = make_config(tmp_path, server.base_url, pipeline_extra="max_error_rate: 0.2", triggers=triggers)
    ctx = run_local(str(cfg), "p", DAY)
    resp = read_responses(ctx.folder).to_pandas().set_index("example_id")
    assert resp.loc["e00000", "attempts"] == 2 and pd.isna(resp.loc["e00000", "error"])
    assert resp.loc["e00001", "attempts"] == 2 and pd.isna(resp.loc["e00001", "error"])
    assert resp.loc["e00002", "attempts"] == 1 and "400" in resp.loc["e00002", "error"]
    assert resp.loc["e00003", "attempts"] == 1 and "401" in resp.loc["e00003", "error"]
    metrics = ctx.folder.read_table("metrics.parquet").to_pandas()
    acc = metrics[(metrics.metric == "accuracy") & (metrics.slice == "all")].iloc[0]
    assert acc.errors == 2 and acc.value == pytest.approx(38 / 40)  # failed calls count as wrong


def test_too_many_errors_fails_the_run_and_keeps_artifacts(tmp_path, server):
    server.reset()
    triggers = {i: "400" for i in range(10)}
    cfg = make_config(tmp_path, server.base_url, triggers=triggers)  # default max_error_rate 10%
    with pytest.raises(RunFailed, match="max_error_rate"):
        run_local(str(cfg), "p", DAY)
    run = Store(tmp_path / "runs").runs("p")[0]
    m = run.manifest()
    assert m["status"] == "failed" and m["error"]["stage"] == "invoke"
    assert read_responses(run).num_rows == 40


def test_cache_makes_no_call_twice(tmp_path, server):
    server.reset()
    cfg = make_config(tmp_path, server.base_url)
    run_local(str(cfg), "p", DAY)
    assert server.stats()["requests_total"] == 40
    ctx = run_local(str(cfg), "p", DAY)
    assert server.stats()["requests_total"] == 40  # all from the cache
    resp = read_responses(ctx.folder).to_pandas()
    assert resp["cached"].all() and (resp["attempts"] == 0).all()
    run_local(str(cfg), "p", DAY, cache_mode="refresh")
    assert server.stats()["requests_total"] == 80
    run_local(str(cfg), "p", DAY, cache_mode="off")
    assert server.stats()["requests_total"] == 120


def test_the_prompt_version_is_part_of_the_cache_key(tmp_path, server):
    """A new prompt.version is a new prompt: a cached run calls the model again, although the
    rendered messages are the same."""
    server.reset()
    cfg = make_config(tmp_path, server.base_url)
    text = cfg.read_text()
    cfg.write_text(text.replace('template: "{text}"', 'template: "{text}"\n      version: v1'))
    run_local(str(cfg), "p", DAY)
    run_local(str(cfg), "p", DAY)
    assert server.stats()["requests_total"] == 40  # the second run from the cache
    cfg.write_text(text.replace('template: "{text}"', 'template: "{text}"\n      version: v2'))
    ctx = run_local(str(cfg), "p", DAY)
    assert server.stats()["requests_total"] == 80
    assert not read_responses(ctx.folder).to_pandas()["cached"].any()


def test_errors_are_not_cached(tmp_path, server):
    server.reset()
    cfg = make_config(tmp_path, server.base_url, triggers={5: "400"}, pipeline_extra="max_error_rate: 0.5")
    run_local(str(cfg), "p", DAY)
    run_local(str(cfg), "p", DAY)
    # 40 calls, then only the failed one again
    assert server.stats()["requests_total"] == 41


def test_concurrency_is_bounded(tmp_path, fake_server):
    srv = fake_server(latency=0.05)
    cfg = make_config(tmp_path, srv.base_url, n=60)
    run_local(str(cfg), "p", DAY, cache_mode="off")
    stats = srv.stats()
    srv.stop()
    assert stats["requests_total"] == 60
    assert 2 <= stats["max_in_flight"] <= 8


def test_rate_limit_requests_per_minute(tmp_path, server):
    server.reset()
    cfg = make_config(tmp_path, server.base_url, extra_model="rpm: 600", n=30)  # 10 requests per second
    ctx = run_local(str(cfg), "p", DAY, cache_mode="off")
    starts = read_responses(ctx.folder).to_pandas()["started_at"].sort_values()
    span = (starts.iloc[-1] - starts.iloc[0]).total_seconds()
    # 30 requests at 10/s with a burst of 10 take at least ~2 s
    assert span >= 1.8


def test_secrets_never_reach_artifacts(tmp_path, server):
    cfg = make_config(tmp_path, server.base_url)
    ctx = run_local(str(cfg), "p", DAY)
    root = Path(ctx.folder.url)
    for f in root.rglob("*"):
        if f.is_file():
            assert b"SECRET-5f3a9c" not in f.read_bytes(), f
    assert b"SECRET-5f3a9c" not in (tmp_path / "cache" / "responses.sqlite").read_bytes()


def test_missing_api_key_is_a_clear_error(tmp_path, server, monkeypatch):
    monkeypatch.delenv("ASSAY_TEST_KEY")
    cfg = make_config(tmp_path, server.base_url)
    with pytest.raises(Exception, match="ASSAY_TEST_KEY"):
        run_local(str(cfg), "p", DAY)


RUNNER = """
import sys
from datetime import date
from assay.stages import run_local
run_local(sys.argv[1], "p", date(2026, 11, 1))
"""


def test_resume_after_kill_pays_for_nothing_twice(tmp_path, fake_server):
    n = 300
    srv = fake_server(latency=0.05)
    cfg = make_config(tmp_path, srv.base_url, n=n)
    cfg.write_text(cfg.read_text().replace("max_concurrency: 8", "max_concurrency: 4"))
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(cfg)], env=env)
    try:
        # wait until a few shards are on disk, then kill -9 in the middle of invoke
        deadline = time.time() + 60
        parts_dir = None
        while time.time() < deadline:
            runs = Store(tmp_path / "runs").runs("p")
            if runs:
                parts_dir = Path(runs[0].url) / "responses"
                if parts_dir.exists() and len(list(parts_dir.glob("part-*.parquet"))) >= 3:
                    break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    before = srv.stats()["requests_total"]
    assert 0 < before < n, "the kill must land in the middle of invoke"
    written = sum(pq.read_metadata(p).num_rows for p in parts_dir.glob("part-*.parquet"))
    # and the calls journaled since the last part (they are kept too)
    from assay.responses import read_journal

    (rf,) = Store(tmp_path / "runs").runs("p")
    parts_ids = set(pd.concat([pd.read_parquet(p) for p in parts_dir.glob("part-*.parquet")])["example_id"])
    journaled, _ = read_journal(rf, "fake")
    kept = parts_ids | {e for e, err in zip(journaled["example_id"].to_pylist(), journaled["error"].to_pylist()) if err is None}
    ctx = run_local(str(cfg), "p", DAY)
    after = srv.stats()["requests_total"]
    srv.stop()
    assert ctx.resumed
    resp = read_responses(ctx.folder).to_pandas()
    assert len(resp) == n and resp["example_id"].is_unique
    # one physical row per (example, model) on disk too
    raw = pd.concat([pd.read_parquet(p) for p in (Path(ctx.folder.url) / "responses").glob("part-*.parquet")])
    assert len(raw) == n and raw["example_id"].is_unique
    # every response written or journaled before the kill is kept; only the rest is called for
    assert written <= len(kept) and after - before == n - len(kept)
    assert ctx.folder.manifest()["status"] == "complete"
    assert [r.run_id for r in Store(tmp_path / "runs").runs("p")] == [ctx.run_id]


def test_sdk_client_gives_the_same_responses(tmp_path, server):
    server.reset()
    cfg = make_config(
        tmp_path, server.base_url, extra_model="client: sdk", triggers={0: "500", 2: "400"}, pipeline_extra="max_error_rate: 0.5"
    )
    ctx = run_local(str(cfg), "p", DAY, cache_mode="off")
    resp = read_responses(ctx.folder).to_pandas().set_index("example_id")
    assert len(resp) == 40
    assert resp.loc["e00000", "attempts"] == 2 and pd.isna(resp.loc["e00000", "error"])
    assert "400" in resp.loc["e00002", "error"]
    assert resp.loc["e00001", "output"] == "technical" and resp.loc["e00001", "prompt_tokens"] > 0


def test_timeout_is_retried_then_recorded(tmp_path, fake_server):
    srv = fake_server(latency=0.0, slow_seconds=3)
    cfg = make_config(
        tmp_path, srv.base_url, extra_model="timeout_s: 0.5", triggers={1: "SLOW"}, n=10, pipeline_extra="max_error_rate: 0.5"
    )
    cfg.write_text(cfg.read_text().replace("max_attempts: 3", "max_attempts: 2"))
    ctx = run_local(str(cfg), "p", DAY, cache_mode="off")
    srv.stop()
    resp = read_responses(ctx.folder).to_pandas().set_index("example_id")
    assert resp.loc["e00001", "attempts"] == 2 and "timeout" in resp.loc["e00001", "error"]
    assert resp["error"].notna().sum() == 1


def test_progress_reports_at_once_then_a_few_times_a_second(tmp_path, fake_server):
    """The terminal bar and the UI's progress artifact are fed by ``on_progress``: it reports the
    model and its total before the first call, then a few times a second, and the last report
    says every example is done."""
    from assay.runs import progress
    from assay.stages import invoke, load

    srv = fake_server(latency=0.05)
    cfg = make_config(tmp_path, srv.base_url, n=80, pipeline_extra="shard_size: 1000")
    ctx = start_run(str(cfg), "p", DAY)
    load.run(ctx)
    seen = []
    t0 = time.monotonic()
    with progress.watching(lambda *a: seen.append((time.monotonic() - t0, *a))):
        invoke.run(ctx)
    srv.stop()
    assert seen[0][1:4] == ("fake", 0, 80)  # before any call: model, done 0, total
    dones = [s[2] for s in seen]
    assert dones == sorted(dones) and dones[-1] == 80
    # 80 calls at concurrency 8 and 50 ms: about half a second, so reports in between, not per call
    assert 2 <= len(seen) <= 10, seen
    assert any(0 < d < 80 for d in dones)


def test_a_resumed_conventional_models_compute_covers_the_rows_it_did_not_run_again(tmp_path):
    """A conventional model (priced by compute time per request) whose rows an earlier attempt
    answered: the resumed invoke stage counts their recorded time, so its compute_s (and the cost)
    are the uninterrupted attempt's, not zero."""
    from assay.stages import cost, invoke, load, score

    make_dataset(tmp_path / "data.parquet", 30)
    pq.write_table(
        pa.table({"text": [f"ticket {i} about {LABELS[i % 3]}" for i in range(30)], "label": [LABELS[i % 3] for i in range(30)]}),
        tmp_path / "train.parquet",
    )
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          base: {{provider: sklearn, estimator: tfidf-logreg, train: train.parquet, compute: {{usd_per_hour: 3.6}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            models: [base]
            metrics: [accuracy]
            bootstrap: 0
    """,
    )
    ctx = start_run(str(cfg), "p", DAY)
    load.run(ctx)
    invoke.run(ctx)
    first = ctx.folder.manifest()["stages"]["invoke"]["models"]["base"]
    assert first["called"] == 30 and first["compute_s"] > 0
    invoke.run(ctx)  # as a resumed run does: every row is on disk already, nothing runs again
    again = ctx.folder.manifest()["stages"]["invoke"]["models"]["base"]
    assert again["called"] == 0 and again["resumed"] == 30
    assert again["compute_s"] == pytest.approx(first["compute_s"], rel=1e-9)
    score.run(ctx)
    cost.run(ctx)
    costs = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model")
    assert costs.loc["base", "cost_usd"] == pytest.approx(first["compute_s"] * 3.6 / 3600, rel=1e-9)


def test_call_figures_add_and_an_unknown_figure_stays_unknown():
    """The invoke shards of one model and the gradings of a judge are added with ``+``: counts,
    dollars and the provider's numbers sum, kinds add by kind, the first message of a kind stays,
    and a figure one side does not know (None) is unknown in the sum, not 0."""
    from assay.figures import CallFigures

    a = CallFigures.of(
        {
            "called": 3,
            "cache_hits": 1,
            "retries": 2,
            "errors": 1,
            "usd": 0.5,
            "retry_kinds": {"429": 2},
            "error_kinds": {"timeout": 1},
            "error_examples": {"timeout": "first"},
            "wall_s": 9.0,
            "concurrency": 4,
            "compute_s": 1.5,
            "device": "cpu",
        }
    )
    b = CallFigures.of(
        {
            "called": 2,
            "errors": 1,
            "usd": 0.25,
            "error_kinds": {"timeout": 1, "http_500": 1},
            "error_examples": {"timeout": "second", "http_500": "boom"},
            "compute_s": 0.5,
            "device": "cuda",
        }
    )
    total = a + b
    assert (total.called, total.cache_hits, total.retries, total.errors, total.usd) == (5, 1, 2, 2, 0.75)
    assert total.error_kinds == {"timeout": 2, "http_500": 1} and total.retry_kinds == {"429": 2}
    assert total.error_examples == {"timeout": "first", "http_500": "boom"}
    assert total.measured == {"compute_s": 2.0, "device": "cpu"}  # the batch's own timing is no figure that adds
    assert total.prompt_tokens is None and "prompt_tokens" not in total.as_dict()  # never counted: unknown, not 0
    assert (a + CallFigures(usd=None)).usd is None
    assert sum([a, b], CallFigures()) == total
    assert total.as_dict()["compute_s"] == 2.0 and "wall_s" not in total.as_dict()
