"""Call figures: what a caller's calls came to, as a small typed record that adds with ``+``.

The calling engine counts into a plain dict while it works (:func:`assay.calling.engine.new_stats`);
where figures of several batches of calls are put together (the invoke shards of one model, the
gradings of one judge) they are a :class:`CallFigures`, and ``a + b`` is the one rule for adding
them. A figure that is not known (None: a provider that does not measure it) stays unknown in a
sum, never 0.
"""

from dataclasses import dataclass, field, fields


def _plus(a, b):
    return None if a is None or b is None else a + b


def _counts(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


#: the engine's timing of one batch of calls: not a figure that adds (the caller records its own)
_PER_BATCH = ("wall_s", "concurrency", "throughput_rps")


@dataclass
class CallFigures:
    """One model's (or one judge's) calls: ``called`` (calls made), ``cache_hits``, ``resumed`` (rows
    answered by an earlier attempt), ``retries``, ``errors`` (final ones), ``usd`` (their price),
    the tokens where they are counted, retries and errors by kind with the first error's message of
    each kind, and the provider's own measurements (``measured``: compute, training and load time,
    training rows; the device, ...). Numbers add; kinds add by kind; the first message of a kind is
    kept; of the provider's measurements, numbers add and anything else is the first part's."""

    called: int | None = 0
    cache_hits: int | None = 0
    resumed: int | None = 0
    retries: int | None = 0
    errors: int | None = 0
    usd: float | None = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    retry_kinds: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] = field(default_factory=dict)
    measured: dict = field(default_factory=dict)

    def __add__(self, other: "CallFigures") -> "CallFigures":
        if not isinstance(other, CallFigures):
            return NotImplemented
        measured = dict(self.measured)
        for k, v in other.measured.items():
            if k not in measured:
                measured[k] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                measured[k] = _plus(measured[k], v)
        return CallFigures(
            called=_plus(self.called, other.called),
            cache_hits=_plus(self.cache_hits, other.cache_hits),
            resumed=_plus(self.resumed, other.resumed),
            retries=_plus(self.retries, other.retries),
            errors=_plus(self.errors, other.errors),
            usd=_plus(self.usd, other.usd),
            prompt_tokens=_plus(self.prompt_tokens, other.prompt_tokens),
            completion_tokens=_plus(self.completion_tokens, other.completion_tokens),
            retry_kinds=_counts(self.retry_kinds, other.retry_kinds),
            error_kinds=_counts(self.error_kinds, other.error_kinds),
            error_examples={**other.error_examples, **self.error_examples},
            measured=measured,
        )

    @classmethod
    def of(cls, stats: dict) -> "CallFigures":
        """The figures of a caller's dict (the engine's, with its provider's measurements); the
        timing of the batch itself (``wall_s``, ``concurrency``, ``throughput_rps``) is left out."""
        own = {f.name for f in fields(cls)} - {"measured"}
        kw = {k: v for k, v in stats.items() if k in own}
        for k in ("retry_kinds", "error_kinds", "error_examples"):
            kw[k] = dict(kw.get(k) or {})
        return cls(**kw, measured={k: v for k, v in stats.items() if k not in own and k not in _PER_BATCH})

    def as_dict(self) -> dict:
        """The figures as the manifest records them: one flat mapping, without the unknown tokens."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "measured"}
        for k in ("prompt_tokens", "completion_tokens"):
            if out[k] is None:
                del out[k]
        return {**out, **self.measured}
