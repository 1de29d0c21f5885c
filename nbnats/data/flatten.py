"""The per-row half of frame decoding: strict JSON, flattening to key paths, typed columns.

:mod:`nbnats.data.frames` states the rules; this module is their reference
implementation, and the Arrow bulk path (:mod:`nbnats.data.bulk`) only takes
the rows it decodes to exactly the same values.

>>> flat({"a": {"b": 1, "c": {}}, "d": None})
{('a', 'b'): 1, ('d',): None}
>>> column(np.array([1, None, 2], dtype=object)).dtype
Int64Dtype()
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from nbnats.data.values import JsonArray, storable

MAX_DEPTH = 100                 # objects/arrays nested deeper than this are refused, not decoded
_LONG_DIGITS = re.compile(rb"\d{19}")   # orjson turns integers past 64 bits into floats
_INT64 = (-(2 ** 63), 2 ** 63 - 1)
_UINT64_MAX = 2 ** 64 - 1
_EXACT_IN_FLOAT = 2 ** 53
_STRING = pd.Series(["x"]).dtype      # pandas 3: its string type; pandas 2: object


class Text:
    """A payload that is not a JSON object: it goes to ``data`` as it is."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def as_text(p: bytes) -> str | bytes:
    """The payload as ``str`` when it is UTF-8, else as ``bytes``.

    >>> as_text(b"hi"), as_text(b"\\xff")
    ('hi', b'\\xff')
    """
    try:
        return bytes(p).decode("utf-8")
    except UnicodeDecodeError:
        return bytes(p)


def loads(p: bytes) -> Any:
    """Strict JSON: UTF-8, no ``NaN``/``Infinity``, integers of any size exact, at most
    ``MAX_DEPTH`` levels; anything else raises ``ValueError`` with the reason.

    >>> loads(b'{"n": 123456789012345678901234567890}')
    {'n': 123456789012345678901234567890}
    >>> loads(b'{"x": NaN}')
    Traceback (most recent call last):
    ...
    ValueError: invalid JSON: NaN and Infinity are not JSON (unexpected character, expected a JSON value: line 1 column 7 (char 6))
    """
    brackets = p.count(b"{") + p.count(b"[")
    try:
        value = orjson.loads(p)
    except orjson.JSONDecodeError as exc:
        raise ValueError(_reason(p, exc, brackets)) from None
    if brackets > MAX_DEPTH and depth(value) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    if _LONG_DIGITS.search(p):
        value = json.loads(p)          # valid (orjson said so); the stdlib keeps big integers exact
    return value


def _reason(p: bytes, exc: Exception, brackets: int) -> str:
    if brackets > MAX_DEPTH and ("recursion" in str(exc) or "depth" in str(exc)):
        return f"JSON nested deeper than {MAX_DEPTH} levels"
    try:
        bytes(p).decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not UTF-8: byte 0x{p[bad.start]:02x} at offset {bad.start}"
    if re.search(rb"NaN|Infinity", p):
        return f"invalid JSON: NaN and Infinity are not JSON ({exc})"
    return f"invalid JSON: {exc}"


def depth(value: Any) -> int:
    """How deeply objects and arrays nest in a decoded value (iteratively: no recursion limit).

    >>> depth({"a": [1, {"b": 2}]}), depth(3)
    (3, 0)
    """
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def json_or_text(p: bytes) -> Any:
    """The default decoding of one payload: a dict for a JSON object, else :class:`Text`.

    >>> json_or_text(b'{"a": 1}'), json_or_text(b"[1]").value
    ({'a': 1}, '[1]')
    """
    if p[:1] in (b"{", b"["):
        value = loads(p)
        return value if type(value) is dict else Text(as_text(p))
    return Text(as_text(p))


def flat(d: dict, prefix: tuple = (), out: dict | None = None) -> dict:
    """A payload's leaves by key path. Empty objects are left out (a missing cell, like
    ``null`` and an absent key); objects below ``MAX_DEPTH`` levels stay whole values.

    >>> flat({"a.b": 1, "a": {"b": 2}})
    {('a.b',): 1, ('a', 'b'): 2}
    """
    out = {} if out is None else out
    for k, v in d.items():
        if type(v) is dict and len(prefix) < MAX_DEPTH:
            if v:
                flat(v, prefix + (k,), out)
        else:
            out[prefix + (k,)] = v
    return out


def decode_rows(payloads, rows, decode: Callable[[bytes], Any]):
    """Decode the given rows one by one.

    Returns ``(columns, data, errors)``: ``columns`` maps a key path to
    ``(row numbers, values)``; ``data`` and ``errors`` map a row number to its
    ``data`` cell and ``decode_error`` reason.

    >>> cols, data, errors = decode_rows([b'{"a": 1}', b"x", b"{"], [0, 1, 2], json_or_text)
    >>> cols, data, errors
    ({('a',): ([0], [1])}, {1: 'x', 2: '{'}, {2: 'invalid JSON: unexpected end of data: line 1 column 2 (char 1)'})
    """
    columns: dict[tuple, tuple[list, list]] = {}
    data: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for i in rows:
        p = payloads[i]
        try:
            value = decode(p)
            leaves = flat(value) if type(value) is dict else None
        except Exception as exc:  # a codec's failure (or a hostile payload) keeps the row
            errors[i] = str(exc) or type(exc).__name__
            data[i] = as_text(p)
            continue
        if leaves is None:
            data[i] = value.value if isinstance(value, Text) else value
            continue
        for path, v in leaves.items():
            col = columns.get(path)
            if col is None:
                col = columns[path] = ([], [])
            col[0].append(i)
            col[1].append(v)
    return columns, data, errors


def column(values: np.ndarray) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """One typed column from Python values (``None`` = missing), by the frame's type rule.

    bool → bool/``boolean``; int → int64/``Int64``, or uint64/``UInt64`` past 2**63;
    float, or int with float → float64 when every int is exact as a float; str →
    pandas' string type; lists/dicts/bytes → object; anything Arrow cannot hold in
    one type (mixed types, integers past 64 bits) → a ``json`` column
    (:class:`~nbnats.data.values.JsonArray`).

    >>> column(np.array([2**64 - 1, None], dtype=object)).dtype, column(np.array([1, "a"], dtype=object)).dtype
    (UInt64Dtype(), JsonDtype)
    """
    kinds = set(map(type, values))
    gaps = type(None) in kinds
    kinds.discard(type(None))
    if not kinds:
        return values
    try:
        if kinds == {bool}:
            return pd.array(values, dtype="boolean") if gaps else values.astype(bool)
        if kinds == {int}:
            present = values[values != None] if gaps else values   # noqa: E711 (elementwise)
            low, high = min(present), max(present)
            if _INT64[0] <= low and high <= _INT64[1]:
                return pd.array(values, dtype="Int64") if gaps else values.astype("int64")
            if low >= 0 and high <= _UINT64_MAX:
                return pd.array(values, dtype="UInt64") if gaps else values.astype("uint64")
            return JsonArray(values)
        if kinds <= {int, float}:
            if int in kinds and any(type(v) is int and abs(v) > _EXACT_IN_FLOAT for v in values):
                return JsonArray(values)
            return np.array([np.nan if v is None else v for v in values], dtype="float64")
        if kinds == {str}:
            return values if _STRING == object else pd.array(values, dtype=_STRING)
        if storable(pa.array(values, from_pandas=True).type):    # Parquet can hold it as it is
            return values
    except (pa.ArrowException, OverflowError, TypeError, ValueError, UnicodeError):
        pass
    return JsonArray(values)
