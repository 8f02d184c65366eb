"""manifest.json: what a run was asked, what went in, what came out, and how it ended.

The manifest is read-modify-written as a whole (one JSON object, written atomically by the
store). :func:`update` is the one way to change it; :class:`Manifest` is the typed way to read
it, so that no caller walks ``m.get("stages", {}).get("invoke", {})`` chains by hand.
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from assay.store import MANIFEST, RunFolder

# One process may run several stages' threads against one run folder (a judge in the score
# stage, a backfill's threads on different folders): the read-modify-write must not interleave.
_LOCK = threading.RLock()


def now_utc() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Manifest:
    """A read-only, typed view of one manifest.json."""

    data: dict

    @classmethod
    def of(cls, folder: RunFolder) -> "Manifest":
        return cls(folder.manifest() or {})

    def get(self, key: str, default=None):
        return self.data.get(key, default)

    @property
    def status(self) -> str | None:
        return self.data.get("status")

    @property
    def as_of(self) -> str | None:
        return self.data.get("as_of")

    def stage(self, name: str) -> dict:
        """What a finished stage recorded (seconds, artifact hashes, its own figures); {} if it has not."""
        return (self.data.get("stages") or {}).get(name) or {}

    @property
    def model_stats(self) -> dict[str, dict]:
        """Per model, what the invoke stage measured: calls, errors, wall time, throughput, ..."""
        return self.stage("invoke").get("models") or {}

    @property
    def error_kinds(self) -> dict[str, dict[str, int]]:
        """Per model, the invoke stage's final errors by kind (``http_429``, ``timeout``, ...; see
        :func:`assay.calling.retry.error_kind`)."""
        return {m: dict(st.get("error_kinds") or {}) for m, st in self.model_stats.items()}

    @property
    def retry_kinds(self) -> dict[str, dict[str, int]]:
        """Per model, the invoke stage's retries by the kind of failure that caused them."""
        return {m: dict(st.get("retry_kinds") or {}) for m, st in self.model_stats.items()}

    @property
    def judge_usage(self) -> dict[str, dict]:
        """Per judge metric, the judge model's usage (requests and tokens) in the score stage."""
        return self.stage("score").get("judges") or {}

    @property
    def dataset(self) -> dict:
        return self.data.get("dataset") or {}

    @property
    def prices(self) -> dict:
        return self.data.get("prices") or {}

    @property
    def judge_prices(self) -> dict:
        return self.data.get("judge_prices") or {}

    @property
    def request(self) -> dict:
        return self.data.get("request") or {}


def edit(folder: RunFolder, change: Callable[[dict], None]) -> dict:
    """Read a run's manifest, let ``change`` modify it in place, write it; return it as written."""
    with _LOCK:
        m = folder.manifest() or {}
        change(m)
        folder.write_json(MANIFEST, m)
        return m


def update(folder: RunFolder, stage: tuple[str, dict] | None = None, **changes) -> dict:
    """Set top-level keys of a run's manifest (and, with ``stage=(name, record)``, one stage's
    record); return the manifest as written."""

    def change(m: dict) -> None:
        if stage is not None:
            m.setdefault("stages", {})[stage[0]] = stage[1]
        m.update(changes)

    return edit(folder, change)


def record_stage(folder: RunFolder, name: str, started: float, artifacts: list[str], extra: dict | None = None) -> dict:
    """Record a finished stage: its wall time since ``started`` (a ``perf_counter``), the sha256
    of each artifact it wrote (a name ending in ``/`` is a folder of parts), and ``extra``."""
    hashes = {}
    for art in artifacts:
        if art.endswith("/"):
            for part in folder.listdir(art.rstrip("/")):
                hashes[f"{art}{part}"] = folder.hash(f"{art}{part}")
        elif folder.exists(art):
            hashes[art] = folder.hash(art)
    info = {"seconds": round(time.perf_counter() - started, 4), "artifacts": hashes, **(extra or {})}
    update(folder, stage=(name, info))
    return info
