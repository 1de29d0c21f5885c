"""Tail throughput: nbnats.tail + building t.df vs a raw nats-py callback subscriber.

One run publishes N ~110-byte JSON messages from another process, alternating:
(a) the ceiling — a nats-py callback subscriber that only keeps the bytes;
(b) nbnats.tail(...) and then building t.df.
Prints msg/s for each round and the ratio b/a (goal ≥ 0.9), and any loss.

    .venv/bin/python bench/tail.py [N] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time

import nats

import nbnats
from nbnats.runtime import server

PUBLISHER = """
import asyncio, sys, nats, orjson
async def main(url, subject, n):
    nc = await nats.connect(url)
    body = [orjson.dumps({"id": i, "customer": {"id": f"c{i % 977}", "tier": "gold"},
                          "total": round(i * 1.37, 2), "status": "created", "n": 3}) for i in range(n)]
    for b in body:
        await nc.publish(subject, b)
    await nc.flush(30)
    await nc.close()
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


def publish(url: str, subject: str, n: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PUBLISHER, url, subject, str(n)])


def raw_ceiling(url: str, subject: str, n: int) -> tuple[float, int]:
    """(a): what a user would write by hand with nats-py: a callback that keeps the bytes."""
    async def main():
        nc = await nats.connect(url, pending_size=64 * 1024 * 1024)
        kept: list[bytes] = []
        first: list[float] = []
        done = asyncio.Event()

        async def cb(msg):
            if not first:
                first.append(time.perf_counter())
            kept.append(msg.data)
            if len(kept) >= n:
                done.set()

        await nc.subscribe(subject, cb=cb)
        await nc.flush()
        proc = publish(url, subject, n)
        try:
            await asyncio.wait_for(done.wait(), 120)
        except asyncio.TimeoutError:
            pass
        end = time.perf_counter()
        await asyncio.to_thread(proc.wait, 60)
        await nc.close()
        return len(kept) / (end - first[0]), len(kept)

    return asyncio.run(main())


def nbnats_tail(url: str, subject: str, n: int) -> tuple[float, int]:
    """(b): nbnats.tail with room for every row, then t.df."""
    nbnats.connect(url)
    t = nbnats.tail(subject, limit=n)
    proc = publish(url, subject, n)
    t.wait(n, timeout=120)
    df = t.df
    end = time.perf_counter_ns()
    first_ns = t.records()[0][1]
    # the ring holds wall-clock arrival times; translate the end to the same clock
    elapsed = (time.time_ns() - (time.perf_counter_ns() - end) - first_ns) / 1e9
    proc.wait(60)
    t.stop()
    nbnats.close()
    assert len(df) == t.count and "customer.id" in df.columns
    return len(df) / elapsed, len(df)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    with server.start(auth="none") as srv:   # peers connect plainly
        a_rates, b_rates = [], []
        for r in range(rounds):
            a, a_got = raw_ceiling(srv.url, f"bench.a{r}", n)
            b, b_got = nbnats_tail(srv.url, f"bench.b{r}", n)
            a_rates.append(a)
            b_rates.append(b)
            print(f"round {r + 1}: (a) raw nats-py {a:,.0f} msg/s ({n - a_got} lost)   "
                  f"(b) nbnats.tail + t.df {b:,.0f} msg/s ({n - b_got} lost)   b/a = {b / a:.2f}")
        a_med, b_med = statistics.median(a_rates), statistics.median(b_rates)
        paired = statistics.median(b / a for a, b in zip(a_rates, b_rates))
        print(f"median over {rounds} rounds of {n:,} messages: (a) {a_med:,.0f} msg/s, "
              f"(b) {b_med:,.0f} msg/s; median of the paired round ratios b/a = {paired:.2f} "
              f"(goal ≥ 0.9)")


if __name__ == "__main__":
    main()
