"""A local three-node JetStream cluster: failover, a restarted node catching up, lame duck mode.

One cluster serves the module (nodes are stopped and restarted, never left down);
each test prints what was lost.
"""

from __future__ import annotations

import importlib
import os
import signal
import threading
import time

import pytest

import nbnats
from nbnats.runtime import connection, loop, server

from faultkit import lost, wait_until

kv_mod = importlib.import_module("nbnats.kv.bucket")

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Three routed JetStream nodes; lame duck mode shortened so a test can watch it."""
    conf = tmp_path_factory.mktemp("cluster") / "lame-duck.conf"
    conf.write_text('lame_duck_duration: "30s"\nlame_duck_grace_period: "1s"\n')
    with server.start(cluster=3, extra_args=["-c", str(conf)], timeout=30) as srv:
        yield srv


@pytest.fixture
def conn(cluster, uid):
    """A connection named ``uid`` to the whole cluster (the URL list), every node up."""
    for node in cluster.nodes:
        node.start(timeout=20)
    c = nbnats.connect(cluster.url, name=uid)
    yield c
    connection.close(uid, timeout=2)          # its tails stop with it


def node_named(cluster, name):
    return next(n for n in cluster.nodes if n.name == name)


def stream_leader(conn, stream: str) -> str:
    async def info():
        return (await conn.nc.jetstream().stream_info(stream)).cluster.leader
    return loop.run(info(), 10, f"the leader of {stream}")


def stored_on(node, stream: str) -> int:
    """Messages of ``stream`` held by this very node (its monitoring endpoint, not the leader's)."""
    jsz = server._get_json(node._monitor("jsz?streams=true"), 2.0)
    for account in jsz.get("account_details") or []:
        for s in account.get("stream_detail") or []:
            if s["name"] == stream:
                return s["state"]["messages"]
    return 0


def replay_all(conn, stream: str) -> list[int]:
    """Every message of the stream, read back with nbnats's replay."""
    replay = importlib.import_module("nbnats.jetstream.replay").replay
    return replay(stream, connection=conn.name, progress=False)["i"].tolist()


def test_cluster_from_the_magics(ip, cluster, uid):
    srv = ip.run_line_magic("nats", "server start --cluster 3")
    try:
        assert len(srv.nodes) == 3 and nbnats.status()["url"] in srv.url
        info = ip.run_line_magic("nats", "server info")
        assert [n["running"] for n in info["nodes"]] == [True] * 3
        assert info["meta_leader"] in {n.name for n in srv.nodes} and info["jetstream"]["cluster_size"] == 3
        conn = ip.run_line_magic("nats", f"connect {cluster.url} --name {uid}")   # a URL list
        assert conn.connected and nbnats.status(uid)["server_name"] in {n.name for n in cluster.nodes}
        nbnats.close(uid)
    finally:
        ip.run_line_magic("nats", "server stop")
    assert not srv.running


def test_r3_stream_keeps_every_ack_across_a_stopped_leader(cluster, conn, uid):
    stream = f"R{uid}"

    async def add():
        await conn.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.>"], num_replicas=3)
    loop.run(add(), 20, "adding an R3 stream")
    t = nbnats.tail(f"{uid}.>", stream=stream, connection=conn.name)
    leader = stream_leader(conn, stream)
    node = node_named(cluster, leader)
    node.stop()                                            # the stream's leader goes down

    start = time.monotonic()
    acks = [nbnats.publish(f"{uid}.x", {"i": i}, js=True, msg_id=f"{uid}-{i}", timeout=15,
                           connection=conn.name) for i in range(1000)]
    took = time.monotonic() - start
    assert sorted(a.seq for a in acks) == list(range(1, 1001)) and not any(a.duplicate for a in acks)
    new_leader = stream_leader(conn, stream)
    assert new_leader != leader

    node.start(timeout=20)
    caught_up = wait_until(lambda: stored_on(node, stream) == 1000, 30, "the restarted node catching up")
    got = replay_all(conn, stream)
    assert not lost("R3 stream, node stopped", range(1000), got, acked_in_s=round(took, 2),
                    leader=f"{leader}->{new_leader}", restarted_node_caught_up_s=round(caught_up, 2))
    assert sorted(got) == list(range(1000)) and len(got) == 1000
    t.wait(1000, timeout=20)
    assert t.df["seq"].tolist() == list(range(1, 1001))    # the tail kept going across the leader change


def test_kv_editor_keeps_following_across_a_leader_change(cluster, conn, uid):
    bucket = f"b{uid}"
    kv = kv_mod.kv(bucket, create=True, replicas=3, connection=conn.name)
    editor = kv.editor()
    kv.put("before", 1)
    wait_until(lambda: "before" in editor.all_keys(), 10, "the editor showing a key")
    node = node_named(cluster, stream_leader(conn, f"KV_{bucket}"))
    node.stop()
    start = time.monotonic()
    revision = None
    while revision is None:              # a put during the election may be refused: say so, then retry
        try:
            revision = kv.put("during", {"n": 2})
        except nbnats.NatsError as exc:
            print(f"\n[kv put during election] {exc}")
            assert time.monotonic() - start < 15
            time.sleep(0.25)
    put_s = time.monotonic() - start
    shown = wait_until(lambda: "during" in editor.all_keys(), 15, "the editor following a change")
    node.start(timeout=20)
    kv.put("after", 3)
    wait_until(lambda: "after" in editor.all_keys(), 15, "the editor following after the restart")
    assert kv.get("during").value == {"n": 2} and editor.error is None
    assert not lost("KV editor, leader change", ["before", "during", "after"], editor.all_keys(),
                    put_s=round(put_s, 2), shown_after_s=round(shown, 2))


def test_lame_duck_moves_the_client_without_losing_a_tail(cluster, conn, uid):
    stream = f"L{uid}"

    async def add():
        await conn.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.js"], num_replicas=3)
    loop.run(add(), 20, "adding an R3 stream")
    core = nbnats.tail(f"{uid}.core", connection=conn.name)
    durable = nbnats.tail(f"{uid}.js", stream=stream, connection=conn.name)
    here = conn.nc.connected_url.netloc
    node = next(n for n in cluster.nodes if n.url.endswith(here))
    other = next(n for n in cluster.nodes if n is not node)
    nbnats.connect(other.url, name=f"{uid}pub")         # the publisher stays on another node
    sent, failed = [], []
    stop = threading.Event()

    def publish():
        i = 0
        try:
            while not stop.is_set():
                nbnats.publish(f"{uid}.core", {"i": i}, connection=f"{uid}pub")
                nbnats.publish(f"{uid}.js", {"i": i}, js=True, msg_id=f"{uid}-{i}", timeout=15,
                               connection=f"{uid}pub")
                sent.append(i)
                i += 1
                time.sleep(0.01)
        except Exception as exc:            # reported by the test, not lost in a thread
            failed.append(exc)

    worker = threading.Thread(target=publish)
    worker.start()
    signalled = False
    try:
        time.sleep(1)
        os.kill(node.pid, signal.SIGUSR2)                  # lame duck: it closes its clients, then exits
        signalled = True
        moved = wait_until(lambda: conn.connected and not conn.nc.connected_url.netloc.endswith(here),
                           20, "the client moving to another node")
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(30)
    try:
        assert not failed, f"publishing failed during the lame-duck switch: {failed[0]}"
        n = len(sent)
        durable.wait(n, timeout=15)
        core.wait(n - 50, timeout=5)
        core_ids = core.df["i"].tolist()
        missed = sorted(set(range(n)) - set(core_ids))
        print(f"\n[lame duck] moved off {node.name} in {moved:.2f} s; core tail missed {len(missed)} "
              f"message(s) published during the switch (core NATS is at-most-once)")
        assert not lost("lame duck, stream tail", range(n), durable.df["i"].tolist())
        assert durable.df["seq"].tolist() == list(range(1, n + 1))
        assert core.running and durable.running
        assert set(range(n - 50, n)) <= set(core_ids), "the core tail stopped receiving after the move"
        assert len(missed) < 20
    finally:
        nbnats.close(f"{uid}pub")
        if signalled:
            wait_until(lambda: not node.running, 40, "the lame-duck node exiting")
        node.stop()
        node.start(timeout=20)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quorum_loss_is_said_as_no_leader(cluster, conn, uid):
    """Two of three nodes stopped: every JetStream call says "no leader", never "no stream" or "JetStream off"."""
    stream, bucket = f"Q{uid}", f"q{uid}"
    nbnats.add_stream(stream, f"{uid}.>", replicas=3, connection=conn.name)
    nbnats.publish(f"{uid}.x", {"i": 0}, js=True, connection=conn.name)
    kv = nbnats.kv(bucket, create=True, replicas=3, connection=conn.name)
    kv.put("k", "v")
    survivor = cluster.nodes[0]
    stopped = [n for n in cluster.nodes if n is not survivor]
    nbnats.connect(survivor.url, name=f"{uid}s")       # a client of the node left standing
    try:
        for node in stopped:
            node.stop()

        said = {}
        calls = {
            "publish": lambda: nbnats.publish(f"{uid}.x", {"i": 1}, js=True, timeout=3, connection=f"{uid}s"),
            "stream_info": lambda: nbnats.stream_info(stream, connection=f"{uid}s"),
            "replay": lambda: nbnats.replay(stream, timeout=2, progress=False, connection=f"{uid}s"),
            "kv.put": lambda: nbnats.kv(bucket, connection=f"{uid}s").put("k", "w"),
        }
        for name, call in calls.items():
            try:
                call()
            except nbnats.NatsError as err:
                said[name] = str(err)
            else:
                said[name] = "(it worked)"
        print(f"\n[quorum loss] {said}")
        for name in ("publish", "kv.put"):          # writes need a quorum: they must fail, and say why
            assert said[name] != "(it worked)", (name, said[name])
        for name, text in said.items():             # a read a stale leader still answers is fine; a failure
            if text == "(it worked)":               # must say what is true
                continue
            assert "no leader" in text or "did not answer" in text, (name, text)
            assert "no JetStream stream stores" not in text and "not enabled" not in text, (name, text)
    finally:
        for node in stopped:
            node.start(timeout=20)
        connection.close(f"{uid}s", timeout=2)
