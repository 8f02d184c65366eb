"""The length of the outputs (output_length): a cost proxy, references not needed."""

from __future__ import annotations

import numpy as np

from assay.errors import MetricError
from assay.metrics.base import (
    Metric,
)
from assay.metrics.text import (
    _as_list,
    _pairs,
    to_text,
)


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
