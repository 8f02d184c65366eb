"""Token prices for a model on a given date, and the cost of tokens under such a price.

A :class:`PriceQuote` is the price list used to turn tokens into dollars. The cost stage records
``PriceQuote.to_dict()`` next to the dollars (in the manifest and in costs.parquet), so a past run's
dollars never change when genai-prices ships new data; repricing a run means calling :func:`quote`
at another date and applying :func:`token_cost` to the recorded tokens.

Where prices come from, in order:

1. ``ModelConfig.price`` (explicit USD per million tokens) -> ``source="config"``.
2. For API models (no ``hosting``, no ``compute``, not a conventional provider such as sklearn): the
   genai-prices database *bundled with the installed package*, looked up by ``price_ref``
   ("provider/model") or else by ``model`` (genai-prices infers the provider), at the requested date
   -> ``source="genai-prices"``.
3. Nothing matched -> ``source="none"`` with every price ``None``.

Bundled data only: genai-prices fetches prices from the network only when someone starts its
``UpdatePrices`` background task; this module never does, and if something else in the process has
(the snapshot in use then reports ``from_auto_update``), :func:`quote` ignores the fetched snapshot
and reads the bundled one, so results do not depend on the network or on when the process started.

Prices that genai-prices cannot express as one number per token type are reduced as follows:

* **Tiered prices** (e.g. a higher rate once the prompt exceeds 200k tokens): the *base tier*,
  i.e. the rate below the first threshold. Assay's prompts are far below those thresholds; a quote
  built from a tiered price says so in ``note``.
* **Time-of-day prices** (e.g. DeepSeek's off-peak discount): the price *in force for the largest
  part of the UTC day* on that date, the provider's standard rate rather than a discount or surcharge
  window. genai-prices stores DeepSeek's discount as the unconditional price and the standard rate as
  a 00:30-16:30 UTC window, so simply taking its unconditional price would quote the discount.
  Ties go to the price in force earliest in the day. The quote's ``note`` says so.
* **Request variants** (batch, flex, priority service tiers): not applied; the standard price is used.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np

from assay.config import ModelConfig

__all__ = ["PriceQuote", "DatedQuotes", "quote", "token_cost", "clear_cache", "CONVENTIONAL_PROVIDERS", "is_api_model"]

#: Providers whose models are not priced per token (priced by compute time instead).
CONVENTIONAL_PROVIDERS = frozenset({"sklearn"})

PriceSource = Literal["config", "genai-prices", "none"]


@dataclass(frozen=True)
class PriceQuote:
    """Prices in USD per million tokens, where they came from and for which date.

    ``cached_input_per_mtok`` / ``cache_write_per_mtok`` of ``None`` mean "priced as ordinary input".
    ``note`` records how a tiered or time-of-day price was reduced, or why nothing matched.
    """

    input_per_mtok: float | None = None
    output_per_mtok: float | None = None
    cached_input_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    source: PriceSource = "none"
    provider_id: str | None = None
    model_id: str | None = None
    as_of: str | None = None
    note: str | None = None

    @property
    def priced(self) -> bool:
        """True when the quote can price tokens (it has an input or an output price)."""
        return self.source != "none" and (self.input_per_mtok is not None or self.output_per_mtok is not None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | str | None) -> PriceQuote:
        """Inverse of :meth:`to_dict`; also accepts its JSON text. Unknown keys are ignored."""
        if d is None:
            return cls()
        if isinstance(d, str):
            d = json.loads(d)
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok"):
            if kw.get(k) is not None:
                kw[k] = float(kw[k])
        return cls(**kw)


def is_api_model(cfg: ModelConfig) -> bool:
    """Priced per token: no hosting, no compute, and not a conventional (e.g. sklearn) provider.

    (Not every provider's config has ``hosting`` and ``compute``: a missing one counts as unset.)
    """
    return (
        getattr(cfg, "hosting", None) is None
        and getattr(cfg, "compute", None) is None
        and cfg.provider not in CONVENTIONAL_PROVIDERS
    )


_cache: dict[tuple, PriceQuote] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget cached quotes (tests; or after changing genai-prices)."""
    with _cache_lock:
        _cache.clear()


def _as_date(on: _dt.date | _dt.datetime | str | None) -> _dt.date:
    if on is None:
        return _dt.datetime.now(_dt.UTC).date()
    if isinstance(on, str):
        return _dt.date.fromisoformat(on[:10])
    if isinstance(on, _dt.datetime):
        if on.tzinfo is not None:
            on = on.astimezone(_dt.UTC)
        return on.date()
    return on


def quote(model_cfg: ModelConfig, on: _dt.date | _dt.datetime | str | None = None) -> PriceQuote:
    """The price list for ``model_cfg`` on date ``on`` (UTC; default today). Cached per (model, date).

    Explicit ``price`` wins; otherwise API models are looked up in genai-prices' bundled data by
    ``price_ref`` ("provider/model", the provider may be omitted) or by ``model``. Models priced by
    time (hosting, compute, sklearn) and models that match nothing get ``source="none"``.
    """
    day = _as_date(on)
    as_of = day.isoformat()
    # not every provider's config has these fields: a missing one counts as unset
    p, price_ref, model = (getattr(model_cfg, f, None) for f in ("price", "price_ref", "model"))
    if p is not None:
        return PriceQuote(
            input_per_mtok=float(p.input_per_mtok),
            output_per_mtok=float(p.output_per_mtok),
            cached_input_per_mtok=None if p.cached_input_per_mtok is None else float(p.cached_input_per_mtok),
            cache_write_per_mtok=None if p.cache_write_per_mtok is None else float(p.cache_write_per_mtok),
            source="config",
            provider_id=model_cfg.provider,
            model_id=model,
            as_of=as_of,
        )
    if not is_api_model(model_cfg):
        return PriceQuote(
            source="none",
            provider_id=model_cfg.provider,
            model_id=model,
            as_of=as_of,
            note="priced by time (hosting/compute), not by token",
        )
    if price_ref:
        provider_id, sep, model_ref = price_ref.partition("/")
        if not sep:
            provider_id, model_ref = None, price_ref
        provider_id = provider_id or None
    elif model:
        provider_id, model_ref = None, model
    else:
        return PriceQuote(
            source="none", provider_id=model_cfg.provider, as_of=as_of, note="no price, price_ref or model to look up"
        )
    key = (provider_id, model_ref, day)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    q = _lookup(model_ref, provider_id, day)
    with _cache_lock:
        _cache[key] = q
    return q


def _price_value(v: Any) -> tuple[float | None, bool]:
    """(base price as float, whether it was tiered)."""
    if v is None:
        return None, False
    base = getattr(v, "base", None)
    if base is not None and hasattr(v, "tiers"):
        return float(base), True
    return float(v), False


def _bundled_calc(usage, model_ref: str, provider_id: str | None, ts: _dt.datetime):
    """genai_prices.calc_price, but never from data fetched over the network."""
    # lazy: keeps genai_prices out of start-up
    import genai_prices
    from genai_prices import data_snapshot

    if getattr(data_snapshot.get_snapshot(), "from_auto_update", False):
        # Someone in this process started genai_prices.UpdatePrices: use the data shipped with the package.
        return data_snapshot._bundled_snapshot().calc(usage, model_ref, provider_id, None, ts)
    return genai_prices.calc_price(usage, model_ref, provider_id=provider_id, genai_request_timestamp=ts)


def _prevailing_price(model, day: _dt.date):
    """For time-of-day prices: the ModelPrice in force for the longest part of the UTC day, and its hours."""
    # lazy: keeps genai_prices out of start-up
    from genai_prices.types import TimeOfDateConstraint

    cuts = {0, 86400}
    for cp in model.prices:
        c = getattr(cp, "constraint", None)
        if isinstance(c, TimeOfDateConstraint):
            for t in (c.start_time, c.end_time):
                if t.tzinfo is not None:
                    t = _dt.datetime.combine(day, t).astimezone(_dt.UTC).time()
                cuts.add(t.hour * 3600 + t.minute * 60 + t.second)
    cuts = sorted(cuts)
    midnight = _dt.datetime.combine(day, _dt.time(0), tzinfo=_dt.UTC)
    seconds: dict[int, float] = {}
    order: list = []
    for a, b in zip(cuts, cuts[1:]):
        mp = model.get_prices(midnight + _dt.timedelta(seconds=(a + b) / 2))
        if id(mp) not in seconds:
            seconds[id(mp)] = 0.0
            order.append(mp)
        seconds[id(mp)] += b - a
    best = max(order, key=lambda mp: seconds[id(mp)])  # max keeps the first of equals: earliest in the day
    return best, seconds[id(best)] / 3600


def _lookup(model_ref: str, provider_id: str | None, day: _dt.date) -> PriceQuote:
    # lazy: keeps genai_prices out of start-up
    from genai_prices import Usage
    from genai_prices.types import TimeOfDateConstraint

    as_of = day.isoformat()
    # noon UTC: any time of the date would do for start-date constraints (compared on the UTC date)
    ts = _dt.datetime.combine(day, _dt.time(12), tzinfo=_dt.UTC)
    try:
        calc = _bundled_calc(Usage(input_tokens=0, output_tokens=0), model_ref, provider_id, ts)
    except (LookupError, ValueError) as e:
        return PriceQuote(source="none", provider_id=provider_id, model_id=model_ref, as_of=as_of, note=f"genai-prices: {e}")
    model, mp = calc.model, calc.model_price
    notes = []
    if isinstance(model.prices, list) and any(
        isinstance(getattr(cp, "constraint", None), TimeOfDateConstraint) for cp in model.prices
    ):
        mp, hours = _prevailing_price(model, day)
        notes.append(f"time-of-day prices: the price in force {hours:g} h of the UTC day")
    vals = {}
    tiered = False
    for ours, theirs in (
        ("input_per_mtok", "input_mtok"),
        ("output_per_mtok", "output_mtok"),
        ("cached_input_per_mtok", "cache_read_mtok"),
        ("cache_write_per_mtok", "cache_write_mtok"),
    ):
        vals[ours], t = _price_value(getattr(mp, theirs, None))
        tiered = tiered or t
    if tiered:
        notes.append("tiered prices: base tier")
    pid, mid = calc.provider.id, model.id
    if vals["input_per_mtok"] is None and vals["output_per_mtok"] is None:
        return PriceQuote(
            source="none", provider_id=pid, model_id=mid, as_of=as_of, note="genai-prices lists no token prices for this model"
        )
    return PriceQuote(**vals, source="genai-prices", provider_id=pid, model_id=mid, as_of=as_of, note="; ".join(notes) or None)


def _arr(x) -> np.ndarray:
    if hasattr(x, "to_numpy"):  # pandas Series / nullable arrays (pd.NA -> nan)
        return x.to_numpy(dtype=float, na_value=np.nan)
    return np.asarray(x, dtype=float)


def call_pricer(q: PriceQuote | None):
    """``price(prompt, completion, cached) -> USD`` for one call under ``q``, or None when unpriced.

    The scalar twin of :func:`token_cost` (same formula, plain arithmetic): the invoke stage
    prices every call as it returns, where numpy's per-call overhead would dominate.
    """
    if q is None or not q.priced:
        return None
    inp = (q.input_per_mtok or 0.0) / 1e6
    cached_in = inp if q.cached_input_per_mtok is None else q.cached_input_per_mtok / 1e6
    outp = (q.output_per_mtok or 0.0) / 1e6

    def price(prompt: int, completion: int, cached: int) -> float:
        return max(prompt - cached, 0) * inp + cached * cached_in + completion * outp

    return price


def token_cost(q: PriceQuote, prompt_tokens, completion_tokens, cached_tokens=0, cache_write_tokens=0):
    """USD for the tokens under quote ``q``; scalars or array-likes (numpy, pandas), broadcast.

    ``prompt_tokens`` is every input token, *including* the ``cached_tokens`` read from the provider's
    prompt cache and the ``cache_write_tokens`` written to it (OpenAI's and genai-prices' convention)::

        uncached = max(prompt - cached - cache_write, 0)
        cost = (uncached*input + cached*cached_input + cache_write*cache_write_price + completion*output) / 1e6

    ``cached_input`` and ``cache_write_price`` fall back to the input price when ``None``; a missing
    input or output price counts as 0 (e.g. embeddings have no output price). Missing (NaN/NA) cached or
    cache-write counts count as 0; NaN prompt/completion counts give NaN. An unpriced quote gives NaN.
    Returns a float for scalar inputs, else a numpy array.
    """
    p, c = _arr(prompt_tokens), _arr(completion_tokens)
    cr = np.nan_to_num(_arr(cached_tokens), nan=0.0)
    cw = np.nan_to_num(_arr(cache_write_tokens), nan=0.0)
    if not q.priced:
        out = np.full(np.broadcast(p, c, cr, cw).shape, np.nan)
    else:
        inp = q.input_per_mtok or 0.0
        outp = q.output_per_mtok or 0.0
        cached_in = inp if q.cached_input_per_mtok is None else q.cached_input_per_mtok
        write_in = inp if q.cache_write_per_mtok is None else q.cache_write_per_mtok
        uncached = np.maximum(p - cr - cw, 0.0)
        out = (uncached * inp + cr * cached_in + cw * write_in + c * outp) / 1e6
    if np.ndim(out) == 0:
        return float(out)
    return out


def day_key(d) -> str | None:
    """The UTC date of a request as ``YYYY-MM-DD``; None for a missing value (None, NaN, NaT, NA, "")."""
    if d is None:
        return None
    if isinstance(d, str):
        return _as_date(d).isoformat() if d else None
    if isinstance(d, np.datetime64):
        if np.isnat(d):
            return None
        return str(d.astype("datetime64[D]"))
    try:
        if d != d:  # NaN, NaT
            return None
    except TypeError:  # pd.NA
        return None
    return _as_date(d).isoformat()


_PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cached_input_per_mtok", "cache_write_per_mtok")


@dataclass(frozen=True)
class DatedQuotes:
    """One model's quotes per request date: each request is priced at the price in force on its own day.

    ``by_date`` maps ISO dates (``YYYY-MM-DD``, UTC) to the quote of that day; ``default`` prices requests
    without a date (the run's as_of quote). Quacks like a :class:`PriceQuote` where the cost model needs
    it (``priced``, ``source``, ``to_dict``); :meth:`token_cost` takes one date per request.
    """

    by_date: dict[str, PriceQuote] = field(default_factory=dict)
    default: PriceQuote = field(default_factory=PriceQuote)

    def for_date(self, day) -> PriceQuote:
        """The quote for a request on ``day`` (a date, datetime or ISO text; missing -> ``default``)."""
        key = day_key(day)
        return self.default if key is None else self.by_date.get(key, self.default)

    def _used(self) -> list[PriceQuote]:
        return [self.by_date[d] for d in sorted(self.by_date)] or [self.default]

    @property
    def priced(self) -> bool:
        return any(q.priced for q in self._used())

    @property
    def source(self) -> str:
        return next((q.source for q in self._used() if q.priced), self.default.source)

    def token_cost(self, dates, prompt_tokens, completion_tokens, cached_tokens=0, cache_write_tokens=0) -> np.ndarray:
        """USD per request: :func:`token_cost` under the quote of each request's date (array-likes)."""
        p, c = _arr(prompt_tokens), _arr(completion_tokens)
        cr, cw = _arr(cached_tokens), _arr(cache_write_tokens)
        shape = np.broadcast(p, c, cr, cw).shape
        p, c, cr, cw = (np.broadcast_to(x, shape) for x in (p, c, cr, cw))
        days = np.asarray(list(dates) if not isinstance(dates, np.ndarray) else dates, dtype=object)
        days = np.broadcast_to(days, shape)
        keys = np.array([day_key(d) for d in days.ravel()], dtype=object).reshape(shape)
        out = np.empty(shape, dtype=float)
        for key in dict.fromkeys(keys.ravel().tolist()):
            sel = keys == key
            q = self.default if key is None else self.by_date.get(key, self.default)
            out[sel] = token_cost(q, p[sel], c[sel], cr[sel], cw[sel])
        return out

    def to_dict(self) -> dict[str, Any]:
        """One date: that day's quote. Several: a compact record, consecutive dates at one price merged
        into a period ``{from, to, dates, <prices>}`` (``dates`` counts the request dates in it)."""
        days = sorted(self.by_date)
        if len(days) <= 1:
            return (self.by_date[days[0]] if days else self.default).to_dict()
        periods: list[dict[str, Any]] = []
        for d in days:
            q = self.by_date[d]
            prices = {k: getattr(q, k) for k in _PRICE_FIELDS}
            if periods and periods[-1]["source"] == q.source and all(periods[-1][k] == v for k, v in prices.items()):
                periods[-1]["to"] = d
                periods[-1]["dates"] += 1
            else:
                periods.append({"from": d, "to": d, "dates": 1, "source": q.source, **prices})
        first = self._used()[0]
        return {
            "priced_by": "request date",
            "source": self.source,
            "provider_id": first.provider_id,
            "model_id": first.model_id,
            "as_of": self.default.as_of,
            "note": first.note,
            "dates": len(days),
            "first_date": days[0],
            "last_date": days[-1],
            "periods": periods,
        }
