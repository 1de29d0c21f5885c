"""Tails: the ring bound, exact drop counts, background receiving, the live widget."""

import subprocess
import sys
import time

import pytest

import nbnats
from nbnats.runtime import loop
import nbnats.tail
tail_mod = sys.modules["nbnats.tail"]
from faultkit import wait_until


def _publish_from_another_process(url, subject, n, size=100):
    code = f"""
import asyncio, nats
async def main():
    nc = await nats.connect({url!r})
    body = b"x" * {size}
    for i in range({n}):
        await nc.publish({subject!r}, body)
    await nc.flush(10)
    await nc.close()
asyncio.run(main())
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_ring_keeps_the_newest_rows_and_counts_the_rest(connected, uid):
    t = nbnats.tail(uid, limit=100)
    for i in range(250):
        nbnats.publish(uid, {"i": i})
    t.wait(250, timeout=10)
    df = t.df
    assert len(df) == 100 and df["i"].tolist() == list(range(150, 250))
    assert t.count == 250 and t.dropped == 150 and t.overflow == 150


def test_count_stops_the_tail(connected, uid):
    t = nbnats.tail(uid, count=3)
    nbnats.publish(uid, "x", count=10)
    t.wait(timeout=5)
    time.sleep(0.2)
    assert not t.running and t.count == 3 and len(t.df) == 3


def test_keeps_receiving_while_the_main_thread_is_busy(connected, nats_url, uid):
    t = nbnats.tail(uid, limit=1_000_000)
    proc = subprocess.Popen([sys.executable, "-c", f"""
import asyncio, nats
async def main():
    nc = await nats.connect({nats_url!r})
    for i in range(50_000):
        await nc.publish({uid!r}, b'{{"i": %d}}' % i)
    await nc.flush(10)
    await nc.close()
asyncio.run(main())
"""])
    time.sleep(3)            # the notebook's main thread blocks, as a long cell would
    proc.wait(30)
    t.wait(50_000, timeout=20)
    assert t.count == 50_000 and t.dropped == 0
    assert t.df["i"].tolist() == list(range(50_000))


@pytest.mark.parametrize("transport", ["nats-py", "wire"])
def test_slow_consumer_drops_are_counted_exactly(connected, uid, monkeypatch, transport):
    """Through nats-py a tiny client buffer drops, and every drop is counted; a tail on its own
    connection has no client buffer to overflow (the socket and the server hold what it has not read)."""
    monkeypatch.setattr(tail_mod, "WIRE", transport == "wire")
    t = nbnats.tail(uid, limit=1000, pending_limit=10)     # a tiny client buffer, to force drops
    assert t.transport == transport

    async def block_loop():
        time.sleep(0.5)                      # hold the loop while messages arrive

    def flood():
        async def send():
            for _ in range(500):
                await connected.nc.publish(uid, b"x")
            await block_loop()
        return send()

    nbnats.publish(uid, "warm")
    t.wait(1, timeout=5)
    loop.run(flood(), 10, "flood")
    if transport == "wire":
        wait_until(lambda: t.count == 501, 10, "every message of the flood")
        assert t.slow_dropped == 0 and t.dropped == 0 and t.loss == "none"
        return
    time.sleep(0.5)
    assert t.slow_dropped > 0
    assert t.count + t.slow_dropped == 501
    assert t.dropped == t.slow_dropped + t.overflow


def test_stream_tail_reads_through_jetstream_with_seq(connected, uid):
    stream = f"S{uid}"

    async def add():
        await connected.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.>"])

    loop.run(add(), 10, "adding a stream")
    nbnats.publish(f"{uid}.old", "before", js=True)        # not shown: the tail starts from now
    t = nbnats.tail(f"{uid}.>", stream=stream)
    for i in range(5):
        nbnats.publish(f"{uid}.new", {"i": i}, js=True)
    df = t.wait(5, timeout=10).df
    assert df["seq"].tolist() == [2, 3, 4, 5, 6]
    assert df["i"].tolist() == list(range(5))
    assert df["time"].is_monotonic_increasing


def test_stream_tail_unknown_stream(connected, uid):
    with pytest.raises(nbnats.NotFound, match=f"stream 'NOPE{uid}' does not exist"):
        nbnats.tail(f"{uid}.>", stream=f"NOPE{uid}")


def test_bad_arguments(connected, uid):
    with pytest.raises(nbnats.InvalidSubject):
        nbnats.tail(f"{uid}.>.x")
    with pytest.raises(nbnats.NatsError, match="limit must be"):
        nbnats.tail(uid, limit=0)


def test_close_drains_messages_in_flight(nats_server, uid):
    nbnats.connect(nats_server.url)
    t = nbnats.tail(uid, limit=100_000)
    nbnats.publish(uid, "x", count=20_000)
    start = time.monotonic()
    nbnats.close()
    assert time.monotonic() - start < 5
    assert t.count == 20_000 and not t.running


def test_widget_state_updates_at_most_ten_times_a_second(connected, uid):
    t = nbnats.tail(uid)
    view = t.widget
    nbnats.publish(uid, {"n": 1})
    t.wait(1, timeout=5)
    time.sleep(0.3)
    assert f"<b>{uid}</b>" in view.header.value and "1 received" in view.header.value
    assert "n" in view.table.columns and view.table.frame["n"].tolist() == [1]      # the payload's field

    before = view.renders
    start = time.monotonic()
    for _ in range(20):
        nbnats.publish(uid, "burst", count=500)
        time.sleep(0.05)
    elapsed = time.monotonic() - start + 0.2
    time.sleep(0.2)
    assert view.renders - before <= elapsed * 10 + 2
    assert "10,001 received" in view.header.value

    view.pause.value = True
    nbnats.publish(uid, "while paused", count=3)
    t.wait(10_004, timeout=5)
    time.sleep(0.3)
    assert "paused" in view.header.value and "while paused" not in view.rows.value
    view.pause.value = False
    time.sleep(0.3)
    assert "while paused" in view.rows.value

    view.filter.value = f"{uid}.nothing"
    time.sleep(0.3)
    assert "<tbody></tbody>" in view.rows.value

    view.clear_button.click()
    time.sleep(0.3)
    assert len(t.df) == 0 and t.count == 10_004

    view.stop_button.click()
    assert not t.running


def test_rate_and_plot(connected, uid):
    t = nbnats.tail(uid)
    for _ in range(6):
        nbnats.publish(uid, "x", count=100)
        time.sleep(0.25)
    t.wait(600, timeout=5)
    assert t.rate > 0
    fig = t.plot()
    assert len(fig.data) == 1 and max(fig.data[0].y) > 0


def test_tails_listing_and_stop_by_id(connected, uid):
    t = nbnats.tail(uid)
    listing = nbnats.tails()
    assert t.id in listing["id"].tolist()
    nbnats.stop(t.id)
    assert not t.running
    with pytest.raises(nbnats.NotFound):
        nbnats.stop("t99999")



def test_filtered_stream_tail_reports_no_false_gaps(connected, uid):
    stream = f"F{uid}"

    async def add():
        await connected.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.>"])

    loop.run(add(), 10, "adding a stream")
    t = nbnats.tail(f"{uid}.eu", stream=stream)      # reads one subject of the stream
    for i in range(6):
        nbnats.publish(f"{uid}.{'eu' if i % 2 else 'us'}", {"i": i}, js=True)
    df = t.wait(3, timeout=10).df
    assert df["seq"].tolist() == [2, 4, 6]           # stream sequences skip the other subject
    assert (t.gaps["kind"] == "sequence").sum() == 0


@pytest.mark.timeout(60)
def test_stream_tail_starts_over_on_a_recreated_stream(connected, uid):
    """A stream deleted and added again: its new seq 1… are kept (not taken for redeliveries), and said."""
    from faultkit import wait_until

    stream = f"R{uid}"
    nbnats.add_stream(stream, f"{uid}.>")
    try:
        t = nbnats.tail(f"{uid}.>", stream=stream)
        for i in range(30):
            nbnats.publish(f"{uid}.old", {"i": i}, js=True)
        t.wait(30, timeout=10)
        nbnats.delete_stream(stream)
        nbnats.add_stream(stream, f"{uid}.>")
        for i in range(50):
            nbnats.publish(f"{uid}.new", {"i": i}, js=True)
        wait_until(lambda: t.count == 80, 20, "the tail reading the new stream")
        df = t.df
        new = df[df["subject"] == f"{uid}.new"]
        assert new["i"].tolist() == list(range(50)) and new["seq"].tolist() == list(range(1, 51))
        assert "recreated" in t.gaps["kind"].tolist()
        t.stop()
    finally:
        nbnats.delete_stream(stream)


def test_a_tail_takes_a_list_of_subjects(connected, uid):
    from faultkit import wait_until
    t = nbnats.tail([f"{uid}.orders.>", f"{uid}.payments.>"])
    assert t.subjects == [f"{uid}.orders.>", f"{uid}.payments.>"] and "payments" in repr(t)
    for s in ("orders.new", "payments.done", "other.x"):
        nbnats.publish(f"{uid}.{s}", {"s": s})
    wait_until(lambda: t.count == 2, 5, "both subjects received")
    assert sorted(t.df["s"]) == ["orders.new", "payments.done"]
    t.stop()
    assert not t.running
    stream = f"L{uid}"
    nbnats.add_stream(stream, [f"{uid}.a.>", f"{uid}.b.>", f"{uid}.c.>"])
    try:
        st = nbnats.tail([f"{uid}.a.>", f"{uid}.b.>"], stream=stream)
        for s in ("a.1", "c.1", "b.1"):
            nbnats.publish(f"{uid}.{s}", {"s": s}, js=True)
        wait_until(lambda: st.count == 2, 5, "the stream tail's two subjects")
        assert st.df["s"].tolist() == ["a.1", "b.1"] and st.df["seq"].tolist() == [1, 3]
        assert st.gaps.empty                      # a filtered stream tail reports no false gap
        st.stop()
    finally:
        nbnats.delete_stream(stream)
    for bad in ([], "", [f"{uid}.ok", "a..b"], 5):
        with pytest.raises(nbnats.ValidationError):
            nbnats.tail(bad)


def test_a_catch_all_tail_reads_server_messages_with_an_empty_reply(connected, uid):
    """The server writes some messages (JetStream advisories) with an empty reply field, as two spaces:
    a tail on '>' reads them like any other, with no outage."""
    t = nbnats.tail(">", limit=10_000)
    assert t.transport == "wire"
    nbnats.add_stream(f"A{uid}", f"{uid}.>")
    try:
        wait_until(lambda: any(s.startswith("$JS.EVENT.ADVISORY.") for s in t.df["subject"]), 10,
                   "a JetStream advisory in the tail")
        nbnats.publish(f"{uid}.after", "x")
        wait_until(lambda: f"{uid}.after" in set(t.df["subject"]), 5, "the tail still receiving")
        assert t.outages == 0 and t.loss == "none"
    finally:
        t.stop()
        nbnats.delete_stream(f"A{uid}")
