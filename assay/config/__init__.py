"""pipelines.yaml: schema (:mod:`.schema`), loading and errors (:mod:`.loading`), cross-section checks (:mod:`.checks`).

``from assay.config import load_config, ConfigError, PipelineConfig, ...`` is the public surface.
Importing this package imports neither :mod:`assay.providers` nor :mod:`assay.metrics` (``load_config``
imports :mod:`.checks`, which needs them, when it checks a file), so any module may import the config
types without an import cycle.
"""

from assay.config.loading import ENV_PATTERN, ConfigError, LoadedConfig, format_path, load_config
from assay.config.schema import (
    WINDOW_PATTERN,
    AssayConfig,
    Compute,
    CostConfig,
    DatasetConfig,
    Gate,
    Hardware,
    Hosting,
    MetricSpec,
    ModelConfig,
    Partition,
    PipelineConfig,
    Price,
    PromptConfig,
    Sample,
    Schedule,
    Strict,
)

__all__ = [
    "AssayConfig", "Compute", "ConfigError", "CostConfig", "DatasetConfig", "ENV_PATTERN", "Gate", "Hardware", "Hosting",
    "LoadedConfig", "MetricSpec", "ModelConfig", "Partition", "PipelineConfig", "Price", "PromptConfig", "Sample",
    "Schedule", "Strict", "WINDOW_PATTERN", "format_path", "load_config",
]
