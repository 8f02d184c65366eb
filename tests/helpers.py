"""Small inputs that several test modules build the same way."""

import pyarrow as pa
import pyarrow.parquet as pq

from tests.conftest import write_config


def write_replay_inputs(tmp_path, outputs: list[str | None], artifacts: str = "local-runs") -> str:
    """A four-example dataset (labels x, y, x, y), a replay log with ``outputs`` (None: no logged
    response) and a one-pipeline config ``p`` that replays it; returns the config's path."""
    pq.write_table(
        pa.table({"id": [1, 2, 3, 4], "text": ["a", "b", "c", "d"], "label": ["x", "y", "x", "y"]}), tmp_path / "data.parquet"
    )
    rows = [(i, o) for i, o in zip([1, 2, 3, 4], outputs) if o is not None]
    pq.write_table(pa.table({"id": [i for i, _ in rows], "output": [o for _, o in rows]}), tmp_path / "log.parquet")
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {artifacts}
        models:
          rep: {{provider: replay, source: log.parquet, price: {{input_per_mtok: 1.0, output_per_mtok: 1.0}}}}
        pipelines:
          p:
            dataset: {{source: data.parquet, id: id, reference: label}}
            models: [rep]
            metrics: [accuracy]
            bootstrap: 10
    """,
    )
    return str(cfg)
