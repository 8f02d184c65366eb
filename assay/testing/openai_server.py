"""A fast, deterministic, fault-injecting fake of the OpenAI Chat Completions API.

What it is for
--------------
* **Tests** - Assay's test-suite starts it (``with OpenAIServer() as srv: ...``) and points
  the real ``openai`` SDK / Assay providers at ``srv.base_url``; no network, no API key.
* **Benchmarks** - it adds a configurable per-request latency (``--latency``/``--jitter``)
  and is cheap enough per request (raw ``asyncio.Protocol`` HTTP/1.1 server, keep-alive,
  pipelining) that the client under test, not the server, is the bottleneck.  It always
  runs in its own process so it does not share a GIL with the client.
* **Demos** - ``python -m assay.testing.openai_server --port 8000`` and set
  ``OPENAI_BASE_URL=http://127.0.0.1:8000/v1`` to run Assay end-to-end without a key.

Endpoints
---------
``POST /v1/chat/completions`` (plain, or streamed as server-sent events with ``stream: true``), ``GET /v1/models``, ``GET /v1/models/{id}``,
``GET /health``, and the control endpoints ``GET /_stats`` (``?prompts=0`` omits the
per-prompt table) and ``POST /_reset`` (clears stats and all "once per prompt" fault state).

Deterministic answers
---------------------
0. If the last user message has a line ``ANSWERS: <JSON array of strings>``, the answers vary
   per request, as a sampled model's do: the n-th request of that prompt (counted since the
   start or the last ``/_reset``, retries included) gets item ``(n - 1) mod len`` of the array.
   So K requests of one prompt, whatever their order, get the first K items (a multi-line
   program can be an item: JSON escapes its newlines).
1. If the last user message has a line ``ANSWER: <text>``, the reply is ``<text>``.
2. Else, if a system/developer or user message has ``labels: a, b, c``, the reply is the
   label that occurs (case-insensitive, whole word, earliest position) in the last user
   message (with the ``labels:`` line itself removed), else the first label.
3. Else, if the last user message is a pairwise judge's prompt (answer blocks ``[Answer A]`` and
   ``[Answer B]``, asking for a ``Verdict:``), the reply is ``Verdict: A``, ``Verdict: B`` or
   ``Verdict: tie``: the answer sharing more distinct words (of three letters or more) with the
   conversation's last ``[user]`` turn wins, a difference of at most one word is a tie. A crude,
   position-blind relevance judge: the same pair gets the same verdict in either order.
4. Else the first 5 words of the last user message; a system message line ``WORDS: model=n, ...``
   makes it the first ``n`` words for the request's ``model`` (so the models of a demo answer
   differently).

``prompt_tokens = ceil(chars of all message contents / 4)``,
``completion_tokens = max(1, ceil(len(answer) / 4))``.

Fault injection (all deterministic)
-----------------------------------
* ``TRIGGER:400`` / ``TRIGGER:401`` in a user message: always that status (OpenAI error JSON).
* ``rate_limit_every=k``: every k-th chat request (server-wide count) gets 429 with
  ``Retry-After: <retry_after>`` (seconds, default 0.05).
* ``TRIGGER:429`` / ``TRIGGER:500``: that status on the first request of each distinct
  prompt (429 carries ``Retry-After``), success afterwards.
* ``fail_rate=p``: prompts whose hash falls in the lowest share ``p`` get 500 on their
  first ``fail_times`` attempts, then succeed.  The hash (blake2b of the messages) is stable
  across runs and processes, so the same prompts fail every time.
* ``TRIGGER:SLOW``: the response is delayed by an extra ``slow_seconds`` (default 10 s),
  for client timeout tests.
* Once per prompt, then success: ``TRIGGER:502``, ``TRIGGER:503``; ``TRIGGER:429DATE`` (429
  with ``Retry-After`` as an HTTP date, one second ahead); ``TRIGGER:429BARE`` (429 without
  ``Retry-After``); ``TRIGGER:BADJSON`` (200 with a malformed JSON body); ``TRIGGER:RESET``
  (headers and part of the body, then the connection closes); ``TRIGGER:TRUNCATED`` (a body
  shorter than its ``Content-Length``, then close).
* Every time: ``TRIGGER:NOCHOICES`` (200 with an empty ``choices``), ``TRIGGER:NOUSAGE`` (200
  without ``usage``), ``TRIGGER:ECHOAUTH`` (400 whose message repeats the request's
  ``Authorization`` header, as a careless proxy might).

As llama.cpp's server answers
-----------------------------
Where a real self-hosted server differs from OpenAI's API in a way a client must handle, the fake
does what llama.cpp's ``llama-server`` does: a stream's first chunk carries the role alone with
``"content": null``; the usage comes in a last chunk whose ``choices`` is empty; an error body's
``code`` is the integer status unless the error imitates one of OpenAI's own (rate limits, keys);
``served_model`` makes every response name that model whatever the request asked for;
``system_fingerprint`` sets (or, empty, drops) the fingerprint; ``context_tokens=n`` answers a
prompt of more than ``n`` tokens with 400 ``exceed_context_size_error`` (with
``n_prompt_tokens`` and ``n_ctx``) as plain JSON, even for a streamed request; and a streamed
response's connection is closed after its last byte, with nothing in its headers to say so
(``close_after_stream``, the default; ``--keep-alive-after-stream`` keeps it open): a client
that pools it finds it closed only when it writes the next request.

Log-probabilities
-----------------
With ``"logprobs": true`` in the request, the choice carries ``logprobs.content``: the answer in
4-character tokens, each with log-probability ``ln p``, so the answer's confidence (the geometric
mean of its tokens' probabilities) is ``p``: the value of a ``CONFIDENCE: p`` line in the last user
message; else, with a label set, 0.9 when the ticket names a label and 0.35 when it names none
(the first label is a guess); else 0.8.

Every chat response, errors included, is delayed by ``latency + jitter * U(0, 1)`` seconds
(a timer, not a task; pipelined responses are still returned in order).

Streaming and a queueing latency
--------------------------------
``stream: true`` answers with ``text/event-stream`` (chunked): one ``data: {chunk}`` event per
completion token (the answer cut into 4-character pieces, so their number is
``completion_tokens``), a usage chunk when ``stream_options.include_usage``, then
``data: [DONE]``. The first token comes after the response delay above (the time to first
token), each further one ``itl`` seconds after the one before; a plain response waits for all of
them (``delay + itl * (completion_tokens - 1)``).

``slots=K`` (0 = off) makes the delays grow with load, like a server that batches requests: a
request that arrives with ``n`` chat requests in flight (itself included) has every delay
multiplied by ``1 + (n - 1) / K``. Under ``c`` clients that each send their next request when
the last one ends, every request after the first wave sees ``n = c``, so its latency is
``(latency + itl * (tokens - 1)) * (1 + (c - 1) / K)`` and throughput ``c / latency`` still rises
with ``c`` but ever more slowly: the right operating point for a latency bound can be computed
by hand.  A client that
closes (or half-closes) its connection is treated as gone: its pending responses are
dropped (counted in ``responses_dropped``).  The ``Authorization`` header is never stored:
stats only count whether one was present.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import time
import urllib.request
from collections import deque
from email.utils import formatdate
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _jstr
from pathlib import Path
from typing import Any

__all__ = ["OpenAIServer", "ServerConfig", "main", "serve"]

DEFAULT_MODELS = ("mock-model", "gpt-4o-mini", "gpt-4o")
MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    401: b"Unauthorized",
    404: b"Not Found",
    405: b"Method Not Allowed",
    413: b"Payload Too Large",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
}


# --------------------------------------------------------------------------- config


class ServerConfig:
    """Behaviour knobs of the fake server (mirrors the CLI options)."""

    __slots__ = (
        "latency",
        "jitter",
        "fail_rate",
        "fail_times",
        "rate_limit_every",
        "retry_after",
        "slow_seconds",
        "models",
        "seed",
        "itl",
        "slots",
        "served_model",
        "system_fingerprint",
        "context_tokens",
        "close_after_stream",
    )

    def __init__(
        self,
        latency: float = 0.0,
        jitter: float = 0.0,
        fail_rate: float = 0.0,
        fail_times: int = 1,
        rate_limit_every: int = 0,
        retry_after: float = 0.05,
        slow_seconds: float = 10.0,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        seed: int = 0,
        itl: float = 0.0,
        slots: int = 0,
        served_model: str | None = None,
        system_fingerprint: str | None = "fp_assay_fake",
        context_tokens: int = 0,
        close_after_stream: bool = True,
    ) -> None:
        if latency < 0 or jitter < 0 or slow_seconds < 0 or retry_after < 0 or itl < 0:
            raise ValueError("latency, jitter, slow_seconds, retry_after and itl must be >= 0")
        if slots < 0:
            raise ValueError("slots must be >= 0")
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("fail_rate must be in [0, 1]")
        if fail_times < 0 or rate_limit_every < 0:
            raise ValueError("fail_times and rate_limit_every must be >= 0")
        self.latency = float(latency)
        self.jitter = float(jitter)
        self.fail_rate = float(fail_rate)
        self.fail_times = int(fail_times)
        self.rate_limit_every = int(rate_limit_every)
        self.retry_after = float(retry_after)
        self.slow_seconds = float(slow_seconds)
        self.models = tuple(models) or DEFAULT_MODELS
        self.seed = int(seed)
        self.itl = float(itl)
        self.slots = int(slots)
        # a self-hosted server answers under its own model's name whatever the request names
        self.served_model = served_model or None
        self.system_fingerprint = system_fingerprint or None
        if context_tokens < 0:
            raise ValueError("context_tokens must be >= 0")
        self.context_tokens = int(context_tokens)
        self.close_after_stream = bool(close_after_stream)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["models"] = list(self.models)
        return d

    def to_argv(self) -> list[str]:
        return [
            "--latency", repr(self.latency),
            "--jitter", repr(self.jitter),
            "--fail-rate", repr(self.fail_rate),
            "--fail-times", str(self.fail_times),
            "--rate-limit-every", str(self.rate_limit_every),
            "--retry-after", repr(self.retry_after),
            "--slow-seconds", repr(self.slow_seconds),
            "--models", ",".join(self.models),
            "--seed", str(self.seed),
            "--itl", repr(self.itl),
            "--slots", str(self.slots),
            "--served-model", self.served_model or "",
            "--system-fingerprint", self.system_fingerprint or "",
            "--context-tokens", str(self.context_tokens),
            *([] if self.close_after_stream else ["--keep-alive-after-stream"]),
        ]  # fmt: skip


# --------------------------------------------------------------------------- responder

_ANSWER_RE = re.compile(r"^[ \t]*ANSWER:[ \t]*(.*?)[ \t\r]*$", re.M)
_ANSWERS_RE = re.compile(r"^[ \t]*ANSWERS:[ \t]*(\[.*\])[ \t\r]*$", re.M)
_LABELS_RE = re.compile(r"labels[ \t]*:[ \t]*([^\r\n]*)", re.I)
_CONFIDENCE_RE = re.compile(r"^[ \t]*CONFIDENCE:[ \t]*([0-9.]+)", re.M)
_SENTENCE_END_RE = re.compile(r"[.;!?](?:\s|$)")
_LABEL_STRIP = " \t'\"`[](){}<>*.;:!?"


def _text_of(content: Any) -> str:
    """Text of a message ``content`` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
            elif isinstance(part, str):
                out.append(part)
        return "\n".join(out)
    return str(content)


@lru_cache(maxsize=4096)
def _parse_labels(raw: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    m = _SENTENCE_END_RE.search(raw)  # "labels: a, b, c. Answer with one word." -> "a, b, c"
    if m:
        raw = raw[: m.start()]
    labels: list[str] = []
    for part in raw.split(","):
        lab = part.strip(_LABEL_STRIP)
        if lab and lab not in labels:
            labels.append(lab)
    return tuple((lab, re.compile(r"(?<!\w)" + re.escape(lab) + r"(?!\w)", re.I)) for lab in labels)


def _find_labels(systems: list[str], users: list[str]):
    for text in systems:
        if "abels" in text or "ABELS" in text:
            m = _LABELS_RE.search(text)
            if m and (labels := _parse_labels(m.group(1))):
                return labels
    for text in reversed(users):
        if "abels" in text or "ABELS" in text:
            m = _LABELS_RE.search(text)
            if m and (labels := _parse_labels(m.group(1))):
                return labels
    return None


def varied_answer(last_user: str, n: int) -> str | None:
    """The answer of the ``n``-th request (1-based) of a prompt with an ``ANSWERS: [...]`` line, or None."""
    m = _ANSWERS_RE.search(last_user)
    if not m:
        return None
    try:
        items = json.loads(m.group(1))
    except ValueError:
        return None
    if not isinstance(items, list) or not items:
        return None
    return str(items[(n - 1) % len(items)])


_WORDS_RE = re.compile(r"^[ \t]*WORDS:[ \t]*(.*?)[ \t\r]*$", re.M)
_BLOCK_RE = {k: re.compile(r"\[Answer " + k + r"\]\n(.*?)\n\[End of answer " + k + r"\]", re.S) for k in "AB"}
_LAST_USER_RE = re.compile(r"\[user\]\n(.*?)(?=\n\n\[[a-z]+[^\]\n]*\]\n|\n\[End of conversation\])", re.S)
_WORD_RE = re.compile(r"[A-Za-z0-9]{3,}")


def pairwise_verdict(last_user: str) -> str | None:
    """A pairwise judge's verdict (see the module docstring, rule 3), or None for another prompt."""
    if "[Answer B]" not in last_user or "Verdict:" not in last_user:
        return None
    a, b = _BLOCK_RE["A"].search(last_user), _BLOCK_RE["B"].search(last_user)
    turns = _LAST_USER_RE.findall(last_user.split("[End of conversation]")[0] + "\n[End of conversation]")
    if a is None or b is None:
        return None
    topic = {w.lower() for w in _WORD_RE.findall(turns[-1] if turns else "")}
    sa = len(topic & {w.lower() for w in _WORD_RE.findall(a.group(1))})
    sb = len(topic & {w.lower() for w in _WORD_RE.findall(b.group(1))})
    return "Verdict: tie" if abs(sa - sb) <= 1 else ("Verdict: A" if sa > sb else "Verdict: B")


def words_for(model: str | None, systems: list[str]) -> int:
    """How many words of the last user message the default answer has for ``model`` (rule 4)."""
    for text in systems:
        if "WORDS:" in text:
            m = _WORDS_RE.search(text)
            if m:
                for part in m.group(1).split(","):
                    name, _, n = part.partition("=")
                    if name.strip() == model and n.strip().isdigit():
                        return max(1, int(n.strip()))
    return 5


def respond(last_user: str, systems: list[str], users: list[str], model: str | None = None) -> str:
    """The deterministic answer for a prompt (see module docstring)."""
    if "ANSWER:" in last_user:
        m = _ANSWER_RE.search(last_user)
        if m:
            return m.group(1)
    labels = _find_labels(systems, users)
    if labels:
        text = _LABELS_RE.sub("", last_user) if ("abels" in last_user or "ABELS" in last_user) else last_user
        best_pos = -1
        best = labels[0][0]
        for lab, rx in labels:
            m = rx.search(text)
            if m is not None:
                pos = m.start()
                if best_pos < 0 or pos < best_pos or (pos == best_pos and len(lab) > len(best)):
                    best_pos, best = pos, lab
        return best
    verdict = pairwise_verdict(last_user)
    if verdict is not None:
        return verdict
    n = words_for(model, systems) if systems else 5
    return " ".join(last_user.split(None, n)[:n])


def answer_probability(last_user: str, systems: list[str], users: list[str]) -> float:
    """The probability the server gives each token of its answer when asked for ``logprobs``
    (see module docstring): a ``CONFIDENCE: p`` line's ``p``; with a label set, 0.9 when the
    ticket names a label and 0.35 when the answer is the first label by default; else 0.8."""
    if "CONFIDENCE:" in last_user:
        m = _CONFIDENCE_RE.search(last_user)
        if m:
            try:
                return min(1.0, max(1e-6, float(m.group(1))))
            except ValueError:
                pass
    labels = _find_labels(systems, users)
    if labels:
        text = _LABELS_RE.sub("", last_user)
        return 0.9 if any(rx.search(text) for _, rx in labels) else 0.35
    return 0.8


def _logprobs_json(answer: str, p: float) -> str:
    """A choice's ``logprobs`` object: the answer in 4-character tokens, each of log-probability ``ln p``."""
    lp = math.log(p)
    toks = [answer[i : i + 4] for i in range(0, len(answer), 4)] or [""]
    return '{"content":[%s],"refusal":null}' % ",".join(
        '{"token":%s,"logprob":%r,"bytes":null,"top_logprobs":[]}' % (_jstr(t), lp) for t in toks
    )


# --------------------------------------------------------------------------- server state


_TRIGGER_429 = re.compile(r"TRIGGER:429(?![A-Z])")


def _error_body(status: int, message: str, type_: str, code: str | None, **more: Any) -> bytes:
    # OpenAI's string code where the error imitates one of OpenAI's (rate limits, keys), else the
    # integer status, as llama.cpp's server sends it: a client must read both
    err = {"code": status if code is None else code, "message": message, "type": type_, "param": None, **more}
    return json.dumps({"error": err}).encode()


class _State:
    """Server-wide configuration, statistics and fault bookkeeping (one per process)."""

    def __init__(self, cfg: ServerConfig) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.started = time.time()
        self.seq = 0
        self.connections_open = 0
        self.in_flight = 0
        self.models_body = json.dumps(
            {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 0, "owned_by": "assay"} for m in cfg.models],
            }
        ).encode()
        self.retry_after_hdr = b"Retry-After: %s\r\nretry-after-ms: %s\r\n" % (
            _fmt_num(cfg.retry_after).encode(),
            _fmt_num(cfg.retry_after * 1000.0).encode(),
        )
        self.fail_threshold = int(cfg.fail_rate * (1 << 64))
        self.reset()

    def reset(self) -> None:
        self.requests_total = 0  # chat completion requests
        self.http_requests_total = 0  # every HTTP request, control endpoints included
        self.connections_total = 0
        self.by_model: dict[str, int] = {}
        self.by_status: dict[int, int] = {}
        self.prompts: dict[str, int] = {}
        self.had_auth = 0
        self.no_auth = 0
        self.responses_dropped = 0  # chat responses never sent: the client hung up first
        self.max_in_flight = self.in_flight
        self.triggered_429: set[str] = set()
        self.triggered_500: set[str] = set()
        self.triggered: dict[str, set[str]] = {}  # fault name -> prompts it was served to once
        self.fail_counts: dict[str, int] = {}

    def once(self, fault: str, prompt: str) -> bool:
        """True the first time ``fault`` is served for ``prompt`` (then the prompt succeeds)."""
        seen = self.triggered.setdefault(fault, set())
        if prompt in seen:
            return False
        seen.add(prompt)
        return True

    def stats(self, include_prompts: bool = True) -> dict[str, Any]:
        hist: dict[int, int] = {}
        for c in self.prompts.values():
            hist[c] = hist.get(c, 0) + 1
        out: dict[str, Any] = {
            "requests_total": self.requests_total,
            "requests_by_model": dict(self.by_model),
            "requests_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "distinct_prompts": len(self.prompts),
            # {"k": number of distinct prompts that were requested exactly k times}
            "prompt_count_histogram": {str(k): v for k, v in sorted(hist.items())},
            "max_in_flight": self.max_in_flight,
            "in_flight": self.in_flight,
            "responses_dropped": self.responses_dropped,
            "had_auth": self.had_auth,
            "no_auth": self.no_auth,
            "http_requests_total": self.http_requests_total,
            "connections_total": self.connections_total,
            "connections_open": self.connections_open,
            "uptime_s": round(time.time() - self.started, 3),
            "config": self.cfg.as_dict(),
        }
        if include_prompts:
            out["requests_per_prompt"] = dict(self.prompts)  # prompt hash (hex) -> count
        return out


def _stream_pieces(
    seq: int, model: str, answer: str, ct: int, pt: int, usage: bool, ttft: float, itl: float, fingerprint: str | None = None
) -> list[tuple[float, bytes]]:
    """The events of a streamed answer as (delay from the request, bytes): token ``i`` at
    ``ttft + i * itl``; the finish reason, the usage chunk (when asked) and ``[DONE]`` with the last."""
    fp = "" if fingerprint is None else ',"system_fingerprint":%s' % _jstr(fingerprint)
    head = '{"id":"chatcmpl-assay%d","object":"chat.completion.chunk","created":%d,"model":%s%s,"choices":[' % (
        seq,
        int(time.time()),
        _jstr(model),
        fp,
    )
    pieces = []
    for i in range(ct):
        text = answer[4 * i : 4 * i + 4]
        event = 'data: %s{"index":0,"delta":{"content":%s},"finish_reason":null}]}\n\n' % (head, _jstr(text))
        if i == 0:  # the role comes alone first, with a null content, as llama.cpp's server sends it
            event = 'data: %s{"index":0,"delta":{"role":"assistant","content":null},"finish_reason":null}]}\n\n' % head + event
        pieces.append([ttft + i * itl, event])
    tail = 'data: %s{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n' % head
    if usage:
        tail += 'data: %s],"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}}\n\n' % (head, pt, ct, pt + ct)
    pieces[-1][1] += tail + "data: [DONE]\n\n"
    return [(d, e.encode()) for d, e in pieces]


def _fmt_num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


# --------------------------------------------------------------------------- protocol


class _Pending:
    __slots__ = ("data", "close", "ready", "handle", "chat")

    def __init__(self, data: bytes, close: bool, ready: bool, chat: bool) -> None:
        self.data = data
        self.close = close
        self.ready = ready
        self.handle: asyncio.TimerHandle | None = None
        self.chat = chat


_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_MODELS_PATHS = frozenset({"/v1/models", "/models"})
_JSON_HDR = b"\r\nContent-Type: application/json\r\nContent-Length: "


class _HTTPProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 server: keep-alive, pipelining, Content-Length bodies."""

    __slots__ = ("st", "loop", "transport", "buf", "queue", "closing", "continued")

    def __init__(self, st: _State, loop: asyncio.AbstractEventLoop) -> None:
        self.st = st
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.queue: deque[_Pending] = deque()
        self.closing = False
        self.continued = False

    # -- connection lifecycle

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.st.connections_total += 1
        self.st.connections_open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        st = self.st
        st.connections_open -= 1
        for p in self.queue:
            if p.handle is not None:
                p.handle.cancel()
            if p.chat:
                st.in_flight -= 1
                st.responses_dropped += 1
        self.queue.clear()
        self.transport = None
        self.closing = True
        self.buf = bytearray()

    # eof_received is not overridden: a client that closes (or half-closes) its side is
    # treated as gone, so the transport closes and pending timers are cancelled.

    # -- parsing

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n and not self.closing:
            # tolerate stray CRLFs between requests (RFC 9112 section 2.2)
            while buf.startswith(b"\r\n", pos):
                pos += 2
            if pos >= n:
                break
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                if n - pos > MAX_HEADER_BYTES:
                    self._fatal(431, "request headers too large")
                break
            if end - pos > MAX_HEADER_BYTES:
                self._fatal(431, "request headers too large")
                break
            lines = bytes(buf[pos:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
                self._fatal(400, "malformed request line")
                break
            method, target, version = parts
            headers: dict[bytes, bytes] = {}
            for line in lines[1:]:
                k, sep, v = line.partition(b":")
                if not sep:
                    continue
                headers[k.strip().lower()] = v.strip()
            if b"transfer-encoding" in headers:
                self._fatal(501, "chunked request bodies are not supported; send Content-Length")
                break
            cl = headers.get(b"content-length")
            if cl is None:
                clen = 0
            else:
                try:
                    clen = int(cl)
                except ValueError:
                    clen = -1
                if clen < 0:
                    self._fatal(400, "invalid Content-Length")
                    break
                if clen > MAX_BODY_BYTES:
                    self._fatal(413, "request body too large")
                    break
            body_start = end + 4
            if n - body_start < clen:
                # wait for the rest of the body; headers are re-parsed then (cheap)
                if not self.continued and not self.queue and headers.get(b"expect", b"").lower() == b"100-continue":
                    self.continued = True  # e.g. curl with a body > 1 KiB
                    self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[union-attr]
                break
            self.continued = False
            body = bytes(buf[body_start : body_start + clen])
            pos = body_start + clen
            conn = headers.get(b"connection", b"").lower()
            if version == b"HTTP/1.1":
                keep_alive = b"close" not in conn
                ka_hdr = b"" if keep_alive else b"Connection: close\r\n"
            else:
                keep_alive = b"keep-alive" in conn
                ka_hdr = b"Connection: keep-alive\r\n" if keep_alive else b"Connection: close\r\n"
            self._dispatch(method, target, headers, body, keep_alive, ka_hdr)
        if pos:
            del buf[:pos]

    def _fatal(self, status: int, message: str) -> None:
        body = _error_body(status, message, "invalid_request_error", None)
        self._emit(status, body, b"Connection: close\r\n", 0.0, False, False)
        self.st.by_status[status] = self.st.by_status.get(status, 0) + 1
        self.closing = True

    # -- output (in request order, even when delays differ)

    def _emit(
        self, status: int, body: bytes, extra: bytes, delay: float, keep_alive: bool, chat: bool, raw: bool = False
    ) -> None:
        data = (
            body
            if raw
            else b"".join(
                (
                    b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Unknown")),
                    _JSON_HDR,
                    b"%d\r\n" % len(body),
                    extra,
                    b"\r\n",
                    body,
                )
            )
        )
        if not keep_alive:
            self.closing = True
        if delay <= 0.0 and not self.queue:
            self.transport.write(data)  # type: ignore[union-attr]
            if chat:
                self.st.in_flight -= 1
            if not keep_alive:
                self.transport.close()  # type: ignore[union-attr]
            return
        p = _Pending(data, not keep_alive, delay <= 0.0, chat)
        if delay > 0.0:
            p.handle = self.loop.call_later(delay, self._ready, p)
        self.queue.append(p)

    def _emit_stream(self, pieces: list[tuple[float, bytes]], extra: bytes, keep_alive: bool) -> None:
        """A chunked event stream: each piece (its delay from now, its bytes) queued like a response of
        its own, so pieces and pipelined responses still go out in order; the last piece ends it."""
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n" + extra + b"\r\n"
        )
        if not keep_alive:
            self.closing = True
        last = len(pieces) - 1
        for i, (delay, data) in enumerate(pieces):
            chunk = b"%x\r\n%s\r\n" % (len(data), data)
            if i == 0:
                chunk = head + chunk
            if i == last:
                chunk += b"0\r\n\r\n"
            p = _Pending(chunk, i == last and not keep_alive, delay <= 0.0, i == last)
            if delay > 0.0:
                p.handle = self.loop.call_later(delay, self._ready, p)
            self.queue.append(p)
        self._flush()

    def _ready(self, p: _Pending) -> None:
        p.ready = True
        p.handle = None
        self._flush()

    def _flush(self) -> None:
        q = self.queue
        t = self.transport
        st = self.st
        while q and q[0].ready:
            p = q.popleft()
            if t is None:
                return
            t.write(p.data)
            if p.chat:
                st.in_flight -= 1
            if p.close:
                for rest in q:
                    if rest.handle is not None:
                        rest.handle.cancel()
                    if rest.chat:
                        st.in_flight -= 1
                q.clear()
                t.close()
                return

    # -- routing

    def _dispatch(self, method: bytes, target: bytes, headers: dict, body: bytes, keep_alive: bool, ka: bytes) -> None:
        st = self.st
        st.http_requests_total += 1
        path, _, query = target.decode("latin-1").partition("?")
        if path in _CHAT_PATHS:
            if method != b"POST":
                return self._simple(405, _error_body(405, "use POST", "invalid_request_error", None), ka, keep_alive)
            st.in_flight += 1
            if st.in_flight > st.max_in_flight:
                st.max_in_flight = st.in_flight
            status, out, extra, delay = self._chat(headers, body)
            code = 200 if status == -2 else status
            st.by_status[code] = st.by_status.get(code, 0) + 1
            if status == -1:  # a broken response: these raw bytes, then the connection closes
                return self._emit(status, out, b"", delay, False, True, raw=True)
            if status == -2:  # a stream: ``out`` is its (delay, bytes) pieces
                # llama.cpp's server closes the connection after a stream, announcing nothing
                return self._emit_stream(out, extra + ka, keep_alive and not self.st.cfg.close_after_stream)
            return self._emit(status, out, extra + ka, delay, keep_alive, True)
        if path in _MODELS_PATHS and method == b"GET":
            return self._simple(200, st.models_body, ka, keep_alive)
        if path.startswith(("/v1/models/", "/models/")) and method == b"GET":
            mid = path.split("/models/", 1)[1]
            out = json.dumps({"id": mid, "object": "model", "created": 0, "owned_by": "assay"}).encode()
            return self._simple(200, out, ka, keep_alive)
        if path == "/_stats" and method == b"GET":
            include = "prompts=0" not in query and "prompts=false" not in query
            return self._simple(200, json.dumps(st.stats(include)).encode(), ka, keep_alive)
        if path == "/_reset" and method == b"POST":
            st.reset()
            return self._simple(200, b'{"ok": true}', ka, keep_alive)
        if path in ("/health", "/"):
            return self._simple(200, b'{"status": "ok"}', ka, keep_alive)
        return self._simple(
            404, _error_body(404, f"unknown endpoint {path}", "invalid_request_error", "not_found"), ka, keep_alive
        )

    def _simple(self, status: int, body: bytes, ka: bytes, keep_alive: bool) -> None:
        self._emit(status, body, ka, 0.0, keep_alive, False)

    def _chat(self, headers: dict, body: bytes) -> tuple[int, bytes, bytes, float]:
        st = self.st
        cfg = st.cfg
        st.requests_total += 1
        nreq = st.requests_total
        if b"authorization" in headers:
            st.had_auth += 1
        else:
            st.no_auth += 1
        delay = cfg.latency
        if cfg.jitter:
            delay += cfg.jitter * st.rng.random()
        load = 1.0 + (st.in_flight - 1) / cfg.slots if cfg.slots else 1.0  # the queueing model (module docstring)
        delay *= load
        itl = cfg.itl * load

        try:
            req = json.loads(body)
        except ValueError:
            return 400, _error_body(400, "request body is not valid JSON", "invalid_request_error", None), b"", delay
        if not isinstance(req, dict):
            return 400, _error_body(400, "request body must be a JSON object", "invalid_request_error", None), b"", delay
        model = req.get("model")
        messages = req.get("messages")
        if not isinstance(model, str) or not model:
            return 400, _error_body(400, "you must provide a model parameter", "invalid_request_error", None), b"", delay
        if not isinstance(messages, list) or not messages:
            return 400, _error_body(400, "'messages' must be a non-empty array", "invalid_request_error", None), b"", delay
        st.by_model[model] = st.by_model.get(model, 0) + 1
        stream = bool(req.get("stream"))

        # one pass over the messages
        chars = 0
        key_parts = []
        users: list[str] = []
        systems: list[str] = []
        last_user = ""
        for m in messages:
            if not isinstance(m, dict):
                return 400, _error_body(400, "each message must be an object", "invalid_request_error", None), b"", delay
            role = m.get("role")
            text = _text_of(m.get("content"))
            chars += len(text)
            key_parts.append(f"{role}\x1f{text}")
            if role == "user":
                last_user = text
                users.append(text)
            elif role == "system" or role == "developer":
                systems.append(text)
        digest = hashlib.blake2b("\x1e".join(key_parts).encode("utf-8", "surrogatepass"), digest_size=8).digest()
        ph = digest.hex()
        prompts = st.prompts
        prompts[ph] = prompts.get(ph, 0) + 1

        trig = False
        for u in users:
            if "TRIGGER:" in u:
                trig = True
                break
        if trig:
            user_all = "\n".join(users)
            if "TRIGGER:401" in user_all:
                msg = "Incorrect API key provided (TRIGGER:401)."
                return 401, _error_body(401, msg, "invalid_request_error", "invalid_api_key"), b"", delay
            if "TRIGGER:400" in user_all:
                msg = "Invalid request (TRIGGER:400)."
                return 400, _error_body(400, msg, "invalid_request_error", "invalid_request"), b"", delay
        if cfg.rate_limit_every and nreq % cfg.rate_limit_every == 0:
            msg = f"Rate limit reached for {model} (every {cfg.rate_limit_every}th request)."
            return 429, _error_body(429, msg, "requests", "rate_limit_exceeded"), st.retry_after_hdr, delay
        if trig:
            if _TRIGGER_429.search(user_all) and ph not in st.triggered_429:
                st.triggered_429.add(ph)
                msg = "Rate limit reached (TRIGGER:429)."
                return 429, _error_body(429, msg, "requests", "rate_limit_exceeded"), st.retry_after_hdr, delay
            if "TRIGGER:500" in user_all and ph not in st.triggered_500:
                st.triggered_500.add(ph)
                msg = "The server had an error while processing your request (TRIGGER:500)."
                return 500, _error_body(500, msg, "server_error", None), b"", delay
            fault = self._fault(user_all, ph, headers, delay)
            if fault is not None:
                return fault
        if st.fail_threshold and int.from_bytes(digest, "big") < st.fail_threshold:
            c = st.fail_counts.get(ph, 0)
            if c < cfg.fail_times:
                st.fail_counts[ph] = c + 1
                msg = "The server had an error while processing your request (fail_rate)."
                return 500, _error_body(500, msg, "server_error", None), b"", delay
        if trig and "TRIGGER:SLOW" in user_all:
            delay += cfg.slow_seconds

        answer = None
        if "ANSWERS:" in last_user:
            answer = varied_answer(last_user, prompts[ph])
        if answer is None:
            answer = respond(last_user, systems, users, model)
        if trig and "TRIGGER:NOCHOICES" in user_all:
            return 200, b'{"id":"chatcmpl-empty","object":"chat.completion","choices":[]}', b"", delay
        pt = (chars + 3) // 4
        if cfg.context_tokens and pt > cfg.context_tokens:
            # a 400 as plain JSON, even for a streamed request (llama.cpp's server answers so)
            msg = f"request ({pt} tokens) exceeds the available context size ({cfg.context_tokens} tokens), try increasing it"
            return (
                400,
                _error_body(400, msg, "exceed_context_size_error", None, n_prompt_tokens=pt, n_ctx=cfg.context_tokens),
                b"",
                delay,
            )
        ct = max(1, (len(answer) + 3) // 4)
        st.seq += 1
        shown = cfg.served_model or model
        fp = "" if cfg.system_fingerprint is None else ',"system_fingerprint":%s' % _jstr(cfg.system_fingerprint)
        if stream:
            opts = req.get("stream_options")
            usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
            return (
                -2,
                _stream_pieces(st.seq, shown, answer, ct, pt, usage, delay, itl, cfg.system_fingerprint),
                b"x-request-id: req_assay%d\r\n" % st.seq,
                delay,
            )
        delay += itl * (ct - 1)
        out = (
            '{"id":"chatcmpl-assay%d","object":"chat.completion","created":%d,"model":%s,'
            '"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},'
            '"logprobs":%s,"finish_reason":"stop"}],'
            '"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d,'
            '"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},'
            '"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}%s}'
        ) % (
            st.seq,
            int(time.time()),
            _jstr(shown),
            _jstr(answer),
            _logprobs_json(answer, answer_probability(last_user, systems, users)) if req.get("logprobs") else "null",
            pt,
            ct,
            pt + ct,
            fp,
        )
        if trig and "TRIGGER:NOUSAGE" in user_all:
            out = out[: out.index(',"usage":')] + fp + "}"
        return 200, out.encode(), b"x-request-id: req_assay%d\r\n" % st.seq, delay

    def _fault(self, user_all: str, ph: str, headers: dict, delay: float):
        """The injected fault a ``TRIGGER:<name>`` asks for, or None. All but ECHOAUTH are served
        once per prompt (the retry succeeds); RESET and TRUNCATED break the connection (status -1:
        raw bytes, then close)."""
        st = self.st
        for code in (502, 503):
            if f"TRIGGER:{code}" in user_all and st.once(str(code), ph):
                return code, _error_body(code, f"Bad gateway or unavailable (TRIGGER:{code}).", "server_error", None), b"", delay
        if "TRIGGER:429DATE" in user_all and st.once("429DATE", ph):
            when = formatdate(time.time() + 1.0, usegmt=True).encode()
            return (
                429,
                _error_body(429, "Rate limit reached (TRIGGER:429DATE).", "requests", "rate_limit_exceeded"),
                b"Retry-After: " + when + b"\r\n",
                delay,
            )
        if "TRIGGER:429BARE" in user_all and st.once("429BARE", ph):
            return 429, _error_body(429, "Rate limit reached (TRIGGER:429BARE).", "requests", "rate_limit_exceeded"), b"", delay
        if "TRIGGER:BADJSON" in user_all and st.once("BADJSON", ph):
            return 200, b'{"id": "chatcmpl-bad", "choices": [{"message": {"content": "unterminated', b"", delay
        if "TRIGGER:RESET" in user_all and st.once("RESET", ph):
            body = b'{"id":"chatcmpl-reset","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant"'
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (len(body) * 3)
            return -1, head + body, b"", delay
        if "TRIGGER:TRUNCATED" in user_all and st.once("TRUNCATED", ph):
            body = b'{"id":"chatcmpl-trunc","object":"chat.completion","choices":[{"index":0,"message":'
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (len(body) + 40)
            return -1, head + body, b"", delay
        if "TRIGGER:ECHOAUTH" in user_all:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            return (
                400,
                _error_body(400, f"Bad request; you sent Authorization: {auth}", "invalid_request_error", None),
                b"",
                delay,
            )
        return None


# --------------------------------------------------------------------------- process entry


async def serve(
    cfg: ServerConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    exit_on_stdin_eof: bool = False,
    announce=None,
) -> None:
    """Run the server until SIGINT/SIGTERM (or stdin EOF if asked)."""
    loop = asyncio.get_running_loop()
    st = _State(cfg)
    server = await loop.create_server(lambda: _HTTPProtocol(st, loop), host, port, backlog=2048, reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    line = f"listening on http://{host}:{bound}/v1"
    if announce is None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
    else:
        announce(line)
    stop = loop.create_future()

    def _stop(*_: object) -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _stop)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    if exit_on_stdin_eof:
        fd = sys.stdin.fileno()

        def _on_stdin() -> None:
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:
                loop.remove_reader(fd)
                _stop()

        loop.add_reader(fd, _on_stdin)
    # The request path allocates only short-lived objects; keep the cyclic GC out of the way.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    try:
        await stop
    finally:
        server.close()


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m assay.testing.openai_server",
        description="Fast deterministic fake OpenAI-compatible server (tests, benchmarks, demos).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 = pick a free port (printed on the first line)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds added to every chat response")
    p.add_argument("--jitter", type=float, default=0.0, help="extra uniform random delay in [0, jitter] seconds")
    p.add_argument("--fail-rate", type=float, default=0.0, help="share of prompts (by hash) that get 500 first")
    p.add_argument("--fail-times", type=int, default=1, help="how many attempts of a failing prompt get 500")
    p.add_argument("--rate-limit-every", type=int, default=0, help="every k-th chat request gets 429 (0 = never)")
    p.add_argument("--retry-after", type=float, default=0.05, help="Retry-After seconds sent with 429")
    p.add_argument("--slow-seconds", type=float, default=10.0, help="extra delay for TRIGGER:SLOW")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated ids for GET /v1/models")
    p.add_argument("--seed", type=int, default=0, help="seed for the jitter RNG")
    p.add_argument("--itl", type=float, default=0.0, help="seconds between streamed tokens (inter-token latency)")
    p.add_argument("--slots", type=int, default=0, help="queueing model: delays x (1 + (in-flight - 1) / slots); 0 = off")
    p.add_argument(
        "--served-model",
        default="",
        help="the model name every response gives, whatever the request asked (as a self-hosted "
        "server names its own model); empty = the requested name",
    )
    p.add_argument("--system-fingerprint", default="fp_assay_fake", help="system_fingerprint of every response; empty = none")
    p.add_argument(
        "--context-tokens", type=int, default=0, help="a prompt of more tokens gets 400 exceed_context_size_error (0 = no limit)"
    )
    p.add_argument(
        "--keep-alive-after-stream",
        action="store_true",
        help="keep the connection open after a streamed response (default: close it, unannounced, as llama.cpp's server does)",
    )
    p.add_argument("--exit-on-stdin-eof", action="store_true", help="exit when stdin closes (used by OpenAIServer)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    cfg = ServerConfig(
        latency=args.latency,
        jitter=args.jitter,
        fail_rate=args.fail_rate,
        fail_times=args.fail_times,
        rate_limit_every=args.rate_limit_every,
        retry_after=args.retry_after,
        slow_seconds=args.slow_seconds,
        models=[m.strip() for m in args.models.split(",") if m.strip()],
        seed=args.seed,
        itl=args.itl,
        slots=args.slots,
        served_model=args.served_model or None,
        system_fingerprint=args.system_fingerprint or None,
        context_tokens=args.context_tokens,
        close_after_stream=not args.keep_alive_after_stream,
    )
    try:
        asyncio.run(serve(cfg, args.host, args.port, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except KeyboardInterrupt:
        pass
    return 0


# --------------------------------------------------------------------------- Python API

_PROJECT_ROOT = Path(__file__).resolve().parents[2]
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class OpenAIServer:
    """Start the fake server in a subprocess for the duration of a ``with`` block.

    >>> with OpenAIServer(latency=0.05) as srv:          # doctest: +SKIP
    ...     client = openai.OpenAI(base_url=srv.base_url, api_key="test")
    ...     client.chat.completions.create(model="mock-model", messages=[...])
    ...     srv.stats()["requests_total"]
    """

    def __init__(
        self,
        latency: float = 0.0,
        jitter: float = 0.0,
        fail_rate: float = 0.0,
        fail_times: int = 1,
        rate_limit_every: int = 0,
        retry_after: float = 0.05,
        slow_seconds: float = 10.0,
        models: tuple[str, ...] | list[str] = DEFAULT_MODELS,
        seed: int = 0,
        itl: float = 0.0,
        slots: int = 0,
        *,
        served_model: str | None = None,
        system_fingerprint: str | None = "fp_assay_fake",
        context_tokens: int = 0,
        close_after_stream: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 15.0,
        python: str | None = None,
    ) -> None:
        self.config = ServerConfig(
            latency=latency,
            jitter=jitter,
            fail_rate=fail_rate,
            fail_times=fail_times,
            rate_limit_every=rate_limit_every,
            retry_after=retry_after,
            slow_seconds=slow_seconds,
            models=models,
            seed=seed,
            itl=itl,
            slots=slots,
            served_model=served_model,
            system_fingerprint=system_fingerprint,
            context_tokens=context_tokens,
            close_after_stream=close_after_stream,
        )
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self.python = python or sys.executable
        self.proc: subprocess.Popen[bytes] | None = None

    # -- urls

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI ``base_url``, e.g. ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -- lifecycle

    def start(self) -> OpenAIServer:
        if self.proc is not None:
            raise RuntimeError("server already started")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            self.python, "-m", "assay.testing.openai_server",
            "--host", self.host, "--port", str(self.port), "--exit-on-stdin-eof",
            *self.config.to_argv(),
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, bufsize=0)
        try:
            line = self._read_first_line(self.startup_timeout)
            m = re.search(r"http://[^\s/]+:(\d+)", line)
            if not m:
                raise RuntimeError(f"fake OpenAI server printed an unexpected first line: {line!r}")
            self.port = int(m.group(1))
            self._wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _read_first_line(self, timeout: float) -> str:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"fake OpenAI server did not announce its port within {timeout}s")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                rc = self.proc.wait(timeout=5)
                raise RuntimeError(f"fake OpenAI server exited (code {rc}) before announcing its port")
            buf += chunk
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace").strip()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with _NO_PROXY_OPENER.open(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"fake OpenAI server exited (code {self.proc.returncode})")
            if time.monotonic() > deadline:
                raise TimeoutError("fake OpenAI server did not answer in time")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        finally:
            for f in (proc.stdin, proc.stdout):
                try:
                    if f is not None:
                        f.close()
                except OSError:
                    pass

    close = stop

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control endpoints

    def stats(self, include_prompts: bool = True) -> dict[str, Any]:
        """``GET /_stats`` as a dict."""
        url = self.url + "/_stats" + ("" if include_prompts else "?prompts=0")
        with _NO_PROXY_OPENER.open(url, timeout=10) as r:
            return json.loads(r.read())

    def reset(self) -> None:
        """``POST /_reset``: clear stats and the "once per prompt" fault state."""
        req = urllib.request.Request(self.url + "/_reset", data=b"", method="POST")
        with _NO_PROXY_OPENER.open(req, timeout=10) as r:
            r.read()


if __name__ == "__main__":
    sys.exit(main())
