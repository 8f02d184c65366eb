"""N-gram overlap with a reference text: ROUGE-1/2/L (rouge_score), BLEU and chrF (sacrebleu)."""

from __future__ import annotations

import numpy as np

from assay.metrics.base import (
    _CITE_BLEU,
    _CITE_CHRF,
    _CITE_ROUGE,
    _CITE_SACREBLEU,
    Metric,
    _import_attr,
)
from assay.metrics.text import (
    _alternatives,
    _pairs,
    to_text,
)


class _Rouge(Metric):
    """The F-measure from Google's ``rouge_score`` package, averaged over examples. Text is
    tokenized by rouge_score's default tokenizer: lower case, runs of ``[a-z0-9]`` (every
    other character, non-ASCII letters included, is dropped). With several references for
    one example the best-scoring one counts (``score_multi``). A failed model call
    (prediction None) scores 0; an example whose reference is None is left out.
    """

    rouge_type = "rouge1"
    _transient = ("_scorer",)
    value_doc = "mean F-measure over examples, between 0 and 1"
    multi_reference = True
    citation = _CITE_ROUGE
    reference_urls = ("https://github.com/google-research/google-research/tree/master/rouge",)
    examples = ({"predictions": ["the cat sat down", None], "references": ["The cat sat.", "a dog"]},)

    def __init__(self, use_stemmer: bool = False):
        """
        :param use_stemmer: Porter-stem the tokens before matching.
        """
        self.options = {"use_stemmer": bool(use_stemmer)}
        self._scorer = None

    @property
    def scorer(self):
        if self._scorer is None:
            # lazy: optional (the metrics extra)
            from rouge_score import rouge_scorer

            self._scorer = rouge_scorer.RougeScorer([self.rouge_type], use_stemmer=self.options["use_stemmer"])
        return self._scorer

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            if alts is None:
                out[i] = np.nan
                continue
            p = to_text(p) or ""
            if len(alts) == 1:
                s = self.scorer.score(alts[0], p)
            else:
                s = self.scorer.score_multi(alts, p)
            out[i] = s[self.rouge_type].fmeasure
        return out


class Rouge1(_Rouge):
    """ROUGE-1: unigram overlap between prediction and reference."""

    name = rouge_type = "rouge1"
    title = "ROUGE-1"


class Rouge2(_Rouge):
    """ROUGE-2: bigram overlap between prediction and reference."""

    name = rouge_type = "rouge2"
    title = "ROUGE-2"


class RougeL(_Rouge):
    """ROUGE-L: longest common subsequence of prediction and reference."""

    name = rouge_type = "rougeL"
    title = "ROUGE-L"


class _SacreBleu(Metric):
    """A corpus score from ``sacrebleu``, on its 0-100 scale (not a mean of sentence scores);
    the options are the sacrebleu metric's. A reference may be a list of references, their
    number varying per example. A failed model call (prediction None) is scored as an empty
    hypothesis; an example whose reference is None is left out.
    """

    # score_each gives sentence-level scores; several references per example are passed
    # as reference streams (missing ones as None)
    decomposable = False
    _transient = ("_corpus", "_sentence")
    multi_reference = True
    reference_urls = ("https://github.com/mjpost/sacrebleu",)

    def __init__(self, **options):
        self.options = dict(options)
        self._corpus = self._make(**options)  # fails early on a bad option
        self._sentence = None

    def _make(self, **options):
        return _import_attr(self.options_forwarded_to)(**options)

    def _corpus_metric(self):
        if self._corpus is None:
            self._corpus = self._make(**self.options)
        return self._corpus

    def _sentence_metric(self):
        return self._corpus_metric()

    def _streams(self, predictions, references) -> tuple[list[str], list[list[str | None]]]:
        preds, refs = _pairs(predictions, references)
        hyps, ref_lists = [], []
        for p, r in zip(preds, refs):
            alts = _alternatives(r)
            if alts is None:
                continue
            hyps.append(to_text(p) or "")
            ref_lists.append(alts)
        width = max((len(a) for a in ref_lists), default=1)
        streams = [[a[k] if k < len(a) else None for a in ref_lists] for k in range(width)]
        return hyps, streams

    def score_each(self, predictions, references):
        preds, refs = _pairs(predictions, references)
        metric = self._sentence_metric()
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            alts = _alternatives(r)
            out[i] = np.nan if alts is None else metric.sentence_score(to_text(p) or "", alts).score
        return out

    def aggregate(self, predictions, references):
        hyps, streams = self._streams(predictions, references)
        if not hyps:
            return float("nan")
        return float(self._corpus_metric().corpus_score(hyps, streams).score)


class Bleu(_SacreBleu):
    """BLEU as ``sacrebleu.corpus_bleu`` computes it (per-example scores use effective order,
    like ``sacrebleu.sentence_bleu``).
    """

    name = "bleu"
    title = "SacreBLEU"
    options_forwarded_to = "sacrebleu.metrics:BLEU"
    value_doc = "corpus BLEU, between 0 and 100"
    citation = _CITE_BLEU + _CITE_SACREBLEU
    examples = (
        {
            "predictions": ["the cat sat on the mat", "hello there"],
            "references": [["the cat sat on a mat", "a cat sat on the mat"], ["hello there"]],
        },
    )

    def _sentence_metric(self):
        if self._sentence is None:
            self._sentence = self._make(**{**self.options, "effective_order": True})
        return self._sentence


class Chrf(_SacreBleu):
    """chrF as ``sacrebleu.corpus_chrf`` computes it (``word_order=2`` gives chrF++)."""

    name = "chrf"
    title = "chrF"
    options_forwarded_to = "sacrebleu.metrics:CHRF"
    value_doc = "corpus chrF, between 0 and 100"
    citation = _CITE_CHRF + _CITE_SACREBLEU
    examples = (
        {"predictions": ["the cat sat on the mat"], "references": ["the cat sat on a mat"]},
        {"predictions": ["the cat sat on the mat"], "references": ["the cat sat on a mat"], "word_order": 2},
    )
