"""Reprice a finished run at another date's prices, without calling any model.

``assay reprice RUN_FOLDER [--as-of DATE] [--write]`` reads the run's responses, its manifest (the
recorded config, invoke stats and prices) and metrics.parquet, and recomputes costs.parquet and
breakeven.parquet with :func:`assay.costing.cost_tables`, the same code the cost stage runs:

* **no date**: the prices recorded in the manifest, each request at the price of its own day exactly as
  the cost stage priced it (the run's as_of for live calls, the logged day for replayed logs with
  ``logged_at``). This reproduces the recorded costs exactly, whatever genai-prices ships today.
* **a date** ``D``: every request of every model at the prices in force on ``D`` ("what would this run
  cost at D's prices"). A quote the manifest recorded for ``D`` is reused; otherwise the model is quoted
  from its recorded config (:func:`assay.pricing.quote`).

Self-hosted and conventional models are priced by time and do not depend on the date. ``write=True``
writes ``costs-<date>.parquet`` and ``breakeven-<date>.parquet`` next to the originals (never the run's
own costs.parquet) and records the repricing in the manifest under ``repriced[<date>]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pandas as pd

import assay.runs.manifest
import assay.store
from assay.config import ConfigError, OpenAIModel, recorded_config, recorded_model
from assay.costing import (
    PRICE_DATE,
    correct_counts,
    cost_tables,
    dated_quotes,
    judge_costs,
    prices_record,
    recorded_quotes,
    request_dates,
)
from assay.errors import AssayError
from assay.pricing import PriceQuote, quote
from assay.responses import read_responses
from assay.runs import Manifest
from assay.store import RunFolder

__all__ = ["RepriceError", "Repriced", "open_run", "reprice", "format_comparison", "COMPARED"]

#: The figures compared, old vs new.
COMPARED = ("cost_usd", "cost_per_1k_usd", "monthly_cost_usd")


class RepriceError(AssayError):
    """The folder is not a run that can be repriced (the CLI exits 2)."""


@dataclass
class Repriced:
    folder: RunFolder
    label: str  # the price date: the run's as_of (recorded prices) or the date asked for
    recorded: bool  # True: the run's own recorded prices (no date given)
    costs: pd.DataFrame
    breakeven: pd.DataFrame
    comparison: pd.DataFrame  # model, kind, <figure>_old, <figure>_new for each of COMPARED
    quotes: dict = field(default_factory=dict)
    written: list[str] = field(default_factory=list)


def open_run(path: str | os.PathLike | RunFolder) -> RunFolder:
    """The run folder (:func:`assay.store.open_run`), after checking that what repricing reads is there;
    RepriceError names the first missing file."""
    try:
        rf = assay.store.open_run(path)
    except assay.store.NotARunFolder as e:
        raise RepriceError(str(e)) from None
    if not [n for n in rf.listdir(assay.store.RESPONSES) if n.endswith(".parquet")]:
        raise RepriceError(f"{rf.path(assay.store.RESPONSES)}/part-*.parquet is missing: the run has no responses")
    for name in (assay.store.METRICS, assay.store.COSTS):
        if not rf.exists(name):
            raise RepriceError(f"{rf.path(name)} is missing: the run did not finish its score and cost stages")
    return rf


def _recorded(rf: RunFolder, manifest: dict):
    """(PipelineConfig, {model: ModelConfig}) for the run's models, from the manifest's recorded config.

    An unset ``${VAR}`` stays as written (``unset_env="keep"``, see :func:`assay.config.recorded_config`):
    repricing calls no model, so the run's endpoints and keys need not be set where it is repriced.
    """
    try:
        loaded = recorded_config(manifest, unset_env="keep", source=rf.path(assay.store.MANIFEST))
    except ConfigError as e:
        raise RepriceError(str(e)) from None
    pipe = next(iter(loaded.config.pipelines.values()))  # the one pipeline a manifest records
    names = list((manifest.get("request") or {}).get("models") or pipe.models)
    missing = [n for n in names if n not in loaded.config.models]
    if missing:
        raise RepriceError(
            f"{rf.path(assay.store.MANIFEST)} has no recorded config for model {missing[0]!r} (config.models.{missing[0]})"
        )
    return pipe, {n: loaded.config.models[n] for n in names}


def _as_day(on) -> str | None:
    if on is None:
        return None
    if isinstance(on, datetime):
        return on.date().isoformat()
    if isinstance(on, date):
        return on.isoformat()
    try:
        return date.fromisoformat(str(on)).isoformat()
    except ValueError:
        raise RepriceError(f"--as-of: expected a date as YYYY-MM-DD, got {on!r}") from None


def _judge_quoter(manifest: dict, day: str, recorded: bool):
    """Price a judge at ``day``: its recorded quote when it is for that day (always with recorded
    prices), else a fresh quote of its recorded model config (or of the recorded genai-prices entry)."""
    rec = manifest.get("judge_prices") or {}

    def quote_of(judge: str) -> PriceQuote:
        r = rec.get(judge)
        if r is None:
            return PriceQuote(source="none", as_of=day, note="the judge's price was not recorded")
        q = PriceQuote.from_dict(r)
        if recorded or q.as_of == day:
            return q
        if isinstance(r.get("model_config"), dict):
            try:  # placeholders kept, as for the run's models (see _recorded)
                cfg = recorded_model(r["model_config"], ("judge_prices", judge, "model_config"), unset_env="keep")
            except ConfigError as e:
                raise RepriceError(str(e)) from None
            return quote(cfg, day)
        if q.source == "genai-prices" and q.model_id:
            ref = f"{q.provider_id}/{q.model_id}" if q.provider_id else q.model_id
            return quote(OpenAIModel(model=q.model_id, price_ref=ref), day)
        return PriceQuote(**{**q.to_dict(), "as_of": day})  # explicit prices do not change with the date

    return quote_of


def reprice(run_folder, as_of=None, write: bool = False) -> Repriced:
    """Recompute a run's costs at ``as_of``'s prices (default: its own recorded prices); see the module doc."""
    rf = open_run(run_folder)
    manifest = rf.manifest()
    if manifest is None:
        raise RepriceError(f"{rf.path(assay.store.MANIFEST)} is not valid JSON")
    pipe, models = _recorded(rf, manifest)
    run_day = str(manifest.get("as_of") or rf.as_of)
    day = _as_day(as_of)
    recorded = day is None
    label = day or run_day
    view = Manifest(manifest)
    stats = view.model_stats
    responses = read_responses(rf).to_pandas()
    correct = correct_counts(rf.read_table(assay.store.METRICS).to_pandas())
    known = recorded_quotes(view)

    def quote_of(name: str, d: str):
        q = known.get(name, {}).get(d)
        return q if q is not None else quote(models[name], d)

    if recorded:
        responses[PRICE_DATE] = request_dates(responses, models, stats, run_day)
    else:
        responses[PRICE_DATE] = label
    quotes = dated_quotes(models, responses, label, quote_of)
    judge_rows, judge_quotes = judge_costs(pipe, view, _judge_quoter(manifest, label, recorded))
    costs, be = cost_tables(
        responses, models, quotes, stats, pipe.cost.monthly_requests, correct, judge_rows, manifest.get("capacity")
    )  # the operating points the run was priced at

    old = rf.read_table(assay.store.COSTS).to_pandas()
    comparison = _compare(old, costs)
    out = Repriced(
        rf,
        label,
        recorded,
        costs,
        be,
        comparison,
        {**prices_record(quotes, label), **{f"judge:{j}": q.to_dict() for j, q in judge_quotes.items()}},
    )
    if write:
        cname, bname = f"costs-{label}.parquet", f"breakeven-{label}.parquet"
        assert cname != assay.store.COSTS and bname != assay.store.BREAKEVEN
        out.written = [rf.write_table(cname, costs), rf.write_table(bname, be)]
        entry = {
            "as_of": label,
            "prices": "recorded" if recorded else "quoted",
            "at": datetime.now(UTC).isoformat(),
            "costs": cname,
            "breakeven": bname,
            "artifacts": {cname: rf.hash(cname), bname: rf.hash(bname)},
            "cost_usd": {r.model: (None if pd.isna(r.cost_usd) else float(r.cost_usd)) for r in costs.itertuples()},
            "quotes": out.quotes,
        }
        assay.runs.manifest.edit(rf, lambda m: m.setdefault("repriced", {}).__setitem__(label, entry))
    return out


def _compare(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    cols = ["model", "kind", *COMPARED]
    o = old.reindex(columns=cols).rename(columns={c: f"{c}_old" for c in COMPARED})
    n = new.reindex(columns=cols).rename(columns={c: f"{c}_new" for c in COMPARED})
    both = n.merge(o.drop(columns=["kind"]), on="model", how="outer", sort=False)
    order = ["model", "kind"] + [f"{c}_{w}" for c in COMPARED for w in ("old", "new")]
    return both[order]


def _fmt(v) -> str:
    if v is None or pd.isna(v):
        return "–"
    v = float(v)
    if v == float("inf"):
        return "inf"
    if abs(v) >= 1e6:
        return f"{v:,.0f}"
    return f"{v:.6g}"


def format_comparison(r: Repriced) -> str:
    """The old vs new table as text, one line per model."""
    head = ["model", "kind"] + [f"{c} {w}" for c in COMPARED for w in ("old", "new")]
    lines = [
        [str(x.model), str(x.kind) if isinstance(x.kind, str) else "–"]
        + [_fmt(getattr(x, f"{c}_{w}")) for c in COMPARED for w in ("old", "new")]
        for x in r.comparison.itertuples(index=False)
    ]
    widths = [max(len(h), *(len(row[i]) for row in lines)) if lines else len(h) for i, h in enumerate(head)]
    fmt = lambda row: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))  # noqa: E731
    how = "the prices recorded in the manifest" if r.recorded else f"prices in force on {r.label}"
    out = [f"{r.folder.url}: costs at {how} (USD)", fmt(head)] + [fmt(row) for row in lines]
    return "\n".join(out)
