"""The bookkeeping behind a run's dollars: which day's price applies to each request, which
quotes were used, how they are recorded in the manifest and read back, and what the LLM judges
cost. The cost stage and ``assay reprice`` both price a run through these functions, so a
repricing with the recorded prices gives exactly the recorded dollars.
"""

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from assay.costing.model import PRICE_DATE, breakeven, cost_table
from assay.pricing import DatedQuotes, PriceQuote, is_api_model, token_cost

#: The correctness metrics that count a model's correct answers, in order of preference.
CORRECTNESS = ("accuracy", "exact_match")


def correct_counts(metrics) -> dict | None:
    """Correct answers per model: ``value * n`` of the pipeline's correctness metric (the first of
    :data:`CORRECTNESS` it computes) on slice ``all`` of metrics.parquet; None without one."""
    overall = metrics[metrics["slice"] == "all"]
    for key in CORRECTNESS:
        sel = overall[overall["metric"] == key]
        if len(sel):
            return {r.model: float(r.value) * int(r.n) for r in sel.itertuples()}
    return None


def request_dates(responses, models: dict, stats: dict, as_of: str):
    """The date (``YYYY-MM-DD``) whose prices apply to each response row, as a Series.

    Rows of API models whose requests carry their own time (replayed logs with a ``logged_at``
    column: the invoke stats say ``logged_request_times: true`` and ``started_at`` is the logged
    time) -> the UTC date of ``started_at``. Everything else -> ``as_of``: live calls are priced as
    of the run's date (a backfill is priced as it would have been then), cache hits too, and so are
    rows without a time.
    """
    out = pd.Series(as_of, index=responses.index, dtype=object)
    if not len(responses):
        return out
    for name, mcfg in models.items():
        if not (stats.get(name) or {}).get("logged_request_times") or mcfg is None or not is_api_model(mcfg):
            continue
        sel = (responses["model"] == name).to_numpy()
        st = pd.to_datetime(responses.loc[sel, "started_at"], utc=True)
        # each distinct day formatted once (a log of millions of rows spans a few hundred days)
        codes, days = pd.factorize(st.dt.floor("D"))
        labels = np.append(np.asarray(days.strftime("%Y-%m-%d"), dtype=object), as_of)
        out.loc[sel] = labels[np.where(codes < 0, len(days), codes)]
    return out


def dated_quotes(models: dict, responses, as_of: str, quote_of: Callable) -> dict:
    """Per model: its quote at ``as_of`` when every row is priced on that date, else a
    :class:`assay.pricing.DatedQuotes` of ``quote_of(model, day)`` for each distinct
    ``price_date`` of its rows (default: the ``as_of`` quote). ``responses`` is the rows with
    their :data:`PRICE_DATE`, or each model's set of price dates."""
    out = {}
    for name in models:
        if isinstance(responses, dict):  # {model: the set of its rows' price dates}
            days = sorted(d for d in responses.get(name, ()) if d)
        else:
            days = sorted({d for d in responses.loc[responses["model"] == name, PRICE_DATE] if d}) if len(responses) else []
        default = quote_of(name, as_of)
        out[name] = default if days in ([], [as_of]) else DatedQuotes({d: quote_of(name, d) for d in days}, default)
    return out


def prices_record(quotes: dict, as_of: str) -> dict:
    """The manifest's ``prices``: per model the quote at the run's date (its fields at the top level)
    plus ``priced_by`` and ``by_date``, every quote used, per request date."""
    out = {}
    for name, q in quotes.items():
        if isinstance(q, DatedQuotes):
            out[name] = {
                **q.default.to_dict(),
                "priced_by": "request date (logged_at)",
                "by_date": {d: x.to_dict() for d, x in sorted(q.by_date.items())},
            }
        else:
            out[name] = {**q.to_dict(), "priced_by": "run date", "by_date": {as_of: q.to_dict()}}
    return out


def recorded_quotes(manifest) -> dict:
    """Inverse of :func:`prices_record`: ``{model: {date: PriceQuote}}`` from a manifest (a manifest
    without ``by_date`` has one quote, at the run's as_of)."""
    out = {}
    for name, rec in manifest.prices.items():
        if not isinstance(rec, dict):
            continue
        quotes = {d: PriceQuote.from_dict(v) for d, v in (rec.get("by_date") or {}).items()}
        top = PriceQuote.from_dict(rec)  # the quote at the run's date
        quotes.setdefault(top.as_of or manifest.as_of, top)
        out[name] = quotes
    return out


def judge_costs(cfg, manifest, quote_of: Callable) -> tuple[list[dict], dict]:
    """The LLM judges' token cost lines (from the score stage's usage recorded in ``manifest``) and
    the quote used for each judge; ``quote_of(judge)`` prices a judge (judges are called live: at
    the run's date)."""
    rows, quotes = [], {}
    specs = {s.key: s for s in cfg.metric_specs()}
    for key, usage in manifest.judge_usage.items():
        spec = specs.get(key)
        if spec is None or not spec.judge:
            continue
        q = quotes.get(spec.judge) or quote_of(spec.judge)
        quotes[spec.judge] = q
        usd = (
            float(token_cost(q, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)))
            if q.source != "none"
            else float("nan")
        )
        n = usage.get("requests", 0)
        rows.append(
            {
                "model": f"judge:{spec.judge}",
                "kind": "judge",
                "requests": n,
                "errors": usage.get("errors", 0),
                "prompt_tokens": usage.get("prompt_tokens", 0),
                "completion_tokens": usage.get("completion_tokens", 0),
                "cost_usd": usd,
                "cost_per_1k_usd": usd / n * 1000 if n else float("nan"),
                "price_source": q.source,
                "price_json": json.dumps(q.to_dict()),
            }
        )
    return rows, quotes


def cost_tables(responses, models: dict, quotes: dict, stats: dict, monthly_requests, correct, judge_rows=None, capacity=None):
    """(costs, breakeven) tables of a run, as the cost stage writes them (judge lines appended);
    ``capacity``: the recorded serving operating points (:func:`assay.capacity.operating_points`)."""
    table = cost_table(responses, models, quotes, stats, monthly_requests, correct, capacity)
    if judge_rows:
        table = pd.concat([table, pd.DataFrame(judge_rows)], ignore_index=True)
    be = breakeven(table[table["kind"] != "judge"]) if "kind" in table else breakeven(table)
    return table, be
