"""Replay a stream into a DataFrame, fast, without consuming it.

The whole read is one coroutine on the nbnats loop that only appends raw
bytes to lists; the frame is built once at the end (Arrow decodes the JSON
in bulk). Three readers, picked by what the stream and server allow:

* **consumer** (limits streams): an ephemeral in-memory pull consumer with
  AckPolicy none, fed by hand-made ``CONSUMER.MSG.NEXT`` requests (two in
  flight, each bounded in messages and bytes) and read by a plain
  callback; sequence and nanosecond time come from the reply subject.
* **direct** (WorkQueue/Interest streams with direct get, server 2.11+):
  batched ``DIRECT.GET`` requests, a read that creates no consumer.
* **get** (WorkQueue/Interest otherwise, any server): pipelined
  ``STREAM.MSG.GET`` requests, slower but it works everywhere.

WorkQueue and Interest streams are only ever read by the last two, so a
replay never takes a message away from anyone.

>>> df = nbnats.replay("ORDERS", subject="orders.eu.>", since="1h")   # doctest: +SKIP
>>> df.attrs["gaps"], df.attrs["warnings"]                            # doctest: +SKIP
([], [])
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from nbnats.data import frames, validate
from nbnats.data.units import parse_time, rfc3339, to_ns
from nbnats.engine import acks, api
from nbnats.engine.get import get as get_stored
from nbnats.data.packed import Packed
from nbnats.jetstream.readers import _Plan, _Sink, _subscribe, _unsubscribe, _via_direct, _via_get, _wait
from nbnats.jetstream.streams import check_filters, subjects_list
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.errors import JetStreamError, NotConnected, NotFound, Timeout, ValidationError

PULL = 16_384           # messages per pull request; at most two are outstanding
PULL_BYTES = 8 << 20    # and at most this many bytes each
CHUNK = 8_192           # reply subjects are parsed (and the stop checked) every CHUNK messages
GAPS_KEPT = 10_000

class ReplayWarning(UserWarning):
    """A replay read less than was asked for: a purged start, or messages missing inside the range."""


def replay(stream: str, subject: str | list[str] | None = None, since: Any = None, start_seq: int | None = None,
           until: Any = None, limit: int | None = None, *, end_seq: int | None = None,
           decode: bool | Callable[[bytes], Any] | None = None, progress: bool | None = None,
           timeout: float = 10.0, connection: str | None = None) -> pd.DataFrame:
    """Read ``stream`` into the standard frame, as it was when the replay began.

    Filters: ``subject`` (one pattern or a list), ``start_seq``/``end_seq``
    (inclusive), ``since``/``until`` (ISO time, datetime, or a duration ago
    such as ``"1h"``; inclusive), ``limit`` (the first N that match). The read
    stops at the stream's last sequence at the start, so its length does not
    depend on who publishes meanwhile; it never consumes WorkQueue or
    Interest streams. ``time`` keeps the stream's nanosecond timestamps.
    ``decode=False`` keeps payloads as bytes in ``data``; a function decodes
    each payload. A progress bar appears for long replays (``progress=``
    forces it on or off). ``timeout`` is how long the read may stall.

    What was missing is reported, as a :class:`ReplayWarning` and in
    ``df.attrs``: ``"warnings"`` (sentences such as ``"asked for seq 1, the
    stream starts at 6 …"``), ``"gaps"`` (a list of ``{"from_seq", "to_seq",
    "missing"}`` for sequences absent inside the range; only computed without
    a subject filter, where every sequence is expected), plus ``"stream"``,
    ``"first_seq"``/``"last_seq"`` (the stream's at the start) and
    ``"reader"`` (consumer, direct or get).

    >>> df = nbnats.replay("ORDERS", since="1h", subject="orders.eu.*")   # doctest: +SKIP
    >>> df.groupby("subject").size()                                       # doctest: +SKIP
    """
    plan = _checked_plan(stream, subject, since, start_seq, until, end_seq, limit)
    if decode is not None and decode is not False and not callable(decode):
        raise ValidationError(f"decode must be None, False or a function, not {decode!r}",
                              "pass decode=False to keep raw bytes")
    loop._refuse_in_loop()
    conn = current(connection)
    sink = _Sink()
    fut = loop.submit(_read(conn, plan, sink, timeout))
    bar, shown = None, 0
    try:
        while True:
            # wait() rather than result(timeout): the read's own Timeout is a TimeoutError too
            concurrent.futures.wait([fut], 0.1)
            if fut.done():
                fut.result()
                break
            if bar is None and sink.total is not None:
                from nbnats.progress import progress_bar
                bar = progress_bar(sink.total, f"replay {stream}", enabled=progress)
            if bar is not None and sink.count > shown:
                bar.update(sink.count - shown)
                shown = sink.count
    except concurrent.futures.CancelledError:
        raise Timeout(f"the replay of {stream!r} was cancelled", "run it again") from None
    except BaseException:
        fut.cancel()
        raise
    finally:
        if bar is None and progress and sink.total:
            from nbnats.progress import progress_bar
            bar = progress_bar(sink.total, f"replay {stream}", enabled=progress)
        if bar is not None:
            bar.update(max(0, sink.count - shown))
            bar.close()
    return _frame(plan, sink, decode)


def _checked_plan(stream, subject, since, start_seq, until, end_seq, limit) -> _Plan:
    validate.name(stream, "stream")
    filters = subjects_list(subject, "subject filter") if subject is not None else []
    if filters == [">"]:
        filters = []
    for value, label in ((start_seq, "start_seq"), (end_seq, "end_seq"), (limit, "limit")):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
            raise ValidationError(f"{label} must be a positive whole number, not {value!r}",
                                  f"pass e.g. {label}={'1' if label != 'limit' else '1000'}")
    since_ns, until_ns = to_ns(since, "since"), to_ns(until, "until")
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise ValidationError("since is later than until", "swap them: since is the start of the time range")
    if start_seq is not None and end_seq is not None and start_seq > end_seq:
        raise ValidationError(f"start_seq {start_seq} is after end_seq {end_seq}", "swap them")
    return _Plan(stream, filters, start_seq, since_ns, until_ns, end_seq, limit)


# -- the read, one coroutine on the loop ----------------------------------------------
async def _read(conn: Connection, plan: _Plan, sink: _Sink, stall: float) -> None:
    info = await api.request(conn, f"STREAM.INFO.{plan.stream}", None, what=f"reading stream {plan.stream!r}", stream=plan.stream)
    plan.info = info
    check_filters(info, plan.filters)
    state, cfg = info["state"], info["config"]
    if state["messages"] == 0:
        raise NotFound(f"stream {plan.stream!r} is empty, so there is nothing to replay",
                       "publish to it first (nbnats.publish(subject, data, js=True)), "
                       "or check the name with nbnats.streams()")
    plan.stop = min(state["last_seq"], plan.end_seq or state["last_seq"])
    first = max(plan.start_seq or 1, state["first_seq"])
    if first > plan.stop:
        sink.total = 0
        return
    version = api.server_version(conn)
    if cfg.get("retention", "limits") == "limits":
        plan.path = "consumer"
        plan.client_filter = len(plan.filters) > 1 and version < (2, 10, 0)   # 2.9 ignores filter_subjects
        try:
            return await _via_consumer(conn, plan, sink, first, stall)
        except JetStreamError as exc:
            if "maximum consumers" not in str(exc):
                raise
    if cfg.get("allow_direct") and version >= (2, 11, 0):
        plan.path = "direct"
        plan.client_filter = len(plan.filters) > 1
        return await _via_direct(conn, plan, sink, first, stall)
    plan.path = "get"
    plan.client_filter = bool(plan.filters)
    return await _via_get(conn, plan, sink, first, stall)


async def _via_consumer(conn: Connection, plan: _Plan, sink: _Sink, first: int, stall: float) -> None:
    """Read with ephemeral consumers; one that is lost or stalls is replaced from where it stopped."""
    start, since, failures = first, plan.since, 0
    while True:
        before = sink.count
        outcome = await _consume(conn, plan, sink, start, since, stall)
        if outcome == "done":
            return
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


async def _next_stored(conn: Connection, plan: _Plan, seq: int) -> int | None:
    """The first stored sequence at or after ``seq`` (matching the filter) up to the plan's stop; None if none."""
    if seq > plan.stop:
        return None
    try:
        row = await get_stored(conn, plan.stream, seq=seq,
                               next_for=plan.filters[0] if len(plan.filters) == 1 else ">")
    except NotFound:
        return None
    return row.seq if row.seq <= plan.stop else None


async def _consume(conn: Connection, plan: _Plan, sink: _Sink, start: int, since: int | None,
                   stall: float) -> str:
    """One ephemeral consumer from ``start``: "done" (read to the plan's end), "short" (the server
    said it had no more, before the end) or "stalled" (nothing arrived for ``stall`` seconds)."""
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
                                   {"stream_name": plan.stream, "config": cfg}, what=f"creating the replay consumer on {plan.stream!r}", stream=plan.stream)
    remaining = info.get("num_pending", 0)
    if plan.limit is not None:
        remaining = min(remaining, plan.limit - sink.count)
    if sink.total is None:
        sink.total = remaining
    goal = sink.count + remaining
    done = asyncio.Event()
    replies: list[str] = []
    add_subject, add_header, add_reply = sink.subjects.append, sink.headers.append, replies.append
    packed = sink.payloads
    extend, separate, add_size, intern = packed._buf.extend, packed._buf.append, packed._sizes.append, sys.intern
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
        if not finished or failure:
            return "stalled"
        complete = sink.last_seq >= plan.stop or sink.count >= goal or (
            plan.until is not None and sink.last_time > plan.until)
        return "short" if short and not complete else "done"
    finally:
        try:
            await _unsubscribe(conn, sub, drops, plan)
        finally:
            try:
                await api.request(conn, f"CONSUMER.DELETE.{plan.stream}.{name}", None, what="removing the replay consumer")
            except (JetStreamError, NotFound, Timeout, NotConnected):
                pass     # it removes itself after inactive_threshold anyway


# -- the frame, built once in the caller's thread ------------------------------------
def _frame(plan: _Plan, sink: _Sink, decode) -> pd.DataFrame:
    seqs = np.concatenate(sink.seqs) if sink.seqs else np.zeros(0, np.int64)
    times = np.concatenate(sink.times) if sink.times else np.zeros(0, np.int64)
    sink.seqs, sink.times = [], []          # the chunks (Arrow memory) are not needed any more
    subjects, payloads, headers = sink.subjects, sink.payloads, sink.headers
    keep = seqs <= plan.stop
    if plan.start_seq is not None:
        keep &= seqs >= plan.start_seq
    if plan.since is not None:
        keep &= times >= plan.since
    if plan.until is not None:
        keep &= times <= plan.until
    if plan.client_filter:
        hits = {s: any(validate.subject_matches(f, s) for f in plan.filters) for s in set(subjects)}
        keep &= np.fromiter((hits[s] for s in subjects), bool, len(subjects))
    if plan.limit is not None:
        keep &= np.cumsum(keep) <= plan.limit
    if not keep.all():
        subjects = list(itertools.compress(subjects, keep))
        payloads = payloads.select(keep)
        headers = list(itertools.compress(headers, keep))
        seqs, times = seqs[keep], times[keep]
    payloads.finish()
    sink.subjects, sink.payloads, sink.headers = [], Packed(), []
    if decode is False:
        decoder = _raw
    else:
        decoder = decode
    df = frames.build(subjects, times, payloads, headers, seqs, decode=decoder)
    _report(df, plan, seqs)
    return df


def _raw(payload: bytes) -> bytes:
    return payload


def _report(df: pd.DataFrame, plan: _Plan, seqs: np.ndarray) -> None:
    """Fill ``df.attrs`` and warn about a purged start or missing sequences."""
    state = plan.info.get("state", {})
    first_seq, last_seq = state.get("first_seq", 0), state.get("last_seq", 0)
    notes: list[str] = []
    gaps: list[dict] = []
    if plan.start_seq is not None and plan.start_seq < first_seq:
        notes.append(f"asked for seq {plan.start_seq}, the stream starts at {first_seq} "
                     f"(seq {plan.start_seq}–{first_seq - 1} were purged, deleted or expired)")
    if plan.start_seq is not None and plan.start_seq > last_seq:
        notes.append(f"asked for seq {plan.start_seq}, the stream ends at {last_seq}")
    first_ts = parse_time(state.get("first_ts"))
    if plan.since is not None and first_seq > 1 and first_ts is not None and plan.since < first_ts:
        notes.append(f"asked for messages since {pd.Timestamp(plan.since, unit='ns', tz='UTC')}, the stream starts at "
                     f"seq {first_seq} from {pd.Timestamp(first_ts, unit='ns', tz='UTC')} "
                     "(older messages were purged, deleted or expired)")
    if not plan.filters and len(seqs) and plan.path:
        # the edges count only where every sequence was asked for: not past a time bound or the limit
        lo = max(plan.start_seq or first_seq, first_seq) if plan.since is None else int(seqs[0])
        full = plan.until is None and (plan.limit is None or len(seqs) < plan.limit)
        hi = plan.stop if full else int(seqs[-1])
        edges = np.concatenate(([lo - 1], seqs, [hi + 1]))
        jumps = np.flatnonzero(np.diff(edges) > 1)
        missing = int((np.diff(edges)[jumps] - 1).sum())
        gaps = [{"from_seq": int(edges[i]) + 1, "to_seq": int(edges[i + 1]) - 1,
                 "missing": int(edges[i + 1] - edges[i] - 1)} for i in jumps[:GAPS_KEPT]]
        if gaps:
            shown = ", ".join(f"{g['from_seq']}" if g["missing"] == 1 else f"{g['from_seq']}–{g['to_seq']}"
                              for g in gaps[:5])
            more = f" and {len(jumps) - 5} more ranges" if len(jumps) > 5 else ""
            notes.append(f"{missing:,} message(s) inside seq {lo}–{hi} are missing (deleted or expired): "
                         f"seq {shown}{more}")
    df.attrs.update(stream=plan.stream, first_seq=first_seq, last_seq=last_seq, stop_seq=plan.stop,
                    reader=plan.path or "none", gaps=gaps, warnings=notes)
    for note in notes:
        warnings.warn(note, ReplayWarning, stacklevel=4)
