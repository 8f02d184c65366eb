"""The incumbent's bill against Assay's arithmetic: where a replayed log carries the cost the
provider reported for each request (the log readers' ``provider_cost_usd``: Langfuse
``costDetails``, LiteLLM ``spend``, OpenInference ``llm.cost.total``), costs.parquet gives, on that
model's row, the reported total beside Assay's computed one (each request's logged tokens × the
price in force on its own date), over the same requests, the difference and its share, and where
each figure comes from. The report says so in a line when they differ by more than
:data:`THRESHOLD`.
"""

import math

import numpy as np
import pandas as pd

from assay.report.format import usd

#: the column of a log (a dataset or a replay source) with each request's provider-reported cost
REPORTED = "provider_cost_usd"
#: the share above which the report shows the difference
THRESHOLD = 0.02
#: the columns costs.parquet gains when some model has reported costs (null on other rows)
COLUMNS = (
    "reported_cost_usd",
    "computed_cost_usd",
    "cost_difference_usd",
    "cost_difference_share",
    "reported_cost_source",
    "computed_cost_source",
    "reconciled_requests",
)


def compare(reported, computed) -> dict | None:
    """The figures for one model from per-request reported and computed costs (aligned; a missing
    value on either side leaves the request out of both totals); None when no request has both."""
    r = pd.to_numeric(pd.Series(reported, dtype=object), errors="coerce").to_numpy(dtype=float)
    c = np.asarray(computed, dtype=float)
    both = ~(np.isnan(r) | np.isnan(c))
    if not both.any():
        return None
    rep, comp = float(r[both].sum()), float(c[both].sum())
    diff = comp - rep
    return {
        "reported_cost_usd": rep,
        "computed_cost_usd": comp,
        "cost_difference_usd": diff,
        "cost_difference_share": diff / rep if rep else (0.0 if diff == 0 else math.inf),
        "reported_cost_source": "provider",
        "computed_cost_source": "computed",
        "reconciled_requests": int(both.sum()),
    }


def with_reconciliation(table: pd.DataFrame, figures: dict[str, dict]) -> pd.DataFrame:
    """costs.parquet's table with :data:`COLUMNS` filled on the rows of ``figures`` (model ->
    :func:`compare`'s figures); the table unchanged when there are none."""
    if not figures:
        return table
    table = table.copy()
    for col in COLUMNS:
        kind = object if col.endswith("_source") else ("Int64" if col == "reconciled_requests" else float)
        table[col] = pd.Series([figures.get(m, {}).get(col) for m in table["model"]], index=table.index, dtype=kind)
    return table


def lines(costs: pd.DataFrame, threshold: float = THRESHOLD) -> list[str]:
    """The report's lines: one per model whose computed and reported costs differ by more than ``threshold``."""
    if "cost_difference_share" not in costs:
        return []
    out = []
    for r in costs.itertuples():
        share = r.cost_difference_share
        if share is None or (isinstance(share, float) and math.isnan(share)) or abs(share) <= threshold:
            continue
        diff = r.cost_difference_usd
        out.append(
            f"{r.model}: Assay computes {usd(r.computed_cost_usd)} for {int(r.reconciled_requests):,} requests "
            f"(logged tokens × each date's price), the provider reported {usd(r.reported_cost_usd)}: "
            f"{'+' if share > 0 else ''}{share:.1%} ({'+' if diff >= 0 else '−'}{usd(abs(diff))}), "
            f"more than {threshold:.0%}"
        )
    return out
