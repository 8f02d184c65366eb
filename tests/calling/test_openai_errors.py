"""How the openai provider reads error bodies of the servers it meets: OpenAI's string codes,
llama.cpp's integer codes, and the ways each server words a prompt longer than the context
(its own error kind, never retried)."""

import json

import pytest

from assay.calling.retry import error_kind
from assay.config import DatasetConfig, parse_model
from assay.providers import Context
from assay.providers.openai_compat import OpenAIProvider


def _provider(**extra):
    cfg = parse_model({"provider": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", **extra})
    return OpenAIProvider(cfg, Context("m", DatasetConfig(source="x.parquet"), None, lambda p: p))


OVERFLOWS = {
    "openai": (
        400,
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your messages "
                "resulted in 130000 tokens.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    ),
    "llama.cpp": (
        400,
        {
            "error": {
                "code": 400,
                "message": "request (40012 tokens) exceeds the available context size (32768 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 40012,
                "n_ctx": 32768,
            }
        },
    ),
    "vllm": (
        400,
        {
            "object": "error",
            "message": "This model's maximum context length is 8192 tokens. However, you requested 9000 tokens.",
            "type": "BadRequestError",
            "code": 400,
        },
    ),
    "tgi": (
        422,
        {
            "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. Given: 5000",
            "error_type": "validation",
        },
    ),
}


@pytest.mark.parametrize("server", sorted(OVERFLOWS))
def test_a_context_overflow_is_its_own_kind_whoever_words_it(server):
    status, body = OVERFLOWS[server]
    e = _provider()._http_error(status, json.dumps(body).encode(), {})
    assert error_kind(e) == "context_length" and e.retryable is False and e.status == status


def test_integer_and_string_codes_keep_the_status_kind():
    p = _provider()
    e = p._http_error(
        400, b'{"error": {"code": 400, "message": "\'messages\' is required", "type": "invalid_request_error"}}', {}
    )
    assert error_kind(e) == "http_400" and str(e) == "HTTP 400: invalid_request_error: 'messages' is required"
    e = p._http_error(
        429, b'{"error": {"code": "rate_limit_exceeded", "message": "slow down", "type": "requests"}}', {"retry-after": "2"}
    )
    assert error_kind(e) == "http_429" and e.retryable and e.retry_after == 2.0
    e = p._http_error(500, b"<html>oops</html>", {})
    assert error_kind(e) == "http_500" and e.retryable


def test_n_above_one_is_refused_in_favour_of_samples():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="samples: K"):
        parse_model({"provider": "openai", "model": "m", "params": {"n": 3}})
    with pytest.raises(ValidationError, match="client: aiohttp"):
        parse_model({"provider": "openai", "model": "m", "stream": True, "client": "sdk"})
