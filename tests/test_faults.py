"""Real faults injected into real servers: what is lost (nothing) and what hangs (nothing).

Each test kills, restarts, freezes or floods a private nats-server, then counts
every message and prints what was lost. Cluster failover and lame duck mode are
in test_cluster.py; secrets and TLS in test_security.py.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections import Counter

import pytest

import nbnats
from nbnats.runtime import connection, loop, server

from faultkit import lost, wait_until

tail_mod = importlib.import_module("nbnats.tail")     # nbnats.tail is also the function

HEARTBEAT = 2.0      # the idle heartbeat of a stream tail's ordered consumer (nbnats.tail)


def loop_tasks() -> list[str]:
    """The coroutines still scheduled on nbnats's loop (besides this probe)."""
    async def probe():
        return sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task())
    return loop.run(probe(), 5, "listing the loop's tasks")


def add_stream(conn, name: str, subjects: list[str], **config) -> None:
    async def add():
        await conn.nc.jetstream().add_stream(name=name, subjects=subjects, **config)
    loop.run(add(), 10, f"adding stream {name}")


def publisher(url: str, subject: str, n: int, rate: float | None = None, size: int | None = None):
    """Another process publishing ``n`` messages (at ``rate`` msg/s); prints the count sent and seconds.

    Messages are ``{"i": 1234567}``, or ``size`` bytes of ``x``.
    """
    started = connection._started_server(url)          # the bundled server wants its generated credentials
    if started is not None and started.auth and "@" not in url:
        url = started.auth.url(url)
    body = f"b'x' * {size}" if size else repr(b'{"i": 1234567}')
    code = f"""
import asyncio, nats, time
async def main():
    nc = await nats.connect({url!r}, pending_size=64 * 1024 * 1024)
    body = {body}
    start, sent, rate = time.monotonic(), 0, {rate!r}
    while sent < {n}:
        for _ in range(min(1000, {n} - sent)):
            await nc.publish({subject!r}, body)
        sent += min(1000, {n} - sent)
        ahead = sent / rate - (time.monotonic() - start) if rate else 0
        await asyncio.sleep(max(ahead, 0))
    await nc.flush(60)
    print(sent, time.monotonic() - start, flush=True)
    await nc.close()
asyncio.run(main())
"""
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


@pytest.fixture
def private(uid):
    """A private JetStream server and a connection to it named ``uid``, for tests that break servers."""
    srv = server.start()
    conn = nbnats.connect(srv.url, name=uid)
    yield srv, conn
    connection.close(uid, timeout=2)
    srv.stop()


# -- 1. SIGKILL mid-tail, restart on the same port -------------------------------------------
@pytest.mark.timeout(60)
def test_core_tail_survives_sigkill_and_restart_on_the_same_port(private, uid):
    srv, conn = private
    t = nbnats.tail(f"{uid}.>", connection=uid)
    view = t.widget
    for i in range(200):
        nbnats.publish(f"{uid}.x", {"i": i}, connection=uid)
    t.wait(200, timeout=10)
    port, pid = srv.port, srv.pid

    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not conn.connected, 5, "the client noticing the dead server")
    wait_until(lambda: "disconnected" in view.header.value, 3, "the widget showing the outage")
    assert t.gaps["kind"].tolist() == ["outage"] and t.gaps["end"].isna().all()
    # Published while the server is down: the client buffers it and sends it after reconnecting.
    nbnats.publish(f"{uid}.x", {"i": 200}, connection=uid, timeout=0.5)

    srv.nodes[0].start()
    assert srv.port == port and srv.pid != pid
    took = wait_until(lambda: conn.connected, 10, "the client reconnecting")
    for i in range(201, 400):
        nbnats.publish(f"{uid}.x", {"i": i}, connection=uid)
    t.wait(400, timeout=10)

    ids = t.df["i"].tolist()
    assert not lost("sigkill core tail", range(400), ids, reconnected_after_s=round(took, 2))
    assert ids == list(range(400)), "duplicates or reordering"
    gaps = t.gaps
    assert gaps["kind"].tolist() == ["outage"] and gaps["end"].notna().all()
    wait_until(lambda: "1 gap(s)" in view.header.value and "disconnected" not in view.header.value, 3,
               "the widget showing the outage as a gap")
    assert t.running and t.dropped == 0


# -- 2. the same for a JetStream-backed tail -------------------------------------------------------
@pytest.mark.timeout(60)
def test_stream_tail_survives_sigkill_with_no_gap_and_no_duplicate(private, uid):
    srv, conn = private
    stream = f"S{uid}"
    add_stream(conn, stream, [f"{uid}.>"])
    t = nbnats.tail(f"{uid}.>", stream=stream, connection=uid)
    for i in range(100):
        nbnats.publish(f"{uid}.x", {"i": i}, js=True, connection=uid)
    t.wait(100, timeout=10)

    os.kill(srv.pid, signal.SIGKILL)
    wait_until(lambda: not conn.connected, 5, "the client noticing the dead server")
    srv.nodes[0].start()
    wait_until(lambda: conn.connected, 10, "the client reconnecting")
    back = time.monotonic()
    for i in range(100, 200):     # JetStream may still be recovering: the publish waits for it
        nbnats.publish(f"{uid}.x", {"i": i}, js=True, connection=uid, timeout=10)
    t.wait(200, timeout=2 * HEARTBEAT + 5)
    resumed = time.monotonic() - back

    df = t.df
    assert not lost("sigkill stream tail", range(200), df["i"].tolist(), resumed_after_s=round(resumed, 2))
    assert df["seq"].tolist() == list(range(1, 201)), "sequence not strictly +1"
    assert t.gaps["kind"].tolist() == ["outage"]          # no sequence gap, one outage
    assert t.count == 200 and t.dropped == 0


# -- 5. close with messages in flight --------------------------------------------------------------
@pytest.mark.timeout(60)
def test_close_magic_drains_every_message_in_flight(ip, nats_url, uid):
    t = ip.run_line_magic("nats", f"sub {uid} --no-widget --limit 100000")
    n = 50_000
    proc = publisher(nats_url, uid, n)
    assert int(proc.communicate(timeout=60)[0].split()[0]) == n     # all accepted by the server
    start = time.monotonic()
    ip.run_line_magic("nats", "close")
    took = time.monotonic() - start
    assert not lost("close in flight", range(n), range(t.count), close_s=round(took, 2))
    assert t.count == n and len(t.df) == n and not t.running
    assert took < 5.0 + 2          # close's own timeout (5 s) plus the final close


@pytest.mark.timeout(30)
def test_close_while_the_server_is_down_is_clean(private, uid):
    srv, conn = private
    before = loop_tasks()
    t = nbnats.tail(uid, connection=uid)
    os.kill(srv.pid, signal.SIGKILL)
    wait_until(lambda: not conn.connected, 5, "the client noticing the dead server")
    nbnats.publish(uid, "buffered, never to be sent", connection=uid, timeout=0.5)
    start = time.monotonic()
    nbnats.close(uid)                       # no ConnectionResetError, no task left behind
    assert time.monotonic() - start < 5 and not t.running and uid not in nbnats.connections()
    after = Counter(loop_tasks())
    gone = Counter(before) - after
    # nats-py's close() writes its outage buffer to the dead socket, fails, and leaves its subscriptions'
    # reader tasks waiting (idle, gone with the process). Emptying that buffer needs nats-py's private
    # state, which nbnats does not touch; every task of the client itself ended.
    after.pop("Subscription._wait_for_msgs", None)
    assert gone["Client._flusher"] == 1 and not after - Counter(before)   # the client's tasks ended, none new


# -- 6. a consumer deleted, or its heartbeats missed --------------------------------------------
@pytest.mark.timeout(60)
def test_deleted_consumer_is_replaced_within_two_heartbeats(private, uid):
    srv, conn = private
    stream = f"S{uid}"
    add_stream(conn, stream, [f"{uid}.>"])
    for i in range(20):            # history before the tail: a reset must not pour it in
        nbnats.publish(f"{uid}.old", {"i": -1}, js=True, connection=uid)
    t = nbnats.tail(f"{uid}.>", stream=stream, connection=uid)
    for i in range(5):
        nbnats.publish(f"{uid}.new", {"i": i}, js=True, connection=uid)
    t.wait(5, timeout=5)
    reset, arrived = [], []
    for round_ in range(2):
        consumer = t.consumer
        nbnats.delete_consumer(stream, consumer, connection=uid)
        start = time.monotonic()
        nbnats.publish(f"{uid}.new", {"i": 5 + round_}, js=True, connection=uid)
        reset.append(round(wait_until(lambda: t.consumer not in (None, consumer), 4 * HEARTBEAT, "a new consumer"), 2))
        t.wait(6 + round_, timeout=4 * HEARTBEAT)
        arrived.append(round(time.monotonic() - start, 2))
    df = t.df
    assert not lost("deleted consumer", range(7), df["i"].tolist(), new_consumer_after_s=reset,
                    message_after_s=arrived)
    assert df["seq"].tolist() == list(range(21, 28)) and "old" not in " ".join(df["subject"])
    assert max(reset) < 2 * HEARTBEAT, f"the consumer was replaced after {reset} s"


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_replay_survives_its_consumer_being_deleted(private, uid):
    replay = importlib.import_module("nbnats.jetstream.replay").replay
    jetstream = nbnats            # stream_info, consumers, delete_consumer
    srv, conn = private
    stream, n, stall = f"S{uid}", 100_000, 1.0
    add_stream(conn, stream, [f"{uid}.>"])
    publisher(srv.url, f"{uid}.x", n).communicate(timeout=60)       # stored by JetStream as they come
    wait_until(lambda: jetstream.stream_info(stream, connection=uid)["state"]["messages"] == n, 20,
               "the stream storing every message")
    deleted, seen, finished = [], set(), threading.Event()

    def delete_the_replays_consumer():       # the first one the replay makes; note any that follow
        while not finished.is_set():
            for name in jetstream.consumers(stream, connection=uid)["name"]:
                if name.startswith("nbnats_replay_") and name not in seen:
                    seen.add(name)
                    if not deleted:
                        jetstream.delete_consumer(stream, name, connection=uid)
                        deleted.append(time.monotonic())
            time.sleep(0.02)

    killer = threading.Thread(target=delete_the_replays_consumer, daemon=True)
    killer.start()
    start = time.monotonic()
    try:
        df = replay(stream, connection=uid, timeout=stall, progress=False)
    finally:
        finished.set()
        killer.join(10)
    took = time.monotonic() - start
    assert deleted and len(seen) >= 2, "the replay did not have to replace its consumer"
    assert not lost("replay, consumer deleted", range(1, n + 1), df["seq"].tolist(),
                    deleted_at_s=round(deleted[0] - start, 2), replay_s=round(took, 2))
    assert df["seq"].tolist() == list(range(1, n + 1))                # complete, in order, no duplicate


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_frozen_server_missed_heartbeats_never_hang_a_stream_tail(private, uid):
    srv, conn = private
    stream = f"S{uid}"
    add_stream(conn, stream, [f"{uid}.>"])
    t = nbnats.tail(f"{uid}.>", stream=stream, connection=uid)
    nbnats.publish(f"{uid}.x", {"i": 0}, js=True, connection=uid)
    t.wait(1, timeout=5)
    os.kill(srv.pid, signal.SIGSTOP)           # no heartbeats, yet the TCP connection stays up
    try:
        time.sleep(2 * HEARTBEAT + 1)
        assert t.running and t.count == 1
    finally:
        os.kill(srv.pid, signal.SIGCONT)
    start = time.monotonic()
    for i in range(1, 11):
        nbnats.publish(f"{uid}.x", {"i": i}, js=True, connection=uid, timeout=10)
    t.wait(11, timeout=4 * HEARTBEAT + 2)
    df = t.df
    assert not lost("frozen server", range(11), df["i"].tolist(),
                    back_after_s=round(time.monotonic() - start, 2))
    assert df["seq"].tolist() == list(range(1, 12))


# -- 7. a flood of 100k msg/s into a bounded tail ----------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_flood_keeps_the_kernel_responsive_and_counts_every_drop(uid):
    with server.start(jetstream=False) as srv:
        nbnats.connect(srv.url, name=uid)
        try:
            t = nbnats.tail(uid, limit=10_000, connection=uid)
            rate, n = 100_000, 200_000
            proc = publisher(srv.url, uid, n, rate=rate)
            cell, snapshot = [], []
            while proc.poll() is None:
                start = time.perf_counter()          # another cell: read the tail, list the tails
                (t.count, t.dropped, repr(t), len(nbnats.tails()))
                cell.append(time.perf_counter() - start)
                start = time.perf_counter()
                len(t.records())                     # a round trip through the busy loop thread
                snapshot.append(time.perf_counter() - start)
                time.sleep(0.02)
            sent, seconds = proc.communicate()[0].split()
            assert int(sent) == n
            wait_until(lambda: t.count + t.slow_dropped == n, 30, "every message received or counted")
            kept = len(t.df)
            print(f"\n[flood] {n:,} messages at {n / float(seconds):,.0f} msg/s: another cell max "
                  f"{max(cell) * 1000:.1f} ms (median {sorted(cell)[len(cell) // 2] * 1000:.2f} ms, "
                  f"{len(cell)} samples); a snapshot via the loop max {max(snapshot) * 1000:.0f} ms; "
                  f"kept {kept:,}, dropped {t.dropped:,} (slow-consumer {t.slow_dropped:,})")
            assert n / float(seconds) > rate / 2, "the machine is too busy to publish at the rate"
            assert max(cell) < 0.2
            assert kept <= 10_000 and t.dropped == n - kept
        finally:
            connection.close(uid, timeout=2)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_slow_consumer_warns_once_per_interval_with_the_exact_count(uid, monkeypatch, caplog):
    monkeypatch.setattr(tail_mod, "WARN_EVERY", 1.0)
    monkeypatch.setattr(tail_mod, "WARN_AFTER", 0.3)
    monkeypatch.setattr(tail_mod, "WIRE", False)    # client-side drops happen only in nats-py's buffer
    caplog.set_level(logging.WARNING, logger="nbnats")
    with server.start(jetstream=False) as srv:
        nbnats.connect(srv.url, name=uid)
        try:
            t = nbnats.tail(uid, limit=1000, pending_limit=500, connection=uid)  # a tiny client buffer
            n = 150_000
            proc = publisher(srv.url, uid, n, rate=100_000)
            assert int(proc.communicate(timeout=60)[0].split()[0]) == n
            wait_until(lambda: t.count + t.slow_dropped == n, 30, "every message received or counted")
            time.sleep(tail_mod.WARN_EVERY + 0.5)      # the last interval's warning
        finally:
            connection.close(uid, timeout=2)
    warnings = [r for r in caplog.records if "too slow" in r.getMessage()]
    counts = [int(re.search(r"dropped (\d+) messages", r.getMessage()).group(1)) for r in warnings]
    gaps = [b.created - a.created for a, b in zip(warnings, warnings[1:])]
    print(f"\n[slow consumer] {t.slow_dropped:,} dropped by the client, {len(warnings)} warning(s): {counts}")
    assert t.slow_dropped > 1000 and sum(counts) == t.slow_dropped
    assert all(g >= tail_mod.WARN_EVERY * 0.9 for g in gaps)
    assert t.dropped == n - len(t.df) and len(t.df) == 1000
    assert "pending_limit" in warnings[0].getMessage()


# -- 8. large messages: memory stays under the ring's cap --------------------------------------
@pytest.mark.timeout(60)
def test_large_messages_memory_stays_under_the_ring_cap(connected, nats_url, uid):
    limit, size, n = 20, 256 * 1024, 200
    t = nbnats.tail(uid, limit=limit)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        proc = publisher(nats_url, uid, n, size=size)
        proc.communicate(timeout=60)
        t.wait(n, timeout=30)
        current, peak = (m - base for m in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    cap = limit * size
    print(f"\n[large messages] {n} x {size // 1024} KiB into limit={limit}: ring cap {cap / 2**20:.1f} MiB, "
          f"held {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    assert len(t.df) == limit and t.dropped == n - limit
    assert current < cap + 4 * 2**20 and peak < cap + 16 * 2**20


# -- 9. kernel interrupted and restarted ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kernel_interrupt_and_restart_leave_no_orphan(uid):
    from jupyter_client.manager import start_new_kernel
    from test_kernel import _alive, _execute

    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        out, reply = _execute(kc, f"%load_ext nbnats\nimport nbnats\nt = nbnats.tail('{uid}')\n"
                                  "srv = nbnats.runtime.connection._embedded\nprint(srv.pid, srv.log_path.parent)")
        assert reply["status"] == "ok", out
        pid, run_dir = "".join(c["text"] for k, c in out if k == "stream").split()
        pid = int(pid)

        blocking = kc.execute("t.wait(10**9, timeout=60)")   # a blocking nbnats call, interrupted
        time.sleep(1)
        start = time.monotonic()
        km.interrupt_kernel()
        while (reply := kc.get_shell_msg(timeout=10))["parent_header"].get("msg_id") != blocking:
            pass
        stopped = time.monotonic() - start
        assert reply["content"]["ename"] == "KeyboardInterrupt" and stopped < 5 and _alive(pid)
        out, reply = _execute(kc, f"nbnats.publish('{uid}', 'after'); print(t.wait(1, timeout=5).count)")
        assert reply["status"] == "ok" and out[-1][1]["text"].strip() == "1", out

        km.restart_kernel(now=False)                        # a graceful restart: atexit stops the server
        kc.wait_for_ready(timeout=30)
        wait_until(lambda: not _alive(pid), 10, "the old kernel's nats-server exiting")
        from nbnats.runtime import procguard
        assert not (procguard.state_dir() / f"{pid}.json").exists() and not os.path.exists(run_dir)
        out, reply = _execute(kc, "import nbnats, threading; nbnats.publish('x', 'y'); "
                                  "print(nbnats.runtime.connection._embedded.pid)")
        assert reply["status"] == "ok" and int(out[-1][1]["text"]) != pid
        print(f"\n[kernel] a blocking wait interrupted in {stopped:.2f} s; after a restart the old "
              f"server {pid} is gone and its pidfile reaped")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_connect_and_close_cycles_leave_no_thread_or_task(nats_server, uid):
    def threads():
        return sorted(t.name for t in threading.enumerate() if not t.name.startswith("asyncio_"))

    before, tasks = None, loop_tasks()
    for i in range(4):
        name = f"{uid}c{i}"
        nbnats.connect(nats_server.url, name=name)
        t = nbnats.tail(f"{uid}.>", connection=name)
        svc = nbnats.serve(f"{uid}.svc", lambda m: "ok", connection=name)
        assert nbnats.request(f"{uid}.svc", "x", connection=name).text == "ok"
        t.wait(1, timeout=5)
        nbnats.close(name)
        assert not t.running and not svc.running
        before = before or threads()      # after one warm-up cycle
    assert threads() == before
    executor = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
    assert len(executor) <= min(32, (os.cpu_count() or 1) + 4)   # the loop's bounded worker pool
    assert loop_tasks() == tasks


# -- 10. a sync call from the loop thread -----------------------------------------------------------
def test_sync_calls_from_the_loop_thread_fail_fast(connected, uid):
    t = nbnats.tail(uid)
    view = t.widget
    calls = {
        "publish": lambda: nbnats.publish(uid, "x"),
        "request": lambda: nbnats.request(uid, "x", timeout=30),
        "tail": lambda: nbnats.tail(uid),
        "status": lambda: nbnats.status(),
        "t.wait": lambda: t.wait(10, timeout=30),
        "t.stop": lambda: t.stop(),
        "close": lambda: nbnats.close(),
        "connect": lambda: nbnats.connect(connected.url),
        "a widget callback (Stop)": lambda: view.stop_button.click(),
    }

    async def call_all():
        out = {}
        for what, fn in calls.items():
            start = time.monotonic()
            try:
                fn()
                out[what] = (None, time.monotonic() - start)
            except nbnats.LoopThreadError as exc:
                out[what] = (exc, time.monotonic() - start)
        return out

    results = loop.run(call_all(), 60, "sync calls from the loop thread")
    for what, (exc, took) in results.items():
        assert took < 1.0, f"{what} blocked the loop for {took:.1f} s"
        if what != "a widget callback (Stop)":   # ipywidgets reports a callback's error itself
            assert isinstance(exc, nbnats.LoopThreadError), what
            assert "event-loop thread" in str(exc) and " — " in str(exc)
    assert t.running and connected.connected     # nothing half-done
    nbnats.publish(uid, "still fine")
    assert t.wait(1, timeout=5).count == 1
