"""The ``assay`` command line: ``flows.cli.main`` registers every command (one module per group)."""
