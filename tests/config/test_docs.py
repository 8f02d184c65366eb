"""The documentation: the pipelines.yaml reference names every key the schema accepts, the site
builds in strict mode with that reference in it, and the README stays short."""

import re
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from assay.config.reference import MARKER, markdown
from assay.config.schema import AssayConfig

ROOT = Path(__file__).resolve().parents[2]


def _members(tp) -> list:
    """The types a field may hold: a union's members (None left out), an Annotated's type."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(tp) if a is not type(None) for m in _members(a)]
    return [tp]


def _walk(cls: type[BaseModel], path: str, out: dict, seen: set) -> None:
    """Every key path under ``cls``: ``*`` stands for a mapping's key, ``[]`` for a list's items;
    a union of models (providers chosen by ``provider:``, policies and rules by ``kind:``) is
    walked member by member."""
    if (cls, path) in seen:
        return
    seen.add((cls, path))
    for name, field in cls.model_fields.items():
        key = field.alias or name
        full = f"{path}.{key}" if path else key
        out.setdefault(full, set()).add(cls.__name__)

        def inner(tp, at):
            for member in _members(tp):
                origin = typing.get_origin(member)
                if isinstance(member, type) and issubclass(member, BaseModel):
                    _walk(member, at, out, seen)
                elif origin is list:
                    inner(typing.get_args(member)[0], f"{at}[]")
                elif origin is dict:
                    inner(typing.get_args(member)[1], f"{at}.*")

        inner(field.annotation, full)


def schema_keys() -> dict[str, set[str]]:
    """Key path (``*`` for a mapping's key) -> the schema classes that have it."""
    out: dict[str, set[str]] = {}
    _walk(AssayConfig, "", out, set())
    return out


def _pattern(path: str) -> re.Pattern:
    # the reference writes a mapping's key as a placeholder in capitals (NAME, METRIC, ...)
    return re.compile("`" + re.escape(path).replace(r"\*", "[A-Z]+") + "`")


def test_the_walk_reaches_every_provider_and_every_rule():
    keys = schema_keys()
    # keys only one provider or one kind has: the walk went into each member of the unions
    for path, cls in [
        ("models.*.base_url", "OpenAIModel"),
        ("models.*.output_column", "ReplayModel"),
        ("models.*.estimator", "SklearnModel"),
        ("models.*.function", "PythonModel"),
        ("models.*.path", "TransformersModel"),
        ("models.*.hosting.hardware.pue", "Hardware"),
        ("pipelines.*.policies.*.rule.schema", "ValidRule"),
        ("pipelines.*.policies.*.lambda", "RoutePolicy"),
        ("pipelines.*.metrics[].bootstrap_budget", "MetricSpec"),
        ("pipelines.*.runner.shard_rows", "Runner"),
    ]:
        assert cls in keys.get(path, set()), path
    assert len(keys) > 100


def test_reference_names_every_key():
    text = markdown()
    missing = [path for path in schema_keys() if not _pattern(path).search(text)]
    assert not missing, f"keys of the schema missing from the generated reference: {missing}"


def test_every_key_has_a_description():
    undescribed = []
    seen: set = set()
    queue = [AssayConfig]
    while queue:
        cls = queue.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for name, field in cls.model_fields.items():
            if not (field.description or "").strip():
                undescribed.append(f"{cls.__name__}.{name}")

            def inner(tp):
                for member in _members(tp):
                    if isinstance(member, type) and issubclass(member, BaseModel):
                        queue.append(member)
                    for arg in typing.get_args(member):
                        inner(arg)

            inner(field.annotation)
    assert not undescribed, f"pipelines.yaml keys without Field(description=...): {undescribed}"


def test_reference_describes_what_the_schema_says():
    text = markdown()
    row = next(line for line in text.splitlines() if line.startswith("| `pipelines.NAME.shard_size` |"))
    field = AssayConfig.model_fields["pipelines"]
    pipeline = typing.get_args(field.annotation)[1]
    assert pipeline.model_fields["shard_size"].description in row
    assert "`500`" in row and "≥ 1" in row
    # a required key says so; a choice lists its values
    assert "| `pipelines.NAME.dataset.source` | text | required |" in text
    assert re.search(r"\| `pipelines\.NAME\.cache` \| `use` \\\| `refresh` \\\| `off` \|", text)


def test_the_site_builds_strictly_with_the_reference(tmp_path):
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert MARKER in page
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    html = (site / "configuration" / "index.html").read_text(encoding="utf-8")
    assert MARKER not in html
    missing = [p for p in schema_keys() if not re.search(re.escape(p).replace(r"\*", "[A-Z]+").replace("`", ""), html)]
    assert not missing, f"keys missing from the built configuration page: {missing}"
    # the screenshots the pages show are in the site
    assert (site / "report.png").exists() and (site / "dashboard.png").exists()


def test_readme_is_short_and_keeps_the_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250, f"README.md has {len(readme.splitlines())} lines (at most 250)"
    assert "pip install -e '.[all]' && assay run support-triage" in readme
    assert "python -m pytest" in readme


def test_readme_links_point_at_pages_that_exist():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "docs").glob("*.md")))
def test_pages_do_not_send_readers_back_to_the_readme(page):
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    assert not re.search(r"see (the )?README", text, re.IGNORECASE), page
