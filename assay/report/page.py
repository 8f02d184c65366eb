"""The HTML of Assay's pages (report, compare, dashboard): one stylesheet, tables, figures.

Every page is one self-contained file: inline CSS, inline SVG charts, no script, font or image
from anywhere else, so it opens offline, with JavaScript off, and can be published as a file.
Long tables sit in ``<details>`` and are collapsed until opened.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

from assay.report.charts import FONT

#: Tables longer than this are collapsed by default.
COLLAPSE_ROWS = 12

CSS = f"""
:root{{--ink:#1d2330;--muted:#5b6472;--line:#d9dde3;--soft:#f4f6f8;--accent:#1f6f43;--warn:#a4371f}}
*{{box-sizing:border-box}}
body{{font-family:{FONT};color:var(--ink);margin:0;background:#fff;line-height:1.45}}
main{{max-width:1180px;margin:0 auto;padding:1.5rem 1.5rem 3rem}}
h1{{font-size:1.55rem;margin:.2rem 0 .3rem}}h2{{font-size:1.15rem;margin:2rem 0 .5rem;border-bottom:1px solid var(--line);padding-bottom:.2rem}}
h3{{font-size:1rem;margin:1.2rem 0 .4rem}}
p.meta,.muted{{color:var(--muted);font-size:.9rem;margin:.2rem 0}}
p.recommendation{{font-size:1.12rem;background:#eef6f0;border-left:5px solid var(--accent);padding:.8rem 1rem;margin:1rem 0}}
p.recommendation.none{{background:#fbefec;border-left-color:var(--warn)}}
table{{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.88rem;max-width:100%}}
th,td{{border-bottom:1px solid var(--line);padding:.3rem .6rem;text-align:right;vertical-align:top;white-space:nowrap}}
th{{background:var(--soft);font-weight:600}}
td.t,th.t{{text-align:left;white-space:normal;overflow-wrap:break-word;word-break:normal}}
tr.recommended td{{background:#eef6f0;font-weight:600}}
span.mark{{color:var(--accent);font-weight:700}}
span.bad{{color:var(--warn);font-weight:600}}
.scroll{{overflow-x:auto;max-width:100%}}
figure.chart{{margin:.6rem 0 1.4rem;overflow-x:auto;max-width:100%}}
figure.chart svg{{display:block;max-width:none;height:auto}}
figcaption{{color:var(--muted);font-size:.85rem;margin-top:.3rem;max-width:62rem}}
details{{margin:.4rem 0 .8rem}}summary{{cursor:pointer;color:var(--ink);font-weight:600}}
ul.decisions li{{margin:.15rem 0}}
footer{{margin-top:2.5rem;border-top:1px solid var(--line);padding-top:.8rem;color:var(--muted);font-size:.82rem}}
footer dl{{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}}footer dt{{font-weight:600}}
footer dd{{margin:0;overflow-wrap:anywhere}}
code{{font-size:.85em}}
nav a{{margin-right:1rem}}
.cards{{display:grid;grid-template-columns:1fr;gap:1rem}}
.card{{border:1px solid var(--line);border-radius:6px;padding:.4rem 1rem 1rem}}
"""


def esc(v) -> str:
    return html.escape("" if v is None else str(v))


def document(title: str, body: Iterable[str]) -> str:
    """A whole page: doctype, charset, a strict content policy (nothing may load from elsewhere), the CSS."""
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return "\n".join(
        [
            "<!doctype html>",
            "<html lang='en'><head><meta charset='utf-8'>",
            f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>",
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>",
            *body,
            "</main></body></html>",
        ]
    )


def table(
    columns: Sequence[tuple[str, str]],
    rows: Iterable[dict],
    text_cols: Sequence[str] = ("model",),
    row_class=None,
    raw: Sequence[str] = (),
) -> str:
    """An HTML table of ``rows`` (dicts) with ``columns`` = [(key, title)]; values are escaped
    unless their key is in ``raw`` (already HTML)."""
    head = "".join(f"<th class='{'t' if k in text_cols else ''}'>{esc(t)}</th>" for k, t in columns)
    body = []
    for r in rows:
        cls = row_class(r) if row_class else ""
        cells = "".join(
            f"<td class='{'t' if k in text_cols else ''}'>{r.get(k, '') if k in raw else esc(r.get(k, ''))}</td>"
            for k, _ in columns
        )
        body.append(f"<tr class='{cls or ''}'>{cells}</tr>")
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"


def collapsible(summary: str, content: str, rows: int, open_: bool | None = None) -> str:
    """``content`` inside ``<details>``, collapsed when it is long (more than COLLAPSE_ROWS rows)."""
    is_open = (rows <= COLLAPSE_ROWS) if open_ is None else open_
    return f"<details{' open' if is_open else ''}><summary>{esc(summary)} ({rows:,} rows)</summary>{content}</details>"


def figure(key: str, title: str, svg: str | None, caption: str = "", empty: str = "") -> str:
    """A section with a chart (its SVG inline) and a caption; ``empty`` says why there is none."""
    if not svg:
        return f"<section id='{esc(key)}'><h2>{esc(title)}</h2><p class='muted'>{esc(empty or 'Nothing to draw.')}</p></section>"
    svg = svg.replace("<svg ", f"<svg role='img' aria-label='{esc(title)}' ", 1)
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return (
        f"<section id='{esc(key)}'><h2>{esc(title)}</h2>"
        f"<figure class='chart' data-chart='{esc(key)}'>{svg}{cap}</figure></section>"
    )


def footer(items: Sequence[tuple[str, str]]) -> str:
    """The reproducibility footer: (term, HTML) pairs."""
    return "<footer><dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl></footer>"
