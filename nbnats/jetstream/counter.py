"""Counters (nats-server 2.12+): a subject of a stream made with ``allow_counter=True`` holds a number.

Each increment is a message with the header ``Nats-Incr: N`` and no payload;
the server adds it up and stores the new total as ``{"val": "123"}``, so the
last message of a subject is its value. Values are whole numbers of any size.

>>> nbnats.add_stream("HITS", "hits.>", allow_counter=True)   # doctest: +SKIP
>>> nbnats.counter_incr("hits.home")                         # doctest: +SKIP
1
>>> nbnats.counter_incr("hits.home", 5), nbnats.counter_get("hits.home")   # doctest: +SKIP
(6, 6)
>>> nbnats.counters("HITS")                                  # doctest: +SKIP
     subject  value  seq                             time
0  hits.home      6    2 2026-11-27 14:00:00.123456+00:00
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd

from nbnats.data import validate
from nbnats.engine import api
from nbnats.engine.get import get as get_stored
from nbnats.engine.ordered import read_all
from nbnats.engine.publish import publish
from nbnats.errors import JetStreamError, NotFound, ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current

INCR = "Nats-Incr"
FEATURE = "counters"
VERSION = (2, 12)
COLUMNS = ["subject", "value", "seq", "time"]


def value_of(data: bytes, subject: str) -> int:
    """The total a counter message holds (``{"val": "123"}``).

    >>> value_of(b'{"val":"123"}', "hits.a"), value_of(b'{"val":"-5"}', "hits.a")
    (123, -5)
    """
    try:
        return int(orjson.loads(data)["val"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        raise JetStreamError(f"the last message on {subject!r} is not a counter value",
                             "read it with nbnats.get_message(stream, last_for=subject); counters live in "
                             "streams made with allow_counter=True") from None


def _increment(n: Any) -> int:
    if isinstance(n, (bool, float)) or not isinstance(n, (int, np.integer)):
        raise ValidationError(f"a counter changes by a whole number, not {n!r}", "pass e.g. n=1 or n=-3")
    return int(n)


async def _counter_stream(conn: Connection, subject: str) -> dict:
    """The info of the stream holding counter ``subject``; refused plainly when it is not a counter stream."""
    names = await api.stream_names(conn, subject)
    if not names:
        raise NotFound(f"no JetStream stream stores subject {subject!r}",
                       f"add one: nbnats.add_stream(NAME, subjects={subject!r}, allow_counter=True)")
    info = await api.request(conn, f"STREAM.INFO.{names[0]}", what=f"reading stream {names[0]!r}", stream=names[0])
    _check_counter_stream(info)
    return info


def _check_counter_stream(info: dict) -> None:
    name = info["config"]["name"]
    if not info["config"].get("allow_msg_counter"):
        raise JetStreamError(f"stream {name!r} does not allow counters",
                             "create a stream with allow_counter=True (it cannot be turned on later), "
                             "e.g. nbnats.add_stream('COUNTERS', subjects=..., allow_counter=True)")


def counter_incr(subject: str, n: int = 1, timeout: float = 5.0, connection: str | None = None) -> int:
    """Add ``n`` (negative subtracts) to the counter on ``subject``; returns its new value.

    >>> nbnats.counter_incr("hits.home")       # doctest: +SKIP
    1
    >>> nbnats.counter_incr("hits.home", -1)   # doctest: +SKIP
    0
    """
    validate.subject(subject, publish=True)
    n = _increment(n)
    conn = current(connection)
    api.needs(conn, VERSION, FEATURE)

    async def go():
        ack = await publish(conn, subject, b"", headers={INCR: f"{n:+d}"}, timeout=timeout)
        if "val" not in ack:           # stored as a plain message: not a counter stream
            await _counter_stream(conn, subject)
        return int(ack["val"])

    return loop.run(go(), timeout + 2, f"incrementing counter {subject!r}")


def counter_get(subject: str, timeout: float = 5.0, connection: str | None = None) -> int:
    """The current value of the counter on ``subject``.

    A counter never incremented raises :class:`~nbnats.NotFound`.

    >>> nbnats.counter_get("hits.home")   # doctest: +SKIP
    6
    """
    validate.subject(subject, publish=True)
    conn = current(connection)
    api.needs(conn, VERSION, FEATURE)

    async def go():
        info = await _counter_stream(conn, subject)
        name = info["config"]["name"]
        try:
            got = await get_stored(conn, name, last_for=subject, direct=bool(info["config"].get("allow_direct")),
                                   timeout=timeout)
        except NotFound:
            raise NotFound(f"counter {subject!r} has no value yet (stream {name!r} holds nothing on it)",
                           f"start it with nbnats.counter_incr({subject!r}), or list the counters with "
                           f"nbnats.counters({name!r})") from None
        return value_of(got.data, subject)

    return loop.run(go(), timeout + 2, f"reading counter {subject!r}")


def counters(stream: str, subject: str = ">", connection: str | None = None) -> pd.DataFrame:
    """Every counter of ``stream`` (matching ``subject``): subject, value, seq, time, sorted by subject.

    ``value`` is Int64 (object when a value outgrows 64 bits).

    >>> nbnats.counters("HITS")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    validate.subject(subject, what="subject filter")
    conn = current(connection)
    api.needs(conn, VERSION, FEATURE)

    async def go():
        info = await api.request(conn, f"STREAM.INFO.{stream}", what=f"reading stream {stream!r}", stream=stream)
        _check_counter_stream(info)
        if not info["state"]["messages"]:
            return []
        return await read_all(conn, stream, None if subject == ">" else [subject], deliver="last_per_subject")

    rows = loop.run(go(), 60, f"reading the counters of {stream!r}")
    values = [value_of(data, s) for s, _, _, data, _ in rows]
    fits = all(-2**63 <= v < 2**63 for v in values)
    df = pd.DataFrame({"subject": pd.Series([r[0] for r in rows], dtype=object),
                       "value": pd.array(values, dtype="Int64") if fits else pd.Series(values, dtype=object),
                       "seq": pd.array([r[1] for r in rows], dtype="Int64"),
                       "time": pd.to_datetime(pd.Series([r[2] for r in rows], dtype="int64"), unit="ns", utc=True)},
                      columns=COLUMNS)
    return df.sort_values("subject", ignore_index=True)


__all__ = ["counter_incr", "counter_get", "counters", "value_of"]
