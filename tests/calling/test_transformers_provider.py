"""The transformers provider against a tiny randomly initialised GPT-2 built here (nothing is downloaded).

The model and its WordLevel tokenizer are created in a temporary directory by the tests
themselves; torch and transformers are needed for those tests only. That importing assay
never imports torch is checked in a fresh interpreter and always runs.
"""

import json
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import DatasetConfig, PromptConfig, TransformersModel, model_problems
from assay.errors import ProviderSetupError
from assay.providers import Context, build
from assay.responses import read_responses
from assay.runs import RunFailed
from assay.stages import run_local
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2026, 11, 1)
LABELS = ["billing", "technical", "account"]
SPECIAL = ["[PAD]", "[UNK]", "[BOS]", "[EOS]"]
WORDS = ("ticket about billing technical account please help route the : labels , answer user assistant system < >").split() + [
    str(i) for i in range(10)
]
CHAT_TEMPLATE = (
    "{% for m in messages %}< {{ m['role'] }} > {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}< assistant >{% endif %}"
)


def save_tiny_model(path: Path, seed: int = 0, n_layer: int = 2, chat_template: str | None = None) -> Path:
    """A WordLevel tokenizer and a 2-layer, 32-wide GPT-2 with random weights, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, GPT2Config, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Digits(individual_digits=True)])
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]", eos_token="[EOS]")
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(str(path))
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(vocab),
        n_positions=64,
        n_embd=32,
        n_layer=n_layer,
        n_head=2,
        bos_token_id=vocab["[BOS]"],
        eos_token_id=vocab["[EOS]"],
        pad_token_id=vocab["[PAD]"],
    )
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "gpt2-tiny")


@pytest.fixture(scope="module")
def tiny_chat(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    return save_tiny_model(tmp_path_factory.mktemp("tiny-chat") / "gpt2-chat", chat_template=CHAT_TEMPLATE)


def write_dataset(path: Path, n: int = 10) -> None:
    rows = [
        {
            "id": f"e{i:03d}",
            "text": f"ticket {i} about {LABELS[i % 3]} please help",
            "label": LABELS[i % 3],
            "lang": "en" if i % 2 else "de",
        }
        for i in range(n)
    ]
    pq.write_table(pa.Table.from_pylist(rows), path)


def transformers_config(folder: Path, models: dict[str, str], n: int = 10, extra: str = "") -> Path:
    write_dataset(folder / "data.parquet", n)
    lines = "\n".join(f"  {name}: {spec}" for name, spec in models.items())
    text = f"""\
artifacts: {folder}/runs
cache_dir: {folder}/cache
models:
{lines}
pipelines:
  p:
    dataset: {{source: data.parquet, id: id, reference: label, slices: [lang]}}
    prompt: {{system: "route the ticket", template: "{{text}} labels : billing , technical , account"}}
    models: [{", ".join(models)}]
    metrics: [accuracy]
    bootstrap: 20
    shard_size: 5
{extra}"""
    return write_config(folder, text)


def provider_for(path, params=None, prompt=True):
    cfg = TransformersModel(path=str(path), params=params or {})
    pr = PromptConfig(system="route the ticket", template="{text}") if prompt else None
    ctx = Context("tiny", DatasetConfig(source="unused.parquet"), pr, lambda p: p)
    return build("tiny", cfg, ctx)


def rows(n=4, text=None):
    return pa.Table.from_pylist([{"example_id": f"e{i}", "text": text or f"ticket {i} about billing"} for i in range(n)])


# ----------------------------------------------------------------------------------------- always run
def test_importing_assay_does_not_import_torch():
    code = (
        "import assay.stages, assay.providers, assay.calling, assay.costing, sys; "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; assert not bad, bad"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_missing_torch_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    p = provider_for(tmp_path / "m")
    with pytest.raises(ProviderSetupError, match=r"pip install 'assay\[transformers\]'"):
        p.run_batch(rows())


def test_missing_directory_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    p = provider_for(missing)
    assert p.identity()["fingerprint"] is None and p.identity()["path"] == str(missing)
    with pytest.raises(FileNotFoundError, match=str(missing)):
        p.run_batch(rows())


def test_config_checks():
    assert model_problems({"provider": "transformers"}) == [("path", "required by provider 'transformers'")]
    ok = {
        "provider": "transformers",
        "path": "m",
        "model": "tiny",
        "params": {"max_new_tokens": 4},
        "compute": {"usd_per_hour": 1.0},
        "max_concurrency": 1,
    }
    assert model_problems(ok) == []
    assert [f for f, _ in model_problems({"provider": "transformers", "path": "m", "base_url": "http://x"})] == ["base_url"]


# ----------------------------------------------------------------------------------------- with a tiny model
def test_run_local_end_to_end_is_deterministic(tmp_path, tiny, tiny_chat):
    models = {
        "tiny": f"{{provider: transformers, path: {tiny}, params: {{batch_size: 4, max_tokens: 6, temperature: 0}}, "
        "compute: {usd_per_hour: 3.6}}",
        "chat": f"{{provider: transformers, path: {tiny_chat}, params: {{batch_size: 3, max_new_tokens: 5, min_new_tokens: 2}}}}",
    }
    cfg = transformers_config(tmp_path, models)
    outs = []
    for mode in ("use", "refresh"):  # the second run generates again (and overwrites the cached outputs)
        ctx = run_local(str(cfg), "p", DAY, cache_mode=mode)
        resp = read_responses(ctx.folder).to_pandas()
        assert len(resp) == 20 and set(resp["model"]) == {"tiny", "chat"}
        assert resp["error"].isna().all(), resp["error"].dropna().tolist()
        assert resp["output"].map(lambda o: isinstance(o, str)).all()
        assert (resp["prompt_tokens"] > 0).all() and (resp["completion_tokens"] > 0).all()
        assert (resp["completion_tokens"] <= 6).all()
        assert (resp[resp.model == "chat"]["completion_tokens"] >= 2).all()  # min_new_tokens reached generate
        assert (resp["latency_s"] > 0).all()
        outs.append(
            resp.sort_values(["model", "example_id"])[["model", "example_id", "output", "completion_tokens"]].reset_index(
                drop=True
            )
        )
        manifest = ctx.folder.manifest()
        assert manifest["status"] == "complete"
        stats = manifest["stages"]["invoke"]["models"]["tiny"]
        assert stats["compute_s"] > 0 and stats["device"] in ("cpu", "cuda")
        costs = ctx.folder.read_table("costs.parquet").to_pandas().set_index("model")
        assert costs.loc["tiny", "kind"] == "conventional"
        assert costs.loc["tiny", "cost_usd"] == pytest.approx(stats["compute_s"] * 3.6 / 3600)
        assert json.loads(costs.loc["tiny", "price_json"])["compute_source"] == "compute_s"
    assert outs[0].equals(outs[1])  # greedy: the same outputs every run
    # the chat template changes what the model sees, so prompt token counts differ between the two
    r = read_responses(ctx.folder).to_pandas()
    assert r[r.model == "chat"]["prompt_tokens"].sum() > r[r.model == "tiny"]["prompt_tokens"].sum()

    # a third run is served from the response cache: the same outputs, no model loaded, and the
    # same compute cost (cached outputs are priced by the time their generation took)
    cached = run_local(str(cfg), "p", DAY)
    resp = read_responses(cached.folder).to_pandas()
    assert resp["cached"].all() and (resp["attempts"] == 0).all()
    got = resp.sort_values(["model", "example_id"])[["model", "example_id", "output", "completion_tokens"]].reset_index(drop=True)
    assert got.equals(outs[1])
    stats = cached.folder.manifest()["stages"]["invoke"]["models"]["tiny"]
    assert stats["cache_hits"] == 10 and stats["called"] == 0 and stats["device"] is None and stats["load_s"] == 0
    assert stats["compute_s"] == pytest.approx(resp[resp.model == "tiny"]["latency_s"].sum())


def test_prompts_chat_template_and_token_counts(tiny, tiny_chat):
    from transformers import AutoTokenizer

    p = provider_for(tiny, {"max_new_tokens": 4, "batch_size": 2})
    out = p.run_batch(rows(3))
    tok = AutoTokenizer.from_pretrained(str(tiny), local_files_only=True)
    assert out["prompt_tokens"][0] == len(tok("route the ticket\nticket 0 about billing")["input_ids"])
    assert all(1 <= c <= 4 for c in out["completion_tokens"]) and out["error"] == [None] * 3
    assert p.stats()["compute_s"] > 0
    # same rows one at a time or in a batch of 3: left padding with an attention mask gives the same text
    solo = provider_for(tiny, {"max_new_tokens": 4, "batch_size": 1}).run_batch(rows(3))
    assert solo["output"] == out["output"]

    c = provider_for(tiny_chat, {"max_new_tokens": 4})
    out_c = c.run_batch(rows(1))
    expected = "< system > route the ticket < user > ticket 0 about billing < assistant >"
    ctok = AutoTokenizer.from_pretrained(str(tiny_chat), local_files_only=True)
    assert out_c["prompt_tokens"][0] == len(ctok(expected, add_special_tokens=False)["input_ids"])

    # no prompt: the dataset's text column is the user message
    n = provider_for(tiny, {"max_new_tokens": 2}, prompt=False).run_batch(rows(2))
    assert n["prompt_tokens"][0] == len(tok("ticket 0 about billing")["input_ids"]) and n["error"] == [None, None]


def test_generation_errors_become_error_rows(tiny):
    p = provider_for(tiny, {"max_new_tokens": 2, "not_a_generate_argument": 1})
    out = p.run_batch(rows(3))
    assert out["output"] == [None] * 3
    assert all(e and "generation failed" in e and "not_a_generate_argument" in e for e in out["error"])

    # one prompt too long for the 64-position model fails alone; the others are generated
    p = provider_for(tiny, {"max_new_tokens": 4})
    t = pa.concat_tables([rows(2), rows(1, text="ticket " + "1 " * 70)])
    out = p.run_batch(t)
    assert out["error"][:2] == [None, None] and out["output"][0] is not None
    assert "exceeds the model's context of 64 tokens" in out["error"][2]


def test_missing_directory_in_a_run_gives_error_rows(tmp_path):
    models = {"gone": f"{{provider: transformers, path: {tmp_path}/missing-model}}"}
    cfg = transformers_config(tmp_path, models, n=4)
    with pytest.raises(RunFailed, match="max_error_rate"):
        run_local(str(cfg), "p", DAY)
    from assay.store import Store

    rf = Store(f"{tmp_path}/runs").runs("p", DAY.isoformat())[-1]
    resp = read_responses(rf).to_pandas()
    assert len(resp) == 4 and resp["output"].isna().all()
    assert resp["error"].str.contains(f"model directory not found: {tmp_path}/missing-model", regex=False).all()


def test_identity_changes_when_the_model_changes(tmp_path, tiny):
    path = tmp_path / "m"
    shutil.copytree(tiny, path)
    p = provider_for(path, {"max_new_tokens": 4})
    first = p.identity()
    assert first == p.identity() and first["path"] == str(path) and first["fingerprint"]
    json.dumps(first)  # goes into cache keys
    assert p.identity() != provider_for(path, {"max_new_tokens": 5}).identity()

    # same architecture, new weights: same sizes, a later mtime
    weights = path / "model.safetensors"
    before = weights.stat()
    save_tiny_model(path, seed=1)
    assert weights.stat().st_size == before.st_size
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    second = p.identity()
    assert second["fingerprint"] != first["fingerprint"]

    # a different architecture: config.json and the weights change
    save_tiny_model(path, n_layer=3)
    assert p.identity()["fingerprint"] not in (first["fingerprint"], second["fingerprint"])
    # the resolved path is part of the identity
    assert provider_for(tiny).identity()["path"] != p.identity()["path"]
