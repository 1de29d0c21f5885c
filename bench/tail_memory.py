"""Memory of a long tail of 1 MB messages: it stays under the ring's cap plus a constant.

Another process publishes N messages of 1,000,000 bytes; the kernel-side
subscriber keeps only the last LIMIT. Three rounds on one server:
(a) the hand-written nats-py baseline, a callback keeping the last LIMIT
payloads in a deque; (b) nbnats.tail(limit=LIMIT); (c) the same under
tracemalloc, which slows the client enough that the publisher is paced
(5 ms a message) lest the server drop it as a slow consumer. Peak RSS above
the idle process is sampled every 20 ms. Prints the figures, the cap
(LIMIT x 1 MB), what is above it, and the ratio b/a.

    .venv/bin/python bench/tail_memory.py [N] [LIMIT]
"""

from __future__ import annotations

import asyncio
import collections
import gc
import subprocess
import sys
import threading
import time
import tracemalloc

import nats
import psutil

import nbnats
from nbnats.runtime import server

SIZE = 1_000_000
MB = 1e6
PUBLISHER = """
import asyncio, sys, nats
async def main(url, subject, n, size, pause):
    nc = await nats.connect(url)
    body = b"x" * size
    for _ in range(n):
        await nc.publish(subject, body)
        await nc.flush()                 # no 1 GB burst queued in the publisher
        await asyncio.sleep(pause)
    await nc.close()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])))
"""


class PeakRSS:
    """Samples this process's RSS on a thread; ``peak`` is the highest seen."""

    def __init__(self):
        self.proc = psutil.Process()
        self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def publish(url: str, subject: str, n: int, pause: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, url, subject, str(n), str(SIZE), str(pause)])


def idle_rss() -> int:
    gc.collect()
    time.sleep(0.2)
    return psutil.Process().memory_info().rss


def baseline(url: str, n: int, limit: int) -> tuple[int, int]:
    """(a) nats-py by hand: a callback and a deque of the last ``limit`` payloads."""
    async def main():
        nc = await nats.connect(url)
        kept: collections.deque = collections.deque(maxlen=limit)
        done = asyncio.Event()
        count = [0]

        async def cb(msg):
            kept.append(msg.data)
            count[0] += 1
            if count[0] >= n:
                done.set()

        await nc.subscribe("mem.a", cb=cb)
        await nc.flush()
        proc = publish(url, "mem.a", n)
        while not done.is_set():
            before = count[0]
            try:
                await asyncio.wait_for(done.wait(), 10)
            except asyncio.TimeoutError:
                if count[0] == before:
                    raise SystemExit(f"(a) only {count[0]} of {n} arrived: the server dropped the client "
                                     "as a slow consumer; run again on a less busy machine") from None
        await asyncio.to_thread(proc.wait, 60)
        held = sum(len(b) for b in kept)
        await nc.close()
        return count[0], held

    return asyncio.run(main())


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    cap = limit * SIZE
    with server.start(jetstream=False, auth="none") as srv:   # peers connect plainly
        nbnats.connect(srv.url)
        nbnats.publish("warm", "up")

        start = idle_rss()
        with PeakRSS() as a_rss:
            got, _ = baseline(srv.url, n, limit)
        a_peak = a_rss.peak - start
        print(f"(a) nats-py + deque(maxlen={limit}): {got} x 1 MB received, peak RSS +{a_peak / MB:,.0f} MB "
              f"(cap {cap / MB:,.0f} MB, above it {(a_peak - cap) / MB:+,.0f} MB)")

        start = idle_rss()
        t0 = time.perf_counter()
        with PeakRSS() as b_rss:
            t = tail_all(srv.url, "mem.b", n, limit)
        b_peak = b_rss.peak - start
        print(f"(b) nbnats.tail(limit={limit}): {t.count} x 1 MB in {time.perf_counter() - t0:.1f} s, "
              f"peak RSS +{b_peak / MB:,.0f} MB (above the cap {(b_peak - cap) / MB:+,.0f} MB)")
        with PeakRSS() as df_rss:
            df = t.df
        print(f"    then t.df ({len(df)} rows) took RSS to +{(df_rss.peak - start) / MB:,.0f} MB "
              f"(the frame is a copy of what is kept, freed with it)")
        t.stop()
        del df, t

        idle_rss()
        tracemalloc.start()
        t = tail_all(srv.url, "mem.c", n, limit, pause=0.005)
        held, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        t.stop()
        print(f"(c) the same under tracemalloc: held {held / MB:,.0f} MB at the end, peak {traced_peak / MB:,.0f} MB "
              f"(above the cap {(traced_peak - cap) / MB:+,.0f} MB)")
        print(f"ratio b/a of peak RSS above idle: {b_peak / a_peak:.2f}; "
              f"the tail stays under cap + {max(b_peak - cap, traced_peak - cap, 0) / MB:,.0f} MB")


def tail_all(url: str, subject: str, n: int, limit: int, pause: float = 0.0):
    """A tail receiving ``n`` messages; says so plainly if the server dropped it as a slow consumer."""
    t = nbnats.tail(subject, limit=limit)
    proc = publish(url, subject, n, pause)
    last, still = -1, time.monotonic()
    while t.count < n:
        if t.count != last:
            last, still = t.count, time.monotonic()
        elif time.monotonic() - still > 10:
            raise SystemExit(f"only {t.count} of {n} arrived; outages: {t.gaps['detail'].tolist()}")
        time.sleep(0.05)
    proc.wait(60)
    assert len(t.records()) == limit and t.dropped == n - limit
    return t


if __name__ == "__main__":
    main()
