"""chrF: Assay's ``chrf`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/chrf.py")

The computation is ``assay.metrics.core.Chrf``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Corpus chrF from sacrebleu (sacrebleu.corpus_chrf), on sacrebleu's 0-100 scale. Options are
passed to sacrebleu.metrics.CHRF (char_order, word_order (2 gives chrF++), beta,
lowercase, whitespace, eps_smoothing). A reference may be a list of references. A failed
model call (prediction None) is scored as an empty hypothesis; an example whose reference
is None is left out.
"""

_CITATION = r"""
@inproceedings{popovic-2015-chrf,
    title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
    author = "Popovi{\'c}, Maja",
    booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
    month = sep,
    year = "2015",
    address = "Lisbon, Portugal",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W15-3049",
    pages = "392--395",
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
    char_order (`int`, defaults to 6), word_order (`int`, defaults to 0), beta (`int`,
    defaults to 2), lowercase (`bool`), whitespace (`bool`), eps_smoothing (`bool`):
    options of sacrebleu.metrics.CHRF.
Returns:
    chrf (`float`): corpus chrF, between 0 and 100.
Examples:
    >>> chrf = evaluate.load("assay/metrics/modules/chrf.py")
    >>> chrf.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat"])
    {'chrf': 100.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(core.EvaluateModuleInputs, evaluate.Metric):
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
        return {"chrf": core.Chrf(**options).aggregate(predictions, references)}
