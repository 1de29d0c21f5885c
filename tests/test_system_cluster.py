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
