"""A plain Python function as a metric, called once per example.

Config::

    metrics:
      - {function: my_pkg.metrics:score}                  # importable (the config's folder is on the path)
      - {path: my_metrics.py, function: score}            # a function in a file, relative to the config
      - {function: my_pkg.metrics:tests_pass, workers: 4, timeout_s: 20, memory_mb: 512}

The function is called as ``fn(output, reference, row, **args)``: the model's output (text), the
example's reference and its dataset row (a dict of every column: ``example_id``, the inputs, the
slice columns, ...). It returns a number (``True``/``False`` count as 1/0; ``None`` or NaN leaves
the example out), or a dict of named numbers, each a metric of its own (``<key>.<name>``). It may
be ``async``.

* A failed model call (no output) is not passed to the function: it scores 0 (NaN for a score
  that is lower-is-better).
* An exception, a value that is not a number, or (in worker processes) a timeout or a worker
  that dies is a *score error* on that example: its score is NaN and the error is kept in
  scores.parquet's ``score_error`` column; the stage goes on.
* ``workers: N`` runs a sync function in N worker processes (see :mod:`assay.workers`);
  ``timeout_s`` and ``memory_mb`` need worker processes, so they imply one when ``workers`` is
  not given. An async function runs in this process, ``workers`` calls at a time (16 by
  default), each under ``timeout_s``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from assay import workers
from assay.metrics.base import Metric
from assay.metrics.text import is_missing
from assay.workers import load_function

__all__ = ["FunctionMetric", "ExampleScores", "load_function"]

#: concurrent calls of an async function metric when ``workers`` is not given
ASYNC_CONCURRENCY = 16


@dataclass
class ExampleScores:
    """A per-example metric's results: named per-example scores ("" for the metric's own key),
    details (kept in scores.parquet's ``detail``) and score errors (None where it scored)."""

    values: dict[str, np.ndarray]
    details: list | None
    errors: list[str | None]


def _is_async(fn) -> bool:
    # a callable object whose __call__ is a coroutine function is async too
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


def _as_number(v: Any) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, (bool, np.bool_)):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v)
    raise TypeError(f"returned {type(v).__name__} {v!r:.60}, not a number")


def parse_result(v: Any) -> dict[str, float]:
    """A function's return value as named numbers ("" for a single number)."""
    if isinstance(v, dict):
        return {str(k): _as_number(x) for k, x in v.items()}
    return {"": _as_number(v)}


class FunctionMetric(Metric):
    """A user's function, called per example with (output, reference, row)."""

    decomposable = True
    needs_rows = True

    def __init__(
        self,
        function: str,
        path: str | None = None,
        base_dir: str | None = None,
        name: str | None = None,
        higher_is_better: bool | dict = True,
        workers: int | None = None,
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        **args,
    ):
        self.function, self.path, self.base_dir = function, path, base_dir
        self.name = name or (function.rpartition(":")[2] if ":" in function else function)
        self._hib = higher_is_better
        self.higher_is_better = bool(higher_is_better) if not isinstance(higher_is_better, dict) else True
        self.workers, self.timeout_s, self.memory_mb = workers, timeout_s, memory_mb
        self.args = args
        self.options = dict(args, function=function, path=path, workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)
        self._fn = load_function(function, path, base_dir)  # fails now, at config time, not mid-run
        self.is_async = _is_async(self._fn)

    _transient = ("_fn",)

    @property
    def fn(self):
        if self._fn is None:
            self._fn = load_function(self.function, self.path, self.base_dir)
        return self._fn

    def higher_is_better_of(self, sub: str) -> bool:
        if isinstance(self._hib, dict):
            return bool(self._hib.get(sub, True))
        return bool(self._hib)

    def in_workers(self) -> bool:
        return not self.is_async and (bool(self.workers) or self.timeout_s is not None or self.memory_mb is not None)

    # -- scoring
    def score_each(self, predictions, references):
        return self.score_examples(predictions, references, None).values.get("")

    def score_examples(self, predictions, references, rows) -> ExampleScores:
        preds, refs = list(predictions), list(references)
        n = len(preds)
        rows = rows if rows is not None else [{"reference": r} for r in refs]
        todo = [i for i in range(n) if not is_missing(preds[i])]
        calls = [((preds[i], refs[i], rows[i]), self.args) for i in todo]
        if self.in_workers():
            outcomes = workers.run(
                ("assay.workers:load_function", self.function, self.path, self.base_dir),
                calls,
                workers=max(1, int(self.workers or 1)),
                timeout_s=self.timeout_s,
                memory_mb=self.memory_mb,
            )
        elif self.is_async:
            outcomes = _run_async(self.fn, calls, int(self.workers or ASYNC_CONCURRENCY), self.timeout_s)
        else:
            outcomes = []
            for args, kwargs in calls:
                try:
                    outcomes.append((True, self.fn(*args, **kwargs)))
                except Exception as e:  # noqa: BLE001  (a user's function: its error is that example's)
                    outcomes.append((False, f"{type(e).__name__}: {e}"))
        named: dict[str, np.ndarray] = {}
        errors: list[str | None] = [None] * n
        for i, (ok, value) in zip(todo, outcomes):
            if ok:
                try:
                    parsed = parse_result(value)
                except TypeError as e:
                    ok, value = False, str(e)
                else:
                    for k, v in parsed.items():
                        if k not in named:
                            named[k] = np.full(n, np.nan)
                        named[k][i] = v
            if not ok:
                errors[i] = str(value)
        if not named:
            named[""] = np.full(n, np.nan)
        failed_calls = [i for i in range(n) if is_missing(preds[i])]
        for k, arr in named.items():  # a failed model call is wrong, whatever the function would say
            arr[failed_calls] = 0.0 if self.higher_is_better_of(k) else np.nan
        return ExampleScores(named, None, errors)


def _run_async(fn, calls, concurrency: int, timeout_s: float | None) -> list[tuple[bool, Any]]:
    async def main():
        sem = asyncio.Semaphore(max(1, concurrency))

        async def one(args, kwargs):
            async with sem:
                try:
                    coro = fn(*args, **kwargs)
                    value = await (asyncio.wait_for(coro, timeout_s) if timeout_s else coro)
                    return True, value
                except TimeoutError:
                    return False, f"timed out after {timeout_s:g} s"
                except Exception as e:  # noqa: BLE001  (a user's function: its error is that example's)
                    return False, f"{type(e).__name__}: {e}"

        return await asyncio.gather(*(one(a, k) for a, k in calls))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return list(asyncio.run(main()))
    with ThreadPoolExecutor(1, thread_name_prefix="assay-metric") as ex:  # called from inside a loop
        return list(ex.submit(lambda: asyncio.run(main())).result())


def _nan_to_none(v: float) -> float | None:
    return None if math.isnan(v) else v
