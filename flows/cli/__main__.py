"""``python -m flows.cli``: the same command line as ``assay``."""

from flows.cli.main import main

main()
