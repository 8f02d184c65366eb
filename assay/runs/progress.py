"""Who watches a run's model calls: a terminal progress bar, a Prefect progress artifact.

The invoke stage reports ``(model, done, total, errors, usd)`` here; a watcher subscribes for
as long as it watches (``with watching(fn): ...``). A watcher that fails is dropped, never the run.
"""

import contextlib
import logging
from collections.abc import Callable, Iterator

Watcher = Callable[[str, int, int, int, float], None]

_WATCHERS: list[Watcher] = []
log = logging.getLogger("assay")


@contextlib.contextmanager
def watching(fn: Watcher) -> Iterator[None]:
    _WATCHERS.append(fn)
    try:
        yield
    finally:
        if fn in _WATCHERS:
            _WATCHERS.remove(fn)


def report(model: str, done: int, total: int, errors: int, usd: float) -> None:
    for fn in list(_WATCHERS):
        try:
            fn(model, done, total, errors, usd)
        except Exception as e:  # noqa: BLE001  (a display must never fail a run)
            log.debug("progress watcher %r dropped: %s", fn, e)
            _WATCHERS.remove(fn)
