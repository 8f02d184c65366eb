"""What the endpoint says it served: ``response_model`` and ``system_fingerprint`` on every
response row (plain and streamed calls), and the manifest's ``served`` when they differ from the
model requested. Against the fake server told to answer under its own name, as a self-hosted
server does."""

from datetime import date

import pytest

from assay.responses import read_responses
from assay.stages import run_local
from tests.stages.test_invoke import make_config

DAY = date(2026, 11, 1)


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("ASSAY_TEST_KEY", "sk-test-SECRET-5f3a9c")


@pytest.mark.parametrize("stream", [False, True])
def test_rows_record_the_served_name_and_fingerprint(tmp_path, stream, fake_server):
    srv = fake_server(served_model="tiny-served.gguf", system_fingerprint="b1-abc123")
    extra = "stream: true" if stream else ""
    cfg = make_config(tmp_path, srv.base_url, extra_model=extra, n=12)
    ctx = run_local(str(cfg), "p", DAY)
    srv.stop()
    resp = read_responses(ctx.folder).to_pandas()
    assert len(resp) == 12 and resp["error"].isna().all()
    assert (resp["response_model"] == "tiny-served.gguf").all()
    assert (resp["system_fingerprint"] == "b1-abc123").all()
    served = ctx.folder.manifest()["stages"]["invoke"]["served"]
    assert served == {
        "fake": {"requested": "mock-model", "response_model": ["tiny-served.gguf"], "system_fingerprint": ["b1-abc123"]}
    }


def test_same_name_and_no_fingerprint_leave_the_manifest_alone(tmp_path, fake_server):
    srv = fake_server(system_fingerprint=None)
    cfg = make_config(tmp_path, srv.base_url, n=6)
    ctx = run_local(str(cfg), "p", DAY)
    srv.stop()
    resp = read_responses(ctx.folder).to_pandas()
    assert (resp["response_model"] == "mock-model").all()
    assert resp["system_fingerprint"].isna().all()
    assert "served" not in ctx.folder.manifest()["stages"]["invoke"]


def test_the_fake_servers_command_line_sets_name_and_fingerprint():
    from assay.testing.openai_server import ServerConfig, _build_parser

    args = _build_parser().parse_args(["--served-model", "x.gguf", "--system-fingerprint", ""])
    assert args.served_model == "x.gguf" and args.system_fingerprint == ""
    cfg = ServerConfig(served_model="x.gguf", system_fingerprint=None)
    back = _build_parser().parse_args(cfg.to_argv())
    assert back.served_model == "x.gguf" and back.system_fingerprint == ""
