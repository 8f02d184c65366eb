"""Reading pipelines.yaml: ``${VAR}`` expansion, validation, and errors that name the key path and line.

Every error carries the YAML key path (``pipelines.support-triage.models[1]``) and, where it can be
found, the line number, so that a user can fix the file without reading a traceback.
"""

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from assay.config.schema import AssayConfig, PipelineConfig
from assay.registry import UnknownName

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration problem: each entry is (key path, message, line or None)."""

    def __init__(self, source: str, problems: list[tuple[str, str, int | None]]):
        self.source = source
        self.problems = problems
        super().__init__(self.format())

    def format(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for path, msg, line in self.problems:
            where = f" (line {line})" if line else ""
            lines.append(f"  {path or '<root>'}{where}: {msg}")
        return "\n".join(lines)


def format_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walk a composed YAML node tree along ``loc`` and return the 1-based line."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == str(part):
                    nxt = v
                    best = k.start_mark.line + 1
                    break
            if nxt is None:
                return best
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best


def _expand_env(value: Any, loc: tuple, problems: list) -> Any:
    if isinstance(value, dict):
        return {k: _expand_env(v, loc + (k,), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, loc + (i,), problems) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:
        def sub(m):
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            problems.append((loc, f"environment variable {var} is not set"))
            return ""
        return ENV_PATTERN.sub(sub, value)
    return value


class LoadedConfig:
    """A validated config plus what is needed to report on it and resolve paths."""

    def __init__(self, config: AssayConfig, raw: dict, path: Path):
        self.config = config
        self.raw = raw
        self.path = path
        self.base_dir = path.parent

    def resolve_path(self, p: str | None) -> str | None:
        """Relative paths in the config are relative to the config file; URLs are kept."""
        if p is None or "://" in p or os.path.isabs(p):
            return p
        return str((self.base_dir / p).resolve())

    def pipeline(self, name: str) -> PipelineConfig:
        if name not in self.config.pipelines:
            raise ConfigError(str(self.path), [(f"pipelines.{name}", str(UnknownName("pipeline", name, list(self.config.pipelines))), None)])
        return self.config.pipelines[name]

    def pipeline_slice(self, name: str) -> dict:
        """The raw (unexpanded) config that shapes one pipeline's results: its entry and its models."""
        p = self.raw["pipelines"][name]
        return {
            "pipeline": p,
            "models": {m: self.raw.get("models", {}).get(m) for m in p.get("models", [])},
        }

    def config_hash(self, name: str, models: list[str] | None = None) -> str:
        """Hash of the pipeline's resolved config (models optionally narrowed)."""
        pipe = self.pipeline(name).model_dump(mode="json")
        names = models or pipe["models"]
        pipe["models"] = list(names)
        payload = {"pipeline": pipe, "models": {m: self.config.models[m].model_dump(mode="json") for m in names}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_config(path: str | os.PathLike = "pipelines.yaml", check: bool = True) -> LoadedConfig:
    """Read, expand and validate a pipelines.yaml; raise ConfigError naming key paths.

    ``check`` also runs the checks that span sections (:func:`assay.config.checks.cross_check`: model
    and metric names, metric options and files, judges, prompts), which import the metric and provider
    registries; without it only the schema is validated.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(str(path), [("", f"config file not found: {path}", None)])
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        msg = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(path), [("", f"invalid YAML: {msg}", line)]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), [("", "the top level must be a mapping with 'models' and 'pipelines'", 1)])
    env_problems: list = []
    expanded = _expand_env(raw, (), env_problems)
    if env_problems:
        raise ConfigError(str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in env_problems])
    try:
        cfg = AssayConfig.model_validate(expanded)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in ("str", "MetricSpec")))
            problems.append((format_path(loc), err["msg"], _line_of(node, loc)))
        raise ConfigError(str(path), problems) from None
    if not check:
        return LoadedConfig(cfg, raw, path)
    from assay.config.checks import cross_check  # imports metrics and providers: only when a file is checked

    problems = cross_check(cfg, path.parent)
    if problems:
        raise ConfigError(str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in problems])
    return LoadedConfig(cfg, raw, path)
