"""Pull requests (``CONSUMER.MSG.NEXT``) and the answers a delivered message takes.

>>> msgs = await pull(conn, "ORDERS", "billing", 10, expires=2.0)   # doctest: +SKIP
>>> await answer(conn, msgs[0].reply, ACK)                          # doctest: +SKIP
>>> await answer_many(conn, [m.reply for m in msgs[1:]], ACK)        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio

import nats.errors
import orjson

from nbnats.engine import acks, api
from nbnats.engine.errors import NO_LEADER, NO_LEADER_FIX
from nbnats.errors import JetStreamError, NatsError, NotFound

ACK, NAK, TERM, WPI = b"+ACK", b"-NAK", b"+TERM", b"+WPI"
_END = {"404", "408"}       # no messages / the request expired: the pull is over, not an error


def pull_body(batch: int, *, expires: float | None = None, no_wait: bool = False,
              max_bytes: int | None = None, heartbeat: float | None = None) -> dict:
    """The JSON body of one pull request.

    >>> pull_body(10, expires=2.0)
    {'batch': 10, 'expires': 2000000000}
    """
    body: dict = {"batch": batch}
    if expires:
        body["expires"] = int(expires * 1e9)
    if no_wait:
        body["no_wait"] = True
    if max_bytes:
        body["max_bytes"] = int(max_bytes)
    if heartbeat:
        body["idle_heartbeat"] = int(heartbeat * 1e9)
    return body


def refused(stream: str, consumer: str, status: str, text: str) -> JetStreamError:
    """The error for a pull the server ended with a 409 (or another unexpected status).

    >>> refused("S", "c", "409", "Consumer Deleted").what
    "consumer 'c' of stream 'S' was deleted while it was read"
    """
    if "Deleted" in text:
        return NotFound(f"consumer {consumer!r} of stream {stream!r} was deleted while it was read",
                        "add it again, or read another consumer")
    if "push" in text.lower():
        return JetStreamError(f"consumer {consumer!r} of stream {stream!r} is a push consumer",
                              "fetching reads pull consumers: add one without a deliver subject")
    return JetStreamError(f"consumer {consumer!r} of stream {stream!r} refused the pull: {status} {text}".strip(),
                          "check it with nbnats.consumer_info()")


async def pull(conn, stream: str, consumer: str, batch: int, *, expires: float | None = None,
               no_wait: bool = False, max_bytes: int | None = None, timeout: float | None = None) -> list:
    """One pull request; the messages it brought, in order (loop thread).

    It ends when ``batch`` messages arrived, when the server says there are no
    more (``no_wait``) or the request expired, or after ``timeout`` seconds
    (default: ``expires`` plus a margin). A 409 (consumer deleted, push
    consumer, limits) is a plain error; "Leadership Change" ends it quietly.
    """
    got: list = []
    done = asyncio.Event()
    status: dict[str, str] = {}

    async def on_msg(msg):
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            got.append(msg)
            if len(got) >= batch:
                done.set()
            return
        headers = msg.headers or {}
        code = headers.get("Status")
        if code == "100":
            return                                  # a heartbeat of a long pull
        status.update(code=code or "", text=headers.get("Description", ""))
        done.set()

    nc = conn.nc
    inbox = nc.new_inbox()
    try:
        sub = await nc.subscribe(inbox, cb=on_msg)
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise api.disconnected(conn) from None
    try:
        await nc.publish(f"{api.PREFIX}CONSUMER.MSG.NEXT.{stream}.{consumer}",
                         orjson.dumps(pull_body(batch, expires=expires, no_wait=no_wait, max_bytes=max_bytes)),
                         reply=inbox)
        wait = timeout if timeout is not None else (expires or 0) + 2.0
        try:
            await asyncio.wait_for(done.wait(), wait)
        except asyncio.TimeoutError:
            pass
    finally:
        try:
            await sub.unsubscribe()
        except Exception:
            pass
    code, text = status.get("code", ""), status.get("text", "")
    if code and code not in _END and not (code == "409" and "Leadership" in text):
        if code == "503":
            # Nobody serves this consumer's MSG.NEXT subject: the consumer (or JetStream) is missing.
            # CONSUMER.INFO words which one; if it answers, JetStream is between leaders.
            await api.request(conn, f"CONSUMER.INFO.{stream}.{consumer}", what=f"reading consumer {consumer!r}",
                              stream=stream, consumer=consumer)
            raise JetStreamError(NO_LEADER, NO_LEADER_FIX)
        raise refused(stream, consumer, code, text)
    return got


def answer_body(kind: bytes, delay: float | None = None, reason: str | None = None) -> bytes:
    """What an answer sends: the kind, with a NAK's delay or a TERM's reason.

    >>> answer_body(NAK, delay=5)
    b'-NAK {"delay":5000000000}'
    """
    if kind == NAK and delay:
        return NAK + b" " + orjson.dumps({"delay": int(delay * 1e9)})
    if kind == TERM and reason:
        return TERM + b" " + reason.encode()
    return kind


def _names(reply: str) -> tuple[str, str]:
    meta = acks.parse(reply)
    return (meta.stream, meta.consumer) if meta else ("?", "?")


def _gone(reply: str) -> NotFound:
    stream, consumer = _names(reply)
    return NotFound(f"consumer {consumer!r} of stream {stream!r} no longer exists, so the message cannot be answered",
                    "it will not be redelivered by that consumer; add it again to read on")


async def answer(conn, reply: str, kind: bytes, *, delay: float | None = None, reason: str | None = None,
                 timeout: float = api.TIMEOUT, confirm: bool = True) -> None:
    """Answer a delivered message (``ACK``, ``NAK``, ``TERM``, ``WPI``); with ``confirm`` the server's reply is awaited.

    A confirmed answer proves the server took it: a consumer that was deleted
    meanwhile is a plain error, not a silent loss.
    """
    body = answer_body(kind, delay, reason)
    try:
        if confirm and kind != WPI:
            await conn.nc.request(reply, body, timeout=timeout)
        else:
            await conn.nc.publish(reply, body)
    except nats.errors.NoRespondersError:
        raise _gone(reply) from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise api.no_answer(conn, f"the acknowledgement on {_names(reply)[0]!r}", timeout) from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise api.disconnected(conn) from None


async def answer_many(conn, replies: list[str], kind: bytes, *, delay: float | None = None,
                      reason: str | None = None, timeout: float = api.TIMEOUT) -> list[NatsError | None]:
    """Answer many delivered messages at once, each confirmed by the server (loop thread).

    The answers go out in one pipelined burst, their confirmations come back on
    one wildcard inbox (a request each would cost a future and a timer per
    message). Returns, per reply, None (confirmed) or the error: NotFound when
    its consumer is gone, Timeout when it was not confirmed and nothing came
    back for ``timeout`` seconds.

    >>> await answer_many(conn, [m.reply for m in msgs], ACK)   # doctest: +SKIP
    [None, None]
    """
    if not replies:
        return []
    body, nc = answer_body(kind, delay, reason), conn.nc
    inbox = nc.new_inbox()
    waiting = object()
    outcome: list = [waiting] * len(replies)
    left = [len(replies)]
    done = asyncio.Event()

    async def on_reply(msg) -> None:
        i = msg.subject.rpartition(".")[2]
        i = int(i) if i.isdigit() and i.isascii() else -1
        if not 0 <= i < len(outcome) or outcome[i] is not waiting:
            return
        outcome[i] = _gone(replies[i]) if (msg.headers or {}).get("Status") == "503" else None
        left[0] -= 1
        if not left[0]:
            done.set()

    try:
        sub = await nc.subscribe(f"{inbox}.*", cb=on_reply, pending_msgs_limit=len(replies) + 1024)
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise api.disconnected(conn) from None
    try:
        try:
            for i, reply in enumerate(replies):
                await nc.publish(reply, body, reply=f"{inbox}.{i}")
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise api.disconnected(conn) from None
        while not done.is_set():            # a large batch takes as long as it keeps being confirmed
            seen = left[0]
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                if left[0] == seen:
                    break
    finally:
        try:
            await sub.unsubscribe()
        except Exception:       # the connection closed meanwhile: nothing left to unsubscribe
            pass
    if not left[0]:
        return outcome
    late = api.no_answer(conn, f"the acknowledgement on {_names(replies[0])[0]!r}", timeout)
    return [late if r is waiting else r for r in outcome]

