"""A frame column of decoded values that share no one Arrow type.

A payload key whose values mix JSON types (``1`` in one row, ``"one"`` in the
next), or hold integers past 64 bits, cannot be a typed pandas column, and
pandas' plain ``object`` columns of such values fail ``to_parquet``. A
:class:`JsonArray` keeps every value exactly as decoded — cells, display and
iteration give the Python values — and hands Arrow (so Parquet) one JSON text
per cell, which ``pd.read_parquet`` turns back into the values.

>>> s = pd.Series(JsonArray([1, "one", None, 2**70]))
>>> s.dtype.name, s.tolist()
('json', [1, 'one', None, 1180591620717411303424])
>>> pa.array(s.array).to_pylist()
['1', '"one"', None, '1180591620717411303424']
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pandas.api.extensions import ExtensionArray, ExtensionDtype, register_extension_dtype, take
from pandas.api.indexers import check_array_indexer


def is_missing(v: Any) -> bool:
    """True for a frame's empty cell (None, NaN, pd.NA, NaT) — not for a list or dict.

    >>> is_missing(float("nan")), is_missing([]), is_missing(0)
    (True, False, False)
    """
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


@register_extension_dtype
class JsonDtype(ExtensionDtype):
    """The dtype of a :class:`JsonArray` column, named ``json``.

    >>> pd.Series([1, "a"], dtype="json").dtype
    JsonDtype
    """

    name = "json"
    type = object
    kind = "O"
    na_value = None

    @classmethod
    def construct_array_type(cls) -> type[JsonArray]:
        """The array class (pandas' extension protocol)."""
        return JsonArray

    def __from_arrow__(self, array: pa.Array | pa.ChunkedArray) -> JsonArray:
        """Read back the JSON text this column wrote to Arrow or Parquet."""
        chunks = array.chunks if isinstance(array, pa.ChunkedArray) else [array]
        return JsonArray([None if t is None else json.loads(t) for c in chunks for t in c.to_pylist()])

    def __repr__(self) -> str:
        return "JsonDtype"


class JsonArray(ExtensionArray):
    """Python values of any type, one per row; ``None`` is a missing cell.

    >>> JsonArray([{"a": 1}, [1, "x"], None]).isna().tolist()
    [False, False, True]
    """

    def __init__(self, values: Iterable[Any]):
        if isinstance(values, np.ndarray) and values.dtype == object and values.ndim == 1:
            self._data = values
        else:
            values = list(values)
            self._data = np.fromiter(values, dtype=object, count=len(values))

    @classmethod
    def _from_sequence(cls, scalars, *, dtype=None, copy=False) -> JsonArray:
        return cls(list(scalars))

    @classmethod
    def _from_factorized(cls, uniques, original: JsonArray) -> JsonArray:
        by_key = {_key(v): v for v in original._data}
        return cls([by_key.get(k) for k in uniques])

    def _values_for_factorize(self) -> tuple[np.ndarray, Any]:
        keys = np.fromiter((None if is_missing(v) else _key(v) for v in self._data), dtype=object,
                           count=len(self._data))
        return keys, None

    def __getitem__(self, item):
        if isinstance(item, (int, np.integer)):
            return self._data[item]
        item = check_array_indexer(self, item)
        return type(self)(self._data[item])

    def __setitem__(self, key, value) -> None:
        if isinstance(key, (int, np.integer)):
            self._data[key] = value
            return
        key = check_array_indexer(self, key)
        rows = np.arange(len(self._data))[key]
        if isinstance(value, (JsonArray, list, np.ndarray, pd.Series)) and len(value) == len(rows):
            for i, v in zip(rows, value):
                self._data[i] = v
        else:
            for i in rows:
                self._data[i] = value

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self._data if dtype in (None, object) else np.asarray(self._data, dtype=dtype)

    def __eq__(self, other) -> np.ndarray:   # type: ignore[override]
        if isinstance(other, (pd.Series, pd.Index, pd.DataFrame)):
            return NotImplemented
        if isinstance(other, (JsonArray, list, np.ndarray)) and len(other) == len(self._data):
            return np.fromiter((a == b for a, b in zip(self._data, other)), bool, len(self._data))
        return np.fromiter((v == other for v in self._data), bool, len(self._data))

    @property
    def dtype(self) -> JsonDtype:
        return JsonDtype()

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    def isna(self) -> np.ndarray:
        return np.fromiter(map(is_missing, self._data), dtype=bool, count=len(self._data))

    def take(self, indices, allow_fill: bool = False, fill_value: Any = None) -> JsonArray:
        return type(self)(take(self._data, indices, allow_fill=allow_fill, fill_value=fill_value))

    def copy(self) -> JsonArray:
        return type(self)(self._data.copy())

    @classmethod
    def _concat_same_type(cls, to_concat) -> JsonArray:
        return cls(np.concatenate([a._data for a in to_concat]))

    def __arrow_array__(self, type=None) -> pa.Array:
        """One JSON text per cell (missing cells are null), as Parquet stores the column."""
        return pa.array([None if is_missing(v) else to_json_text(v) for v in self._data], type=pa.string())


_PARQUET_DEPTH = 40     # Parquet readers refuse schemas nested past 100 levels (~2 per list)


def storable(t: pa.DataType) -> bool:
    """True when Parquet can write and read back an Arrow type as it is: no object
    without fields, and not nested too deeply.

    >>> storable(pa.list_(pa.int64())), storable(pa.list_(pa.struct([])))
    (True, False)
    """
    stack = [(t, 0)]
    while stack:
        t, depth = stack.pop()
        if depth > _PARQUET_DEPTH:
            return False
        if pa.types.is_struct(t):
            if not t.num_fields:
                return False
            stack.extend((f.type, depth + 1) for f in t)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            stack.append((t.value_type, depth + 1))
    return True


def to_json_text(value: Any) -> str:
    """A value as JSON text, for storage: exact for any int; bytes as ``\\x`` escaped text.

    >>> to_json_text({"n": 2**70, "b": b"\\xff"})
    '{"n": 1180591620717411303424, "b": "\\\\\\\\xff"}'
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:
        return json.dumps(value, default=_text_of, ensure_ascii=True)


def _text_of(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def _key(v: Any) -> Any:
    """A hashable stand-in that keeps 1, 1.0 and True apart."""
    try:
        hash(v)
        return (type(v).__name__, v)
    except TypeError:
        return (type(v).__name__, to_json_text(v))
