"""The report stage: summary.md (the headline table) and a self-contained report.html.

The HTML uses no scripts, fonts or stylesheets from elsewhere, so it opens offline.
"""

import html
import math

import pandas as pd

from assay import store as S
from assay.config import PipelineConfig
from assay.report.format import num as _fmt
from assay.report.format import usd as _usd
from assay.store import RunFolder


def headline(metrics: pd.DataFrame, costs: pd.DataFrame, cfg: PipelineConfig) -> pd.DataFrame:
    """One row per model: each metric with its interval, errors, and the cost figures."""
    overall = metrics[metrics["slice"] == "all"]
    rows = []
    for model in list(dict.fromkeys(overall["model"])):
        r = {"model": model}
        for m in overall[overall["model"] == model].itertuples():
            r[m.metric] = float(m.value)
            r[f"{m.metric}_ci"] = f"[{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]"
            r["n"] = int(m.n)
            r["errors"] = int(m.errors)
        c = costs[costs["model"] == model]
        if len(c):
            c = c.iloc[0]
            for col in ("kind", "cost_usd", "cost_per_1k_usd", "monthly_cost_usd", "latency_p50_s", "latency_p95_s", "throughput_rps"):
                if col in c.index:
                    r[col] = c[col]
        rows.append(r)
    return pd.DataFrame(rows)


def decisions(table: pd.DataFrame, cfg: PipelineConfig) -> dict:
    from assay import costing

    keys = [s.key for s in cfg.metric_specs()]
    first = keys[0]
    out = {"first_metric": first}
    bars = {k: g.model_dump(exclude_none=True) for k, g in cfg.gates.items()}
    if bars and "cost_per_1k_usd" in table:
        out["cheapest_passing"] = costing.cheapest_passing(table, bars)
    if first in table and "cost_per_1k_usd" in table:
        ok = table.dropna(subset=[first, "cost_per_1k_usd"])
        if len(ok):
            front = costing.pareto_front(ok, first, "cost_per_1k_usd")
            out["pareto"] = ok.loc[front.values, "model"].tolist()
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
        else:
            out.append(f"{r.option} is never cheaper than {r.api}" + (f" ({r.note})" if getattr(r, "note", "") else ""))
    return out


def decision_lines(dec: dict, be: pd.DataFrame) -> list[str]:
    """The decisions of a run as sentences: cheapest passing model, Pareto front, break-even volumes."""
    out = []
    if "cheapest_passing" in dec:
        out.append(f"Cheapest model that passes every quality bar: {dec['cheapest_passing'] or 'none passes'}")
    if dec.get("pareto"):
        out.append(f"Quality/cost Pareto front ({dec['first_metric']} vs cost per 1k): {', '.join(dec['pareto'])}")
    return out + breakeven_lines(be)


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_\n"
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in r) + " |")
    return "\n".join(lines) + "\n"


def build_report(rf: RunFolder, cfg: PipelineConfig, pipeline: str) -> dict:
    metrics = rf.read_table(S.METRICS).to_pandas()
    costs = rf.read_table(S.COSTS).to_pandas()
    gen = rf.read_table(S.GENERALIZATION).to_pandas() if rf.exists(S.GENERALIZATION) else pd.DataFrame()
    be = rf.read_table(S.BREAKEVEN).to_pandas() if rf.exists(S.BREAKEVEN) else pd.DataFrame()
    comp = rf.read_table(S.COMPARISONS).to_pandas() if rf.exists(S.COMPARISONS) else pd.DataFrame()
    manifest = rf.manifest() or {}
    table = headline(metrics, costs, cfg)
    dec = decisions(table, cfg)
    keys = [s.key for s in cfg.metric_specs()]

    # markdown -----------------------------------------------------------------------
    disp = pd.DataFrame({"model": table["model"]})
    for k in keys:
        if k in table:
            disp[k] = [f"{_fmt(v)} {ci}" for v, ci in zip(table[k], table[f"{k}_ci"])]
    for col, f in (("errors", str), ("cost_per_1k_usd", _usd), ("monthly_cost_usd", _usd), ("latency_p50_s", _fmt)):
        if col in table:
            disp[col] = [f(v) for v in table[col]]
    md = [f"# {pipeline} — {manifest.get('as_of', '')}\n", f"Run `{manifest.get('run_id', '')}`, "
          f"{int(table['n'].max()) if 'n' in table and len(table) else 0} examples.\n",
          "## Models\n", _md_table(disp)]
    if cfg.cost.monthly_requests:
        md.append(f"Monthly figures at {cfg.cost.monthly_requests:,} requests per month.\n")
    md += _error_bar_lines(metrics)
    md.append("## Decisions\n")
    if "cheapest_passing" in dec:
        md.append(f"- Cheapest model that passes every quality bar: **{dec['cheapest_passing'] or 'none passes'}**")
    if dec.get("pareto"):
        md.append(f"- Quality/cost Pareto front ({dec['first_metric']} vs cost per 1k): {', '.join(dec['pareto'])}")
    md += [f"- {line}" for line in breakeven_lines(be)]
    if len(gen):
        md.append("\n## Generalization\n")
        g = gen[["model", "metric", "overall", "worst_slice", "worst_value", "gap", "held_out_gap"]].copy()
        for c in ("overall", "worst_value", "gap", "held_out_gap"):
            g[c] = g[c].map(_fmt)
        md.append(_md_table(g))
    if len(comp):
        md.append("\n## Paired comparisons\n")
        c = comp.copy()
        c["diff"] = c["diff"].map(_fmt)
        c["p_value"] = c["p_value"].map(lambda v: _fmt(v, 4))
        if "se" in c:  # paired CLT statistics (assay.scoring): SE, 95% interval, correlation, MDE
            c["95% CI"] = [f"[{_fmt(lo)}, {_fmt(hi)}]" for lo, hi in zip(comp["ci_low"], comp["ci_high"])]
            for col in ("se", "correlation", "mde"):
                c[col] = comp[col].map(_fmt)
            c = c[["metric", "model_a", "model_b", "diff", "se", "95% CI", "correlation", "p_value", "mde"]]
        md.append(_md_table(c))
    markdown = "\n".join(md)
    rf.write_text(S.SUMMARY, markdown)

    # html -------------------------------------------------------------------------------
    style = ("body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}"
             "table{border-collapse:collapse;margin:1rem 0;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}h1{font-size:1.5rem}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(pipeline)} — Assay</title>"
             f"<style>{style}</style></head><body>",
             f"<h1>{html.escape(pipeline)} — {html.escape(str(manifest.get('as_of', '')))}</h1>",
             f"<p>Run <code>{html.escape(str(manifest.get('run_id', '')))}</code></p>",
             "<h2>Models</h2>", disp.to_html(index=False, escape=True),
             _scatter(table, dec.get("first_metric")),
             "<h2>Decisions</h2><ul>"]
    for line in md[md.index("## Decisions\n") + 1:]:
        if line.startswith("- "):
            parts.append(f"<li>{html.escape(line[2:].strip()).replace('**', '')}</li>")
    parts.append("</ul>")
    parts.append("<h2>Costs</h2>" + costs.drop(columns=[c for c in ("price_json",) if c in costs]).to_html(index=False, float_format=lambda v: f"{v:.6g}"))
    if len(gen):
        parts.append("<h2>Generalization</h2>" + gen.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    sl = metrics[metrics["slice"] != "all"]
    if len(sl):
        parts.append("<h2>Slices</h2>" + sl.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    if len(comp):
        parts.append("<h2>Paired comparisons</h2>" + comp.to_html(index=False, float_format=lambda v: f"{v:.4f}"))
    if len(be):
        parts.append("<h2>Break-even</h2>" + be.to_html(index=False, float_format=lambda v: f"{v:,.4g}"))
    parts.append("</body></html>")
    rf.write_text(S.REPORT, "\n".join(parts))

    summary_rows = []
    for r in table.to_dict("records"):
        summary_rows.append({k: (None if isinstance(v, float) and math.isnan(v) else (round(v, 6) if isinstance(v, float) else v))
                             for k, v in r.items()})
    return {"rows": summary_rows, "markdown": markdown, "report": rf.path(S.REPORT), "decisions": dec}


def _error_bar_lines(metrics: pd.DataFrame) -> list[str]:
    """Overall error bars beside the bootstrap interval: CLT SE, Wilson, clusters, MDE, notes."""
    if "se" not in metrics:
        return []
    o = metrics[metrics["slice"] == "all"]
    out = ["## Error bars\n", "| model | metric | n | se | Wilson 95% | clusters | MDE (80% power) | note |",
           "|---|---|---|---|---|---|---|---|"]
    for r in o.itertuples(index=False):
        wil = "–" if pd.isna(r.wilson_low) else f"[{_fmt(r.wilson_low)}, {_fmt(r.wilson_high)}]"
        ncl = "–" if pd.isna(r.n_clusters) else str(int(r.n_clusters))
        out.append(f"| {r.model} | {r.metric} | {int(r.n)} | {_fmt(r.se, 4)} | {wil} | {ncl} | {_fmt(r.mde)} | {r.note or ''} |")
    return out + [""]


def _scatter(table: pd.DataFrame, metric: str | None) -> str:
    """An inline SVG of quality against cost per 1k requests."""
    if not metric or metric not in table or "cost_per_1k_usd" not in table:
        return ""
    pts = table.dropna(subset=[metric, "cost_per_1k_usd"])
    if pts.empty:
        return ""
    w, h, pad = 520, 300, 50
    xs, ys = pts["cost_per_1k_usd"].astype(float), pts[metric].astype(float)
    x0, x1 = 0.0, max(xs.max() * 1.1, 1e-9)
    y0, y1 = min(ys.min() - 0.05, 0.9 * ys.min()), max(ys.max() + 0.05, ys.max())
    sx = lambda x: pad + (x - x0) / (x1 - x0) * (w - 2 * pad)  # noqa: E731
    sy = lambda y: h - pad - (y - y0) / ((y1 - y0) or 1) * (h - 2 * pad)  # noqa: E731
    out = [f"<h2>{html.escape(metric)} against cost per 1,000 requests</h2>",
           f"<svg width='{w}' height='{h}' xmlns='http://www.w3.org/2000/svg' style='border:1px solid #ddd'>",
           f"<line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#888'/>",
           f"<line x1='{pad}' y1='{pad}' x2='{pad}' y2='{h - pad}' stroke='#888'/>",
           f"<text x='{w / 2}' y='{h - 12}' font-size='12' text-anchor='middle'>USD per 1k requests (0 – {x1:.3g})</text>",
           f"<text x='14' y='{h / 2}' font-size='12' transform='rotate(-90 14 {h / 2})' text-anchor='middle'>{html.escape(metric)}</text>"]
    for model, x, y in zip(pts["model"], xs, ys):
        out.append(f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='5' fill='#3b6ea5'/>"
                   f"<text x='{sx(x) + 8:.1f}' y='{sy(y) + 4:.1f}' font-size='12'>{html.escape(str(model))} ({y:.3f})</text>")
    out.append("</svg>")
    return "\n".join(out)
