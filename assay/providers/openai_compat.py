"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, TGI, llama.cpp server, ..."""

import os

from assay.providers.base import CallResult, Provider, ProviderError


class MissingSecret(RuntimeError):
    """An API key variable named in the config is not set."""


class OpenAIProvider(Provider):
    """One ``openai.AsyncOpenAI`` client per model, its connection pool sized to the concurrency."""

    def identity(self) -> dict:
        ident = super().identity()
        ident["base_url"] = self.cfg.base_url or "https://api.openai.com/v1"
        return ident

    def _api_key(self) -> str:
        env = self.cfg.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise MissingSecret(f"environment variable {env} (models.{self.ctx.model_name}.api_key_env) is not set")
            return key
        # Local endpoints (vLLM, Ollama, ...) usually accept any key.
        return os.environ.get("OPENAI_API_KEY", "not-needed") if not self.cfg.base_url else "not-needed"

    async def start(self) -> None:
        import httpx
        import openai

        self._openai = openai
        limits = httpx.Limits(max_connections=self.cfg.max_concurrency, max_keepalive_connections=self.cfg.max_concurrency)
        self._http = httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(self.cfg.timeout_s))
        self.client = openai.AsyncOpenAI(api_key=self._api_key(), base_url=self.cfg.base_url, max_retries=0,
                                         timeout=self.cfg.timeout_s, http_client=self._http)
        self._params = dict(self.cfg.params)

    async def call(self, messages: list[dict]) -> CallResult:
        o = self._openai
        try:
            resp = await self.client.chat.completions.create(model=self.cfg.model, messages=messages, **self._params)
        except o.APIStatusError as e:
            retry_after = _retry_after(e.response.headers) if e.response is not None else None
            raise ProviderError(f"HTTP {e.status_code}: {_short(e.message)}", status=e.status_code, retry_after=retry_after) from None
        except o.APITimeoutError:
            raise ProviderError(f"timeout after {self.cfg.timeout_s}s", status=None, retryable=True) from None
        except o.APIConnectionError as e:
            raise ProviderError(f"connection error: {_short(str(e))}", status=None, retryable=True) from None
        choice = resp.choices[0] if resp.choices else None
        usage = resp.usage
        cached = None
        if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
            cached = usage.prompt_tokens_details.cached_tokens
        return CallResult(
            output=(choice.message.content if choice is not None else None) or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached_tokens=cached,
        )

    async def close(self) -> None:
        await self.client.close()
        await self._http.aclose()


def _retry_after(headers) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            from email.utils import parsedate_to_datetime
            from datetime import datetime, timezone

            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds()
            except (TypeError, ValueError):
                continue
        return seconds / 1000 if name == "retry-after-ms" else max(seconds, 0.0)
    return None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
