"""Before a run exists: the checks that span the config's sections (:mod:`.checks`, which need the
metric and provider registries) and the preflight of one run request (:mod:`.request`: the files,
the dataset, the keys), which returns what it checked and prepared for the run to take.

This package sits one layer above :mod:`assay.config` (schema and loading only) and beside
:mod:`assay.stages`: the stages take what it prepared from the run's context, never from here.
"""

from assay.preflight.checks import cross_check, load_checked, policy_problems
from assay.preflight.request import Checked, file_problem, find_problems, preflight

__all__ = ["Checked", "cross_check", "file_problem", "find_problems", "load_checked", "policy_problems", "preflight"]
