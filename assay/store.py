"""The artifact store: the one place that maps (pipeline, as_of, run, stage) to a location.

A run folder is ``<root>/<pipeline>/<as_of>/<run_id>/``. The root is a local path or an
fsspec URL (``s3://bucket/prefix``). Local writes are atomic (temporary name, then rename);
object stores publish a whole object on close, which is atomic already.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from assay.errors import ArtifactMissing, DataError

if TYPE_CHECKING:
    import pyarrow as pa
# pyarrow is imported where tables are read or written: ``assay run`` creates the run folder
# (JSON only) before anything needs Arrow, and that process never does.

DATASET = "dataset.parquet"
RESPONSES = "responses"
SCORES = "scores.parquet"
METRICS = "metrics.parquet"
GENERALIZATION = "generalization.parquet"
COMPARISONS = "comparisons.parquet"
COSTS = "costs.parquet"
BREAKEVEN = "breakeven.parquet"
POLICIES = "policies.parquet"
POLICY_SWEEP = "policy_sweep.parquet"
SUMMARY = "summary.md"
REPORT = "report.html"
MANIFEST = "manifest.json"
#: ``<root>/_capacity/``: the serving operating points ``assay capacity`` records, one per model
CAPACITY = "_capacity"


class _Hashing:
    """A binary file that also hashes what is written to it (a streamed artifact's sha256)."""

    def __init__(self, raw, h):
        self.raw, self.h, self.closed = raw, h, False

    def write(self, data) -> int:
        self.h.update(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:  # the writer closes its sink; the file itself is closed by its owner
        self.closed = True


_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def safe_component(kind: str, value: str) -> str:
    """``value`` as one path component of a run folder (a pipeline name, a run id): a ValueError
    names it when it could climb out of the artifact root or split into several components."""
    if not isinstance(value, str) or not value or value in (".", "..") or value.startswith(".") or _UNSAFE.search(value):
        raise ValueError(
            f"{kind} {value!r} cannot name a folder: use letters, digits, '-', '_' or '.', "
            "without path separators or a leading dot"
        )
    return value


def _safe(value: str) -> bool:
    try:
        safe_component("name", value)
    except ValueError:
        return False
    return True


def _is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class Store:
    """An artifact root: local directory or fsspec URL."""

    def __init__(self, root: str | os.PathLike):
        root = str(root)
        if root.startswith("file://"):
            root = root[len("file://") :]
        self.root = root.rstrip("/")
        self.remote = _is_url(self.root)
        if self.remote:
            # lazy: keeps fsspec out of start-up
            import fsspec

            # no listings cache: other processes add run folders and rewrite artifacts, and a
            # cached listing would hide that from this process for as long as it lives
            self.fs, self.base = fsspec.core.url_to_fs(self.root, use_listings_cache=False)
            self.protocol = self.root.split("://", 1)[0]
        else:
            self.fs, self.base, self.protocol = None, str(Path(self.root).resolve()), None

    def url(self, *parts: str) -> str:
        """A location under the root, as a path (local) or a URL (remote)."""
        if self.remote:
            return "/".join([self.root, *parts])
        return os.path.join(self.base, *parts)

    def run(self, pipeline: str, as_of: date, run_id: str) -> "RunFolder":
        return RunFolder(self, pipeline, as_of.isoformat(), run_id)

    def new_run_id(self, config_hash: str) -> str:
        """Sortable by start time; the suffix ties it to the config that shaped it."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        return f"{stamp}-{config_hash[:8]}-{uuid.uuid4().hex[:4]}"

    # listing ------------------------------------------------------------------
    def _ls_dirs(self, path: str) -> list[str]:
        if self.remote:
            try:
                names = (
                    e["name"].rstrip("/").rsplit("/", 1)[-1] for e in self.fs.ls(path, detail=True) if e["type"] == "directory"
                )
                return sorted(n for n in names if not n.startswith("."))
            except FileNotFoundError:
                return []
        if not os.path.isdir(path):
            return []
        return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d)) and not d.startswith("."))

    def _loc(self, *parts: str) -> str:
        return "/".join([self.base, *parts]) if self.remote else os.path.join(self.base, *parts)

    def pipelines(self) -> list[str]:
        return [p for p in self._ls_dirs(self._loc()) if p != CAPACITY]

    def capacity(self) -> "CapacityFolder":
        """The folder of recorded serving operating points (:data:`CAPACITY`), which belongs to no run."""
        return CapacityFolder(self)

    def runs(self, pipeline: str, as_of: str | None = None) -> list["RunFolder"]:
        """All run folders of a pipeline (optionally one date), oldest first."""
        dates = [as_of] if as_of else self._ls_dirs(self._loc(pipeline))
        out = []
        for d in dates:
            for r in self._ls_dirs(self._loc(pipeline, d)):
                if _safe(d) and _safe(r):  # a folder Assay cannot have made (a control character in its name) is no run
                    out.append(RunFolder(self, pipeline, d, r))
        return out

    def complete_runs(self, pipeline: str, as_of: str | None = None) -> list["RunFolder"]:
        return [r for r in self.runs(pipeline, as_of) if (r.manifest() or {}).get("status") == "complete"]


@dataclass
class RunFolder:
    """One run's folder; every artifact path of a run is made here."""

    store: Store
    pipeline: str
    as_of: str
    run_id: str
    # sha256 of what this object wrote, so the manifest need not read an artifact back to hash it
    _written: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        safe_component("pipeline", self.pipeline)
        safe_component("as_of", self.as_of)
        safe_component("run id", self.run_id)

    @property
    def url(self) -> str:
        return self.store.url(self.pipeline, self.as_of, self.run_id)

    def path(self, name: str) -> str:
        return self.store.url(self.pipeline, self.as_of, self.run_id, name)

    def _loc(self, name: str) -> str:
        return self.store._loc(self.pipeline, self.as_of, self.run_id, name)

    # writing -------------------------------------------------------------------
    def _write_bytes(self, name: str, data: bytes) -> str:
        loc = self._loc(name)
        self._written[name] = hashlib.sha256(data).hexdigest()
        if self.store.remote:
            with self.store.fs.open(loc, "wb") as f:
                f.write(data)
            return self.path(name)
        os.makedirs(os.path.dirname(loc), exist_ok=True)
        tmp = f"{loc}.tmp-{uuid.uuid4().hex[:8]}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, loc)
        return loc

    def write_table(self, name: str, table: "pa.Table | object") -> str:
        """Write a Parquet artifact atomically; accepts an Arrow table or a DataFrame."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not isinstance(table, pa.Table):
            table = pa.Table.from_pandas(table, preserve_index=False)
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        return self._write_bytes(name, buf.getvalue())

    @contextlib.contextmanager
    def table_writer(self, name: str, schema: "pa.Schema"):
        """Write a Parquet artifact row group by row group (``writer.write_table(t)`` per batch):
        the same file format as :meth:`write_table`, atomic on a local root, without the whole
        table in memory. Nothing is left under ``name`` when the block raises."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        loc = self._loc(name)
        h = hashlib.sha256()
        if self.store.remote:
            target, raw = loc, self.store.fs.open(loc, "wb")
        else:
            os.makedirs(os.path.dirname(loc), exist_ok=True)
            target = f"{loc}.tmp-{uuid.uuid4().hex[:8]}"
            raw = open(target, "wb")
        sink = _Hashing(raw, h)
        try:
            with pq.ParquetWriter(sink, schema, compression="zstd") as w:
                yield w
            raw.flush()
            if not self.store.remote:
                os.fsync(raw.fileno())
            raw.close()
        except BaseException:
            raw.close()
            if self.store.remote:
                with contextlib.suppress(Exception):
                    self.store.fs.rm(loc)
            else:
                with contextlib.suppress(OSError):
                    os.remove(target)
            raise
        if not self.store.remote:
            os.replace(target, loc)
        self._written[name] = h.hexdigest()

    def iter_batches(self, name: str, columns: list[str] | None = None, batch_size: int = 65_536):
        """A Parquet artifact's record batches (``columns`` only), read one at a time."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        if not self.exists(name):
            raise ArtifactMissing(f"artifact not found: {self.path(name)}")
        opener = self.store.fs.open if self.store.remote else open
        with opener(self._loc(name), "rb") as f:
            yield from pq.ParquetFile(f).iter_batches(batch_size=batch_size, columns=columns)

    def parquet_schema(self, name: str) -> "pa.Schema":
        """A Parquet artifact's schema and row count (its footer only)."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        opener = self.store.fs.open if self.store.remote else open
        with opener(self._loc(name), "rb") as f:
            pf = pq.ParquetFile(f)
            return pf.schema_arrow, pf.metadata.num_rows

    def write_text(self, name: str, text: str) -> str:
        return self._write_bytes(name, text.encode())

    def write_json(self, name: str, obj) -> str:
        return self.write_text(name, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")

    # reading -------------------------------------------------------------------
    def exists(self, name: str) -> bool:
        loc = self._loc(name)
        return self.store.fs.exists(loc) if self.store.remote else os.path.exists(loc)

    def read_table(self, name: str, columns: list[str] | None = None) -> "pa.Table":
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        loc = self._loc(name)
        if not self.exists(name):
            raise ArtifactMissing(f"artifact not found: {self.path(name)}")
        # one open handle: by path, pyarrow stats the size and opens the file later, so a
        # rename in between would pair one file's size with another's bytes
        # ParquetFile rather than pq.read_table: read_table goes through pyarrow.dataset, whose
        # first import costs about half a second, on every stage of a short run.
        opener = self.store.fs.open if self.store.remote else open
        with opener(loc, "rb") as f:
            return pq.ParquetFile(f).read(columns=columns)

    def read_bytes(self, name: str) -> bytes:
        loc = self._loc(name)
        if self.store.remote:
            with self.store.fs.open(loc, "rb") as f:
                return f.read()
        with open(loc, "rb") as f:
            return f.read()

    def read_json(self, name: str):
        return json.loads(self.read_bytes(name))

    def manifest(self) -> dict | None:
        try:
            return self.read_json(MANIFEST)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def listdir(self, sub: str) -> list[str]:
        """File names (not paths) directly under a sub-folder, sorted; temporary files excluded."""
        loc = self._loc(sub)
        if self.store.remote:
            try:
                names = [p.rsplit("/", 1)[-1] for p in self.store.fs.ls(loc, detail=False)]
            except FileNotFoundError:
                return []
        else:
            names = os.listdir(loc) if os.path.isdir(loc) else []
        return sorted(n for n in names if ".tmp-" not in n)

    def remove(self, name: str) -> None:
        """Delete one artifact (a superseded response part, say)."""
        loc = self._loc(name)
        if self.store.remote:
            self.store.fs.rm(loc)
        else:
            os.remove(loc)

    def hash(self, name: str) -> str:
        """sha256 of an artifact (from the write when this object wrote it)."""
        if name in self._written:
            return self._written[name]
        return hashlib.sha256(self.read_bytes(name)).hexdigest()


class CapacityFolder(RunFolder):
    """``<root>/_capacity/``: ``<model>.json`` (the chosen operating point) and ``<model>.parquet``
    (the sweep) per self-hosted model, written by ``assay capacity`` and read by the cost stage.
    The same atomic writes and reads as a run folder's."""

    def __init__(self, store: Store):
        self.store, self.pipeline, self.as_of, self.run_id, self._written = store, CAPACITY, "", "", {}

    @property
    def url(self) -> str:
        return self.store.url(CAPACITY)

    def path(self, name: str) -> str:
        return self.store.url(CAPACITY, name)

    def _loc(self, name: str) -> str:
        return self.store._loc(CAPACITY, name)

    @staticmethod
    def names(model: str) -> tuple[str, str]:
        """(record, sweep) file names of ``model``: ValueError when the name cannot name a file."""
        safe_component("model", model)
        return f"{model}.json", f"{model}.parquet"


class NotARunFolder(DataError):
    """A path or URL that is not a run folder (see :func:`open_run`)."""


def open_run(path: "str | os.PathLike | RunFolder") -> RunFolder:
    """The run folder at a local path or URL ``<root>/<pipeline>/<as_of>/<run_id>`` (a RunFolder is
    taken as it is), after checking that it has a manifest.json.

    NotARunFolder names what is wrong: the folder is not there, the path does not end in
    ``<pipeline>/<as_of date>/<run_id>``, or it has no manifest.json.
    """
    if isinstance(path, RunFolder):
        rf = path
    else:
        text = str(path).rstrip("/")
        if text.startswith("file://"):
            text = text[len("file://") :]
        if _is_url(text):
            parts = text.rsplit("/", 3)
            if len(parts) != 4 or not _is_url(parts[0]) or not all(parts[1:]):
                raise NotARunFolder(f"not a run folder (<root>/<pipeline>/<as_of>/<run_id>): {path}")
            root, pipeline, as_of, run_id = parts
        else:
            local = os.path.abspath(text)
            if not os.path.isdir(local):
                raise NotARunFolder(f"no manifest.json in {path}: run folder not found")
            rest, run_id = os.path.split(local)
            rest, as_of = os.path.split(rest)
            root, pipeline = os.path.split(rest)
        try:
            date.fromisoformat(as_of)
        except ValueError:
            raise NotARunFolder(
                f"not a run folder (<root>/<pipeline>/<as_of>/<run_id>): {as_of!r} in {path} is not a date"
            ) from None
        try:
            rf = RunFolder(Store(root), pipeline, as_of, run_id)
        except ValueError as e:  # a run id (or pipeline) that could not have been made here: '..', a control character
            raise NotARunFolder(f"not a run folder: {e}: {path!r}") from None
    if not rf.exists(MANIFEST):
        raise NotARunFolder(f"no {MANIFEST} in {rf.url}: not a run folder")
    return rf


#: ``responses/_shards/<shard>/``: where one invoke shard run by another process keeps its parts and journal
SHARDS = f"{RESPONSES}/_shards"


class ShardFolder(RunFolder):
    """One invoke shard's view of its run folder: ``responses/…`` are the shard's own
    (``responses/_shards/<shard>/…``), so shards on several processes never write one file; every
    other artifact (the dataset) is the run's. The invoke stage folds a shard's parts into the
    run's ``responses/`` and clears the folder (:func:`assay.stages.invoke.fold_shards`)."""

    def __init__(self, run: RunFolder, shard: str):
        safe_component("shard", shard)
        self.parent, self.shard = run, shard
        self.store, self.pipeline, self.as_of, self.run_id, self._written = run.store, run.pipeline, run.as_of, run.run_id, {}

    def _map(self, name: str) -> str:
        if name == RESPONSES or name.startswith(RESPONSES + "/"):
            return f"{SHARDS}/{self.shard}" + name[len(RESPONSES) :]
        return name

    @property
    def url(self) -> str:
        return self.parent.path(f"{SHARDS}/{self.shard}")

    def path(self, name: str) -> str:
        return self.parent.path(self._map(name))

    def _loc(self, name: str) -> str:
        return self.parent._loc(self._map(name))

    def clear(self) -> None:
        """Delete the shard's folder (its parts are in the run's ``responses/`` by then)."""
        loc = self.parent._loc(f"{SHARDS}/{self.shard}")
        if self.store.remote:
            if self.store.fs.exists(loc):
                self.store.fs.rm(loc, recursive=True)
        else:
            shutil.rmtree(loc, ignore_errors=True)


def shard_names(run: RunFolder) -> list[str]:
    """The shard folders a run's ``responses/`` holds (left by an interrupted sharded invoke)."""
    return run.store._ls_dirs(run._loc(SHARDS))
