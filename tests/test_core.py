"""Core NATS from Python: publish, request/reply, responders, queue groups, services, connections."""

import json
import os
import time

import pytest

import nbnats
from nbnats.runtime import connection, loop


def test_publish_reaches_a_tail_with_headers(connected, uid):
    t = nbnats.tail(f"{uid}.>")
    nbnats.publish(f"{uid}.created", {"id": 1}, headers={"Trace-Id": "abc"})
    nbnats.publish(f"{uid}.text", "hello", count=3)
    df = t.wait(4, timeout=5).df
    assert df["subject"].tolist() == [f"{uid}.created"] + [f"{uid}.text"] * 3
    assert df.loc[0, "headers"] == {"Trace-Id": "abc"}
    assert df.loc[0, "id"] == 1 and df.loc[1, "data"] == "hello"


def test_payload_kinds(connected, uid):
    t = nbnats.tail(uid)
    for value in ({"a": 1}, [1, 2], "text", b"\x00\x01", None):
        nbnats.publish(uid, value)
    rows = t.wait(5, timeout=5).records()
    assert [r[3] for r in rows] == [b'{"a":1}', b"[1,2]", b"text", b"\x00\x01", b""]


def test_request_reply_with_a_sync_and_an_async_handler(connected, uid):
    svc = nbnats.serve(f"{uid}.greet", lambda m: {"hello": m.text})

    async def double(m):
        return {"x": m.json()["x"] * 2}

    svc2 = nbnats.serve(f"{uid}.double", double)
    assert nbnats.request(f"{uid}.greet", "ada").json() == {"hello": "ada"}
    assert nbnats.request(f"{uid}.double", {"x": 21}).json() == {"x": 42}
    assert svc.handled == 1 and svc2.handled == 1
    svc.stop()
    svc.stop()      # idempotent
    assert not svc.running


def test_sync_handler_may_call_the_sync_api(connected, uid):
    seen = nbnats.tail(f"{uid}.audit")

    def handler(m):
        nbnats.publish(f"{uid}.audit", m.data)   # runs in a worker thread, not the loop
        return "ok"

    nbnats.serve(f"{uid}.svc", handler)
    assert nbnats.request(f"{uid}.svc", "x").text == "ok"
    assert seen.wait(1, timeout=5).count == 1


def test_handler_errors_answer_with_a_service_error(connected, uid):
    def boom(m):
        raise ValueError("bad input")

    svc = nbnats.serve(uid, boom)
    with pytest.raises(nbnats.ServiceError, match=f"the responder on '{uid}' failed: ValueError: bad input"):
        nbnats.request(uid, "x")
    assert svc.errors == 1 and "bad input" in svc.last_error and svc.last_errors[-1][2] == "ValueError: bad input"


def test_a_failing_responder_is_told_to_the_requester_and_shown_once(connected, uid, caplog):
    """The seed's pattern: a handler returning a frame's row (Timestamps, NA) encodes as JSON; one that fails
    is a ServiceError for the requester and one log line in the responder's notebook, however often."""
    import pandas as pd
    users = pd.DataFrame({"id": [1], "seen": [pd.Timestamp("2026-01-01", tz="UTC")], "score": [pd.NA]})
    svc = nbnats.serve(f"{uid}.get", lambda m: users.iloc[0] if m.json()["id"] == 1 else users.loc[99])
    assert nbnats.request(f"{uid}.get", {"id": 1}).json() == {"id": 1, "seen": "2026-01-01T00:00:00+00:00",
                                                                "score": None}
    with caplog.at_level("WARNING", logger="nbnats"):
        for _ in range(3):
            with pytest.raises(nbnats.ServiceError, match="failed: KeyError"):
                nbnats.request(f"{uid}.get", {"id": 2})
    assert svc.errors == 3 and len(svc.last_errors) == 3
    assert sum("failed: KeyError" in r.getMessage() for r in caplog.records) == 1


def test_no_responders_is_immediate_and_distinct(connected, uid):
    start = time.monotonic()
    with pytest.raises(nbnats.NoResponders, match=f"no service is listening on '{uid}'"):
        nbnats.request(uid, "x", timeout=5)
    assert time.monotonic() - start < 1.0


def test_request_timeout_names_subject_and_duration(connected, uid):
    nbnats.serve(uid, lambda m: time.sleep(1.5) or "late")
    with pytest.raises(nbnats.Timeout, match=rf"no reply on '{uid}' within 0.3 s"):
        nbnats.request(uid, "x", timeout=0.3)


def test_queue_group_splits_requests(connected, uid):
    a = nbnats.serve(uid, lambda m: "a", queue="workers")
    b = nbnats.serve(uid, lambda m: "b", queue="workers")
    answers = [nbnats.request(uid, str(i)).text for i in range(60)]
    assert a.handled + b.handled == 60
    assert a.handled > 5 and b.handled > 5 and set(answers) == {"a", "b"}


def test_queue_group_tails_share_messages(connected, uid):
    t1 = nbnats.tail(uid, queue="q")
    t2 = nbnats.tail(uid, queue="q")
    nbnats.publish(uid, "x", count=200)
    deadline = time.monotonic() + 5
    while t1.count + t2.count < 200 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert t1.count + t2.count == 200 and t1.count > 0 and t2.count > 0


def test_validation_happens_before_sending(connected, uid):
    t = nbnats.tail(f"{uid}.>")
    for bad in ("", f"{uid}..x", f"{uid}.>", f"{uid} x", f"{uid}.*"):
        with pytest.raises(nbnats.InvalidSubject):
            nbnats.publish(bad, "x")
    with pytest.raises(nbnats.InvalidHeader):
        nbnats.publish(f"{uid}.ok", "x", headers={"X": "a\r\nY: b"})
    nbnats.publish(f"{uid}.ok", "x")
    assert t.wait(1, timeout=5).df["subject"].tolist() == [f"{uid}.ok"]


def test_payload_over_max_payload_is_refused_and_connection_stays_up(connected, uid):
    big = b"x" * (connected.max_payload + 1)
    with pytest.raises(nbnats.PayloadTooLarge, match=f"{connected.max_payload + 1:,} bytes"):
        nbnats.publish(uid, big)
    with pytest.raises(nbnats.PayloadTooLarge):
        nbnats.request(uid, big)
    assert connected.connected
    nbnats.publish(uid, b"x" * connected.max_payload)     # exactly at the limit is fine


def test_publish_frame_rows_become_messages(connected, uid):
    import pandas as pd
    t = nbnats.tail(f"{uid}.>")
    df = pd.DataFrame({"subject": [f"{uid}.a", f"{uid}.b"], "id": [1, 2], "customer.id": ["c1", "c2"]})
    assert nbnats.publish_frame(None, df, subject_column="subject") == 2
    got = t.wait(2, timeout=5).df
    assert got["subject"].tolist() == [f"{uid}.a", f"{uid}.b"]
    assert got["customer.id"].tolist() == ["c1", "c2"]


def test_status(connected):
    s = nbnats.status()
    assert s["version"] == "2.15.1" and s["jetstream"] is True
    assert s["url"].startswith("nats://127.0.0.1:") and s["rtt_ms"] >= 0


def test_micro_service_discovery(connected, uid):
    name = f"svc{uid}"
    svc = nbnats.add_service(name, {f"{uid}.get": lambda m: {"id": m.json()["id"]}}, version="1.2.3")
    try:
        assert nbnats.request(f"{uid}.get", {"id": 7}).json() == {"id": 7}
        ls = nbnats.services()
        row = ls[ls["name"] == name].iloc[0]
        assert row["version"] == "1.2.3" and row["endpoints"] == [f"{uid}.get"]
        stats = nbnats.service_stats(name)
        assert stats["requests"].sum() == 1 and stats["errors"].sum() == 0
        assert nbnats.service_info(name)[0]["name"] == name
    finally:
        svc.stop()
    with pytest.raises(nbnats.NotFound, match="no service named"):
        nbnats.service_info(name, wait=0.2)


def test_sync_call_from_the_loop_thread_fails_fast(connected, uid):
    async def inside():
        try:
            nbnats.publish(uid, "x")
        except nbnats.LoopThreadError as exc:
            return str(exc)

    start = time.monotonic()
    message = loop.run(inside(), 5, "a call from the loop")
    assert "event-loop thread" in message and time.monotonic() - start < 1


def test_async_face(connected, uid):
    import asyncio

    async def main():
        await nbnats.aio.serve(uid, lambda m: "pong")
        return (await nbnats.aio.request(uid, "ping")).text

    assert asyncio.run(main()) == "pong"


def test_connection_resolution_nats_url(nats_server, uid, monkeypatch):
    connection.close_all()
    connection._settings.clear()
    monkeypatch.setenv("NATS_URL", nats_server.url)
    conn = connection.current()
    assert conn.url == nats_server.url and conn.server is None
    connection.close_all()


def test_unreachable_server_is_one_clear_error(uid):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(nbnats.ConnectError, match=f"could not connect to nats://127.0.0.1:{port}"):
        nbnats.connect(f"nats://127.0.0.1:{port}", name=uid, timeout=2)
    assert uid not in connection.connections()


def test_named_connections_and_secrets_never_shown(nats_server, uid):
    from nbnats.runtime import server
    with server.start(auth="user") as srv:
        creds = srv.auth.options()
        conn = nbnats.connect(srv.url, name=uid, **creds)
        try:
            assert creds["password"] not in repr(conn)
            assert creds["password"] not in repr(srv) and creds["password"] not in str(nbnats.status(uid))
            nbnats.use(uid)
            assert nbnats.current() is conn
        finally:
            nbnats.close(uid)
            connection._current = connection.DEFAULT
        with pytest.raises(nbnats.ConnectError, match="refused the credentials"):
            nbnats.connect(srv.url, name=uid, user=creds["user"], password="wrong", timeout=3)


def test_natscli_context_file(nats_server, uid, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    ctx_dir = tmp_path / "nats" / "context"
    ctx_dir.mkdir(parents=True)
    (ctx_dir / f"{uid}.json").write_text(json.dumps({"url": nats_server.url, "description": "test"}))
    conn = nbnats.connect(context=uid, name=uid)
    try:
        assert conn.url == nats_server.url
    finally:
        nbnats.close(uid)
        connection._current = connection.DEFAULT
    with pytest.raises(nbnats.ConnectError, match="was not found"):
        nbnats.connect(context="missing-ctx", name=uid)
