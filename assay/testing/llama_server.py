"""llama.cpp's ``llama-server`` as a test fixture: start it on a free 127.0.0.1 port, wait until
it serves, stop it.

The binary and the model come from ``scripts/real_server.py`` (built from the ``llama-cpp-python``
sdist into a cache folder outside the repository). The flags are the ones the real-server tests
and the docs' figures use: 8 parallel slots sharing one unified KV pool, a 32k context, and one
thread: llama.cpp's threads wait for each other at every step, and on a machine whose cores are
busy with other work two threads ran 27 times slower than one (55 against 1,490 tokens/s at 8
requests at once, measured here); the tiny model needs no more.

>>> with LlamaServer(binary, model) as srv:          # doctest: +SKIP
...     requests.post(srv.base_url + "/chat/completions", json={...})
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the server binds it a moment later)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LlamaServerError(RuntimeError):
    """The server did not start; the message carries the end of its log."""


class LlamaServer:
    """One ``llama-server`` process for the duration of a ``with`` block (or ``start()``/``stop()``)."""

    def __init__(
        self,
        binary: str | os.PathLike,
        model: str | os.PathLike,
        *,
        alias: str = "tiny-llama",
        threads: int = 1,
        parallel: int = 8,
        ctx_size: int = 32768,
        n_predict: int = 512,
        extra_args: tuple[str, ...] | list[str] = (),
        host: str = "127.0.0.1",
        startup_timeout: float = 120.0,
    ):
        self.binary = Path(binary)
        self.model = Path(model)
        self.alias = alias
        self.threads = threads
        self.parallel = parallel
        self.ctx_size = ctx_size
        self.n_predict = n_predict
        self.extra_args = list(extra_args)
        self.host = host
        self.port = 0
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self._log: Path | None = None

    @property
    def url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI ``base_url``: ``http://127.0.0.1:PORT/v1``."""
        return self.url + "/v1"

    def argv(self) -> list[str]:
        """The command line (without the port's value decided yet: ``self.port``)."""
        return [
            str(self.binary),
            "-m",
            str(self.model),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "-a",
            self.alias,
            "-t",
            str(self.threads),
            "-np",
            str(self.parallel),
            "-c",
            str(self.ctx_size),
            "--kv-unified",
            "-n",
            str(self.n_predict),
            "--no-webui",
            "--metrics",
            *self.extra_args,
        ]

    def start(self) -> LlamaServer:
        """Start the process and return once ``/health`` answers 200; raise LlamaServerError with its
        log's last lines if it exits or does not get ready in ``startup_timeout`` seconds."""
        for path, what in ((self.binary, "llama-server binary"), (self.model, "model")):
            if not path.is_file():
                raise LlamaServerError(f"{what} not found: {path} (run python scripts/real_server.py)")
        last: Exception | None = None
        for _ in range(3):  # another process may take the free port before the server binds it
            self.port = free_port(self.host)
            fd, log = tempfile.mkstemp(prefix="assay-llama-server-", suffix=".log")
            self._log = Path(log)
            with os.fdopen(fd, "wb") as out:
                self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
            try:
                self._wait_ready()
                return self
            except LlamaServerError as e:
                last = e
                bind_failed = "bind" in self.log_tail().lower() or "address already in use" in self.log_tail().lower()
                self.stop()
                if not bind_failed:
                    raise
        raise last  # type: ignore[misc]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise LlamaServerError(f"llama-server exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with _NO_PROXY_OPENER.open(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass  # not listening yet, or 503 while the model loads
            time.sleep(0.1)
        raise LlamaServerError(f"llama-server not ready after {self.startup_timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log (stdout and stderr)."""
        if self._log is None or not self._log.exists():
            return ""
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def props(self) -> dict:
        """The server's ``/props`` (its build, slots, default generation settings)."""
        with _NO_PROXY_OPENER.open(self.url + "/props", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        """Terminate the process (kill after 10 s) and remove its log."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
