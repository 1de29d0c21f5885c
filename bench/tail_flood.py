"""A flood of 100k msg/s into a tail with limit=10_000: is the kernel still responsive, is every drop counted?

Another process publishes SECONDS x RATE small JSON messages at RATE msg/s.
Meanwhile the main thread (the kernel's) runs "another cell" every 20 ms (a
little Python and pandas, plus reading the subscriber's counters; for nbnats
also repr(t) and nbnats.tails()). Two rounds on one server:
(a) the hand-written nats-py baseline, a callback keeping the last 10,000
payloads in a deque, on its own event-loop thread (as nbnats does);
(b) nbnats.tail(limit=10_000). Prints the main thread's latency (median, p99,
max), for (b) a snapshot through the busy loop thread (t.records()), how
many arrived and that dropped == published - kept, and the ratios b/a.

    .venv/bin/python bench/tail_flood.py [RATE] [SECONDS]
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import subprocess
import sys
import threading
import time

import nats
import pandas as pd

import nbnats
from nbnats.runtime import server

LIMIT = 10_000
PUBLISHER = """
import asyncio, sys, time, nats
async def main(url, subject, n, rate):
    nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
    start, sent = time.monotonic(), 0
    while sent < n:
        for _ in range(1000):
            await nc.publish(subject, b'{"id": 1234567, "status": "created"}')
        sent += 1000
        await asyncio.sleep(max(sent / rate - (time.monotonic() - start), 0))
    await nc.flush(60)
    print(sent / (time.monotonic() - start), flush=True)
    await nc.close()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
"""


def other_cell() -> None:
    """What another notebook cell might do meanwhile: a little Python and pandas."""
    sum(i * i for i in range(20_000))
    pd.DataFrame({"a": range(1_000)})["a"].sum()


def flood(url: str, subject: str, n: int, rate: float, read, probe=None):
    """Publish from another process; every 20 ms run another cell (+ ``read``), every 100 ms ``probe``.

    Returns (achieved rate, cell latencies, probe latencies).
    """
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, url, subject, str(n), str(rate)],
                            stdout=subprocess.PIPE, text=True)
    cells, probes = [], []
    while proc.poll() is None:
        start = time.perf_counter()
        other_cell()
        read()
        cells.append(time.perf_counter() - start)
        if probe is not None and len(cells) % 5 == 0:
            start = time.perf_counter()
            probe()
            probes.append(time.perf_counter() - start)
        time.sleep(0.02)
    return float(proc.communicate()[0]), cells, probes


def summary(values: list[float]) -> str:
    v = sorted(values)
    return (f"median {statistics.median(v) * 1000:.2f} ms, p99 {v[int(len(v) * 0.99)] * 1000:.1f} ms, "
            f"max {v[-1] * 1000:.1f} ms")


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def baseline(url: str, n: int, rate: float) -> tuple[float, list[float], int]:
    """(a): nats-py on its own loop thread; a callback keeps the last LIMIT payloads."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    kept: collections.deque = collections.deque(maxlen=LIMIT)
    count = [0]

    async def subscribe():
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)

        async def cb(msg):
            kept.append(msg.data)
            count[0] += 1

        await nc.subscribe("flood.a", cb=cb, pending_msgs_limit=512 * 1024)
        await nc.flush()
        return nc

    nc = asyncio.run_coroutine_threadsafe(subscribe(), loop).result(10)
    achieved, latencies, _ = flood(url, "flood.a", n, rate, lambda: (count[0], len(kept)))
    wait_for(lambda: count[0] >= n, 60)
    asyncio.run_coroutine_threadsafe(nc.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    return achieved, latencies, count[0]


def main() -> None:
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    n = int(rate * seconds) // 1000 * 1000
    with server.start(jetstream=False, auth="none") as srv:   # peers connect plainly
        a_rate, a_lat, a_got = baseline(srv.url, n, rate)
        print(f"(a) nats-py + deque: {n:,} published at {a_rate:,.0f} msg/s, {a_got:,} received")
        print(f"    another cell: {summary(a_lat)}")

        nbnats.connect(srv.url)
        t = nbnats.tail("flood.b", limit=LIMIT)
        b_rate, b_lat, snapshots = flood(srv.url, "flood.b", n, rate,
                                         lambda: (t.count, t.dropped, repr(t), len(nbnats.tails())),
                                         probe=t.records)
        wait_for(lambda: t.count + t.slow_dropped >= n, 60)
        kept = len(t.df)
        exact = t.dropped == n - kept
        print(f"(b) nbnats.tail(limit={LIMIT:,}): {n:,} published at {b_rate:,.0f} msg/s, {t.count:,} received, "
              f"{kept:,} kept, {t.dropped:,} dropped ({t.slow_dropped:,} by the client as a slow consumer); "
              f"dropped == published - kept: {exact}")
        print(f"    another cell (+ the tail's counters, repr, nbnats.tails()): {summary(b_lat)}")
        print(f"    a snapshot through the busy loop thread (t.records()): {summary(snapshots)}")
        print(f"ratios b/a: max cell latency {max(b_lat) / max(a_lat):.2f}, "
              f"median {statistics.median(b_lat) / statistics.median(a_lat):.2f}, received {t.count / a_got:.2f}")
        t.stop()
        nbnats.close()


if __name__ == "__main__":
    main()
