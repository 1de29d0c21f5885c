"""JetStream publishes: a request to the subject, the stream's ack parsed here, elections ridden out.

Also the headers of the server's newer publish features: a per-message TTL
(``Nats-TTL``, 2.11+), scheduled messages (``Nats-Schedule`` …, 2.12+) and
atomic batches (``Nats-Batch-*``, 2.12+), sent by :func:`publish_batch`.

>>> ack = await publish(conn, "orders.new", b'{"id": 1}', timeout=5)   # doctest: +SKIP
>>> ack["stream"], ack["seq"]                                         # doctest: +SKIP
('ORDERS', 1)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from typing import Any

import nats.errors
import orjson

from nbnats.data import units, validate
from nbnats.engine import api
from nbnats.engine.errors import NO_LEADER, NO_LEADER_FIX, translate
from nbnats.errors import JetStreamError, NatsError, NotFound, Timeout, ValidationError

RESEND_EVERY = 2.0       # seconds before a publish with a Nats-Msg-Id is sent again
UNKNOWN = "?"            # a stream may store the subject, but nobody could say which

TTL = "Nats-TTL"
SCHEDULE, SCHEDULE_TARGET, SCHEDULE_TTL = "Nats-Schedule", "Nats-Schedule-Target", "Nats-Schedule-TTL"
BATCH_ID, BATCH_SEQ, BATCH_COMMIT = "Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"
BATCH_LIMIT = 1000       # messages in one atomic batch: the server's default (jetstream.limits.batch.max_msgs)
CRON_NAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


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


# -- the headers of the newer publish features -------------------------------------------
def ttl_value(ttl: Any, what: str = "ttl") -> str:
    """A per-message TTL as the ``Nats-TTL`` header says it: whole seconds (at least 1), or ``never``.

    >>> ttl_value("10s"), ttl_value(90), ttl_value("1h"), ttl_value("never")
    ('10', '90', '3600', 'never')
    """
    if isinstance(ttl, str) and ttl.strip().lower() == "never":
        return "never"
    seconds = units.seconds(ttl, what)
    if seconds is None or seconds < 1:
        raise ValidationError(f"{what} {ttl!r} is shorter than the server's minimum of 1 second",
                              f"pass {what}='1s' or more (or 'never')")
    return str(math.ceil(seconds))


def schedule_pattern(schedule: Any, now_ns: int | None = None) -> tuple[str, tuple[int, int]]:
    """The ``Nats-Schedule`` pattern for ``schedule`` and the server version it needs.

    A delay (``"10s"``, seconds) or a time (ISO text, a datetime) becomes
    ``@at <UTC time>`` (2.12+); ``@at …`` passes through, checked; ``@every 5m``,
    ``@hourly`` … and six-field cron patterns repeat (2.14+).

    >>> schedule_pattern("@at 2026-12-01T10:00:00+01:00")
    ('@at 2026-12-01T09:00:00Z', (2, 12))
    >>> schedule_pattern("10s", now_ns=1767225600_000000000)
    ('@at 2026-01-01T00:00:10Z', (2, 12))
    >>> schedule_pattern("@every 5m"), schedule_pattern("0 30 9 * * 1")[1]
    (('@every 300s', (2, 14)), (2, 14))
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    if isinstance(schedule, str):
        text = schedule.strip()
        if text.startswith("@every"):
            every = units.seconds(text[len("@every"):].strip() or None, "the schedule's interval")
            if not every or every < 1:
                raise ValidationError(f"schedule {schedule!r} repeats more often than once a second, or never",
                                      "write e.g. '@every 30s' (at least 1s)")
            return f"@every {math.ceil(every)}s", (2, 14)
        if text in CRON_NAMES or (len(text.split()) == 6 and not text.startswith("@")):
            return text, (2, 14)
        if text.startswith("@at"):
            return "@at " + _utc(text[3:].strip(), schedule), (2, 12)
        if text.startswith("@"):
            raise ValidationError(f"schedule {schedule!r} is not a pattern the server knows",
                                  "use '@at 2026-12-01T10:00:00Z', a delay like '10s', '@every 5m', "
                                  "'@hourly' or a six-field cron pattern")
        try:
            delay = units.seconds(text, "schedule")
        except ValidationError:
            return "@at " + _utc(text, schedule), (2, 12)
        return "@at " + _at(now_ns + int(delay * 1e9)), (2, 12)
    if isinstance(schedule, (int, float, dt.timedelta)) and not isinstance(schedule, bool):
        return "@at " + _at(now_ns + units.nanos(schedule, "schedule")), (2, 12)
    return "@at " + _utc(schedule, schedule), (2, 12)


def _utc(value: Any, given: Any) -> str:
    try:
        ns = units.to_ns(value, "schedule")
    except ValidationError:
        ns = None
    if ns is None or (isinstance(value, str) and not value[:1].isdigit()):
        raise ValidationError(f"schedule {given!r} names no time",
                              "write it like '@at 2026-12-01T10:00:00Z', or a delay like '10s'")
    return _at(ns)


def _at(ns: int) -> str:
    """UTC nanoseconds as RFC 3339 in whole seconds, rounded up (a delay is never cut short)."""
    return dt.datetime.fromtimestamp(math.ceil(ns / 1e9), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_headers(subject: str, schedule: Any, target: str | None, ttl: Any = None) -> tuple[dict, tuple[int, int]]:
    """The headers that make the message on ``subject`` a schedule firing onto ``target``; and the version needed.

    >>> schedule_headers("orders.sched.1", "@at 2026-12-01T10:00:00Z", "orders.remind")[0]
    {'Nats-Schedule': '@at 2026-12-01T10:00:00Z', 'Nats-Schedule-Target': 'orders.remind'}
    """
    pattern, version = schedule_pattern(schedule)
    if not target:
        raise ValidationError("a scheduled message needs a target: the subject it is published to when it fires",
                              "pass schedule_target='orders.reminders' (a subject of the same stream, "
                              f"other than {subject!r}, where the schedule itself is kept)")
    validate.subject(target, publish=True, what="schedule target")
    if target == subject:
        raise ValidationError(f"the schedule target {target!r} is the subject the schedule is kept on",
                              "keep the schedule on its own subject, e.g. 'orders.schedules.1', and target another")
    headers = {SCHEDULE: pattern, SCHEDULE_TARGET: target}
    if ttl is not None:
        headers[SCHEDULE_TTL] = ttl_value(ttl, "schedule_ttl")
    return headers, version


def batch_headers(batch_id: str, seq: int, commit: bool, headers: dict | None = None) -> dict:
    """The headers of message ``seq`` (from 1) of an atomic batch; the last one commits it.

    >>> batch_headers("b1", 3, True)
    {'Nats-Batch-Id': 'b1', 'Nats-Batch-Sequence': '3', 'Nats-Batch-Commit': '1'}
    """
    out = {**(headers or {}), BATCH_ID: batch_id, BATCH_SEQ: str(seq)}
    if commit:
        out[BATCH_COMMIT] = "1"
    return out


async def publish_batch(conn, messages: list[tuple[str, bytes, dict | None]], batch_id: str, *,
                        timeout: float = api.TIMEOUT, stream: str | None = None) -> dict:
    """Publish ``messages`` (subject, payload, headers) as one atomic batch: all stored, or none.

    The first message asks for the server's answer, so a refused batch is
    said at once; the others are sent without waiting; the last commits.
    Returns the commit's ack (``stream``, ``seq`` of the last, ``batch``, ``count``).

    >>> await publish_batch(conn, [("orders.new", b"{}", None)] * 3, "b1")   # doctest: +SKIP
    {'stream': 'ORDERS', 'seq': 3, 'batch': 'b1', 'count': 3}
    """
    n = len(messages)
    if n < 1:
        raise ValidationError("an atomic batch needs at least one message", "pass the messages to publish")
    for i, (subject, payload, headers) in enumerate(messages[:-1], 1):
        hdrs = batch_headers(batch_id, i, False, headers)
        if i == 1:
            await _ask(conn, subject, payload, hdrs, timeout, stream)
        else:
            await conn.nc.publish(subject, payload, headers=hdrs)
    subject, payload, headers = messages[-1]
    ack = await _ask(conn, subject, payload, batch_headers(batch_id, n, True, headers), timeout, stream)
    if ack is None:
        raise JetStreamError(f"the commit of the atomic batch on {subject!r} got an empty answer",
                             "check that the stream allows atomic publish (allow_atomic=True)")
    return ack


async def _ask(conn, subject: str, payload: bytes, headers: dict, timeout: float, stream: str | None) -> dict | None:
    """One request to a stream; its ack (None for the empty answer to a staged batch message)."""
    try:
        msg = await conn.nc.request(subject, payload, timeout=timeout, headers=headers)
    except nats.errors.NoRespondersError:
        raise NotFound(f"no JetStream stream stores subject {subject!r}",
                       f"add one: nbnats.add_stream(NAME, subjects={subject!r}, allow_atomic=True)") from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise Timeout(f"JetStream did not answer the atomic batch on {subject!r} within {timeout:g} s",
                      "nothing of an uncommitted batch is stored: check nbnats.status(), then publish again") from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise api.disconnected(conn) from None
    if not msg.data:
        return None
    try:
        ack = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        raise JetStreamError(f"the publish to {subject!r} was answered by something that is not JetStream",
                             "stop the plain responder on that subject") from None
    if "error" in ack:
        err = translate(ack["error"], f"storing the atomic batch on {subject!r}", stream=ack.get("stream") or stream)
        err.err_code = ack["error"].get("err_code")
        err.description = ack["error"].get("description")
        raise err
    return ack
