"""The chart engine: vl-convert in a child process, started early and kept for this process's life.

vl-convert renders Vega-Lite in an embedded V8 engine. The engine takes about a second of CPU to
start, once per process, and holds the GIL while it does, so a thread cannot hide it. A run
therefore starts the engine in a child process when it begins (:func:`start`, called by
:func:`assay.stages.run_stages`), where it starts on the other core while the models are called;
the report stage's charts are then rendered there (:func:`render`), in the report stage, as
before. The child renders one chart at a time and exits when this process closes its pipe (a
killed run leaves nothing behind). When no child can be used, charts render in this process.

This module imports nothing heavy: the stages import it before the models are called.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading

from assay.errors import AssayError

#: The child: warms the engine with a one-point chart, then renders one spec per line of stdin.
_CHILD = r"""
import json, sys
import vl_convert as vlc
vlc.vegalite_to_svg({"mark": "point", "data": {"values": [{"x": 1}]},
                     "encoding": {"x": {"field": "x", "type": "quantitative"}}}, allowed_base_urls=[])
out = sys.stdout
for line in sys.stdin:
    try:
        r = {"svg": vlc.vegalite_to_svg(json.loads(line), allowed_base_urls=[])}
    except Exception as e:  # vl-convert raises a bare ValueError with the JS stack
        lines = [x.strip() for x in str(e).splitlines() if x.strip() and not x.strip().startswith("at ")]
        r = {"error": " ".join(lines[:2]) or type(e).__name__}
    out.write(json.dumps(r) + "\n")
    out.flush()
"""

_lock = threading.Lock()
_child: subprocess.Popen | None = None
_failed = False


class RenderError(AssayError, RuntimeError):
    """vl-convert could not render a specification (the first line of its message)."""


def start() -> None:
    """Start the engine's child process if none runs (idempotent, returns at once).
    ``ASSAY_CHART_ENGINE=inprocess`` keeps every chart in this process."""
    global _child, _failed
    if os.environ.get("ASSAY_CHART_ENGINE") == "inprocess":
        return
    with _lock:
        if (_child is not None and _child.poll() is None) or _failed:
            return
        try:
            _child = subprocess.Popen(
                [sys.executable, "-c", _CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError:
            _child, _failed = None, True


def stop() -> None:
    """Close the child's pipe and wait for it (it also exits on its own when this process ends)."""
    global _child
    with _lock:
        child, _child = _child, None
    if child is not None:
        try:
            child.stdin.close()
            child.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            child.kill()


atexit.register(stop)


def render(spec: dict) -> str:
    """The SVG of Vega-Lite ``spec``: by the child when one runs (started now if needed), else in
    this process. Raises :class:`RenderError` when vl-convert refuses the spec."""
    global _child, _failed
    start()
    payload = (json.dumps(spec, separators=(",", ":")) + "\n").encode()
    with _lock:
        child = _child
        if child is not None:
            try:
                child.stdin.write(payload)
                child.stdin.flush()
                line = child.stdout.readline()
            except (OSError, ValueError):
                line = b""
            if line:
                reply = json.loads(line)
                if "error" in reply:
                    raise RenderError(reply["error"])
                return reply["svg"]
            _child, _failed = None, True  # the child died: render here from now on
            child.kill()
    return _render_here(spec)


def _render_here(spec: dict) -> str:
    # lazy: keeps vl_convert out of start-up
    import vl_convert as vlc

    try:
        return vlc.vegalite_to_svg(spec, allowed_base_urls=[])
    except Exception as e:
        lines = [x.strip() for x in str(e).splitlines() if x.strip() and not x.strip().startswith("at ")]
        raise RenderError(" ".join(lines[:2]) or type(e).__name__) from e
