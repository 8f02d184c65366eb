"""The builtin metrics by name (:data:`BUILTINS`), gathered from their families' modules.

The ``evaluate`` versions in ``assay/metrics/modules/`` import their classes from here.
"""

from __future__ import annotations

from assay.metrics.adapter import EvaluateMetric, EvaluateModuleInputs
from assay.metrics.base import Metric
from assay.metrics.classification import Accuracy, ExactMatch, MacroF1, MacroPrecision, MacroRecall, MicroF1, label_counts
from assay.metrics.length import OutputLength
from assay.metrics.matching import Contains, NumericMatch, RegexMatch
from assay.metrics.overlap import Bleu, Chrf, Rouge1, Rouge2, RougeL
from assay.metrics.structured import JsonSchema, JsonValid
from assay.metrics.text import extract_number, normalize_text, parse_json

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
