"""Text utilities of the metrics: missing values, normalisation, numbers and JSON read from model outputs."""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------
# helpers


def is_missing(x: Any) -> bool:
    """None, float NaN and pandas' NA count as missing."""
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    if isinstance(x, np.floating) and np.isnan(x):
        return True
    return type(x).__name__ in ("NAType", "NaTType")


def to_text(x: Any) -> str | None:
    """A prediction or label as text: missing -> None, 3.0 -> "3" (pandas turns int columns with gaps into floats)."""
    if is_missing(x):
        return None
    if isinstance(x, str):
        return x
    if isinstance(x, bytes):
        return x.decode("utf-8", errors="replace")
    if isinstance(x, (bool, np.bool_)):
        return str(bool(x))
    if isinstance(x, (float, np.floating)) and float(x).is_integer():
        return str(int(x))
    return str(x)


def _is_multi(ref: Any) -> bool:
    """A reference given as several acceptable answers (list/tuple/set/array of them)."""
    return isinstance(ref, (list, tuple, set, frozenset, np.ndarray))


def _alternatives(ref: Any) -> list[str] | None:
    """The acceptable reference texts, or None when the reference is missing."""
    if _is_multi(ref):
        alts = [t for t in (to_text(r) for r in ref) if t is not None]
        return alts or None
    t = to_text(ref)
    return None if t is None else [t]


def _as_list(values: Any, what: str) -> list:
    if values is None:
        raise ValueError(f"{what} must be a sequence, got None")
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of values, not a single string")
    return list(values)


def _pairs(predictions, references) -> tuple[list, list]:
    preds = _as_list(predictions, "predictions")
    refs = _as_list(references, "references")
    if len(preds) != len(refs):
        raise ValueError(f"got {len(preds)} predictions but {len(refs)} references")
    return preds, refs


def nanmean(scores) -> float:
    """Mean ignoring NaN; NaN (without a warning) when nothing is left."""
    if scores is None:
        return float("nan")
    a = np.asarray(scores, dtype=float)
    ok = ~np.isnan(a)
    if not ok.any():
        return float("nan")
    return float(a[ok].mean())


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P")


def _strip_punctuation(s: str, and_whitespace: bool) -> str:
    """Remove leading/trailing punctuation (Unicode category P*), keeping a minus sign before a number."""
    start, end = 0, len(s)
    while start < end:
        ch = s[start]
        if (
            ch == "-"
            and start + 1 < end
            and (s[start + 1].isdigit() or (s[start + 1] == "." and start + 2 < end and s[start + 2].isdigit()))
        ):
            break
        if _is_punct(ch) or (and_whitespace and ch.isspace()):
            start += 1
        else:
            break
    while end > start and (_is_punct(s[end - 1]) or (and_whitespace and s[end - 1].isspace())):
        end -= 1
    return s[start:end]


_WS = re.compile(r"\s+")


def normalize_text(
    text: Any,
    ignore_case: bool = True,
    strip: bool = True,
    ignore_punctuation: bool = True,
    normalize_whitespace: bool = True,
    regexes_to_ignore: Sequence[str | re.Pattern] = (),
) -> str | None:
    """The normalisation behind exact_match, accuracy and the F1 family.

    In order: remove every match of ``regexes_to_ignore``; lower-case; collapse runs of
    whitespace to one space; strip surrounding whitespace; strip leading/trailing
    punctuation (Unicode categories P*, so ``"(B)."`` -> ``"b"``, but ``"-5"`` keeps its
    sign). Missing values give None.
    """
    s = to_text(text)
    if s is None:
        return None
    for rx in regexes_to_ignore:
        s = re.sub(rx, "", s)
    if ignore_case:
        s = s.casefold()
    if normalize_whitespace:
        s = _WS.sub(" ", s)
    if strip:
        s = s.strip()
    if ignore_punctuation:
        s = _strip_punctuation(s, and_whitespace=strip)
    return s


# a number: optional sign (not glued to a word, so "COVID-19" gives 19), thousands
# separators "1,234,567", decimals, exponent; or ".5"
_NUMBER = re.compile(
    r"(?:(?<![\w])[-+\u2212])?"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:[eE][-+]?\d+)?"
)


def extract_number(text: Any) -> float | None:
    """The first number in ``text`` as a float (``"$1,234.5 total"`` -> 1234.5), or None."""
    if is_missing(text):
        return None
    if isinstance(text, (bool, np.bool_)):
        return float(text)
    if isinstance(text, (int, float, np.integer, np.floating)):
        return float(text)
    m = _NUMBER.search(to_text(text))
    if m is None:
        return None
    s = m.group(0).replace(",", "").replace("\u2212", "-")
    try:
        return float(s)
    except ValueError:  # pragma: no cover - the pattern only matches parseable numbers
        return None


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|jsonc|json5)?[ \t]*\r?\n?(.*?)```", re.DOTALL)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _loads(s: str) -> Any:
    # NaN/Infinity are accepted by Python's json but are not JSON
    return json.loads(s, parse_constant=_reject_constant)


def parse_json(text: Any) -> tuple[bool, Any]:
    """``(True, value)`` if ``text`` is JSON, or contains a ```json fenced block that is; else ``(False, None)``."""
    if is_missing(text):
        return False, None
    if isinstance(text, (dict, list)):
        return True, text
    s = to_text(text).strip()
    if not s:
        return False, None
    try:
        return True, _loads(s)
    except ValueError:
        pass
    for m in _FENCE.finditer(s):
        try:
            return True, _loads(m.group(1).strip())
        except ValueError:
            continue
    return False, None
