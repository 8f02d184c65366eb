"""A content-addressed response cache: never pay twice for a call already made.

Keys hash everything that shapes a response (provider identity: endpoint, model, version,
parameters; and the rendered messages). Values are the call's result. Errors are never
stored. :class:`ResponseCache` is one SQLite file in WAL mode (cheap writes, safe for the
processes of one host): the cache of single-process runs on a local artifact root.
:class:`SegmentCache` is the cache of runs whose calls are made on several processes or machines
(a Dask runner, a remote artifact root): immutable segment files in a shared folder, read through a
local index. :func:`open_cache` picks one by its location.
"""

import contextlib
import hashlib
import io
import json
import os
import sqlite3
import threading
import time
import uuid


def cache_key(identity: dict, messages) -> str:
    """The key of one request: a hash of the provider's identity and what it is asked."""
    payload = json.dumps([identity, messages], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def key_maker(identity: dict):
    """``cache_key(identity, ·)`` for many requests: the identity is serialised and hashed once."""
    head = hashlib.sha256(("[" + json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str) + ",").encode())
    dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode

    def key(messages) -> str:
        h = head.copy()
        h.update((dumps(messages) + "]").encode())
        return h.hexdigest()

    return key


class ResponseCache:
    def __init__(self, path: str):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """Look up many keys at once (one query per 500 keys)."""
        found: dict[str, dict] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                q = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                for k, v in self._db.execute(q, chunk):
                    found[k] = json.loads(v)
        return found

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        if not items:
            return
        now = time.time()
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
                [(k, json.dumps(v), now) for k, v in items],
            )
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


#: a segment is written once this many new records are waiting (and when the cache is closed)
SEGMENT_ROWS = 20_000


def index_dir_for(segments: str) -> str:
    """This machine's read index of a segment folder: ``$ASSAY_CACHE_INDEX`` or ~/.cache/assay/index,
    one sub-folder per segment folder (named by a hash of its URL)."""
    base = os.environ.get("ASSAY_CACHE_INDEX") or os.path.join(os.path.expanduser("~"), ".cache", "assay", "index")
    return os.path.join(base, hashlib.sha256(segments.rstrip("/").encode()).hexdigest()[:32])


class SegmentCache:
    """The response cache of runs whose calls are made by several processes or machines.

    The shared state is a folder of immutable segment files, ``<segments>/seg-<sha256>.parquet``
    (columns ``key``, ``value``: the same JSON records as :class:`ResponseCache`), written once by
    the process that made the calls (at every :data:`SEGMENT_ROWS` new records and on close),
    under a name that is the hash of its content, through fsspec, so the folder can be on the local
    disk or on an object store. Nothing shared is ever rewritten, so no two writers can meet.

    Lookups go to a local read index: an SQLite file per machine and segment folder
    (:func:`index_dir_for`) holding every record of the segments it has read, and their names.
    Opening the cache lists the folder and reads only the segments the index lacks. Several
    processes of one machine share that index: it is in WAL mode, a refresh holds an OS file lock
    (``flock``) on ``index.lock`` so one process reads a new segment while the others wait, and
    every write is an idempotent ``INSERT OR IGNORE`` of immutable content, so an index can always
    be deleted and rebuilt from the listing.

    ``legacy``: a :class:`ResponseCache` file read (never written) for keys the segments lack, so a
    run on a cluster reuses what single-process runs cached on this machine.
    """

    def __init__(self, segments: str, index_dir: str | None = None, legacy: str | None = None):
        self.segments = segments.rstrip("/")
        self.remote = "://" in self.segments and not self.segments.startswith("file://")
        if self.remote:
            # lazy: keeps fsspec out of start-up
            import fsspec

            self.fs, self._base = fsspec.core.url_to_fs(self.segments, use_listings_cache=False)
        else:
            self.fs, self._base = None, os.path.abspath(self.segments.removeprefix("file://"))
        self.index_dir = index_dir or index_dir_for(self.segments)
        os.makedirs(self.index_dir, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(os.path.join(self.index_dir, "index.sqlite"), check_same_thread=False, timeout=60)
        with self._index_lock():  # switching to WAL answers "database is locked" at once (no busy
            # wait) while another process of this machine opens the same index: one at a time
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY)")
            self._db.commit()
        self._pending: list[tuple[str, str]] = []
        self.written: list[str] = []  # segment names this object wrote
        self.read: list[str] = []  # segment names this object read into the index
        self._legacy = None
        if legacy and os.path.exists(legacy):
            self._legacy = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True, check_same_thread=False, timeout=60)
        self.refresh()

    # the shared folder ----------------------------------------------------------
    def _loc(self, name: str) -> str:
        return f"{self._base}/{name}" if self.remote else os.path.join(self._base, name)

    def listing(self) -> list[str]:
        """The segment files' names in the shared folder."""
        if self.remote:
            try:
                names = [p.rsplit("/", 1)[-1] for p in self.fs.ls(self._base, detail=False)]
            except FileNotFoundError:
                return []
        else:
            names = os.listdir(self._base) if os.path.isdir(self._base) else []
        return sorted(n for n in names if n.startswith("seg-") and n.endswith(".parquet"))

    def _read_segment(self, name: str) -> list[tuple[str, str]]:
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        opener = self.fs.open if self.remote else open
        with opener(self._loc(name), "rb") as f:
            t = pq.ParquetFile(f).read(columns=["key", "value"])
        return list(zip(t["key"].to_pylist(), t["value"].to_pylist()))

    def refresh(self) -> int:
        """Read the segments the index lacks into it; returns how many were read."""
        names = self.listing()
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT name FROM segments")}
        new = [n for n in names if n not in known]
        if not new:
            return 0
        with self._index_lock():  # another process of this machine may be reading the same segments
            with self._lock:
                known = {r[0] for r in self._db.execute("SELECT name FROM segments")}
            count = 0
            for n in new:
                if n in known:
                    continue
                rows = self._read_segment(n)
                with self._lock:
                    self._db.executemany("INSERT OR IGNORE INTO responses (key, value) VALUES (?, ?)", rows)
                    self._db.execute("INSERT OR IGNORE INTO segments (name) VALUES (?)", (n,))
                    self._db.commit()
                self.read.append(n)
                count += 1
            return count

    @contextlib.contextmanager
    def _index_lock(self):
        """This machine's processes, one at a time on the index (``flock`` on ``index.lock``)."""
        # lazy: Unix only
        import fcntl

        fd = os.open(os.path.join(self.index_dir, "index.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def flush(self) -> str | None:
        """Write the waiting records as one new segment; returns its name (None when nothing waits)."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow as pa
        import pyarrow.parquet as pq

        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return None
        rows.sort()
        table = pa.table(
            {"key": pa.array([k for k, _ in rows], pa.string()), "value": pa.array([v for _, v in rows], pa.string())}
        )
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        data = buf.getvalue()
        name = f"seg-{hashlib.sha256(data).hexdigest()}.parquet"
        loc = self._loc(name)
        if self.remote:
            with self.fs.open(loc, "wb") as f:  # an object store publishes the whole object on close
                f.write(data)
        else:
            os.makedirs(self._base, exist_ok=True)
            tmp = f"{loc}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, loc)
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO segments (name) VALUES (?)", (name,))
            self._db.commit()
        self.written.append(name)
        return name

    # the ResponseCache interface -----------------------------------------------------
    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """Look up many keys at once in the local index (one query per 500 keys), then the legacy file."""
        found: dict[str, dict] = {}
        with self._lock:
            for db in (self._db, self._legacy):
                if db is None:
                    continue
                rest = [k for k in keys if k not in found] if found else keys
                for i in range(0, len(rest), 500):
                    chunk = rest[i : i + 500]
                    q = f"SELECT key, value FROM responses WHERE key IN ({','.join('?' * len(chunk))})"
                    for k, v in db.execute(q, chunk):
                        found[k] = json.loads(v)
                if len(found) == len(keys):
                    break
        return found

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        """Record fresh results: in the local index at once, in the shared folder with the next segment."""
        if not items:
            return
        rows = [(k, json.dumps(v)) for k, v in items]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO responses (key, value) VALUES (?, ?)", rows)
            self._db.commit()
            self._pending.extend(rows)
            full = len(self._pending) >= SEGMENT_ROWS
        if full:
            self.flush()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]

    def close(self) -> None:
        try:
            self.flush()
        finally:
            with self._lock:
                self._db.close()
                if self._legacy is not None:
                    self._legacy.close()


def open_cache(location: str, legacy: str | None = None):
    """The cache at ``location``: a segment folder (a URL, or a path ending in ``segments``), else an
    SQLite file (:class:`ResponseCache`)."""
    loc = location.rstrip("/")
    if ("://" in loc and not loc.startswith("file://")) or loc.rsplit("/", 1)[-1] == "segments":
        return SegmentCache(loc, legacy=legacy)
    return ResponseCache(location)
