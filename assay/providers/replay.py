"""Responses a production system already produced: evaluated, not re-generated."""

import pyarrow as pa
import pyarrow.compute as pc

from assay.providers.base import Provider

OPTIONAL = ("prompt_tokens", "completion_tokens", "cached_tokens", "latency_s")


class ReplayProvider(Provider):
    """Reads outputs from ``source`` (a file keyed by the dataset id) or from a dataset column.

    ``output_column`` names the output (default ``output``); token counts and latency are
    taken where the log has them (columns ``prompt_tokens``, ``completion_tokens``,
    ``cached_tokens``, ``latency_s``). An example with no logged response is an error row.
    """

    batch = True
    cacheable = False

    def _log(self) -> pa.Table:
        if getattr(self, "_table", None) is None:
            from assay.dataset import read_source

            key = self.ctx.dataset.id or "example_id"
            src = self.ctx.resolve_path(self.cfg.source)
            t = read_source(src)
            col = self.cfg.output_column or "output"
            if key not in t.column_names:
                raise ValueError(f"replay log {src} has no column {key!r} to match dataset.id (columns: {', '.join(t.column_names)})")
            if col not in t.column_names:
                raise ValueError(f"replay log {src} has no output column {col!r} (columns: {', '.join(t.column_names)})")
            keep = {"example_id": pc.cast(t[key], pa.string()), "output": t[col]}
            for c in OPTIONAL:
                if c in t.column_names:
                    keep[c] = t[c]
            self._table = pa.table(keep)
        return self._table

    def stats(self) -> dict:
        # The logged calls' own time at the deployment's concurrency: what throughput they imply.
        lat = getattr(self, "_latency", 0.0)
        return {"wall_s": lat / self.cfg.max_concurrency} if lat else {}

    def run_batch(self, rows: pa.Table) -> dict[str, list]:
        out = self._batch(rows)
        self._latency = getattr(self, "_latency", 0.0) + sum(v for v in out["latency_s"] if v is not None)
        return out

    def _batch(self, rows: pa.Table) -> dict[str, list]:
        n = rows.num_rows
        col = self.cfg.output_column or "output"
        if self.cfg.source is None:
            if col not in rows.column_names:
                raise ValueError(f"replay model {self.ctx.model_name}: dataset has no column {col!r}; set source: or output_column:")
            out = {"output": rows[col].cast(pa.string()).to_pylist()}
            for c in OPTIONAL:
                out[c] = rows[c].to_pylist() if c in rows.column_names else [None] * n
            out["error"] = [None if o is not None else "no logged response" for o in out["output"]]
            return out
        log = self._log()
        joined = rows.select(["example_id"]).join(log, "example_id", join_type="left outer")
        # join does not keep order; restore the shard's order
        order = {k: i for i, k in enumerate(joined["example_id"].to_pylist())}
        idx = pa.array([order[k] for k in rows["example_id"].to_pylist()])
        joined = joined.take(idx)
        out = {"output": joined["output"].cast(pa.string()).to_pylist()}
        for c in OPTIONAL:
            out[c] = joined[c].to_pylist() if c in joined.column_names else [None] * n
        out["error"] = [None if o is not None else "no logged response" for o in out["output"]]
        return out
