"""The serving operating point of a self-hosted model: a load sweep, the SLO, and the record the cost stage reads.

``assay capacity MODEL`` (:mod:`flows.cli.capacity`) calls :func:`measure`: for each concurrency ``c``
of the sweep, ``c`` clients each send their next streamed request as soon as the last one ends,
until the level's requests are done. Per request: time to first token (TTFT), the mean gap between
content chunks after it (ITL), the whole latency, tokens. Per level (:func:`summarize`): requests/s
and output tokens/s over the level's wall time, p50/p95 of each latency, the error share, goodput
(requests that met every latency clause of the SLO, per second), and whether the level meets the
SLO. :func:`choose` picks the level with the highest throughput among those that meet it.

The record (:func:`write_record`) goes to the artifact root's ``_capacity/<model>.json`` (and the
sweep to ``<model>.parquet``) with the date, the SLO and :func:`capacity_hash` of the model's
config; the cost stage (:func:`operating_points`) prices a ``hosting:`` model at the recorded
throughput while that hash still matches. Precedence there: ``hosting.throughput_rps`` > the
recorded operating point > the throughput measured in the run.
"""

from __future__ import annotations

import asyncio
import difflib
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from assay.dataset import load_prepared
from assay.errors import AssayError
from assay.prompting import render_requests
from assay.providers import ProviderError
from assay.providers.openai_compat import OpenAIProvider

if TYPE_CHECKING:
    from assay.store import Store

log = logging.getLogger("assay.capacity")

DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32, 64)
#: the error share a level may have when the SLO does not say (``error_rate=``)
DEFAULT_ERROR_RATE = 0.01
#: throughputs within this share of the best count as equal: the lower concurrency wins (same
#: throughput at lower latency), so noise alone never pushes the operating point up
TIE_SHARE = 0.02
SYNTHETIC_PROMPT = "Write a short paragraph for a customer who asked how to reset their password, in plain and friendly language."

#: model config keys that price a model or limit Assay's own calls, not what its endpoint serves:
#: a change to one of them keeps a recorded operating point valid
_NOT_SERVING = ("price", "price_ref", "max_concurrency", "rpm", "tpm", "max_attempts", "timeout_s", "client", "version", "stream")
_NOT_SERVING_HOSTING = ("usd_per_gpu_hour", "hardware", "replicas", "throughput_rps")

_METRICS = ("latency", "ttft", "itl")
_SLO_KEY = re.compile(r"^(?:(p50|p90|p95|p99)_)?(latency|ttft|itl)_s$")

LEVEL_COLUMNS = [
    "concurrency",
    "requests",
    "errors",
    "error_rate",
    "wall_s",
    "rps",
    "output_tok_s",
    "latency_p50_s",
    "latency_p95_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "itl_p50_s",
    "itl_p95_s",
    "goodput_rps",
    "meets_slo",
    "missed",
]


class CapacityError(AssayError, ValueError):
    """Bad input to a sweep (a level list, an SLO clause, a model that is not self-hosted): exit 2."""


# ---------------------------------------------------------------------------------------------- arguments


def parse_levels(text: str | None) -> list[int]:
    """``"1,2,4,8"`` as sorted distinct positive integers (default :data:`DEFAULT_LEVELS`)."""
    if text is None or not text.strip():
        return list(DEFAULT_LEVELS)
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            c = int(part)
        except ValueError:
            raise CapacityError(f"--concurrency: {part!r} is not a whole number") from None
        if c < 1 or c > 4096:
            raise CapacityError(f"--concurrency: {c} is out of range (1 to 4096)")
        out.add(c)
    if not out:
        raise CapacityError("--concurrency: no level given")
    return sorted(out)


@dataclass(frozen=True)
class SLO:
    """Upper bounds a level must meet: ``bounds`` maps ``(percentile, metric)`` to seconds, e.g.
    ``{(95, "latency"): 2.0, (95, "ttft"): 0.5}``; ``error_rate`` bounds the share of failed requests."""

    bounds: Mapping[tuple[int, str], float] = field(default_factory=dict)
    error_rate: float = DEFAULT_ERROR_RATE

    def as_dict(self) -> dict[str, float]:
        """The SLO as ``--slo`` would spell it, every key explicit: ``{"p95_latency_s": 2.0, "error_rate": 0.01}``."""
        out = {f"p{q}_{m}_s": v for (q, m), v in sorted(self.bounds.items(), key=lambda kv: (_METRICS.index(kv[0][1]), kv[0][0]))}
        out["error_rate"] = self.error_rate
        return out

    def text(self) -> str:
        return ", ".join(f"{k} <= {_num(v)}" for k, v in self.as_dict().items())


def parse_slo(text: str | None) -> SLO:
    """``"p95_latency_s=2,ttft_s=0.5"`` as an :class:`SLO`; a bad clause raises CapacityError naming it.

    Keys: ``[p50_|p90_|p95_|p99_](latency|ttft|itl)_s`` (seconds; without a percentile, p95) and
    ``error_rate`` (a share, 0 to 1; default :data:`DEFAULT_ERROR_RATE`)."""
    bounds: dict[tuple[int, str], float] = {}
    error_rate = DEFAULT_ERROR_RATE
    for clause in (text or "").split(","):
        clause = clause.strip()
        if not clause:
            continue
        key, sep, value = (s.strip() for s in clause.partition("="))
        where = f"--slo: clause {clause!r}"
        if not sep or not key or not value:
            raise CapacityError(f"{where}: expected key=value, e.g. p95_latency_s=2")
        try:
            v = float(value)
        except ValueError:
            raise CapacityError(f"{where}: {value!r} is not a number") from None
        if not math.isfinite(v) or v < 0:
            raise CapacityError(f"{where}: the bound must be a number >= 0")
        if key == "error_rate":
            if v > 1:
                raise CapacityError(f"{where}: error_rate is a share between 0 and 1")
            error_rate = v
            continue
        m = _SLO_KEY.match(key)
        if m is None:
            known = [
                "latency_s",
                "ttft_s",
                "itl_s",
                "p50_latency_s",
                "p95_latency_s",
                "p99_latency_s",
                "p95_ttft_s",
                "p95_itl_s",
                "error_rate",
            ]
            near = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
            raise CapacityError(
                f"{where}: unknown key {key!r}"
                + (f" (did you mean {', '.join(near)}?)" if near else "")
                + "; keys are [p50_|p90_|p95_|p99_](latency|ttft|itl)_s and error_rate"
            )
        if v == 0:
            raise CapacityError(f"{where}: a latency bound must be above 0")
        bounds[(int(m.group(1)[1:]) if m.group(1) else 95, m.group(2))] = v
    return SLO(bounds, error_rate)


# ---------------------------------------------------------------------------------------------- the sweep


async def _level(provider, prompts: Sequence[list[dict]], c: int, n: int, start: int) -> tuple[list[dict], float]:
    """``n`` streamed requests from ``c`` closed-loop clients; (one row per request, wall seconds)."""
    rows: list[dict] = []
    nxt = 0

    async def client() -> None:
        nonlocal nxt
        while nxt < n:
            i = nxt
            nxt += 1
            messages = prompts[(start + i) % len(prompts)]
            t = time.perf_counter()
            try:
                r = await provider.stream(messages)
                rows.append(
                    {
                        "concurrency": c,
                        "request": i,
                        "error": None,
                        "latency_s": r.latency_s,
                        "ttft_s": r.ttft_s,
                        "itl_s": r.itl_s,
                        "prompt_tokens": r.prompt_tokens,
                        "completion_tokens": r.completion_tokens,
                    }
                )
            except ProviderError as e:
                rows.append(
                    {
                        "concurrency": c,
                        "request": i,
                        "error": str(e),
                        "latency_s": time.perf_counter() - t,
                        "ttft_s": None,
                        "itl_s": None,
                        "prompt_tokens": None,
                        "completion_tokens": None,
                    }
                )

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(c)))
    return rows, time.perf_counter() - t0


async def _sweep(name, cfg, prompts, levels, requests, on_level) -> tuple[pd.DataFrame, dict[int, float]]:
    provider = OpenAIProvider(cfg, SimpleNamespace(model_name=name, extra={}))  # no pipeline: only the name, for messages
    await provider.start()
    try:
        await provider.stream(prompts[0])  # opens a connection and fails early on an endpoint that does not answer
        rows: list[dict] = []
        walls: dict[int, float] = {}
        start = 0
        for c in levels:
            n = max(requests if requests else max(32, 4 * c), c)
            got, walls[c] = await _level(provider, prompts, c, n, start)
            start += n
            rows += got
            if on_level is not None:
                on_level(c, got, walls[c])
    finally:
        await provider.close()
    cols = ["concurrency", "request", "error", "latency_s", "ttft_s", "itl_s", "prompt_tokens", "completion_tokens"]
    df = pd.DataFrame(rows, columns=cols)
    df["wall_s"] = df["concurrency"].map(walls)
    return df, walls


def sweep(
    name: str,
    cfg,
    prompts: Sequence[list[dict]],
    levels: Sequence[int],
    requests: int | None = None,
    on_level: Callable[[int, list[dict], float], None] | None = None,
) -> pd.DataFrame:
    """Run the load sweep against an ``openai`` model's endpoint: one row per request, with ``wall_s``
    (its level's wall time). ``requests`` per level (default ``max(32, 4 * c)``; at least ``c``).
    The endpoint's own errors become rows; a first request that fails raises ProviderError."""
    if not prompts:
        raise CapacityError("no prompts to send")
    cfg = cfg.model_copy(update={"client": "aiohttp", "max_concurrency": max(levels)})
    df, _ = asyncio.run(_sweep(name, cfg, list(prompts), list(levels), requests, on_level))
    return df


def _pct(x: pd.Series, q: int) -> float:
    v = pd.to_numeric(x, errors="coerce").dropna().to_numpy(dtype=float)
    return float(np.percentile(v, q)) if len(v) else math.nan


def summarize(requests: pd.DataFrame, slo: SLO) -> pd.DataFrame:
    """One row per concurrency level (:data:`LEVEL_COLUMNS`): throughput over the level's wall time,
    latency percentiles over its successful requests, goodput (successful requests within every
    latency bound of the SLO, each request on its own, per second), ``meets_slo`` and ``missed``
    (the clauses it broke)."""
    rows = []
    for c, g in requests.groupby("concurrency", sort=True):
        ok = g[g["error"].isna()]
        wall = float(g["wall_s"].iloc[0])
        n, errors = len(g), int(g["error"].notna().sum())
        row = {
            "concurrency": int(c),
            "requests": n,
            "errors": errors,
            "error_rate": errors / n if n else math.nan,
            "wall_s": wall,
            "rps": len(ok) / wall if wall > 0 else math.nan,
            "output_tok_s": float(pd.to_numeric(ok["completion_tokens"], errors="coerce").fillna(0).sum()) / wall
            if wall > 0
            else math.nan,
        }
        for m in _METRICS:
            for q in (50, 95):
                row[f"{m}_p{q}_s"] = _pct(ok[f"{m}_s"], q)
        within = pd.Series(True, index=ok.index)
        missed = []
        for (q, m), bound in slo.bounds.items():
            v = pd.to_numeric(ok[f"{m}_s"], errors="coerce")
            within &= v.isna() | (v <= bound) if m == "itl" else (v <= bound)  # one-token answers have no ITL
            have = _pct(ok[f"{m}_s"], q)
            if not (have <= bound) and not (m == "itl" and math.isnan(have)):
                missed.append(f"p{q}_{m}_s {_num(have)} > {_num(bound)}")
        if not (row["error_rate"] <= slo.error_rate):
            missed.append(f"error_rate {_num(row['error_rate'])} > {_num(slo.error_rate)}")
        if len(ok) == 0:
            missed.append("no request succeeded")
        row["goodput_rps"] = int(within.sum()) / wall if wall > 0 else math.nan
        row["meets_slo"] = not missed
        row["missed"] = "; ".join(missed)
        rows.append(row)
    return pd.DataFrame(rows, columns=LEVEL_COLUMNS)


def choose(levels: pd.DataFrame) -> pd.Series | None:
    """The level with the highest requests/s among those that meet the SLO (throughputs within
    :data:`TIE_SHARE` of the best count as equal, and the lowest concurrency among them wins); None
    when no level meets it."""
    ok = levels[levels["meets_slo"].astype(bool)]
    if ok.empty:
        return None
    best = ok["rps"].max()
    near = ok[ok["rps"] >= best * (1 - TIE_SHARE)]
    return near.sort_values("concurrency").iloc[0]


# ---------------------------------------------------------------------------------------------- prompts


def pipeline_prompts(loaded, pipeline: str, limit: int = 256) -> tuple[list[list[dict]], str]:
    """Up to ``limit`` chat requests from a pipeline's dataset, rendered with its prompt template
    (so their token lengths are the real ones), and a description of where they came from."""
    pipe = loaded.pipeline(pipeline)
    if pipe.prompt is None:
        raise CapacityError(f"pipelines.{pipeline}.prompt: the pipeline has no prompt template to render")
    table, _ = load_prepared(loaded.resolve_path(pipe.dataset.source), pipe.dataset, pipe.prompt, None, sample=limit)
    if table.num_rows == 0:
        raise CapacityError(f"pipelines.{pipeline}.dataset: the dataset has no rows")
    return list(render_requests(pipe.prompt, table)), f"pipeline {pipeline} ({table.num_rows} examples)"


def synthetic_prompts() -> tuple[list[list[dict]], str]:
    """One fixed request, for a sweep without a pipeline."""
    return [[{"role": "user", "content": SYNTHETIC_PROMPT}]], "synthetic prompt"


# ---------------------------------------------------------------------------------------------- the record


def capacity_hash(cfg) -> str:
    """Hash of what shapes a model's serving speed: its config without prices and without the
    limits on Assay's own calls (:data:`_NOT_SERVING`), so a new GPU price keeps the record and a
    new endpoint, model, ``params`` (``max_tokens``) or GPU count makes it stale."""
    d = cfg.model_dump(mode="json")
    for k in _NOT_SERVING:
        d.pop(k, None)
    if isinstance(d.get("hosting"), dict):
        d["hosting"] = {k: v for k, v in d["hosting"].items() if k not in _NOT_SERVING_HOSTING}
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def check_model(name: str, cfg) -> None:
    """CapacityError unless ``cfg`` is an ``openai`` endpoint with ``hosting:`` (an endpoint you run)."""
    if cfg.provider != "openai":
        raise CapacityError(
            f"models.{name}: provider {cfg.provider} has no endpoint to load; capacity measures "
            "an OpenAI-compatible endpoint you run (provider openai with hosting:)"
        )
    if getattr(cfg, "hosting", None) is None:
        raise CapacityError(
            f"models.{name}: no hosting: section, so it is priced per token by its API; capacity is "
            "for endpoints you run (add hosting: with usd_per_gpu_hour or hardware)"
        )


def build_record(
    name: str, cfg, slo: SLO, levels: pd.DataFrame, chosen: pd.Series | None, prompts: str, requests: int | None
) -> dict:
    """The JSON record of a sweep: the operating point (None when no level met the SLO), the SLO,
    the date, :func:`capacity_hash`, and every level's figures."""
    point = None
    if chosen is not None:
        point = {k: _plain(chosen[k]) for k in LEVEL_COLUMNS if k not in ("meets_slo", "missed")}
    return {
        "model": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config_hash": capacity_hash(cfg),
        "target": getattr(cfg, "target", None),
        "slo": slo.as_dict(),
        "prompts": prompts,
        "requests_per_level": requests,
        "operating_point": point,
        "levels": [{k: _plain(v) for k, v in r.items()} for r in levels.to_dict("records")],
    }


def write_record(store: Store, name: str, record: dict, requests: pd.DataFrame) -> tuple[str, str]:
    """Write ``_capacity/<name>.json`` and the per-request sweep ``_capacity/<name>.parquet``; their locations."""
    folder = store.capacity()
    js, pq_name = folder.names(name)
    sweep_path = folder.write_table(pq_name, requests)
    return folder.write_json(js, {**record, "sweep": pq_name}), sweep_path


def read_record(store: Store, name: str) -> dict | None:
    """The recorded sweep of ``name``, or None."""
    folder = store.capacity()
    try:
        js, _ = folder.names(name)
    except ValueError:
        return None
    if not folder.exists(js):
        return None
    try:
        return folder.read_json(js)
    except ValueError:
        log.warning("capacity record %s is not valid JSON: ignored", folder.path(js))
        return None


def operating_points(store: Store, models: Mapping[str, Any]) -> dict[str, dict]:
    """For each ``hosting:`` model with a capacity record: what the cost stage uses and why.

    ``{"used": True, "throughput_rps", "concurrency", "slo", "measured_at", "config_hash"}`` when the
    record's operating point is current; ``{"used": False, "reason": ...}`` when it is stale (the
    model's config changed), has no operating point (no level met the SLO), or is overridden by
    ``hosting.throughput_rps``. Models without a record are left out.
    """
    out = {}
    for name, cfg in models.items():
        hosting = getattr(cfg, "hosting", None)
        if hosting is None:
            continue
        rec = read_record(store, name)
        if rec is None:
            continue
        base = {"measured_at": rec.get("measured_at"), "slo": rec.get("slo"), "config_hash": rec.get("config_hash")}
        point = rec.get("operating_point") or {}
        if rec.get("config_hash") != capacity_hash(cfg):
            out[name] = {**base, "used": False, "reason": "stale: the model's config changed since it was measured"}
        elif not point.get("rps"):
            out[name] = {**base, "used": False, "reason": "no concurrency level met the SLO"}
        elif hosting.throughput_rps:
            out[name] = {**base, "used": False, "reason": "hosting.throughput_rps overrides it"}
        else:
            out[name] = {**base, "used": True, "throughput_rps": float(point["rps"]), "concurrency": int(point["concurrency"])}
    return out


def _plain(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if math.isnan(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _num(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.3g}"
