"""Large data: the stages read and write by record batch, and their artifacts equal the
whole-table path's (the same rows and numbers).

Batches are made small here (a few hundred rows), so that a few thousand examples cross many
batch and part boundaries; benchmarks/large_replay.py measures the memory at 10,000,000 rows.
"""

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import assay.store
from tests.conftest import write_config

N = 2_345


def _inputs(tmp_path, n=N, shuffle_log=False, sorted_ids=True, metrics=("accuracy", "exact_match")):
    rng = np.random.default_rng(3)
    labels = np.array(["billing", "shipping", "returns", "other"])
    ids = [f"t{i:06d}" for i in range(n)]
    if not sorted_ids:
        ids = list(np.array(ids)[rng.permutation(n)])
    lab = labels[rng.integers(0, 4, n)]
    pq.write_table(
        pa.table(
            {
                "id": ids,
                "text": [f"ticket {i}" for i in range(n)],
                "label": list(lab),
                "channel": list(np.array(["email", "chat", "web"])[rng.integers(0, 3, n)]),
                "region": list(np.array(["eu", "us"])[rng.integers(0, 2, n)]),
            }
        ),
        tmp_path / "data.parquet",
        row_group_size=500,
    )
    for name, p_right in (("a", 0.8), ("b", 0.6)):
        right = rng.random(n) < p_right
        out = np.where(right, lab, labels[rng.integers(0, 4, n)]).astype(object)
        keep = rng.random(n) > 0.02  # a few examples with no logged response: error rows
        perm = rng.permutation(n)
        order = perm if shuffle_log else np.arange(n)
        order = order[keep[order]]
        logged = np.datetime64("2026-10-01T00:00:00", "us").astype(np.int64) + rng.integers(0, 5 * 86_400_000_000, n)
        log = pa.table(
            {
                "id": [ids[i] for i in order],
                "output": [out[i] for i in order],
                "prompt_tokens": rng.integers(50, 90, n)[order],
                "completion_tokens": rng.integers(1, 3, n)[order],
                "latency_s": rng.random(n)[order],
                "logged_at": pa.array(logged[order], pa.timestamp("us", tz="UTC")),
            }
        )
        # requests the dataset does not have (between its ids and after them): passed over
        extra = pa.table(
            {
                "id": [f"t{i:06d}x" for i in range(0, n + 50, 97)],
                "output": ["billing"] * len(range(0, n + 50, 97)),
                "prompt_tokens": [1] * len(range(0, n + 50, 97)),
                "completion_tokens": [1] * len(range(0, n + 50, 97)),
                "latency_s": [0.5] * len(range(0, n + 50, 97)),
                "logged_at": pa.array([0] * len(range(0, n + 50, 97)), pa.timestamp("us", tz="UTC")),
            }
        )
        log = pa.concat_tables([log, extra])
        if not shuffle_log and sorted_ids:
            log = log.sort_by("id")
        pq.write_table(log, tmp_path / f"log-{name}.parquet", row_group_size=700)
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          a: {{provider: replay, source: log-a.parquet, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
          b: {{provider: replay, source: log-b.parquet, price_ref: openai/gpt-4o-mini}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label, slices: [channel, region],
                       held_out: {{region: [us]}}}}
            models: [a, b]
            metrics: [{", ".join(metrics)}]
            bootstrap: 50
    """,
    )
    return str(cfg)


@pytest.fixture()
def small_batches(monkeypatch):
    import assay.stages.score as score_stage

    monkeypatch.setattr(score_stage, "BATCH_ROWS", 300)


def _whole_scores(ctx):
    """What the whole-table path computes on the same run folder."""
    from assay.scoring import score
    from assay.stages.score import build_metrics, read_scored_responses

    rf, cfg = ctx.folder, ctx.cfg
    return score(
        rf.read_table(assay.store.DATASET),
        read_scored_responses(rf),
        build_metrics(ctx),
        cfg.dataset.slices,
        cfg.bootstrap,
        seed=0,
        held_out=cfg.dataset.held_out,
        cluster=cfg.dataset.cluster,
    )


def _same(a: pd.DataFrame, b: pd.DataFrame):
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, check_exact=True)


def test_streamed_score_stage_equals_the_whole_table_path(tmp_path, small_batches):
    from assay.stages import run_local
    from assay.stages.score import build_metrics, score_streaming

    ctx = run_local(_inputs(tmp_path), "p", date(2026, 11, 1))
    rf = ctx.folder
    assert score_streaming(ctx, build_metrics(ctx)) is not None  # the path the stage took
    whole = _whole_scores(ctx)
    _same(rf.read_table(assay.store.METRICS).to_pandas(), whole.metrics)
    _same(rf.read_table(assay.store.COMPARISONS).to_pandas(), whole.comparisons)
    _same(rf.read_table(assay.store.GENERALIZATION).to_pandas(), whole.generalization)
    scores = rf.read_table(assay.store.SCORES).to_pandas()
    assert len(scores) == 2 * 2 * N and pq.ParquetFile(rf._loc(assay.store.SCORES)).num_row_groups > 1
    _same(scores[["example_id", "model", "metric", "value"]], whole.scores[["example_id", "model", "metric", "value"]])
    assert scores["detail"].isna().all() and scores["score_error"].isna().all()
    # the errors (examples without a logged response) are counted and scored as wrong
    m = whole.metrics.set_index(["model", "metric", "slice"])
    assert m.loc[("a", "accuracy", "all"), "errors"] > 0


def test_parts_out_of_order_take_the_whole_table_path(tmp_path, small_batches):
    from assay.stages import run_local
    from assay.stages.score import build_metrics, score_streaming
    from assay.stages.score import run as score_run

    ctx = run_local(_inputs(tmp_path), "p", date(2026, 11, 1))
    rf = ctx.folder
    before = rf.read_table(assay.store.METRICS).to_pandas()
    # one model's parts swapped: the responses are no longer in the dataset's order
    import shutil

    parts = [n for n in rf.listdir(assay.store.RESPONSES) if n.startswith("part-a-")]
    assert len(parts) == 1  # a replay shard holds up to 50,000 rows: cut it in two, the second half first
    t = rf.read_table(f"{assay.store.RESPONSES}/{parts[0]}")
    rf.remove(f"{assay.store.RESPONSES}/{parts[0]}")
    rf.write_table(f"{assay.store.RESPONSES}/part-a-00000.parquet", t.slice(1000))
    rf.write_table(f"{assay.store.RESPONSES}/part-a-00001.parquet", t.slice(0, 1000))
    assert score_streaming(ctx, build_metrics(ctx)) is None
    score_run(ctx)
    _same(rf.read_table(assay.store.METRICS).to_pandas(), before)
    shutil.rmtree(tmp_path / "runs")


def test_a_corpus_metric_keeps_the_whole_table_path(tmp_path, small_batches):
    from assay.stages import run_local
    from assay.stages.score import build_metrics, score_streaming

    ctx = run_local(_inputs(tmp_path, metrics=("accuracy", "macro_f1")), "p", date(2026, 11, 1))
    assert score_streaming(ctx, build_metrics(ctx)) is None
    whole = _whole_scores(ctx)
    _same(ctx.folder.read_table(assay.store.METRICS).to_pandas(), whole.metrics)


def test_streamed_cost_stage_equals_the_whole_table_path(tmp_path, monkeypatch):
    """Token sums, dollars at each logged day's price, latency percentiles: read batch by batch."""
    import assay.stages.cost as cost_stage
    from assay import costing
    from assay.pricing import quote
    from assay.responses import read_responses
    from assay.stages import run_local

    monkeypatch.setattr(cost_stage, "BATCH_ROWS", 200)
    ctx = run_local(_inputs(tmp_path), "p", date(2026, 11, 1))
    rf = ctx.folder
    models = {k: ctx.loaded.config.models[k] for k in ctx.models}
    stats = rf.manifest()["stages"]["invoke"]["models"]
    quote_of = lambda name, day: quote(models[name], day)  # noqa: E731
    assert cost_stage.usages(rf, models, stats, "2026-11-01", quote_of) is not None
    responses = read_responses(rf).to_pandas()
    responses[costing.PRICE_DATE] = costing.request_dates(responses, models, stats, "2026-11-01")
    quotes = costing.dated_quotes(models, responses, "2026-11-01", quote_of)
    correct = costing.correct_counts(rf.read_table(assay.store.METRICS).to_pandas())
    whole, be = costing.cost_tables(responses, models, quotes, stats, ctx.cfg.cost.monthly_requests, correct)
    _same(rf.read_table(assay.store.COSTS).to_pandas(), whole)
    _same(rf.read_table(assay.store.BREAKEVEN).to_pandas(), be)
    assert len(set(responses[costing.PRICE_DATE])) > 1  # priced at several days' prices


def test_cost_stage_with_an_example_twice_reads_the_whole_table(tmp_path):
    import assay.stages.cost as cost_stage
    from assay.pricing import quote
    from assay.stages import run_local

    ctx = run_local(_inputs(tmp_path, n=300), "p", date(2026, 11, 1))
    rf = ctx.folder
    part = next(n for n in rf.listdir(assay.store.RESPONSES) if n.startswith("part-a-"))
    t = rf.read_table(f"{assay.store.RESPONSES}/{part}")
    rf.write_table(f"{assay.store.RESPONSES}/part-a-99999.parquet", t.slice(0, 5))  # the same examples again
    models = {k: ctx.loaded.config.models[k] for k in ctx.models}
    stats = rf.manifest()["stages"]["invoke"]["models"]
    assert cost_stage.usages(rf, models, stats, "2026-11-01", lambda n, d: quote(models[n], d)) is None
    before = rf.read_table(assay.store.COSTS).to_pandas()
    cost_stage.run(ctx)
    _same(rf.read_table(assay.store.COSTS).to_pandas(), before)  # deduplicated: the same rows counted once


@pytest.mark.parametrize("kw", [{}, {"sample": 700}, {"partition": True}, {"no_id": True}])
def test_streamed_load_equals_prepare(tmp_path, monkeypatch, kw):
    """A Parquet source with its ids in order is prepared batch by batch: the same rows, columns and
    sample as :func:`assay.dataset.prepare` on the whole table."""
    import assay.dataset
    from assay.config import DatasetConfig

    monkeypatch.setattr(assay.dataset, "STREAM_ROWS", 256)
    _inputs(tmp_path)
    src = str(tmp_path / "data.parquet")
    t = pq.read_table(src)
    if kw.get("partition"):
        t = t.append_column("day", pa.array([f"2026-10-{1 + i % 20:02d}" for i in range(t.num_rows)]))
        pq.write_table(t, src, row_group_size=500)
    spec = {"source": src, "reference": "label", "slices": ["channel"]}
    if not kw.get("no_id"):
        spec["id"] = "id"
    if kw.get("partition"):
        spec["partition"] = {"column": "day", "window": "7d"}
    cfg = DatasetConfig(**spec)
    as_of = date(2026, 10, 15)
    plan = assay.dataset.plan_streamed(src, cfg, None, as_of, kw.get("sample"))
    whole = assay.dataset.prepare(assay.dataset.read_source(src), cfg, None, as_of, kw.get("sample"))
    if kw.get("no_id"):  # ids hashed from the row: not in the file's order, so the whole table is sorted
        assert plan is None
        return
    got = pa.concat_tables(list(plan.batches()))
    assert plan.rows == whole.num_rows == got.num_rows and got.schema == plan.schema()
    assert got.equals(whole.cast(got.schema))


def test_load_with_ids_out_of_order_sorts_the_whole_table(tmp_path):
    import assay.dataset
    from assay.config import DatasetConfig
    from assay.stages import run_local

    cfg = _inputs(tmp_path, n=400, sorted_ids=False)
    assert (
        assay.dataset.plan_streamed(str(tmp_path / "data.parquet"), DatasetConfig(source="data.parquet", id="id"), None, None)
        is None
    )
    ctx = run_local(cfg, "p", date(2026, 11, 1))
    ids = ctx.folder.read_table(assay.store.DATASET)["example_id"].to_pylist()
    assert ids == sorted(ids) and len(ids) == 400


def test_a_sorted_log_is_merged_shard_by_shard_with_the_responses_of_a_join(tmp_path, monkeypatch):
    """A replay log in id order is read batch by batch and merged with the examples; the responses
    equal those of the whole-log join (a shuffled copy of the same log)."""
    from assay.calling import batch
    from assay.providers import replay
    from assay.responses import read_responses
    from assay.stages import run_local

    monkeypatch.setattr(batch, "FREE_SHARD", 400)
    monkeypatch.setattr(replay, "STREAM_ROWS", 150)
    merged = []
    real = replay._Merge.take
    monkeypatch.setattr(replay._Merge, "take", lambda self, ids: merged.append(len(ids)) or real(self, ids))
    out = {}
    for shuffle in (False, True):
        d = tmp_path / ("shuffled" if shuffle else "sorted")
        d.mkdir()
        ctx = run_local(_inputs(d, shuffle_log=shuffle), "p", date(2026, 11, 1))
        out[shuffle] = read_responses(ctx.folder).to_pandas().sort_values(["model", "example_id"]).reset_index(drop=True)
        if not shuffle:
            assert sum(merged) == 2 * N and len(merged) >= 8  # both models, shard by shard
            assert len([n for n in ctx.folder.listdir(assay.store.RESPONSES) if n.startswith("part-a-")]) > 1
    a, b = out[False], out[True]
    assert len(a) == 2 * N and a["error"].notna().sum() > 0
    cols = ["example_id", "model", "output", "prompt_tokens", "completion_tokens", "latency_s", "error"]
    _same(a[cols], b[cols])
    ok = a["error"].isna()
    _same(a.loc[ok, ["started_at"]], b.loc[ok, ["started_at"]])


def test_table_writer_writes_row_groups_atomically(tmp_path):
    """Row group by row group, with the hash recorded; a failure leaves nothing under the name."""
    from assay.store import Store

    rf = Store(str(tmp_path / "runs")).run("p", date(2026, 1, 1), "r1")
    t = pa.table({"a": [1, 2, 3]})
    with rf.table_writer("x.parquet", t.schema) as w:
        w.write_table(t)
        w.write_table(t)
    assert rf.read_table("x.parquet")["a"].to_pylist() == [1, 2, 3, 1, 2, 3]
    assert pq.ParquetFile(rf._loc("x.parquet")).num_row_groups == 2 and rf._written["x.parquet"] == rf.hash("x.parquet")
    assert sum(b.num_rows for b in rf.iter_batches("x.parquet", batch_size=2)) == 6
    with pytest.raises(RuntimeError):
        with rf.table_writer("y.parquet", t.schema) as w:
            w.write_table(t)
            raise RuntimeError("stopped")
    assert not rf.exists("y.parquet") and [n for n in rf.listdir("") if n.startswith("y")] == []
