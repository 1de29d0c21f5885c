"""nbnats.system on the session's real server: reports, checks, rtt, bench, trace, and their bad input."""

from __future__ import annotations

import types

import pandas as pd
import plotly.graph_objects as go
import pytest

import nbnats
from nbnats.engine import api
from nbnats.errors import PayloadTooLarge, PermissionDenied, ValidationError, JetStreamError
from nbnats.runtime import connection, server
from nbnats.system import bench as bench_mod
from nbnats.system.bench import bench
from nbnats.system.report import rtt, server_check, server_ls, server_ping, server_report
from nbnats.system.trace import trace

from conftest import run_cell
from faultkit import wait_until

pytestmark = pytest.mark.timeout(120)


def _parquet_roundtrip(df, tmp_path, name):
    path = tmp_path / f"{name}.parquet"
    df.to_parquet(path)
    back = pd.read_parquet(path)
    assert list(back.columns) == list(df.columns) and len(back) == len(df)


def test_reports_of_the_bundled_server(connected, uid, tmp_path, nats_server):
    nbnats.add_stream(uid, f"{uid}.>")
    try:
        conns = server_report("connections")
        mine = conns[conns["name"] == "nbnats"]
        assert len(mine) >= 1 and set(mine["account"]) == {"NBNATS"}
        assert "nbnats-system" not in set(conns["name"].dropna())      # the report's own client is left out
        assert conns["cid"].dtype == "Int64" and conns["uptime"].dtype.kind == "m"

        js = server_report("jetstream")
        assert list(js["server"]) == [nats_server.nodes[0].name]
        assert js["streams"].iloc[0] >= 1 and js["meta_leader"].dtype == "boolean"

        accounts = server_report("accounts")
        assert accounts.set_index("account").loc["NBNATS", "connections"] >= 1

        health = server_report("health")
        assert health["status"].tolist() == ["ok"] and health["status_code"].tolist() == [200]
        for name, df in (("connections", conns), ("jetstream", js), ("accounts", accounts), ("health", health)):
            _parquet_roundtrip(df, tmp_path, name)
    finally:
        nbnats.delete_stream(uid)


def test_ls_ping_and_rtt(connected, nats_server, tmp_path):
    ls = server_ls()
    assert ls["name"].tolist() == [nats_server.nodes[0].name]
    assert ls["version"].iloc[0] == ".".join(map(str, api.server_version(connected)))
    assert ls["connections"].iloc[0] >= 1 and ls["uptime"].iloc[0] > pd.Timedelta(0) and ls["jetstream"].iloc[0]
    _parquet_roundtrip(ls, tmp_path, "ls")

    ping = server_ping()
    assert ping["server"].tolist() == [nats_server.nodes[0].name] and (ping["rtt_ms"] > 0).all()
    assert ping.attrs["replies"] == ping.attrs["expected"] == 1

    samples = rtt(4)
    assert samples["sample"].tolist() == [1, 2, 3, 4] and (samples["rtt_ms"] > 0).all()


def test_checks(connected, uid):
    conn_check = server_check("connection")
    assert conn_check["check"].tolist() == ["connect", "rtt", "request"]
    assert set(conn_check["status"]) == {"OK"} and conn_check.attrs["status"] == "OK"
    strict = server_check("connection", rtt_warn="0s", rtt_critical="1h")   # any round trip is over 0 s
    assert strict.set_index("check").loc["rtt", "status"] == "WARNING" and strict.attrs["status"] == "WARNING"

    nbnats.add_stream(uid, f"{uid}.>")
    try:
        js = server_check("jetstream", streams_warn=0)
        rows = js.set_index("check")
        assert rows.loc["memory", "status"] == "OK" and "no limit" in rows.loc["storage", "reason"]
        assert rows.loc["streams", "value"] >= 1
    finally:
        nbnats.delete_stream(uid)

    with pytest.raises(ValidationError, match="did you mean 'jetstream'"):
        server_check("jetstrem")
    with pytest.raises(ValidationError, match="no threshold 'rtt_warm'"):
        server_check("connection", rtt_warm="1s")
    with pytest.raises(ValidationError, match="did you mean 'health'"):
        server_report("helth")


@pytest.mark.parametrize("kind", ["pub", "sub", "req", "js"])
def test_bench_kinds(connected, uid, kind, tmp_path):
    before = set(nbnats.streams()["name"]) if kind == "js" else set()
    r = bench(kind, f"{uid}.{kind}", msgs=600, size=32, clients=2)
    assert isinstance(r, pd.DataFrame) and r["client"].iloc[-1] == "all"
    total = r.iloc[-1]
    expected = 1200 if kind == "sub" else 600          # each of the 2 readers gets every message
    assert total["msgs"] == expected and total["bytes"] == expected * 32 and total["msgs_per_s"] > 0
    if kind in ("req", "js"):
        assert 0 < total["p50_ms"] <= total["p90_ms"] <= total["p99_ms"]
    else:
        assert r["p50_ms"].isna().all()
    assert kind in r.note and "msgs/s" in r.note
    assert isinstance(r.figure, go.Figure)
    _parquet_roundtrip(r, tmp_path, kind)
    if kind == "js":
        assert set(nbnats.streams()["name"]) == before                    # its stream is gone again
    assert not [c for c in connection.connections() if "bench" in c]   # its connections were never listed


def test_bench_bad_input(connected, uid):
    big = connected.max_payload + 1
    with pytest.raises(PayloadTooLarge, match="over the server's max_payload"):
        bench("pub", f"{uid}.x", msgs=10, size=big)
    with pytest.raises(ValidationError, match="msgs=0 is not a number"):
        bench("pub", f"{uid}.x", msgs=0)
    with pytest.raises(ValidationError, match="clients=1000 is not a number"):
        bench("pub", f"{uid}.x", msgs=10, clients=1000)
    with pytest.raises(ValidationError, match="fewer than one message to each of 4 clients"):
        bench("req", f"{uid}.x", msgs=2, clients=4)
    with pytest.raises(ValidationError, match="no kind 'kv'"):
        bench("kv", f"{uid}.x")
    with pytest.raises(ValidationError, match="wildcards"):
        bench("pub", f"{uid}.>")
    assert bench_mod._shares(10, 3) == [4, 3, 3]


def test_trace_to_a_subscriber_and_to_nobody(connected, uid, tmp_path):
    t = nbnats.tail(f"{uid}.*")
    hops = trace(f"{uid}.new", {"id": 1})
    assert hops["type"].tolist()[0] == "ingress" and hops["kind"].iloc[0] == "client"
    egress = hops[hops["type"] == "egress"]
    assert egress["kind"].tolist() == ["client"] and egress["subject"].tolist() == [f"{uid}.*"]
    assert hops.note.startswith("would be delivered to 1 subscriber") and t.count == 0   # traced only
    assert isinstance(hops.figure, go.Figure)
    _parquet_roundtrip(hops, tmp_path, "trace")

    delivered = trace(f"{uid}.new", b"hello", deliver=True)
    assert delivered.note.startswith("delivered to 1 subscriber")
    wait_until(lambda: t.count == 1, 5, "the delivered traced message")

    nobody = trace(f"{uid}x.none")
    assert nobody["type"].tolist() == ["ingress"] and nobody.note == "no subscriber received it"
    assert "no subscriber received it" in nobody._repr_html_() and "no subscriber received it" in repr(nobody)


def test_trace_refuses_an_older_server():
    old = types.SimpleNamespace(nc=types.SimpleNamespace(
        connected_server_version=types.SimpleNamespace(major=2, minor=10, patch=7)))
    with pytest.raises(JetStreamError, match=r"trace needs nats-server 2\.11\+ \(this one is 2\.10\.7\)"):
        api.needs(old, (2, 11), "trace")


@pytest.fixture(scope="module")
def own_config_server(tmp_path_factory):
    """A server on its own configuration: a system account only the test knows, and an open global account."""
    conf = tmp_path_factory.mktemp("sysconf") / "server.conf"
    conf.write_text('accounts { APP: { users: [ {user: app, password: app-pw} ] }\n'
                    '  SYS: { users: [ {user: admin, password: admin-pw} ] } }\nsystem_account: SYS\n')
    with server.start(extra_args=["-c", str(conf)]) as srv:
        yield srv


def test_without_the_system_account(connected, own_config_server, uid, ip):
    nbnats.connect(own_config_server.url, name=uid, user="app", password="app-pw")
    try:
        for call in (lambda: server_report("connections", connection=uid), lambda: server_ls(connection=uid),
                     lambda: server_ping(connection=uid)):
            with pytest.raises(PermissionDenied, match="needs the system account, which the connection to") as e:
                call()
            assert "creds=FILE" in e.value.fix
        # what needs no system account still works
        assert server_check("connection", connection=uid).attrs["status"] == "OK"
        assert len(rtt(2, connection=uid)) == 2
        nbnats.use(uid)
        _, shown = run_cell(ip, "%nats server ls")
        assert "needs the system account" in shown and "%nats connect URL --creds FILE" in shown
    finally:
        nbnats.use("default")
        connection.close(uid)


def test_with_the_connections_own_system_user(connected, own_config_server, uid):
    nbnats.connect(own_config_server.url, name=uid, user="admin", password="admin-pw")
    try:
        ls = server_ls(connection=uid)
        assert ls["name"].tolist() == [own_config_server.nodes[0].name]
        conns = server_report("connections", connection=uid)
        assert "SYS" in set(conns["account"])                 # the connection itself, in the system account
    finally:
        connection.close(uid)


def test_magics(ip, uid):
    shell = ip
    df = shell.run_line_magic("nats", "server report jetstream")
    assert isinstance(df, pd.DataFrame) and len(df) == 1
    assert len(shell.run_line_magic("nats", "server ls")) == 1
    assert len(shell.run_line_magic("nats", "server ping")) == 1
    assert shell.run_line_magic("nats", "server check connection").attrs["status"] == "OK"
    assert len(shell.run_line_magic("nats", "rtt --count 3")) == 3
    r = shell.run_line_magic("nats", f"bench pub {uid}.b --msgs 200 --size 16 --clients 2")
    assert r.iloc[-1]["msgs"] == 200
    hops = shell.run_line_magic("nats", f"trace {uid}.t '{{\"id\": 1}}'")
    assert hops.note == "no subscriber received it"
    _, shown = run_cell(shell, f"%nats bench pub {uid}.b --msgs 0")
    assert "msgs='0' is not a number bench can run with" in shown and "Traceback" not in shown
    _, shown = run_cell(shell, "%nats server report conections")
    assert "did you mean 'connections'" in shown
