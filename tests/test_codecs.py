"""Payload codecs against the bundled server: round trips, per-subject choice, bad input."""

from __future__ import annotations

import time

import msgpack
import pandas as pd
import pytest

import nbnats
from nbnats.data import codecs, frames, payload
from nbnats.errors import CodecError, InvalidSubject

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def clean_codecs():
    codecs.reset()
    yield
    codecs.reset()


def _reading_class():
    """A protobuf message class built at run time (no protoc needed)."""
    pytest.importorskip("google.protobuf")
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="nbnats_test_reading.proto", package="nbnats_test",
                                             syntax="proto3")
    msg = fdp.message_type.add(name="Reading")
    msg.field.add(name="sensor", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    msg.field.add(name="value", number=2, type=F.TYPE_DOUBLE, label=F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("nbnats_test.Reading"))


def test_msgpack_by_subject_pattern_round_trip(connected, uid):
    codecs.use(f"{uid}.tel.>", "msgpack")
    t = nbnats.tail(f"{uid}.>")
    wire = nbnats.tail(f"{uid}.tel.>", codec="raw")        # the bytes as sent
    nbnats.publish(f"{uid}.tel.engine", {"rpm": 3000, "temp": {"c": 88.5}})
    nbnats.publish(f"{uid}.json.x", {"rpm": 1})
    t.wait(2, timeout=5)
    wire.wait(1, timeout=5)
    assert wire.df.loc[0, "data"] == msgpack.packb({"rpm": 3000, "temp": {"c": 88.5}})
    df = t.df.set_index("subject")
    assert df.loc[f"{uid}.tel.engine", "rpm"] == 3000
    assert df.loc[f"{uid}.tel.engine", "temp.c"] == 88.5
    assert df.loc[f"{uid}.json.x", "rpm"] == 1
    assert "decode_error" not in t.df.columns


def test_per_call_codec_overrides_and_codec_helpers(connected, uid):
    t = nbnats.tail(f"{uid}.m", codec="msgpack")
    nbnats.publish(f"{uid}.m", codecs.encode({"a": [1, 2], "b": b"\x00\x01"}, "msgpack"))
    t.wait(1, timeout=5)
    row = t.df.iloc[0]
    assert row["a"] == [1, 2] and row["b"] == b"\x00\x01"
    assert codecs.decode(codecs.encode({"k": "v"}, "msgpack"), "msgpack") == {"k": "v"}


def test_text_raw_hex_base64_round_trips(connected, uid):
    text = nbnats.tail(f"{uid}.t", codec="text")
    raw = nbnats.tail(f"{uid}.t", codec="raw")
    hexed = nbnats.tail(f"{uid}.t", codec="hex")
    b64 = nbnats.tail(f"{uid}.t", codec="base64")
    nbnats.publish(f"{uid}.t", "héllo")
    for t in (text, raw, hexed, b64):
        t.wait(1, timeout=5)
    assert text.df.loc[0, "data"] == "héllo"
    assert raw.df.loc[0, "data"] == "héllo".encode()
    assert hexed.df.loc[0, "data"] == "héllo".encode().hex()
    assert b64.df.loc[0, "data"] == "aMOpbGxv"

    codecs.use(f"{uid}.hex.>", "hex")
    codecs.use(f"{uid}.b64.>", "base64")
    wire = nbnats.tail(f"{uid}.*.x", codec="raw")
    nbnats.publish(f"{uid}.hex.x", "0aff")
    nbnats.publish(f"{uid}.b64.x", "aGk=")
    wire.wait(2, timeout=5)
    assert sorted(wire.df["data"]) == [b"\n\xff", b"hi"]


def test_protobuf_message_class(connected, uid):
    Reading = _reading_class()
    codecs.use(f"{uid}.pb.>", Reading)                    # a class is a codec
    t = nbnats.tail(f"{uid}.pb.>")
    wire = nbnats.tail(f"{uid}.pb.>", codec="raw")
    nbnats.publish(f"{uid}.pb.a", Reading(sensor="s1", value=2.5))
    nbnats.publish(f"{uid}.pb.b", {"sensor": "s2", "value": 4.0})   # a dict of its fields works too
    nbnats.publish(f"{uid}.pb.c", '{"sensor": "s3", "value": 1}')  # and JSON text, as %nats pub sends
    t.wait(3, timeout=5)
    wire.wait(3, timeout=5)
    assert t.df["sensor"].tolist() == ["s1", "s2", "s3"]
    assert t.df["value"].tolist() == [2.5, 4.0, 1.0]
    assert Reading.FromString(wire.df.loc[0, "data"]).sensor == "s1"
    with pytest.raises(CodecError, match="Reading"):
        nbnats.publish(f"{uid}.pb.c", [1, 2])


def test_user_codec(connected, uid):
    codecs.register("csv", lambda b: dict(zip(("x", "y"), map(int, b.split(b",")))),
                    lambda v: f"{v['x']},{v['y']}".encode())
    codecs.use(f"{uid}.csv", "csv")
    t = nbnats.tail(f"{uid}.csv")
    nbnats.publish(f"{uid}.csv", {"x": 1, "y": 2})
    nbnats.publish(f"{uid}.csv", b"3,oops")               # bytes go out as they are
    t.wait(2, timeout=5)
    df = t.df
    assert df.loc[0, "x"] == 1 and df.loc[0, "y"] == 2
    assert df.loc[1, "data"] == "3,oops"
    assert "not valid csv" in df.loc[1, "decode_error"]


def test_bad_payload_keeps_its_row(connected, uid):
    codecs.use(f"{uid}.mp", "msgpack")
    t = nbnats.tail(f"{uid}.mp")
    nbnats.publish(f"{uid}.mp", b'{"a": 1}')               # JSON text is not msgpack
    nbnats.publish(f"{uid}.mp", {"a": 2})
    t.wait(2, timeout=5)
    df = t.df
    assert len(df) == 2
    assert df.loc[0, "decode_error"].startswith("not valid msgpack")
    assert df.loc[0, "data"] == '{"a": 1}'
    assert df.loc[1, "a"] == 2 and pd.isna(df.loc[1, "decode_error"])


def test_most_specific_pattern_wins():
    codecs.use("a.>", "msgpack")
    codecs.use("a.b.*", "text")
    codecs.use("a.b.c", "hex")
    assert codecs.for_subject("a.x.y").name == "msgpack"
    assert codecs.for_subject("a.b.z").name == "text"
    assert codecs.for_subject("a.b.c").name == "hex"
    assert codecs.for_subject("b.c") is None
    codecs.use("a.b.c", None)
    assert codecs.for_subject("a.b.c").name == "text"
    assert set(codecs.ls()["codec"]) >= {"json", "msgpack", "text", "raw", "hex", "base64"}


def test_default_path_untouched_without_patterns():
    assert frames.subject_decoder is None and payload.subject_encoder is None
    codecs.use("x.>", "msgpack")
    assert frames.subject_decoder is not None and payload.subject_encoder is not None
    codecs.use("x.>", None)
    assert frames.subject_decoder is None and payload.subject_encoder is None


def test_frames_decode_by_subject_mixed():
    codecs.use("mp.>", "msgpack")
    df = frames.build(["mp.a", "js.b", "mp.c", "js.d"], [0, 1, 2, 3],
                      [msgpack.packb({"v": 1}), b'{"v": 2, "w": "x"}', b"\xc1", b"plain"])
    assert df["v"].tolist()[:2] == [1, 2]
    assert df.loc[1, "w"] == "x"
    assert df.loc[2, "decode_error"].startswith("not valid msgpack")
    assert df.loc[3, "data"] == "plain"
    assert df["subject"].tolist() == ["mp.a", "js.b", "mp.c", "js.d"]


def test_preview_uses_the_codec():
    codecs.use("pv.>", "msgpack")
    assert codecs.preview(msgpack.packb({"v": 1}), "pv.x") == "{'v': 1}"
    assert codecs.preview(b'{"v": 1}', "other") == '{"v": 1}'
    assert codecs.preview(b"\xc1", "pv.x").startswith("<not valid msgpack")


# -- bad input: one plain sentence each --------------------------------------------------
def test_unknown_codec_name(connected, uid):
    with pytest.raises(CodecError) as err:
        nbnats.tail(f"{uid}.x", codec="msgpak")
    assert str(err.value) == ("unknown codec 'msgpak' — did you mean 'msgpack'? "
                              "Known codecs: base64, hex, json, msgpack, raw, text")
    with pytest.raises(CodecError, match="unknown codec 'yaml'"):
        codecs.use("x.>", "yaml")
    with pytest.raises(CodecError, match="a value of type int is not a codec"):
        codecs.get(42)


def test_wrong_payload_for_codec_on_publish(connected, uid):
    codecs.use(f"{uid}.hex", "hex")
    codecs.use(f"{uid}.mp", "msgpack")
    codecs.use(f"{uid}.txt", "text")
    codecs.register("only_decode", lambda b: b.decode())
    codecs.use(f"{uid}.od", "only_decode")
    t = nbnats.tail(f"{uid}.*", codec="raw")
    with pytest.raises(CodecError) as err:
        nbnats.publish(f"{uid}.hex", "not hex")
    assert str(err.value).startswith(f"cannot encode a str as hex for '{uid}.hex'")
    assert "pass a str of hex digits" in str(err.value)
    with pytest.raises(CodecError, match="cannot encode a set as msgpack"):
        nbnats.publish(f"{uid}.mp", {1, 2})
    with pytest.raises(CodecError, match="cannot encode a dict as text"):
        nbnats.publish(f"{uid}.txt", {"a": 1})
    with pytest.raises(CodecError, match="can only decode"):
        nbnats.publish(f"{uid}.od", "x")
    nbnats.publish(f"{uid}.od", b"fine")                  # bytes need no encoder
    t.wait(1, timeout=5)
    time.sleep(0.1)
    assert t.df["data"].tolist() == [b"fine"]              # nothing else was sent


def test_invalid_pattern_and_registrations():
    with pytest.raises(InvalidSubject, match="empty token"):
        codecs.use("a..b", "msgpack")
    with pytest.raises(InvalidSubject, match="'>' before its last token"):
        codecs.use("a.>.b", "msgpack")
    with pytest.raises(CodecError, match="built-in codec"):
        codecs.register("json", lambda b: b)
    with pytest.raises(CodecError, match="not callable"):
        codecs.register("mine", "not a function")
    with pytest.raises(CodecError, match="not usable"):
        codecs.register("two words", lambda b: b)
    with pytest.raises(CodecError, match="not a protobuf message class"):
        codecs.protobuf(dict)
    with pytest.raises(CodecError, match="not valid json"):
        codecs.decode(b"{nope", "json")


def test_sub_magic_codec_flag(ip, uid):
    from conftest import run_cell
    t = ip.run_line_magic("nats", f"sub {uid}.m --codec msgpack --no-widget")
    nbnats.publish(f"{uid}.m", codecs.encode({"v": 7}, "msgpack"))
    t.wait(1, timeout=5)
    assert t.df.loc[0, "v"] == 7
    result, shown = run_cell(ip, f"%nats sub {uid}.m --codec nope --no-widget")
    assert isinstance(result.error_in_exec, CodecError)
    assert "nbnats: unknown codec 'nope'" in shown


def test_pub_magic_json_body_to_a_msgpack_subject(ip, uid):
    codecs.use(f"{uid}.tel.>", "msgpack")
    wire = nbnats.tail(f"{uid}.tel.>", codec="raw")
    ip.run_line_magic("nats", f'pub {uid}.tel.engine {{"rpm": 3000}}')
    wire.wait(1, timeout=5)
    assert msgpack.unpackb(wire.df.loc[0, "data"]) == {"rpm": 3000}
