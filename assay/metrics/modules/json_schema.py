"""JSON schema conformance: Assay's ``json_schema`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/json_schema.py")

The computation is ``assay.metrics.core.JsonSchema``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Share of predictions that are valid JSON (whole, or in a ```json fenced block) and conform
to a JSON Schema, checked with the jsonschema package (the draft is taken from the
schema's $schema, latest by default). The schema is the `schema` option (a dict or a path
to a JSON file) or, without it, each example's reference (a JSON string). A failed model
call (prediction None) counts as invalid.
"""

_CITATION = r"""
@misc{json-schema,
  title = {{JSON} Schema},
  howpublished = {\url{https://json-schema.org/}},
}
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): model outputs; None marks a failed model call.
    references (`list` of `str`, optional): JSON schemas, used when `schema` is not given.
Options (keyword arguments of `compute`):
    schema (`dict` or `str`, optional): the JSON Schema, or the path of a JSON file holding it.
Returns:
    json_schema (`float`): share of conforming outputs, between 0 and 1.
Examples:
    >>> json_schema = evaluate.load("assay/metrics/modules/json_schema.py")
    >>> schema = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["yes", "no"]}}}
    >>> json_schema.compute(predictions=['{"label": "yes"}', '{"label": "maybe"}'], schema=schema)
    {'json_schema': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class JsonSchema(core.EvaluateModuleInputs, evaluate.Metric):
    references_optional = True

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=['https://json-schema.org/', 'https://python-jsonschema.readthedocs.io/'],
        )

    def _compute(self, predictions, references, **options):
        return {"json_schema": core.JsonSchema(**options).aggregate(predictions, references)}
