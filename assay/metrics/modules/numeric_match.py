"""Numeric match: Assay's ``numeric_match`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/numeric_match.py")

The computation is ``assay.metrics.core.NumericMatch``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions whose first number equals the reference number within tolerance
(math.isclose with rel_tol and abs_tol). Numbers may carry a sign, thousands separators,
decimals and an exponent ("The total is $1,234.50" gives 1234.5). The reference is a
number or text holding one; pass numbers as numbers or strings. A prediction without a
number, or a failed model call (None), counts as wrong.
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
    references (`list` of `str` or numbers): the expected numbers.
Options (keyword arguments of `compute`):
    rel_tol (`float`, defaults to `0`): relative tolerance.
    abs_tol (`float`, defaults to `1e-6`): absolute tolerance.
Returns:
    numeric_match (`float`): share of matching numbers, between 0 and 1.
Examples:
    >>> numeric_match = evaluate.load("assay/metrics/modules/numeric_match.py")
    >>> numeric_match.compute(predictions=["The answer is 42.", "about 3.5", "none"], references=["42", "3.50", "0"])
    {'numeric_match': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class NumericMatch(core.EvaluateModuleInputs, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=[],
        )

    def _compute(self, predictions, references, **options):
        return {"numeric_match": core.NumericMatch(**options).aggregate(predictions, references)}
