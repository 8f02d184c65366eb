"""Hugging Face ``evaluate`` modules as Assay metrics (:class:`EvaluateMetric`), and the inputs of Assay's own metrics as evaluate modules."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import assay.workers
from assay.errors import MetricError
from assay.metrics.base import (
    Metric,
)
from assay.metrics.text import (
    _as_list,
    _is_multi,
    _pairs,
    is_missing,
    nanmean,
    to_text,
)

# ---------------------------------------------------------------------------------------
# Hugging Face evaluate


def _hf_value(x: Any) -> Any:
    """One input made to fit a string feature: None stays None, labels/numbers become text, dicts JSON."""
    if is_missing(x):
        return None
    if isinstance(x, str):
        return x
    if isinstance(x, Mapping):
        return json.dumps(x)
    if _is_multi(x):
        return [_hf_value(v) for v in x]
    return to_text(x)


def _hf_column(values: Any) -> Any:
    return None if values is None else [_hf_value(v) for v in values]


class EvaluateModuleInputs:
    """Mixin for Assay's ``evaluate`` modules (``class Accuracy(core.EvaluateModuleInputs, evaluate.Metric)``).

    evaluate checks that the *first* item of a string column is a ``str``, so a failed
    call (None) or an integer label in first position would be rejected, and later ones
    silently cast. This mixin makes inputs uniform before evaluate sees them: None is
    kept (and allowed anywhere), labels and numbers become text (``3.0`` -> ``"3"``),
    dicts become JSON. With ``references_optional``, ``compute(predictions=...)`` alone works.
    It is not an ``evaluate`` class itself, so ``evaluate.load`` still finds the module's
    own metric class.
    """

    references_optional = False

    # evaluate appends the inputs description to these docstrings, so they must have one
    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references (None, labels and numbers accepted)."""
        if references is None and predictions is not None and self.references_optional:
            references = [None] * len(predictions)
        if references is not None and any(_is_multi(r) for r in references):
            # evaluate picks the feature format from the first example: make them all lists
            references = [r if _is_multi(r) or is_missing(r) else [r] for r in references]
        return super().add_batch(predictions=_hf_column(predictions), references=_hf_column(references), **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs):
        """Add one prediction and reference (None, labels and numbers accepted)."""
        return super().add(prediction=_hf_value(prediction), reference=_hf_value(reference), **kwargs)

    def _enforce_nested_string_type(self, schema, obj):
        if obj is None:
            return None
        return super()._enforce_nested_string_type(schema, obj)


# ---------------------------------------------------------------------------------------
# metrics written for Hugging Face evaluate


def _first_number(result: Any, key: str | None, where: str) -> float:
    if not isinstance(result, Mapping):
        if isinstance(result, (int, float, np.number)) and not isinstance(result, bool):
            return float(result)
        raise MetricError(f"{where}: compute() returned {type(result).__name__}, expected a dict")
    if key is not None:
        if key not in result:
            raise MetricError(f"{where}: compute() result has no key {key!r} (keys: {', '.join(map(str, result))})")
        value = result[key]
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
            raise MetricError(f"{where}: result[{key!r}] is {type(value).__name__}, not a number")
        return float(value)
    for value in result.values():
        if isinstance(value, np.ndarray) and value.size == 1:
            value = value.item()
        if isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_)):
            return float(value)
    raise MetricError(f"{where}: compute() result has no numeric value (keys: {', '.join(map(str, result))})")


class EvaluateMetric(Metric):
    """Adapter for an ``evaluate`` module (loaded with ``evaluate.load``).

    ``aggregate`` calls ``module.compute(predictions=..., references=..., **args)`` and
    takes ``result[key]`` if ``key`` is given, else the first numeric value. A failed call
    (None prediction) is passed on as an empty string.

    When ``result[key]`` is a list with one number per example (``key`` given), the module is
    a per-example metric: ``score_each`` returns that list and the bootstrap resamples it, with
    one computation in all. Otherwise the module only returns an aggregate (``score_each``
    returns None) and the score stage probes it (:meth:`probe`): computed on each example alone,
    in ``workers`` processes under ``timeout_s`` each, a module whose per-example values average
    to its whole-set value is a mean and is scored per example from then on; any other is
    resampled whole within a time budget (``computations`` counts the whole computations).
    """

    decomposable = False
    #: whole computations kept for reuse (one per model's predictions: the point value, the probe's)
    MEMO = 16

    def __init__(
        self,
        module: Any,
        name: str | None = None,
        key: str | None = None,
        higher_is_better: bool = True,
        workers: int | None = None,
        timeout_s: float | None = None,
        **args,
    ):
        self.module = module
        self.name = name or getattr(module, "name", None) or "metric"
        self.key = key
        self.higher_is_better = bool(higher_is_better)
        self.args = args
        self.workers, self.timeout_s = workers, timeout_s
        self.options = dict(args, key=key, higher_is_better=self.higher_is_better)
        self.computations = 0
        #: seconds of the slowest whole computation so far (the unit of the bootstrap's time budget)
        self.computation_s = 0.0
        self._memo: list = []
        self._direct = False  # the probe calls the module's _compute itself (see _use_direct)

    def _inputs(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        keep = [i for i, r in enumerate(refs) if not is_missing(r)]
        return keep, ["" if is_missing(preds[i]) else preds[i] for i in keep], [refs[i] for i in keep]

    def _compute(self, preds, refs):
        for p, r, result in self._memo:
            if p == preds and r == refs:
                return result
        self.computations += 1
        t = time.perf_counter()
        result = self.module.compute(predictions=preds, references=refs, **self.args)
        if len(preds) > 1:  # a resample's or the whole set's time, not the probe's single examples
            self.computation_s = max(self.computation_s, time.perf_counter() - t)
        self._memo = [*self._memo[-(self.MEMO - 1) :], (preds, refs, result)]
        return result

    def _per_example(self, result, n: int):
        if self.key is None or not isinstance(result, Mapping):
            return None
        v = result.get(self.key)
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if (
            isinstance(v, (list, tuple))
            and len(v) == n
            and all(x is None or (isinstance(x, (int, float, np.number)) and not isinstance(x, bool)) for x in v)
        ):
            return np.array([np.nan if x is None else float(x) for x in v], dtype=float)
        return None

    def score_each(self, predictions, references):
        keep, preds, refs = self._inputs(predictions, references)
        if not preds:
            return None
        each = self._per_example(self._compute(preds, refs), len(preds))
        if each is None:
            return None
        self.decomposable = True
        out = np.full(len(_as_list(predictions, "predictions")), np.nan)
        out[keep] = each
        return out

    def __getstate__(self):
        state = super().__getstate__()
        state["_memo"] = []
        return state

    def aggregate(self, predictions, references):
        keep, preds, refs = self._inputs(predictions, references)
        result = self._compute(preds, refs)
        each = self._per_example(result, len(preds))
        if each is not None:
            return nanmean(each)
        return _first_number(result, self.key, f"metric {self.name!r}")

    def example_value(self, prediction, reference) -> float:
        """The module computed on one example alone (not memoised, not counted)."""
        if self._direct:
            result = self.module._compute(predictions=[prediction], references=[reference], **self.args)
        else:
            result = self.module.compute(predictions=[prediction], references=[reference], **self.args)
        return _first_number(result, self.key, f"metric {self.name!r}")

    def _use_direct(self, prediction, reference) -> bool:
        """Whether the module's own ``_compute`` gives what ``compute`` gives on this example. ``compute``
        first writes the inputs to an Arrow table and reads them back (about 10 ms a call, more than
        many modules' own work): the probe skips that when it changes nothing."""
        self._direct = False
        if not callable(getattr(self.module, "_compute", None)):
            return False
        try:
            direct = self.module._compute(predictions=[prediction], references=[reference], **self.args)
            through = self.module.compute(predictions=[prediction], references=[reference], **self.args)
            same = _first_number(direct, self.key, "") == _first_number(through, self.key, "")
        except Exception:  # noqa: BLE001 (then compute, as for the whole set)
            return False
        self._direct = bool(same)
        return self._direct

    def probe(self, inputs: dict, budget_s: float) -> Probe:
        """Whether this aggregate-only module is a mean of per-example values.

        ``inputs`` maps each model to its (predictions, references), one per response row. Each
        model's whole-set value is computed (memoised: it is the point value) and timed; then,
        when their estimated time fits in ``budget_s``, every example alone, in ``workers``
        processes (forked, so the module is not imported again) under ``timeout_s`` each. The
        module is a mean when, for every model, the mean of its per-example values equals its
        whole-set value to 1e-9 relative; the probe's per-example values are then the scores.
        """
        t0 = time.perf_counter()
        whole, rows = {}, {}
        for model, (preds, refs) in inputs.items():
            keep, p, r = self._inputs(preds, refs)
            rows[model] = (len(preds), keep, p, r)
            whole[model] = self.aggregate(preds, refs) if p else float("nan")
        t_whole = time.perf_counter() - t0
        budget = f"bootstrap_budget_s {budget_s:g}"
        todo = [(model, i) for model, (_, keep, _, _) in rows.items() for i in range(len(keep))]
        if not todo:
            return Probe(False, {}, t_whole, 0.0, "no example with a reference to probe")
        t1 = time.perf_counter()
        model, i = todo[0]
        first = rows[model]
        try:  # one example here first: it times the probe, and a module that cannot take one example stops here
            self._use_direct(first[2][i], first[3][i])
            t2 = time.perf_counter()
            self.example_value(first[2][i], first[3][i])
        except Exception as e:  # noqa: BLE001 (any failure of the user's module on one example says the same)
            return Probe(
                False,
                {},
                t_whole,
                time.perf_counter() - t1,
                f"not probed per example: the module fails on a single example ({type(e).__name__}: {str(e)[:120]})",
            )
        single = time.perf_counter() - t2
        workers = self._probe_workers()
        estimate = single * len(todo) / max(1, workers)
        if estimate > budget_s:
            return Probe(
                False,
                {},
                t_whole,
                single,
                f"per-example probe skipped: about {estimate:.3g} s for {len(todo)} examples, over {budget}",
                skipped=True,
            )
        calls = [((rows[m][2][j], rows[m][3][j]), {}) for m, j in todo]
        if workers and assay.workers.can_fork():
            outcomes = assay.workers.run(None, calls, workers=workers, timeout_s=self.timeout_s, fn=self.example_value)
        else:  # no worker processes (``workers: 0``, or no fork): here, one by one
            outcomes = []
            for args, _ in calls:
                try:
                    outcomes.append((True, self.example_value(*args)))
                except Exception as e:  # noqa: BLE001
                    outcomes.append((False, f"{type(e).__name__}: {e}"))
        spent = time.perf_counter() - t1
        failed = [v for ok, v in outcomes if not ok]
        if failed:
            return Probe(
                False,
                {},
                t_whole,
                spent,
                f"per-example probe: {len(failed)} of {len(calls)} examples failed (first: {str(failed[0])[:120]})",
                failures=len(failed),
            )
        each, at = {}, 0
        for model, (n, keep, _, _) in rows.items():
            vals = np.array([float(v) for _, v in outcomes[at : at + len(keep)]], dtype=float)
            at += len(keep)
            mean = float(vals.mean()) if len(vals) else float("nan")
            if not (len(vals) and math.isclose(mean, whole[model], rel_tol=1e-9, abs_tol=1e-12)):
                return Probe(
                    False,
                    {},
                    t_whole,
                    spent,
                    f"not a mean of per-example values ({model}: whole set {whole[model]:.6g}, mean of its examples {mean:.6g})",
                )
            out = np.full(n, np.nan)
            out[keep] = vals
            each[model] = out
        return Probe(
            True,
            each,
            t_whole,
            spent,
            "an aggregate-only module whose whole-set value is the mean of its per-example values: scored per example",
        )

    def _probe_workers(self) -> int:
        if self.workers is not None:
            return int(self.workers)
        return max(1, min(4, os.cpu_count() or 1))


@dataclass
class Probe:
    """What :meth:`EvaluateMetric.probe` found: ``mean`` (and then ``each``, model -> per-row
    values), the seconds of the whole-set computations and of the probe, and a note saying so."""

    mean: bool
    each: dict
    whole_s: float
    probe_s: float
    note: str
    skipped: bool = False
    failures: int = 0
