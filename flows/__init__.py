"""Prefect flows (assess, serve, backfill) and the ``assay`` command line."""

import os

# Assay runs offline: no analytics from the server, no telemetry from the client.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
