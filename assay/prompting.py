"""Prompt rendering: a template filled from each dataset row's fields."""

import hashlib
import json

import pyarrow as pa

from assay.config import PromptConfig
from assay.dataset import template_fields


class PromptError(ValueError):
    """A template that cannot be filled from a row."""


def prompt_version(prompt: PromptConfig | None) -> str | None:
    """The declared version, else a content hash: a cached response is reused only for the same prompt."""
    if prompt is None:
        return None
    if prompt.version:
        return prompt.version
    return hashlib.sha256(json.dumps([prompt.system, prompt.template]).encode()).hexdigest()[:12]


def render_messages(prompt: PromptConfig, rows: pa.Table) -> list[list[dict]]:
    """Chat messages for every row of ``rows``, in order."""
    fields = template_fields(prompt.template)
    missing = [f for f in fields if f not in rows.column_names]
    if missing:
        raise PromptError(f"prompt template uses {', '.join(missing)} which the dataset does not have")
    cols = {f: rows[f].to_pylist() for f in fields}
    template, system = prompt.template, prompt.system
    out = []
    for i in range(rows.num_rows):
        user = template.format_map({f: ("" if cols[f][i] is None else cols[f][i]) for f in fields})
        if system:
            out.append([{"role": "system", "content": system}, {"role": "user", "content": user}])
        else:
            out.append([{"role": "user", "content": user}])
    return out
