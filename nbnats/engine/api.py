"""The ``$JS.API`` request: one round trip, its errors, paging, and what the server supports.

Every JetStream management call in nbnats goes through :func:`request` (loop
thread), so every refusal is worded by :mod:`nbnats.engine.errors` and every
wait has a timeout.

>>> info = await request(conn, "STREAM.INFO.ORDERS", what="reading stream 'ORDERS'", stream="ORDERS")   # doctest: +SKIP
>>> info["state"]["messages"]                                                                          # doctest: +SKIP
42
"""

from __future__ import annotations

import asyncio
import difflib
from typing import Any

import nats.errors
import orjson

from nbnats.engine.errors import translate
from nbnats.errors import JetStreamError, NotConnected, Timeout

PREFIX = "$JS.API."
TIMEOUT = 5.0


def no_jetstream(conn) -> JetStreamError:
    """The error for a server that has no JetStream at all (nobody answers ``$JS.API``).

    >>> no_jetstream(conn).what   # doctest: +SKIP
    'JetStream is not enabled on the server at nats://127.0.0.1:4222'
    """
    return JetStreamError(f"JetStream is not enabled on the server at {conn.url}",
                          "start nats-server with -js, or use the bundled server (nbnats.start_server())")


def no_answer(conn, what: str, timeout: float) -> Timeout:
    """The error for a JetStream request nobody answered in time.

    >>> no_answer(conn, "reading stream 'X'", 5).what   # doctest: +SKIP
    "the server did not answer reading stream 'X' within 5 s"
    """
    return Timeout(f"the server did not answer {what} within {timeout:g} s",
                   "it may be busy or stalled, or (in a cluster) without a leader: try again, "
                   "or check the connection with nbnats.status()")


def disconnected(conn) -> NotConnected:
    """The error for a request made while the connection is down or closed."""
    if conn.nc.is_closed:
        return NotConnected(f"the connection to {conn.url} is closed", "connect again with nbnats.connect()")
    return NotConnected(f"the connection to {conn.url} is down (reconnecting)",
                        "wait for it to come back, or connect elsewhere with nbnats.connect(url)")


async def request(conn, subject: str, body: Any = None, *, what: str = "the JetStream request",
                  timeout: float = TIMEOUT, stream: str | None = None, consumer: str | None = None,
                  raw: bytes | None = None) -> dict:
    """Send ``$JS.API.<subject>`` and return the reply as a dict, or raise a plain nbnats error.

    ``body`` is sent as JSON (``raw`` as it is); ``stream``/``consumer`` name
    the error sentences.

    >>> await request(conn, "INFO", what="reading the account")   # doctest: +SKIP
    {'type': 'io.nats.jetstream.api.v1.account_info_response', 'memory': 0, ...}
    """
    payload = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
    try:
        msg = await conn.nc.request(PREFIX + subject, payload, timeout=timeout)
    except nats.errors.NoRespondersError:
        raise no_jetstream(conn) from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise no_answer(conn, what, timeout) from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError, nats.errors.StaleConnectionError):
        raise disconnected(conn) from None
    try:
        resp = orjson.loads(msg.data) if msg.data else {}
    except orjson.JSONDecodeError:
        raise JetStreamError(f"JetStream answered {what} with something that is not JSON",
                             "check that the server is a nats-server with JetStream") from None
    if isinstance(resp, dict) and "error" in resp:
        err = translate(resp["error"], what, stream=stream, consumer=consumer)
        if resp["error"].get("err_code") == 10059 and stream:
            err = await _with_close_name(conn, err, stream)
        raise err
    return resp


async def _with_close_name(conn, err, stream: str):
    """A missing stream's error, with "did you mean …?" when a stream of a close name exists."""
    try:
        names = await stream_names(conn)
    except Exception:          # the hint is a nicety: never let it hide the error itself
        return err
    close = difflib.get_close_matches(stream, names, n=1)
    if close:
        err = type(err)(err.what, f"did you mean {close[0]!r}? {err.fix}")
    return err


async def paged(conn, subject: str, key: str, body: dict | None = None, *, what: str,
                stream: str | None = None) -> list:
    """Every item of a paged ``$JS.API`` listing (``STREAM.NAMES`` → ``"streams"`` …).

    >>> await paged(conn, "STREAM.LIST", "streams", what="listing streams")   # doctest: +SKIP
    [{'config': {...}, 'state': {...}}, ...]
    """
    out: list = []
    while True:
        resp = await request(conn, subject, {**(body or {}), "offset": len(out)}, what=what, stream=stream)
        page = resp.get(key) or []
        out += page
        if not page or len(out) >= resp.get("total", 0):
            return out


async def stream_names(conn, subject: str | None = None) -> list[str]:
    """Names of the streams (that store ``subject``, when given).

    >>> await stream_names(conn, "orders.new")   # doctest: +SKIP
    ['ORDERS']
    """
    return await paged(conn, "STREAM.NAMES", "streams", {"subject": subject} if subject else None,
                       what="listing streams")


def server_version(conn) -> tuple[int, int, int]:
    """The connected server's version, e.g. ``(2, 15, 1)``.

    >>> server_version(nbnats.current())   # doctest: +SKIP
    (2, 15, 1)
    """
    v = conn.nc.connected_server_version
    return (v.major, v.minor, v.patch)


def needs(conn, version: tuple[int, int], feature: str) -> None:
    """Refuse plainly when the server is older than ``version`` for ``feature``.

    >>> needs(nbnats.current(), (2, 12), "counters")   # doctest: +SKIP
    """
    have = server_version(conn)
    if have[:2] < version:
        raise JetStreamError(f"{feature} needs nats-server {version[0]}.{version[1]}+ "
                             f"(this one is {'.'.join(map(str, have))})", "upgrade the server")
