"""Streams and consumers against the real bundled nats-server: add/ls/info/edit/rm/purge/get,
consumers (durable, ephemeral, filters, deliver and ack policies, next, redelivery, a restart),
rich displays, the %nats verbs, and every bad input of the issue."""

from __future__ import annotations

import doctest
import importlib
import time

import pandas as pd
import pytest

import nbnats
from nbnats.engine import api as engine_api
from nbnats.jetstream import streams
from nbnats.runtime import connection, loop, server
from nbnats.errors import InvalidName, InvalidSubject, JetStreamError, NatsError, NotFound, ValidationError

js = nbnats          # the public API: streams and consumers
units = importlib.import_module("nbnats.data.units")

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stream(connected, uid):
    """A limits stream ``S<uid>`` on ``<uid>.>``, removed afterwards."""
    name = f"S{uid}"
    js.add_stream(name, f"{uid}.>")
    yield name
    try:
        js.delete_stream(name)
    except NatsError:
        pass


def fill(uid: str, n: int, subject: str = "a", start: int = 0) -> None:
    for i in range(start, start + n):
        nbnats.publish(f"{uid}.{subject}", {"i": i}, js=True)


def test_docstring_examples():
    for name in ("nbnats.jetstream.streams", "nbnats.jetstream.replay", "nbnats.engine.api", "nbnats.widgets.stream_view"):
        assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0, name


def test_units_and_subject_overlap():
    assert units.seconds("7d", "x") == 7 * 86400 and units.seconds("1h30m", "x") == 5400 and units.seconds("500ms", "x") == 0.5
    assert units.size("512MB", "x") == 512 << 20 and units.size("1GiB", "x") == 1 << 30 and units.size(10, "x") == 10
    assert units.to_ns("2026-01-01T00:00:00.000000001Z", "x") == 1767225600000000001
    assert abs(units.to_ns("1h", "x") - (time.time_ns() - 3600 * 10**9)) < 10**9
    assert units.human_bytes(3 << 20) == "3.0 MiB" and units.human_duration(86400 * 10**9) == "1d"
    assert streams.overlaps("a.*.c", "a.b.>") and streams.overlaps(">", "x") and not streams.overlaps("a.b", "a.c")
    for bad, call in (("soon", lambda: units.seconds("soon", "max_age")), ("big", lambda: units.size("big", "max_bytes")),
                      ("yesterday", lambda: units.to_ns("yesterday", "since"))):
        with pytest.raises(ValidationError, match=bad) as err:
            call()
        assert " — " in str(err.value)


# -- streams --------------------------------------------------------------------------
def test_add_list_info_with_human_units(connected, uid):
    name = f"S{uid}"
    info = js.add_stream(name, f"{uid}.a,{uid}.b.>", max_age="7d", dupe_window="2m", max_bytes="64MB",
                         max_msgs=1000, storage="memory", max_msgs_per_subject=10, description="orders")
    try:
        c = info["config"]
        assert c["subjects"] == [f"{uid}.a", f"{uid}.b.>"] and c["storage"] == "memory"
        assert c["max_age"] == 7 * 86400 * 10**9 and c["duplicate_window"] == 120 * 10**9
        assert c["max_bytes"] == 64 << 20 and c["max_msgs"] == 1000 and c["max_msgs_per_subject"] == 10
        assert c["allow_direct"] is True and c["description"] == "orders"
        assert js.add_stream(name, f"{uid}.a,{uid}.b.>", max_age="7d", dupe_window="2m", max_bytes="64MB",
                             max_msgs=1000, storage="memory", max_msgs_per_subject=10,
                             description="orders").name == name            # the same again: a no-op
        fill(uid, 3)
        df = js.streams()
        assert list(df.columns[:8]) == ["name", "subjects", "messages", "bytes", "first_seq", "last_seq",
                                        "consumers", "created"]
        row = df[df["name"] == name].iloc[0]
        assert row["messages"] == 3 and row["first_seq"] == 1 and row["last_seq"] == 3 and row["bytes"] > 0
        assert str(df["created"].dtype) == "datetime64[ns, UTC]"
        assert isinstance(df, pd.DataFrame) and type(df.head()) is pd.DataFrame
        html = df._repr_html_()
        assert name in html and "7d" in html and " B<" in html          # human units in the notebook
        info = js.stream_info(name)
        assert info.messages == 3 and info.last_seq == 3 and info.subjects == [f"{uid}.a", f"{uid}.b.>"]
        html = info._repr_html_()
        assert "7d" in html and "2m" in html and "64.0 MiB" in html and "memory" in html
        assert "Stream " + name in html and name in repr(info)
    finally:
        js.delete_stream(name)


def test_dedupe_by_msg_id_returns_the_ack(stream, uid):
    a = nbnats.publish(f"{uid}.a", {"id": 1}, js=True, msg_id="m1")
    b = nbnats.publish(f"{uid}.a", {"id": 1}, js=True, msg_id="m1")
    c = nbnats.publish(f"{uid}.a", {"id": 2}, js=True, msg_id="m2")
    assert (a.stream, a.seq, a.duplicate) == (stream, 1, False)
    assert (b.seq, b.duplicate) == (1, True) and (c.seq, c.duplicate) == (2, False)
    assert js.stream_info(stream).messages == 2


def test_edit_keeps_other_settings(stream, uid):
    js.edit_stream(stream, max_age="30d")
    info = js.edit_stream(stream, subjects=f"{uid}.>,{uid}x.>", max_msgs=50)
    c = info["config"]
    assert c["max_age"] == 30 * 86400 * 10**9 and c["max_msgs"] == 50 and c["subjects"] == [f"{uid}.>", f"{uid}x.>"]
    nbnats.publish(f"{uid}x.new", "via the new subject", js=True)
    assert js.stream_info(stream).messages == 1
    with pytest.raises(ValidationError, match="'max_ages' is not a stream setting — did you mean 'max_age'"):
        js.edit_stream(stream, max_ages="1d")
    with pytest.raises(JetStreamError, match="storage"):
        js.edit_stream(stream, storage="memory")          # the server refuses; said plainly


def test_purge_all_subject_keep_and_seq(stream, uid):
    fill(uid, 4, "a")
    fill(uid, 3, "b", start=4)
    assert js.purge_stream(stream, subject=f"{uid}.b") == 3
    assert js.stream_info(stream).messages == 4
    assert js.purge_stream(stream, keep=1) == 3
    fill(uid, 3, "a", start=10)
    info = js.stream_info(stream)
    assert js.purge_stream(stream, seq=info.last_seq) == 3 and js.stream_info(stream).messages == 1
    assert js.purge_stream(stream) == 1 and js.stream_info(stream).messages == 0
    with pytest.raises(ValidationError, match="keep and seq cannot be combined"):
        js.purge_stream(stream, keep=1, seq=3)
    with pytest.raises(ValidationError, match="outside stream"):
        js.purge_stream(stream, subject="elsewhere.>")


def test_get_message_by_seq_and_last_for_subject(stream, uid):
    nbnats.publish(f"{uid}.a", {"i": 1}, js=True, headers={"Trace-Id": "t1"})
    nbnats.publish(f"{uid}.b", b"\xff\x00", js=True)
    nbnats.publish(f"{uid}.a", {"i": 3}, js=True)
    m = js.get_message(stream, 1)
    assert (m.seq, m.subject, m.json(), m.headers) == (1, f"{uid}.a", {"i": 1}, {"Trace-Id": "t1"})
    assert m.time.tz is not None and m.time_ns % 1000 != 0 or m.time_ns > 0
    assert js.get_message(stream, last_for=f"{uid}.a").json() == {"i": 3}
    assert js.get_message(stream, 2).data == b"\xff\x00"
    html = js.get_message(stream, 1)._repr_html_()
    assert "Trace-Id" in html and "&quot;i&quot;: 1" in html and "<pre" in html
    with pytest.raises(NotFound, match=r"no message at seq 9 \(it holds seq 1–3\)"):
        js.get_message(stream, 9)
    with pytest.raises(NotFound, match="no message on"):
        js.get_message(stream, last_for=f"{uid}.zzz")
    with pytest.raises(ValidationError, match="one of them"):
        js.get_message(stream)
    with pytest.raises(ValidationError, match="one of them"):
        js.get_message(stream, 1, last_for=f"{uid}.a")
    with pytest.raises(ValidationError, match="positive whole number"):
        js.get_message(stream, 0)
    with pytest.raises(ValidationError, match="outside stream"):
        js.get_message(stream, last_for="other.a")


# -- bad input ---------------------------------------------------------------------------
BAD_NAMES = ["ORD.ERS", "ORD*", "ORD>", "a/b", "a\\b", "has space", "tab\there", "x" * 256, ""]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_bad_names_are_refused_before_anything_is_sent(connected, bad, monkeypatch):
    # A connection that could not be made: a name error must come first.
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:1")
    calls = [lambda: js.add_stream(bad, "x.>", connection="nowhere"),
             lambda: js.stream_info(bad, connection="nowhere"),
             lambda: js.purge_stream(bad, connection="nowhere"),
             lambda: js.delete_stream(bad, connection="nowhere"),
             lambda: js.get_message(bad, 1, connection="nowhere"),
             lambda: js.consumers(bad, connection="nowhere"),
             lambda: js.add_consumer("OK", bad or None, durable=True, connection="nowhere"),
             lambda: js.consumer_info("OK", bad, connection="nowhere"),
             lambda: js.next("OK", bad, connection="nowhere")]
    for call in calls:
        with pytest.raises(ValidationError) as err:
            call()
        assert isinstance(err.value, (InvalidName, ValidationError)) and " — " in str(err.value)
        assert "\n" not in str(err.value)
    assert "nowhere" not in nbnats.connections()


def test_long_name_message_and_fix(connected):
    with pytest.raises(InvalidName, match="256 characters long — use at most 255"):
        js.add_stream("x" * 256, "x.>")
    with pytest.raises(InvalidName, match="try 'ORD_ERS'"):
        js.add_stream("ORD.ERS", "x.>")
    with pytest.raises(InvalidSubject, match="empty token"):
        js.add_stream("OK", "a..b")
    with pytest.raises(ValidationError, match="needs subjects"):
        js.add_stream("OK")
    for kw, text in ((dict(retention="fifo"), "retention 'fifo' is not one of limits, interest, workqueue"),
                     (dict(storage="disk"), "storage 'disk'"), (dict(replicas=0), "at least 1"),
                     (dict(max_age="forever-ish"), "not a duration"), (dict(bogus=1), "'bogus' is not a stream"),
                     (dict(max_msgs="lots"), "max_msgs 'lots' is not a whole number"),
                     (dict(max_bytes="huge"), "max_bytes 'huge' is not a size")):
        with pytest.raises(ValidationError, match=text):
            js.add_stream("OK", "ok.>", **kw)


def test_unknown_stream_and_consumer(connected, stream):
    with pytest.raises(NotFound, match=rf"stream 'S{stream[1:]}X' does not exist — did you mean '{stream}'"):
        js.stream_info(stream + "X")
    for call in (lambda: js.delete_stream("NOPE_" + stream), lambda: js.purge_stream("NOPE_" + stream),
                 lambda: js.consumers("NOPE_" + stream), lambda: js.add_consumer("NOPE_" + stream, "c"),
                 lambda: js.get_message("NOPE_" + stream, 1), lambda: js.edit_stream("NOPE_" + stream, max_msgs=1)):
        with pytest.raises(NotFound, match="does not exist — "):
            call()
    with pytest.raises(NotFound, match=f"stream '{stream}' has no consumer 'ghost' — list its consumers"):
        js.consumer_info(stream, "ghost")
    for call in (lambda: js.next(stream, "ghost"), lambda: js.delete_consumer(stream, "ghost")):
        with pytest.raises(NotFound, match="has no consumer 'ghost'"):
            call()


def test_overlapping_subjects_name_the_other_stream(stream, uid):
    with pytest.raises(JetStreamError, match=rf"subject '{uid}.a.\*' is already stored by stream '{stream}'"):
        js.add_stream(f"T{uid}", f"{uid}.a.*")
    other = f"T{uid}"
    js.add_stream(other, f"{uid}other.>")
    try:
        with pytest.raises(JetStreamError, match=f"already stored by stream '{stream}'"):
            js.edit_stream(other, subjects=f"{uid}other.>,{uid}.>")
    finally:
        js.delete_stream(other)


def test_filter_outside_the_streams_subjects(stream, uid):
    with pytest.raises(ValidationError, match=f"subject 'orders.>' is outside stream '{stream}', which stores {uid}.>"):
        js.add_consumer(stream, "c", filter="orders.>")
    with pytest.raises(ValidationError, match="outside stream"):
        js.add_consumer(stream, "c", filter=[f"{uid}.a", "orders.b"])
    assert js.consumers(stream).empty                                   # nothing was created


def test_replicas_need_a_cluster(connected, uid):
    with pytest.raises(JetStreamError, match="replicas > 1 need a JetStream cluster.* — use replicas=1"):
        js.add_stream(f"R{uid}", f"{uid}.>", replicas=3)


def test_jetstream_disabled_on_the_server(connected, uid):
    with server.start(jetstream=False) as plain:
        nbnats.connect(plain.url, name=uid)
        try:
            for call in (lambda: js.streams(connection=uid), lambda: js.add_stream("S", "s.>", connection=uid),
                         lambda: js.stream_info("S", connection=uid), lambda: js.consumers("S", connection=uid),
                         lambda: importlib.import_module("nbnats.jetstream.replay").replay("S", connection=uid)):
                with pytest.raises(JetStreamError, match="JetStream is not enabled on the server at .* — start"):
                    call()
        finally:
            connection.close(uid)


# -- consumers ------------------------------------------------------------------------------
def test_consumers_durable_ephemeral_filters_and_listing(stream, uid):
    fill(uid, 3, "a")
    fill(uid, 2, "b", start=3)
    d = js.add_consumer(stream, "billing", filter=f"{uid}.a", durable=True, ack_wait="30s")
    assert d.durable and d.num_pending == 3 and d["config"]["ack_wait"] == 30 * 10**9
    e = js.add_consumer(stream, filter=[f"{uid}.a", f"{uid}.b"])         # ephemeral, server-named, two filters
    assert not e.durable and e.num_pending == 5 and e["config"]["inactive_threshold"] == 3600 * 10**9
    assert e["config"]["filter_subjects"] == [f"{uid}.a", f"{uid}.b"]
    df = js.consumers(stream)
    assert set(df["name"]) == {"billing", e.name}
    row = df[df["name"] == "billing"].iloc[0]
    assert row["durable"] and row["kind"] == "pull" and row["filter"] == [f"{uid}.a"] and row["pending"] == 3
    assert "30s" in df._repr_html_()
    html = js.consumer_info(stream, "billing")._repr_html_()
    assert "Consumer billing" in html and f"{uid}.a" in html and "explicit" in html
    js.delete_consumer(stream, "billing")
    assert list(js.consumers(stream)["name"]) == [e.name]


def test_deliver_policies(stream, uid):
    fill(uid, 2, "a")
    fill(uid, 2, "b", start=2)                     # seq 1,2 on a; 3,4 on b
    assert js.next(stream, js.add_consumer(stream, "new", deliver="new").name, timeout=0.2).empty
    assert js.next(stream, js.add_consumer(stream, "last", deliver="last").name, count=5)["seq"].tolist() == [4]
    per = js.add_consumer(stream, "per", deliver="last-per-subject")
    assert js.next(stream, per.name, count=5)["seq"].tolist() == [2, 4]
    assert js.next(stream, js.add_consumer(stream, "from3", start_seq=3).name, count=5)["seq"].tolist() == [3, 4]
    t3 = js.get_message(stream, 3).time
    got = js.next(stream, js.add_consumer(stream, "fromt", start_time=t3).name, count=5)
    assert got["seq"].tolist() == [3, 4]
    with pytest.raises(ValidationError, match="cannot be combined"):
        js.add_consumer(stream, "x", deliver="last", start_seq=2)
    with pytest.raises(ValidationError, match="deliver policy 'newest'"):
        js.add_consumer(stream, "x", deliver="newest")
    with pytest.raises(ValidationError, match="ack policy 'maybe'"):
        js.add_consumer(stream, "x", ack="maybe")
    with pytest.raises(ValidationError, match="durable consumer needs a name"):
        js.add_consumer(stream, durable=True)


def test_next_acks_and_redelivers_after_ack_wait(stream, uid):
    fill(uid, 4, "a")
    js.add_consumer(stream, "work", durable=True, ack_wait="1s")
    first = js.next(stream, "work", count=2, ack=False)
    assert first["seq"].tolist() == [1, 2] and first["delivered"].tolist() == [1, 1]
    assert list(first.columns[:6]) == ["subject", "time", "seq", "size", "headers", "delivered"]
    assert first["i"].tolist() == [0, 1] and first.attrs["pending"] == 2 and not first.attrs["acked"]
    assert js.consumer_info(stream, "work").num_ack_pending == 2
    time.sleep(1.3)                                  # past the ack wait: both come back
    again = js.next(stream, "work", count=3)
    assert again["seq"].tolist() == [1, 2, 3] and again["delivered"].tolist() == [2, 2, 1]
    info = js.consumer_info(stream, "work")
    assert info.num_ack_pending == 0 and info.num_redelivered == 0 and info["ack_floor"]["stream_seq"] == 3
    rest = js.next(stream, "work", count=10)
    assert rest["seq"].tolist() == [4]
    start = time.monotonic()
    assert js.next(stream, "work", count=10, timeout=0.3).empty and time.monotonic() - start < 3
    with pytest.raises(ValidationError, match="count must be a positive"):
        js.next(stream, "work", count=0)


def test_next_waits_for_the_first_message(stream, uid):
    js.add_consumer(stream, "waiter")
    loop.get_loop().call_later(0.3, lambda: loop.get_loop().create_task(
        connection.current().nc.publish(f"{uid}.late", b'{"late": true}')))
    df = js.next(stream, "waiter", count=5, timeout=5)
    assert df["late"].tolist() == [True]


def test_next_refuses_a_push_consumer(stream, uid):
    js.add_consumer(stream, "pusher", deliver_subject=f"{uid}_deliver")
    with pytest.raises(JetStreamError, match="push consumer.*— fetch and consume read pull consumers"):
        js.next(stream, "pusher")


def test_workqueue_rules_said_plainly(connected, uid):
    name = f"W{uid}"
    js.add_stream(name, f"{uid}.>", retention="workqueue")
    try:
        with pytest.raises(JetStreamError, match="WorkQueue, whose pull consumers must ack explicitly"):
            js.add_consumer(name, "lazy", ack="none")
        js.add_consumer(name, "one", durable=True)
        with pytest.raises(JetStreamError, match="consumers may not overlap — give this consumer a filter"):
            js.add_consumer(name, "two", durable=True)
    finally:
        js.delete_stream(name)


def test_several_filters_need_server_2_10(stream, uid, monkeypatch):
    monkeypatch.setattr(engine_api, "server_version", lambda conn: (2, 9, 25))
    with pytest.raises(JetStreamError, match="several are silently ignored before 2.10 — use one filter"):
        js.add_consumer(stream, "two", filter=[f"{uid}.a", f"{uid}.b"])


@pytest.mark.timeout(90)
def test_durable_consumer_survives_a_server_restart(uid):
    with server.start() as srv:                 # a file store of its own, kept across the node's restart
        nbnats.connect(srv.url, name=uid)
        try:
            js.add_stream(f"D{uid}", f"{uid}.>", connection=uid)
            for i in range(5):
                nbnats.publish(f"{uid}.x", {"i": i}, js=True, connection=uid)
            js.add_consumer(f"D{uid}", "keeper", durable=True, connection=uid)
            assert js.next(f"D{uid}", "keeper", count=2, connection=uid)["i"].tolist() == [0, 1]
            srv.nodes[0].stop()
            srv.nodes[0].start()                   # same port, same store: the client reconnects by itself
            deadline = time.monotonic() + 20
            while not connection.connections()[uid].connected and time.monotonic() < deadline:
                time.sleep(0.1)
            info = js.consumer_info(f"D{uid}", "keeper", connection=uid)
            assert info.durable and info["ack_floor"]["stream_seq"] == 2 and info.num_pending == 3
            assert js.next(f"D{uid}", "keeper", count=5, connection=uid)["i"].tolist() == [2, 3, 4]
        finally:
            connection.close(uid)


# -- the %nats verbs ----------------------------------------------------------------------------
def test_magics_cover_every_verb(ip, uid):
    name = f"M{uid}"
    run = lambda line: ip.run_line_magic("nats", line)   # noqa: E731
    info = run(f"stream add {name} --subjects '{uid}.>' --max-age 7d --dupe-window 2m --storage memory")
    assert info["config"]["max_age"] == 7 * 86400 * 10**9 and info["config"]["storage"] == "memory"
    try:
        assert run(f"pub {uid}.a '{{\"id\": 1}}' --js --msg-id one").seq == 1
        assert run(f"pub {uid}.a '{{\"id\": 1}}' --js --msg-id one").duplicate
        run(f"pub {uid}.b hello --js -H Trace-Id:t9")
        assert name in set(run("stream ls")["name"])
        assert run(f"stream info {name}").messages == 2
        assert run(f"stream edit {name} --max-msgs 100")["config"]["max_msgs"] == 100
        assert run(f"stream get {name} 2").headers == {"Trace-Id": "t9"}
        assert run(f"stream get {name} --last-for {uid}.a").json() == {"id": 1}
        df = run(f"replay {name} --since 1h --subject {uid}.a")
        assert df["id"].tolist() == [1]
        assert run(f"replay {name} --raw --no-progress")["data"].tolist() == [b'{"id": 1}', b"hello"]
        assert run(f"consumer add {name} c1 --durable --ack-wait 1s --filter {uid}.a").durable
        assert list(run(f"consumer ls {name}")["name"]) == ["c1"]
        assert run(f"consumer info {name} c1").num_pending == 1
        got = run(f"consumer next {name} c1 --count 3 --no-ack")
        assert got.df["seq"].tolist() == [1] and got.df["deliveries"].tolist() == [1]   # a Batch, not yet acked
        view = run(f"stream view {name} --page-size 5")
        assert [seq for _, seq in view.rows.options] == [1, 2]
        view.close()
        run(f"consumer rm {name} c1")
        run(f"stream purge {name} --subject {uid}.b")
        assert run(f"stream info {name}").messages == 1
    finally:
        run(f"stream rm {name}")
    assert name not in set(run("stream ls")["name"])


def test_magic_errors_are_one_line(ip, uid):
    from conftest import run_cell
    for line, text in ((f"stream info NOPE{uid}", "does not exist"),
                       ("stream add ORD.ERS --subjects 'o.>'", "stream name 'ORD.ERS' contains '.'"),
                       (f"replay NOPE{uid}", "does not exist"),
                       ("consumer add S c.1", "consumer name 'c.1'"),
                       ("stream get S", "say which message"),
                       ("stream add S --subjects s --retention fifo", "retention 'fifo' is not one of limits"),
                       ("consumer add S c --deliver newest", "deliver policy 'newest'")):
        result, shown = run_cell(ip, f"%nats {line}")
        assert isinstance(result.error_in_exec, NatsError), line
        assert text in str(result.error_in_exec), (line, str(result.error_in_exec))
        assert "Traceback" not in shown


def test_durations_are_the_same_everywhere_nanoseconds_included(connected, uid):
    """One parser: text, seconds, timedeltas and the server's own nanoseconds (the seed's 7*24*60*60*1e9)."""
    import datetime as dt
    name = f"U{uid}"
    try:
        info = nbnats.add_stream(name, f"{uid}.>", max_age=7 * 24 * 60 * 60 * 1e9, dupe_window=dt.timedelta(minutes=2))
        assert info["config"]["max_age"] == 604_800 * 10**9 and info["config"]["duplicate_window"] == 120 * 10**9
        c = nbnats.add_consumer(name, "b", durable=True, ack_wait="5s", backoff=["1s", "5s"], max_deliver=3)
        assert c["config"]["backoff"] == [10**9, 5 * 10**9]          # (the server then takes ack_wait from it)
        assert nbnats.fetch(name, "b", timeout="200ms").df.empty
        with pytest.raises(ValidationError, match="is not a duration"):
            nbnats.add_stream(name, f"{uid}.>", max_age="a week")
    finally:
        nbnats.delete_stream(name)
