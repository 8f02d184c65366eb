"""``assay compare RUN_A RUN_B``: two runs side by side on one self-contained page.

What changed between them — the recorded config (key by key), the data (fingerprint, rows,
shared examples), the prices — and what it did to the results: each model's headline metric
and costs in both runs, the recommendation of each, and, where the runs share examples, the
paired difference B − A per model on the shared examples' scores, computed as the score stage
computes its comparisons (:func:`assay.scoring.paired_comparison`).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

import assay.store
from assay import stats as ST
from assay.report import charts, page
from assay.report import format as fmt
from assay.report.decision import recommend
from assay.report.summary import RunTables, _pair_row, headline, prices_text
from assay.scoring import paired_comparison
from assay.store import RunFolder


def flatten(d, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` (lists as JSON), for a key-by-key diff."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = json.dumps(d, sort_keys=True, default=str) if isinstance(d, (list, tuple)) else str(d)
    return out


def config_changes(a: dict, b: dict) -> list[dict]:
    fa, fb = flatten(a.get("config") or {}), flatten(b.get("config") or {})
    return [
        {"key": k, "a": fa.get(k, "(not set)"), "b": fb.get(k, "(not set)")}
        for k in sorted(set(fa) | set(fb))
        if fa.get(k) != fb.get(k)
    ]


def _ids(rf: RunFolder) -> set[str]:
    if not rf.exists(assay.store.DATASET):
        return set()
    return set(rf.read_table(assay.store.DATASET, columns=["example_id"]).column(0).to_pandas().astype(str))


def _clusters(rt: RunTables, ids: pd.Index) -> np.ndarray | None:
    """The cluster of each of ``ids`` in a run whose dataset sets ``cluster`` (None otherwise)."""
    col = rt.cfg.dataset.cluster
    if not col or not rt.rf.exists(assay.store.DATASET):
        return None
    t = rt.rf.read_table(assay.store.DATASET, columns=["example_id", col]).to_pandas()
    by_id = pd.Series(t[col].to_numpy(), index=t["example_id"].astype(str))
    return np.asarray(ST.cluster_codes(by_id.reindex(ids).tolist()))


def shared_differences(ra: RunTables, rb: RunTables, metric: str, hib: bool, resamples: int = 1000) -> pd.DataFrame:
    """Per model in both runs: B − A in ``metric`` on the examples both runs scored, with the score
    stage's own paired computation (:func:`assay.scoring.paired_comparison`: the paired interval,
    clustered as run B's dataset says, and the paired bootstrap p-value)."""
    sa, sb = ra.scores(metric), rb.scores(metric)
    cols = ["model", "label", "diff", "lo", "hi", "n", "p_value", "verdict"]
    rows = []
    if sa is None or sb is None:
        return pd.DataFrame(columns=cols)
    for model in [m for m in dict.fromkeys(sa["model"]) if m in set(sb["model"])]:
        a = sa[sa["model"] == model].astype({"example_id": str}).drop_duplicates("example_id").set_index("example_id")["value"]
        b = sb[sb["model"] == model].astype({"example_id": str}).drop_duplicates("example_id").set_index("example_id")["value"]
        ids = b.index.intersection(a.index)
        if not len(ids):
            continue
        c = paired_comparison(b.loc[ids].to_numpy(float), a.loc[ids].to_numpy(float), _clusters(rb, ids), resamples)
        if not c["n"]:
            continue
        r = _pair_row("B", "A", c["diff"], c["ci_low"], c["ci_high"], c["n"], c["p_value"], hib)
        rows.append(
            {
                "model": model,
                "label": f"{model}: B − A",
                "diff": c["diff"],
                "lo": c["ci_low"],
                "hi": c["ci_high"],
                "n": int(c["n"]),
                "p_value": r["p_value"],
                "verdict": {"A better": "B better", "B better": "A better"}.get(r["verdict"], r["verdict"]),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def build_compare(a: RunFolder, b: RunFolder, out_path: str) -> dict:
    """Write the compare page of runs ``a`` and ``b`` to ``out_path`` (a local file); return a summary."""
    ra, rb = RunTables.read(a), RunTables.read(b)
    metric = rb.metric
    ta, tb = headline(ra.metrics, ra.costs, ra.cfg), headline(rb.metrics, rb.costs, rb.cfg)
    reca, recb = recommend(ta, ra.cfg), recommend(tb, rb.cfg)
    hib = True
    if f"{metric}_higher_is_better" in tb and tb[f"{metric}_higher_is_better"].notna().any():
        hib = bool(tb[f"{metric}_higher_is_better"].dropna().iloc[0])
    ma, mb = ra.manifest, rb.manifest
    name = lambda rf: f"{rf.pipeline} {rf.as_of} {rf.run_id}"  # noqa: E731
    body = [
        f"<h1>Compare runs of {page.esc(a.pipeline)}{'' if a.pipeline == b.pipeline else ' and ' + page.esc(b.pipeline)}</h1>",
        f"<p class='meta'>A: <code>{page.esc(name(a))}</code> · B: <code>{page.esc(name(b))}</code></p>",
        "<section id='recommendations'><h2>Recommendations</h2>",
        f"<p class='recommendation{'' if reca.model else ' none'}'><b>A ({page.esc(a.as_of)}):</b> {page.esc(reca.sentence)}</p>",
        f"<p class='recommendation{'' if recb.model else ' none'}'><b>B ({page.esc(b.as_of)}):</b> {page.esc(recb.sentence)}</p></section>",
    ]

    # results ------------------------------------------------------------------------------
    models = list(dict.fromkeys([*tb.get("model", []), *ta.get("model", [])]))
    ia = {r["model"]: r for r in ta.to_dict("records")} if len(ta) else {}
    ib = {r["model"]: r for r in tb.to_dict("records")} if len(tb) else {}
    rows, bars = [], []
    for m in models:
        x, y = ia.get(m, {}), ib.get(m, {})
        va, vb = x.get(metric), y.get(metric)
        rows.append(
            {
                "model": m,
                "a": fmt.with_interval(va, x.get(f"{metric}_ci_low"), x.get(f"{metric}_ci_high")) if x else "not in A",
                "b": fmt.with_interval(vb, y.get(f"{metric}_ci_low"), y.get(f"{metric}_ci_high")) if y else "not in B",
                "d": fmt.signed(vb - va) if x and y and not fmt.missing(va) and not fmt.missing(vb) else "–",
                "ca": fmt.usd(x.get("cost_per_1k_usd")),
                "cb": fmt.usd(y.get("cost_per_1k_usd")),
                "mca": fmt.usd(x.get("monthly_cost_usd")),
                "mcb": fmt.usd(y.get("monthly_cost_usd")),
            }
        )
        for run, r in (("A", x), ("B", y)):
            if r:
                bars.append(
                    {
                        "model": m,
                        "run": f"{run} ({a.as_of if run == 'A' else b.as_of})",
                        "value": r.get(metric),
                        "lo": r.get(f"{metric}_ci_low"),
                        "hi": r.get(f"{metric}_ci_high"),
                    }
                )
    body.append(
        "<section id='results'><h2>Results</h2>"
        + page.table(
            [
                ("model", "model"),
                ("a", f"{metric} A"),
                ("b", f"{metric} B"),
                ("d", "B − A"),
                ("ca", "$/1k req A"),
                ("cb", "$/1k req B"),
                ("mca", "$/month A"),
                ("mcb", "$/month B"),
            ],
            rows,
        )
        + "</section>"
    )
    body.append(
        page.figure(
            "runs",
            f"{metric} per model in both runs",
            charts.render(s) if (s := charts.bars_spec(pd.DataFrame(bars), metric)) else None,
            "Each model's value with its 95% interval, A above B.",
            "No model has a value in either run.",
        )
    )
    diffs = shared_differences(ra, rb, metric, hib, rb.cfg.bootstrap or 1000)
    ida, idb = _ids(a), _ids(b)
    shared = len(ida & idb)
    body.append(
        page.figure(
            "paired",
            f"Paired differences B − A in {metric}, on the shared examples",
            charts.render(s) if (s := charts.forest_spec(diffs, metric, "B − A")) else None,
            f"Per model, B − A on the {shared:,} examples both runs scored, with its 95% paired interval "
            "(computed as the score stage computes comparisons.parquet); an interval across zero is no clear "
            "difference.",
            "The runs share no scored examples (or the metric has no per-example scores): no paired difference.",
        )
    )

    # what changed -------------------------------------------------------------------------
    changes = config_changes(ma, mb)
    body.append(
        "<section id='config'><h2>Config</h2>"
        + (
            f"<p>Same config: <code>{page.esc(mb.get('config_hash', ''))}</code>.</p>"
            if not changes
            else f"<p>{len(changes)} setting(s) differ (config hash A <code>{page.esc(str(ma.get('config_hash', ''))[:12])}</code>, "
            f"B <code>{page.esc(str(mb.get('config_hash', ''))[:12])}</code>).</p>"
            + page.collapsible(
                "Changed settings",
                page.table([("key", "setting"), ("a", "A"), ("b", "B")], changes, text_cols=("key", "a", "b")),
                len(changes),
            )
        )
        + "</section>"
    )
    da, db = ma.get("dataset") or {}, mb.get("dataset") or {}
    same = (ida == idb) if (ida or idb) else da.get("fingerprint") == db.get("fingerprint")
    body.append(
        "<section id='data'><h2>Data</h2>"
        + page.table(
            [("what", ""), ("a", "A"), ("b", "B")],
            [
                {"what": "fingerprint", "a": da.get("fingerprint", "–"), "b": db.get("fingerprint", "–")},
                {"what": "rows", "a": fmt.count(da.get("rows")), "b": fmt.count(db.get("rows"))},
                {"what": "source", "a": da.get("source", "–"), "b": db.get("source", "–")},
            ],
            text_cols=("what", "a", "b"),
        )
        + f"<p>{'The same examples.' if same else 'Different examples.'} {shared:,} examples in both runs "
        f"({len(ida - idb):,} only in A, {len(idb - ida):,} only in B).</p></section>"
    )
    pa_, pb_ = dict(zip(ra.costs["model"], prices_text(ra.costs))), dict(zip(rb.costs["model"], prices_text(rb.costs)))
    prow = [
        {
            "model": m,
            "a": pa_.get(m, "–").split(": ", 1)[-1],
            "b": pb_.get(m, "–").split(": ", 1)[-1],
            "same": "same rates" if _rates(pa_.get(m)) == _rates(pb_.get(m)) else "changed",
        }
        for m in dict.fromkeys([*pb_, *pa_])
    ]
    body.append(
        "<section id='prices'><h2>Prices</h2>"
        + page.table([("model", "model"), ("a", "A"), ("b", "B"), ("same", "")], prow, text_cols=("model", "a", "b", "same"))
        + "</section>"
    )
    body.append(
        page.footer(
            [
                (
                    "A",
                    page.esc(
                        f"{name(a)} · config {ma.get('config_hash', '–')} · "
                        + " · ".join(f"{k} {v}" for k, v in sorted((ma.get("versions") or {}).items()))
                    ),
                ),
                (
                    "B",
                    page.esc(
                        f"{name(b)} · config {mb.get('config_hash', '–')} · "
                        + " · ".join(f"{k} {v}" for k, v in sorted((mb.get("versions") or {}).items()))
                    ),
                ),
            ]
        )
    )
    html = page.document(f"Compare {a.run_id} and {b.run_id} — Assay", body)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write(html)
    return {
        "path": out_path,
        "config_changes": changes,
        "shared_examples": shared,
        "same_data": same,
        "differences": diffs,
        "recommendation_a": reca.sentence,
        "recommendation_b": recb.sentence,
        "prices_changed": [r["model"] for r in prow if r["same"] == "changed"],
    }


def _rates(text: str | None) -> str | None:
    """A price line without its dates and measured throughput: the rates themselves."""
    return None if text is None else text.split(", prices in force")[0].split(", throughput")[0]


__all__ = ["build_compare", "config_changes", "flatten", "shared_differences"]
