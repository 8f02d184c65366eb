"""A run: its context (what every stage needs to find its inputs), its start and its end.

:func:`start_run` creates a run folder and its manifest, or resumes the unfinished run of the
same request; :func:`finish` and :func:`fail` record how it ended. Everything here is plain
data and files: no stage logic, no Prefect.
"""

import hashlib
import os
import platform
from dataclasses import dataclass, field
from datetime import date
from importlib.metadata import PackageNotFoundError, version

import assay.runs.manifest
from assay.cache import open_cache
from assay.config import ConfigError, LoadedConfig, PipelineConfig, load_config
from assay.errors import AssayError
from assay.runs.lease import acquire
from assay.store import MANIFEST, RunFolder, Store


class RunFailed(AssayError, RuntimeError):
    """The run could not finish; the partial artifacts are kept and the manifest says why."""


class GateFailed(AssayError, RuntimeError):
    """A quality gate broke: the run finished, but the result must not pass."""


@dataclass
class RunContext:
    """Everything a stage needs to find its inputs and outputs; small and picklable."""

    config_path: str
    pipeline: str
    as_of: date
    run_id: str
    artifacts: str
    models: list[str]
    sample: int | None = None
    cache_mode: str = "use"
    resumed: bool = False
    #: set by reproduce: the recorded run's response cache, and its measurements (per model:
    #: wall, compute and training time), which a reproduction reuses instead of re-measuring
    cache_file: str | None = None
    measurements: dict | None = None
    #: set by reproduce: the serving operating points the recorded run was priced at (its
    #: manifest's ``capacity``), used instead of today's ``_capacity/`` records
    recorded_capacity: dict | None = None
    _cfg: LoadedConfig | None = field(default=None, repr=False, compare=False)
    _folder: RunFolder | None = field(default=None, repr=False, compare=False)
    # Two handles that stay in the process that started the run, neither pickled nor a field (Prefect
    # serializes a task's inputs field by field, and must never meet them):
    #: the dataset the preflight of this request read and prepared (an
    #: :class:`assay.dataset.PreparedSource`), which the load stage takes instead of reading the
    #: source again; None when there is none
    prepared = None
    #: the lock file (local root) or lease (remote root) of the run folder, held by the process
    #: that started or resumed the run (:func:`claim`) until it ends
    _claim = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_folder"] = None
        d.pop("prepared", None)
        d.pop("_claim", None)
        return d

    @property
    def loaded(self) -> LoadedConfig:
        if self._cfg is None:
            self._cfg = load_config(self.config_path)
        return self._cfg

    @property
    def cfg(self) -> PipelineConfig:
        return self.loaded.pipeline(self.pipeline)

    @property
    def folder(self) -> RunFolder:
        if self._folder is None:
            self._folder = Store(self.artifacts).run(self.pipeline, self.as_of, self.run_id)
        return self._folder

    @property
    def manifest(self) -> "assay.runs.manifest.Manifest":
        return assay.runs.manifest.Manifest.of(self.folder)

    def update_manifest(self, **changes) -> dict:
        return assay.runs.manifest.update(self.folder, **changes)

    def cache_path(self) -> str | None:
        if self.cache_mode == "off":
            return None
        return self.cache_file or cache_file_for(self.loaded, self.artifacts)

    @property
    def runner(self):
        """The pipeline's ``runner:`` (None: every stage in this process)."""
        return self.loaded.runner(self.pipeline)

    def shard_cache_path(self) -> str | None:
        """The response cache of shards run by several processes: a segment folder
        (:class:`assay.cache.SegmentCache`), unless a reproduction replays a recorded cache."""
        if self.cache_mode == "off":
            return None
        if self.cache_file:
            return self.cache_file
        return segments_for(self.loaded, self.artifacts)

    def open_cache(self, sharded: bool = False):
        """The run's response cache (None when off); ``sharded``: the one several processes share."""
        path = self.shard_cache_path() if sharded else self.cache_path()
        if path is None:
            return None
        legacy = None
        if sharded and not self.cache_file:
            legacy = cache_file_for(self.loaded, self.artifacts)
            legacy = None if "://" in legacy else legacy
        return open_cache(path, legacy=legacy)


def artifacts_root(loaded: LoadedConfig, override: str | None) -> str:
    """The artifact root: ``override`` (--artifacts), else $ASSAY_ARTIFACTS, else the config's."""
    root = override or os.environ.get("ASSAY_ARTIFACTS") or loaded.config.artifacts
    return root if "://" in root else (loaded.resolve_path(root) if not override else os.path.abspath(root))


def cache_file_for(loaded: LoadedConfig, root: str) -> str:
    """Where the response cache lives: ``cache_dir`` (an SQLite file), else beside a local artifact
    root (an SQLite file), else, on a remote root, the root's shared segment folder (every machine
    sees it: :class:`assay.cache.SegmentCache`)."""
    if loaded.config.cache_dir:
        base = loaded.resolve_path(loaded.config.cache_dir)
    elif "://" not in root:
        base = os.path.join(root, "_cache")
    else:
        return segments_for(loaded, root)
    return os.path.join(base, "responses.sqlite")


def segments_for(loaded: LoadedConfig, root: str) -> str:
    """The segment folder of the response cache shared by processes and machines:
    ``<cache_dir>/segments``, else ``<artifact root>/_cache/segments``."""
    if loaded.config.cache_dir:
        return os.path.join(loaded.resolve_path(loaded.config.cache_dir), "segments")
    if "://" in root:
        return root.rstrip("/") + "/_cache/segments"
    return os.path.join(root, "_cache", "segments")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for p in ("assay", "prefect", "pyarrow", "pandas", "numpy", "openai", "genai-prices", "evaluate", "scikit-learn"):
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            pass
    return out


def check_models(loaded: LoadedConfig, pipeline: str, models: list[str] | None) -> list[str]:
    """The models a run assesses: ``models`` (a subset of the pipeline's), else all of them."""
    p = loaded.pipeline(pipeline)
    unknown = [m for m in models or [] if m not in p.models]
    if unknown:
        raise ConfigError(
            str(loaded.path),
            [("--models", f"{', '.join(unknown)} not in pipelines.{pipeline}.models ({', '.join(p.models)})", None)],
        )
    return list(models or p.models)


def _lock_file(url: str) -> str:
    base = os.environ.get("ASSAY_LOCK_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "assay", "locks")
    os.makedirs(base, exist_ok=True)
    return os.path.join(base, hashlib.sha256(url.encode()).hexdigest()[:32] + ".lock")


def claim(folder: RunFolder) -> object | None:
    """Take the run folder for this process: what holds it (an open lock file, or a lease), or
    None when another live process holds it. :func:`release` lets go of it.

    The lock is an OS file lock (``flock``) on a file named after the folder's URL, so the
    operating system releases it when the holder dies, even by ``kill -9``: a killed run's
    folder can be resumed at once, a live one never is. It covers the processes of one
    machine. On an object store (a remote root) the lock is a lease object in the run folder that
    every machine sees instead (:mod:`assay.runs.lease`).
    """
    if folder.store.remote:
        return acquire(folder)
    try:
        import fcntl  # not on every platform
    except ImportError:  # no flock on this platform: one process per run folder is the user's to keep
        return True
    # a file object, not a bare descriptor: a claim dropped without release (a context lost to a
    # crash) closes with it, so the same process can claim the folder again
    f = open(_lock_file(folder.url), "ab")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def release(held: object | None) -> None:
    """Let go of what :func:`claim` returned (a lease, a locked file; None or True: nothing held)."""
    if held is None or held is True:
        return
    if hasattr(held, "release"):
        held.release()
    else:
        held.close()


def start_run(
    config_path: str,
    pipeline: str,
    as_of: date,
    models: list[str] | None = None,
    sample: int | None = None,
    artifacts: str | None = None,
    cache_mode: str | None = None,
    loaded: LoadedConfig | None = None,
    new: bool = False,
    prepared: object | None = None,
) -> RunContext:
    """Create a run folder and its manifest, or resume the unfinished run of the same request
    (same pipeline, date, resolved config, models and sample) unless another live process is
    running it (see :func:`claim`); ``new`` always starts afresh. ``prepared`` is the dataset the
    request's preflight prepared (:attr:`RunContext.prepared`)."""
    loaded = loaded or load_config(config_path)
    p = loaded.pipeline(pipeline)
    chosen = check_models(loaded, pipeline, models)
    root = artifacts_root(loaded, artifacts)
    store = Store(root)
    chash = loaded.config_hash(pipeline, chosen)
    request = {"models": chosen, "sample": sample}
    mode = cache_mode or p.cache
    run_id, resumed, held = None, False, None
    if not new:
        for rf in reversed(store.runs(pipeline, as_of.isoformat())):
            m = rf.manifest() or {}
            if m.get("status") in ("running", "failed") and m.get("config_hash") == chash and m.get("request") == request:
                held = claim(rf)
                if held is not None:
                    run_id, resumed = rf.run_id, True
                    break
    run_id = run_id or store.new_run_id(chash)
    ctx = RunContext(str(loaded.path), pipeline, as_of, run_id, root, chosen, sample, mode, resumed, _cfg=loaded)
    ctx.prepared = prepared
    rf = ctx.folder
    ctx._claim = held if held is not None else claim(rf)
    manifest = rf.manifest() if resumed else None
    if manifest is None:
        manifest = {
            "pipeline": pipeline,
            "as_of": as_of.isoformat(),
            "run_id": run_id,
            "status": "running",
            "config_hash": chash,
            "config": loaded.pipeline_slice(pipeline),
            "config_file": str(loaded.path),
            "request": request,
            "started_at": assay.runs.manifest.now_utc(),
            "stages": {},
            "versions": package_versions(),
            "cache": None if mode == "off" else cache_file_for(loaded, root),
        }
    else:
        manifest["status"] = "running"
        manifest.setdefault("resumes", []).append(assay.runs.manifest.now_utc())
        manifest.pop("error", None)
    rf.write_json(MANIFEST, manifest)
    return ctx


def fail(ctx: RunContext, stage: str, error: str, **extra) -> None:
    """Mark the run failed, keeping what it produced; ``extra`` goes into the manifest too."""
    ctx.update_manifest(
        status="failed", error={"stage": stage, "message": error}, finished_at=assay.runs.manifest.now_utc(), **extra
    )
    release(ctx._claim)
    ctx._claim = None


def finish(ctx: RunContext, **extra) -> dict:
    """Mark the run complete (every stage finished); ``extra`` goes into the manifest too."""
    m = ctx.update_manifest(status="complete", finished_at=assay.runs.manifest.now_utc(), **extra)
    release(ctx._claim)
    ctx._claim = None
    return m
