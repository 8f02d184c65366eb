"""The report stage's work: summary.md (the recommendation, the headline table, the decisions) and
report.html, the decision on one page.

report.html, in order: the recommendation in one sentence; the headline table; quality against
cost per 1,000 requests (interval bars, the Pareto front); monthly cost against monthly volume
for every option (break-even points marked); per-slice quality as a heat map; paired differences
as a forest plot; latency per model; the history of the headline metric and cost over earlier
complete runs; the tables behind them, collapsed; a reproducibility footer. Charts are Vega-Lite
rendered to inline SVG (:mod:`assay.report.charts`); the page has no script and loads nothing.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

import assay.store
from assay import costing
from assay.config import PipelineConfig
from assay.costing import serving_text
from assay.costing.reconcile import lines
from assay.errors import DataError
from assay.gates import gates_passed
from assay.report import charts, engine, page
from assay.report import format as fmt
from assay.report.decision import (
    COLUMNS,
    POLICY_COLUMNS,
    Recommendation,
    dominated,
    headline_rows,
    headline_titles,
    option_label,
    pareto,
    policy_rows,
    policy_titles,
    recommend,
    serving_lines,
)
from assay.report.format import num as _fmt
from assay.report.format import usd as _usd
from assay.store import RunFolder

log = logging.getLogger("assay.report")

#: Up to this many models the forest plot shows every pair; beyond, each model against one.
ALL_PAIRS_MAX_MODELS = 7


# ------------------------------------------------------------------------------------------ tables
def headline(metrics: pd.DataFrame, costs: pd.DataFrame, cfg: PipelineConfig) -> pd.DataFrame:
    """One row per model: each metric with its interval, errors, and the cost figures."""
    overall = metrics[metrics["slice"] == "all"]
    has_hib = "higher_is_better" in overall.columns
    by_model: dict[str, dict] = {}
    for m in overall.itertuples():
        r = by_model.setdefault(m.model, {"model": m.model})
        r[m.metric] = float(m.value)
        r[f"{m.metric}_ci"] = fmt.interval(m.ci_low, m.ci_high)
        r[f"{m.metric}_ci_low"] = float(m.ci_low) if not fmt.missing(m.ci_low) else math.nan
        r[f"{m.metric}_ci_high"] = float(m.ci_high) if not fmt.missing(m.ci_high) else math.nan
        if has_hib and not fmt.missing(m.higher_is_better):
            r[f"{m.metric}_higher_is_better"] = bool(m.higher_is_better)
        r["n"] = int(m.n)
        r["errors"] = int(m.errors)
    cols = [
        c
        for c in (
            "kind",
            "cost_usd",
            "cost_per_1k_usd",
            "monthly_cost_usd",
            "latency_p50_s",
            "latency_p95_s",
            "ttft_p50_s",
            "ttft_p95_s",
            "throughput_rps",
        )
        if c in costs.columns
    ]
    first_cost = {}
    for c, full in zip(costs[["model", *cols]].to_dict("records"), costs.to_dict("records")):
        c["serving"] = serving_text(full, short=True) if "price_json" in full else ""
        c["serving_terms"] = serving_text(full) if "price_json" in full else ""
        first_cost.setdefault(c["model"], c)
    cols = [*cols, "serving", "serving_terms"]
    for model, r in by_model.items():
        c = first_cost.get(model)
        if c is not None:
            r.update({k: c[k] for k in cols})
    return pd.DataFrame(list(by_model.values()))


def _hib(table: pd.DataFrame, metric: str) -> bool:
    col = f"{metric}_higher_is_better"
    return bool(table[col].dropna().iloc[0]) if col in table and table[col].notna().any() else True


def decisions(table: pd.DataFrame, cfg: PipelineConfig, policies: pd.DataFrame | None = None) -> dict:
    """The decisions of a run: the recommendation (:func:`assay.report.decision.recommend`, a policy
    of ``policies`` when one passes more cheaply), the cheapest option that passes every bar (a
    policy too), the quality/cost Pareto front over single models and policies, the single models a
    policy dominates, and what each served option's monthly cost assumes."""
    keys = [s.key for s in cfg.metric_specs()]
    first = keys[0]
    out = {"first_metric": first}
    rec = recommend(table, cfg, policies)
    out["recommendation"] = rec
    if rec.gated and "cost_per_1k_usd" in table:
        out["cheapest_passing"] = option_label(rec.model, policies) if rec.model else None
    if first in table and "cost_per_1k_usd" in table:
        front, col = pareto(table, cfg, policies)
        if front:
            out["pareto"] = front
            out["pareto_labels"] = [option_label(m, policies) for m in front]
            monthly = cfg.cost.monthly_requests
            out["pareto_cost"] = f"monthly cost at {monthly:,} requests" if col == "monthly_cost_usd" else "cost per 1k"
    out["dominated"] = dominated(table, cfg, policies)
    out["serving"] = serving_lines(table)
    return out


def breakeven_lines(be: pd.DataFrame) -> list[str]:
    """Each break-even volume as a sentence."""
    out = []
    for r in be.itertuples():
        v = r.breakeven_monthly_requests
        if isinstance(v, float) and math.isfinite(v) and v >= 1:
            out.append(f"{r.option} is cheaper than {r.api} above {v:,.0f} requests/month")
        elif isinstance(v, float) and math.isfinite(v):
            out.append(f"{r.option} is cheaper than {r.api} at any volume")
        elif isinstance(v, float) and math.isinf(v):
            out.append(f"{r.option} is never cheaper than {r.api}" + (f" ({r.note})" if getattr(r, "note", "") else ""))
        else:
            out.append(f"{r.option} against {r.api}: no break-even volume (a cost is unknown)")
    return out


def decision_lines(dec: dict, be: pd.DataFrame) -> list[str]:
    """The decisions of a run as sentences: cheapest passing option, Pareto front (single models and
    policies), the single models a policy dominates, break-even volumes, what each served option's
    monthly cost assumes."""
    out = []
    if "cheapest_passing" in dec:
        out.append(f"Cheapest option that passes every quality bar: {dec['cheapest_passing'] or 'none passes'}")
    if dec.get("pareto"):
        out.append(
            f"Quality/cost Pareto front ({dec['first_metric']} vs {dec.get('pareto_cost', 'cost per 1k')}): "
            f"{', '.join(dec.get('pareto_labels') or dec['pareto'])}"
        )
    out += dec.get("dominated") or []
    return out + breakeven_lines(be) + (dec.get("serving") or [])


def decision_box(dec: dict) -> str:
    """Under the recommendation: the single models a policy dominates, the Pareto front over every
    option, and what each served option's monthly cost assumes (its always-on floor)."""
    items = list(dec.get("dominated") or [])
    if dec.get("pareto"):
        items.append(
            f"Quality/cost Pareto front ({dec['first_metric']} vs {dec.get('pareto_cost', 'cost per 1k')}): "
            f"{', '.join(dec.get('pareto_labels') or dec['pareto'])}"
        )
    items += dec.get("serving") or []
    if not items:
        return ""
    return "<ul class='decisions' id='decision-box'>" + "".join(f"<li>{page.esc(t)}</li>" for t in items) + "</ul>"


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in r) + " |")
    return "\n".join(lines) + "\n"


def headline_markdown(rows: list[dict], titles: dict) -> str:
    """The headline table in markdown; the recommended row marked in a last column."""
    df = pd.DataFrame([{**{titles[k]: r[k] for k in COLUMNS}, "deploy": "✓" if r["recommended"] else ""} for r in rows])
    return _md_table(df)


# ------------------------------------------------------------------------------------------ reading a run
@dataclass
class RunTables:
    """What a report reads from one run folder."""

    rf: RunFolder
    cfg: PipelineConfig
    manifest: dict
    metrics: pd.DataFrame
    costs: pd.DataFrame
    generalization: pd.DataFrame = field(default_factory=pd.DataFrame)
    breakeven: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    policies: pd.DataFrame = field(default_factory=pd.DataFrame)
    policy_sweep: pd.DataFrame = field(default_factory=pd.DataFrame)

    @classmethod
    def read(cls, rf: RunFolder, cfg: PipelineConfig | None = None) -> RunTables:
        def opt(name):
            return rf.read_table(name).to_pandas() if rf.exists(name) else pd.DataFrame()

        manifest = rf.manifest() or {}
        return cls(
            rf,
            cfg or run_config(manifest),
            manifest,
            rf.read_table(assay.store.METRICS).to_pandas(),
            rf.read_table(assay.store.COSTS).to_pandas(),
            opt(assay.store.GENERALIZATION),
            opt(assay.store.BREAKEVEN),
            opt(assay.store.COMPARISONS),
            opt(assay.store.POLICIES),
            opt(assay.store.POLICY_SWEEP),
        )

    @property
    def metric(self) -> str:
        return self.cfg.metric_specs()[0].key

    def scores(self, metric: str) -> pd.DataFrame | None:
        """Per-example scores of one metric (None when the metric is not decomposable)."""
        if not self.rf.exists(assay.store.SCORES):
            return None
        # batch by batch, keeping one metric's rows: a large run's scores hold every metric of every example
        kept = [
            b.filter(pc.equal(b["metric"], metric))
            for b in self.rf.iter_batches(assay.store.SCORES, ["example_id", "model", "metric", "value"])
        ]
        kept = [b for b in kept if b.num_rows]
        if not kept:
            return None
        return pa.Table.from_batches(kept).to_pandas()

    def latencies(self) -> pd.DataFrame:
        """Per model the latency quantiles of its successful calls (p05, p25, p50, p75, p95, p99), as
        the cost stage computed them (costs.parquet); a run recorded before costs.parquet held
        all six has them computed from its responses."""
        qs = ["p05", "p25", "p50", "p75", "p95", "p99"]
        if len(self.costs) and all(f"latency_{q}_s" in self.costs for q in qs):
            out = self.costs[["model", *(f"latency_{q}_s" for q in qs), "requests", "errors"]].copy()
            out.columns = ["model", *qs, "requests", "errors"]
            out["n"] = out.pop("requests") - out.pop("errors")
            return out[out["p50"].notna()].reset_index(drop=True)
        parts = [p for p in self.rf.listdir(assay.store.RESPONSES) if p.endswith(".parquet")]
        # per model, the latencies of its successful calls as floats (not a table of every response)
        per: dict[str, list] = {}
        for p in parts:
            try:  # only the columns the chart needs (responses carry every output's text)
                t = self.rf.read_table(f"{assay.store.RESPONSES}/{p}", columns=["model", "latency_s", "error"])
            except (pa.ArrowInvalid, KeyError, ValueError):
                t = self.rf.read_table(f"{assay.store.RESPONSES}/{p}")
            if "latency_s" not in t.column_names or "model" not in t.column_names:
                continue
            ok = pc.is_valid(t["latency_s"])
            if "error" in t.column_names:
                ok = pc.and_(ok, pc.is_null(t["error"]))
            t = t.filter(ok)
            for model in pc.unique(t["model"]).to_pylist():  # in the order they first appear
                per.setdefault(str(model), []).append(t.filter(pc.equal(t["model"], model))["latency_s"].to_numpy().astype(float))
        order = list(dict.fromkeys(self.costs["model"])) if len(self.costs) else []
        rows = []
        for model, arrays in per.items():
            x = np.concatenate(arrays)
            x = x[~np.isnan(x)]
            if not len(x):
                continue
            q = np.percentile(x, [5, 25, 50, 75, 95, 99])
            rows.append({"model": model, **dict(zip(["p05", "p25", "p50", "p75", "p95", "p99"], map(float, q))), "n": len(x)})
        out = pd.DataFrame(rows, columns=["model", "p05", "p25", "p50", "p75", "p95", "p99", "n"])
        if len(out) and order:
            out["_o"] = out["model"].map({m: i for i, m in enumerate(order)}).fillna(len(order))
            out = out.sort_values("_o").drop(columns="_o")
        return out


def run_config(manifest: dict) -> PipelineConfig:
    """The pipeline config a run recorded (so a report is rebuilt as the run was configured)."""
    cfg = (manifest.get("config") or {}).get("pipeline")
    if cfg is None:
        raise DataError("the manifest records no config: not a run folder Assay wrote")
    return PipelineConfig.model_validate(cfg)


# ------------------------------------------------------------------------------------------ paired differences
def paired_differences(
    comparisons: pd.DataFrame, metric: str, models: list[str], hib: bool = True, reference: str | None = None
) -> pd.DataFrame:
    """Per pair of models, A − B with its 95% interval and p-value, as the score stage computed
    them once (comparisons.parquet: the paired interval, clustered where the dataset sets
    ``cluster``; the paired bootstrap p-value), never recomputed here. A pair the score stage
    wrote as B − A is turned round. Up to :data:`ALL_PAIRS_MAX_MODELS` models every pair is shown,
    else each model against ``reference``. Columns: a, b, label, diff, lo, hi, n, p_value, verdict.
    """
    cols = ["a", "b", "label", "diff", "lo", "hi", "n", "p_value", "verdict"]
    if len(models) < 2:
        return pd.DataFrame(columns=cols)
    if len(models) > ALL_PAIRS_MAX_MODELS and reference not in models:
        reference = models[0]
    pairs = (
        [(a, b) for i, a in enumerate(models) for b in models[i + 1 :]]
        if len(models) <= ALL_PAIRS_MAX_MODELS
        else [(reference, m) for m in models if m != reference]
    )
    found: dict[tuple, tuple] = {}
    if len(comparisons):
        c = comparisons[comparisons["metric"] == metric]
        get = lambda r, k: r.get(k, math.nan)  # noqa: E731  (a comparisons.parquet older than its interval columns)
        for r in c.to_dict("records"):
            d, lo, hi, n, p = get(r, "diff"), get(r, "ci_low"), get(r, "ci_high"), r.get("n"), r.get("p_value")
            found[(r["model_a"], r["model_b"])] = (d, lo, hi, n, p)
            neg = lambda x: x if fmt.missing(x) else -x  # noqa: E731
            found[(r["model_b"], r["model_a"])] = (neg(d), neg(hi), neg(lo), n, p)
    rows = []
    for a, b in pairs:
        d, lo, hi, n, p = found.get((a, b), (math.nan, math.nan, math.nan, None, None))
        n = None if fmt.missing(n) else int(n)
        rows.append(_pair_row(a, b, d, lo, hi, n, p, hib))
    return pd.DataFrame(rows, columns=cols)


def _pair_row(a, b, diff, lo, hi, n, p, hib: bool) -> dict:
    if fmt.missing(lo) or fmt.missing(hi):
        verdict = (
            "no clear difference"
            if fmt.missing(p) or float(p) >= 0.05
            else ("A better" if (float(diff) > 0) == hib else "B better")
        )
    elif lo > 0 or hi < 0:
        verdict = "A better" if (lo > 0) == hib else "B better"
    else:
        verdict = "no clear difference"
    return {
        "a": a,
        "b": b,
        "label": f"{a} − {b}",
        "diff": diff,
        "lo": lo,
        "hi": hi,
        "n": n,
        "p_value": None if fmt.missing(p) else float(p),
        "verdict": verdict,
    }


# ------------------------------------------------------------------------------------------ history
def run_history(rt: RunTables, table: pd.DataFrame) -> pd.DataFrame:
    """The headline metric and cost per model over the pipeline's earlier complete runs, and this
    run (``current``). Columns: as_of, run_id, model, value, lo, hi, cost, gates, current."""
    rf, metric = rt.rf, rt.metric
    cols = ["as_of", "run_id", "model", "value", "lo", "hi", "cost", "gates", "current"]
    earlier = [r for r in rf.store.runs(rf.pipeline) if (r.as_of, r.run_id) < (rf.as_of, rf.run_id)]
    frames = []
    if earlier:
        # lazy: keeps pyarrow out of start-up
        from assay.history import history

        h = history(rf.store.root, rf.pipeline, metric=metric)
        h = h[[(a, r) < (rf.as_of, rf.run_id) for a, r in zip(h["as_of"], h["run_id"])]]
        if len(h):
            frames.append(
                pd.DataFrame(
                    {
                        "as_of": h["as_of"],
                        "run_id": h["run_id"],
                        "model": h["model"],
                        "value": h["value"],
                        "lo": h["ci_low"],
                        "hi": h["ci_high"],
                        "cost": h["cost_per_1k_usd"],
                        "gates": h["gates"],
                        "current": False,
                    }
                )
            )
    g = gates_passed(rt.manifest)
    verdict = "" if g is None else ("passed" if g else "failed")
    if len(table) and metric in table:
        frames.append(
            pd.DataFrame(
                {
                    "as_of": rf.as_of,
                    "run_id": rf.run_id,
                    "model": table["model"],
                    "value": table[metric],
                    "lo": table.get(f"{metric}_ci_low"),
                    "hi": table.get(f"{metric}_ci_high"),
                    "cost": table.get("cost_per_1k_usd", pd.Series(math.nan, index=table.index)),
                    "gates": verdict,
                    "current": True,
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)
    for c in ("value", "lo", "hi", "cost"):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    return out[cols]


# ------------------------------------------------------------------------------------------ the page's parts
def chart_front(table: pd.DataFrame, metric: str) -> list[str]:
    """The single models on the Pareto front of the quality/cost chart's own axes (cost per 1,000
    requests); the decisions' front (:func:`assay.report.decision.pareto`) is taken at the monthly
    volume, floors and policies included."""

    if metric not in table or "cost_per_1k_usd" not in table:
        return []
    ok = table.dropna(subset=[metric, "cost_per_1k_usd"])
    if not len(ok):
        return []
    return ok.loc[
        costing.pareto_front(ok, metric, "cost_per_1k_usd", higher_is_better=_hib(table, metric)).values, "model"
    ].tolist()


def quality_points(
    table: pd.DataFrame, metric: str, dec: dict, rec: Recommendation, policies: pd.DataFrame | None = None
) -> pd.DataFrame:
    pareto = set(chart_front(table, metric))
    out = pd.DataFrame(
        {
            "model": table["model"].astype(str),
            "kind": table.get("kind", pd.Series("unpriced", index=table.index)).fillna("unpriced"),
            "cost": pd.to_numeric(table.get("cost_per_1k_usd"), errors="coerce"),
            "value": pd.to_numeric(table.get(metric), errors="coerce"),
            "lo": pd.to_numeric(table.get(f"{metric}_ci_low"), errors="coerce"),
            "hi": pd.to_numeric(table.get(f"{metric}_ci_high"), errors="coerce"),
            "pareto": [m in pareto for m in table["model"]],
            "recommended": [m == rec.model for m in table["model"]],
        }
    )
    if policies is not None and len(policies):  # beside the single models (the front is theirs)
        pol = pd.DataFrame(
            {
                "model": policies["policy"].astype(str),
                "kind": "policy",
                "cost": pd.to_numeric(policies["cost_per_1k_usd"], errors="coerce"),
                "value": pd.to_numeric(policies["quality"], errors="coerce"),
                "lo": pd.to_numeric(policies["quality_ci_low"], errors="coerce"),
                "hi": pd.to_numeric(policies["quality_ci_high"], errors="coerce"),
                "pareto": False,
                "recommended": [bool(rec.policy) and p == rec.model for p in policies["policy"].astype(str)],
            }
        )
        out = pd.concat([out, pol], ignore_index=True)
    return out


def sweep_points(sweep: pd.DataFrame) -> pd.DataFrame:
    """The policies' threshold sweeps as chart points: policy, cost (per 1,000 requests), value."""
    if sweep is None or not len(sweep):
        return pd.DataFrame(columns=["policy", "cost", "value"])
    return pd.DataFrame(
        {
            "policy": sweep["policy"].astype(str),
            "cost": pd.to_numeric(sweep["cost_per_1k_usd"], errors="coerce"),
            "value": pd.to_numeric(sweep["quality"], errors="coerce"),
        }
    )


def policy_markdown(rows: list[dict], titles: dict) -> str:
    """The policy table in markdown."""
    df = pd.DataFrame([{**{titles[k]: r[k] for k in POLICY_COLUMNS}, "deploy": "✓" if r["recommended"] else ""} for r in rows])
    return _md_table(df) if len(df) else ""


def slice_cells(metrics: pd.DataFrame, gen: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Heat-map cells of one metric: model, slice, value, n, worst, model_label."""
    m = metrics[(metrics["metric"] == metric) & (metrics["slice"] != "all")].copy()
    if m.empty:
        return pd.DataFrame(columns=["model", "slice", "value", "n", "worst", "model_label"])
    worst, gap = {}, {}
    if len(gen):
        g = gen[gen["metric"] == metric]
        worst = dict(zip(g["model"], g["worst_slice"]))
        gap = {mm: v for mm, v in zip(g["model"], g["held_out_gap"]) if not fmt.missing(v)}
    special = {"in_distribution": "in distribution", "held_out": "held out"}
    m["worst"] = [worst.get(mm) == s for mm, s in zip(m["model"], m["slice"])]
    m["rank"] = m["slice"].map(lambda s: 1 if s in special else 0)
    m["slice"] = m["slice"].map(lambda s: special.get(s, s))
    m["model_label"] = m["model"].map(lambda mm: f"{mm} (held-out gap {fmt.signed(gap[mm])})" if mm in gap else str(mm))
    order = list(dict.fromkeys(m["model"]))
    m["_m"] = m["model"].map({x: i for i, x in enumerate(order)})
    m = m.sort_values(["rank", "_m"], kind="stable")
    return m[["model", "slice", "value", "n", "worst", "model_label"]].reset_index(drop=True)


def cost_check_lines(costs: pd.DataFrame, manifest: dict) -> list[str]:
    """The estimate made before calling beside what the calls cost (``cost_estimate`` in the
    manifest), and the provider-reported costs that differ from Assay's by more than 2 %
    (:mod:`assay.costing.reconcile`)."""
    out = []
    est = manifest.get("cost_estimate")
    if isinstance(est, dict) and est.get("usd") is not None:
        line = f"Estimated before calling: {_usd(est['usd'])} for {est.get('rows', 0):,} examples"
        if est.get("actual_usd") is not None:
            line += f"; actual {_usd(est['actual_usd'])} (the models' fresh calls, and the judges' cost lines)"
        if est.get("max_usd") is not None:
            line += f"; cost.max_usd {_usd(est['max_usd'])}"
        shrunk = est.get("shrunk_from")
        if isinstance(shrunk, dict):
            line += f"; the sample was shrunk from {shrunk.get('rows', 0):,} examples ({_usd(shrunk.get('usd'))}) to fit"
        out.append(line + ".")
    return out + [f"Provider-reported cost differs: {line}." for line in lines(costs)]


def gates_line(manifest: dict) -> str | None:
    """The run's gate verdict in one line (None when its gates were not checked)."""
    g = manifest.get("gates")
    if not isinstance(g, dict) or "passed" not in g:
        return None
    n = len(g.get("checks") or [])
    if g["passed"]:
        return f"passed ({n} check{'s' if n != 1 else ''})"
    fails = g.get("failures") or []
    more = f"; and {len(fails) - 3} more" if len(fails) > 3 else ""
    return f"FAILED, {len(fails)} of {n} checks: " + "; ".join(fails[:3]) + more


def _render(key: str, spec: dict | None, timings: dict) -> str | None:
    if spec is None:
        return None
    t0 = time.perf_counter()
    try:
        return charts.render(spec)
    except charts.ChartError as e:
        log.warning("report: chart %s not drawn: %s", key, e)
        return None
    finally:
        timings[key] = round(time.perf_counter() - t0, 4)


def prices_text(costs: pd.DataFrame) -> list[str]:
    """Per model, the price the run used and the date(s) it was in force."""
    out = []
    for r in costs.itertuples():
        try:
            pj = json.loads(r.price_json) if isinstance(r.price_json, str) and r.price_json else {}
        except ValueError:
            pj = {}
        kind = r.kind
        if kind in ("api", "judge"):
            periods = pj.get("periods") or [pj]
            first = pj.get("first_date") or pj.get("as_of")
            last = pj.get("last_date") or pj.get("as_of")
            rates = "; ".join(
                f"{_usd(p.get('input_per_mtok'))} in / {_usd(p.get('output_per_mtok'))} out per M tokens"
                for p in periods[:3]
                if p.get("input_per_mtok") is not None
            )
            when = f"prices in force {first}" + (f" to {last}" if last and last != first else "")
            out.append(
                f"{r.model}: {pj.get('source') or r.price_source}, {rates or 'explicit price'}, {when}"
                + (f", priced by {pj['priced_by']}" if pj.get("priced_by") else "")
            )
        elif kind == "self-hosted":
            out.append(
                f"{r.model}: self-hosted, {_usd(pj.get('usd_per_hour'))}/hour per replica × {pj.get('replicas', 1)}, "
                f"throughput {fmt.num(pj.get('throughput_rps'), 1)} req/s ({pj.get('throughput_source') or 'unknown'})"
            )
        elif kind == "conventional":
            out.append(
                f"{r.model}: conventional, {_usd(pj.get('usd_per_hour'))}/hour of compute, training spread over "
                f"{pj.get('amortise_months', '–')} months"
            )
        else:
            out.append(f"{r.model}: {kind}, no price")
    return out


def footer_items(rt: RunTables) -> list[tuple[str, str]]:
    m = rt.manifest
    esc = page.esc
    ds = m.get("dataset") or {}
    versions = " · ".join(f"{k} {v}" for k, v in sorted((m.get("versions") or {}).items()))
    try:
        import vl_convert as vlc

        versions += f" · charts: vl-convert {vlc.__version__ if hasattr(vlc, '__version__') else ''}".rstrip()
    except ImportError:  # pragma: no cover
        pass
    items = [
        (
            "run",
            f"{esc(m.get('pipeline', rt.rf.pipeline))} · {esc(m.get('as_of', rt.rf.as_of))} · "
            f"<code>{esc(m.get('run_id', rt.rf.run_id))}</code>",
        ),
        ("config hash", f"<code>{esc(m.get('config_hash', '–'))}</code>"),
        (
            "dataset",
            f"<code>{esc(ds.get('fingerprint', '–'))}</code> · {fmt.count(ds.get('rows'))} rows · {esc(ds.get('source', ''))}",
        ),
        ("versions", esc(versions or "–")),
        ("prices", "<br>".join(esc(t) for t in prices_text(rt.costs)) or "–"),
        (
            "written",
            esc(f"started {m.get('started_at', '–')}, report of {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}"),
        ),
    ]
    return items


def _long_tables(rt: RunTables, table: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    out = ["<h2>The numbers behind the charts</h2>"]
    m = rt.metrics
    rows = [
        {
            "model": r.model,
            "metric": r.metric,
            "slice": r.slice,
            "value": fmt.with_interval(r.value, r.ci_low, r.ci_high),
            "n": fmt.count(r.n),
            "errors": fmt.count(r.errors),
        }
        for r in m.itertuples()
    ]
    out.append(
        page.collapsible(
            "All metrics and slices",
            page.table(
                [
                    ("model", "model"),
                    ("metric", "metric"),
                    ("slice", "slice"),
                    ("value", "value (95% CI)"),
                    ("n", "n"),
                    ("errors", "errors"),
                ],
                rows,
                text_cols=("model", "metric", "slice"),
            ),
            len(rows),
            open_=False,
        )
    )
    if len(rt.generalization):
        g = rt.generalization
        has_ho = g["held_out_gap"].notna().any() if "held_out_gap" in g else False
        cols = [
            ("model", "model"),
            ("metric", "metric"),
            ("overall", "overall"),
            ("worst", "worst slice"),
            ("best", "best slice"),
            ("gap", "gap"),
        ] + ([("ho", "held-out gap")] if has_ho else [])
        grows = [
            {
                "model": r.model,
                "metric": r.metric,
                "overall": _fmt(r.overall),
                "worst": f"{r.worst_slice} ({_fmt(r.worst_value)})" if not fmt.missing(r.worst_slice) else "–",
                "best": f"{r.best_slice} ({_fmt(r.best_value)})" if not fmt.missing(r.best_slice) else "–",
                "gap": _fmt(r.gap),
                "ho": _fmt(r.held_out_gap),
            }
            for r in g.itertuples()
        ]
        out.append(
            page.collapsible(
                "Generalization", page.table(cols, grows, text_cols=("model", "metric", "worst", "best")), len(grows)
            )
        )
    if len(pairs):
        prow = [
            {
                "pair": r.label,
                "diff": fmt.signed(r.diff),
                "ci": fmt.interval(r.lo, r.hi) or "–",
                "n": fmt.count(r.n),
                "p": fmt.pvalue(r.p_value),
                "verdict": r.verdict,
            }
            for r in pairs.itertuples()
        ]
        out.append(
            page.collapsible(
                f"Paired differences ({rt.metric})",
                page.table(
                    [
                        ("pair", "A − B"),
                        ("diff", "difference"),
                        ("ci", "95% interval"),
                        ("n", "shared examples"),
                        ("p", "p-value"),
                        ("verdict", ""),
                    ],
                    prow,
                    text_cols=("pair", "verdict"),
                ),
                len(prow),
            )
        )
    c = rt.costs
    crow = [
        {
            "model": r.model,
            "kind": r.kind,
            "requests": fmt.count(r.requests),
            "cost": _usd(r.cost_usd),
            "per1k": _usd(r.cost_per_1k_usd),
            "monthly": _usd(r.monthly_cost_usd),
            "fixed": _usd(r.fixed_monthly_usd),
            "p50": fmt.seconds(r.latency_p50_s),
            "p95": fmt.seconds(r.latency_p95_s),
            "p99": fmt.seconds(r.latency_p99_s),
            "ttft50": fmt.seconds(getattr(r, "ttft_p50_s", None)),
            "ttft95": fmt.seconds(getattr(r, "ttft_p95_s", None)),
            "rps": fmt.num(r.throughput_rps, 1),
        }
        for r in c.itertuples()
    ]
    # time to first token only where some model streamed its calls (costs.parquet of older runs has no such column)
    ttft_cols = (
        [("ttft50", "TTFT p50"), ("ttft95", "TTFT p95")]
        if "ttft_p50_s" in c.columns and pd.to_numeric(c["ttft_p50_s"], errors="coerce").notna().any()
        else []
    )
    out.append(
        page.collapsible(
            "Costs",
            page.table(
                [
                    ("model", "model"),
                    ("kind", "kind"),
                    ("requests", "requests"),
                    ("cost", "this run"),
                    ("per1k", "$/1k req"),
                    ("monthly", "$/month"),
                    ("fixed", "fixed $/month"),
                    ("p50", "p50"),
                    ("p95", "p95"),
                    ("p99", "p99"),
                    *ttft_cols,
                    ("rps", "req/s"),
                ],
                crow,
                text_cols=("model", "kind"),
            ),
            len(crow),
        )
    )
    if len(rt.breakeven):
        brow = [
            {
                "option": r.option,
                "api": r.api,
                "volume": fmt.count(r.breakeven_monthly_requests) if not fmt.missing(r.breakeven_monthly_requests) else "–",
                "note": r.note or "",
            }
            for r in rt.breakeven.itertuples()
        ]
        out.append(
            page.collapsible(
                "Break-even volumes",
                page.table(
                    [("option", "option"), ("api", "API"), ("volume", "requests/month"), ("note", "how")],
                    brow,
                    text_cols=("option", "api", "note"),
                ),
                len(brow),
            )
        )
    return out


# ------------------------------------------------------------------------------------------ the report
def build_report(rf: RunFolder, cfg: PipelineConfig, pipeline: str, history: bool = True) -> dict:
    """Write summary.md and report.html of a run folder from its artifacts; return what the
    Prefect UI shows (``markdown``, ``headline`` rows, ``recommendation``) and the timings."""
    engine.start()  # no-op when a run or a command started it: it starts while the tables are read
    t_start = time.perf_counter()
    rt = RunTables.read(rf, cfg)
    manifest, metrics, costs = rt.manifest, rt.metrics, rt.costs
    gen, be, comp = rt.generalization, rt.breakeven, rt.comparisons
    table = headline(metrics, costs, cfg)
    dec = decisions(table, cfg, rt.policies)
    rec: Recommendation = dec["recommendation"]
    metric = dec["first_metric"]
    prows = policy_rows(rt.policies, rec) if len(rt.policies) else []
    ptitles = policy_titles(cfg, str(rt.policies["metric"].iloc[0]) if len(rt.policies) else None)
    titles = headline_titles(cfg)
    rows = headline_rows(table, cfg, rec)
    n = int(table["n"].max()) if "n" in table and len(table) else 0
    monthly = cfg.cost.monthly_requests
    lines = decision_lines({k: v for k, v in dec.items() if k != "recommendation"}, be)

    # markdown -----------------------------------------------------------------------
    md = [
        f"# {pipeline} — {manifest.get('as_of', '')}\n",
        f"Run `{manifest.get('run_id', '')}`, {n} examples.\n",
        f"**Recommendation:** {rec.sentence}\n",
    ]
    verdict = gates_line(manifest)
    if verdict:
        md.append(f"**Gates:** {verdict}\n")
    md += ["## Models\n", headline_markdown(rows, titles)]
    if monthly:
        md.append(f"Monthly figures at {monthly:,} requests per month.\n")
    md += _error_bar_lines(metrics)
    checks = cost_check_lines(costs, manifest)
    if checks:
        md += ["## Cost checks\n"] + [f"- {line}" for line in checks] + [""]
    if prows:
        md += [
            "## Cascades and routes\n",
            "Scored and priced from this run's answers; no model was called again.\n",
            policy_markdown(prows, ptitles),
        ]
    md.append("## Decisions\n")
    for line in lines:
        md.append(
            f"- {line}"
            if not line.startswith("Cheapest option")
            else f"- Cheapest option that passes every quality bar: **{dec['cheapest_passing'] or 'none passes'}**"
        )
    if len(gen):
        md.append("\n## Generalization\n")
        g = gen[["model", "metric", "overall", "worst_slice", "worst_value", "gap"]].copy()
        if "held_out_gap" in gen and gen["held_out_gap"].notna().any():
            g["held_out_gap"] = gen["held_out_gap"]
        for c in ("overall", "worst_value", "gap", "held_out_gap"):
            if c in g:
                g[c] = g[c].map(_fmt)
        g["worst_slice"] = g["worst_slice"].map(lambda v: "–" if fmt.missing(v) else v)
        md.append(_md_table(g))
    if len(comp):
        md.append("\n## Paired comparisons\n")
        c = comp.copy()
        c["diff"] = c["diff"].map(lambda v: fmt.signed(v))
        c["p_value"] = c["p_value"].map(fmt.pvalue)
        if "se" in c:  # paired CLT statistics (assay.scoring): SE, 95% interval, correlation, MDE
            c["95% CI"] = [f"[{fmt.num(lo)}, {fmt.num(hi)}]" for lo, hi in zip(comp["ci_low"], comp["ci_high"])]
            for col in ("se", "correlation", "mde"):
                c[col] = comp[col].map(fmt.num)
            c = c[["metric", "model_a", "model_b", "diff", "se", "95% CI", "correlation", "p_value", "mde"]]
        md.append(_md_table(c))
    markdown = "\n".join(md)
    rf.write_text(assay.store.SUMMARY, markdown)

    # html -------------------------------------------------------------------------------
    timings: dict[str, float] = {}
    hib = _hib(table, metric)
    models = [str(m) for m in table["model"]] if len(table) else []
    pairs = paired_differences(comp, metric, models, hib, reference=rec.model or (models[0] if models else None))
    curves, be_points, domain = charts.volume_curves(costs, be, monthly)
    if len(be_points) and rec.model:  # the recommended option's break-evens first
        be_points = be_points.assign(_r=~((be_points["option"] == rec.model) | (be_points["api"] == rec.model)))
        be_points = be_points.sort_values("_r", kind="stable").drop(columns="_r")
    cells = slice_cells(metrics, gen, metric)
    lat = rt.latencies()
    hist = run_history(rt, table) if history else pd.DataFrame()
    t_data = time.perf_counter()
    svgs = {
        "quality-cost": _render(
            "quality-cost",
            charts.quality_cost_spec(
                quality_points(table, metric, dec, rec, rt.policies), metric, hib, sweep_points(rt.policy_sweep)
            ),
            timings,
        ),
        "volume": _render("volume", charts.volume_spec(curves, be_points, monthly, domain), timings),
        "slices": _render("slices", charts.slice_heatmap_spec(cells, metric, hib), timings),
        "paired": _render("paired", charts.forest_spec(pairs, metric), timings),
        "latency": _render("latency", charts.latency_spec(lat), timings),
        "history": _render("history", charts.history_spec(hist, metric), timings) if len(hist) else None,
    }
    body = [
        f"<h1>{page.esc(pipeline)} — {page.esc(manifest.get('as_of', ''))}</h1>",
        f"<p class='meta'>{page.esc(cfg.description or '')}{' · ' if cfg.description else ''}run "
        f"<code>{page.esc(manifest.get('run_id', ''))}</code> · {n:,} examples · {len(models)} models"
        + (f" · monthly figures at {monthly:,} requests" if monthly else "")
        + "</p>",
        f"<p class='recommendation{'' if rec.model else ' none'}' id='recommendation'>{page.esc(rec.sentence)}</p>",
        decision_box(dec),
        (f"<p class='meta' id='gates'><strong>Gates:</strong> {page.esc(verdict)}</p>" if verdict else ""),
        "<section id='headline'><h2>Models</h2>",
        page.table(
            [(k, titles[k]) for k in COLUMNS],
            [
                {**r, "model": page.esc(r["model"]) + (" <span class='mark'>✓ recommended</span>" if r["recommended"] else "")}
                for r in rows
            ],
            row_class=lambda r: "recommended" if r["recommended"] else "",
            raw=("model",),
        ),
        "</section>",
    ]
    if checks:
        body += [
            "<section id='cost-checks'><h2>Cost checks</h2><ul class='decisions'>",
            *(f"<li>{page.esc(line)}</li>" for line in checks),
            "</ul></section>",
        ]
    if prows:
        body += [
            "<section id='policies'><h2>Cascades and routes</h2>",
            "<p class='meta'>Scored and priced from this run's answers; no model was called again. Saving: against the "
            "cheapest single model at least as good.</p>",
            page.table(
                [(k, ptitles[k]) for k in POLICY_COLUMNS],
                [
                    {
                        **r,
                        "policy": page.esc(r["policy"])
                        + (" <span class='mark'>✓ recommended</span>" if r["recommended"] else ""),
                    }
                    for r in prows
                ],
                row_class=lambda r: "recommended" if r["recommended"] else "",
                raw=("policy",),
                text_cols=("policy", "models", "rule", "saving"),
            ),
            "</section>",
        ]
    pareto = chart_front(table, metric)
    body.append(
        page.figure(
            "quality-cost",
            f"{metric} against cost per 1,000 requests",
            svgs["quality-cost"],
            f"Each point is a model with its 95% interval; diamonds joined by the dashed line are the "
            f"Pareto front ({page.esc(', '.join(pareto)) or 'none'}): no other model is both better and cheaper. "
            + ("Squares are the cascades and routes, each thin line its threshold sweep. " if prows else "")
            + "✓ marks the recommendation.",
            "No model has both a cost and a value.",
        )
    )
    be_text = "".join(f"<li>{page.esc(t)}</li>" for t in breakeven_lines(be))
    body.append(
        page.figure(
            "volume",
            "Monthly cost against monthly volume",
            svgs["volume"],
            "API options cost per token, so their line is straight; a self-hosted or conventional option pays "
            "its always-on floor (replicas or instances × hourly price × 730) until the volume needs more capacity "
            "than the floor provides, a conventional one its amortised training on top. Dots mark the break-even volumes"
            + (f", the dotted rule the configured {monthly:,} requests a month" if monthly else "")
            + "."
            + (f"<ul class='decisions'>{be_text}</ul>" if be_text else ""),
            "No option has a known cost per request.",
        )
    )
    worst_text = []
    if len(gen):
        for r in gen[gen["metric"] == metric].itertuples():
            if not fmt.missing(r.worst_slice):
                worst_text.append(
                    f"{r.model}: worst {r.worst_slice} ({_fmt(r.worst_value)}, gap {_fmt(r.gap)})"
                    + (f", held-out gap {fmt.signed(r.held_out_gap)}" if not fmt.missing(r.held_out_gap) else "")
                )
    body.append(
        page.figure(
            "slices",
            f"{metric} per slice",
            svgs["slices"],
            "Each cell is one model on one slice; the outlined cell is that model's worst slice"
            + (
                "; a held-out gap is in-distribution minus held-out"
                if not cells.empty and cells["model_label"].str.contains("held-out").any()
                else ""
            )
            + ". "
            + page.esc("; ".join(worst_text)),
            "The pipeline declares no slices.",
        )
    )
    body.append(
        page.figure(
            "paired",
            f"Paired differences in {metric}",
            svgs["paired"],
            "A − B on the examples both models answered, with its 95% paired interval from the score stage "
            "(comparisons.parquet"
            + (f", clustered by {page.esc(cfg.dataset.cluster)}" if cfg.dataset.cluster else "")
            + "); an interval that crosses the dashed zero line is no clear difference."
            + ("" if len(models) <= ALL_PAIRS_MAX_MODELS else f" Every model against {page.esc(rec.model or models[0])}."),
            "One model only: nothing to compare." if len(models) < 2 else "No paired comparison in comparisons.parquet.",
        )
    )
    body.append(
        page.figure(
            "latency",
            "Latency per request",
            svgs["latency"],
            "Box: 25th to 75th percentile; line: median; whiskers: 5th to 95th percentile; red dot: 99th "
            "percentile, over the successful calls.",
            "No latencies recorded.",
        )
    )
    earlier = int((~hist["current"].astype(bool)).sum()) if len(hist) else 0
    body.append(
        page.figure(
            "history",
            f"History of {metric} and cost",
            svgs["history"],
            (
                f"This pipeline's earlier complete runs ({len(set(hist.loc[~hist['current'].astype(bool), 'run_id']))}) "
                "and this one (circled)"
                if earlier
                else "No earlier complete run of this pipeline yet: this run only (circled)"
            )
            + "; a red cross marks a run whose gates failed.",
            "History not drawn.",
        )
    )
    body += _long_tables(rt, table, pairs)
    body.append(page.footer(footer_items(rt)))
    report = page.document(f"{pipeline} {manifest.get('as_of', '')} — Assay", body)
    rf.write_text(assay.store.REPORT, report)
    t_end = time.perf_counter()
    timings.update(data=round(t_data - t_start, 4), total=round(t_end - t_start, 4))

    summary_rows = []
    for r in table.to_dict("records"):
        summary_rows.append(
            {
                k: (None if isinstance(v, float) and math.isnan(v) else (round(v, 6) if isinstance(v, float) else v))
                for k, v in r.items()
            }
        )
    headline_table = [{titles[k]: r[k] for k in COLUMNS} | {"recommended": "✓" if r["recommended"] else ""} for r in rows]
    return {
        "rows": summary_rows,
        "markdown": markdown,
        "report": rf.path(assay.store.REPORT),
        "decisions": dec,
        "recommendation": rec.sentence,
        "headline": headline_table,
        "timings": timings,
    }


def _error_bar_lines(metrics: pd.DataFrame) -> list[str]:
    """Overall error bars beside the bootstrap interval: CLT SE, Wilson and exact (Clopper–Pearson)
    intervals, clusters, MDE, notes; with repeated sampling, samples per example and the variance split."""
    if "se" not in metrics:
        return []
    o = metrics[metrics["slice"] == "all"]
    sampled = "samples" in o and bool((o["samples"].fillna(1) > 1).any())
    head = "| model | metric | n | se | Wilson 95% | exact 95% | clusters | MDE (80% power) |"
    rule = "|---|---|---|---|---|---|---|---|"
    if sampled:
        head += " samples | var between | var within |"
        rule += "---|---|---|"
    out = ["## Error bars\n", head + " note |", rule + "---|"]

    def interval(lo, hi) -> str:
        return "–" if lo is None or pd.isna(lo) else f"[{fmt.num(lo)}, {fmt.num(hi)}]"

    for r in o.itertuples(index=False):
        wil = interval(r.wilson_low, r.wilson_high)
        exact = interval(getattr(r, "exact_low", None), getattr(r, "exact_high", None))
        ncl = "–" if pd.isna(r.n_clusters) else str(int(r.n_clusters))
        line = f"| {r.model} | {r.metric} | {int(r.n)} | {fmt.num(r.se, 4)} | {wil} | {exact} | {ncl} | {fmt.num(r.mde)} |"
        if sampled:
            k = "1" if pd.isna(r.samples) else f"{r.samples:g}"
            line += f" {k} | {fmt.num(r.var_between, 4)} | {fmt.num(r.var_within, 4)} |"
        out.append(line + f" {r.note or ''} |")
    return out + [""]
