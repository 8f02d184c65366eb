"""The run lock on an object store: a lease object that every machine sharing the root sees.

On a local artifact root a run folder is locked with ``flock`` (:func:`assay.runs.context.claim`),
which the operating system drops when the holder dies. An object store has no such lock, and a
flock on one machine's disk says nothing to another machine, so on a remote root the lock is an
object, ``<run folder>/.lock``, holding its owner and an expiry:

* **claim**: an exclusive create (S3 ``PutObject`` with ``If-None-Match: *``: of several machines
  creating it at once exactly one succeeds). When the object exists and has not expired, the
  folder is taken (another process runs it). When it has expired, its holder died (a ``kill -9``,
  a lost machine): the lease is taken over with a conditional put (``If-Match: <ETag>`` of the
  expired object), which again only one contender wins.
* **heartbeat**: while held, a daemon thread renews the expiry every ``ttl/4`` with ``If-Match``
  on its own last write; if that fails someone took the lease over (this process stalled past the
  expiry), and the loss is logged.
* **release**: the object is deleted when it is still this process's.

The expiry is ``ASSAY_LOCK_TTL_S`` seconds (60 by default) after the last renewal, by the
holder's clock: a killed run's folder can be resumed from any machine once that has passed (the
machines' clocks must agree to within a fraction of it, as NTP keeps them). Before, a second run
of the same request starts a run folder of its own, as it does on one machine.

Other fsspec stores: the create is ``open(…, "xb")`` where the filesystem supports it, and an
expired lease is taken over by deleting and creating it again, which two machines can race.
"""

import json
import logging
import os
import socket
import threading
import time
import uuid

from assay.store import RunFolder

log = logging.getLogger("assay.runs")

LOCK = ".lock"


def ttl_s() -> float:
    try:
        return max(1.0, float(os.environ.get("ASSAY_LOCK_TTL_S", "60")))
    except ValueError:
        return 60.0


def _precondition_failed(e: Exception) -> bool:
    return isinstance(e, FileExistsError) or "pre-condition" in str(e).lower() or "precondition" in str(e).lower()


class Lease:
    """A held lease on one run folder; renewed by a thread until :meth:`release`."""

    def __init__(self, folder: RunFolder, ttl: float):
        self.folder, self.ttl = folder, ttl
        self.fs, self.loc = folder.store.fs, folder._loc(LOCK)
        self.s3 = folder.store.protocol in ("s3", "s3a")
        self.owner = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "expires": time.time() + self.ttl,
                "ttl_s": self.ttl,
            }
        ).encode()

    def _put(self, **cond) -> None:
        if self.s3:
            out = self.fs.pipe_file(self.loc, self._body(), **cond)
            self.etag = (out or {}).get("ETag") if isinstance(out, dict) else None
            return
        if cond.get("mode") == "create":
            with self.fs.open(self.loc, "xb") as f:
                f.write(self._body())
        else:
            with self.fs.open(self.loc, "wb") as f:
                f.write(self._body())

    def acquire(self) -> bool:
        """True when this process now holds the lease (created, or taken over from an expired one)."""
        try:
            self._put(mode="create")
            return self._started()
        except Exception as e:
            if not _precondition_failed(e):
                raise
        current, etag = self._read()
        if current is not None and current.get("expires", 0) > time.time():
            return False  # a live holder
        log.info(
            "run folder %s: taking over an expired lock (%s)",
            self.folder.url,
            f"held by {current.get('host')} pid {current.get('pid')}" if current else "unreadable",
        )
        try:
            if self.s3 and etag:
                self._put(IfMatch=etag)
            else:
                self.fs.rm(self.loc)
                self._put(mode="create")
        except Exception as e:
            if _precondition_failed(e) or isinstance(e, FileNotFoundError):
                return False  # another machine took it over first
            raise
        return self._started()

    def _read(self) -> tuple[dict | None, str | None]:
        try:
            etag = self.fs.info(self.loc).get("ETag")
            return json.loads(self.fs.cat_file(self.loc)), etag
        except FileNotFoundError:
            return None, None
        except ValueError:
            return None, etag

    def _started(self) -> bool:
        self._thread = threading.Thread(target=self._beat, name="assay-lease", daemon=True)
        self._thread.start()
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._put(**({"IfMatch": self.etag} if self.s3 and self.etag else {}))
            except Exception as e:  # noqa: BLE001
                if _precondition_failed(e):
                    self.lost = True
                    log.warning(
                        "run folder %s: lost its lock to another process (this one stalled past the %.0f s expiry)",
                        self.folder.url,
                        self.ttl,
                    )
                    return
                log.debug("run folder %s: lock renewal failed (%s); trying again", self.folder.url, e)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.lost:
            return
        current, _ = self._read()
        if current is not None and current.get("owner") == self.owner:
            try:
                self.fs.rm(self.loc)
            except FileNotFoundError:
                pass


def acquire(folder: RunFolder) -> Lease | None:
    """The lease on ``folder`` when this process could take it, else None."""
    lease = Lease(folder, ttl_s())
    return lease if lease.acquire() else None
