"""The load stage's logic: read a dataset, give every example a stable id, filter, sample.

Local files (Parquet, CSV, JSONL) are read with pyarrow, which is what makes start-up
cheap; a Hugging Face dataset by name goes through ``datasets`` (and so needs the machine
to be online, or the dataset in the local cache).
"""

import hashlib
import os
import re
import string
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from assay.config import DatasetConfig, PromptConfig

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


class DatasetError(ValueError):
    """A dataset that cannot be used as configured."""


def detect_format(source: str, fmt: str | None) -> str:
    if fmt:
        return fmt
    ext = os.path.splitext(source.split("?")[0])[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    if "://" not in source and not os.path.exists(source) and re.match(r"^[\w.-]+(/[\w.-]+)?$", source):
        return "hf"
    raise DatasetError(f"cannot tell the format of {source!r}; set dataset.format")


def _open(source: str):
    if "://" in source:
        import fsspec

        return fsspec.open(source, "rb").open()
    if not os.path.exists(source):
        raise FileNotFoundError(f"dataset file not found: {source}")
    return open(source, "rb")


def read_source(source: str, fmt: str | None = None, split: str | None = None) -> pa.Table:
    """Read a whole dataset source into an Arrow table."""
    fmt = detect_format(source, fmt)
    if fmt == "hf":
        import datasets

        ds = datasets.load_dataset(source, split=split or "test")
        return ds.data.table if hasattr(ds.data, "table") else ds.with_format("arrow")[:]
    with _open(source) as f:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(f).read()  # not pq.read_table: it imports pyarrow.dataset (~0.5 s)
        if fmt == "csv":
            import pyarrow.csv as pcsv

            return pcsv.read_csv(f)
        if fmt in ("jsonl", "json"):
            import pyarrow.json as pjson

            data = f.read()
            if fmt == "json" and data.lstrip()[:1] == b"[":
                import json

                return pa.Table.from_pylist(json.loads(data))
            return pjson.read_json(pa.BufferReader(data))
    raise DatasetError(f"unsupported format {fmt!r}")


def fingerprint(source: str, fmt: str | None = None) -> str:
    """Content hash of a local or remote file; for hub datasets, the name (and its version where known)."""
    if detect_format(source, fmt) == "hf":
        return f"hf:{source}"
    h = hashlib.sha256()
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
        return pc.cast(pc.strptime(pc.utf8_slice_codeunits(col, 0, 10), format="%Y-%m-%d", unit="s"), pa.date32())
    raise DatasetError(f"partition column has type {col.type}; expected a date, timestamp or ISO date string")


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


def prepare(table: pa.Table, cfg: DatasetConfig, prompt: PromptConfig | None, as_of: date | None,
            sample: int | None = None) -> pa.Table:
    """Filter to the as_of window, add ``example_id``/``reference``, and sample with the seed."""
    missing = []
    if cfg.id and cfg.id not in table.column_names:
        missing.append(f"dataset.id column {cfg.id!r}")
    if cfg.reference and cfg.reference not in table.column_names:
        missing.append(f"dataset.reference column {cfg.reference!r}")
    for s in cfg.slices:
        if s not in table.column_names:
            missing.append(f"dataset.slices column {s!r}")
    if cfg.cluster and cfg.cluster not in table.column_names:
        missing.append(f"dataset.cluster column {cfg.cluster!r}")
    if cfg.partition and cfg.partition.column not in table.column_names:
        missing.append(f"dataset.partition.column {cfg.partition.column!r}")
    fields = cfg.input or (template_fields(prompt.template) if prompt else [])
    for f in fields:
        if f not in table.column_names:
            missing.append(f"input field {f!r} (used by the prompt template)" if not cfg.input else f"dataset.input column {f!r}")
    if missing:
        raise DatasetError(f"{', '.join(missing)} not in the dataset (columns: {', '.join(table.column_names)})")

    if cfg.partition and as_of is not None:
        days = _as_date_array(table[cfg.partition.column])
        mask = pc.less_equal(days, pa.scalar(as_of, pa.date32()))
        if cfg.partition.window:
            start = as_of - parse_window(cfg.partition.window)
            mask = pc.and_(mask, pc.greater(days, pa.scalar(start, pa.date32())))
        table = table.filter(mask)

    ids = example_ids(table, cfg.id, fields or [c for c in table.column_names if c != cfg.reference])
    table = table.drop_columns([c for c in ("example_id",) if c in table.column_names])
    table = table.add_column(0, "example_id", ids)
    if cfg.reference:
        ref = table[cfg.reference]
        table = table.drop_columns(["reference"]) if "reference" in table.column_names and cfg.reference != "reference" else table
        if cfg.reference != "reference":
            table = table.add_column(1, "reference", ref)
    # A stable order makes sampling and sharding reproducible whatever order the file has.
    table = table.sort_by("example_id")
    dup = pc.count_distinct(table["example_id"]).as_py()
    if dup != table.num_rows:
        raise DatasetError(f"example ids are not unique ({table.num_rows - dup} duplicates); set dataset.id to a unique column")

    n = sample if sample is not None else (cfg.sample.n if cfg.sample else None)
    if n is not None and n < table.num_rows:
        import numpy as np

        seed = cfg.sample.seed if cfg.sample else 0
        idx = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=n, replace=False))
        table = table.take(pa.array(idx))
    return table
