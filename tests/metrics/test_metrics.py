"""Tests for assay.metrics: hand-computed values, agreement with the reference libraries
(sklearn, sacrebleu, rouge_score), failed calls, the evaluate modules (generated from the
metric classes, loaded offline, their documented examples run), user metrics by path,
unknown names, and a golden fixture."""

import csv
import doctest
import inspect
import json
import math
import os
import random
import re
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
try:  # `python -m pytest` from the project root (or an installed package) needs nothing more
    import assay.metrics  # noqa: F401
except ImportError:  # plain `pytest` with the package not installed
    sys.path.insert(0, str(ROOT))

from assay.config import MetricSpec  # noqa: E402
from assay.metrics import (  # noqa: E402
    METRICS,
    EvaluateMetric,
    Metric,
    build_metric,
    builtin,
    evaluate_module_path,
)
from assay.metrics.base import option_parameters  # noqa: E402
from assay.metrics.text import extract_number, normalize_text, parse_json  # noqa: E402
from assay.registry import UnknownName  # noqa: E402

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "metrics"

BUILTIN_NAMES = list(builtin.BUILTINS)  # the one declaration of the builtins
CORPUS_ONLY = {"macro_f1", "micro_f1", "macro_precision", "macro_recall", "bleu", "chrf"}
SCHEMA = {
    "type": "object",
    "required": ["label"],
    "properties": {"label": {"enum": ["yes", "no"]}, "score": {"type": "number"}},
}


def metric(name, **args) -> Metric:
    return build_metric(MetricSpec(name=name, args=args))


# --------------------------------------------------------------------------------------
# registry, interface, import cost


def test_every_builtin_is_registered_with_an_evaluate_module():
    for name in BUILTIN_NAMES:
        METRICS.check(name)
        m = metric(name, **({"schema": SCHEMA} if name == "json_schema" else {}))
        assert isinstance(m, Metric) and m.name == name
        assert m.decomposable == (name not in CORPUS_ONLY), name
        assert m.higher_is_better == (name != "output_length"), name
        assert Path(evaluate_module_path(name)).is_file()
    with pytest.raises(UnknownName):
        evaluate_module_path("nope")


def test_import_is_light():
    code = (
        "import time, numpy; t = time.perf_counter(); import assay.metrics; dt = time.perf_counter() - t\n"
        "import sys; heavy = [m for m in ('evaluate', 'datasets', 'sklearn', 'sacrebleu', 'rouge_score', 'jsonschema', 'pandas', 'nltk') if m in sys.modules]\n"
        "print(dt, heavy)\n"
        "assert not heavy, heavy\n"
        "assert dt < 0.3, dt\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_metrics_pickle_for_worker_processes():
    import pickle

    preds, refs = ["the cat sat", None, '{"label": "yes"}'], ["the cat sat", "a dog", "yes"]
    for name in BUILTIN_NAMES:
        m = metric(name, **({"schema": SCHEMA} if name == "json_schema" else {}))
        before = m.aggregate(preds, refs)  # builds the cached scorers/validators first
        after = pickle.loads(pickle.dumps(m)).aggregate(preds, refs)
        assert after == before or (math.isnan(after) and math.isnan(before)), name


def test_length_mismatch_and_bad_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        metric("exact_match").aggregate(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="single string"):
        metric("exact_match").aggregate("ab", ["a", "b"])


# --------------------------------------------------------------------------------------
# hand-computed values


def test_normalize_text():
    assert normalize_text("  Hello   World!! ") == "hello world"
    assert normalize_text("(B).") == "b"
    assert normalize_text("«Oui»") == "oui"  # Unicode punctuation
    assert normalize_text("-5") == "-5"  # a sign is not punctuation
    assert normalize_text("5.") == "5"
    assert normalize_text("C++") == "c++"  # '+' is a symbol, not punctuation
    assert normalize_text("Paris .", ignore_punctuation=True) == "paris"
    assert normalize_text("Paris.", ignore_punctuation=False) == "paris."
    assert normalize_text(" A ", strip=False, ignore_punctuation=False) == " a "
    assert (
        normalize_text("Answer: B", regexes_to_ignore=[r"^answer:\s*"], ignore_case=True) == "answer: b"
    )  # regexes run first, case-sensitively
    assert normalize_text("Answer: B", regexes_to_ignore=[r"(?i)^answer:\s*"]) == "b"
    assert normalize_text(None) is None and normalize_text(float("nan")) is None
    assert normalize_text(3.0) == "3" and normalize_text(7) == "7"


def test_exact_match():
    preds = ["Paris.", " paris ", "PARIS", "Lyon", None, "The answer is Paris"]
    refs = ["paris"] * 6
    m = metric("exact_match")
    # the first three normalise to "paris"; Lyon is wrong; None is a failed call; the sentence is not exact
    assert m.score_each(preds, refs).tolist() == [1, 1, 1, 0, 0, 0]
    assert m.aggregate(preds, refs) == 0.5  # 3/6
    # case-sensitive: "Paris." -> "Paris" and "PARIS" no longer match "paris"; only " paris " does: 1/6
    assert metric("exact_match", ignore_case=False).aggregate(preds, refs) == pytest.approx(1 / 6)
    # a regex removes the preamble: 4/6
    assert metric("exact_match", regexes_to_ignore=[r"(?i)^the answer is "]).aggregate(preds, refs) == pytest.approx(4 / 6)
    # several acceptable answers per reference
    assert m.score_each(["lyon", "nice"], [["Paris", "Lyon"], ("Marseille",)]).tolist() == [1, 0]


def test_missing_references_are_left_out():
    m = metric("exact_match")
    s = m.score_each(["a", "b", "c"], ["a", None, float("nan")])
    assert s[0] == 1 and np.isnan(s[1]) and np.isnan(s[2])
    assert m.aggregate(["a", "b", "c"], ["a", None, "x"]) == 0.5  # (1 + 0) / 2
    assert math.isnan(m.aggregate(["a"], [None]))


def test_accuracy_with_integer_and_float_labels():
    # "1"==1, "0"==0, "1"!=0 -> 2/3; pandas turns int labels with gaps into floats: 1.0 -> "1"
    assert metric("accuracy").aggregate(["1", "0", "1"], [1, 0, 0]) == pytest.approx(2 / 3)
    assert metric("accuracy").aggregate(["1", "Yes."], [1.0, "yes"]) == 1.0


def test_label_metrics_by_hand():
    preds, refs = ["a", "b", "b", "c"], ["a", "a", "b", "b"]
    # a: tp=1 fp=0 fn=1 -> P=1   R=1/2 F1=2/3
    # b: tp=1 fp=1 fn=1 -> P=1/2 R=1/2 F1=1/2
    # c: tp=0 fp=1 fn=0 -> P=0   R=0/0->0 F1=0
    u = {"label_set": "union"}
    assert metric("macro_f1", **u).aggregate(preds, refs) == pytest.approx((2 / 3 + 1 / 2 + 0) / 3)  # 7/18
    assert metric("macro_precision", **u).aggregate(preds, refs) == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert metric("macro_recall", **u).aggregate(preds, refs) == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    # pooled: TP=2 FP=2 FN=2 -> 2*2/(4+2+2) = 1/2 (= accuracy)
    assert metric("micro_f1", **u).aggregate(preds, refs) == pytest.approx(0.5)
    # default: only the labels the references use ("c" is a wrong answer, not a class)
    assert metric("macro_f1").aggregate(preds, refs) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert metric("macro_precision").aggregate(preds, refs) == pytest.approx((1 + 1 / 2) / 2)
    # pooled over a, b: TP=2 FP=1 FN=2 -> 4/(4+1+2)
    assert metric("micro_f1").aggregate(preds, refs) == pytest.approx(4 / 7)
    # per-example correctness for inspection, not the corpus value
    assert metric("macro_f1").score_each(preds, refs).tolist() == [1, 0, 1, 0]


def test_label_metrics_with_failed_calls_by_hand():
    preds, refs = ["A", None, "b."], ["a", "b", "b"]
    # None is a false negative for "b" and a false positive for nothing:
    # a: tp=1 fp=0 fn=0 -> F1=1;  b: tp=1 fp=0 fn=1 -> P=1 R=1/2 F1=2/3
    assert metric("macro_f1").aggregate(preds, refs) == pytest.approx((1 + 2 / 3) / 2)
    assert metric("macro_precision").aggregate(preds, refs) == pytest.approx(1.0)
    assert metric("macro_recall").aggregate(preds, refs) == pytest.approx((1 + 1 / 2) / 2)
    assert metric("micro_f1").aggregate(preds, refs) == pytest.approx(2 * 2 / (2 * 2 + 0 + 1))  # 0.8
    assert metric("accuracy").aggregate(preds, refs) == pytest.approx(2 / 3)
    # an explicit label set: "c" never occurs, its F1 counts as 0 -> (1 + 2/3 + 0) / 3
    assert metric("macro_f1", labels=["a", "b", "C"]).aggregate(preds, refs) == pytest.approx((1 + 2 / 3) / 3)


def test_rouge_by_hand():
    pred, ref = "the cat sat down", "The cat sat."
    # unigrams: 3 of 4 predicted match, all 3 reference -> P=3/4 R=1 F=2PR/(P+R)=6/7
    assert metric("rouge1").aggregate([pred], [ref]) == pytest.approx(6 / 7)
    # bigrams: pred {the cat, cat sat, sat down}, ref {the cat, cat sat} -> P=2/3 R=1 F=0.8
    assert metric("rouge2").aggregate([pred], [ref]) == pytest.approx(0.8)
    # longest common subsequence "the cat sat" = 3 -> same as rouge1
    assert metric("rougeL").aggregate([pred], [ref]) == pytest.approx(6 / 7)
    # mean over examples; a failed call scores 0; several references: the best counts
    assert metric("rouge1").score_each([pred, None], [ref, ref]).tolist() == pytest.approx([6 / 7, 0])
    assert metric("rouge1").aggregate([pred], [["a dog", ref]]) == pytest.approx(6 / 7)


def test_bleu_and_chrf_by_hand():
    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so BP=1
    # BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25
    expected = 100 * (1 / 12) ** 0.25
    assert metric("bleu").aggregate([hyp], [ref]) == pytest.approx(expected, abs=1e-9)
    assert metric("bleu").score_each([hyp], [ref]).tolist() == pytest.approx([expected])
    assert metric("bleu").aggregate([ref], [ref]) == pytest.approx(100)
    assert metric("chrf").aggregate([ref], [ref]) == pytest.approx(100)
    # failed calls are empty hypotheses
    assert metric("chrf").aggregate([None], [ref]) == 0.0
    assert metric("bleu").aggregate([None, None], [ref, ref]) == 0.0
    # examples without reference are left out
    assert metric("bleu").aggregate([ref, "x"], [ref, None]) == pytest.approx(100)
    with pytest.raises(ValueError, match="bad options"):  # options go to sacrebleu's BLEU, checked at build time
        metric("bleu", no_such_option=1)


def test_extract_number():
    assert extract_number("It costs $1,234.50 in total") == 1234.5
    assert extract_number("COVID-19") == 19  # a hyphen glued to a word is not a sign
    assert extract_number("x = -3.5e2") == -350
    assert extract_number("about .5") == 0.5
    assert extract_number("1,23") == 1  # not a thousands group
    assert extract_number("12 apples and 3 pears") == 12
    assert extract_number("no digits") is None and extract_number(None) is None
    assert extract_number(7) == 7.0


def test_numeric_match():
    preds = ["42", "The answer is 41.9999999", "4.2e1", "none", None]
    refs = [42, "42", 42.0, 0, 1]
    # |41.9999999 - 42| = 1e-7 <= abs_tol 1e-6; "none" has no number; None is a failed call
    assert metric("numeric_match").score_each(preds, refs).tolist() == [1, 1, 1, 0, 0]
    # isclose(105, 100, rel_tol=0.05): 5 <= 0.05 * 105
    assert metric("numeric_match", rel_tol=0.05).aggregate(["105", "106"], [100, 100]) == 0.5
    assert metric("numeric_match", abs_tol=0).aggregate(["41.9999999"], [42]) == 0.0
    assert np.isnan(metric("numeric_match").score_each(["1"], ["n/a"])[0])  # no reference number


def test_regex_match():
    preds = ["Order #123 shipped", "no order", None]
    assert metric("regex_match", pattern=r"#\d+").score_each(preds, [None] * 3).tolist() == [1, 0, 0]
    # without a pattern, the reference is the pattern
    assert metric("regex_match").score_each(preds, [r"#\d+", "order", "x"]).tolist() == [1, 1, 0]
    assert metric("regex_match", pattern="ORDER", ignore_case=True).aggregate(preds, [None] * 3) == pytest.approx(2 / 3)


def test_contains():
    preds = ["The capital is Paris.", "I think Lyon", None]
    refs = ["paris", "Marseille", "x"]
    assert metric("contains").score_each(preds, refs).tolist() == [1, 0, 0]
    assert metric("contains", ignore_case=False).score_each(preds, refs).tolist() == [0, 0, 0]
    assert metric("contains").aggregate(["I think Lyon"], [["Paris", "lyon"]]) == 1.0


def test_json_valid():
    fence = "```"
    cases = {
        '{"a": 1}': 1,
        f'Here you go:\n{fence}json\n{{"a": [1, 2]}}\n{fence}\nDone.': 1,  # fenced block
        f"{fence}\n[1, 2]\n{fence}": 1,  # fence without a language
        '"text"': 1,
        "{a: 1}": 0,
        '{"a": NaN}': 0,  # Python's json accepts NaN; JSON does not
        "": 0,
        None: 0,
    }
    preds = list(cases)
    assert metric("json_valid").score_each(preds, [None] * len(preds)).tolist() == list(cases.values())
    assert parse_json(f'{fence}json\n{{"k": true}}\n{fence}') == (True, {"k": True})


def test_json_schema(tmp_path):
    preds = ['{"label": "yes", "score": 1}', '{"label": "maybe"}', '```json\n{"label": "no"}\n```', "not json", None]
    expected = [1, 0, 1, 0, 0]
    assert metric("json_schema", schema=SCHEMA).score_each(preds, [None] * 5).tolist() == expected
    # a path to a JSON file, relative to the config's directory
    (tmp_path / "schema.json").write_text(json.dumps(SCHEMA))
    m = build_metric(MetricSpec(name="json_schema", args={"schema": "schema.json"}), base_dir=str(tmp_path))
    assert m.score_each(preds, [None] * 5).tolist() == expected
    # without a schema option each reference is the schema
    assert metric("json_schema").score_each(preds, [json.dumps(SCHEMA)] * 5).tolist() == expected
    with pytest.raises(ValueError, match="invalid schema"):
        metric("json_schema", schema={"type": "no-such-type"})
    with pytest.raises(ValueError, match="neither a JSON file nor a JSON object"):
        metric("json_schema", schema="missing.json")
    with pytest.raises(ValueError, match=str(tmp_path / "missing.json")):  # the error names the resolved path
        build_metric(MetricSpec(name="json_schema", args={"schema": "missing.json"}), base_dir=str(tmp_path))
    # inline JSON text is not a path
    assert metric("json_schema", schema=json.dumps(SCHEMA)).aggregate(preds, [None] * 5) == pytest.approx(2 / 5)


def test_output_length():
    preds = ["abc", "hello big world", None]
    m = metric("output_length")
    s = m.score_each(preds, [None] * 3)
    assert s[:2].tolist() == [3, 15] and np.isnan(s[2])  # a failed call has no length
    assert m.aggregate(preds, [None] * 3) == 9.0  # (3 + 15) / 2
    assert metric("output_length", unit="words").aggregate(preds, [None] * 3) == 2.0  # (1 + 3) / 2
    assert m.higher_is_better is False
    with pytest.raises(ValueError, match="unit"):
        metric("output_length", unit="tokens")


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_failed_calls_never_crash(name):
    args = {"schema": SCHEMA} if name == "json_schema" else {}
    refs = {"numeric_match": ["3", 4], "regex_match": ["a", "b"], "json_schema": [None, None]}.get(name, ["yes", "no"])
    m = metric(name, **args)
    each = m.score_each([None, None], refs)
    agg = m.aggregate([None, None], refs)
    if name == "output_length":
        assert np.isnan(each).all() and math.isnan(agg)
    else:
        assert each.tolist() == [0, 0] and agg == 0
    assert math.isfinite(m.aggregate([None, "yes"], refs))


def test_decomposable_aggregate_is_the_mean_of_score_each():
    rng = random.Random(1)
    words = "the a cat dog sat ran on under mat rug 1 2 yes no".split()
    preds = [" ".join(rng.choices(words, k=rng.randint(0, 6))) if rng.random() > 0.1 else None for _ in range(40)]
    refs = [" ".join(rng.choices(words, k=rng.randint(1, 6))) for _ in range(40)]
    for name in BUILTIN_NAMES:
        if name in CORPUS_ONLY:
            continue
        m = metric(name, **({"schema": SCHEMA} if name == "json_schema" else {}))
        rr = refs if name != "regex_match" else [r.split()[0] for r in refs]
        assert m.aggregate(preds, rr) == pytest.approx(float(np.nanmean(m.score_each(preds, rr))), abs=1e-12), name


# --------------------------------------------------------------------------------------
# agreement with the reference libraries on generated data


@pytest.fixture(scope="module")
def labelled():
    rng = random.Random(7)
    labels = ["positive", "negative", "neutral", "mixed"]
    refs = [rng.choice(labels[:3]) for _ in range(200)]
    preds = [r if rng.random() < 0.6 else rng.choice(labels) for r in refs]
    styled = [rng.choice([p, p.upper(), f" {p}.", f"'{p}'"]) for p in preds]
    return preds, refs, styled


@pytest.mark.parametrize(
    "name,fn,average",
    [
        ("macro_f1", "f1_score", "macro"),
        ("micro_f1", "f1_score", "micro"),
        ("macro_precision", "precision_score", "macro"),
        ("macro_recall", "recall_score", "macro"),
    ],
)
def test_label_metrics_agree_with_sklearn(labelled, name, fn, average):
    import sklearn.metrics

    preds, refs, styled = labelled
    ref_fn = getattr(sklearn.metrics, fn)
    expected = ref_fn(refs, preds, average=average, zero_division=0)
    assert metric(name, label_set="union").aggregate(preds, refs) == pytest.approx(expected, abs=1e-12)
    # formatting noise is normalised away
    assert metric(name, label_set="union").aggregate(styled, refs) == pytest.approx(expected, abs=1e-12)
    # the default label set is the references' labels (sklearn's labels=...)
    expected_refs = ref_fn(refs, preds, labels=sorted(set(refs)), average=average, zero_division=0)
    assert metric(name).aggregate(preds, refs) == pytest.approx(expected_refs, abs=1e-12)
    # failed calls: a false negative for the reference label, a false positive for no label
    failed = [None if i % 9 == 0 else p for i, p in enumerate(preds)]
    labels = sorted(set(refs) | {p for p in failed if p is not None})
    expected = ref_fn(refs, ["\0failed" if p is None else p for p in failed], labels=labels, average=average, zero_division=0)
    assert metric(name, label_set="union").aggregate(failed, refs) == pytest.approx(expected, abs=1e-12)


def test_accuracy_agrees_with_sklearn(labelled):
    from sklearn.metrics import accuracy_score

    preds, refs, styled = labelled
    assert metric("accuracy").aggregate(styled, refs) == pytest.approx(accuracy_score(refs, preds), abs=1e-12)


@pytest.fixture(scope="module")
def texts():
    rng = random.Random(3)
    vocab = "the a cat dog sat ran on under mat rug quickly slowly red blue big small house garden and".split()
    refs = [" ".join(rng.choices(vocab, k=rng.randint(3, 12))).capitalize() + "." for _ in range(60)]
    preds = []
    for r in refs:
        toks = r.split()
        for _ in range(rng.randint(0, 4)):
            i = rng.randrange(len(toks))
            toks[i] = rng.choice(vocab)
        preds.append(" ".join(toks))
    return preds, refs


def test_rouge_agrees_with_rouge_score(texts):
    from rouge_score import rouge_scorer

    preds, refs = texts
    for t in ("rouge1", "rouge2", "rougeL"):
        scorer = rouge_scorer.RougeScorer([t])
        each = [scorer.score(r, p)[t].fmeasure for p, r in zip(preds, refs)]
        assert metric(t).score_each(preds, refs).tolist() == pytest.approx(each, abs=1e-12)
        assert metric(t).aggregate(preds, refs) == pytest.approx(float(np.mean(each)), abs=1e-12)
    # several references: rouge_score's score_multi
    multi = [[r, p[::-1]] for p, r in zip(preds, refs)]
    scorer = rouge_scorer.RougeScorer(["rouge2"])
    each = [scorer.score_multi(m, p)["rouge2"].fmeasure for p, m in zip(preds, multi)]
    assert metric("rouge2").aggregate(preds, multi) == pytest.approx(float(np.mean(each)), abs=1e-12)


def test_bleu_chrf_agree_with_sacrebleu(texts):
    import sacrebleu

    preds, refs = texts
    assert metric("bleu").aggregate(preds, refs) == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9)
    assert metric("chrf").aggregate(preds, refs) == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-9)
    assert metric("bleu", lowercase=True, tokenize="char").aggregate(preds, refs) == pytest.approx(
        sacrebleu.corpus_bleu(preds, [refs], lowercase=True, tokenize="char").score, abs=1e-9
    )
    assert metric("chrf", word_order=2).aggregate(preds, refs) == pytest.approx(
        sacrebleu.corpus_chrf(preds, [refs], word_order=2).score, abs=1e-9
    )
    some = slice(0, 10)
    assert metric("bleu").score_each(preds[some], refs[some]).tolist() == pytest.approx(
        [sacrebleu.sentence_bleu(p, [r]).score for p, r in zip(preds[some], refs[some])], abs=1e-9
    )
    assert metric("chrf").score_each(preds[some], refs[some]).tolist() == pytest.approx(
        [sacrebleu.sentence_chrf(p, [r]).score for p, r in zip(preds[some], refs[some])], abs=1e-9
    )
    # a variable number of references per example becomes reference streams padded with None
    multi = [[r] if i % 2 else [r, p.upper()] for i, (p, r) in enumerate(zip(preds, refs))]
    streams = [[m[0] for m in multi], [m[1] if len(m) > 1 else None for m in multi]]
    assert metric("bleu").aggregate(preds, multi) == pytest.approx(sacrebleu.corpus_bleu(preds, streams).score, abs=1e-9)


# --------------------------------------------------------------------------------------
# the evaluate modules, loaded offline


@pytest.fixture(scope="module")
def offline():
    """HF offline variables set and sockets refused: anything touching the network fails."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    with pytest.MonkeyPatch.context() as mp:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
            mp.setenv(var, "1")
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        yield mp


@pytest.fixture(scope="module")
def hf_modules(offline):
    import evaluate

    return {name: evaluate.load(evaluate_module_path(name), keep_in_memory=True) for name in BUILTIN_NAMES}


HF_CASES = {
    "exact_match": (["Paris.", None, "lyon", "nice"], ["paris", "rome", ["Lyon", "Nice"], "Nice"], {}),
    "accuracy": ([None, "Positive.", "neutral", "1"], ["positive", "positive", "negative", 1], {}),
    "macro_f1": ([None, "a", "b", "b", "c"], ["a", "a", "a", "b", "b"], {}),
    "micro_f1": ([None, "a", "b", "b", "c"], ["a", "a", "a", "b", "b"], {}),
    "macro_precision": (["a", "b", "b", "c"], ["a", "a", "b", "b"], {"ignore_case": False}),
    "macro_recall": (["a", "b", "B", "c"], ["a", "a", "b", "b"], {"labels": ["a", "b"]}),
    "rouge1": (["the cat sat down", None], ["the cat sat", "a dog"], {}),
    "rouge2": (["the cat sat down", "a dog ran"], [["the cat sat", "x"], ["a dog ran off"]], {}),
    "rougeL": (["the cat sat down", "a dog ran"], ["the cat sat", "a dog ran off"], {"use_stemmer": True}),
    "bleu": (
        ["the cat sat on the mat", None],
        [["the cat sat on a mat", "a cat sat on the mat"], ["hello"]],
        {"lowercase": True},
    ),
    "chrf": (["the cat sat on the mat", "hello world"], ["the cat sat on a mat", "hello there world"], {"word_order": 2}),
    "numeric_match": ([None, "The answer is 42.", "3.5"], [7, 42, 3.5], {"abs_tol": 0.01}),
    "regex_match": (["Order #123", "none", None], [r"#\d+", r"#\d+", "x"], {}),
    "contains": (["The capital is Paris.", "Lyon"], ["paris", ["Nice", "lyon"]], {"ignore_case": True}),
    "json_valid": ([None, '{"a": 1}', "```json\n[1]\n```", "{a: 1}"], None, {}),
    "json_schema": (['{"label": "yes"}', '{"label": "maybe"}', None], None, {"schema": SCHEMA}),
    "output_length": (["abc", None, "hello big world"], None, {"unit": "words"}),
}


def test_hf_cases_cover_every_builtin():
    assert sorted(HF_CASES) == sorted(BUILTIN_NAMES)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_evaluate_module_matches_fast_path(hf_modules, name):
    module = hf_modules[name]
    # evaluate instantiated the module's own class, not evaluate.Metric or the mixin
    assert type(module).__name__ == METRICS.get(name).__name__
    assert module.info.description.strip() and module.info.citation.strip() and module.info.inputs_description.strip()
    preds, refs, args = HF_CASES[name]
    fast = metric(name, **args).aggregate(preds, refs if refs is not None else [None] * len(preds))
    if refs is None:  # references are optional for these modules
        result = module.compute(predictions=preds, **args)
    else:
        result = module.compute(predictions=preds, references=refs, **args)
    assert list(result) == [name]
    assert result[name] == pytest.approx(fast, abs=1e-12)
    assert math.isfinite(fast)


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_evaluate_module_documented_examples_hold(hf_modules, monkeypatch, name):
    """The Examples of each module's docs, run as written (through evaluate, offline), print the documented values."""
    import evaluate

    module = hf_modules[name]
    text = module.info.inputs_description
    assert "Examples:" in text and f'evaluate.load("assay/metrics/modules/{name}.py")' in text
    monkeypatch.chdir(ROOT)  # the examples load the module by its path in the repository
    globs = {"evaluate": SimpleNamespace(load=lambda path: evaluate.load(path, keep_in_memory=True))}  # no cache files
    test = doctest.DocTestParser().get_doctest(text, globs, name, None, 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    out: list[str] = []
    runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)
    # one load, then a compute and its printed value per example of the metric class
    assert runner.tries == 1 + 2 * len(METRICS.get(name).examples)


def test_evaluate_module_files_are_generated_from_the_code():
    """The committed module files are what the generator writes now; else regenerate them."""
    from assay.metrics.modules import _generate

    stale = [p.name for p in _generate.stale()]
    assert not stale, f"stale evaluate module files {stale}: run python -m assay.metrics.modules._generate"
    for name in BUILTIN_NAMES:
        text = Path(evaluate_module_path(name)).read_text(encoding="utf-8")
        assert text.startswith(_generate.HEADER) and "python -m assay.metrics.modules._generate" in text.splitlines()[2]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run(
        [sys.executable, "-m", "assay.metrics.modules._generate", "--check"], capture_output=True, text=True, env=env, cwd=ROOT
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_generator_flags_a_moved_documented_value(tmp_path, monkeypatch):
    """A code change that moves a documented value makes the file stale until it is regenerated."""
    import shutil

    from assay.metrics.modules import _generate

    for name in BUILTIN_NAMES:
        shutil.copy(evaluate_module_path(name), tmp_path)
    (tmp_path / "gone_metric.py").write_text((tmp_path / "accuracy.py").read_text())  # a builtin since removed
    (tmp_path / "handwritten.py").write_text("# not generated\n")
    assert _generate.main(["--check", "--dir", str(tmp_path)]) == 1
    assert [p.name for p in _generate.stale(tmp_path)] == ["gone_metric.py"]
    old = (tmp_path / "macro_f1.py").read_text()
    monkeypatch.setattr(builtin.MacroF1, "measure", "recall")  # the code now computes something else
    assert [p.name for p in _generate.stale(tmp_path)] == ["gone_metric.py", "macro_f1.py"]
    assert _generate.main(["--dir", str(tmp_path)]) == 0
    assert _generate.stale(tmp_path) == [] and _generate.main(["--check", "--dir", str(tmp_path)]) == 0
    assert not (tmp_path / "gone_metric.py").exists() and (tmp_path / "handwritten.py").exists()
    new = (tmp_path / "macro_f1.py").read_text()
    assert "0.5833" in old and "0.5833" not in new and "    0.5\n" in new  # recall over a, b: (1/2 + 1/2) / 2


def test_generated_docs_follow_the_code():
    """Docs come from the class: its docstring, its options with their real defaults, its value key."""
    from assay.metrics.modules import _generate

    for name, cls in builtin.BUILTINS.items():
        text = _generate.render(name, cls)
        assert inspect.cleandoc(cls.__dict__["__doc__"]) in text  # the description is the docstring
        for p in option_parameters(cls):
            line = rf"^    {p.name} \(`[^`]+`, defaults to `{re.escape(repr(p.default))}`\): \S"
            assert re.search(line, text, re.MULTILINE), (name, p.name)
        assert f"    {name} (`float`): {cls.value_doc.replace('``', '`')}." in text
    # the label metrics average over the references' labels unless label_set: union (sklearn's default)
    for name in ("macro_f1", "micro_f1", "macro_precision", "macro_recall"):
        doc = Path(evaluate_module_path(name)).read_text()
        assert "label_set (`str`, defaults to `'references'`)" in doc
        assert "the labels the references use" in doc and "seen in the references and predictions" not in doc
    macro_f1 = Path(evaluate_module_path("macro_f1")).read_text()
    assert f"\n    {round((2 / 3 + 1 / 2) / 2, 4)}\n" in macro_f1  # a, b only
    assert f"label_set='union')\n    >>> round(results[\"macro_f1\"], 4)\n    {round((2 / 3 + 1 / 2 + 0) / 3, 4)}\n" in macro_f1

    # a class without a docstring of its own, or an option without a :param, cannot be documented
    class Undocumented(builtin.Contains):
        pass

    with pytest.raises(ValueError, match="needs a docstring"):
        _generate.render("undocumented", Undocumented)

    class NewOption(builtin.Contains):
        """Contains, with one more option."""

        def __init__(self, fold: bool = True, **options):
            super().__init__(**options)

    with pytest.raises(ValueError, match="option 'fold' has no ':param fold:'"):
        _generate.render("new_option", NewOption)


def test_docs_name_every_builtin():
    page = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    missing = [n for n in BUILTIN_NAMES if f"`{n}`" not in page]
    assert not missing, f"docs/metrics.md does not name {missing}"


def test_evaluate_module_add_batch_and_adapter(hf_modules):
    acc = hf_modules["accuracy"]
    acc.add_batch(predictions=[None, "yes"], references=[0, "yes"])
    acc.add(prediction="No.", reference="no")
    assert acc.compute() == {"accuracy": pytest.approx(2 / 3)}
    # the same module used through Assay's adapter for path metrics
    wrapped = EvaluateMetric(acc, name="acc")
    assert wrapped.aggregate(["yes", None, "no"], ["yes", "yes", None]) == 0.5  # missing reference left out
    assert wrapped.score_each(["yes"], ["yes"]) is None and wrapped.decomposable is False


# --------------------------------------------------------------------------------------
# build_metric: options, user metrics by path, unknown names


USER_METRIC = """
import datasets
import evaluate


class MeanLength(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="mean prediction length times scale",
            citation="",
            inputs_description="predictions, references: strings",
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, scale=1.0):
        return {"label": "not a number", "count": len(predictions), "mean_length": scale * sum(map(len, predictions)) / len(predictions)}
"""


def test_user_metric_by_path(offline, tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "mean_length.py").write_text(USER_METRIC)
    spec = MetricSpec(path="metrics/mean_length.py", args={"key": "mean_length", "scale": 2, "higher_is_better": False})
    m = build_metric(spec, base_dir=str(tmp_path))
    assert isinstance(m, EvaluateMetric) and m.name == "mean_length" and m.higher_is_better is False
    # (len("ab") + len("")) / 2 * scale 2 = 2; a failed call is passed on as ""
    assert m.aggregate(["ab", None], ["x", "y"]) == 2.0
    assert m.score_each(["ab"], ["x"]) is None
    # without key: the first numeric value of the result ("label" is skipped, "count" is first)
    first = build_metric(MetricSpec(path=str(tmp_path / "metrics" / "mean_length.py")))
    assert first.aggregate(["ab", "c", "d"], ["x", "y", "z"]) == 3.0
    with pytest.raises(ValueError, match="no key 'nope'"):
        build_metric(MetricSpec(path=spec.path, args={"key": "nope"}), base_dir=str(tmp_path)).aggregate(["a"], ["b"])
    with pytest.raises(ValueError, match="no evaluate module at"):
        build_metric(MetricSpec(path="metrics/missing.py"), base_dir=str(tmp_path))


def test_builtin_options_are_checked():
    m = build_metric(MetricSpec(name="exact_match", args={"ignore_case": False}))
    assert m.options["ignore_case"] is False
    with pytest.raises(ValueError, match=r"metric 'exact_match': bad options.*its options: ignore_case"):
        build_metric(MetricSpec(name="exact_match", args={"ignore_cases": False}))
    with pytest.raises(ValueError, match="bad options"):  # a judge model only goes to metrics that take one
        build_metric(MetricSpec(name="accuracy", judge="gpt"))


def test_registry_is_open_to_more_metrics(monkeypatch):
    # e.g. the LLM judge registers lazily as "module:attr" and receives spec.judge
    class Judged(builtin.ExactMatch):
        def __init__(self, judge=None, **options):
            super().__init__(**options)
            self.judge = judge

    monkeypatch.setitem(METRICS._items, "judge_like", Judged)
    m = build_metric(MetricSpec(name="judge_like", judge="big-model", args={"ignore_case": False}))
    assert m.judge == "big-model" and m.name == "judge_like"
    monkeypatch.setitem(METRICS._items, "lazy_exact", "assay.metrics.classification:ExactMatch")
    assert build_metric(MetricSpec(name="lazy_exact")).aggregate(["A"], ["a"]) == 1.0


def test_unknown_name_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnknownName, match="did you mean 'exact_match'"):
        METRICS.check("exact_mach")
    with pytest.raises(ValueError) as e:
        build_metric(MetricSpec(name="exact_mach"))
    msg = str(e.value)
    assert "metric 'exact_mach' is not built in and could not be loaded from the Hugging Face hub (offline?)" in msg
    assert "HF_HUB_OFFLINE is set" in msg and "built-in metrics: accuracy, bleu" in msg
    assert "did you mean 'exact_match'," in msg


def test_unknown_name_online_uses_the_hub(monkeypatch):
    import evaluate

    for var in ("HF_HUB_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)

    def no_network(name, **kwargs):
        raise ConnectionError(f"Couldn't reach the Hub for {name}")

    monkeypatch.setattr(evaluate, "load", no_network)
    with pytest.raises(
        ValueError, match=r"could not be loaded from the Hugging Face hub \(offline\?\): Couldn't reach the Hub for meteor"
    ):
        build_metric(MetricSpec(name="meteor"))

    class FakeModule:
        name = "meteor"

        def compute(self, predictions, references, **kwargs):
            return {"meteor": 0.25 * len(predictions), **kwargs}

    monkeypatch.setattr(evaluate, "load", lambda name, **kwargs: FakeModule())
    m = build_metric(MetricSpec(name="meteor", args={"alpha": 0.9}))
    assert isinstance(m, EvaluateMetric) and m.aggregate(["a", "b"], ["a", "c"]) == 0.5


# --------------------------------------------------------------------------------------
# golden fixture


def read_fixture(name):
    with open(GOLDEN / name, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    # an empty cell is a failed call (prediction) or a missing reference
    return [r["prediction"] or None for r in rows], [r["reference"] or None for r in rows]


GOLDEN_EXPECTED = json.loads((GOLDEN / "expected.json").read_text())


def test_golden_covers_every_builtin():
    assert {c["metric"] for c in GOLDEN_EXPECTED["cases"]} == set(BUILTIN_NAMES)


@pytest.mark.parametrize("case", GOLDEN_EXPECTED["cases"], ids=lambda c: c["id"])
def test_golden(case):
    preds, refs = read_fixture(case["fixture"])
    assert len(preds) == 30
    m = build_metric(MetricSpec(name=case["metric"], args=case["args"]), base_dir=str(GOLDEN))
    assert abs(m.aggregate(preds, refs) - case["value"]) <= GOLDEN_EXPECTED["tolerance"]


@pytest.mark.parametrize("name", ["macro_f1", "micro_f1", "macro_precision", "macro_recall"])
@pytest.mark.parametrize("label_set", ["references", "union"])
def test_vectorised_resamples_equal_the_corpus_value(name, label_set):
    import numpy as np

    rng = np.random.default_rng(3)
    refs = [str(x) for x in rng.choice(["a", "b", "c", "d"], size=300)]
    preds = [
        None if i % 17 == 0 else (r if rng.random() < 0.7 else str(rng.choice(["a", "b", "zz", "Other text"])))
        for i, r in enumerate(refs)
    ]
    m = metric(name, label_set=label_set)
    idx = rng.integers(0, len(refs), size=(25, len(refs)))
    fast = m.resample_aggregates(preds, refs, idx)
    slow = [m.aggregate([preds[i] for i in row], [refs[i] for i in row]) for row in idx]
    assert np.allclose(fast, slow, atol=1e-12)
