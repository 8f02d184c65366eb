"""pipelines.yaml as typed pydantic models (``extra="forbid"``): the schema, and nothing that reads files.

Importing this module imports pydantic and nothing of Assay's providers or metrics, so any module can
use the config types without an import cycle. Reading and validating a file is :mod:`assay.config.loading`;
the checks that span sections (model and metric names, metric options) are :mod:`assay.preflight.checks`.
"""

import datetime as _dt
import functools
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

WINDOW_PATTERN = re.compile(r"^(\d+)([dwh])$")

#: the most calls per example repeated sampling makes
MAX_SAMPLES = 1000

#: production log formats a dataset or a replay model reads (:mod:`assay.logs`)
LOG_FORMATS = ("otel", "openinference", "langfuse", "litellm", "openai-batch")
LogFormat = Literal["otel", "openinference", "langfuse", "litellm", "openai-batch"]
OnIncomplete = Literal["error", "skip"]


class Strict(BaseModel):
    # defer_build: a process that only unpickles a config (see assay.ahead) never pays for the
    # validators, about a tenth of a second
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)


class Price(Strict):
    """Explicit prices in USD per million tokens; they override the genai-prices database."""

    input_per_mtok: float = Field(ge=0, description="USD per million input tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens")
    cached_input_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens, where the provider reports them"
    )
    cache_write_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million tokens written to the provider's prompt cache"
    )


class Hardware(Strict):
    """The machine behind a self-hosted model, turned into an hourly price."""

    purchase_usd: float = Field(gt=0, description="what the machine cost to buy")
    depreciation_years: float = Field(default=3, gt=0, description="years the purchase price is spread over")
    power_kw: float = Field(default=0.7, ge=0, description="power drawn while serving, in kW")
    pue: float = Field(default=1.4, ge=1, description="power usage effectiveness of the data centre (cooling and overhead)")
    usd_per_kwh: float = Field(default=0.15, ge=0, description="electricity price")
    maintenance_rate: float = Field(default=0.1, ge=0, description="yearly share of purchase price")
    utilisation: float = Field(
        default=1.0, gt=0, le=1, description="share of the hours the machine does useful work; the hourly price is divided by it"
    )


class Hosting(Strict):
    """Self-hosted serving: priced by time, not by token."""

    usd_per_gpu_hour: float | None = Field(
        default=None, ge=0, description="rented price per GPU per hour (this or hardware: is required)"
    )
    gpus: int = Field(default=1, ge=1, description="GPUs per replica")
    hardware: Hardware | None = Field(default=None, description="owned hardware, priced from its purchase, power and upkeep")
    replicas: int = Field(default=1, ge=0, description="always-on replicas (the monthly floor)")
    throughput_rps: float | None = Field(default=None, gt=0, description="override the measured throughput")

    @model_validator(mode="after")
    def _one_price(self):
        if self.usd_per_gpu_hour is None and self.hardware is None:
            raise ValueError("hosting needs usd_per_gpu_hour or hardware")
        return self


class Compute(Strict):
    """A model served on your own machines and priced by compute time (a conventional model, a
    ``python`` function, a local ``transformers`` model): the instances that serve it, their hourly
    price, and how long its training is amortised over."""

    usd_per_hour: float = Field(
        default=0.10, ge=0, description="the price of one serving instance for an hour (its training is priced at the same rate)"
    )
    instances: int = Field(
        default=1,
        ge=0,
        description="instances always up to answer: the monthly floor is instances × "
        "usd_per_hour × 730, paid whatever the volume; 0 = paid per call only "
        "(a serverless function)",
    )
    amortise_months: float = Field(default=12, gt=0, description="training cost spread over this many months")


# --------------------------------------------------------------------------------------------- models
# One class per provider, each taking only the options its provider uses: with extra="forbid", any
# other key is an error naming it (see assay.config.loading for the wording). The pieces several
# providers share are the small bases below, so that each field and its default is written once
# (bases are listed last-first: pydantic orders fields from the last base, so provider comes first).


class _Model(Strict):
    """What every model has: its provider (the tag that picks the class) and a version label."""

    provider: str
    version: str | None = Field(default=None, description="a label of your own (a fine-tune's date, say); part of the cache key")


class _Named(Strict):
    model: str | None = Field(default=None, description="the model's name, as the endpoint or the price list knows it")


class _Params(Strict):
    params: dict[str, Any] = Field(default_factory=dict, description="options passed to the model on every call")


class _Concurrent(Strict):
    max_concurrency: int = Field(
        default=16, ge=1, le=4096, description="calls in flight at once (replay: the logged deployment's)"
    )


class _TokenPriced(Strict):
    price: Price | None = Field(default=None, description="explicit token prices; override the genai-prices database")
    price_ref: str | None = Field(
        default=None, description="genai-prices 'provider/model' (default: provider inferred from model)"
    )


class _Hosted(Strict):
    hosting: Hosting | None = Field(
        default=None,
        description="self-hosted: priced by time from the throughput (measured, recorded by assay capacity, or a replayed log's)",
    )


class _Computed(Strict):
    compute: Compute | None = Field(
        default=None,
        description="served on your own instances: measured compute time at "
        "usd_per_hour, with the always-on instances as a monthly floor",
    )

    @model_validator(mode="after")
    def _one_way_to_price(self):
        # hosting prices a served model by its throughput, compute by its compute time: both would
        # be two different bills for one service
        if self.compute is not None and getattr(self, "hosting", None) is not None:
            raise ValueError("give compute: (priced by compute time) or hosting: (priced by throughput), not both")
        return self


class OpenAIModel(_Hosted, _TokenPriced, _Concurrent, _Params, _Named, _Model):
    """Any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, TGI, ...), called once per example."""

    provider: Literal["openai"] = Field("openai", description="picks the provider, and with it the keys below")
    model: str = Field(min_length=1, description="the model name sent to the endpoint")
    base_url: str | None = Field(default=None, description="default https://api.openai.com/v1")
    api_key_env: str | None = Field(default=None, description="the environment variable holding the API key")
    client: Literal["aiohttp", "sdk"] = Field(default="aiohttp", description="HTTP client for openai endpoints")
    rpm: float | None = Field(default=None, gt=0, description="requests per minute at most (a token bucket in the process)")
    tpm: float | None = Field(
        default=None, gt=0, description="tokens per minute at most (estimated: prompt length plus max_tokens)"
    )
    timeout_s: float = Field(default=60, gt=0, description="seconds one attempt may take")
    max_attempts: int = Field(
        default=4, ge=1, le=20, description="attempts per call, the first included (retries on 429, 5xx, timeouts)"
    )
    samples: int = Field(
        default=1,
        ge=1,
        le=MAX_SAMPLES,
        description="calls per example (repeated sampling of a non-deterministic model); a pipeline's samples: overrides it",
    )
    stream: bool = Field(
        default=False,
        description="stream each call (server-sent events) and record its time to "
        "first token (ttft_s in responses, TTFT p50/p95 in costs.parquet "
        "and the report); needs client: aiohttp",
    )

    @model_validator(mode="after")
    def _stream_needs_aiohttp(self):
        if self.stream and self.client == "sdk":
            raise ValueError("stream: true needs client: aiohttp (the default); the sdk client is not streamed")
        n = self.params.get("n")
        if n is not None and n != 1:
            # one choice is recorded per call, and servers disagree on what usage counts for n > 1
            # (OpenAI: every choice; llama.cpp's server: one), so its cost could not be right
            raise ValueError(
                f"params.n: {n!r}: Assay records one answer per call; ask for K answers per example "
                "with samples: K (K calls, each priced on its own usage)"
            )
        return self

    @property
    def target(self) -> str:
        """What it calls: the model at its endpoint."""
        return f"{self.model} @ {self.base_url}" if self.base_url else self.model


class ReplayModel(_Hosted, _TokenPriced, _Concurrent, _Named, _Model):
    """Responses a production system already produced: read from a log file or a dataset column."""

    provider: Literal["replay"] = Field("replay", description="picks the provider, and with it the keys below")
    source: str | None = Field(
        default=None,
        description="a log file with a row per dataset id; with format: a production "
        "log (a file, a folder or a glob, local or an fsspec URL)",
    )
    output_column: str | None = Field(default=None, description="the column with the outputs (default output)")
    format: LogFormat | None = Field(
        default=None,
        description="the production log format of source (otel, openinference, "
        "langfuse, litellm, openai-batch); its logged answer is "
        "served for each example_id, and with model: only that "
        "model's rows",
    )
    on_incomplete: OnIncomplete = Field(
        default="error",
        description="with format: a chat record without its messages or answer is an error (error) or skipped and counted (skip)",
    )

    @model_validator(mode="after")
    def _somewhere_to_read(self):
        if self.source is None and self.output_column is None:
            raise ValueError("replay needs source: (a log file) or output_column: (a dataset column)")
        if self.format is not None and self.source is None:
            raise ValueError("format: is the format of a replay log: give its source: too")
        if self.format is not None and self.output_column is not None:
            raise ValueError("a production log (format:) has its answers in its output column: leave out output_column:")
        return self

    @property
    def target(self) -> str:
        """What it reads: the log file, or the dataset's column."""
        return self.source if self.source is not None else f"dataset column {self.output_column}"


class SklearnModel(_Computed, _Model):
    """A conventional baseline trained on the pipeline's train split."""

    provider: Literal["sklearn"] = Field("sklearn", description="picks the provider, and with it the keys below")
    train: str | None = Field(default=None, description="the training file (default: the dataset's train)")
    estimator: str | None = Field(default=None, description="tfidf-logreg (the default), tfidf-svm or majority")

    @property
    def target(self) -> str:
        """What it fits: the estimator (and its training file when it has its own)."""
        est = self.estimator or "tfidf-logreg"
        return f"{est} (train: {self.train})" if self.train else est


class PythonModel(_Computed, _Hosted, _TokenPriced, _Concurrent, _Params, _Named, _Model):
    """Any ``package.module:function``, called with a shard's rows."""

    provider: Literal["python"] = Field("python", description="picks the provider, and with it the keys below")
    function: str = Field(min_length=1, description="package.module:function")

    @property
    def target(self) -> str:
        """What it calls: the function."""
        return self.function


class TransformersModel(_Computed, _Hosted, _Concurrent, _Params, _Named, _Model):
    """A local Hugging Face causal language model, run in-process."""

    provider: Literal["transformers"] = Field("transformers", description="picks the provider, and with it the keys below")
    path: str = Field(min_length=1, description="a local model directory")

    @property
    def target(self) -> str:
        """What it loads: the model directory."""
        return self.path


#: One model's config: the class of its ``provider``.
ModelConfig = Annotated[
    OpenAIModel | ReplayModel | SklearnModel | PythonModel | TransformersModel,
    Field(discriminator="provider"),
]

#: provider name -> its config class
MODEL_CLASSES: dict[str, type[_Model]] = {
    cls.model_fields["provider"].default: cls for cls in (OpenAIModel, ReplayModel, SklearnModel, PythonModel, TransformersModel)
}


def model_options(provider: str) -> list[str]:
    """The keys a provider's model takes besides ``provider``, sorted."""
    return sorted(f for f in MODEL_CLASSES[provider].model_fields if f != "provider")


@functools.cache
def _model_adapter() -> TypeAdapter:
    return TypeAdapter(ModelConfig)


def parse_model(data: Any) -> ModelConfig:
    """One model's config (a mapping with ``provider``) as its provider's class; pydantic's
    ValidationError when it is not valid (:func:`assay.config.model_problems` words it)."""
    if isinstance(data, _Model):
        return data
    return _model_adapter().validate_python(data)


class Partition(Strict):
    column: str = Field(description="a date column: rows up to as_of are kept")
    window: str | None = Field(default=None, description="e.g. 1d, 7d, 24h; none = everything up to as_of")
    lag: str | None = Field(
        default=None,
        description="how far before as_of the window ends, in whole days (1d: a run "
        "dated the 6th assesses the window ending on the 5th, the last "
        "complete day of a nightly run); none = the window ends on as_of",
    )

    @field_validator("lag")
    @classmethod
    def _lag(cls, v):
        if v is not None and (not WINDOW_PATTERN.match(v) or (v.endswith("h") and int(v[:-1]) % 24)):
            raise ValueError("lag must be whole days, like 1d, 2d, 1w or 24h")
        return v

    @field_validator("window")
    @classmethod
    def _window(cls, v):
        if v is not None and not WINDOW_PATTERN.match(v):
            raise ValueError("window must look like 1d, 7d, 2w or 24h")
        if v is not None and v.endswith("h") and int(v[:-1]) % 24:
            raise ValueError("an as_of window is whole days: use a multiple of 24h (or d/w)")
        return v


class Sample(Strict):
    n: int = Field(ge=1, description="examples to draw")
    seed: int = Field(default=0, description="seed of the draw")
    by: list[str] | None = Field(
        default=None,
        description="columns to stratify by: each combination of their values "
        "gets a share of n proportional to its rows, and at least "
        "one example when it has any",
    )


class DatasetConfig(Strict):
    source: str = Field(
        description="a .parquet, .csv, .jsonl/.ndjson or .json file (relative to pipelines.yaml) or URL; "
        "or a Hugging Face dataset name (online only); with a log format: a file, a folder or "
        "a glob of production logs (local or an fsspec URL)"
    )
    format: (
        Literal["parquet", "csv", "jsonl", "json", "hf", "otel", "openinference", "langfuse", "litellm", "openai-batch"] | None
    ) = Field(
        default=None,
        description="default: from the extension; otel, openinference, langfuse, litellm or openai-batch "
        "read a production log into the standard columns (example_id, messages, output, model, "
        "request_time, tokens, latency, cost, and its attributes by key)",
    )
    on_incomplete: OnIncomplete = Field(
        default="error",
        description="with a log format: a chat record without its "
        "messages or answer is an error (error) or skipped "
        "and counted (skip)",
    )
    split: str | None = Field(default=None, description="the split of a Hugging Face dataset (default test)")
    id: str | None = Field(
        default=None,
        description="the column of stable example ids (default: a hash of the input fields; with a log format: example_id)",
    )
    input: list[str] | None = Field(default=None, description="the input fields (default: those the prompt template uses)")
    reference: str | None = Field(default=None, description="the column with the expected answer")
    slices: list[str] = Field(default_factory=list, description="columns to compute every metric per value of")
    partition: Partition | None = Field(default=None, description="keep the rows up to as_of (and within a window of it)")
    sample: Sample | None = Field(default=None, description="a seeded random sample of the examples")
    train: str | None = Field(default=None, description="training file for conventional models")
    held_out: dict[str, list[str]] | None = Field(default=None, description="slice column -> values that are out of distribution")
    cluster: str | None = Field(
        default=None,
        description="a column whose equal values mark examples that are not independent "
        "(questions on one passage): clustered standard errors",
    )

    @model_validator(mode="after")
    def _log_ids(self):
        # a log's records have their own ids (span id, observation id, request id, custom_id)
        if self.format in LOG_FORMATS and self.id is None:
            self.id = "example_id"
        return self


class PromptConfig(Strict):
    system: str | None = Field(default=None, description="the system message; with messages:, see system_mode")
    template: str | None = Field(
        default=None, description="the user message; {field} is the dataset's column of that name (or messages:, not both)"
    )
    messages: str | None = Field(
        default=None,
        description="a column holding each example's conversation (a list of "
        "{role, content} messages, content text or a list of text "
        "parts; tool calls kept): sent as the request's messages "
        "instead of a template",
    )
    system_mode: Literal["replace", "prepend"] = Field(
        default="replace",
        description="with messages: and system:, replace the conversation's own system messages by "
        "system: (replace), or put system: before them (prepend)",
    )
    version: str | None = Field(
        default=None, description="a label of your own (default: a hash of the text); part of every model's cache key"
    )

    @model_validator(mode="after")
    def _template_or_messages(self):
        if (self.template is None) == (self.messages is None):
            raise ValueError(
                "a prompt takes template: (a user message filled from each row) or messages: (a column "
                "holding each row's conversation), one of the two"
            )
        return self


class CostConfig(Strict):
    monthly_requests: int | None = Field(
        default=None, ge=0, description="the volume monthly costs and break-even volumes are computed at"
    )
    max_usd: float | None = Field(
        default=None,
        ge=0,
        description="the most the run's model calls may cost: estimated "
        "before any call (see on_over_budget), and enforced "
        "while calling (invoke stops before a shard would "
        "spend more)",
    )
    on_over_budget: Literal["stop", "shrink"] = Field(
        default="stop",
        description="when the estimated cost of the candidates' calls is above max_usd: stop before "
        "calling anything (saying which sample size would fit), or shrink the sample to fit",
    )


class Gate(Strict):
    min: float | None = Field(default=None, description="fail when a model's overall value is below it")
    max: float | None = Field(default=None, description="fail when a model's overall value is above it")
    max_drop: float | None = Field(
        default=None,
        ge=0,
        description="fail on a drop larger than this and than the noise, "
        "against the previous run whose gates passed (or the "
        "pipeline's baseline:); inconclusive when the run cannot tell",
    )
    correction: Literal["holm", "bh", "bonferroni", "none"] = Field(
        default="holm",
        description="multiple-comparison correction of the max_drop checks over every gated metric and slice of a model",
    )


class Schedule(Strict):
    cron: str = Field(description='a cron expression ("0 2 * * *": every night at 2)')
    timezone: str = Field(default="UTC", description="the timezone the cron is read in (Europe/Berlin, ...)")


#: a control character, which no file name or URL the user means can hold
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def no_control(value: str) -> str:
    """``value`` when it holds no control character (a path, a URL); a ValueError naming it otherwise."""
    bad = _CONTROL.search(value)
    if bad:
        raise ValueError(f"{value!r} contains a control character ({bad.group()!r}): no file or URL is named so")
    return value


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def check_root(value: str) -> str:
    """``value`` when it can be an artifact root: a path, or a URL of a protocol fsspec knows
    (``s3://bucket/prefix``, ``gs://``, ``memory://``, ...); a ValueError saying why not otherwise.
    Whether the protocol's package is installed is the preflight's question."""
    no_control(value)
    if not value.strip():
        raise ValueError("the artifact root is empty")
    if "://" not in value:
        return value
    m = _SCHEME.match(value)
    if not m:
        raise ValueError(f"{value!r} is neither a path nor a URL (scheme://...)")
    scheme = m.group(1).lower()
    if scheme != "file":
        # lazy: keeps fsspec out of start-up
        from fsspec.registry import known_implementations, registry

        if scheme not in known_implementations and scheme not in registry:
            raise ValueError(
                f"{value!r}: {scheme!r} is not a storage protocol fsspec knows "
                "(s3://bucket/prefix, gs://bucket/prefix, a local path, ...)"
            )
        if not value[m.end() :].strip("/"):
            raise ValueError(f"{value!r} names no bucket or folder after {scheme}://")
    return value


#: an artifact root (``artifacts:``, ``--artifacts``, ``$ASSAY_ARTIFACTS``), checked by :func:`check_root`
Root = Annotated[str, AfterValidator(check_root)]
#: a file's path, checked by :func:`no_control`
FilePath = Annotated[str, AfterValidator(no_control)]


class MetricSpec(Strict):
    name: str | None = Field(default=None, description="a built-in or registered metric")
    path: FilePath | None = Field(
        default=None, description="an evaluate module file, or with function: a Python file (relative to pipelines.yaml)"
    )
    function: str | None = Field(
        default=None, description="package.module:function, or with path: the function's name in that file"
    )
    args: dict[str, Any] = Field(default_factory=dict, description="the metric's options")
    judge: str | None = Field(
        default=None, description="the openai model that grades answers (name: judge) or compares them (name: pairwise)"
    )
    against: str | None = Field(
        default=None, description="pairwise: the pipeline's model whose answers the others are compared with (the incumbent)"
    )
    workers: int | None = Field(
        default=None, ge=0, le=256, description="worker processes for a per-example metric (0: this process)"
    )
    timeout_s: float | None = Field(default=None, gt=0, description="per-example time limit (a score error past it)")
    memory_mb: int | None = Field(default=None, ge=16, description="per-worker memory limit, where the OS enforces one")
    bootstrap_budget: int | None = Field(
        default=None, ge=0, description="whole recomputations a corpus-only metric's bootstrap may spend"
    )
    bootstrap_budget_s: float = Field(
        default=60.0,
        ge=0,
        description="seconds an aggregate-only metric (an evaluate module returning one number, not a mean of per-example "
        "values) may spend on its per-example probe and its bootstrap, per metric and run: the resamples are as "
        "many whole computations as fit, at least 20 or none (no interval)",
    )

    @model_validator(mode="after")
    def _name_or_path(self):
        if not self.name and not self.path and not self.function:
            raise ValueError("a metric needs a name, a path or a function")
        if self.function and self.name:
            raise ValueError("a metric is a name or a function, not both (name it with a key in the function: pkg.mod:func)")
        if self.function and not self.path and ":" not in self.function:
            raise ValueError("function must look like 'package.module:function' (or give path: and the function's name)")
        return self

    @property
    def key(self) -> str:
        if self.name:
            return self.name
        if self.function:
            return self.function.rpartition(":")[2] if ":" in self.function else self.function
        return Path(self.path).stem


# --------------------------------------------------------------------------------------------- policies
# Deployments of several models, priced and scored from the run's recorded answers (assay.policies):
# a cascade escalates by a rule, a route sends each slice value to one model. One class per kind.


class ConfidenceRule(Strict):
    """Accept a model's answer when its confidence (log-probabilities; a classifier's class
    probability) is at least ``threshold``."""

    kind: Literal["confidence"] = Field("confidence", description="picks the rule")
    threshold: float = Field(ge=0, le=1, description="the least confidence an answer is kept at")


class ValidRule(Strict):
    """Accept an answer that is valid: JSON that parses (``json: true``), matches a JSON ``schema``,
    matches a ``regex`` (in full), or is one of ``labels`` (``labels: true``: the dataset's references)."""

    kind: Literal["valid"] = Field("valid", description="picks the rule")
    json_: bool = Field(default=False, alias="json", description="keep an answer that parses as JSON")
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="keep an answer that matches this JSON schema"
    )
    regex: str | None = Field(default=None, description="keep an answer that matches this regular expression in full")
    labels: list[str] | bool | None = Field(
        default=None, description="keep an answer that is one of these labels (true: the dataset's references)"
    )

    @model_validator(mode="after")
    def _one_check(self):
        if not (self.json_ or self.schema_ is not None or self.regex is not None or self.labels):
            raise ValueError("a valid rule needs json: true, schema:, regex: or labels:")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as e:
                raise ValueError(f"regex does not compile: {e}") from None
        return self


class AgreeRule(Strict):
    """Call the first two models; accept the first's answer when both give the same one (after
    trimming and case-folding), else escalate to the next."""

    kind: Literal["agree"] = Field("agree", description="picks the rule")


class JudgeRule(Strict):
    """Accept an answer whose grade by a judge metric (``metric``, in scores.parquet) is at least ``threshold``."""

    kind: Literal["judge"] = Field("judge", description="picks the rule")
    metric: str = Field(default="judge", description="the judge metric whose grade decides")
    threshold: float = Field(ge=0, le=1, description="the least grade (0-1) an answer is kept at")


#: How a cascade decides to escalate: the class of its ``kind``.
Rule = Annotated[ConfidenceRule | ValidRule | AgreeRule | JudgeRule, Field(discriminator="kind")]


class CascadePolicy(Strict):
    """Ask ``models`` in order: the first always, each next one only when the answer before fails the rule."""

    kind: Literal["cascade"] = Field("cascade", description="picks the policy")
    models: list[str] = Field(min_length=2, description="the models in the order they are asked")
    rule: Rule = Field(description="when an answer is kept rather than escalated")
    sweep: bool = Field(default=True, description="also price the policy over a range of thresholds (policy_sweep.parquet)")

    @model_validator(mode="after")
    def _agree_needs_three(self):
        if self.rule.kind == "agree" and len(self.models) < 3:
            raise ValueError("an agree rule compares the first two models and escalates to a third: give at least three models")
        if len(set(self.models)) != len(self.models):
            raise ValueError("a cascade names each model once")
        return self


class RoutePolicy(Strict):
    """Send each value of a dataset ``column`` to one model, chosen on a seeded ``learn`` share of the
    examples (the cheapest within ``tolerance`` of the best quality there, or the best quality − λ·cost
    per 1,000 requests with ``lambda``) and scored on the rest."""

    kind: Literal["route"] = Field("route", description="picks the policy")
    column: str = Field(description="the slice column whose values are routed (one of dataset.slices)")
    models: list[str] | None = Field(default=None, description="the models to choose from (default: the pipeline's)")
    learn: float = Field(default=0.5, gt=0, lt=1, description="share of the examples the choice is learned on")
    seed: int = Field(default=0, description="seed of the learning split")
    tolerance: float | None = Field(default=None, ge=0, description="quality a cheaper model may give up (default 0.01)")
    lambda_: float | None = Field(
        default=None, ge=0, alias="lambda", description="quality given up per dollar per 1,000 requests"
    )
    sweep: bool = Field(default=True, description="also price the route over a range of tolerances or λ (policy_sweep.parquet)")

    @model_validator(mode="after")
    def _one_objective(self):
        if self.tolerance is not None and self.lambda_ is not None:
            raise ValueError("a route takes tolerance: or lambda:, not both")
        return self


#: One policy's config: the class of its ``kind``.
PolicyConfig = Annotated[CascadePolicy | RoutePolicy, Field(discriminator="kind")]


class Runner(Strict):
    """Where the heavy stages' shards run: ``dask: local`` (a LocalCluster of ``workers`` processes
    started for the run) or ``dask: tcp://host:8786`` (an existing scheduler). Not part of the
    config hash: the same assessment run here or on a cluster is the same run."""

    dask: str = Field(description="'local', or the address of a running Dask scheduler (tcp://host:8786)")
    workers: int | None = Field(default=None, ge=1, description="worker processes of a local cluster (default 2)")
    shard_rows: int | None = Field(
        default=None, ge=1, description="rows per invoke shard and score shard (default: the pipeline's shard_size)"
    )

    @field_validator("dask")
    @classmethod
    def _address(cls, v: str) -> str:
        v = v.strip()
        if v == "local":
            return v
        m = re.fullmatch(r"(tcp|tls|inproc|ws|wss|ucx)://[^\s/:]+(:\d+)?/?", v)
        if not m:
            raise ValueError(f"{v!r} is neither 'local' nor a scheduler address such as tcp://host:8786")
        return v

    @model_validator(mode="after")
    def _workers_local(self):
        if self.workers is not None and self.dask != "local":
            raise ValueError("workers is for a local cluster (dask: local); an existing scheduler has its own workers")
        return self


#: what a name may not contain: a path separator or a control character
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(value: str) -> str:
    """``value`` when it can name a pipeline or a model; a ValueError saying why not otherwise.

    A pipeline's name is a folder of the artifact root (``<root>/<pipeline>/<as_of>/<run_id>``)
    and a model's name is part of its response files' names and of log lines, so a name is one
    path component: not empty, not ``.`` or ``..``, no leading dot, no path separator, no control
    character. The rule is the one :func:`assay.store.safe_component` applies where a run folder
    is made, so a config that validates never meets that last defence.
    """
    bad = _UNSAFE_NAME.search(value)
    if bad:
        what = "a path separator" if bad.group() in ("/", "\\") else "a control character"
        reason = f"it contains {what} ({bad.group()!r})"
    elif value in ("", ".", ".."):
        reason = {"": "it is empty", ".": "'.' is the folder itself", "..": "'..' is the parent folder"}[value]
    elif value.startswith("."):
        reason = "it starts with a dot"
    else:
        return value
    raise ValueError(
        f"not a usable name: {reason}; a name is one path component (letters, digits, '-', '_', '.') with no leading dot"
    )


#: a pipeline's or a model's name (the key of its entry), checked by :func:`check_name`
Name = Annotated[str, AfterValidator(check_name)]


# --------------------------------------------------------------------------------------------- alerts
#: the events an alert destination can be sent (``assay.<name>`` events, and ``late``: a scheduled
#: run that has not completed ``late_after`` after its start)
ALERT_EVENTS = ("gate.failed", "gate.inconclusive", "run.failed", "run.completed", "model.changed", "cost.over_budget", "late")
#: what a destination is sent when it names no events: a gate that broke, a run that failed, a model
#: that changed behind its name, a nightly run that did not finish
DEFAULT_ALERT_EVENTS = ["gate.failed", "run.failed", "model.changed", "late"]
AlertEvent = Literal[
    "gate.failed", "gate.inconclusive", "run.failed", "run.completed", "model.changed", "cost.over_budget", "late"
]

_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def env_reference(value: str) -> str:
    """``value`` when it is exactly one ``${ENV_VAR}`` reference: an alert URL is a secret (a
    Slack webhook URL is its own password) and is read from the environment when the alert is
    synced, never written in the config, a manifest or a log."""
    if not _ENV_REF.match(value.strip()):
        raise ValueError(
            "a notification URL is a secret: write it as ${ENV_VAR} and set that variable "
            "where `assay serve`, `assay deploy` or `assay alerts sync` runs"
        )
    return value.strip()


def env_name(reference: str) -> str:
    """The variable of a ``${ENV_VAR}`` reference."""
    return _ENV_REF.match(reference.strip()).group(1)


class WebhookTarget(Strict):
    url: Annotated[str, AfterValidator(env_reference)] = Field(
        description="${ENV_VAR} holding the webhook URL (read when the alert is synced; stored by Prefect as a secret)"
    )


class AlertDestination(Strict):
    """Where one alert goes (``webhook:`` or ``slack:``) and which events go there."""

    webhook: WebhookTarget | None = Field(
        default=None, description="any HTTP endpoint: a JSON POST {subject, text, pipeline, ...} (Prefect's Custom Webhook block)"
    )
    slack: WebhookTarget | None = Field(default=None, description="a Slack incoming webhook (Prefect's Slack Webhook block)")
    events: list[AlertEvent] = Field(
        default_factory=lambda: list(DEFAULT_ALERT_EVENTS),
        description="the events sent here: " + ", ".join(ALERT_EVENTS) + " (default: " + ", ".join(DEFAULT_ALERT_EVENTS) + ")",
    )

    @model_validator(mode="after")
    def _one_target(self):
        if (self.webhook is None) == (self.slack is None):
            raise ValueError("an alert destination is one of webhook: {url: ${ENV_VAR}} or slack: {url: ${ENV_VAR}}")
        if len(set(self.events)) != len(self.events):
            raise ValueError("an alert destination names each event once")
        return self

    @property
    def kind(self) -> str:
        return "webhook" if self.webhook is not None else "slack"

    @property
    def url_env(self) -> str:
        """The environment variable holding the destination's URL."""
        return env_name((self.webhook or self.slack).url)


class Sustained(Strict):
    """Alert on a failed gate only when the gates failed in ``fail`` of the last ``of`` runs."""

    fail: int = Field(ge=1, description="failed runs needed (this one included)")
    of: int = Field(ge=1, description="out of this many latest complete runs of the pipeline")

    @model_validator(mode="after")
    def _k_of_n(self):
        if self.fail > self.of:
            raise ValueError(f"sustained: fail ({self.fail}) cannot exceed of ({self.of})")
        return self


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")


def duration_seconds(value: str | int | float) -> float:
    """Seconds of a duration written ``90s``, ``30m``, ``6h``, ``1d`` (or a number of seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration: write it like 90s, 30m, 6h or 1d")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _duration(value):
    seconds = duration_seconds(value)
    if seconds < 10:
        raise ValueError("late_after must be at least 10s (Prefect's shortest proactive window)")
    return value


class AlertsConfig(Strict):
    """Alerts as Prefect automations (see docs/alerts.md), top level or per pipeline."""

    destinations: dict[Name, AlertDestination] = Field(
        default_factory=dict, description="named destinations: {name: {webhook|slack: {url: ${ENV_VAR}}, events: [...]}}"
    )
    late_after: Annotated[str | int | float, AfterValidator(_duration)] = Field(
        default="6h", description="a scheduled run not completed this long after it started (or was due) sends 'late'"
    )
    sustained: Sustained | None = Field(
        default=None, description="alert on gate.failed only when the gates failed in fail: of the last of: runs"
    )

    @property
    def late_after_seconds(self) -> float:
        return duration_seconds(self.late_after)


class Baseline(Strict):
    """A fixed run that every run's max_drop gates compare with (instead of the previous good run)."""

    run: str | None = Field(default=None, description="the run id of the baseline run")
    as_of: str | None = Field(default=None, description="the date (YYYY-MM-DD) whose latest complete run is the baseline")

    @model_validator(mode="after")
    def _one(self):
        if (self.run is None) == (self.as_of is None):
            raise ValueError("a baseline is {run: RUN_ID} or {as_of: YYYY-MM-DD}")
        if self.as_of is not None:
            try:
                _dt.date.fromisoformat(str(self.as_of))
            except ValueError:
                raise ValueError(f"baseline.as_of: {self.as_of!r} is not a date YYYY-MM-DD") from None
            self.as_of = str(self.as_of)
        return self


class PipelineConfig(Strict):
    description: str | None = Field(default=None, description="a line of your own about the use case")
    dataset: DatasetConfig = Field(description="the examples")
    prompt: PromptConfig | None = Field(default=None, description="how a row becomes messages for chat models")
    models: list[str] = Field(min_length=1, description="names from the top-level models:")
    metrics: list[str | MetricSpec] = Field(
        min_length=1, description="a metric's name, or a mapping; the first is the headline metric"
    )
    cost: CostConfig = Field(default_factory=CostConfig, description="the monthly volume and the budget")
    gates: dict[str, Gate] = Field(
        default_factory=dict, description="quality bars per metric; a broken gate fails the run (exit 3)"
    )
    schedule: Schedule | None = Field(default=None, description="when assay serve or a deployment runs the pipeline")
    cache: Literal["use", "refresh", "off"] = Field(
        default="use", description="the response cache: use it, call again and overwrite, or ignore it"
    )
    max_error_rate: float = Field(default=0.1, ge=0, le=1, description="the run fails when a larger share of calls failed")
    shard_size: int = Field(default=500, ge=1, description="responses per Parquet part (the unit of resume)")
    bootstrap: int = Field(default=1000, ge=0, description="resamples for confidence intervals (0: none)")
    policies: dict[str, PolicyConfig] = Field(
        default_factory=dict, description="cascades and routes scored from the run's answers"
    )
    runner: Runner | None = Field(
        default=None, description="run invoke and score shards on Dask (overrides the top-level runner)"
    )
    samples: int | dict[str, int] | None = Field(
        default=None,
        description="calls per example: K for every chat model of the pipeline, or {model: K}; "
        "overrides the models' own samples:",
    )
    alerts: AlertsConfig | None = Field(default=None, description="this pipeline's alerts (replaces the top-level alerts:)")
    baseline: Baseline | None = Field(
        default=None, description="a pinned run the max_drop gates compare with: {run: RUN_ID} or {as_of: DATE}"
    )

    @field_validator("samples", mode="before")
    @classmethod
    def _samples(cls, v):
        def one(k, where: str):
            if isinstance(k, bool) or not isinstance(k, int):
                raise ValueError(f"{where}must be a whole number of calls per example (1 or more), got {k!r}")
            if not 1 <= k <= MAX_SAMPLES:
                raise ValueError(f"{where}must be between 1 and {MAX_SAMPLES} calls per example, got {k}")
            return k

        if v is None:
            return v
        if isinstance(v, dict):
            return {str(m): one(k, f"samples.{m} ") for m, k in v.items()}
        return one(v, "")

    def samples_of(self, name: str, model) -> int:
        """Calls per example for the pipeline's model ``name`` (config ``model``): the pipeline's
        ``samples: {name: K}``, else its ``samples: K``, else the model's own ``samples:``, else 1.
        Only chat models are called more than once (see :mod:`assay.calling.fanout`)."""
        s = self.samples
        if isinstance(s, dict) and name in s:
            return s[name]
        if isinstance(s, int):
            return s
        return int(getattr(model, "samples", 1) or 1)

    @field_validator("cache", mode="before")
    @classmethod
    def _yaml_off(cls, v):
        # YAML 1.1 reads a bare `off` as false
        return "off" if v is False else v

    def metric_specs(self) -> list[MetricSpec]:
        return [MetricSpec(name=m) if isinstance(m, str) else m for m in self.metrics]

    def confidence_models(self) -> set[str]:
        """The models whose answers the policies judge by their confidence (every cascade step
        but the last, under a ``confidence`` rule): the ``openai`` provider asks them for
        log-probabilities."""
        out: set[str] = set()
        for pol in self.policies.values():
            if pol.kind == "cascade" and pol.rule.kind == "confidence":
                out.update(pol.models[:-1])
        return out


class AssayConfig(Strict):
    artifacts: Root = Field(
        default="data/runs",
        description="the artifact root: a path (relative to pipelines.yaml) or an fsspec URL (s3://bucket/prefix)",
    )
    cache_dir: FilePath | None = Field(
        default=None, description="the response cache's folder (default <artifacts>/_cache for a local root)"
    )
    runner: Runner | None = Field(default=None, description="run invoke and score shards of every pipeline on Dask")
    models: dict[Name, ModelConfig] = Field(default_factory=dict, description="named models, reusable across pipelines")
    pipelines: dict[Name, PipelineConfig] = Field(default_factory=dict, description="the assessments, by name")
    alerts: AlertsConfig | None = Field(
        default=None,
        description="alerts for every pipeline as Prefect automations (a pipeline's own alerts: replaces it; see docs/alerts.md)",
    )

    def alerts_of(self, pipeline: str) -> "AlertsConfig | None":
        """The alerts of one pipeline: its own ``alerts:``, else the top-level one."""
        p = self.pipelines[pipeline]
        return p.alerts if p.alerts is not None else self.alerts
