"""Consumer lag over time: a background recorder of pending / ack-pending into a DataFrame.

Every ``every`` seconds it asks the server for the consumer's state
(``CONSUMER.INFO``, or ``CONSUMER.LIST`` for every consumer of the stream,
including those added later) and keeps one row a consumer. It runs on the
nbnats loop, is listed by ``%nats tails`` / ``nbnats.background.pieces()``
and stops with ``nbnats.stop_all()``.

>>> lag = nbnats.lag("ORDERS", every="5s")   # doctest: +SKIP
>>> lag.df.tail()                            # doctest: +SKIP
>>> lag.plot(); lag.stop()                   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable

import pandas as pd

from nbnats import background
from nbnats.data import validate
from nbnats.data.units import seconds
from nbnats.engine import api
from nbnats.errors import NatsError, Timeout, ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import current

COLUMNS = ["time", "consumer", "pending", "ack_pending", "redelivered", "waiting"]
MIN_EVERY = 0.1
ROWS_KEPT = 100_000
_ids = itertools.count(1)


def figures(info: dict) -> tuple[str, int, int, int, int]:
    """A consumer info's (name, pending, ack_pending, redelivered, waiting).

    >>> figures({"name": "c", "num_pending": 3, "num_ack_pending": 1, "num_redelivered": 0, "num_waiting": 2})
    ('c', 3, 1, 0, 2)
    """
    return (info["name"], info.get("num_pending", 0), info.get("num_ack_pending", 0),
            info.get("num_redelivered", 0), info.get("num_waiting", 0))


async def consumer_states(conn, stream: str, consumer: str | None) -> list[dict]:
    """The server's info of ``consumer`` (or of every consumer of ``stream``), loop thread.

    >>> await consumer_states(conn, "ORDERS", None)   # doctest: +SKIP
    [{'name': 'billing', 'num_pending': 3, ...}]
    """
    if consumer is not None:
        return [await api.request(conn, f"CONSUMER.INFO.{stream}.{consumer}", None,
                                  what=f"reading consumer {consumer!r} of {stream!r}", stream=stream, consumer=consumer)]
    return await api.paged(conn, f"CONSUMER.LIST.{stream}", "consumers", what=f"listing the consumers of {stream!r}",
                           stream=stream)


class Lag:
    """A background lag recorder; see :func:`lag`.

    ``df`` the samples (time, consumer, pending, ack_pending, redelivered,
    waiting); ``samples`` how many were taken; ``state``; ``plot()``; ``stop()``.
    """

    def __init__(self, conn, stream: str, consumer: str | None, every: float, limit: int = ROWS_KEPT):
        self.id = f"l{next(_ids)}"
        self.conn, self.stream, self.consumer, self.every = conn, stream, consumer, every
        self.samples = 0
        self.errors = 0
        self.state = "running"
        self._rows: deque = deque(maxlen=limit)
        self._listeners: list[Callable[[Lag], None]] = []
        self._stopping: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    # -- sampling (loop thread) -------------------------------------------------------------
    async def _sample(self) -> None:
        infos = await consumer_states(self.conn, self.stream, self.consumer)
        now = time.time_ns()
        self._rows.extend((now, *figures(i)) for i in infos)
        self.samples += 1
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception as exc:         # a chart's failure must not stop the recording
                self.state = f"running (a listener failed: {exc})"

    async def _run(self) -> None:
        self._stopping = asyncio.Event()
        try:
            while True:
                try:
                    await asyncio.wait_for(self._stopping.wait(), self.every)
                    return
                except asyncio.TimeoutError:
                    pass
                if self.conn.nc.is_closed:
                    self.state = "stopped: the connection was closed"
                    return
                try:
                    await self._sample()
                    if self.state.startswith("retrying"):
                        self.state = "running"
                except NatsError as exc:
                    self.errors += 1
                    self.state = f"retrying: {exc.what}"
        finally:
            if not self.state.startswith("stopped"):
                self.state = "stopped"

    # -- the user's side ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True until stopped (or its connection closed)."""
        return self._task is not None and not self._task.done()

    @property
    def df(self) -> pd.DataFrame:
        """The samples, oldest first: time, consumer, pending, ack_pending, redelivered, waiting.

        >>> lag.df.pivot(index="time", columns="consumer", values="pending")   # doctest: +SKIP
        """
        rows = list(self._rows)
        df = pd.DataFrame(rows, columns=COLUMNS)
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
        df["consumer"] = df["consumer"].astype("string")
        for col in COLUMNS[2:]:
            df[col] = df[col].astype("int64")
        df.attrs.update(stream=self.stream, every=self.every)
        return df

    def on_sample(self, listener: Callable[[Lag], None]) -> None:
        """Call ``listener(lag)`` after every sample (on the nbnats loop thread).

        >>> lag.on_sample(lambda lag: print(lag.samples))   # doctest: +SKIP
        """
        self._listeners.append(listener)

    def plot(self):
        """A plotly figure of pending (solid) and ack-pending (dotted) per consumer over time.

        >>> lag.plot()   # doctest: +SKIP
        """
        import plotly.graph_objects as go
        fig = go.Figure()
        add_traces(fig, self.df)
        fig.update_layout(title=f"{self.stream} — consumer lag", xaxis_title="time (UTC)", yaxis_title="messages",
                          height=360, margin=dict(l=50, r=20, t=50, b=40))
        return fig

    def stop(self, timeout: float = 5.0) -> None:
        """Stop recording; the samples stay readable.

        >>> lag.stop()   # doctest: +SKIP
        """
        if not self.running or self._stopping is None:
            return
        loop.call_soon(self._stopping.set)
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.running:
            raise Timeout(f"lag recorder {self.id} did not stop within {timeout:g} s", "check nbnats.status()")

    def row(self) -> dict:
        """This recorder as a row of ``nbnats.background.pieces()``."""
        return {"id": self.id, "kind": "lag", "target": f"{self.stream}/{self.consumer or '*'}", "state": self.state,
                "count": self.samples, "dropped": None, "errors": self.errors, "rate": None}

    def __repr__(self) -> str:
        return (f"<Lag {self.id} {self.stream}/{self.consumer or '*'} every {self.every:g} s {self.state}: "
                f"{self.samples:,} samples, {len(self._rows):,} rows>")


def add_traces(fig, df: pd.DataFrame) -> None:
    """Add pending / ack-pending lines per consumer of a lag frame to a plotly figure."""
    for name, part in df.groupby("consumer", sort=True):
        fig.add_scatter(x=part["time"], y=part["pending"], mode="lines", name=f"{name} pending")
        fig.add_scatter(x=part["time"], y=part["ack_pending"], mode="lines", line=dict(dash="dot"),
                        name=f"{name} ack pending")


def lag(stream: str, consumer: str | None = None, every="5s", limit: int = ROWS_KEPT,
        connection: str | None = None) -> Lag:
    """Record the lag of ``consumer`` (or of every consumer of ``stream``) every ``every``, in the background.

    The first sample is taken at once (so a missing stream or consumer is an
    error here, not later); ``limit`` bounds the rows kept. ``every`` takes
    ``5s``, ``500ms``, ``1m`` or seconds.

    >>> lag = nbnats.lag("ORDERS", "billing", every="1s")   # doctest: +SKIP
    >>> lag.df[["time", "pending", "ack_pending"]]          # doctest: +SKIP
    """
    validate.name(stream, "stream")
    if consumer is not None:
        validate.name(consumer, "consumer")
    interval = seconds(every, "every")
    if interval is None or interval < MIN_EVERY:
        raise ValidationError(f"every must be at least {MIN_EVERY:g} s, not {every!r}", "pass e.g. every='5s'")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValidationError(f"limit must be a positive number of rows, not {limit!r}", "pass e.g. limit=100_000")
    conn = current(connection)
    recorder = Lag(conn, stream, consumer, interval, limit)
    loop.run(recorder._sample(), api.TIMEOUT + 2, f"reading the consumers of {stream!r}")

    async def start():
        recorder._task = asyncio.ensure_future(recorder._run())

    loop.run(start(), 5, f"starting lag recorder {recorder.id}")
    background.register(recorder)
    return recorder
