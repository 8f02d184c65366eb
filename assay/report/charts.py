"""The report's charts: Vega-Lite specifications rendered to static SVG in-process by vl-convert.

Each ``*_spec`` function turns the run's tables into a Vega-Lite specification (a plain dict:
the grammar is Vega-Lite's, the layout, scales, axes and legends are Vega's); :func:`render`
turns one into an SVG string with vl-convert, which embeds Vega-Lite and Vega in a V8 engine, so
nothing is fetched (external data URLs are refused) and the page needs no script to show it.

The engine runs in a child process started when a run begins (:mod:`assay.report.engine`): it
takes about a second of CPU to start, holding the GIL, so it starts while the models are called.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd

from assay.costing import monthly_cost_usd
from assay.errors import AssayError
from assay.report import engine
from assay.report import format as fmt

FONT = "Liberation Sans, DejaVu Sans, Arial, Helvetica, sans-serif"
KIND_COLORS = {
    "api": "#3b6ea5",
    "self-hosted": "#d9822b",
    "conventional": "#4c9a5f",
    "unpriced": "#888888",
    "judge": "#8a63b8",
    "policy": "#c2458a",
}
CONFIG = {
    "font": FONT,
    "background": "white",
    "view": {"stroke": None},
    "axis": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal", "gridColor": "#eeeeee", "labelLimit": 260},
    "legend": {"labelFontSize": 11, "titleFontSize": 12, "titleFontWeight": "normal", "labelLimit": 260},
    "title": {"fontSize": 13, "fontWeight": "normal", "anchor": "start"},
    "text": {"font": FONT},
}
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
#: Break-even points labelled on the volume chart (the rest are dots, listed in the caption).
MAX_LABELS = 6
#: Above this many runs a history chart draws lines without a symbol per run.
DENSE_RUNS = 60
_ids = itertools.count(1)


class ChartError(AssayError, RuntimeError):
    """vl-convert could not render a specification."""


def clean(records: list[dict]) -> list[dict]:
    """JSON-safe rows: NaN and infinities become null, numpy scalars plain Python."""
    out = []
    for r in records:
        row = {}
        for k, v in r.items():
            t = type(v)
            if t is float or isinstance(v, np.floating):
                v = float(v)
                v = None if (v != v or v in (math.inf, -math.inf)) else v
            elif t in (str, bool, int) or v is None:
                pass
            elif isinstance(v, np.integer):
                v = int(v)
            elif isinstance(v, np.bool_):
                v = bool(v)
            elif fmt.missing(v):
                v = None
            row[k] = v
        out.append(row)
    return out


def _values(df: pd.DataFrame) -> dict:
    return {"values": clean(df.to_dict("records"))}


def render(spec: dict) -> str:
    """The SVG of a Vega-Lite spec, its element ids made unique within the page (several inline
    SVGs share one document, and clip paths or gradients would otherwise point at another's)."""
    spec = {"$schema": SCHEMA, "config": CONFIG, **spec}
    try:
        svg = engine.render(spec)
    except engine.RenderError as e:
        raise ChartError(str(e)) from e
    prefix = f"c{next(_ids)}-"
    ids = set(re.findall(r'\sid="([^"]+)"', svg))
    for i in sorted(ids, key=len, reverse=True):
        svg = (
            svg.replace(f'id="{i}"', f'id="{prefix}{i}"')
            .replace(f"url(#{i})", f"url(#{prefix}{i})")
            .replace(f'href="#{i}"', f'href="#{prefix}{i}"')
        )
    return svg


def _log_or_symlog(values) -> dict:
    v = pd.to_numeric(pd.Series(values), errors="coerce").dropna()
    pos = v[v > 0]
    if len(pos) == 0:
        return {"type": "linear"}
    if (v <= 0).any():
        return {"type": "symlog", "constant": float(pos.min()) / 2}
    if pos.max() / pos.min() < 20:
        return {"type": "linear", "zero": False, "padding": 12}
    return {"type": "log", "padding": 12}


_DECADE = "(datum.value > 0 && abs(log(datum.value) / LN10 - round(log(datum.value) / LN10)) > 0.001) ? '' : "
_USD_LABEL = (
    "datum.value == 0 ? '$0' : abs(datum.value) < 1 ? '$' + format(datum.value, '~r') "
    ": '$' + replace(format(datum.value, '~s'), 'G', 'B')"
)
_VOLUME_LABEL = "replace(format(datum.value, '~s'), 'G', 'B')"


def _label(expr: str, scale: dict) -> str:
    """On a log scale, only the powers of ten are labelled."""
    return f"{_DECADE}({expr})" if scale.get("type") == "log" else expr


def _log_axis(expr: str, scale: dict, values) -> dict:
    """An axis whose log scale ticks the powers of ten only (a tick and a grid line for every
    2..9 of every decade cost rendering time and say little)."""
    axis = {"labelExpr": _label(expr, scale)}
    if scale.get("type") == "log":
        v = pd.to_numeric(pd.Series(values), errors="coerce")
        v = v[v > 0]
        if len(v):
            axis["tickCount"] = max(2, int(math.ceil(math.log10(v.max() / v.min()))) + 1)
    return axis


# ------------------------------------------------------------------------------------------ quality vs cost
def quality_cost_spec(points: pd.DataFrame, metric: str, hib: bool = True, sweep: pd.DataFrame | None = None) -> dict | None:
    """Quality against cost per 1,000 requests: one point per model with its interval bar, the
    Pareto front as a line, the recommended model labelled with ✓; policies (cascades, routes:
    rows of kind ``policy``) as squares beside them, each with its threshold sweep as a thin line.

    ``points``: model, kind, cost, value, lo, hi, pareto (bool), recommended (bool); ``sweep``:
    policy, cost, value (one row per threshold)."""
    p = points.dropna(subset=["cost", "value"]).copy()
    if p.empty:
        return None
    p["label"] = [f"{m} ✓" if r else str(m) for m, r in zip(p["model"], p["recommended"])]
    p["cost_text"] = p["cost"].map(fmt.usd)
    p["value_text"] = [fmt.with_interval(v, lo, hi) for v, lo, hi in zip(p["value"], p["lo"], p["hi"])]
    front = p[p["pareto"]].sort_values("cost")
    xs = _log_or_symlog(p["cost"])
    x = {
        "field": "cost",
        "type": "quantitative",
        "title": "cost per 1,000 requests (USD)",
        "scale": xs,
        "axis": _log_axis(_USD_LABEL, xs, p["cost"]),
    }
    y = {
        "field": "value",
        "type": "quantitative",
        "title": metric + ("" if hib else " (lower is better)"),
        "scale": {"zero": False, "padding": 12},
    }
    kinds = [k for k in KIND_COLORS if k in set(p["kind"])]
    color = {
        "field": "kind",
        "type": "nominal",
        "title": "kind",
        "scale": {"domain": kinds, "range": [KIND_COLORS[k] for k in kinds]},
    }
    layers = [
        {
            "data": _values(front),
            "mark": {"type": "line", "color": "#999999", "strokeDash": [4, 3], "strokeWidth": 1.5},
            "encoding": {"x": x, "y": y, "order": {"field": "cost", "type": "quantitative"}},
        },
        {
            "mark": {"type": "rule", "strokeWidth": 1.5},
            "encoding": {"x": x, "y": {**y, "field": "lo"}, "y2": {"field": "hi"}, "color": color},
        },
        {
            "mark": {"type": "point", "filled": True, "size": 90, "opacity": 1},
            "encoding": {
                "x": x,
                "y": y,
                "color": color,
                "shape": {
                    "field": "pareto",
                    "type": "nominal",
                    "title": "Pareto front",
                    "scale": {"domain": [True, False], "range": ["diamond", "circle"]},
                    "legend": {"labelExpr": "datum.value ? 'on the front' : 'dominated'"},
                },
            },
        },
        {
            "mark": {"type": "text", "align": "left", "dx": 9, "dy": -7, "fontSize": 11},
            "encoding": {
                "x": x,
                "y": y,
                "text": {"field": "label"},
                "fontWeight": {"condition": {"test": "datum.recommended", "value": "bold"}, "value": "normal"},
            },
        },
    ]
    pol = p[p["kind"] == "policy"]
    if len(pol):  # policies: squares over the circles and diamonds of the single models
        layers[2]["transform"] = [{"filter": "datum.kind !== 'policy'"}]
        layers.insert(
            3,
            {
                "transform": [{"filter": "datum.kind === 'policy'"}],
                "mark": {"type": "square", "filled": True, "size": 90, "opacity": 1},
                "encoding": {"x": x, "y": y, "color": color},
            },
        )
    sw = sweep.dropna(subset=["cost", "value"]) if sweep is not None and len(sweep) else None
    if sw is not None and len(sw):
        sw = sw.assign(cost=sw["cost"].clip(lower=float(p["cost"][p["cost"] > 0].min()) if (p["cost"] > 0).any() else 0.0))
        layers.insert(
            0,
            {
                "data": _values(sw.sort_values(["policy", "cost"])),
                "mark": {
                    "type": "line",
                    "color": KIND_COLORS["policy"],
                    "strokeWidth": 1,
                    "opacity": 0.5,
                    "point": {"size": 12, "filled": True, "color": KIND_COLORS["policy"]},
                },
                "encoding": {
                    "x": x,
                    "y": y,
                    "detail": {"field": "policy", "type": "nominal"},
                    "order": {"field": "cost", "type": "quantitative"},
                },
            },
        )
    return {"data": _values(p), "width": 560, "height": 320, "layer": layers}


# ------------------------------------------------------------------------------------------ monthly vs volume
def volume_curves(
    costs: pd.DataFrame, breakeven: pd.DataFrame, monthly: int | None, points: int = 60
) -> tuple[pd.DataFrame, pd.DataFrame, tuple[float, float]]:
    """Each option's monthly cost over a log range of monthly volumes (from
    :func:`assay.costing.monthly_cost_usd`, the function the break-even volumes solve), and the
    break-even points on those curves."""
    c = costs[costs["kind"].isin(["api", "self-hosted", "conventional"])].copy()
    c["per_request"] = pd.to_numeric(c["cost_per_1k_usd"], errors="coerce") / 1000
    c = c.dropna(subset=["per_request"])
    marks = [float(monthly)] if monthly else []
    be = (
        breakeven.copy()
        if breakeven is not None and len(breakeven)
        else pd.DataFrame(columns=["option", "api", "breakeven_monthly_requests"])
    )
    be["m"] = pd.to_numeric(be["breakeven_monthly_requests"], errors="coerce")
    finite = be[np.isfinite(be["m"]) & (be["m"] >= 1)]
    marks += finite["m"].tolist()
    lo = max(1.0, min([1e3] + [m / 3 for m in marks]))
    hi = min(1e13, max([1e6] + [m * 10 for m in marks]))
    grid = np.unique(np.concatenate([np.logspace(math.log10(lo), math.log10(hi), points), marks]))
    rows = []
    for r in c.itertuples():
        fixed = float(r.fixed_monthly_usd) if not fmt.missing(r.fixed_monthly_usd) else 0.0
        floor = getattr(r, "floor_monthly_usd", None)  # absent from cost tables written before conventional floors
        # on log-log axes an API line (c*M) is straight and a self-hosted one (max(floor, c*M)) is
        # two straight pieces, so their ends and the knee draw them exactly; a conventional one
        # (training + max(floor, c*M)) bends, and is sampled
        if r.kind == "api":
            g = np.array([lo, hi])
        elif r.kind == "self-hosted":
            knee = fixed / r.per_request if r.per_request > 0 else hi  # the floor's capacity
            g = np.unique(np.array([lo, hi] + ([knee] if lo < knee < hi else [])))
        else:
            g = grid
        y = np.atleast_1d(monthly_cost_usd(r.kind, fixed, r.per_request, g, floor))
        for m, v in zip(g, y):
            if np.isfinite(v) and v > 0:
                rows.append({"model": r.model, "kind": r.kind, "volume": float(m), "monthly": float(v)})
    curves = pd.DataFrame(rows, columns=["model", "kind", "volume", "monthly"])
    pts = []
    by = {str(r.model): r for r in c.itertuples()}
    for r in finite.itertuples():
        o = by.get(str(r.option))
        if o is None:
            continue
        fixed = float(o.fixed_monthly_usd) if not fmt.missing(o.fixed_monthly_usd) else 0.0
        v = float(monthly_cost_usd(o.kind, fixed, o.per_request, r.m, getattr(o, "floor_monthly_usd", None)))
        if np.isfinite(v) and v > 0:
            pts.append(
                {
                    "option": r.option,
                    "api": r.api,
                    "volume": float(r.m),
                    "monthly": v,
                    "label": f"{r.option} = {r.api} at {fmt.volume(r.m)}/month",
                }
            )
    return curves, pd.DataFrame(pts, columns=["option", "api", "volume", "monthly", "label"]), (lo, hi)


def volume_spec(curves: pd.DataFrame, points: pd.DataFrame, monthly: int | None, domain: tuple[float, float]) -> dict | None:
    if curves.empty:
        return None
    x = {
        "field": "volume",
        "type": "quantitative",
        "title": "requests per month",
        "scale": {"type": "log", "domain": list(domain), "nice": False},
        "axis": _log_axis(_VOLUME_LABEL, {"type": "log"}, list(domain)),
    }
    ymin = max(curves["monthly"].min(), 1e-9)
    y = {
        "field": "monthly",
        "type": "quantitative",
        "title": "monthly cost (USD)",
        "scale": {"type": "log", "domainMin": ymin / 2},
        "axis": _log_axis(_USD_LABEL, {"type": "log"}, [ymin / 2, curves["monthly"].max()]),
    }
    models = list(dict.fromkeys(curves["model"]))
    layers = [
        {
            "data": _values(curves),
            "mark": {"type": "line", "strokeWidth": 2, "clip": True},
            "encoding": {
                "x": x,
                "y": y,
                "color": {"field": "model", "type": "nominal", "title": "option", "sort": models},
                "strokeDash": {
                    "field": "kind",
                    "type": "nominal",
                    "title": "kind",
                    "scale": {"domain": ["api", "self-hosted", "conventional"], "range": [[1, 0], [6, 3], [2, 2]]},
                },
                "detail": {"field": "model"},
            },
        }
    ]
    if monthly:
        layers.append(
            {
                "data": {"values": [{"volume": float(monthly), "label": f"configured: {fmt.volume(monthly)}/month"}]},
                "layer": [
                    {"mark": {"type": "rule", "color": "#555555", "strokeDash": [2, 4]}, "encoding": {"x": x}},
                    {
                        "mark": {
                            "type": "text",
                            "align": "left",
                            "baseline": "top",
                            "dx": 4,
                            "y": 4,
                            "fontSize": 10,
                            "color": "#555555",
                        },
                        "encoding": {"x": x, "text": {"field": "label"}},
                    },
                ],
            }
        )
    if len(points):
        # every break-even point is drawn; with many options only the first few are labelled
        # (``points`` comes ordered with the most relevant first), the caption lists them all
        labelled = points.head(MAX_LABELS)
        layers.append(
            {
                "data": _values(points),
                "mark": {"type": "point", "shape": "circle", "size": 70, "filled": True, "color": "black"},
                "encoding": {"x": x, "y": y},
            }
        )
        mid = math.sqrt(domain[0] * domain[1])  # labels point into the chart, away from its edges
        for side, test, dx in (("left", f"datum.volume < {mid}", 8), ("right", f"datum.volume >= {mid}", -8)):
            layers.append(
                {
                    "data": _values(labelled),
                    "transform": [{"filter": test}],
                    "mark": {"type": "text", "align": side, "dx": dx, "dy": -9, "fontSize": 10},
                    "encoding": {"x": x, "y": y, "text": {"field": "label"}},
                }
            )
    return {"width": 600, "height": 320, "layer": layers, "resolve": {"scale": {"color": "independent"}}}


# ------------------------------------------------------------------------------------------ slices
def slice_heatmap_spec(cells: pd.DataFrame, metric: str, hib: bool = True) -> dict | None:
    """Model × slice: ``cells`` has model, slice, value, n, worst (bool), model_label; slices and
    models in the order they appear. The worst slice of each model is outlined."""
    if cells.empty:
        return None
    slices = list(dict.fromkeys(cells["slice"]))
    labels = list(dict.fromkeys(cells["model_label"]))
    cells = cells.copy()
    cells["text"] = cells["value"].map(lambda v: fmt.num(v, 2))
    step_x = 30 if len(slices) <= 16 else 16 if len(slices) <= 40 else 13
    x = {
        "field": "slice",
        "type": "nominal",
        "sort": slices,
        "title": None,
        "axis": {"labelAngle": -45 if len(slices) <= 16 else -90, "labelLimit": 160},
    }
    y = {"field": "model_label", "type": "nominal", "sort": labels, "title": None}
    layers = [
        {
            "mark": {"type": "rect"},
            "encoding": {
                "x": x,
                "y": y,
                "color": {
                    "field": "value",
                    "type": "quantitative",
                    "title": metric,
                    "scale": {"scheme": "redyellowblue" if hib else "blueyellowred"},
                },
            },
        },
        {
            "transform": [{"filter": "datum.worst"}],
            "mark": {"type": "rect", "fill": None, "stroke": "black", "strokeWidth": 2},
            "encoding": {"x": x, "y": y},
        },
    ]
    if len(slices) <= 16:
        layers.append(
            {"mark": {"type": "text", "fontSize": 9, "color": "black"}, "encoding": {"x": x, "y": y, "text": {"field": "text"}}}
        )
    return {"data": _values(cells), "width": {"step": step_x}, "height": {"step": 22}, "layer": layers}


# ------------------------------------------------------------------------------------------ paired differences
def forest_spec(pairs: pd.DataFrame, metric: str, what: str = "A − B") -> dict | None:
    """Paired differences A − B: ``pairs`` has label, diff, lo, hi, verdict."""
    p = pairs.dropna(subset=["diff"])
    if p.empty:
        return None
    order = list(p["label"])
    y = {"field": "label", "type": "nominal", "sort": order, "title": None}
    x = {"field": "diff", "type": "quantitative", "title": f"difference in {metric} ({what}), 95% interval"}
    color = {
        "field": "verdict",
        "type": "nominal",
        "title": None,
        "scale": {"domain": ["A better", "B better", "no clear difference"], "range": ["#3b6ea5", "#c8553d", "#888888"]},
    }
    return {
        "data": _values(p),
        "width": 480,
        "height": {"step": 26},
        "layer": [
            {
                "data": {"values": [{"zero": 0}]},
                "mark": {"type": "rule", "color": "#555555", "strokeDash": [3, 3]},
                "encoding": {"x": {"field": "zero", "type": "quantitative"}},
            },
            {
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {"y": y, "x": {**x, "field": "lo"}, "x2": {"field": "hi"}, "color": color},
            },
            {
                "mark": {"type": "point", "filled": True, "size": 70, "shape": "square"},
                "encoding": {"y": y, "x": x, "color": color},
            },
        ],
    }


# ------------------------------------------------------------------------------------------ latency
def latency_spec(q: pd.DataFrame) -> dict | None:
    """Per model: box p25–p75, median tick, whiskers p5–p95, a dot at p99. ``q``: model, p05..p99."""
    q = q.dropna(subset=["p50"])
    if q.empty:
        return None
    models = list(q["model"])
    vals = pd.concat([q[c] for c in ("p05", "p99")])
    scale = _log_or_symlog(vals)
    if scale.get("type") == "linear":
        scale = {"type": "linear", "zero": True}
    x = {
        "field": "p05",
        "type": "quantitative",
        "title": "latency per request (s)",
        "scale": scale,
        "axis": _log_axis("format(datum.value, '~r')", scale, vals),
    }
    y = {"field": "model", "type": "nominal", "sort": models, "title": None}
    return {
        "data": _values(q),
        "width": 520,
        "height": {"step": 30},
        "layer": [
            {"mark": {"type": "rule", "color": "#555555"}, "encoding": {"y": y, "x": x, "x2": {"field": "p95"}}},
            {
                "mark": {"type": "bar", "size": 14, "color": "#9cb9d9"},
                "encoding": {"y": y, "x": {**x, "field": "p25"}, "x2": {"field": "p75"}},
            },
            {
                "mark": {"type": "tick", "size": 14, "thickness": 2, "color": "#1f3f66"},
                "encoding": {"y": y, "x": {**x, "field": "p50"}},
            },
            {
                "mark": {"type": "point", "filled": True, "size": 30, "color": "#c8553d"},
                "encoding": {"y": y, "x": {**x, "field": "p99"}},
            },
        ],
    }


# ------------------------------------------------------------------------------------------ history
def history_spec(h: pd.DataFrame, metric: str, width: int = 560) -> dict | None:
    """The headline metric (with its interval) and the cost per 1,000 requests per model over
    runs: ``h`` has as_of, model, value, lo, hi, cost, gates (passed/failed/inconclusive/not checked), current."""
    if h.empty:
        return None
    h = h.copy()
    dense = h["run_id"].nunique() > DENSE_RUNS if "run_id" in h else False
    h["gate"] = h["gates"].map(
        lambda g: {"passed": "passed", "failed": "failed", "inconclusive": "inconclusive"}.get(g, "not checked")
    )
    x = {"field": "as_of", "type": "temporal", "title": None, "axis": {"format": "%Y-%m-%d", "labelAngle": -30}}
    color = {"field": "model", "type": "nominal", "title": "model"}
    shape = {
        "field": "gate",
        "type": "nominal",
        "title": "gates",
        "scale": {
            "domain": ["passed", "failed", "inconclusive", "not checked"],
            "range": ["circle", "cross", "diamond", "triangle-up"],
        },
    }

    def panel(field: str, title: str, band: bool, scale: dict, fmt_axis: dict | None = None) -> dict:
        y = {"field": field, "type": "quantitative", "title": title, "scale": scale, **({"axis": fmt_axis} if fmt_axis else {})}
        layers = []
        if band:
            layers.append(
                {
                    "mark": {"type": "area", "opacity": 0.15},
                    "encoding": {"x": x, "y": {**y, "field": "lo"}, "y2": {"field": "hi"}, "color": color},
                }
            )
        layers.append({"mark": {"type": "line", "strokeWidth": 1.5}, "encoding": {"x": x, "y": y, "color": color}})
        if dense:  # hundreds of runs: the lines carry them, only broken gates and this run get a symbol
            layers.append(
                {
                    "transform": [{"filter": "datum.gate == 'failed' || datum.current"}],
                    "mark": {"type": "point", "filled": True, "size": 45},
                    "encoding": {"x": x, "y": y, "color": color, "shape": shape},
                }
            )
        else:
            layers.append(
                {
                    "mark": {"type": "point", "filled": True, "size": 45},
                    "encoding": {"x": x, "y": y, "color": color, "shape": shape},
                }
            )
        layers += [
            {
                "transform": [{"filter": "datum.gate == 'failed'"}],
                "mark": {"type": "point", "shape": "cross", "size": 160, "color": "#c8553d", "filled": True},
                "encoding": {"x": x, "y": y},
            },
            {
                "transform": [{"filter": "datum.current"}],
                "mark": {"type": "point", "shape": "circle", "size": 240, "filled": False, "color": "black", "strokeWidth": 1.5},
                "encoding": {"x": x, "y": y},
            },
        ]
        return {"width": width, "height": 170, "layer": layers}

    cost_scale = _log_or_symlog(h["cost"])
    return {
        "data": _values(h),
        "vconcat": [
            panel("value", metric, True, {"zero": False}),
            panel("cost", "cost per 1,000 requests (USD)", False, cost_scale, _log_axis(_USD_LABEL, cost_scale, h["cost"])),
        ],
        "resolve": {"scale": {"color": "shared", "shape": "shared"}},
    }


def bars_spec(df: pd.DataFrame, metric: str) -> dict | None:
    """Two runs' headline metric per model side by side (``df``: model, run, value, lo, hi)."""
    d = df.dropna(subset=["value"])
    if d.empty:
        return None
    y = {"field": "model", "type": "nominal", "title": None, "sort": list(dict.fromkeys(d["model"]))}
    x = {"field": "value", "type": "quantitative", "title": metric, "scale": {"zero": False, "padding": 10}}
    color = {"field": "run", "type": "nominal", "title": "run", "scale": {"range": ["#9cb9d9", "#1f3f66"]}}
    offset = {"field": "run", "type": "nominal"}
    return {
        "data": _values(d),
        "width": 480,
        "height": {"step": 18},
        "encoding": {"y": y, "yOffset": offset},
        "layer": [
            {
                "mark": {"type": "rule", "strokeWidth": 2},
                "encoding": {"x": {**x, "field": "lo"}, "x2": {"field": "hi"}, "color": color},
            },
            {"mark": {"type": "point", "filled": True, "size": 60}, "encoding": {"x": x, "color": color}},
        ],
    }
