"""Prefect tasks, one module per stage. Each is a thin, named step around a function in
``assay.run``: it reads the previous stage's artifact, writes its own and returns the path."""
