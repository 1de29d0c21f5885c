"""What can be stored as an object, and DataFrames back from Parquet.

>>> readable, size, closer = open_source(b"hello", {})
>>> size, readable.read()
(5, b'hello')
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd

from nbnats.errors import CodecError, NotFound

PARQUET = "application/vnd.apache.parquet"


def open_source(data: Any, headers: dict) -> tuple[Any, int, Any]:
    """(a binary readable, its size, what to close afterwards) for bytes, a path, a file or a DataFrame.

    A DataFrame is written as Parquet, and ``headers`` gets its Content-Type.

    >>> open_source(pd.DataFrame({"a": [1]}), h := {})[1] > 0, h["Content-Type"]
    (True, ['application/vnd.apache.parquet'])
    """
    if isinstance(data, pd.DataFrame):
        buf = io.BytesIO()
        try:
            data.to_parquet(buf, engine="pyarrow")
        except Exception as exc:       # pyarrow raises several types for columns it cannot write
            raise CodecError(f"this DataFrame cannot be stored as Parquet ({exc})",
                             "convert mixed-type object columns to str first, e.g. df[col].astype(str)") from None
        headers.setdefault("Content-Type", [PARQUET])
        buf.seek(0)
        return buf, buf.getbuffer().nbytes, None
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        return io.BytesIO(raw), len(raw), None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if not path.is_file():
            hint = ("a str is read as a file path; pass bytes (text.encode()) to store text"
                    if isinstance(data, str) else "check the path")
            raise NotFound(f"there is no file {str(path)!r}", hint)
        f = open(path, "rb")
        return f, path.stat().st_size, f
    if hasattr(data, "read"):
        raw = data.read()
        if isinstance(raw, str):
            raw = raw.encode()
        return io.BytesIO(raw), len(raw), None
    raise CodecError(f"cannot store a {type(data).__name__} as an object",
                     "pass bytes, a file path, a binary file or a pandas DataFrame")


def is_parquet(data: bytes) -> bool:
    """True when ``data`` is a Parquet file (its magic bytes).

    >>> is_parquet(b"PAR1...PAR1"), is_parquet(b"hello")
    (True, False)
    """
    return data[:4] == b"PAR1" and data[-4:] == b"PAR1"


def read_frame(data: bytes, name: str = "object") -> pd.DataFrame:
    """A DataFrame from Parquet bytes, with the dtypes it was written with.

    >>> read_frame(ob.get("sales.parquet"))   # doctest: +SKIP
    """
    if not is_parquet(data):
        raise CodecError(f"object {name!r} is not a Parquet file", "read its bytes with ob.get(name)")
    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
