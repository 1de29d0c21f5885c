"""Replay pulls over nbnats's own connection: frames cut from the read buffer, columns filled in bulk.

The consumer reader of :mod:`nbnats.engine.bulk` at wire speed. The consumer is
made and removed through the session's connection (:mod:`nbnats.engine.api`);
only its messages flow over a :class:`~nbnats.runtime.wire.Wire`. Each socket
read's frames of this consumer are cut at once (:mod:`nbnats.engine.msg_cut`:
subjects, stream sequences, timestamps and the payloads joined by newlines);
the rest (status replies, frames with headers) take the wire's generic path.
Every CHUNK rows the cuts are moved into the sink as one joined payload chunk.

>>> outcome = await consume(conn, wire, plan, sink, start=1, since=None, stall=10)   # doctest: +SKIP
'done'
"""

from __future__ import annotations

import asyncio

import numpy as np

from nbnats.engine import bulk, msg_cut
from nbnats.engine.get import parse_headers
from nbnats.runtime.connection import Connection
from nbnats.runtime.wire import Wire, status


class _Columns:
    """This chunk's rows as the reads cut them; moved into the sink by :meth:`settle`."""

    def __init__(self):
        self.cuts: list[msg_cut.Cut] = []
        self.rows = 0
        self.headers: dict[int, dict | None] = {}      # row in this chunk → its headers

    def add(self, cut: msg_cut.Cut, headers: dict | None = None) -> None:
        if headers is not None:
            self.headers[self.rows] = headers
        self.cuts.append(cut)
        self.rows += len(cut)


async def consume(conn: Connection, wire: Wire, plan, sink, start: int, since, stall: float) -> str:
    """Like :func:`nbnats.engine.bulk._consume` (same outcomes), reading over ``wire``."""
    name, remaining = await bulk._create_consumer(conn, plan, sink, start, since, stall)
    goal = sink.count + remaining
    if remaining <= 0:
        await bulk._delete_consumer(conn, plan, name)
        return "done"
    cutter: list[msg_cut.Cutter | None] = [None]     # made from the first ack subject
    cols = _Columns()
    done = asyncio.Event()
    asked = [sink.count]
    failure: list[str] = []
    short: list[str] = []
    inbox = f"_INBOX.{name}"
    next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{plan.stream}.{name}"
    max_bytes = max(bulk.PULL_BYTES, conn.max_payload + 65_536)

    def ask() -> None:
        n = min(bulk.PULL, goal - asked[0])
        if n > 0:
            asked[0] += n
            wire.publish(next_subject, b'{"batch":%d,"max_bytes":%d,"no_wait":true}' % (n, max_bytes), inbox)

    def parser(buf: bytes, pos: int) -> int:
        got = cutter[0].cut(buf, pos) if cutter[0] is not None else None
        if got is None:
            return pos
        cols.add(got)
        return got.end

    def add(subject: bytes, reply: bytes, header_block: bytes | None, payload: bytes) -> None:
        if cutter[0] is None:
            cutter[0] = msg_cut.Cutter.of(reply, plan.stream, name)
        got = cutter[0].one(subject, reply, payload) if cutter[0] is not None else None
        if got is not None:         # else not this consumer's: a stray reply on the inbox
            cols.add(got, parse_headers(header_block) if header_block is not None else None)

    def on_msg(subject: bytes, reply: bytes | None, payload: bytes) -> None:
        if reply:
            add(subject, reply, None, payload)

    def on_hmsg(subject: bytes, reply: bytes | None, header_block: bytes, payload: bytes) -> None:
        if reply and reply.startswith(b"$JS.ACK."):
            add(subject, reply, header_block, payload)
            return
        code, text = status(header_block)
        if code in ("404", "408"):
            short.append(code)          # "no messages" now: not necessarily the end
            done.set()
        elif code == "409" and "MaxBytes" in text:
            left = parse_headers(header_block) or {}
            asked[0] -= int(left.get("Nats-Pending-Messages", 0) or 0)
            ask()
        elif code == "409" and "Batch Completed" in text:
            pass
        elif code == "409":
            failure.append(text or "conflict")
            done.set()

    def settle() -> None:
        """Move this chunk's rows into the sink; stop at the plan's last sequence or time."""
        n, cuts = cols.rows, cols.cuts
        if not n:
            return
        seqs = np.concatenate([c.seqs for c in cuts])
        times = np.concatenate([c.times for c in cuts])
        for c in cuts:
            sink.subjects.extend(c.subjects)
        sink.payloads.add_joined(b"\n".join([c.joined for c in cuts]), np.concatenate([c.sizes for c in cuts]))
        if cols.headers:
            rows = [None] * n
            for i, h in cols.headers.items():
                rows[i] = h
            sink.headers.extend(rows)
        else:
            sink.headers.extend([None] * n)
        sink.seqs.append(seqs)
        sink.times.append(times)
        sink.count += n
        sink.last_seq, sink.last_time = int(seqs[-1]), int(times[-1])
        cols.__init__()
        if sink.last_seq >= plan.stop or (plan.until is not None and sink.last_time > plan.until):
            done.set()

    def after_read() -> None:
        have = sink.count + cols.rows
        if cols.rows >= bulk.CHUNK or have >= goal:
            settle()
        elif cols.cuts and int(cols.cuts[-1].seqs[-1]) >= plan.stop:
            settle()
        if have >= goal:
            done.set()
        elif asked[0] - have < bulk.PULL and not done.is_set():
            ask()

    wire.parser, wire.on_msg, wire.on_hmsg, wire.after_read = parser, on_msg, on_hmsg, after_read
    sid = wire.subscribe(inbox)
    try:
        ask()
        ask()
        finished = await _wait(done, wire, sink, cols, stall)
        settle()
        if wire.lost.is_set():
            return "lost"
        return bulk.outcome(plan, sink, goal, finished, failure, short)
    finally:
        wire.parser = wire.on_msg = wire.on_hmsg = wire.after_read = None
        wire.unsubscribe(sid)
        await bulk._delete_consumer(conn, plan, name)


async def _wait(done: asyncio.Event, wire: Wire, sink, cols: _Columns, stall: float) -> bool:
    """Wait for ``done`` or the wire's loss; False when nothing arrived for ``stall`` seconds."""
    lost = asyncio.ensure_future(wire.lost.wait())
    try:
        while not done.is_set() and not wire.lost.is_set():
            seen = sink.count + cols.rows
            finished = asyncio.ensure_future(done.wait())
            await asyncio.wait([finished, lost], timeout=stall, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if not done.is_set() and not wire.lost.is_set() and sink.count + cols.rows == seen:
                return False
        return True
    finally:
        lost.cancel()
