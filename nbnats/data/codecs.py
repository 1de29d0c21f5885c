"""Payload codecs: how message bytes become values, and values become bytes.

JSON is the default. Choose another per call (``nbnats.tail("t.>", codec="msgpack")``)
or per subject pattern (``use("telemetry.>", "msgpack")``): tails, replays and
frames then decode — and ``publish`` encodes — by the most specific pattern
that matches the subject. Built in: ``json``, ``msgpack``, ``text``, ``raw``
(bytes as they are), ``hex``, ``base64``; a protobuf message class works as a
codec; ``register(name, decode, encode)`` adds any pair of functions.

Bytes given to ``publish`` are always sent as they are, whatever the codec:
they are taken as already encoded. For msgpack and protobuf, JSON text of an
object (what ``%nats pub SUBJECT {"a": 1}`` sends) is encoded as the value it spells. A payload that fails to decode keeps its
row in a frame, with the reason in ``decode_error``.

>>> encode({"v": 1}, "msgpack")
b'\\x81\\xa1v\\x01'
>>> decode(b'\\x81\\xa1v\\x01', "msgpack")
{'v': 1}
"""

from __future__ import annotations

import base64
import binascii
import difflib
import threading
from collections.abc import Callable
from typing import Any

import msgpack
import orjson
import pandas as pd

from nbnats.data import frames, payload, validate
from nbnats.errors import CodecError


class Codec:
    """A named pair of functions: ``decode(bytes) -> value`` and ``encode(value) -> bytes``.

    A decoded ``dict`` becomes frame columns; any other value stands in ``data``.

    >>> get("text").decode(b"hi"), get("text").encode("hi")
    ('hi', b'hi')
    """

    __slots__ = ("name", "_decode", "_encode", "description", "builtin")

    def __init__(self, name: str, decode: Callable[[bytes], Any],
                 encode: Callable[[Any], bytes] | None = None, description: str = "",
                 builtin: bool = False):
        self.name = name
        self._decode = decode
        self._encode = encode
        self.description = description
        self.builtin = builtin

    def decode(self, data: bytes) -> Any:
        """Decode one payload; a payload this codec cannot read raises :class:`CodecError`.

        >>> get("json").decode(b"oops")
        Traceback (most recent call last):
        ...
        nbnats.errors.CodecError: the payload is not valid json (unexpected character, expected a JSON value: line 1 column 1 (char 0)) — decode it with the codec it was written with (codec=...), or fix the sender
        """
        try:
            return self._decode(bytes(data))
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"the payload is not valid {self.name} ({_reason(exc)})",
                             "decode it with the codec it was written with (codec=...), or fix the sender") from None

    def decode_for(self, data: bytes) -> Any:
        """Decode for a frame row: the exception's text becomes the row's ``decode_error``.

        >>> get("msgpack").decode_for(b'{"a": 1}')
        Traceback (most recent call last):
        ...
        ValueError: not valid msgpack (unpack(b) received extra data.)
        """
        try:
            return self._decode(data if type(data) is bytes else bytes(data))
        except Exception as exc:
            raise ValueError(f"not valid {self.name} ({_reason(exc)})") from None

    def encode(self, value: Any, subject: str | None = None) -> bytes:
        """Encode a value; bytes pass as they are (already encoded).

        >>> get("hex").encode("0aff")
        b'\\n\\xff'
        """
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        where = f" for {subject!r}" if subject else ""
        if self._encode is None:
            raise CodecError(f"codec {self.name!r} can only decode, so it cannot encode the payload{where}",
                             f"pass bytes, or register it with an encode function: "
                             f"nbnats.codecs.register({self.name!r}, decode, encode)")
        if type(value).__name__ == "DataFrame":
            raise CodecError("a DataFrame is many messages, not one payload",
                             "use nbnats.publish_frame(subject, df) to send one message per row")
        try:
            out = self._encode(value)
        except CodecError:
            raise
        except Exception as exc:
            raise CodecError(f"cannot encode a {type(value).__name__} as {self.name}{where} ({_reason(exc)})",
                             _ENCODE_HINTS.get(self.name, "pass a value this codec accepts, or bytes")) from None
        if not isinstance(out, (bytes, bytearray, memoryview)):
            raise CodecError(f"codec {self.name!r} returned a {type(out).__name__}, not bytes",
                             "make its encode function return bytes")
        return bytes(out)

    def __repr__(self) -> str:
        return f"<Codec {self.name}{'' if self._encode else ' (decode only)'}>"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


# -- built-in codecs -------------------------------------------------------------
def _json_decode(data: bytes) -> Any:
    if not data:
        return None
    return orjson.loads(data)


def _msgpack_decode(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, timestamp=3)
    except msgpack.FormatError:
        raise ValueError("a byte that starts no msgpack value") from None


def _msgpack_encode(value: Any) -> bytes:
    return msgpack.packb(_spelled(value), use_bin_type=True, datetime=True)


def _spelled(value: Any) -> Any:
    """JSON text of an object or array (what ``%nats pub`` sends) as the value it spells."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
    return value


def _text_decode(data: bytes) -> str:
    return data.decode("utf-8")


def _text_encode(value: Any) -> bytes:
    if isinstance(value, (dict, list, tuple, set)):
        raise TypeError(f"text sends str, not a {type(value).__name__}")
    return str(value).encode("utf-8")


def _hex_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"hex expects a str of hex digits, not a {type(value).__name__}")
    return bytes.fromhex(value)


def _base64_encode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"base64 expects a base64 str, not a {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"not base64: {exc}") from None


_ENCODE_HINTS = {
    "json": "pass a dict, list, number, str or bytes",
    "msgpack": "pass dicts, lists, numbers, str, bytes, bools, None or datetimes",
    "text": "pass a str (or bytes)",
    "hex": "pass a str of hex digits such as '0aff', or bytes",
    "base64": "pass a base64 str such as 'aGk=', or bytes",
}

_BUILTINS = [
    Codec("json", _json_decode, payload.encode, "JSON (the default)", True),
    Codec("msgpack", _msgpack_decode, _msgpack_encode, "MessagePack", True),
    Codec("text", _text_decode, _text_encode, "UTF-8 text", True),
    Codec("raw", bytes, bytes, "bytes as they are", True),
    Codec("hex", bytes.hex, _hex_encode, "bytes shown as hex", True),
    Codec("base64", lambda b: base64.b64encode(b).decode("ascii"), _base64_encode,
          "bytes shown as base64", True),
]

_lock = threading.Lock()
_codecs: dict[str, Codec] = {c.name: c for c in _BUILTINS}
_patterns: list[tuple[str, Codec]] = []          # most specific first
_by_subject: dict[str, Codec | None] = {}        # cache of for_subject
_CACHE_MAX = 50_000


# -- the registry --------------------------------------------------------------------
def register(name: str, decode: Callable[[bytes], Any], encode: Callable[[Any], bytes] | None = None,
             description: str = "") -> Codec:
    """Add a codec (or replace one you added) from a decode and an optional encode function.

    >>> c = register("upper", lambda b: b.decode().upper(), lambda s: s.lower().encode())
    >>> decode(b"hi", "upper"), encode("HI", "upper")
    ('HI', b'hi')
    """
    if not isinstance(name, str) or not name.strip() or any(ch.isspace() for ch in name):
        raise CodecError(f"codec name {name!r} is not usable", "name it with one word, e.g. 'sensor'")
    if not callable(decode):
        raise CodecError(f"the decode function for codec {name!r} is not callable",
                         "pass a function that takes bytes and returns a value")
    if encode is not None and not callable(encode):
        raise CodecError(f"the encode function for codec {name!r} is not callable",
                         "pass a function that takes a value and returns bytes, or omit it")
    with _lock:
        old = _codecs.get(name)
        if old is not None and old.builtin:
            raise CodecError(f"{name!r} is a built-in codec", "register yours under another name")
        codec = Codec(name, decode, encode, description)
        _codecs[name] = codec
        _patterns[:] = [(p, codec if c.name == name else c) for p, c in _patterns]
        _by_subject.clear()
    return codec


def protobuf(message_class: type, name: str | None = None) -> Codec:
    """A codec for a protobuf message class: decodes to a dict, encodes a message or a dict.

    >>> codec = nbnats.codecs.protobuf(Reading)               # doctest: +SKIP
    >>> nbnats.codecs.use("sensors.>", codec)                  # doctest: +SKIP
    """
    if not _is_protobuf_class(message_class):
        raise CodecError(f"{message_class!r} is not a protobuf message class",
                         "pass the generated class itself, e.g. nbnats.codecs.protobuf(Reading)")
    from google.protobuf import json_format

    def dec(data: bytes) -> dict:
        msg = message_class.FromString(data)
        return json_format.MessageToDict(msg, preserving_proto_field_name=True)

    def enc(value: Any) -> bytes:
        if isinstance(value, message_class):
            return value.SerializeToString()
        value = _spelled(value)
        if isinstance(value, dict):
            return json_format.ParseDict(value, message_class()).SerializeToString()
        raise TypeError(f"expected a {message_class.__name__} message or a dict")

    name = name or message_class.DESCRIPTOR.full_name
    _ENCODE_HINTS.setdefault(name, f"pass a {message_class.__name__} message, a dict of its fields, or bytes")
    return register(name, dec, enc, f"protobuf {message_class.DESCRIPTOR.full_name}")


def _is_protobuf_class(obj: Any) -> bool:
    return isinstance(obj, type) and hasattr(obj, "DESCRIPTOR") and hasattr(obj, "FromString")


def get(codec: str | Codec | type | Callable | None = None) -> Codec:
    """The codec for a name, a :class:`Codec`, a protobuf class or a decode function (None → JSON).

    >>> get("msgpak")
    Traceback (most recent call last):
    ...
    nbnats.errors.CodecError: unknown codec 'msgpak' — did you mean 'msgpack'? Known codecs: base64, hex, json, msgpack, raw, text
    """
    if codec is None:
        return _codecs["json"]
    if isinstance(codec, Codec):
        return codec
    if isinstance(codec, str):
        found = _codecs.get(codec) or _codecs.get(codec.strip().lower())
        if found is None:
            close = difflib.get_close_matches(codec, list(_codecs), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise CodecError(f"unknown codec {codec!r}",
                             f"{hint}Known codecs: {', '.join(sorted(_codecs))}")
        return found
    if _is_protobuf_class(codec):
        existing = _codecs.get(codec.DESCRIPTOR.full_name)
        return existing if existing is not None else protobuf(codec)
    if callable(codec):
        return Codec(getattr(codec, "__name__", "custom"), codec)
    raise CodecError(f"a value of type {type(codec).__name__} is not a codec",
                     f"pass a codec name ({', '.join(sorted(_codecs))}), a protobuf class or a decode function")


def use(pattern: str, codec: str | Codec | type | None) -> None:
    """Decode (and encode) subjects matching ``pattern`` with ``codec``; ``None`` forgets the pattern.

    The most specific matching pattern wins (more literal tokens first).

    >>> use("telemetry.>", "msgpack")
    >>> for_subject("telemetry.engine.rpm").name
    'msgpack'
    >>> use("telemetry.>", None)
    """
    validate.subject(pattern, what="subject pattern")
    chosen = None if codec is None else get(codec)
    if chosen is not None and chosen.name not in _codecs:
        raise CodecError(f"a decode function used for {pattern!r} needs a name",
                         "register it first: nbnats.codecs.register('name', decode, encode)")
    with _lock:
        kept = [(p, c) for p, c in _patterns if p != pattern]
        if chosen is not None:
            kept.append((pattern, chosen))
        kept.sort(key=lambda pc: _specificity(pc[0]), reverse=True)
        _patterns[:] = kept
        _by_subject.clear()
        active = bool(_patterns)
    frames.subject_decoder = _decoder_for if active else None
    payload.subject_encoder = _encode_for if active else None


def _specificity(pattern: str) -> tuple[int, int, int]:
    tokens = pattern.split(".")
    return (sum(t not in ("*", ">") for t in tokens), tokens[-1] != ">", len(tokens))


def for_subject(subject: str) -> Codec | None:
    """The codec chosen for ``subject`` by :func:`use`, or None (the JSON default).

    >>> for_subject("orders.created") is None
    True
    """
    try:
        return _by_subject[subject]
    except KeyError:
        pass
    found = None
    for pattern, codec in _patterns:
        if validate.subject_matches(pattern, subject):
            found = codec
            break
    if len(_by_subject) >= _CACHE_MAX:
        _by_subject.clear()
    _by_subject[subject] = found
    return found


def _decoder_for(subject: str) -> Callable[[bytes], Any] | None:
    codec = for_subject(subject)
    return None if codec is None or codec.name == "json" else codec.decode_for


def _encode_for(subject: str, value: Any) -> bytes | None:
    codec = for_subject(subject)
    return None if codec is None else codec.encode(value, subject)


def encode(value: Any, codec: str | Codec | type | None = None, subject: str | None = None) -> bytes:
    """Encode ``value`` with ``codec`` (by default the subject's codec, else JSON).

    >>> encode({"a": 1}), encode("ff00", "hex")
    (b'{"a":1}', b'\\xff\\x00')
    """
    if codec is None and subject is not None:
        codec = for_subject(subject)
    return get(codec).encode(value, subject)


def decode(data: bytes, codec: str | Codec | type | None = None, subject: str | None = None) -> Any:
    """Decode one payload with ``codec`` (by default the subject's codec, else JSON).

    >>> decode(b'{"a": 1}'), decode(b"\\x01\\x02", "hex")
    ({'a': 1}, '0102')
    """
    if codec is None and subject is not None:
        codec = for_subject(subject)
    return get(codec).decode(data)


def preview(data: bytes, subject: str | None = None, codec: str | Codec | None = None, limit: int = 120) -> str:
    """A one-line text preview of a payload for views: decoded by its codec, cut at ``limit``.

    >>> preview(b"\\x81\\xa1v\\x01", codec="msgpack")
    "{'v': 1}"
    """
    chosen = get(codec) if codec is not None else (for_subject(subject) if subject else None)
    if chosen is None or chosen.name == "json":
        text = bytes(data[:limit]).decode("utf-8", errors="replace")
        return text + ("…" if len(data) > limit else "")
    try:
        value = chosen._decode(bytes(data))
    except Exception as exc:
        return f"<not valid {chosen.name}: {_reason(exc)}>"
    text = value if isinstance(value, str) else repr(value)
    return text[:limit] + ("…" if len(text) > limit else "")


def ls() -> pd.DataFrame:
    """The known codecs and the subject patterns that use them.

    >>> "msgpack" in ls()["codec"].tolist()
    True
    """
    from nbnats.jetstream.display import listing      # the one listing typer (a higher layer)

    rows = [{"codec": c.name, "description": c.description, "encodes": c._encode is not None,
             "patterns": [p for p, pc in _patterns if pc is c]} for c in _codecs.values()]
    return listing(rows, ["codec", "description", "encodes", "patterns"])


def reset() -> None:
    """Forget every subject pattern and every codec you registered (the built-ins stay).

    >>> reset()
    """
    with _lock:
        _patterns.clear()
        _by_subject.clear()
        for name in [n for n, c in _codecs.items() if not c.builtin]:
            del _codecs[name]
    frames.subject_decoder = None
    payload.subject_encoder = None
