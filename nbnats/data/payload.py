"""Turning Python values into message bytes, and reply messages back.

``dict``/``list`` → JSON, ``str`` → UTF-8, ``bytes`` as they are.

>>> encode({"id": 1})
b'{"id":1}'
>>> encode("héllo")
b'h\\xc3\\xa9llo'
"""

from __future__ import annotations

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

    >>> encode(b"raw"), encode(None), encode(3.5)
    (b'raw', b'', b'3.5')
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
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise CodecError(f"cannot encode a {type(data).__name__} as a payload ({exc})",
                         "pass bytes, str, or a JSON-serialisable dict/list") from None


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
