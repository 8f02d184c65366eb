"""One assessment run, stage by stage, without Prefect.

Each stage function reads the artifacts of the stage before it from the run folder, writes
its own, and records its wall time and artifact hashes in ``manifest.json``. The Prefect
tasks in ``tasks/`` are thin wrappers around these functions, so a stage can be tested,
re-run or reproduced on its own.
"""

import json
import logging
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Callable

from assay import store as S
from assay.config import LoadedConfig, PipelineConfig, load_config
from assay.store import RunFolder, Store

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger("assay")

#: Set by the CLI to draw a terminal progress bar: (model, done, total, errors, usd).
PROGRESS_HOOKS: list[Callable[[str, int, int, int, float], None]] = []


#: Runs prepared before the flow starts (by the CLI), adopted by the flow's start_run.
PREPARED: dict[tuple, "RunContext"] = {}
#: Stages started ahead of Prefect (see ``assay.ahead``), keyed by (run folder URL, stage).
PREFETCH: dict[tuple[str, str], "Prefetched"] = {}
_MANIFEST_LOCK = threading.RLock()


class RunFailed(RuntimeError):
    """The run could not finish; the partial artifacts are kept and the manifest says why."""


class GateFailed(RuntimeError):
    """A quality gate broke: the run finished, but the result must not pass."""


@dataclass
class RunContext:
    """Everything a stage needs to find its inputs and outputs; small and picklable."""

    config_path: str
    pipeline: str
    as_of: date
    run_id: str
    artifacts: str
    models: list[str]
    sample: int | None = None
    cache_mode: str = "use"
    resumed: bool = False
    cache_file: str | None = None  # set by reproduce: the recorded run's cache
    _cfg: LoadedConfig | None = field(default=None, repr=False, compare=False)
    _folder: RunFolder | None = field(default=None, repr=False, compare=False)

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_cfg"] = None
        d["_folder"] = None
        return d

    @property
    def loaded(self) -> LoadedConfig:
        if self._cfg is None:
            self._cfg = load_config(self.config_path)
        return self._cfg

    @property
    def cfg(self) -> PipelineConfig:
        return self.loaded.pipeline(self.pipeline)

    @property
    def folder(self) -> RunFolder:
        if self._folder is None:
            self._folder = Store(self.artifacts).run(self.pipeline, self.as_of, self.run_id)
        return self._folder

    def cache_path(self) -> str | None:
        if self.cache_mode == "off":
            return None
        return self.cache_file or cache_file_for(self.loaded, self.artifacts)


def artifacts_root(loaded: LoadedConfig, override: str | None) -> str:
    root = override or os.environ.get("ASSAY_ARTIFACTS") or loaded.config.artifacts
    return root if "://" in root else (loaded.resolve_path(root) if not override else os.path.abspath(root))


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for p in ("assay", "prefect", "pyarrow", "pandas", "numpy", "openai", "genai-prices", "evaluate", "scikit-learn"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def cache_file_for(loaded: LoadedConfig, root: str) -> str:
    """Where the response cache lives: ``cache_dir``, else beside a local artifact root, else ~/.cache."""
    if loaded.config.cache_dir:
        base = loaded.resolve_path(loaded.config.cache_dir)
    elif "://" not in root:
        base = os.path.join(root, "_cache")
    else:
        base = os.path.join(os.path.expanduser("~"), ".cache", "assay")
    return os.path.join(base, "responses.sqlite")


def start_run(config_path: str, pipeline: str, as_of: date, models: list[str] | None = None,
              sample: int | None = None, artifacts: str | None = None, cache_mode: str | None = None,
              loaded: LoadedConfig | None = None, new: bool = False) -> RunContext:
    """Create a run folder and its manifest, or resume the unfinished run of the same request."""
    loaded = loaded or load_config(config_path)
    p = loaded.pipeline(pipeline)
    if models:
        unknown = [m for m in models if m not in p.models]
        if unknown:
            from assay.config import ConfigError

            raise ConfigError(str(loaded.path), [("--models", f"{', '.join(unknown)} not in pipelines.{pipeline}.models ({', '.join(p.models)})", None)])
    chosen = list(models or p.models)
    root = artifacts_root(loaded, artifacts)
    store = Store(root)
    chash = loaded.config_hash(pipeline, chosen)
    request = {"models": chosen, "sample": sample}
    key = (pipeline, as_of.isoformat(), chash, repr(request), root, cache_mode)
    if key in PREPARED:
        return PREPARED.pop(key)
    run_id, resumed = None, False
    if not new:
        for rf in reversed(store.runs(pipeline, as_of.isoformat())):
            m = rf.manifest() or {}
            if m.get("status") in ("running", "failed") and m.get("config_hash") == chash and m.get("request") == request:
                run_id, resumed = rf.run_id, True
                break
    run_id = run_id or store.new_run_id(chash)
    ctx = RunContext(str(loaded.path), pipeline, as_of, run_id, root, chosen, sample,
                     cache_mode or p.cache, resumed, _cfg=loaded)
    rf = ctx.folder
    manifest = rf.manifest() if resumed else None
    if manifest is None:
        manifest = {
            "pipeline": pipeline, "as_of": as_of.isoformat(), "run_id": run_id, "status": "running",
            "config_hash": chash, "config": loaded.pipeline_slice(pipeline), "config_file": str(loaded.path),
            "request": request, "started_at": datetime.now(timezone.utc).isoformat(), "stages": {},
            "versions": package_versions(), "cache": None if (cache_mode or p.cache) == "off" else cache_file_for(loaded, root),
        }
    else:
        manifest["status"] = "running"
        manifest.setdefault("resumes", []).append(datetime.now(timezone.utc).isoformat())
        manifest.pop("error", None)
    rf.write_json(S.MANIFEST, manifest)
    return ctx


def _update_manifest(ctx: RunContext, **changes) -> dict:
    with _MANIFEST_LOCK:
        rf = ctx.folder
        m = rf.manifest() or {}
        for k, v in changes.items():
            if k == "stage":
                name, info = v
                m.setdefault("stages", {})[name] = info
            else:
                m[k] = v
        rf.write_json(S.MANIFEST, m)
        return m


def _record(ctx: RunContext, stage: str, t0: float, artifacts: list[str], extra: dict | None = None) -> dict:
    rf = ctx.folder
    hashes = {}
    for name in artifacts:
        if name.endswith("/"):
            for part in rf.listdir(name.rstrip("/")):
                hashes[f"{name}{part}"] = rf.hash(f"{name}{part}")
        elif rf.exists(name):
            hashes[name] = rf.hash(name)
    info = {"seconds": round(time.perf_counter() - t0, 4), "artifacts": hashes, **(extra or {})}
    _update_manifest(ctx, stage=(stage, info))
    return info


def fail(ctx: RunContext, stage: str, error: str, **extra) -> None:
    """Mark the run failed, keeping what it produced; ``extra`` goes into the manifest too."""
    _update_manifest(ctx, status="failed", error={"stage": stage, "message": error},
                     finished_at=datetime.now(timezone.utc).isoformat(), **extra)


class Prefetched:
    """A stage running ahead of Prefect (see ``assay.ahead``); the flow's task waits for it and adopts it."""

    def __init__(self):
        import concurrent.futures

        self.future: "concurrent.futures.Future" = concurrent.futures.Future()
        self.progress: dict[str, tuple] = {}

    def on_progress(self, model, done, total, errors, usd):
        self.progress[model] = (model, done, total, errors, usd)


def prepare(config_path: str, pipeline: str, as_of: date, **kw) -> RunContext:
    """Create the run now and remember it, so that the flow's ``start_run`` adopts it."""
    ctx = start_run(config_path, pipeline, as_of, **kw)
    chash = ctx.loaded.config_hash(pipeline, ctx.models)
    key = (pipeline, as_of.isoformat(), chash, repr({"models": ctx.models, "sample": ctx.sample}), ctx.artifacts,
           kw.get("cache_mode"))
    PREPARED[key] = ctx
    return ctx


def adopt_or_run(ctx: RunContext, stage: str, fn: Callable, on_progress: Callable | None = None):
    """What a flow task runs: the stage's result if it was started ahead of Prefect (see
    ``assay.ahead``), waiting for it, else ``fn(ctx)`` here (with ``on_progress`` if given)."""
    import concurrent.futures

    job = PREFETCH.pop((ctx.folder.url, stage), None)
    if job is None:
        return fn(ctx, on_progress=on_progress) if on_progress else fn(ctx)
    if stage == "invoke" and ctx.cfg.gates:
        # this process is idle while the models are called: load what the gate task needs
        import assay.gates  # noqa: F401
    while True:
        try:
            return job.future.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            if on_progress:
                for state in list(job.progress.values()):
                    on_progress(*state)


# stages ---------------------------------------------------------------------------------
def load_stage(ctx: RunContext) -> str:
    """Read the source, filter to as_of, sample; write dataset.parquet."""
    from assay import dataset as D

    t0 = time.perf_counter()
    cfg = ctx.cfg
    rf = ctx.folder
    src = ctx.loaded.resolve_path(cfg.dataset.source)
    fp = D.fingerprint(src, cfg.dataset.format)
    m = rf.manifest() or {}
    if ctx.resumed and rf.exists(S.DATASET) and m.get("dataset", {}).get("fingerprint") == fp:
        return rf.path(S.DATASET)  # same source: the resumed run keeps its examples
    table = D.read_source(src, cfg.dataset.format, cfg.dataset.split)
    table = D.prepare(table, cfg.dataset, cfg.prompt, ctx.as_of, ctx.sample)
    if table.num_rows == 0:
        where = f" up to {ctx.as_of}" if cfg.dataset.partition else ""
        raise RunFailed(f"no examples in {cfg.dataset.source}{where}")
    rf.write_table(S.DATASET, table)
    _update_manifest(ctx, dataset={"source": cfg.dataset.source, "fingerprint": fp, "rows": table.num_rows})
    _record(ctx, "load", t0, [S.DATASET], {"rows": table.num_rows})
    return rf.path(S.DATASET)


def quotes_for(ctx: RunContext, on: date | None = None) -> dict:
    """The price of every chosen model on a date (default: the run's as_of)."""
    from assay.pricing import quote

    models = ctx.loaded.config.models
    return {m: quote(models[m], on or ctx.as_of) for m in ctx.models}


def invoke_stage(ctx: RunContext, on_progress: Callable | None = None) -> str:
    """Call every model on every example; write responses/part-*.parquet as shards finish."""
    import asyncio

    from assay import invoke as I
    from assay.cache import ResponseCache
    from assay.providers import Context, build

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    dataset = rf.read_table(S.DATASET)
    models = ctx.loaded.config.models
    providers = {}
    for name in ctx.models:
        pctx = Context(name, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline)
        providers[name] = build(name, models[name], pctx)
    quotes = quotes_for(ctx)

    from assay.pricing import call_pricer

    pricers = {m: call_pricer(q) for m, q in quotes.items()}

    def price(model, p, c, cached):
        f = pricers.get(model)
        return f(p, c, cached) if f is not None else 0.0

    budget = I.Budget(max_usd=cfg.cost.max_usd, price=price)
    total = dataset.num_rows

    def progress(model, done, errors, usd):
        for hook in PROGRESS_HOOKS:
            hook(model, done, total, errors, usd)
        if on_progress:
            on_progress(model, done, total, errors, usd)

    opts = I.Options(shard_size=cfg.shard_size, cache_mode=ctx.cache_mode, on_progress=progress)
    cpath = ctx.cache_path()
    cache = ResponseCache(cpath) if cpath else None
    try:
        stats = asyncio.run(I.invoke_all(providers, dataset, cfg.prompt, rf, cache, opts, budget))
    finally:
        if cache is not None:
            cache.close()
    for name, p in providers.items():
        stats[name].update(p.stats())
        made = stats[name].get("called", 0) - stats[name].get("errors", 0)
        if made > 0 and stats[name].get("wall_s"):
            stats[name]["throughput_rps"] = made / stats[name]["wall_s"]
    responses = I.read_responses(rf)
    n_err = int(responses.column("error").is_valid().to_numpy(zero_copy_only=False).sum()) if responses.num_rows else 0
    share = n_err / responses.num_rows if responses.num_rows else 0.0
    extra = {"models": stats, "rows": responses.num_rows, "errors": n_err, "usd": round(budget.spent, 6)}
    _record(ctx, "invoke", t0, [f"{S.RESPONSES}/"], extra)
    if budget.stopped:
        raise RunFailed(f"budget guard: {budget.stopped}")
    expected = dataset.num_rows * len(ctx.models)
    if responses.num_rows < expected:
        raise RunFailed(f"only {responses.num_rows} of {expected} responses were produced")
    if share > cfg.max_error_rate:
        raise RunFailed(f"{n_err} of {responses.num_rows} calls failed ({share:.1%}), above max_error_rate {cfg.max_error_rate:.0%}; "
                        "see the error column in responses/")
    return rf.url + "/" + S.RESPONSES


def build_metrics(ctx: RunContext) -> dict:
    from assay.metrics import build_metric

    out = {}
    for spec in ctx.cfg.metric_specs():
        if spec.judge:
            metric = build_metric(spec, str(ctx.loaded.base_dir), judge=_judge_factory(ctx, spec.judge))
            if hasattr(metric, "set_cache"):  # the judge's calls go through the run's response cache
                metric.set_cache(ctx.cache_path(), ctx.cache_mode)
            out[spec.key] = metric
        else:
            out[spec.key] = build_metric(spec, str(ctx.loaded.base_dir))
    return out


def _judge_factory(ctx: RunContext, judge: str):
    from assay.providers import Context, build

    cfg = ctx.cfg
    return build(judge, ctx.loaded.config.models[judge], Context(judge, cfg.dataset, cfg.prompt, ctx.loaded.resolve_path, ctx.pipeline))


def score_stage(ctx: RunContext) -> str:
    """Score responses; write scores.parquet, metrics.parquet, generalization.parquet, comparisons."""
    from assay.invoke import read_responses
    from assay.scoring import score

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    dataset = rf.read_table(S.DATASET)
    responses = read_responses(rf)
    metrics = build_metrics(ctx)
    inputs = None
    if any(getattr(m, "needs_inputs", False) for m in metrics.values()):
        inputs = _inputs_text(ctx, dataset)
    res = score(dataset, responses, metrics, cfg.dataset.slices, cfg.bootstrap, seed=0, held_out=cfg.dataset.held_out,
                inputs=inputs)
    rf.write_table(S.SCORES, res.scores)
    rf.write_table(S.METRICS, res.metrics)
    rf.write_table(S.GENERALIZATION, res.generalization)
    rf.write_table("comparisons.parquet", res.comparisons)
    judge_extra = {}
    for key, m in metrics.items():
        usage = getattr(m, "usage", None)
        if usage:
            judge_extra[key] = usage
    _record(ctx, "score", t0, [S.SCORES, S.METRICS, S.GENERALIZATION, "comparisons.parquet"],
            {"judges": judge_extra} if judge_extra else None)
    return rf.path(S.METRICS)


def _inputs_text(ctx: RunContext, dataset: "pa.Table") -> list[str]:
    """What each example asked: the rendered user prompt, else its input fields."""
    from assay.prompting import render_messages

    cfg = ctx.cfg
    if cfg.prompt is not None:
        return [m[-1]["content"] for m in render_messages(cfg.prompt, dataset)]
    fields = cfg.dataset.input or [c for c in dataset.column_names if c not in ("example_id", "reference")][:1]
    import pyarrow as pa

    cols = [dataset[f].cast(pa.string()).to_pylist() for f in fields]
    return ["\n".join(v or "" for v in vals) for vals in zip(*cols)]


CORRECTNESS = ("accuracy", "exact_match")


def cost_stage(ctx: RunContext) -> str:
    """Price every model's calls; write costs.parquet and breakeven.parquet.

    An API model's tokens are priced at the price in force on the day of each request: the run's
    as_of for live calls (a backfill is priced as it would have been then), the logged day for replayed
    logs with a ``logged_at`` column (see :func:`request_dates`). Every quote used is recorded in the
    manifest (``prices``: per model, per date; ``judge_prices`` for LLM judges), so a past run's dollars
    never change and ``assay reprice`` can reproduce them.
    """
    from assay.costing import PRICE_DATE
    from assay.invoke import read_responses
    from assay.pricing import quote

    t0 = time.perf_counter()
    rf = ctx.folder
    cfg = ctx.cfg
    responses = read_responses(rf).to_pandas()
    m = rf.manifest() or {}
    inv = m.get("stages", {}).get("invoke", {}).get("models", {})
    correct = correct_counts(rf.read_table(S.METRICS).to_pandas())
    all_models = ctx.loaded.config.models
    models = {k: all_models[k] for k in ctx.models}
    as_of = ctx.as_of.isoformat()
    responses[PRICE_DATE] = request_dates(responses, models, inv, as_of)
    quotes = dated_quotes(models, responses, as_of, lambda name, day: quote(models[name], day))
    judge_rows, judge_quotes = judge_costs(cfg, m, lambda judge: quote(all_models[judge], ctx.as_of))
    table, be = cost_tables(responses, models, quotes, inv, cfg.cost.monthly_requests, correct, judge_rows)
    rf.write_table(S.COSTS, table)
    rf.write_table(S.BREAKEVEN, be)
    changes = {"prices": prices_record(quotes, as_of)}
    if judge_quotes:
        raw_models = ctx.loaded.raw.get("models") or {}
        changes["judge_prices"] = {j: {**q.to_dict(), "model_config": raw_models.get(j)} for j, q in judge_quotes.items()}
    _update_manifest(ctx, **changes)
    _record(ctx, "cost", t0, [S.COSTS, S.BREAKEVEN])
    return rf.path(S.COSTS)


def correct_counts(metrics) -> dict | None:
    """Correct answers per model: ``value * n`` of the pipeline's correctness metric (the first of
    :data:`CORRECTNESS` it computes) on slice ``all`` of metrics.parquet; None without one."""
    overall = metrics[metrics["slice"] == "all"]
    for key in CORRECTNESS:
        sel = overall[overall["metric"] == key]
        if len(sel):
            return {r.model: float(r.value) * int(r.n) for r in sel.itertuples()}
    return None


#: invoke stats ``request_time`` value of a model whose ``started_at`` is the logged request time
REQUEST_TIME_LOGGED = "logged_at"


def request_dates(responses, models: dict, stats: dict, as_of: str):
    """The date (``YYYY-MM-DD``) whose prices apply to each response row, as a Series.

    Rows of API models whose requests carry their own time (replayed logs with a ``logged_at`` column:
    the invoke stats say ``request_time: logged_at`` and ``started_at`` is the logged time) -> the UTC
    date of ``started_at``. Everything else -> ``as_of``: live calls are priced as of the run's date (a
    backfill is priced as it would have been then), cache hits too, and so are rows without a time.
    """
    import pandas as pd

    from assay.pricing import is_api_model

    out = pd.Series(as_of, index=responses.index, dtype=object)
    if not len(responses):
        return out
    for name, mcfg in models.items():
        if (stats.get(name) or {}).get("request_time") != REQUEST_TIME_LOGGED or mcfg is None or not is_api_model(mcfg):
            continue
        sel = (responses["model"] == name).to_numpy()
        st = pd.to_datetime(responses.loc[sel, "started_at"], utc=True)
        out.loc[sel] = st.dt.strftime("%Y-%m-%d").where(st.notna(), as_of).to_numpy(dtype=object)
    return out


def dated_quotes(models: dict, responses, as_of: str, quote_of: Callable) -> dict:
    """Per model: its quote at ``as_of`` when every row is priced on that date, else a
    :class:`assay.pricing.DatedQuotes` of ``quote_of(model, day)`` for each distinct
    ``price_date`` of its rows (default: the ``as_of`` quote)."""
    from assay.costing import PRICE_DATE
    from assay.pricing import DatedQuotes

    out = {}
    for name in models:
        days = sorted({d for d in responses.loc[responses["model"] == name, PRICE_DATE] if d}) if len(responses) else []
        default = quote_of(name, as_of)
        out[name] = default if days in ([], [as_of]) else DatedQuotes({d: quote_of(name, d) for d in days}, default)
    return out


def prices_record(quotes: dict, as_of: str) -> dict:
    """The manifest's ``prices``: per model the quote at the run's date (its fields at the top level)
    plus ``priced_by`` and ``by_date``, every quote used, per request date."""
    from assay.pricing import DatedQuotes

    out = {}
    for name, q in quotes.items():
        if isinstance(q, DatedQuotes):
            out[name] = {**q.default.to_dict(), "priced_by": "request date (logged_at)",
                         "by_date": {d: x.to_dict() for d, x in sorted(q.by_date.items())}}
        else:
            out[name] = {**q.to_dict(), "priced_by": "run date", "by_date": {as_of: q.to_dict()}}
    return out


def recorded_quotes(manifest: dict) -> dict:
    """Inverse of :func:`prices_record`: ``{model: {date: PriceQuote}}`` from a manifest (a manifest
    without ``by_date`` has one quote, at the run's as_of)."""
    from assay.pricing import PriceQuote

    out = {}
    for name, rec in (manifest.get("prices") or {}).items():
        if not isinstance(rec, dict):
            continue
        quotes = {d: PriceQuote.from_dict(v) for d, v in (rec.get("by_date") or {}).items()}
        top = PriceQuote.from_dict(rec)  # the quote at the run's date
        quotes.setdefault(top.as_of or manifest.get("as_of"), top)
        out[name] = quotes
    return out


def cost_tables(responses, models: dict, quotes: dict, stats: dict, monthly_requests, correct, judge_rows=None):
    """(costs, breakeven) tables of a run, as the cost stage writes them (judge lines appended)."""
    import pandas as pd

    from assay import costing

    table = costing.cost_table(responses, models, quotes, stats, monthly_requests, correct)
    if judge_rows:
        table = pd.concat([table, pd.DataFrame(judge_rows)], ignore_index=True)
    be = costing.breakeven(table[table["kind"] != "judge"]) if "kind" in table else costing.breakeven(table)
    return table, be


def _judge_cost_rows(ctx: RunContext, manifest: dict) -> list[dict]:
    """The LLM judges' own token cost, as lines of their own."""
    from assay.pricing import quote

    rows, _ = judge_costs(ctx.cfg, manifest, lambda judge: quote(ctx.loaded.config.models[judge], ctx.as_of))
    return rows


def judge_costs(cfg: PipelineConfig, manifest: dict, quote_of: Callable) -> tuple[list[dict], dict]:
    """The LLM judges' token cost lines (from the score stage's usage in ``manifest``) and the quote used
    for each judge; ``quote_of(judge)`` prices a judge (judges are called live: at the run's date)."""
    from assay.pricing import token_cost

    rows, quotes = [], {}
    judges = manifest.get("stages", {}).get("score", {}).get("judges", {})
    specs = {s.key: s for s in cfg.metric_specs()}
    for key, usage in judges.items():
        spec = specs.get(key)
        if spec is None or not spec.judge:
            continue
        q = quotes.get(spec.judge) or quote_of(spec.judge)
        quotes[spec.judge] = q
        usd = float(token_cost(q, usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))) if q.source != "none" else float("nan")
        n = usage.get("requests", 0)
        rows.append({"model": f"judge:{spec.judge}", "kind": "judge", "requests": n, "errors": usage.get("errors", 0),
                     "prompt_tokens": usage.get("prompt_tokens", 0), "completion_tokens": usage.get("completion_tokens", 0),
                     "cost_usd": usd, "cost_per_1k_usd": usd / n * 1000 if n else float("nan"),
                     "price_source": q.source, "price_json": json.dumps(q.to_dict())})
    return rows, quotes


def report_stage(ctx: RunContext) -> dict:
    """Write summary.md and report.html; return what the UI artifacts show."""
    from assay.report import build_report

    t0 = time.perf_counter()
    out = build_report(ctx.folder, ctx.cfg, ctx.pipeline)
    _record(ctx, "report", t0, [S.SUMMARY, S.REPORT])
    return out


def finish(ctx: RunContext, **extra) -> dict:
    """Mark the run complete (every stage finished); ``extra`` goes into the manifest too."""
    return _update_manifest(ctx, status="complete", finished_at=datetime.now(timezone.utc).isoformat(), **extra)


def run_local(config_path: str, pipeline: str, as_of: date, **kw) -> RunContext:
    """Run every stage in this process without Prefect (for tests and library use)."""
    ctx = start_run(config_path, pipeline, as_of, **kw)
    stage = "load"
    try:
        load_stage(ctx)
        stage = "invoke"
        invoke_stage(ctx)
        stage = "score"
        score_stage(ctx)
        stage = "cost"
        cost_stage(ctx)
        stage = "report"
        report_stage(ctx)
    except Exception as e:
        fail(ctx, stage, str(e))
        raise
    finish(ctx)
    return ctx
