"""Baseline for Assay's throughput benchmarks: the cheapest reasonable asyncio client.

Sends ``n`` chat-completion requests at concurrency ``c`` to an OpenAI-compatible base URL
with ONE ``httpx.AsyncClient`` (keep-alive, connection pool sized to ``c``), plain JSON, no
retries, then prints the elapsed seconds and requests/s.  ``--sdk`` does the same through
``openai.AsyncOpenAI(max_retries=0)`` to show what the SDK itself costs per call.  ``--raw``
is a floor for reference only: hand-written HTTP/1.1 over ``asyncio`` streams (one
keep-alive connection per worker), i.e. what the transport and the server cost without
any HTTP client library.

    python benchmarks/bare_client.py --base-url http://127.0.0.1:8000/v1 -n 20000 -c 64
    python benchmarks/bare_client.py --base-url http://127.0.0.1:8000/v1 -n 20000 -c 64 --sdk
    python benchmarks/bare_client.py -n 20000 -c 64 --latency 0.05   # starts the fake server itself

Importable: ``await run(base_url, n, c)`` returns the elapsed seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import httpx

MODEL = "mock-model"


def _messages(i: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "Classify the sentiment. labels: positive, negative, neutral"},
        {"role": "user", "content": f"Review #{i}: the product was positive overall, would buy again."},
    ]


async def _run_httpx(base_url: str, n: int, c: int, errors: list[int]) -> None:
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer bench"}
    next_i = 0
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(60.0), trust_env=False) as client:

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                r = await client.post(url, json={"model": MODEL, "messages": _messages(i)}, headers=headers)
                if r.status_code != 200:
                    errors.append(r.status_code)
                    continue
                r.json()["choices"][0]["message"]["content"]

        await asyncio.gather(*(worker() for _ in range(c)))


async def _run_sdk(base_url: str, n: int, c: int, errors: list[int]) -> None:
    import httpx2  # the HTTP library the installed openai SDK is built on
    import openai

    http_client = openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=c, max_keepalive_connections=c), trust_env=False
    )
    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http_client)
    next_i = 0
    try:

        async def worker() -> None:
            nonlocal next_i
            while next_i < n:
                i = next_i
                next_i += 1
                try:
                    r = await client.chat.completions.create(model=MODEL, messages=_messages(i))  # type: ignore[arg-type]
                except openai.APIStatusError as e:
                    errors.append(e.status_code)
                    continue
                _ = r.choices[0].message.content

        await asyncio.gather(*(worker() for _ in range(c)))
    finally:
        await client.close()


async def _run_raw(base_url: str, n: int, c: int, errors: list[int]) -> None:
    import json
    from urllib.parse import urlsplit

    u = urlsplit(base_url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    path = u.path.rstrip("/") + "/chat/completions"
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while next_i < n:
                i = next_i
                next_i += 1
                body = json.dumps({"model": MODEL, "messages": _messages(i)}).encode()
                writer.write(
                    b"POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer bench\r\n"
                    b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                    % (path.encode(), host.encode(), len(body), body)
                )
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                k = head.lower().find(b"content-length:")
                length = int(head[k + 15 : head.find(b"\r\n", k)])
                data = await reader.readexactly(length)
                if status != 200:
                    errors.append(status)
                    continue
                json.loads(data)["choices"][0]["message"]["content"]
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(c)))


async def _run_aiohttp(base_url: str, n: int, c: int, errors: list[int]) -> None:
    import json

    import aiohttp

    url = base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer test", "Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c), headers=headers) as session:
        it = iter(range(n))

        async def worker() -> None:
            for i in it:
                body = json.dumps({"model": MODEL, "messages": _messages(i), "max_tokens": 8})
                async with session.post(url, data=body) as r:
                    raw = await r.read()
                    if r.status != 200:
                        errors.append(r.status)
                    else:
                        json.loads(raw)

        await asyncio.gather(*(worker() for _ in range(c)))


async def run(
    base_url: str, n: int, c: int, *, sdk: bool = False, raw: bool = False, aio: bool = False, errors: list[int] | None = None
) -> float:
    """Send ``n`` requests at concurrency ``c``; return elapsed wall-clock seconds.

    Non-200 responses are not retried; their status codes are appended to ``errors``.
    """
    errs: list[int] = [] if errors is None else errors
    impl = _run_sdk if sdk else _run_raw if raw else _run_aiohttp if aio else _run_httpx
    t0 = time.perf_counter()
    await impl(base_url, n, c, errs)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", help="OpenAI-compatible base URL; omitted = start the fake server")
    p.add_argument("-n", type=int, default=20000, help="number of requests")
    p.add_argument("-c", type=int, default=64, help="concurrency (also the connection pool size)")
    p.add_argument("--sdk", action="store_true", help="use openai.AsyncOpenAI(max_retries=0) instead of httpx")
    p.add_argument("--aiohttp", action="store_true", help="one aiohttp.ClientSession instead of httpx")
    p.add_argument("--raw", action="store_true", help="reference floor: hand-written HTTP over asyncio streams")
    p.add_argument("--latency", type=float, default=0.0, help="server latency when the fake server is started here")
    args = p.parse_args(argv)

    server = None
    base_url = args.base_url
    if base_url is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from assay.testing.openai_server import OpenAIServer

        server = OpenAIServer(latency=args.latency).start()
        base_url = server.base_url
    try:
        errors: list[int] = []
        secs = asyncio.run(run(base_url, args.n, args.c, sdk=args.sdk, raw=args.raw, aio=args.aiohttp, errors=errors))
    finally:
        if server is not None:
            server.stop()
    kind = "openai-sdk" if args.sdk else "raw-asyncio" if args.raw else "aiohttp" if args.aiohttp else "httpx"
    print(f"{kind}: n={args.n} c={args.c} elapsed={secs:.2f}s rate={args.n / secs:.0f} req/s errors={len(errors)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
