"""Worker processes for per-example metrics (no numpy here: a worker starts in a few hundredths of a second): ``workers`` processes, a time limit per example, a
memory limit per worker where the OS enforces one (Linux: ``RLIMIT_AS``).

:func:`run` calls one function on many examples. Each worker is a fresh ``python -m
assay.workers`` talking to this process over two pipes (length-prefixed pickles), so
nothing depends on ``fork`` or on the caller's ``__main__``. A worker loads the function itself
(``loader``: ``"module:attr"`` of a function that returns it, and its arguments), then takes one
example at a time. An example that raises is a score error; one that runs past ``timeout_s``
has its worker killed (and replaced) and is a score error too; so is one whose worker dies
(out of memory, a crash). The caller never sees an exception for an example.

:func:`run` with ``fn`` (a function already in this process) forks its workers on Linux instead:
they start in milliseconds with everything this process imported, for a function whose module
is expensive to import again (an ``evaluate`` module pulls in torch and transformers, seconds
per process).

A worker exits when this process goes away: its pipe closes, and on Linux the kernel kills it
(``PR_SET_PDEATHSIG``) even while it is stuck in an example.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import pickle
import select
import struct
import subprocess
import sys
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from assay.errors import MetricError

#: how long a worker may take to start and load the function
LOAD_TIMEOUT_S = 120.0
_HEADER = struct.Struct("<Q")
_ASSAY_ROOT = str(Path(__file__).resolve().parents[1])


def _write(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return bytes(buf)


def _read(fd: int) -> Any:
    (n,) = _HEADER.unpack(_read_exact(fd, _HEADER.size))
    return pickle.loads(_read_exact(fd, n))


def resolve(target: str):
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_function(target: str, path: str | None = None, base_dir: str | None = None):
    """The function ``package.module:function``, or ``function`` in the file ``path``."""
    if path is not None:
        file = os.path.expanduser(path)
        if base_dir is not None and not os.path.isabs(file):
            file = os.path.join(base_dir, file)
        file = os.path.abspath(file)
        if not os.path.isfile(file):
            raise MetricError(f"no metric file at {file}")
        name = "assay_user_metric_" + str(abs(hash(file)))
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        attr = target.rpartition(":")[2] if ":" in target else target
        obj = module
    else:
        mod_name, _, attr = target.partition(":")
        if not mod_name or not attr:
            raise MetricError(f"function must look like 'package.module:function', got {target!r}")
        try:
            obj = importlib.import_module(mod_name)
        except ImportError:
            if base_dir is None or base_dir in sys.path:
                raise
            sys.path.insert(0, base_dir)  # a module beside the config file
            obj = importlib.import_module(mod_name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise MetricError(f"{target!r}: no attribute {part!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise MetricError(f"{target!r} is not a function")
    return obj


def memory_limit_supported() -> bool:
    return sys.platform.startswith("linux")


def can_fork() -> bool:
    """Whether :func:`run` can fork workers holding a function of this process (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


class _Forked:
    """The ``Popen`` calls :class:`_Worker` makes, for a forked child."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() >= end:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.005)
        return self.returncode


class _Worker:
    def __init__(self, loader: tuple, memory_mb: int | None, fn=None):
        to_child_r, to_child_w = os.pipe()
        to_parent_r, to_parent_w = os.pipe()
        if fn is not None:
            pid = os.fork()
            if pid == 0:  # the child: serve with the function it inherited, never return into the caller's code
                code = 0
                try:
                    os.close(to_child_w)
                    os.close(to_parent_r)
                    _die_with_parent()
                    _serve(to_child_r, to_parent_w, fn, memory_mb)
                except BaseException:  # noqa: BLE001  (the forked child's exit code says it failed)
                    code = 1
                finally:
                    os._exit(code)
            os.close(to_child_r)
            os.close(to_parent_w)
            self.proc = _Forked(pid)
            self.wfd, self.rfd = to_child_w, to_parent_r
            self.state = "starting"
            self.task: int | None = None
            self.deadline: float | None = time.monotonic() + LOAD_TIMEOUT_S
            return
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([_ASSAY_ROOT, *filter(None, [env.get("PYTHONPATH")])])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assay.workers", str(to_child_r), str(to_parent_w)],
            pass_fds=(to_child_r, to_parent_w),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(to_parent_w)
        self.wfd, self.rfd = to_child_w, to_parent_r
        self.state = "starting"
        self.task: int | None = None
        self.deadline: float | None = time.monotonic() + LOAD_TIMEOUT_S
        _write(self.wfd, ("init", loader, memory_mb, list(sys.path)))

    def kill(self) -> int | None:
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait()

    def stop(self) -> None:
        try:
            _write(self.wfd, None)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


def run(
    loader: tuple | None,
    calls: list[tuple[tuple, dict]],
    workers: int,
    timeout_s: float | None = None,
    memory_mb: int | None = None,
    fn=None,
) -> list[tuple[bool, Any]]:
    """``fn(*args, **kwargs)`` for every ``(args, kwargs)`` in ``calls``, ``fn`` loaded in each worker
    by ``resolve(loader[0])(*loader[1:])``; per call ``(True, value)`` or ``(False, error message)``.
    With ``fn`` given (and :func:`can_fork`), the workers are forks of this process holding it."""
    if fn is not None and not can_fork():
        raise RuntimeError("forked workers need Linux")
    n = len(calls)
    results: list[tuple[bool, Any] | None] = [None] * n
    if n == 0:
        return []
    pending = deque(range(n))
    limit = memory_mb if memory_mb and memory_limit_supported() else None
    pool = [_Worker(loader, limit, fn) for _ in range(max(1, min(workers, n)))]
    try:
        while pending or any(w.state == "busy" for w in pool):
            for w in pool:
                if w.state == "idle" and pending:
                    i = pending.popleft()
                    w.state, w.task = "busy", i
                    w.deadline = time.monotonic() + timeout_s if timeout_s else None
                    try:
                        _write(w.wfd, ("call", i, calls[i]))
                    except (OSError, pickle.PicklingError, TypeError, AttributeError) as e:
                        results[i] = (False, f"could not send the example to a worker: {type(e).__name__}: {e}")
                        w.state, w.task, w.deadline = "idle", None, None
            deadlines = [w.deadline for w in pool if w.deadline is not None]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            ready, _, _ = select.select([w.rfd for w in pool], [], [], wait)
            for k, w in enumerate(pool):
                if w.rfd not in ready:
                    continue
                try:
                    msg = _read(w.rfd)
                except (EOFError, OSError, pickle.UnpicklingError):
                    code = w.kill()
                    if w.state == "starting":
                        raise MetricError(f"a metric worker process exited while starting (exit code {code})") from None
                    if w.task is not None:
                        why = "killed (out of memory?)" if code in (-9, 137) else f"exit code {code}"
                        results[w.task] = (False, f"worker process died: {why}")
                    pool[k] = _Worker(loader, limit, fn)
                    continue
                if msg[0] == "fatal":
                    raise MetricError(f"a metric worker could not load the metric: {msg[1]}")
                if msg[0] == "ready":
                    w.state, w.deadline = "idle", None
                    continue
                kind, i, value = msg
                results[i] = (kind == "ok", value)
                w.state, w.task, w.deadline = "idle", None, None
            now = time.monotonic()
            for k, w in enumerate(pool):
                if w.deadline is not None and now >= w.deadline:
                    if w.state == "starting":
                        raise MetricError(f"a metric worker did not start within {LOAD_TIMEOUT_S:g} s")
                    results[w.task] = (False, f"timed out after {timeout_s:g} s")
                    w.kill()
                    pool[k] = _Worker(loader, limit, fn)
    finally:
        for w in pool:
            w.stop()
    return [r if r is not None else (False, "not run") for r in results]


# ------------------------------------------------------------------------------------------------ the worker


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001  # pragma: no cover - best effort
        pass


def _limit_memory(mb: int) -> None:
    # lazy: Unix only
    import resource

    try:
        with open("/proc/self/statm") as f:
            vm_pages = int(f.read().split()[0])
        base = vm_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        base = 0
    limit = base + mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _main(rfd: int, wfd: int) -> None:
    _die_with_parent()
    try:
        _, loader, memory_mb, path = _read(rfd)
    except EOFError:
        return
    sys.path[:] = path
    try:
        fn = resolve(loader[0])(*loader[1:])
    except BaseException as e:  # noqa: BLE001  (a user's module can raise anything while it loads: sent to the parent)
        _write(wfd, ("fatal", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=-3)}"))
        return
    _serve(rfd, wfd, fn, memory_mb)


def _serve(rfd: int, wfd: int, fn, memory_mb: int | None) -> None:
    """A worker's loop: one example at a time until the pipe closes."""

    if memory_mb:
        _limit_memory(memory_mb)
    _write(wfd, ("ready",))
    while True:
        try:
            msg = _read(rfd)
        except EOFError:
            return
        if msg is None:
            return
        _, i, (args, kwargs) = msg
        try:
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                value = asyncio.run(value)
            reply = ("ok", i, value)
        except MemoryError:
            reply = ("error", i, f"MemoryError: over the worker's memory limit ({memory_mb} MB)" if memory_mb else "MemoryError")
        except BaseException as e:  # noqa: BLE001  (an example's failure, whatever it is, is that example's)
            reply = ("error", i, f"{type(e).__name__}: {e}")
        try:
            _write(wfd, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as e:
            _write(wfd, ("error", i, f"the metric returned a value that cannot be sent back: {type(e).__name__}: {e}"))


if __name__ == "__main__":
    _main(int(sys.argv[1]), int(sys.argv[2]))
