"""A stalled server never breaks the client; headers count; every subscription is live after a reconnect.

Real servers only: SIGSTOP/SIGCONT freezes one, a restart on the same port or the
system account's KICK drops the client's connection.
"""

from __future__ import annotations

import os
import signal
import time

import pandas as pd
import pytest

import nbnats
from nbnats.runtime import connection, server, sysaccount

from faultkit import wait_until

STALL = 5.0


@pytest.fixture
def private(uid):
    """A private JetStream server and a connection to it named ``uid``."""
    srv = server.start()
    conn = nbnats.connect(srv.url, name=uid)
    yield srv, conn
    nbnats.stop_all()
    connection.close(uid, timeout=2)
    srv.stop()


def frozen(srv, seconds: float):
    """SIGSTOP the server now; the returned function SIGCONTs it once ``seconds`` have passed."""
    os.kill(srv.pid, signal.SIGSTOP)
    resume_at = time.monotonic() + seconds

    def resume() -> None:
        wait_until(lambda: time.monotonic() >= resume_at, seconds + 1, "the end of the stall")
        os.kill(srv.pid, signal.SIGCONT)
    return resume


def works_again(uid: str, tail, expected: int) -> float:
    """Request, publish (with its flush) and the tail all work; returns the seconds it took."""
    start = time.monotonic()
    assert nbnats.request(f"{uid}.svc", "ping", timeout=1, connection=uid).text == "pong"
    nbnats.publish(f"{uid}.t", {"n": expected}, connection=uid, timeout=1)
    tail.wait(expected, timeout=1)
    return time.monotonic() - start


@pytest.mark.timeout(60)
def test_status_during_a_stall_is_an_nbnats_timeout_and_the_session_recovers(private, uid):
    srv, conn = private
    nbnats.serve(f"{uid}.svc", lambda m: "pong", connection=uid)
    t = nbnats.tail(f"{uid}.t", connection=uid)
    nbnats.publish(f"{uid}.t", {"n": 1}, connection=uid)
    t.wait(1, timeout=5)

    resume = frozen(srv, STALL)
    try:
        with pytest.raises(nbnats.Timeout) as stalled:
            nbnats.status(uid, timeout=1)
        assert "did not answer" in str(stalled.value)
        with pytest.raises(nbnats.Timeout):
            nbnats.status(uid, timeout=1)          # a second one while the first PONG is still owed
    finally:
        resume()
    took = works_again(uid, t, 2)
    assert took < 1.0, took
    assert nbnats.status(uid)["rtt_ms"] >= 0 and conn.connected
    print(f"\n[stall: status] request, publish and tail back {took:.3f} s after the server resumed")


@pytest.mark.timeout(60)
def test_publish_flush_during_a_stall_is_an_nbnats_timeout_and_the_session_recovers(private, uid):
    srv, conn = private
    nbnats.serve(f"{uid}.svc", lambda m: "pong", connection=uid)
    t = nbnats.tail(f"{uid}.t", connection=uid)

    resume = frozen(srv, STALL)
    try:
        with pytest.raises(nbnats.Timeout) as stalled:
            nbnats.publish(f"{uid}.t", {"n": 1}, connection=uid, timeout=1)   # flushes, waits for a PONG
        assert "publish confirmation" in str(stalled.value)
        with pytest.raises(nbnats.Timeout):
            nbnats.request(f"{uid}.svc", "ping", timeout="500ms", connection=uid)
    finally:
        resume()
    took = works_again(uid, t, 2)          # the message sent during the stall arrives too
    assert took < 1.0, took
    assert sorted(t.df["n"].tolist()) == [1, 2]
    print(f"\n[stall: publish] request, publish and tail back {took:.3f} s after the server resumed")


# -- headers count against max_payload ---------------------------------------------------------------
@pytest.mark.timeout(60)
def test_a_batch_answered_during_a_stall_is_a_timeout_and_stays_unanswered(private, uid):
    srv, conn = private
    nbnats.add_stream(f"A{uid}", f"{uid}.a", connection=uid)
    for i in range(200):
        nbnats.publish(f"{uid}.a", {"i": i}, js=True, connection=uid)
    nbnats.add_consumer(f"A{uid}", "work", durable=True, connection=uid)
    b = nbnats.fetch(f"A{uid}", "work", count=200, connection=uid)
    resume = frozen(srv, 2.5)
    try:
        with pytest.raises(nbnats.Timeout, match="did not answer the acknowledgement"):
            b.ack(timeout=1)
        assert len(b.unanswered) == 200         # nothing claimed that was not confirmed
    finally:
        resume()
    wait_until(lambda: conn.connected, 10, "the connection back")
    assert b.ack() == 200 and b.unanswered == []
    assert nbnats.consumer_info(f"A{uid}", "work", connection=uid).num_ack_pending == 0


def test_headers_that_push_a_message_over_max_payload_are_refused_before_sending(uid):
    with server.start(jetstream=False, max_payload=1024) as srv:
        conn = nbnats.connect(srv.url, name=uid)
        try:
            t = nbnats.tail(f"{uid}.>", connection=uid)
            body = b"x" * 1000                                 # fits alone
            with pytest.raises(nbnats.PayloadTooLarge) as refused:
                nbnats.publish(f"{uid}.a", body, headers={"Trace-Id": "t" * 40}, connection=uid)
            text = str(refused.value)
            assert "1,000 of payload" in text and "1,024" in text and "headers" in text
            with pytest.raises(nbnats.PayloadTooLarge):
                nbnats.publish(f"{uid}.a", body, msg_id="m" * 40, connection=uid)
            nbnats.publish(f"{uid}.a", body, connection=uid)   # the connection was never dropped
            t.wait(1, timeout=5)
            assert conn.connected and conn.disconnected_at is None and t.gaps.empty
        finally:
            connection.close(uid)


def test_header_values_with_surrounding_spaces_are_refused_with_a_sentence(connected, uid):
    with pytest.raises(nbnats.InvalidHeader, match="starts or ends with whitespace"):
        nbnats.publish(uid, "x", headers={"Note": " padded "})


# -- every kind of subscription is live after a reconnect -------------------------------------------
def every_kind(uid: str):
    """A core tail, a queue tail, a responder, a stream tail and a KV watch on connection ``uid``."""
    nbnats.add_stream(f"S{uid}", [f"{uid}.js.>"], connection=uid)
    kv = nbnats.kv(f"b{uid}", create=True, connection=uid)
    pieces = {
        "core": nbnats.tail(f"{uid}.core", connection=uid),
        "queue": nbnats.tail(f"{uid}.q", queue="workers", connection=uid),
        "stream": nbnats.tail(f"{uid}.js.>", stream=f"S{uid}", connection=uid),
        "kv": kv.watch(updates_only=True),
    }
    nbnats.serve(f"{uid}.svc", lambda m: "pong", connection=uid)
    return kv, pieces


def all_receive(uid: str, kv, pieces, n: int) -> None:
    nbnats.publish(f"{uid}.core", {"n": n}, connection=uid)
    nbnats.publish(f"{uid}.q", {"n": n}, connection=uid)
    nbnats.publish(f"{uid}.js.x", {"n": n}, js=True, connection=uid)
    kv.put("k", {"n": n})
    for kind, piece in pieces.items():
        piece.wait(n, timeout=10)
        assert piece.running, kind
    assert nbnats.request(f"{uid}.svc", "ping", timeout=5, connection=uid).text == "pong"


@pytest.mark.timeout(90)
def test_every_subscription_kind_is_live_after_a_restart_on_the_same_port(private, uid):
    srv, conn = private
    kv, pieces = every_kind(uid)
    all_receive(uid, kv, pieces, 1)
    port = srv.port
    srv.nodes[0].stop()
    wait_until(lambda: not conn.connected, 5, "the client noticing the stop")
    srv.nodes[0].start()
    assert srv.port == port
    wait_until(lambda: conn.connected, 10, "the client reconnecting")
    all_receive(uid, kv, pieces, 2)


@pytest.mark.timeout(90)
def test_every_subscription_kind_is_live_after_the_server_kicks_the_client(private, uid):
    srv, conn = private
    if server.version_of(srv) < (2, 11, 0):
        pytest.skip("KICK needs nats-server 2.11+")
    kv, pieces = every_kind(uid)
    all_receive(uid, kv, pieces, 1)
    kicked = sysaccount.kick(srv, client_name="nbnats")
    assert kicked >= 1
    wait_until(lambda: conn.disconnected_at is not None or not conn.connected or
               any(not p.gaps.empty for p in pieces.values()), 5, "the client noticing the kick")
    wait_until(lambda: conn.connected, 10, "the client reconnecting")
    all_receive(uid, kv, pieces, 2)


@pytest.mark.timeout(60)
def test_a_server_side_cut_is_a_loss_of_unknown_size_never_an_exact_looking_number(private, uid):
    """The server cutting a core tail's connection loses what was published meanwhile: nobody can count
    it, so the tail says "≥ N, plus 1 outage" (t.loss, the widget), and a stream tail says it lost nothing."""
    srv, conn = private
    if server.version_of(srv) < (2, 11, 0):
        pytest.skip("KICK needs nats-server 2.11+")
    nbnats.add_stream(f"S{uid}", f"{uid}.>", connection=uid)
    core = nbnats.tail(f"{uid}.>", connection=uid)
    stream = nbnats.tail(f"{uid}.>", stream=f"S{uid}", connection=uid)
    nbnats.publish(f"{uid}.a", {"i": 0}, js=True, connection=uid)
    wait_until(lambda: core.count == 1 and stream.count == 1, 5, "both tails receiving")
    assert core.loss == "none" and stream.loss == "none"
    assert sysaccount.kick(srv, client_name="nbnats") >= 1
    wait_until(lambda: len(core.gaps) == 1 and core.gaps["end"].notna().all(), 10, "the outage, over")
    nbnats.publish(f"{uid}.a", {"i": 1}, js=True, connection=uid)
    wait_until(lambda: core.count == 2 and stream.count == 2, 10, "both tails receiving again")
    assert core.outages == 1 and core.loss == "≥ 0, plus 1 outage"
    assert pd.isna(core.gaps["missed"].iloc[0]) and "unknown" in core.gaps["detail"].iloc[0]
    assert "plus 1 outage" in core.widget.header.value and "plus 1 outage" in repr(core)
    assert stream.outages == 0 and stream.loss == "none"
    assert (stream.gaps["missed"] == 0).all()          # an outage, and nothing lost
