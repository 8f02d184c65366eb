"""Prefect flows (assess, serve, backfill) and the ``assay`` command line."""

import os

# Assay runs offline: no analytics from the server, no telemetry from the client.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The temporary server's first start runs database migrations; on a busy two-core machine
# that can take longer than Prefect's default 20 s.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
