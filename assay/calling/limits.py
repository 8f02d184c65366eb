"""Requests and tokens per minute: token buckets shared by one model's workers."""

import asyncio
import time


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """What a call will count against ``tpm``: the prompt's characters / 4, plus ``max_tokens``."""
    return sum(len(m["content"]) for m in messages) // 4 + max_tokens


class RateLimiter:
    """Token buckets for requests and tokens per minute, shared by one model's workers.

    Each bucket holds at most a second's worth (at least one request, and at least the call at
    hand's tokens), so a burst after a quiet spell stays within the per-minute rate.
    """

    def __init__(self, rpm: float | None, tpm: float | None):
        self.rpm, self.tpm = rpm, tpm
        now = time.monotonic()
        self._r = (rpm or 0) / 60.0, min(rpm or 0, max(1.0, (rpm or 0) / 60.0)), now  # rate, tokens, t
        self._t = (tpm or 0) / 60.0, min(tpm or 0, max(1.0, (tpm or 0) / 60.0)), now
        self._lock = asyncio.Lock()

    @property
    def active(self) -> bool:
        return bool(self.rpm or self.tpm)

    @staticmethod
    def _take(bucket, cost, cap):
        rate, tokens, t = bucket
        now = time.monotonic()
        tokens = min(cap, tokens + (now - t) * rate)
        if tokens >= cost:
            return (rate, tokens - cost, now), 0.0
        return (rate, tokens, now), (cost - tokens) / rate

    async def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` estimated tokens is allowed."""
        if not self.rpm and not self.tpm:
            return
        async with self._lock:
            while True:
                wait = 0.0
                if self.rpm:
                    self._r, w = self._take(self._r, 1, max(1.0, self.rpm / 60.0))
                    if w:
                        wait = max(wait, w)
                if self.tpm and not wait:
                    cap = max(float(tokens), self.tpm / 60.0)
                    self._t, w = self._take(self._t, tokens, cap)
                    if w:
                        # give back the request token we took
                        if self.rpm:
                            rate, tk, t = self._r
                            self._r = (rate, tk + 1, t)
                        wait = max(wait, w)
                if not wait:
                    return
                await asyncio.sleep(wait)
