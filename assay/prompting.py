"""Prompt rendering: a template filled from each dataset row's fields."""

import hashlib
import json
import string
from collections.abc import Sequence

import pyarrow as pa

from assay.config import PromptConfig
from assay.dataset import template_fields
from assay.errors import AssayError


class PromptError(AssayError, ValueError):
    """A template that cannot be filled from a row."""


def prompt_version(prompt: PromptConfig | None) -> str | None:
    """The declared version, else a content hash: a cached response is reused only for the same prompt."""
    if prompt is None:
        return None
    if prompt.version:
        return prompt.version
    return hashlib.sha256(json.dumps([prompt.system, prompt.template]).encode()).hexdigest()[:12]


class Requests(Sequence):
    """The chat messages of every row, built when asked for: ``requests[i]`` is row i's messages.

    The engine asks for each one as it calls it, so that a run over many rows does not hold (and
    the garbage collector does not keep scanning) a list of dicts per row it has not called yet.
    """

    def __init__(self, system: str | None, users: list[str]):
        self.system, self.users = system, users

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if self.system:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": self.users[i]}]
        return [{"role": "user", "content": self.users[i]}]


def render_requests(prompt: PromptConfig, rows: pa.Table) -> Requests:
    """Chat messages for every row of ``rows``, in order, built on demand (see :class:`Requests`)."""
    fields = template_fields(prompt.template)
    missing = [f for f in fields if f not in rows.column_names]
    if missing:
        raise PromptError(f"prompt template uses {', '.join(missing)} which the dataset does not have")
    cols = {f: rows[f].to_pylist() for f in fields}
    template = prompt.template
    users = _fill_plain(template, cols, rows.num_rows)
    if users is None:  # format specs, conversions, attributes: str.format itself, row by row
        users = [template.format_map({f: ("" if cols[f][i] is None else cols[f][i]) for f in fields})
                 for i in range(rows.num_rows)]
    return Requests(prompt.system, users)


def render_messages(prompt: PromptConfig, rows: pa.Table) -> list[list[dict]]:
    """Chat messages for every row of ``rows``, in order."""
    return list(render_requests(prompt, rows))


def _fill_plain(template: str, cols: dict[str, list], n: int) -> list[str] | None:
    """The template filled column by column when it has only plain ``{field}`` fields (the usual case,
    and several times faster than ``format_map`` per row); None when it has anything else."""
    parts = list(string.Formatter().parse(template))
    if any(f is not None and (spec or conv or f not in cols) for _, f, spec, conv in parts):
        return None
    users = [""] * n
    for literal, f, _, _ in parts:
        if literal:
            users = [u + literal for u in users]
        if f is not None:
            # what str.format writes for a value: format(v, ""); None is left empty
            users = [u + (v if type(v) is str else "" if v is None else format(v, "")) for u, v in zip(users, cols[f])]
    return users
