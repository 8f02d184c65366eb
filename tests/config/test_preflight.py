"""The preflight: every bad input that the config and the files show is named before anything is written.

:data:`BAD_INPUTS` is the list of bad inputs tested, one row each: a name, the change that makes a
good workspace bad, the key path(s) the error must name and the file it must name. A script can
print it (``python -m tests.config.test_preflight`` prints it as a Markdown table). Each row is checked
twice: in this process (:func:`assay.preflight.load_checked` then :func:`assay.preflight.preflight`, a
ConfigError) and through ``assay run`` in a subprocess (exit 2, the key path and the file on
standard error, no traceback, no artifact root, no Prefect home).
"""

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from assay.config import ConfigError, load_config
from assay.preflight import load_checked, preflight

ROOT = Path(__file__).resolve().parents[2]
AS_OF = date(2026, 11, 1)

GOOD = """
artifacts: runs
models:
  rep: {provider: replay, source: log.parquet}
  base: {provider: sklearn, estimator: majority}
  grader: {provider: openai, model: m, base_url: "http://127.0.0.1:9/v1"}
pipelines:
  p:
    dataset:
      source: test.parquet
      train: train.parquet
      id: id
      reference: label
      slices: [lang, channel]
      partition: {column: created_at}
    prompt: {template: "Ticket: {text}"}
    models: [rep, base]
    metrics: [accuracy]
"""

ROWS = {
    "id": ["e1", "e2", "e3", "e4"],
    "text": ["refund please", "app crashes", "where is my parcel", "reset password"],
    "label": ["refund", "technical", "shipping", "account"],
    "lang": ["en", "de", "en", "fr"],
    "channel": ["email", "chat", "email", "chat"],
    "created_at": [date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3), date(2026, 10, 4)],
}


def make_workspace(d: Path) -> Path:
    """A workspace every check passes: dataset, train file, replay log and config; returns the config."""
    pq.write_table(pa.table(ROWS), d / "test.parquet")
    pq.write_table(pa.table({"text": ROWS["text"], "label": ROWS["label"]}), d / "train.parquet")
    pq.write_table(pa.table({"id": ROWS["id"], "output": ROWS["label"]}), d / "log.parquet")
    cfg = d / "pipelines.yaml"
    cfg.write_text(textwrap.dedent(GOOD))
    return cfg


# ------------------------------------------------------------------------------------------------ the bad inputs
def edit(old: str, new: str) -> Callable[[Path], None]:
    """A change of the config's text (``old`` must be in it)."""

    def change(d: Path):
        cfg = d / "pipelines.yaml"
        text = cfg.read_text()
        assert old in text, old
        cfg.write_text(text.replace(old, new))

    return change


def remove(name: str) -> Callable[[Path], None]:
    return lambda d: (d / name).unlink()


def write_bytes(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda d: (d / name).write_bytes(data)


def dataset(**changes) -> Callable[[Path], None]:
    """The dataset with some columns replaced."""
    return lambda d: pq.write_table(pa.table({**ROWS, **changes}), d / "test.parquet")


def run_args(**kw) -> Callable[[Path], dict]:
    """Not a change of the workspace but of the run's request (``pipeline``, ``sample``,
    ``artifacts``: ``--artifacts``, ``env``: variables set for the run); ``{d}`` in ``artifacts``
    is the workspace."""
    return lambda d: {k: v.replace("{d}", str(d)) if k == "artifacts" else v for k, v in kw.items()}


def both(*changes) -> Callable[[Path], dict]:
    def change(d: Path):
        out = {}
        for c in changes:
            args = c(d)
            out.update(args if isinstance(args, dict) else {})
        return out

    return change


class BadInput(NamedTuple):
    name: str  #: what is wrong
    mutate: Callable[[Path], dict | None]  #: turns the good workspace bad; may return run arguments (see run_args)
    key: str  #: the key path(s) the error names, ", " between several
    file: str | None  #: the file (in the workspace) the error names; None: the config file


SYNTAX_ERROR_METRIC = "import evaluate\n\ndef broken(:\n    pass\n"

BAD_INPUTS: list[BadInput] = [
    BadInput("missing dataset file", remove("test.parquet"), "pipelines.p.dataset.source", "test.parquet"),
    BadInput(
        "corrupt dataset file", write_bytes("test.parquet", b"this is not parquet"), "pipelines.p.dataset.source", "test.parquet"
    ),
    BadInput(
        "dataset file with no rows",
        lambda d: pq.write_table(pa.table(ROWS).slice(0, 0), d / "test.parquet"),
        "pipelines.p.dataset.source",
        "test.parquet",
    ),
    BadInput(
        "dataset format not told by its name",
        both(lambda d: (d / "test.parquet").rename(d / "test.xlsx"), edit("source: test.parquet", "source: test.xlsx")),
        "pipelines.p.dataset.format",
        "test.xlsx",
    ),
    BadInput("missing train file", remove("train.parquet"), "pipelines.p.dataset.train", "train.parquet"),
    BadInput(
        "corrupt train file", write_bytes("train.parquet", b"PAR1 and nothing else"), "pipelines.p.dataset.train", "train.parquet"
    ),
    BadInput("no train file for a conventional model", edit("      train: train.parquet\n", ""), "models.base.train", None),
    BadInput("missing replay log", remove("log.parquet"), "models.rep.source", "log.parquet"),
    BadInput("id column missing", edit("id: id", "id: ticket_id"), "pipelines.p.dataset.id", "test.parquet"),
    BadInput(
        "reference column missing", edit("reference: label", "reference: gold"), "pipelines.p.dataset.reference", "test.parquet"
    ),
    BadInput(
        "slice column missing",
        edit("slices: [lang, channel]", "slices: [lang, region]"),
        "pipelines.p.dataset.slices[1]",
        "test.parquet",
    ),
    BadInput(
        "partition column missing",
        edit("column: created_at", "column: opened_at"),
        "pipelines.p.dataset.partition.column",
        "test.parquet",
    ),
    BadInput(
        "partition column not dates", dataset(created_at=[1, 2, 3, 4]), "pipelines.p.dataset.partition.column", "test.parquet"
    ),
    BadInput(
        "template field missing",
        edit("Ticket: {text}", "Ticket: {subject} {text}"),
        "pipelines.p.prompt.template",
        "test.parquet",
    ),
    BadInput(
        "dataset empty after as_of",
        dataset(created_at=[date(2027, 1, d) for d in (1, 2, 3, 4)]),
        "pipelines.p.dataset.partition",
        "test.parquet",
    ),
    BadInput("sample leaving 0 rows", run_args(sample=0), "sample", None),
    BadInput("duplicate ids", dataset(id=["e1", "e2", "e2", "e4"]), "pipelines.p.dataset.id", "test.parquet"),
    BadInput(
        "judge model that cannot answer prompts",
        edit("metrics: [accuracy]", "metrics: [accuracy, {name: judge, judge: base}]"),
        "pipelines.p.metrics[1].judge",
        None,
    ),
    BadInput(
        "judge API key variable not set",
        both(
            edit(
                'base_url: "http://127.0.0.1:9/v1"}', 'base_url: "http://127.0.0.1:9/v1", api_key_env: ASSAY_PREFLIGHT_UNSET_KEY}'
            ),
            edit("metrics: [accuracy]", "metrics: [accuracy, {name: judge, judge: grader}]"),
        ),
        "models.grader.api_key_env",
        None,
    ),
    BadInput(
        "metric file that does not load (syntax error)",
        both(
            lambda d: (d / "broken_metric.py").write_text(SYNTAX_ERROR_METRIC),
            edit("metrics: [accuracy]", "metrics: [accuracy, {path: broken_metric.py}]"),
        ),
        "pipelines.p.metrics[1].path",
        "broken_metric.py",
    ),
    BadInput(
        "metric file missing",
        edit("metrics: [accuracy]", "metrics: [accuracy, {path: no_such_metric.py}]"),
        "pipelines.p.metrics[1].path",
        "no_such_metric.py",
    ),
    BadInput(
        "metric path that is a folder",
        both(
            lambda d: (d / "my_metrics").mkdir(),
            edit("metrics: [accuracy]", "metrics: [accuracy, {path: my_metrics, function: score}]"),
        ),
        "pipelines.p.metrics[1].path",
        "my_metrics",
    ),
    BadInput(
        "metric path with a control character",
        edit("metrics: [accuracy]", 'metrics: [accuracy, {path: "tone\\x01.py"}]'),
        "pipelines.p.metrics[1].path",
        None,
    ),
    BadInput("artifacts: with a control character", edit("artifacts: runs", 'artifacts: "ru\\x1bns"'), "artifacts", None),
    BadInput("artifacts: with an unknown scheme", edit("artifacts: runs", "artifacts: nosuch://bucket/assay"), "artifacts", None),
    BadInput("--artifacts with a control character", run_args(artifacts="{d}/ru\x01ns"), "--artifacts", None),
    BadInput("--artifacts with an unknown scheme", run_args(artifacts="nosuch://bucket/assay"), "--artifacts", None),
    BadInput("ASSAY_ARTIFACTS with an unknown scheme", run_args(env={"ASSAY_ARTIFACTS": "bucket://x"}), "ASSAY_ARTIFACTS", None),
    BadInput("pipeline name with ..", both(edit("\n  p:\n", "\n  ..:\n"), run_args(pipeline="..")), "pipelines...", None),
    BadInput(
        "pipeline name with /", both(edit("\n  p:\n", "\n  team/p:\n"), run_args(pipeline="team/p")), "pipelines.team/p", None
    ),
    BadInput(
        "model name with a control character",
        both(edit("  rep: {", '  "re\\ap": {'), edit("models: [rep, base]", 'models: ["re\\ap", base]')),
        "models.'re\\x07p'",
        None,
    ),
    BadInput(
        "several problems at once",
        both(remove("log.parquet"), edit("id: id", "id: ticket_id"), edit("Ticket: {text}", "Ticket: {subject} {text}")),
        "models.rep.source, pipelines.p.dataset.id, pipelines.p.prompt.template",
        None,
    ),
]


def bad_workspace(d: Path, bad: BadInput) -> tuple[Path, dict]:
    cfg = make_workspace(d)
    args = bad.mutate(d)
    args = args if isinstance(args, dict) else {}  # a change of the files returns nothing of use
    return cfg, {
        "pipeline": args.get("pipeline", "p"),
        "sample": args.get("sample"),
        "artifacts": args.get("artifacts"),
        "env": args.get("env") or {},
    }


def expected_file(d: Path, bad: BadInput) -> str:
    return str(d / bad.file) if bad.file else str(d / "pipelines.yaml")


# ------------------------------------------------------------------------------------------------ in this process
def preflight_error(
    cfg: Path, pipeline: str = "p", sample: int | None = None, as_of: date = AS_OF, artifacts: str | None = None
) -> ConfigError:
    """What ``assay run`` does before it writes anything: load the config, then preflight the run."""
    with pytest.raises(ConfigError) as e:
        loaded = load_checked(cfg)
        preflight(loaded, pipeline, as_of, sample=sample, artifacts=artifacts)
    return e.value


def test_the_good_workspace_passes(tmp_path):
    cfg = make_workspace(tmp_path)
    preflight(load_checked(cfg), "p", AS_OF)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("bad", BAD_INPUTS, ids=[b.name for b in BAD_INPUTS])
def test_a_bad_input_is_named_before_anything_is_written(tmp_path, bad, monkeypatch):
    monkeypatch.delenv("ASSAY_PREFLIGHT_UNSET_KEY", raising=False)
    monkeypatch.delenv("ASSAY_ARTIFACTS", raising=False)
    cfg, args = bad_workspace(tmp_path, bad)
    for k, v in args["env"].items():
        monkeypatch.setenv(k, v)
    e = preflight_error(cfg, args["pipeline"], args["sample"], artifacts=args["artifacts"])
    text = e.format()
    named = {path for path, _, _ in e.problems}
    for key in bad.key.split(", "):
        assert key in named, (key, text)
    assert expected_file(tmp_path, bad) in text, text
    if bad.file:  # the problem that names the file is the one at the key path
        assert any(expected_file(tmp_path, bad) in msg for path, msg, _ in e.problems if path in bad.key.split(", ")), text
    assert len(e.problems) == len(bad.key.split(", ")), text  # one problem, one message (several: each once)
    assert not (tmp_path / "runs").exists()


def test_problems_name_the_line_of_their_key(tmp_path):
    cfg = make_workspace(tmp_path)
    remove("log.parquet")(tmp_path)
    edit("id: id", "id: ticket_id")(tmp_path)
    e = preflight_error(cfg)
    lines = {path: line for path, _, line in e.problems}
    text = cfg.read_text().splitlines()
    assert text[lines["models.rep.source"] - 1].startswith("  rep:")
    assert text[lines["pipelines.p.dataset.id"] - 1].strip() == "id: ticket_id"
    assert (
        f"pipelines.p.dataset.id (line {lines['pipelines.p.dataset.id']}): dataset.id column 'ticket_id' not in "
        f"{tmp_path / 'test.parquet'} (columns: id, text, label, lang, channel, created_at)" in e.format()
    )


def test_preflight_checks_a_config_loaded_without_the_cross_checks(tmp_path):
    """preflight runs the pipeline's cross-section checks itself: judges that cannot answer prompts
    are named even when the config was loaded without them (:func:`assay.config.load_config`)."""
    cfg = make_workspace(tmp_path)
    edit("metrics: [accuracy]", "metrics: [accuracy, {name: judge, judge: base}]")(tmp_path)
    with pytest.raises(ConfigError) as e:
        preflight(load_config(cfg), "p", AS_OF)
    ((path, msg, _),) = e.value.problems
    assert path == "pipelines.p.metrics[1].judge" and "cannot answer prompts" in msg


def test_only_the_chosen_models_files_are_checked(tmp_path):
    cfg = make_workspace(tmp_path)
    remove("log.parquet")(tmp_path)
    loaded = load_checked(cfg)
    preflight(loaded, "p", AS_OF, models=["base"])  # the replay model is not in this run
    with pytest.raises(ConfigError) as e:
        preflight(loaded, "p", AS_OF, models=["rep", "nope"])
    assert [p for p, _, _ in e.value.problems] == ["models.rep.source", "--models"]  # in the order of the file, the request last


def test_the_load_stage_takes_the_table_the_preflight_prepared(tmp_path, monkeypatch):
    """One preparation of the dataset per request: the preflight returns the table (or, for a
    Parquet file whose ids are in order, the streamed plan) it prepared, the run's load stage takes
    it (the same functions, so the same table) and lets it go, and prepares again when the file
    changed in between."""
    import assay.dataset
    from assay.runs import start_run
    from assay.stages import load

    cfg = make_workspace(tmp_path)
    reads = []
    real, plan = assay.dataset.read_source, assay.dataset.plan_streamed
    monkeypatch.setattr(assay.dataset, "read_source", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    monkeypatch.setattr(assay.dataset, "plan_streamed", lambda *a, **k: reads.append(a[0]) or plan(*a, **k))
    loaded = load_checked(cfg)
    checked = preflight(loaded, "p", AS_OF)
    assert reads == [str(tmp_path / "test.parquet")] and checked.chosen == ["rep", "base"] and checked.models is None
    ctx = start_run(str(cfg), "p", AS_OF, loaded=loaded, prepared=checked.dataset)
    load.run(ctx)
    assert len(reads) == 1 and ctx.prepared is None
    assert ctx.folder.read_table("dataset.parquet")["example_id"].to_pylist() == ["e1", "e2", "e3", "e4"]
    assert (
        checked.dataset.take(
            str(tmp_path / "test.parquet"), loaded.pipeline("p").dataset, loaded.pipeline("p").prompt, AS_OF, None
        )
        is None
    )  # taken once: nothing is held after the load stage
    # a file changed between the preflight and the load stage is read again
    checked = preflight(loaded, "p", AS_OF)
    assert len(reads) == 2
    pq.write_table(pa.table({k: v[:3] for k, v in ROWS.items()}), tmp_path / "test.parquet")
    ctx = start_run(str(cfg), "p", AS_OF, loaded=loaded, prepared=checked.dataset, new=True)
    load.run(ctx)
    assert len(reads) == 3
    assert ctx.folder.read_table("dataset.parquet")["example_id"].to_pylist() == ["e1", "e2", "e3"]


# ------------------------------------------------------------------------------------------------ through `assay run`
def _assay_run(d: Path, bad: BadInput) -> tuple[BadInput, Path, subprocess.CompletedProcess]:
    cfg, args = bad_workspace(d, bad)
    cmd = [
        sys.executable,
        "-m",
        "flows.cli",
        "run",
        args["pipeline"],
        "--config",
        str(cfg),
        "--as-of",
        AS_OF.isoformat(),
        "--no-progress",
    ]
    if args["sample"] is not None:
        cmd += ["--sample", str(args["sample"])]
    if args["artifacts"] is not None:
        cmd += ["--artifacts", args["artifacts"]]
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "ASSAY_PREFLIGHT_UNSET_KEY", "ASSAY_ARTIFACTS")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(d / "prefect-home"), **args["env"])
    return bad, d, subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_assay_run_exits_2_naming_each_bad_input_and_writes_nothing(tmp_path):
    """Every row of BAD_INPUTS through ``assay run`` (in parallel subprocesses): exit 2, the key path
    and the file on standard error, no traceback, no artifact root, no Prefect home (no flow run)."""
    dirs = []
    for i, bad in enumerate(BAD_INPUTS):
        d = tmp_path / f"case{i:02d}"
        d.mkdir()
        dirs.append((d, bad))
    with ThreadPoolExecutor(max(2, min(8, os.cpu_count() or 2))) as pool:
        results = list(pool.map(lambda a: _assay_run(*a), dirs))
    wrong = []
    for bad, d, r in results:
        keys = bad.key.split(", ")
        checks = {
            "exit 2": r.returncode == 2,
            "no traceback": "Traceback" not in r.stderr,
            "key path named": all(k in r.stderr for k in keys),
            "file named": bad.key == "sample" or expected_file(d, bad) in r.stderr,  # --sample 0: refused by the option
            "no artifact root": not (d / "runs").exists(),
            "no Prefect home": not (d / "prefect-home").exists(),
            "nothing on stdout": not r.stdout.strip(),
        }
        failed = [c for c, ok in checks.items() if not ok]
        if failed:
            wrong.append(f"{bad.name}: {', '.join(failed)} (exit {r.returncode})\n{r.stderr[-1500:]}")
    assert not wrong, "\n\n".join(wrong)


def test_assay_run_names_several_problems_in_one_message(tmp_path):
    bad = BAD_INPUTS[[b.name for b in BAD_INPUTS].index("several problems at once")]
    _, d, r = _assay_run(tmp_path, bad)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"{tmp_path / 'pipelines.yaml'}: 3 problem(s)", r.stderr
    assert [ln.split(" (line")[0].strip() for ln in lines[1:]] == bad.key.split(", "), r.stderr


@pytest.mark.parametrize("command", [["matrix"], ["dashboard", "--out", "site"], ["reproduce", "nowhere"]])
def test_other_commands_refuse_an_unusable_artifact_root(tmp_path, command):
    """Every command that takes ``--artifacts`` checks it as ``assay run`` does: exit 2, the option named."""
    cfg = make_workspace(tmp_path)
    bad = "nosuch://bucket/assay"
    cmd = [sys.executable, "-m", "flows.cli", *command, "--artifacts", bad]
    if command[0] != "reproduce":
        cmd += ["--config", str(cfg)] if command[0] == "matrix" else []
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120)
    assert r.returncode == 2 and "--artifacts" in r.stderr and "nosuch" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.parquet", "pipelines.yaml", "test.parquet", "train.parquet"]


# ------------------------------------------------------------------------------------------------ a served run
def test_the_flow_fails_before_it_makes_a_run_folder(tmp_path, prefect_server):
    """A run started by a schedule, the UI or a backfill (the ``assess`` flow itself) with a missing
    dataset ends Failed with the preflight's message, and no run folder (no artifact root) exists."""
    from flows.assess import assess, outcome

    cfg = make_workspace(tmp_path)
    remove("test.parquet")(tmp_path)
    state = assess(pipeline="p", as_of=AS_OF, config=str(cfg), artifacts=str(tmp_path / "runs"), return_state=True)
    assert state.is_failed()
    assert f"pipelines.p.dataset.source (line 10): dataset file not found: {tmp_path / 'test.parquet'}" in state.message
    assert "Traceback" not in state.message
    assert not (tmp_path / "runs").exists()
    out = outcome(state)
    assert out.status == "failed" and out.folder is None
    # a bad request from the UI is named the same way: a sample of 0 examples, a model the pipeline lacks
    make_workspace(tmp_path)
    state = assess(
        pipeline="p",
        as_of=AS_OF,
        config=str(cfg),
        artifacts=str(tmp_path / "runs"),
        sample=0,
        models=["rep", "grader"],
        return_state=True,
    )
    assert state.is_failed() and "sample:" in state.message and "--models:" in state.message
    assert not (tmp_path / "runs").exists()


def markdown_table() -> str:
    """BAD_INPUTS as a Markdown table (for the documentation)."""
    rows = ["| bad input | key path named | file named |", "|---|---|---|"]
    for b in BAD_INPUTS:
        keys = ", ".join(f"`{k}`" for k in b.key.split(", "))
        rows.append(f"| {b.name} | {keys} | {b.file or 'pipelines.yaml'} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
