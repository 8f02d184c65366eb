"""Accuracy: Assay's ``accuracy`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/accuracy.py")

The computation is ``assay.metrics.core.Accuracy``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Label accuracy: the share of predictions equal to their label after the same
normalisation as exact_match (case, surrounding whitespace and punctuation ignored by
default), so a generated "Positive." counts for the label "positive". Integer labels are
compared as text ("1" == 1). A failed model call (prediction None) counts as wrong; an
example whose label is None is left out.
"""

_CITATION = r"""
@misc{assay,
  title = {Assay: assessing large language models for production},
  note = {metric implemented in assay.metrics.core},
}
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): model outputs; None marks a failed model call.
    references (`list` of `str`): the references.
Options (keyword arguments of `compute`):
    ignore_case (`bool`, defaults to `True`): compare case-insensitively (Unicode casefold).
    strip (`bool`, defaults to `True`): strip surrounding whitespace.
    ignore_punctuation (`bool`, defaults to `True`): strip leading and trailing punctuation
        (Unicode categories P*; a minus sign in front of a number is kept).
    normalize_whitespace (`bool`, defaults to `True`): collapse runs of whitespace to one space.
    regexes_to_ignore (`list` of `str`, defaults to `[]`): remove every match of these
        regular expressions first.
Returns:
    accuracy (`float`): share of correct labels, between 0 and 1.
Examples:
    >>> accuracy = evaluate.load("assay/metrics/modules/accuracy.py")
    >>> accuracy.compute(predictions=["Positive.", "negative", "neutral", None], references=["positive", "negative", "positive", "neutral"])
    {'accuracy': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(core.EvaluateModuleInputs, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=[],
        )

    def _compute(self, predictions, references, **options):
        return {"accuracy": core.Accuracy(**options).aggregate(predictions, references)}
