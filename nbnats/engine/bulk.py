"""Bulk reads of a stream, straight off the wire: the engine's read path for replays.

Three readers fill one columnar :class:`Sink` by a :class:`Plan` fixed before the
first message (the stream's last sequence at the start):

* :func:`read_by_consumer` (limits streams): ephemeral in-memory pull consumers with
  AckPolicy none, fed by pipelined ``CONSUMER.MSG.NEXT`` requests (two in flight,
  each bounded in messages and bytes), read by a plain callback; sequences and
  times come from the reply subjects in bulk (:func:`nbnats.engine.acks.parse_many`).
* :func:`read_direct` (WorkQueue/Interest with direct get, server 2.11+): batched
  ``DIRECT.GET``, no consumer.
* :func:`read_by_get` (any server): pipelined ``STREAM.MSG.GET``.

WorkQueue and Interest streams are read only by the last two, so a replay never
takes a message away from anyone. See :mod:`nbnats.jetstream.replay`.
"""

from __future__ import annotations

import asyncio
import calendar
import sys
import time
from typing import Any

import numpy as np
import orjson

from nbnats.data import validate
from nbnats.data.packed import Packed
from nbnats.data.units import parse_time, rfc3339
from nbnats.engine import acks, api
from nbnats.engine.get import from_msg_get, get as get_stored
from nbnats.errors import JetStreamError, NatsError, NotConnected, NotFound, Timeout
from nbnats.runtime.connection import Connection
from nbnats.runtime.wire import Dial, Wire

PULL = 16_384           # messages per pull request; at most two are outstanding
PULL_BYTES = 8 << 20    # and at most this many bytes each
CHUNK = 8_192           # reply subjects are parsed (and the stop checked) every CHUNK messages
WIRE = True             # read consumers over nbnats's own connection (runtime/wire.py) when it can open
DIRECT_BATCH = 50_000   # messages per batched direct get
GET_WINDOW = 256        # STREAM.MSG.GET requests in flight
_DIRECT_META = {"Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp", "Nats-Num-Pending",
                "Nats-Last-Sequence", "Nats-UpTo-Sequence"}


class Plan:
    """What to read, fixed before the first message: the stream's state at the start."""

    def __init__(self, stream: str, filters: list[str], start_seq: int | None, since: int | None,
                 until: int | None, end_seq: int | None, limit: int | None):
        self.stream, self.filters = stream, filters
        self.start_seq, self.since, self.until = start_seq, since, until
        self.end_seq, self.limit = end_seq, limit
        self.info: dict = {}
        self.stop = 0               # the last sequence when the replay began (or end_seq)
        self.path = ""
        self.client_filter = False  # subjects filtered here because the server cannot
        self.wire = None            # the bulk connection, while it is open
        self.notes: list[str] = []  # how the read went, for df.attrs["warnings"]
        self.reconnects = 0


class Sink:
    """Raw columns, filled on the loop thread; read by the caller's thread only when done."""

    def __init__(self):
        self.subjects: list[str] = []
        self.payloads = Packed()
        self.headers: list = []
        self.seqs: list[np.ndarray] = []
        self.times: list[np.ndarray] = []
        self.count = 0
        self.total: int | None = None
        self.last_seq = 0
        self.last_time = 0


async def _wait(done: asyncio.Event, sink: Sink, stall: float, what: str) -> bool:
    """Wait for ``done``; False when nothing arrived for ``stall`` seconds."""
    while not done.is_set():
        seen = sink.count
        try:
            await asyncio.wait_for(done.wait(), stall)
        except asyncio.TimeoutError:
            if sink.count == seen:
                return False
    return True


class _Drops:
    """Told by the connection when nats-py drops one of this read's messages (a slow consumer)."""

    def __init__(self, done: asyncio.Event):
        self.count, self.done = 0, done

    def _slow_consumer(self) -> None:
        self.count += 1
        self.done.set()


async def _subscribe(conn: Connection, inbox: str, cb, limit: int, done: asyncio.Event):
    sub = await conn.nc.subscribe(inbox, cb=cb, pending_msgs_limit=limit, pending_bytes_limit=0)
    drops = _Drops(done)
    conn.watch_slow(sub, drops)
    return sub, drops


async def _unsubscribe(conn: Connection, sub, drops: _Drops, plan: Plan) -> None:
    conn.unwatch_slow(sub)
    try:
        await sub.unsubscribe()
    except Exception:       # the connection closed meanwhile: nothing left to unsubscribe
        pass
    if drops.count:     # the pulls are sized so this cannot happen; never return a frame with holes
        raise JetStreamError(f"the replay of {plan.stream!r} fell behind and the client dropped "
                             f"{drops.count:,} messages", "run it again (nothing was consumed)")


def _rfc_ns(text: str, cache: dict) -> int:
    """The server's RFC 3339 UTC time as nanoseconds, quickly (seconds are cached).

    >>> _rfc_ns("2026-01-01T00:00:01.5Z", {})
    1767225601500000000
    """
    if not text.endswith("Z") or len(text) < 20:
        return parse_time(text) or 0
    head = text[:19]
    sec = cache.get(head)
    if sec is None:
        sec = cache[head] = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    frac = text[20:-1] if text[19] == "." else ""
    return sec * 1_000_000_000 + (int(frac.ljust(9, "0")[:9]) if frac else 0)


async def read_direct(conn: Connection, plan: Plan, sink: Sink, first: int, stall: float) -> None:
    """Batched direct gets (server 2.11+): no consumer is created."""
    done = asyncio.Event()
    seq_text: list[str] = []
    time_text: list[str] = []
    nc = conn.nc
    inbox = nc.new_inbox()
    goal = plan.limit if plan.limit is not None and not plan.client_filter else None
    cache: dict = {}

    async def ask(seq: int, first_request: bool = False) -> None:
        n = plan.stop - seq + 1
        if goal is not None:
            n = min(n, goal - sink.count)
        body: dict[str, Any] = {"batch": min(DIRECT_BATCH, n)}
        if first_request and plan.since is not None and plan.start_seq is None:
            body["start_time"] = rfc3339(plan.since)
        else:
            body["seq"] = seq
        if len(plan.filters) == 1:
            body["next_by_subj"] = plan.filters[0]
        await nc.publish(f"$JS.API.DIRECT.GET.{plan.stream}", orjson.dumps(body), reply=inbox)

    async def on_msg(msg) -> None:
        h = msg.headers or {}
        seq = h.get("Nats-Sequence")
        if seq is not None:
            if sink.total is None:
                sink.total = min(int(h.get("Nats-Num-Pending", 0)) + 1, plan.stop - int(seq) + 1)
            sink.subjects.append(sys.intern(h["Nats-Subject"]))
            sink.payloads.add(msg.data)
            sink.headers.append(h)
            seq_text.append(seq)
            time_text.append(h["Nats-Time-Stamp"])
            sink.count += 1
            return
        if h.get("Status") != "204" or not seq_text:   # 404: nothing (more) to read
            done.set()
            return
        sink.last_seq = int(seq_text[-1])
        over_time = plan.until is not None and _rfc_ns(time_text[-1], cache) > plan.until
        if sink.last_seq >= plan.stop or over_time or (goal is not None and sink.count >= goal):
            done.set()
        else:
            await ask(sink.last_seq + 1)

    sub, drops = await _subscribe(conn, inbox, on_msg, 2 * DIRECT_BATCH, done)
    try:
        await ask(first, first_request=True)
        if not await _wait(done, sink, stall, f"replaying {plan.stream!r}"):
            raise Timeout(f"the replay of {plan.stream!r} stalled: nothing arrived for {stall:g} s "
                          f"after {sink.count:,} messages", "check the server with nbnats.status() and run it again")
    finally:
        await _unsubscribe(conn, sub, drops, plan)
    sink.seqs.append(np.array(seq_text, dtype=np.int64))
    sink.times.append(np.fromiter((_rfc_ns(t, cache) for t in time_text), np.int64, len(time_text)))
    sink.headers[:] = [({k: v for k, v in h.items() if k not in _DIRECT_META} or None) for h in sink.headers]


async def _seq_at_time(conn: Connection, plan: Plan, lo: int, hi: int) -> int:
    """The first sequence at or after ``plan.since``, by binary search with STREAM.MSG.GET."""
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            resp = await api.request(conn, f"STREAM.MSG.GET.{plan.stream}", {"seq": mid, "next_by_subj": ">"}, what="looking up a time in the stream", stream=plan.stream)
        except NotFound:
            return hi
        m = resp["message"]
        if (parse_time(m["time"]) or 0) < plan.since:
            lo = m["seq"] + 1
        else:
            hi = mid
    return lo


async def read_by_get(conn: Connection, plan: Plan, sink: Sink, first: int, stall: float) -> None:
    """Pipelined STREAM.MSG.GET, one request a sequence: works on every server and stream."""
    if plan.since is not None and plan.start_seq is None:
        first = await _seq_at_time(conn, plan, first, plan.stop + 1)
    if first > plan.stop:
        sink.total = 0
        return
    done = asyncio.Event()
    nc = conn.nc
    inbox = nc.new_inbox()
    got: list[tuple] = []       # (seq, time_ns, message), sorted once at the end
    state = {"next": first, "out": 0, "matched": 0}
    matches: dict[str, bool] = {}
    cache: dict = {}
    sink.total = plan.stop - first + 1 if plan.limit is None else min(plan.stop - first + 1, plan.limit)

    def wanted(subject: str) -> bool:
        hit = matches.get(subject)
        if hit is None:
            hit = matches[subject] = not plan.filters or any(validate.subject_matches(f, subject) for f in plan.filters)
        return hit

    async def ask() -> None:
        seq = state["next"]
        state["next"] += 1
        state["out"] += 1
        await nc.publish(f"$JS.API.STREAM.MSG.GET.{plan.stream}", b'{"seq":%d}' % seq, reply=inbox)

    def more() -> bool:
        full = plan.limit is not None and state["matched"] >= plan.limit
        late = plan.until is not None and sink.last_time > plan.until
        return state["next"] <= plan.stop and not full and not late

    async def on_msg(msg) -> None:
        state["out"] -= 1
        sink.count += 1                     # a missing sequence is progress too
        m = orjson.loads(msg.data).get("message")
        if m is not None:
            t = _rfc_ns(m["time"], cache)
            if wanted(m["subject"]):
                got.append((m["seq"], t, from_msg_get(m)))
                state["matched"] += 1
            sink.last_time = max(sink.last_time, t)
        if more():
            await ask()
        elif state["out"] == 0:
            done.set()

    sub, drops = await _subscribe(conn, inbox, on_msg, 4 * GET_WINDOW, done)
    try:
        for _ in range(min(GET_WINDOW, plan.stop - first + 1)):
            await ask()
        if not await _wait(done, sink, stall, f"replaying {plan.stream!r}"):
            raise Timeout(f"the replay of {plan.stream!r} stalled: nothing arrived for {stall:g} s "
                          f"after {sink.count:,} messages", "check the server with nbnats.status() and run it again")
    finally:
        await _unsubscribe(conn, sub, drops, plan)
    got.sort(key=lambda g: g[0])
    for _, _, msg in got:
        sink.subjects.append(sys.intern(msg.subject))
        sink.payloads.add(msg.data)
        sink.headers.append(msg.headers)
    sink.seqs.append(np.array([g[0] for g in got], dtype=np.int64))
    sink.times.append(np.array([g[1] for g in got], dtype=np.int64))


async def read_by_consumer(conn: Connection, plan: Plan, sink: Sink, first: int, stall: float) -> None:
    """Read with ephemeral consumers; one that is lost or stalls is replaced from where it stopped.

    Messages flow over nbnats's own connection (:mod:`nbnats.engine.wire_pull`) when it can be
    opened with the session's options, else through nats-py; ``plan.path`` says which.
    """
    if WIRE:
        await _open_wire(conn, plan, stall)
    try:
        await _read_consumers(conn, plan, sink, first, stall)
    finally:
        if plan.wire is not None:
            plan.wire.close()


async def _open_wire(conn: Connection, plan: Plan, stall: float) -> None:
    """Open the bulk connection into ``plan.wire``, or leave it None (the reason in ``plan.notes``)."""
    if conn.dial is None:
        return
    try:
        plan.wire = await Wire.open(Dial.of(conn), min(stall, 10.0))
    except ImportError:
        plan.notes.append("read through nats-py: signing an nkey needs the nkeys package")
    except NatsError as exc:
        plan.notes.append(f"read through nats-py: the bulk connection could not open ({exc.what})")


async def _read_consumers(conn: Connection, plan: Plan, sink: Sink, first: int, stall: float) -> None:
    from nbnats.engine import wire_pull
    start, since, failures = first, plan.since, 0
    deadline = None
    while True:
        before = sink.count
        if plan.wire is not None:
            outcome = await wire_pull.consume(conn, plan.wire, plan, sink, start, since, stall)
        else:
            outcome = await _consume(conn, plan, sink, start, since, stall)
        if outcome == "done":
            return
        if outcome == "lost":
            # The server went away (a restart, a network cut): reconnect and go on after the last
            # sequence read, for as long as the stall timeout allows.
            plan.wire.close()
            deadline = deadline or time.monotonic() + max(stall, 5.0)
            plan.wire = None
            while plan.wire is None or not conn.connected:
                if time.monotonic() > deadline:
                    raise Timeout(f"the replay of {plan.stream!r} lost its connection after seq "
                                  f"{sink.last_seq or start - 1} and could not reconnect within {max(stall, 5.0):g} s",
                                  f"run it again, or replay from start_seq={sink.last_seq + 1 if sink.last_seq else start}")
                try:
                    plan.wire = plan.wire or await Wire.open(Dial.of(conn), 2.0)
                except NatsError:
                    pass
                await asyncio.sleep(0.1)
            plan.reconnects += 1
            if sink.last_seq:
                start, since = sink.last_seq + 1, None
            continue
        deadline = None
        if outcome == "short":
            # The server said "no messages" before the sequence fixed at the start: on a
            # large stream that happens mid-read. Ask the stream what really comes next.
            nxt = await _next_stored(conn, plan, sink.last_seq + 1 if sink.last_seq else start)
            if nxt is None:
                return          # the rest was removed meanwhile: the gap report says which
            start, since, failures = nxt, None, 0
            continue
        failures = failures + 1 if sink.count == before else 1
        if failures >= 3:
            raise Timeout(f"the replay of {plan.stream!r} stalled: nothing arrived for {stall:g} s "
                          f"after {sink.count:,} messages", "check the server with nbnats.status() and run it again")
        if sink.last_seq:
            start, since = sink.last_seq + 1, None


def outcome(plan: Plan, sink: Sink, goal: int, finished: bool, failure: list, short: list) -> str:
    """How one consumer's read ended: "stalled", "short" (the server said it had no more before
    the plan's end) or "done"."""
    if not finished or failure:
        return "stalled"
    complete = sink.last_seq >= plan.stop or sink.count >= goal or (
        plan.until is not None and sink.last_time > plan.until)
    return "short" if short and not complete else "done"


async def _next_stored(conn: Connection, plan: Plan, seq: int) -> int | None:
    """The first stored sequence at or after ``seq`` (matching the filter) up to the plan's stop; None if none."""
    if seq > plan.stop:
        return None
    try:
        row = await get_stored(conn, plan.stream, seq=seq,
                               next_for=plan.filters[0] if len(plan.filters) == 1 else ">")
    except NotFound:
        return None
    return row.seq if row.seq <= plan.stop else None


async def _create_consumer(conn: Connection, plan: Plan, sink: Sink, start: int, since: int | None,
                           stall: float) -> tuple[str, int]:
    """An ephemeral in-memory consumer from ``start``; returns its name and the messages it will deliver."""
    name = f"nbnats_replay_{conn.nc.new_inbox().rsplit('.', 1)[-1]}"
    cfg: dict[str, Any] = {"name": name, "ack_policy": "none", "replay_policy": "instant", "mem_storage": True,
                           "num_replicas": 1, "inactive_threshold": int(max(stall, 30) * 1e9)}
    if since is not None and start <= plan.info["state"]["first_seq"]:
        cfg.update(deliver_policy="by_start_time", opt_start_time=rfc3339(since))
    else:
        cfg.update(deliver_policy="by_start_sequence", opt_start_seq=start)
    if len(plan.filters) == 1:
        cfg["filter_subject"] = plan.filters[0]
    elif plan.filters and not plan.client_filter:
        cfg["filter_subjects"] = plan.filters
    info = await api.request(conn, f"CONSUMER.CREATE.{plan.stream}.{name}",
                             {"stream_name": plan.stream, "config": cfg},
                             what=f"creating the replay consumer on {plan.stream!r}", stream=plan.stream)
    remaining = info.get("num_pending", 0)
    if plan.limit is not None:
        remaining = min(remaining, plan.limit - sink.count)
    if sink.total is None:
        sink.total = remaining
    return name, remaining


async def _delete_consumer(conn: Connection, plan: Plan, name: str) -> None:
    try:
        await api.request(conn, f"CONSUMER.DELETE.{plan.stream}.{name}", None, what="removing the replay consumer")
    except (JetStreamError, NotFound, Timeout, NotConnected):
        pass     # it removes itself after inactive_threshold anyway


async def _consume(conn: Connection, plan: Plan, sink: Sink, start: int, since: int | None,
                   stall: float) -> str:
    """One ephemeral consumer from ``start``, read through nats-py (the fallback of :func:`_consume_wire`):
    "done" (read to the plan's end), "short" (the server said it had no more, before the end) or
    "stalled" (nothing arrived for ``stall`` seconds)."""
    name, remaining = await _create_consumer(conn, plan, sink, start, since, stall)
    goal = sink.count + remaining
    done = asyncio.Event()
    replies: list[str] = []
    add_subject, add_header, add_reply = sink.subjects.append, sink.headers.append, replies.append
    packed = sink.payloads
    (extend, separate, add_size), intern = packed.appenders(), sys.intern
    nc = conn.nc
    inbox = nc.new_inbox()
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{plan.stream}.{name}"
    asked = [sink.count]
    failure: list[str] = []
    short: list[str] = []
    # bytes a request may bring: two in flight stay well under the server's 64 MiB per-client buffer
    max_bytes = max(PULL_BYTES, conn.max_payload + 65_536)

    async def ask() -> None:
        n = min(PULL, goal - asked[0])
        if n > 0:
            asked[0] += n
            await nc.publish(next_subject, b'{"batch":%d,"max_bytes":%d,"no_wait":true}' % (n, max_bytes),
                             reply=inbox)

    def settle() -> None:
        """Parse the pending reply subjects; stop at the plan's last sequence or time."""
        if not replies:
            return
        meta = acks.parse_many(replies)
        seqs, times = meta["seq"], meta["time_ns"]
        replies.clear()
        sink.seqs.append(seqs)
        sink.times.append(times)
        sink.last_seq, sink.last_time = int(seqs[-1]), int(times[-1])
        if sink.last_seq >= plan.stop or (plan.until is not None and sink.last_time > plan.until):
            done.set()

    async def on_msg(msg) -> None:
        if msg.reply:
            data = msg.data
            add_subject(intern(msg.subject))
            extend(data)
            separate(10)
            add_size(len(data))
            add_header(msg.headers)
            add_reply(msg.reply)
            sink.count += 1
            if len(replies) >= CHUNK:
                settle()
                if asked[0] - sink.count < PULL:
                    await ask()
            if sink.count >= goal:
                done.set()
            return
        status = (msg.headers or {}).get("Status")
        text = (msg.headers or {}).get("Description", "")
        if status in ("404", "408"):
            short.append(status)    # "no messages" now: not necessarily the end (see _via_consumer)
            done.set()
        elif status == "409" and "MaxBytes" in text:
            # the request ended at its byte budget: ask again for what it did not bring
            asked[0] -= int(msg.headers.get("Nats-Pending-Messages", 0) or 0)
            await ask()
        elif status == "409" and "Batch Completed" in text:
            pass            # a request done in full (sent when max_bytes is set)
        elif status == "409":
            failure.append(text or "conflict")
            done.set()

    sub, drops = await _subscribe(conn, inbox, on_msg, 4 * PULL, done)
    try:
        if remaining > 0:
            await ask()
            await ask()
            finished = await _wait(done, sink, stall, f"replaying {plan.stream!r}")
        else:
            finished = True
        settle()
        return outcome(plan, sink, goal, finished, failure, short)
    finally:
        try:
            await _unsubscribe(conn, sub, drops, plan)
        finally:
            await _delete_consumer(conn, plan, name)


# -- the frame, built once in the caller's thread ------------------------------------
