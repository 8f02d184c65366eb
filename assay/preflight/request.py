"""The preflight of one run request: what the config and the files can tell about it, checked
before anything is written, and what it prepared, handed to the run as a value.

:func:`preflight` runs before a run folder or a Prefect flow run exists (``assay run`` calls it
after loading the config and hands its :class:`Checked` to the ``assess`` flow; a flow started
any other way, from a schedule, the UI or a backfill, runs it itself before
:func:`assay.runs.start_run`). It checks, for one pipeline and the models a run assesses:

* the config's cross-section checks for that pipeline (:func:`assay.preflight.checks.cross_check`:
  model and metric names, metric options, judges that can answer prompts), so that a config that
  was loaded without them is checked too;
* the dataset file exists and is readable, the columns the config names (``id``, ``reference``,
  ``input``, ``slices``, ``partition.column``) and the prompt template's fields exist, and after the
  ``as_of`` filter and sampling it has examples whose ids are unique. It is read and prepared with
  the load stage's own functions (:func:`assay.dataset.prepared_source`), so the two cannot disagree,
  and the load stage of the same request takes the prepared table (``Checked.dataset``) instead of
  reading it again;
* production logs (a dataset's or a replay model's ``source`` with a log ``format``) name at least
  one log file;
* replay logs (``models.<name>.source``), training files (``models.<name>.train`` or the pipeline's
  ``dataset.train``) and local model folders (``models.<name>.path``) exist and are readable;
* API key variables named by ``api_key_env`` are set (of the run's models and its judges);
* metric files (``metrics[i].path``) load.

Every problem found is reported, not only the first: a :class:`ConfigError` whose entries each name
the key path (``pipelines.support-triage.dataset.source``), the line of the config file where it is
known, and in the message the file concerned, as an absolute path.
"""

import os
from dataclasses import dataclass
from datetime import date

import pyarrow.parquet as pq

import assay.dataset
from assay.config import ConfigError, LoadedConfig, format_path
from assay.config.schema import check_root
from assay.logs import log_files
from assay.metrics import build_metric
from assay.preflight.checks import cross_check
from assay.prompting import PromptError, render_conversations
from assay.runs import check_models

#: a problem as found: (key path as a tuple, message)
Problem = tuple[tuple, str]


@dataclass
class Checked:
    """A run request the preflight found able to run, and what it prepared for it: the config, the
    pipeline, the evaluation date, the models as asked (``models``, None: the pipeline's) and as
    chosen (``chosen``), the sample and artifact root asked for, and the prepared dataset (None when
    its source's version cannot be told: the load stage reads it then)."""

    loaded: LoadedConfig
    pipeline: str
    as_of: date
    models: list[str] | None
    chosen: list[str]
    sample: int | None
    artifacts: str | None
    dataset: assay.dataset.PreparedSource | None = None

    def release(self) -> None:
        """Let go of the prepared dataset, taken or not (the run is over, or never began)."""
        if self.dataset is not None:
            self.dataset.drop()


def preflight(
    loaded: LoadedConfig,
    pipeline: str,
    as_of: date,
    models: list[str] | None = None,
    sample: int | None = None,
    artifacts: str | None = None,
) -> Checked:
    """Check everything about a run of ``pipeline`` at ``as_of`` (with ``models``, default the
    pipeline's, ``sample`` and the ``artifacts`` root asked for, default ``$ASSAY_ARTIFACTS``, else
    the config's) that the config and the files can tell; raise :class:`ConfigError` naming every
    problem. Writes nothing; returns what it checked and prepared, for the run to take."""
    found, checked = _check(loaded, pipeline, as_of, models, sample, artifacts)
    problems = [(format_path(loc), msg, loaded.line_of(loc)) for loc, msg in found]
    if problems:
        checked = None  # the prepared table goes now, not with the error's traceback
        # in the order of the file (what has no line, a request's --models or sample, last)
        raise ConfigError(str(loaded.path), sorted(problems, key=lambda p: p[2] if p[2] is not None else float("inf")))
    return checked


def find_problems(
    loaded: LoadedConfig,
    pipeline: str,
    as_of: date | None,
    models: list[str] | None = None,
    sample: int | None = None,
    artifacts: str | None = None,
) -> list[Problem]:
    """What :func:`preflight` finds: (key path, message) pairs, each once."""
    return _check(loaded, pipeline, as_of, models, sample, artifacts)[0]


def _check(
    loaded: LoadedConfig, pipeline: str, as_of: date | None, models: list[str] | None, sample: int | None, artifacts: str | None
) -> tuple[list[Problem], Checked]:
    loaded.pipeline(pipeline)  # an unknown pipeline is a ConfigError already
    problems: list[Problem] = list(cross_check(loaded.config, loaded.base_dir, only=pipeline))
    chosen = _chosen_models(loaded, pipeline, models, problems)
    asked = sample
    if sample is not None and sample < 1:
        problems.append((("sample",), f"a sample of {sample} examples leaves nothing to assess: sample must be at least 1"))
        sample = None
    got: list[assay.dataset.PreparedSource] = []
    problems += _dataset_problems(loaded, pipeline, as_of, sample, got)
    problems += _model_problems(loaded, pipeline, chosen)
    problems += _metric_problems(loaded, pipeline)
    problems += _root_problems(loaded, artifacts)
    out: list[Problem] = []
    for prob in problems:
        if prob not in out:
            out.append(prob)
    return out, Checked(loaded, pipeline, as_of, models, chosen, asked, artifacts, got[0] if got and not out else None)


def _chosen_models(loaded: LoadedConfig, pipeline: str, models: list[str] | None, problems: list[Problem]) -> list[str]:
    """The models the run assesses that the config defines; a requested model the pipeline lacks is a problem."""
    p = loaded.pipeline(pipeline)
    try:
        chosen = check_models(loaded, pipeline, models)
    except ConfigError as e:
        problems += [((path,), msg) for path, msg, _ in e.problems]
        chosen = [m for m in models or [] if m in p.models]
    return [m for m in chosen if m in loaded.config.models]  # an undefined one is cross_check's problem


def _root_problems(loaded: LoadedConfig, artifacts: str | None) -> list[Problem]:
    """The artifact root the run would write to (``--artifacts``, else ``$ASSAY_ARTIFACTS``, else
    ``artifacts:``, which the schema checked): a path, or a URL whose protocol is usable here."""
    env = os.environ.get("ASSAY_ARTIFACTS")
    key, root = (("--artifacts",), artifacts) if artifacts else (("ASSAY_ARTIFACTS",), env) if env else (("artifacts",), None)
    if root is not None:
        try:
            check_root(root)
        except ValueError as e:
            return [(key, str(e))]
    root = root or loaded.config.artifacts
    scheme = root.split("://", 1)[0].lower() if "://" in root else "file"
    if scheme != "file":
        # lazy: only a remote artifact root needs it
        import fsspec

        try:
            fsspec.get_filesystem_class(scheme)
        except (ImportError, ValueError) as e:
            return [(key, f"{root!r}: cannot write there from this machine: {e}")]
    return []


# ------------------------------------------------------------------------------------------------ files
def file_problem(path: str, what: str) -> str | None:
    """Why ``path`` (absolute, or a URL) cannot be read as ``what`` ("dataset file", "replay log"),
    or None. A local file must exist, be a file and be readable; a Parquet file's footer must read
    (a cheap test of a corrupt file). A URL must exist (asked of its file system)."""
    if "://" in path:
        # lazy: only a remote file needs it
        import fsspec

        try:
            fs, inner = fsspec.core.url_to_fs(path)
            if not fs.exists(inner):
                return f"{what} not found: {path}"
        except Exception as e:  # noqa: BLE001  (no such file system, no credentials, no network)
            return f"cannot reach {what} {path}: {type(e).__name__}: {e}"
        return None
    if not os.path.exists(path):
        return f"{what} not found: {path}"
    if os.path.isdir(path):
        return f"{what} is a folder, not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"{what} cannot be read (permission denied): {path}"
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        return f"{what} cannot be read: {path}: {e.strerror or e}"
    return None


def _parquet_problem(path: str, what: str) -> str | None:
    """Why a local Parquet file's footer does not read, or None (other formats are not opened)."""
    if "://" in path:
        return None
    try:
        if assay.dataset.detect_format(path, None) != "parquet":
            return None
        with open(path, "rb") as f:
            _ = pq.ParquetFile(f).schema_arrow  # reads the footer
    except assay.dataset.DatasetError as e:
        return f"{what} {path}: {e}"
    except Exception as e:  # noqa: BLE001  (pyarrow's errors for a corrupt file)
        return f"{what} {path} is not a readable Parquet file: {type(e).__name__}: {e}"
    return None


def _dataset_problems(
    loaded: LoadedConfig, pipeline: str, as_of: date | None, sample: int | None, prepared: list
) -> list[Problem]:
    """The dataset, read and prepared as the load stage does; what was prepared is appended to
    ``prepared`` (for the load stage of the same request)."""
    p = loaded.pipeline(pipeline)
    ds = p.dataset
    at = ("pipelines", pipeline)
    src = loaded.resolve_path(ds.source)
    try:
        fmt = assay.dataset.detect_format(src, ds.format)
    except assay.dataset.DatasetError as e:
        return [(at + key, msg) for key, msg in e.problems]
    if assay.dataset.is_log(fmt):
        try:
            log_files(fmt, src)
        except FileNotFoundError as e:
            return [(at + ("dataset", "source"), str(e))]
        except Exception as e:  # noqa: BLE001  (no such file system, no credentials, no network)
            return [(at + ("dataset", "source"), f"cannot reach the {fmt} log {src}: {type(e).__name__}: {e}")]
    elif fmt != "hf":
        why = file_problem(src, "dataset file")
        if why:
            return [(at + ("dataset", "source"), why)]
    try:
        key = assay.dataset.prepared_key(
            src, ds, p.prompt, as_of, sample
        )  # before the read: a file changed meanwhile is read again
        got = assay.dataset.prepared_source(src, ds, p.prompt, as_of, sample)
        if key is not None:
            prepared.append(assay.dataset.PreparedSource(key, got))
        rows, read = (got.rows, got.read) if isinstance(got, assay.dataset.Streamed) else (got[0].num_rows, got[1])
    except FileNotFoundError:
        return [(at + ("dataset", "source"), f"dataset file not found: {src}")]
    except assay.dataset.UnreadableSource as e:
        return [(at + ("dataset", "source"), str(e))]
    except assay.dataset.DatasetError as e:
        return [(at + (key or ("dataset", "source")), msg if src in msg else f"{msg} ({src})") for key, msg in e.problems]
    except Exception as e:  # noqa: BLE001  (a table prepare() cannot handle: said in one line, not a traceback)
        return [(at + ("dataset",), f"cannot prepare the examples of {src}: {type(e).__name__}: {e}")]
    if rows:
        return _conversation_problems(p.prompt, got, at)
    if read == 0:
        return [(at + ("dataset", "source"), f"no examples in {src}: the file has no rows")]
    if ds.partition and as_of is not None:
        window = ds.partition.window
        end = assay.dataset.partition_end(ds, as_of)
        span = f"in the {window} up to {end}" if window else f"on or before {end}"
        if end != as_of:
            span += f" ({ds.partition.lag} before as_of {as_of})"
        return [
            (
                at + ("dataset", "partition"),
                f"no examples in {src} up to {end}: none of its {read} rows has {ds.partition.column} {span}",
            )
        ]
    return [(at + ("dataset", "source"), f"no examples in {src}")]


def _conversation_problems(prompt, got, at: tuple) -> list[Problem]:
    """With ``prompt: {messages: COLUMN}``, every example's conversation is well formed (the first
    one that is not is named)."""
    if prompt is None or prompt.messages is None:
        return []
    tables = got.batches() if isinstance(got, assay.dataset.Streamed) else [got[0]]
    try:
        for t in tables:
            render_conversations(prompt, t)
    except PromptError as e:
        return [(at + ("prompt", "messages"), f"prompt.messages column {prompt.messages!r}: {e}")]
    return []


def _model_problems(loaded: LoadedConfig, pipeline: str, chosen: list[str]) -> list[Problem]:
    """The files the run's models read, and the API keys the run's models and judges need."""
    p = loaded.pipeline(pipeline)
    models = loaded.config.models
    out: list[Problem] = []
    for name in chosen:
        m = models[name]
        if m.provider == "replay" and m.source is not None and m.format is not None:
            try:
                log_files(m.format, loaded.resolve_path(m.source))
            except Exception as e:  # noqa: BLE001  (not found; no such file system, no credentials, no network)
                out.append((("models", name, "source"), f"replay log: {e}"))
        elif m.provider == "replay" and m.source is not None:
            path = loaded.resolve_path(m.source)
            why = file_problem(path, "replay log") or _parquet_problem(path, "replay log")
            if why:
                out.append((("models", name, "source"), why))
        elif m.provider == "sklearn":
            train = m.train or p.dataset.train
            key = ("models", name, "train") if m.train else ("pipelines", pipeline, "dataset", "train")
            if train is None:
                out.append(
                    (
                        ("models", name, "train"),
                        f"model {name!r} (provider sklearn) needs a training file: set "
                        f"models.{name}.train or pipelines.{pipeline}.dataset.train",
                    )
                )
            else:
                path = loaded.resolve_path(train)
                why = file_problem(path, "train file") or _parquet_problem(path, "train file")
                if why:
                    out.append((key, why))
        elif m.provider == "transformers":
            path = loaded.resolve_path(m.path)
            if "://" not in path and not os.path.isdir(path):
                out.append((("models", name, "path"), f"model folder not found: {path}"))
    judges = [s.judge for s in p.metric_specs() if s.judge is not None and s.judge in models]
    for name in dict.fromkeys(chosen + judges):
        env = getattr(models[name], "api_key_env", None)
        if env and not os.environ.get(env):
            role = "the API key of judge model" if name not in chosen else "the API key of model"
            out.append((("models", name, "api_key_env"), f"environment variable {env} is not set ({role} {name!r})"))
    return out


def _metric_problems(loaded: LoadedConfig, pipeline: str) -> list[Problem]:
    """Metric files (``path:``) are loaded, as the score stage will load them (builtins are built by
    cross_check already; a file that is not there is its problem too)."""
    specs = [(i, s) for i, s in enumerate(loaded.pipeline(pipeline).metric_specs()) if s.path is not None]
    if not specs:
        return []
    out: list[Problem] = []
    for i, spec in specs:
        path = os.path.expanduser(spec.path)
        if not os.path.isabs(path):
            path = str(loaded.base_dir / path)
        if not os.path.exists(path):
            continue
        try:
            build_metric(spec, str(loaded.base_dir))
        except Exception as e:  # noqa: BLE001  (a user's module can raise anything while it loads)
            out.append((("pipelines", pipeline, "metrics", i, "path"), str(e) or type(e).__name__))
    return out


__all__ = ["file_problem", "find_problems", "preflight"]
