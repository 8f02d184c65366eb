"""The fake OpenAI-compatible server (:mod:`assay.testing.openai_server`) started on demand, for
models whose ``base_url`` is :data:`FAKE_BASE_URL`: a shipped example (``production-traffic``)
then runs offline with ``assay run``, no server to start by hand and no API key.

One server per process, started by the first model that calls it and stopped when the process
exits (it also exits by itself when its parent's end of its standard input closes). The models'
identity (their cache keys) keeps the configured ``base_url``, not the port of the day, so a
response cached on one night serves the next.
"""

import atexit
import threading

#: the ``base_url`` that asks for the fake server, started on demand
FAKE_BASE_URL = "assay-fake:"

_server = None
_lock = threading.Lock()


def is_fake(base_url: str | None) -> bool:
    """Whether a model's ``base_url`` asks for the on-demand fake server."""
    return bool(base_url) and base_url.rstrip("/") == FAKE_BASE_URL


def fake_base_url() -> str:
    """The running fake server's ``.../v1`` URL, starting it first if this process has none."""
    global _server
    with _lock:
        if _server is None or _server.proc is None or _server.proc.poll() is not None:
            # lazy: the server's module (aiohttp's web server) only when one is started
            from assay.testing.openai_server import OpenAIServer

            _server = OpenAIServer(latency=0.02, jitter=0.02, seed=7).start()
            atexit.register(_server.stop)
        return _server.base_url
