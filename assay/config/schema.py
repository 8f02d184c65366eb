"""pipelines.yaml as typed pydantic models (``extra="forbid"``): the schema, and nothing that reads files.

Importing this module imports pydantic and nothing of Assay's providers or metrics, so any module can
use the config types without an import cycle. Reading and validating a file is :mod:`assay.config.loading`;
the checks that span sections (model and metric names, metric options) are :mod:`assay.config.checks`.
"""

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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
