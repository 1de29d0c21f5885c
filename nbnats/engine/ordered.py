"""An ordered consumer of nbnats's own, on the public NATS protocol.

An ephemeral push consumer in memory, with AckPolicy none, flow control and
idle heartbeats, delivering to an inbox this class subscribes to. Messages
arrive in stream order; when one is missing (a consumer sequence skipped, a
heartbeat naming a later consumer sequence, heartbeats gone silent, a
reconnect), the consumer is dropped and made again at ``last_seq + 1``, so the
reader sees each stored message once, in order, whatever happens in between.

Until the first message arrives it keeps the caller's start: a from-now read
(``deliver="new"``) resumes after the stream's last sequence when it began,
so a reset never pours history into it. A stream that was deleted and made
again (its last sequence went backwards) is read again from its start, and
said so through ``on_event``.

>>> oc = OrderedConsumer(conn, "ORDERS", ["orders.>"], on_message=lambda msg, meta: print(meta.seq))   # doctest: +SKIP
>>> await oc.start()                                                                                  # doctest: +SKIP
>>> await oc.stop()                                                                                   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from nbnats.engine import acks, api
from nbnats.errors import NatsError, Timeout

log = logging.getLogger("nbnats")

HEARTBEAT = 2.0            # seconds between the server's idle heartbeats
SILENT_BEATS = 1.5         # heartbeat intervals of silence before the consumer is made again
IDLE_LIFE = 300.0          # seconds the server keeps a consumer nobody reads
RETRY = 0.5                # seconds between attempts to make the consumer again

DELIVER = ("all", "new", "last", "last_per_subject")


class OrderedConsumer:
    """Read ``stream`` (``filters`` of it) in order, calling ``on_message(msg, meta)`` on the loop thread.

    ``deliver`` is where to start: ``all``, ``new``, ``last``,
    ``last_per_subject``; or ``start_seq`` / ``start_time`` (RFC 3339).
    ``on_event(kind, detail)`` hears of ``reset`` (the consumer was made
    again, nothing lost), ``recreated`` (the stream went back to an earlier
    sequence: read again from its start) and ``purged`` (messages removed
    before they were read: ``detail["missed"]`` sequences).
    ``last_seq`` the last stream sequence delivered; ``pending`` what the
    server still had to deliver after it; ``resets`` how often it was made again.
    """

    def __init__(self, conn, stream: str, filters: list[str] | None, on_message: Callable[[Any, acks.AckMeta], Any],
                 *, deliver: str = "all", start_seq: int | None = None, start_time: str | None = None,
                 headers_only: bool = False, heartbeat: float = HEARTBEAT,
                 on_event: Callable[[str, dict], Any] | None = None, pending_msgs_limit: int = 512 * 1024):
        if deliver not in DELIVER:
            raise ValueError(f"deliver must be one of {DELIVER}")
        self.conn = conn
        self.stream = stream
        self.filters = [f for f in (filters or []) if f]
        self.on_message = on_message
        self.on_event = on_event
        self.deliver = deliver
        self.start_seq = start_seq
        self.start_time = start_time
        self.headers_only = headers_only
        self.heartbeat = heartbeat
        self.pending_msgs_limit = pending_msgs_limit
        self.last_seq: int | None = None     # the last stream sequence delivered to on_message
        self.pending: int | None = None      # what the server had left after the last message
        self.resets = 0
        self.name: str | None = None         # the server's name of the current consumer
        self.info: dict = {}                 # the create response of the current consumer
        self._sub = None
        self._gen = 0                        # which consumer the callback listens to; 0: none
        self._next_cseq = 1
        self._heard = time.monotonic()
        self._watchdog: asyncio.Task | None = None
        self._resetting: asyncio.Task | None = None
        self._stopped = False

    # -- life ---------------------------------------------------------------------
    async def start(self, timeout: float = api.TIMEOUT) -> dict:
        """Make the consumer and start receiving; returns the server's consumer info."""
        self._created_at = (await self._stream_info(timeout)).get("created")
        await self._create(self._first_start(), timeout)
        if self.deliver == "new" and self.last_seq is None and self.start_seq is None:
            # the stream's last sequence at the start: a reset resumes after it
            self._resume_after = (self.info.get("delivered") or {}).get("stream_seq", 0)
        self.conn.listeners.append(self)
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        return self.info

    async def stop(self) -> None:
        """Stop receiving and remove the consumer from the server (best effort)."""
        self._stopped = True
        for task in (self._watchdog, self._resetting):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        if self in self.conn.listeners:
            self.conn.listeners.remove(self)
        await self._drop()

    @property
    def running(self) -> bool:
        """True until stopped."""
        return not self._stopped

    @property
    def subscription(self):
        """The nats-py subscription currently receiving (changes at each reset)."""
        return self._sub

    _resume_after: int | None = None
    _made = 0
    _created_at: str | None = None

    def _first_start(self) -> dict:
        if self.last_seq is not None:
            return {"deliver_policy": "by_start_sequence", "opt_start_seq": self.last_seq + 1}
        if self._resume_after is not None:
            return {"deliver_policy": "by_start_sequence", "opt_start_seq": self._resume_after + 1}
        if self.start_seq is not None:
            return {"deliver_policy": "by_start_sequence", "opt_start_seq": self.start_seq}
        if self.start_time is not None:
            return {"deliver_policy": "by_start_time", "opt_start_time": self.start_time}
        return {"deliver_policy": self.deliver}

    async def _create(self, start: dict, timeout: float) -> None:
        nc = self.conn.nc
        inbox = nc.new_inbox()
        self._made += 1
        gen = self._made

        async def on_raw(msg):
            if gen == self._gen:
                await self._on_raw(msg)

        sub = await nc.subscribe(inbox, cb=on_raw, pending_msgs_limit=self.pending_msgs_limit)
        cfg: dict[str, Any] = {
            "deliver_subject": inbox, "ack_policy": "none", "max_deliver": 1, "replay_policy": "instant",
            "flow_control": True, "idle_heartbeat": int(self.heartbeat * 1e9), "mem_storage": True,
            "num_replicas": 1, "inactive_threshold": int(IDLE_LIFE * 1e9), **start,
        }
        if self.headers_only:
            cfg["headers_only"] = True
        filters = self.filters or ([">"] if start["deliver_policy"] == "last_per_subject" else [])
        if len(filters) == 1:
            cfg["filter_subject"] = filters[0]
        elif filters:
            cfg["filter_subjects"] = filters
        old, self._sub, self._next_cseq, self._gen = self._sub, sub, 1, gen
        self._heard = time.monotonic()
        try:
            self.info = await api.request(self.conn, f"CONSUMER.CREATE.{self.stream}",
                                          {"stream_name": self.stream, "config": cfg},
                                          what=f"reading stream {self.stream!r}", timeout=timeout,
                                          stream=self.stream)
        except BaseException:
            self._sub, self._gen = old, 0
            await _quietly(sub.unsubscribe())
            raise
        self.name = self.info.get("name")
        if old is not None:
            await _quietly(old.unsubscribe())

    async def _drop(self) -> None:
        sub, name, self._sub, self.name = self._sub, self.name, None, None
        if sub is not None:
            await _quietly(sub.unsubscribe())
        if name and self.conn.nc.is_connected:
            await _quietly(api.request(self.conn, f"CONSUMER.DELETE.{self.stream}.{name}", timeout=2.0,
                                       what="removing a finished reader"))

    # -- receiving (loop thread) -------------------------------------------------------
    async def _on_raw(self, msg) -> None:
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            meta = acks.parse(msg.reply)
            self._heard = time.monotonic()
            if meta.consumer_seq != self._next_cseq:
                self._reset_soon("a message was missed")
                return
            self._next_cseq += 1
            self.last_seq, self.pending = meta.seq, meta.pending
            result = self.on_message(msg, meta)
            if asyncio.iscoroutine(result):
                await result
            return
        self._heard = time.monotonic()
        headers = msg.headers or {}
        if headers.get("Status") != "100":
            # 409 consumer deleted / leadership change and the like: make it again
            self._reset_soon(f"the server said {headers.get('Status')} {headers.get('Description', '')}".strip())
            return
        if msg.reply:                          # a flow-control request: answer it
            await _quietly(self.conn.nc.publish(msg.reply, b""))
        stalled = headers.get("Nats-Consumer-Stalled")
        if stalled:
            await _quietly(self.conn.nc.publish(stalled, b""))
        last = headers.get("Nats-Last-Consumer")
        if last is not None and last.isdigit() and int(last) >= self._next_cseq:
            self._reset_soon("a heartbeat named messages not received")

    async def _watch(self) -> None:
        while not self._stopped:
            await asyncio.sleep(self.heartbeat / 4)
            if self._resetting is None and self.conn.nc.is_connected and \
                    time.monotonic() - self._heard > SILENT_BEATS * self.heartbeat:
                self._reset_soon("its heartbeats stopped")

    # -- connection events (see nbnats.runtime.connection) --------------------------
    def _disconnected(self, at: float) -> None: ...

    def _reconnected(self, since: float | None, at: float) -> None:
        self._reset_soon("the connection came back")

    def _closing(self) -> None: ...

    def _closed(self) -> None:
        self._stopped = True
        for task in (self._watchdog, self._resetting):
            if task is not None:
                task.cancel()

    # -- making it again -------------------------------------------------------------------
    def _reset_soon(self, why: str) -> None:
        self._gen = 0           # from now on the old consumer's messages are ignored: last_seq stays put
        if self._resetting is None and not self._stopped:
            self._resetting = asyncio.get_running_loop().create_task(self._reset(why))

    async def _reset(self, why: str) -> None:
        try:
            while not self._stopped:
                try:
                    await self._reset_once(why)
                    return
                except asyncio.CancelledError:
                    raise
                except NatsError as exc:
                    log.debug("nbnats: ordered consumer on %s: reset failed (%s); retrying", self.stream, exc)
                await asyncio.sleep(RETRY)
        finally:
            self._resetting = None

    async def _stream_info(self, timeout: float = api.TIMEOUT) -> dict:
        return await api.request(self.conn, f"STREAM.INFO.{self.stream}", what=f"reading stream {self.stream!r}",
                                 timeout=timeout, stream=self.stream)

    async def _reset_once(self, why: str) -> None:
        old_name = self.name
        info = await self._stream_info()
        state = info["state"]
        resume = self.last_seq if self.last_seq is not None else self._resume_after
        remade = info.get("created") != self._created_at
        self._created_at = info.get("created")
        if resume is not None and (remade or state["last_seq"] < resume):
            # the stream was deleted and made again, or purged and compacted: read it from its start
            self._notify("recreated", {"last_seq": resume, "stream_last_seq": state["last_seq"]})
            self.last_seq = self._resume_after = None
            self.start_seq = self.start_time = None
            start = {"deliver_policy": "all"}
        else:
            start = self._first_start()
            wanted = start.get("opt_start_seq")
            if wanted is not None and state["messages"] and state["first_seq"] > wanted:
                self._notify("purged", {"from_seq": wanted, "to_seq": state["first_seq"] - 1,
                                        "missed": state["first_seq"] - wanted})
        await self._create(start, api.TIMEOUT)
        self.resets += 1
        self._notify("reset", {"why": why})
        if old_name:
            await _quietly(api.request(self.conn, f"CONSUMER.DELETE.{self.stream}.{old_name}", timeout=2.0,
                                       what="removing a replaced reader"))

    def _notify(self, kind: str, detail: dict) -> None:
        if self.on_event is not None:
            try:
                self.on_event(kind, detail)
            except Exception:       # a listener's bug must not stop the reader
                log.exception("nbnats: an ordered-consumer listener failed")


async def _quietly(aw) -> None:
    try:
        await aw
    except Exception:
        pass


async def read_all(conn, stream: str, filters: list[str] | None, *, deliver: str = "all",
                   headers_only: bool = False, stall: float = 10.0) -> list[tuple]:
    """Read what ``filters`` of ``stream`` hold now: (subject, seq, time_ns, data, headers) rows, in order.

    ``deliver="last_per_subject"`` gives the latest message of each subject (a
    bucket's current state). It ends when the server has nothing more pending;
    it raises :class:`~nbnats.errors.Timeout` when no message arrives for ``stall`` seconds.

    >>> rows = await read_all(conn, "KV_sessions", ["$KV.sessions.>"], deliver="last_per_subject")   # doctest: +SKIP
    """
    rows: list[tuple] = []
    done = asyncio.Event()

    def on_message(msg, meta):
        rows.append((msg.subject, meta.seq, meta.time_ns, msg.data, msg.headers))
        if meta.pending == 0:
            done.set()

    oc = OrderedConsumer(conn, stream, filters, on_message, deliver=deliver, headers_only=headers_only)
    try:
        info = await oc.start()
        if info.get("num_pending", 0) == 0:
            return rows
        seen = -1
        while not done.is_set():
            if len(rows) == seen:
                raise Timeout(f"reading stream {stream!r} stalled after {len(rows):,} messages",
                              "check the connection and try again")
            seen = len(rows)
            try:
                await asyncio.wait_for(done.wait(), stall)
            except asyncio.TimeoutError:
                pass
        return rows
    finally:
        await oc.stop()
