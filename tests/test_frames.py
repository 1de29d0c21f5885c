"""The standard message frame: columns, types, flattening, and rows never dropped."""

import orjson
import pandas as pd

from nbnats.data import frames


def test_columns_and_types():
    df = frames.build(["a", "b"], [1_700_000_000_123_456_789, 0], [b'{"id": 1}', b'{"id": 2}'],
                      [{"K": "v"}, None], [5, 6])
    assert list(df.columns[:5]) == ["subject", "time", "seq", "size", "headers"]
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert df["time"].iloc[0].value == 1_700_000_000_123_456_789      # nanoseconds kept
    assert str(df["seq"].dtype) == "Int64"
    assert df["size"].tolist() == [9, 9]
    assert df["headers"].tolist() == [{"K": "v"}, None]
    assert df["id"].tolist() == [1, 2]


def test_nested_keys_are_joined_with_dots_and_collisions_renamed():
    df = frames.build(["s"], [0], [b'{"customer": {"id": "c1", "geo": {"cc": "NL"}}, "subject": "x", "size": 3}'])
    assert df.loc[0, "customer.id"] == "c1"
    assert df.loc[0, "customer.geo.cc"] == "NL"
    assert df.loc[0, "data.subject"] == "x" and df.loc[0, "subject"] == "s"
    assert df.loc[0, "data.size"] == 3


def test_non_json_payloads_and_bad_json_keep_their_rows():
    payloads = [b'{"id": 1}', b"plain text", b"\xff\xfe", b'{"broken": ', b"", b"[1, 2]", b"42"]
    df = frames.build(["s"] * len(payloads), range(len(payloads)), payloads)
    assert len(df) == len(payloads)
    assert df.loc[1, "data"] == "plain text"
    assert df.loc[2, "data"] == b"\xff\xfe"
    assert df.loc[3, "decode_error"].startswith("invalid JSON")
    assert df.loc[3, "data"] == '{"broken": '
    assert df.loc[5, "data"] == "[1, 2]" and df.loc[6, "data"] == "42"
    assert pd.isna(df.loc[0, "decode_error"])


def test_fast_path_and_fallback_agree():
    payloads = [orjson.dumps({"id": i, "c": {"x": i * 2}, "when": "2024-01-01T00:00:00Z"}) for i in range(50)]
    fast = frames.build(["s"] * 50, range(50), payloads)
    slow = frames.build(["s"] * 51, range(51), payloads + [b"not json"])
    assert fast["when"].iloc[0] == "2024-01-01T00:00:00Z"          # a string stays a string
    assert fast["c.x"].tolist() == slow["c.x"].iloc[:50].astype(int).tolist()
    assert slow["data"].iloc[-1] == "not json"


def test_type_conflicts_fall_back_without_loss():
    df = frames.build(["s"] * 3, range(3), [b'{"v": 1}', b'{"v": "one"}', b'{"v": {"x": 1}}'])
    assert df["v"].tolist()[:2] == [1, "one"] and df.loc[2, "v.x"] == 1


def test_empty_frame_has_the_base_columns():
    df = frames.build([], [], [])
    assert list(df.columns) == ["subject", "time", "seq", "size", "headers"] and len(df) == 0


def test_custom_decoder_errors_become_decode_error():
    def decode(p):
        if p == b"bad":
            raise ValueError("not msgpack")
        return {"n": len(p)}
    df = frames.build(["s", "s"], [0, 1], [b"ok", b"bad"], decode=decode)
    assert df.loc[0, "n"] == 2 and df.loc[1, "decode_error"] == "not msgpack"


def test_codec_groups_and_json_rows_share_one_naming_rule():
    import msgpack
    from nbnats.data import codecs
    codecs.use("mp.>", "msgpack")
    try:
        df = frames.build(["mp.a", "js.b"], [0, 1], [msgpack.packb({"a.b": 1}), b'{"a": {"b": 2}}'])
    finally:
        codecs.reset()
    assert df.columns.is_unique
    assert df.loc[0, "a.b"] == 1 and df.loc[1, "data.a.b"] == 2


def test_bulk_and_per_row_paths_give_the_same_frame():
    payloads = [orjson.dumps({"id": i, "p": {"q": i * 1.5}, "tags": ["a"] * (i % 3)}) for i in range(40)]
    payloads[7] = b'{"id": 9007199254740993, "p": {"q": NaN}}'
    bulk = frames.build(["s"] * 40, range(40), payloads)
    per_row = frames.build(["s"] * 40, range(40), payloads, decode=frames.flatten.json_or_text)
    assert list(bulk.columns) == list(per_row.columns)
    assert [str(t) for t in bulk.dtypes] == [str(t) for t in per_row.dtypes]
    assert frames.payloads_of(bulk) == frames.payloads_of(per_row)
    assert bulk.loc[7, "decode_error"].startswith("invalid JSON: NaN")


def test_every_cell_of_a_frame_can_be_set():
    """Columns that come zero-copy from Arrow (or from a packed buffer's sizes) are copied, not left read-only."""
    from nbnats.data.packed import Packed
    rows = [orjson.dumps({"id": i, "v": i / 4, "name": f"n{i}", "ok": True}) for i in range(3000)]
    packed = Packed()
    packed.add_joined(b"\n".join(rows), [len(r) for r in rows])
    for payloads in (rows, packed):
        df = frames.build(["s"] * len(rows), range(len(rows)), payloads, seqs=list(range(len(rows))))
        for column, value in (("id", 99), ("v", 1.5), ("size", 3), ("ok", False), ("name", "zz"), ("seq", 7),
                              ("subject", "x"), ("time", pd.Timestamp(0, tz="UTC"))):
            df.loc[1, column] = value
            assert df.loc[1, column] == value
