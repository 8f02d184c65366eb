"""SacreBLEU: Assay's ``bleu`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/bleu.py")

The computation is ``assay.metrics.core.Bleu``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Corpus BLEU from sacrebleu (sacrebleu.corpus_bleu), on sacrebleu's 0-100 scale. Options are
passed to sacrebleu.metrics.BLEU (lowercase, tokenize, smooth_method, smooth_value,
max_ngram_order, effective_order, ...). A reference may be a list of references (their
number may vary per example). A failed model call (prediction None) is scored as an empty
hypothesis; an example whose reference is None is left out.
"""

_CITATION = r"""
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    month = jul,
    year = "2002",
    address = "Philadelphia, Pennsylvania, USA",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/P02-1040",
    pages = "311--318",
}
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    month = oct,
    year = "2018",
    address = "Belgium, Brussels",
    publisher = "Association for Computational Linguistics",
    url = "https://www.aclweb.org/anthology/W18-6319",
    pages = "186--191",
}
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): model outputs; None marks a failed model call.
    references (`list` of `str`, or of `list` of `str`): the references; a list gives several acceptable ones.
Options (keyword arguments of `compute`):
    lowercase (`bool`, defaults to `False`), tokenize (`str`, defaults to `"13a"`),
    smooth_method (`str`, defaults to `"exp"`), smooth_value, max_ngram_order,
    effective_order, ...: options of sacrebleu.metrics.BLEU.
Returns:
    bleu (`float`): corpus BLEU, between 0 and 100.
Examples:
    >>> bleu = evaluate.load("assay/metrics/modules/bleu.py")
    >>> bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    {'bleu': 100.00000000000004}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(core.EvaluateModuleInputs, evaluate.Metric):
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
            reference_urls=['https://github.com/mjpost/sacrebleu'],
        )

    def _compute(self, predictions, references, **options):
        return {"bleu": core.Bleu(**options).aggregate(predictions, references)}
