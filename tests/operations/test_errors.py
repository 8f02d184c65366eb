"""Expected failures are Assay's own (:class:`assay.errors.AssayError`) and end a run with one line;
anything else, a ``ValueError`` from pyarrow included, keeps its traceback."""

import os
import subprocess
import sys

import pytest

from assay.errors import AssayError
from tests.conftest import write_config


def test_the_failures_assay_expects_share_one_root_and_keep_their_builtin_bases():
    from assay.capacity import CapacityError
    from assay.config import ConfigError
    from assay.dataset import DatasetError, UnreadableSource
    from assay.errors import ArtifactMissing, DataError, MetricError, ProviderSetupError
    from assay.prompting import PromptError
    from assay.providers.base import ProviderError
    from assay.providers.openai_compat import MissingSecret
    from assay.reprice import RepriceError
    from assay.reproduce import ReproduceError
    from assay.runs import GateFailed, RunFailed
    from assay.store import NotARunFolder

    for cls in (
        CapacityError,
        ConfigError,
        DatasetError,
        UnreadableSource,
        ArtifactMissing,
        DataError,
        MetricError,
        ProviderSetupError,
        PromptError,
        ProviderError,
        MissingSecret,
        RepriceError,
        ReproduceError,
        GateFailed,
        RunFailed,
        NotARunFolder,
    ):
        assert issubclass(cls, AssayError), cls
    # code that caught the built-in types before still does
    assert issubclass(DatasetError, ValueError) and issubclass(MetricError, ValueError)
    assert issubclass(ArtifactMissing, FileNotFoundError) and issubclass(RunFailed, RuntimeError)
    assert issubclass(MissingSecret, RuntimeError)


def test_the_task_wrapper_turns_only_assay_errors_into_failed_states():
    import pyarrow as pa
    from prefect.states import State

    from assay.errors import MetricError
    from tasks import run_stage

    class Stage:
        NAME = "score"

        def __init__(self, exc):
            self.exc = exc

        def run(self, ctx):
            raise self.exc

    state = run_stage(Stage(MetricError("metric 'm': compute() result has no key 'x'")), None)
    assert isinstance(state, State) and state.is_failed()
    assert state.message == "score: metric 'm': compute() result has no key 'x'"
    try:
        pa.array([1, "two"])  # a real pyarrow ValueError, as a bug inside a stage would raise it
    except ValueError as e:
        bug = e
    with pytest.raises(pa.ArrowInvalid):
        run_stage(Stage(bug), None)
    with pytest.raises(KeyError):
        run_stage(Stage(KeyError("column")), None)


MODULE = """
import datasets
import evaluate
import pyarrow as pa


class Broken(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="d", citation="", inputs_description="",
                                   features=datasets.Features({"predictions": datasets.Value("string"),
                                                               "references": datasets.Value("string")}))

    def _compute(self, predictions, references):
        if MODE == "bug":
            pa.array([1, "two"])  # pyarrow raises ArrowInvalid, a ValueError: a bug, not a user's mistake
        return {"something_else": 1.0}
"""


@pytest.mark.parametrize("mode", ["bug", "expected"])
def test_a_bug_keeps_its_traceback_with_debug_and_an_expected_failure_is_one_line(tmp_path, prefect_server, project_root, mode):
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "data.csv").write_text("id,text,label\n1,a,a\n2,b,a\n3,c,c\n")
    (tmp_path / "broken.py").write_text(MODULE.replace("MODE", repr(mode)))
    cfg = write_config(
        tmp_path,
        f"""
        artifacts: {tmp_path}/runs
        models:
          m: {{provider: replay, output_column: text}}
        pipelines:
          p:
            dataset: {{source: data.csv, id: id, reference: label}}
            models: [m]
            metrics: [{{path: broken.py, args: {{key: acc}}}}]
    """,
    )
    env = dict(os.environ, PREFECT_API_URL=PREFECT_API_URL.value())
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "run",
            "p",
            "--config",
            str(cfg),
            "--as-of",
            "2026-10-01",
            "--no-progress",
            "--debug",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=project_root,
        timeout=300,
    )
    assert r.returncode != 0
    if mode == "bug":
        assert "Traceback (most recent call last)" in r.stderr and "ArrowInvalid" in r.stderr, r.stderr[-3000:]
    else:
        assert "Traceback" not in r.stderr, r.stderr[-3000:]
        assert "run failed: score: metric 'broken': compute() result has no key 'acc'" in r.stderr, r.stderr[-3000:]
