"""Tails: background subscriptions that keep the last ``limit`` messages.

A tail receives on the nbnats loop thread whatever the kernel is doing. It
keeps raw bytes in a bounded ring and builds a DataFrame only when ``t.df``
is read, so receiving costs one append per message.

>>> t = nbnats.tail("orders.>", limit=10_000)   # doctest: +SKIP
>>> t.df.head()                                  # doctest: +SKIP
>>> t.stop()                                     # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections import deque
from time import time_ns
from typing import Any

import pandas as pd

from nbnats.data import frames, validate
from nbnats.data.ring import Ring
from nbnats.engine import api
from nbnats.engine.ordered import OrderedConsumer
from nbnats.runtime import connection, loop
from nbnats.runtime.connection import Connection, current
from nbnats.runtime.wire import Names
from nbnats.runtime.wire_sub import WireSubscription
from nbnats.errors import NatsError, NotFound, Timeout, ValidationError
from nbnats.jetstream.display import listing

log = logging.getLogger("nbnats")

_ids = itertools.count(1)
_tails: dict[str, Tail] = {}

SAMPLE_EVERY = 0.5        # seconds between rate samples
SAMPLES_KEPT = 1200       # ten minutes of rate history
WARN_EVERY = 5.0          # at most one slow-consumer warning per tail per interval
WARN_AFTER = 1.0          # the first warning waits this long, so it counts the whole burst
WIRE = True               # core tails receive on a connection of their own (runtime/wire_sub.py) when it opens


class Tail:
    """A live subscription; see :func:`tail`.

    ``df`` a DataFrame snapshot; ``count`` messages received; ``dropped``
    messages lost to the row limit or to slow-consumer drops; ``gaps`` the
    outages and sequence gaps seen; ``rate`` messages per second; ``stop()``.
    """

    def __init__(self, conn: Connection, subject: str | list[str], queue: str | None, limit: int,
                 count: int | None, stream: str | None, codec: Any = None,
                 pending_limit: int = 512 * 1024):
        self.id = f"t{next(_ids)}"
        self.conn = conn
        self.queue = queue
        self.limit = limit
        self.max_count = count
        self.stream = stream
        self.codec = codec
        self.pending_limit = pending_limit
        self.count = 0
        self.overflow = 0             # rows pushed out of the ring by newer ones
        self.slow_dropped = 0         # messages the client dropped before we saw them
        self.started = time.time()
        self.stopped_at: float | None = None
        self._ring = Ring(limit)
        self._add_subject = self._ring.subjects.append
        self._add_time = self._ring.times.append
        self._add_seq = self._ring.seqs.append
        self._add_headers = self._ring.headers.append
        self._stop_at = count if count is not None else -1
        self._gaps: list[dict] = []
        self._outage_since: float | None = None
        self._last_seq: int | None = None
        self._gaps_checked = False       # set for a stream tail that reads every subject of its stream
        self._samples: deque = deque(maxlen=SAMPLES_KEPT)
        self.subjects: list[str] = [subject] if isinstance(subject, str) else list(subject)
        self.subject = ", ".join(self.subjects)
        self._subs: list = []            # a core tail's subscriptions: one WireSubscription, or nats-py's
        self._own_wire = False           # a core tail receiving on a connection of its own
        self._names = Names()
        self.transport = "nats-py"       # how a core tail receives: "wire" (its own connection) or "nats-py"
        self._sampler: asyncio.TimerHandle | None = None
        self._last_warning = -WARN_EVERY
        self._warned_drops = 0
        self._warn_timer: asyncio.TimerHandle | None = None
        self._reader: OrderedConsumer | None = None   # a stream tail's ordered consumer
        self._done = threading.Event()
        self._widget = None
        self.error: str | None = None

    # -- receiving (loop thread) -------------------------------------------
    async def _on_msg(self, msg) -> None:
        # The hot path of every core tail: bound appends, no method calls (see bench/tail.py).
        count = self.count
        if count == self._stop_at:
            return  # already queued behind the last wanted message
        payloads = self._ring.payloads
        if len(payloads) == self.limit:
            self.overflow += 1
        self._add_subject(msg.subject)
        self._add_time(time_ns())
        self._add_seq(None)
        payloads.append(msg.data)
        self._add_headers(msg.headers)
        self.count = count = count + 1
        if count == self._stop_at:
            self._finish()

    def _on_batch(self, subjects: list[bytes], payloads: list[bytes], headers: dict, at_ns: int) -> None:
        # One socket read's messages from the tail's own connection (runtime/wire_sub.py): a few
        # bulk extends instead of work per message; one arrival time for the read.
        n = len(payloads)
        if self._stop_at > 0:
            left = self._stop_at - self.count
            if left <= 0:
                return
            if n > left:
                subjects, payloads, n = subjects[:left], payloads[:left], left
        ring = self._ring
        over = len(ring.payloads) + n - self.limit
        if over > 0:
            self.overflow += min(over, n + len(ring.payloads))
        ring.subjects.extend(map(self._names.__getitem__, subjects))
        ring.times.extend(itertools.repeat(at_ns, n))
        ring.seqs.extend(itertools.repeat(None, n))
        ring.payloads.extend(payloads)
        if headers:
            ring.headers.extend([headers.get(i) for i in range(n)])
        else:
            ring.headers.extend(itertools.repeat(None, n))
        self.count += n
        if self.count == self._stop_at:
            self._finish()

    def _on_js_msg(self, msg, meta) -> None:
        # The ordered consumer hands over each stored message once, in stream order.
        if self.max_count is not None and self.count >= self.max_count:
            return
        seq, last = meta.seq, self._last_seq
        if last is not None and seq > last + 1 and self._gaps_checked:
            now = time.time()
            self._gaps.append({"start": now, "end": now, "kind": "sequence",
                               "missed": seq - last - 1, "detail": f"seq {last} → {seq} (removed before it was read)"})
        self._last_seq = seq
        ring = self._ring
        if len(ring) == self.limit:
            self.overflow += 1
        ring.append(msg.subject, meta.time_ns, seq, msg.data, msg.headers)
        self.count += 1
        if self.max_count is not None and self.count >= self.max_count:
            self._finish()

    def _on_reader_event(self, kind: str, detail: dict) -> None:
        now = time.time()
        if kind == "recreated":
            self._last_seq = None
            self._gaps.append({"start": now, "end": now, "kind": "recreated", "missed": 0,
                               "detail": f"stream {self.stream!r} was deleted and added again "
                                         f"(it was at seq {detail['last_seq']}): reading it from its start"})
        elif kind == "purged":
            self._gaps.append({"start": now, "end": now, "kind": "purged", "missed": detail["missed"],
                               "detail": f"seq {detail['from_seq']}–{detail['to_seq']} removed before they were read"})

    def _slow_consumer(self) -> None:
        # nats-py reports every dropped message; log one warning per interval that counts them all.
        self.slow_dropped += 1
        if self._warn_timer is None:
            delay = max(WARN_AFTER, self._last_warning + WARN_EVERY - time.monotonic())
            self._warn_timer = loop.get_loop().call_later(delay, self._warn_slow)

    def _warn_slow(self) -> None:
        self._warn_timer = None
        self._last_warning = time.monotonic()
        new, self._warned_drops = self.slow_dropped - self._warned_drops, self.slow_dropped
        log.warning("nbnats: tail %s on %r is too slow: the client dropped %d messages (%d in all) "
                    "— filter the subject or raise the tail's pending_limit", self.id, self.subject,
                    new, self.slow_dropped)

    def _sample(self) -> None:
        self._samples.append((time.time(), self.count))
        if self.running:
            self._sampler = loop.get_loop().call_later(SAMPLE_EVERY, self._sample)

    def _finish(self) -> None:
        if self.running:
            loop.get_loop().create_task(self._unsubscribe())

    async def _unsubscribe(self) -> None:
        subs, reader, self._subs, self._reader = self._subs, self._reader, [], None
        if self._sampler is not None:
            self._sampler.cancel()
        if reader is not None:
            await reader.stop()
        for sub in subs:
            if not isinstance(sub, WireSubscription):
                self.conn.unwatch_slow(sub)
            try:
                await sub.unsubscribe()
            except Exception:
                pass
        self.stopped_at = self.stopped_at or time.time()
        self._samples.append((time.time(), self.count))
        if self in self.conn.listeners:
            self.conn.listeners.remove(self)
        self._done.set()

    # -- connection events (loop thread) -----------------------------------
    # A core tail on its own connection hears of its outages from that connection
    # (which the server may also cut alone, e.g. as a slow consumer); others from the session's.
    def _disconnected(self, at: float) -> None:
        if not self._own_wire:
            self._outage_since = at

    def _reconnected(self, since: float | None, at: float) -> None:
        if not self._own_wire:
            self._record_outage(since, at)

    def _wire_lost(self, at: float) -> None:
        self._outage_since = at

    def _wire_back(self, since: float | None, at: float) -> None:
        self._record_outage(since, at)

    def _record_outage(self, since: float | None, at: float) -> None:
        start = self._outage_since or since or at
        self._outage_since = None
        if self.stream:      # the ordered consumer resumes after the last sequence: nothing is lost
            self._gaps.append({"start": start, "end": at, "kind": "outage", "missed": 0,
                               "detail": f"disconnected for {at - start:.1f} s; resumed after seq {self._last_seq}"})
        else:
            self._gaps.append({"start": start, "end": at, "kind": "outage", "missed": pd.NA,
                               "detail": f"disconnected for {at - start:.1f} s: what was published meanwhile "
                                         "is lost (unknown how much)"})

    def _closing(self) -> None:
        """The connection drains: messages in flight still arrive."""

    def _closed(self) -> None:
        """The connection closed (called on the loop thread)."""
        for sub in self._subs:
            if isinstance(sub, WireSubscription):
                sub.close()
        self._subs, self._reader = [], None
        self.stopped_at = self.stopped_at or time.time()
        if self._sampler is not None:
            self._sampler.cancel()
        self._done.set()

    # -- the user's side ---------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the tail is subscribed."""
        return bool(self._subs) or self._reader is not None

    @property
    def dropped(self) -> int:
        """Messages known lost: pushed out by the row limit plus dropped as a slow consumer.

        A core tail also loses what is published while it is disconnected (a
        server restart, or the server cutting a slow connection); nobody can
        count that: such outages are in :attr:`outages`, so the loss is at least
        ``dropped``, plus that many outages of unknown size. A stream tail
        loses nothing to outages (it resumes after its last sequence).
        """
        return self.overflow + self.slow_dropped

    @property
    def outages(self) -> int:
        """Disconnects during which messages may have been lost uncounted (0 for a stream tail)."""
        return sum(1 for g in self._gaps if g["kind"] == "outage" and g["missed"] is pd.NA)

    @property
    def loss(self) -> str:
        """What was lost, in words: ``"none"``, ``"12"``, or ``"≥ 12, plus 2 outages"``.

        >>> t.loss   # doctest: +SKIP
        '≥ 0, plus 1 outage'
        """
        n, out = self.dropped, self.outages
        if not out:
            return f"{n:,}" if n else "none"
        return f"≥ {n:,}, plus {out} outage{'s' if out > 1 else ''}"

    @property
    def disconnected(self) -> bool:
        """True while the connection is down (the tail resumes when it returns)."""
        return self._outage_since is not None

    @property
    def kept(self) -> int:
        """Rows kept now (at most ``limit``)."""
        return len(self._ring)

    @property
    def consumer(self) -> str | None:
        """The server's name of a stream tail's current ordered consumer (None for a core tail)."""
        return self._reader.name if self._reader is not None else None

    @property
    def resets(self) -> int:
        """How often a stream tail's ordered consumer was made again (after a gap, a restart, a reconnect)."""
        return self._reader.resets if self._reader is not None else 0

    def last(self, n: int) -> list[tuple]:
        """The newest ``n`` kept rows as (subject, time_ns, seq, data, headers) tuples.

        >>> t.last(5)   # doctest: +SKIP
        """
        return self._on_loop(self._ring.last, n)

    def _on_loop(self, read, *args):
        """``read(*args)`` on the loop thread, which owns the ring (directly when already there)."""
        if loop.in_loop_thread():
            return read(*args)

        async def in_loop():
            return read(*args)

        return loop.run(in_loop(), 10, f"reading tail {self.id}")

    def samples(self) -> list[tuple[float, int]]:
        """The rate samples: (unix time, messages received so far), every half second."""
        return list(self._samples)

    @property
    def rate(self) -> float:
        """Messages per second over the last couple of seconds (0 when idle)."""
        samples = list(self._samples)
        now = time.time()
        end_count = self.count
        recent = [s for s in samples if now - s[0] <= 2.0 + SAMPLE_EVERY]
        if not recent:
            return 0.0
        t0, c0 = recent[0]
        span = max((self.stopped_at or now) - t0, 1.0)   # a just-started tail is not 1000 msg/s
        return (end_count - c0) / span

    def rates(self) -> pd.DataFrame:
        """The rate history: ``time`` and ``rate`` (msg/s) every half second.

        >>> t.rates().tail()   # doctest: +SKIP
        """
        samples = list(self._samples)
        rows = [{"time": pd.Timestamp(t1, unit="s", tz="UTC"), "rate": (c1 - c0) / (t1 - t0)}
                for (t0, c0), (t1, c1) in zip(samples, samples[1:]) if t1 > t0]
        return pd.DataFrame(rows, columns=["time", "rate"])

    def _snapshot(self):
        return self._on_loop(self._ring.snapshot)

    def records(self) -> list[tuple]:
        """A snapshot of the kept rows as (subject, time_ns, seq, data, headers) tuples.

        >>> t.records()[-1][3]   # doctest: +SKIP
        b'{"id": 1}'
        """
        return list(zip(*self._snapshot()))

    @property
    def df(self) -> pd.DataFrame:
        """The kept messages as the standard frame (newest last).

        >>> t.df[["subject", "time", "size"]]   # doctest: +SKIP
        """
        subjects, times, seqs, payloads, headers = self._snapshot()
        decode = self.codec.decode_for if self.codec is not None else None
        return frames.build(subjects, times, payloads, headers,
                            seqs if self.stream else None, decode=decode)

    @property
    def gaps(self) -> pd.DataFrame:
        """Outages (disconnects) and sequence gaps seen: start, end, kind, missed, detail."""
        rows = list(self._gaps)
        if self._outage_since is not None:
            rows.append({"start": self._outage_since, "end": None, "kind": "outage",
                         "missed": pd.NA, "detail": "disconnected now"})
        df = pd.DataFrame(rows, columns=["start", "end", "kind", "missed", "detail"])
        for col in ("start", "end"):
            df[col] = pd.to_datetime(df[col], unit="s", utc=True)
        return df

    def clear(self) -> None:
        """Forget the kept rows (counters keep counting).

        >>> t.clear()   # doctest: +SKIP
        """
        loop.call_soon(self._ring.clear)

    def wait(self, count: int | None = None, timeout: float = 10.0) -> Tail:
        """Block until ``count`` messages arrived (default: the tail's ``--count``) or it stopped.

        >>> t.wait(100, timeout=5)   # doctest: +SKIP
        """
        loop._refuse_in_loop()        # here it would block the very thread that receives
        goal = count if count is not None else self.max_count
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if goal is not None and self.count >= goal:
                return self
            if goal is None and self._done.is_set():
                return self
            if not self.running and self._done.is_set():
                break
            time.sleep(0.02)
        if goal is not None and self.count < goal:
            raise Timeout(f"tail {self.id} on {self.subject!r} received {self.count} of {goal} messages "
                          f"within {timeout:g} s", "publish more, or wait longer")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Unsubscribe; the kept rows stay readable.

        >>> t.stop()   # doctest: +SKIP
        """
        if not self.running:
            return
        loop.run(self._unsubscribe(), timeout, f"stopping tail {self.id}")

    @property
    def widget(self):
        """The live view: new rows, pause, clear, a subject filter and a rate chart."""
        if self._widget is None:
            from nbnats.widgets.tail_view import TailView
            self._widget = TailView(self)
        return self._widget

    def plot(self, **options):
        """A plotly chart of the message rate over time (options as :func:`nbnats.plot.tail_rate`).

        >>> t.plot(every="5s", by_subject=False)   # doctest: +SKIP
        """
        from nbnats import plot
        return plot.tail_rate(self, **options)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        q = f" queue={self.queue!r}" if self.queue else ""
        s = f" stream={self.stream!r}" if self.stream else ""
        return (f"<Tail {self.id} {self.subject!r}{q}{s} {state}: {self.count:,} received, "
                f"{len(self._ring):,} kept, lost {self.loss}>")


async def _subscribe_core(t: Tail) -> None:
    if WIRE and t.conn.dial is not None:
        sub = WireSubscription(t.conn, t.subjects, t.queue, t._on_batch, t._wire_lost, t._wire_back)
        try:
            await sub.start(5)
        except NatsError as exc:
            log.info("nbnats: tail %s receives through nats-py: %s", t.id, exc.what)
        else:
            t._subs.append(sub)
            t._own_wire, t.transport = True, "wire"
            return
    for subject in t.subjects:
        t._subs.append(await t.conn.nc.subscribe(subject, queue=t.queue or "", cb=t._on_msg,
                                                 pending_msgs_limit=t.pending_limit))
        t.conn.watch_slow(t._subs[-1], t)
    await connection.ping(t.conn, 5, f"subscribing to {t.subject!r}", flush=True)


async def _subscribe_stream(t: Tail) -> None:
    info = await api.request(t.conn, f"STREAM.INFO.{t.stream}", what=f"reading stream {t.stream!r}", stream=t.stream)
    # Stream sequences count every subject of the stream: a jump means a lost message
    # only when this tail reads all of them.
    t._gaps_checked = sorted(info["config"].get("subjects") or []) == sorted(t.subjects)
    reader = OrderedConsumer(t.conn, t.stream, t.subjects, t._on_js_msg, deliver="new",
                             on_event=t._on_reader_event, pending_msgs_limit=t.pending_limit)
    t._reader = reader                 # before the first message can arrive
    try:
        await reader.start()
    except BaseException:
        t._reader = None
        raise


def tail(subject: str | list[str], queue: str | None = None, limit: int = 10_000, count: int | None = None,
         stream: str | None = None, codec: Any = None, pending_limit: int = 512 * 1024,
         connection: str | None = None) -> Tail:
    """Start a background tail on ``subject`` (one, or a list) and return it at once.

    ``limit`` bounds the kept rows (older ones are dropped and counted);
    ``count`` stops after that many messages; ``queue`` joins a queue group;
    ``stream`` reads through JetStream from now on (rows carry ``seq``,
    nothing is lost across reconnects). ``pending_limit`` is the client's
    buffer (messages) before it drops as a slow consumer; drops are counted.

    A list tails every subject of it into one frame (overlapping core subjects
    deliver a message once per matching subject, as in natscli's ``nats sub a b``).

    >>> t = nbnats.tail("orders.>")            # doctest: +SKIP
    >>> t = nbnats.tail(["orders.>", "payments.>"])   # doctest: +SKIP
    >>> nbnats.publish("orders.new", {"id": 1}) # doctest: +SKIP
    >>> t.wait(1).df["id"].tolist()             # doctest: +SKIP
    [1]
    """
    subjects = [subject] if isinstance(subject, str) else list(subject) if isinstance(subject, (list, tuple)) else None
    if not subjects:
        raise ValidationError(f"tail needs a subject or a list of subjects, not {subject!r}",
                              "pass e.g. 'orders.>' or ['orders.>', 'payments.>']")
    for s in subjects:
        validate.subject(s)
    if queue is not None:
        validate.subject(queue, what="queue group")
    if stream is not None:
        validate.name(stream, "stream")
    if not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a positive number of rows, not {limit!r}", "pass e.g. limit=10_000")
    if count is not None and count < 1:
        raise ValidationError(f"count must be positive, not {count!r}", "omit it to tail until stopped")
    if codec is not None:
        from nbnats.data import codecs
        codec = codecs.get(codec)
    conn = current(connection)
    t = Tail(conn, subjects, queue, limit, count, stream, codec, pending_limit)
    start = _subscribe_stream(t) if stream else _subscribe_core(t)
    loop.run(start, 10, f"subscribing to {t.subject!r}")
    conn.listeners.append(t)
    loop.call_soon(t._sample)
    _tails[t.id] = t
    return t


def tails() -> pd.DataFrame:
    """Every tail of this session: id, subject, running, count, kept, dropped, rate.

    >>> nbnats.tails()   # doctest: +SKIP
    """
    rows = [{"id": t.id, "subject": t.subject, "queue": t.queue, "stream": t.stream,
             "running": t.running, "count": t.count, "kept": t.kept, "dropped": t.dropped,
             "rate": round(t.rate, 1)} for t in _tails.values()]
    return listing(rows, ["id", "subject", "queue", "stream", "running", "count", "kept", "dropped", "rate"])


def get(tail_id: str) -> Tail:
    """The tail with this id (``t1``, ``t2`` …)."""
    try:
        return _tails[tail_id]
    except KeyError:
        raise NotFound(f"there is no tail {tail_id!r}",
                       f"list them with nbnats.tails(); known: {sorted(_tails)}") from None


def stop_all() -> int:
    """Stop every running tail; returns how many were stopped."""
    running = [t for t in _tails.values() if t.running]
    for t in running:
        t.stop()
    return len(running)
