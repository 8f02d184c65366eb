"""Exact match, accuracy and the label metrics (macro/micro F1, macro precision and recall)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from assay.errors import MetricError
from assay.metrics.base import (
    _CITE_SKLEARN,
    _Normalised,
)
from assay.metrics.text import (
    _alternatives,
    _pairs,
)


class ExactMatch(_Normalised):
    """Share of predictions equal to their reference after normalisation.

    A reference may be a list of acceptable answers: any one matching counts. A failed model
    call (prediction None) counts as a miss; an example whose reference is None is left out.
    """

    name = "exact_match"
    title = "Exact match"
    value_doc = "share of exact matches, between 0 and 1"
    multi_reference = True
    examples = ({"predictions": ["Paris.", "london", None], "references": ["paris", "Berlin", ["Rome", "Roma"]]},)

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            if alts is None:
                out[i] = np.nan
                continue
            p = self.normalize(p)
            out[i] = 0.0 if p is None else float(any(p == self.normalize(a) for a in alts))
        return out


class Accuracy(ExactMatch):
    """Label accuracy: the share of predictions equal to their label after normalisation, so a
    generated "Positive." counts for the label "positive".

    A failed model call (prediction None) counts as wrong; an example whose label is None is
    left out.
    """

    name = "accuracy"
    title = "Accuracy"
    value_doc = "share of correct labels, between 0 and 1"
    multi_reference = False
    examples = (
        {
            "predictions": ["Positive.", "negative", "neutral", None],
            "references": ["positive", "negative", "positive", "neutral"],
        },
    )


def label_counts(
    predictions: Sequence[str | None],
    references: Sequence[str | None],
    labels: Sequence[str] | None = None,
    union: bool = False,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives.

    The labels are ``labels`` if given, else the sorted labels seen in the references (or,
    with ``union``, in the references and predictions, as sklearn does by default). An LLM
    that answers with free text would otherwise add one zero-F1 "class" per distinct wrong
    string and drag the macro average down for reasons that have nothing to do with the
    task. A None prediction (failed call) is a false negative for its reference's label and
    a false positive for nothing; pairs with a None reference are ignored.
    """
    pairs = [(p, r) for p, r in zip(predictions, references) if r is not None]
    if labels is None:
        labels = sorted({r for _, r in pairs} | ({p for p, _ in pairs if p is not None} if union else set()))
    index = {lab: i for i, lab in enumerate(labels)}
    tp = np.zeros(len(labels))
    fp = np.zeros(len(labels))
    fn = np.zeros(len(labels))
    for p, r in pairs:
        if p == r:
            if r in index:
                tp[index[r]] += 1
            continue
        if p is not None and p in index:
            fp[index[p]] += 1
        if r in index:
            fn[index[r]] += 1
    return list(labels), tp, fp, fn


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den != 0)
    return out


class _LabelMetric(_Normalised):
    """The labels averaged over are, by default, the labels the references use
    (``label_set="references"``): an answer that is no label (free text, a typo) is wrong for
    its reference's label but is not a class of its own adding a zero to the average.
    ``label_set="union"`` also counts the labels predicted, as scikit-learn does by default;
    ``labels`` fixes the set. A label that is never predicted (or never the reference)
    scores 0 (scikit-learn's ``zero_division=0``). A failed model call (prediction None) is
    a false negative for its reference's label and a false positive for no label; an
    example whose label is None is left out.
    """

    # score_each gives per-example correctness (0/1) for inspection; the corpus value is
    # not its mean
    decomposable = False
    average = "macro"
    measure = "f1"
    citation = _CITE_SKLEARN
    examples = (
        {"predictions": ["a", "b", "b", "c"], "references": ["a", "a", "b", "b"]},
        {"predictions": ["a", "b", "b", "c"], "references": ["a", "a", "b", "b"], "label_set": "union"},
    )

    def __init__(self, labels: Sequence[Any] | None = None, label_set: str = "references", **options):
        """
        :param labels: the labels to average over (normalised like the inputs); when given,
            ``label_set`` is not used.
        :param label_set: without ``labels``, which labels are averaged over: "references"
            (the labels the references use) or "union" (those and the labels predicted, as
            scikit-learn's default).
        """
        super().__init__(**options)
        if label_set not in ("references", "union"):
            raise MetricError(f"label_set must be 'references' or 'union', got {label_set!r}")
        self.options["labels"] = None if labels is None else list(labels)
        self.options["label_set"] = label_set
        self._union = label_set == "union"
        self._labels = None if labels is None else list(dict.fromkeys(self.normalize(lab) for lab in labels))

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            r = self.normalize(r)
            if r is None:
                out[i] = np.nan
            else:
                out[i] = float(self.normalize(p) == r)
        return out

    def aggregate(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        refs = [self.normalize(r) for r in refs]
        if all(r is None for r in refs):
            return float("nan")
        labels, tp, fp, fn = label_counts([self.normalize(p) for p in preds], refs, self._labels, self._union)
        if not labels:
            return float("nan")
        return float(self._from_counts(tp[None, :], fp[None, :], fn[None, :])[0])

    def _from_counts(self, tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        """The measure per row of (resamples × labels) count matrices."""
        if self.average == "micro":
            tp, fp, fn = tp.sum(axis=1, keepdims=True), fp.sum(axis=1, keepdims=True), fn.sum(axis=1, keepdims=True)
        if self.measure == "precision":
            per_label = _divide(tp, tp + fp)
        elif self.measure == "recall":
            per_label = _divide(tp, tp + fn)
        else:
            per_label = _divide(2 * tp, 2 * tp + fp + fn)
        return per_label.mean(axis=1)

    def resample_aggregates(self, predictions, references, indices: np.ndarray) -> np.ndarray:
        """The corpus value on many resamples at once (rows of ``indices``), for the bootstrap.

        Labels are normalised and encoded once; per-resample counts come from one bincount,
        which is what makes a 1,000-resample interval of macro-F1 cost milliseconds.
        """
        preds, refs = _pairs(predictions, references)
        refs_n = [self.normalize(r) for r in refs]
        preds_n = [self.normalize(p) for p in preds]
        labels = self._labels
        if labels is None:
            labels = sorted(
                {r for r in refs_n if r is not None} | ({p for p in preds_n if p is not None} if self._union else set())
            )
        index = {lab: i for i, lab in enumerate(labels)}
        n_labels = len(labels)
        k = indices.shape[0]
        if n_labels == 0:
            return np.full(k, np.nan)
        r = np.array([-2 if x is None else index.get(x, -1) for x in refs_n], dtype=np.int64)
        p = np.array([-3 if x is None else index.get(x, -1) for x in preds_n], dtype=np.int64)
        R, P = r[indices], p[indices]
        valid = R != -2
        offset = (np.arange(k, dtype=np.int64) * n_labels)[:, None]
        size = k * n_labels

        def count(mask, lab):
            return np.bincount((offset + lab)[mask], minlength=size).reshape(k, n_labels).astype(float)

        same = (P == R) | ((P == -1) & (R == -1))
        tp = count(same & (R >= 0) & valid, R)
        fp = count(~same & (P >= 0) & valid, P)
        fn = count(~same & (R >= 0) & valid, R)
        return self._from_counts(tp, fp, fn)


class MacroF1(_LabelMetric):
    """Macro F1: F1 per label, averaged over the labels with equal weight, as
    ``sklearn.metrics.f1_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_f1"
    title = "Macro F1"
    average, measure = "macro", "f1"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",)


class MicroF1(_LabelMetric):
    """Micro F1: F1 from the true positive, false positive and false negative counts pooled
    over the labels, as ``sklearn.metrics.f1_score(average="micro", zero_division=0)`` over
    the same labels. With ``label_set="union"`` and no failed call it equals accuracy; with
    the default label set an answer that is no label is not a false positive, so it can be
    higher.
    """

    name = "micro_f1"
    title = "Micro F1"
    average, measure = "micro", "f1"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html",)


class MacroPrecision(_LabelMetric):
    """Macro precision: per label, the share of the predictions of that label that are right,
    averaged over the labels with equal weight, as
    ``sklearn.metrics.precision_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_precision"
    title = "Macro precision"
    average, measure = "macro", "precision"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html",)


class MacroRecall(_LabelMetric):
    """Macro recall: per label, the share of its examples predicted as that label, averaged
    over the labels with equal weight, as
    ``sklearn.metrics.recall_score(average="macro", zero_division=0)`` over the same labels.
    """

    name = "macro_recall"
    title = "Macro recall"
    average, measure = "macro", "recall"
    reference_urls = ("https://scikit-learn.org/stable/modules/generated/sklearn.metrics.recall_score.html",)
