"""Replay to Parquet benchmark: bounded memory and throughput against the in-memory replay.

Fills a stream with N (default 10,000,000) ~110-byte JSON messages on a bundled
nats-server of its own, then, each in a fresh process (so each peak RSS is its own):

  (a) ``nbnats.replay(stream)`` into pandas (in memory)
  (b) ``nbnats.replay(stream, to=DIR)`` → a Parquet dataset

and prints msg/s of each, the ratio b/a (goal ≥ 0.8), the peak RSS growth of (b)
(goal ≤ 600 MB, whatever N) and of (a) for comparison, then checks the dataset with
DuckDB (rows, distinct seqs), and, with ``--dask``, reads the stream with
``nbnats.dask.replay`` on a 2-worker ``LocalCluster`` and compares row count and seq set.

    .venv/bin/python bench/replay_parquet.py              # 10M messages
    .venv/bin/python bench/replay_parquet.py -n 2000000 --dask

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from replay import STREAM, fill  # noqa: E402  (the same stream and payloads as bench/replay.py)

CHILD = r"""
import json, os, sys, time
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM"))
import nbnats
from nbnats.jetstream.replay import replay
nbnats.connect(sys.argv[1])
base = hwm()
t = time.perf_counter()
if sys.argv[2] == "memory":
    df = replay(sys.argv[3], progress=False, timeout=60)
    rows, extra = len(df), {"frame": int(df.memory_usage(deep=True).sum())}
else:
    s = replay(sys.argv[3], to=sys.argv[4], progress=False, timeout=60)
    rows, extra = s.rows, {"files": s.files, "bytes": s.bytes}
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - t, "rss_growth": hwm() - base, **extra}))
"""


def child(url: str, mode: str, out: str = "") -> dict:
    res = subprocess.run([sys.executable, "-c", CHILD, url, mode, STREAM, out], capture_output=True, text=True,
                         timeout=3600)
    if res.returncode:
        raise SystemExit(f"{mode} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10_000_000)
    ap.add_argument("--dask", action="store_true", help="also read it with nbnats.dask.replay on 2 workers")
    args = ap.parse_args()
    from nbnats.runtime import server
    mib = 1 << 20
    with tempfile.TemporaryDirectory() as store, tempfile.TemporaryDirectory() as out, \
            server.start(store=store, auth="none") as srv:
        print(f"nats-server {srv.info().get('version')}; filling {STREAM} with {args.n:,} messages …", flush=True)
        t = time.perf_counter()
        asyncio.run(fill(srv.url, args.n))
        print(f"  filled in {time.perf_counter() - t:.0f} s", flush=True)
        b = child(srv.url, "parquet", os.path.join(out, "ds"))
        a = child(srv.url, "memory")
        ra, rb = a["rows"] / a["seconds"], b["rows"] / b["seconds"]
        print(f"(a) replay into pandas:  {ra:>9,.0f} msg/s   peak RSS growth {a['rss_growth'] / mib:7,.0f} MiB "
              f"(frame {a['frame'] / mib:,.0f} MiB)")
        print(f"(b) replay to Parquet:   {rb:>9,.0f} msg/s   peak RSS growth {b['rss_growth'] / mib:7,.0f} MiB "
              f"({b['files']} files, {b['bytes'] / mib:,.0f} MiB)")
        print(f"b/a = {rb / ra:.2f} (goal ≥ 0.8); (b) peak RSS growth {b['rss_growth'] / 1e6:,.0f} MB (goal ≤ 600 MB)")
        import duckdb
        rows, seqs = duckdb.sql(f"select count(*), count(distinct seq) from "
                                f"read_parquet('{out}/ds/*.parquet', union_by_name=true)").fetchall()[0]
        print(f"DuckDB over the dataset: {rows:,} rows, {seqs:,} distinct seqs (expected {args.n:,})")
        if args.dask:
            import nbnats
            from dask.distributed import Client, LocalCluster
            nbnats.connect(srv.url)
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                    Client(cl):
                t = time.perf_counter()
                seq = nbnats.dask.replay(STREAM, partitions=8)["seq"].compute()
                el = time.perf_counter() - t
            print(f"Dask (2 workers, 8 partitions): {len(seq):,} rows in {el:.1f} s ({len(seq) / el:,.0f} msg/s); "
                  f"seq set equal to the stream's: {sorted(seq.tolist()) == list(range(1, args.n + 1))}")
            nbnats.close()


if __name__ == "__main__":
    main()
