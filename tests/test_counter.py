"""Counters (nats-server 2.12+) on the real bundled server: incr, get, ls — Python and %nats, bad input."""

from __future__ import annotations

import pandas as pd
import pytest

import nbnats
from nbnats.engine import api
from nbnats.errors import JetStreamError, NatsError, NotFound, ValidationError
from nbnats.jetstream.counter import counter_get, counter_incr, counters

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def hits(connected, uid):
    name = f"HITS_{uid}"
    nbnats.add_stream(name, f"{uid}.hits.>", allow_counter=True)
    yield name, f"{uid}.hits"
    nbnats.delete_stream(name)


def test_incr_returns_the_new_value_and_get_reads_it(hits):
    stream, prefix = hits
    assert counter_incr(f"{prefix}.home") == 1
    assert counter_incr(f"{prefix}.home", 41) == 42
    assert counter_incr(f"{prefix}.home", -2) == 40
    assert counter_get(f"{prefix}.home") == 40
    # the server stores the running total: the stream holds three messages, the last says 40
    assert nbnats.stream_info(stream)["state"]["messages"] == 3
    assert nbnats.get_message(stream, last_for=f"{prefix}.home").json() == {"val": "40"}


def test_counters_lists_every_subject_with_its_value(hits):
    stream, prefix = hits
    for sub, n in (("b", 5), ("a", 2), ("b", 1), ("c", -7)):
        counter_incr(f"{prefix}.{sub}", n)
    df = counters(stream)
    assert df["subject"].tolist() == [f"{prefix}.a", f"{prefix}.b", f"{prefix}.c"]
    assert df["value"].tolist() == [2, 6, -7]
    assert str(df["value"].dtype) == "Int64" and str(df["seq"].dtype) == "Int64"
    assert str(df["time"].dtype) == "datetime64[ns, UTC]"
    assert counters(stream, f"{prefix}.b")["value"].tolist() == [6]
    assert counters(stream, f"{prefix}.zzz").empty


def test_values_beyond_64_bits_stay_exact(hits):
    stream, prefix = hits
    big = 2**70
    assert counter_incr(f"{prefix}.big", big) == big
    assert counter_incr(f"{prefix}.big", 1) == big + 1
    df = counters(stream)
    assert df["value"].tolist() == [big + 1]


def test_bad_input_is_one_plain_sentence(hits, uid):
    stream, prefix = hits
    with pytest.raises(ValidationError, match="whole number"):
        counter_incr(f"{prefix}.a", 1.5)
    with pytest.raises(ValidationError):
        counter_incr(f"{prefix}.*", 1)                   # a wildcard is no counter
    with pytest.raises(NotFound, match="no value yet"):
        counter_get(f"{prefix}.never")
    with pytest.raises(NotFound, match="no JetStream stream stores"):
        counter_get(f"{uid}.nowhere")
    plain = f"PLAIN_{uid}"
    nbnats.add_stream(plain, f"{uid}.plain.>")
    try:
        with pytest.raises(JetStreamError, match="does not allow counters") as err:
            counter_incr(f"{uid}.plain.x")
        assert "allow_counter=True" in str(err.value)
        with pytest.raises(JetStreamError, match="does not allow counters"):
            counters(plain)
        assert nbnats.stream_info(plain)["state"]["messages"] == 0    # nothing was stored
    finally:
        nbnats.delete_stream(plain)


def test_too_old_a_server_is_named(connected):
    # the comparison every counter call makes, asked for a version beyond this server's
    with pytest.raises(JetStreamError) as err:
        api.needs(connected, (99, 0), "counters")
    version = ".".join(map(str, api.server_version(connected)))
    assert str(err.value).startswith(f"counters needs nats-server 99.0+ (this one is {version})")
    api.needs(connected, (2, 12), "counters")            # 2.15.1 has them: no error


def test_magics(ip, hits):
    stream, prefix = hits
    run = lambda line: ip.run_line_magic("nats", line)     # noqa: E731
    assert run(f"counter incr {prefix}.m") == 1
    assert run(f"counter incr {prefix}.m 9") == 10
    assert run(f"counter incr {prefix}.m -4") == 6
    assert run(f"counter get {prefix}.m") == 6
    df = run(f"counter ls {stream}")
    assert isinstance(df, pd.DataFrame) and df["value"].tolist() == [6]
    for line, fragment in [(f"counter incr {prefix}.m x", "not a whole number"),
                           (f"counter get {prefix}.none", "no value yet"),
                           ("counter ls bad.name", "stream")]:
        r = ip.run_cell(f"%nats {line}")
        assert not r.success and isinstance(r.error_in_exec, NatsError), line
        assert fragment in str(r.error_in_exec), (line, str(r.error_in_exec))
    r = ip.run_cell(f"%nats counter get {prefix}.none")
    assert "%nats counter incr" in str(r.error_in_exec)        # the advice is worded for the magic
