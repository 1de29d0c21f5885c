"""Measuring tools: request/reply round trips (``ping``) and a stream's fill over time.

Both run as one coroutine on the nbnats loop and hand back a DataFrame, so
their numbers are the client's own, not the bridge's. ``nbnats.plot.latency``
and ``nbnats.plot.stream_fill`` draw them.

>>> df = nbnats.ping(count=200)                       # doctest: +SKIP
>>> df["latency_ms"].median()                         # doctest: +SKIP
0.09
>>> fill = nbnats.measure.watch_stream("ORDERS")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pandas as pd

from nbnats.runtime import loop
from nbnats.data import validate
from nbnats.runtime.connection import Connection, current
from nbnats.runtime.connection import ping as round_trip
from nbnats.engine import api
from nbnats.errors import NatsError, NoResponders
from nbnats.data.payload import encode


def ping(subject: str | None = None, count: int = 100, size: int = 16, data: Any = None,
         timeout: float = 2.0, connection: str | None = None) -> pd.DataFrame:
    """Time ``count`` request/reply round trips, one after the other.

    Without ``subject`` a temporary echo responder answers on a private
    subject, so this measures the client → server → client path; with one,
    your service answers ``data`` (default: ``size`` bytes). Returns one row a
    request: ``seq``, ``time`` (UTC), ``latency_ms``, ``size``, ``error``
    (None, or why that request failed).

    >>> df = nbnats.ping(count=50)            # doctest: +SKIP
    >>> nbnats.plot.latency(df)               # doctest: +SKIP
    """
    if not isinstance(count, int) or count < 1:
        raise NatsError(f"count must be a positive number of requests, not {count!r}", "pass e.g. count=100")
    if subject is not None:
        validate.subject(subject, publish=True)
    body = encode(data) if data is not None else b"x" * max(0, int(size))
    conn = current(connection)
    target = subject or f"_nbnats.ping.{uuid.uuid4().hex[:12]}"

    async def run() -> list[dict]:
        import nats.errors
        echo = None
        if subject is None:
            async def on_request(msg):
                await conn.nc.publish(msg.reply, msg.data)
            echo = await conn.nc.subscribe(target, cb=on_request)
            await round_trip(conn, timeout, "subscribing the echo responder", flush=True)
        rows, failures = [], 0
        try:
            for i in range(count):
                sent = time.time_ns()
                t0 = time.perf_counter_ns()
                error = None
                try:
                    await conn.nc.request(target, body, timeout=timeout)
                except nats.errors.NoRespondersError:
                    if i == 0:
                        raise NoResponders(f"no service is listening on {target!r}",
                                           "start a responder (nbnats.serve) or ping without a subject") from None
                    error = "no responders"
                except (nats.errors.TimeoutError, asyncio.TimeoutError):
                    error = f"no reply within {timeout:g} s"
                elapsed = (time.perf_counter_ns() - t0) / 1e6
                rows.append({"seq": i + 1, "time": sent, "latency_ms": None if error else elapsed,
                             "size": len(body), "error": error})
                failures = failures + 1 if error else 0
                if failures >= 3:      # the responder is gone: do not wait out every request
                    break
        finally:
            if echo is not None:
                await echo.unsubscribe()
        return rows

    rows = loop.run(run(), count * (timeout + 0.5) + 5, f"pinging {target!r}")
    df = pd.DataFrame(rows, columns=["seq", "time", "latency_ms", "size", "error"])
    df["time"] = pd.to_datetime(df["time"], unit="ns", utc=True)
    df["latency_ms"] = df["latency_ms"].astype("float64")
    df.attrs["subject"] = subject or "(echo)"
    return df


class StreamFill:
    """Samples a stream's size every ``every`` seconds in the background; see :func:`watch_stream`.

    ``df``: time, messages, bytes, first_seq, last_seq; ``max_msgs`` and
    ``max_bytes`` the stream's limits (None when unlimited); ``stop()``;
    ``plot()``.
    """

    def __init__(self, conn: Connection, stream: str, every: float, limit: int):
        self.conn = conn
        self.stream = stream
        self.every = every
        self.max_msgs: int | None = None
        self.max_bytes: int | None = None
        self.error: str | None = None
        self._samples: list[tuple] = []
        self._limit = limit
        self._task: asyncio.Task | None = None

    async def _sample_once(self) -> None:
        info = await api.request(self.conn, f"STREAM.INFO.{self.stream}", what=f"reading stream {self.stream!r}",
                                 stream=self.stream)
        cfg, st = info["config"], info["state"]
        self.max_msgs = cfg.get("max_msgs") if (cfg.get("max_msgs") or 0) > 0 else None
        self.max_bytes = cfg.get("max_bytes") if (cfg.get("max_bytes") or 0) > 0 else None
        self._samples.append((time.time_ns(), st["messages"], st["bytes"], st["first_seq"], st["last_seq"]))
        if len(self._samples) > self._limit:
            del self._samples[: len(self._samples) - self._limit]

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self._sample_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:      # keep sampling through an outage
                self.error = f"{type(exc).__name__}: {exc}"

    @property
    def sampling(self) -> bool:
        """True until stopped."""
        return self._task is not None and not self._task.done()

    @property
    def df(self) -> pd.DataFrame:
        """The samples so far."""
        df = pd.DataFrame(list(self._samples), columns=["time", "messages", "bytes", "first_seq", "last_seq"])
        df["time"] = pd.to_datetime(df["time"], unit="ns", utc=True)
        return df

    def sample(self, timeout: float = 5.0) -> StreamFill:
        """Take one sample now (besides the timer's).

        >>> fill.sample()   # doctest: +SKIP
        """
        loop.run(self._sample_once(), timeout, f"reading stream {self.stream!r}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop sampling; the samples stay readable.

        >>> fill.stop()   # doctest: +SKIP
        """
        task, self._task = self._task, None
        if task is not None:
            loop.call_soon(task.cancel)
        if self in self.conn.listeners:
            self.conn.listeners.remove(self)

    def plot(self):
        """The fill over time (``nbnats.plot.stream_fill``)."""
        from nbnats import plot
        return plot.stream_fill(self)

    # connection events
    def _disconnected(self, at: float) -> None: ...
    def _reconnected(self, since: float | None, at: float) -> None: ...
    def _closing(self) -> None: ...

    def _closed(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            loop.call_soon(task.cancel)

    def __repr__(self) -> str:
        state = "sampling" if self.sampling else "stopped"
        return f"<StreamFill {self.stream!r} every {self.every:g} s, {state}: {len(self._samples)} samples>"


def watch_stream(stream: str, every: float = 1.0, limit: int = 3600,
                 connection: str | None = None) -> StreamFill:
    """Sample a stream's message and byte counts every ``every`` seconds, in the background.

    >>> fill = nbnats.measure.watch_stream("ORDERS", every=0.5)   # doctest: +SKIP
    >>> fill.plot()                                                    # doctest: +SKIP
    >>> fill.stop()                                                    # doctest: +SKIP
    """
    validate.name(stream, "stream")
    if not every or every <= 0:
        raise NatsError(f"every must be a positive number of seconds, not {every!r}", "pass e.g. every=1.0")
    conn = current(connection)
    fill = StreamFill(conn, stream, float(every), int(limit))

    async def start():
        await fill._sample_once()        # an unknown stream fails here, plainly
        fill._task = asyncio.get_running_loop().create_task(fill._run())

    loop.run(start(), 10, f"reading stream {stream!r}")
    conn.listeners.append(fill)
    return fill
