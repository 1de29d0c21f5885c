"""Replay benchmark: nbnats.replay against nats.js counting, and the nats-py fetch() loop from the docs.

Fills a stream with N (default 1,000,000) ~110-byte JSON messages on a
bundled nats-server of its own, then alternates, in one run:

  (a) nats.js (the interop npm package): an ordered consumer that only counts the messages
  (b) ``nbnats.replay(stream)`` → the standard pandas DataFrame
  (c) nats-py: ``pull_subscribe`` + ``fetch(1000)`` + ``json.loads`` + ack, rows → ``DataFrame``

and prints msg/s of each and the ratios b/a (goal ≥ 2.5×) and b/c (goal ≥ 4.5×),
then the peak memory of (b) against the final frame's size (goal ≤ 1.5×),
measured in a fresh process (RSS high-water mark, plus tracemalloc and Arrow's pool).

    .venv/bin/python bench/replay.py            # 1M messages, 2 rounds
    .venv/bin/python bench/replay.py -n 200000 --rounds 3

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import nats
import orjson
import pandas as pd

STREAM, SUBJECTS = "BENCH", "bench.>"


def payload(i: int) -> bytes:
    return orjson.dumps({"id": i, "customer": f"c{i % 5000:05d}", "amount": round(i * 0.37 % 500, 2),
                         "status": ("created", "paid", "shipped")[i % 3], "region": "eu-west", "items": i % 7,
                         "note": "x" * 8})


async def fill(url: str, n: int) -> None:
    """Core publishes in flushed batches (JetStream stores them), then a check that all arrived."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(name=STREAM, subjects=[SUBJECTS], storage="file")
    regions = ("eu", "us", "ap", "sa")
    for i in range(n):
        await nc.publish(f"bench.{regions[i % 4]}", payload(i))
        if i % 5000 == 4999:
            await nc.flush(30)
    await nc.flush(30)
    deadline = time.monotonic() + 60
    while (await js.stream_info(STREAM)).state.messages < n and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    stored = (await js.stream_info(STREAM)).state.messages
    assert stored == n, f"the stream holds {stored:,} of {n:,} messages"
    await nc.close()


async def baseline(url: str, n: int) -> pd.DataFrame:
    """(a) The loop from the nats-py docs: fetch 1000 at a time, decode each, ack each."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    psub = await js.pull_subscribe(SUBJECTS, stream=STREAM)
    rows = []
    while len(rows) < n:
        for msg in await psub.fetch(1000, timeout=10):
            row = json.loads(msg.data)
            row["subject"] = msg.subject
            row["seq"] = msg.metadata.sequence.stream
            row["time"] = msg.metadata.timestamp
            rows.append(row)
            await msg.ack()
    df = pd.DataFrame(rows)
    await psub.unsubscribe()
    await nc.close()
    return df


NATSJS = """
import { connect } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
const [url, stream, mode] = process.argv.slice(-3);
const nc = await connect({ servers: url });
const js = jetstream(nc);
const last = (await (await js.jetstreamManager()).streams.info(stream)).state.last_seq;
const t0 = performance.now();
let n = 0;
const rows = [];
for await (const m of await (await js.consumers.get(stream)).consume()) {   // an ordered consumer
  n++;
  if (mode === "rows") { const row = m.json(); row.subject = m.subject; row.seq = m.seq; rows.push(row); }
  if (m.seq >= last) break;
}
console.log(JSON.stringify({ rows: n, rate: n / ((performance.now() - t0) / 1000) }));
await nc.close();
"""


def natsjs_rate(url: str, mode: str = "count") -> float | None:
    """nats.js's ordered consumer over the stream, only counting (``mode="rows"``: parsing each into a row)."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "interop")
    if not shutil.which("node") or not os.path.isdir(os.path.join(here, "node_modules", "@nats-io", "jetstream")):
        return None
    out = subprocess.run(["node", "--input-type=module", "-e", NATSJS, url, STREAM, mode], cwd=here,
                         capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])["rate"] if out.returncode == 0 else None


def run_nbnats() -> pd.DataFrame:
    from nbnats.jetstream.replay import replay  # (nbnats.replay is also the function's name)
    return replay(STREAM, progress=False, timeout=30)


def memory_child(url: str) -> None:
    """Run one replay under tracemalloc in this fresh process; print the figures as JSON."""
    import threading
    import tracemalloc

    import pyarrow as pa

    import nbnats
    nbnats.connect(url)
    from nbnats.jetstream.replay import replay  # noqa: F401  (imports outside the measurement)
    def hwm() -> int:   # the process's peak resident memory so far, in bytes
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

    both = [0]
    sampling = threading.Event()

    def sample() -> None:   # Python + Arrow bytes live at the same moment (Arrow parses without the GIL)
        while not sampling.wait(0.002):
            both[0] = max(both[0], tracemalloc.get_traced_memory()[0] - base + pa.total_allocated_bytes() - arrow0)

    rss0 = hwm()
    tracemalloc.start()
    base, arrow0 = tracemalloc.get_traced_memory()[0], pa.total_allocated_bytes()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    df = run_nbnats()
    sampling.set()
    sampler.join()
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(json.dumps({
        "rows": len(df), "frame": int(df.memory_usage(deep=True).sum()),
        "py_peak": peak - base, "arrow_peak": pa.default_memory_pool().max_memory() - arrow0,
        "together": both[0], "rss_growth": hwm() - rss0,
    }))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1_000_000, help="messages in the stream")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--memory-child", metavar="URL", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)

    import nbnats
    from nbnats.runtime import server

    with tempfile.TemporaryDirectory() as store, server.start(store=store, auth="none") as srv:   # peers connect plainly
        from nbnats.engine import msg_cut
        print(f"nats-server {srv.info().get('version')} at {srv.url}; filling {STREAM} with {args.n:,} messages "
              f"of ~{len(payload(args.n // 2))} bytes; nbnats cuts frames in "
              f"{'C (nbnats/engine/_cut.c)' if msg_cut.NATIVE else 'Python (the C cut is not built or is off)'} …",
              flush=True)
        t = time.perf_counter()
        asyncio.run(fill(srv.url, args.n))
        print(f"  filled in {time.perf_counter() - t:.1f} s", flush=True)
        nbnats.connect(srv.url)
        rates: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for r in range(1, args.rounds + 1):
            js_rate = natsjs_rate(srv.url)
            if js_rate:
                rates["a"].append(js_rate)
            t = time.perf_counter()
            df = run_nbnats()
            rates["b"].append(len(df) / (time.perf_counter() - t))
            assert len(df) == args.n and df["seq"].iloc[-1] == args.n and df.attrs["transport"] == "wire"
            del df
            t = time.perf_counter()
            df = asyncio.run(baseline(srv.url, args.n))
            rates["c"].append(len(df) / (time.perf_counter() - t))
            assert len(df) == args.n
            del df
            a = f"{rates['a'][-1]:>9,.0f}" if js_rate else "  (no node)"
            print(f"round {r}: (a) nats.js counting {a} msg/s   (b) nbnats.replay {rates['b'][-1]:>9,.0f} msg/s   "
                  f"(c) nats-py fetch loop {rates['c'][-1]:>9,.0f} msg/s", flush=True)
        b, c = statistics.median(rates["b"]), statistics.median(rates["c"])
        if rates["a"]:
            a = statistics.median(rates["a"])
            paired = statistics.median(y / x for x, y in zip(rates["a"], rates["b"]))
            print(f"median: (a) {a:,.0f}  (b) {b:,.0f}  (c) {c:,.0f} msg/s;  b/a = {b / a:.2f}× (goal ≥ 2.5×; "
                  f"median of the paired round ratios {paired:.2f}×),  b/c = {b / c:.1f}× (goal ≥ 4.5×)")
        else:
            print(f"median: (b) {b:,.0f}  (c) {c:,.0f} msg/s;  b/c = {b / c:.1f}× (goal ≥ 4.5×); nats.js not installed "
                  "(npm ci --prefix tests/interop)")
        nbnats.close()
        out = subprocess.run([sys.executable, __file__, "--memory-child", srv.url], capture_output=True,
                             text=True, timeout=600, env={**os.environ, "NATS_URL": srv.url})
        if out.returncode:
            print("memory run failed:", out.stderr[-2000:])
            return
        m = json.loads(out.stdout.strip().splitlines()[-1])
        mib = 1 << 20
        f = m["frame"]
        print(f"memory of (b), {m['rows']:,} rows, against the final frame ({f / mib:,.0f} MiB, "
              "df.memory_usage(deep=True)); goal: RSS growth ≤ 1.5×:")
        print(f"  tracemalloc peak (Python heap)              {m['py_peak'] / mib:7,.0f} MiB  {m['py_peak'] / f:.2f}×")
        print(f"  Python + Arrow live at once (sampled, 2 ms)  {m['together'] / mib:7,.0f} MiB  {m['together'] / f:.2f}×")
        print(f"  Python peak + Arrow pool peak (upper bound)  {(m['py_peak'] + m['arrow_peak']) / mib:7,.0f} MiB  "
              f"{(m['py_peak'] + m['arrow_peak']) / f:.2f}×")
        print(f"  process peak RSS growth (VmHWM)              {m['rss_growth'] / mib:7,.0f} MiB  {m['rss_growth'] / f:.2f}×")


if __name__ == "__main__":
    main()
