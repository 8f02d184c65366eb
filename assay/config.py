"""pipelines.yaml: schema, loading, and errors that name the key path and line.

The config is data validated into typed pydantic models (``extra="forbid"``). Every error
carries the YAML key path (``pipelines.support-triage.models[1]``) and, where it can be
found, the line number, so that a user can fix the file without reading a traceback.
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from assay.registry import UnknownName

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
WINDOW_PATTERN = re.compile(r"^(\d+)([dwh])$")


class Strict(BaseModel):
    # defer_build: a process that only unpickles a config (see assay.ahead) never pays for the
    # validators, about a tenth of a second
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Price(Strict):
    """Explicit prices in USD per million tokens; they override the genai-prices database."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_per_mtok: float | None = Field(default=None, ge=0)


class Hardware(Strict):
    """The machine behind a self-hosted model, turned into an hourly price."""

    purchase_usd: float = Field(gt=0)
    depreciation_years: float = Field(default=3, gt=0)
    power_kw: float = Field(default=0.7, ge=0)
    pue: float = Field(default=1.4, ge=1)
    usd_per_kwh: float = Field(default=0.15, ge=0)
    maintenance_rate: float = Field(default=0.1, ge=0, description="yearly share of purchase price")
    utilisation: float = Field(default=1.0, gt=0, le=1)


class Hosting(Strict):
    """Self-hosted serving: priced by time, not by token."""

    usd_per_gpu_hour: float | None = Field(default=None, ge=0)
    gpus: int = Field(default=1, ge=1)
    hardware: Hardware | None = None
    replicas: int = Field(default=1, ge=0, description="always-on replicas (the monthly floor)")
    throughput_rps: float | None = Field(default=None, gt=0, description="override the measured throughput")

    @model_validator(mode="after")
    def _one_price(self):
        if self.usd_per_gpu_hour is None and self.hardware is None:
            raise ValueError("hosting needs usd_per_gpu_hour or hardware")
        return self


class Compute(Strict):
    """Conventional (non-LLM) models: compute time at an hourly rate."""

    usd_per_hour: float = Field(default=0.10, ge=0)
    amortise_months: float = Field(default=12, gt=0, description="training cost spread over this many months")


class ModelConfig(Strict):
    """One candidate model. Fields not used by its provider must be left out."""

    provider: str
    model: str | None = None
    version: str | None = None
    # openai-compatible endpoints
    base_url: str | None = None
    api_key_env: str | None = None
    client: Literal["aiohttp", "sdk"] = Field(default="aiohttp", description="HTTP client for openai endpoints")
    params: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(default=16, ge=1, le=4096)
    rpm: float | None = Field(default=None, gt=0)
    tpm: float | None = Field(default=None, gt=0)
    timeout_s: float = Field(default=60, gt=0)
    max_attempts: int = Field(default=4, ge=1, le=20)
    # pricing
    price: Price | None = None
    price_ref: str | None = Field(default=None, description="genai-prices 'provider/model' (default: provider inferred from model)")
    hosting: Hosting | None = None
    compute: Compute | None = None
    # replay / sklearn / python / transformers
    source: str | None = None
    output_column: str | None = None
    train: str | None = None
    estimator: str | None = None
    function: str | None = None
    path: str | None = None


class Partition(Strict):
    column: str
    window: str | None = Field(default=None, description="e.g. 1d, 7d, 24h; none = everything up to as_of")

    @field_validator("window")
    @classmethod
    def _window(cls, v):
        if v is not None and not WINDOW_PATTERN.match(v):
            raise ValueError("window must look like 1d, 7d, 2w or 24h")
        if v is not None and v.endswith("h") and int(v[:-1]) % 24:
            raise ValueError("an as_of window is whole days: use a multiple of 24h (or d/w)")
        return v


class Sample(Strict):
    n: int = Field(ge=1)
    seed: int = 0


class DatasetConfig(Strict):
    source: str
    format: Literal["parquet", "csv", "jsonl", "json", "hf"] | None = None
    split: str | None = None
    id: str | None = None
    input: list[str] | None = None
    reference: str | None = None
    slices: list[str] = Field(default_factory=list)
    partition: Partition | None = None
    sample: Sample | None = None
    train: str | None = Field(default=None, description="training file for conventional models")
    held_out: dict[str, list[str]] | None = Field(default=None, description="slice column -> values that are out of distribution")


class PromptConfig(Strict):
    system: str | None = None
    template: str
    version: str | None = None


class CostConfig(Strict):
    monthly_requests: int | None = Field(default=None, ge=0)
    max_usd: float | None = Field(default=None, ge=0)


class Gate(Strict):
    min: float | None = None
    max: float | None = None
    max_drop: float | None = Field(default=None, ge=0)


class Schedule(Strict):
    cron: str
    timezone: str = "UTC"


class MetricSpec(Strict):
    name: str | None = None
    path: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    judge: str | None = None

    @model_validator(mode="after")
    def _name_or_path(self):
        if not self.name and not self.path:
            raise ValueError("a metric needs a name or a path")
        return self

    @property
    def key(self) -> str:
        return self.name or Path(self.path).stem


class PipelineConfig(Strict):
    description: str | None = None
    dataset: DatasetConfig
    prompt: PromptConfig | None = None
    models: list[str] = Field(min_length=1)
    metrics: list[str | MetricSpec] = Field(min_length=1)
    cost: CostConfig = Field(default_factory=CostConfig)
    gates: dict[str, Gate] = Field(default_factory=dict)
    schedule: Schedule | None = None
    cache: Literal["use", "refresh", "off"] = "use"
    max_error_rate: float = Field(default=0.1, ge=0, le=1)
    shard_size: int = Field(default=500, ge=1)
    bootstrap: int = Field(default=1000, ge=0)

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        # YAML 1.1 reads a bare `off` as false
        return "off" if v is False else v

    def metric_specs(self) -> list[MetricSpec]:
        return [MetricSpec(name=m) if isinstance(m, str) else m for m in self.metrics]


class AssayConfig(Strict):
    artifacts: str = "data/runs"
    cache_dir: str | None = None
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    pipelines: dict[str, PipelineConfig] = Field(default_factory=dict)


class ConfigError(Exception):
    """A configuration problem: each entry is (key path, message, line or None)."""

    def __init__(self, source: str, problems: list[tuple[str, str, int | None]]):
        self.source = source
        self.problems = problems
        super().__init__(self.format())

    def format(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for path, msg, line in self.problems:
            where = f" (line {line})" if line else ""
            lines.append(f"  {path or '<root>'}{where}: {msg}")
        return "\n".join(lines)


def format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk a composed YAML node tree along ``loc`` and return the 1-based line."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    best = k.start_mark.line + 1
                    break
            if nxt is None:
                return best
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best


def _expand_env(value: Any, loc: tuple, problems: list) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, loc + (k,), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, loc + (i,), problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(m):
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            problems.append((loc, f"environment variable {var} is not set"))
            return ""
        return ENV_PATTERN.sub(sub, value)
    return value


class LoadedConfig:
    """A validated config plus what is needed to report on it and resolve paths."""

    def __init__(self, config: AssayConfig, raw: dict, path: Path):
        self.config = config
        self.raw = raw
        self.path = path
        self.base_dir = path.parent

    def resolve_path(self, p: str | None) -> str | None:
        """Relative paths in the config are relative to the config file; URLs are kept."""
        if p is None or "://" in p or os.path.isabs(p):
            return p
        return str((self.base_dir / p).resolve())

    def pipeline(self, name: str) -> PipelineConfig:
        if name not in self.config.pipelines:
            raise ConfigError(str(self.path), [(f"pipelines.{name}", str(UnknownName("pipeline", name, list(self.config.pipelines))), None)])
        return self.config.pipelines[name]

    def pipeline_slice(self, name: str) -> dict:
        """The raw (unexpanded) config that shapes one pipeline's results: its entry and its models."""
        p = self.raw["pipelines"][name]
        return {
            "pipeline": p,
            "models": {m: self.raw.get("models", {}).get(m) for m in p.get("models", [])},
        }

    def config_hash(self, name: str, models: list[str] | None = None) -> str:
        """Hash of the pipeline's resolved config (models optionally narrowed)."""
        pipe = self.pipeline(name).model_dump(mode="json")
        names = models or pipe["models"]
        pipe["models"] = list(names)
        payload = {"pipeline": pipe, "models": {m: self.config.models[m].model_dump(mode="json") for m in names}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_config(path: str | os.PathLike = "pipelines.yaml") -> LoadedConfig:
    """Read, expand and validate a pipelines.yaml; raise ConfigError naming key paths."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), [("", f"config file not found: {path}", None)])
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(path), [("", f"invalid YAML: {msg}", line)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", "the top level must be a mapping with 'models' and 'pipelines'", 1)])
    env_problems: list = []
    expanded = _expand_env(raw, (), env_problems)
    if env_problems:
        raise ConfigError(str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in env_problems])
    try:
        cfg = AssayConfig.model_validate(expanded)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "MetricSpec")))
            problems.append((format_path(loc), err["msg"], _line_of(node, loc)))
        raise ConfigError(str(path), problems) from None
    problems = _cross_check(cfg, path.parent)
    if problems:
        raise ConfigError(str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in problems])
    return LoadedConfig(cfg, raw, path)


def _cross_check(cfg: AssayConfig, base_dir: Path | None = None) -> list[tuple[tuple, str]]:
    """Checks that span sections: model and metric names, metric options, provider requirements.

    A metric's options are checked here, by building it, so that a typo fails the config before
    any model is paid for, not at the score stage.
    """
    from assay.metrics import METRICS, build_metric
    from assay.providers import PROVIDERS, check_model

    problems: list[tuple[tuple, str]] = []
    for name, m in cfg.models.items():
        try:
            PROVIDERS.check(m.provider)
        except UnknownName as e:
            problems.append((("models", name, "provider"), str(e)))
            continue
        for field, msg in check_model(m):
            problems.append((("models", name) + ((field,) if field else ()), msg))
    for pname, p in cfg.pipelines.items():
        for i, m in enumerate(p.models):
            if m not in cfg.models:
                problems.append((("pipelines", pname, "models", i), str(UnknownName("model", m, list(cfg.models)))))
        keys = []
        for i, spec in enumerate(p.metric_specs()):
            keys.append(spec.key)
            if spec.path is None:
                try:
                    METRICS.check(spec.name)
                except UnknownName as e:
                    problems.append((("pipelines", pname, "metrics", i), str(e)))
                else:
                    try:  # builtin metrics are cheap to build: their options are checked now
                        build_metric(spec, str(base_dir) if base_dir is not None else None)
                    except (ValueError, TypeError, OSError) as e:
                        problems.append((("pipelines", pname, "metrics", i, "args"), str(e)))
            else:
                mpath = os.path.expanduser(spec.path)
                if base_dir is not None and not os.path.isabs(mpath):
                    mpath = str(base_dir / mpath)
                if not os.path.exists(mpath):
                    problems.append((("pipelines", pname, "metrics", i, "path"), f"metric file not found: {os.path.abspath(mpath)}"))
            if spec.judge is not None and spec.judge not in cfg.models:
                problems.append((("pipelines", pname, "metrics", i, "judge"), str(UnknownName("model", spec.judge, list(cfg.models)))))
            elif spec.judge is not None:
                jprov = PROVIDERS.get(cfg.models[spec.judge].provider) if cfg.models[spec.judge].provider in PROVIDERS else None
                if jprov is not None and getattr(jprov, "kind", None) != "chat":
                    problems.append((("pipelines", pname, "metrics", i, "judge"),
                                     f"model {spec.judge!r} (provider {cfg.models[spec.judge].provider}) cannot answer prompts: "
                                     "a judge must be a model whose provider calls an endpoint (openai)"))
        for g in p.gates:
            if g not in keys:
                problems.append((("pipelines", pname, "gates", g), f"gate on metric {g!r} which the pipeline does not compute (metrics: {', '.join(keys)})"))
        if p.prompt is None and any(cfg.models.get(m) and cfg.models[m].provider == "openai" for m in p.models):
            problems.append((("pipelines", pname, "prompt"), "a prompt is required when an openai model is used"))
    return problems
