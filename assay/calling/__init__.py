"""Calling models: the one engine that the invoke stage and the LLM judge both use.

* :mod:`assay.calling.engine` — :func:`call_chat`: a chat provider over many requests, with
  ``max_concurrency`` workers, ``rpm``/``tpm`` limits, retries, the response cache, the budget
  and progress, results in columnar :class:`Chunk`\\ s;
* :mod:`assay.calling.batch` — :func:`run_batches`: a batch provider over many rows, shard by
  shard, with the same cache, budget, chunks and progress;
* :mod:`assay.calling.fanout` — :func:`invoke_all`: every model of a run on every example, one
  response part per chunk, resumable;
* :mod:`assay.calling.limits`, :mod:`assay.calling.retry`, :mod:`assay.calling.budget` — the
  rate limiter, the retry loop and the spending limit, used by the engine only.
"""

from assay.calling.batch import run_batches
from assay.calling.budget import Budget
from assay.calling.engine import CallOptions, Chunk, call_chat
from assay.calling.fanout import Options, invoke_all, invoke_model, request_identity

__all__ = [
    "Budget",
    "CallOptions",
    "Chunk",
    "Options",
    "call_chat",
    "invoke_all",
    "invoke_model",
    "request_identity",
    "run_batches",
]
