"""The pipelines.yaml reference as markdown, generated from the schema's models and their field
descriptions, so that the documentation cannot drift from what the loader accepts.

``python -m assay.config.reference`` prints it; the documentation site inserts it into its
configuration page at build time (``docs/hooks.py``).
"""

import types
import typing
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from assay.config.schema import AssayConfig

#: the placeholder written for a mapping's key, by the field that holds the mapping
_KEY_NAMES = {"models": "NAME", "pipelines": "NAME", "gates": "METRIC", "policies": "POLICY"}

#: the marker in a markdown page that the reference replaces
MARKER = "<!-- pipelines-yaml-reference -->"


def _strip_annotated(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _variants(tp: Any) -> list[Any]:
    """The members of a union (None left out), else ``[tp]``."""
    tp = _strip_annotated(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [_strip_annotated(a) for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _tag(cls: type[BaseModel]) -> tuple[str, str] | None:
    """The discriminator of a class chosen by one (``provider: openai``, ``kind: cascade``)."""
    for key in ("provider", "kind"):
        field = cls.model_fields.get(key)
        if field is not None and typing.get_origin(field.annotation) is Literal:
            return key, typing.get_args(field.annotation)[0]
    return None


def nested(tp: Any, path: str, field_name: str) -> list[tuple[str, type[BaseModel]]]:
    """The (key path, model class) pairs a field of type ``tp`` at ``path`` leads to: a model
    itself, the items of a list (``path[]``) or the values of a mapping (``path.KEY``)."""
    out = []
    for v in _variants(tp):
        origin = typing.get_origin(v)
        if _is_model(v):
            out.append((path, v))
        elif origin is list:
            out += nested(typing.get_args(v)[0], f"{path}[]", field_name)
        elif origin is dict:
            key = _KEY_NAMES.get(field_name, "KEY")
            out += nested(typing.get_args(v)[1], f"{path}.{key}", field_name)
    return out


def _type_name(tp: Any) -> str:
    parts = []
    for v in _variants(tp):
        origin = typing.get_origin(v)
        if origin is Literal:
            parts.append(" | ".join(f"`{a}`" for a in typing.get_args(v)))
        elif _is_model(v):
            parts.append("mapping")
        elif origin is list:
            parts.append(f"list of {_type_name(typing.get_args(v)[0])}")
        elif origin is dict:
            parts.append(f"mapping to {_type_name(typing.get_args(v)[1])}")
        elif v is Any:
            parts.append("any")
        elif isinstance(v, type):
            parts.append({"str": "text", "int": "integer", "float": "number", "bool": "true/false"}.get(v.__name__, v.__name__))
        else:
            parts.append(str(v))
    seen: list[str] = []
    for p in parts:
        if p not in seen:
            seen.append(p)
    return " or ".join(seen)


def _bounds(field) -> str:
    signs = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    out = []
    for m in field.metadata:
        for attr, sign in signs.items():
            if isinstance(m, getattr(annotated_types, attr.capitalize())):
                out.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            out.append(f"at least {m.min_length}")
    return ", ".join(out)


def _default(field) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "see below"
    else:
        value = field.default
    if value is None:
        return "–"
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if value in ({}, []):
        return "empty"
    return f"`{value}`"


def _anchor(path: str, tag: tuple[str, str] | None) -> str:
    text = path + (f"-{tag[0]}-{tag[1]}" if tag else "")
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def sections() -> list[tuple[str, type[BaseModel]]]:
    """Every (key path, model class) of pipelines.yaml in the order a reader meets them: a
    section, then the sections under it; a class chosen by ``provider:`` or ``kind:`` is one
    section per choice, and the choices at one path come together."""
    out: list[tuple[str, type[BaseModel]]] = []
    seen: set[tuple[str, type]] = set()

    def visit(path: str, classes: list[type[BaseModel]]) -> None:
        children: dict[str, list[type[BaseModel]]] = {}
        for cls in classes:
            if (path, cls) in seen:
                continue
            seen.add((path, cls))
            out.append((path, cls))
            for name, field in cls.model_fields.items():
                key = field.alias or name
                for sub_path, sub in nested(field.annotation, f"{path}.{key}" if path else key, name):
                    if sub not in children.setdefault(sub_path, []):
                        children[sub_path].append(sub)
        for sub_path, subs in children.items():
            visit(sub_path, subs)

    visit("", [AssayConfig])
    return out


def markdown(heading_level: int = 2) -> str:
    """The reference: per section of pipelines.yaml a heading (its key path), the class's
    docstring and a table of its keys with type, default and description."""
    hashes = "#" * heading_level
    lines: list[str] = []
    for path, cls in sections():
        tag = _tag(cls)
        title = f"`{path}`" if path else "Top level"
        if tag:
            title += f" with `{tag[0]}: {tag[1]}`"
        lines += [f"{hashes} {title} {{#{_anchor(path or 'top-level', tag)}}}", ""]
        doc = (cls.__doc__ or "").strip()
        if doc and cls.__module__ == AssayConfig.__module__ and not doc.startswith("Usage docs"):
            lines += [" ".join(doc.split()).replace("``", "`"), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, field in cls.model_fields.items():
            key = field.alias or name
            full = f"{path}.{key}" if path else key
            kind = _type_name(field.annotation)
            targets = nested(field.annotation, full, name)
            if targets:
                links = []
                for sub_path, sub in targets:
                    sub_tag = _tag(sub)
                    label = f"{sub_tag[0]}: {sub_tag[1]}" if sub_tag else "keys"
                    links.append(f"[{label}](#{_anchor(sub_path, sub_tag)})")
                kind += " (" + ", ".join(links) + ")"
            bounds = _bounds(field)
            if bounds:
                kind += f", {bounds}"
            lines.append(f"| `{full}` | {_escape(kind)} | {_escape(_default(field))} | {_escape(field.description or '')} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
