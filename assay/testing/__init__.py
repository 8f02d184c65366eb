"""Test and benchmark helpers for Assay (e.g. a local fake OpenAI-compatible server)."""
