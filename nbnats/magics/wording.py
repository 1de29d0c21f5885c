"""Hints worded for the magics: the Python API's advice (``nbnats.streams()``) said as ``%nats stream ls``.

The core words its errors for Python; a ``%nats`` cell shows the same error with
the advice a magic user can type. One table, applied to every verb's errors.

>>> from nbnats.errors import NotFound
>>> str(as_magic(NotFound("stream 'X' does not exist", "list streams with nbnats.streams()")))
"stream 'X' does not exist — list streams with %nats stream ls"
"""

from __future__ import annotations

import re

from nbnats.errors import NatsError

_Q = r"'([^']+)'"
TABLE: list[tuple[str, str]] = [
    (r"nbnats\.add_stream\(" + _Q + r", subjects=(?:\.\.\.|'([^']+)')\)", r"%nats stream add \1 --subjects \2"),
    (r"nbnats\.edit_stream\(" + _Q + r", \.\.\.\)", r"%nats stream edit \1 …"),
    (r"nbnats\.edit_stream\(" + _Q + r", allow_(\w+)=True\)",
     lambda m: f"%nats stream edit {m.group(1)} --allow-{m.group(2).replace('_', '-')}"),
    (r"\ballow_(msg_ttl|counter|schedules|atomic)=True", lambda m: "--allow-" + m.group(1).replace("_", "-")),
    (r"nbnats\.counter_incr\(" + _Q + r"\)", r"%nats counter incr \1"),
    (r"nbnats\.counters\(" + _Q + r"\)", r"%nats counter ls \1"),
    (r"\bschedule_target=", "--schedule-dest "),
    (r"nbnats\.delete_stream\(" + _Q + r"\)", r"%nats stream rm \1"),
    (r"nbnats\.streams\(\)", "%nats stream ls"),
    (r"nbnats\.stream_info\(" + _Q + r"\)", r"%nats stream info \1"),
    (r"nbnats\.stream_info(?:\(\))?", "%nats stream info"),
    (r"nbnats\.consumers\(" + _Q + r"\)", r"%nats consumer ls \1"),
    (r"nbnats\.delete_consumer\(" + _Q + r", " + _Q + r"\)", r"%nats consumer rm \1 \2"),
    (r"nbnats\.add_consumer\(" + _Q + r", NAME\)", r"%nats consumer add \1 NAME"),
    (r"nbnats\.consumer_info(?:\(\))?", "%nats consumer info"),
    (r"nbnats\.replay\(\)", "%nats replay"),
    (r"nbnats\.stream_gaps", "%nats stream gaps"),
    (r"nbnats\.stream_state", "%nats stream state"),
    (r"nbnats\.copy_stream", "%nats stream copy"),
    (r"\boverwrite=True", "--overwrite"),
    (r"\b(until|every)='([^']+)'", r"--\1 \2"),
    (r"nbnats\.status\(\)", "%nats status"),
    (r"nbnats\.start_server\(cluster=3\)", "%nats server start --cluster 3"),
    (r"nbnats\.start_server\(\)", "%nats server start"),
    (r"nbnats\.connect\(context=NAME\)", "%nats connect --context NAME"),
    (r"nbnats\.connect\((?:url)?\)", "%nats connect URL"),
    (r"\btls_ca=FILE", "--tls-ca FILE"),
    (r"nbnats\.get_message\(" + _Q + r", (\d+)\), or last_for='([^']+)'", r"%nats stream get \1 \2, or --last-for \3"),
    (r"nbnats\.(?:tails|background\.pieces)\(\)", "%nats tails"),
    (r"nbnats\.services\(\)", "%nats service ls"),
    (r"nbnats\.serve\([^)]*\)", "%nats reply SUBJECT BODY"),
    (r"nbnats\.objects\(" + _Q + r", create=True\)", r"%nats obj add \1"),
    (r"nbnats\.objects\(" + _Q + r"\)\.ls\(\)", r"%nats obj ls \1"),
    (r"nbnats\.object_stores\(\)", "%nats obj ls"),
    (r"nbnats\.kv\(" + _Q + r", create=True\)", r"%nats kv add \1"),
    (r"nbnats\.buckets\(\)", "%nats kv ls"),
    (r"\breplicas=(\d)", r"--replicas \1"),
    (r"\back='(\w+)'", r"--ack \1"),
    (r"\btimeout=", "--timeout "),
]
_COMPILED = [(re.compile(p), r) for p, r in TABLE]


def words(text: str | None) -> str | None:
    """``text`` with every Python call of the table said as its magic.

    >>> words("use replicas=1, or start a cluster with nbnats.start_server(cluster=3)")
    'use --replicas 1, or start a cluster with %nats server start --cluster 3'
    """
    if not text:
        return text
    for pattern, repl in _COMPILED:
        text = pattern.sub(repl, text)
    return text


def as_magic(exc: NatsError) -> NatsError:
    """The same error, of the same class, with its sentences worded for ``%nats``."""
    what, fix = words(exc.what), words(exc.fix)
    if (what, fix) == (exc.what, exc.fix):
        return exc
    try:
        worded = type(exc)(what, fix)
    except TypeError:             # a subclass with its own constructor: keep it as it is
        return exc
    worded.__dict__.update({k: v for k, v in exc.__dict__.items() if k not in ("what", "fix")})
    return worded
