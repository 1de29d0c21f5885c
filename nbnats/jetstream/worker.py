"""``consume``: a background worker that acks each message after its handler returned, naks when it raised.

It pulls continuously on the nbnats loop, runs the handler one message at a
time (in order), keeps slow handlers' messages alive with in-progress
signals, and rides out reconnects and server restarts.

>>> w = nbnats.consume("ORDERS", "order-processor", charge)   # doctest: +SKIP
>>> w.stats                                                  # doctest: +SKIP
{'processed': 42, 'acked': 41, 'naked': 1, ...}
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson
import pandas as pd

from nbnats.engine import api
from nbnats.engine.pull import ACK, NAK, TERM, WPI
from nbnats.errors import JetStreamError, NatsError, NotConnected, Timeout, ValidationError
from nbnats.jetstream.consume import ANSWERS, AlreadyAnswered, FetchedMessage, take, checked, pull_config
from nbnats.runtime import loop
from nbnats.runtime.connection import current

IDLE_WAIT = 1.0             # seconds a pull waits when nothing is ready (also the stop latency)
CHECK_EVERY = 5.0           # seconds between an idle worker's checks that its consumer still exists
RETRY_FIRST, RETRY_MAX = 0.1, 2.0
ANSWER_WAIT = 2.0           # seconds a worker waits for the server to confirm an answer
ERRORS_KEPT = 200
COUNTED = {"acknowledged": "acked", "naked": "naked", "terminated": "terminated"}   # answer → its stats key

class _OutageCounter:
    """Told by the connection about disconnects (a plain listener, so it is not counted as a tail)."""

    def __init__(self, worker: Worker):
        self.worker = worker

    def _disconnected(self, at: float) -> None:
        self.worker.outages += 1

    def _reconnected(self, since: float | None, at: float) -> None: ...
    def _closing(self) -> None: ...
    def _closed(self) -> None: ...


_ids = itertools.count(1)
_workers: dict[str, Worker] = {}


class Worker:
    """A background consume loop; see :func:`consume`.

    ``stats`` (processed, acked, naked, terminated, in_flight, rate, errors,
    redelivered), ``errors`` the recent handler errors, ``failed`` the
    messages given up after max_deliver, ``state``, ``running``, ``stop()``.
    """

    def __init__(self, conn, stream: str, consumer: str, handler: Callable, batch: int, limit: float, cfg: dict):
        self.id = f"w{next(_ids)}"
        self.conn, self.stream, self.consumer, self.handler = conn, stream, consumer, handler
        self.batch, self.max_handler_time = batch, limit
        self.state = "starting"
        self.counts = dict.fromkeys(("processed", "acked", "naked", "terminated", "redelivered",
                                     "errors", "in_progress_sent"), 0)
        self._apply(cfg)
        self._is_async = inspect.iscoroutinefunction(handler)
        self._held: list[FetchedMessage] = []
        self._errors: deque = deque(maxlen=ERRORS_KEPT)
        self._failed: dict[int, dict] = {}
        self._samples: deque = deque(maxlen=20)
        self._stopping = False
        self._abort: asyncio.Event | None = None
        self._done = threading.Event()
        self._future: concurrent.futures.Future | None = None
        self._executor = self._new_executor()
        self.outages, self._epoch = 0, 0          # disconnects seen; the count when the held batch was pulled
        self._listener = _OutageCounter(self)

    @property
    def _stale(self) -> bool:
        """True when the held batch was pulled before an outage: the server may no longer take its answers."""
        return self.outages != self._epoch or not self.conn.connected

    def _apply(self, cfg: dict) -> None:
        self.ack_wait = (cfg.get("ack_wait") or 30e9) / 1e9
        self.backoff = [ns / 1e9 for ns in cfg.get("backoff") or []]
        self.max_deliver = cfg.get("max_deliver") if (cfg.get("max_deliver") or 0) > 0 else None

    def _new_executor(self) -> concurrent.futures.ThreadPoolExecutor:
        return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"nbnats-{self.id}")

    # -- the loop (loop thread) ------------------------------------------------------
    async def _run(self) -> None:
        self._abort = asyncio.Event()
        keeper = asyncio.ensure_future(self._keep_alive())
        advisories = await self._watch_advisories()
        retry, checked = RETRY_FIRST, time.monotonic()
        try:
            while not self._stopping:
                if self.conn.nc.is_closed:
                    self.state = "stopped: the connection was closed"
                    return
                try:
                    if not self.conn.connected:
                        raise api.disconnected(self.conn)
                    epoch = self.outages
                    msgs = await take(self.conn, self.stream, self.consumer, self.batch, IDLE_WAIT)
                    if not msgs and time.monotonic() - checked > CHECK_EVERY:
                        self._apply(await pull_config(self.conn, self.stream, self.consumer))
                        checked = time.monotonic()
                except NatsError as exc:
                    self.state = f"retrying: {exc.what}"
                    await self._pause(retry)
                    retry = min(retry * 2, RETRY_MAX)
                    continue
                retry, self.state = RETRY_FIRST, "running"
                self._epoch = epoch
                self._held = [FetchedMessage(self.conn, m, "explicit") for m in msgs]
                for msg in self._held:
                    if self._stopping or self._stale:
                        break                     # after an outage the server delivers the rest again
                    await self._process(msg)
                for msg in self._held:           # stopped before their turn: hand them back at once
                    if msg.answered is None and not self._stale:
                        await self._settle(msg, NAK)
                self._held = []
        except Exception as exc:                  # a bug must not end the worker silently
            self.state = f"stopped: {type(exc).__name__}: {exc}"
            raise
        finally:
            keeper.cancel()
            if self._listener in self.conn.listeners:
                self.conn.listeners.remove(self._listener)
            if advisories is not None:
                try:
                    await advisories.unsubscribe()
                except Exception:
                    pass
            if not self.state.startswith("stopped"):
                self.state = "stopped"
            self._executor.shutdown(wait=False)
            self._done.set()

    async def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < end:
            await asyncio.sleep(min(0.05, seconds))

    async def _process(self, msg: FetchedMessage) -> None:
        if msg.deliveries > 1:
            self.counts["redelivered"] += 1
        if self._is_async:
            job = asyncio.ensure_future(self.handler(msg))
        else:
            job = asyncio.wrap_future(self._executor.submit(self.handler, msg))
        aborted = asyncio.ensure_future(self._abort.wait())
        await asyncio.wait({job, aborted}, timeout=self.max_handler_time, return_when=asyncio.FIRST_COMPLETED)
        aborted.cancel()
        if job.done():
            exc = RuntimeError("the handler was cancelled") if job.cancelled() else job.exception()
            error = None if exc is None else f"{type(exc).__name__}: {exc}"
        else:
            job.cancel()                          # an async handler stops; a thread cannot, so it is left behind
            if not self._is_async:
                self._executor.shutdown(wait=False)
                self._executor = self._new_executor()
            error = ("the handler was still running when the worker was stopped" if self._abort.is_set() else
                     f"the handler ran past max_handler_time ({self.max_handler_time:g} s)")
        self.counts["processed"] += 1
        self._samples.append((time.monotonic(), self.counts["processed"]))
        if msg.answered is not None:              # the handler answered it itself
            self.counts[COUNTED[msg.answered]] += 1
            if error:
                self._error(msg, error)
            return
        if error is None:
            await self._settle(msg, ACK)
            return
        self._error(msg, error)
        if self.max_deliver and msg.deliveries >= self.max_deliver:
            self._failed[msg.seq] = {"seq": msg.seq, "subject": msg.subject, "deliveries": msg.deliveries,
                                     "error": error}
            await self._settle(msg, TERM, reason=f"failed {msg.deliveries} time(s): {error}"[:200])
        else:
            await self._settle(msg, NAK, delay=self._delay(msg.deliveries))

    def _delay(self, deliveries: int) -> float:
        if self.backoff:
            return self.backoff[min(deliveries, len(self.backoff)) - 1]
        return 1.0

    async def _settle(self, msg: FetchedMessage, kind: bytes, **how: Any) -> None:
        """A confirmed answer, retried through a reconnect while the message's ack wait lasts."""
        wait, deadline = RETRY_FIRST, max(msg._touched + self.ack_wait, time.monotonic() + 1.0)
        while True:
            if self.conn.connected:
                try:
                    await msg._send(kind, timeout=ANSWER_WAIT, **how)
                    self.counts[COUNTED[ANSWERS[kind]]] += 1
                    return
                except AlreadyAnswered:
                    return
                except (NotConnected, Timeout) as exc:
                    reason = exc.what
                except NatsError as exc:
                    self._error(msg, f"answering it failed: {exc}")
                    return
            else:
                reason = api.disconnected(self.conn).what
            self.state = f"retrying: {reason}"
            if time.monotonic() > deadline or self._stale or (self._stopping and not self.conn.connected):
                self._error(msg, f"its {kind.decode().strip('+-').lower()} was not confirmed ({reason}); "
                                 "the server will deliver it again")
                return
            await asyncio.sleep(wait)
            wait = min(wait * 2, 1.0)

    def _error(self, msg: FetchedMessage, error: str) -> None:
        self.counts["errors"] += 1
        self._errors.append({"time": pd.Timestamp.now(tz="UTC"), "seq": msg.seq, "subject": msg.subject,
                             "deliveries": msg.deliveries, "error": error})

    async def _keep_alive(self) -> None:
        """Send in-progress for every held message before its ack wait runs out."""
        while True:
            every = max(min(self.ack_wait / 3, 10.0), 0.05)
            await asyncio.sleep(min(every, 0.5))
            now = time.monotonic()
            for msg in list(self._held):
                if msg.answered is None and now - msg._touched >= every and self.conn.connected:
                    try:
                        await msg._send(WPI)
                        self.counts["in_progress_sent"] += 1
                    except NatsError:
                        pass

    async def _watch_advisories(self):
        """The server's word on messages it stopped redelivering (max_deliver reached without an answer)."""
        async def on_advisory(m) -> None:
            try:
                seq, n = orjson.loads(m.data)["stream_seq"], orjson.loads(m.data)["deliveries"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                return
            self._failed.setdefault(seq, {"seq": seq, "subject": None, "deliveries": n,
                                          "error": f"the server stopped redelivering it after {n} deliveries"})
        try:
            return await self.conn.nc.subscribe(
                f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{self.stream}.{self.consumer}", cb=on_advisory)
        except Exception:
            return None

    # -- the user's side ---------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True until stopped (or its connection closed).

        >>> w.running   # doctest: +SKIP
        True
        """
        return not self._done.is_set()

    @property
    def rate(self) -> float:
        """Messages processed per second over the last few seconds.

        >>> w.rate   # doctest: +SKIP
        120.5
        """
        recent = [s for s in self._samples if time.monotonic() - s[0] <= 3.0]
        if len(recent) < 2:
            return 0.0
        return (recent[-1][1] - recent[0][1]) / max(time.monotonic() - recent[0][0], 1.0)

    @property
    def stats(self) -> dict:
        """processed, acked, naked, terminated, in_flight, rate, errors, redelivered, in_progress_sent, state.

        >>> w.stats["acked"]   # doctest: +SKIP
        41
        """
        held = sum(1 for m in self._held if m.answered is None)
        return {**self.counts, "in_flight": held, "rate": round(self.rate, 1), "state": self.state}

    @property
    def errors(self) -> pd.DataFrame:
        """The recent errors (newest last): time, seq, subject, deliveries, error.

        >>> w.errors["error"].tolist()   # doctest: +SKIP
        ['ValueError: payment service down']
        """
        return pd.DataFrame(list(self._errors), columns=["time", "seq", "subject", "deliveries", "error"])

    @property
    def failed(self) -> pd.DataFrame:
        """Messages the server will not deliver again (max_deliver reached): seq, subject, deliveries, error.

        >>> w.failed   # doctest: +SKIP
        """
        return pd.DataFrame(sorted(self._failed.values(), key=lambda r: r["seq"]),
                            columns=["seq", "subject", "deliveries", "error"])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop pulling; the running handler finishes and is answered, the rest go back at once.

        A handler still running after ``timeout`` seconds is naked (its thread
        is left to finish on its own).

        >>> w.stop()   # doctest: +SKIP
        """
        self._stopping = True
        if self._done.is_set():
            return
        self.state = "stopping"
        if loop.in_loop_thread() or threading.current_thread().name.startswith(f"nbnats-{self.id}_"):
            return                                # called by its own handler: it ends after this message
        if not self._done.wait(timeout + IDLE_WAIT):
            loop.call_soon(self._abort.set)
            if not self._done.wait(api.TIMEOUT + 5):
                raise Timeout(f"worker {self.id} did not stop within {timeout + api.TIMEOUT + 5:g} s",
                              "check the connection with nbnats.status()")

    def __repr__(self) -> str:
        s = self.stats
        return (f"<Worker {self.id} {self.stream}/{self.consumer} {s['state']}: {s['processed']:,} processed, "
                f"{s['acked']:,} acked, {s['naked']:,} naked, {s['terminated']:,} terminated, "
                f"{s['in_flight']} in flight, {s['errors']:,} errors>")


def consume(stream: str, consumer: str, handler: Callable[[FetchedMessage], Any], batch: int = 100,
            max_handler_time: Any = "5m", connection: str | None = None) -> Worker:
    """Run ``handler(msg)`` on every message of a pull consumer, in the background; ack after it returns.

    Returning normally acks the message (confirmed); raising naks it with the
    consumer's ``backoff`` for that delivery (else 1 s) and records the error;
    at the consumer's ``max_deliver`` it is terminated and listed in
    ``w.failed``. A handler slower than the ack wait gets in-progress signals
    until ``max_handler_time``, then it is naked. A plain ``def`` runs in a
    worker thread, an ``async def`` on the nbnats loop. The worker rides out
    reconnects and server restarts (``w.state`` says ``retrying: …`` meanwhile).

    >>> def charge(msg):
    ...     bill(msg.json())                                   # raise to have it redelivered
    >>> w = nbnats.consume("ORDERS", "order-processor", charge)   # doctest: +SKIP
    >>> w.stats["acked"]; w.stop()                              # doctest: +SKIP
    """
    if not callable(handler):
        raise ValidationError(f"the handler for consumer {consumer!r} is a {type(handler).__name__}, not a function",
                              "pass a function that takes the message, e.g. def handle(msg): ...")
    limit = checked(stream, consumer, batch, max_handler_time, ("batch", "max_handler_time"))
    conn = current(connection)
    cfg = loop.run(pull_config(conn, stream, consumer), api.TIMEOUT + 2, f"reading consumer {consumer!r}")
    if cfg.get("ack_policy") == "none":
        raise JetStreamError(f"nothing to acknowledge: consumer {consumer!r} of stream {stream!r} has ack policy none",
                             "use nbnats.fetch or nbnats.next to read it, or a consumer with ack='explicit'")
    if cfg.get("ack_policy") == "all":
        raise JetStreamError(f"consumer {consumer!r} of stream {stream!r} has ack policy all, where acking one message "
                             "acks every earlier one, failed ones included",
                             "consume answers message by message: use a consumer with ack='explicit'")
    w = Worker(conn, stream, consumer, handler, batch, limit, cfg)
    conn.listeners.append(w._listener)
    w._future = loop.submit(w._run())
    _workers[w.id] = w
    return w


def workers() -> list[Worker]:
    """Every worker started in this session (running or not).

    >>> [w.id for w in nbnats.jetstream.consume.workers()]   # doctest: +SKIP
    ['w1']
    """
    return list(_workers.values())
