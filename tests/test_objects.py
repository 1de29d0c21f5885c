"""The object store against the real bundled nats-server: bytes, files and DataFrames, chunking
past max_payload, listings, bad input (nothing left behind), magics, and a raw nats-py client."""

from __future__ import annotations

import asyncio
import os

import numpy as np
import pandas as pd
import pytest

from nbnats.errors import CodecError, InvalidName, JetStreamError, NatsError, NotFound, ValidationError
from nbnats.objects import ObjectInfo, ObjectStore, delete_object_store, object_stores, objects


@pytest.fixture
def ob(connected, uid) -> ObjectStore:
    store = objects(f"ob_{uid}", create=True)
    yield store
    try:
        delete_object_store(store.bucket)
    except NatsError:
        pass


@pytest.fixture
def their_url(connected, nats_url) -> str:
    """The session server's URL with its credentials, for another client (nats-py)."""
    from nbnats.runtime import session
    return session.server_url(secret=True) if hasattr(session, "server_url") else nats_url


def test_bytes_round_trip_and_large_objects_are_chunked(ob, connected):
    info = ob.put("hello.txt", b"hello")
    assert isinstance(info, ObjectInfo) and info.size == 5 and info.chunks == 1
    assert ob.get("hello.txt") == b"hello"
    big = os.urandom(3 * connected.max_payload // 2 + 12_345)       # > 1 MiB and > max_payload
    info = ob.put("big.bin", big)
    assert info.size == len(big) and info.chunks > 1 and info.digest.startswith("SHA-256=")
    assert ob.get("big.bin") == big
    assert info.modified.tz is not None and "big.bin" in repr(info) and "<table" in info._repr_html_()
    ob.put("empty", b"")
    assert ob.get("empty") == b"" and ob.info("empty").size == 0


def test_files_in_and_out(ob, tmp_path):
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n1,2\n" * 50_000)
    ob.put("data.csv", src)
    ob.put("again.csv", str(src))
    out = ob.get("data.csv", out=tmp_path / "copy.csv")
    assert out.read_bytes() == src.read_bytes()
    assert ob.get("again.csv") == src.read_bytes()
    with open(src, "rb") as f:
        ob.put("from-file-object", f)
    assert ob.get("from-file-object") == src.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temp file left


def test_dataframes_round_trip_with_their_dtypes(ob):
    df = pd.DataFrame({
        "id": pd.array([1, None, 3], dtype="Int64"),
        "kind": pd.Categorical(["a", "b", "a"]),
        "at": pd.to_datetime(["2024-01-01 10:00", "2024-01-02 11:30", None]).tz_localize("UTC"),
        "name": pd.array(["x", None, "z"], dtype="string"),
        "ok": [True, False, True],
        "score": [1.5, np.nan, 3.25],
        "note": ["n1", "n2", "n3"],
    }, index=pd.Index([10, 20, 30], name="row"))
    info = ob.put("frame.parquet", df)
    assert info.content_type == "application/vnd.apache.parquet"
    back = ob.get_frame("frame.parquet")
    pd.testing.assert_frame_equal(back, df)
    with pytest.raises(CodecError, match="cannot be stored as Parquet"):
        ob.put("mixed", pd.DataFrame({"m": [1, "a", {"x": 1}]}))


def test_listing_info_replace_and_delete(ob):
    ob.put("b.txt", b"bbb", description="second")
    ob.put("a.txt", b"a", headers={"Owner": "ada"})
    ls = ob.ls()
    assert ls["name"].tolist() == ["a.txt", "b.txt"] and ls["size"].tolist() == [1, 3]
    assert list(ls.columns) == ["name", "size", "chunks", "modified", "content_type", "description", "digest"]
    assert str(ls["modified"].dtype).startswith("datetime64") and ls.loc[1, "description"] == "second"
    assert ob.info("a.txt").headers == {"Owner": ["ada"]}
    before = ob.status()["bytes"]
    ob.put("b.txt", b"B" * 10)                       # replaced: the old chunks are purged
    assert ob.get("b.txt") == b"B" * 10 and len(ob.ls()) == 2
    ob.delete("a.txt")
    assert ob.ls()["name"].tolist() == ["b.txt"] and "a.txt" not in ob and "b.txt" in ob
    assert ob.ls(deleted=True).set_index("name").loc["a.txt", "deleted"]
    assert ob.status()["bytes"] < before + 1000
    assert ob.bucket in object_stores()["bucket"].tolist()
    assert "b.txt" in ob._repr_html_()


def test_progress_bar_for_large_objects(ob, capsys):
    ob.put("p.bin", b"x" * 2_000_000, progress=True)
    ob.get("p.bin", progress=True)
    err = capsys.readouterr().err
    assert "put p.bin" in err and "get p.bin" in err and "B/s" in err


# -- bad input ---------------------------------------------------------------------------
def test_missing_deleted_and_unknown(ob, connected, uid):
    with pytest.raises(NotFound, match="is not in bucket"):
        ob.get("nope")
    with pytest.raises(NotFound, match="is not in bucket"):
        ob.info("nope")
    with pytest.raises(NotFound):
        ob.delete("nope")
    ob.put("gone", b"x")
    ob.delete("gone")
    with pytest.raises(NotFound, match="was deleted"):
        ob.get("gone")
    with pytest.raises(NotFound, match=f"object store 'none_{uid}' does not exist — create it"):
        objects(f"none_{uid}")
    with pytest.raises(NotFound):
        delete_object_store(f"none_{uid}")
    with pytest.raises(InvalidName):
        objects("bad.name", create=True)
    with pytest.raises(ValidationError, match="object name"):
        ob.put("", b"x")


def test_a_removed_bucket(connected, uid):
    store = objects(f"rm_{uid}", create=True)
    store.put("a", b"x")
    delete_object_store(store.bucket)
    for call in (lambda: store.get("a"), lambda: store.put("b", b"y"), lambda: store.ls(), lambda: store.info("a")):
        with pytest.raises(NotFound, match=f"object store 'rm_{uid}' does not exist"):
            call()


def test_bad_sources_write_nothing(ob):
    with pytest.raises(NotFound, match="a str is read as a file path"):
        ob.put("note", "just some text")
    with pytest.raises(CodecError, match="cannot store a int"):
        ob.put("n", 42)
    ob.put("raw", b"not parquet")
    with pytest.raises(CodecError, match="not a Parquet file"):
        ob.get_frame("raw")
    assert ob.ls()["name"].tolist() == ["raw"]


def test_a_full_bucket_refuses_and_leaves_no_chunks(connected, uid):
    small = objects(f"small_{uid}", create=True, max_bytes=300_000)
    try:
        with pytest.raises(JetStreamError, match="refused"):
            small.put("too-big", os.urandom(1_000_000))
        assert small.status()["messages"] == 0 and len(small.ls()) == 0
    finally:
        delete_object_store(small.bucket)


def _purge(ob, subject: str) -> None:
    from nbnats.engine import api
    from nbnats.runtime import loop
    loop.run(api.request(ob.conn, f"STREAM.PURGE.{ob.stream}", {"filter": subject}, what="purging"), 10, "purging")


def _publish(ob, subject: str, data: bytes) -> None:
    from nbnats.engine.publish import publish
    from nbnats.runtime import loop
    loop.run(publish(ob.conn, subject, data), 10, "publishing a chunk")


def test_missing_chunks_are_reported(ob):
    ob.put("broken", os.urandom(300_000))
    _purge(ob, f"$O.{ob.bucket}.C.{ob.info('broken').nuid}")
    with pytest.raises(JetStreamError, match="chunks of object 'broken' are missing"):
        ob.get("broken")


def test_corrupted_chunks_are_detected_on_get(ob, tmp_path):
    data = os.urandom(300_000)
    ob.put("extra", data)
    chunks = f"$O.{ob.bucket}.C.{ob.info('extra').nuid}"
    _publish(ob, chunks, b"not part of it")                      # one chunk too many
    with pytest.raises(JetStreamError, match="'extra' in bucket .* came back damaged: its chunks hold more"):
        ob.get("extra")
    ob.put("swapped", data)
    chunks = f"$O.{ob.bucket}.C.{ob.info('swapped').nuid}"
    _purge(ob, chunks)
    _publish(ob, chunks, bytes(len(data)))                     # the right size, the wrong bytes
    with pytest.raises(JetStreamError, match="came back damaged: its SHA-256 digest does not match"):
        ob.get("swapped", out=tmp_path / "swapped.bin")
    assert list(tmp_path.iterdir()) == []                      # no file, no temp file written
    _purge(ob, chunks)
    _publish(ob, chunks, data[:1000])                          # chunks lost at the end
    with pytest.raises(JetStreamError, match="hold 1,000 bytes, its metadata names 300,000"):
        ob.get("swapped")


def test_twenty_megabytes_round_trip(ob):
    import time
    data = os.urandom(20 * 1024 * 1024)
    t0 = time.perf_counter()
    info = ob.put("big", data)
    t1 = time.perf_counter()
    back = ob.get("big")
    t2 = time.perf_counter()
    assert back == data and info.size == len(data) and info.chunks == 160
    print(f"\n20 MiB object: put {t1 - t0:.2f} s ({20 / (t1 - t0):.0f} MiB/s), "
          f"get {t2 - t1:.2f} s ({20 / (t2 - t1):.0f} MiB/s)")
    assert t2 - t0 < 30


def test_bucket_settings_take_units_and_match_the_other_clients(connected, uid, their_url):
    from nbnats.engine import api
    from nbnats.runtime import loop
    ours = objects(f"set_{uid}", create=True, ttl="1h", max_bytes="64MB", description="units")
    try:
        row = ours.status()
        assert row["ttl"] == pd.Timedelta(hours=1) and row["description"] == "units" and not row["sealed"]
        info = lambda b: loop.run(api.request(connected, f"STREAM.INFO.OBJ_{b}", what="x"), 10, "x")["config"]  # noqa: E731

        async def theirs():
            import nats
            from nats.js.api import ObjectStoreConfig
            nc = await nats.connect(their_url)
            try:
                await nc.jetstream().create_object_store(f"py_{uid}", ObjectStoreConfig(
                    ttl=3600, max_bytes=64 * 1024 * 1024, description="units"))
            finally:
                await nc.close()

        asyncio.run(theirs())
        mine, py = info(f"set_{uid}"), info(f"py_{uid}")
        for key in ("subjects", "max_age", "max_bytes", "discard", "allow_rollup_hdrs", "allow_direct",
                    "storage", "num_replicas", "retention", "deny_delete", "deny_purge", "max_msgs_per_subject"):
            want = [s.replace(f"py_{uid}", f"set_{uid}") for s in py[key]] if key == "subjects" else py[key]
            assert mine[key] == want, key
        with pytest.raises(ValidationError, match="max_bytes '64 lots' is not a size"):
            objects(f"x_{uid}", create=True, max_bytes="64 lots")
        with pytest.raises(ValidationError, match="ttl 'soon' is not a duration"):
            objects(f"x_{uid}", create=True, ttl="soon")
    finally:
        delete_object_store(ours.bucket)
        delete_object_store(f"py_{uid}")


def test_a_sealed_bucket_reads_but_refuses_changes(ob):
    ob.put("kept", b"k")
    ob.seal()
    assert ob.status()["sealed"] and ob.get("kept") == b"k" and ob.ls()["name"].tolist() == ["kept"]
    for call in (lambda: ob.put("new", b"n"), lambda: ob.delete("kept")):
        with pytest.raises(JetStreamError, match="is sealed: it can be read but not changed"):
            call()


# -- the other side: a plain nats-py client ---------------------------------------------
def test_raw_nats_py_objects_read_and_written(ob, their_url):
    import nats

    payload = os.urandom(400_000)

    async def with_theirs(fn):
        nc = await nats.connect(their_url)
        try:
            return await fn(await nc.jetstream().object_store(ob.bucket))
        finally:
            await nc.close()

    async def write(theirs):
        from nats.js.api import ObjectMeta
        await theirs.put("from-py", payload, meta=ObjectMeta(description="by nats-py", headers={"Owner": ["py"]}))
        await theirs.put("from-py-empty", b"")

    asyncio.run(with_theirs(write))
    assert ob.get("from-py") == payload and ob.get("from-py-empty") == b""
    info = ob.info("from-py")
    assert info.description == "by nats-py" and info.headers == {"Owner": ["py"]} and info.chunks == 4
    ob.put("from-nbnats", payload[::-1], description="by nbnats", headers={"Owner": "nb"})
    ob.put("gone", b"x")
    ob.delete("gone")
    ob.put("from-py", b"replaced by nbnats")

    async def read(theirs):
        got = await theirs.get("from-nbnats")
        names = sorted(i.name for i in await theirs.list(ignore_deletes=True))
        return got, names, (await theirs.get("from-py")).data, await theirs.get_info("gone", show_deleted=True)

    got, names, replaced, gone = asyncio.run(with_theirs(read))
    assert got.data == payload[::-1] and got.info.description == "by nbnats" and got.info.headers == {"Owner": ["nb"]}
    assert got.info.size == len(payload) and got.info.digest.startswith("SHA-256=")
    assert names == ["from-nbnats", "from-py", "from-py-empty"] and replaced == b"replaced by nbnats"
    assert gone.deleted and gone.size == 0

    async def delete(theirs):
        await theirs.delete("from-nbnats")

    asyncio.run(with_theirs(delete))
    assert "from-nbnats" not in ob and ob.ls()["name"].tolist() == ["from-py", "from-py-empty"]


# -- magics ------------------------------------------------------------------------------
def test_obj_magics(ip, uid, tmp_path):
    bucket = f"mobj_{uid}"
    run = lambda line: ip.run_line_magic("nats", line)     # noqa: E731
    assert isinstance(run(f"obj add {bucket}"), ObjectStore)
    assert bucket in run("obj ls")["bucket"].tolist()
    f = tmp_path / "report.txt"
    f.write_bytes(b"quarterly numbers")
    run(f"obj put {bucket} {f}")
    ip.user_ns["sales"] = pd.DataFrame({"region": ["eu", "us"], "total": [1.5, 2.5]})
    ip.user_ns["blob"] = b"\x00\x01"
    run(f"obj put {bucket} sales")
    run(f"obj put {bucket} blob --name blob.bin")
    assert run(f"obj ls {bucket}")["name"].tolist() == ["blob.bin", "report.txt", "sales.parquet"]
    assert run(f"obj info {bucket} report.txt").size == 17
    assert isinstance(run(f"obj info {bucket}"), ObjectStore)
    pd.testing.assert_frame_equal(run(f"obj get {bucket} sales.parquet"), ip.user_ns["sales"])
    assert run(f"obj get {bucket} blob.bin") == b"\x00\x01"
    out = tmp_path / "copy.txt"
    run(f"obj get {bucket} report.txt --out {out}")
    assert out.read_bytes() == b"quarterly numbers"
    for line, fragment in [(f"obj get {bucket} nope", f"is not in bucket '{bucket}' — check the name; %nats obj ls {bucket}"),
                           (f"obj put {bucket} no_such_thing", "no file or notebook variable"),
                           (f"obj ls nobucket_{uid}", f"does not exist — create it with %nats obj add nobucket_{uid}"),
                           (f"obj add x{uid} --max-bytes lots", "max_bytes 'lots' is not a size")]:
        r = ip.run_cell(f"%nats {line}")
        assert not r.success and fragment in str(r.error_in_exec), line
    run(f"obj add sealed{uid} --ttl 1h --max-bytes 1MB")
    assert run("obj ls").set_index("bucket").loc[f"sealed{uid}", "ttl"] == pd.Timedelta(hours=1)
    run(f"obj seal sealed{uid}")
    r = ip.run_cell(f"%nats obj put sealed{uid} blob")
    assert not r.success and "is sealed" in str(r.error_in_exec)
    run(f"obj rm sealed{uid}")
    run(f"obj rm {bucket} report.txt")
    assert "report.txt" not in run(f"obj ls {bucket}")["name"].tolist()
    run(f"obj rm {bucket}")
    assert bucket not in run("obj ls")["bucket"].tolist()
