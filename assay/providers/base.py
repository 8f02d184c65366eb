"""The two kinds of provider, and the error type the calling engine understands.

* :class:`ChatProvider` answers one list of chat messages per call (``openai``). The engine in
  :mod:`assay.calling` drives it: concurrency, rate limits, retries, the response cache, the
  budget.
* :class:`BatchProvider` turns a shard of dataset rows into a column per field (``replay``,
  ``sklearn``, ``python``, ``transformers``). The engine's batch runner calls it in a worker
  thread, one shard at a time, and caches its outputs per example when ``cache_responses``.

The kind is the class: ``isinstance(p, ChatProvider)``, or the class attribute ``kind``
(``"chat"`` or ``"batch"``) where only the class is at hand.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from assay.config import DatasetConfig, ModelConfig, PromptConfig
from assay.errors import AssayError

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}


#: What went wrong with a call that has no HTTP status (see :func:`assay.calling.retry.error_kind`)
FAULTS = ("timeout", "connection", "bad_json", "no_choices")
#: what an error body said, more precisely than its HTTP status (a ``fault`` given with a status)
BODY_KINDS = ("context_length",)


class ProviderError(AssayError):
    """A failed call. ``retryable`` decides whether the engine tries again; ``fault`` (one of
    :data:`FAULTS`) says what failed when there is no HTTP ``status``."""

    def __init__(
        self,
        message: str,
        status: int | None = None,
        retry_after: float | None = None,
        retryable: bool | None = None,
        fault: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.retryable = (status in RETRYABLE_STATUS or status is None) if retryable is None else retryable
        self.fault = fault


@dataclass(slots=True)
class CallResult:
    output: str | None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    #: how sure the model was of its answer, 0..1 (the geometric mean of its tokens' probabilities,
    #: from the endpoint's log-probabilities), when asked for and given; cascades escalate on it
    confidence: float | None = None
    #: the model name the endpoint says it served (``model`` of its response)
    response_model: str | None = None
    #: the endpoint's ``system_fingerprint`` (its build), when it gives one
    system_fingerprint: str | None = None
    #: seconds to the first content token, for a streamed call
    ttft_s: float | None = None


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
    """What both kinds share: the model's config and context, an identity, and stats."""

    #: "chat" or "batch": set by :class:`ChatProvider` and :class:`BatchProvider`
    kind: ClassVar[str] = ""
    #: whether the engine stores responses in the response cache and serves repeats from it
    cache_responses: ClassVar[bool] = True

    def __init__(self, cfg: ModelConfig, ctx: Context):
        self.cfg = cfg
        self.ctx = ctx

    def identity(self) -> dict:
        """Everything about the model that shapes a response, for the cache key. Never includes secrets.

        (Not every provider's config has ``model`` and ``params``; missing ones count as unset.)
        """
        return {
            "provider": self.cfg.provider,
            "model": getattr(self.cfg, "model", None),
            "version": self.cfg.version,
            "params": getattr(self.cfg, "params", {}),
        }

    def stats(self) -> dict:
        """Figures for costing that only the provider knows (training time, compute time)."""
        return {}


class ChatProvider(Provider):
    """One call per list of chat messages.

    ``start()`` opens clients inside the event loop (once per batch of calls), ``call()`` makes one
    request and raises :class:`ProviderError` on failure (``retryable`` says whether to try again;
    the provider enforces ``cfg.timeout_s`` itself), ``close()`` releases the clients. The engine adds
    concurrency (``cfg.max_concurrency``), ``rpm``/``tpm``, retries (``cfg.max_attempts``) and the
    cache around ``call``.
    """

    kind: ClassVar[str] = "chat"

    async def start(self) -> None:
        """Open clients; called once per batch of calls, inside the event loop."""

    async def call(self, messages: list[dict]) -> CallResult:
        raise NotImplementedError

    async def close(self) -> None:
        """Release clients."""


class BatchProvider(Provider):
    """A whole shard at a time, in a worker thread.

    ``run_batch(rows)`` gets an Arrow table of dataset rows and returns columns (lists of the
    shard's length): ``output`` and ``error`` always, and any of ``prompt_tokens``,
    ``completion_tokens``, ``cached_tokens``, ``latency_s``, ``started_at`` (µs since the epoch,
    UTC: the provider's own request time), ``confidence`` (0..1: how sure it was of each answer). ``prepare(rows)`` is called once with every row that
    will be run, in the order the shards will come.
    """

    kind: ClassVar[str] = "batch"
    #: Redoing a shard costs nothing worth protecting (replayed logs, conventional models): the
    #: runner uses large shards, since thousands of tiny parts would cost more than they protect.
    free_to_redo: ClassVar[bool] = False

    def columns(self, available: list[str]) -> list[str] | None:
        """The dataset columns its shards read (``example_id`` is always given); None: every one.
        The invoke stage reads only these, so a provider that needs few keeps a large dataset small."""
        return None

    def prepare(self, rows: pa.Table) -> None:
        """Once before the shards (default: nothing)."""

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        raise NotImplementedError

    def cache_inputs(self, rows: pa.Table) -> list:
        """Per row, what its output depends on besides :meth:`identity`: the part of its cache key.

        Default: the whole row as the provider sees it (every dataset field)."""
        return rows.to_pylist()
