"""The ``assay`` logger's lines in the Prefect UI, from the flow's process and from cluster workers."""

import contextlib
import logging

from prefect.logging.handlers import APILogHandler


@contextlib.contextmanager
def assay_logs_to_prefect():
    """Send the ``assay`` logger's lines (rows loaded, calls, errors, dollars, results) to the
    Prefect API, attached to the running task or flow, so the UI shows them in every mode: in the
    flow's process, and in the worker processes of a Dask cluster where shard tasks run."""
    logger = logging.getLogger("assay")
    if any(isinstance(h, APILogHandler) for h in logger.handlers):  # PREFECT_LOGGING_EXTRA_LOGGERS=assay, or nested
        yield
        return
    handler = APILogHandler()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
