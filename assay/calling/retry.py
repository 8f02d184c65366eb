"""Retries: which failures are tried again, how long to wait, and the loop that does it.

Retryable failures (408/409/425/429/5xx, timeouts, connection errors: see
:class:`~assay.providers.base.ProviderError`) are tried again up to ``max_attempts`` with
exponential backoff and full jitter; a server's ``Retry-After`` is honoured as given (plus up
to a tenth). Anything else is final at once. A provider bug (any other exception) is a failed
call recorded on its row, never a failed run.

:func:`error_kind` names what went wrong with a failed attempt (``http_429``, ``timeout``,
``connection``, ``bad_json``, ``no_choices``, ``exception``, ...): the one classification that
the engine's per-kind counts (``retry_kinds``, ``error_kinds`` in the manifest) use.
"""

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from assay.calling.limits import RateLimiter
from assay.providers.base import CallResult, ProviderError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    timeout_s: float | None = None  # for the message of a timeout the provider did not word itself
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0

    def delay(self, err: ProviderError, attempt: int) -> float:
        """Seconds to wait before attempt ``attempt + 1``."""
        if err.retry_after is not None:
            return err.retry_after + random.uniform(0, 0.1 * err.retry_after)
        d = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(0.5 * d, d)


def as_provider_error(e: Exception, policy: RetryPolicy) -> ProviderError:
    if isinstance(e, ProviderError):
        return e
    if isinstance(e, asyncio.TimeoutError):
        return ProviderError(f"timeout after {policy.timeout_s}s", retryable=True, fault="timeout")
    return ProviderError(f"{type(e).__name__}: {e}", retryable=False, fault="exception")


#: the kind of a call that raised something other than a ProviderError (a provider bug), and of
#: a batch provider's shard that raised
EXCEPTION = "exception"
#: the kind of an error a batch provider wrote on a row itself
ROW_ERROR = "provider"


def error_kind(err: ProviderError) -> str:
    """What went wrong: the provider's reading of the error body when it has one
    (``context_length``: the prompt overflowed the model's context), else ``http_<status>`` when
    the endpoint answered with one, else the provider's fault (``timeout``, ``connection``,
    ``bad_json``, ``no_choices``), else ``exception``."""
    if err.fault is not None and err.status is not None:
        return err.fault
    if err.status is not None:
        return f"http_{err.status}"
    return err.fault or EXCEPTION


def count(counts: dict, kinds) -> None:
    """Add one to ``counts[kind]`` for each of ``kinds``."""
    for k in kinds:
        counts[k] = counts.get(k, 0) + 1


#: (result or None, start of the last attempt (perf_counter), its seconds, attempts, error or None,
#: the kind of each failed attempt in order: all of them retried but a final error's, the last)
Outcome = tuple[CallResult | None, float, float, int, str | None, list[str]]


async def call_with_retries(
    call: Callable[[list[dict]], Awaitable[CallResult]],
    messages: list[dict],
    policy: RetryPolicy,
    limiter: RateLimiter | None = None,
    est_tokens: int = 0,
    failed: tuple[Exception, float] | None = None,
) -> Outcome:
    """Call until success, a final error or ``max_attempts``.

    ``failed`` is the first attempt's exception and start, when the caller made that attempt
    itself (the engine's fast path: one await per successful call, nothing else).
    """
    perf = time.perf_counter
    attempt = 0
    kinds: list[str] = []
    if failed is not None:
        attempt, (exc, t0) = 1, failed
        err = as_provider_error(exc, policy)
        kinds.append(error_kind(err))
    while True:
        if attempt:
            if not err.retryable or attempt >= policy.max_attempts:
                return None, t0, perf() - t0, attempt, str(err), kinds
            await asyncio.sleep(policy.delay(err, attempt))
        attempt += 1
        if limiter is not None:
            await limiter.acquire(est_tokens)
        t0 = perf()
        try:
            # providers enforce their timeout themselves: a wait_for here would cost a task per call
            return await call(messages), t0, perf() - t0, attempt, None, kinds
        except Exception as e:  # noqa: BLE001  (a provider bug must not sink the run: it is recorded on the row)
            err = as_provider_error(e, policy)
            kinds.append(error_kind(err))
