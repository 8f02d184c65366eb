"""Shared fixtures. Every real component a test needs is started here or by the test itself."""

import os
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

# One Prefect home per test session (SQLite locks when shared), offline, before Prefect loads.
_HOME = tempfile.mkdtemp(prefix="assay-prefect-home-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.pop("PREFECT_API_URL", None)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ["ASSAY_LOCK_DIR"] = os.path.join(_HOME, "locks")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def write_config(folder: Path, text: str | None = None, /, *, name: str = "pipelines.yaml", **sections) -> Path:
    """Write a pipelines.yaml into ``folder`` (created if missing) and return its path: ``text``
    dedented as written, or ``sections`` (``artifacts=``, ``models=``, ``pipelines=``...) dumped in
    the order given. Every test that builds a config builds it here, so the file's name and
    encoding are decided once."""
    import yaml

    if (text is None) == (not sections):
        raise TypeError("write_config takes either the text or the sections of a config")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text) if text is not None else yaml.safe_dump(sections, sort_keys=False))
    return path


class FakeServers:
    """Starts the project's fake OpenAI-compatible servers (assay/testing/openai_server.py) on
    127.0.0.1, each in its own process, and stops every one it started on ``close``."""

    def __init__(self) -> None:
        self._started = []

    def __call__(self, **options):
        """A started server (``.url``, ``.base_url``, ``.stats()``, ``.reset()``, ``.stop()``);
        ``options`` are OpenAIServer's (latency, slow_seconds, served_model...)."""
        from assay.testing.openai_server import OpenAIServer

        srv = OpenAIServer(**options).start()
        self._started.append(srv)
        return srv

    def close(self) -> None:
        """Stop every server started here (a server the test already stopped is left alone)."""
        while self._started:
            self._started.pop().stop()


@pytest.fixture()
def fake_server():
    """``fake_server(**options)`` starts a fake OpenAI-compatible server for this test; all of
    them stop when the test ends (call ``.stop()`` to end one sooner)."""
    servers = FakeServers()
    yield servers
    servers.close()


@pytest.fixture(scope="module")
def server(request):
    """One fake OpenAI-compatible server shared by a module's tests, started with the module's
    ``FAKE_SERVER`` options (a dict of OpenAIServer's options; none: the defaults)."""
    servers = FakeServers()
    yield servers(**getattr(request.module, "FAKE_SERVER", {}))
    servers.close()


@pytest.fixture(scope="session")
def llama_server():
    """llama.cpp's ``llama-server`` with the tiny model, on a free 127.0.0.1 port: built first by
    scripts/real_server.py when the cache has no build of the pinned version (never skipped)."""
    import importlib.util

    from assay.testing.llama_server import LlamaServer

    spec = importlib.util.spec_from_file_location("real_server", ROOT / "scripts" / "real_server.py")
    script = sys.modules["real_server"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    built = script.ensure()
    with LlamaServer(built.binary, built.model) as srv:
        srv.build = built
        yield srv


@pytest.fixture(scope="session")
def prefect_server():
    """A temporary Prefect server on a throwaway SQLite database, for flow-level tests."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT


@pytest.fixture()
def example_config(tmp_path) -> Path:
    """A copy of the shipped pipelines.yaml whose relative paths point at the shipped data."""
    text = (ROOT / "pipelines.yaml").read_text().replace("artifacts: data/runs", f"artifacts: {tmp_path}/runs")
    text = text.replace(" data/", f" {ROOT}/data/")
    p = tmp_path / "pipelines.yaml"
    p.write_text(text)
    return p


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_HOME, ignore_errors=True)
