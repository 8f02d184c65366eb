"""Providers by name. Heavy SDKs are imported only when a provider is used.

Each provider's options are its config class in :mod:`assay.config.schema` (``models.<name>.provider``
picks the class), so a misspelt or foreign option fails when the config is validated, without
importing any provider.
"""

from assay.config import ModelConfig
from assay.providers.base import BatchProvider, CallResult, ChatProvider, Context, Provider, ProviderError
from assay.registry import Registry

PROVIDERS: Registry[type[Provider]] = Registry("provider")
PROVIDERS.register("openai", "assay.providers.openai_compat:OpenAIProvider")
PROVIDERS.register("replay", "assay.providers.replay:ReplayProvider")
PROVIDERS.register("sklearn", "assay.providers.sklearn_provider:SklearnProvider")
PROVIDERS.register("python", "assay.providers.python_provider:PythonProvider")
PROVIDERS.register("transformers", "assay.providers.transformers_provider:TransformersProvider")


def build(name: str, cfg: ModelConfig, ctx: Context) -> Provider:
    return PROVIDERS.get(cfg.provider)(cfg, ctx)


__all__ = ["PROVIDERS", "Provider", "ChatProvider", "BatchProvider", "ProviderError", "CallResult", "Context", "build"]
