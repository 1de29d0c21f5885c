"""Core subscriptions on a connection of their own, delivered in bulk: the receiving side of a tail.

A :class:`WireSubscription` subscribes its subjects on a
:class:`~nbnats.runtime.wire.Wire` and hands each socket read's messages to
``on_batch(subjects, payloads, headers, time_ns)`` at once: one timestamp for
the read, subjects as bytes, payloads as ``bytes``, ``headers`` a dict of
row → headers (usually empty). No per-message callback and no ``Msg`` object
is made, which is what keeps a tail close to the socket's speed.

When the connection is lost (a restart, a cut, the server closing a slow
client) it says so (``on_lost(at)``), reconnects with the session's options
every :data:`RETRY` seconds, subscribes again and says so (``on_back(since, at)``).

>>> sub = WireSubscription(conn, ["orders.>"], None, on_batch, on_lost, on_back)   # doctest: +SKIP
>>> await sub.start(5)                                                              # doctest: +SKIP
>>> await sub.unsubscribe()                                                         # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from time import time_ns

from nbnats.engine.get import parse_headers
from nbnats.errors import NatsError
from nbnats.runtime.wire import Dial, Wire

RETRY = 0.25
_MSG = re.compile(rb"MSG +([^ \r\n]+) +\d+ +(?:[^ \r\n]+ +)?(\d+)\r\n")   # an empty reply: two spaces


class WireSubscription:
    """See the module. ``transport`` is ``"wire"``; ``reconnects`` counts the times it came back."""

    transport = "wire"

    def __init__(self, conn, subjects: list[str], queue: str | None,
                 on_batch: Callable[[list, list, dict, int], None],
                 on_lost: Callable[[float], None], on_back: Callable[[float | None, float], None]):
        self.conn, self.subjects, self.queue = conn, subjects, queue
        self.on_batch, self.on_lost, self.on_back = on_batch, on_lost, on_back
        self.wire: Wire | None = None
        self.reconnects = 0
        self._stopped = False
        self._watch: asyncio.Task | None = None
        self._moving: asyncio.Task | None = None
        self._subjects: list[bytes] = []
        self._payloads: list[bytes] = []
        self._headers: dict[int, dict | None] = {}

    async def start(self, timeout: float) -> None:
        """Connect and subscribe; raises a plain nbnats error if the connection cannot be made."""
        self.wire = await self._open(timeout)
        self._watch = asyncio.get_running_loop().create_task(self._supervise())

    async def _open(self, timeout: float, avoid: tuple[str, int] | None = None) -> Wire:
        """A subscribed wire to the first server that answers (the session's own first)."""
        error: NatsError | None = None
        for dial in Dial.candidates(self.conn, avoid):
            try:
                wire = await Wire.open(dial, timeout)
            except NatsError as exc:
                error = exc
                continue
            self._attach(wire)                  # before subscribing: the first message may come at once
            for subject in self.subjects:
                wire.subscribe(subject, self.queue)
            try:
                await wire.ping(timeout)           # subscribed on the server before it is used
            except NatsError as exc:
                wire.close()
                error = exc
                continue
            return wire
        raise error

    def _attach(self, wire: Wire) -> None:
        wire.parser, wire.on_msg, wire.on_hmsg, wire.after_read = self._parse, self._msg, self._hmsg, self._flush
        wire.on_lame_duck = self._lame_duck

    def _lame_duck(self) -> None:
        if self._moving is None and not self._stopped:
            self._moving = asyncio.get_running_loop().create_task(self._move())

    async def _move(self) -> None:
        """Make before break: subscribe on another server, then leave the one going away."""
        old = self.wire
        try:
            new = await self._open(2.0, avoid=(old.dial.host, old.dial.port))
        except NatsError:
            return                      # nowhere else to go: the supervisor reconnects when it closes
        finally:
            self._moving = None
        if self._stopped:
            new.close()
            return
        old.parser = old.on_msg = old.on_hmsg = old.after_read = old.on_lame_duck = None
        self.wire = new
        old.close()

    # -- receiving (loop thread) -------------------------------------------------------
    def _parse(self, buf: bytes, pos: int) -> int:
        match, end = _MSG.match, len(buf)
        subjects, payloads = self._subjects.append, self._payloads.append
        while True:
            m = match(buf, pos)
            if m is None:
                return pos
            start = m.end()
            stop = start + int(m.group(2))
            if stop + 2 > end:
                return pos
            subjects(m.group(1))
            payloads(buf[start:stop])
            pos = stop + 2

    def _msg(self, subject: bytes, reply, payload: bytes) -> None:
        self._subjects.append(subject)
        self._payloads.append(payload)

    def _hmsg(self, subject: bytes, reply, header_block: bytes, payload: bytes) -> None:
        self._headers[len(self._payloads)] = parse_headers(header_block)
        self._subjects.append(subject)
        self._payloads.append(payload)

    def _flush(self) -> None:
        if self._payloads:
            subjects, payloads, headers = self._subjects, self._payloads, self._headers
            self._subjects, self._payloads, self._headers = [], [], {}
            self.on_batch(subjects, payloads, headers, time_ns())

    # -- faults ------------------------------------------------------------------------
    async def _supervise(self) -> None:
        while not self._stopped:
            wire = self.wire
            await wire.lost.wait()
            if self._stopped:
                return
            if wire is not self.wire:
                continue                    # moved to another server (lame duck): nothing was cut
            lost_at = time.time()
            self.on_lost(lost_at)
            while not self._stopped:
                try:
                    self.wire = await self._open(1.0)
                    break
                except NatsError:
                    await asyncio.sleep(RETRY)
            if self._stopped:
                return
            self.reconnects += 1
            self.on_back(lost_at, time.time())

    async def unsubscribe(self) -> None:
        """Stop receiving and close the connection."""
        self.close()

    def close(self) -> None:
        """Stop at once (loop thread): nothing more is delivered, no reconnect is tried."""
        self._stopped = True
        for task in (self._watch, self._moving):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self.wire is not None:
            self.wire.parser = self.wire.on_msg = self.wire.on_hmsg = self.wire.after_read = None
            self.wire.on_lame_duck = None
            self.wire.close()
            self.wire.lost.set()            # wakes the supervisor, which sees it was stopped
