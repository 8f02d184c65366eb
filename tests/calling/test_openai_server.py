"""Tests for the fake OpenAI-compatible server in ``assay.testing.openai_server``."""

from __future__ import annotations

import http.client
import json
import math
import socket
import time

import openai
import pytest

from assay.testing.openai_server import OpenAIServer, respond

MODEL = "mock-model"


@pytest.fixture(scope="module")
def srv():
    with OpenAIServer(slow_seconds=0.5) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv):
    c = openai.OpenAI(base_url=srv.base_url, api_key="test-key", max_retries=0, timeout=10)
    yield c
    c.close()


def _post(srv, messages, model=MODEL, auth=True):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = "Bearer secret-key"
        conn.request("POST", "/v1/chat/completions", json.dumps({"model": model, "messages": messages}), headers)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
    finally:
        conn.close()


def _user(text):
    return [{"role": "user", "content": text}]


def _raw_request(body: dict, extra: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict]]:
    buf = b""
    out = []
    while len(out) < count:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            assert chunk, "server closed the connection early"
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        n = int(headers["content-length"])
        while len(buf) < n:
            chunk = sock.recv(65536)
            assert chunk, "server closed the connection early"
            buf += chunk
        body, buf = buf[:n], buf[n:]
        out.append((status, json.loads(body)))
    return out


# ------------------------------------------------------------------ responder + SDK


def test_sdk_default_answer_and_usage(srv, client):
    msgs = [{"role": "user", "content": "Please summarise this long text about rivers and lakes."}]
    r = client.chat.completions.create(model="gpt-4o-mini", messages=msgs)
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].message.content == "Please summarise this long text"
    chars = len(msgs[0]["content"])
    assert r.usage.prompt_tokens == math.ceil(chars / 4)
    assert r.usage.completion_tokens == math.ceil(len("Please summarise this long text") / 4)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    assert r.id.startswith("chatcmpl-")


def test_sdk_answer_line(client):
    msgs = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 6*7?\nANSWER: forty two\nThanks"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=msgs)
    assert r.choices[0].message.content == "forty two"
    total = sum(len(m["content"]) for m in msgs)
    assert r.usage.prompt_tokens == math.ceil(total / 4)
    assert r.usage.completion_tokens == 3


def test_sdk_labels_responder(client):
    system = {"role": "system", "content": "Classify the sentiment. labels: positive, negative, neutral."}
    r = client.chat.completions.create(
        model=MODEL, messages=[system, {"role": "user", "content": "Honestly a NEGATIVE experience."}]
    )
    assert r.choices[0].message.content == "negative"
    # no label mentioned -> first label
    r = client.chat.completions.create(model=MODEL, messages=[system, {"role": "user", "content": "It was a film."}])
    assert r.choices[0].message.content == "positive"
    # labels listed in the user message itself; the labels line does not count as a mention
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Topic?\nlabels: sports, politics\nThe election results."}]
    )
    assert r.choices[0].message.content == "sports"
    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Topic?\nlabels: sports, politics\nA politics story."}]
    )
    assert r.choices[0].message.content == "politics"
    # content given as a list of parts
    r = client.chat.completions.create(
        model=MODEL, messages=[system, {"role": "user", "content": [{"type": "text", "text": "quite neutral"}]}]
    )
    assert r.choices[0].message.content == "neutral"


def test_respond_unit():
    assert respond("a b c d e f g", [], ["a b c d e f g"]) == "a b c d e"
    assert respond("", [], []) == ""
    # whole words only, earliest mention wins
    sys_ = ["labels: pos, positive, negative"]
    assert respond("clearly negative, not positive", sys_, []) == "negative"
    assert respond("positive!", sys_, []) == "positive"


def test_models_endpoint(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids


# ------------------------------------------------------------------ triggers


def test_trigger_400_and_401(client):
    with pytest.raises(openai.BadRequestError) as e400:
        client.chat.completions.create(model=MODEL, messages=_user("bad TRIGGER:400"))
    assert e400.value.status_code == 400
    assert e400.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError) as e401:
        client.chat.completions.create(model=MODEL, messages=_user("TRIGGER:401 please"))
    assert e401.value.status_code == 401
    # permanent, not once
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=_user("bad TRIGGER:400"))


def test_trigger_429_retry_after_then_success(srv, client):
    msgs = _user("hello TRIGGER:429 one")
    status, headers, body = _post(srv, msgs)
    assert status == 429
    assert float(headers["retry-after"]) == pytest.approx(0.05)
    assert body["error"]["code"] == "rate_limit_exceeded"
    status, _, body = _post(srv, msgs)
    assert status == 200
    assert body["choices"][0]["message"]["content"] == "hello TRIGGER:429 one"
    # the SDK's own retry honours Retry-After (0.05 s), so this is fast
    retrying = client.with_options(max_retries=2)
    t0 = time.monotonic()
    r = retrying.chat.completions.create(model=MODEL, messages=_user("hello TRIGGER:429 two"))
    assert r.choices[0].message.content == "hello TRIGGER:429 two"
    assert time.monotonic() - t0 < 2.0


def test_trigger_500_then_success(srv, client):
    msgs = _user("boom TRIGGER:500 a")
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=msgs)
    r = client.chat.completions.create(model=MODEL, messages=msgs)
    assert r.choices[0].message.content == "boom TRIGGER:500 a"
    # a different prompt fails once again
    status, _, _ = _post(srv, _user("boom TRIGGER:500 b"))
    assert status == 500
    # after reset the fault state is cleared: the first prompt fails once more
    srv.reset()
    assert _post(srv, msgs)[0] == 500
    assert _post(srv, msgs)[0] == 200


def test_trigger_slow_times_out(srv, client):
    srv.reset()
    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.15).chat.completions.create(model=MODEL, messages=_user("wait TRIGGER:SLOW"))
    # the client hung up before the (0.5 s) answer was due: the server drops it, nothing stays in flight
    deadline = time.monotonic() + 2
    while srv.stats(include_prompts=False)["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    s = srv.stats(include_prompts=False)
    assert s["in_flight"] == 0
    assert s["responses_dropped"] == 1


# ------------------------------------------------------------------ stats


def test_stats_counts(srv, client):
    srv.reset()
    client.chat.completions.create(model=MODEL, messages=_user("same prompt"))
    client.chat.completions.create(model="gpt-4o", messages=_user("same prompt"))
    client.chat.completions.create(model=MODEL, messages=_user("other prompt"))
    assert _post(srv, _user("no key here"), auth=False)[0] == 200
    s = srv.stats()
    assert s["requests_total"] == 4
    assert s["requests_by_model"] == {MODEL: 3, "gpt-4o": 1}
    assert s["requests_by_status"] == {"200": 4}
    assert s["distinct_prompts"] == 3
    assert sorted(s["requests_per_prompt"].values()) == [1, 1, 2]
    assert s["prompt_count_histogram"] == {"1": 2, "2": 1}
    assert s["had_auth"] == 3 and s["no_auth"] == 1
    assert s["max_in_flight"] >= 1 and s["in_flight"] == 0
    assert "secret-key" not in json.dumps(s) and "test-key" not in json.dumps(s)
    assert "requests_per_prompt" not in srv.stats(include_prompts=False)
    srv.reset()
    assert srv.stats()["requests_total"] == 0


# ------------------------------------------------------------------ raw HTTP: keep-alive + pipelining


def test_keepalive_pipelined_raw_requests(srv):
    srv.reset()
    reqs = [
        _raw_request({"model": MODEL, "messages": _user("first TRIGGER:SLOW")}),  # answered after 0.5 s
        _raw_request({"model": MODEL, "messages": _user("ANSWER: second")}, "Authorization: Bearer k\r\n"),
        _raw_request({"model": "gpt-4o", "messages": _user("third one here")}),
    ]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        blob = b"".join(reqs)
        # pipelined, and split at awkward places (inside headers and inside a body)
        cuts = [0, 7, 60, len(reqs[0]) + 3, len(reqs[0]) + len(reqs[1]) - 5, len(blob)]
        for a, b in zip(cuts, cuts[1:]):
            sock.sendall(blob[a:b])
            time.sleep(0.01)
        out = _read_responses(sock, 3)
        assert [s for s, _ in out] == [200, 200, 200]
        # in request order although the first one was delayed
        assert [b["choices"][0]["message"]["content"] for _, b in out] == ["first TRIGGER:SLOW", "second", "third one here"]
        assert out[2][1]["model"] == "gpt-4o"
        # the connection stays usable (keep-alive)
        sock.sendall(_raw_request({"model": MODEL, "messages": _user("ANSWER: again")}))
        assert _read_responses(sock, 1)[0][1]["choices"][0]["message"]["content"] == "again"
        # two more requests in one segment
        sock.sendall(_raw_request({"model": MODEL, "messages": _user("ANSWER: x")}) * 2)
        assert [b["choices"][0]["message"]["content"] for _, b in _read_responses(sock, 2)] == ["x", "x"]
    s = srv.stats()
    assert s["requests_total"] == 6
    assert s["max_in_flight"] >= 3  # all three pipelined requests were pending together
    assert s["had_auth"] == 1 and s["no_auth"] == 5


def test_connection_close_honoured(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        sock.sendall(_raw_request({"model": MODEL, "messages": _user("ANSWER: bye")}, "Connection: close\r\n"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in data and data.endswith(b'"system_fingerprint":"fp_assay_fake"}')


def test_bad_requests(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        body = b"{not json"
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        status, err = _read_responses(sock, 1)[0]
        assert status == 400 and "error" in err
        sock.sendall(b"GET /nope HTTP/1.1\r\n\r\n")
        status, err = _read_responses(sock, 1)[0]
        assert status == 404 and err["error"]["code"] == "not_found"


# ------------------------------------------------------------------ fail_rate / rate_limit_every


def test_fail_rate_deterministic():
    prompts = [_user(f"question number {i}") for i in range(40)]

    def first_attempts(s):
        return [_post(s, p)[0] for p in prompts]

    with OpenAIServer(fail_rate=0.5, fail_times=2) as s:
        first = first_attempts(s)
        failing = [i for i, st in enumerate(first) if st == 500]
        assert set(first) <= {200, 500}
        assert 8 <= len(failing) <= 32
        second = first_attempts(s)
        assert [i for i, st in enumerate(second) if st == 500] == failing  # 2nd attempt fails too
        assert set(first_attempts(s)) == {200}  # 3rd attempt succeeds
        s.reset()
        assert [i for i, st in enumerate(first_attempts(s)) if st == 500] == failing
    with OpenAIServer(fail_rate=0.5) as s2:  # same prompts fail in another process
        assert [i for i, st in enumerate(first_attempts(s2)) if st == 500] == failing
        assert set(first_attempts(s2)) == {200}


def test_rate_limit_every():
    with OpenAIServer(rate_limit_every=3, retry_after=0.2) as s:
        results = [_post(s, _user(f"p{i}")) for i in range(9)]
        assert [r[0] for r in results] == [200, 200, 429] * 3
        assert all(r[1]["retry-after"] == "0.2" for r in results if r[0] == 429)
        assert s.stats()["requests_by_status"] == {"200": 6, "429": 3}


# ------------------------------------------------------------------ as llama.cpp's server answers


def _stream_events(port: int, body: dict) -> tuple[int, str, list]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read().decode()
        kind = r.getheader("Content-Type")
    finally:
        conn.close()
    if not kind.startswith("text/event-stream"):
        return r.status, kind, [json.loads(raw)]
    return (
        r.status,
        kind,
        [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:") and line[5:].strip() != "[DONE]"],
    )


def test_a_stream_starts_with_a_null_content_and_ends_with_a_usage_only_chunk():
    with OpenAIServer(served_model="tiny.gguf", system_fingerprint="b1-abc") as s:
        status, _, events = _stream_events(
            s.port,
            {"model": "asked", "messages": _user("ANSWER: abcdefgh"), "stream": True, "stream_options": {"include_usage": True}},
        )
    assert status == 200
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": None}
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"]) == "abcdefgh"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 2
    assert {e["model"] for e in events} == {"tiny.gguf"} and {e["system_fingerprint"] for e in events} == {"b1-abc"}


def test_errors_without_an_openai_code_carry_the_integer_status(srv):
    status, _, body = _post(srv, _user("TRIGGER:500"))
    assert status == 500 and body["error"]["code"] == 500 and body["error"]["type"] == "server_error"


def test_a_prompt_longer_than_the_context_is_a_plain_400_even_when_streamed():
    with OpenAIServer(context_tokens=10) as s:
        for stream in (False, True):
            status, kind, (body,) = _stream_events(s.port, {"model": MODEL, "messages": _user("x" * 100), "stream": stream})
            assert status == 400 and kind.startswith("application/json")
            err = body["error"]
            assert err["type"] == "exceed_context_size_error" and err["n_prompt_tokens"] == 25 and err["n_ctx"] == 10
        status, _, _ = _stream_events(s.port, {"model": MODEL, "messages": _user("short")})
        assert status == 200
