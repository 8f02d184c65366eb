"""Answers found in the output: a number (numeric_match), a pattern (regex_match), a substring (contains)."""

from __future__ import annotations

import math
import re

import numpy as np

from assay.errors import MetricError
from assay.metrics.base import (
    Metric,
)
from assay.metrics.text import (
    _alternatives,
    _is_multi,
    _pairs,
    extract_number,
    to_text,
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
