"""assay plan: examples needed from the variances of a run (golden: statsmodels' normal power)."""

import math

import numpy as np
import pyarrow as pa
import pytest

from assay.metrics.classification import Accuracy
from assay.planning import plan
from assay.scoring import score


class Folder:
    """What plan() reads of a run folder, in memory."""

    def __init__(self, res):
        self.tables = {
            "metrics.parquet": pa.Table.from_pandas(res.metrics),
            "comparisons.parquet": pa.Table.from_pandas(res.comparisons),
        }

    def exists(self, name):
        return name in self.tables

    def read_table(self, name):
        return self.tables[name]


def _run(samples: int):
    rng = np.random.default_rng(5)
    n = 400
    p = rng.beta(3, 2, size=n)
    rows = []
    for i in range(n):
        for model, shift in (("A", 0.0), ("B", -0.05)):
            for s in range(samples):
                right = rng.random() < min(1, max(0, p[i] + shift))
                rows.append(
                    {
                        "example_id": f"e{i:03d}",
                        "model": model,
                        "output": "y" if right else "n",
                        "error": None,
                        **({"sample": s} if samples > 1 else {}),
                    }
                )
    ds = pa.table({"example_id": [f"e{i:03d}" for i in range(n)], "reference": ["y"] * n})
    return score(ds, pa.Table.from_pylist(rows), {"accuracy": Accuracy()}, [], resamples=50)


def test_plan_without_samples_matches_statsmodels():
    from statsmodels.stats.power import NormalIndPower

    res = _run(1)
    t = plan(Folder(res), detect=0.02)
    row = t.iloc[0]
    c = res.comparisons.iloc[0]
    sd = c["se"] * math.sqrt(c["n"])
    want = NormalIndPower().solve_power(effect_size=0.02 / sd, alpha=0.05, power=0.8, ratio=0)
    assert len(t) == 1 and row["examples_needed"] == math.ceil(want - 1e-6)
    assert row["mde_run"] == pytest.approx(c["mde"])
    # this run detects its own MDE with about its own n
    assert plan(Folder(res), detect=row["mde_run"]).iloc[0]["examples_needed"] == pytest.approx(c["n"], rel=0.01)


def test_plan_with_samples_trades_examples_for_samples():
    res = _run(3)
    t = plan(Folder(res), detect=0.03, samples=[1, 3, 10])
    assert t["samples"].tolist() == [1, 3, 10] and (t["samples_run"] == 3).all()
    need = t.set_index("samples")["examples_needed"]
    assert need[1] > need[3] > need[10] > 0  # more samples per example, fewer examples
    c = res.comparisons.iloc[0]
    from assay.stats import examples_needed

    assert need[3] == examples_needed(c["var_between"] + c["var_within"] / 3, 0.03)
