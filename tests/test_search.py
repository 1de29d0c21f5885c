"""search(): a pandas query or a function over a stream, read in chunks — Python and %nats, bad input."""

from __future__ import annotations

import time

import pandas as pd
import pytest

import nbnats
from nbnats.data.units import rfc3339
from nbnats.errors import NatsError, NotFound, ValidationError
from nbnats.jetstream.search import search
from faultkit import wait_until

pytestmark = pytest.mark.timeout(90)

ROWS = 1_000


@pytest.fixture
def orders(connected, uid):
    name = f"ORD_{uid}"
    nbnats.add_stream(name, f"{uid}.orders.>")
    df = pd.DataFrame({"id": range(ROWS), "total": [float(i % 250) for i in range(ROWS)],
                       "country": ["NL" if i % 3 == 0 else "DE" for i in range(ROWS)],
                       "customer.id": [i % 10 for i in range(ROWS)]})
    df["subject"] = [f"{uid}.orders.{'eu' if i % 2 else 'us'}" for i in range(ROWS)]
    nbnats.publish_frame(None, df, subject_column="subject")
    wait_until(lambda: nbnats.stream_info(name)["state"]["messages"] == ROWS, 10, "the rows to be stored")
    yield name, df
    nbnats.delete_stream(name)


def test_query_string_over_chunks_gives_the_matching_rows(orders):
    stream, df = orders
    hits = search(stream, "total > 240 and country == 'NL'", chunk=128)
    expected = df[(df["total"] > 240) & (df["country"] == "NL")]
    assert hits["id"].tolist() == expected["id"].tolist()
    assert hits.attrs["scanned"] == ROWS and hits.attrs["chunks"] == 8      # 1000 messages, 128 at a time
    assert list(hits.columns[:5]) == ["subject", "time", "seq", "size", "headers"]
    assert str(hits["seq"].dtype) == "Int64" and str(hits["id"].dtype) == "int64"
    # a dotted column name in backticks
    assert search(stream, "`customer.id` == 7", chunk=300)["id"].tolist() == expected_ids(df, "customer.id", 7)


def expected_ids(df, column, value):
    return df[df[column] == value]["id"].tolist()


def test_callable_mask_or_frame_and_limit(orders):
    stream, df = orders
    mask = search(stream, lambda f: f["id"] % 100 == 0, chunk=250)
    assert mask["id"].tolist() == list(range(0, ROWS, 100))
    frame = search(stream, lambda f: f[f["country"] == "DE"].head(2), chunk=250)
    assert len(frame) == 8 and set(frame["country"]) == {"DE"}          # two per chunk, four chunks
    first = search(stream, "total < 10", limit=5, chunk=100)
    assert first["id"].tolist() == [0, 1, 2, 3, 4]
    assert first.attrs["chunks"] == 1          # the limit stops the read: no more chunks than needed


def test_subject_and_time_filters_go_to_the_server(orders, uid):
    stream, df = orders
    eu = search(stream, "total >= 0", subject=f"{uid}.orders.eu", chunk=400)
    assert eu["id"].tolist() == [i for i in range(ROWS) if i % 2]
    assert eu.attrs["scanned"] == ROWS // 2
    assert search(stream, "total >= 0", since=rfc3339(time.time_ns() + 10**12)).empty   # the future holds nothing
    assert len(search(stream, "total >= 0", until="2000-01-01T00:00:00Z")) == 0
    assert len(search(stream, "id < 3", since="1h")) == 3


def test_no_match_is_an_empty_standard_frame(orders):
    stream, _ = orders
    none = search(stream, "total > 10000")
    assert none.empty and list(none.columns) == ["subject", "time", "seq", "size", "headers"]
    assert none.attrs["scanned"] == ROWS


def test_bad_expressions_are_one_line_naming_the_problem(orders, uid):
    stream, _ = orders
    with pytest.raises(ValidationError) as err:
        search(stream, "total >")
    assert "does not parse" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValidationError) as err:
        search(stream, "totl > 5")
    assert "'totl'" in str(err.value) and "no column" in str(err.value) and "total" in str(err.value)
    with pytest.raises(ValidationError, match="'customer.name'"):
        search(stream, "`customer.name` == 'x'")
    with pytest.raises(ValidationError, match="failed on the stream's rows"):
        search(stream, "country > 5")
    with pytest.raises(ValidationError, match="search function failed: KeyError"):
        search(stream, lambda f: f["nope"] > 1)
    with pytest.raises(ValidationError, match="not a mask"):
        search(stream, lambda f: 3)
    with pytest.raises(ValidationError, match="pandas query string or a function"):
        search(stream, 42)
    with pytest.raises(ValidationError, match="chunk"):
        search(stream, "total > 1", chunk=0)
    with pytest.raises(NotFound):
        search(f"NOPE_{uid}", "total > 1")


def test_empty_stream(connected, uid):
    name = f"EMPTY_{uid}"
    nbnats.add_stream(name, f"{uid}.e.>")
    try:
        got = search(name, "x > 1")
        assert got.empty and got.attrs["scanned"] == 0
    finally:
        nbnats.delete_stream(name)


def test_magic(ip, orders):
    stream, df = orders
    ip.user_ns["big_de"] = lambda f: (f["country"] == "DE") & (f["total"] > 245)
    got = ip.run_line_magic("nats", f'search {stream} "total > 240 and country == \'NL\'" --chunk 200')
    assert got["id"].tolist() == df[(df["total"] > 240) & (df["country"] == "NL")]["id"].tolist()
    fn = ip.run_line_magic("nats", f"search {stream} big_de --limit 3")
    assert fn["id"].tolist() == df[(df["country"] == "DE") & (df["total"] > 245)]["id"].tolist()[:3]
    r = ip.run_cell(f'%nats search {stream} "total >"')
    assert not r.success and isinstance(r.error_in_exec, NatsError) and "does not parse" in str(r.error_in_exec)
