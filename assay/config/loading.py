"""Reading pipelines.yaml: ``${VAR}`` expansion, validation, and errors that name the key path and line.

Every error carries the YAML key path (``pipelines.support-triage.models[1]``) and, where it can be
found, the line number, so that a user can fix the file without reading a traceback.
"""

import difflib
import functools
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import TypeAdapter, ValidationError

from assay.config.schema import MODEL_CLASSES, AssayConfig, ModelConfig, PipelineConfig, model_options, parse_model
from assay.errors import AssayError
from assay.registry import UnknownName

ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(AssayError):
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
    """``("pipelines", "p", "models", 1)`` as ``pipelines.p.models[1]``; a key with a control
    character in it is shown quoted and escaped (``models.'bad\\x07name'``), never raw."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            out += ("." if out else "") + (part if part.isprintable() else repr(part))
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


UnsetEnv = Literal["error", "keep"]


def _alerts_section(loc: tuple) -> bool:
    """``alerts:`` (top level or a pipeline's): its ``${VAR}`` URLs are secrets, read from the
    environment only when the alerts are synced (:mod:`flows.alerts`), so a run never needs them."""
    return loc == ("alerts",) or (len(loc) == 3 and loc[0] == "pipelines" and loc[2] == "alerts")


def _expand_env(value: Any, loc: tuple, problems: list, unset: UnsetEnv = "error") -> Any:
    if _alerts_section(loc):
        return value
    if isinstance(value, dict):
        return {k: _expand_env(v, loc + (k,), problems, unset) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, loc + (i,), problems, unset) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def sub(m):
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            if unset == "keep":
                return m.group(0)
            problems.append((loc, f"environment variable {var} is not set"))
            return ""

        return ENV_PATTERN.sub(sub, value)
    return value


def expand_env(value: Any, unset: UnsetEnv = "error") -> tuple[Any, list[tuple[tuple, str]]]:
    """``value`` with ``${VAR}`` and ``${VAR:-default}`` replaced from the environment, and the problems.

    A variable that is not set and has no default is a problem (key path, message) with
    ``unset="error"``; with ``unset="keep"`` it stays as written (``${VAR}``) and is no problem.
    """
    problems: list = []
    return _expand_env(value, (), problems, unset), problems


# ------------------------------------------------------------------------------------ validation errors
def _message(err: dict) -> str:
    msg = err["msg"]
    return msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg


def _not_an_option(provider: str, key: str) -> str:
    options = model_options(provider)
    msg = f"not an option of provider {provider!r} (it takes: {', '.join(options)})"
    close = difflib.get_close_matches(key, options, n=1, cutoff=0.75)
    others = [repr(p) for p, cls in MODEL_CLASSES.items() if p != provider and key in cls.model_fields]
    if close:
        return f"{msg}; did you mean {close[0]!r}?"
    if others:
        return f"{msg}; {key} is an option of provider{'s' if len(others) > 1 else ''} {', '.join(others)}"
    if "params" in options:
        return f"{msg}; a setting of the model itself (temperature, say) goes under params:"
    return msg


def _model_problem(err: dict, rel: tuple) -> tuple[tuple, str]:
    """One validation error inside a model's config: (key path within the model, message).

    Pydantic names the union member in the path (``('openai', 'temprature')``): the provider is
    dropped from the path and named in the message instead.
    """
    typ = err["type"]
    if typ == "union_tag_invalid":
        return ("provider",), str(UnknownName("provider", str(err["ctx"]["tag"]), list(MODEL_CLASSES)))
    if typ == "union_tag_not_found":
        return ("provider",), f"a model needs a provider: ({', '.join(sorted(MODEL_CLASSES))})"
    if rel and rel[0] in MODEL_CLASSES:
        provider, rel = rel[0], rel[1:]
        if len(rel) == 1 and typ == "extra_forbidden":
            return rel, _not_an_option(provider, str(rel[0]))
        if len(rel) == 1 and typ == "missing":
            return rel, f"required by provider {provider!r}"
    return rel, _message(err)


_POLICY_TAGS = ("cascade", "route", "confidence", "valid", "agree", "judge")


def validation_problems(e: ValidationError, one_model: bool = False) -> list[tuple[tuple, str]]:
    """A ValidationError of :class:`AssayConfig` (or, with ``one_model=True``, of one model's config) as
    (key path, message) pairs worded for the user of the YAML file."""
    out = []
    for err in e.errors(include_url=False):
        loc = tuple(err["loc"])
        if loc[-1:] == ("[key]",):  # a bad name (a key of models: or pipelines:): the key path is the entry's
            out.append((loc[:-1], _message(err)))
            continue
        # a metric is `str | MetricSpec`: pydantic names the union member in the path (the model's
        # as "function-after[<its validator>, MetricSpec]") and reports the member the value is not
        if (
            len(loc) > 4
            and loc[0] == "pipelines"
            and loc[2] == "metrics"
            and isinstance(loc[4], str)
            and (loc[4] == "str" or "MetricSpec" in loc[4])
        ):
            given = err.get("input")
            if len(loc) == 5 and (isinstance(given, dict) if loc[4] == "str" else isinstance(given, str)):
                continue  # "should be a valid string" about a mapping: the other member's errors say what is wrong
            loc = loc[:4] + loc[5:]
        if len(loc) > 4 and loc[0] == "pipelines" and loc[2] == "policies":  # a policy's kind and a rule's kind, as above
            loc = loc[:4] + tuple(
                x for i, x in enumerate(loc[4:], 4) if not (i == 4 or loc[i - 1] == "rule") or x not in _POLICY_TAGS
            )
        n = 0 if one_model else 2 if len(loc) >= 2 and loc[0] == "models" else None
        if n is None and err["type"] in ("union_tag_invalid", "union_tag_not_found") and "policies" in loc:
            what = "rule" if loc[-1:] == ("rule",) else "policy"
            known = ("confidence", "valid", "agree", "judge") if what == "rule" else ("cascade", "route")
            out.append(
                (
                    loc + ("kind",),
                    str(UnknownName(f"{what} kind", str(err["ctx"]["tag"]), list(known)))
                    if err["type"] == "union_tag_invalid"
                    else f"a {what} needs a kind: ({', '.join(known)})",
                )
            )
            continue
        if n is None:
            out.append((loc, _message(err)))
        else:
            rel, msg = _model_problem(err, loc[n:])
            out.append((loc[:n] + rel, msg))
    return out


def model_problems(data: Any) -> list[tuple[str, str]]:
    """What is wrong with one model's config (a mapping with ``provider``): (key path within it, message)
    for each problem, worded as :func:`load_config` words them; [] when it is valid."""
    try:
        parse_model(data)
    except ValidationError as e:
        return [(format_path(loc), msg) for loc, msg in validation_problems(e, one_model=True)]
    return []


@functools.cache
def _flat_defaults() -> dict:
    """Every provider's fields and their defaults as a JSON dump has them (None where a field is required)."""
    out: dict = {}
    for cls in MODEL_CLASSES.values():
        for name, f in cls.model_fields.items():
            if name == "provider":
                continue
            if out.get(name) is None and not f.is_required():
                out[name] = TypeAdapter(f.annotation).dump_python(f.get_default(call_default_factory=True), mode="json")
            out.setdefault(name, None)
    return out


def _hashed_model(m: ModelConfig) -> dict:
    """A model's dump as the config hash sees it: with every provider's fields, those of other providers at
    their defaults, which is how models were dumped when one class held every provider's fields. So the
    hash of a config did not change when each provider got its own class, and the run ids, resumes and
    ``assay reproduce`` checks that compare it keep working for runs recorded before."""
    out = {**_flat_defaults(), **m.model_dump(mode="json")}
    if out.get("samples") in (1, None):  # added later: one call per example hashes as before it existed
        out.pop("samples", None)
    for key, default in _LATER_MODEL_KEYS.items():  # added later too: at their defaults, as before
        if out.get(key, default) == default:
            out.pop(key, None)
    if not out.get("stream"):  # added later: an unstreamed model hashes as before it existed
        out.pop("stream", None)
    if isinstance(out.get("compute"), dict) and out["compute"].get("instances") == 1:  # added later, at its default
        out["compute"] = {k: v for k, v in out["compute"].items() if k != "instances"}
    return out


#: model keys added after runs were recorded, with their defaults (see :func:`_hashed_model`)
_LATER_MODEL_KEYS = {"format": None, "on_incomplete": "error", "stream": False}


#: keys added to the pipeline schema after runs were recorded, with their defaults: left out of the
#: hash while at their default, so the hash of a config that does not use them stays what it was
_LATER_KEYS = {
    "dataset": {"cluster": None, "on_incomplete": "error"},
    "gate": {"correction": "holm"},
    "metric": {
        "function": None,
        "workers": None,
        "timeout_s": None,
        "memory_mb": None,
        "bootstrap_budget": None,
        "bootstrap_budget_s": 60.0,
        "against": None,
    },
    "prompt": {"messages": None, "system_mode": "replace"},
    "partition": {"lag": None},
    "sample": {"by": None},
    "cost": {"on_over_budget": "stop"},
}


def _hashed_pipeline(pipe: dict) -> dict:
    """A pipeline's dump as the config hash sees it: without the later keys at their defaults."""

    def drop(d: dict, which: str) -> dict:
        return {k: v for k, v in d.items() if not (k in _LATER_KEYS[which] and v == _LATER_KEYS[which][k])}

    pipe = dict(pipe)
    pipe.pop("runner", None)  # where shards run never changes what they produce
    pipe.pop("alerts", None)  # who is told about a run never changes the run
    if pipe.get("baseline") is None:
        pipe.pop("baseline", None)
    if not pipe.get("policies"):
        pipe.pop("policies", None)
    if pipe.get("samples") is None:
        pipe.pop("samples", None)
    pipe["dataset"] = drop(pipe["dataset"], "dataset")
    for key in ("partition", "sample"):
        if isinstance(pipe["dataset"].get(key), dict):
            pipe["dataset"][key] = drop(pipe["dataset"][key], key)
    for key in ("prompt", "cost"):
        if isinstance(pipe.get(key), dict):
            pipe[key] = drop(pipe[key], key)
    pipe["gates"] = {k: drop(g, "gate") for k, g in pipe.get("gates", {}).items()}
    pipe["metrics"] = [drop(m, "metric") if isinstance(m, dict) else m for m in pipe.get("metrics", [])]
    return pipe


class LoadedConfig:
    """A validated config plus what is needed to report on it and resolve paths."""

    def __init__(self, config: AssayConfig, raw: dict, path: Path, node: yaml.Node | None = None):
        self.config = config
        self.raw = raw
        self.path = path
        self.base_dir = path.parent
        self._node = node  # the composed YAML, for line numbers; not pickled

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_node"] = None
        return d

    def line_of(self, loc: tuple) -> int | None:
        """The line of key path ``loc`` (a tuple: ``("pipelines", "p", "dataset", "id")``) in the file
        this config was read from, or of the nearest enclosing key there; None when the config was not
        read from a file here, or ``loc`` is no key of the file (``("--models",)``)."""
        node = getattr(self, "_node", None)
        if not isinstance(node, yaml.MappingNode) or not loc or not any(k.value == str(loc[0]) for k, _ in node.value):
            return None
        return _line_of(node, loc)

    def resolve_path(self, p: str | None) -> str | None:
        """Relative paths in the config are relative to the config file; URLs are kept."""
        if p is None or "://" in p or os.path.isabs(p):
            return p
        return str((self.base_dir / p).resolve())

    def pipeline(self, name: str) -> PipelineConfig:
        if name not in self.config.pipelines:
            raise ConfigError(
                str(self.path), [(f"pipelines.{name}", str(UnknownName("pipeline", name, list(self.config.pipelines))), None)]
            )
        return self.config.pipelines[name]

    def runner(self, name: str):
        """Where the pipeline's heavy stages run: its own ``runner:``, else the top-level one, else None (this process)."""
        return self.pipeline(name).runner or self.config.runner

    def pipeline_slice(self, name: str) -> dict:
        """The raw (unexpanded) config that shapes one pipeline's results: its entry and its models."""
        p = self.raw["pipelines"][name]
        return {
            "pipeline": p,
            "models": {m: self.raw.get("models", {}).get(m) for m in p.get("models", [])},
        }

    def config_hash(self, name: str, models: list[str] | None = None) -> str:
        """Hash of the pipeline's resolved config (models optionally narrowed; see :func:`_hashed_model`
        and :func:`_hashed_pipeline`)."""
        pipe = _hashed_pipeline(self.pipeline(name).model_dump(mode="json"))
        names = models or pipe["models"]
        pipe["models"] = list(names)
        payload = {"pipeline": pipe, "models": {m: _hashed_model(self.config.models[m]) for m in names}}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def load_config(path: str | os.PathLike = "pipelines.yaml") -> LoadedConfig:
    """Read, expand and validate a pipelines.yaml against the schema; raise ConfigError naming key paths.

    The checks that span sections (model and metric names, metric options and files, judges, prompts)
    need the metric and provider registries, a layer up: :func:`assay.preflight.load_checked` runs
    this, then them.
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
    expanded, env_problems = expand_env(raw)
    if env_problems:
        raise ConfigError(str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in env_problems])
    try:
        cfg = AssayConfig.model_validate(expanded)
    except ValidationError as e:
        raise ConfigError(
            str(path), [(format_path(loc), msg, _line_of(node, loc)) for loc, msg in validation_problems(e)]
        ) from None
    return LoadedConfig(cfg, raw, path, node)


# ------------------------------------------------------------------------------------ a run's recorded config
def recorded_config(manifest: dict, *, unset_env: UnsetEnv = "error", source: str = "manifest.json") -> LoadedConfig:
    """The config a run recorded in its manifest, validated: what ``assay reprice`` and ``assay reproduce``
    use instead of today's pipelines.yaml.

    The manifest's ``config`` is the pipeline's YAML entry and its models as written, placeholders and
    all (:meth:`LoadedConfig.pipeline_slice`). It is validated with the schema :func:`load_config` uses;
    the checks across sections are not run again (the run passed them when it started, and a metric file
    may have moved since). A problem is a ConfigError naming the manifest's key path
    (``config.models.<name>.<key>``, ``config.pipeline.<key>``); ``source`` names the manifest.

    The one rule for a ``${VAR}`` that is not set and has no ``:-default``, chosen with ``unset_env``:

    * ``"error"`` (the default): a problem naming the variable and the key path. For whatever calls
      models (``assay reproduce``): it must call what the run called, and an empty base_url or model
      would call something else (and the config hash would no longer be the recorded one).
    * ``"keep"``: the placeholder stays as written (``${VAR}``). For what calls nothing (``assay
      reprice``): a run can be repriced where its endpoints and keys are not set. A placeholder where a
      number belongs still fails validation, naming the key path.
    """
    cfg = manifest.get("config")
    name = manifest.get("pipeline") or "pipeline"
    if not isinstance(cfg, dict) or not isinstance(cfg.get("pipeline"), dict):
        raise ConfigError(source, [("config.pipeline", "the manifest has no recorded config", None)])
    models = cfg.get("models") or {}
    if isinstance(models, dict):  # a model the pipeline names but the config lacked is recorded as null
        models = {k: v for k, v in models.items() if v is not None}
    raw = {"models": models, "pipelines": {name: cfg["pipeline"]}}

    def where(loc: tuple) -> str:  # a key path of ``raw`` as a key path of the manifest
        return format_path(("config", "pipeline") + loc[2:] if loc[:1] == ("pipelines",) else ("config",) + loc)

    expanded, env_problems = expand_env(raw, unset_env)
    if env_problems:
        raise ConfigError(source, [(where(loc), msg, None) for loc, msg in env_problems])
    try:
        config = AssayConfig.model_validate(expanded)
    except ValidationError as e:
        raise ConfigError(source, [(where(loc), msg, None) for loc, msg in validation_problems(e)]) from None
    missing = [m for m in config.pipelines[name].models if m not in config.models]
    if missing:
        raise ConfigError(source, [(where(("models", m)), f"no recorded config for model {m!r}", None) for m in missing])
    return LoadedConfig(config, raw, Path(manifest.get("config_file") or "pipelines.yaml"))


def recorded_model(raw: Any, at: tuple, *, unset_env: UnsetEnv = "error", source: str = "manifest.json") -> ModelConfig:
    """One model's config recorded in a manifest at key path ``at`` (a judge's, say), expanded and
    validated by the rules of :func:`recorded_config`."""
    expanded, problems = expand_env(raw, unset_env)
    if not problems:
        try:
            return parse_model(expanded)
        except ValidationError as e:
            problems = validation_problems(e, one_model=True)
    raise ConfigError(source, [(format_path(at + loc), msg, None) for loc, msg in problems])
