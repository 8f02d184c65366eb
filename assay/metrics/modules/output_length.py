"""Output length: Assay's ``output_length`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/output_length.py")

The computation is ``assay.metrics.core.OutputLength``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Mean length of the predictions, in characters (default) or whitespace-separated words.
Lower is better (shorter answers are cheaper). References are ignored and may be left
out. A failed model call (prediction None) has no length and is left out of the mean.
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
    references (`list` of `str`, optional): ignored.
Options (keyword arguments of `compute`):
    unit (`str`, defaults to `"chars"`): `"chars"` or `"words"`.
Returns:
    output_length (`float`): mean length.
Examples:
    >>> output_length = evaluate.load("assay/metrics/modules/output_length.py")
    >>> output_length.compute(predictions=["abc", "hello world"], unit="words")
    {'output_length': 1.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class OutputLength(core.EvaluateModuleInputs, evaluate.Metric):
    references_optional = True

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=[],
        )

    def _compute(self, predictions, references, **options):
        return {"output_length": core.OutputLength(**options).aggregate(predictions, references)}
