"""Any ``module:function`` as a model, called once per shard (sync or async)."""

import asyncio
import concurrent.futures
import hashlib
import importlib
import inspect
import time

import pyarrow as pa

from assay.errors import ProviderSetupError
from assay.providers.base import BatchProvider


def load_function(target: str):
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ProviderSetupError(f"function must look like 'package.module:function', got {target!r}")
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        raise ProviderSetupError(f"cannot import {module!r} for function {target!r}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ProviderSetupError(f"{module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


class PythonProvider(BatchProvider):
    """Calls ``function(rows)`` with a list of dicts (dataset fields plus ``prompt`` and
    ``messages``: the rendered request, or with ``prompt: {messages: COLUMN}`` the normalised
    conversation, and ``prompt`` its last user message); it returns a list of strings, or of dicts with ``output`` and optionally
    ``prompt_tokens``, ``completion_tokens`` and ``error``."""

    def identity(self) -> dict:
        """The function's name, ``version`` and ``params``, and a hash of its source code, so that
        editing the function does not serve outputs cached from the old one (a change elsewhere,
        in what it calls, needs a new ``version:``)."""
        try:
            source = _source_hash(self._function())
        except ValueError:  # cannot be loaded: run_batch says why, on the rows
            source = None
        return {
            "provider": "python",
            "function": self.cfg.function,
            "version": self.cfg.version,
            "params": self.cfg.params,
            "source": source,
        }

    def _function(self):
        fn = getattr(self, "_fn", None)
        if fn is None:
            fn = self._fn = load_function(self.cfg.function)
        return fn

    def _items(self, rows: pa.Table) -> list[dict]:
        """The rows as the function gets them: dataset fields, plus ``prompt`` and ``messages``."""
        # lazy: keeps pyarrow out of start-up
        from assay.prompting import render_messages

        items = rows.to_pylist()
        if self.ctx.prompt is not None:
            for item, msgs in zip(items, render_messages(self.ctx.prompt, rows)):
                item["messages"] = msgs
                # the last user message: a conversation may end with an assistant's or a tool's turn
                item["prompt"] = next((m["content"] for m in reversed(msgs) if m["role"] == "user"), msgs[-1]["content"])
        return items

    def cache_inputs(self, rows: pa.Table) -> list:
        """Exactly what the function is given for each row."""
        return self._items(rows)

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        fn = self._function()
        items = self._items(rows)
        t0 = time.perf_counter()
        result = fn(items, **self.cfg.params) if self.cfg.params else fn(items)
        if inspect.isawaitable(result):
            result = asyncio.run(result) if not _running_loop() else _run_in_thread(result)
        dt = time.perf_counter() - t0
        result = list(result)
        if len(result) != len(items):
            raise ProviderSetupError(f"{self.cfg.function} returned {len(result)} results for {len(items)} rows")
        out = {"output": [], "prompt_tokens": [], "completion_tokens": [], "latency_s": [], "error": []}
        per = dt / len(items) if items else 0.0
        for r in result:
            if isinstance(r, dict):
                out["output"].append(None if r.get("output") is None else str(r.get("output")))
                out["prompt_tokens"].append(r.get("prompt_tokens"))
                out["completion_tokens"].append(r.get("completion_tokens"))
                out["error"].append(r.get("error"))
            else:
                out["output"].append(None if r is None else str(r))
                out["prompt_tokens"].append(None)
                out["completion_tokens"].append(None)
                out["error"].append(None if r is not None else "no output")
            out["latency_s"].append(per)
        return out


def _source_hash(fn) -> str | None:
    try:
        src = inspect.getsource(inspect.unwrap(fn))
    except (OSError, TypeError):  # a builtin, or code without a source file
        return None
    return hashlib.sha256(src.encode()).hexdigest()[:16]


def _running_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(coro):
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()
