"""OTLP JSON lines, as the OpenTelemetry Collector's ``file`` exporter writes them, as Arrow.

Each line is one ``ExportTraceServiceRequest`` in the OTLP/JSON encoding (opentelemetry-proto
``examples/trace.json``; the Collector writes int64 fields as JSON strings, other writers as
numbers): ``resourceSpans[].resource.attributes``, ``resourceSpans[].scopeSpans[].spans[]``, each span
with ``traceId``/``spanId`` (hex), ``startTimeUnixNano``/``endTimeUnixNano``, ``attributes`` (a list of
``{key, value: AnyValue}``), ``events`` and ``status``.

A block of lines is parsed by Arrow's JSON reader against a fixed schema; the spans are the flattened
lists, and the attributes are pivoted into one typed column per key (:func:`pivot`). A block Arrow
cannot take as it is (numbers where the Collector writes strings, enum names, a truncated line) is
parsed line by line in Python, which names the bad line, and rewritten into the Collector's shape.
The GenAI (:mod:`assay.logs.otel`) and OpenInference (:mod:`assay.logs.openinference`) readers
interpret the spans.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from assay.logs.common import LogError, ReadStats, concat, line_blocks, list_files

_SCALAR = [("stringValue", pa.string()), ("intValue", pa.string()), ("doubleValue", pa.float64()), ("boolValue", pa.bool_())]
ANY = pa.struct(_SCALAR + [("arrayValue", pa.struct([("values", pa.list_(pa.struct(_SCALAR)))]))])
KV = pa.list_(pa.struct([("key", pa.string()), ("value", ANY)]))
EVENT = pa.struct([("timeUnixNano", pa.string()), ("name", pa.string()), ("attributes", KV)])
SPAN = pa.struct(
    [
        ("traceId", pa.string()),
        ("spanId", pa.string()),
        ("parentSpanId", pa.string()),
        ("name", pa.string()),
        ("startTimeUnixNano", pa.string()),
        ("endTimeUnixNano", pa.string()),
        ("attributes", KV),
        ("events", pa.list_(EVENT)),
        ("status", pa.struct([("code", pa.int64()), ("message", pa.string())])),
    ]
)
SCHEMA = pa.schema(
    [
        (
            "resourceSpans",
            pa.list_(
                pa.struct(
                    [
                        ("resource", pa.struct([("attributes", KV)])),
                        (
                            "scopeSpans",
                            pa.list_(
                                pa.struct(
                                    [
                                        ("scope", pa.struct([("name", pa.string()), ("version", pa.string())])),
                                        ("spans", pa.list_(SPAN)),
                                    ]
                                )
                            ),
                        ),
                    ]
                )
            ),
        )
    ]
)
_PARSE = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")

_INT_FIELDS = {"intValue", "startTimeUnixNano", "endTimeUnixNano", "timeUnixNano"}
_STATUS = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class Block:
    """The spans of one block of lines: ``spans`` (a StructArray of :data:`SPAN`), the resource
    attributes of each span's resource (``resource``: key -> column), and where each span is."""

    def __init__(self, path: str, first_line: int, data: bytes, table: pa.Table, lines: list[int] | None):
        self.path, self.first_line, self._data, self._lines = path, first_line, data, lines
        rs = table["resourceSpans"].combine_chunks()
        rs_flat = rs.flatten()
        row_of_rs = pc.list_parent_indices(rs)
        ss = rs_flat.field("scopeSpans")
        ss_flat = ss.flatten()
        rs_of_ss = pc.list_parent_indices(ss)
        sp = ss_flat.field("spans")
        self.spans = sp.flatten()
        ss_of_sp = pc.list_parent_indices(sp)
        rs_of_sp = pc.take(rs_of_ss, ss_of_sp)
        self.row = np_of(pc.take(row_of_rs, rs_of_sp))
        self.n = len(self.spans)
        res = pivot(rs_flat.field("resource").field("attributes"))
        idx = rs_of_sp
        self.resource = {k: v.take(idx) for k, v in res.items()}
        self.scope = pc.take(ss_flat.field("scope").field("name"), ss_of_sp)

    def where(self, i: int) -> str:
        """``file:line span <spanId>`` of span ``i``."""
        row = int(self.row[i])
        if self._lines is None:  # rows are the block's non-blank lines
            self._lines = [k for k, ln in enumerate(bytes(self._data).split(b"\n")) if ln.strip()]
        line = self.first_line + self._lines[row] if row < len(self._lines) else self.first_line + row
        return f"{self.path}:{line} span {self.spans.field('spanId')[i].as_py()}"


def _parse(data: bytes) -> pa.Table | None:
    try:
        return pj.read_json(pa.BufferReader(pa.py_buffer(data)), parse_options=_PARSE)
    except pa.ArrowInvalid:
        return None


#: the file names an OTLP JSON-lines export is written under (the Collector's file exporter, compressed or not)
SUFFIXES = (".json", ".jsonl", ".ndjson", ".json.gz", ".jsonl.gz", ".ndjson.gz")


def read_spans(source: str, on_incomplete: str, storage_options: dict | None, block_table) -> tuple[pa.Table, ReadStats]:
    """Every file of an OTLP export (a file, folder or glob), block by block, turned into the standard
    table by the format's ``block_table(block, stats, on_incomplete)``: the one loop of the OTel and
    OpenInference readers."""
    stats = ReadStats()
    tables = []
    for path in list_files(source, storage_options, SUFFIXES):
        stats.files += 1
        for block in blocks(path, stats, on_incomplete, storage_options):
            tables.append(block_table(block, stats, on_incomplete))
    return concat(tables), stats


def blocks(path: str, stats: ReadStats, on_incomplete: str, storage_options: dict | None = None):
    """The :class:`Block` of each block of lines of an OTLP JSON-lines file. The next block is parsed
    in a second thread while the caller turns this one into rows (Arrow's parser releases the GIL)."""
    with ThreadPoolExecutor(1, thread_name_prefix="assay-otlp") as pool:
        it = line_blocks(path, storage_options)
        nxt = next(it, None)
        fut = pool.submit(_parse, nxt[1]) if nxt else None
        while fut is not None:
            first, data = nxt
            table = fut.result()
            nxt = next(it, None)
            fut = pool.submit(_parse, nxt[1]) if nxt else None
            lines = None
            if table is None:  # not as the Collector writes it, or a bad line: one by one
                data, lines = _rewrite(path, first, data, stats, on_incomplete)
                if not data:
                    continue
                table = pj.read_json(pa.BufferReader(data), parse_options=_PARSE)
            if table.num_rows:
                yield Block(path, first, data, table, lines)


def _rewrite(path: str, first: int, data: bytes, stats: ReadStats, on_incomplete: str) -> tuple[bytes, list[int]]:
    """A block Arrow could not parse, line by line: each line in the Collector's own encoding (int64
    as strings, status codes as numbers); a line that is not JSON is an error naming it, or with
    ``on_incomplete: skip`` left out and counted. Returns the new block and, per row, its line offset."""
    out, lines = [], []
    for k, raw in enumerate(bytes(data).split(b"\n")):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            if not isinstance(obj, dict):
                raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        except ValueError as e:
            why = f"not a JSON object ({e}); truncated?" if isinstance(e, json.JSONDecodeError) else str(e)
            if on_incomplete != "skip":
                raise LogError(f"{path}:{first + k}: {why} (set on_incomplete: skip to skip such lines)") from None
            stats.incomplete += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"{path}:{first + k}: {why}")
            continue
        out.append(json.dumps(_canonical(obj), separators=(",", ":")).encode())
        lines.append(k)
    return (b"\n".join(out) + b"\n") if out else b"", lines


def _canonical(obj):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in _INT_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool):
                v = str(int(v))
            elif k == "code" and isinstance(v, str):
                v = _STATUS.get(v, 0)
            elif k == "doubleValue" and isinstance(v, str):
                try:
                    v = float(v)
                except ValueError:
                    v = None
            elif k == "kvlistValue":
                v = None  # no column holds a map; the key is left out
            else:
                v = _canonical(v)
            out[k] = v
        return out
    if isinstance(obj, list):
        return [_canonical(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------------------ attributes
def pivot(kv: pa.Array, skip_prefixes: tuple[str, ...] = ()) -> dict[str, pa.Array]:
    """A list of ``{key, value}`` per row as one column per key (length: the rows), typed by the
    values the key holds: text, int64, float64, bool, a list of text; a key holding values of several
    kinds becomes text. Keys starting with one of ``skip_prefixes`` are left out."""
    n = len(kv)
    flat = kv.flatten()
    if not len(flat):
        return {}
    parent = np_of(pc.list_parent_indices(kv))
    enc = flat.field("key").dictionary_encode()
    codes = np_of(pc.fill_null(enc.indices, -1))  # a record without a key: -1, passed over
    vals = flat.field("value")
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(enc.dictionary) + 1))
    out = {}
    for code, key in enumerate(enc.dictionary.to_pylist()):
        if key is None or (skip_prefixes and key.startswith(skip_prefixes)):
            continue
        sel = order[bounds[code] : bounds[code + 1]]
        if not len(sel):
            continue
        typed = typed_values(vals.take(pa.array(sel)))
        rows = parent[sel]
        if len(sel) == n and (n < 2 or bool(np.all(rows[1:] > rows[:-1]))):
            out[key] = typed  # every row has the key once, in order: no scatter (the usual case)
            continue
        pos = np.full(n, -1, dtype=np.int64)
        pos[rows] = np.arange(len(sel))
        out[key] = typed.take(pa.array(pos, mask=pos < 0))
    return out


def typed_values(v: pa.StructArray) -> pa.Array:
    """AnyValues as one typed array (see :func:`pivot`)."""
    s, i, d, b, a = (v.field(k) for k in ("stringValue", "intValue", "doubleValue", "boolValue", "arrayValue"))
    kinds = [k for k, arr in (("s", s), ("i", i), ("d", d), ("b", b), ("a", a)) if arr.null_count < len(arr)]
    if not kinds:
        return pa.nulls(len(v), pa.string())
    if kinds == ["s"]:
        return s
    if kinds == ["i"]:
        try:
            return pc.cast(i, pa.int64())
        except pa.ArrowInvalid:
            return i
    if kinds == ["d"]:
        return d
    if set(kinds) == {"i", "d"}:
        return pc.coalesce(pc.cast(i, pa.float64()), d)
    if kinds == ["b"]:
        return b
    if kinds == ["a"]:
        return _array_text(a)
    parts = [s, i, pc.cast(d, pa.string()), pc.cast(b, pa.string())]
    if "a" in kinds:
        parts.append(pa.array([None if x is None else json.dumps(x) for x in _array_text(a).to_pylist()], pa.string()))
    return pc.coalesce(*parts)


def _array_text(a: pa.StructArray) -> pa.Array:
    """arrayValues as lists of text."""
    lists = a.field("values")
    flat = lists.flatten()
    text = pc.coalesce(
        flat.field("stringValue"),
        flat.field("intValue"),
        pc.cast(flat.field("doubleValue"), pa.string()),
        pc.cast(flat.field("boolValue"), pa.string()),
    )
    offsets = lists.offsets
    mask = pc.is_null(a) if a.null_count else None
    if lists.offset or lists.null_count:
        offsets = pc.subtract(offsets, offsets[0])
    out = pa.ListArray.from_arrays(
        offsets, text, mask=mask if mask is not None else lists.is_null() if lists.null_count else None
    )
    return out


def any_value(v: dict | None):
    """One AnyValue (as Python) as a Python value."""
    if not v:
        return None
    for k in ("stringValue", "boolValue", "doubleValue"):
        if v.get(k) is not None:
            return v[k]
    if v.get("intValue") is not None:
        try:
            return int(v["intValue"])
        except (TypeError, ValueError):
            return v["intValue"]
    if v.get("arrayValue") is not None:
        return [any_value(x) for x in (v["arrayValue"].get("values") or [])]
    return None


def attrs_dict(kv: list | None) -> dict:
    """A list of ``{key, value}`` (as Python) as a dict."""
    return {e["key"]: any_value(e.get("value")) for e in kv or [] if e and e.get("key") is not None}


def nanos_to_time(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Unix nanoseconds (as text) as (a UTC timestamp in µs, the int64 nanoseconds)."""
    ns = pc.cast(col, pa.int64())
    return pc.cast(pc.divide(ns, 1000), pa.timestamp("us", tz="UTC")), ns


def np_of(arr) -> np.ndarray:
    """A numeric or boolean Arrow array without nulls as NumPy (without the pandas machinery that
    ``to_numpy(zero_copy_only=False)`` imports)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("np_of takes arrays without nulls")
    if pa.types.is_boolean(arr.type):
        return np_of(arr.cast(pa.uint8())).astype(bool)
    dtype = np.dtype(str(arr.type))  # int32, int64, uint8, double...
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=arr.offset * dtype.itemsize)


def take(col, rows: np.ndarray):
    """``col`` at ``rows`` (increasing positions); ``col`` itself when they are all of its rows."""
    if len(rows) == len(col):
        return col
    return col.take(pa.array(rows))


def int_attr(block: Block, col: pa.Array | None, key: str, rows: np.ndarray) -> pa.Array | None:
    """An attribute that must hold whole numbers (token counts), taken at ``rows``: text of digits and
    integral floats are read as numbers; any other value is an error naming the span and the value."""
    if col is None:
        return None
    col = take(col, rows)
    t = col.type
    if pa.types.is_integer(t):
        return pc.cast(col, pa.int64())
    if pa.types.is_floating(t):
        bad = pc.and_(pc.is_valid(col), pc.not_equal(pc.floor(col), col))
    elif pa.types.is_string(t):
        bad = pc.and_(pc.is_valid(col), pc.invert(pc.match_substring_regex(col, r"^\s*-?\d+(\.0*)?\s*$")))
    else:
        bad = pc.is_valid(col)
    if pc.any(bad).as_py():
        j = int(np.flatnonzero(np_of(pc.fill_null(bad, False)))[0])
        raise LogError(f"{block.where(int(rows[j]))}: attribute {key} is {col[j].as_py()!r} ({t}), not a whole number")
    if pa.types.is_string(t):
        return pc.cast(pc.cast(pc.utf8_trim_whitespace(col), pa.float64()), pa.int64())
    return pc.cast(col, pa.int64())


def float_attr(block: Block, col: pa.Array | None, key: str, rows: np.ndarray) -> pa.Array | None:
    """An attribute that must hold numbers (seconds, dollars), taken at ``rows``; else an error naming the span."""
    if col is None:
        return None
    col = take(col, rows)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return pc.cast(col, pa.float64())
    if pa.types.is_string(col.type):
        ok = pc.match_substring_regex(col, r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$")
        bad = pc.and_(pc.is_valid(col), pc.invert(ok))
    else:
        bad = pc.is_valid(col)
    if pc.any(bad).as_py():
        j = int(np.flatnonzero(np_of(pc.fill_null(bad, False)))[0])
        raise LogError(f"{block.where(int(rows[j]))}: attribute {key} is {col[j].as_py()!r} ({col.type}), not a number")
    return pc.cast(pc.utf8_trim_whitespace(col), pa.float64())


def text_attr(block: Block, col: pa.Array | None, key: str, rows: np.ndarray) -> pa.Array | None:
    """An attribute that must hold text (JSON messages, a model name), taken at ``rows``; a value of
    another kind is an error naming the span."""
    if col is None:
        return None
    col = take(col, rows)
    if pa.types.is_string(col.type):
        return col
    bad = pc.is_valid(col)
    if pc.any(bad).as_py():
        j = int(np.flatnonzero(np_of(pc.fill_null(bad, False)))[0])
        raise LogError(f"{block.where(int(rows[j]))}: attribute {key} is {col[j].as_py()!r} ({col.type}), not text")
    return pa.nulls(len(col), pa.string())


def concat_text(parts: list, sep: str = "") -> pa.Array:
    """Element-wise concatenation of text arrays and scalars (a null element gives null)."""
    return pc.binary_join_element_wise(*parts, sep)


def values_buffer(arr: pa.Array) -> pa.Buffer:
    """The bytes of all the strings of a text array, back to back (zero copy)."""
    arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    offs = np.frombuffer(arr.buffers()[1], dtype=np.int32)
    start, end = int(offs[arr.offset]), int(offs[arr.offset + len(arr)])
    return arr.buffers()[2].slice(start, end - start)
