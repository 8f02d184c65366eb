"""Responses a production system already produced: evaluated, not re-generated."""

import pyarrow as pa
import pyarrow.compute as pc

from assay.providers.base import BatchProvider

OPTIONAL = ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_s", "confidence")
#: The log column with each request's time. Detected by name only (no config key); it becomes the
#: responses' ``started_at``, so the request is priced at the price in force on its own day.
LOGGED_AT = "logged_at"


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
    import pandas as pd

    parsed = pd.to_datetime(pd.Series(col.to_pylist(), dtype=object), utc=True, errors="coerce", format="ISO8601")
    return pa.chunked_array([pc.cast(pa.array(parsed.dt.as_unit("us")), pa.int64())])


class ReplayProvider(BatchProvider):
    """Reads outputs from ``source`` (a file keyed by the dataset id) or from a dataset column.

    ``output_column`` names the output (default ``output``); token counts and latency are
    taken where the log has them (columns ``prompt_tokens``, ``completion_tokens``,
    ``cached_tokens``, ``latency_s``). An example with no logged response is an error row.
    A ``logged_at`` column (the time of the logged request) becomes the response's ``started_at``,
    so the cost stage prices each request at the price of its own day; without it ``started_at`` is
    the time of the replay and requests are priced at the run's as_of.
    """

    free_to_redo = True  # reading a log again costs nothing
    cache_responses = False  # the log is the store

    def _log(self) -> pa.Table:
        if getattr(self, "_table", None) is None:
            from assay.dataset import read_source

            key = self.ctx.dataset.id or "example_id"
            src = self.ctx.resolve_path(self.cfg.source)
            try:
                t = read_source(src)
            except Exception as e:
                # named here: pyarrow's own messages do not say which file
                raise ValueError(f"replay log {src} cannot be read: {type(e).__name__}: {e}") from e
            col = self.cfg.output_column or "output"
            if key not in t.column_names:
                raise ValueError(f"replay log {src} has no column {key!r} to match dataset.id (columns: {', '.join(t.column_names)})")
            if col not in t.column_names:
                raise ValueError(f"replay log {src} has no output column {col!r} (columns: {', '.join(t.column_names)})")
            keep = {"example_id": pc.cast(t[key], pa.string()), "output": t[col]}
            for c in OPTIONAL:
                if c in t.column_names:
                    keep[c] = t[c]
            if LOGGED_AT in t.column_names:
                keep["started_at"] = _utc_micros(t[LOGGED_AT])
            self._table = pa.table(keep)
        return self._table

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
            return "started_at" in self._log().column_names
        return bool(getattr(self, "_column_logged_at", False))

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        out = self._batch(rows)
        self._latency = getattr(self, "_latency", 0.0) + sum(v for v in out["latency_s"] if v is not None)
        return out

    def prepare(self, todo: pa.Table) -> None:
        """Join the whole log to the examples once; shards then take consecutive slices."""
        self._aligned = None
        self._offset = 0
        if self.cfg.source is None:
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
                raise ValueError(f"replay model {self.ctx.model_name}: dataset has no column {col!r}; set source: or output_column:")
            out = {"output": rows[col].cast(pa.string()).to_pylist()}
            for c in OPTIONAL:
                out[c] = rows[c].to_pylist() if c in rows.column_names else [None] * n
            if LOGGED_AT in rows.column_names:
                self._column_logged_at = True
                out["started_at"] = _utc_micros(rows[LOGGED_AT]).to_pylist()
            out["error"] = [None if o is not None else "no logged response" for o in out["output"]]
            return out
        if getattr(self, "_aligned", None) is None:
            self.prepare(rows)
        joined = self._aligned.slice(self._offset, n)
        self._offset += n
        if not joined["example_id"].equals(rows["example_id"]):
            raise RuntimeError("replay shards must be requested in the order prepare() was given")
        out = {"output": joined["output"].cast(pa.string()).to_pylist()}
        for c in OPTIONAL:
            out[c] = joined[c].to_pylist() if c in joined.column_names else [None] * n
        if "started_at" in joined.column_names:  # µs since the epoch, UTC (see invoke_model's batch branch)
            out["started_at"] = joined["started_at"].to_pylist()
        out["error"] = [None if o is not None else "no logged response" for o in out["output"]]
        return out
