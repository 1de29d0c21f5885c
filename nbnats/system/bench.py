"""``bench``: natscli's ``nats bench`` from a notebook — rates and latency percentiles on connections of its own.

``pub`` publishes as fast as the clients can; ``sub`` has ``clients``
subscribers read what one publisher sends; ``req`` times request/reply against
a responder of its own; ``js`` publishes to a JetStream stream it creates (and
deletes afterwards), one acknowledged publish at a time (natscli's ``--sync``).
The result is a DataFrame (one row a client, then ``all``) with ``.figure``.

>>> r = nbnats.bench("req", "bench.req", msgs=5_000)        # doctest: +SKIP
>>> r[["client", "msgs_per_s", "p50_ms", "p99_ms"]]         # doctest: +SKIP
>>> r.figure                                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import nats.errors
import numpy as np
import pandas as pd

from nbnats.data import units, validate
from nbnats.engine import api
from nbnats.engine.publish import publish as js_publish
from nbnats.errors import PayloadTooLarge, Timeout, ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import current, ping as round_trip
from nbnats.runtime.connection import open_like
from nbnats.system.clients import close_quietly
from nbnats.system.result import Result, typed

KINDS = ("pub", "sub", "req", "js")
MAX_MSGS = 10_000_000
MAX_CLIENTS = 64
COLUMNS = {"client": "string", "role": "string", "msgs": "Int64", "bytes": "Int64", "seconds": "float64",
           "msgs_per_s": "float64", "bytes_per_s": "float64", "p50_ms": "float64", "p90_ms": "float64",
           "p99_ms": "float64"}


class BenchResult(Result):
    """What :func:`bench` returns: a frame of rates and percentiles, ``note`` and ``figure``."""

    def _draw(self, df: pd.DataFrame):
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
        timed = df["p50_ms"].notna().any()
        fig = make_subplots(rows=1, cols=2 if timed else 1,
                            subplot_titles=["messages per second"] + (["latency (ms)"] if timed else []))
        fig.add_trace(go.Bar(x=df["client"], y=df["msgs_per_s"], name="msgs/s"), row=1, col=1)
        if timed:
            clients = df[df["client"] != "all"]
            for p in ("p50_ms", "p90_ms", "p99_ms"):
                fig.add_trace(go.Bar(x=clients["client"], y=clients[p], name=p[:3]), row=1, col=2)
        fig.update_layout(title=self.note, height=360, margin=dict(l=50, r=20, t=70, b=40), barmode="group")
        return fig


def _whole(value: Any, what: str, low: int, high: int, example: str) -> int:
    try:
        n = units.count(value, what)
    except ValidationError:
        n = None
    if n is None or not low <= n <= high:
        raise ValidationError(f"{what}={value!r} is not a number bench can run with ({low:,} to {high:,})",
                              f"pass e.g. {example}")
    return n


def _check(kind: str, subject: str, msgs: Any, size: Any, clients: Any, max_payload: int) -> tuple[int, int, int]:
    if kind not in KINDS:
        raise ValidationError(f"bench has no kind {kind!r}", f"choose one of {', '.join(KINDS)}")
    validate.subject(subject, publish=True)
    msgs = _whole(msgs, "msgs", 1, MAX_MSGS, "msgs=100000")
    clients = _whole(clients, "clients", 1, MAX_CLIENTS, "clients=4")
    try:
        size = units.size(size, "size")
    except ValidationError:
        size = None
    if size is None or size < 0:
        raise ValidationError(f"size={size!r} is not a message size", "pass bytes, e.g. size=128 or size='1KB'")
    if size > max_payload:
        raise PayloadTooLarge(f"size {size:,} bytes is over the server's max_payload of {max_payload:,} bytes",
                              f"pass a size up to {max_payload:,} bytes")
    if msgs < clients:
        raise ValidationError(f"msgs={msgs:,} gives fewer than one message to each of {clients} clients",
                              f"pass at least msgs={clients}, or fewer clients")
    return msgs, size, clients


def _shares(msgs: int, clients: int) -> list[int]:
    """``msgs`` split over ``clients`` as evenly as whole messages allow.

    >>> _shares(10, 3)
    [4, 3, 3]
    """
    return [msgs // clients + (1 if i < msgs % clients else 0) for i in range(clients)]


def _row(client: str, role: str, n: int, size: int, seconds: float, latencies: list[float] | None = None) -> dict:
    pct = np.percentile(latencies, [50, 90, 99]) * 1000 if latencies else [None] * 3
    return {"client": client, "role": role, "msgs": n, "bytes": n * size, "seconds": seconds,
            "msgs_per_s": n / seconds if seconds > 0 else None,
            "bytes_per_s": n * size / seconds if seconds > 0 else None,
            "p50_ms": pct[0], "p90_ms": pct[1], "p99_ms": pct[2], "_latencies": latencies or []}


async def _publishers(conns, subject: str, shares: list[int], payload: bytes, wait: float) -> list[dict]:
    clock = asyncio.get_running_loop().time

    async def one(i: int, c, n: int) -> dict:
        started = clock()
        for _ in range(n):
            await c.nc.publish(subject, payload)
        await round_trip(c, wait, "flushing the bench's messages", flush=True)
        return _row(f"pub {i + 1}", "pub", n, len(payload), clock() - started)

    return list(await asyncio.gather(*(one(i, c, n) for i, (c, n) in enumerate(zip(conns, shares)))))


async def _subscribers(conns, pub, subject: str, msgs: int, payload: bytes, wait: float, deadline: float) -> list[dict]:
    loop_ = asyncio.get_running_loop()
    marks = [{"n": 0, "first": None, "last": None, "done": asyncio.Event()} for _ in conns]
    subs = []

    def counter(mark):
        async def on_msg(msg) -> None:
            mark["last"] = loop_.time()
            mark["first"] = mark["first"] or mark["last"]
            mark["n"] += 1
            if mark["n"] >= msgs:
                mark["done"].set()
        return on_msg

    try:
        for c, mark in zip(conns, marks):
            subs.append(await c.nc.subscribe(subject, cb=counter(mark), pending_msgs_limit=msgs + 1,
                                             pending_bytes_limit=max(msgs * (len(payload) + 64), 64 << 20)))
            await round_trip(c, wait, "subscribing the bench's readers", flush=True)
        rows = await _publishers([pub], subject, [msgs], payload, wait)
        left = max(deadline - loop_.time(), 0.1)
        try:
            await asyncio.wait_for(asyncio.gather(*(m["done"].wait() for m in marks)), left)
        except asyncio.TimeoutError:
            pass                          # the rows say how many each reader got
    finally:
        for s in subs:
            try:
                await s.unsubscribe()
            except Exception:             # its connection is closing anyway
                pass
    for i, m in enumerate(marks):
        span = (m["last"] - m["first"]) if m["n"] > 1 else 0.0
        rows.append(_row(f"sub {i + 1}", "sub", m["n"], len(payload), span))
    return rows


async def _requesters(conns, service, subject: str, shares: list[int], payload: bytes, wait: float) -> list[dict]:
    clock = asyncio.get_running_loop().time

    async def answer(msg) -> None:
        await service.nc.publish(msg.reply, msg.data)

    sub = await service.nc.subscribe(subject, queue="nbnats-bench", cb=answer)
    try:
        await round_trip(service, wait, "subscribing the bench's responder", flush=True)

        async def one(i: int, c, n: int) -> dict:
            times, started = [], clock()
            for _ in range(n):
                sent = clock()
                await c.nc.request(subject, payload, timeout=wait)
                times.append(clock() - sent)
            return _row(f"req {i + 1}", "req", n, len(payload), clock() - started, times)

        return list(await asyncio.gather(*(one(i, c, n) for i, (c, n) in enumerate(zip(conns, shares)))))
    finally:
        await sub.unsubscribe()


async def _js(conns, subject: str, shares: list[int], payload: bytes, wait: float) -> list[dict]:
    clock = asyncio.get_running_loop().time
    stream = f"NBNATS_BENCH_{uuid.uuid4().hex[:8].upper()}"
    await api.request(conns[0], f"STREAM.CREATE.{stream}", {"name": stream, "subjects": [subject],
                                                             "storage": "file", "num_replicas": 1},
                      what=f"creating the bench stream {stream!r}", stream=stream)
    try:
        async def one(i: int, c, n: int) -> dict:
            times, started = [], clock()
            for _ in range(n):
                sent = clock()
                await js_publish(c, subject, payload, timeout=wait, stream=stream)
                times.append(clock() - sent)
            return _row(f"js {i + 1}", "js", n, len(payload), clock() - started, times)

        return list(await asyncio.gather(*(one(i, c, n) for i, (c, n) in enumerate(zip(conns, shares)))))
    finally:
        try:
            await api.request(conns[0], f"STREAM.DELETE.{stream}", what=f"deleting the bench stream {stream!r}",
                              stream=stream)
        except Exception:
            pass           # the connection died mid-bench: the stream is left, named NBNATS_BENCH_*


def _total(rows: list[dict], kind: str, size: int, wall: float) -> dict:
    """The ``all`` row: what the working clients did together, over the wall-clock time."""
    working = [r for r in rows if r["role"] == ("sub" if kind == "sub" else kind)]
    n = sum(r["msgs"] for r in working)
    seconds = max((r["seconds"] for r in working), default=wall) if kind == "sub" else wall
    return _row("all", kind, n, size, seconds, [t for r in working for t in r["_latencies"]])


def bench(kind: str, subject: str, msgs: int = 100_000, size: Any = 128, clients: int = 1, *,
          timeout: Any = "2m", wait: Any = "5s", connection: str | None = None) -> BenchResult:
    """Benchmark ``pub``, ``sub``, ``req`` or ``js`` on ``subject`` with connections of its own.

    ``msgs`` messages of ``size`` bytes (``128``, ``"1KB"``) shared by
    ``clients`` clients (for ``sub``: ``clients`` readers of every message).
    Returns a :class:`BenchResult`: one row a client, then ``all`` — client,
    role, msgs, bytes, seconds, msgs_per_s, bytes_per_s and, for req and js,
    p50_ms / p90_ms / p99_ms; ``.note`` sums it up, ``.figure`` draws it.
    ``timeout`` bounds the whole run, ``wait`` each request or ack. The
    connections are closed, and the js stream deleted, however it ends.

    >>> nbnats.bench("pub", "bench.pub", msgs=100_000, size=128, clients=2).note   # doctest: +SKIP
    'pub: 100,000 msgs of 128 B by 2 clients — 612,345 msgs/s, 74.7 MiB/s'
    """
    conn = current(connection)
    msgs, size, clients = _check(kind, subject, msgs, size, clients, conn.max_payload)
    timeout, wait = units.seconds(timeout, "timeout"), units.seconds(wait, "wait")
    payload = b"x" * size
    shares = _shares(msgs, clients)

    async def run() -> tuple[list[dict], float]:
        clock = asyncio.get_running_loop().time
        deadline = clock() + timeout
        extra = 1 if kind in ("sub", "req") else 0            # the publisher or the responder
        opened = []
        try:
            for i in range(clients + extra):
                opened.append(await open_like(conn, f"nbnats-bench-{i + 1}", wait))
            started = clock()
            if kind == "pub":
                rows = await _publishers(opened, subject, shares, payload, wait)
            elif kind == "sub":
                rows = await _subscribers(opened[:-1], opened[-1], subject, msgs, payload, wait, deadline)
            elif kind == "req":
                rows = await _requesters(opened[:-1], opened[-1], subject, shares, payload, wait)
            else:
                rows = await _js(opened, subject, shares, payload, wait)
            return rows, clock() - started
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            raise Timeout(f"a bench {kind} message on {subject!r} was not answered within {wait:g} s",
                          "the server may be overloaded: run fewer clients or msgs, or pass a larger wait=") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                nats.errors.StaleConnectionError):
            raise api.disconnected(conn) from None
        finally:
            await close_quietly(opened)

    try:
        rows, wall = loop.run(run(), timeout + 10, f"bench {kind} on {subject!r}")
    except Timeout:
        raise Timeout(f"bench {kind} on {subject!r} did not finish within {timeout:g} s",
                      "run fewer msgs, or pass a larger timeout=") from None
    rows.append(_total(rows, kind, size, wall))
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype(COLUMNS)
    total = rows[-1]
    readers = f" to {clients} subscriber(s)" if kind == "sub" else f" by {clients} client(s)"
    note = (f"{kind}: {msgs:,} msgs of {units.human_bytes(size)}{readers} — "
            f"{(total['msgs_per_s'] or 0):,.0f} msgs/s, {units.human_bytes(int(total['bytes_per_s'] or 0))}/s")
    if kind == "sub" and total["msgs"] < msgs * clients:
        note += f" (received {total['msgs']:,} of {msgs * clients:,} within the time allowed)"
    return typed(BenchResult, df, note, kind=kind, subject=subject, size=size, clients=clients)
