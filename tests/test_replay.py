"""Replays against the real bundled nats-server: the frame, filters, nanosecond times, a fixed end
while others publish, WorkQueue/Interest streams left unconsumed, purged starts and gaps, every
reader (and the paths an older server takes), and bad input."""

from __future__ import annotations

import importlib
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest

import nbnats
from nbnats.engine import api as engine_api
from nbnats.engine import bulk as engine_bulk
from nbnats.engine import wire_pull
from nbnats.runtime import connection, loop
from nbnats.errors import InvalidName, InvalidSubject, NatsError, NotFound, ValidationError
from nbnats.jetstream.replay import ReplayWarning, replay

js = nbnats          # the public API: streams and consumers
rp = importlib.import_module("nbnats.jetstream.replay")

pytestmark = pytest.mark.timeout(60)


def make(uid: str, **config) -> str:
    name = f"S{uid}"
    js.add_stream(name, f"{uid}.>", **config)
    return name


@pytest.fixture
def cleanup(connected):
    made = []
    yield made
    for name in made:
        try:
            js.delete_stream(name)
        except NatsError:
            pass


def bulk(subject_of, n: int, payload=lambda i: {"i": i}) -> None:
    """Publish n messages fast (core publishes, flushed), then wait until JetStream stored them."""
    conn = connection.current()

    async def send():
        for i in range(n):
            await conn.nc.publish(subject_of(i), nbnats.data.payload.encode(payload(i)))
        await conn.nc.flush(10)

    loop.run(send(), 30, "publishing")


def wait_stored(stream: str, n: int) -> None:
    deadline = time.monotonic() + 20
    while js.stream_info(stream).messages < n:
        assert time.monotonic() < deadline, "the stream did not store every message"
        time.sleep(0.05)


def test_frame_columns_types_and_exact_times(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    nbnats.publish(f"{uid}.eu", {"id": 1, "customer": {"id": "c1"}, "amount": 9.5}, js=True, headers={"T": "1"})
    nbnats.publish(f"{uid}.us", {"id": 2, "customer": {"id": "c2"}, "amount": 3.0, "seq": "mine"}, js=True)
    nbnats.publish(f"{uid}.us", "plain text", js=True)
    df = replay(s)
    assert list(df.columns[:5]) == ["subject", "time", "seq", "size", "headers"]
    assert str(df["time"].dtype) == "datetime64[ns, UTC]" and str(df["seq"].dtype) == "Int64"
    assert df["seq"].tolist() == [1, 2, 3] and df["customer.id"].tolist()[:2] == ["c1", "c2"]
    assert df["data.seq"].tolist()[1] == "mine" and df["data"].tolist()[2] == "plain text"
    assert df["headers"].tolist() == [{"T": "1"}, None, None]
    for i in range(3):               # the stream's own nanoseconds, not a float's rounding
        assert df["time"].iloc[i].value == js.get_message(s, i + 1).time_ns
    assert df.attrs["reader"] == "consumer" and df.attrs["gaps"] == [] and df.attrs["warnings"] == []
    assert not [c for c in js.consumers(s)["name"] if c.startswith("nbnats_replay")]   # cleaned up


def test_times_match_the_raw_ack_subject(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    nbnats.publish(f"{uid}.x", {"a": 1}, js=True)
    conn = connection.current()

    async def raw():
        sub = await conn.nc.jetstream().pull_subscribe(f"{uid}.x", stream=s)
        msg = (await sub.fetch(1, timeout=5))[0]
        await sub.unsubscribe()
        return int(msg.reply.split(".")[7])

    assert replay(s)["time"].iloc[0].value == loop.run(raw(), 10, "a raw fetch")


def test_filters_subject_sequence_time_and_limit(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    for i in range(12):
        nbnats.publish(f"{uid}.{'eu' if i % 2 else 'us'}.{i}", {"i": i}, js=True)
    assert replay(s, subject=f"{uid}.eu.*")["i"].tolist() == [1, 3, 5, 7, 9, 11]
    assert replay(s, subject=[f"{uid}.eu.1", f"{uid}.us.2"])["i"].tolist() == [1, 2]
    assert replay(s, start_seq=5, end_seq=7)["seq"].tolist() == [5, 6, 7]
    assert replay(s, start_seq=4, limit=2)["seq"].tolist() == [4, 5]
    assert replay(s, subject=f"{uid}.us.*", limit=2, start_seq=3)["i"].tolist() == [2, 4]
    t5, t8 = js.get_message(s, 5).time, js.get_message(s, 8).time
    assert replay(s, since=t5)["seq"].tolist()[0] == 5
    assert replay(s, since=t5.isoformat(), until=t8.isoformat())["seq"].tolist() == [5, 6, 7, 8]
    assert replay(s, until=t8)["seq"].tolist()[-1] == 8
    assert len(replay(s, since="1h")) == 12 and replay(s, since="1h", subject=f"{uid}.eu.*", limit=1)["i"].tolist() == [1]
    with pytest.warns(ReplayWarning, match="asked for seq 100, the stream ends at 12"):
        assert replay(s, start_seq=100).empty        # past the end: an empty frame, and a warning
    assert replay(s, subject=f"{uid}.none").empty    # nothing matches: an empty frame


def test_stops_at_the_last_sequence_of_the_start(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    bulk(lambda i: f"{uid}.x", 3000)
    wait_stored(s, 3000)
    stop = threading.Event()

    def publish_meanwhile():
        while not stop.is_set():
            nbnats.publish(f"{uid}.x", {"late": True})

    t = threading.Thread(target=publish_meanwhile)
    t.start()
    try:
        time.sleep(0.05)
        before = js.stream_info(s).last_seq
        df = replay(s)
        after = js.stream_info(s).last_seq
    finally:
        stop.set()
        t.join(10)
    end = df.attrs["stop_seq"]
    assert before <= end <= after and after > before
    assert df["seq"].tolist() == list(range(1, end + 1))       # complete, in order, nothing past the end


def test_purged_start_and_gaps_said_plainly(cleanup, uid):
    s = make(uid, max_msgs_per_subject=1)
    cleanup.append(s)
    for subject in ("c", "a", "b", "a", "d", "e"):      # seq 2 is replaced by seq 4: a gap inside
        nbnats.publish(f"{uid}.{subject}", {"s": subject}, js=True)
    with pytest.warns(ReplayWarning, match=r"1 message\(s\) inside seq 1–6 are missing .*: seq 2"):
        df = replay(s)
    assert df["seq"].tolist() == [1, 3, 4, 5, 6]
    assert df.attrs["gaps"] == [{"from_seq": 2, "to_seq": 2, "missing": 1}]
    js.purge_stream(s, seq=5)                             # seq 1–4 gone
    with pytest.warns(ReplayWarning, match=r"asked for seq 1, the stream starts at 5"):
        df = replay(s, start_seq=1)
    assert df["seq"].tolist() == [5, 6] and "asked for seq 1, the stream starts at 5" in df.attrs["warnings"][0]
    with pytest.warns(ReplayWarning, match="the stream ends at 6"):
        assert replay(s, start_seq=9).empty
    with warnings.catch_warnings():
        warnings.simplefilter("error")                    # a plain replay of what is there: no warning
        assert replay(s)["seq"].tolist() == [5, 6]
    with pytest.warns(ReplayWarning, match="older messages were purged"):
        replay(s, since="2000-01-01")


def test_empty_stream_is_refused(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    with pytest.raises(NotFound, match=f"stream '{s}' is empty, so there is nothing to replay — publish to it"):
        replay(s)


@pytest.mark.parametrize("retention,direct", [("workqueue", True), ("workqueue", False), ("interest", True),
                                              ("interest", False)])
def test_workqueue_and_interest_streams_are_not_consumed(cleanup, uid, retention, direct):
    s = make(uid, retention=retention, allow_direct=direct)
    cleanup.append(s)
    js.add_consumer(s, "worker", durable=True, filter=f"{uid}.>")
    for i in range(30):
        nbnats.publish(f"{uid}.{'a' if i % 3 else 'b'}", {"i": i}, js=True, headers={"H": str(i)} if i == 4 else None)
    df = replay(s)
    assert df.attrs["reader"] == ("direct" if direct else "get")
    assert df["i"].tolist() == list(range(30)) and df["seq"].tolist() == list(range(1, 31))
    assert df["headers"].iloc[4] == {"H": "4"} and df["headers"].iloc[5] is None
    assert df["time"].iloc[7].value == js.get_message(s, 8).time_ns
    assert replay(s, subject=f"{uid}.b")["i"].tolist() == list(range(0, 30, 3))
    assert replay(s, subject=[f"{uid}.b"], start_seq=5, limit=2)["i"].tolist() == [6, 9]
    assert replay(s, since=js.get_message(s, 20).time)["seq"].tolist() == list(range(20, 31))
    assert replay(s, until=js.get_message(s, 3).time)["seq"].tolist() == [1, 2, 3]
    assert js.stream_info(s).messages == 30 and js.consumer_info(s, "worker").num_pending == 30
    assert list(js.consumers(s)["name"]) == ["worker"]          # the replay made no consumer


def test_older_server_paths(cleanup, uid, monkeypatch):
    s = make(uid)
    w = f"W{uid}"
    js.add_stream(w, f"{uid}w.>", retention="workqueue")
    cleanup += [s, w]
    for i in range(9):
        nbnats.publish(f"{uid}.{'abc'[i % 3]}", {"i": i}, js=True)
        nbnats.publish(f"{uid}w.x", {"i": i}, js=True)
    monkeypatch.setattr(engine_api, "server_version", lambda conn: (2, 9, 0))
    two = replay(s, subject=[f"{uid}.a", f"{uid}.c"])           # 2.9 ignores filter_subjects: filtered here
    assert two["i"].tolist() == [0, 2, 3, 5, 6, 8] and two.attrs["reader"] == "consumer"
    old = replay(w, start_seq=3)                                  # no batched direct get before 2.11
    assert old.attrs["reader"] == "get" and old["i"].tolist() == list(range(2, 9))


def test_many_messages_through_several_pulls(cleanup, uid, monkeypatch):
    monkeypatch.setattr(engine_bulk, "PULL", 300)
    monkeypatch.setattr(engine_bulk, "CHUNK", 128)
    s = make(uid)
    cleanup.append(s)
    bulk(lambda i: f"{uid}.{i % 5}", 5000, payload=lambda i: {"i": i, "text": "x" * (i % 50)})
    wait_stored(s, 5000)
    df = replay(s)
    assert df["i"].tolist() == list(range(5000)) and df["seq"].tolist() == list(range(1, 5001))
    assert replay(s, end_seq=1000)["seq"].iloc[-1] == 1000 and len(replay(s, limit=777)) == 777
    assert replay(s, subject=f"{uid}.3", end_seq=2000)["i"].tolist() == list(range(3, 2000, 5))
    assert not [c for c in js.consumers(s)["name"] if c.startswith("nbnats_replay")]


def test_large_messages_stay_within_the_byte_budget(cleanup, uid, monkeypatch):
    monkeypatch.setattr(engine_bulk, "PULL_BYTES", 1 << 20)
    s = make(uid)
    cleanup.append(s)
    for i in range(24):
        nbnats.publish(f"{uid}.big", {"i": i, "blob": "y" * 200_000}, js=True)
    df = replay(s, timeout=5)
    assert df["i"].tolist() == list(range(24)) and (df["size"] > 200_000).all()


def test_raw_and_custom_decoding(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    nbnats.publish(f"{uid}.x", {"a": 1}, js=True)
    nbnats.publish(f"{uid}.x", b"\x00\xff", js=True)
    assert replay(s, decode=False)["data"].tolist() == [b'{"a":1}', b"\x00\xff"]
    assert replay(s, decode=len)["data"].tolist() == [7, 2]
    with pytest.raises(ValidationError, match="decode must be None, False or a function"):
        replay(s, decode="json")


def test_progress_bar_for_a_terminal(cleanup, uid, capsys):
    s = make(uid)
    cleanup.append(s)
    bulk(lambda i: f"{uid}.x", 2000)
    wait_stored(s, 2000)
    assert len(replay(s, progress=True)) == 2000
    shown = capsys.readouterr()
    assert f"replay {s}" in shown.err
    assert f"replay {s}: 2,000 msg in" in shown.out      # the line a saved notebook keeps (never a bar at 0%)


def test_bad_input(cleanup, uid, monkeypatch):
    s = make(uid)
    cleanup.append(s)
    nbnats.publish(f"{uid}.x", {"a": 1}, js=True)
    cases = [(dict(start_seq=0), ValidationError, "start_seq must be a positive whole number"),
             (dict(limit=-1), ValidationError, "limit must be a positive whole number"),
             (dict(end_seq=1.5), ValidationError, "end_seq must be"),
             (dict(since="last tuesday"), ValidationError, "since 'last tuesday' is not a time — give an ISO time"),
             (dict(since="2026-02-01", until="2026-01-01"), ValidationError, "since is later than until"),
             (dict(start_seq=5, end_seq=2), ValidationError, "start_seq 5 is after end_seq 2"),
             (dict(subject="a..b"), InvalidSubject, "empty token"),
             (dict(subject="orders.>"), ValidationError, f"subject 'orders.>' is outside stream '{s}'")]
    for kw, err, text in cases:
        with pytest.raises(err, match=text):
            replay(s, **kw)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")          # checked before any connection is made
    with pytest.raises(InvalidName, match="try 'A_B'"):
        replay("A B", connection="nowhere")
    with pytest.raises(ValidationError, match="positive whole number"):
        replay("S", start_seq=0, connection="nowhere")


def test_refused_inside_the_loop_thread(cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    nbnats.publish(f"{uid}.x", {"a": 1}, js=True)

    async def inside():
        return replay(s)

    with pytest.raises(nbnats.LoopThreadError):
        loop.run(inside(), 5, "a replay inside the loop")


def test_packed_payloads_read_like_a_list():
    p = rp.Packed()
    for data in (b'{"a": 1}', b"", b"two\nlines"):
        p.add(data)
    p.finish()
    assert list(p) == [b'{"a": 1}', b"", b"two\nlines"] and p[2] == b"two\nlines" and len(p) == 3
    assert p.sizes.tolist() == [8, 0, 9] and list(p.select(np.array([True, False, True]))) == [b'{"a": 1}', b"two\nlines"]
    df = nbnats.data.frames.build(["s"] * 3, [0, 1, 2], p)          # the frame builder reads it as payloads
    assert df["a"].tolist()[0] == 1 and df["data"].tolist()[1:] == ["", "two\nlines"]
    assert engine_bulk._rfc_ns("2026-01-01T00:00:00.000000007Z", {}) == 1767225600000000007


def test_replay_magic(ip, cleanup, uid):
    s = make(uid)
    cleanup.append(s)
    for i in range(5):
        nbnats.publish(f"{uid}.{'ab'[i % 2]}", {"i": i}, js=True)
    ip.run_cell(f"df = %nats replay {s} --subject {uid}.a,{uid}.b --start-seq 2 --limit 3 --since 1h")
    assert ip.user_ns["df"]["i"].tolist() == [1, 2, 3]
    ip.run_cell(f"df = %nats replay {s} --end-seq 2 --raw")
    assert ip.user_ns["df"]["data"].tolist() == [b'{"i":0}', b'{"i":1}']
    result = ip.run_cell(f"%nats replay {s} --start-seq 0")
    assert isinstance(result.error_in_exec, ValidationError)


def test_a_client_side_drop_is_an_error_not_a_hole(cleanup, uid, monkeypatch):
    s = make(uid)
    cleanup.append(s)
    bulk(lambda i: f"{uid}.x", 3000)
    wait_stored(s, 3000)
    real = engine_bulk._subscribe

    async def tiny(conn, inbox, cb, limit, done):      # a pending limit far below what is in flight
        return await real(conn, inbox, cb, 5, done)

    monkeypatch.setattr(engine_bulk, "_subscribe", tiny)
    monkeypatch.setattr(engine_bulk, "WIRE", False)          # the nats-py path (the fallback) is the one that can drop
    with pytest.raises(nbnats.JetStreamError, match="fell behind and the client dropped .* — run it again"):
        replay(s)
    monkeypatch.undo()
    assert len(replay(s)) == 3000
    assert not [c for c in js.consumers(s)["name"] if c.startswith("nbnats_replay")]


def test_time_range_after_the_last_message_is_empty_on_every_reader(cleanup, uid):
    for retention, direct in (("limits", True), ("workqueue", True), ("workqueue", False)):
        s = f"T{retention[0]}{int(direct)}{uid}"
        js.add_stream(s, f"{uid}{retention[0]}{int(direct)}.>", retention=retention, allow_direct=direct)
        cleanup.append(s)
        nbnats.publish(f"{uid}{retention[0]}{int(direct)}.x", {"a": 1}, js=True)
        later = pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=5)
        start = time.monotonic()
        df = replay(s, since=later, timeout=3)
        assert df.empty and time.monotonic() - start < 2.5, (retention, direct)


@pytest.mark.parametrize("transport", ["wire", "nats-py"])
def test_a_no_messages_answer_mid_read_is_not_the_end(cleanup, uid, monkeypatch, transport):
    """A 404 "no messages" before the sequence fixed at the start (seen on ~10M-message streams) is not the
    end: the replay asks the stream what really comes next and reads on. Sequences it reports missing are
    really absent (a direct get proves each one)."""
    s = make(uid)
    cleanup.append(s)
    bulk(lambda i: f"{uid}.x", 3000)
    wait_stored(s, 3000)
    for seq in (1200, 1201, 2500):                      # three really absent sequences
        conn = connection.current()
        loop.run(engine_api.request(conn, f"STREAM.MSG.DELETE.{s}", {"seq": seq, "no_erase": True},
                                    what="deleting a message"), 5, "deleting a message")
    owner = wire_pull if transport == "wire" else engine_bulk
    real, cuts = getattr(owner, "consume" if transport == "wire" else "_consume"), []

    async def cut_short(conn, *args):
        # the server's "no messages" after a third of what is left: what the 10M-message reads saw
        plan, sink, start = args[-5:-2]
        if len(cuts) < 3:
            stop, plan.stop = plan.stop, min(plan.stop, start + 700)
            try:
                await real(conn, *args)
            finally:
                plan.stop = stop
            cuts.append(sink.last_seq)
            return "short"
        return await real(conn, *args)

    monkeypatch.setattr(owner, "consume" if transport == "wire" else "_consume", cut_short)
    monkeypatch.setattr(engine_bulk, "WIRE", transport == "wire")
    monkeypatch.setattr(engine_bulk, "PULL", 200)        # small pulls and chunks: the cut lands mid-read
    monkeypatch.setattr(engine_bulk, "CHUNK", 50)
    with pytest.warns(nbnats.ReplayWarning, match="3 message"):
        df = replay(s, progress=False)
    assert len(cuts) == 3 and len(df) == 2997
    assert df["seq"].tolist() == [q for q in range(1, 3001) if q not in (1200, 1201, 2500)]
    missing = [q for g in df.attrs["gaps"] for q in range(g["from_seq"], g["to_seq"] + 1)]
    assert missing == [1200, 1201, 2500]
    for seq in missing:
        with pytest.raises(nbnats.NotFound):
            nbnats.get_message(s, seq)
