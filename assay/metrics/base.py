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
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from assay.metrics.text import (
    nanmean,
    normalize_text,
)


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
  note = {metric implemented in assay.metrics},
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
