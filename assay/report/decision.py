"""The decision of a run in one sentence, and the headline table every view shows.

One function each, used by ``summary.md``, ``report.html``, the Prefect UI's artifacts and the
terminal's result table (``assay run``), so all four say the same thing in the same words:

* :func:`recommend` — the cheapest option that passes every gate (by monthly cost at the
  configured volume, else cost per 1,000 requests: :func:`assay.costing.cheapest_passing`), or
  why none does, with the runner-up;
* :func:`headline_rows` — per model the headline metric with its interval, cost per 1,000
  requests, monthly cost, p95 latency and errors, formatted for people, the recommended row marked;
* :func:`options` — the single models and the policies (cascades, routes) side by side, each at its
  own monthly cost (a policy's pays the floors of the services it needs), for the Pareto front
  (:func:`pareto`) and :func:`dominated` (a policy better and cheaper than a single model);
* :func:`serving_lines` — what each served option's monthly cost assumes (its always-on floor).

Gates here are the ``min``/``max`` bars of ``gates:`` on each model's overall value; ``max_drop``
compares with earlier runs and is checked by the gate after the report (see :mod:`assay.gates`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from assay import costing
from assay.report import format as fmt

#: The headline table's columns, in order (the monthly column's title names the volume).
COLUMNS = ("model", "quality", "cost_per_1k", "monthly", "p95", "errors")


@dataclass
class Recommendation:
    """What the run recommends. ``model`` is None when no option passes (or no gate is set)."""

    sentence: str
    model: str | None = None
    runner_up: str | None = None
    metric: str = ""
    passing: list[str] = field(default_factory=list)
    failing: dict[str, list[str]] = field(default_factory=dict)  # model -> the bars it fails
    gated: bool = False
    policy: bool = False  # ``model`` names a policy of policies.parquet (a cascade or a route), not one model

    def to_dict(self) -> dict:
        return {
            "sentence": self.sentence,
            "model": self.model,
            "runner_up": self.runner_up,
            "metric": self.metric,
            "passing": list(self.passing),
            "failing": dict(self.failing),
            "gated": self.gated,
            "policy": self.policy,
        }


def bars(cfg) -> dict[str, dict]:
    """The ``min``/``max`` bars of a pipeline's gates: ``{metric: {"min": .., "max": ..}}``."""
    out = {}
    for metric, g in (cfg.gates or {}).items():
        d = g.model_dump(exclude_none=True) if hasattr(g, "model_dump") else dict(g)
        b = {k: float(d[k]) for k in ("min", "max") if d.get(k) is not None}
        if b:
            out[metric] = b
    return out


def _bar_text(metric: str, b: dict) -> str:
    parts = []
    if "min" in b:
        parts.append(f"{metric} ≥ {b['min']:g}")
    if "max" in b:
        parts.append(f"{metric} ≤ {b['max']:g}")
    return " and ".join(parts)


def _value(row: pd.Series, col: str) -> float:
    try:
        v = float(row.get(col))
    except (TypeError, ValueError):
        return math.nan
    return v


def _fails(row: pd.Series, bs: dict[str, dict]) -> list[str]:
    """The bars a model's row fails, each as ``accuracy 0.70 < 0.75``."""
    out = []
    for metric, b in bs.items():
        v = _value(row, metric)
        if math.isnan(v):
            out.append(f"{metric} unknown")
            continue
        if "min" in b and v < b["min"]:
            out.append(f"{metric} {fmt.num(v)} < {b['min']:g}")
        if "max" in b and v > b["max"]:
            out.append(f"{metric} {fmt.num(v)} > {b['max']:g}")
    return out


def _cost_col(table: pd.DataFrame) -> str:
    if "monthly_cost_usd" in table and pd.to_numeric(table["monthly_cost_usd"], errors="coerce").notna().any():
        return "monthly_cost_usd"
    return "cost_per_1k_usd"


def _quality(row: pd.Series, metric: str) -> str:
    return f"{metric} {fmt.with_interval(row.get(metric), row.get(f'{metric}_ci_low'), row.get(f'{metric}_ci_high'))}"


def _cost(row: pd.Series, monthly: int | None) -> str:
    m = row.get("monthly_cost_usd")
    if monthly and not fmt.missing(m):
        floor = row.get("floor_monthly_usd")
        if not fmt.missing(floor) and float(floor) > 0 and row.get("needs"):  # a policy: the floors of its services
            return (
                f"{fmt.usd(float(m))} a month (of which {fmt.usd(float(floor))} the always-on floors of the services "
                f"it needs: {row.get('needs')})"
            )
        serving = row.get("serving")
        if not isinstance(serving, str) or not serving:
            return f"{fmt.usd(float(m))} a month"
        return f"{fmt.usd(float(m))} a month ({serving if serving.startswith('paid per call') else 'the floor: ' + serving})"
    c = row.get("cost_per_1k_usd")
    return "an unknown cost" if fmt.missing(c) else f"{fmt.usd(float(c))} per 1,000 requests"


def recommend(table: pd.DataFrame, cfg, policies: pd.DataFrame | None = None) -> Recommendation:
    """The recommendation of a run's headline table (see :func:`assay.report.summary.headline`).

    With ``policies`` (policies.parquet): a policy that passes every gate (on its own values of the
    gated metrics) more cheaply than every single model that passes is recommended instead, with
    the cheapest passing single model as the runner-up."""
    rec = _recommend_models(table, cfg)
    if policies is None or not len(policies) or not rec.gated or table.empty or "model" not in table:
        return rec
    chosen = _recommend_policy(rec, table, policies, cfg)
    if chosen is not None:
        return chosen
    best = _cheapest_passing_policy(table, policies, cfg)
    if rec.model is None or best is None:
        return rec
    # a single model is cheapest; a policy that passes more cheaply than the single runner-up is the runner-up
    col = _cost_col(table)
    name, prow = best
    runner_cost = math.inf
    if rec.runner_up is not None and rec.runner_up in rec.passing:
        srow = table[table["model"].astype(str) == rec.runner_up]
        runner_cost = float(pd.to_numeric(srow[col], errors="coerce").fillna(math.inf).iloc[0])
    if float(prow[col]) >= runner_cost:
        return rec
    return _recommend_models(table, cfg, (name, prow, policies))


def _policy_values(row: pd.Series) -> pd.Series:
    """A policy's row as a headline row: its value of every per-example metric, its interval and cost."""
    try:
        values = json.loads(row.get("values_json") or "{}")
    except (TypeError, ValueError):
        values = {}
    out = {k: (math.nan if v is None else float(v)) for k, v in values.items()}
    metric = row.get("metric")
    out.update(
        {
            f"{metric}_ci_low": row.get("quality_ci_low"),
            f"{metric}_ci_high": row.get("quality_ci_high"),
            "monthly_cost_usd": row.get("monthly_cost_usd"),
            "cost_per_1k_usd": row.get("cost_per_1k_usd"),
            "floor_monthly_usd": row.get("floor_monthly_usd"),
            "needs": row.get("needs"),
        }
    )
    return pd.Series(out)


def options(table: pd.DataFrame, cfg, policies: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every option of a run, one row each: the single models of the headline ``table`` and the
    policies of policies.parquet (``policy`` True, ``kind`` cascade or route), with the headline
    metric's value, ``monthly_cost_usd`` (a policy's includes the floors of the services it needs)
    and ``cost_per_1k_usd``."""
    metric = cfg.metric_specs()[0].key
    cols = ["model", "policy", "kind", metric, "cost_per_1k_usd", "monthly_cost_usd"]
    rows = []
    if len(table) and "model" in table:
        for _, r in table.iterrows():
            rows.append(
                {
                    "model": str(r["model"]),
                    "policy": False,
                    "kind": r.get("kind"),
                    metric: _value(r, metric),
                    "cost_per_1k_usd": _value(r, "cost_per_1k_usd"),
                    "monthly_cost_usd": _value(r, "monthly_cost_usd"),
                }
            )
    if policies is not None and len(policies):
        for _, p in policies.iterrows():
            v = _policy_values(p)
            rows.append(
                {
                    "model": str(p["policy"]),
                    "policy": True,
                    "kind": str(p.get("kind")),
                    metric: _value(v, metric),
                    "cost_per_1k_usd": _value(p, "cost_per_1k_usd"),
                    "monthly_cost_usd": _value(p, "monthly_cost_usd"),
                }
            )
    return pd.DataFrame(rows, columns=cols)


def _option_cost_col(opts: pd.DataFrame, monthly: int | None) -> str:
    """Monthly cost at the configured volume (the floors count) when known, else cost per 1,000 requests."""
    if monthly and pd.to_numeric(opts["monthly_cost_usd"], errors="coerce").notna().any():
        return "monthly_cost_usd"
    return "cost_per_1k_usd"


def pareto(table: pd.DataFrame, cfg, policies: pd.DataFrame | None = None) -> tuple[list[str], str]:
    """The quality/cost Pareto front over every option (single models and policies), and the cost
    it is taken on (``monthly_cost_usd`` at the configured volume, else ``cost_per_1k_usd``)."""
    metric = cfg.metric_specs()[0].key
    opts = options(table, cfg, policies)
    col = _option_cost_col(opts, cfg.cost.monthly_requests)
    ok = opts.dropna(subset=[metric, col])
    if not len(ok):
        return [], col
    front = costing.pareto_front(ok, metric, col, higher_is_better=_higher_is_better(table, metric))
    return ok.loc[front.values, "model"].tolist(), col


def option_label(name: str, policies: pd.DataFrame | None) -> str:
    """``tfidf-then-gpt (cascade)`` for a policy, the name alone for a single model."""
    if policies is not None and len(policies) and name in set(policies["policy"].astype(str)):
        kind = policies.loc[policies["policy"].astype(str) == name, "kind"].iloc[0]
        return f"{name} ({kind})"
    return name


def dominated(table: pd.DataFrame, cfg, policies: pd.DataFrame | None = None) -> list[str]:
    """A sentence for each single model that a policy dominates — at least as good on the headline
    metric and as cheap (monthly cost at the configured volume, else per 1,000 requests), better on
    one — naming the cheapest such policy."""
    if policies is None or not len(policies):
        return []
    metric = cfg.metric_specs()[0].key
    hib = _higher_is_better(table, metric)
    opts = options(table, cfg, policies)
    col = _option_cost_col(opts, cfg.cost.monthly_requests)
    monthly = cfg.cost.monthly_requests
    sign = 1.0 if hib else -1.0
    singles, pols = opts[~opts["policy"]], opts[opts["policy"]].sort_values(col, kind="stable")
    out = []
    for _, m in singles.iterrows():
        qm, cm = m[metric], m[col]
        if math.isnan(qm) or math.isnan(cm):
            continue
        for _, p in pols.iterrows():
            qp, cp = p[metric], p[col]
            if math.isnan(qp) or math.isnan(cp):
                continue
            if sign * qp >= sign * qm and cp <= cm and (sign * qp > sign * qm or cp < cm):
                unit = " a month" if col == "monthly_cost_usd" else " per 1,000 requests"
                at = f" at {monthly:,} requests" if col == "monthly_cost_usd" and monthly else ""
                out.append(
                    f"The {p['kind']} {p['model']} dominates {m['model']}: {metric} {fmt.num(qp)} against "
                    f"{fmt.num(qm)}, at {fmt.usd(cp)} against {fmt.usd(cm)}{unit}{at}"
                )
                break
    return out


def serving_lines(table: pd.DataFrame) -> list[str]:
    """What each served option's monthly cost assumes: ``tfidf-logreg is priced as 1 always-on
    instance at $0.0208/hour ($15.18 a month, ...)``, or as paid per call (``instances: 0``)."""
    out = []
    if "serving_terms" not in table:
        return out
    for _, r in table.iterrows():
        text = r.get("serving_terms")
        if isinstance(text, str) and text:
            out.append(f"{r['model']} is priced as {text}")
    return out


def _cheapest_passing_policy(table: pd.DataFrame, policies: pd.DataFrame, cfg) -> tuple[str, pd.Series] | None:
    """(name, its values) of the cheapest policy that passes every gate, at the cost the single
    models are compared on; None when none passes."""
    bs = bars(cfg)
    col = _cost_col(table)
    rows = {str(r["policy"]): _policy_values(r) for _, r in policies.iterrows()}
    ok = {name: r for name, r in rows.items() if not _fails(r, bs) and not fmt.missing(r.get(col))}
    if not ok:
        return None
    name = min(ok, key=lambda k: float(ok[k][col]))
    return name, ok[name]


def _recommend_policy(rec: Recommendation, table: pd.DataFrame, policies: pd.DataFrame, cfg) -> Recommendation | None:
    metric = cfg.metric_specs()[0].key
    monthly = cfg.cost.monthly_requests
    bs = bars(cfg)
    col = _cost_col(table)
    found = _cheapest_passing_policy(table, policies, cfg)
    if found is None:
        return None
    name, best = found
    single = None
    if rec.model is not None:
        srow = table[table["model"].astype(str) == rec.model]
        single = float(pd.to_numeric(srow[col], errors="coerce").iloc[0]) if len(srow) else None
    if single is not None and not math.isnan(single) and float(best[col]) >= single:
        return None
    pol = policies[policies["policy"].astype(str) == name].iloc[0]
    gates_text = "; ".join(_bar_text(m, b) for m, b in bs.items())
    at = f" for {monthly:,} requests" if monthly else ""
    q = metric if metric in best else str(pol["metric"])
    text = (
        f"Deploy the {pol['kind']} {name} ({pol['models']}; {pol['rule']}): it passes every gate ({gates_text}) "
        f"more cheaply than any single model, at {_cost(best, monthly)}{at}, with {_quality(best, q)}."
    )
    if rec.model is not None:
        r = table[table["model"].astype(str) == rec.model].iloc[0]
        text += f" The cheapest single model that passes: {rec.model}, at {_cost(r, monthly)}, with {_quality(r, metric)}."
    else:
        text += " No single model passes every gate."
    return Recommendation(text, name, rec.model, metric, rec.passing, rec.failing, True, True)


def _recommend_models(table: pd.DataFrame, cfg, policy_runner: tuple | None = None) -> Recommendation:
    """The recommendation among the single models; ``policy_runner`` = (name, values, policies): a
    policy that passes every gate and is the runner-up instead of the next single model."""
    metric = cfg.metric_specs()[0].key
    monthly = cfg.cost.monthly_requests
    bs = bars(cfg)
    if table.empty or "model" not in table:
        return Recommendation("No model produced results, so there is nothing to recommend.", metric=metric, gated=bool(bs))
    rows = {str(r["model"]): r for _, r in table.iterrows()}
    at = f" for {monthly:,} requests" if monthly else ""
    hib = _higher_is_better(table, metric)
    if not bs:
        ranked = _by_quality(table, metric, hib)
        if not ranked:
            return Recommendation(f"No gates are configured and no model has a {metric}.", metric=metric)
        best = ranked[0]
        cheapest = costing.cheapest_passing(table, {})
        text = (
            f"No gates are configured, so no option is recommended: the best {metric} is {best} "
            f"({_quality(rows[best], metric)}, {_cost(rows[best], monthly)}{at})"
        )
        if cheapest and cheapest != best:
            text += f"; the cheapest is {cheapest} ({_quality(rows[cheapest], metric)}, {_cost(rows[cheapest], monthly)})"
        return Recommendation(
            text + ".", None, cheapest if cheapest != best else (ranked[1] if len(ranked) > 1 else None), metric, list(rows), {}
        )
    failing = {m: f for m, r in rows.items() if (f := _fails(r, bs))}
    passing = [m for m in rows if m not in failing]
    gates_text = "; ".join(_bar_text(m, b) for m, b in bs.items())
    chosen = costing.cheapest_passing(table, bs)
    if chosen is not None:
        col = _cost_col(table)
        cost = pd.to_numeric(table[col], errors="coerce")
        order = table.assign(_fails=[str(m) in failing for m in table["model"]], _cost=cost.fillna(math.inf))
        order = order.sort_values(["_fails", "_cost"], kind="stable")
        others = [str(m) for m in order["model"] if str(m) != chosen]
        runner = others[0] if others else None
        only = len(passing) == 1
        r = rows[chosen]
        text = (
            f"Deploy {chosen}: the {'only' if only else 'cheapest'} option that passes every gate ({gates_text}), "
            f"at {_cost(r, monthly)}{at}, with {_quality(r, metric)}."
        )
        if policy_runner is not None:
            name, prow, pols = policy_runner
            pol = pols[pols["policy"].astype(str) == name].iloc[0]
            q = metric if metric in prow else str(pol["metric"])
            text += (
                f" Runner-up: the {pol['kind']} {name} ({pol['models']}; {pol['rule']}), at {_cost(prow, monthly)}, "
                f"with {_quality(prow, q)}."
            )
            runner = name
        elif runner is not None:
            rr = rows[runner]
            why = f", but it fails {', '.join(failing[runner])}" if runner in failing else ""
            text += f" Runner-up: {runner}, at {_cost(rr, monthly)}, with {_quality(rr, metric)}{why}."
        return Recommendation(text, chosen, runner, metric, passing, failing, True)
    if passing:  # they pass, but none has a known cost
        text = (
            f"{', '.join(passing)} {'passes' if len(passing) == 1 else 'pass'} every gate ({gates_text}), "
            "but no cost is known, so none is recommended."
        )
        return Recommendation(text, None, None, metric, passing, failing, True)
    # nobody passes: the closest first (fewest failed bars, then the best headline metric)
    ranked = _by_quality(table, metric, hib)
    ranked = sorted(ranked, key=lambda m: len(failing.get(m, []))) + [m for m in rows if m not in ranked]
    closest = ranked[0]
    text = f"No option passes every gate ({gates_text}): " + "; ".join(f"{m} fails {', '.join(failing[m])}" for m in ranked) + "."
    text += f" Closest: {closest}, with {_quality(rows[closest], metric)}, at {_cost(rows[closest], monthly)}{at}"
    runner = ranked[1] if len(ranked) > 1 else None
    if runner:
        text += f"; runner-up: {runner}, with {_quality(rows[runner], metric)}, at {_cost(rows[runner], monthly)}"
    return Recommendation(text + ".", None, runner, metric, [], failing, True)


def _higher_is_better(table: pd.DataFrame, metric: str) -> bool:
    col = f"{metric}_higher_is_better"
    if col in table and table[col].notna().any():
        return bool(table[col].dropna().iloc[0])
    return True


def _by_quality(table: pd.DataFrame, metric: str, hib: bool) -> list[str]:
    if metric not in table:
        return []
    q = pd.to_numeric(table[metric], errors="coerce")
    ok = table.assign(_q=q).dropna(subset=["_q"]).sort_values("_q", ascending=not hib, kind="stable")
    return [str(m) for m in ok["model"]]


def headline_titles(cfg) -> dict[str, str]:
    """Column titles of the headline table (the same words in every view)."""
    metric = cfg.metric_specs()[0].key
    monthly = cfg.cost.monthly_requests
    return {
        "model": "model",
        "quality": f"{metric} (95% CI)",
        "cost_per_1k": "$/1k req",
        "monthly": f"$/month at {monthly:,}" if monthly else "$/month",
        "p95": "p95 latency",
        "errors": "errors",
    }


def headline_rows(table: pd.DataFrame, cfg, rec: Recommendation | None = None) -> list[dict]:
    """One dict per model, keyed by :data:`COLUMNS` (formatted text) plus ``recommended`` (bool)
    and the raw numbers a table artifact or chart may want (``value``, ``ci_low``, ...)."""
    metric = cfg.metric_specs()[0].key
    chosen = rec.model if rec is not None else None
    out = []
    for _, r in table.iterrows():
        errors = r.get("errors")
        out.append(
            {
                "model": str(r["model"]),
                "quality": fmt.with_interval(r.get(metric), r.get(f"{metric}_ci_low"), r.get(f"{metric}_ci_high")),
                "cost_per_1k": fmt.usd(_num(r.get("cost_per_1k_usd"))),
                "monthly": fmt.usd(_num(r.get("monthly_cost_usd"))),
                "p95": fmt.seconds(_num(r.get("latency_p95_s"))),
                "errors": fmt.count(errors) if not fmt.missing(errors) else "–",
                "recommended": chosen is not None and str(r["model"]) == chosen,
            }
        )
    return out


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


#: The policy table's columns, in order (every view: summary.md, report.html, the terminal, ``assay whatif``).
POLICY_COLUMNS = ("policy", "models", "rule", "quality", "cost_per_1k", "monthly", "p95", "escalated", "apgr", "saving")


def policy_titles(cfg=None, metric: str | None = None) -> dict[str, str]:
    """Column titles of the policy table."""
    metric = metric or (cfg.metric_specs()[0].key if cfg is not None else "quality")
    monthly = cfg.cost.monthly_requests if cfg is not None else None
    return {
        "policy": "policy",
        "models": "models",
        "rule": "rule",
        "quality": f"{metric} (95% CI)",
        "cost_per_1k": "$/1k req",
        "monthly": f"$/month at {monthly:,}" if monthly else "$/month",
        "p95": "p95 latency",
        "escalated": "escalated",
        "apgr": "APGR (95% CI)",
        "saving": "saving at matched quality (95% CI)",
    }


def _share(v) -> str:
    return "–" if fmt.missing(v) else f"{100 * float(v):.1f}%"


def saving_text(saving, model) -> str:
    """``24.2% vs big``; a policy that costs more than twice its match: ``costs 3,480× tfidf-logreg``."""
    if fmt.missing(saving):
        return "–"
    v = float(saving)
    return f"{_share(v)} vs {model}" if v > -1 else f"costs {1 - v:,.{0 if 1 - v >= 10 else 1}f}× {model}"


def policy_rows(policies: pd.DataFrame, rec: Recommendation | None = None) -> list[dict]:
    """One dict per policy of policies.parquet, keyed by :data:`POLICY_COLUMNS` (formatted text),
    plus ``recommended``."""
    out = []
    chosen = rec.model if rec is not None and rec.policy else None
    for _, r in policies.iterrows():
        apgr = (
            "–" if fmt.missing(r.get("apgr")) else fmt.with_interval(r.get("apgr"), r.get("apgr_ci_low"), r.get("apgr_ci_high"))
        )
        if fmt.missing(r.get("saving")):
            saving = "no single model reaches it" if fmt.missing(r.get("matched_model")) else "–"
        else:
            lo, hi = r.get("saving_ci_low"), r.get("saving_ci_high")
            ci = "" if fmt.missing(lo) else f" [{_share(lo)}, {_share(hi)}]"
            saving = f"{saving_text(r.get('saving'), r.get('matched_model'))}{ci if float(r.get('saving')) > -1 else ''}"
            if not fmt.missing(r.get("matched_share")) and float(r.get("matched_share")) < 0.95:
                saving += f" (the match in {_share(r.get('matched_share'))} of resamples)"
        out.append(
            {
                "policy": str(r["policy"]),
                "models": str(r.get("models") or ""),
                "rule": str(r.get("rule") or ""),
                "quality": fmt.with_interval(r.get("quality"), r.get("quality_ci_low"), r.get("quality_ci_high")),
                "cost_per_1k": fmt.usd(_num(r.get("cost_per_1k_usd"))),
                "monthly": fmt.usd(_num(r.get("monthly_cost_usd"))),
                "p95": fmt.seconds(_num(r.get("latency_p95_s"))),
                "escalated": _share(r.get("escalated")),
                "apgr": apgr,
                "saving": saving,
                "recommended": chosen is not None and str(r["policy"]) == chosen,
            }
        )
    return out
