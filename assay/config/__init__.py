"""pipelines.yaml: schema (:mod:`.schema`), loading and errors (:mod:`.loading`), and nothing else.

``from assay.config import load_config, ConfigError, PipelineConfig, ...`` is the public surface.
This package is the bottom layer: it imports no other part of Assay but :mod:`assay.registry`, so
any module may import the config types without an import cycle. Providers and metrics are named by
string here (``provider: openai``, ``metrics: [accuracy]``); the checks that need their registries,
and the preflight of a run, are :mod:`assay.preflight`, a layer up.
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
    "recorded_config", "recorded_model",
]
