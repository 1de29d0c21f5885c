"""Key-value buckets against the real bundled nats-server: values, revisions, CAS, history,
watches, bad input (nothing written), magics, and a raw nats-py client on the other side."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import datetime as dt

import pandas as pd
import pytest

import nbnats
from faultkit import wait_until
from nbnats.runtime import loop
from nbnats.errors import (Conflict, InvalidKey, InvalidName, JetStreamError, KeyDeleted, NatsError, NotFound,
                           PayloadTooLarge, ValidationError)
from nbnats.engine import api
from nbnats.engine.publish import publish
from nbnats.kv import KV, Entry, KVWatch, buckets, delete_bucket, kv as open_kv
from nbnats.kv.manage import stream_config


@pytest.fixture
def kv(connected, uid) -> KV:
    bucket = open_kv(f"kv_{uid}", create=True, history=5)
    yield bucket
    try:
        delete_bucket(bucket.bucket)
    except NatsError:
        pass


def messages(bucket: KV) -> int:
    return bucket.info()["values"]


def test_doctest_examples():
    for name in ("nbnats.kv.bucket", "nbnats.kv.frame", "nbnats.kv.manage", "nbnats.objects",
                 "nbnats.widgets.kv_editor", "nbnats.widgets.kv_keys", "nbnats.widgets.kv_pane",
                 "nbnats.widgets.kv_watch"):
        result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, name


# -- values and revisions ---------------------------------------------------------
def test_values_round_trip_decoded_like_tails(kv):
    revs = [kv.put("v.dict", {"name": "ada", "n": 1}), kv.put("v.list", [1, 2]), kv.put("v.text", "héllo"),
            kv.put("v.bytes", b"\xff\x00"), kv.put("v.number", 5)]
    assert revs == sorted(revs) and len(set(revs)) == 5
    assert kv.get("v.dict").value == {"name": "ada", "n": 1}
    assert kv.get("v.list").value == [1, 2]
    assert kv.get("v.text").value == "héllo"
    assert kv.get("v.bytes").value == b"\xff\x00"
    assert kv.get("v.number").value == "5"            # not JSON object/array: text, as in tails
    e = kv.get("v.dict")
    assert isinstance(e, Entry) and e.revision == revs[0] and e.operation == "PUT" and e.raw == b'{"name":"ada","n":1}'
    assert e.created.tz is not None and abs(pd.Timestamp.now(tz="UTC") - e.created) < pd.Timedelta(seconds=30)
    assert "v.dict" in kv and "v.missing" not in kv
    assert "rev" in repr(e) and "<pre" in e._repr_html_() and "ada" in e._repr_html_()


def test_create_update_compare_and_set(kv):
    r1 = kv.create("lock.a", "owner-1")
    with pytest.raises(Conflict, match="already exists") as err:
        kv.create("lock.a", "owner-2")
    assert err.value.current.revision == r1
    r2 = kv.update("lock.a", "owner-1b", last=r1)
    with pytest.raises(Conflict, match=f"changed since revision {r1}: it is now at revision {r2}") as err:
        kv.update("lock.a", "stale", last=r1)
    assert err.value.current.value == "owner-1b"
    assert kv.get("lock.a").value == "owner-1b"       # the stale write changed nothing
    kv.delete("lock.a")
    assert kv.create("lock.a", "owner-3") > r2        # a deleted key counts as absent
    with pytest.raises(ValidationError):
        kv.update("lock.a", "x", last="7")


def test_deleted_and_missing_keys_are_told_apart(kv):
    kv.put("user.1", {"n": 1})
    rev = kv.delete("user.1")
    with pytest.raises(KeyDeleted, match=f"was deleted at revision {rev}") as err:
        kv.get("user.1")
    assert isinstance(err.value, NotFound) and err.value.entry.operation == "DEL"
    with pytest.raises(NotFound, match="does not exist") as err:
        kv.get("user.2")
    assert not isinstance(err.value, KeyDeleted)
    kv.put("user.3", 1)
    kv.purge("user.3")
    with pytest.raises(KeyDeleted, match="was purged"):
        kv.get("user.3")
    before = messages(kv)
    with pytest.raises(NotFound):
        kv.delete("user.never")                        # nothing to delete: nothing written
    with pytest.raises(KeyDeleted):
        kv.delete("user.1")
    with pytest.raises(NotFound):
        kv.purge("user.never")
    assert messages(kv) == before


def test_revisions_history_and_revert(kv):
    r = [kv.put("doc", {"v": i}) for i in range(3)]
    kv.put("other", "x")
    assert kv.get("doc", revision=r[0]).value == {"v": 0}
    h = kv.history("doc")
    assert list(h.columns[:5]) == ["key", "value", "revision", "created", "operation"]
    assert h["revision"].tolist() == r and str(h["revision"].dtype) == "Int64"
    assert str(h["created"].dtype) == "datetime64[ns, UTC]" and h["v"].tolist() == [0, 1, 2]
    new = kv.revert("doc", r[0])
    assert new > r[2] and kv.get("doc").value == {"v": 0}
    assert kv.revert("doc", new) == new                # already current: nothing written
    kv.delete("doc")
    assert kv.history("doc")["operation"].tolist()[-1] == "DEL"
    restored = kv.revert("doc", r[1])
    assert kv.get("doc").value == {"v": 1} and kv.get("doc").revision == restored
    with pytest.raises(NotFound, match="keeps 5 revision"):
        kv.get("doc", revision=kv.get("other").revision)   # another key's revision
    with pytest.raises(NotFound):
        kv.history("nothing.here")


def test_revert_to_a_revision_that_is_gone_writes_nothing(kv):
    first = kv.put("k", "v0")
    for i in range(1, 6):                              # history 5: the first revision falls out
        kv.put("k", f"v{i}")
    assert first not in kv.history("k")["revision"].tolist()
    before = messages(kv)
    with pytest.raises(NotFound, match=f"revision {first} of key 'k' is not in bucket"):
        kv.revert("k", first)
    with pytest.raises(NotFound):
        kv.get("k", revision=first)
    assert messages(kv) == before and kv.get("k").value == "v5"


def test_keys_and_to_frame(kv):
    kv.put("user.2", {"name": "bo", "key": "collides", "cart": {"n": 2}})
    kv.put("user.10", {"name": "al"})
    kv.put("cfg", "plain")
    kv.put("gone", "x")
    kv.delete("gone")
    assert kv.keys() == ["cfg", "user.10", "user.2"]
    assert kv.keys("user.*") == ["user.10", "user.2"]
    df = kv.to_frame()
    assert df["key"].tolist() == ["cfg", "user.10", "user.2"]
    assert list(df.columns[:5]) == ["key", "value", "revision", "created", "operation"]
    assert "value.key" in df.columns and "cart.n" in df.columns and "name" in df.columns
    assert df.set_index("key").loc["cfg", "value"] == "plain"
    full = kv.to_frame(deleted=True)
    assert full.set_index("key").loc["gone", "operation"] == "DEL"
    assert full.set_index("key").loc["gone", "value"] is None
    empty = open_kv(kv.bucket + "_e", create=True)
    try:
        assert empty.keys() == [] and len(empty.to_frame()) == 0
        assert list(empty.to_frame().columns) == ["key", "value", "revision", "created", "operation"]
    finally:
        delete_bucket(empty.bucket)


def test_ttl_bucket_and_per_key_ttl(connected, uid):
    s = open_kv(f"sess_{uid}", create=True, ttl=1)
    try:
        assert s.info()["ttl"] == pd.Timedelta(seconds=1)
        s.put("session.a", {"user": "ada"})
        s.put("session.b", "short", ttl=1)
        wait_until(lambda: "session.a" not in s, 6, "the bucket ttl expiring session.a")
        assert "session.b" not in s
    finally:
        delete_bucket(s.bucket)
    with pytest.raises(ValidationError, match="at least 1 second"):
        open_kv(f"sess_{uid}", create=True).put("k", "v", ttl=0.5)


def _config(bucket: str) -> dict:
    conn = nbnats.current()
    return loop.run(api.request(conn, f"STREAM.INFO.KV_{bucket}", what="reading"), 5, "reading")["config"]


@pytest.mark.parametrize("ttl", ["1h", dt.timedelta(hours=1), 3600, 3600.0, "60m"])
def test_bucket_ttl_in_every_spelling(connected, uid, ttl):
    b = open_kv(f"ttl_{uid}", create=True, ttl=ttl)
    try:
        assert b.info()["ttl"] == pd.Timedelta(hours=1) and _config(b.bucket)["max_age"] == 3600 * 10**9
        assert open_kv(b.bucket, ttl="1h").bucket == b.bucket       # the same setting, spelled otherwise
    finally:
        delete_bucket(b.bucket)


def test_per_key_ttl_accepted_where_the_bucket_allows_it(connected, uid):
    b = open_kv(f"pk_{uid}", create=True)
    try:
        assert b.per_key_ttl and _config(b.bucket)["allow_msg_ttl"] is True
        rev = b.put("short", "gone soon", ttl="1s")
        b.put("long", "stays")
        raw = loop.run(b.read_entry("short"), 5, "reading")
        assert raw.revision == rev
        wait_until(lambda: "short" not in b, 8, "the per-key ttl expiring 'short'")
        assert b.get("long").value == "stays"
        with pytest.raises(ValidationError, match="ttl 'soon' is not a duration"):
            b.put("k", "v", ttl="soon")
    finally:
        delete_bucket(b.bucket)


def test_per_key_ttl_refused_plainly_where_the_bucket_does_not_allow_it(connected, uid):
    bucket = f"nopk_{uid}"
    conn = nbnats.current()
    config = stream_config(bucket, history=2, msg_ttl=False)     # a bucket as older clients make it
    loop.run(api.request(conn, f"STREAM.CREATE.KV_{bucket}", config, what="creating"), 5, "creating")
    b = open_kv(bucket)
    try:
        assert not b.per_key_ttl
        with pytest.raises(JetStreamError, match="does not allow per-key TTLs") as err:
            b.put("k", "v", ttl="2s")
        assert " — " in str(err.value) and "%nats" not in str(err.value)
        assert b.info()["values"] == 0                              # nothing was written
        assert b.put("k", "v") >= 1                                 # without a ttl it works
    finally:
        delete_bucket(bucket)


def test_lost_compare_and_set_is_a_conflict_and_writes_nothing(kv, nats_url):
    import nats

    r1 = kv.put("race", {"n": 1})

    async def theirs():
        nc = await nats.connect(nats_url)
        try:
            other = await nc.jetstream().key_value(kv.bucket)
            return await other.update("race", b'{"n": 2}', last=r1)
        finally:
            await nc.close()

    r2 = asyncio.run(theirs())
    before = messages(kv)
    with pytest.raises(Conflict, match=f"changed since revision {r1}: it is now at revision {r2}") as err:
        kv.update("race", {"n": 3}, last=r1)
    assert isinstance(err.value, nbnats.NatsError) and err.value.current.value == {"n": 2}
    with pytest.raises(Conflict):
        kv.delete("race", last=r1)
    with pytest.raises(Conflict, match="already exists"):
        kv.create("race", {"n": 4})
    assert messages(kv) == before and kv.get("race").revision == r2


def test_a_bucket_made_here_is_a_bucket_to_nats_py(connected, uid, nats_url):
    """Same stream config as nats-py's create_key_value, and a fresh nats-py KeyValue reads it."""
    import nats

    ours, theirs_name = f"compat_{uid}", f"compat_py_{uid}"
    b = open_kv(ours, create=True, history=3, ttl="1h", max_value_size="1KB", description="d")
    b.put("user.1", {"name": "ada"})
    b.put("user.1", {"name": "ada", "n": 2})
    b.put("user.2", "text")
    b.put("gone", "x")
    b.delete("gone")
    b.put("purged", "x")
    b.purge("purged")

    async def read_with_nats_py():
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            await js.create_key_value(bucket=theirs_name, history=3, ttl=3600, max_value_size=1024,
                                      description="d", direct=True)
            kv = await js.key_value(ours)
            status = await kv.status()
            entry = await kv.get("user.1")
            history = [e.revision for e in await kv.history("user.1")]
            keys = sorted(await kv.keys())
            mine = (await js.stream_info(f"KV_{ours}")).config.as_dict()
            reference = (await js.stream_info(f"KV_{theirs_name}")).config.as_dict()
            await js.delete_key_value(theirs_name)
            return status, entry, history, keys, mine, reference
        finally:
            await nc.close()

    try:
        status, entry, history, keys, mine, reference = asyncio.run(read_with_nats_py())
        assert status.bucket == ours and status.history == 3 and status.ttl == 3600
        assert entry.value == b'{"name":"ada","n":2}' and entry.revision == b.get("user.1").revision
        assert history == b.history("user.1")["revision"].tolist()
        assert keys == ["user.1", "user.2"]
        for field in ("name", "subjects"):
            mine.pop(field), reference.pop(field)
        assert mine == reference
    finally:
        delete_bucket(ours)


def test_buckets_listing_settings_and_removal(connected, uid):
    b = open_kv(f"cfg_{uid}", create=True, history=3, ttl=3600, description="demo", storage="memory",
                max_value_size=1024)
    df = buckets()
    row = df.set_index("bucket").loc[b.bucket]
    assert row["history"] == 3 and row["ttl"] == pd.Timedelta(hours=1) and row["storage"] == "memory"
    assert row["direct"] and row["description"] == "demo"
    assert open_kv(b.bucket).history_depth == 3        # opens without settings
    assert open_kv(b.bucket, create=True, history=3).bucket == b.bucket
    with pytest.raises(JetStreamError, match="already exists with history=3, not 5"):
        open_kv(b.bucket, create=True, history=5)
    assert "<table" in b._repr_html_() and "history" in repr(b)
    delete_bucket(b.bucket)
    assert b.bucket not in buckets()["bucket"].tolist()
    with pytest.raises(NotFound, match="does not exist"):
        delete_bucket(b.bucket)


# -- bad input: one plain sentence, nothing written ------------------------------------
@pytest.mark.parametrize("key,fragment", [
    ("a..b", "empty token"), (".a", "starts or ends"), ("a.", "starts or ends"),
    ("user:123", "try 'user.123'"), ("has space", "contains ' '"), ("", "empty"), ("a.*", "contains '*'"),
])
def test_bad_keys_are_refused_before_sending(kv, key, fragment):
    before = messages(kv)
    for call in (lambda: kv.put(key, 1), lambda: kv.get(key), lambda: kv.create(key, 1),
                 lambda: kv.update(key, 1, last=1), lambda: kv.delete(key), lambda: kv.purge(key)):
        with pytest.raises(InvalidKey, match=fragment.replace("*", r"\*")) as err:
            call()
        assert " — " in str(err.value)
    assert messages(kv) == before


@pytest.mark.parametrize("name", ["a.b", "with space", "", "sess*", "a/b"])
def test_bad_bucket_names(connected, name):
    with pytest.raises(InvalidName, match="is not allowed"):
        open_kv(name, create=True)
    assert name not in buckets()["bucket"].tolist()


def test_unknown_bucket_and_bad_settings(connected, uid):
    with pytest.raises(NotFound, match=f"KV bucket 'nope_{uid}' does not exist — create it"):
        open_kv(f"nope_{uid}")
    with pytest.raises(ValidationError, match="history must be between 1 and 64"):
        open_kv(f"h_{uid}", create=True, history=100)
    with pytest.raises(ValidationError, match="storage"):
        open_kv(f"h_{uid}", create=True, storage="disk")
    with pytest.raises(JetStreamError, match="replicas"):
        open_kv(f"r_{uid}", create=True, replicas=3)      # a single server
    with pytest.raises(ValidationError, match="ttl 'soon' is not a duration"):
        open_kv(f"t_{uid}", create=True, ttl="soon")
    names = buckets()["bucket"].tolist()
    assert not any(n.endswith(uid) for n in names)


def test_a_removed_bucket_and_a_server_without_jetstream(connected, uid):
    b = open_kv(f"gone_{uid}", create=True)
    b.put("k", 1)
    delete_bucket(b.bucket)
    for call in (lambda: b.put("k", 2), lambda: b.get("k"), lambda: b.keys(), lambda: b.update("k", 3, last=1)):
        with pytest.raises(NotFound, match=f"KV bucket 'gone_{uid}' does not exist"):
            call()
    from nbnats.runtime import server
    with server.start(jetstream=False) as plain:
        nbnats.connect(plain.url, name="nojs")
        nbnats.use("default")
        try:
            with pytest.raises(JetStreamError, match="JetStream is not enabled on the server"):
                open_kv("anything", connection="nojs")
        finally:
            nbnats.close("nojs")


def test_values_over_the_limits_are_refused(kv, connected, uid):
    before = messages(kv)
    with pytest.raises(PayloadTooLarge, match="over the server's max_payload"):
        kv.put("big", b"x" * (connected.max_payload + 1))
    with pytest.raises(nbnats.CodecError):
        kv.put("frame", pd.DataFrame({"a": [1]}))
    assert messages(kv) == before
    small = open_kv(f"small_{uid}", create=True, max_value_size=10)
    try:
        with pytest.raises(PayloadTooLarge, match="max value size of 10 bytes"):
            small.put("k", "x" * 11)
        assert small.info()["values"] == 0
    finally:
        delete_bucket(small.bucket)


# -- watches ------------------------------------------------------------------------
def test_watch_starts_with_current_values_then_follows(kv):
    kv.put("a", 1)
    kv.put("b", {"x": 1})
    w = kv.watch()
    try:
        assert isinstance(w, KVWatch) and w.wait_caught_up(5).caught_up
        assert sorted(w.df["key"]) == ["a", "b"]
        kv.put("b", {"x": 2})
        kv.delete("a")
        w.wait(4, timeout=5)
        assert w.df["operation"].tolist()[-2:] == ["PUT", "DEL"]
        latest = w.latest()
        assert latest["key"].tolist() == ["b"] and latest["x"].tolist() == [2]
        assert w.id in nbnats.tails()["id"].tolist()
        assert w.widget.renders >= 1
    finally:
        w.stop()
    assert not w.running


def test_watch_is_never_stalled_by_a_burst(kv):
    """nats-py's KeyWatcher queue holds 256 entries; ours is a callback into a ring."""
    w = kv.watch("burst.>", updates_only=True, limit=500)
    conn = kv.conn

    async def burst():
        await asyncio.gather(*(publish(conn, f"{kv.prefix}burst.{i}", b"%d" % i) for i in range(3000)))

    try:
        loop.run(burst(), 30, "a burst of puts")
        w.wait(3000, timeout=15)
        df = w.df
        assert len(df) == 500 and w.dropped == 2500 and df["key"].iloc[-1] == "burst.2999"
    finally:
        w.stop()


def test_watch_a_pattern_with_history(kv):
    kv.put("x.1", "a")
    kv.put("x.1", "b")
    kv.put("y.1", "c")
    w = kv.watch("x.*", history=True)
    try:
        w.wait_caught_up(5)
        assert w.df["value"].tolist() == ["a", "b"]
    finally:
        w.stop()
    with pytest.raises(InvalidKey):
        kv.watch("x..y")


# -- the other side: a plain nats-py client --------------------------------------------
def test_raw_nats_py_buckets_read_and_written(connected, uid, nats_url):
    """nats-py makes buckets without direct get; ours use it. Both read each other's values."""
    import nats

    bucket = f"raw_{uid}"

    async def their_side():
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            theirs = await js.create_key_value(bucket=bucket, history=3)
            await theirs.put("from.py", b'{"who": "nats-py"}')
            await theirs.put("gone", b"x")
            await theirs.delete("gone")
            return theirs
        finally:
            await nc.close()

    asyncio.run(their_side())
    b = open_kv(bucket)
    try:
        assert not b.direct
        assert b.get("from.py").value == {"who": "nats-py"}
        with pytest.raises(KeyDeleted):
            b.get("gone")
        b.put("from.nbnats", {"who": "nbnats"})

        async def read_back():
            nc = await nats.connect(nats_url)
            try:
                theirs = await nc.jetstream().key_value(bucket)
                return (await theirs.get("from.nbnats")).value, sorted(await theirs.keys())
            finally:
                await nc.close()

        value, keys = asyncio.run(read_back())
        assert value == b'{"who":"nbnats"}' and keys == ["from.nbnats", "from.py"]
    finally:
        delete_bucket(bucket)


# -- magics -----------------------------------------------------------------------------
def test_kv_magics(ip, uid):
    bucket = f"mag_{uid}"
    run = lambda line: ip.run_line_magic("nats", line)     # noqa: E731
    assert isinstance(run(f"kv add {bucket} --history 4 --ttl 1h --max-value-size 1KB"), KV)
    row = run("kv ls").set_index("bucket").loc[bucket]
    assert row["history"] == 4 and row["max_value_size"] == 1024 and row["ttl"] == pd.Timedelta(hours=1)
    r1 = run(f'kv put {bucket} user.1 {{"name": "ada"}}')
    assert isinstance(r1, int)
    assert run(f"kv get {bucket} user.1").value == {"name": "ada"}
    ip.run_cell(f"%%nats kv put {bucket} user.2\nline one\nline two\n")
    assert run(f"kv get {bucket} user.2").value == "line one\nline two"
    r3 = run(f"kv create {bucket} user.3 '{{\"n\": 1}}'")
    assert run(f"kv update {bucket} user.3 second {r3}") > r3
    assert run(f"kv get {bucket} user.3 --revision {r3}").value == {"n": 1}
    assert run(f"kv revert {bucket} user.3 {r3}") > r3
    assert run(f"kv history {bucket} user.3")["revision"].tolist()[0] == r3
    assert run(f"kv ls {bucket}")["key"].tolist() == ["user.1", "user.2", "user.3"]
    run(f"kv del {bucket} user.2")
    run(f"kv purge {bucket} user.3")
    assert run(f"kv dump {bucket}")["key"].tolist() == ["user.1"]
    assert len(run(f"kv dump {bucket} --deleted")) == 3
    w = run(f"kv watch {bucket} --no-widget")
    assert isinstance(w, KVWatch)
    w.stop()
    ed = run(f"kv edit {bucket}")
    assert ed.key_list.options[0][1] == "user.1"
    ed.stop()
    assert run(f"kv info {bucket}").bucket == bucket
    run(f"kv rm {bucket}")
    assert bucket not in run("kv ls")["bucket"].tolist()


def test_kv_magic_errors_are_one_line(ip, uid):
    bucket = f"err_{uid}"
    ip.run_line_magic("nats", f"kv add {bucket}")
    for line, fragment in [(f"kv put {bucket} user:123 x", "try 'user.123'"),
                           (f"kv put {bucket} a..b x", "empty token"),
                           (f"kv get nosuch_{uid} k", "does not exist"),
                           (f"kv get {bucket} missing", "does not exist"),
                           (f"kv put {bucket} k", "no value was given"),
                           ("kv add bad.name", "not allowed"),
                           (f"kv update {bucket} k v 99", "no longer exists")]:
        r = ip.run_cell(f"%nats {line}")
        assert not r.success and isinstance(r.error_in_exec, NatsError), line
        assert fragment in str(r.error_in_exec), (line, str(r.error_in_exec))
    assert open_kv(bucket).keys() == []
    ip.run_line_magic("nats", f"kv rm {bucket}")


def test_hostile_values_keep_their_rows_in_kv_frames(kv, tmp_path):
    """Values too deep, with NaN literals or invalid UTF-8: every KV frame still displays and writes Parquet."""
    kv.put("deep", b"[" * 600 + b"]" * 600)
    kv.put("nan", b'{"x": NaN}')
    kv.put("latin1", b'{"name": "caf\xe9"}')
    kv.put("good", {"x": 1, "key": "shadowed"})
    for df in (kv.to_frame(), kv.history("deep"), kv.watch(">").wait_caught_up().df):
        df._repr_html_(), df.to_string(), list(df.itertuples())
        df.to_parquet(tmp_path / "kv.parquet")
    df = kv.to_frame().set_index("key")
    assert df.loc["good", "x"] == 1 and df.loc["good", "value.key"] == "shadowed"   # the one naming rule
    for key in ("deep", "nan", "latin1"):
        assert isinstance(df.loc[key, "decode_error"], str) and df.loc[key, "decode_error"], key
