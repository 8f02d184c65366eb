"""More assay commands."""
