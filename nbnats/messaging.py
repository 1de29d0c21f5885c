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
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import nats.errors
import orjson

from nbnats.data import frames, validate
from nbnats.runtime import loop
from nbnats.schema import hooks as schema_hooks
from nbnats.data import payload as payload_mod
from nbnats.runtime.connection import Connection, current
from nbnats.errors import JetStreamError, NatsError, NoResponders, NotConnected, NotFound, Timeout
from nbnats.data.payload import Message, encode


class PubAck(NamedTuple):
    """JetStream's acknowledgement of a stored message."""

    stream: str
    seq: int
    duplicate: bool


def _prepare(conn: Connection, subject: str, data: Any, headers: dict | None) -> tuple[bytes, dict | None]:
    validate.subject(subject, publish=True)
    hdrs = validate.headers(headers)
    payload = encode(data, subject)
    validate.payload_size(len(payload), conn.max_payload, subject)
    schema_hooks.before_publish(subject, data, payload, conn)
    return payload, hdrs


def _not_connected(conn: Connection) -> NotConnected:
    return NotConnected(f"the connection to {conn.url} is down (the client is reconnecting)",
                        "wait for the server to come back, or %nats connect to another one")


async def _flush(conn: Connection, timeout: float) -> None:
    try:
        await conn.nc.flush(timeout)
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        if conn.nc.is_reconnecting:
            raise NotConnected(f"the server at {conn.url} went away; the message is buffered and "
                               "will be sent when the client reconnects",
                               "restart the server, or %nats connect to another one") from None
        raise Timeout(f"the server at {conn.url} did not confirm the publish within {timeout:g} s",
                      "check the connection with %nats status") from None
    except nats.errors.ConnectionClosedError:
        raise _not_connected(conn) from None


async def js_publish(conn: Connection, subject: str, payload: bytes, timeout: float, hdrs: dict | None):
    """``js.publish`` that rides out a failover within ``timeout``.

    A stream electing a leader answers nothing (a 503), like no stream at all:
    if a stream stores ``subject``, wait and resend (nats.go does so too). With
    a ``Nats-Msg-Id`` an unanswered publish is resent as well, as the stream
    drops the duplicate; without one a lost ack stays a Timeout, since
    resending could store the message twice.
    """
    clock = asyncio.get_running_loop().time
    deadline = clock() + timeout
    dedup = bool(hdrs and "Nats-Msg-Id" in hdrs)
    stream_exists = False
    while True:
        left = deadline - clock()
        try:
            return await conn.js.publish(subject, payload, timeout=max(min(left, 2.0) if dedup else left, 0.1),
                                         headers=hdrs)
        except nats.js.errors.NoStreamResponseError:
            if deadline - clock() < 0.3:
                if stream_exists:
                    raise JetStreamError(
                        f"the stream storing {subject!r} did not answer: it has no leader right now "
                        "(a cluster without quorum, or nodes restarting)",
                        "bring the stopped nodes back, then publish again") from None
                raise
            try:
                await asyncio.wait_for(conn.js.find_stream_name_by_subject(subject), min(1.0, deadline - clock()))
                stream_exists = True
            except nats.js.errors.NotFoundError:
                raise nats.js.errors.NoStreamResponseError from None
            except (asyncio.TimeoutError, nats.errors.Error):
                pass                 # the meta leader is being elected too: keep trying
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            if not dedup or deadline - clock() < 0.3:
                raise
        await asyncio.sleep(0.25)


def publish(subject: str, data: Any = b"", headers: dict | None = None, js: bool = False,
            msg_id: str | None = None, count: int = 1, timeout: float = 5.0,
            connection: str | None = None) -> PubAck | list[PubAck] | None:
    """Publish a message (``count`` times); with ``js=True`` wait for JetStream's ack.

    ``data``: dict/list → JSON, str → UTF-8, bytes as they are. ``msg_id``
    sets ``Nats-Msg-Id`` so JetStream drops duplicates within its window.

    >>> nbnats.publish("orders.created", {"id": 1}, headers={"Trace-Id": "t1"})   # doctest: +SKIP
    >>> nbnats.publish("orders.created", {"id": 2}, js=True)                       # doctest: +SKIP
    PubAck(stream='ORDERS', seq=2, duplicate=False)
    """
    conn = current(connection)
    payload, hdrs = _prepare(conn, subject, data, headers)
    if msg_id is not None:
        hdrs = {**(hdrs or {}), "Nats-Msg-Id": str(msg_id)}
    if count < 1:
        raise NatsError(f"--count must be at least 1, not {count}", "pass a positive number")

    async def send_core():
        if not conn.nc.is_connected and not conn.nc.is_reconnecting:
            raise _not_connected(conn)
        for _ in range(count):
            await conn.nc.publish(subject, payload, headers=hdrs)
        await _flush(conn, timeout)

    async def send_js():
        acks = []
        for _ in range(count):
            try:
                ack = await js_publish(conn, subject, payload, timeout, hdrs)
            except nats.js.errors.NoStreamResponseError:
                raise NotFound(f"no JetStream stream stores subject {subject!r}",
                               f"add one: %nats stream add NAME --subjects {subject}") from None
            except nats.js.errors.APIError as exc:
                raise JetStreamError(f"JetStream refused the message on {subject!r}: {exc.description}",
                                     "check the stream's limits with %nats stream info") from None
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                raise Timeout(f"JetStream did not acknowledge {subject!r} within {timeout:g} s",
                              "check that JetStream is enabled (%nats status) and a stream stores it") from None
            except nats.errors.NoRespondersError:
                raise JetStreamError(f"nothing answered the JetStream publish to {subject!r}",
                                     "JetStream may be off on this server; start one with JetStream or add a stream") from None
            acks.append(PubAck(ack.stream, ack.seq, bool(ack.duplicate)))
        return acks[0] if count == 1 else acks

    if js:
        return loop.run(send_js(), timeout * count + 1, f"publishing {count} message(s) to {subject!r}")
    loop.run(send_core(), timeout + max(1.0, count / 50_000), f"publishing to {subject!r}")
    return None


def request(subject: str, data: Any = b"", timeout: float = 2.0, headers: dict | None = None,
            connection: str | None = None) -> Message:
    """Send a request and wait for the first reply.

    Nobody listening is told at once (:class:`NoResponders`), not after the timeout.

    >>> nbnats.request("time.now", timeout=1).text   # doctest: +SKIP
    '2026-11-27T14:00:00Z'
    """
    conn = current(connection)
    payload, hdrs = _prepare(conn, subject, data, headers)

    async def ask():
        try:
            msg = await conn.nc.request(subject, payload, timeout=timeout, headers=hdrs)
        except nats.errors.NoRespondersError:
            raise NoResponders(f"no service is listening on {subject!r}",
                               "start a responder (nbnats.serve or %nats reply) or check the subject") from None
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            raise Timeout(f"no reply on {subject!r} within {timeout:g} s",
                          "the responder is slow or busy: raise --timeout, or check it is running") from None
        except nats.errors.ConnectionClosedError:
            raise _not_connected(conn) from None
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
        await conn.nc.flush(wait + 1)
        try:
            await asyncio.wait_for(done.wait(), wait)
        except asyncio.TimeoutError:
            pass
    finally:
        await sub.unsubscribe()
    return replies


_service_ids = itertools.count(1)


class Service:
    """A responder started by :func:`serve`; ``stop()`` ends it.

    ``handled`` counts requests answered, ``errors`` the handler's failures
    (each answered with a ``Nats-Service-Error`` header), ``last_error`` the
    latest one.
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
        self.started = time.time()
        self._sub = None
        self._is_async = inspect.iscoroutinefunction(handler)

    @property
    def running(self) -> bool:
        """True until stopped or its connection closes."""
        return self._sub is not None

    async def _start(self) -> None:
        self._sub = await self.conn.nc.subscribe(self.subject, queue=self.queue or "", cb=self._on_request)
        await self.conn.nc.flush(2)
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


def publish_frame(subject: str | None, df, subject_column: str | None = None, headers: dict | None = None,
                  progress: bool | None = None, connection: str | None = None) -> int:
    """Publish each row of a DataFrame as one JSON message; returns the count.

    The subject comes from ``subject`` or, per row, from ``subject_column``.
    Columns named like the standard frame's (time, seq, size, headers) are
    dropped, so a replayed frame can be published again.

    >>> nbnats.publish_frame("orders.created", df)                # doctest: +SKIP
    3
    >>> nbnats.publish_frame(None, df, subject_column="subject")  # doctest: +SKIP
    3
    """
    from nbnats.progress import progress_bar

    if subject is None and subject_column is None:
        raise NatsError("publish_frame needs a subject or a subject_column",
                        "pass subject='orders.created' or subject_column='subject'")
    if subject_column is not None and subject_column not in df.columns:
        raise NatsError(f"the frame has no column {subject_column!r}", f"use one of {list(df.columns)}")
    conn = current(connection)
    meta = {"time", "seq", "size", "headers", "decode_error"}
    body = df.drop(columns=[c for c in df.columns if c in meta or c == subject_column or c == "subject"])
    subjects = df[subject_column].astype(str).tolist() if subject_column else [subject] * len(df)
    for s in set(subjects):
        validate.subject(s, publish=True)
    hdrs = validate.headers(headers)
    values = frames.payloads_of(body)
    payloads = [_encode_row(s, v) for s, v in zip(subjects, values)]
    for s, v, p in zip(subjects, values, payloads):   # every row is checked before any is sent
        validate.payload_size(len(p), conn.max_payload, s)
        schema_hooks.before_publish(s, v, p, conn)
    bar = progress_bar(len(payloads), f"publishing to {subject or subject_column}", enabled=progress)

    async def send():
        for i, (s, p) in enumerate(zip(subjects, payloads)):
            await conn.nc.publish(s, p, headers=hdrs)
            if i % 10_000 == 9_999:
                await conn.nc.flush(10)
                bar.update(10_000)
        await _flush(conn, 10)
        bar.update(len(payloads) % 10_000)

    try:
        loop.run(send(), 30 + len(payloads) / 20_000, f"publishing {len(payloads):,} rows")
    finally:
        bar.close()
    return len(payloads)


def _encode_row(subject: str, value: Any) -> bytes:
    if payload_mod.subject_encoder is not None:
        encoded = payload_mod.subject_encoder(subject, value)
        if encoded is not None:
            return encoded
    if isinstance(value, (str, bytes)):
        return encode(value)
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _jsonable(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)   # timestamps as ISO 8601
