"""The import graph: the config imports no other part of Assay, and no module of assay/ is in a cycle.

The import checks run in a fresh interpreter, since a module another test imported already would hide
them; the cycle check reads the source (grimp, as ``lint-imports`` does), so that an import inside a
function counts as much as one at the top.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def _modules() -> list[str]:
    """Every module under assay/, but the evaluate scripts in assay/metrics/modules: those are loaded by
    path with ``evaluate.load`` (see that package's docstring), and each import of evaluate takes seconds."""
    out = []
    for p in sorted((ROOT / "assay").rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts[:3] == ["assay", "metrics", "modules"] and len(parts) > 3:
            continue
        out.append(".".join(parts))
    return out


@pytest.mark.parametrize("module", ["assay.config", "assay.config.schema", "assay.config.loading"])
def test_the_config_imports_no_other_part_of_assay(module):
    """``assay.config`` is the bottom layer: loading a config imports no provider, metric, dataset or
    run code (only the name registry's error type and the error root)."""
    code = (
        f"import {module}, sys; from assay.config import load_config; "
        "bad = [m for m in sys.modules if m.startswith('assay.') and not m.startswith(('assay.config', 'assay.registry', 'assay.errors'))]; "
        "assert not bad, bad"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr


def test_no_module_of_assay_is_in_an_import_cycle():
    """No chain of imports leads from a module of assay/ back to itself, counting the imports made
    inside functions (a cycle that a lazy import keeps from failing at import time is still one)."""
    import grimp

    graph = grimp.build_graph("assay", cache_dir=None)
    assert "assay.preflight.request" in graph.modules and "assay.stages.invoke" in graph.modules  # this tree's assay
    cycles = sorted(
        {
            tuple(sorted((a, b)))
            for a in graph.modules
            for b in graph.find_modules_directly_imported_by(a)
            if graph.chain_exists(importer=b, imported=a)
        }
    )
    assert not cycles, cycles


def test_every_module_imports_first_in_a_fresh_interpreter():
    """A module in an import cycle fails with ImportError when it is the first one imported."""
    modules = _modules()
    assert {
        "assay.preflight.checks",
        "assay.providers.base",
        "assay.metrics.judge",
        "assay.runs.context",
        "assay.stages.invoke",
    } <= set(modules)
    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda m: (m, _python(f"import {m}")), modules))
    failed = {m: r.stderr.strip().splitlines()[-1] for m, r in results if r.returncode != 0}
    assert not failed, failed


def test_a_fresh_run_reaches_its_first_call_without_pandas(tmp_path):
    """pandas takes half a second to import; nothing before a fresh run's first model call needs it
    (``Schema.empty_table`` and ``pa.array`` of Python objects import it, so the resume check of a
    model with no earlier parts or journal must use neither)."""
    code = (
        f"import sys; from assay.store import Store, RunFolder; from assay.responses import compact; "
        f"from assay.calling import Options, Budget; "
        f"rf = RunFolder(Store({str(tmp_path)!r}), 'p', '2026-11-01', 'r1'); done = compact(rf, 'm'); "
        "assert done.seq == 0 and not done.ids; bad = [m for m in sys.modules if m.split('.')[0] == 'pandas']; "
        "assert not bad, bad[:3]"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr[-2000:]
