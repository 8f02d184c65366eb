"""Costing: the cost model (dollars per run, per request, per month; break-even; Pareto front)
and the ledger that records which price applied to which request."""

from assay.costing.ledger import (
    CORRECTNESS,
    correct_counts,
    cost_tables,
    dated_quotes,
    judge_costs,
    prices_record,
    recorded_quotes,
    request_dates,
)
from assay.costing.model import *  # noqa: F403
from assay.costing.model import __all__ as _model_all

__all__ = [
    *_model_all,
    "CORRECTNESS",
    "correct_counts",
    "cost_tables",
    "dated_quotes",
    "judge_costs",
    "prices_record",
    "recorded_quotes",
    "request_dates",
]
