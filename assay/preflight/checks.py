"""Checks that span sections of a config: names, metric options, files, judges, prompts.

These need the metric and provider registries, so they live here, a layer above :mod:`assay.config`
(which only reads and validates the schema and imports neither :mod:`assay.metrics` nor
:mod:`assay.providers`). :func:`load_checked` is :func:`assay.config.load_config` followed by them.
"""

import os
from pathlib import Path

from assay.config import ConfigError, LoadedConfig, format_path, load_config
from assay.config.schema import AssayConfig
from assay.metrics import METRICS, build_metric
from assay.providers import PROVIDERS
from assay.registry import UnknownName


def load_checked(path: str | os.PathLike = "pipelines.yaml") -> LoadedConfig:
    """Read, expand and validate a pipelines.yaml (:func:`assay.config.load_config`), then run the
    checks that span sections (:func:`cross_check`: model and metric names, metric options and
    files, judges, prompts); raise ConfigError naming the key path and line of every problem."""
    loaded = load_config(path)
    problems = cross_check(loaded.config, loaded.base_dir)
    if problems:
        raise ConfigError(str(loaded.path), [(format_path(loc), msg, loaded.line_of(loc)) for loc, msg in problems])
    return loaded


def cross_check(cfg: AssayConfig, base_dir: Path | None = None, only: str | None = None) -> list[tuple[tuple, str]]:
    """Checks that span sections: model names in pipelines, metric names, options and files, judge
    models, gates on computed metrics, and a prompt for openai models; (key path, message) pairs.
    ``only`` narrows them to one pipeline (what :func:`assay.preflight.preflight` asks).

    A metric's options are checked here, by building it, so that a typo fails the config before
    any model is paid for, not at the score stage. (A model's own options are the schema's: each
    provider's class takes only its own, see :mod:`assay.config.schema`.)
    """
    problems: list[tuple[tuple, str]] = []
    for pname, p in cfg.pipelines.items():
        if only is not None and pname != only:
            continue
        for i, m in enumerate(p.models):
            if m not in cfg.models:
                problems.append((("pipelines", pname, "models", i), str(UnknownName("model", m, list(cfg.models)))))
        keys, prefixes = [], []
        for i, spec in enumerate(p.metric_specs()):
            keys.append(spec.key)
            if spec.function is not None:
                prefixes.append(spec.key + ".")  # a function may return named scores: <key>.<name>
                if spec.path is not None:
                    mpath = os.path.expanduser(spec.path)
                    if base_dir is not None and not os.path.isabs(mpath):
                        mpath = str(base_dir / mpath)
                    if not os.path.exists(mpath):
                        problems.append(
                            (("pipelines", pname, "metrics", i, "path"), f"metric file not found: {os.path.abspath(mpath)}")
                        )
                        continue
                    if os.path.isdir(mpath):
                        problems.append(
                            (
                                ("pipelines", pname, "metrics", i, "path"),
                                f"metric file is a folder, not a Python file: {os.path.abspath(mpath)}",
                            )
                        )
                        continue
                try:  # loads the function: a typo in its name fails the config, not the score stage
                    metric = build_metric(spec, str(base_dir) if base_dir is not None else None)
                except (ValueError, TypeError, OSError) as e:
                    problems.append((("pipelines", pname, "metrics", i, "function"), str(e)))
                else:
                    if metric.is_async and spec.memory_mb is not None:
                        problems.append(
                            (
                                ("pipelines", pname, "metrics", i, "memory_mb"),
                                "memory_mb needs worker processes, and an async function runs in this process's event loop",
                            )
                        )
            elif spec.path is None:
                if spec.name in METRICS:  # a metric with named sub-scores (pairwise.win, ...) may be gated on each
                    keys += [f"{spec.key}.{s}" for s in getattr(METRICS.get(spec.name), "sub_keys", ())]
                try:
                    METRICS.check(spec.name)
                except UnknownName as e:
                    problems.append((("pipelines", pname, "metrics", i), str(e)))
                else:
                    try:  # builtin metrics are cheap to build: their options are checked now
                        build_metric(spec, str(base_dir) if base_dir is not None else None)
                    except (ValueError, TypeError, OSError) as e:
                        problems.append((("pipelines", pname, "metrics", i, "args"), str(e)))
            else:
                mpath = os.path.expanduser(spec.path)
                if base_dir is not None and not os.path.isabs(mpath):
                    mpath = str(base_dir / mpath)
                if not os.path.exists(mpath):
                    problems.append(
                        (("pipelines", pname, "metrics", i, "path"), f"metric file not found: {os.path.abspath(mpath)}")
                    )
                if spec.memory_mb is not None:  # the probe's workers are forks of the stage: no limit of their own
                    problems.append(
                        (
                            ("pipelines", pname, "metrics", i, "memory_mb"),
                            "memory_mb applies to function metrics and pass_at_k, not to an evaluate module",
                        )
                    )
            if spec.against is not None and spec.against not in p.models:
                problems.append(
                    (
                        ("pipelines", pname, "metrics", i, "against"),
                        f"against: {spec.against!r} is not one of the pipeline's models ({', '.join(p.models)})",
                    )
                )
            if spec.judge is not None and spec.judge not in cfg.models:
                problems.append(
                    (("pipelines", pname, "metrics", i, "judge"), str(UnknownName("model", spec.judge, list(cfg.models))))
                )
            elif spec.judge is not None:
                jprov = PROVIDERS.get(cfg.models[spec.judge].provider)
                if getattr(jprov, "kind", None) != "chat":
                    problems.append(
                        (
                            ("pipelines", pname, "metrics", i, "judge"),
                            f"model {spec.judge!r} (provider {cfg.models[spec.judge].provider}) cannot answer prompts: "
                            "a judge must be a model whose provider calls an endpoint (openai)",
                        )
                    )
        for g in p.gates:
            if g not in keys and not any(g.startswith(pre) for pre in prefixes):
                problems.append(
                    (
                        ("pipelines", pname, "gates", g),
                        f"gate on metric {g!r} which the pipeline does not compute (metrics: {', '.join(keys)})",
                    )
                )
        problems += policy_problems(pname, p)
        if isinstance(p.samples, dict):
            for m in p.samples:
                if m not in p.models:
                    problems.append(
                        (
                            ("pipelines", pname, "samples", m),
                            f"samples for model {m!r}, which is not one of the pipeline's models ({', '.join(p.models)})",
                        )
                    )
        if p.prompt is None and any(cfg.models.get(m) and cfg.models[m].provider == "openai" for m in p.models):
            problems.append((("pipelines", pname, "prompt"), "a prompt is required when an openai model is used"))
    return problems


def policy_problems(pname: str, p) -> list[tuple[tuple, str]]:
    """A pipeline's ``policies:``: their models are the pipeline's, a judge rule's metric is one it
    computes, and a route's column is one of its ``dataset.slices``."""
    out: list[tuple[tuple, str]] = []
    keys = [s.key for s in p.metric_specs()]
    for name, pol in p.policies.items():
        at = ("pipelines", pname, "policies", name)
        for i, m in enumerate(pol.models or []):
            if m not in p.models:
                out.append((at + ("models", i), f"model {m!r} is not one of the pipeline's models ({', '.join(p.models)})"))
        if pol.kind == "cascade" and pol.rule.kind == "judge" and pol.rule.metric not in keys:
            out.append(
                (
                    at + ("rule", "metric"),
                    f"judge rule on metric {pol.rule.metric!r}, which the pipeline does not compute (metrics: {', '.join(keys)})",
                )
            )
        if pol.kind == "route" and pol.column not in p.dataset.slices:
            out.append(
                (
                    at + ("column",),
                    f"route column {pol.column!r} is not one of dataset.slices "
                    f"({', '.join(p.dataset.slices) or 'none'}): add it there",
                )
            )
    return out
