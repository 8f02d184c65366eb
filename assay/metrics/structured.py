"""Structured outputs: valid JSON (json_valid) and JSON matching a schema (json_schema)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from assay.errors import MetricError
from assay.metrics.base import (
    _CITE_JSON_SCHEMA,
    Metric,
)
from assay.metrics.text import (
    _as_list,
    _pairs,
    is_missing,
    parse_json,
)


class JsonValid(Metric):
    """Share of predictions that are valid JSON, as a whole or in a ```json fenced block (as
    chat models often answer). NaN and Infinity are not JSON.

    References are ignored and may be left out. A failed model call (prediction None) counts
    as invalid.
    """

    name = "json_valid"
    title = "Valid JSON"
    value_doc = "share of valid JSON outputs, between 0 and 1"
    references_doc = "ignored"
    references_optional = True
    examples = ({"predictions": ['{"a": 1}', "Here:\n```json\n[1, 2]\n```", "{a: 1}", '{"a": NaN}']},)

    def __init__(self):
        self.options = {}

    def score_each(self, predictions, references=None):
        preds = _as_list(predictions, "predictions")
        if references is not None:
            _pairs(preds, references)
        return np.array([float(parse_json(p)[0]) for p in preds], dtype=float)


def _load_schema(schema: Any) -> Mapping:
    if isinstance(schema, Mapping):
        return schema
    if isinstance(schema, (str, os.PathLike)):
        text = str(schema)
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as f:
                return json.load(f)
        ok, value = parse_json(text)
        if ok and isinstance(value, Mapping):
            return value
        raise MetricError(f"json_schema: schema {text!r} is neither a JSON file nor a JSON object")
    if isinstance(schema, bool):
        return schema  # type: ignore[return-value]  # true/false are valid schemas
    raise MetricError(f"json_schema: schema must be a dict or a path to a JSON file, got {type(schema).__name__}")


class JsonSchema(Metric):
    """Share of predictions that are JSON (whole, or in a ```json fenced block) conforming to a
    JSON Schema, checked with the ``jsonschema`` package (the draft is taken from the
    schema's ``$schema``, the latest by default).

    The schema is the ``schema`` option or, without it, each example's reference (JSON text;
    an example whose reference is None is then left out). A failed model call (prediction
    None) counts as invalid.
    """

    name = "json_schema"
    path_options = ("schema",)
    _transient = ("_validator",)
    title = "JSON schema conformance"
    value_doc = "share of conforming outputs, between 0 and 1"
    references_doc = "JSON schemas, used when ``schema`` is not given"
    references_optional = True
    citation = _CITE_JSON_SCHEMA
    reference_urls = ("https://json-schema.org/", "https://python-jsonschema.readthedocs.io/")
    examples = (
        {
            "predictions": ['{"label": "yes"}', '{"label": "maybe"}', '```json\n{"label": "no"}\n```'],
            "schema": {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["yes", "no"]}}},
        },
    )

    def __init__(self, schema: Mapping | str | None = None):
        """
        :param schema: the JSON Schema: a dict, JSON text or the path of a JSON file; without
            it, each reference is the schema.
        """
        self.options = {"schema": schema}
        self._schema = None if schema is None else _load_schema(schema)
        self._validator = None if self._schema is None else self._make_validator(self._schema)

    @property
    def validator(self):
        if self._validator is None and self._schema is not None:
            self._validator = self._make_validator(self._schema)
        return self._validator

    @staticmethod
    def _make_validator(schema):
        # lazy: optional (the metrics extra)
        import jsonschema

        cls = jsonschema.validators.validator_for(schema)
        try:
            cls.check_schema(schema)
        except jsonschema.SchemaError as e:
            raise MetricError(f"json_schema: invalid schema: {e.message}") from None
        return cls(schema)

    def score_each(self, predictions, references=None):
        preds = _as_list(predictions, "predictions")
        refs = [None] * len(preds) if references is None else _pairs(preds, references)[1]
        out = np.empty(len(preds), dtype=float)
        for i, (p, r) in enumerate(zip(preds, refs)):
            validator = self.validator
            if validator is None:
                if is_missing(r):
                    out[i] = np.nan
                    continue
                validator = self._make_validator(_load_schema(r))
            ok, value = parse_json(p)
            out[i] = float(ok and validator.is_valid(value))
        return out
