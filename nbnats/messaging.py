"""Core NATS: publish, request/reply, responders and queue groups.

>>> nbnats.publish("orders.created", {"id": 1})                     # doctest: +SKIP
>>> svc = nbnats.serve("greet", lambda m: f"hello {m.text}")        # doctest: +SKIP
>>> nbnats.request("greet", "ada").text                             # doctest: +SKIP
'hello ada'
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import nats.errors

from nbnats.data import units, validate
from nbnats.data.payload import Message, encode
from nbnats.engine import api
from nbnats.engine import publish as engine_publish
from nbnats.errors import (NatsError, NoResponders, NotConnected, ServiceError, Timeout, ValidationError)
from nbnats.runtime import connection, loop
from nbnats.runtime.connection import Connection, current
from nbnats.schema import hooks as schema_hooks


class PubAck(NamedTuple):
    """JetStream's acknowledgement of a stored message."""

    stream: str
    seq: int
    duplicate: bool


def _prepare(conn: Connection, subject: str, data: Any, headers: dict | None) -> tuple[bytes, dict | None]:
    validate.subject(subject, publish=True)
    hdrs = validate.headers(headers)
    payload = encode(data, subject)
    validate.payload_size(len(payload), conn.max_payload, subject, hdrs)
    schema_hooks.before_publish(subject, data, payload, conn)
    return payload, hdrs


def _timeout(value: Any) -> float:
    seconds = units.seconds(value, "timeout")
    if not seconds:
        raise NatsError(f"timeout {value!r} is not a positive duration", "pass e.g. timeout=2 or timeout='500ms'")
    return seconds


def _not_connected(conn: Connection) -> NotConnected:
    return NotConnected(f"the connection to {conn.url} is down (the client is reconnecting)",
                        "wait for the server to come back, or nbnats.connect(url) to another one")


async def _flush(conn: Connection, timeout: float) -> None:
    try:
        await connection.ping(conn, timeout, "the publish confirmation", flush=True)
    except NotConnected:
        if conn.nc.is_closed:
            raise _not_connected(conn) from None
        raise NotConnected(f"the server at {conn.url} went away; the message is buffered and "
                           "will be sent when the client reconnects",
                           "restart the server, or connect to another one with nbnats.connect(url)") from None


def publish(subject: str, data: Any = b"", headers: dict | None = None, js: bool = False,
            msg_id: str | None = None, count: int = 1, timeout: float = 5.0,
            connection: str | None = None, *, ttl: Any = None, schedule: Any = None,
            schedule_target: str | None = None, schedule_ttl: Any = None) -> PubAck | list[PubAck] | None:
    """Publish a message (``count`` times); with ``js=True`` wait for JetStream's ack.

    ``data``: dict/list → JSON, str → UTF-8, bytes as they are. ``msg_id``
    sets ``Nats-Msg-Id`` so JetStream drops duplicates within its window.
    ``ttl`` (``"10s"``, seconds, ``"never"``) expires this message on its own
    (nats-server 2.11+, a stream made with ``allow_msg_ttl=True``).
    ``schedule`` keeps the message on ``subject`` as a schedule that publishes
    it to ``schedule_target`` later: a delay (``"10s"``), a time
    (``"@at 2026-12-01T10:00:00Z"``, ISO, a datetime; 2.12+), or a repeat
    (``"@every 5m"``, ``"@hourly"``, cron; 2.14+); the stream needs
    ``allow_schedules=True``; ``schedule_ttl`` is the TTL of what it publishes.
    ``ttl`` and ``schedule`` publish to JetStream (as ``js=True``).

    >>> nbnats.publish("orders.created", {"id": 1}, headers={"Trace-Id": "t1"})   # doctest: +SKIP
    >>> nbnats.publish("orders.created", {"id": 2}, js=True)                       # doctest: +SKIP
    PubAck(stream='ORDERS', seq=2, duplicate=False)
    >>> nbnats.publish("orders.created", {"id": 3}, ttl="10s")                     # doctest: +SKIP
    >>> nbnats.publish("orders.sched.1", {"id": 4}, schedule="1h", schedule_target="orders.remind")  # doctest: +SKIP
    """
    timeout = _timeout(timeout)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise NatsError(f"count must be a whole number of at least 1, not {count!r}", "pass e.g. count=1")
    conn = current(connection)
    if msg_id is not None:
        headers = {**(headers or {}), "Nats-Msg-Id": msg_id}
    extra, need = _feature_headers(subject, ttl, schedule, schedule_target, schedule_ttl)
    for version, feature in need:
        api.needs(conn, version, feature)
    if extra:
        headers, js = {**(headers or {}), **extra}, True
    payload, hdrs = _prepare(conn, subject, data, headers)

    async def send_core():
        if not conn.nc.is_connected and not conn.nc.is_reconnecting:
            raise _not_connected(conn)
        for _ in range(count):
            await conn.nc.publish(subject, payload, headers=hdrs)
        await _flush(conn, timeout)

    async def send_js():
        acks = []
        for _ in range(count):
            ack = await engine_publish.publish(conn, subject, payload, headers=hdrs, timeout=timeout)
            acks.append(PubAck(ack["stream"], ack["seq"], bool(ack.get("duplicate"))))
        return acks[0] if count == 1 else acks

    if js:
        return loop.run(send_js(), timeout * count + 1, f"publishing {count} message(s) to {subject!r}")
    loop.run(send_core(), timeout + max(1.0, count / 50_000), f"publishing to {subject!r}")
    return None


def _feature_headers(subject: str, ttl: Any, schedule: Any, target: str | None,
                     schedule_ttl: Any) -> tuple[dict, list[tuple[tuple[int, int], str]]]:
    """The headers of a per-message TTL and a schedule, and the (version, feature) each needs."""
    extra: dict = {}
    need: list = []
    if ttl is not None:
        extra[engine_publish.TTL] = engine_publish.ttl_value(ttl)
        need.append(((2, 11), "a per-message ttl"))
    if schedule is not None:
        found, version = engine_publish.schedule_headers(subject, schedule, target, schedule_ttl)
        extra.update(found)
        need.append((version, "a repeating schedule" if version > (2, 12) else "a scheduled message"))
    elif target is not None or schedule_ttl is not None:
        raise ValidationError("schedule_target and schedule_ttl only go with a schedule",
                              "pass schedule='10s' (or '@at 2026-12-01T10:00:00Z') too")
    return extra, need


def request(subject: str, data: Any = b"", timeout: float = 2.0, headers: dict | None = None,
            connection: str | None = None) -> Message:
    """Send a request and wait for the first reply.

    Nobody listening is told at once (:class:`NoResponders`), not after the timeout.

    >>> nbnats.request("time.now", timeout=1).text   # doctest: +SKIP
    '2026-11-27T14:00:00Z'
    """
    timeout = _timeout(timeout)
    conn = current(connection)
    payload, hdrs = _prepare(conn, subject, data, headers)

    async def ask():
        try:
            msg = await conn.nc.request(subject, payload, timeout=timeout, headers=hdrs)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no service is listening on {subject!r}",
                               "start a responder (nbnats.serve(subject, handler)) or check the subject") from None
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            raise Timeout(f"no reply on {subject!r} within {timeout:g} s",
                          "the responder is slow or busy: pass a longer timeout=…, or check it is running") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise _not_connected(conn) from None
        failed = (msg.headers or {}).get("Nats-Service-Error")
        if failed:                       # a responder (nbnats, nats.go micro, …) says its handler failed
            code = (msg.headers or {}).get("Nats-Service-Error-Code")
            raise ServiceError(f"the responder on {subject!r} failed: {failed}" + (f" (code {code})" if code else ""),
                               "fix the handler (its notebook shows the error; svc.last_errors lists the recent "
                               "ones), then send the request again")
        return Message(subject, msg.data, msg.headers)   # named by what was asked, not the inbox

    return loop.run(ask(), timeout + 2, f"the request to {subject!r}")


async def gather(conn: Connection, subject: str, data: bytes = b"", wait: float = 0.5,
                 limit: int | None = None) -> list[Message]:
    """Collect every reply to one request within ``wait`` seconds (loop-thread coroutine).

    Used for discovery (``$SRV.PING``), where many services answer one request.
    """
    inbox = conn.nc.new_inbox()
    replies: list[Message] = []
    done = asyncio.Event()

    async def on_reply(msg):
        replies.append(Message(msg.subject, msg.data, msg.headers, msg.reply))
        if limit and len(replies) >= limit:
            done.set()

    sub = await conn.nc.subscribe(inbox, cb=on_reply)
    try:
        await conn.nc.publish(subject, data, reply=inbox)
        await connection.ping(conn, wait + 1, "sending the discovery request", flush=True)
        try:
            await asyncio.wait_for(done.wait(), wait)
        except asyncio.TimeoutError:
            pass
    finally:
        await sub.unsubscribe()
    return replies


_service_ids = itertools.count(1)
ERRORS_KEPT = 20          # recent handler failures a responder keeps
log = logging.getLogger("nbnats")


class Service:
    """A responder started by :func:`serve`; ``stop()`` ends it.

    ``handled`` counts requests answered, ``errors`` the handler's failures
    (each answered with a ``Nats-Service-Error`` header, which the requester's
    :func:`request` raises as :class:`~nbnats.errors.ServiceError`), ``last_error``
    the latest one, ``last_errors`` the recent ones; the first failure of each
    kind is logged once.
    """

    def __init__(self, conn: Connection, subject: str, handler: Callable, queue: str | None):
        self.id = f"s{next(_service_ids)}"
        self.conn = conn
        self.subject = subject
        self.queue = queue
        self.handler = handler
        self.handled = 0
        self.errors = 0
        self.last_error: str | None = None
        self.last_errors: deque = deque(maxlen=ERRORS_KEPT)   # (time, subject, error), newest last
        self._warned: set[str] = set()
        self.started = time.time()
        self._sub = None
        self._is_async = inspect.iscoroutinefunction(handler)

    @property
    def running(self) -> bool:
        """True until stopped or its connection closes."""
        return self._sub is not None

    async def _start(self) -> None:
        self._sub = await self.conn.nc.subscribe(self.subject, queue=self.queue or "", cb=self._on_request)
        await connection.ping(self.conn, 2, f"subscribing the responder on {self.subject!r}", flush=True)
        self.conn.listeners.append(self)

    async def _on_request(self, msg) -> None:
        request = Message(msg.subject, msg.data, msg.headers, msg.reply)
        try:
            if self._is_async:
                result = await self.handler(request)
            else:  # a plain handler may call the sync nbnats API, so it runs off the loop
                result = await loop.to_thread(self.handler, request)
            body, headers = encode(result), None
        except Exception as exc:
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.last_errors.append((time.time(), msg.subject, self.last_error))
            kind = type(exc).__name__
            if kind not in self._warned:          # shown once per kind of failure, counted always
                self._warned.add(kind)
                log.warning("nbnats: responder %s on %r failed: %s — the requester was told; "
                            "svc.errors counts the failures, svc.last_errors lists them", self.id, self.subject,
                            self.last_error)
            body, headers = b"", {"Nats-Service-Error": self.last_error[:200].replace("\n", " "),
                                  "Nats-Service-Error-Code": "500"}
        if msg.reply:
            await self.conn.nc.publish(msg.reply, body, headers=headers)
        self.handled += 1

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe (draining requests already received).

        >>> svc.stop()   # doctest: +SKIP
        """
        sub, self._sub = self._sub, None
        if sub is None:
            return

        async def end():
            try:
                await sub.drain()
            except Exception:
                pass
            if self in self.conn.listeners:
                self.conn.listeners.remove(self)

        loop.run(end(), timeout, f"stopping the responder on {self.subject!r}")

    # connection events
    def _disconnected(self, at: float) -> None: ...
    def _reconnected(self, since: float | None, at: float) -> None: ...
    def _closing(self) -> None: ...

    def _closed(self) -> None:
        self._sub = None

    def __repr__(self) -> str:
        q = f" queue={self.queue!r}" if self.queue else ""
        state = "running" if self.running else "stopped"
        return f"<Service {self.id} {self.subject!r}{q} {state}: {self.handled} handled, {self.errors} errors>"


_services: list[Service] = []


def serve(subject: str, handler: Callable[[Message], Any], queue: str | None = None,
          connection: str | None = None) -> Service:
    """Answer requests on ``subject`` with ``handler(msg)``'s return value.

    The return value is encoded like a payload (dict → JSON, str, bytes).
    With ``queue``, responders of the same group share the requests.
    A plain ``def`` handler runs in a worker thread; an ``async def`` on the loop.

    >>> svc = nbnats.serve("math.double", lambda m: {"x": m.json()["x"] * 2}, queue="math")   # doctest: +SKIP
    >>> svc.stop()                                                                          # doctest: +SKIP
    """
    validate.subject(subject)
    if queue is not None:
        validate.subject(queue, what="queue group")
    if not callable(handler):
        raise NatsError(f"the handler for {subject!r} is not callable",
                        "pass a function that takes the request message and returns the reply")
    conn = current(connection)
    svc = Service(conn, subject, handler, queue)
    loop.run(svc._start(), 5, f"subscribing the responder on {subject!r}")
    _services.append(svc)
    return svc


def services_running() -> list[Service]:
    """Responders started in this session that are still running."""
    return [s for s in _services if s.running]
