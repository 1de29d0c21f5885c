"""publish_frame: each row one message, round-tripped through tails and a replayed stream."""

from __future__ import annotations

import time

import msgpack
import numpy as np
import orjson
import pandas as pd
import pytest

import nbnats
from nbnats.schema import inference
from nbnats.data import codecs
from nbnats.runtime import loop
from nbnats import progress, schema
from nbnats.errors import InvalidSubject, NatsError, PayloadTooLarge, SchemaError

pytestmark = pytest.mark.timeout(60)


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [1, 2, 3],
        "price": [9.5, 10.0, 0.25],
        "customer.name": ["ada", "bob", None],
        "customer.tier": pd.array([1, pd.NA, 3], dtype="Int64"),
        "tags": [["a"], [], ["b", "c"]],
        "when": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"], utc=True),
    })


def _received(t) -> list:
    return [orjson.loads(p) for p in t.df["data"]]


def test_round_trip_through_a_tail(connected, uid):
    t = nbnats.tail(f"{uid}.rows")
    raw = nbnats.tail(f"{uid}.rows", codec="raw")
    assert nbnats.publish_frame(f"{uid}.rows", _frame()) == 3
    t.wait(3, timeout=5)
    raw.wait(3, timeout=5)
    got = _received(raw)
    assert got[0] == {"id": 1, "price": 9.5, "customer": {"name": "ada", "tier": 1}, "tags": ["a"],
                      "when": "2024-01-01T00:00:00+00:00"}
    assert got[1]["customer"] == {"name": "bob"}              # a missing Int64 is left out, not "<NA>"
    assert "name" not in got[2]["customer"]
    df = t.df
    assert df["id"].tolist() == [1, 2, 3]
    assert df["customer.name"].tolist()[:2] == ["ada", "bob"]
    assert df["tags"].tolist() == [["a"], [], ["b", "c"]]


def test_subject_column_and_replayed_frame(connected, uid):
    stream = f"P{uid}"
    conn = nbnats.current()
    loop.run(conn.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.src.>"]), 5, "adding a stream")
    try:
        originals = [(f"{uid}.src.a", {"n": 1, "meta": {"k": "v"}}), (f"{uid}.src.b", {"n": 2, "size": 7}),
                     (f"{uid}.src.a", "plain text"), (f"{uid}.src.b", {"n": 4, "opt": None})]
        for subj, body in originals:
            nbnats.publish(subj, body, js=True)
        replay = getattr(nbnats, "replay", None)      # nbnats.replay once exported; the same frame
        frame = replay(stream) if callable(replay) else inference._stream_frame(stream)
        assert "data.size" in frame.columns                   # a key that collides with a frame column
        frame["subject"] = frame["subject"].str.replace(".src.", ".dst.", regex=False)
        raw = nbnats.tail(f"{uid}.dst.>", codec="raw")
        assert nbnats.publish_frame(None, frame, subject_column="subject") == 4
        raw.wait(4, timeout=5)
        got = raw.df
        assert got["subject"].tolist() == [s.replace(".src.", ".dst.") for s, _ in originals]
        assert orjson.loads(got.loc[0, "data"]) == {"n": 1, "meta": {"k": "v"}}
        assert got.loc[1, "data"] == b'{"n":2,"size":7}'               # an int with gaps is an int again
        assert got.loc[2, "data"] == b"plain text"             # a non-object payload goes out as it was
        assert orjson.loads(got.loc[3, "data"]) == {"n": 4}    # null and missing look alike in a frame
    finally:
        loop.run(conn.nc.jetstream().delete_stream(stream), 5, "deleting a stream")


def test_codec_and_schema_apply(connected, uid):
    codecs.use(f"{uid}.mp", "msgpack")
    try:
        raw = nbnats.tail(f"{uid}.mp", codec="raw")
        nbnats.publish_frame(f"{uid}.mp", pd.DataFrame({"a": [1, 2]}))
        raw.wait(2, timeout=5)
        assert [msgpack.unpackb(p) for p in raw.df["data"]] == [{"a": 1}, {"a": 2}]
    finally:
        codecs.reset()

    pattern = f"{uid}.sc"
    schema.register(pattern, {"type": "object", "properties": {"a": {"type": "integer"}}})
    try:
        t = nbnats.tail(pattern)
        with pytest.raises(SchemaError, match="field 'a': 'x' is not of type 'integer'"):
            nbnats.publish_frame(pattern, pd.DataFrame({"a": [1, "x", 3]}))
        time.sleep(0.2)
        assert t.count == 0                                   # checked before anything was sent
    finally:
        schema.rm(pattern)
        loop.run(nbnats.current().nc.jetstream().delete_key_value(schema.BUCKET), 5, "dropping the schema bucket")


def test_progress_bar(connected, uid, monkeypatch):
    made = []
    real = progress.progress_bar

    def recording(total, desc, enabled=None, **kw):
        bar = real(total, desc, enabled=enabled, **kw)
        state = {"total": total, "desc": desc, "enabled": enabled, "updates": 0, "closed": False,
                 "shown": not isinstance(bar, progress._Silent)}
        made.append(state)

        class Spy:
            def update(self, n=1):
                state["updates"] += n
                bar.update(n)

            def close(self):
                state["closed"] = True
                bar.close()
        return Spy()

    monkeypatch.setattr(progress, "progress_bar", recording)
    nbnats.publish_frame(f"{uid}.p", pd.DataFrame({"i": range(10)}))
    assert made[-1]["shown"] is False and made[-1]["closed"]   # small frames stay quiet
    nbnats.publish_frame(f"{uid}.p", pd.DataFrame({"i": range(10)}), progress=True)
    assert made[-1] == {"total": 10, "desc": f"publishing to {uid}.p", "enabled": True, "updates": 10,
                        "closed": True, "shown": True}

    t = nbnats.tail(f"{uid}.big", limit=60_000)
    big = pd.DataFrame({"i": np.arange(50_000)})
    assert nbnats.publish_frame(f"{uid}.big", big) == 50_000   # large frames show a bar by themselves
    assert made[-1]["shown"] and made[-1]["updates"] == 50_000 and made[-1]["closed"]
    t.wait(50_000, timeout=20)
    assert t.df["i"].iloc[-1] == 49_999


def test_bad_input(connected, uid):
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(NatsError, match="needs a subject or a subject_column"):
        nbnats.publish_frame(None, df)
    with pytest.raises(NatsError, match="the frame has no column 'where'"):
        nbnats.publish_frame(None, df, subject_column="where")
    with pytest.raises(InvalidSubject, match="wildcards"):
        nbnats.publish_frame(f"{uid}.>", df)
    t = nbnats.tail(f"{uid}.big")
    huge = pd.DataFrame({"a": ["small", "x" * (nbnats.current().max_payload + 1)]})
    with pytest.raises(PayloadTooLarge):
        nbnats.publish_frame(f"{uid}.big", huge)
    time.sleep(0.2)
    assert t.count == 0
