"""The server's newer features on the real bundled nats-server 2.15.1: per-message TTL, schedules, stream
flags, atomic publish_frame (split, msg_id, dry run), KV per-key TTL, kv compact, obj watch — Python and
%nats faces, and bad input."""

from __future__ import annotations

import os
import tempfile

import pandas as pd
import pytest

import nbnats
from faultkit import wait_until
from nbnats.engine import api
from nbnats.engine.publish import schedule_pattern
from nbnats.errors import Conflict, JetStreamError, NotFound, PayloadTooLarge, ValidationError
from nbnats.jetstream.streams import check_flags
from nbnats.frame_publish import BatchSplitWarning
from nbnats.runtime import server

pytestmark = pytest.mark.timeout(90)


def _messages(stream: str) -> int:
    return nbnats.stream_info(stream)["state"]["messages"]


def _has(stream: str, subject: str) -> bool:
    try:
        nbnats.get_message(stream, last_for=subject)
        return True
    except NotFound:
        return False


@pytest.fixture
def features(connected, uid):
    """A stream with every newer flag on."""
    name = f"NEW_{uid}"
    nbnats.add_stream(name, f"{uid}.>", allow_msg_ttl=True, allow_schedules=True, allow_atomic=True)
    yield name, uid
    nbnats.delete_stream(name)


@pytest.fixture
def plain(connected, uid):
    name = f"OLD_{uid}"
    nbnats.add_stream(name, f"{uid}p.>")
    yield name, f"{uid}p"
    nbnats.delete_stream(name)


# -- stream flags ------------------------------------------------------------------------
def test_stream_flags_python_and_magic(ip, uid):
    cfg = nbnats.add_stream(f"FL_{uid}", f"{uid}.fl.>", allow_msg_ttl=True, allow_schedules=True,
                            allow_atomic=True)["config"]
    assert (cfg["allow_msg_ttl"], cfg["allow_msg_schedules"], cfg["allow_atomic"]) == (True, True, True)
    assert not cfg.get("allow_msg_counter")
    cfg = nbnats.add_stream(f"FC_{uid}", f"{uid}.fc.>", allow_counter=True, allow_atomic=True)["config"]
    assert cfg["allow_msg_counter"] and cfg["allow_atomic"] and not cfg.get("allow_msg_ttl")
    ip.run_line_magic("nats", f"stream add FM_{uid} --subjects '{uid}.fm.>' --allow-msg-ttl "
                              f"--allow-schedules --allow-atomic")
    cfg = nbnats.stream_info(f"FM_{uid}")["config"]
    assert cfg["allow_msg_ttl"] and cfg["allow_msg_schedules"] and cfg["allow_atomic"]
    ip.run_line_magic("nats", f"stream add FN_{uid} --subjects '{uid}.fn.>' --allow-counter")
    assert nbnats.stream_info(f"FN_{uid}")["config"]["allow_msg_counter"] is True
    # off unless asked; atomic can be turned on later, by Python or the magic
    ip.run_line_magic("nats", f"stream add FE_{uid} --subjects '{uid}.fe.>'")
    assert not nbnats.stream_info(f"FE_{uid}")["config"].get("allow_atomic")
    ip.run_line_magic("nats", f"stream edit FE_{uid} --allow-atomic")
    assert nbnats.stream_info(f"FE_{uid}")["config"]["allow_atomic"] is True
    for name in (f"FL_{uid}", f"FC_{uid}", f"FM_{uid}", f"FN_{uid}", f"FE_{uid}"):
        nbnats.delete_stream(name)


def test_stream_flag_bad_input(connected, uid):
    with pytest.raises(ValidationError, match="allow_atomic must be True or False"):
        nbnats.add_stream(f"X_{uid}", f"{uid}.x.>", allow_atomic="yes")
    with pytest.raises(ValidationError, match="counter stream cannot also allow per-message TTLs"):
        nbnats.add_stream(f"X_{uid}", f"{uid}.x.>", allow_counter=True, allow_msg_ttl=True)
    with pytest.raises(ValidationError, match="did you mean 'allow_counter'"):
        nbnats.add_stream(f"X_{uid}", f"{uid}.x.>", allow_countr=True)
    with pytest.raises(NotFound):
        nbnats.stream_info(f"X_{uid}")                     # nothing was made
    check_flags(connected, {"allow_msg_counter": True, "allow_atomic": True})   # 2.15.1 has them all
    with pytest.raises(JetStreamError) as err:
        api.needs(connected, (99, 0), "atomic publish (allow_atomic)")
    assert "atomic publish (allow_atomic) needs nats-server 99.0+ (this one is 2." in str(err.value)


# -- per-message TTL --------------------------------------------------------------------
def test_publish_ttl_expires_the_message(features):
    stream, uid = features
    ack = nbnats.publish(f"{uid}.ttl.a", {"n": 1}, ttl="1s")      # ttl implies JetStream
    assert ack.stream == stream
    assert nbnats.get_message(stream, ack.seq).headers["Nats-TTL"] == "1"
    keep = nbnats.publish(f"{uid}.ttl.b", {"n": 2}, js=True)
    wait_until(lambda: not _has(stream, f"{uid}.ttl.a"), 10, "the message with a 1 s TTL to expire")
    assert _has(stream, f"{uid}.ttl.b") and nbnats.get_message(stream, keep.seq).json() == {"n": 2}


def test_pub_ttl_magic_and_bad_input(ip, features, plain):
    stream, uid = features
    ack = ip.run_line_magic("nats", f"pub {uid}.ttl.m hello --ttl 1s")
    assert ack.seq >= 1 and nbnats.get_message(stream, ack.seq).headers["Nats-TTL"] == "1"
    wait_until(lambda: not _has(stream, f"{uid}.ttl.m"), 10, "the magic's message to expire")
    with pytest.raises(ValidationError, match="minimum of 1 second"):
        nbnats.publish(f"{uid}.ttl.x", "x", ttl="500ms")
    with pytest.raises(ValidationError, match="not a duration"):
        nbnats.publish(f"{uid}.ttl.x", "x", ttl="soon")
    old, prefix = plain
    with pytest.raises(JetStreamError, match="does not allow per-message TTLs") as err:
        nbnats.publish(f"{prefix}.a", "x", ttl="5s")
    assert "allow_msg_ttl=True" in str(err.value)
    r = ip.run_cell(f"%nats pub {prefix}.a x --ttl 5s")
    assert not r.success and "--allow-msg-ttl" in str(r.error_in_exec)       # worded for the magic
    assert _messages(old) == 0


# -- scheduled messages --------------------------------------------------------------------
def test_schedule_publishes_to_the_target_later(features):
    stream, uid = features
    sched, target = f"{uid}.sched.one", f"{uid}.fired.one"
    ack = nbnats.publish(sched, {"remind": "ada"}, schedule="2s", schedule_target=target)
    assert nbnats.get_message(stream, ack.seq).headers["Nats-Schedule"].startswith("@at ")
    assert not _has(stream, target)                                     # not yet
    took = wait_until(lambda: _has(stream, target), 10, "the scheduled message to fire")
    assert took > 0.5
    fired = nbnats.get_message(stream, last_for=target)
    assert fired.json() == {"remind": "ada"} and fired.headers["Nats-Scheduler"] == sched
    wait_until(lambda: not _has(stream, sched), 5, "the one-off schedule to be purged")


def test_schedule_forms(features):
    stream, uid = features
    later = nbnats.publish(f"{uid}.sched.later", "x", schedule="@at 2099-01-01T10:00:00+01:00",
                           schedule_target=f"{uid}.fired.later")
    assert nbnats.get_message(stream, later.seq).headers["Nats-Schedule"] == "@at 2099-01-01T09:00:00Z"
    every = nbnats.publish(f"{uid}.sched.every", "tick", schedule="@every 1s", schedule_target=f"{uid}.fired.every",
                           schedule_ttl="1h")
    assert nbnats.get_message(stream, every.seq).headers["Nats-Schedule"] == "@every 1s"
    wait_until(lambda: nbnats.stream_info(stream)["state"]["num_subjects"] >= 3 and
               len(nbnats.replay(stream, subject=f"{uid}.fired.every", progress=False)) >= 2, 10,
               "a repeating schedule to fire twice")
    fired = nbnats.replay(stream, subject=f"{uid}.fired.every", progress=False)
    assert fired["headers"].iloc[0]["Nats-TTL"] == "3600"
    assert not _has(stream, f"{uid}.fired.later")
    assert schedule_pattern(pd.Timestamp("2030-05-01 12:00", tz="Europe/Amsterdam")) == \
        ("@at 2030-05-01T10:00:00Z", (2, 12))
    assert schedule_pattern("@hourly") == ("@hourly", (2, 14))


def test_schedule_magic_and_bad_input(ip, features, plain):
    stream, uid = features
    ack = ip.run_line_magic("nats", f"pub {uid}.sched.m '{{\"n\": 1}}' --schedule 1s --schedule-dest {uid}.fired.m")
    assert ack.stream == stream
    wait_until(lambda: _has(stream, f"{uid}.fired.m"), 10, "the magic's schedule to fire")
    assert nbnats.get_message(stream, last_for=f"{uid}.fired.m").json() == {"n": 1}
    before = _messages(stream)
    for kwargs, kind, fragment in [
            (dict(schedule="10s"), ValidationError, "needs a target"),
            (dict(schedule="10s", schedule_target=f"{uid}.sched.bad"), ValidationError, "is the subject the schedule"),
            (dict(schedule="@sometimes", schedule_target=f"{uid}.t"), ValidationError, "not a pattern"),
            (dict(schedule="@every 500ms", schedule_target=f"{uid}.t"), ValidationError, "once a second"),
            (dict(schedule="tomorrow", schedule_target=f"{uid}.t"), ValidationError, "names no time"),
            (dict(schedule_target=f"{uid}.t"), ValidationError, "only go with a schedule"),
            (dict(schedule="10s", schedule_target="elsewhere.x"), ValidationError, "another subject of stream")]:
        with pytest.raises(kind, match=fragment):
            nbnats.publish(f"{uid}.sched.bad", "x", **kwargs)
    assert _messages(stream) == before                                  # nothing was stored
    old, prefix = plain
    with pytest.raises(JetStreamError, match="does not allow scheduled messages"):
        nbnats.publish(f"{prefix}.s", "x", schedule="10s", schedule_target=f"{prefix}.t")
    r = ip.run_cell(f"%nats pub {uid}.sched.bad x --schedule 10s")
    assert not r.success and "--schedule-dest" in str(r.error_in_exec)


# -- atomic publish_frame ----------------------------------------------------------------------
def test_atomic_frame_is_one_batch(features):
    stream, uid = features
    df = pd.DataFrame({"id": [1, 2, 3, 4, 5], "total": [9.5, 1.0, 2.0, 3.0, 4.0]})
    got = nbnats.publish_frame(f"{uid}.rows", df, atomic=True, msg_id="id")
    assert list(got.columns) == ["batch", "rows", "stream", "first_seq", "last_seq"]
    assert got["rows"].tolist() == [5] and got.attrs["split"] is False and got.attrs["batches"] == 1
    assert str(got["first_seq"].dtype) == "Int64"
    back = nbnats.replay(stream, subject=f"{uid}.rows", progress=False)
    assert back["id"].tolist() == [1, 2, 3, 4, 5]
    assert back["seq"].tolist() == list(range(int(got["first_seq"][0]), int(got["last_seq"][0]) + 1))
    assert [h["Nats-Msg-Id"] for h in back["headers"]] == ["1", "2", "3", "4", "5"]
    assert back["headers"].iloc[-1]["Nats-Batch-Commit"] == "1"
    # published again, the ids are known: the whole batch is refused, nothing stored twice
    with pytest.raises(Conflict, match="repeats a message id"):
        nbnats.publish_frame(f"{uid}.rows", df, atomic=True, msg_id="id")
    assert _messages(stream) == 5


def test_atomic_is_all_or_nothing(connected, uid):
    name = f"FULL_{uid}"
    nbnats.add_stream(name, f"{uid}.full.>", allow_atomic=True, max_msgs=3, discard="new")
    try:
        with pytest.raises(JetStreamError, match="maximum messages"):
            nbnats.publish_frame(f"{uid}.full.x", pd.DataFrame({"n": range(5)}), atomic=True)
        assert _messages(name) == 0                    # not the first three: none of them
        assert nbnats.publish_frame(f"{uid}.full.x", pd.DataFrame({"n": range(3)}), atomic=True)["rows"].sum() == 3
    finally:
        nbnats.delete_stream(name)


def test_atomic_split_over_the_batch_limit_is_said(features):
    stream, uid = features
    df = pd.DataFrame({"n": range(2_500)})
    with pytest.warns(BatchSplitWarning, match="3 batches"):
        got = nbnats.publish_frame(f"{uid}.many", df, atomic=True)
    assert got["rows"].tolist() == [1000, 1000, 500]
    assert got.attrs["split"] is True and got.attrs["batch_limit"] == 1000 and got.attrs["rows"] == 2500
    assert "each all-or-nothing on its own" in got.attrs["warnings"][-1]
    assert _messages(stream) == 2500
    with pytest.warns(BatchSplitWarning):
        small = nbnats.publish_frame(f"{uid}.few", df.head(5), atomic=True, batch_size=2)
    assert small["rows"].tolist() == [2, 2, 1]


def test_atomic_learns_a_lower_server_limit():
    """A server configured with a batch limit of 10 (jetstream.limits.batch.max_msgs): the frame is re-split."""
    folder = tempfile.mkdtemp()
    conf = os.path.join(folder, "batch.conf")
    with open(conf, "w") as f:
        f.write("jetstream {\n  limits {\n    batch {\n      max_msgs: 10\n    }\n  }\n}\n")
    srv = server.start(extra_args=["-c", conf])
    try:
        nbnats.connect(srv.url, name="small_batches")
        nbnats.add_stream("SMALL", "small.>", allow_atomic=True, connection="small_batches")
        with pytest.warns(BatchSplitWarning):
            got = nbnats.publish_frame("small.x", pd.DataFrame({"n": range(25)}), atomic=True,
                                       connection="small_batches")
        assert got["rows"].tolist() == [10, 10, 5] and got.attrs["batch_limit"] == 10
        assert "at most 10 messages" in got.attrs["warnings"][0]
        assert nbnats.stream_info("SMALL", connection="small_batches")["state"]["messages"] == 25
    finally:
        nbnats.close("small_batches")
        srv.stop()


def test_dry_run_sends_nothing(features):
    stream, uid = features
    df = pd.DataFrame({"id": ["a", "b", "c"], "v": [1, 2, 3]})
    plan = nbnats.publish_frame(f"{uid}.dry", df, msg_id="id", dry_run=True)
    assert list(plan.columns) == ["subject", "headers", "bytes", "size"]
    assert plan["bytes"].tolist()[0] == b'{"id":"a","v":1}' and plan["size"].tolist() == [16, 16, 16]
    assert [h["Nats-Msg-Id"] for h in plan["headers"]] == ["a", "b", "c"]
    atomic = nbnats.publish_frame(f"{uid}.dry", df, atomic=True, batch_size=2, dry_run=True)
    commits = [h.get("Nats-Batch-Commit") for h in atomic["headers"]]
    assert commits == [None, "1", "1"] and [h["Nats-Batch-Sequence"] for h in atomic["headers"]] == ["1", "2", "1"]
    assert atomic.attrs["batches"] == 2 and atomic.attrs["split"] is True
    assert _messages(stream) == 0
    plan.to_parquet(os.path.join(tempfile.mkdtemp(), "plan.parquet"))       # the frame writes


def test_non_atomic_msg_id_dedupes(features):
    stream, uid = features
    df = pd.DataFrame({"order": [10, 11]})
    assert nbnats.publish_frame(f"{uid}.dedupe", df, msg_id="order") == 2
    assert nbnats.publish_frame(f"{uid}.dedupe", df, msg_id="order") == 2
    wait_until(lambda: _messages(stream) == 2, 5, "the stream to store the two rows")
    assert _messages(stream) == 2                              # the second publish was dropped as duplicates


def test_publish_frame_bad_input(features, plain):
    stream, uid = features
    df = pd.DataFrame({"id": [1, 2]})
    old, prefix = plain
    with pytest.raises(JetStreamError, match="does not allow atomic publish") as err:
        nbnats.publish_frame(f"{prefix}.a", df, atomic=True)
    assert "allow_atomic=True" in str(err.value)
    with pytest.raises(ValidationError, match="2 streams"):
        nbnats.publish_frame(None, pd.DataFrame({"s": [f"{uid}.a", f"{prefix}.a"]}), subject_column="s", atomic=True)
    with pytest.raises(NotFound, match="no JetStream stream stores"):
        nbnats.publish_frame("nowhere.at.all", df, atomic=True)
    with pytest.raises(ValidationError, match="no column 'key'"):
        nbnats.publish_frame(f"{uid}.a", df, msg_id="key")
    with pytest.raises(ValidationError, match="has no value in the msg_id column"):
        nbnats.publish_frame(f"{uid}.a", pd.DataFrame({"id": [1.0, None]}), msg_id="id")
    with pytest.raises(ValidationError, match="repeats '1'"):
        nbnats.publish_frame(f"{uid}.a", pd.DataFrame({"id": [1, 1]}), msg_id="id", atomic=True)
    with pytest.raises(ValidationError, match="batch_size"):
        nbnats.publish_frame(f"{uid}.a", df, atomic=True, batch_size=0)
    small = f"TINY_{uid}"
    nbnats.add_stream(small, f"{uid}t.>", allow_atomic=True, max_msg_size=200)
    try:
        with pytest.raises(PayloadTooLarge, match="row 1 is .* nothing was sent"):
            nbnats.publish_frame(f"{uid}t.a", pd.DataFrame({"note": ["x", "y" * 300]}), atomic=True)
        assert _messages(small) == 0
    finally:
        nbnats.delete_stream(small)
    assert _messages(stream) == 0 and _messages(old) == 0


# -- KV per-key TTL and compact ----------------------------------------------------------------
def test_kv_per_key_ttl_expires_the_key(ip, connected, uid):
    kv = nbnats.kv(f"ttl_{uid}", create=True)
    assert kv.per_key_ttl
    kv.put("session.a", {"user": "ada"}, ttl="1s")
    kv.put("session.b", {"user": "bob"})
    ip.run_line_magic("nats", f"kv put ttl_{uid} session.c '{{\"user\": \"cy\"}}' --ttl 1s")
    assert kv.keys() == ["session.a", "session.b", "session.c"]
    wait_until(lambda: kv.keys() == ["session.b"], 10, "the keys with a 1 s TTL to expire")
    with pytest.raises(NotFound):
        kv.get("session.a")
    assert kv.get("session.b").value == {"user": "bob"}
    with pytest.raises(ValidationError, match="at least 1 second"):
        kv.put("session.d", 1, ttl="200ms")
    nbnats.delete_bucket(f"ttl_{uid}")


def test_kv_compact(ip, connected, uid):
    bucket = f"cmp_{uid}"
    kv = nbnats.kv(bucket, create=True, history=5)
    for i in range(3):
        kv.put("gone", i)
    kv.put("wiped", 1)
    kv.put("kept", {"n": 1})
    kv.delete("gone")
    kv.purge("wiped")
    done = kv.compact()                      # markers younger than 30 min stay
    assert done["key"].tolist() == ["gone", "wiped"] and done["operation"].tolist() == ["DEL", "PURGE"]
    assert done["marker_removed"].tolist() == [False, False] and str(done["revision"].dtype) == "Int64"
    assert kv.history("gone")["operation"].tolist() == ["DEL"]          # the three PUTs were reclaimed
    assert nbnats.stream_info(f"KV_{bucket}")["state"]["messages"] == 3
    shown = ip.run_line_magic("nats", f"kv compact {bucket} --older-than 0")
    assert shown["marker_removed"].tolist() == [True, True]
    assert nbnats.stream_info(f"KV_{bucket}")["state"]["messages"] == 1
    with pytest.raises(NotFound):
        kv.history("gone")
    assert kv.get("kept").value == {"n": 1} and kv.compact().empty
    with pytest.raises(ValidationError, match="not a duration"):
        kv.compact(older_than="a while")
    nbnats.delete_bucket(bucket)


# -- obj watch -------------------------------------------------------------------------------------
def test_obj_watch(ip, connected, uid):
    bucket = f"ow_{uid}"
    ob = nbnats.objects(bucket, create=True)
    ob.put("first.txt", b"1")
    w = ob.watch()
    wait_until(lambda: w.count >= 1, 5, "the watch to see the object already there")
    news = ip.run_line_magic("nats", f"obj watch {bucket} --updates-only")
    ob.put("second.bin", b"22" * 1000)
    ob.delete("first.txt")
    wait_until(lambda: w.count >= 3 and news.count >= 2, 10, "the watches to see the put and the delete")
    df = w.df
    assert df["name"].tolist() == ["first.txt", "second.bin", "first.txt"]
    assert df["operation"].tolist() == ["PUT", "PUT", "DEL"]
    assert df["size"].tolist() == [1, 2000, 0] and str(df["size"].dtype) == "Int64"
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert news.df["name"].tolist() == ["second.bin", "first.txt"]
    pieces = nbnats.background.pieces().set_index("id")
    assert pieces.loc[w.id, "kind"] == "obj watch" and pieces.loc[w.id, "target"] == bucket
    assert pieces.loc[w.id, "count"] == 3
    nbnats.stop_all()
    assert not w.running and not news.running
    assert len(w.df) == 3                                  # the rows stay readable
    with pytest.raises(NotFound, match="does not exist"):
        nbnats.ObjectStore(f"none_{uid}").watch()
    nbnats.delete_object_store(bucket)
