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
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import nats.errors
import orjson
import pandas as pd

from nbnats.data import frames, units, validate
from nbnats.data import payload as payload_mod
from nbnats.data.payload import Message, encode
from nbnats.engine import api
from nbnats.engine import publish as engine_publish
from nbnats.engine.window import publish_window
from nbnats.errors import (JetStreamError, NatsError, NoResponders, NotConnected, NotFound, PayloadTooLarge,
                           ServiceError, Timeout, ValidationError)
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
JS_WINDOW = 512           # publish_frame(js=True): acks outstanding at most
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


class BatchSplitWarning(UserWarning):
    """An atomic ``publish_frame`` had more rows than one batch may hold: it went out as several batches."""


def publish_frame(subject: str | None, df, subject_column: str | None = None, headers: dict | None = None,
                  progress: bool | None = None, connection: str | None = None, *, atomic: bool = False,
                  msg_id: str | None = None, dry_run: bool = False, batch_size: int | None = None,
                  timeout: float = 10.0, js: bool = False):
    """Publish each row of a DataFrame as one JSON message; returns the count.

    The subject comes from ``subject`` or, per row, from ``subject_column``.
    Columns named like the standard frame's (time, seq, size, headers) are
    dropped, so a replayed frame can be published again. ``msg_id`` names a
    column whose value becomes each row's ``Nats-Msg-Id`` (JetStream drops
    duplicates). Every row is checked before any is sent.

    ``atomic=True`` (nats-server 2.12+, a stream with ``allow_atomic=True``)
    stores the rows as one atomic batch: all of them or none. The server
    takes at most ``batch_size`` messages a batch (its default, 1000, unless
    it says less): more rows go out as several batches, each atomic, which a
    :class:`BatchSplitWarning` and the result's ``attrs`` say. It returns a
    frame of the batches (batch, rows, stream, first_seq, last_seq).

    ``dry_run=True`` sends nothing and returns what would be sent: a frame
    of subject, headers, bytes (the payload), size.

    ``js=True`` publishes each row to JetStream and waits for the stream's
    acks (a window of them outstanding), so every row is stored or the first
    refusal is raised; it returns how many were stored. Use it for a subject a
    stream stores: plain publishes faster than the stream can store are
    dropped by the server without a word.

    >>> nbnats.publish_frame("orders.created", df)                # doctest: +SKIP
    3
    >>> nbnats.publish_frame(None, df, subject_column="subject")  # doctest: +SKIP
    3
    >>> nbnats.publish_frame("orders.created", df, atomic=True, msg_id="id")   # doctest: +SKIP
    >>> nbnats.publish_frame("orders.created", df, atomic=True, dry_run=True)  # doctest: +SKIP
    """
    from nbnats.progress import progress_bar

    if subject is None and subject_column is None:
        raise NatsError("publish_frame needs a subject or a subject_column",
                        "pass subject='orders.created' or subject_column='subject'")
    for column, label in ((subject_column, "subject_column"), (msg_id, "msg_id")):
        if column is not None and column not in df.columns:
            raise ValidationError(f"the frame has no column {column!r} (for {label})", f"use one of {list(df.columns)}")
    limit = _batch_size(batch_size)
    timeout = _timeout(timeout)
    conn = current(connection)
    meta = {"time", "seq", "size", "headers", "decode_error"}
    body = df.drop(columns=[c for c in df.columns if c in meta or c == subject_column or c == "subject"])
    subjects = df[subject_column].astype(str).tolist() if subject_column else [subject] * len(df)
    for s in set(subjects):
        validate.subject(s, publish=True)
    hdrs = validate.headers(headers)
    row_headers = _row_headers(df, msg_id, hdrs, atomic)
    values = frames.payloads_of(body)
    payloads = [_encode_row(s, v) for s, v in zip(subjects, values)]
    batch_ids = [_batch_id() for _ in range(0, len(payloads), limit)] if atomic else []
    for i, (s, v, p) in enumerate(zip(subjects, values, payloads)):   # every row is checked before any is sent
        h = row_headers[i]
        if atomic:     # the batch headers count against max_payload too
            h = engine_publish.batch_headers(batch_ids[i // limit], i % limit + 1, True, h)
        validate.payload_size(len(p), conn.max_payload, s, h)
        schema_hooks.before_publish(s, v, p, conn)
    if dry_run:
        return _dry_run(subjects, payloads, row_headers, batch_ids, limit)
    if atomic:
        return _publish_atomic(conn, subjects, payloads, row_headers, limit, timeout, progress)
    bar = progress_bar(len(payloads), f"publishing to {subject or subject_column}", enabled=progress)
    if js:
        async def rows():
            for i, (s, p) in enumerate(zip(subjects, payloads)):
                yield s, p, row_headers[i]
                if i % 10_000 == 9_999:
                    bar.update(10_000)

        try:
            stored = loop.run(publish_window(conn, subject or subject_column, rows(), window=JS_WINDOW,
                                             timeout=timeout), 30 + len(payloads) / 5_000,
                              f"publishing {len(payloads):,} rows to JetStream")
            bar.update(len(payloads) % 10_000)
        finally:
            bar.close()
        return stored

    async def send():
        for i, (s, p) in enumerate(zip(subjects, payloads)):
            await conn.nc.publish(s, p, headers=row_headers[i])
            if i % 10_000 == 9_999:
                await _flush(conn, timeout)
                bar.update(10_000)
        await _flush(conn, timeout)
        bar.update(len(payloads) % 10_000)

    try:
        loop.run(send(), 30 + len(payloads) / 20_000, f"publishing {len(payloads):,} rows")
    finally:
        bar.close()
    return len(payloads)


def _batch_size(value: Any) -> int:
    if value is None:
        return engine_publish.BATCH_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"batch_size must be a whole number of at least 1, not {value!r}",
                              f"pass e.g. batch_size={engine_publish.BATCH_LIMIT}, the server's default limit")
    return value


def _batch_id() -> str:
    import uuid
    return uuid.uuid4().hex


def _row_headers(df, msg_id: str | None, hdrs: dict | None, atomic: bool = False) -> list[dict | None]:
    """Each row's headers: the common ones, plus its ``Nats-Msg-Id`` from the ``msg_id`` column."""
    if msg_id is None:
        return [hdrs] * len(df)
    ids = df[msg_id]
    missing = ids.isna()
    if missing.any():
        raise ValidationError(f"row {missing.to_numpy().argmax()} has no value in the msg_id column {msg_id!r}",
                              "fill every row's id, or publish without msg_id")
    texts = [str(v.item() if hasattr(v, "item") else v) for v in ids.tolist()]
    dup = ids.duplicated()
    if atomic and dup.any():
        raise ValidationError(f"the msg_id column {msg_id!r} repeats {texts[dup.to_numpy().argmax()]!r}: an atomic "
                              "batch refuses a message id twice", "give every row its own id")
    validate.headers({"Nats-Msg-Id": t for t in texts[:1]})
    if any(not t.strip() or "\n" in t or "\r" in t for t in texts):
        raise ValidationError(f"a value of the msg_id column {msg_id!r} is empty or spans lines",
                              "use ids that are one line of text")
    return [{**(hdrs or {}), "Nats-Msg-Id": t} for t in texts]


def _dry_run(subjects, payloads, row_headers, batch_ids, limit) -> pd.DataFrame:
    heads = []
    for i, h in enumerate(row_headers):
        if batch_ids:
            last = i % limit == limit - 1 or i == len(payloads) - 1
            h = engine_publish.batch_headers(batch_ids[i // limit], i % limit + 1, last, h)
        heads.append(dict(h) if h else None)
    out = pd.DataFrame({"subject": pd.Series(subjects, dtype=object), "headers": pd.Series(heads, dtype=object),
                        "bytes": pd.Series(payloads, dtype=object),
                        "size": pd.array([len(p) for p in payloads], dtype="Int64")})
    out.attrs.update(dry_run=True, rows=len(payloads), atomic=bool(batch_ids), batches=len(batch_ids),
                     batch_limit=limit if batch_ids else None, split=len(batch_ids) > 1)
    return out


def _publish_atomic(conn: Connection, subjects, payloads, row_headers, limit: int, timeout: float,
                    progress: bool | None) -> pd.DataFrame:
    """The rows as atomic batches of at most ``limit`` (less when the server says its limit is lower)."""
    from nbnats.progress import progress_bar

    api.needs(conn, (2, 12), "atomic publish")
    info = loop.run(_atomic_stream(conn, sorted(set(subjects))), api.TIMEOUT + 2, "finding the stream")
    stream = info["config"]["name"]
    _check_msg_size(info, payloads, row_headers, limit)
    bar = progress_bar(len(payloads), f"atomic publish to {stream}", enabled=progress)
    rows: list[dict] = []
    notes: list[str] = []

    async def send():
        nonlocal limit
        start = 0
        while start < len(payloads):
            end = min(start + limit, len(payloads))
            batch = [(subjects[i], payloads[i], row_headers[i]) for i in range(start, end)]
            bid = _batch_id()
            try:
                ack = await engine_publish.publish_batch(conn, batch, bid, timeout=timeout, stream=stream)
            except NatsError as exc:
                lower = _server_limit(exc)
                if lower is None or lower >= limit:
                    raise
                notes.append(f"the server takes at most {lower:,} messages in an atomic batch")
                limit = lower          # nothing of the refused batch was stored: send it again, smaller
                continue
            count = int(ack.get("count") or len(batch))
            rows.append({"batch": ack.get("batch") or bid, "rows": count, "stream": ack["stream"],
                         "first_seq": int(ack["seq"]) - count + 1, "last_seq": int(ack["seq"])})
            bar.update(count)
            start = end

    try:
        loop.run(send(), 30 + len(payloads) / 2_000, f"publishing {len(payloads):,} rows atomically")
    finally:
        bar.close()
    out = pd.DataFrame(rows, columns=["batch", "rows", "stream", "first_seq", "last_seq"])
    for col in ("rows", "first_seq", "last_seq"):
        out[col] = out[col].astype("Int64")
    split = len(rows) > 1
    if split:
        notes.append(f"{len(payloads):,} rows are more than one atomic batch may hold ({limit:,}): they were "
                     f"stored as {len(rows)} batches, each all-or-nothing on its own, not the frame as a whole")
        warnings.warn(notes[-1], BatchSplitWarning, stacklevel=3)
    out.attrs.update(rows=len(payloads), atomic=True, batches=len(rows), batch_limit=limit, split=split,
                     stream=stream, warnings=notes)
    return out


def _server_limit(exc: NatsError) -> int | None:
    """The batch size a "batch is too large: N" refusal names, else None."""
    if getattr(exc, "err_code", None) != 10199:
        return None
    digits = "".join(ch for ch in str(getattr(exc, "description", "")).rsplit(":", 1)[-1] if ch.isdigit())
    return int(digits) if digits else None


async def _atomic_stream(conn: Connection, subjects: list[str]) -> str:
    """The one stream that stores every subject, refused plainly unless it allows atomic publish."""
    infos = await api.paged(conn, "STREAM.LIST", "streams", what="listing streams")
    found: dict[str, dict] = {}
    for s in subjects:
        owners = [si for si in infos if any(validate.subject_matches(p, s) for p in si["config"].get("subjects") or [])]
        if not owners:
            raise NotFound(f"no JetStream stream stores subject {s!r}",
                           f"add one: nbnats.add_stream(NAME, subjects={s!r}, allow_atomic=True)")
        found[owners[0]["config"]["name"]] = owners[0]
    if len(found) > 1:
        raise ValidationError(f"the rows go to {len(found)} streams ({', '.join(sorted(found))}); an atomic batch "
                              "is stored by one stream", "publish each stream's rows in their own call")
    name, info = next(iter(found.items()))
    if not info["config"].get("allow_atomic"):
        raise JetStreamError(f"stream {name!r} does not allow atomic publish",
                             f"turn it on with nbnats.edit_stream({name!r}, allow_atomic=True)")
    return info


def _check_msg_size(info: dict, payloads, row_headers, limit: int) -> None:
    """Refuse, before sending, a row over the stream's max_msg_size (a batch would fail as "incomplete")."""
    most = info["config"].get("max_msg_size") or -1
    if most < 0:
        return
    for i, (p, h) in enumerate(zip(payloads, row_headers)):
        n = len(p) + validate.header_block_size(engine_publish.batch_headers("0" * 32, i % limit + 1, True, h))
        if n > most:
            raise PayloadTooLarge(f"row {i} is {n:,} bytes with its headers, over the max_msg_size of stream "
                                  f"{info['config']['name']!r} ({most:,} bytes); nothing was sent",
                                  "shorten the row, or raise the stream's max_msg_size")


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
