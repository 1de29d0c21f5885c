"""Replay pulls over nbnats's own connection: frames cut from the read buffer, columns filled in bulk.

The consumer reader of :mod:`nbnats.engine.bulk` at wire speed. The consumer is
made and removed through the session's connection (:mod:`nbnats.engine.api`);
only its messages flow over a :class:`~nbnats.runtime.wire.Wire`. A whole socket
read is cut at once where it holds only this consumer's ``MSG`` frames
(:mod:`nbnats.engine.msg_cut`); otherwise one pattern, built for this consumer's
ack subjects, cuts a frame and its stream sequence, timestamp and size in one
match, frame by frame. Payloads are joined into the sink's
packed buffer once per chunk; sequences and times are converted by Arrow, per
chunk, not per message. Frames with headers and status replies take the
generic path (the wire's callbacks).

>>> outcome = await consume(conn, wire, plan, sink, start=1, since=None, stall=10)   # doctest: +SKIP
'done'
"""

from __future__ import annotations

import array
import asyncio
import re

import pyarrow as pa

from nbnats.engine import bulk, msg_cut
from nbnats.engine.get import parse_headers
from nbnats.runtime.connection import Connection
from nbnats.runtime.wire import Names, Wire, status

_ints = pa.int64()


def _patterns(stream: str, consumer: str):
    """The pattern of this consumer's ack subjects (with or without domain and account hash), and a
    function that, given one real ack subject, returns the exact MSG-line pattern for the rest."""
    ack = rb"\$JS\.ACK\.(?:[^ .]+\.[^ .]+\.)?%s\.%s\.\d+\.(\d+)\.\d+\.(\d+)\.\d+(?:\.[^ .]+)?" % (
        re.escape(stream.encode()), re.escape(consumer.encode()))
    anchor = b".%s.%s." % (stream.encode(), consumer.encode())

    def exact(reply: bytes):
        # the literal prefix up to the consumer's name spares the matcher its backtracking
        cut = reply.find(anchor)
        if cut < 0:
            return None
        prefix = reply[:cut + len(anchor)]
        token = rb"\.[^ .]+" if reply.count(b".") >= 11 else b""
        return re.compile(rb"MSG ([^ ]+) \d+ %s\d+\.(\d+)\.\d+\.(\d+)\.\d+%s (\d+)\r\n" % (
            re.escape(prefix), token)).match

    return exact, re.compile(ack + rb"$")


class _Columns:
    """This chunk's rows as the hot loop appends them; moved into the sink by :meth:`settle`."""

    def __init__(self):
        self.subjects: list[bytes] = []
        self.seqs: list[bytes] = []
        self.times: list[bytes] = []
        self.payloads: list[bytes] = []
        self.sizes = array.array("q")
        self.headers: dict[int, dict | None] = {}      # row in this chunk → its headers


async def consume(conn: Connection, wire: Wire, plan, sink, start: int, since, stall: float) -> str:
    """Like :func:`nbnats.engine.bulk._consume` (same outcomes), reading over ``wire``."""
    name, remaining = await bulk._create_consumer(conn, plan, sink, start, since, stall)
    goal = sink.count + remaining
    if remaining <= 0:
        await bulk._delete_consumer(conn, plan, name)
        return "done"
    exact, reply_pattern = _patterns(plan.stream, name)
    fast = [None]           # the exact MSG pattern, learnt from the first message
    layout: list[msg_cut.Layout | None] = [None]     # and its ack subjects' layout, for whole-read cuts
    skip = [0]              # reads left before the whole-read cut is tried again (it failed lately)
    tries = [0]             # whole-read cuts left to try in this read
    names = Names()
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
        # Each pull ends in a status reply, so a read may hold one: after a failed cut the careful
        # path reads up to it, the wire takes it, and the rest is cut once more. Two failures in one
        # read (headers, CRLF in payloads) leave the next reads to the careful path.
        if not pos:
            tries[0] = 2 if not skip[0] else 0
            skip[0] = max(skip[0] - 1, 0)
        if tries[0] and layout[0] is not None:
            tries[0] -= 1
            got = msg_cut.cut(buf, pos, layout[0])
            if got is not None:
                cols.subjects.extend(got.subjects)
                cols.seqs.extend(got.seqs)
                cols.times.extend(got.times)
                cols.payloads.extend(got.payloads)
                cols.sizes.extend(got.sizes)
                return got.end
            if not tries[0]:
                skip[0] = 4
        return careful(buf, pos)

    def careful(buf: bytes, pos: int) -> int:
        match, end = fast[0], len(buf)
        if match is None:
            return pos
        subjects, seqs, times = cols.subjects.append, cols.seqs.append, cols.times.append
        payloads, sizes = cols.payloads.append, cols.sizes.append
        while True:
            m = match(buf, pos)
            if m is None:
                return pos
            start_ = m.end()
            subject, seq, ts, size = m.groups()
            size = int(size)
            stop = start_ + size
            if stop + 2 > end:
                return pos
            subjects(subject)
            seqs(seq)
            times(ts)
            payloads(buf[start_:stop])
            sizes(size)
            pos = stop + 2

    def add(subject: bytes, reply: bytes, header_block: bytes | None, payload: bytes) -> None:
        m = reply_pattern.match(reply)
        if m is None:
            return          # not this consumer's (a stray reply on the inbox)
        if fast[0] is None:
            fast[0] = exact(reply)
            layout[0] = msg_cut.Layout.of(reply)
        if header_block is not None:
            cols.headers[len(cols.sizes)] = parse_headers(header_block)
        cols.subjects.append(subject)
        cols.seqs.append(m.group(1))
        cols.times.append(m.group(2))
        cols.payloads.append(payload)
        cols.sizes.append(len(payload))

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
        n = len(cols.sizes)
        if not n:
            return
        seqs = pa.array(cols.seqs, pa.binary()).cast(pa.string()).cast(_ints).to_numpy()
        times = pa.array(cols.times, pa.binary()).cast(pa.string()).cast(_ints).to_numpy()
        sink.subjects.extend(map(names.__getitem__, cols.subjects))
        sink.payloads.add_joined(b"\n".join(cols.payloads), cols.sizes)
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
        have = sink.count + len(cols.sizes)
        if len(cols.sizes) >= bulk.CHUNK or have >= goal:
            settle()
        elif cols.seqs and int(cols.seqs[-1]) >= plan.stop:
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
            seen = sink.count + len(cols.sizes)
            finished = asyncio.ensure_future(done.wait())
            await asyncio.wait([finished, lost], timeout=stall, return_when=asyncio.FIRST_COMPLETED)
            finished.cancel()
            if not done.is_set() and not wire.lost.is_set() and sink.count + len(cols.sizes) == seen:
                return False
        return True
    finally:
        lost.cancel()
