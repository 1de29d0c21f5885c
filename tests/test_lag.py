"""The lag recorder against the real bundled nats-server: samples into a frame, every consumer or one, consumers
added later, .plot(), listed and stopped as a background piece, %nats lag, and its bad input."""

from __future__ import annotations

import doctest

import pytest

import nbnats
from nbnats import background
from nbnats.errors import NatsError, NotFound, ValidationError
from nbnats.jetstream import lag as lag_module

from conftest import run_cell
from faultkit import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def stream(connected, uid):
    name = f"S{uid}"
    nbnats.add_stream(name, f"{uid}.>")
    for i in range(5):
        nbnats.publish(f"{uid}.x", {"i": i}, js=True)
    yield name
    try:
        nbnats.delete_stream(name)
    except NatsError:
        pass


def test_docstring_examples():
    assert doctest.testmod(lag_module, optionflags=doctest.ELLIPSIS).failed == 0


def test_records_every_consumer_over_time_into_a_typed_frame(stream, uid, tmp_path):
    nbnats.add_consumer(stream, "a", durable=True)
    nbnats.add_consumer(stream, "b", durable=True)
    rec = nbnats.lag(stream, every="200ms")
    assert rec.samples == 1                                     # the first sample is taken at once
    nbnats.next(stream, "a", count=5)
    nbnats.fetch(stream, "b", count=2)                          # delivered, not acked
    wait_until(lambda: rec.df.query("consumer == 'b' and ack_pending == 2").shape[0] > 0, 10, "b's two unacked")
    df = rec.df
    assert list(df.columns) == lag_module.COLUMNS
    assert str(df["time"].dtype) == "datetime64[ns, UTC]" and str(df["consumer"].dtype) == "string"
    assert all(str(df[c].dtype) == "int64" for c in ("pending", "ack_pending", "redelivered", "waiting"))
    first = df[df["time"] == df["time"].min()].set_index("consumer")
    assert first.loc["a", "pending"] == 5 and first.loc["b", "pending"] == 5
    last = df[df["time"] == df["time"].max()].set_index("consumer")
    assert (last.loc["a", "pending"], last.loc["a", "ack_pending"]) == (0, 0)
    assert (last.loc["b", "pending"], last.loc["b", "ack_pending"]) == (3, 2)
    df.to_parquet(tmp_path / "lag.parquet")
    nbnats.add_consumer(stream, "late", durable=True)          # consumer=None follows consumers added later
    wait_until(lambda: "late" in set(rec.df["consumer"]), 10, "the new consumer in the samples")
    rec.stop()
    assert not rec.running and rec.state == "stopped"
    kept = rec.samples
    nbnats.publish(f"{uid}.x", {"i": 9}, js=True)
    assert rec.samples == kept                                 # stopped: no more samples


def test_one_consumer_plot_and_background_listing(stream):
    import plotly.graph_objects as go
    nbnats.add_consumer(stream, "one", durable=True)
    nbnats.add_consumer(stream, "other", durable=True)
    rec = nbnats.lag(stream, "one", every=0.2)
    wait_until(lambda: rec.samples >= 3, 10, "three samples")
    assert set(rec.df["consumer"]) == {"one"}
    fig = rec.plot()
    assert isinstance(fig, go.Figure) and [t.name for t in fig.data] == ["one pending", "one ack pending"]
    assert list(fig.data[0].y)[-1] == 5
    row = background.pieces().set_index("id").loc[rec.id]
    assert row["kind"] == "lag" and row["target"] == f"{stream}/one" and row["state"] == "running"
    assert row["count"] >= 3
    background.stop(rec.id)
    assert not rec.running
    assert background.pieces().set_index("id").loc[rec.id, "state"] == "stopped"


def test_stop_all_stops_recorders_and_a_deleted_consumer_is_said(stream):
    nbnats.add_consumer(stream, "gone", durable=True)
    rec = nbnats.lag(stream, "gone", every=0.2)
    nbnats.delete_consumer(stream, "gone")
    wait_until(lambda: rec.state.startswith("retrying"), 10, "the recorder saying the consumer is gone")
    assert "has no consumer 'gone'" in rec.state and rec.errors >= 1
    assert nbnats.stop_all() >= 1 and not rec.running


def test_bad_input_is_one_sentence_and_starts_nothing(stream, uid):
    before = len(background.pieces())
    cases = [
        (ValidationError, "every must be at least 0.1 s", lambda: nbnats.lag(stream, every=0)),
        (ValidationError, "is not a duration", lambda: nbnats.lag(stream, every="often")),
        (ValidationError, "limit must be", lambda: nbnats.lag(stream, limit=0)),
        (NotFound, "has no consumer 'nobody'", lambda: nbnats.lag(stream, "nobody")),
        (NotFound, "does not exist", lambda: nbnats.lag(f"NO{uid}")),
    ]
    for cls, words, call in cases:
        with pytest.raises(cls, match=words) as err:
            call()
        assert " — " in str(err.value)
    assert len(background.pieces()) == before


def test_magic(ip, stream):
    nbnats.add_consumer(stream, "m", durable=True)
    rec = ip.run_line_magic("nats", f"lag {stream} m --every 0.2s")
    assert isinstance(rec, lag_module.Lag) and rec.every == 0.2 and rec.consumer == "m"
    wait_until(lambda: rec.samples >= 2, 10, "two samples")
    assert rec.id in ip.run_line_magic("nats", "tails")["id"].tolist()
    ip.run_line_magic("nats", f"stop {rec.id}")
    assert not rec.running
    every = ip.run_line_magic("nats", f"lag {stream}")
    assert every.every == 5 and every.consumer is None
    every.stop()
    result, shown = run_cell(ip, f"%nats lag {stream} nobody")
    assert not result.success and "nbnats: stream" in shown and "has no consumer 'nobody'" in shown
    result, shown = run_cell(ip, f"%nats lag {stream} --every 0")
    assert not result.success and "--every" in shown and "Traceback" not in shown
