"""Prefect flows (assess, serve, backfill) and the ``assay`` command line (``flows.cli``)."""
