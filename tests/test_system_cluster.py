"""nbnats.system on a real three-node cluster: every report lists all three servers; a trace crosses a route."""

from __future__ import annotations

import pytest

import nbnats
from nbnats.runtime import connection, server
from nbnats.system.report import server_ls, server_ping, server_report
from nbnats.system.trace import trace

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    with server.start(cluster=3, timeout=30) as srv:
        yield srv


def test_reports_list_every_server(cluster, uid):
    first, last = cluster.nodes[0], cluster.nodes[-1]
    names = sorted(n.name for n in cluster.nodes)
    nbnats.connect(first.url, name=uid)
    other = nbnats.connect(last.url, name=f"{uid}-b", client_name=f"{uid}-reader")
    try:
        ls = server_ls(connection=uid)
        assert ls["name"].tolist() == names and set(ls["cluster"]) == {cluster.cluster_name}
        assert (ls["routes"] >= 2).all()
        assert sorted(server_ping(connection=uid)["server"]) == names

        js = server_report("jetstream", connection=uid)
        assert sorted(js["server"]) == names and js["meta_leader"].sum() == 1

        health = server_report("health", connection=uid)
        assert sorted(health["server"]) == names and set(health["status"]) == {"ok"}

        conns = server_report("connections", connection=uid)
        reader = conns[conns["name"] == f"{uid}-reader"]
        assert reader["server"].tolist() == [last.name]       # found on the node it is connected to

        t = nbnats.tail(f"{uid}.*", connection=f"{uid}-b")
        hops = trace(f"{uid}.x", connection=uid)
        assert {"router"} <= set(hops["kind"]) and set(hops["server"]) == {first.name, last.name}
        assert hops.note.startswith("would be delivered to 1 subscriber") and hops.attrs["complete"]
        t.stop()
    finally:
        connection.close(uid)
        connection.close(other.name)


def test_stream_and_consumer_reports_show_cluster_state(cluster, uid):
    """On R3: the report names the leader and two peers; a stopped peer shows as lagging, then current again."""
    from faultkit import wait_until
    names = sorted(n.name for n in cluster.nodes)
    nbnats.connect(",".join(n.url for n in cluster.nodes), name=uid)
    try:
        stream = f"R{uid}"
        nbnats.add_stream(stream, f"{uid}.>", replicas=3, connection=uid)
        nbnats.add_consumer(stream, "c", durable=True, connection=uid)
        for i in range(20):
            nbnats.publish(f"{uid}.x", {"i": i}, js=True, connection=uid)

        def row():
            rep = nbnats.stream_report(connection=uid)
            return rep[rep["name"] == stream].iloc[0]
        wait_until(lambda: row()["leader"] in names and len(row()["peers"]) == 2 and not row()["lagging"], 20,
                   "an R3 stream with a leader and two current peers")
        r = row()
        assert r["replicas"] == 3 and r["messages"] == 20 and sorted([r["leader"], *r["peers"]]) == names
        assert nbnats.consumer_report(stream, connection=uid)["pending"].tolist() == [20]
        peer = next(n for n in cluster.nodes if n.name == r["peers"][0])
        peer.stop()
        try:
            wait_until(lambda: peer.name in row()["lagging"], 30, "the stopped peer shown as lagging")
        finally:
            peer.start()
        wait_until(lambda: not row()["lagging"], 60, "every peer current again")
    finally:
        nbnats.close(uid)
