"""Day by day: ``partition: {lag: 1d}`` makes a nightly run assess the last complete day, and each
replayed (incumbent) request is priced at its own date while the candidate is priced at the run's."""

import json
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import DatasetConfig
from assay.dataset import partition_end, prepare
from assay.stages import run_local
from tests.conftest import write_config


def traffic() -> pa.Table:
    """Requests on the 4th, the 5th and early on the 6th (a day not over at a 02:00 run)."""
    times = [
        datetime(2026, 11, 4, 10, tzinfo=UTC),
        datetime(2026, 11, 4, 23, 59, tzinfo=UTC),
        datetime(2026, 11, 5, 0, 0, 1, tzinfo=UTC),
        datetime(2026, 11, 5, 12, tzinfo=UTC),
        datetime(2026, 11, 5, 23, 30, tzinfo=UTC),
        datetime(2026, 11, 6, 1, 0, tzinfo=UTC),
    ]
    ids = [f"s{i}" for i in range(len(times))]
    return pa.table(
        {
            "example_id": ids,
            "request_time": pa.array(times, pa.timestamp("us", tz="UTC")),
            "messages": [json.dumps([{"role": "user", "content": f"ANSWER: reply {i}"}]) for i in ids],
            "output": [f"logged reply {i}" for i in ids],
            "prompt_tokens": [10] * len(ids),
            "completion_tokens": [5] * len(ids),
        }
    )


def test_lag_assesses_the_last_complete_day():
    t = traffic()
    cfg = DatasetConfig(source="x.parquet", id="example_id", partition={"column": "request_time", "window": "1d", "lag": "1d"})
    assert partition_end(cfg, date(2026, 11, 6)) == date(2026, 11, 5)
    got = prepare(t, cfg, None, date(2026, 11, 6))
    assert got["example_id"].to_pylist() == ["s2", "s3", "s4"]  # the 5th, whole; not the 6th's early request
    # without lag, the window is the day as_of itself (today's meaning, unchanged)
    plain = DatasetConfig(source="x.parquet", id="example_id", partition={"column": "request_time", "window": "1d"})
    assert prepare(t, plain, None, date(2026, 11, 6))["example_id"].to_pylist() == ["s5"]
    # a backfill walks past run dates; each assesses the day before it
    assert prepare(t, cfg, None, date(2026, 11, 5))["example_id"].to_pylist() == ["s0", "s1"]


@pytest.mark.parametrize("lag", ["1h", "x", "25h"])
def test_lag_is_whole_days(lag):
    with pytest.raises(ValueError, match="lag must be whole days"):
        DatasetConfig(source="x", partition={"column": "c", "lag": lag})


def test_nightly_run_prices_incumbent_by_request_date_and_candidate_by_run_date(tmp_path, server):
    pq.write_table(traffic(), tmp_path / "traffic.parquet")
    write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          incumbent: {{provider: replay, output_column: output, model: gpt-4o-mini}}
          cand: {{provider: openai, model: gpt-4o, base_url: "{server.base_url}"}}
        pipelines:
          nightly:
            dataset: {{source: traffic.parquet, id: example_id,
                       partition: {{column: request_time, window: 1d, lag: 1d}}}}
            prompt: {{messages: messages}}
            models: [incumbent, cand]
            metrics: [output_length]
            bootstrap: 0
    """,
    )
    ctx = run_local(str(tmp_path / "pipelines.yaml"), "nightly", date(2026, 11, 6))
    ds = ctx.folder.read_table("dataset.parquet")
    assert sorted(ds["example_id"].to_pylist()) == ["s2", "s3", "s4"]
    prices = ctx.folder.manifest()["prices"]
    assert prices["incumbent"]["priced_by"].startswith("request date")
    assert sorted(prices["incumbent"]["by_date"]) == ["2026-11-05"]  # its requests' own day
    assert prices["cand"]["priced_by"] == "run date" and sorted(prices["cand"]["by_date"]) == ["2026-11-06"]
