"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, TGI, llama.cpp server, ..."""

import json
import math
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC

from assay.errors import ProviderSetupError
from assay.providers.base import CallResult, ChatProvider, ProviderError


@dataclass(slots=True)
class StreamedCall:
    """What one streamed request took: ``ttft_s`` to the first content token, ``itl_s`` the mean gap
    between content chunks after it (None with fewer than two), ``latency_s`` to the end of the stream.
    ``completion_tokens`` is the endpoint's usage count, else the number of content chunks."""

    output: str
    prompt_tokens: int | None
    completion_tokens: int | None
    chunks: int
    ttft_s: float | None
    itl_s: float | None
    latency_s: float
    cached_tokens: int | None = None
    response_model: str | None = None
    system_fingerprint: str | None = None


class MissingSecret(ProviderSetupError, RuntimeError):
    """An API key variable named in the config is not set."""


class OpenAIProvider(ChatProvider):
    """Chat completions over one keep-alive connection pool per model, sized to the concurrency.

    The default client speaks the OpenAI wire format over aiohttp: at 64 concurrent
    requests it costs a fraction of a millisecond per call on two cores, where the
    ``openai`` SDK on httpx costs several (see docs/performance.md).
    ``client: sdk`` uses ``openai.AsyncOpenAI`` instead, for endpoints that need the SDK's
    own behaviour.
    """

    def identity(self) -> dict:
        ident = super().identity()
        ident["base_url"] = self.base_url
        if self.wants_logprobs:  # an answer recorded without its log-probabilities cannot serve a cascade's rule
            ident["logprobs"] = True
        return ident

    @property
    def wants_logprobs(self) -> bool:
        """Whether to ask for log-probabilities: a policy of the pipeline escalates on this model's
        confidence (the invoke stage says so in the context's ``extra``)."""
        return bool(self.ctx.extra.get("logprobs"))

    @property
    def base_url(self) -> str:
        return (self.cfg.base_url or "https://api.openai.com/v1").rstrip("/")

    def endpoint(self) -> str:
        """Where the calls go: ``base_url``, or for ``base_url: assay-fake:`` the fake server this
        process starts on demand (:mod:`assay.testing.local`)."""
        # lazy: only a model with base_url: assay-fake: starts the fake server
        from assay.testing.local import fake_base_url, is_fake

        return fake_base_url().rstrip("/") if is_fake(self.cfg.base_url) else self.base_url

    def _api_key(self) -> str:
        env = self.cfg.api_key_env
        if env:
            key = os.environ.get(env)
            if not key:
                raise MissingSecret(f"environment variable {env} (models.{self.ctx.model_name}.api_key_env) is not set")
            return key
        # Local endpoints (vLLM, Ollama, ...) usually accept any key.
        return os.environ.get("OPENAI_API_KEY", "not-needed") if not self.cfg.base_url else "not-needed"

    def _clean(self, text: str) -> str:
        """Error text for a row or a log: short, and with the API key cut out (an endpoint or a
        proxy may echo the request's Authorization header back in its error body)."""
        text = _short(text)
        key = getattr(self, "_key", None)
        return text.replace(key, "[redacted]") if key and len(key) >= 8 and key != "not-needed" else text

    async def start(self) -> None:
        self._params = dict(self.cfg.params)
        if self.wants_logprobs:
            self._params.setdefault("logprobs", True)
        self._key = self._api_key()
        if self.cfg.client == "sdk":
            await self._start_sdk()
            self.call = self._call_sdk
            return
        # lazy: keeps aiohttp out of start-up
        import aiohttp

        self._aiohttp = aiohttp
        # plain-http endpoints (local vLLM, Ollama, ...) skip building a TLS context (~80 ms)
        url = self.endpoint()
        ssl = False if url.startswith("http://") else True
        # one host per session: the total limit is the per-host limit (without aiohttp's per-host bookkeeping)
        connector = aiohttp.TCPConnector(limit=self.cfg.max_concurrency, keepalive_timeout=60, ssl=ssl)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            headers={"Authorization": f"Bearer {self._api_key()}", "Content-Type": "application/json"},
        )
        self._url = url + "/chat/completions"
        self.reconnects = 0  # requests sent again because their kept-alive connection was found closed
        self._streamed = False
        self._close_after_stream = False
        self._body_head = {"model": self.cfg.model}
        # a cascade's confidence rule needs the log-probabilities of a plain response
        if getattr(self.cfg, "stream", False) and not self.wants_logprobs:
            self.call = self._call_streamed

    async def call(self, messages: list[dict]) -> CallResult:
        body = {**self._body_head, "messages": messages, **self._params}
        aiohttp = self._aiohttp
        try:
            async with await self._send(json.dumps(body)) as resp:
                raw = await resp.read()
                status = resp.status
                if status != 200:
                    raise self._http_error(status, raw, resp.headers)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as e:
            raise ProviderError(
                f"connection error: {self._clean(str(e) or type(e).__name__)}", retryable=True, fault="connection"
            ) from None
        except TimeoutError:
            raise ProviderError(f"timeout after {self.cfg.timeout_s}s", retryable=True, fault="timeout") from None
        return self._parse(raw)

    async def _send(self, data: str, stream: bool = False):
        """POST the request and return the response once its headers are in.

        A kept-alive connection from the pool may turn out to be closed by the server only when
        the request is written to it: a server closes idle connections after its own keep-alive
        timeout (5 s for llama.cpp's server and uvicorn's), and llama.cpp's closes one after each
        streamed response, both without notice the client could act on before reusing it. That is
        the client's connection handling, not a failure of the endpoint: the request goes again
        on another connection, at once and uncounted (``reconnects`` in the manifest). A new
        connection that cannot be made, or a failure after the response began, is the endpoint's
        error."""
        aiohttp = self._aiohttp
        for _ in range(self.cfg.max_concurrency):  # at most every pooled connection is stale
            try:
                return await self._session.post(self._url, data=data, headers=self._headers(stream))
            except aiohttp.ClientConnectorError:
                raise  # no connection could be made: the endpoint is down
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
                self.reconnects += 1
                if self._streamed:  # a server that closes a connection after a stream: stop pooling them
                    self._close_after_stream = True
        return await self._session.post(self._url, data=data, headers=self._headers(stream))

    def _headers(self, stream: bool) -> dict | None:
        # a server that closes the connection after a stream is told to say so (``Connection:
        # close`` both ways), so the client does not pool a connection about to be closed
        return _CLOSE if stream and self._close_after_stream else None

    def _http_error(self, status: int, raw: bytes, headers) -> ProviderError:
        """A non-200 answer as an error: its message; a prompt longer than the model's context is
        the kind ``context_length`` and final (the same prompt overflows again, whatever the status)."""
        message, kind = _error_info(raw)
        final = kind == "context_length"
        return ProviderError(
            f"HTTP {status}: {self._clean(message)}",
            status=status,
            retry_after=_retry_after(headers),
            retryable=False if final else None,
            fault=kind,
        )

    def _parse(self, raw: bytes) -> CallResult:
        """A 200 response's body as a result; fields a server adds beyond OpenAI's (``timings``) are ignored."""
        try:
            data = json.loads(raw)
            choice = (data.get("choices") or [None])[0]
            content = ((choice or {}).get("message") or {}).get("content")
            usage = data.get("usage") or {}
        except (ValueError, AttributeError, TypeError):
            raise ProviderError(
                f"unreadable response: {self._clean(raw.decode(errors='replace'))}", retryable=True, fault="bad_json"
            ) from None
        if choice is None:
            raise ProviderError("response without choices", retryable=True, fault="no_choices")
        details = usage.get("prompt_tokens_details") or {}
        return CallResult(
            output=content or "",
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            cached_tokens=details.get("cached_tokens"),
            confidence=confidence(((choice.get("logprobs") or {}).get("content")) if self.wants_logprobs else None),
            response_model=_str(data.get("model")),
            system_fingerprint=_str(data.get("system_fingerprint")),
        )

    async def stream(self, messages: list[dict]) -> "StreamedCall":
        """One streamed request (``stream: true``), timed as the client sees it: the time to the first
        content token, the time to each further content chunk, the whole latency. For load sweeps
        (:mod:`assay.capacity`) with no engine, cache or retries around it, since those would change
        what is measured, and for the invoke stage's streamed calls (:meth:`_call_streamed`). Needs
        the default aiohttp client (``start()`` without ``client: sdk``).

        The response is read to the end of its body (past ``data: [DONE]``). Some servers
        (llama.cpp's) then close the connection, without saying so in a ``Connection: close``
        header: the client has put it back in the pool by the time the close arrives, and the next
        request written to it fails. Once :meth:`_send` finds that so, this provider's streamed
        requests say ``Connection: close``: the server's answer then says so too, and the client
        closes the connection instead of pooling it."""
        body = {
            **self._body_head,
            "messages": messages,
            **self._params,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        aiohttp = self._aiohttp
        clock = time.perf_counter
        t0 = clock()
        first = last = None
        chunks = 0
        parts: list[str] = []
        usage: dict = {}
        served = fingerprint = None
        done = False
        try:
            async with await self._send(json.dumps(body), stream=True) as resp:
                if resp.status != 200:
                    raise self._http_error(resp.status, await resp.read(), resp.headers)
                if not resp.headers.get("Content-Type", "").startswith("text/event-stream"):
                    # a server may answer a streamed request with plain JSON (an error, or no streaming)
                    raw = await resp.read()
                    return self._plain_as_streamed(raw, t0)
                # whatever bytes have arrived, split into lines here: under load several events come
                # in one read, and one await per read costs less than one per line
                rest = b""
                async for got in resp.content.iter_any():
                    if done:
                        continue  # past [DONE]: only the end of the chunked body is left
                    now = clock()
                    lines = (rest + got).split(b"\n")
                    rest = lines.pop()
                    for line in lines:
                        if not line.startswith(b"data:"):
                            continue  # blank separators, comments, event names
                        data = line[5:].strip()
                        if data == b"[DONE]":
                            done = True
                            break
                        try:
                            event = json.loads(data)
                        except ValueError:
                            raise ProviderError(
                                f"unreadable event: {self._clean(data.decode(errors='replace'))}",
                                retryable=True,
                                fault="bad_json",
                            ) from None
                        if not isinstance(event, dict):
                            continue
                        if "error" in event and not event.get("choices"):
                            err = event["error"]
                            msg = err.get("message") if isinstance(err, dict) else str(err)
                            code = err.get("code") if isinstance(err, dict) else None
                            raise ProviderError(
                                f"error in stream: {self._clean(str(msg))}",
                                status=code if isinstance(code, int) and 400 <= code < 600 else None,
                                retryable=False if isinstance(code, int) and code < 500 else None,
                            )
                        usage = event.get("usage") or usage
                        if served is None:
                            served = _str(event.get("model"))
                        if fingerprint is None:
                            fingerprint = _str(event.get("system_fingerprint"))
                        for choice in event.get("choices") or ():
                            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                                continue
                            text = (choice.get("delta") or {}).get("content")  # null in a server's first chunk
                            if text:
                                last = now
                                first = first or now
                                chunks += 1
                                parts.append(text)
                self._streamed = True
        except aiohttp.ClientError as e:  # connection, payload, a malformed URL: this request failed
            raise ProviderError(
                f"connection error: {self._clean(str(e) or type(e).__name__)}", retryable=True, fault="connection"
            ) from None
        except TimeoutError:
            raise ProviderError(f"timeout after {self.cfg.timeout_s}s", retryable=True, fault="timeout") from None
        end = clock()
        if not done and not chunks:
            raise ProviderError("stream ended without an answer", retryable=True, fault="no_choices")
        details = usage.get("prompt_tokens_details") or {}
        return StreamedCall(
            output="".join(parts),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens") or chunks or None,
            chunks=chunks,
            ttft_s=None if first is None else first - t0,
            itl_s=(last - first) / (chunks - 1) if chunks > 1 else None,
            latency_s=end - t0,
            cached_tokens=details.get("cached_tokens"),
            response_model=served,
            system_fingerprint=fingerprint,
        )

    def _plain_as_streamed(self, raw: bytes, t0: float) -> "StreamedCall":
        r = self._parse(raw)
        end = time.perf_counter()
        return StreamedCall(
            output=r.output or "",
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            chunks=1,
            ttft_s=end - t0,
            itl_s=None,
            latency_s=end - t0,
            cached_tokens=r.cached_tokens,
            response_model=r.response_model,
            system_fingerprint=r.system_fingerprint,
        )

    async def _call_streamed(self, messages: list[dict]) -> CallResult:
        """``call`` for ``stream: true``: the answer and usage as a plain call gives them, and ``ttft_s``."""
        r = await self.stream(messages)
        return CallResult(
            output=r.output,
            prompt_tokens=r.prompt_tokens,
            completion_tokens=r.completion_tokens,
            cached_tokens=r.cached_tokens,
            response_model=r.response_model,
            system_fingerprint=r.system_fingerprint,
            ttft_s=r.ttft_s,
        )

    async def _start_sdk(self) -> None:
        # lazy: keeps openai out of start-up
        import openai

        self._openai = openai
        self.client = openai.AsyncOpenAI(
            api_key=self._api_key(),
            base_url=self.endpoint() if self.cfg.base_url else None,
            max_retries=0,
            timeout=self.cfg.timeout_s,
        )

    async def _call_sdk(self, messages: list[dict]) -> CallResult:
        o = self._openai
        try:
            resp = await self.client.chat.completions.create(model=self.cfg.model, messages=messages, **self._params)
        except o.APIStatusError as e:
            retry_after = _retry_after(e.response.headers) if e.response is not None else None
            kind = "context_length" if _CONTEXT_WORDS.search(f"{e.message} {e.body}") else None
            raise ProviderError(
                f"HTTP {e.status_code}: {self._clean(e.message)}",
                status=e.status_code,
                retry_after=retry_after,
                retryable=False if kind else None,
                fault=kind,
            ) from None
        except o.APITimeoutError:
            raise ProviderError(f"timeout after {self.cfg.timeout_s}s", status=None, retryable=True, fault="timeout") from None
        except o.APIConnectionError as e:
            raise ProviderError(
                f"connection error: {self._clean(str(e))}", status=None, retryable=True, fault="connection"
            ) from None
        choice = resp.choices[0] if resp.choices else None
        if choice is None:
            raise ProviderError("response without choices", retryable=True, fault="no_choices")
        usage = resp.usage
        cached = None
        if usage is not None and getattr(usage, "prompt_tokens_details", None) is not None:
            cached = usage.prompt_tokens_details.cached_tokens
        lp = getattr(choice, "logprobs", None) if self.wants_logprobs else None
        return CallResult(
            output=(choice.message.content if choice is not None else None) or "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            cached_tokens=cached,
            confidence=confidence([{"logprob": t.logprob} for t in (lp.content or [])] if lp is not None else None),
            response_model=_str(getattr(resp, "model", None)),
            system_fingerprint=_str(getattr(resp, "system_fingerprint", None)),
        )

    def stats(self) -> dict:
        """``reconnects``, when some: requests sent again because their pooled connection was found
        closed (see :meth:`_send`; not errors of the endpoint, so not in ``errors``/``retries``)."""
        n = getattr(self, "reconnects", 0)
        return {"reconnects": n} if n else {}

    async def close(self) -> None:
        if getattr(self, "_session", None) is not None:
            await self._session.close()
        if getattr(self, "client", None) is not None:
            await self.client.close()


_CLOSE = {"Connection": "close"}


def confidence(tokens) -> float | None:
    """How sure the model was of its answer: ``exp(mean token log-probability)``, the geometric
    mean of its tokens' probabilities (0..1), from a choice's ``logprobs.content``; None without them."""
    if not isinstance(tokens, list):
        return None
    lps = [t.get("logprob") for t in tokens if isinstance(t, dict)]
    lps = [float(x) for x in lps if isinstance(x, (int, float)) and math.isfinite(x)]
    return math.exp(sum(lps) / len(lps)) if lps else None


#: how servers word a prompt longer than the model's context: OpenAI's ``context_length_exceeded``
#: code, llama.cpp's ``exceed_context_size_error`` type, vLLM's and TGI's messages
_CONTEXT_WORDS = re.compile(
    r"context_length_exceeded|exceed_context_size|maximum context length|"
    r"exceeds? the (?:available )?context|context window|must be <= \d+|"
    r"(?:input|prompt) is too long",
    re.I,
)


def _error_info(raw: bytes) -> tuple[str, str | None]:
    """An error body's message (with its ``type`` when the body names one) and, when it says the
    prompt overflowed the model's context, the kind ``context_length``. The body's ``code`` may be
    a string (OpenAI), an integer (llama.cpp's server: the HTTP status) or absent."""
    try:
        data = json.loads(raw)
        err = data.get("error", data)
        if isinstance(err, dict):
            msg = err.get("message") or json.dumps(err)
            typ, code = err.get("type"), err.get("code")
            words = " ".join(str(x) for x in (typ, code, msg) if x is not None)
            if isinstance(typ, str) and typ and typ not in msg:
                msg = f"{typ}: {msg}"
        else:
            msg = words = str(err)
    except (ValueError, AttributeError):
        msg = words = raw.decode(errors="replace")
    return msg, ("context_length" if _CONTEXT_WORDS.search(words) else None)


def _retry_after(headers) -> float | None:
    for name in ("retry-after-ms", "retry-after"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            from datetime import datetime
            from email.utils import parsedate_to_datetime

            try:
                seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                continue
        return seconds / 1000 if name == "retry-after-ms" else max(seconds, 0.0)
    return None


def _str(value) -> str | None:
    """A response's name-like field as text (None when absent or empty)."""
    return str(value) if value not in (None, "") else None


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
