"""The cost model: dollars per run, per request and per month, for API, self-hosted and conventional models.

Pure functions, pandas in and pandas out; prices come from :mod:`assay.pricing` quotes decided by the
caller (the cost stage records them, so a past run's dollars never change).

Three kinds of model, three monthly-cost functions of the monthly volume ``M`` (requests a month):

* **api** (priced per token)::

      monthly(M) = c_api * M                       c_api = mean token cost of a request in this run

* **self-hosted** (``hosting``: priced by the hour; ``r`` = usd_per_hour of one replica, ``T`` = its
  throughput in requests/s, ``R`` = always-on replicas)::

      c       = r / (T * 3600)                     cost of one request at full use of a replica
      floor   = R * r * 730                        the always-on replicas, paid whether used or not
      monthly(M) = max(floor, c * M)
                 = floor + max(0, needed_hours - floor_hours) * r
                   with needed_hours = M / (T * 3600), floor_hours = R * 730

  i.e. the floor pays for the first ``R * T * 3600 * 730`` requests; beyond that capacity scales with
  volume (more replica-hours at the same hourly rate).

* **conventional** (``compute``, or provider sklearn with ``Compute()`` defaults; ``u`` = usd_per_hour
  of one serving instance, ``I`` = ``instances`` always up to answer, default 1)::

      c          = (compute_s / requests) * u / 3600     compute time of a request at the hourly rate
      floor      = I * u * 730                           the always-on instances, paid whether used or not
      training   = train_s * u / 3600 / amortise_months  training, amortised
      monthly(M) = training + max(floor, c * M)
                 = training + max(instances * u * 730, needed_hours * u),  needed_hours = M * c / u

  A conventional model needs a running service just as a self-hosted LLM does; ``instances: 0``
  says it truly pays per call (a serverless function), and then ``monthly(M) = training + c * M``.

All three are ``A + max(B, c*M)`` (api: A=B=0; self-hosted: A=0, B=floor; conventional: A=training,
B=floor), which is how :func:`monthly_cost_usd` computes them and :func:`breakeven` solves them.
A cost row keeps ``B`` as ``floor_monthly_usd`` and ``A + B`` (what a month costs at no volume) as
``fixed_monthly_usd``.

Throughput of a self-hosted model (``T`` above), in order: ``hosting.throughput_rps``; for a
``replay`` model, what the log recorded (:func:`logged_throughput`: never how fast Assay read the
log); the recorded serving operating point of ``assay capacity``; the requests per second measured
when Assay called the endpoint.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from assay.config import Compute, Hardware, Hosting, ModelConfig
from assay.pricing import CONVENTIONAL_PROVIDERS, DatedQuotes, PriceQuote, token_cost

__all__ = [
    "HOURS_PER_MONTH",
    "HOURS_PER_YEAR",
    "COST_COLUMNS",
    "FIXED_COST_KINDS",
    "PRICE_DATE",
    "hardware_usd_per_hour",
    "hosting_usd_per_hour",
    "model_kind",
    "monthly_cost_usd",
    "cost_table",
    "Usage",
    "usage_of",
    "breakeven",
    "busy_seconds",
    "logged_throughput",
    "monthly_terms",
    "replayed",
    "serving_text",
    "pareto_front",
    "cheapest_passing",
]

HOURS_PER_MONTH = 730
HOURS_PER_YEAR = 8760

COST_COLUMNS = [
    "model",
    "kind",
    "requests",
    "errors",
    "cache_hits",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_per_1k_usd",
    "cost_per_correct_usd",
    "latency_p50_s",
    "latency_p95_s",
    "latency_p99_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "throughput_rps",
    "latency_p05_s",
    "latency_p25_s",
    "latency_p75_s",
    "monthly_requests",
    "monthly_cost_usd",
    "fixed_monthly_usd",
    "floor_monthly_usd",
    "usd_per_hour",
    "price_source",
    "price_json",
]

FIXED_COST_KINDS = ("self-hosted", "conventional")

#: Optional responses column: the date (ISO text or date) whose price applies to the row, used when a
#: model's quote is a :class:`assay.pricing.DatedQuotes` (rows without it take the default quote).
PRICE_DATE = "price_date"
NAN = float("nan")


# ---------------------------------------------------------------------------------------------- hourly prices


def hardware_usd_per_hour(hw: Hardware, gpus: int = 1) -> float:
    """Hourly cost of owning and running one machine, per *machine*-hour of useful work::

        (  purchase / (depreciation_years * 8760)        straight-line depreciation
         + purchase * maintenance_rate / 8760             maintenance, a yearly share of the purchase
         + power_kw * pue * usd_per_kwh                   electricity, with datacentre overhead (PUE)
        ) / utilisation                                   idle hours are paid by the busy ones

    The ``Hardware`` figures describe the whole machine (its purchase price and power draw include all of
    its ``gpus`` GPUs), so ``gpus`` does not scale the result; it is accepted so callers can pass
    ``hosting.gpus`` symmetrically with ``usd_per_gpu_hour * gpus``.
    Example: 30 000 USD, 3 years, 10 %/yr, 0.7 kW, PUE 1.4, 0.15 USD/kWh, 100 % utilisation:
    30000/26280 + 3000/8760 + 0.147 = 1.141553 + 0.342466 + 0.147 = 1.631019 USD/h.
    """
    del gpus  # the figures are per machine
    per_hour = (
        hw.purchase_usd / (hw.depreciation_years * HOURS_PER_YEAR)
        + hw.purchase_usd * hw.maintenance_rate / HOURS_PER_YEAR
        + hw.power_kw * hw.pue * hw.usd_per_kwh
    )
    return per_hour / hw.utilisation


def hosting_usd_per_hour(h: Hosting) -> float:
    """USD per hour for one replica: ``usd_per_gpu_hour * gpus`` if given, else the hardware figure."""
    if h.usd_per_gpu_hour is not None:
        return h.usd_per_gpu_hour * h.gpus
    return hardware_usd_per_hour(h.hardware, h.gpus)


def model_kind(cfg: ModelConfig | None, q: PriceQuote | None = None) -> str:
    """ "self-hosted" (hosting), "conventional" (compute, or sklearn), "api" (priced quote) or "unpriced".

    (Not every provider's config has ``hosting`` and ``compute``: a missing one counts as unset.)
    """
    if getattr(cfg, "hosting", None) is not None:
        return "self-hosted"
    if cfg is not None and (getattr(cfg, "compute", None) is not None or cfg.provider in CONVENTIONAL_PROVIDERS):
        return "conventional"
    if q is not None and q.priced:
        return "api"
    return "unpriced"


# ---------------------------------------------------------------------------------------------- monthly costs


def monthly_terms(kind: str, fixed_monthly_usd: float, floor_monthly_usd: float | None = None) -> tuple[float, float]:
    """(A, B) of ``monthly(M) = A + max(B, c*M)``: see the module docstring. ``floor_monthly_usd``
    is a cost row's ``B`` and ``fixed_monthly_usd`` its ``A + B``; without a floor (a cost table
    written before conventional models had one) the kind decides: self-hosted B = fixed,
    conventional A = fixed."""
    fixed = 0.0 if _isnan(fixed_monthly_usd) else float(fixed_monthly_usd)
    if kind not in FIXED_COST_KINDS:
        return 0.0, 0.0
    if not _isnan(floor_monthly_usd):
        floor = float(floor_monthly_usd)
        return fixed - floor, floor
    if kind == "self-hosted":
        return 0.0, fixed
    return fixed, 0.0


def monthly_cost_usd(
    kind: str, fixed_monthly_usd: float, usd_per_request: float, monthly_requests, floor_monthly_usd: float | None = None
) -> float:
    """Monthly cost at ``monthly_requests`` requests (scalar or array); NaN when unknown.

    ``A + max(B, c*M)`` with (A, B) from :func:`monthly_terms`: self-hosted ``max(floor, c*M)``;
    conventional ``training + max(floor, c*M)``; api ``c*M`` (see the module docstring).
    """
    if monthly_requests is None:
        return NAN
    a, b = monthly_terms(kind, fixed_monthly_usd, floor_monthly_usd)
    m = np.asarray(monthly_requests, dtype=float)
    c = NAN if usd_per_request is None else float(usd_per_request)
    if _isnan(c) and a + b > 0:
        # per-request cost unknown: still the fixed cost while no request is made
        out = np.where(m == 0, a + b, NAN)
    else:
        out = a + np.maximum(b, c * m)
    return float(out) if np.ndim(out) == 0 else out


def _isnan(x) -> bool:
    try:
        return x is None or x is pd.NA or math.isnan(float(x))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- cost table


def _col(df: pd.DataFrame, name: str, default) -> pd.Series:
    if name in df.columns:
        return df[name]
    return pd.Series(default, index=df.index)


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _percentile(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else NAN


def cost_table(
    responses: pd.DataFrame,
    models: Mapping[str, ModelConfig],
    quotes: Mapping[str, PriceQuote | DatedQuotes],
    stats: Mapping[str, Mapping[str, Any]],
    monthly_requests: int | None,
    correct: Mapping[str, float] | None = None,
    capacity: Mapping[str, Mapping[str, Any]] | None = None,
) -> pd.DataFrame:
    """One row per model in ``responses``, columns :data:`COST_COLUMNS`. ``responses`` is the
    response rows (a DataFrame), or each model's :class:`Usage` in the order the rows would list them.

    * ``requests`` are all rows (errors included), ``errors`` the rows with an error, ``cache_hits`` the
      rows served from Assay's response cache, which are still priced as if paid (that is what the call
      costs in production).
    * api: ``cost_usd`` is :func:`assay.pricing.token_cost` summed over the rows (missing token counts
      count 0); with a :class:`assay.pricing.DatedQuotes` each row is priced at the quote of its
      :data:`PRICE_DATE` and ``price_json`` is the compact per-period record; the monthly figure is the mean cost of a request times ``monthly_requests``. A quote with
      ``source="none"`` makes the model "unpriced" with NaN costs.
    * self-hosted / conventional: see the module docstring; ``cost_usd = requests * per-request cost``.
    * ``throughput_rps``: ``hosting.throughput_rps`` if set; else the recorded serving operating point
      (``capacity[model]`` with ``used``, from :func:`assay.capacity.operating_points`); else successful requests that were *not*
      cache hits per second of ``stats[model]["wall_s"]`` (cache hits take no serving time, so they
      would inflate the throughput and deflate the self-hosted cost); without such rows or without
      ``wall_s`` (e.g. every success was a cache hit), Little's law on the recorded latencies of the
      successful rows, ``concurrency / mean latency`` (concurrency defaults to 1).
    * ``cost_per_correct_usd``: ``cost_usd / correct[model]``; NaN without correctness, inf when no
      answer was correct.
    * latency percentiles (5th, 25th, 50th, 75th, 95th, 99th) are over successful rows (``error`` null).
    * ``monthly_cost_usd`` is NaN when ``monthly_requests`` is None.
    """
    correct = correct or {}
    if isinstance(responses, Mapping):  # {model: Usage}, read batch by batch (see usage_of)
        present = [m for m, u in responses.items() if u.requests]
    else:
        present = list(pd.unique(responses["model"])) if "model" in responses.columns and len(responses) else []
    names = [m for m in models if m in present] + [m for m in present if m not in models]
    capacity = capacity or {}
    rows = [
        _model_row(
            name,
            responses[name] if isinstance(responses, Mapping) else responses[responses["model"] == name],
            models.get(name),
            quotes.get(name),
            stats.get(name) or {},
            monthly_requests,
            correct.get(name),
            capacity.get(name),
        )
        for name in names
    ]
    out = pd.DataFrame(rows, columns=COST_COLUMNS)
    for c in ("requests", "errors", "cache_hits"):
        out[c] = out[c].astype("int64")
    return out


@dataclass
class Usage:
    """What a model's cost row is computed from: counts and token sums over its response rows, the
    latencies of its successful rows and (API models) each row's dollars. :func:`usage_of` makes
    one from a table of rows; ``+`` joins those of consecutive batches (the figures are the same
    as one table's), so the cost stage reads responses batch by batch."""

    requests: int = 0
    errors: int = 0
    cache_hits: int = 0
    fresh_ok: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    latency: list = field(default_factory=list)  # arrays of successful rows' latencies (NaN dropped)
    row_usd: list = field(default_factory=list)  # arrays of each row's dollars (API models)
    spans: list = field(default_factory=list)  # (start, end) arrays in seconds of successful rows (replayed logs)
    ttft: list = field(default_factory=list)  # arrays of streamed successful rows' times to first token

    def __add__(self, o: Usage) -> Usage:
        return Usage(
            self.requests + o.requests,
            self.errors + o.errors,
            self.cache_hits + o.cache_hits,
            self.fresh_ok + o.fresh_ok,
            self.prompt_tokens + o.prompt_tokens,
            self.completion_tokens + o.completion_tokens,
            self.cached_tokens + o.cached_tokens,
            self.latency + o.latency,
            self.row_usd + o.row_usd,
            self.spans + o.spans,
            self.ttft + o.ttft,
        )


def replayed(cfg) -> bool:
    """Whether ``cfg`` is a replayed log, whose throughput is the logged deployment's (the figures
    of a self-hosted one's dollars), never how fast Assay read the log."""
    return getattr(cfg, "provider", None) == "replay"


def usage_of(df: pd.DataFrame, q=None, priced: bool = False, spans: bool = False) -> Usage:
    """A model's :class:`Usage` over the rows of ``df``; with ``priced`` (an API model) each row is
    priced under ``q`` (a :class:`DatedQuotes` at each row's :data:`PRICE_DATE`); with ``spans`` (a
    replayed log) each successful row's ``started_at`` to ``started_at + latency_s``, in seconds."""
    error = _col(df, "error", None)
    ok = (error.isna() | error.map(lambda e: isinstance(e, str) and e == "")).to_numpy(dtype=bool)
    cached = _col(df, "cached", False).fillna(False).astype(bool).to_numpy()
    prompt = _num(_col(df, "prompt_tokens", 0)).fillna(0.0)
    completion = _num(_col(df, "completion_tokens", 0)).fillna(0.0)
    cached_tok = _num(_col(df, "cached_tokens", 0)).fillna(0.0)
    latency = _num(_col(df, "latency_s", NAN)).to_numpy()[ok]
    ttft = _num(_col(df, "ttft_s", NAN)).to_numpy()[ok & ~cached]  # a cache hit was not streamed now
    row_usd = []
    if priced:
        write_tok = _num(_col(df, "cache_write_tokens", 0)).fillna(0.0)
        if isinstance(q, DatedQuotes):  # each row at the price of its own date (see PRICE_DATE)
            row_usd = [
                q.token_cost(
                    _col(df, PRICE_DATE, None).to_numpy(dtype=object),
                    prompt.to_numpy(),
                    completion.to_numpy(),
                    cached_tok.to_numpy(),
                    write_tok.to_numpy(),
                )
            ]
        else:
            row_usd = [
                np.asarray(
                    token_cost(q, prompt.to_numpy(), completion.to_numpy(), cached_tok.to_numpy(), write_tok.to_numpy()),
                    dtype=float,
                )
            ]
    span = []
    if spans and "started_at" in df.columns and len(df):
        t = pd.to_datetime(df["started_at"], utc=True)
        has = t.notna().to_numpy()
        start = np.full(len(df), NAN)
        # whole microseconds since the epoch, whatever unit the frame holds: the same seconds in every reader
        start[has] = t[has].dt.as_unit("us").astype("int64").to_numpy() / 1e6
        lat_all = _num(_col(df, "latency_s", NAN)).to_numpy()
        keep = ok & ~np.isnan(start) & ~np.isnan(lat_all)
        span = [np.column_stack([start[keep], start[keep] + lat_all[keep]])]
    return Usage(
        len(df),
        int((~ok).sum()),
        int(cached.sum()),
        int((ok & ~cached).sum()),
        int(prompt.sum()),
        int(completion.sum()),
        int(cached_tok.sum()),
        [latency[~np.isnan(latency)]],
        row_usd,
        span,
        [ttft[~np.isnan(ttft)]],
    )


def busy_seconds(spans: np.ndarray) -> float:
    """The length of the union of ``(start, end)`` intervals (rows of ``spans``): the time at least
    one request was in flight. Sorted first and summed exactly, so any order of the rows (one
    process, shards on a cluster, a resumed run's parts) gives the same figure to the last bit."""
    if not len(spans):
        return 0.0
    order = np.lexsort((spans[:, 1], spans[:, 0]))
    s, e = spans[order, 0], spans[order, 1]
    reach = np.maximum.accumulate(e)
    new = np.ones(len(s), dtype=bool)
    new[1:] = s[1:] > reach[:-1]
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(s) - 1)
    return math.fsum((reach[last] - s[first]).tolist())


def logged_throughput(cfg, u: Usage, logged_times: bool) -> tuple[float, str, dict]:
    """The throughput of a replayed self-hosted deployment, from what its log recorded: ``(requests
    per second, the source in words, the figures behind it)``; never how fast Assay read the log.

    * ``max_concurrency`` set in the model's config: Little's law, ``max_concurrency / mean logged
      latency`` (the deployment held that many requests in flight);
    * otherwise, with each request's logged time (``logged_at``): the successful requests per second
      of the deployment's busy time, the union of ``[request_time, request_time + latency_s]``;
    * otherwise Little's law at the default ``max_concurrency``.

    Sums are exact (``math.fsum``), so the figure is the same however the rows were read."""
    lat = np.concatenate(u.latency) if u.latency else np.zeros(0)
    n = len(lat)
    concurrency = int(getattr(cfg, "max_concurrency", 1) or 1)
    explicit = "max_concurrency" in getattr(cfg, "model_fields_set", ())
    total = math.fsum(lat.tolist())
    spans = np.concatenate(u.spans) if u.spans else np.zeros((0, 2))
    figures = {"logged_requests": n, "mean_latency_s": total / n if n else None, "concurrency": concurrency}
    if logged_times and len(spans):
        figures["busy_s"] = busy_seconds(spans)
        figures["busy_requests"] = len(spans)
    if not explicit and figures.get("busy_s"):
        rps = figures["busy_requests"] / figures["busy_s"]
        return (
            rps,
            (
                f"log: {figures['busy_requests']} requests in {figures['busy_s']:.1f} s of the logged deployment's "
                "busy time (request_time to request_time + latency_s)"
            ),
            figures,
        )
    if n and total > 0:
        rps = concurrency / (total / n)
        return (
            rps,
            (
                f"log: Little's law, {concurrency} in flight (max_concurrency{'' if explicit else ', the default'}) / "
                f"mean logged latency {total / n:.4f} s over {n} requests"
            ),
            figures,
        )
    return NAN, "log: no latency recorded", figures


def serving_text(row, short: bool = False) -> str:
    """How a served option's monthly cost was assumed, in words (a cost row with ``kind`` and
    ``price_json``): ``1 always-on instance at $0.0208/hour, $15.18 a month whatever the volume``
    (``short``: without the monthly figure) or ``paid per call only, no always-on instance, at $0.06/hour of compute`` (``instances: 0``)."""
    pj = row.get("price_json") if hasattr(row, "get") else getattr(row, "price_json", None)
    try:
        info = json.loads(pj) if isinstance(pj, str) else dict(pj or {})
    except (TypeError, ValueError):
        return ""
    kind = row.get("kind") if hasattr(row, "get") else getattr(row, "kind", None)
    n = info.get("instances") if kind == "conventional" else info.get("replicas")
    unit = "instance" if kind == "conventional" else "replica"
    rate = info.get("usd_per_hour")
    if kind not in FIXED_COST_KINDS or n is None or rate is None:
        return ""
    if n == 0:
        return f"paid per call only, no always-on {unit}, at ${rate:g}/hour of compute"
    text = f"{n} always-on {unit}{'s' if n != 1 else ''} at ${rate:g}/hour"
    return text if short else f"{text}, ${n * rate * HOURS_PER_MONTH:,.2f} a month whatever the volume"


def _model_row(name, df, cfg, q, st, monthly_requests, n_correct, cap=None) -> dict:
    """One cost row; ``df`` is the model's response rows, or their :class:`Usage`."""
    kind = model_kind(cfg, q)
    u = df if isinstance(df, Usage) else usage_of(df, q, kind == "api", replayed(cfg))
    requests = u.requests
    latency = np.concatenate(u.latency) if u.latency else np.zeros(0)
    ttft = np.concatenate(u.ttft) if u.ttft else np.zeros(0)
    n_ok = requests - u.errors

    # throughput
    wall_s = st.get("wall_s")
    fresh_ok = u.fresh_ok
    throughput = NAN
    throughput_source = None
    logged = None
    hosting, compute = getattr(cfg, "hosting", None), getattr(cfg, "compute", None)  # not every provider has them
    if hosting is not None and hosting.throughput_rps:
        throughput, throughput_source = float(hosting.throughput_rps), "override"
    elif replayed(cfg):
        # what the logged deployment did, never how fast this run read its log (that depends on the machine)
        throughput, throughput_source, logged = logged_throughput(cfg, u, bool(st.get("logged_request_times")))
    elif hosting is not None and cap and cap.get("used"):
        throughput = float(cap["throughput_rps"])
        throughput_source = f"capacity: concurrency {cap.get('concurrency')}, measured {str(cap.get('measured_at'))[:10]}"
    elif st.get("throughput_rps"):
        # measured when the calls were made (kept when a run is reproduced or repriced from cache)
        throughput, throughput_source = float(st["throughput_rps"]), "measured"
    elif fresh_ok and wall_s and wall_s > 0:
        throughput, throughput_source = fresh_ok / float(wall_s), "measured"
    elif n_ok and len(latency) and latency.mean() > 0:
        throughput = float(st.get("concurrency") or 1) / float(latency.mean())
        throughput_source = "little's law: concurrency / mean latency"

    fixed = floor = 0.0
    usd_per_hour = NAN
    per_request = NAN
    cost = NAN
    if kind == "self-hosted":
        h = hosting
        usd_per_hour = hosting_usd_per_hour(h)
        fixed = floor = h.replicas * usd_per_hour * HOURS_PER_MONTH
        if throughput > 0:
            per_request = usd_per_hour / (throughput * 3600)
            cost = requests * per_request
        source = "hosting"
        pj = {
            "usd_per_hour": usd_per_hour,
            "usd_per_gpu_hour": h.usd_per_gpu_hour,
            "gpus": h.gpus,
            "hardware": h.hardware.model_dump() if h.hardware is not None else None,
            "replicas": h.replicas,
            "throughput_rps": None if _isnan(throughput) else throughput,
            "throughput_source": throughput_source,
            "floor_monthly_usd": floor,
        }
        if logged is not None:
            pj["throughput_log"] = logged
    elif kind == "conventional":
        comp = compute or Compute()
        usd_per_hour = float(comp.usd_per_hour)
        compute_s = st.get("compute_s")
        compute_source = "compute_s"
        if compute_s is None:
            compute_s, compute_source = wall_s, "wall_s"
        train_s = float(st.get("train_s") or 0.0)
        train_usd = train_s * usd_per_hour / 3600
        floor = comp.instances * usd_per_hour * HOURS_PER_MONTH
        fixed = floor + train_usd / comp.amortise_months
        if compute_s is not None and requests:
            per_request = (float(compute_s) / requests) * usd_per_hour / 3600
            cost = requests * per_request
        source = "compute"
        pj = {
            "usd_per_hour": usd_per_hour,
            "amortise_months": comp.amortise_months,
            "compute_s": None if compute_s is None else float(compute_s),
            "compute_source": compute_source,
            "train_s": train_s,
            "train_usd": train_usd,
            "training_monthly_usd": train_usd / comp.amortise_months,
            "instances": comp.instances,
            "floor_monthly_usd": floor,
            "defaults": compute is None,
        }
    elif kind == "api":
        row_usd = np.concatenate(u.row_usd) if u.row_usd else np.zeros(0)
        cost = float(np.sum(row_usd))
        per_request = cost / requests if requests else NAN
        source = q.source
        pj = q.to_dict()
    else:
        fixed = floor = NAN
        source = "none"
        pj = (q or PriceQuote(model_id=getattr(cfg, "model", None))).to_dict()

    if n_correct is None or _isnan(n_correct):
        per_correct = NAN
    elif n_correct > 0:
        per_correct = cost / n_correct
    else:
        per_correct = math.inf if (not _isnan(cost) and cost > 0) else NAN
    return {
        "model": name,
        "kind": kind,
        "requests": requests,
        "errors": u.errors,
        "cache_hits": u.cache_hits,
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "cached_tokens": u.cached_tokens,
        "cost_usd": cost,
        "cost_per_1k_usd": per_request * 1000,
        "cost_per_correct_usd": per_correct,
        "latency_p50_s": _percentile(latency, 50),
        "latency_p95_s": _percentile(latency, 95),
        "latency_p99_s": _percentile(latency, 99),
        "ttft_p50_s": _percentile(ttft, 50),
        "ttft_p95_s": _percentile(ttft, 95),
        "throughput_rps": throughput,
        # the rest of the report's latency box: every latency percentile is computed here, once
        "latency_p05_s": _percentile(latency, 5),
        "latency_p25_s": _percentile(latency, 25),
        "latency_p75_s": _percentile(latency, 75),
        "monthly_requests": NAN if monthly_requests is None else float(monthly_requests),
        "monthly_cost_usd": NAN if kind == "unpriced" else monthly_cost_usd(kind, fixed, per_request, monthly_requests, floor),
        "fixed_monthly_usd": fixed,
        "floor_monthly_usd": floor,
        "usd_per_hour": usd_per_hour,
        "price_source": source,
        "price_json": json.dumps(pj, sort_keys=True, default=str),
    }


# ---------------------------------------------------------------------------------------------- breakeven


def _breakeven_volume(kind: str, fixed: float, c: float, c_api: float, floor: float | None = None) -> tuple[float, str]:
    """Smallest M such that the option is cheaper than the API for every volume above M.

    Option: ``A + max(B, c*M)``; API: ``c_api*M``. Both are piecewise linear, so solve per piece:
    while the floor binds (``c*M <= B``) the option costs ``A+B`` and wins above ``(A+B)/c_api``;
    once it scales it costs ``A + c*M`` and wins above ``A/(c_api - c)``. Only possible if ``c < c_api``.
    """
    if any(_isnan(v) for v in (fixed, c, c_api)):
        return NAN, "unpriced: per-request cost unknown"
    a, b = monthly_terms(kind, fixed, floor)
    if c >= c_api:
        return math.inf, "never: the option's cost per request is not below the API's"
    if a + b == 0:
        return 0.0, "always cheaper: no fixed cost and a lower cost per request"
    if b == 0:  # fixed + c*M < c_api*M
        return a / (c_api - c), "fixed monthly cost / (API cost per request - option cost per request)"
    m_floor = (a + b) / c_api  # crossing while the floor binds: A + B < c_api*M
    if c * m_floor <= b:
        return m_floor, "fixed monthly floor / API cost per request (the floor's capacity is not yet exceeded)"
    return a / (c_api - c), "crosses after capacity scales beyond the floor"


def breakeven(costs: pd.DataFrame) -> pd.DataFrame:
    """For every (self-hosted/conventional option, api model) pair of a :func:`cost_table`: the monthly
    volume above which the option is cheaper than the API.

    Columns ``option, api, option_fixed_monthly_usd, option_usd_per_request, api_usd_per_request,
    breakeven_monthly_requests, note``. ``breakeven_monthly_requests`` is ``inf`` when the option is never
    cheaper (its cost per request is not below the API's), NaN when a cost is unknown, 0 when it is
    always cheaper. Solved exactly on the piecewise-linear monthly functions (see the module docstring).
    """
    cols = [
        "option",
        "api",
        "option_fixed_monthly_usd",
        "option_usd_per_request",
        "api_usd_per_request",
        "breakeven_monthly_requests",
        "note",
    ]
    options = costs[costs["kind"].isin(FIXED_COST_KINDS)]
    apis = costs[costs["kind"] == "api"]
    rows = []
    for _, o in options.iterrows():
        c_o = o["cost_per_1k_usd"] / 1000
        for _, a in apis.iterrows():
            c_a = a["cost_per_1k_usd"] / 1000
            m, note = _breakeven_volume(o["kind"], o["fixed_monthly_usd"], c_o, c_a, o.get("floor_monthly_usd"))
            rows.append(
                {
                    "option": o["model"],
                    "api": a["model"],
                    "option_fixed_monthly_usd": o["fixed_monthly_usd"],
                    "option_usd_per_request": c_o,
                    "api_usd_per_request": c_a,
                    "breakeven_monthly_requests": m,
                    "note": note,
                }
            )
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------------------------- choosing


def pareto_front(
    table: pd.DataFrame, quality_col: str, cost_col: str = "cost_per_1k_usd", higher_is_better: bool = True
) -> pd.Series:
    """Boolean Series (index of ``table``): True for models no other model dominates, i.e. no other
    model is at least as good on quality and as cheap, and strictly better on one of them.
    Rows with a missing quality or cost are neither on the front nor dominate others."""
    q = pd.to_numeric(table[quality_col], errors="coerce").to_numpy(dtype=float)
    c = pd.to_numeric(table[cost_col], errors="coerce").to_numpy(dtype=float)
    if not higher_is_better:
        q = -q
    valid = ~(np.isnan(q) | np.isnan(c))
    front = valid.copy()
    for i in np.flatnonzero(valid):
        others = valid.copy()
        others[i] = False
        dominated = others & (q >= q[i]) & (c <= c[i]) & ((q > q[i]) | (c < c[i]))
        front[i] = not dominated.any()
    return pd.Series(front, index=table.index, name="pareto")


def _bar(spec, key: str):
    if isinstance(spec, Mapping):
        return spec.get(key)
    return getattr(spec, key, None)


def cheapest_passing(table: pd.DataFrame, bars: Mapping[str, Any]) -> str | None:
    """The model with the lowest ``monthly_cost_usd`` (``cost_per_1k_usd`` when no volume is known) among
    those meeting every bar, e.g. ``{"accuracy": {"min": 0.85}, "latency_p95_s": {"max": 2}}``.

    Bars (mappings or objects with ``min``/``max``, like ``config.Gate``) apply to the columns present in
    ``table``; bars on absent columns are skipped. A missing value fails a bar. Models with an unknown
    cost are not chosen. ``None`` when no model qualifies. Ties go to the first in the table.
    """
    if len(table) == 0:
        return None
    ok = pd.Series(True, index=table.index)
    for col, spec in bars.items():
        if col not in table.columns:
            continue
        v = pd.to_numeric(table[col], errors="coerce")
        lo, hi = _bar(spec, "min"), _bar(spec, "max")
        if lo is not None:
            ok &= v >= lo
        if hi is not None:
            ok &= v <= hi
    passing = table[ok.fillna(False).astype(bool)]
    cost_col = "cost_per_1k_usd"
    if "monthly_cost_usd" in passing.columns and pd.to_numeric(passing["monthly_cost_usd"], errors="coerce").notna().any():
        cost_col = "monthly_cost_usd"
    if cost_col not in passing.columns:
        return None
    cost = pd.to_numeric(passing[cost_col], errors="coerce")
    cost = cost[cost.notna()]
    if cost.empty:
        return None
    best = cost.idxmin()
    return str(passing.loc[best, "model"]) if "model" in passing.columns else str(best)
