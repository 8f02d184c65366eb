"""The chart engine's child process (assay.report.engine): same SVG as in this process, errors
named, a dead child replaced by rendering here, and nothing left behind when a run is killed."""

import os
import signal
import subprocess
import sys
import time

import pytest

from assay.report import engine

SPEC = {
    "mark": "bar",
    "width": 120,
    "height": 80,
    "data": {"values": [{"m": "a", "v": 0.8}, {"m": "b", "v": 0.6}]},
    "encoding": {"x": {"field": "m", "type": "nominal"}, "y": {"field": "v", "type": "quantitative"}},
}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_child_draws_what_this_process_draws_and_names_a_bad_spec():
    engine.start()
    child = engine._child
    assert child is not None and child.poll() is None
    assert engine.render(SPEC) == engine._render_here(SPEC)
    with pytest.raises(engine.RenderError) as e:
        engine.render({"mark": "no-such-mark", "data": {"values": []}})
    assert "conversion failed: TypeError" in str(e.value) and "\n" not in str(e.value) and "jsdelivr" not in str(e.value)
    assert engine.render(SPEC).startswith("<svg")  # the child survives a refused spec
    assert engine._child is child


def test_a_dead_child_is_replaced_by_rendering_here():
    engine.start()
    engine._child.kill()
    engine._child.wait()
    assert engine.render(SPEC) == engine._render_here(SPEC)  # died between charts: a new child
    # a child that dies while drawing (reads the spec, answers nothing): drawn here from then on
    engine.stop()
    engine._child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert engine.render(SPEC) == engine._render_here(SPEC)
        assert engine._child is None and engine._failed
    finally:
        engine._failed = False  # later tests in this process may start a child again


def test_the_child_exits_with_a_killed_parent(tmp_path):
    code = (
        "import sys, time; from assay.report import engine; engine.start(); print(engine._child.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    pid = int(parent.stdout.readline())
    assert _alive(pid)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 30  # the child may still be starting its engine
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)


def test_a_run_starts_the_engine_before_its_stages(tmp_path, monkeypatch):
    from datetime import date

    from assay.stages import run_local
    from tests.helpers import write_replay_inputs

    engine.stop()
    seen = {}
    import assay.stages.load as load

    real = load.run

    def spy(ctx):
        seen["child"] = engine._child
        return real(ctx)

    monkeypatch.setattr(load, "run", spy)
    cfg = write_replay_inputs(tmp_path, ["x", "y", "x", "y"], artifacts=str(tmp_path / "runs"))
    ctx = run_local(cfg, "p", date(2026, 11, 1))
    assert seen["child"] is not None and seen["child"].poll() is None
    assert "<svg" in open(os.path.join(ctx.folder.path(""), "report.html")).read()
