"""Many JetStream publishes in order, with a window of acks outstanding (like nats.go's PublishAsync).

One round trip per message is slow for bulk writes (object chunks, imports).
:func:`publish_window` sends each part in order to one subject, each with its
own reply subject under one inbox, and waits for the stream's acks only when
``window`` of them are outstanding. The first refusal stops it and is raised
as the plain nbnats error of :mod:`nbnats.engine.errors`.

>>> async def parts():                                                         # doctest: +SKIP
...     for chunk in (b"a", b"b", b"c"):
...         yield chunk
>>> await publish_window(conn, "$O.files.C.NUID", parts(), stream="OBJ_files")  # doctest: +SKIP
3
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable

import orjson

from nbnats.engine import api
from nbnats.engine.errors import translate
from nbnats.errors import JetStreamError, NatsError, NotFound, Timeout

WINDOW = 32          # acks outstanding at most


async def publish_window(conn, subject: str, parts: AsyncIterable[bytes], *, window: int = WINDOW,
                         timeout: float = api.TIMEOUT, stream: str | None = None,
                         headers: dict | None = None) -> int:
    """Publish every part of ``parts`` to ``subject`` in order; return how many the stream stored.

    A part is the payload, or a ``(subject, payload, headers)`` tuple for a
    message of its own subject (``subject`` then only names them in errors).

    ``timeout`` bounds each wait for an ack (no ack for that long is a
    :class:`~nbnats.errors.Timeout`). A refused part raises its error, with
    ``err_code`` set to JetStream's code when the server gave one; parts sent
    before it stay stored (the caller cleans up).

    >>> await publish_window(conn, "orders.bulk", parts(), window=64)   # doctest: +SKIP
    1000
    """
    nc = conn.nc
    inbox = nc.new_inbox()
    outstanding: set[int] = set()
    state: dict = {"acked": 0, "failure": None}
    slots = asyncio.Semaphore(window)
    heard = asyncio.Event()

    async def on_ack(msg) -> None:
        index = int(msg.subject.rsplit(".", 1)[1])
        if index not in outstanding:
            return
        outstanding.discard(index)
        slots.release()
        heard.set()
        failure = _refusal(msg, subject, stream)
        if failure is None:
            state["acked"] += 1
        elif state["failure"] is None:
            state["failure"] = failure

    async def wait_for_ack(what: str) -> None:
        heard.clear()
        try:
            await asyncio.wait_for(heard.wait(), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"JetStream did not acknowledge {what} on {subject!r} within {timeout:g} s",
                          "the stream may have no leader right now, or the server is stalled: "
                          "check nbnats.status(), then try again") from None

    sub = await nc.subscribe(f"{inbox}.*", cb=on_ack)
    try:
        sent = 0
        async for part in parts:
            while slots.locked() and state["failure"] is None:
                await wait_for_ack(f"message {sent - len(outstanding) + 1}")
            if state["failure"] is not None:
                break
            await slots.acquire()
            outstanding.add(sent)
            if isinstance(part, tuple):
                await nc.publish(part[0], part[1], reply=f"{inbox}.{sent}", headers=part[2])
            else:
                await nc.publish(subject, part, reply=f"{inbox}.{sent}", headers=headers)
            sent += 1
        while outstanding and state["failure"] is None:
            await wait_for_ack(f"the last {len(outstanding)} message(s)")
        if state["failure"] is not None:
            # hear the parts already sent, so a caller's clean-up comes after them
            while outstanding:
                try:
                    await wait_for_ack("the parts sent before a refusal")
                except Timeout:
                    break
            raise state["failure"]
        return state["acked"]
    finally:
        try:
            await sub.unsubscribe()
        except Exception:    # the connection may be gone already; nothing is left to release
            pass


def _refusal(msg, subject: str, stream: str | None) -> NatsError | None:
    """The error an ack message carries, or None when the part was stored."""
    if (msg.headers or {}).get("Status") == "503":
        return NotFound(f"no JetStream stream stores subject {subject!r}",
                        f"add one: nbnats.add_stream(NAME, subjects={subject!r})")
    try:
        ack = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return JetStreamError(f"a publish to {subject!r} was answered by something that is not JetStream",
                              "stop the plain responder on that subject")
    if "error" not in ack:
        return None
    err = translate(ack["error"], f"storing a message on {subject!r}", stream=ack.get("stream") or stream)
    err.err_code = ack["error"].get("err_code")
    return err
