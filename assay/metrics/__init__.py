"""Assay's metrics library.

``METRICS`` maps metric names to :class:`Metric` classes (or lazy ``"module:attr"``
targets, so more metrics, such as the LLM judge, can be registered without importing
them). ``build_metric`` turns a ``MetricSpec`` from pipelines.yaml into a ready metric:

* ``name: accuracy`` -> the registered class, instantiated with ``args``;
* ``path: metrics/my_metric.py`` -> a Hugging Face ``evaluate`` module loaded from that
  file (relative to the config's directory) and wrapped in :class:`EvaluateMetric`;
* any other name -> ``evaluate.load(name)`` from the Hub, unless ``HF_HUB_OFFLINE`` is set;
* ``function: pkg.module:score`` (or ``path: file.py`` with ``function: score``) -> a plain
  function called per example, wrapped in :class:`~assay.metrics.function.FunctionMetric`.

Each builtin also exists as an ``evaluate`` module in ``assay/metrics/modules/<name>.py``
(see :func:`evaluate_module_path`), for use from the Hugging Face ecosystem; those files are
generated from ``builtin.BUILTINS`` by ``python -m assay.metrics.modules._generate``.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import MetricError
from assay.metrics.adapter import EvaluateMetric
from assay.metrics.base import Metric, option_parameters
from assay.metrics.builtin import BUILTINS
from assay.registry import Registry, UnknownName

if TYPE_CHECKING:  # pragma: no cover
    from assay.config import MetricSpec

__all__ = ["METRICS", "Metric", "EvaluateMetric", "build_metric", "evaluate_module_path", "MODULES_DIR"]

METRICS: Registry[type[Metric]] = Registry("metric")
for _name, _cls in BUILTINS.items():
    METRICS.register(_name, _cls)
del _name, _cls
# the LLM judge (imported only when a pipeline uses it)
METRICS.register("judge", "assay.metrics.judge:LLMJudge")
# the pairwise judge: each model's answers against another model's (the incumbent's)
METRICS.register("pairwise", "assay.metrics.pairwise:PairwiseJudge")
# code execution: runs generated programs with their tests in subprocesses
METRICS.register("pass_at_k", "assay.metrics.code:PassAtK")

#: spec keys passed to a registered metric whose constructor takes them (pass_at_k)
_EXECUTION_OPTIONS = ("workers", "timeout_s", "memory_mb")

#: where the ``evaluate`` versions of the builtins live
MODULES_DIR = Path(__file__).resolve().parent / "modules"

_TRUE = {"1", "ON", "YES", "TRUE"}
# options of EvaluateMetric itself, not passed on to module.compute()
_ADAPTER_OPTIONS = ("key", "higher_is_better")


def evaluate_module_path(name: str) -> str:
    """Absolute path of the ``evaluate`` module file for builtin metric ``name``."""
    path = MODULES_DIR / f"{name}.py"
    if name not in BUILTINS or not path.is_file():
        raise UnknownName("metric module", name, sorted(BUILTINS))
    return str(path)


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or HF_EVALUATE_OFFLINE) is set to a true value."""
    return any(os.environ.get(v, "").strip().upper() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"))


def _options_of(cls: Any) -> list[str]:
    """Names of the options ``cls`` takes (see :func:`core.option_parameters`)."""
    try:
        return [p.name for p in option_parameters(cls)]
    except Exception:  # noqa: BLE001  (only used to word an error message)
        return []


def _set_name(metric: Metric, key: str) -> Metric:
    if getattr(metric, "name", None) != key:
        try:
            metric.name = key
        except AttributeError:
            pass
    return metric


def _build_registered(spec: MetricSpec, base_dir: str | None, judge: Any = None) -> Metric:
    cls = METRICS.get(spec.name)
    args = dict(spec.args or {})
    if judge is not None:
        args["judge"] = judge  # the judge model's provider, built by the run
    elif spec.judge is not None:
        args.setdefault("judge", spec.judge)
    if getattr(spec, "against", None) is not None:
        if "against" not in _options_of(cls):
            raise ValueError(f"metric {spec.name!r}: against applies to the pairwise metric, not to {spec.name!r}")
        args["against"] = spec.against
    for opt in _EXECUTION_OPTIONS:
        value = getattr(spec, opt, None)
        if value is not None:
            if opt not in _options_of(cls):
                raise MetricError(
                    f"metric {spec.name!r}: {opt} applies to per-example metrics (function metrics, "
                    f"pass_at_k), not to {spec.name!r}"
                )
            args[opt] = value
    for opt in getattr(cls, "path_options", ()):
        value = args.get(opt)
        if isinstance(value, str) and not value.lstrip().startswith(("{", "[")):  # not inline JSON
            value = os.path.expanduser(value)
            if base_dir is not None and not os.path.isabs(value):
                value = os.path.join(base_dir, value)
            args[opt] = value
    try:
        metric = cls(**args)
    except TypeError as e:
        options = _options_of(cls)
        allowed = f"; its options: {', '.join(options)}" if options else ""
        raise MetricError(f"metric {spec.name!r}: bad options {sorted(args)}: {e}{allowed}") from None
    return _set_name(metric, spec.key)


def _wrap(module: Any, spec: MetricSpec) -> EvaluateMetric:
    args = dict(spec.args or {})
    adapter = {k: args.pop(k) for k in _ADAPTER_OPTIONS if k in args}
    # workers and timeout_s are the per-example probe's (see EvaluateMetric.probe)
    return EvaluateMetric(module, name=spec.key, workers=spec.workers, timeout_s=spec.timeout_s, **adapter, **args)


def _build_from_path(spec: MetricSpec, base_dir: str | None) -> EvaluateMetric:
    path = os.path.expanduser(spec.path)
    if not os.path.isabs(path) and base_dir is not None:
        path = os.path.join(base_dir, path)
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise MetricError(f"metric {spec.key!r}: no evaluate module at {path}")
    try:
        import evaluate

        module = evaluate.load(path, keep_in_memory=True)
    except Exception as e:
        raise MetricError(f"metric {spec.key!r}: could not load the evaluate module {path}: {type(e).__name__}: {e}") from e
    return _wrap(module, spec)


def _build_from_hub(spec: MetricSpec) -> EvaluateMetric:
    name = spec.name
    try:
        METRICS.check(name)
    except UnknownName as e:
        close = difflib.get_close_matches(name, e.known, n=3, cutoff=0.5)
    else:  # pragma: no cover - only called for unregistered names
        close = []
    try:
        if hub_offline():
            raise RuntimeError("HF_HUB_OFFLINE is set")
        import evaluate

        module = evaluate.load(name, keep_in_memory=True)
    except Exception as e:
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        reason = str(e) or type(e).__name__
        raise MetricError(
            f"metric {name!r} is not built in and could not be loaded from the Hugging Face hub (offline?): "
            f"{reason}; built-in metrics: {', '.join(METRICS.names())}{hint}"
        ) from e
    return _wrap(module, spec)


def _build_function(spec: MetricSpec, base_dir: str | None) -> Metric:
    # lazy: only a pipeline with a function metric needs it
    from assay.metrics.function import FunctionMetric

    args = dict(spec.args or {})
    hib = args.pop("higher_is_better", True)
    try:
        return FunctionMetric(
            spec.function,
            path=spec.path,
            base_dir=base_dir,
            name=spec.key,
            higher_is_better=hib,
            workers=spec.workers,
            timeout_s=spec.timeout_s,
            memory_mb=spec.memory_mb,
            **args,
        )
    except ValueError as e:
        raise MetricError(f"metric {spec.key!r}: {e}") from None
    except Exception as e:
        raise MetricError(f"metric {spec.key!r}: could not load function {spec.function!r}: {type(e).__name__}: {e}") from e


def build_metric(spec: MetricSpec, base_dir: str | None = None, judge: Any = None) -> Metric:
    """The metric described by ``spec``; ``base_dir`` resolves relative paths (the config's directory).

    ``judge`` is the judge model's :class:`~assay.providers.Provider` (built by the run from
    ``spec.judge``), handed to a metric that takes one (``name: judge``); without it such a
    metric gets the model's name only.
    """
    if spec.function:
        return _build_function(spec, base_dir)
    if spec.path:
        return _build_from_path(spec, base_dir)
    if spec.name in METRICS:
        return _build_registered(spec, base_dir, judge)
    return _build_from_hub(spec)
