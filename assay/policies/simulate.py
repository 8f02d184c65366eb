"""What a policy would have done on each example: which models it called and whose answer it gave.

* **cascade** of models ``m1, m2, ..., mk``: ``m1`` is always called; while the answer fails the
  rule the next model is called; the last model's answer is taken as it is. A failed call never
  passes a rule. Rules (:mod:`assay.config.schema`): ``confidence`` (the answer's confidence ≥ the
  threshold), ``valid`` (JSON parses / matches a schema / a regex / is one of the labels), ``judge``
  (a judge metric's grade of the answer ≥ the threshold; each grade asked costs the judge's price
  per answer), ``agree`` (``m1`` and ``m2`` are called together and the answer taken when they
  agree; else ``m3`` is called, and so on, each next answer taken when it agrees with one before).
  Calls in sequence add their latencies; the agreeing pair, called at once, takes the slower one's.
* **route** by a slice column: per value of the column, the model chosen on the learning part of
  the examples (:func:`learn_route`); the others are where it is scored.

Everything is numpy on :class:`assay.policies.answers.Answers`; no model is called.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from assay.metrics.text import normalize_text
from assay.policies.answers import Answers

NAN = float("nan")


@dataclass
class Outcome:
    """Per example: ``chosen`` (the model index whose answer the policy gives), ``called`` (bool,
    examples × models), ``cost`` (USD, judges included), ``latency`` (seconds), ``escalated``
    (called more than its first step)."""

    chosen: np.ndarray
    called: np.ndarray
    cost: np.ndarray
    latency: np.ndarray
    escalated: np.ndarray

    def values(self, a: np.ndarray) -> np.ndarray:
        """The per-example values ``a`` (examples × models) of the chosen answers."""
        return a[np.arange(len(self.chosen)), self.chosen]


def _norm(text) -> str | None:
    return None if text is None else normalize_text(text)


def valid_mask(outputs: np.ndarray, rule, references: list | None) -> np.ndarray:
    """Which answers pass a ``valid`` rule (one bool per output)."""
    out = np.zeros(len(outputs), dtype=bool)
    labels = None
    if rule.labels is True:
        labels = {_norm(r) for r in (references or []) if r is not None}
    elif rule.labels:
        labels = {_norm(x) for x in rule.labels}
    regex = re.compile(rule.regex, re.S) if rule.regex is not None else None
    validator = None
    if rule.schema_ is not None:
        # lazy: optional (the metrics extra)
        import jsonschema

        validator = jsonschema.Draft202012Validator(rule.schema_)
    for i, text in enumerate(outputs):
        if not isinstance(text, str):
            continue
        ok = True
        if rule.json_ or validator is not None:
            try:
                doc = json.loads(text)
            except ValueError:
                ok = False
            else:
                ok = validator is None or validator.is_valid(doc)
        if ok and regex is not None:
            ok = regex.fullmatch(text.strip()) is not None
        if ok and labels is not None:
            ok = _norm(text) in labels
        out[i] = ok
    return out


def _accepts(a: Answers, j: int, rule, threshold: float | None, cache: dict) -> np.ndarray:
    """Whether each answer of model ``j`` passes the rule (a failed call never does)."""
    ok = ~a.failed[:, j]
    kind = rule.kind
    if kind == "confidence":
        c = a.confidence[:, j]
        return ok & ~np.isnan(c) & (np.nan_to_num(c, nan=-1.0) >= threshold)
    if kind == "judge":
        g = a.scores[rule.metric][:, j]
        return ok & ~np.isnan(g) & (np.nan_to_num(g, nan=-1.0) >= threshold)
    if kind == "valid":
        if ("valid", j) not in cache:
            cache[("valid", j)] = valid_mask(a.output[:, j], rule, a.references)
        return ok & cache[("valid", j)]
    raise ValueError(f"rule {kind!r} is not a per-answer rule")


def _ask(
    j: int,
    open_: np.ndarray,
    called: np.ndarray,
    cost: np.ndarray,
    latency: np.ndarray,
    usd: np.ndarray,
    lat: np.ndarray,
    chosen: np.ndarray,
    last: bool,
) -> bool:
    """The open examples ask model ``j`` (it is called, paid and waited for); the last model of a
    cascade answers all of them. True when it was the last."""
    called[open_, j] = True
    cost[open_] += usd[open_, j]
    latency[open_] += lat[open_, j]
    if last:
        chosen[open_] = j
    return last


def cascade(a: Answers, models: list[str], rule, threshold: float | None = None, cache: dict | None = None) -> Outcome:
    """What a cascade of ``models`` (in order) with ``rule`` (its ``threshold`` unless given) did
    on every example of ``a``; see the module docstring."""
    cache = {} if cache is None else cache
    idx = [a.index(m) for m in models]
    n = a.n
    if threshold is None:
        threshold = getattr(rule, "threshold", None)
    called = np.zeros((n, a.quality.shape[1]), dtype=bool)
    chosen = np.full(n, idx[-1], dtype=np.int64)
    cost = np.zeros(n)
    latency = np.zeros(n)
    open_ = np.ones(n, dtype=bool)  # not answered yet
    lat = np.nan_to_num(a.latency)
    if rule.kind == "agree":
        j0, j1 = idx[0], idx[1]
        called[:, j0] = called[:, j1] = True
        cost += a.cost[:, j0] + a.cost[:, j1]
        latency += np.maximum(lat[:, j0], lat[:, j1])
        norm = cache.setdefault("norm", {})
        for j in idx:
            if j not in norm:
                norm[j] = np.array([None if f else _norm(o) for o, f in zip(a.output[:, j], a.failed[:, j])], dtype=object)
        seen = [norm[j0], norm[j1]]
        agree = (seen[0] == seen[1]) & np.array([x is not None for x in seen[0]])
        chosen[agree] = j0
        open_ &= ~agree
        for step, j in enumerate(idx[2:], start=2):
            if _ask(j, open_, called, cost, latency, a.cost, lat, chosen, last=step == len(idx) - 1):
                break
            mine = norm[j]
            hit = open_ & np.array([x is not None for x in mine]) & np.any([mine == s for s in seen], axis=0)
            chosen[hit] = j
            open_ &= ~hit
            seen.append(mine)
        escalated = called[:, idx[2]] if len(idx) > 2 else np.zeros(n, bool)
        return Outcome(chosen, called, cost, latency, escalated)
    judge_usd = a.judge_usd.get(rule.metric, NAN) if rule.kind == "judge" else 0.0
    for step, j in enumerate(idx):
        if _ask(j, open_, called, cost, latency, a.cost, lat, chosen, last=step == len(idx) - 1):
            break
        if rule.kind == "judge":
            cost[open_] += judge_usd  # the grade that decides is paid for
        accept = open_ & _accepts(a, j, rule, threshold, cache)
        chosen[accept] = j
        open_ &= ~accept
    return Outcome(chosen, called, cost, latency, called[:, idx[1]].copy())


def learn_mask(n: int, share: float, seed: int) -> np.ndarray:
    """The examples a route is learned on: a seeded random ``share`` of them (at least one, and at
    least one left to score on when there are two or more)."""
    rng = np.random.default_rng(seed)
    k = int(round(share * n))
    k = min(max(k, 1), n - 1) if n > 1 else n
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[:k]] = True
    return mask


def _choose(q: np.ndarray, c: np.ndarray, tolerance: float | None, lam: float | None) -> int:
    """Among candidates with quality ``q`` (higher is better) and cost per 1,000 ``c``: the cheapest
    within ``tolerance`` of the best, or the best ``q − λ·c``."""
    known = ~np.isnan(q)
    if not known.any():
        return int(np.nanargmin(np.where(np.isnan(c), np.inf, c))) if (~np.isnan(c)).any() else 0
    if lam is not None:
        obj = np.where(known, q - lam * np.nan_to_num(c, nan=np.inf), -np.inf)
        return int(np.argmax(obj))
    best = np.nanmax(q)
    ok = known & (q >= best - tolerance - 1e-12)
    cand = np.flatnonzero(ok)
    # the cheapest; equal costs: the better one
    return int(min(cand, key=lambda i: (np.inf if np.isnan(c[i]) else c[i], -q[i])))


def learn_route(
    a: Answers, models: list[str], column: str, learn: np.ndarray, tolerance: float | None = None, lam: float | None = None
) -> dict:
    """Per value of ``column``: the model (name) chosen on the ``learn`` examples; ``None`` keys the
    choice for values seen only outside them (the choice over every learning example)."""
    tolerance = 0.01 if tolerance is None and lam is None else tolerance
    idx = [a.index(m) for m in models]
    sign = 1.0 if a.higher_is_better else -1.0
    values = a.columns[column].astype(object).where(a.columns[column].notna(), None).to_numpy()

    def pick(rows: np.ndarray) -> str:
        q = (
            np.array(
                [np.nanmean(a.quality[rows, j]) if rows.any() and (~np.isnan(a.quality[rows, j])).any() else NAN for j in idx]
            )
            * sign
        )
        c = np.array(
            [np.nanmean(a.cost[rows, j]) * 1000 if rows.any() and (~np.isnan(a.cost[rows, j])).any() else NAN for j in idx]
        )
        return models[_choose(q, c, tolerance, lam)]

    routes = {None: pick(learn)}
    for v in dict.fromkeys(values.tolist()):
        rows = learn & (values == v) if v is not None else learn & np.array([x is None for x in values])
        if rows.any():
            routes[v] = pick(rows)
    return routes


def route(a: Answers, column: str, routes: dict) -> Outcome:
    """What routing by ``column`` with ``routes`` (from :func:`learn_route`) did on every example."""
    values = a.columns[column].astype(object).where(a.columns[column].notna(), None).to_numpy()
    chosen = np.array([a.index(routes.get(v, routes[None])) for v in values.tolist()], dtype=np.int64)
    n = a.n
    called = np.zeros((n, a.quality.shape[1]), dtype=bool)
    called[np.arange(n), chosen] = True
    rows = np.arange(n)
    return Outcome(chosen, called, a.cost[rows, chosen].copy(), np.nan_to_num(a.latency[rows, chosen]), np.zeros(n, bool))
