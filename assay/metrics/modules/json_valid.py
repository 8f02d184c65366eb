"""Valid JSON: Assay's ``json_valid`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/json_valid.py")

The computation is ``assay.metrics.core.JsonValid``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions that are valid JSON, either as a whole or in a ```json fenced block
(as chat models often answer). NaN/Infinity are not JSON. References are ignored and may be
left out. A failed model call (prediction None) counts as invalid.
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
    (none)
Returns:
    json_valid (`float`): share of valid JSON outputs, between 0 and 1.
Examples:
    >>> json_valid = evaluate.load("assay/metrics/modules/json_valid.py")
    >>> json_valid.compute(predictions=['{"a": 1}', 'Here:\n```json\n[1, 2]\n```', "{a: 1}"])
    {'json_valid': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JsonValid(core.EvaluateModuleInputs, evaluate.Metric):
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
        return {"json_valid": core.JsonValid(**options).aggregate(predictions, references)}
