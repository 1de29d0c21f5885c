"""Schema documents and validation: a JSON Schema checked once, and the sentence that names what broke.

Validation is the ``jsonschema`` library's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from nbnats.errors import SchemaError




# -- documents and validation -------------------------------------------------------------------
# jsonschema is imported only where a schema is checked or compiled: with the optional format
# checkers installed beside JupyterLab its import takes seconds, which neither ``import nbnats``
# nor the loop thread (reading the bucket) should pay.
def _jsonschema():
    import jsonschema
    return jsonschema


class _Entry:
    """A registered schema; its validator is compiled on first use (in the caller's thread)."""

    __slots__ = ("pattern", "schema", "revision", "updated", "_validator")

    def __init__(self, pattern: str, schema: dict, revision: int | None = None, updated: str | None = None):
        self.pattern, self.schema, self.revision, self.updated = pattern, schema, revision, updated
        self._validator = None

    @property
    def validator(self):
        if self._validator is None:
            js = _jsonschema()
            self._validator = js.validators.validator_for(self.schema, default=js.Draft202012Validator)(self.schema)
        return self._validator


def _document(schema: Any) -> dict:
    """A schema as a checked JSON-serialisable dict, or a SchemaError saying what is wrong."""
    if isinstance(schema, (str, bytes)):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"the schema is not valid JSON ({exc})",
                              "pass a dict, or JSON text of an object") from None
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be a JSON object (a dict), not a {type(schema).__name__}",
                          "pass a dict such as {'type': 'object', 'properties': {...}}")
    try:
        doc = orjson.loads(orjson.dumps(schema, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as exc:
        raise SchemaError(f"the schema cannot be stored as JSON ({exc})",
                          "use only dicts, lists, strings, numbers, booleans and None in it") from None
    js = _jsonschema()
    cls = js.validators.validator_for(doc, default=js.Draft202012Validator)
    try:
        cls.check_schema(doc)
    except js.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise SchemaError(f"the schema is not valid JSON Schema: {exc.message} (at {where})",
                          "fix that keyword (see json-schema.org/understanding-json-schema)") from None
    return doc


def _path(parts: Iterable) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _explain(error) -> list[tuple[str, str, str]]:
    """(field, rule, sentence) for each field one jsonschema error is about (a ``required`` error names
    every missing field, not only the first)."""
    rule = str(error.validator)
    base = list(error.absolute_path)
    if rule == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance] or list(error.validator_value)
        return [(_path(base + [k]), rule, f"field {_path(base + [k])!r} is missing") for k in missing]
    if rule in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed] or ["?"]
        return [(_path(base + [k]), rule, f"field {_path(base + [k])!r} is not allowed") for k in extra]
    field = _path(base) or "(payload)"
    return [(field, rule, f"field {field!r}: {error.message}")]


def _violation(entry: _Entry, value: Any) -> list[tuple[str, str, str]]:
    """The broken rules of ``value``, most relevant first: (field, rule, sentence) each; [] when valid."""
    js = _jsonschema()
    try:
        if entry.validator.is_valid(value):
            return []
        errors = sorted(entry.validator.iter_errors(value), key=js.exceptions.relevance, reverse=True)
    except Exception as exc:     # a schema stored by hand may be one jsonschema cannot use
        raise SchemaError(f"the schema registered for {entry.pattern!r} cannot be used ({exc})",
                          "register a valid one with nbnats.schema.register") from None
    best = js.exceptions.best_match(errors)
    problems, seen = [], set()
    for e in [best] + [e for e in errors if e is not best]:
        for field, rule, sentence in _explain(e):
            if (field, rule) not in seen:          # each failing field named once
                seen.add((field, rule))
                problems.append((field, rule, sentence))
    return problems


def _sentence(problems: list[tuple[str, str, str]], shown: int = 3) -> str:
    """'field … (rule …)', then up to two more problems, then how many are left."""
    parts = [f"{sentence} (rule {rule!r})" for _, rule, sentence in problems[:shown]]
    more = len(problems) - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
