"""What every log reader shares: the standard columns, the files a source names, the messages type,
the incomplete-record rule and the error that names where a record is."""

import csv
import datetime as dt
import glob
import gzip
import io
import json
import os
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from assay.errors import ArtifactMissing, DataError

#: one chat message, as every reader gives it (``tool_calls``: the OpenAI shape, JSON-encoded)
MESSAGE = pa.struct(
    [
        ("role", pa.string()),
        ("content", pa.string()),
        ("name", pa.string()),
        ("tool_call_id", pa.string()),
        ("tool_calls", pa.string()),
    ]
)
MESSAGES = pa.list_(MESSAGE)

#: the standard columns, in order; every other column is an attribute of the record, named by its key
STANDARD = pa.schema(
    [
        ("example_id", pa.string()),
        ("messages", MESSAGES),
        ("output", pa.string()),
        ("model", pa.string()),
        ("request_time", pa.timestamp("us", tz="UTC")),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("cached_tokens", pa.int64()),
        ("latency_s", pa.float64()),
        ("ttft_s", pa.float64()),
        ("provider_cost_usd", pa.float64()),
        # the logged call's own error (its status said it failed): such a call has no output, and is kept,
        # as its conversation is still traffic a candidate should answer
        ("error", pa.string()),
    ]
)
STANDARD_NAMES = STANDARD.names


class LogError(DataError):
    """A log that cannot be read as its format says: the message names the file, the line or record,
    and the field."""


@dataclass
class ReadStats:
    """What a read found: records read, chat records kept, non-chat records skipped (HTTP spans,
    embeddings, tool executions, ...), incomplete chat records skipped (``on_incomplete: skip``),
    chat records whose call failed (kept, with ``error``), and the files read."""

    records: int = 0
    chat: int = 0
    non_chat: int = 0
    incomplete: int = 0
    failed: int = 0
    files: int = 0
    #: chat records whose id an earlier record had (left out: the first is kept)
    duplicates: int = 0
    #: the first few incomplete records skipped, as "file:line: why"
    examples: list[str] = field(default_factory=list)

    def add(self, other: "ReadStats") -> None:
        """Fold another file's counts into these."""
        for k in ("records", "chat", "non_chat", "incomplete", "failed", "files", "duplicates"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.examples = (self.examples + other.examples)[:5]

    def as_dict(self) -> dict:
        """The counts, for a manifest or a log line."""
        return {
            "records": self.records,
            "chat": self.chat,
            "non_chat": self.non_chat,
            "incomplete": self.incomplete,
            "failed": self.failed,
            "files": self.files,
            "duplicates": self.duplicates,
        }

    def line(self) -> str:
        """The counts in words, for the load stage's log line."""
        out = (
            f"{self.records} records in {self.files} file(s): {self.chat} chat calls kept, "
            f"{self.non_chat} non-chat skipped, {self.incomplete} incomplete skipped"
        )
        if self.failed:
            out += f", {self.failed} failed calls kept (error set)"
        if self.duplicates:
            out += f", {self.duplicates} duplicates left out"
        return out


def incomplete(stats: ReadStats, on_incomplete: str, where: str, why: str) -> None:
    """One chat record that lacks what a chat record needs: an error naming ``where`` and ``why``,
    or (``on_incomplete="skip"``) counted."""
    if on_incomplete != "skip":
        raise LogError(f"{where}: {why} (set on_incomplete: skip to skip such records)")
    stats.incomplete += 1
    if len(stats.examples) < 5:
        stats.examples.append(f"{where}: {why}")


# ------------------------------------------------------------------------------------------------ files
def list_files(source: str, storage_options: dict | None = None, suffixes: tuple[str, ...] = ()) -> list[str]:
    """The files ``source`` names, sorted: a file, a folder (every file under it whose name ends in one
    of ``suffixes``, hidden ones left out) or a glob; local paths or fsspec URLs. A source that names
    nothing is a FileNotFoundError."""
    if "://" in source and not source.startswith("file://"):
        # lazy: keeps fsspec out of start-up
        import fsspec

        fs, path = fsspec.core.url_to_fs(source, **(storage_options or {}))
        proto = source.split("://", 1)[0]
        if any(c in path for c in "*?["):
            found = sorted(fs.glob(path))
        elif fs.isdir(path):
            found = sorted(p for p in fs.find(path) if _wanted(p, suffixes))
        elif fs.exists(path):
            found = [path]
        else:
            found = []
        out = [p if "://" in p else f"{proto}://{p}" for p in found]
    else:
        path = source[len("file://") :] if source.startswith("file://") else source
        path = os.path.expanduser(path)
        if any(c in path for c in "*?["):
            out = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        elif os.path.isdir(path):
            out = sorted(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if _wanted(os.path.join(r, f), suffixes))
        elif os.path.isfile(path):
            out = [path]
        else:
            out = []
    if not out:
        raise ArtifactMissing(f"no log files at {source}" + (f" (looked for {', '.join(suffixes)})" if suffixes else ""))
    return out


def _wanted(path: str, suffixes: tuple[str, ...]) -> bool:
    name = os.path.basename(path.rstrip("/"))
    if name.startswith((".", "_")):
        return False
    return not suffixes or name.lower().endswith(suffixes)


def open_file(path: str, storage_options: dict | None = None):
    """A binary file object for a local path or an fsspec URL (gzip-compressed when it ends in .gz)."""
    if "://" in path and not path.startswith("file://"):
        # lazy: keeps fsspec out of start-up
        import fsspec

        return fsspec.open(path, "rb", compression="infer", **(storage_options or {})).open()
    path = path[len("file://") :] if path.startswith("file://") else path
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_bytes(path: str, storage_options: dict | None = None) -> bytes:
    """The whole (decompressed) content of a file."""
    with open_file(path, storage_options) as f:
        return f.read()


def line_blocks(path: str, storage_options: dict | None = None, block: int = 16 << 20):
    """A JSON-lines file in blocks of whole lines of about ``block`` bytes (16 MB: large enough for Arrow, small enough that the allocator reuses its memory instead of mapping it again): (first line number, bytes)."""
    line = 1
    rest = b""
    with open_file(path, storage_options) as f:
        while True:
            chunk = f.read(block)
            if not chunk:
                break
            data = rest + chunk
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield line, memoryview(data)[: cut + 1]  # no copy
            line += data.count(b"\n", 0, cut + 1)
            rest = data[cut + 1 :]
    if rest.strip():
        yield line, rest


# ------------------------------------------------------------------------------------------------ messages
def text_of(content) -> str | None:
    """Message content as text: a string as it is; a list of parts, the text of its text parts joined
    with a newline; None when there is none."""
    if content is None:
        return None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for p in content:
            if isinstance(p, str):
                texts.append(p)
            elif isinstance(p, dict):
                kind = p.get("type")
                if kind in (None, "text", "input_text", "output_text") or "text" in p:
                    t = p.get("text", p.get("content"))
                    if isinstance(t, str):
                        texts.append(t)
        return "\n".join(texts) if texts else None
    if isinstance(content, dict):
        return text_of([content])
    return str(content)


def json_text(value) -> str | None:
    """A JSON value as compact JSON text (text as it is); None stays None."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def openai_message(m: dict) -> dict:
    """An OpenAI-shaped chat message (``role``, ``content`` text or parts, ``name``, ``tool_call_id``,
    ``tool_calls``) as a :data:`MESSAGE` row."""
    calls = m.get("tool_calls")
    if calls is None and isinstance(m.get("function_call"), dict):
        calls = [{"type": "function", "function": m["function_call"]}]
    return {
        "role": m.get("role"),
        "content": text_of(m.get("content")),
        "name": m.get("name"),
        "tool_call_id": m.get("tool_call_id"),
        "tool_calls": json_text(calls) if calls else None,
    }


def tool_call(call_id, name, arguments) -> dict:
    """One tool call in the OpenAI shape (arguments as JSON text)."""
    args = arguments if isinstance(arguments, str) or arguments is None else json.dumps(arguments, ensure_ascii=False)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


# ------------------------------------------------------------------------------------------------ tables
def standard_table(cols: dict, attrs: dict, n: int) -> pa.Table:
    """The reader's table: the standard columns (absent ones null, each cast to its type) then the
    attribute columns (a key equal to a standard name is left out: the standard column wins)."""
    arrays, names = [], []
    for f in STANDARD:
        v = cols.get(f.name)
        if v is None:
            v = pa.nulls(n, f.type)
        elif not isinstance(v, (pa.Array, pa.ChunkedArray)):
            v = pa.array(v, f.type)
        elif v.type != f.type:
            v = pc.cast(v, f.type)
        arrays.append(v)
        names.append(f.name)
    for k, v in attrs.items():
        if k in STANDARD_NAMES:
            continue
        if not isinstance(v, (pa.Array, pa.ChunkedArray)):
            v = pa.array(v)
        if pa.types.is_null(v.type):
            v = v.cast(pa.string())
        arrays.append(v)
        names.append(k)
    return pa.Table.from_arrays(arrays, names=names)


def concat(tables: list[pa.Table]) -> pa.Table:
    """Tables of several blocks or files as one: columns missing from some are null there, and an
    attribute whose type differs between them becomes text."""
    tables = [t for t in tables if t is not None]
    if not tables:
        return STANDARD.empty_table()
    if len(tables) == 1:
        return tables[0]
    types: dict[str, set] = {}
    for t in tables:
        for f in t.schema:
            types.setdefault(f.name, set()).add(f.type)
    fix = {k for k, ts in types.items() if len({t for t in ts if not pa.types.is_null(t)}) > 1 and k not in STANDARD_NAMES}
    if fix:
        out = []
        for t in tables:
            for k in fix & set(t.column_names):
                i = t.column_names.index(k)
                t = t.set_column(i, k, _to_text(t[k]))
            out.append(t)
        tables = out
    return pa.concat_tables(tables, promote_options="permissive")


def _to_text(col):
    if pa.types.is_list(col.type) or pa.types.is_struct(col.type) or pa.types.is_map(col.type):
        return pa.array([json_text(v) for v in col.to_pylist()], pa.string())
    return pc.cast(col, pa.string())


# ------------------------------------------------------------------------------------------------ row by row
def rows_table(std: dict[str, list], attrs: list[dict]) -> pa.Table:
    """A table from the standard columns as Python lists (``request_time`` as µs since the epoch) and
    one dict of attributes per row; an attribute whose values Arrow cannot type as one becomes text."""
    n = len(std.get("example_id", []))
    keys: dict[str, None] = {}
    for a in attrs:
        keys.update(dict.fromkeys(a))
    cols = {}
    for name, values in std.items():
        if name == "request_time":
            cols[name] = pa.array(values, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
        else:
            cols[name] = pa.array(values, STANDARD.field(name).type)
    extra = {}
    for k in keys:
        values = [a.get(k) for a in attrs]
        if all(v is None for v in values):
            continue
        try:
            arr = pa.array(values)
            if pa.types.is_struct(arr.type) or pa.types.is_null(arr.type):
                raise pa.ArrowInvalid("nested")
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            arr = pa.array([None if v is None else v if isinstance(v, str) else json_text(v) for v in values], pa.string())
        extra[k] = arr
    return standard_table(cols, extra, n)


def utc_micros(value) -> int | None:
    """A timestamp (ISO 8601 text, with or without an offset — none means UTC —, a datetime, or Unix
    seconds) as µs since the epoch; None for None or empty text; a ValueError otherwise."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(value * 1_000_000))
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            value = dt.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is not a timestamp") from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return (value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)
    raise ValueError(f"{value!r} is not a timestamp")


def maybe_json(value):
    """Text that holds a JSON object or list, parsed; anything else as it is."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def records(path: str, storage_options: dict | None = None) -> list[tuple[int, dict | None, str | None]]:
    """The records of a JSON-lines, JSON (an array of objects) or CSV file: (line or record number,
    the record, None) — or (number, None, why) for a line that does not parse."""
    lower = path.lower().removesuffix(".gz")
    data = read_bytes(path, storage_options)
    if lower.endswith(".csv"):
        csv.field_size_limit(1 << 30)
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig")))
        return [(k + 2, {c: (v if v != "" else None) for c, v in row.items()}, None) for k, row in enumerate(reader)]
    text = data.decode("utf-8-sig")
    if lower.endswith(".json") and text.lstrip()[:1] == "[":
        try:
            items = json.loads(text)
        except ValueError as e:
            return [(1, None, f"not JSON ({e})")]
        return [
            (k + 1, it if isinstance(it, dict) else None, None if isinstance(it, dict) else "not a JSON object")
            for k, it in enumerate(items)
        ]
    out = []
    for k, line in enumerate(text.split("\n")):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            out.append((k + 1, None, f"not a JSON object ({e}); truncated?"))
            continue
        out.append((k + 1, obj, None) if isinstance(obj, dict) else (k + 1, None, "not a JSON object"))
    return out


def bad_line(stats: ReadStats, on_incomplete: str, where: str, why: str) -> None:
    """A line that is not a record: an error naming it, or skipped and counted with ``on_incomplete: skip``."""
    stats.records += 1
    incomplete(stats, on_incomplete, where, why)
