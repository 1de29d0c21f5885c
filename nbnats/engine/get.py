"""Reading one stored message: by sequence, or the last (or next) one on a subject.

Direct get (``$JS.API.DIRECT.GET``, any replica answers, headers carry the
metadata) where the stream allows it, else ``STREAM.MSG.GET`` (the leader
answers, JSON with base64). Both give the same row.

>>> row = await get(conn, "KV_s", last_for="$KV.s.user.1", direct=True)   # doctest: +SKIP
>>> row.seq, row.data                                                     # doctest: +SKIP
(7, b'{"name": "ada"}')
"""

from __future__ import annotations

import asyncio
import base64
from typing import NamedTuple

import nats.errors
import orjson

from nbnats.data.units import parse_time
from nbnats.engine import api
from nbnats.errors import JetStreamError, NotFound

DIRECT_META = {"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending",
               "Nats-Last-Sequence", "Nats-UpTo-Sequence"}


class Stored(NamedTuple):
    """One stored message."""

    subject: str
    seq: int
    time_ns: int
    data: bytes
    headers: dict | None


def parse_headers(raw: bytes) -> dict | None:
    """A ``NATS/1.0`` header block as a dict (None when empty); values keep their spaces.

    >>> parse_headers(b"NATS/1.0\\r\\nA: 1\\r\\n\\r\\n")
    {'A': '1'}
    """
    out = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v[1:] if v.startswith(" ") else v
    return out or None


def from_msg_get(m: dict) -> Stored:
    """A ``STREAM.MSG.GET`` reply's ``message`` as a row.

    >>> from_msg_get({"subject": "a", "seq": 1, "data": "aGk=", "time": "2026-01-01T00:00:00Z"}).data
    b'hi'
    """
    data = base64.b64decode(m["data"]) if m.get("data") else b""
    headers = parse_headers(base64.b64decode(m["hdrs"])) if m.get("hdrs") else None
    return Stored(m["subject"], m["seq"], parse_time(m.get("time")) or 0, data, headers)


def from_direct(msg) -> Stored:
    """A direct-get reply (metadata in its headers) as a row."""
    h = dict(msg.headers or {})
    meta = {k: h.pop(k) for k in list(h) if k in DIRECT_META}
    return Stored(meta.get("Nats-Subject", ""), int(meta.get("Nats-Sequence", 0)),
                  parse_time(meta.get("Nats-Time-Stamp")) or 0, msg.data, h or None)


async def get(conn, stream: str, seq: int | None = None, last_for: str | None = None, *,
              next_for: str | None = None, direct: bool = False, timeout: float = api.TIMEOUT) -> Stored:
    """The message at ``seq`` (or the first at or after it on ``next_for``), or the last on ``last_for``.

    Raises :class:`~nbnats.errors.NotFound` when there is none.
    """
    body: dict = {}
    if seq is not None:
        body["seq"] = seq
    if next_for is not None:
        body["next_by_subj"] = next_for
    if last_for is not None:
        body["last_by_subj"] = last_for
    what = f"reading from stream {stream!r}"
    if not direct:
        resp = await api.request(conn, f"STREAM.MSG.GET.{stream}", body, what=what, timeout=timeout, stream=stream)
        return from_msg_get(resp["message"])
    try:
        msg = await conn.nc.request(f"{api.PREFIX}DIRECT.GET.{stream}", orjson.dumps(body), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise NotFound(f"stream {stream!r} does not exist (or does not allow direct reads)",
                       "list streams with nbnats.streams()") from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise api.no_answer(conn, what, timeout) from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise api.disconnected(conn) from None
    status = (msg.headers or {}).get("Status")
    if status == "404":
        raise NotFound(f"stream {stream!r} has no such message", "check the sequence or subject")
    if status:
        raise JetStreamError(f"stream {stream!r} refused the read: {status} {(msg.headers or {}).get('Description', '')}",
                             "check the request")
    return from_direct(msg)
