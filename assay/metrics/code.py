"""Code execution: ``pass_at_k`` runs each generated program with its problem's tests.

Config::

    metrics:
      - {name: pass_at_k, workers: 4, timeout_s: 10, memory_mb: 512, args: {k: 1}}

For each example the candidate program (the model's output; the first fenced code block when
there is one) is written to a fresh temporary folder with the example's tests after it (the
reference, or the row's column ``args.tests``), and run there as ``python -I`` in a subprocess of
its own session: it passes when it exits with status 0 within ``timeout_s`` (default 10 s).
``memory_mb`` (default 512) caps its address space and ``timeout_s`` its CPU time where the OS
enforces limits (Linux, macOS for CPU); on a timeout its whole process group is killed. Up to
``workers`` programs run at once (threads waiting on their subprocesses). The first lines of a
failure's stderr (or "timed out") are kept in scores.parquet's ``detail``.

With several samples per example (a ``sample`` column in the responses), the per-example score
is the unbiased pass@k estimator of Chen et al. (2021), ``1 − C(n−c, k) / C(n, k)`` over its n
samples of which c pass (NaN where n < k); with one sample and k = 1 it is pass/fail.

This is not a sandbox: the generated code runs with your privileges, on your machine. Run
untrusted models' code inside a container or VM that has nothing to lose.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from math import comb
from typing import Any

import numpy as np

from assay.errors import MetricError
from assay.metrics.base import Metric
from assay.metrics.function import ExampleScores
from assay.metrics.text import is_missing, to_text

__all__ = ["PassAtK", "extract_code", "pass_at_k_estimate"]

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```", re.DOTALL)


def extract_code(text: str) -> str:
    """The first ```python (or unlabelled) fenced block of ``text``, else ``text`` itself."""
    blocks = _FENCE.findall(text)
    for lang, body in blocks:
        if lang.lower() in ("", "python", "py", "python3"):
            return body
    return text


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c passing (Chen et al., 2021)."""
    if n < k:
        return float("nan")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


_LAUNCHER = (
    "import resource, runpy, sys\n"
    "mb, cpu = int(sys.argv[1]), int(sys.argv[2])\n"
    "try:\n"
    "    if mb: resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))\n"
    "    if cpu: resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))\n"
    "except (ValueError, OSError): pass\n"
    "sys.argv = [sys.argv[3]]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_program(source: str, timeout_s: float, memory_mb: int | None) -> tuple[bool, str]:
    """Run Python ``source`` in a fresh folder and session; (passed, detail)."""
    with tempfile.TemporaryDirectory(prefix="assay-exec-") as tmp:
        file = os.path.join(tmp, "candidate.py")
        with open(file, "w", encoding="utf-8") as f:
            f.write(source)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONHASHSEED": "0",
            "HOME": tmp,
            "TMPDIR": tmp,
        }
        # the limits are set by a launcher in the child itself (no preexec_fn: this runs in threads)
        cmd = [sys.executable, "-I", "-B", "-c", _LAUNCHER, str(int(memory_mb or 0)), str(int(timeout_s) + 1), file]
        proc = subprocess.Popen(
            cmd,
            cwd=tmp,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError, AttributeError):
                proc.kill()
            proc.communicate()
            return False, f"timed out after {timeout_s:g} s"
        if proc.returncode == 0:
            return True, "passed"
        lines = [ln for ln in err.decode("utf-8", "replace").strip().splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0:
            why = f"killed by signal {-proc.returncode}" + (f": {why}" if lines else "")
        return False, why[:500]


class PassAtK(Metric):
    """pass@k: the share of problems whose generated program passes the problem's tests."""

    name = "pass_at_k"
    title = "pass@k"
    decomposable = True
    needs_rows = True
    references_doc = "the tests (Python code run after the candidate), unless ``tests`` names a column"

    def __init__(
        self,
        k: int = 1,
        tests: str | None = None,
        workers: int | None = None,
        timeout_s: float | None = None,
        memory_mb: int | None = None,
        extract: bool = True,
    ):
        """
        :param k: the k of pass@k (needs at least k samples per example).
        :param tests: a dataset column holding the tests; default: the reference.
        :param workers: programs run at once.
        :param timeout_s: a program's time limit (default 10 s).
        :param memory_mb: a program's memory limit (default 512 MB).
        :param extract: run the first fenced code block of the output rather than the whole output.
        """
        if int(k) < 1:
            raise MetricError(f"pass_at_k: k must be >= 1, got {k}")
        self.k = int(k)
        self.tests = tests
        self.workers = int(workers or 1)
        self.timeout_s = float(timeout_s or 10.0)
        self.memory_mb = int(memory_mb) if memory_mb else 512
        self.extract = bool(extract)
        self.options = {
            "k": self.k,
            "tests": tests,
            "workers": self.workers,
            "timeout_s": self.timeout_s,
            "memory_mb": self.memory_mb,
            "extract": self.extract,
        }

    def _tests_of(self, ref: Any, row: dict | None) -> str | None:
        t = (row or {}).get(self.tests) if self.tests else ref
        return None if is_missing(t) else to_text(t)

    def score_each(self, predictions, references):
        return self.score_examples(predictions, references, None).values[""]

    def score_examples(self, predictions, references, rows) -> ExampleScores:
        preds, refs = list(predictions), list(references)
        n = len(preds)
        rows = rows if rows is not None else [None] * n
        values = np.full(n, np.nan)
        details: list[str | None] = [None] * n
        errors: list[str | None] = [None] * n
        jobs = {}
        for i in range(n):
            tests = self._tests_of(refs[i], rows[i])
            if tests is None:
                details[i] = "no tests"
                continue
            out = to_text(preds[i])
            if out is None:
                values[i], details[i] = 0.0, "no output (failed call)"
                continue
            code = extract_code(out) if self.extract else out
            jobs[i] = code.rstrip() + "\n\n\n" + tests.strip() + "\n"

        def one(i):
            try:
                return i, run_program(jobs[i], self.timeout_s, self.memory_mb), None
            except Exception as e:  # noqa: BLE001  (the harness failed, not the candidate)
                return i, None, f"{type(e).__name__}: {e}"

        with ThreadPoolExecutor(max(1, min(self.workers, len(jobs) or 1)), thread_name_prefix="assay-exec") as ex:
            for i, res, err in ex.map(one, list(jobs)):
                if err is not None:
                    errors[i] = err
                else:
                    values[i], details[i] = float(res[0]), res[1]
        return ExampleScores({"": values}, details, errors)

    def combine_samples(self, ex_index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
        ok = ~np.isnan(values)
        total = np.bincount(ex_index[ok], minlength=n)
        passed = np.bincount(ex_index[ok], weights=values[ok], minlength=n)
        return np.array([pass_at_k_estimate(int(t), int(round(c)), self.k) if t else np.nan for t, c in zip(total, passed)])
