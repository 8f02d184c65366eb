"""Providers by name. Heavy SDKs are imported only when a provider is used."""

from assay.config import ModelConfig
from assay.providers.base import BatchProvider, CallResult, ChatProvider, Context, Provider, ProviderError
from assay.registry import Registry

PROVIDERS: Registry[type[Provider]] = Registry("provider")
PROVIDERS.register("openai", "assay.providers.openai_compat:OpenAIProvider")
PROVIDERS.register("replay", "assay.providers.replay:ReplayProvider")
PROVIDERS.register("sklearn", "assay.providers.sklearn_provider:SklearnProvider")
PROVIDERS.register("python", "assay.providers.python_provider:PythonProvider")
PROVIDERS.register("transformers", "assay.providers.transformers_provider:TransformersProvider")

# Fields each provider needs, and fields that mean nothing to it (checked without importing it).
_REQUIRED = {"openai": ["model"], "replay": [], "sklearn": [], "python": ["function"], "transformers": ["path"]}
_ALLOWED = {
    "openai": {"model", "version", "base_url", "api_key_env", "client", "params", "max_concurrency", "rpm", "tpm", "timeout_s",
               "max_attempts", "price", "price_ref", "hosting"},
    "replay": {"model", "version", "source", "output_column", "price", "price_ref", "hosting", "max_concurrency"},
    "sklearn": {"version", "train", "estimator", "compute"},
    "python": {"model", "version", "function", "params", "price", "price_ref", "hosting", "compute", "max_concurrency"},
    "transformers": {"model", "version", "path", "params", "hosting", "compute", "max_concurrency"},
}
_ALWAYS = {"provider"}


def check_model(cfg: ModelConfig) -> list[tuple[str | None, str]]:
    """Provider-specific checks: required fields present, foreign fields absent."""
    problems: list[tuple[str | None, str]] = []
    for f in _REQUIRED.get(cfg.provider, []):
        if getattr(cfg, f) in (None, ""):
            problems.append((f, f"required by provider {cfg.provider!r}"))
    allowed = _ALLOWED.get(cfg.provider)
    if allowed is not None:
        for f in sorted(cfg.model_fields_set - allowed - _ALWAYS):
            problems.append((f, f"not used by provider {cfg.provider!r} (it takes: {', '.join(sorted(allowed))})"))
    if cfg.provider == "replay" and cfg.source is None and cfg.output_column is None:
        problems.append((None, "replay needs source: (a log file) or output_column: (a dataset column)"))
    return problems


def build(name: str, cfg: ModelConfig, ctx: Context) -> Provider:
    return PROVIDERS.get(cfg.provider)(cfg, ctx)


__all__ = ["PROVIDERS", "Provider", "ChatProvider", "BatchProvider", "ProviderError", "CallResult", "Context", "check_model", "build"]
