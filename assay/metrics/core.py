"""Assay's metrics: plain Python/numpy, one class per metric.

Every metric scores a list of predictions (model outputs, ``None`` for a failed call)
against a list of references:

* ``score_each(predictions, references)`` gives one float per example (NaN where the
  reference is missing), or ``None`` for a metric that only exists at corpus level;
* ``aggregate(predictions, references)`` gives the corpus value. For a *decomposable*
  metric it is the NaN-ignoring mean of ``score_each``, so a bootstrap can resample the
  per-example scores instead of recomputing the metric.

A ``None`` (or NaN) prediction is a failed model call: it counts as wrong (score 0), it
never raises. A missing reference (``None``/NaN) leaves the example out (score NaN).

Heavy libraries (sacrebleu, rouge_score, jsonschema, evaluate) are imported inside the
metrics that need them, so that ``import assay.metrics`` stays cheap.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import os
import re
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from assay import workers as W
from assay.errors import MetricError

__all__ = [
    "Metric",
    "EvaluateMetric",
    "EvaluateModuleInputs",
    "ExactMatch",
    "Accuracy",
    "MacroF1",
    "MicroF1",
    "MacroPrecision",
    "MacroRecall",
    "Rouge1",
    "Rouge2",
    "RougeL",
    "Bleu",
    "Chrf",
    "NumericMatch",
    "RegexMatch",
    "Contains",
    "JsonValid",
    "JsonSchema",
    "OutputLength",
    "BUILTINS",
    "normalize_text",
    "extract_number",
    "parse_json",
    "label_counts",
]


# ---------------------------------------------------------------------------------------
# helpers


def is_missing(x: Any) -> bool:
    """None, float NaN and pandas' NA count as missing."""
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    if isinstance(x, np.floating) and np.isnan(x):
        return True
    return type(x).__name__ in ("NAType", "NaTType")


def to_text(x: Any) -> str | None:
    """A prediction or label as text: missing -> None, 3.0 -> "3" (pandas turns int columns with gaps into floats)."""
    if is_missing(x):
        return None
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", errors="replace")
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


def _is_multi(ref: Any) -> bool:
    """A reference given as several acceptable answers (list/tuple/set/array of them)."""
    return isinstance(ref, (list, tuple, set, frozenset, np.ndarray))


def _alternatives(ref: Any) -> list[str] | None:
    """The acceptable reference texts, or None when the reference is missing."""
    if _is_multi(ref):
        alts = [t for t in (to_text(r) for r in ref) if t is not None]
        return alts or None
    t = to_text(ref)
    return None if t is None else [t]


def _as_list(values: Any, what: str) -> list:
    if values is None:
        raise ValueError(f"{what} must be a sequence, got None")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of values, not a single string")
    return list(values)


def _pairs(predictions, references) -> tuple[list, list]:
    preds = _as_list(predictions, "predictions")
    refs = _as_list(references, "references")
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions but {len(refs)} references")
    return preds, refs


def nanmean(scores) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    if scores is None:
        return float("nan")
    a = np.asarray(scores, dtype=float)
    ok = ~np.isnan(a)
    if not ok.any():
        return float("nan")
    return float(a[ok].mean())


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _strip_punctuation(s: str, and_whitespace: bool) -> str:
    """Remove leading/trailing punctuation (Unicode category P*), keeping a minus sign before a number."""
    start, end = 0, len(s)
    while start < end:
        ch = s[start]
        if ch == "-" and start + 1 < end and (s[start + 1].isdigit() or (s[start + 1] == "." and start + 2 < end and s[start + 2].isdigit())):
            break
        if _is_punct(ch) or (and_whitespace and ch.isspace()):
            start += 1
        else:
            break
    while end > start and (_is_punct(s[end - 1]) or (and_whitespace and s[end - 1].isspace())):
        end -= 1
    return s[start:end]


_WS = re.compile(r"\s+")


def normalize_text(
    text: Any,
    ignore_case: bool = True,
    strip: bool = True,
    ignore_punctuation: bool = True,
    normalize_whitespace: bool = True,
    regexes_to_ignore: Sequence[str | re.Pattern] = (),
) -> str | None:
    """The normalisation behind exact_match, accuracy and the F1 family.

    In order: remove every match of ``regexes_to_ignore``; lower-case; collapse runs of
    whitespace to one space; strip surrounding whitespace; strip leading/trailing
    punctuation (Unicode categories P*, so ``"(B)."`` -> ``"b"``, but ``"-5"`` keeps its
    sign). Missing values give None.
    """
    s = to_text(text)
    if s is None:
        return None
    for rx in regexes_to_ignore:
        s = re.sub(rx, "", s)
    if ignore_case:
        s = s.casefold()
    if normalize_whitespace:
        s = _WS.sub(" ", s)
    if strip:
        s = s.strip()
    if ignore_punctuation:
        s = _strip_punctuation(s, and_whitespace=strip)
    return s


# a number: optional sign (not glued to a word, so "COVID-19" gives 19), thousands
# separators "1,234,567", decimals, exponent; or ".5"
_NUMBER = re.compile(
    r"(?:(?<![\w])[-+\u2212])?"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE][-+]?\d+)?"
)


def extract_number(text: Any) -> float | None:
    """The first number in ``text`` as a float (``"$1,234.5 total"`` -> 1234.5), or None."""
    if is_missing(text):
        return None
    if isinstance(text, (bool, np.bool_)):
        return float(text)
    if isinstance(text, (int, float, np.integer, np.floating)):
        return float(text)
    m = _NUMBER.search(to_text(text))
    if m is None:
        return None
    s = m.group(0).replace(",", "").replace("\u2212", "-")
    try:
        return float(s)
    except ValueError:  # pragma: no cover - the pattern only matches parseable numbers
        return None


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc|json5)?[ \t]*\r?\n?(.*?)```", re.DOTALL)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _loads(s: str) -> Any:
    # NaN/Infinity are accepted by Python's json but are not JSON
    return json.loads(s, parse_constant=_reject_constant)


def parse_json(text: Any) -> tuple[bool, Any]:
    """``(True, value)`` if ``text`` is JSON, or contains a ```json fenced block that is; else ``(False, None)``."""
    if is_missing(text):
        return False, None
    if isinstance(text, (dict, list)):
        return True, text
    s = to_text(text).strip()
    if not s:
        return False, None
    try:
        return True, _loads(s)
    except ValueError:
        pass
    for m in _FENCE.finditer(s):
        try:
            return True, _loads(m.group(1).strip())
        except ValueError:
            continue
    return False, None


def _import_attr(target: str) -> Any:
    """The object named by a ``"package.module:attr"`` string."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def option_parameters(cls: Any) -> list:
    """The named options of metric class ``cls``, as :class:`inspect.Parameter` (with their defaults).

    They are the constructor's keyword parameters, following ``**options`` up the class
    hierarchy and, where the chain stays open, on to ``cls.options_forwarded_to`` (the
    library callable that receives them, e.g. sacrebleu's ``BLEU``). ``predictions`` and
    ``references`` are a metric's inputs, never its options.
    """
    found: dict[str, inspect.Parameter] = {}
    open_ended = True
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else klass
        if init is None:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            open_ended = False
            break
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self":
                found.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            open_ended = False
            break
    target = getattr(cls, "options_forwarded_to", None)
    if open_ended and target:
        for p in inspect.signature(_import_attr(target)).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                found.setdefault(p.name, p)
    return [p for name, p in found.items() if name not in ("predictions", "references")]


# ---------------------------------------------------------------------------------------
# citations of the builtins (their evaluate modules carry them)

_CITE_ASSAY = r"""
@misc{assay,
  title = {Assay: assessing large language models for production},
  note = {metric implemented in assay.metrics.core},
}
"""

_CITE_SKLEARN = r"""
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V.
          and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P.
          and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_CITE_ROUGE = r"""
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    month = jul,
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

_CITE_SACREBLEU = r"""
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_CITE_BLEU = r"""
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    month = jul,
    year = "2002",
    address = "Philadelphia, Pennsylvania, USA",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/P02-1040",
    pages = "311--318",
}
"""

_CITE_CHRF = r"""
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    month = sep,
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
}
"""

_CITE_JSON_SCHEMA = r"""
@misc{json-schema,
  title = {{JSON} Schema},
  howpublished = {\url{https://json-schema.org/}},
}
"""


# ---------------------------------------------------------------------------------------
# the metric interface


class Metric:
    """A metric: per-example scores and a corpus value.

    Subclasses set ``name``, ``higher_is_better`` and ``decomposable`` and implement
    ``score_each``; corpus metrics (``decomposable = False``) also override ``aggregate``.
    Options arrive as constructor keyword arguments (``MetricSpec.args``).

    A builtin's documentation lives on its class: the docstring (followed by those of its
    private base classes) describes it, ``:param name:`` fields in the constructor's
    docstring describe its options, and the attributes below the rest. Its ``evaluate``
    module file in ``assay/metrics/modules/`` is generated from them
    (``python -m assay.metrics.modules._generate``), with each example's value computed by
    running the metric.
    """

    name: str = "metric"
    higher_is_better: bool = True
    decomposable: bool = True
    #: constructor options holding file paths; build_metric resolves them against the config's directory
    path_options: tuple[str, ...] = ()
    #: cached helper objects, rebuilt on demand: not pickled (metrics travel to worker processes)
    _transient: tuple[str, ...] = ()
    #: ``"module:attr"`` of the library callable that receives the constructor's ``**options``
    options_forwarded_to: str | None = None

    # -- documentation (see the class docstring)
    #: display name
    title: str = ""
    #: what the corpus value is (the evaluate module's ``Returns``)
    value_doc: str = "between 0 and 1"
    #: what the references are
    references_doc: str = "the references"
    #: a reference may be a list of acceptable references
    multi_reference: bool = False
    #: references are not needed: ``compute(predictions=...)`` alone works
    references_optional: bool = False
    #: keyword arguments of ``compute`` for the documented examples (their values are computed)
    examples: tuple[dict[str, Any], ...] = ()
    citation: str = _CITE_ASSAY
    reference_urls: tuple[str, ...] = ()

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in self._transient:
            state[k] = None
        return state

    def score_each(self, predictions: Sequence[str | None], references: Sequence[Any]) -> np.ndarray | None:
        raise NotImplementedError

    def aggregate(self, predictions: Sequence[str | None], references: Sequence[Any]) -> float:
        return nanmean(self.score_each(predictions, references))

    def compute(self, predictions: Sequence[str | None], references: Sequence[Any]) -> dict[str, float]:
        """``{name: aggregate}``, shaped like ``evaluate``'s ``compute`` result."""
        return {self.name: self.aggregate(predictions, references)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "options", {}).items())
        return f"{type(self).__name__}({opts})"


_MISSING = object()
#: distinct texts a metric keeps normalised (free text beyond this is normalised each time)
_NORM_CACHE_SIZE = 100_000


class _Normalised(Metric):
    """Predictions and references are compared after normalisation (``normalize_text``): by
    default case, surrounding whitespace, runs of whitespace and leading/trailing punctuation
    are ignored, so " b. " matches "B" but "The answer is B." does not. Labels that are
    numbers are compared as text (1 matches "1", and 3.0 matches "3").
    """

    def __init__(
        self,
        ignore_case: bool = True,
        strip: bool = True,
        ignore_punctuation: bool = True,
        normalize_whitespace: bool = True,
        regexes_to_ignore: Sequence[str] | str = (),
    ):
        """
        :param ignore_case: compare case-insensitively (Unicode casefold).
        :param strip: strip surrounding whitespace.
        :param ignore_punctuation: strip leading and trailing punctuation (Unicode categories
            P*; a minus sign in front of a number is kept).
        :param normalize_whitespace: collapse runs of whitespace to one space.
        :param regexes_to_ignore: regular expressions (one, or a list) whose matches are
            removed before anything else, so they see the original case.
        """
        if isinstance(regexes_to_ignore, str):
            regexes_to_ignore = [regexes_to_ignore]
        self.options = dict(
            ignore_case=bool(ignore_case),
            strip=bool(strip),
            ignore_punctuation=bool(ignore_punctuation),
            normalize_whitespace=bool(normalize_whitespace),
            regexes_to_ignore=list(regexes_to_ignore),
        )
        self._norm = dict(self.options, regexes_to_ignore=[re.compile(r) for r in regexes_to_ignore])
        self._norm_cache: dict[str, str | None] | None = None

    # labels repeat: each distinct text is normalised once (the bootstrap asks for the same ones again and again)
    _transient = ("_norm_cache",)

    def normalize(self, text: Any) -> str | None:
        if type(text) is str:
            cache = self.__dict__.get("_norm_cache")
            if cache is None:
                cache = self._norm_cache = {}
            out = cache.get(text, _MISSING)
            if out is _MISSING:
                out = normalize_text(text, **self._norm)
                if len(cache) < _NORM_CACHE_SIZE:
                    cache[text] = out
            return out
        return normalize_text(text, **self._norm)


class ExactMatch(_Normalised):
    """Share of predictions equal to their reference after normalisation.

    A reference may be a list of acceptable answers: any one matching counts. A failed model
    call (prediction None) counts as a miss; an example whose reference is None is left out.
    """

    name = "exact_match"
    title = "Exact match"
    value_doc = "share of exact matches, between 0 and 1"
    multi_reference = True
    examples = ({"predictions": ["Paris.", "london", None], "references": ["paris", "Berlin", ["Rome", "Roma"]]},)

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            if alts is None:
                out[i] = np.nan
                continue
            p = self.normalize(p)
            out[i] = 0.0 if p is None else float(any(p == self.normalize(a) for a in alts))
        return out


class Accuracy(ExactMatch):
    """Label accuracy: the share of predictions equal to their label after normalisation, so a
    generated "Positive." counts for the label "positive".

    A failed model call (prediction None) counts as wrong; an example whose label is None is
    left out.
    """

    name = "accuracy"
    title = "Accuracy"
    value_doc = "share of correct labels, between 0 and 1"
    multi_reference = False
    examples = (
        {"predictions": ["Positive.", "negative", "neutral", None], "references": ["positive", "negative", "positive", "neutral"]},
    )


def label_counts(
    predictions: Sequence[str | None], references: Sequence[str | None], labels: Sequence[str] | None = None,
    union: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives.

    The labels are ``labels`` if given, else the sorted labels seen in the references (or,
    with ``union``, in the references and predictions, as sklearn does by default). An LLM
    that answers with free text would otherwise add one zero-F1 "class" per distinct wrong
    string and drag the macro average down for reasons that have nothing to do with the
    task. A None prediction (failed call) is a false negative for its reference's label and
    a false positive for nothing; pairs with a None reference are ignored.
    """
    pairs = [(p, r) for p, r in zip(predictions, references) if r is not None]
    if labels is None:
        labels = sorted({r for _, r in pairs} | ({p for p, _ in pairs if p is not None} if union else set()))
    index = {lab: i for i, lab in enumerate(labels)}
    tp = np.zeros(len(labels))
    fp = np.zeros(len(labels))
    fn = np.zeros(len(labels))
    for p, r in pairs:
        if p == r:
            if r in index:
                tp[index[r]] += 1
            continue
        if p is not None and p in index:
            fp[index[p]] += 1
        if r in index:
            fn[index[r]] += 1
    return list(labels), tp, fp, fn


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


class _LabelMetric(_Normalised):
    """The labels averaged over are, by default, the labels the references use
    (``label_set="references"``): an answer that is no label (free text, a typo) is wrong for
    its reference's label but is not a class of its own adding a zero to the average.
    ``label_set="union"`` also counts the labels predicted, as scikit-learn does by default;
    ``labels`` fixes the set. A label that is never predicted (or never the reference)
    scores 0 (scikit-learn's ``zero_division=0``). A failed model call (prediction None) is
    a false negative for its reference's label and a false positive for no label; an
    example whose label is None is left out.
    """

    # score_each gives per-example correctness (0/1) for inspection; the corpus value is
    # not its mean
    decomposable = False
    average = "macro"
    measure = "f1"
    citation = _CITE_SKLEARN
    examples = (
        {"predictions": ["a", "b", "b", "c"], "references": ["a", "a", "b", "b"]},
        {"predictions": ["a", "b", "b", "c"], "references": ["a", "a", "b", "b"], "label_set": "union"},
    )

    def __init__(self, labels: Sequence[Any] | None = None, label_set: str = "references", **options):
        """
        :param labels: the labels to average over (normalised like the inputs); when given,
            ``label_set`` is not used.
        :param label_set: without ``labels``, which labels are averaged over: "references"
            (the labels the references use) or "union" (those and the labels predicted, as
            scikit-learn's default).
        """
        super().__init__(**options)
        if label_set not in ("references", "union"):
            raise MetricError(f"label_set must be 'references' or 'union', got {label_set!r}")
        self.options["labels"] = None if labels is None else list(labels)
        self.options["label_set"] = label_set
        self._union = label_set == "union"
        self._labels = None if labels is None else list(dict.fromkeys(self.normalize(lab) for lab in labels))

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            r = self.normalize(r)
            if r is None:
                out[i] = np.nan
            else:
                out[i] = float(self.normalize(p) == r)
        return out

    def aggregate(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        refs = [self.normalize(r) for r in refs]
        if all(r is None for r in refs):
            return float("nan")
        labels, tp, fp, fn = label_counts([self.normalize(p) for p in preds], refs, self._labels, self._union)
        if not labels:
            return float("nan")
        return float(self._from_counts(tp[None, :], fp[None, :], fn[None, :])[0])

    def _from_counts(self, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        """The measure per row of (resamples × labels) count matrices."""
        if self.average == "micro":
            tp, fp, fn = tp.sum(axis=1, keepdims=True), fp.sum(axis=1, keepdims=True), fn.sum(axis=1, keepdims=True)
        if self.measure == "precision":
            per_label = _divide(tp, tp + fp)
        elif self.measure == "recall":
            per_label = _divide(tp, tp + fn)
        else:
            per_label = _divide(2 * tp, 2 * tp + fp + fn)
        return per_label.mean(axis=1)


    def resample_aggregates(self, predictions, references, indices: np.ndarray) -> np.ndarray:
        """The corpus value on many resamples at once (rows of ``indices``), for the bootstrap.

        Labels are normalised and encoded once; per-resample counts come from one bincount,
        which is what makes a 1,000-resample interval of macro-F1 cost milliseconds.
        """
        preds, refs = _pairs(predictions, references)
        refs_n = [self.normalize(r) for r in refs]
        preds_n = [self.normalize(p) for p in preds]
        labels = self._labels
        if labels is None:
            labels = sorted({r for r in refs_n if r is not None}
                            | ({p for p in preds_n if p is not None} if self._union else set()))
        index = {lab: i for i, lab in enumerate(labels)}
        n_labels = len(labels)
        k = indices.shape[0]
        if n_labels == 0:
            return np.full(k, np.nan)
        r = np.array([-2 if x is None else index.get(x, -1) for x in refs_n], dtype=np.int64)
        p = np.array([-3 if x is None else index.get(x, -1) for x in preds_n], dtype=np.int64)
        R, P = r[indices], p[indices]
        valid = R != -2
        offset = (np.arange(k, dtype=np.int64) * n_labels)[:, None]
        size = k * n_labels

        def count(mask, lab):
            return np.bincount((offset + lab)[mask], minlength=size).reshape(k, n_labels).astype(float)

        same = (P == R) | ((P == -1) & (R == -1))
        tp = count(same & (R >= 0) & valid, R)
        fp = count(~same & (P >= 0) & valid, P)
        fn = count(~same & (R >= 0) & valid, R)
        return self._from_counts(tp, fp, fn)


class MacroF1(_LabelMetric):
    """Macro F1: F1 per label, averaged over the labels with equal weight, as
    ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_f1"
    title = "Macro F1"
    average, measure = "macro", "f1"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",)


class MicroF1(_LabelMetric):
    """Micro F1: F1 from the true positive, false positive and false negative counts pooled
    over the labels, as ``sklearn.metrics.f1_score(average="micro", zero_division=0)`` over
    the same labels. With ``label_set="union"`` and no failed call it equals accuracy; with
    the default label set an answer that is no label is not a false positive, so it can be
    higher.
    """

    name = "micro_f1"
    title = "Micro F1"
    average, measure = "micro", "f1"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",)


class MacroPrecision(_LabelMetric):
    """Macro precision: per label, the share of the predictions of that label that are right,
    averaged over the labels with equal weight, as
    ``sklearn.metrics.precision_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_precision"
    title = "Macro precision"
    average, measure = "macro", "precision"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html",)


class MacroRecall(_LabelMetric):
    """Macro recall: per label, the share of its examples predicted as that label, averaged
    over the labels with equal weight, as
    ``sklearn.metrics.recall_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_recall"
    title = "Macro recall"
    average, measure = "macro", "recall"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html",)


class _Rouge(Metric):
    """The F-measure from Google's ``rouge_score`` package, averaged over examples. Text is
    tokenized by rouge_score's default tokenizer: lower case, runs of ``[a-z0-9]`` (every
    other character, non-ASCII letters included, is dropped). With several references for
    one example the best-scoring one counts (``score_multi``). A failed model call
    (prediction None) scores 0; an example whose reference is None is left out.
    """

    rouge_type = "rouge1"
    _transient = ("_scorer",)
    value_doc = "mean F-measure over examples, between 0 and 1"
    multi_reference = True
    citation = _CITE_ROUGE
    reference_urls = ("https://github.com/google-research/google-research/tree/master/rouge",)
    examples = ({"predictions": ["the cat sat down", None], "references": ["The cat sat.", "a dog"]},)

    def __init__(self, use_stemmer: bool = False):
        """
        :param use_stemmer: Porter-stem the tokens before matching.
        """
        self.options = {"use_stemmer": bool(use_stemmer)}
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            # lazy: optional (the metrics extra)
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer([self.rouge_type], use_stemmer=self.options["use_stemmer"])
        return self._scorer

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            if alts is None:
                out[i] = np.nan
                continue
            p = to_text(p) or ""
            if len(alts) == 1:
                s = self.scorer.score(alts[0], p)
            else:
                s = self.scorer.score_multi(alts, p)
            out[i] = s[self.rouge_type].fmeasure
        return out


class Rouge1(_Rouge):
    """ROUGE-1: unigram overlap between prediction and reference."""

    name = rouge_type = "rouge1"
    title = "ROUGE-1"


class Rouge2(_Rouge):
    """ROUGE-2: bigram overlap between prediction and reference."""

    name = rouge_type = "rouge2"
    title = "ROUGE-2"


class RougeL(_Rouge):
    """ROUGE-L: longest common subsequence of prediction and reference."""

    name = rouge_type = "rougeL"
    title = "ROUGE-L"


class _SacreBleu(Metric):
    """A corpus score from ``sacrebleu``, on its 0-100 scale (not a mean of sentence scores);
    the options are the sacrebleu metric's. A reference may be a list of references, their
    number varying per example. A failed model call (prediction None) is scored as an empty
    hypothesis; an example whose reference is None is left out.
    """

    # score_each gives sentence-level scores; several references per example are passed
    # as reference streams (missing ones as None)
    decomposable = False
    _transient = ("_corpus", "_sentence")
    multi_reference = True
    reference_urls = ("https://github.com/mjpost/sacrebleu",)

    def __init__(self, **options):
        self.options = dict(options)
        self._corpus = self._make(**options)  # fails early on a bad option
        self._sentence = None

    def _make(self, **options):
        return _import_attr(self.options_forwarded_to)(**options)

    def _corpus_metric(self):
        if self._corpus is None:
            self._corpus = self._make(**self.options)
        return self._corpus

    def _sentence_metric(self):
        return self._corpus_metric()

    def _streams(self, predictions, references) -> tuple[list[str], list[list[str | None]]]:
        preds, refs = _pairs(predictions, references)
        hyps, ref_lists = [], []
        for p, r in zip(preds, refs):
            alts = _alternatives(r)
            if alts is None:
                continue
            hyps.append(to_text(p) or "")
            ref_lists.append(alts)
        width = max((len(a) for a in ref_lists), default=1)
        streams = [[a[k] if k < len(a) else None for a in ref_lists] for k in range(width)]
        return hyps, streams

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        metric = self._sentence_metric()
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            out[i] = np.nan if alts is None else metric.sentence_score(to_text(p) or "", alts).score
        return out

    def aggregate(self, predictions, references):
        hyps, streams = self._streams(predictions, references)
        if not hyps:
            return float("nan")
        return float(self._corpus_metric().corpus_score(hyps, streams).score)


class Bleu(_SacreBleu):
    """BLEU as ``sacrebleu.corpus_bleu`` computes it (per-example scores use effective order,
    like ``sacrebleu.sentence_bleu``).
    """

    name = "bleu"
    title = "SacreBLEU"
    options_forwarded_to = "sacrebleu.metrics:BLEU"
    value_doc = "corpus BLEU, between 0 and 100"
    citation = _CITE_BLEU + _CITE_SACREBLEU
    examples = (
        {"predictions": ["the cat sat on the mat", "hello there"], "references": [["the cat sat on a mat", "a cat sat on the mat"], ["hello there"]]},
    )

    def _sentence_metric(self):
        if self._sentence is None:
            self._sentence = self._make(**{**self.options, "effective_order": True})
        return self._sentence


class Chrf(_SacreBleu):
    """chrF as ``sacrebleu.corpus_chrf`` computes it (``word_order=2`` gives chrF++)."""

    name = "chrf"
    title = "chrF"
    options_forwarded_to = "sacrebleu.metrics:CHRF"
    value_doc = "corpus chrF, between 0 and 100"
    citation = _CITE_CHRF + _CITE_SACREBLEU
    examples = (
        {"predictions": ["the cat sat on the mat"], "references": ["the cat sat on a mat"]},
        {"predictions": ["the cat sat on the mat"], "references": ["the cat sat on a mat"], "word_order": 2},
    )


class NumericMatch(Metric):
    """Share of predictions whose first number is close to the reference number
    (``math.isclose`` with ``rel_tol`` and ``abs_tol``).

    Numbers may carry a sign, thousands separators, decimals and an exponent ("The total is
    $1,234.50" gives 1234.5). The reference is a number, or text holding one. A prediction
    without a number, or a failed model call (None), counts as wrong; an example whose
    reference holds no number is left out.
    """

    name = "numeric_match"
    title = "Numeric match"
    value_doc = "share of matching numbers, between 0 and 1"
    references_doc = "the expected numbers (numbers, or text holding one)"
    examples = ({"predictions": ["The answer is 42.", "about 3.5", "none"], "references": ["42", 3.5, "0"]},)

    def __init__(self, rel_tol: float = 0.0, abs_tol: float = 1e-6):
        """
        :param rel_tol: relative tolerance.
        :param abs_tol: absolute tolerance.
        """
        if rel_tol < 0 or abs_tol < 0:
            raise MetricError("rel_tol and abs_tol must be >= 0")
        self.options = {"rel_tol": float(rel_tol), "abs_tol": float(abs_tol)}

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            targets = [extract_number(a) for a in (r if _is_multi(r) else [r])]
            targets = [t for t in targets if t is not None]
            if not targets:
                out[i] = np.nan
                continue
            x = extract_number(to_text(p))
            out[i] = 0.0 if x is None else float(any(math.isclose(x, t, **self.options) for t in targets))
        return out


class RegexMatch(Metric):
    """Share of predictions in which a regular expression is found (``re.search``).

    The pattern is the ``pattern`` option or, without it, each example's reference (an
    example whose reference is None is then left out). A failed model call (prediction
    None) counts as no match.
    """

    name = "regex_match"
    title = "Regex match"
    value_doc = "share of matches, between 0 and 1"
    references_doc = "the patterns (ignored when ``pattern`` is given)"
    examples = (
        {"predictions": ["Order #123 shipped", "no order"], "references": [r"#\d+", r"#\d+"]},
        {"predictions": ["Order #123 shipped", "no order"], "references": [None, None], "pattern": "ORDER", "ignore_case": True},
    )

    def __init__(self, pattern: str | None = None, ignore_case: bool = False):
        """
        :param pattern: the regular expression; without it, each reference is the pattern.
        :param ignore_case: match case-insensitively.
        """
        self.options = {"pattern": pattern, "ignore_case": bool(ignore_case)}
        self._flags = re.IGNORECASE if ignore_case else 0
        self._pattern = None if pattern is None else re.compile(pattern, self._flags)

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        cache: dict[str, re.Pattern] = {}
        for i, (p, r) in enumerate(zip(preds, refs)):
            if self._pattern is not None:
                patterns = [self._pattern]
            else:
                alts = _alternatives(r)
                if alts is None:
                    out[i] = np.nan
                    continue
                patterns = [cache.setdefault(a, re.compile(a, self._flags)) for a in alts]
            p = to_text(p)
            out[i] = 0.0 if p is None else float(any(rx.search(p) for rx in patterns))
        return out


class Contains(Metric):
    """Share of predictions that contain their reference as a substring (any of them, for a
    list of references).

    A failed model call (prediction None) counts as a miss; an example whose reference is
    None is left out.
    """

    name = "contains"
    title = "Contains"
    value_doc = "share of predictions containing their reference, between 0 and 1"
    multi_reference = True
    examples = ({"predictions": ["The capital is Paris.", "I think Lyon"], "references": ["paris", "Marseille"]},)

    def __init__(self, ignore_case: bool = True):
        """
        :param ignore_case: compare case-insensitively (Unicode casefold).
        """
        self.options = {"ignore_case": bool(ignore_case)}

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        fold = str.casefold if self.options["ignore_case"] else (lambda s: s)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            if alts is None:
                out[i] = np.nan
                continue
            p = to_text(p)
            out[i] = 0.0 if p is None else float(any(fold(a) in fold(p) for a in alts))
        return out


class JsonValid(Metric):
    """Share of predictions that are valid JSON, as a whole or in a ```json fenced block (as
    chat models often answer). NaN and Infinity are not JSON.

    References are ignored and may be left out. A failed model call (prediction None) counts
    as invalid.
    """

    name = "json_valid"
    title = "Valid JSON"
    value_doc = "share of valid JSON outputs, between 0 and 1"
    references_doc = "ignored"
    references_optional = True
    examples = ({"predictions": ['{"a": 1}', 'Here:\n```json\n[1, 2]\n```', "{a: 1}", '{"a": NaN}']},)

    def __init__(self):
        self.options = {}

    def score_each(self, predictions, references=None):
        preds = _as_list(predictions, "predictions")
        if references is not None:
            _pairs(preds, references)
        return np.array([float(parse_json(p)[0]) for p in preds], dtype=float)


def _load_schema(schema: Any) -> Mapping:
    if isinstance(schema, Mapping):
        return schema
    if isinstance(schema, (str, os.PathLike)):
        text = str(schema)
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                return json.load(f)
        ok, value = parse_json(text)
        if ok and isinstance(value, Mapping):
            return value
        raise MetricError(f"json_schema: schema {text!r} is neither a JSON file nor a JSON object")
    if isinstance(schema, bool):
        return schema  # type: ignore[return-value]  # true/false are valid schemas
    raise MetricError(f"json_schema: schema must be a dict or a path to a JSON file, got {type(schema).__name__}")


class JsonSchema(Metric):
    """Share of predictions that are JSON (whole, or in a ```json fenced block) conforming to a
    JSON Schema, checked with the ``jsonschema`` package (the draft is taken from the
    schema's ``$schema``, the latest by default).

    The schema is the ``schema`` option or, without it, each example's reference (JSON text;
    an example whose reference is None is then left out). A failed model call (prediction
    None) counts as invalid.
    """

    name = "json_schema"
    path_options = ("schema",)
    _transient = ("_validator",)
    title = "JSON schema conformance"
    value_doc = "share of conforming outputs, between 0 and 1"
    references_doc = "JSON schemas, used when ``schema`` is not given"
    references_optional = True
    citation = _CITE_JSON_SCHEMA
    reference_urls = ("https://json-schema.org/", "https://python-jsonschema.readthedocs.io/")
    examples = (
        {
            "predictions": ['{"label": "yes"}', '{"label": "maybe"}', "```json\n{\"label\": \"no\"}\n```"],
            "schema": {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["yes", "no"]}}},
        },
    )

    def __init__(self, schema: Mapping | str | None = None):
        """
        :param schema: the JSON Schema: a dict, JSON text or the path of a JSON file; without
            it, each reference is the schema.
        """
        self.options = {"schema": schema}
        self._schema = None if schema is None else _load_schema(schema)
        self._validator = None if self._schema is None else self._make_validator(self._schema)

    @property
    def validator(self):
        if self._validator is None and self._schema is not None:
            self._validator = self._make_validator(self._schema)
        return self._validator

    @staticmethod
    def _make_validator(schema):
        # lazy: optional (the metrics extra)
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise MetricError(f"json_schema: invalid schema: {e.message}") from None
        return cls(schema)

    def score_each(self, predictions, references=None):
        preds = _as_list(predictions, "predictions")
        refs = [None] * len(preds) if references is None else _pairs(preds, references)[1]
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            validator = self.validator
            if validator is None:
                if is_missing(r):
                    out[i] = np.nan
                    continue
                validator = self._make_validator(_load_schema(r))
            ok, value = parse_json(p)
            out[i] = float(ok and validator.is_valid(value))
        return out


class OutputLength(Metric):
    """Mean length of the predictions, in characters (``unit="chars"``) or whitespace-separated
    words. Lower is better (shorter answers are cheaper).

    References are ignored and may be left out. A failed model call (prediction None) has no
    length and is left out of the mean.
    """

    name = "output_length"
    higher_is_better = False
    title = "Output length"
    value_doc = "mean length, in characters or words"
    references_doc = "ignored"
    references_optional = True
    examples = ({"predictions": ["abc", "hello world", None]}, {"predictions": ["abc", "hello world", None], "unit": "words"})

    def __init__(self, unit: str = "chars"):
        """
        :param unit: "chars" or "words".
        """
        if unit not in ("chars", "words"):
            raise MetricError(f"output_length: unit must be 'chars' or 'words', got {unit!r}")
        self.options = {"unit": unit}

    def score_each(self, predictions, references=None):
        preds = _as_list(predictions, "predictions")
        if references is not None:
            _pairs(preds, references)
        words = self.options["unit"] == "words"
        out = np.empty(len(preds), dtype=float)
        for i, p in enumerate(preds):
            p = to_text(p)
            out[i] = np.nan if p is None else float(len(p.split()) if words else len(p))
        return out


BUILTINS: dict[str, type[Metric]] = {
    cls.name: cls
    for cls in (
        ExactMatch,
        Accuracy,
        MacroF1,
        MicroF1,
        MacroPrecision,
        MacroRecall,
        Rouge1,
        Rouge2,
        RougeL,
        Bleu,
        Chrf,
        NumericMatch,
        RegexMatch,
        Contains,
        JsonValid,
        JsonSchema,
        OutputLength,
    )
}


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

    def __init__(self, module: Any, name: str | None = None, key: str | None = None, higher_is_better: bool = True,
                 workers: int | None = None, timeout_s: float | None = None, **args):
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
        self._memo = [*self._memo[-(self.MEMO - 1):], (preds, refs, result)]
        return result

    def _per_example(self, result, n: int):
        if self.key is None or not isinstance(result, Mapping):
            return None
        v = result.get(self.key)
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if isinstance(v, (list, tuple)) and len(v) == n and all(
                x is None or (isinstance(x, (int, float, np.number)) and not isinstance(x, bool)) for x in v):
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
            return Probe(False, {}, t_whole, time.perf_counter() - t1,
                         f"not probed per example: the module fails on a single example ({type(e).__name__}: {str(e)[:120]})")
        single = time.perf_counter() - t2
        workers = self._probe_workers()
        estimate = single * len(todo) / max(1, workers)
        if estimate > budget_s:
            return Probe(False, {}, t_whole, single,
                         f"per-example probe skipped: about {estimate:.3g} s for {len(todo)} examples, over {budget}",
                         skipped=True)
        calls = [((rows[m][2][j], rows[m][3][j]), {}) for m, j in todo]
        if workers and W.can_fork():
            outcomes = W.run(None, calls, workers=workers, timeout_s=self.timeout_s, fn=self.example_value)
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
            return Probe(False, {}, t_whole, spent, f"per-example probe: {len(failed)} of {len(calls)} examples failed "
                                                    f"(first: {str(failed[0])[:120]})", failures=len(failed))
        each, at = {}, 0
        for model, (n, keep, _, _) in rows.items():
            vals = np.array([float(v) for _, v in outcomes[at:at + len(keep)]], dtype=float)
            at += len(keep)
            mean = float(vals.mean()) if len(vals) else float("nan")
            if not (len(vals) and math.isclose(mean, whole[model], rel_tol=1e-9, abs_tol=1e-12)):
                return Probe(False, {}, t_whole, spent,
                             f"not a mean of per-example values ({model}: whole set {whole[model]:.6g}, mean of its "
                             f"examples {mean:.6g})")
            out = np.full(n, np.nan)
            out[keep] = vals
            each[model] = out
        return Probe(True, each, t_whole, spent, "an aggregate-only module whose whole-set value is the mean of its "
                                                 "per-example values: scored per example")

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
