"""ROUGE-L: Assay's ``rougeL`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/rougeL.py")

The computation is ``assay.metrics.core.RougeL``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
ROUGE-L F-measure (longest common subsequence) from Google's rouge_score package, averaged over
examples (between 0 and 1). Text is tokenized by rouge_score's default tokenizer: lower
case, runs of [a-z0-9] (non-ASCII letters are dropped). With a list of references per
example the best-scoring reference counts. A failed model call (prediction None) scores
0; an example whose reference is None is left out.
"""

_CITATION = r"""
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    month = jul,
    year = "2004",
    address = "Barcelona, Spain",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W04-1013",
    pages = "74--81",
}
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): model outputs; None marks a failed model call.
    references (`list` of `str`, or of `list` of `str`): the references; a list gives several acceptable ones.
Options (keyword arguments of `compute`):
    use_stemmer (`bool`, defaults to `False`): Porter-stem tokens before matching.
Returns:
    rougeL (`float`): mean F-measure over examples, between 0 and 1.
Examples:
    >>> rougeL = evaluate.load("assay/metrics/modules/rougeL.py")
    >>> rougeL.compute(predictions=["the cat sat down"], references=["the cat sat"])
    {'rougeL': 0.8571428571428571}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(core.EvaluateModuleInputs, evaluate.Metric):
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
            reference_urls=['https://github.com/google-research/google-research/tree/master/rouge'],
        )

    def _compute(self, predictions, references, **options):
        return {"rougeL": core.RougeL(**options).aggregate(predictions, references)}
