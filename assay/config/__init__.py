"""pipelines.yaml: schema (:mod:`.schema`), loading and errors (:mod:`.loading`), cross-section checks (:mod:`.checks`),
and the preflight of a run (:mod:`.preflight`: the files and the dataset, before anything is written).

``from assay.config import load_config, ConfigError, PipelineConfig, ...`` is the public surface.
Importing this package imports neither :mod:`assay.providers` nor :mod:`assay.metrics` (``load_config``
imports :mod:`.checks`, which needs them, when it checks a file), so any module may import the config
types without an import cycle.
"""

from assay.config.loading import (
    ENV_PATTERN,
    ConfigError,
    LoadedConfig,
    expand_env,
    format_path,
    load_config,
    model_problems,
    recorded_config,
    recorded_model,
)
from assay.config.preflight import preflight
from assay.config.schema import (
    MODEL_CLASSES,
    WINDOW_PATTERN,
    AlertDestination,
    AlertsConfig,
    AssayConfig,
    Baseline,
    Compute,
    CostConfig,
    DatasetConfig,
    Gate,
    Hardware,
    Hosting,
    MetricSpec,
    ModelConfig,
    OpenAIModel,
    Partition,
    PipelineConfig,
    Price,
    PromptConfig,
    PythonModel,
    ReplayModel,
    Sample,
    Schedule,
    SklearnModel,
    Strict,
    Sustained,
    TransformersModel,
    model_options,
    parse_model,
)

__all__ = [
    "AlertDestination", "AlertsConfig", "Baseline", "Sustained", "AssayConfig", "Compute", "ConfigError", "CostConfig", "DatasetConfig", "ENV_PATTERN", "Gate", "Hardware", "Hosting",
    "LoadedConfig", "MODEL_CLASSES", "MetricSpec", "ModelConfig", "OpenAIModel", "Partition", "PipelineConfig", "Price",
    "PromptConfig", "PythonModel", "ReplayModel", "Sample", "Schedule", "SklearnModel", "Strict", "TransformersModel",
    "WINDOW_PATTERN", "expand_env", "format_path", "load_config", "model_options", "model_problems", "parse_model",
    "preflight", "recorded_config", "recorded_model",
]
