"""Assay's core library: importable and testable without a Prefect server (see DESIGN.md).

A regular package, not a namespace one, so that the import-graph contracts (``lint-imports``) and
Python itself see exactly this folder's modules.
"""
