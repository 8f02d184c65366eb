"""The non-HTTP providers (replay, sklearn, python) and each provider's own config options.

One real run (``run_local``) on a tiny config exercises every provider end to end; the
error paths are driven directly through ``assay.providers.build`` and ``run_batch``.
"""

import asyncio
import uuid
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import (
    MODEL_CLASSES,
    ConfigError,
    DatasetConfig,
    PromptConfig,
    PythonModel,
    ReplayModel,
    SklearnModel,
    model_problems,
)
from assay.dataset import prepare, read_source
from assay.preflight import load_checked
from assay.providers import PROVIDERS, Context, build
from assay.responses import read_responses
from assay.stages import run_local
from tests.conftest import write_config

DAY = date(2026, 11, 1)
LABELS = ["billing", "technical", "account"]
WORDS = {
    "billing": ["invoice", "charge", "refund", "payment"],
    "technical": ["crash", "error", "bug", "freeze"],
    "account": ["password", "login", "username", "profile"],
}

# 12 test tickets, ids 1..12, label cycling billing/technical/account; each text has two of its label's words.
TEST_ROWS = []
for _i in range(1, 13):
    _label = LABELS[(_i - 1) % 3]
    _w = WORDS[_label]
    TEST_ROWS.append(
        {
            "id": _i,
            "text": f"hello {_w[_i % 4]} {_w[(_i + 1) % 4]} thanks",
            "label": _label,
            "lang": "en" if _i % 2 else "de",
            # a production model's answers kept in the dataset itself: wrong for 2, missing for 5
            "prediction": None if _i == 5 else ("account" if _i == 2 else _label),
        }
    )

# The replay log: no row for id 7, two rows for id 3 (account, then billing), a wrong answer for id 4
# (label billing, logged technical); token counts and latency depend on the id.
LOG_ROWS = [
    {
        "id": i,
        "output": ("technical" if i == 4 else LABELS[(i - 1) % 3]),
        "prompt_tokens": 100 + i,
        "completion_tokens": i,
        "latency_s": i / 10,
    }
    for i in range(1, 13)
    if i != 7
] + [{"id": 3, "output": "billing", "prompt_tokens": 999, "completion_tokens": 9, "latency_s": 9.9}]

MODULE = """
import asyncio

WORDS = {WORDS!r}


def guess(text):
    for label, words in WORDS.items():
        if any(w in text.split() for w in words):
            return label
    return "other"


def label_sync(rows):
    # only the rendered prompt starts with "Ticket: "; a missing prompt would give "no prompt"
    return [guess(r["prompt"]) if r["prompt"].startswith("Ticket: ") else "no prompt" for r in rows]


def label_dict(rows, bonus=0):
    return [{{"output": guess(r["text"]), "prompt_tokens": len(r["prompt"].split()) + bonus,
             "completion_tokens": 1}} for r in rows]


async def label_async(rows):
    await asyncio.sleep(0.01)
    return [guess(r["messages"][-1]["content"]) for r in rows]


def wrong_length(rows):
    return ["billing"]
"""


def train_rows(counts: dict[str, int]) -> list[dict]:
    rows = []
    for label, n in counts.items():
        w = WORDS[label]
        for k in range(n):
            rows.append({"id": len(rows) + 1000, "text": f"please {w[k % 4]} {w[(k + 2) % 4]} today", "label": label})
    return rows


def write_module(folder: Path) -> str:
    name = f"assay_test_models_{uuid.uuid4().hex[:8]}"
    (folder / f"{name}.py").write_text(MODULE.format(WORDS=WORDS))
    return name


def write_files(folder: Path) -> None:
    pq.write_table(pa.Table.from_pylist(TEST_ROWS), folder / "test.parquet")
    pq.write_table(pa.Table.from_pylist(train_rows({"billing": 10, "technical": 10, "account": 10})), folder / "train.parquet")
    # majority: billing 5, technical 3, account 2 -> always "billing"
    pq.write_table(pa.Table.from_pylist(train_rows({"technical": 3, "billing": 5, "account": 2})), folder / "train_major.parquet")
    pq.write_table(pa.Table.from_pylist(LOG_ROWS), folder / "log.parquet")


CONFIG = """
artifacts: runs
cache_dir: cache
models:
  rep: {{provider: replay, source: log.parquet, max_concurrency: 4, price: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}}}
  repcol: {{provider: replay, output_column: prediction}}
  sk: {{provider: sklearn, estimator: tfidf-logreg}}
  maj: {{provider: sklearn, estimator: majority, train: train_major.parquet}}
  py: {{provider: python, function: "{mod}:label_sync"}}
  pyd: {{provider: python, function: "{mod}:label_dict", params: {{bonus: 5}}}}
  pya: {{provider: python, function: "{mod}:label_async"}}
pipelines:
  p:
    dataset: {{source: test.parquet, train: train.parquet, id: id, reference: label, slices: [lang]}}
    prompt: {{system: "route the ticket", template: "Ticket: {{text}}"}}
    models: [rep, repcol, sk, maj, py, pyd, pya]
    metrics: [accuracy]
    bootstrap: 20
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One real run of every non-HTTP provider: (responses by model, manifest, metrics)."""
    folder = tmp_path_factory.mktemp("providers")
    write_files(folder)
    mod = write_module(folder)
    write_config(folder, CONFIG.format(mod=mod))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(folder))
        ctx = run_local(str(folder / "pipelines.yaml"), "p", DAY)
    resp = read_responses(ctx.folder).to_pandas()
    resp["example_id"] = resp["example_id"].astype(str)
    by_model = {m: g.set_index("example_id").sort_index() for m, g in resp.groupby("model")}
    metrics = ctx.folder.read_table("metrics.parquet").to_pandas()
    acc = metrics[(metrics.metric == "accuracy") & (metrics.slice == "all")].set_index("model")
    return {"resp": by_model, "manifest": ctx.folder.manifest(), "acc": acc, "folder": folder}


def _ids(*ints) -> list[str]:
    return [str(i) for i in ints]


# ------------------------------------------------------------------------------------------------ replay


def test_replay_log_carries_tokens_and_latency(run):
    r = run["resp"]["rep"]
    assert len(r) == 12 and r.index.is_unique
    for i in (1, 2, 4, 12):
        row = r.loc[str(i)]
        assert row["prompt_tokens"] == 100 + i and row["completion_tokens"] == i
        assert row["latency_s"] == pytest.approx(i / 10)
        assert pd.isna(row["error"])
    assert r.loc["4", "output"] == "technical" and r.loc["12", "output"] == "account"
    assert run["manifest"]["status"] == "complete"


def test_replay_missing_ticket_is_an_error_row(run):
    row = run["resp"]["rep"].loc["7"]
    assert row["error"] == "no logged response"
    assert pd.isna(row["output"]) and pd.isna(row["prompt_tokens"])
    # only that one is an error
    assert run["resp"]["rep"]["error"].notna().sum() == 1


def test_replay_duplicate_log_rows_keep_one(run):
    r = run["resp"]["rep"]
    assert (r.index == "3").sum() == 1  # one response row for the id logged twice
    row = r.loc["3"]  # taken whole from one of the two log rows
    logged = {("account", 103, 3), ("billing", 999, 9)}
    assert (row["output"], int(row["prompt_tokens"]), int(row["completion_tokens"])) in logged


def test_replay_accuracy_counts_missing_and_wrong(run):
    # rep: wrong on 4, no response for 7; id 3 is right or wrong depending on the kept log row (label account)
    rep = run["acc"].loc["rep"]
    right3 = run["resp"]["rep"].loc["3", "output"] == "account"
    assert rep["value"] == pytest.approx((10 if right3 else 9) / 12)
    assert rep["errors"] == 1 and rep["n"] == 12
    # the replayed calls' own time at max_concurrency 4 gives the throughput figure
    st = run["manifest"]["stages"]["invoke"]["models"]["rep"]
    kept = run["resp"]["rep"]["latency_s"].sum()
    assert st["wall_s"] == pytest.approx(kept / 4)


def test_replay_from_a_dataset_column(run):
    r = run["resp"]["repcol"]
    assert len(r) == 12
    assert r.loc["2", "output"] == "account" and r.loc["1", "output"] == "billing"
    assert r.loc["5", "error"] == "no logged response" and pd.isna(r.loc["5", "output"])
    assert r["prompt_tokens"].isna().all()
    # right on 10 of 12: wrong on 2, missing on 5
    assert run["acc"].loc["repcol", "value"] == pytest.approx(10 / 12)
    assert run["acc"].loc["repcol", "errors"] == 1


# ------------------------------------------------------------------------------------------------ sklearn


def test_sklearn_learns_a_separable_toy_set(run):
    r = run["resp"]["sk"]
    assert len(r) == 12 and r["error"].isna().all()
    truth = {str(x["id"]): x["label"] for x in TEST_ROWS}
    correct = sum(r.loc[i, "output"] == truth[i] for i in r.index)
    assert correct >= 11  # chance is 4 of 12
    assert run["acc"].loc["sk", "value"] >= 11 / 12
    st = run["manifest"]["stages"]["invoke"]["models"]["sk"]
    assert st["train_s"] > 0 and st["compute_s"] >= 0 and st["train_rows"] == 30


def test_sklearn_majority_predicts_the_most_frequent_label(run):
    r = run["resp"]["maj"]
    assert set(r["output"]) == {"billing"}
    # billing is the label of ids 1, 4, 7, 10: 4 of 12
    assert run["acc"].loc["maj", "value"] == pytest.approx(4 / 12)
    assert run["manifest"]["stages"]["invoke"]["models"]["maj"]["train_rows"] == 10


def _ctx(folder: Path, **ds) -> Context:
    dataset = DatasetConfig(
        **{"source": str(folder / "test.parquet"), "train": str(folder / "train.parquet"), "id": "id", "reference": "label", **ds}
    )
    return Context("m", dataset, PromptConfig(template="Ticket: {text}"), lambda p: p if p is None else str(folder / p))


def _prepared(folder: Path, ctx: Context) -> pa.Table:
    return prepare(read_source(str(folder / "test.parquet")), ctx.dataset, ctx.prompt, None)


def test_sklearn_directly_and_its_stats(tmp_path):
    write_files(tmp_path)
    ctx = _ctx(tmp_path)
    rows = _prepared(tmp_path, ctx)
    p = build("sk", SklearnModel(estimator="tfidf-svm"), ctx)
    out = p.run_batch(rows)
    assert len(out["output"]) == 12 and out["error"] == [None] * 12
    acc = sum(o == r for o, r in zip(out["output"], rows["reference"].to_pylist())) / 12
    assert acc >= 11 / 12
    s = p.stats()
    assert set(s) >= {"train_s", "compute_s"} and s["train_s"] > 0 and s["compute_s"] > 0 and s["train_rows"] == 30
    # a second shard adds compute time, does not retrain
    train_s = s["train_s"]
    p.run_batch(rows.slice(0, 3))
    assert p.stats()["train_s"] == train_s and p.stats()["compute_s"] >= s["compute_s"]


def test_sklearn_train_without_the_reference_column(tmp_path):
    write_files(tmp_path)
    pq.write_table(pa.table({"text": ["a b"], "category": ["x"]}), tmp_path / "bad_train.parquet")
    ctx = _ctx(tmp_path)
    p = build("sk", SklearnModel(train="bad_train.parquet"), ctx)
    with pytest.raises(ValueError, match=r"bad_train\.parquet has no reference column 'label'"):
        p.run_batch(_prepared(tmp_path, ctx))


# ------------------------------------------------------------------------------------------------ python


def test_python_sync_function_gets_the_rendered_prompt(run):
    r = run["resp"]["py"]
    truth = {str(x["id"]): x["label"] for x in TEST_ROWS}
    assert {i: r.loc[i, "output"] for i in r.index} == truth
    assert r["error"].isna().all() and r["prompt_tokens"].isna().all()
    assert run["acc"].loc["py", "value"] == 1.0


def test_python_dicts_carry_token_counts_and_params(run):
    r = run["resp"]["pyd"]
    # "Ticket: hello w1 w2 thanks" is 5 words, plus bonus 5 from params
    assert (r["prompt_tokens"] == 10).all() and (r["completion_tokens"] == 1).all()
    assert run["acc"].loc["pyd", "value"] == 1.0


def test_python_async_function(run):
    r = run["resp"]["pya"]
    assert len(r) == 12 and r["error"].isna().all()
    assert run["acc"].loc["pya", "value"] == 1.0


def _python(tmp_path, monkeypatch, target: str, params=None):
    write_files(tmp_path)
    mod = write_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    ctx = _ctx(tmp_path)
    cfg = PythonModel(function=target.format(mod=mod), params=params or {})
    return build("py", cfg, ctx), _prepared(tmp_path, ctx)


def test_python_directly_sync_async_and_dicts(tmp_path, monkeypatch):
    p, rows = _python(tmp_path, monkeypatch, "{mod}:label_dict", {"bonus": 1})
    out = p.run_batch(rows.slice(0, 4))
    assert out["prompt_tokens"] == [6, 6, 6, 6] and out["completion_tokens"] == [1] * 4
    assert out["output"] == rows["reference"].to_pylist()[:4] and out["error"] == [None] * 4
    assert len(out["latency_s"]) == 4 and all(v >= 0 for v in out["latency_s"])

    p, _ = _python(tmp_path, monkeypatch, "{mod}:label_async")
    assert p.run_batch(rows.slice(0, 3))["output"] == rows["reference"].to_pylist()[:3]

    # an async function while an event loop is running in this thread (the engine's case)
    async def inside_a_loop():
        return p.run_batch(rows.slice(3, 3))

    assert asyncio.run(inside_a_loop())["output"] == rows["reference"].to_pylist()[3:6]


@pytest.mark.parametrize(
    "target, message",
    [
        ("no_colon_here", r"function must look like 'package\.module:function', got 'no_colon_here'"),
        ("assay_no_such_module_x:f", r"cannot import 'assay_no_such_module_x' for function 'assay_no_such_module_x:f'"),
        ("{mod}:not_there", r"has no attribute 'not_there'"),
        ("{mod}:wrong_length", r"returned 1 results for 12 rows"),
    ],
)
def test_python_bad_function_is_a_clear_error(tmp_path, monkeypatch, target, message):
    p, rows = _python(tmp_path, monkeypatch, target)
    with pytest.raises(ValueError, match=message):
        p.run_batch(rows)


# ------------------------------------------------------------------------------------------------ replay errors


def test_replay_log_without_the_id_column(tmp_path):
    write_files(tmp_path)
    pq.write_table(pa.table({"ticket": [1, 2], "output": ["a", "b"]}), tmp_path / "noid.parquet")
    ctx = _ctx(tmp_path)
    p = build("rep", ReplayModel(source="noid.parquet"), ctx)
    with pytest.raises(ValueError, match=r"noid\.parquet has no column 'id' to match dataset\.id \(columns: ticket, output\)"):
        p.run_batch(_prepared(tmp_path, ctx))


def test_replay_log_without_the_output_column(tmp_path):
    write_files(tmp_path)
    ctx = _ctx(tmp_path)
    p = build("rep", ReplayModel(source="log.parquet", output_column="answer"), ctx)
    with pytest.raises(ValueError, match=r"log\.parquet has no output column 'answer' \(columns: id, output, prompt_tokens"):
        p.run_batch(_prepared(tmp_path, ctx))
    # the same through a real run: the run fails with that message
    write_config(
        tmp_path,
        """
        artifacts: runs
        models:
          rep: {provider: replay, source: log.parquet, output_column: answer}
        pipelines:
          p:
            dataset: {source: test.parquet, id: id, reference: label}
            models: [rep]
            metrics: [accuracy]
    """,
    )
    with pytest.raises(ValueError, match="no output column 'answer'"):
        run_local(str(tmp_path / "pipelines.yaml"), "p", DAY)


def test_replay_directly_with_a_jsonl_log_keyed_by_example_id(tmp_path):
    # without dataset.id the log is matched on example_id; the log is JSONL here
    rows = [{"text": "a b", "label": "x"}, {"text": "c d", "label": "y"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    ctx = Context(
        "m",
        DatasetConfig(source=str(tmp_path / "test.parquet"), reference="label"),
        PromptConfig(template="{text}"),
        lambda p: str(tmp_path / p),
    )
    table = prepare(read_source(str(tmp_path / "test.parquet")), ctx.dataset, ctx.prompt, None)
    ids = table["example_id"].to_pylist()
    (tmp_path / "log.jsonl").write_text(f'{{"example_id": "{ids[1]}", "output": "y", "completion_tokens": 3}}\n')
    p = build("rep", ReplayModel(source="log.jsonl"), ctx)
    p.prepare(table)
    out = p.run_batch(table)
    assert out["output"] == [None, "y"]
    assert out["error"] == ["no logged response", None]
    assert out["completion_tokens"] == [None, 3] and out["prompt_tokens"] == [None, None]


def test_replay_output_column_missing_from_the_dataset(tmp_path):
    write_files(tmp_path)
    ctx = _ctx(tmp_path)
    p = build("rep", ReplayModel(output_column="answer"), ctx)
    with pytest.raises(ValueError, match="dataset has no column 'answer'"):
        p.run_batch(_prepared(tmp_path, ctx))


# ------------------------------------------------------------------------------------------------ model options


def test_each_provider_takes_its_own_options():
    assert model_problems({"provider": "python"}) == [("function", "required by provider 'python'")]
    assert [f for f, _ in model_problems({"provider": "python", "function": ""})] == ["function"]  # empty is missing too
    problems = model_problems({"provider": "sklearn", "base_url": "http://localhost:8000/v1"})
    assert [f for f, _ in problems] == ["base_url"]
    assert "not an option of provider 'sklearn'" in problems[0][1] and "estimator" in problems[0][1]
    # a replay model needs somewhere to read outputs from
    assert model_problems({"provider": "replay"}) == [
        ("", "replay needs source: (a log file) or output_column: (a dataset column)")
    ]
    # good configs have no problems
    assert model_problems({"provider": "sklearn", "estimator": "majority", "train": "t.parquet"}) == []
    assert model_problems({"provider": "replay", "output_column": "prediction", "model": "m"}) == []
    assert model_problems({"provider": "python", "function": "m:f", "params": {"a": 1}}) == []
    # other providers' options are foreign even where another provider gives them a default (max_concurrency, ...)
    assert [f for f, _ in model_problems({"provider": "sklearn", "max_concurrency": 3, "model": "x"})] == [
        "max_concurrency",
        "model",
    ]
    assert not hasattr(SklearnModel(), "max_concurrency")


def test_every_provider_has_a_config_class_and_the_other_way_round():
    assert set(PROVIDERS.names()) == set(MODEL_CLASSES)


def test_model_option_errors_reach_the_config_loader(tmp_path):
    write_config(
        tmp_path,
        """
        models:
          sk: {provider: sklearn, base_url: "http://localhost:1/v1"}
          py: {provider: python}
        pipelines:
          p:
            dataset: {source: test.parquet, id: id, reference: label}
            models: [sk, py]
            metrics: [accuracy]
    """,
    )
    with pytest.raises(ConfigError) as e:
        load_checked(tmp_path / "pipelines.yaml")
    found = {(path, line) for path, _, line in e.value.problems}
    assert ("models.sk.base_url", 3) in found
    assert ("models.py.function", 4) in found


def test_an_unreadable_replay_log_fails_loudly_naming_the_file(tmp_path):
    """Whether responses carry their logged request time decides the day they are priced at: a log
    that cannot be read is an error that names it, never a quiet switch to the run's prices."""
    write_files(tmp_path)
    (tmp_path / "log.parquet").write_bytes(b"PAR1 this is not a parquet file")
    ctx = _ctx(tmp_path)
    p = build("rep", ReplayModel(provider="replay", source="log.parquet"), ctx)
    with pytest.raises(ValueError, match=rf"replay log {tmp_path}/log\.parquet cannot be read"):
        _ = p.logged_request_times
    with pytest.raises(ValueError, match=r"log\.parquet cannot be read"):
        p.stats()
    write_config(
        tmp_path,
        """
        artifacts: runs
        models:
          rep: {provider: replay, source: log.parquet, price: {input_per_mtok: 1.0, output_per_mtok: 1.0}}
        pipelines:
          p:
            dataset: {source: test.parquet, id: id, reference: label}
            models: [rep]
            metrics: [accuracy]
    """,
    )
    with pytest.raises(ValueError, match=rf"replay log {tmp_path}/log\.parquet cannot be read"):
        run_local(str(tmp_path / "pipelines.yaml"), "p", DAY)


COUNTING = """
def label(rows, calls):
    with open(calls, "a") as f:
        f.write("".join(str(r["id"]) + "\\n" for r in rows))
    return [{OUT} for r in rows]
"""


def test_python_outputs_are_cached_per_example(tmp_path, monkeypatch):
    """A python model's outputs go through the response cache, example by example: a second run
    does not call the function, a changed example is the only one called again, and so is every
    example once the function's code changes."""
    write_files(tmp_path)
    name = f"assay_test_counting_{uuid.uuid4().hex[:8]}"
    module = tmp_path / f"{name}.py"
    module.write_text(COUNTING.replace("{OUT}", 'r["label"]'))
    monkeypatch.syspath_prepend(str(tmp_path))
    calls = tmp_path / "calls.txt"
    write_config(
        tmp_path,
        f"""
        artifacts: runs
        cache_dir: cache
        models:
          py: {{provider: python, function: "{name}:label", params: {{calls: {calls}}}}}
        pipelines:
          p:
            dataset: {{source: test.parquet, id: id, reference: label}}
            prompt: {{template: "Ticket: {{text}}"}}
            models: [py]
            metrics: [accuracy]
            bootstrap: 0
            shard_size: 5
    """,
    )

    def run():
        ctx = run_local(str(tmp_path / "pipelines.yaml"), "p", DAY)
        called = calls.read_text().split() if calls.exists() else []
        calls.unlink(missing_ok=True)
        resp = read_responses(ctx.folder).to_pandas().set_index("example_id").sort_index()
        return ctx, sorted(called, key=int), resp

    _, called, first = run()
    assert called == _ids(*range(1, 13)) and not first["cached"].any()
    ctx, called, second = run()
    assert called == [] and second["cached"].all() and (second["attempts"] == 0).all()
    assert second["output"].equals(first["output"])
    st = ctx.folder.manifest()["stages"]["invoke"]["models"]["py"]
    assert st["cache_hits"] == 12 and st["called"] == 0
    # one example's text changes: only it is called again
    rows = [dict(r, text=r["text"] + " again") if r["id"] == 4 else r for r in TEST_ROWS]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    _, called, third = run()
    assert called == ["4"] and third["cached"].sum() == 11
    # the function's code changes: nothing cached from the old code is served
    module.write_text(COUNTING.replace("{OUT}", 'r["label"].upper()'))
    monkeypatch.delitem(__import__("sys").modules, name)
    _, called, fourth = run()
    assert called == _ids(*range(1, 13)) and not fourth["cached"].any()
    assert set(fourth["output"]) == {"BILLING", "TECHNICAL", "ACCOUNT"}
