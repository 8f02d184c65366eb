"""A run's recorded answers as per-example × per-model arrays: what every policy is scored from.

From a run folder's dataset.parquet, responses, scores.parquet and costs.parquet (no model is
called): per example and model the headline metric's score, every other per-example metric, the
dollars and seconds of the call, whether it failed, its output and its confidence.

The dollars of one call: an API model's token cost of that row under the price recorded in
costs.parquet (``price_json``), scaled so that the model's rows add up to its recorded ``cost_usd``
(the rows of a model priced at several dates' prices keep their recorded total); a self-hosted or
conventional model's recorded cost per request (priced by time, every request costs the same).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from assay import store
from assay.errors import DataError
from assay.pricing import PriceQuote, token_cost
from assay.responses import read_responses

NAN = float("nan")


@dataclass
class Answers:
    """Arrays of shape (examples, models), rows in the dataset's order, columns in ``models``' order."""

    ids: np.ndarray
    models: list[str]
    metric: str  # the metric policies are scored by (the headline one)
    higher_is_better: bool
    quality: np.ndarray  # the metric's per-example score (NaN: none)
    cost: np.ndarray  # USD of the call
    latency: np.ndarray  # seconds of the call
    failed: np.ndarray  # bool: the call failed
    confidence: np.ndarray  # 0..1, NaN where the model gave none
    output: np.ndarray  # object: the answer text
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # every per-example metric
    columns: pd.DataFrame | None = None  # the dataset's slice columns, per example
    references: list | None = None
    kinds: dict[str, str] = field(default_factory=dict)  # api, self-hosted, conventional, unpriced
    fixed_monthly: dict[str, float] = field(default_factory=dict)  # costs.parquet's fixed_monthly_usd
    judge_usd: dict[str, float] = field(default_factory=dict)  # judge metric -> USD per judged answer
    floor_monthly: dict[str, float] = field(default_factory=dict)  # costs.parquet's floor_monthly_usd (NaN: not recorded)

    @property
    def n(self) -> int:
        return len(self.ids)

    def index(self, model: str) -> int:
        return self.models.index(model)


def row_costs(responses: pd.DataFrame, costs: pd.DataFrame) -> pd.Series:
    """USD of each response row (see the module docstring); NaN for a model without a price."""
    values = np.full(len(responses), NAN)
    if not len(responses):
        return pd.Series(values, index=responses.index)
    by_model = {str(r["model"]): r for r in costs.to_dict("records")}
    frame = responses.reset_index(drop=True)  # positions: the caller's index may repeat
    for model, rows in frame.groupby("model", sort=False):
        c = by_model.get(str(model))
        if c is None:
            continue
        kind = c.get("kind")
        total = _num(c.get("cost_usd"))
        if kind == "api":
            pj = c.get("price_json")
            try:
                d = json.loads(pj) if isinstance(pj, str) else dict(pj or {})
            except (TypeError, ValueError):
                d = {}
            if "periods" in d and d["periods"]:  # priced per request date: the first period's prices weigh the rows
                d = {**d, **{k: v for k, v in d["periods"][0].items() if k.endswith("_per_mtok")}}
            q = PriceQuote.from_dict(d)
            tok = lambda col: pd.to_numeric(rows.get(col, 0), errors="coerce")  # noqa: E731, B023  (used in this iteration only)
            w = np.nan_to_num(
                np.asarray(
                    token_cost(
                        q,
                        tok("prompt_tokens").fillna(0),
                        tok("completion_tokens").fillna(0),
                        tok("cached_tokens"),
                        tok("cache_write_tokens"),
                    ),
                    dtype=float,
                ).reshape(-1)
            )
            s = float(w.sum())
            if s > 0 and math.isfinite(total):
                w = w * (total / s)
            elif math.isfinite(total):
                w = np.full(len(rows), total / len(rows))
            values[rows.index.to_numpy()] = w
        elif kind in ("self-hosted", "conventional"):
            values[rows.index.to_numpy()] = _num(c.get("cost_per_1k_usd")) / 1000
    return pd.Series(values, index=responses.index)


def _num(v) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return NAN
    return f


def answers(
    dataset: pd.DataFrame,
    responses: pd.DataFrame,
    scores: pd.DataFrame,
    costs: pd.DataFrame,
    metric: str,
    higher_is_better: bool = True,
    slices: list[str] | None = None,
    judges: dict[str, str] | None = None,
    models: list[str] | None = None,
) -> Answers:
    """The :class:`Answers` of a run from its tables (pandas). ``metric``: the one policies are
    scored by; ``judges``: judge metric -> judge model (its line ``judge:<model>`` in costs.parquet
    prices a judged answer); ``models``: which, in order (default: those of ``responses``)."""
    ids = dataset["example_id"].astype(str).to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    models = list(models or dict.fromkeys(responses["model"].astype(str)))
    n, k = len(ids), len(models)
    col = {m: j for j, m in enumerate(models)}
    resp = responses[responses["model"].astype(str).isin(col)].reset_index(drop=True)
    if "sample" in resp.columns:  # several samples per example: the first one answers
        resp = resp.sort_values("sample", kind="stable").drop_duplicates(["example_id", "model"], keep="first")
    resp["_cost"] = row_costs(resp, costs)
    i = pos.reindex(resp["example_id"].astype(str)).to_numpy()
    ok = ~np.isnan(i)
    i = i[ok].astype(np.int64)
    j = resp["model"].astype(str).map(col).to_numpy()[ok].astype(np.int64)

    def grid(values, fill=NAN, dtype=float):
        g = np.full((n, k), fill, dtype=dtype)
        g[i, j] = np.asarray(values)[ok]
        return g

    err = resp["error"] if "error" in resp.columns else pd.Series(None, index=resp.index)
    failed = grid(err.notna().to_numpy() & (err.astype(str) != "").to_numpy(), True, bool)
    conf = (
        pd.to_numeric(resp["confidence"], errors="coerce") if "confidence" in resp.columns else pd.Series(NAN, index=resp.index)
    )
    out = grid(resp["output"].astype(object).to_numpy(), None, object)
    per_metric: dict[str, np.ndarray] = {}
    if len(scores):
        sc = scores[scores["model"].astype(str).isin(col)]
        for name, g in sc.groupby("metric", sort=False):
            a = np.full((n, k), NAN)
            si = pos.reindex(g["example_id"].astype(str)).to_numpy()
            good = ~np.isnan(si)
            a[si[good].astype(np.int64), g["model"].astype(str).map(col).to_numpy()[good].astype(np.int64)] = pd.to_numeric(
                g["value"], errors="coerce"
            ).to_numpy()[good]
            per_metric[str(name)] = a
    if metric not in per_metric:
        raise DataError(f"no per-example scores of {metric!r} in scores.parquet: a policy is scored per example")
    kinds, fixed, floor = {}, {}, {}
    for r in costs.to_dict("records"):
        if str(r["model"]) in col:
            kinds[str(r["model"])] = str(r.get("kind"))
            fixed[str(r["model"])] = _num(r.get("fixed_monthly_usd"))
            floor[str(r["model"])] = _num(r.get("floor_monthly_usd"))
    judge_usd = {}
    for key, judge in (judges or {}).items():
        line = costs[costs["model"] == f"judge:{judge}"]
        judge_usd[key] = _num(line["cost_per_1k_usd"].iloc[0]) / 1000 if len(line) else NAN
    cols = [c for c in (slices or []) if c in dataset.columns]
    return Answers(
        ids,
        models,
        metric,
        bool(higher_is_better),
        per_metric[metric],
        grid(resp["_cost"].to_numpy()),
        grid(pd.to_numeric(resp.get("latency_s"), errors="coerce").to_numpy()),
        failed,
        grid(conf.to_numpy()),
        out,
        per_metric,
        dataset[cols].reset_index(drop=True) if cols else None,
        dataset["reference"].tolist() if "reference" in dataset.columns else None,
        kinds,
        fixed,
        judge_usd,
        floor,
    )


def decomposable(scores: pd.DataFrame, metrics: pd.DataFrame) -> set[str]:
    """The metrics whose per-example scores average to the run's value (accuracy, a judge's grade, a
    function metric), not those whose value is computed over the whole corpus (macro-F1): only the
    former can be scored for a policy's mix of answers. Without metrics.parquet, every metric."""
    if not len(scores):
        return set()
    names = set(scores["metric"].astype(str))
    if not len(metrics):
        return names
    overall = metrics[metrics["slice"] == "all"].set_index(["model", "metric"])["value"]
    means = scores.assign(v=pd.to_numeric(scores["value"], errors="coerce")).groupby(["model", "metric"])["v"].mean()
    out = set()
    for name in names:
        pairs = [(m, name) for m in means.index.get_level_values(0).unique() if (m, name) in means.index]
        if all(
            (p not in overall.index)
            or abs(float(means[p]) - float(overall[p])) < 1e-9
            or (math.isnan(float(means[p])) and math.isnan(float(overall[p])))
            for p in pairs
        ):
            out.add(name)
    return out


def from_run(rf, cfg, models: list[str] | None = None) -> Answers:
    """The :class:`Answers` of a run folder, scored by the pipeline's headline metric (the first
    metric with per-example scores, when the headline one is a corpus metric such as macro-F1)."""
    scores = rf.read_table(store.SCORES).to_pandas()
    metrics = rf.read_table(store.METRICS).to_pandas() if rf.exists(store.METRICS) else pd.DataFrame()
    per_example = decomposable(scores, metrics)
    scores = scores[scores["metric"].astype(str).isin(per_example)]
    keys = [s.key for s in cfg.metric_specs()]
    metric = next((m for m in keys if m in per_example), keys[0])
    hib = True
    if len(metrics) and "higher_is_better" in metrics:
        sel = metrics.loc[metrics["metric"] == metric, "higher_is_better"].dropna()
        hib = bool(sel.iloc[0]) if len(sel) else True
    judges = {s.key: s.judge for s in cfg.metric_specs() if s.judge}
    responses = read_responses(rf).to_pandas()
    return answers(
        rf.read_table(store.DATASET).to_pandas(),
        responses,
        scores,
        rf.read_table(store.COSTS).to_pandas(),
        metric,
        hib,
        cfg.dataset.slices,
        judges,
        models or [m for m in cfg.models if m in set(responses["model"])],
    )
