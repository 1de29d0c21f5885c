"""Frames that never break and never change values (issue 14, items 4 and 5; issue 11).

No server needed: these run under pandas 3 (the project venv) and pandas 2
(``scripts/test`` makes ``.venv-pandas2``). Each hostile payload sits among
many clean ones so the Arrow bulk path is taken and must hand it over.
"""

import io
import math

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nbnats.data import flatten, frames, payload
from nbnats.errors import CodecError
from nbnats.jetstream.replay import Packed

CLEAN = [orjson.dumps({"id": i, "v": i / 4, "name": f"n{i}"}) for i in range(50)]


def frame(*payloads, packed=False, clean=True):
    rows = list(CLEAN) + list(payloads) if clean else list(payloads)
    if packed:
        p = Packed()
        for x in rows:
            p.add(x)
        p.finish()
        rows_in = p
    else:
        rows_in = rows
    df = frames.build(["s"] * len(rows), range(len(rows)), rows_in)
    usable(df)
    assert len(df) == len(rows)
    return df.iloc[len(CLEAN):].reset_index(drop=True) if clean else df


def usable(df: pd.DataFrame) -> None:
    """Displays, iterates, writes Parquet and reads it back; names are unique."""
    assert df.columns.is_unique
    assert isinstance(df.to_string(), str) and isinstance(df._repr_html_(), str)
    assert sum(1 for _ in df.itertuples()) == len(df) == sum(1 for _ in df.iterrows())
    buf = io.BytesIO()
    df.to_parquet(buf)
    back = pd.read_parquet(io.BytesIO(buf.getvalue()))
    assert list(back.columns) == list(df.columns) and len(back) == len(df)


def assert_clean_rows_intact(df_all):
    head = df_all.iloc[:len(CLEAN)]
    assert head["id"].tolist() == list(range(len(CLEAN)))


# -- item 4: one hostile message never spoils a frame --------------------------------
@pytest.mark.parametrize("levels", [101, 600, 1100, 20_000])
@pytest.mark.parametrize("packed", [False, True])
def test_deep_nesting_is_one_decode_error_row(levels, packed):
    objects = b'{"a":' * levels + b"1" + b"}" * levels
    arrays = b'{"a":' + b"[" * levels + b"]" * levels + b"}"
    df = frame(objects, arrays, b'{"ok": 1}', packed=packed)
    assert df.loc[0, "decode_error"] == df.loc[1, "decode_error"] == "JSON nested deeper than 100 levels"
    assert df.loc[0, "data"] == objects.decode() and df.loc[1, "data"] == arrays.decode()
    assert df.loc[2, "ok"] == 1 and pd.isna(df.loc[2, "decode_error"])


def test_nesting_up_to_the_limit_decodes():
    ninety_nine = b'{"a":' * 99 + b"1" + b"}" * 99
    df = frame(ninety_nine)
    assert df.loc[0, ".".join(["a"] * 99)] == 1 and "decode_error" not in df


def test_deep_values_through_decode_payloads_as_kv_uses_it():
    deep = b'{"a":' * 700 + b"1" + b"}" * 700
    body = frames.decode_payloads([b'{"x": 1}', deep])
    usable(body)
    assert body.loc[1, "decode_error"].startswith("JSON nested deeper")


@pytest.mark.parametrize("packed", [False, True])
def test_invalid_utf8_rows_keep_their_bytes_and_the_rest_decode(packed):
    value, key = b'{"name": "caf\xe9"}', b'{"caf\xe9": 1}'
    df = frame(value, key, b'{"name": "caf\xc3\xa9"}', packed=packed)
    assert df.loc[0, "data"] == value and df.loc[1, "data"] == key
    assert df.loc[0, "decode_error"] == "not UTF-8: byte 0xe9 at offset 13"
    assert df.loc[2, "name"] == "café" and pd.isna(df.loc[2, "decode_error"])


def test_lone_surrogate_escapes_keep_the_bulk_path_for_the_rest():
    df = frame(b'{"name": "\\ud800"}', b'{"name": "\\ud83d\\ude00"}')
    assert df.loc[0, "decode_error"].startswith("invalid JSON")
    assert df.loc[1, "name"] == "\U0001F600"


# -- item 5: values never change ------------------------------------------------------
def test_integers_stay_integers_with_gaps():
    df = frame(b'{"id": 9007199254740993}', b'{"other": 1}', b'{"id": -9223372036854775808}')
    assert str(df["id"].dtype) == "Int64"
    assert df["id"].tolist()[0] == 9007199254740993 and df.loc[2, "id"] == -(2 ** 63)
    gappy = frames.build(["s"] * 3, range(3), [b'{"id": 1}', b'{"x": 0}', b'{"id": 2}'])
    assert str(gappy["id"].dtype) == "Int64" and gappy["id"].tolist() == [1, pd.NA, 2]   # issue 11


def test_uint64_and_bigger_integers_are_exact():
    df = frames.build(["s"] * 3, range(3), [b'{"u": 18446744073709551615, "big": 123456789012345678901234567890}',
                                            b'{"u": 1}', b'{"n": -99999999999999999999}'])
    usable(df)
    assert str(df["u"].dtype) == "UInt64" and df.loc[0, "u"] == 2 ** 64 - 1
    assert df.loc[0, "big"] == 123456789012345678901234567890 and type(df.loc[0, "big"]) is int
    assert df.loc[2, "n"] == -99999999999999999999
    back = pd.read_parquet(_parquet(df))
    assert back.loc[0, "big"] == 123456789012345678901234567890


def test_ints_past_2_53_mixed_with_floats_are_not_rounded():
    df = frame(b'{"v": 9007199254740993}', b'{"v": [1.5, 9007199254740993]}')
    assert frames.payloads_of(df.iloc[:2])[0]["v"] == 9007199254740993
    assert df.loc[1, "v"] == [1.5, 9007199254740993]


def test_mixed_types_keep_every_value():
    df = frame(b'{"id": "one"}', b'{"id": true}', b'{"id": [1, {"b": 2}]}', b'{"id": {"x": 1}}')
    assert df["id"].tolist()[:3] == ["one", True, [1, {"b": 2}]] and df.loc[3, "id.x"] == 1
    assert str(df["id"].dtype) == "json"


def test_a_data_key_survives_a_text_row():
    df = frame(b'{"data": 5}', b"hello")
    assert df.loc[0, "data.data"] == 5 and df.loc[1, "data"] == "hello"
    assert pd.isna(df.loc[0, "data"])


def test_a_decode_error_key_is_not_a_decode_error():
    df = frame(b'{"decode_error": "x"}')
    assert "decode_error" not in df and df.loc[0, "data.decode_error"] == "x"


@pytest.mark.parametrize("clean", [True, False])
def test_dotted_keys_and_paths_get_unique_names_by_one_rule(clean):
    df = frame(b'{"a.b": 1, "a": {"b": 2}}', b"text", clean=clean)
    row = df.iloc[-2]
    assert row["a.b"] == 1 and row["data.a.b"] == 2
    assert frames.payloads_of(df.iloc[[-2]]) == [{"a.b": 1, "a": {"b": 2}}]


def test_base_column_keys_and_data_paths_do_not_collide():
    df = frame(b'{"subject": 1, "data": {"subject": 2}, "size": 3}')
    assert df.loc[0, "data.subject"] == 1 and df.loc[0, "data.data.subject"] == 2
    assert df.loc[0, "data.size"] == 3 and df.loc[0, "subject"] == "s"
    assert frames.payloads_of(df) == [{"subject": 1, "data": {"subject": 2}, "size": 3}]


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_literals_are_refused_on_both_paths(literal):
    bad = b'{"v": ' + literal + b"}"
    fast = frame(bad, b'{"v": [1, ' + literal + b"]}")
    slow = frame(bad, b"text", clean=False)
    for df in (fast, slow):
        assert "NaN and Infinity are not JSON" in df.loc[0, "decode_error"]
        assert df.loc[0, "data"] == bad.decode()
    assert "NaN and Infinity" in fast.loc[1, "decode_error"]


def test_the_string_nan_is_a_string():
    df = frame(b'{"v": "NaN"}')
    assert df.loc[0, "v"] == "NaN" and "decode_error" not in df


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [1, float("-inf")]},
                                   np.float32("nan"), np.array([1.0, np.nan])])
def test_publishing_nan_is_refused_not_sent_as_null(value):
    with pytest.raises(CodecError, match="JSON cannot carry"):
        payload.encode(value)


def test_pandas_and_numpy_values_encode_as_json():
    out = orjson.loads(payload.encode({"t": pd.Timestamp("2024-05-01 12:00:00.000000001", tz="UTC"),
                                       "na": pd.NA, "nat": pd.NaT, "i": np.int64(7), "f": np.float32(0.5),
                                       "b": np.bool_(True), "big": 2 ** 70}))
    assert out == {"t": "2024-05-01T12:00:00.000000001+00:00", "na": None, "nat": None, "i": 7,
                   "f": 0.5, "b": True, "big": 2 ** 70}


def test_lists_of_objects_keep_their_own_keys():
    df = frame(b'{"items": [{"a": 1}, {"b": 2}]}')
    assert df.loc[0, "items"] == [{"a": 1}, {"b": 2}]


def test_raw_bytes_and_text_in_one_data_column_write_parquet():
    df = frames.build(["s"] * 3, range(3), [b"\xff\xfe", b"text", b""])
    back = pd.read_parquet(_parquet(df))
    assert back["data"].tolist() == [b"\xff\xfe", b"text", b""]


# -- properties ----------------------------------------------------------------------
def _parquet(df):
    buf = io.BytesIO()
    df.to_parquet(buf)
    return io.BytesIO(buf.getvalue())


_PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPS
@given(st.lists(st.binary(max_size=40) | st.sampled_from(CLEAN + [b'{"id": "x"}', b'{"a": NaN}']),
                min_size=1, max_size=30))
def test_any_payload_bytes_give_a_usable_frame(payloads):
    df = frames.build(["s"] * len(payloads), range(len(payloads)), payloads)
    usable(df)
    if "decode_error" in df:
        for i in np.flatnonzero(df["decode_error"].notna().to_numpy()):
            assert df["data"].iloc[i] in (payloads[i], payloads[i].decode("utf-8", "ignore"))


scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
           | st.text())
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)
objects = st.dictionaries(st.sampled_from(["a", "b", "a.b", "data", "subject", "x.y.z", "é", ""])
                          | st.text(max_size=5), json_values, max_size=5)


def _missing_left_out(value):
    """The frame's rule: null, absent and empty objects are all a missing cell (lists kept as is)."""
    if isinstance(value, dict):
        out = {k: _missing_left_out(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v != {} or not isinstance(v, dict)}
    return value


def _same(a, b) -> bool:
    """Equal, with ints and floats compared exactly (1 == 1.0, but 2**53 + 1 != float(2**53 + 1))."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (a == b and type(a) is type(b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return (int(a) == int(b) if float(a).is_integer() and float(b).is_integer() else a == b) \
            and not (math.isnan(float(a)) or math.isnan(float(b)))
    return a == b and type(a) is type(b)


@_PROPS
@given(st.lists(objects, min_size=1, max_size=12), st.booleans())
# found by this test: Arrow's column order counts null keys; names equal under NFKC (one itertuples
# field); a path whose name is also that of a renamed base-column key
@example([{"b": None, "a": []}, {"b": {"": False}}], False)
@example([{"a": None, "b": None}, {"a": {"": False}, "b": []}], False)
@example([{"a": [], "ª": []}], False)
@example([{"data": {"size": False}}], False)
def test_json_values_round_trip_exactly(rows, with_text_row):
    payloads = [orjson.dumps(r) if _fits_orjson(r) else payload.encode(r) for r in rows]
    if with_text_row:
        payloads.append(b"not json")
    bulk = frames.build(["s"] * len(payloads), range(len(payloads)), payloads)
    per_row = frames.build(["s"] * len(payloads), range(len(payloads)), payloads, decode=flatten.json_or_text)
    for df in (bulk, per_row):
        usable(df)
        assert "decode_error" not in df
        back = frames.payloads_of(df)[:len(rows)]
        for original, got in zip(rows, back):
            want = _missing_left_out(original)
            assert _same(want, got) or (want == {} and got == {}), (original, got)
    assert list(bulk.columns) == list(per_row.columns)


def _fits_orjson(value) -> bool:
    try:
        orjson.dumps(value)
        return True
    except TypeError:
        return False


# -- the replay's chunked path (Arrow parses chunks while the read goes on) ----------
CORPUS = [
    b'{"a": ' * 150 + b"1" + b"}" * 150,                       # too deep
    b'{"id": 1, "bad": "\xff\xfe"}',                            # invalid UTF-8
    b'{"s": "\\ud800"}',                                        # a lone surrogate escape
    b'{"n": 18446744073709551615}', b'{"n": 123456789012345678901234567890}',
    b'{"f": 9007199254740993}', b'{"f": 1.5}',                  # an int past 2**53 among floats
    b'{"m": 1}', b'{"m": "one"}', b'{"m": [1, "x"]}',           # no one type
    b"plain text", b"", b"{", b"[1, 2]", b'{"x": NaN}', b'{"x": Infinity}',
    b'{"pretty":\n  {"y": 2}\n}',                               # a newline inside the JSON
    b'{"l": [{"a": 1}, {"b": 2}]}', b'{"l": [null, {"a": 1}]}',
    b'{"t": "2026-01-01T00:00:00Z"}', b'{"subject": "clash", "data": 3, "decode_error": "no"}',
    b'{"a.b": 1, "a": {"b": 2}}', b'{"nested": {"deep": {"k": 4}}}', b'{"id": null}',
]


# rows whose columns keep one type across chunks, so that the chunks' tables are used as they are
AHEAD = [x for x in CORPUS if len(x) >= 2 and not x.startswith((b'{"m"', b'{"f"', b'{"n"', b'{"id"', b'{"subject"'))]


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
@pytest.mark.parametrize("corpus", ["all", "ahead"])
def test_chunks_parsed_ahead_give_the_same_frame(chunk, corpus):
    """Chunks Arrow parsed while a replay read on give the frame a whole read gives; where their tables
    cannot be joined (a key of two types, a payload too short for JSON) the whole buffer is read instead."""
    from nbnats.data import bulk
    hostile = CORPUS if corpus == "all" else AHEAD
    rows = []
    for i in range(120):                         # the corpus spread among clean rows
        rows.append(CLEAN[i % len(CLEAN)])
        if i % 4 == 0:
            rows.append(hostile[(i // 4) % len(hostile)])
    whole = frames.build(["s"] * len(rows), range(len(rows)), rows)
    p = Packed()
    for k in range(0, len(rows), chunk):
        part = rows[k:k + chunk]
        p.add_joined(b"\n".join(part), [len(x) for x in part])
    p.finish()
    p.preread(bulk.read_chunk)
    assert len(p.tables) == len(p.chunks)
    if chunk >= 3:                               # (a chunk of one bad row alone is read whole: too few good rows)
        assert (bulk._preread(p) is not None) == (corpus == "ahead"), "the path under test was not taken"
    ahead = frames.build(["s"] * len(rows), range(len(rows)), p)
    usable(ahead)
    pd.testing.assert_frame_equal(ahead, whole)
    assert ahead.attrs == whole.attrs and list(p) == rows


def test_chunks_read_ahead_are_kept_squeezed_and_give_every_row_back():
    """Big chunks Arrow has read are held compressed; rows, iteration, the joined buffer and a frame whose
    per-row decoder needs some of their rows are the same as from the raw chunks."""
    from nbnats.data import bulk
    from nbnats.data.packed import _Squeezed
    rows = [CLEAN[i % len(CLEAN)] if i % 50 else b'{"x": NaN, "i": %d}' % i for i in range(6000)]
    p = Packed()
    for k in range(0, len(rows), 3000):
        part = rows[k:k + 3000]
        p.add_joined(b"\n".join(part), [len(x) for x in part])
    p.finish()
    p.preread(bulk.read_chunk)
    assert all(isinstance(data, _Squeezed) for data, _, _ in p.chunks)
    assert sum(len(data.blob) for data, _, _ in p.chunks) * 3 < sum(data.size for data, _, _ in p.chunks)
    assert [p[i] for i in (0, 2999, 3000, 5999, 50)] == [rows[i] for i in (0, 2999, 3000, 5999, 50)]
    ahead = frames.build(["s"] * len(rows), range(len(rows)), p)
    pd.testing.assert_frame_equal(ahead, frames.build(["s"] * len(rows), range(len(rows)), rows))
    assert list(p) == rows and bytes(p.joined) == b"\n".join(rows)
