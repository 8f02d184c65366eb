"""The load stage's logic: read a dataset, give every example a stable id, filter, sample.

Local files (Parquet, CSV, JSONL) are read with pyarrow, which is what makes start-up
cheap; a Hugging Face dataset by name goes through ``datasets`` (and so needs the machine
to be online, or the dataset in the local cache).
"""

import hashlib
import json
import os
import re
import string
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from assay.config import DatasetConfig, PromptConfig
from assay.config.schema import LOG_FORMATS
from assay.errors import ArtifactMissing, AssayError
from assay.logs import log_files, read_log

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


class DatasetError(AssayError, ValueError):
    """A dataset that cannot be used as configured.

    ``problems`` says what to fix, one (key path within the pipeline's config, message) pair per
    problem, for a preflight that names the key (``("dataset", "id")``); the error's own message
    says it all in one line.
    """

    def __init__(self, message: str, problems: list[tuple[tuple, str]] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [((), message)]


class UnreadableSource(DatasetError):
    """A dataset source that exists but cannot be read in its format (a corrupt or foreign file)."""


def detect_format(source: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    ext = os.path.splitext(source.split("?")[0])[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    if "://" not in source and not os.path.exists(source) and re.match(r"^[\w.-]+(/[\w.-]+)?$", source):
        return "hf"
    raise DatasetError(
        f"cannot tell the format of {source!r}; set dataset.format",
        [(("dataset", "format"), f"cannot tell the format of {source} from its name; set dataset.format")],
    )


def _open(source: str):
    if "://" in source:
        # lazy: keeps fsspec out of start-up
        import fsspec

        return fsspec.open(source, "rb").open()
    if not os.path.exists(source):
        raise ArtifactMissing(f"dataset file not found: {source}")
    return open(source, "rb")


def is_log(fmt: str | None) -> bool:
    """Whether ``fmt`` is a production log format (:mod:`assay.logs`)."""
    return fmt in LOG_FORMATS


#: schema metadata key of a log's read counts (see :func:`log_stats`)
LOG_STATS = b"assay.log_stats"


def log_stats(table: pa.Table) -> dict | None:
    """The counts of a production log's read (records, chat calls, non-chat and incomplete records
    skipped) that :func:`read_source` attached to its table, or None."""

    meta = table.schema.metadata or {}
    return json.loads(meta[LOG_STATS]) if LOG_STATS in meta else None


def read_source(source: str, fmt: str | None = None, split: str | None = None, on_incomplete: str = "error") -> pa.Table:
    """Read a whole dataset source into an Arrow table. A production log (a log ``fmt``) is read by
    :func:`assay.logs.read_log`, with its read counts in the schema's metadata (:func:`log_stats`)."""
    fmt = detect_format(source, fmt)
    if is_log(fmt):
        table, stats = read_log(fmt, source, on_incomplete=on_incomplete)
        return table.replace_schema_metadata({**(table.schema.metadata or {}), LOG_STATS: json.dumps(stats.as_dict()).encode()})
    if fmt == "hf":
        # lazy: keeps datasets out of start-up
        import datasets

        ds = datasets.load_dataset(source, split=split or "test")
        return ds.data.table if hasattr(ds.data, "table") else ds.with_format("arrow")[:]
    with _open(source) as f:
        if fmt == "parquet":
            # lazy: keeps pyarrow out of start-up
            import pyarrow.parquet as pq

            return pq.ParquetFile(f).read()  # not pq.read_table: it imports pyarrow.dataset (~0.5 s)
        if fmt == "csv":
            # lazy: keeps pyarrow out of start-up
            import pyarrow.csv as pcsv

            return pcsv.read_csv(f)
        if fmt in ("jsonl", "json"):
            # lazy: keeps pyarrow out of start-up
            import pyarrow.json as pjson

            data = f.read()
            if fmt == "json" and data.lstrip()[:1] == b"[":
                return pa.Table.from_pylist(json.loads(data))
            return pjson.read_json(pa.BufferReader(data))
    raise DatasetError(f"unsupported format {fmt!r}")


def fingerprint(source: str, fmt: str | None = None) -> str:
    """Content hash of a local or remote file (a log source: of its files, names and contents); for hub
    datasets, the name (and its version where known)."""
    fmt = detect_format(source, fmt)
    if fmt == "hf":
        return f"hf:{source}"
    h = hashlib.sha256()
    if is_log(fmt):
        for path in log_files(fmt, source):
            h.update(os.path.basename(path).encode() + b"\0")
            with _open(path) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        return "sha256:" + h.hexdigest()
    with _open(source) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def template_fields(template: str) -> list[str]:
    """The ``{field}`` names a prompt template uses, in order, without duplicates."""
    out = []
    for _, field, _, _ in string.Formatter().parse(template):
        if field:
            name = re.split(r"[.\[!:]", field, maxsplit=1)[0]
            if name not in out:
                out.append(name)
    return out


def parse_window(window: str) -> timedelta:
    n, unit = int(window[:-1]), window[-1]
    return {"d": timedelta(days=n), "w": timedelta(weeks=n), "h": timedelta(hours=n)}[unit]


def _as_date_array(col: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_date(col.type):
        return col.cast(pa.date32())
    if pa.types.is_timestamp(col.type):
        # tz-aware timestamps are dated in UTC, so a run's window does not move with the machine's zone
        return pc.cast(col.cast(pa.timestamp(col.type.unit, tz="UTC")) if col.type.tz else col, pa.date32())
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            return pc.cast(pc.strptime(pc.utf8_slice_codeunits(col, 0, 10), format="%Y-%m-%d", unit="s"), pa.date32())
        except pa.ArrowInvalid as e:
            msg = f"partition column has text that is not an ISO date (YYYY-MM-DD...): {e}"
            raise DatasetError(msg, [(("dataset", "partition", "column"), msg)]) from None
    raise DatasetError(
        f"partition column has type {col.type}; expected a date, timestamp or ISO date string",
        [
            (
                ("dataset", "partition", "column"),
                f"partition column has type {col.type}; expected a date, timestamp or ISO date string",
            )
        ],
    )


def example_ids(table: pa.Table, id_column: str | None, input_fields: list[str]) -> pa.Array:
    """Stable ids: the configured id column as text, else a hash of the input fields."""
    if id_column:
        return pc.cast(table[id_column], pa.string())
    cols = [table[c].to_pylist() for c in input_fields]
    ids = []
    for values in zip(*cols):
        h = hashlib.sha256("\x1f".join("" if v is None else str(v) for v in values).encode()).hexdigest()[:16]
        ids.append(h)
    return pa.array(ids, pa.string())


def input_fields(cfg: DatasetConfig, prompt: PromptConfig | None) -> list[str]:
    """The dataset fields a prompt is made of: ``dataset.input``, else the template's fields."""
    if cfg.input:
        return cfg.input
    if prompt is not None and prompt.messages is not None:
        return [prompt.messages]
    return template_fields(prompt.template) if prompt else []


def column_problems(columns: list[str], cfg: DatasetConfig, prompt: PromptConfig | None) -> list[tuple[tuple, str]]:
    """The columns the config names that ``columns`` lacks: (key path within the pipeline, what is
    missing) for each; [] when every one is there. The one rule of :func:`prepare` (and so of the
    load stage) and of the preflight."""
    have = set(columns)
    out: list[tuple[tuple, str]] = []
    if cfg.id and cfg.id not in have:
        out.append((("dataset", "id"), f"dataset.id column {cfg.id!r}"))
    if cfg.reference and cfg.reference not in have:
        out.append((("dataset", "reference"), f"dataset.reference column {cfg.reference!r}"))
    for i, s in enumerate(cfg.slices):
        if s not in have:
            out.append((("dataset", "slices", i), f"dataset.slices column {s!r}"))
    if getattr(cfg, "cluster", None) and cfg.cluster not in have:
        out.append((("dataset", "cluster"), f"dataset.cluster column {cfg.cluster!r}"))
    if cfg.partition and cfg.partition.column not in have:
        out.append((("dataset", "partition", "column"), f"dataset.partition.column {cfg.partition.column!r}"))
    for i, s in enumerate((cfg.sample.by or []) if getattr(cfg, "sample", None) else []):
        if s not in have:
            out.append((("dataset", "sample", "by", i), f"dataset.sample.by column {s!r}"))
    for i, f in enumerate(input_fields(cfg, prompt)):
        if f not in have:
            if cfg.input:
                out.append((("dataset", "input", i), f"dataset.input column {f!r}"))
            elif prompt is not None and prompt.messages is not None:
                out.append((("prompt", "messages"), f"prompt.messages column {f!r}"))
            else:
                out.append((("prompt", "template"), f"input field {f!r} (used by the prompt template)"))
    return out


def partition_end(cfg: DatasetConfig, as_of: date) -> date:
    """The last day of the partition window a run dated ``as_of`` assesses: ``as_of`` itself, or
    ``lag`` days before it (``lag: 1d``: a nightly run on the 6th assesses the 5th, the last complete day)."""
    lag = cfg.partition.lag if cfg.partition is not None else None
    return as_of - parse_window(lag) if lag else as_of


def _window_mask(table: pa.Table, cfg: DatasetConfig, as_of: date):
    """The rows of ``table`` inside the as_of window of ``dataset.partition`` (ending ``lag`` before as_of)."""
    days = _as_date_array(table[cfg.partition.column])
    as_of = partition_end(cfg, as_of)
    mask = pc.less_equal(days, pa.scalar(as_of, pa.date32()))
    if cfg.partition.window:
        start = as_of - parse_window(cfg.partition.window)
        mask = pc.and_(mask, pc.greater(days, pa.scalar(start, pa.date32())))
    return mask


def _id_fields(columns: list[str], cfg: DatasetConfig, fields: list[str]) -> list[str]:
    """What an example id is hashed from without ``dataset.id``: the input fields, else every column but the reference."""
    return fields or [c for c in columns if c != cfg.reference]


def _shape(table: pa.Table, ids, cfg: DatasetConfig) -> pa.Table:
    """``example_id`` first, ``reference`` (a copy of ``dataset.reference``) second."""
    table = table.drop_columns([c for c in ("example_id",) if c in table.column_names])
    table = table.add_column(0, "example_id", ids)
    if cfg.reference:
        ref = table[cfg.reference]
        table = table.drop_columns(["reference"]) if "reference" in table.column_names and cfg.reference != "reference" else table
        if cfg.reference != "reference":
            table = table.add_column(1, "reference", ref)
    return table


def prepare(
    table: pa.Table,
    cfg: DatasetConfig,
    prompt: PromptConfig | None,
    as_of: date | None,
    sample: int | None = None,
    source: str | None = None,
) -> pa.Table:
    """Filter to the as_of window, add ``example_id``/``reference``, and sample with the seed.
    ``source`` (the file the table was read from) is named in the errors."""
    fields = input_fields(cfg, prompt)
    missing = column_problems(table.column_names, cfg, prompt)
    if missing:
        cols = f" not in {source or 'the dataset'} (columns: {', '.join(table.column_names)})"
        raise DatasetError(", ".join(what for _, what in missing) + cols, [(key, what + cols) for key, what in missing])

    table = table.filter(_window_mask(table, cfg, as_of)) if cfg.partition and as_of is not None else table
    table = _shape(table, example_ids(table, cfg.id, _id_fields(table.column_names, cfg, fields)), cfg)
    # A stable order makes sampling and sharding reproducible whatever order the file has.
    table = table.sort_by("example_id")
    dup = pc.count_distinct(table["example_id"]).as_py()
    if dup != table.num_rows:
        counts = pc.value_counts(table["example_id"])
        twice = [v for v, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()) if n > 1]
        which = f"dataset.id column {cfg.id!r}" if cfg.id else "hashed from the input fields, as dataset.id is not set"
        which += f", in {source}" if source else ""
        shown = ", ".join(repr(v) for v in twice[:3]) + (", ..." if len(twice) > 3 else "")
        raise DatasetError(
            f"example ids are not unique ({table.num_rows - dup} duplicates); set dataset.id to a unique column",
            [
                (
                    ("dataset", "id"),
                    f"example ids ({which}) are not unique: {table.num_rows - dup} duplicates "
                    f"({shown}); set dataset.id to a unique column",
                )
            ],
        )

    n = sample if sample is not None else (cfg.sample.n if cfg.sample else None)
    if n is not None and n < table.num_rows:
        seed = cfg.sample.seed if cfg.sample else 0
        if cfg.sample and cfg.sample.by:
            idx = stratified_positions(table, cfg.sample.by, n, seed)
        else:
            idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False))
        table = table.take(pa.array(idx))
    return table


def allocate(sizes, n: int):
    """Examples per stratum for a sample of ``n`` from strata of ``sizes`` rows: proportional
    (largest remainders), at least one for every non-empty stratum, never more than it has. With
    more non-empty strata than ``n``, each gets one (the sample is then one per stratum)."""
    sizes = np.asarray(sizes, dtype=np.int64)
    total = int(sizes.sum())
    if n >= total:
        return sizes.copy()
    quota = n * sizes / total
    take = np.minimum(np.maximum(np.floor(quota).astype(np.int64), (sizes > 0).astype(np.int64)), sizes)
    rest = quota - np.floor(quota)
    while take.sum() < n:  # the largest remainders first, among the strata with rows left
        room = take < sizes
        i = int(np.argmax(np.where(room, rest, -1.0)))
        take[i] += 1
        rest[i] = -0.5
    while take.sum() > n and (take > 1).any():  # the minimum of one pushed past n: take back from the largest
        i = int(np.argmax(np.where(take > 1, take - quota, -np.inf)))
        take[i] -= 1
    return take


def stratified_positions(table: pa.Table, by: list[str], n: int, seed: int):
    """Sorted row positions of a stratified sample of ``n`` rows of ``table``: strata are the
    combinations of the ``by`` columns' values (a missing value is a value), each sized by
    :func:`allocate` and drawn with the seed, stratum by stratum in a stable order."""
    keys = [
        tuple(v)
        for v in zip(
            *(
                table[c].cast(pa.string()).to_pylist() if not pa.types.is_string(table[c].type) else table[c].to_pylist()
                for c in by
            )
        )
    ]
    order: dict[tuple, list[int]] = {}
    for i, k in enumerate(keys):
        order.setdefault(k, []).append(i)
    strata = sorted(order, key=lambda k: tuple("" if v is None else str(v) for v in k))
    take = allocate([len(order[k]) for k in strata], n)
    rng = np.random.default_rng(seed)
    out = [np.asarray(order[k])[rng.choice(len(order[k]), size=int(t), replace=False)] for k, t in zip(strata, take) if t]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


# ------------------------------------------------------------------------------------------------ a prepared source, handed on
# The preflight (assay.preflight) reads and prepares the dataset to check it, and the load stage of
# the same request then needs the same table: the preflight hands it on as a value
# (:class:`PreparedSource`, carried by the run's context), keyed by everything that shapes it, so a
# big dataset is read once. A source whose size, modification time (or, remote, ETag) cannot be
# told is not handed on: a changed file is always read again.


def source_version(source: str) -> tuple | None:
    """What tells a version of ``source`` from another without reading it, or None."""
    if "://" in source:
        try:
            import fsspec  # only for a remote source: fsspec takes a quarter of a second to import

            fs, path = fsspec.core.url_to_fs(source)
            info = fs.info(path)
        except Exception:  # noqa: BLE001  (not handed on: read again)
            return None
        version = next((info[k] for k in ("ETag", "etag", "LastModified", "last_modified", "mtime") if info.get(k)), None)
        return None if version is None else (info.get("size"), str(version))
    try:
        st = os.stat(source)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def prepared_key(
    source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, sample: int | None
) -> tuple | None:
    """Everything that shapes the prepared table of ``source`` (its version included), or None
    when its version cannot be told (a Hugging Face dataset, a file system that says nothing)."""
    fmt = detect_format(source, cfg.format)
    if fmt == "hf":
        return None
    if is_log(fmt):  # a folder or a glob: the versions of its files
        try:
            stamps = tuple(source_version(p) for p in log_files(fmt, source))
        except FileNotFoundError:
            return None
        stamp = None if any(s is None for s in stamps) else stamps
    else:
        stamp = source_version(source)
    if stamp is None:
        return None
    return (source, stamp, cfg.model_dump_json(), prompt.model_dump_json() if prompt else None, as_of, sample)


class PreparedSource:
    """A dataset source read and prepared for one request (what :func:`prepared_source` returned),
    with the key of what shaped it (:func:`prepared_key`). Taken once: :meth:`take` hands the value
    over and lets go of it, so nothing holds a dataset after the load stage has written it."""

    def __init__(self, key: tuple, value: "Streamed | tuple[pa.Table, int]"):
        self.key, self._value = key, value

    def take(
        self, source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, sample: int | None
    ) -> "Streamed | tuple[pa.Table, int] | None":
        """The prepared value when it is the one this request needs from the source as it is now
        (same path, version, config, prompt, as_of and sample), else None; either way it is let go."""
        value, self._value = self._value, None
        if value is None or prepared_key(source, cfg, prompt, as_of, sample) != self.key:
            return None
        return value

    def drop(self) -> None:
        """Let go of the prepared value (a run that ended before its load stage)."""
        self._value = None


def load_prepared(
    source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, sample: int | None = None
) -> tuple[pa.Table, int]:
    """:func:`read_source` then :func:`prepare`: (the prepared table, the rows the source had).

    A source that exists but cannot be read in its format raises :class:`UnreadableSource` naming
    the file; a missing local file FileNotFoundError.
    """
    try:
        table = read_source(source, cfg.format, cfg.split, getattr(cfg, "on_incomplete", "error"))
    except (FileNotFoundError, DatasetError):
        raise
    except Exception as e:
        fmt = detect_format(source, cfg.format)
        raise UnreadableSource(f"cannot read {source} as {fmt}: {type(e).__name__}: {e}") from e
    prepared = prepare(table, cfg, prompt, as_of, sample, source)
    if LOG_STATS in (table.schema.metadata or {}):  # the load stage logs a log's counts
        prepared = prepared.replace_schema_metadata(
            {**(prepared.schema.metadata or {}), LOG_STATS: table.schema.metadata[LOG_STATS]}
        )
    return prepared, table.num_rows


# ------------------------------------------------------------------------------------------------ by record batch
#: rows per record batch when a Parquet source is prepared batch by batch
STREAM_ROWS = 131_072


class Streamed:
    """A Parquet source prepared batch by batch (:func:`plan_streamed`): ``rows`` examples of the
    ``read`` rows the file has; :meth:`batches` yields them as :func:`prepare` would have ordered,
    sampled and shaped them."""

    def __init__(
        self, source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, rows: int, read: int, positions
    ):
        self.source, self.cfg, self.prompt, self.as_of = source, cfg, prompt, as_of
        self.rows, self.read, self.positions = rows, read, positions
        if positions is not None:
            self.rows = len(positions)

    def batches(self):
        """The prepared examples, one Arrow table per source batch (empty ones left out)."""
        cfg, fields = self.cfg, input_fields(self.cfg, self.prompt)
        kept = 0
        for t in _batches(self.source):
            if cfg.partition and self.as_of is not None:
                t = t.filter(_window_mask(t, cfg, self.as_of))
            k = t.num_rows
            if self.positions is not None:  # the sampled positions that fall in this batch
                lo, hi = np.searchsorted(self.positions, [kept, kept + k])
                t = t.take(pa.array(self.positions[lo:hi] - kept))
            kept += k
            if t.num_rows:
                yield _shape(t, example_ids(t, cfg.id, _id_fields(t.column_names, cfg, fields)), cfg)

    def schema(self) -> pa.Schema:
        """The prepared table's schema (what :func:`prepare` gives for this source)."""
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        with _open(self.source) as f:
            empty = pq.ParquetFile(f).schema_arrow.empty_table()
        return _shape(empty, pa.nulls(0, pa.string()), self.cfg).schema


def _batches(source: str, columns: list[str] | None = None):
    # lazy: keeps pyarrow out of start-up
    import pyarrow.parquet as pq

    with _open(source) as f:
        for b in pq.ParquetFile(f).iter_batches(batch_size=STREAM_ROWS, columns=columns):
            yield pa.Table.from_batches([b])


def plan_streamed(
    source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, sample: int | None = None
) -> "Streamed | None":
    """A Parquet source whose example ids are already in increasing order, so unique, as
    :func:`prepare` sorts them: checked by one pass over the id (and partition) columns, without
    holding them. None for any other source (another format, ids out of order or repeated): then
    :func:`prepare` sorts the whole table, and names the duplicates. Raises what :func:`prepare`
    raises for missing columns."""
    # lazy: keeps pyarrow out of start-up
    import pyarrow.parquet as pq

    if detect_format(source, cfg.format) != "parquet":
        return None
    try:
        with _open(source) as f:
            meta = pq.ParquetFile(f)
            names, read = meta.schema_arrow.names, meta.metadata.num_rows
    except (FileNotFoundError, OSError):
        raise
    except Exception as e:
        raise UnreadableSource(f"cannot read {source} as parquet: {type(e).__name__}: {e}") from e
    missing = column_problems(names, cfg, prompt)
    if missing:
        cols = f" not in {source} (columns: {', '.join(names)})"
        raise DatasetError(", ".join(what for _, what in missing) + cols, [(key, what + cols) for key, what in missing])
    fields = input_fields(cfg, prompt)
    need = [cfg.id] if cfg.id else _id_fields(names, cfg, fields)
    if cfg.partition and as_of is not None:
        need = list(dict.fromkeys(need + [cfg.partition.column]))
    rows, last = 0, None
    for t in _batches(source, need):
        if cfg.partition and as_of is not None:
            t = t.filter(_window_mask(t, cfg, as_of))
        if not t.num_rows:
            continue
        ids = example_ids(t, cfg.id, _id_fields(names, cfg, fields))
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        if ids.null_count:
            return None
        if len(ids) > 1 and not pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py():
            return None
        if last is not None and not pc.less(last, ids[0]).as_py():
            return None
        last = ids[len(ids) - 1]
        rows += t.num_rows
    n = sample if sample is not None else (cfg.sample.n if cfg.sample else None)
    if n is not None and n < rows and cfg.sample and cfg.sample.by:
        return None  # a stratified sample needs the strata's columns whole: prepare() draws it
    positions = None
    if n is not None and n < rows:  # the same positions prepare() takes from the sorted table
        seed = cfg.sample.seed if cfg.sample else 0
        positions = np.sort(np.random.default_rng(seed).choice(rows, size=n, replace=False))
    return Streamed(source, cfg, prompt, as_of, rows, read, positions)


def prepared_source(
    source: str, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None, sample: int | None = None
) -> "Streamed | tuple[pa.Table, int]":
    """What the preflight checks and the load stage writes: a :class:`Streamed` plan where the
    source allows it (:func:`plan_streamed`: a Parquet file whose ids are in order), else
    :func:`load_prepared`'s (table, rows read)."""
    try:
        plan = plan_streamed(source, cfg, prompt, as_of, sample)
    except (FileNotFoundError, DatasetError):
        raise
    except Exception as e:
        raise UnreadableSource(f"cannot read {source} as {detect_format(source, cfg.format)}: {type(e).__name__}: {e}") from e
    if plan is None:
        return load_prepared(source, cfg, prompt, as_of, sample)
    return plan
