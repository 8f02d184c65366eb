"""Regex match: Assay's ``regex_match`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/regex_match.py")

The computation is ``assay.metrics.core.RegexMatch``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions in which a regular expression is found (re.search). The pattern is
the `pattern` option, or, without it, each example's reference. A failed model call
(prediction None) counts as no match.
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
    references (`list` of `str`): patterns (ignored when `pattern` is given).
Options (keyword arguments of `compute`):
    pattern (`str`, optional): the regular expression; defaults to each reference.
    ignore_case (`bool`, defaults to `False`): match case-insensitively.
Returns:
    regex_match (`float`): share of matches, between 0 and 1.
Examples:
    >>> regex_match = evaluate.load("assay/metrics/modules/regex_match.py")
    >>> regex_match.compute(predictions=["Order #123 shipped", "no order"], references=[r"#\d+", r"#\d+"])
    {'regex_match': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RegexMatch(core.EvaluateModuleInputs, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=[],
        )

    def _compute(self, predictions, references, **options):
        return {"regex_match": core.RegexMatch(**options).aggregate(predictions, references)}
