"""Contains: Assay's ``contains`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/contains.py")

The computation is ``assay.metrics.core.Contains``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions that contain their reference as a substring (any of them, for a
list of references). A failed model call (prediction None) counts as a miss.
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
    ignore_case (`bool`, defaults to `True`): compare case-insensitively.
Returns:
    contains (`float`): share of predictions containing the reference, between 0 and 1.
Examples:
    >>> contains = evaluate.load("assay/metrics/modules/contains.py")
    >>> contains.compute(predictions=["The capital is Paris.", "I think Lyon"], references=["paris", "Marseille"])
    {'contains': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Contains(core.EvaluateModuleInputs, evaluate.Metric):
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
        return {"contains": core.Contains(**options).aggregate(predictions, references)}
