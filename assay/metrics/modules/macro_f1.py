"""Macro F1: Assay's ``macro_f1`` metric as a Hugging Face ``evaluate`` module.

Load it by path; this needs no network access::

    import evaluate
    metric = evaluate.load("/path/to/assay/metrics/modules/macro_f1.py")

The computation is ``assay.metrics.core.MacroF1``, the code Assay's own pipelines run,
so the ``assay`` package must be importable wherever this file is loaded (evaluate copies
the file into its module cache, so the import must stay absolute).
"""

import datasets
import evaluate

from assay.metrics import core

_DESCRIPTION = """
Macro F1: F1 per label, averaged over labels with equal weight. Labels are normalised like exact_match (case, surrounding whitespace
and punctuation ignored by default) and the labels averaged over are those seen in the
references and predictions, so the value agrees with
sklearn.metrics.f1_score(average="macro", zero_division=0). A failed model call (prediction
None) is a false negative for its label and a false positive for no label; an example
whose label is None is left out.
"""

_CITATION = r"""
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V.
          and Thirion, B. and Grisel, O. and Blondel, M. and Prettenhofer, P.
          and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_KWARGS_DESCRIPTION = r"""
Args:
    predictions (`list` of `str`): model outputs; None marks a failed model call.
    references (`list` of `str`): the references.
Options (keyword arguments of `compute`):
    ignore_case (`bool`, defaults to `True`): compare case-insensitively (Unicode casefold).
    strip (`bool`, defaults to `True`): strip surrounding whitespace.
    ignore_punctuation (`bool`, defaults to `True`): strip leading and trailing punctuation
        (Unicode categories P*; a minus sign in front of a number is kept).
    normalize_whitespace (`bool`, defaults to `True`): collapse runs of whitespace to one space.
    regexes_to_ignore (`list` of `str`, defaults to `[]`): remove every match of these
        regular expressions first.
    labels (`list`, optional): the labels to average over (normalised like the inputs);
        defaults to every label seen in the references and predictions.
Returns:
    macro_f1 (`float`): between 0 and 1.
Examples:
    >>> macro_f1 = evaluate.load("assay/metrics/modules/macro_f1.py")
    >>> macro_f1.compute(predictions=["a", "b", "b", "c"], references=["a", "a", "b", "b"])
    {'macro_f1': 0.38888888888888884}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MacroF1(core.EvaluateModuleInputs, evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            reference_urls=['https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html'],
        )

    def _compute(self, predictions, references, **options):
        return {"macro_f1": core.MacroF1(**options).aggregate(predictions, references)}
