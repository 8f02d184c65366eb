"""Responses a production system already produced: evaluated, not re-generated."""

import pyarrow as pa
import pyarrow.compute as pc

from assay.dataset import _open, detect_format, read_source
from assay.errors import ProviderSetupError
from assay.logs import LogError, read_log
from assay.providers.base import BatchProvider

OPTIONAL = ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_s", "confidence")
#: a production log's columns with the model a request asked for (the served model is its ``model``)
REQUEST_MODEL_COLUMNS = ("gen_ai.request.model", "llm.request.model_name", "model_group", "provided_model_name")
#: the logged call's own error, in a production log read with ``format:``
LOG_ERROR = "error"
#: The log column with each request's time. Detected by name only (no config key); it becomes the
#: responses' ``started_at``, so the request is priced at the price in force on its own day.
LOGGED_AT = "logged_at"
#: the column names that hold a request's logged time: Assay's own, and the production log
#: readers' ``request_time`` (the first one a log has is used)
LOGGED_AT_COLUMNS = (LOGGED_AT, "request_time")


def logged_at_column(names) -> str | None:
    """The column of ``names`` with each request's logged time, or None."""
    return next((c for c in LOGGED_AT_COLUMNS if c in names), None)


def _utc_micros(col) -> pa.ChunkedArray:
    """A timestamp column as int64 microseconds since the epoch (UTC).

    Timestamps with a time zone are instants; naive timestamps and dates are taken as UTC; text is
    parsed (ISO 8601, with or without an offset).
    """
    t = col.type
    if pa.types.is_timestamp(t):
        # stored as UTC already; nanoseconds are truncated to µs
        return pc.cast(pc.cast(col, pa.timestamp("us", tz=t.tz), safe=False), pa.int64())
    if pa.types.is_date(t):
        return pc.cast(pc.cast(col, pa.timestamp("us")), pa.int64())
    # lazy: keeps pandas out of start-up
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(col.to_pylist(), dtype=object), utc=True, errors="coerce", format="ISO8601")
    return pa.chunked_array([pc.cast(pa.array(parsed.dt.as_unit("us")), pa.int64())])


#: log rows per batch when a sorted Parquet log is merged with the examples
STREAM_ROWS = 131_072


def _increasing(ids) -> bool:
    """Whether text ids (one Arrow array) are strictly increasing, so sorted and unique."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    return len(ids) < 2 or pc.all(pc.less(ids.slice(0, len(ids) - 1), ids.slice(1))).as_py()


class _Merge:
    """A sorted log merged with sorted examples, shard by shard: only the log rows up to the
    shard's last id are held (a log row for an id no example has is passed over)."""

    def __init__(self, batches, empty: pa.Table):
        self._it = batches
        self._buf = empty  # log rows not yet matched, in id order

    def take(self, ids) -> pa.Table:
        """The log rows of ``ids`` (increasing), one per id (nulls where the log has none)."""
        ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
        if not len(ids):
            return self._buf.slice(0, 0)
        last = ids[len(ids) - 1]
        parts = [self._buf]
        # read on until the log is past the shard's last id (or at its end)
        while not parts[-1].num_rows or pc.less_equal(parts[-1]["example_id"][-1], last).as_py():
            b = next(self._it, None)
            if b is None:
                break
            parts.append(b)
        buf = pa.concat_tables(parts).combine_chunks() if len(parts) > 1 else parts[0]
        out = buf.take(pc.index_in(ids, value_set=buf["example_id"])).set_column(0, "example_id", ids)
        self._buf = buf.slice(pc.sum(pc.less_equal(buf["example_id"], last)).as_py() or 0)  # what comes after the shard
        return out


class ReplayProvider(BatchProvider):
    """Reads outputs from ``source`` (a file keyed by the dataset id) or from a dataset column.

    ``output_column`` names the output (default ``output``); token counts and latency are
    taken where the log has them (columns ``prompt_tokens``, ``completion_tokens``,
    ``cached_tokens``, ``latency_s``). An example with no logged response is an error row.
    A ``logged_at`` (or the log readers' ``request_time``) column (the time of the logged request) becomes the response's ``started_at``,
    so the cost stage prices each request at the price of its own day; without it ``started_at`` is
    the time of the replay and requests are priced at the run's as_of.
    """

    free_to_redo = True  # reading a log again costs nothing
    cache_responses = False  # the log is the store

    def _check(self, names: list[str], src: str) -> None:
        key = self.ctx.dataset.id or "example_id"
        col = self.cfg.output_column or "output"
        if key not in names:
            raise ProviderSetupError(f"replay log {src} has no column {key!r} to match dataset.id (columns: {', '.join(names)})")
        if col not in names:
            raise ProviderSetupError(f"replay log {src} has no output column {col!r} (columns: {', '.join(names)})")

    def _keep(self, t: pa.Table) -> pa.Table:
        """The log's rows as the responses need them: the id as text, the output, what else it has."""
        key = self.ctx.dataset.id or "example_id"
        keep = {"example_id": pc.cast(t[key], pa.string()), "output": t[self.cfg.output_column or "output"]}
        for c in OPTIONAL:
            if c in t.column_names:
                keep[c] = t[c]
        at = logged_at_column(t.column_names)
        if at is not None:
            keep["started_at"] = _utc_micros(t[at])
        if getattr(self.cfg, "format", None) is not None and LOG_ERROR in t.column_names:
            keep["_log_error"] = t[LOG_ERROR]
        return pa.table(keep)

    def _production_log(self) -> pa.Table:
        """A production log (``format:``) as :meth:`_keep` takes it: its standard columns, the rows of
        ``model:`` only when set, the request time as ``logged_at`` and the logged call's error."""
        src = self.ctx.resolve_path(self.cfg.source)
        try:
            t, _ = read_log(self.cfg.format, src, on_incomplete=self.cfg.on_incomplete)
        except (LogError, FileNotFoundError) as e:
            raise ProviderSetupError(f"replay model {self.ctx.model_name}: {e}") from e
        except Exception as e:
            raise ProviderSetupError(f"replay log {src} cannot be read as {self.cfg.format}: {type(e).__name__}: {e}") from e
        want = getattr(self.cfg, "model", None)
        if want is not None and t.num_rows:
            # the served model (a dated snapshot, often), else the model the request asked for
            mask = pc.fill_null(pc.equal(t["model"], want), False)
            if not pc.any(mask).as_py():
                for c in REQUEST_MODEL_COLUMNS:
                    if c in t.column_names and pa.types.is_string(t[c].type):
                        mask = pc.or_(mask, pc.fill_null(pc.equal(t[c], want), False))
            if not pc.any(mask).as_py():
                held = sorted(m for m in pc.unique(t["model"]).to_pylist() if m is not None)
                raise ProviderSetupError(
                    f"replay model {self.ctx.model_name}: the {self.cfg.format} log {src} has no calls of "
                    f"model {want!r} (it holds: {', '.join(held) or 'none'}); set model: to one of them"
                )
            t = t.filter(mask)
        cols = {c: t[c] for c in ("example_id", "output", *OPTIONAL) if c in t.column_names}
        cols[LOGGED_AT] = t["request_time"]
        cols[LOG_ERROR] = t["error"]
        return pa.table(cols)

    def _log(self) -> pa.Table:
        if getattr(self, "_table", None) is None and getattr(self.cfg, "format", None) is not None:
            log = self._production_log()
            key = self.ctx.dataset.id
            if key is not None and key != "example_id":  # the log's own ids are its example_id
                log = log.append_column(key, log["example_id"])
            self._table = self._keep(log)
        if getattr(self, "_table", None) is None:
            src = self.ctx.resolve_path(self.cfg.source)
            try:
                t = read_source(src)
            except Exception as e:
                # named here: pyarrow's own messages do not say which file
                raise ProviderSetupError(f"replay log {src} cannot be read: {type(e).__name__}: {e}") from e
            self._check(t.column_names, src)
            self._table = self._keep(t)
        return self._table

    def _log_names(self) -> list[str]:
        """The log's column names, from a Parquet log's footer; for another format, the log is read
        (and only whether it had a ``logged_at`` column is told)."""
        if getattr(self, "_names", None) is None:
            names = None
            if getattr(self.cfg, "format", None) is not None:
                names = [LOGGED_AT]  # a production log always has each call's request time
            elif getattr(self, "_table", None) is None:
                try:
                    import pyarrow.parquet as pq

                    from assay.dataset import _open, detect_format

                    src = self.ctx.resolve_path(self.cfg.source)
                    if detect_format(src, None) == "parquet":
                        with _open(src) as f:
                            names = pq.ParquetFile(f).schema_arrow.names
                except Exception:  # noqa: BLE001  (read whole below, which names the file in its error)
                    names = None
            if names is None:
                names = [LOGGED_AT] if "started_at" in self._log().column_names else []
            self._names = names
        return self._names

    def _sorted_log(self):
        """A Parquet log whose ids, as text, are in increasing order (so each once): its batches,
        as :meth:`_keep` shapes them, for a merge with the examples (which the load stage sorted);
        None for any other log. One pass over the id column checks it."""
        if getattr(self.cfg, "format", None) is not None:
            return None  # read by its reader, whole
        src = self.ctx.resolve_path(self.cfg.source)
        if detect_format(src, None) != "parquet":
            return None
        # lazy: keeps pyarrow out of start-up
        import pyarrow.parquet as pq

        key = self.ctx.dataset.id or "example_id"
        try:
            with _open(src) as f:
                names = pq.ParquetFile(f).schema_arrow.names
            self._check(names, src)  # (outside: its own message names the file)
        except ValueError as e:
            if str(e).startswith("replay log "):
                raise
            raise ProviderSetupError(f"replay log {src} cannot be read: {type(e).__name__}: {e}") from e
        except Exception as e:
            raise ProviderSetupError(f"replay log {src} cannot be read: {type(e).__name__}: {e}") from e
        with _open(src) as f:
            pf = pq.ParquetFile(f)
            empty = self._keep(pf.schema_arrow.empty_table())
            last = None
            for b in pf.iter_batches(batch_size=STREAM_ROWS, columns=[key]):
                ids = pc.cast(b.column(0), pa.string())
                if (
                    ids.null_count
                    or not _increasing(ids)
                    or (last is not None and len(ids) and not pc.less(last, ids[0]).as_py())
                ):
                    return None
                if len(ids):
                    last = ids[len(ids) - 1]

        def batches():
            with _open(src) as f:
                for b in pq.ParquetFile(f).iter_batches(batch_size=STREAM_ROWS):
                    yield self._keep(pa.Table.from_batches([b]))

        return batches(), empty

    def stats(self) -> dict:
        # The logged calls' own time at the deployment's concurrency: what throughput they imply.
        lat = getattr(self, "_latency", 0.0)
        out = {"wall_s": lat / self.cfg.max_concurrency} if lat else {}
        if self.logged_request_times:
            out["logged_request_times"] = True  # started_at is the logged request time: priced at its own day
        return out

    @property
    def logged_request_times(self) -> bool:
        """Whether the responses' ``started_at`` is each request's logged time (a ``logged_at``
        column), so that the cost stage prices each request at its own day's price."""
        if self.cfg.source is not None:
            return logged_at_column(self._log_names()) is not None
        return bool(getattr(self, "_column_logged_at", False))

    def columns(self, available: list[str]) -> list[str] | None:
        if self.cfg.source is not None:
            return ["example_id"]  # the log has the rest
        col = self.cfg.output_column or "output"
        return [c for c in [col, *OPTIONAL, *LOGGED_AT_COLUMNS] if c in available]  # a missing output column: said by run_batch

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        out = self._batch(rows)
        self._latency = getattr(self, "_latency", 0.0) + sum(v for v in out["latency_s"] if v is not None)
        return out

    def prepare(self, todo: pa.Table) -> None:
        """Join the log to the examples once; shards then take consecutive slices. A Parquet log
        with its ids in order, for examples in order, is merged shard by shard instead, never read whole."""
        self._aligned = None
        self._merge = None
        self._offset = 0
        if self.cfg.source is None:
            return
        ids = todo["example_id"]
        if not ids.null_count and _increasing(ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids):
            log = self._sorted_log()
            if log is not None:
                self._merge = _Merge(*log)
                return
        log = self._log()
        keys = todo.select(["example_id"]).append_column("_pos", pa.array(range(todo.num_rows), pa.int64()))
        joined = keys.join(log, "example_id", join_type="left outer", use_threads=False)
        # a log with several rows per id keeps one (the last one the join produced)
        order = pc.sort_indices(joined["_pos"])
        joined = joined.take(order)
        if joined.num_rows != todo.num_rows:
            last = {p: i for i, p in enumerate(joined["_pos"].to_pylist())}
            joined = joined.take(pa.array([last[p] for p in range(todo.num_rows)], pa.int64()))
        self._aligned = joined

    def _batch(self, rows: pa.Table) -> dict[str, list]:
        n = rows.num_rows
        col = self.cfg.output_column or "output"
        if self.cfg.source is None:
            if col not in rows.column_names:
                raise ProviderSetupError(
                    f"replay model {self.ctx.model_name}: dataset has no column {col!r}; set source: or output_column:"
                )
            out = {"output": rows[col].cast(pa.string()).to_pylist()}
            for c in OPTIONAL:
                out[c] = rows[c].to_pylist() if c in rows.column_names else [None] * n
            at = logged_at_column(rows.column_names)
            if at is not None:
                self._column_logged_at = True
                out["started_at"] = _utc_micros(rows[at]).to_pylist()
            out["error"] = [None if o is not None else "no logged response" for o in out["output"]]
            return out
        if getattr(self, "_aligned", None) is None and getattr(self, "_merge", None) is None:
            self.prepare(rows)
        if self._merge is not None:
            joined = self._merge.take(rows["example_id"])
        else:
            joined = self._aligned.slice(self._offset, n)
        self._offset += n
        if not joined["example_id"].equals(rows["example_id"]):
            raise RuntimeError("replay shards must be requested in the order prepare() was given")
        out = {"output": joined["output"].cast(pa.string()).to_pylist()}
        for c in OPTIONAL:
            out[c] = joined[c].to_pylist() if c in joined.column_names else [None] * n
        if "started_at" in joined.column_names:  # µs since the epoch, UTC (see invoke_model's batch branch)
            out["started_at"] = joined["started_at"].to_pylist()
        logged = joined["_log_error"].to_pylist() if "_log_error" in joined.column_names else [None] * n
        out["error"] = [
            None if o is not None else f"the logged call failed: {e}" if e else "no logged response"
            for o, e in zip(out["output"], logged)
        ]
        return out
