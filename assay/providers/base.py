"""What every provider implements, and the error type the invoke engine understands."""

from dataclasses import dataclass, field
from typing import Any, Callable

import pyarrow as pa

from assay.config import DatasetConfig, ModelConfig, PromptConfig

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


class ProviderError(Exception):
    """A failed call. ``retryable`` decides whether the engine tries again."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None,
                 retryable: bool | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = (status in RETRYABLE_STATUS or status is None) if retryable is None else retryable


@dataclass
class CallResult:
    output: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


@dataclass
class Context:
    """What a provider may need from the pipeline: paths, dataset and prompt config."""

    model_name: str
    dataset: DatasetConfig
    prompt: PromptConfig | None
    resolve_path: Callable[[str | None], str | None]
    pipeline: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Provider:
    """Base class. Per-item providers implement ``call``; batch providers ``run_batch``.

    A batch provider gets a whole shard (an Arrow table of dataset rows) and returns
    columns ``output, prompt_tokens, completion_tokens, latency_s, error`` (lists of the
    shard's length). Per-item providers are driven by the engine, which adds concurrency,
    rate limits, retries and the response cache around ``call``.
    """

    batch = False
    #: whether calls are worth caching (they cost money or time and are deterministic enough)
    cacheable = True

    def __init__(self, cfg: ModelConfig, ctx: Context):
        self.cfg = cfg
        self.ctx = ctx

    def identity(self) -> dict:
        """Everything that shapes a response, for the cache key. Never includes secrets.

        (Not every provider's config has ``model`` and ``params``; missing ones count as unset.)
        """
        return {"provider": self.cfg.provider, "model": getattr(self.cfg, "model", None), "version": self.cfg.version,
                "params": getattr(self.cfg, "params", {})}

    async def start(self) -> None:
        """Open clients; called once per run inside the event loop."""

    async def call(self, messages: list[dict]) -> CallResult:
        raise NotImplementedError

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        raise NotImplementedError

    def stats(self) -> dict:
        """Figures for costing that only the provider knows (training time, compute time)."""
        return {}

    async def close(self) -> None:
        """Release clients."""
