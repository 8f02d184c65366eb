"""``assay dashboard``: a static site over every pipeline and date of an artifact root.

Read from the Parquet tree and the manifests alone (no config, no Prefect, no model), written as
plain files that can be published anywhere:

* ``index.html`` — per pipeline the latest complete run's recommendation and headline table,
  the model × pipeline matrix (each pipeline's headline metric and cost per 1,000 requests from
  its latest complete run) and each pipeline's history chart;
* ``pipelines/<pipeline>.html`` — the pipeline's history (headline metric with its interval, cost
  per 1,000 requests, broken gates marked) and every run, linked to its report.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import pandas as pd

from assay.report import charts, engine, page
from assay.report import format as fmt
from assay.report.decision import COLUMNS, headline_rows, headline_titles, recommend
from assay.report.links import report_href
from assay.report.summary import RunTables, headline, run_config
from assay.store import RunFolder, Store


@dataclass
class PipelineView:
    name: str
    runs: list[tuple[RunFolder, dict]]
    latest: RunFolder | None = None
    metric: str | None = None
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows: list[dict] = field(default_factory=list)
    titles: dict = field(default_factory=dict)
    sentence: str = ""
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    svg: str | None = None


def _latest(runs: list[tuple[RunFolder, dict]]) -> tuple[RunFolder, dict] | None:
    done = [(r, m) for r, m in runs if m.get("status") == "complete"]
    if not done:
        return None
    return max(done, key=lambda p: (p[0].as_of, str(p[1].get("finished_at") or ""), p[0].run_id))


def _view(store: Store, name: str) -> PipelineView:
    # lazy: keeps pyarrow out of start-up
    from assay.history import history

    runs = [(r, r.manifest() or {}) for r in store.runs(name)]
    v = PipelineView(name, runs)
    latest = _latest(runs)
    if latest is None:
        return v
    rf, m = latest
    v.latest = rf
    try:
        cfg = run_config(m)
        rt = RunTables.read(rf, cfg)
    except (ValueError, FileNotFoundError) as e:
        v.sentence = f"The latest complete run cannot be read: {e}"
        return v
    v.metric = rt.metric
    v.table = headline(rt.metrics, rt.costs, cfg)
    rec = recommend(v.table, cfg)
    v.sentence, v.titles = rec.sentence, headline_titles(cfg)
    v.rows = headline_rows(v.table, cfg, rec)
    h = history(store.root, name, metric=v.metric, manifests=runs)
    if len(h):
        v.history = pd.DataFrame(
            {
                "as_of": h["as_of"],
                "run_id": h["run_id"],
                "model": h["model"],
                "value": h["value"],
                "lo": h["ci_low"],
                "hi": h["ci_high"],
                "cost": h["cost_per_1k_usd"],
                "gates": h["gates"],
                "current": (h["as_of"] == rf.as_of) & (h["run_id"] == rf.run_id),
            }
        )
    return v


def build_dashboard(root: str, out_dir: str, base_url: str | None = None) -> dict:
    """Write the site for artifact root ``root`` into ``out_dir``; return what it wrote and the timings."""
    engine.start()  # the chart engine starts while the runs are read
    t0 = time.perf_counter()
    store = Store(root)
    names = [p for p in store.pipelines() if not p.startswith("_")]
    os.makedirs(os.path.join(out_dir, "pipelines"), exist_ok=True)
    views = [_view(store, n) for n in names]
    t_read = time.perf_counter()
    for v in views:
        if len(v.history):
            spec = charts.history_spec(v.history, v.metric, width=520)
            try:
                v.svg = charts.render(spec) if spec else None
            except charts.ChartError:
                v.svg = None
    t_charts = time.perf_counter()
    written = [_index(views, out_dir, root, base_url)]
    for v in views:
        written.append(_pipeline_page(v, out_dir, base_url))
    t_end = time.perf_counter()
    return {
        "pages": written,
        "pipelines": names,
        "runs": sum(len(v.runs) for v in views),
        "timings": {
            "read": round(t_read - t0, 3),
            "charts": round(t_charts - t_read, 3),
            "write": round(t_end - t_charts, 3),
            "total": round(t_end - t0, 3),
        },
    }


def _headline_table(v: PipelineView) -> str:
    return page.table(
        [(k, v.titles[k]) for k in COLUMNS],
        [{**r, "model": page.esc(r["model"]) + (" <span class='mark'>✓</span>" if r["recommended"] else "")} for r in v.rows],
        row_class=lambda r: "recommended" if r["recommended"] else "",
        raw=("model",),
    )


def matrix_rows(views: list[PipelineView]) -> tuple[list[str], list[dict]]:
    """Model × pipeline cells from each pipeline's latest complete run: ``0.873 · $0.014/1k``."""
    pipes = [v.name for v in views]
    grid: dict[str, dict] = {}
    for v in views:
        if v.table.empty or v.metric not in v.table:
            continue
        for r in v.table.to_dict("records"):
            grid.setdefault(str(r["model"]), {"model": str(r["model"])})[v.name] = (
                f"{fmt.num(r.get(v.metric))} · {fmt.usd(r.get('cost_per_1k_usd'))}/1k"
            )
    rows = [{"model": m, **{p: g.get(p, "–") for p in pipes}} for m, g in grid.items()]
    return pipes, rows


def _index(views: list[PipelineView], out_dir: str, root: str, base_url: str | None) -> str:
    body = [
        "<h1>Assay dashboard</h1>",
        f"<p class='meta'>{len(views)} pipeline(s), {sum(len(v.runs) for v in views):,} run(s) in "
        f"<code>{page.esc(root)}</code> · written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}</p>",
        "<nav>" + "".join(f"<a href='pipelines/{page.esc(v.name)}.html'>{page.esc(v.name)}</a>" for v in views) + "</nav>",
    ]
    pipes, rows = matrix_rows(views)
    metrics = {v.name: v.metric for v in views}
    body.append(
        "<section id='matrix'><h2>Models × use cases</h2><p class='muted'>Each pipeline's headline metric and "
        "cost per 1,000 requests, from its latest complete run.</p>"
    )
    body.append(
        page.table([("model", "model")] + [(p, f"{p} ({metrics[p] or '–'})") for p in pipes], rows)
        if rows
        else "<p class='muted'>No complete run yet.</p>"
    )
    body.append("</section><section id='pipelines'><h2>Latest results</h2><div class='cards'>")
    for v in views:
        card = [
            f"<div class='card' data-pipeline='{page.esc(v.name)}'><h3><a href='pipelines/{page.esc(v.name)}.html'>{page.esc(v.name)}</a></h3>"
        ]
        if v.latest is None:
            card.append(f"<p class='muted'>No complete run ({len(v.runs)} run folder(s)).</p></div>")
            body += card
            continue
        href = report_href(v.latest, out_dir, base_url)
        card.append(f"<p class='meta'>latest complete run {page.esc(v.latest.as_of)} · <a href='{page.esc(href)}'>report</a></p>")
        card.append(
            f"<p class='recommendation{'' if v.rows and any(r['recommended'] for r in v.rows) else ' none'}'>"
            f"{page.esc(v.sentence)}</p>"
        )
        if v.rows:
            card.append(_headline_table(v))
        if v.svg:
            card.append(
                f"<figure class='chart' data-chart='history-{page.esc(v.name)}'>{_aria(v.svg, v.name)}"
                f"<figcaption>{page.esc(v.metric)} and cost per 1,000 requests per complete run; a red cross marks "
                "broken gates; the latest run is circled.</figcaption></figure>"
            )
        card.append("</div>")
        body += card
    body.append("</div></section>")
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.document("Assay dashboard", body))
    return path


def _aria(svg: str, name: str) -> str:
    return svg.replace("<svg ", f"<svg role='img' aria-label='history of {page.esc(name)}' ", 1)


def _pipeline_page(v: PipelineView, out_dir: str, base_url: str | None) -> str:
    page_dir = os.path.join(out_dir, "pipelines")
    body = ["<p><a href='../index.html'>← dashboard</a></p>", f"<h1>{page.esc(v.name)}</h1>"]
    if v.latest is not None:
        body.append(f"<p class='recommendation'>{page.esc(v.sentence)}</p>")
        if v.rows:
            body.append(_headline_table(v))
    if v.svg:
        body.append(
            f"<section id='history'><h2>History</h2><figure class='chart' data-chart='history'>{_aria(v.svg, v.name)}"
            "<figcaption>The headline metric with its 95% interval and the cost per 1,000 requests, per model and "
            "complete run; a red cross marks a run whose gates failed.</figcaption></figure></section>"
        )
    per_run: dict[tuple[str, str], str] = {}
    if len(v.history):
        for (a, r), g in v.history.groupby(["as_of", "run_id"], sort=False):
            per_run[(a, r)] = ", ".join(f"{m} {fmt.num(x)}" for m, x in zip(g["model"], g["value"]))
    rows = []
    for rf, m in sorted(v.runs, key=lambda p: (p[0].as_of, p[0].run_id), reverse=True):
        g = (m.get("gates") or {}).get("passed") if isinstance(m.get("gates"), dict) else None
        status = m.get("status") or "unknown"
        link = f"<a href='{page.esc(report_href(rf, page_dir, base_url))}'>report</a>" if status == "complete" else ""
        rows.append(
            {
                "as_of": page.esc(rf.as_of),
                "run": f"<code>{page.esc(rf.run_id)}</code>",
                "status": page.esc(status),
                "gates": "–"
                if g is None
                else (
                    "<span class='bad'>failed</span>"
                    if not g
                    else "inconclusive"
                    if m["gates"].get("verdict") == "inconclusive"
                    else "passed"
                ),
                "values": page.esc(per_run.get((rf.as_of, rf.run_id), "")),
                "report": link,
            }
        )
    table = page.table(
        [
            ("as_of", "date"),
            ("run", "run"),
            ("status", "status"),
            ("gates", "gates"),
            ("values", v.metric or "headline"),
            ("report", ""),
        ],
        rows,
        text_cols=("run", "status", "values"),
        raw=("as_of", "run", "status", "gates", "values", "report"),
    )
    body.append("<section id='runs'><h2>Runs</h2>" + page.collapsible("Every run, newest first", table, len(rows)) + "</section>")
    path = os.path.join(page_dir, f"{v.name}.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.document(f"{v.name} — Assay dashboard", body))
    return path
