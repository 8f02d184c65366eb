"""The failures Assay expects, under one root: :class:`AssayError`.

A run that stops on one of these stops on something the user can fix (a config key, a dataset
column, a missing secret, a metric that cannot be built, the budget, a gate), and its message
says what, in one line; the Prefect task wrapper (``tasks/__init__.py``) and the CLI show that
line alone. Any other exception is a bug in Assay or in a library it calls: it keeps its
traceback in the log (and on the terminal with ``--debug``).

The subclasses also derive from the built-in type the same failure raised before they existed
(``ValueError``, ``FileNotFoundError``, ``RuntimeError``), so code that catches those still does.
Elsewhere in the package: :class:`assay.config.ConfigError` (configuration),
:class:`assay.dataset.DatasetError` (datasets), :class:`assay.providers.base.ProviderError` (a
failed model call), :class:`assay.runs.RunFailed` (a run that cannot finish: the budget guard,
too many errors) and :class:`assay.runs.GateFailed` (a quality gate).
"""


class AssayError(Exception):
    """A failure Assay expects; its message says what to fix, in one line."""


class DataError(AssayError, ValueError):
    """Data that cannot be used as configured: a log, a training file, a run folder's artifact."""


class ArtifactMissing(DataError, FileNotFoundError):
    """A file that is not there: a stage's input artifact, a dataset file, a model directory."""


class ProviderSetupError(AssayError, ValueError):
    """A model that cannot be set up: a bad option, a missing package or model directory, a secret not set."""


class MetricError(AssayError, ValueError):
    """A metric that cannot be built or computed as configured (its options, its module, its result)."""


__all__ = ["AssayError", "ArtifactMissing", "DataError", "MetricError", "ProviderSetupError"]
