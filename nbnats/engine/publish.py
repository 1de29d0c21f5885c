"""JetStream publishes: a request to the subject, the stream's ack parsed here, elections ridden out.

>>> ack = await publish(conn, "orders.new", b'{"id": 1}', timeout=5)   # doctest: +SKIP
>>> ack["stream"], ack["seq"]                                         # doctest: +SKIP
('ORDERS', 1)
"""

from __future__ import annotations

import asyncio

import nats.errors
import orjson

from nbnats.engine import api
from nbnats.engine.errors import NO_LEADER, NO_LEADER_FIX, translate
from nbnats.errors import JetStreamError, NatsError, NotFound, Timeout

RESEND_EVERY = 2.0       # seconds before a publish with a Nats-Msg-Id is sent again
UNKNOWN = "?"            # a stream may store the subject, but nobody could say which


async def publish(conn, subject: str, payload: bytes, *, headers: dict | None = None,
                  timeout: float = api.TIMEOUT, stream: str | None = None) -> dict:
    """Publish to JetStream and return the stream's ack (``stream``, ``seq``, ``duplicate``).

    A stream electing a leader answers nothing, like no stream at all: while
    a stream stores ``subject``, wait and send again within ``timeout``
    (nats.go does the same). With a ``Nats-Msg-Id`` an unanswered publish is
    sent again too, as the stream drops the duplicate; without one a lost ack
    stays a :class:`~nbnats.errors.Timeout`, since sending again could store it twice.
    """
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout
    dedup = bool(headers and "Nats-Msg-Id" in headers)
    stored_by: str | None = None
    while True:
        left = deadline - clock()
        try:
            msg = await conn.nc.request(subject, payload, timeout=max(min(left, RESEND_EVERY) if dedup else left, 0.1),
                                        headers=headers)
        except nats.errors.NoRespondersError:
            if deadline - clock() < 0.3:
                if stored_by:
                    which = (f"the stream storing {subject!r}" if stored_by == UNKNOWN
                             else f"stream {stored_by!r} (which stores {subject!r})")
                    raise JetStreamError(f"{which} did not answer: {NO_LEADER}", NO_LEADER_FIX) from None
                raise NotFound(f"no JetStream stream stores subject {subject!r}",
                               f"add one: nbnats.add_stream(NAME, subjects={subject!r})") from None
            stored_by = await _stored_by(conn, subject, min(1.0, deadline - clock())) or stored_by
            if stored_by is None:
                raise NotFound(f"no JetStream stream stores subject {subject!r}",
                               f"add one: nbnats.add_stream(NAME, subjects={subject!r})") from None
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            if not dedup or deadline - clock() < 0.3:
                raise Timeout(f"JetStream did not acknowledge the message on {subject!r} within {timeout:g} s",
                              "the stream may have no leader right now, or the server is stalled: "
                              "check nbnats.status(), then publish again (with a msg_id it is not stored twice)") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise api.disconnected(conn) from None
        else:
            try:
                ack = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                raise JetStreamError(f"the publish to {subject!r} was answered by something that is not "
                                     "JetStream (a plain subscriber replied)",
                                     "publish without js=True, or stop the responder on that subject") from None
            if "error" in ack:
                raise translate(ack["error"], f"storing the message on {subject!r}", stream=ack.get("stream") or stream)
            return ack
        await asyncio.sleep(0.25)


async def _stored_by(conn, subject: str, timeout: float) -> str | None:
    """The stream that stores ``subject``; None when none does; raises nothing while electing."""
    try:
        names = await api.request(conn, "STREAM.NAMES", {"subject": subject}, what="finding the stream",
                                  timeout=max(timeout, 0.1))
    except NatsError:
        return UNKNOWN           # the meta leader is being elected too: assume there is one, keep trying
    found = names.get("streams") or []
    return found[0] if found else None
