"""Exact match: Assay's ``exact_match`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/exact_match.py")

The computation is ``assay.metrics.core.ExactMatch``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions that equal their reference after normalisation: by default case,
surrounding whitespace, runs of whitespace and leading/trailing punctuation are ignored,
so "The answer is B." does not match "B" but " b. " does. A reference may be a list of
acceptable answers (any one matching counts). A failed model call (prediction None)
counts as a miss; an example whose reference is None is left out.
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
    references (`list` of `str`, or of `list` of `str`): the references; a list gives several acceptable ones.
Options (keyword arguments of `compute`):
    ignore_case (`bool`, defaults to `True`): compare case-insensitively (Unicode casefold).
    strip (`bool`, defaults to `True`): strip surrounding whitespace.
    ignore_punctuation (`bool`, defaults to `True`): strip leading and trailing punctuation
        (Unicode categories P*; a minus sign in front of a number is kept).
    normalize_whitespace (`bool`, defaults to `True`): collapse runs of whitespace to one space.
    regexes_to_ignore (`list` of `str`, defaults to `[]`): remove every match of these
        regular expressions first.
Returns:
    exact_match (`float`): share of exact matches, between 0 and 1.
Examples:
    >>> exact_match = evaluate.load("assay/metrics/modules/exact_match.py")
    >>> exact_match.compute(predictions=["Paris.", "london", None], references=["paris", "Berlin", "Rome"])
    {'exact_match': 0.3333333333333333}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(core.EvaluateModuleInputs, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {"predictions": datasets.Value("string"), "references": datasets.Sequence(datasets.Value("string"))}
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=[],
        )

    def _compute(self, predictions, references, **options):
        return {"exact_match": core.ExactMatch(**options).aggregate(predictions, references)}
