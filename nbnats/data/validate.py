"""NATS naming rules, checked before anything is sent.

The rules are the server's own (nats-server ``IsValidSubject``,
``IsValidPublishSubject``, stream/consumer/bucket names, KV keys), so a
mistake is caught in the notebook with a sentence that says how to fix it,
instead of a misleading "no response from stream" later.

>>> subject("orders.created", publish=True)
'orders.created'
>>> subject("orders.>")
'orders.>'
"""

from __future__ import annotations

import re

from nbnats.errors import InvalidHeader, InvalidKey, InvalidName, InvalidSubject, PayloadTooLarge

_WHITESPACE = set(" \t\n\r\f\v")   # \v too: nats-py cannot parse a MSG line holding it
_NAME_FORBIDDEN = set(".*>/\\") | _WHITESPACE
_KEY_RE = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
_KEY_PATTERN_RE = re.compile(r"^[-/_=.a-zA-Z0-9*>]+$")
_BUCKET_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
_HEADER_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def subject(value: str, *, publish: bool = False, what: str = "subject") -> str:
    """Check a subject by the server's rules; return it unchanged.

    With ``publish=True`` wildcards are refused: a message goes to one subject.

    >>> subject("orders.*.created")
    'orders.*.created'
    >>> subject("orders.>", publish=True)
    Traceback (most recent call last):
    ...
    nbnats.errors.InvalidSubject: cannot publish to 'orders.>': wildcards ('*', '>') only match when subscribing — publish to a concrete subject such as 'orders.created'
    """
    if not isinstance(value, str) or value == "":
        raise InvalidSubject(f"the {what} is empty", "give a subject such as 'orders.created'")
    bad = sorted(_WHITESPACE & set(value))
    if bad:
        names = ", ".join(repr(c) for c in bad)
        raise InvalidSubject(f"{what} {value!r} contains whitespace ({names})",
                             "subjects are dot-separated tokens without spaces, e.g. 'orders.created'")
    tokens = value.split(".")
    for i, token in enumerate(tokens):
        if token == "":
            raise InvalidSubject(f"{what} {value!r} has an empty token",
                                 "do not start or end with '.', nor write '..'")
        if token == ">" and i != len(tokens) - 1:
            raise InvalidSubject(f"{what} {value!r} has '>' before its last token",
                                 "'>' matches the rest of a subject, so it must come last, e.g. 'orders.>'")
        if not publish and token not in ("*", ">") and ("*" in token or ">" in token):
            # The server takes it as a literal, but nats-py refuses to subscribe to it.
            raise InvalidSubject(f"{what} {value!r} has '*' or '>' inside the token {token!r}",
                                 "a wildcard must be a whole token, e.g. 'orders.*' or 'orders.>'")
    if publish and any(t in ("*", ">") for t in tokens):
        raise InvalidSubject(f"cannot publish to {value!r}: wildcards ('*', '>') only match when subscribing",
                             "publish to a concrete subject such as 'orders.created'")
    return value


def subject_matches(pattern: str, value: str) -> bool:
    """True when the literal subject ``value`` matches ``pattern``.

    >>> subject_matches("orders.>", "orders.eu.created"), subject_matches("orders.*", "orders.eu.x")
    (True, False)
    """
    pt, vt = pattern.split("."), value.split(".")
    for i, p in enumerate(pt):
        if p == ">":
            return len(vt) > i
        if i >= len(vt) or (p != "*" and p != vt[i]):
            return False
    return len(pt) == len(vt)


def name(value: str, what: str = "stream") -> str:
    """Check a stream, consumer or object name (no ``. * > / \\``, no whitespace, ≤ 255 chars).

    >>> name("ORDERS")
    'ORDERS'
    """
    if not isinstance(value, str) or value == "":
        raise InvalidName(f"the {what} name is empty", f"give the {what} a name such as 'ORDERS'")
    if len(value) > 255:
        raise InvalidName(f"the {what} name is {len(value)} characters long", "use at most 255 characters")
    bad = sorted(_NAME_FORBIDDEN & set(value))
    if bad:
        shown = " ".join(repr(c) for c in bad)
        suggestion = re.sub(r"[.*>/\\\s]+", "_", value)
        raise InvalidName(f"{what} name {value!r} contains {shown}",
                          f"{what} names may not contain '.', '*', '>', '/', '\\' or whitespace; "
                          f"try {suggestion!r}")
    return value


def bucket(value: str, what: str = "bucket") -> str:
    """Check a KV or object-store bucket name (letters, digits, ``-`` and ``_``).

    >>> bucket("sessions")
    'sessions'
    """
    if not isinstance(value, str) or not _BUCKET_RE.match(value):
        fix = re.sub(r"[^a-zA-Z0-9_-]+", "_", value) if isinstance(value, str) and value else "sessions"
        raise InvalidName(f"{what} name {value!r} is not allowed",
                          f"use only letters, digits, '-' and '_', e.g. {fix!r}")
    return value


def key(value: str, *, pattern: bool = False) -> str:
    """Check a KV key by the server's rules; ``pattern=True`` allows ``*`` and ``>`` for watches.

    >>> key("user.123")
    'user.123'
    >>> key("user:123")
    Traceback (most recent call last):
    ...
    nbnats.errors.InvalidKey: key 'user:123' contains ':' — KV keys use '.' as separator: try 'user.123'
    """
    rule = _KEY_PATTERN_RE if pattern else _KEY_RE
    if not isinstance(value, str) or value == "":
        raise InvalidKey("the key is empty", "give a key such as 'user.123'")
    if not rule.match(value):
        bad = sorted({c for c in value if not rule.match(c)})
        suggestion = re.sub(r"[:]", ".", value)
        suggestion = re.sub(r"[^-/_=.a-zA-Z0-9*>]", "_", suggestion)
        raise InvalidKey(f"key {value!r} contains {' '.join(repr(c) for c in bad)}",
                         f"KV keys use '.' as separator: try {suggestion!r}")
    if value.startswith(".") or value.endswith("."):
        raise InvalidKey(f"key {value!r} starts or ends with '.'", f"try {value.strip('.')!r}")
    if ".." in value:
        raise InvalidKey(f"key {value!r} has an empty token ('..')", f"try {re.sub(r'[.]+', '.', value)!r}")
    return value


def headers(values: dict | None) -> dict[str, str] | None:
    """Check header names (HTTP token characters) and values (no CR/LF); return str→str.

    >>> headers({"Trace-Id": 7})
    {'Trace-Id': '7'}
    """
    if not values:
        return None
    out = {}
    for k, v in values.items():
        k = str(k)
        if not _HEADER_NAME_RE.match(k):
            raise InvalidHeader(f"header name {k!r} is not allowed",
                                "use letters, digits and '-' (no spaces, ':' or line breaks), e.g. 'Trace-Id'")
        v = "" if v is None else str(v)
        if "\r" in v or "\n" in v:
            raise InvalidHeader(f"the value of header {k!r} contains a line break",
                                "send one line per header value")
        if v != v.strip():
            # nats-py strips header values when it sends them: say so rather than change them silently.
            raise InvalidHeader(f"the value of header {k!r} ({v!r}) starts or ends with whitespace, "
                                "which NATS clients strip", f"send it trimmed ({v.strip()!r}) or encode the spaces")
        out[k] = v
    return out


def header_block_size(values: dict | None) -> int:
    """Bytes the header block takes on the wire (``NATS/1.0␍␊``, ``K: V␍␊`` each, ``␍␊``); 0 without headers.

    >>> header_block_size({"Nats-Msg-Id": "a1"}), header_block_size(None)
    (29, 0)
    """
    if values is None:
        return 0
    return 12 + sum(len(str(k).encode()) + len(str(v).encode()) + 4 for k, v in values.items())


def payload_size(size: int, max_payload: int, subject_name: str, headers: dict | None = None) -> None:
    """Refuse a message the server would refuse: headers + payload over its ``max_payload``.

    The server counts the header block against max_payload too, and closes the
    connection of a client that sends more.

    >>> payload_size(10, 1024, "a", headers={"Trace-Id": "t1"})
    """
    block = header_block_size(headers)
    if max_payload and size + block > max_payload:
        if block and size <= max_payload:
            raise PayloadTooLarge(
                f"the message for {subject_name!r} is {size + block:,} bytes ({size:,} of payload + {block:,} of "
                f"headers), over the server's max_payload of {max_payload:,} bytes (headers count too)",
                "send fewer or shorter headers, or a smaller payload")
        raise PayloadTooLarge(
            f"the payload for {subject_name!r} is {size:,} bytes, over the server's max_payload of {max_payload:,} bytes",
            "store large data in the object store (nbnats.objects) or split it into smaller messages")
