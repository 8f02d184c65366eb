"""A local Hugging Face causal language model, run in-process (torch and transformers imported on use).

``path:`` is a model directory (``save_pretrained`` output or a downloaded snapshot); nothing is
ever fetched from the Hub. Prompts are rendered with the tokenizer's chat template when it has one,
else system and user content joined by newlines, then generated greedily in left-padded
mini-batches on CUDA when available, else CPU. ``params``: ``batch_size`` (default 8),
``max_new_tokens`` (default 32; ``max_tokens`` is accepted too), ``device`` (default cuda if available,
else cpu); everything else goes to ``model.generate`` (e.g. ``do_sample: true, temperature: 0.7``,
``repetition_penalty``). ``temperature: 0`` means greedy, the default.

Costing: give the model ``compute: {usd_per_hour: ...}`` and it is priced by the generation time
this provider reports as ``compute_s`` (or ``hosting:`` to price it as a self-hosted replica).
"""

import hashlib
import os
import threading
import time

import pyarrow as pa

from assay.errors import ArtifactMissing, ProviderSetupError
from assay.providers.base import BatchProvider

INSTALL_HINT = "pip install 'assay[transformers]'"

#: Model files whose size/mtime stand for the weights in the identity (cheap: no hashing of gigabytes).
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".model")
#: Small files that shape outputs; their contents are hashed.
#: from_pretrained is not thread-safe (it patches global state while building on the meta device), and
#: the invoke stage runs several models' batches in threads at once: load one model at a time.
_LOAD_LOCK = threading.Lock()
_SMALL_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)


def _require():
    """Import torch and transformers, or say how to install them."""
    try:
        import torch
        import transformers
    except ImportError as e:
        raise ProviderSetupError(f"the transformers provider needs torch and transformers ({e}): {INSTALL_HINT}") from None
    return torch, transformers


def model_fingerprint(path: str) -> str | None:
    """Hash of the model directory's small config files and its weight files' sizes and mtimes.

    Cheap enough to compute on every run, and it changes when the model is retrained, re-saved
    or swapped, so cached responses of an older model are not reused. None if the directory is missing.
    """
    if not path or not os.path.isdir(path):
        return None
    h = hashlib.sha256()
    entries = []
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path)
            entries.append((rel, full))
    for rel, full in sorted(entries):
        name = os.path.basename(rel)
        try:
            if name in _SMALL_FILES:
                with open(full, "rb") as f:
                    h.update(f"{rel}:".encode() + hashlib.sha256(f.read()).digest())
            elif name.endswith(_WEIGHT_SUFFIXES) or name.endswith(".index.json"):
                st = os.stat(full)
                h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{rel}:unreadable\n".encode())
    return h.hexdigest()


class TransformersProvider(BatchProvider):
    """Greedy batched generation with a local ``AutoModelForCausalLM``.

    Outputs are cached per example, keyed by :meth:`identity` (which holds the model directory's
    fingerprint) and the rendered messages.
    """

    def _path(self) -> str | None:
        return self.ctx.resolve_path(self.cfg.path)

    def identity(self) -> dict:
        path = self._path()
        return {
            "provider": "transformers",
            "model": self.cfg.model,
            "version": self.cfg.version,
            "path": path,
            "fingerprint": model_fingerprint(path),
            "params": self.cfg.params,
        }

    # -------------------------------------------------------------------------------- loading
    def _gen_params(self) -> tuple[int, int, str | None, dict]:
        params = dict(self.cfg.params or {})
        batch_size = int(params.pop("batch_size", 8))
        if batch_size < 1:
            raise ProviderSetupError(f"params.batch_size must be at least 1, got {batch_size}")
        max_tokens = params.pop("max_tokens", None)  # the OpenAI spelling, for configs shared with API models
        max_new_tokens = int(params.pop("max_new_tokens", max_tokens if max_tokens is not None else 32))
        device = params.pop("device", None)
        if params.get("temperature") == 0:  # temperature 0 means greedy, which generate spells do_sample=False
            params.pop("temperature")
        params.setdefault("do_sample", False)
        return batch_size, max_new_tokens, device, params

    def _load(self) -> None:
        path = self._path()
        if not path:
            raise ProviderSetupError("the transformers provider needs path: (a local model directory)")
        if "://" in path:
            raise ProviderSetupError(f"transformers model path must be a local directory, got {path!r}")
        if not os.path.isdir(path):
            raise ArtifactMissing(f"transformers model directory not found: {path}")
        torch, transformers = _require()
        t0 = time.perf_counter()
        _, _, device, _ = self._gen_params()
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        with _LOAD_LOCK:
            bars = transformers.utils.logging.is_progress_bar_enabled()
            transformers.utils.logging.disable_progress_bar()  # the pipeline draws its own progress
            try:
                tok = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
            except Exception as e:  # noqa: BLE001  (transformers raises many kinds for a folder it cannot load)
                raise ProviderSetupError(f"cannot load a causal language model from {path}: {type(e).__name__}: {e}") from None
            finally:
                if bars:
                    transformers.utils.logging.enable_progress_bar()
            model.to(device)
        model.eval()
        if not getattr(model.config, "is_encoder_decoder", False):
            tok.padding_side = "left"
        eos = set()
        for src in (getattr(model.generation_config, "eos_token_id", None), tok.eos_token_id):
            if isinstance(src, int):
                eos.add(src)
            elif src:
                eos.update(int(x) for x in src)
        pad = tok.pad_token_id
        if pad is None:
            pad = min(eos) if eos else 0
        self._torch, self._tok, self._model, self._device = torch, tok, model, device
        self._eos, self._pad = eos, pad
        cfg = model.config
        self._max_ctx = next(
            (
                int(v)
                for v in (getattr(cfg, "max_position_embeddings", None), getattr(cfg, "n_positions", None))
                if isinstance(v, int) and v > 0
            ),
            None,
        )
        self.load_s = time.perf_counter() - t0
        self.compute_s = getattr(self, "compute_s", 0.0)

    # -------------------------------------------------------------------------------- prompts
    def _messages(self, rows: pa.Table) -> list[list[dict]]:
        if self.ctx.prompt is not None:
            # lazy: keeps pyarrow out of start-up
            from assay.prompting import refuse_tool_messages, render_messages

            msgs = render_messages(self.ctx.prompt, rows)
            if self.ctx.prompt.messages is not None:
                refuse_tool_messages(
                    msgs, rows["example_id"].to_pylist() if "example_id" in rows.column_names else None, "transformers"
                )
            return msgs
        fields = self.ctx.dataset.input or (["text"] if "text" in rows.column_names else None)
        if not fields:
            raise ProviderSetupError("the transformers provider needs a prompt: in the pipeline, or dataset.input columns")
        cols = [rows[f].cast(pa.string()).to_pylist() for f in fields]
        return [[{"role": "user", "content": "\n".join(v or "" for v in vals)}] for vals in zip(*cols)]

    def cache_inputs(self, rows: pa.Table) -> list:
        """What is encoded for each row: its messages."""
        return self._messages(rows)

    def _encode(self, messages: list[dict]) -> list[int]:
        tok = self._tok
        if getattr(tok, "chat_template", None):
            try:
                text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            except Exception:  # noqa: BLE001  (a template's own error, raised by its Jinja code)
                # some templates reject a system turn: fold it into the user's message
                merged = "\n".join(m["content"] for m in messages)
                text = tok.apply_chat_template([{"role": "user", "content": merged}], tokenize=False, add_generation_prompt=True)
            # the template writes its own special tokens (bos and the like)
            return list(tok(text, add_special_tokens=False)["input_ids"])
        text = "\n".join(m["content"] for m in messages if m.get("content"))
        return list(tok(text)["input_ids"])

    # -------------------------------------------------------------------------------- generation
    def _generate(self, ids: list[list[int]], max_new_tokens: int, gen: dict) -> list[list[int]]:
        """Left-pad one mini-batch, generate, and return each row's new tokens."""
        torch = self._torch
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, x in enumerate(ids):
            if x:
                input_ids[i, width - len(x) :] = torch.tensor(x, dtype=torch.long)
                mask[i, width - len(x) :] = 1
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=input_ids.to(self._device),
                attention_mask=mask.to(self._device),
                max_new_tokens=max_new_tokens,
                pad_token_id=self._pad,
                **gen,
            )
        seqs = getattr(out, "sequences", out)  # a tensor, or an output object with return_dict_in_generate
        return [row[width:].tolist() for row in seqs.cpu()]

    def _finish(self, new: list[int]) -> tuple[str, int]:
        """Decoded continuation and its token count, up to and including the first eos."""
        n = len(new)
        for i, t in enumerate(new):
            if t in self._eos:
                n = i + 1
                break
        return self._tok.decode(new[:n], skip_special_tokens=True).strip(), n

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        if not hasattr(self, "_model"):
            self._load()
        batch_size, max_new_tokens, _, gen = self._gen_params()
        n = rows.num_rows
        out = {
            "output": [None] * n,
            "prompt_tokens": [None] * n,
            "completion_tokens": [None] * n,
            "latency_s": [None] * n,
            "error": [None] * n,
        }
        todo = []
        for j, msgs in enumerate(self._messages(rows)):
            try:
                ids = self._encode(msgs)
            except Exception as e:  # noqa: BLE001  (recorded on the row)
                out["error"][j] = f"cannot tokenize the prompt: {type(e).__name__}: {e}"
                continue
            out["prompt_tokens"][j] = len(ids)
            if not ids:
                out["error"][j] = "empty prompt"
            elif self._max_ctx and len(ids) + max_new_tokens > self._max_ctx:
                out["error"][j] = (
                    f"prompt of {len(ids)} tokens + max_new_tokens {max_new_tokens} exceeds the model's "
                    f"context of {self._max_ctx} tokens"
                )
            else:
                todo.append((j, ids))
        # similar lengths together: less padding, and the order is the same on every run
        todo.sort(key=lambda t: (len(t[1]), t[0]))
        for lo in range(0, len(todo), batch_size):
            self._run_group(todo[lo : lo + batch_size], max_new_tokens, gen, out)
        return out

    def _run_group(self, group: list[tuple[int, list[int]]], max_new_tokens: int, gen: dict, out: dict) -> None:
        t0 = time.perf_counter()
        try:
            news = self._generate([ids for _, ids in group], max_new_tokens, gen)
            results = [self._finish(x) for x in news]
        except Exception as e:  # noqa: BLE001  (out of memory or a bad row: retried row by row, then recorded)
            self.compute_s += time.perf_counter() - t0
            if len(group) > 1:  # out of memory or one bad row: try the rows one at a time
                if self._device != "cpu" and self._torch.cuda.is_available():
                    self._torch.cuda.empty_cache()
                for item in group:
                    self._run_group([item], max_new_tokens, gen, out)
                return
            out["error"][group[0][0]] = f"generation failed: {type(e).__name__}: {e}"
            return
        dt = time.perf_counter() - t0
        self.compute_s += dt
        per = dt / len(group)
        for (j, _), (text, k) in zip(group, results):
            out["output"][j] = text
            out["completion_tokens"][j] = k
            out["latency_s"][j] = per

    def stats(self) -> dict:
        return {
            "compute_s": getattr(self, "compute_s", 0.0),
            "load_s": getattr(self, "load_s", 0.0),
            "device": getattr(self, "_device", None),
        }
