"""Turning Python values into message bytes, and reply messages back.

``dict``/``list`` → JSON, ``str`` → UTF-8, ``bytes`` as they are.

>>> encode({"id": 1})
b'{"id":1}'
>>> encode("héllo")
b'h\\xc3\\xa9llo'
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from nbnats.errors import CodecError

# Set by nbnats.codecs.use() while a subject pattern has a codec: (subject, data) -> bytes,
# or None for the default below. Unset, publishing pays one `is None` check.
subject_encoder: Callable[[str, Any], bytes | None] | None = None


def encode(data: Any, subject: str | None = None) -> bytes:
    """Encode a payload: JSON for dict/list/numbers/bool, UTF-8 for str, bytes as they are.

    With ``subject``, a codec chosen for it by ``nbnats.codecs.use`` encodes instead.
    pandas and numpy values encode as JSON (``pd.NA``/``NaT`` → null, a
    ``Timestamp`` → ISO 8601 text); NaN and Infinity are refused, since JSON
    has neither and sending ``null`` would change the value.

    >>> encode(b"raw"), encode(None), encode(3.5)
    (b'raw', b'', b'3.5')
    >>> import pandas as pd
    >>> encode({"at": pd.Timestamp("2024-05-01 12:00", tz="UTC"), "n": pd.NA})
    b'{"at":"2024-05-01T12:00:00+00:00","n":null}'
    >>> encode(pd.DataFrame({"id": [7], "name": ["ada"]}).iloc[0])      # a row is an object
    b'{"id":7,"name":"ada"}'
    >>> encode({"score": float("nan")})
    Traceback (most recent call last):
    ...
    nbnats.errors.CodecError: the payload holds NaN at score, which JSON cannot carry — send None for a missing value, or the number as a string
    """
    if subject is not None and subject_encoder is not None:
        encoded = subject_encoder(subject, data)
        if encoded is not None:
            return encoded
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    if type(data).__name__ == "DataFrame":
        raise CodecError("a DataFrame is many messages, not one payload",
                         "use nbnats.publish_frame(subject, df) to send one message per row")
    try:
        try:
            out = orjson.dumps(data, default=_json_default, option=_JSON_OPTIONS)
        except TypeError as exc:
            if "64-bit" not in str(exc):
                raise
            out = _exact_big_ints(data)
    except (TypeError, ValueError) as exc:
        _refuse_non_finite(data)
        raise CodecError(f"cannot encode a {type(data).__name__} as a payload ({exc})",
                         "pass bytes, str, or a JSON-serialisable dict/list") from None
    if b"null" in out:                 # orjson writes NaN and Infinity as null: refuse them instead
        _refuse_non_finite(data)
    return out


def _refuse_non_finite(data: Any) -> None:
    where = _non_finite(data)
    if where is not None:
        raise CodecError(f"the payload holds {where[1]} at {where[0]}, which JSON cannot carry",
                         "send None for a missing value, or the number as a string")


_JSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _exact_big_ints(data: Any) -> bytes:
    """JSON with integers past 64 bits written exactly (orjson refuses them)."""
    import json
    return json.dumps(data, default=_json_default, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _json_default(value: Any) -> Any:
    """pandas and numpy values orjson does not know: missing → null, times → ISO 8601."""
    import pandas as pd
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (pd.Timestamp, pd.Timedelta)):
        return value.isoformat()
    if isinstance(value, pd.Series):                             # a frame's row: an object of its columns
        return value.to_dict()
    if hasattr(value, "tolist") and hasattr(value, "dtype"):     # a numpy value orjson left alone
        return value.tolist()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


def _non_finite(data: Any) -> tuple[str, str] | None:
    """Where a NaN or Infinity sits in ``data`` (a key path), and which; None when nowhere."""
    stack = [(data, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, float) or type(value).__name__ in ("float16", "float32", "float64"):
            if math.isnan(value) or math.isinf(value):
                return where or "the top", "NaN" if math.isnan(value) else "Infinity"
        elif isinstance(value, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(value))
        elif hasattr(value, "dtype") and getattr(value.dtype, "kind", "") == "f" and hasattr(value, "shape"):
            import numpy as np
            bad = np.argwhere(~np.isfinite(value))
            if len(bad):
                item = value[tuple(bad[0])]
                index = ", ".join(map(str, bad[0].tolist()))
                return f"{where}[{index}]", "NaN" if item != item else "Infinity"
    return None


class Message:
    """A received message: ``subject``, ``data`` (bytes), ``headers``, ``reply``.

    >>> m = Message("greet", b'{"hi": 1}')
    >>> m.json(), m.text
    ({'hi': 1}, '{"hi": 1}')
    """

    __slots__ = ("subject", "data", "headers", "reply")

    def __init__(self, subject: str, data: bytes, headers: dict | None = None, reply: str = ""):
        self.subject = subject
        self.data = data
        self.headers = headers or None
        self.reply = reply

    @property
    def text(self) -> str:
        """The payload as text (UTF-8, undecodable bytes replaced)."""
        return self.data.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The payload parsed as JSON."""
        try:
            return orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"the message on {self.subject!r} is not JSON ({exc})",
                             "read .text or .data instead") from None

    def __repr__(self) -> str:
        body = self.data[:80].decode("utf-8", errors="replace")
        more = "…" if len(self.data) > 80 else ""
        hdr = f" headers={self.headers}" if self.headers else ""
        return f"<Message {self.subject} {body!r}{more}{hdr}>"

    def _repr_html_(self) -> str:
        from html import escape
        rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                       for k, v in (self.headers or {}).items())
        return (f"<div><b>{escape(self.subject)}</b> · {len(self.data):,} bytes"
                f"<table>{rows}</table><pre>{escape(self.text[:4000])}</pre></div>")
