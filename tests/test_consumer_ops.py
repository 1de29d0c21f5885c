"""natscli's consumer verbs against the real bundled nats-server: edit, report, pause/resume (and consumer_info showing
it), unpin (priority groups), reset, graph (a live FigureWidget), sub (a tail through a consumer) — via Python and
%nats, with their bad input."""

from __future__ import annotations

import asyncio
import doctest

import nats
import orjson
import pandas as pd
import pytest

import nbnats
from nbnats import background
from nbnats.engine import api
from nbnats.errors import JetStreamError, NatsError, NotFound, ValidationError
from nbnats.jetstream import consumer_ops

from conftest import run_cell
from faultkit import wait_until

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stream(connected, uid):
    """``S<uid>`` on ``<uid>.>`` with 6 messages, removed afterwards."""
    name = f"S{uid}"
    nbnats.add_stream(name, f"{uid}.>")
    for i in range(6):
        nbnats.publish(f"{uid}.{'ab'[i % 2]}", {"i": i}, js=True)
    yield name
    try:
        nbnats.delete_stream(name)
    except NatsError:
        pass


def one_sentence(err: Exception) -> str:
    text = str(err)
    assert " — " in text and "\n" not in text, text
    return text


def test_docstring_examples():
    assert doctest.testmod(consumer_ops, optionflags=doctest.ELLIPSIS).failed == 0


def test_edit_changes_only_what_is_named_in_any_unit(stream, uid):
    nbnats.add_consumer(stream, "c", durable=True, ack_wait="30s", max_deliver=3)
    info = nbnats.edit_consumer(stream, "c", ack_wait="2m", max_deliver=4, description="billing", filter=f"{uid}.a")
    cfg = info["config"]
    assert cfg["ack_wait"] == 120 * 10**9 and cfg["max_deliver"] == 4
    assert cfg["description"] == "billing" and cfg["filter_subject"] == f"{uid}.a" and cfg["ack_policy"] == "explicit"
    assert nbnats.consumer_info(stream, "c").num_pending == 3
    assert nbnats.edit_consumer(stream, "c", max_ack_pending="10")["config"]["max_ack_pending"] == 10
    # with a backoff the server takes its first step as the ack wait
    cfg = nbnats.edit_consumer(stream, "c", backoff=["1s", "5s"])["config"]
    assert cfg["backoff"] == [10**9, 5 * 10**9] and cfg["ack_wait"] == 10**9 and cfg["description"] == "billing"


def test_edit_bad_input_changes_nothing(stream, uid):
    nbnats.add_consumer(stream, "c", durable=True, ack_wait="30s")
    cases = [
        (ValidationError, "did you mean 'ack_wait'", lambda: nbnats.edit_consumer(stream, "c", ack_wiat="1m")),
        (ValidationError, "is not a duration", lambda: nbnats.edit_consumer(stream, "c", ack_wait="soon")),
        (ValidationError, "nothing to change", lambda: nbnats.edit_consumer(stream, "c")),
        (ValidationError, "is outside stream", lambda: nbnats.edit_consumer(stream, "c", filter="other.>")),
        (NotFound, "has no consumer 'nope'", lambda: nbnats.edit_consumer(stream, "nope", ack_wait="1m")),
    ]
    for cls, words, call in cases:
        with pytest.raises(cls, match=words) as err:
            call()
        one_sentence(err.value)
    with pytest.raises(JetStreamError, match="refused"):
        nbnats.edit_consumer(stream, "c", ack_policy="none")        # the server cannot change it
    assert nbnats.consumer_info(stream, "c")["config"]["ack_wait"] == 30 * 10**9


def test_report_has_pending_acks_and_times(stream, tmp_path):
    nbnats.add_consumer(stream, "fast", durable=True)
    nbnats.add_consumer(stream, "slow", durable=True)
    nbnats.next(stream, "fast", count=6)
    b = nbnats.fetch(stream, "slow", count=2)
    df = nbnats.consumer_report(stream)
    fast, slow = df.set_index("name").loc["fast"], df.set_index("name").loc["slow"]
    assert (fast["pending"], fast["ack_pending"], fast["last_delivered_seq"], fast["last_acked_seq"]) == (0, 0, 6, 6)
    assert (slow["pending"], slow["ack_pending"], slow["last_delivered_seq"], slow["last_acked_seq"]) == (4, 2, 2, 0)
    assert pd.notna(fast["last_acked"]) and pd.isna(slow["last_acked"]) and not slow["paused"]
    assert str(df["last_delivered"].dtype) == "datetime64[ns, UTC]" and str(df["pending"].dtype) == "int64"
    df.to_parquet(tmp_path / "consumers.parquet")
    b.ack()
    assert nbnats.consumer_report(stream).set_index("name").loc["slow", "last_acked_seq"] == 2


def test_pause_stops_delivery_until_resumed_and_info_shows_it(stream):
    nbnats.add_consumer(stream, "p", durable=True)
    info = nbnats.pause_consumer(stream, "p", until="10m")
    assert info.paused and abs((info.pause_until - pd.Timestamp.now(tz="UTC")).total_seconds() - 600) < 30
    assert ("paused", f"yes, until {info.pause_until.strftime('%Y-%m-%d %H:%M:%S')} UTC") in info.rows()
    assert "paused" in info._repr_html_()
    assert len(nbnats.fetch(stream, "p", count=3, timeout="300ms")) == 0          # paused: nothing comes
    report = nbnats.consumer_report(stream).iloc[0]
    assert report["paused"] and report["pause_until"] == info.pause_until
    later = nbnats.pause_consumer(stream, "p", until=pd.Timestamp.now(tz="UTC") + pd.Timedelta("2h"))
    assert later.pause_until > info.pause_until
    resumed = nbnats.resume_consumer(stream, "p")
    assert not resumed.paused and resumed.pause_until is None and ("paused", "no") in resumed.rows()
    assert len(nbnats.fetch(stream, "p", count=3, timeout="2s")) == 3


def test_pause_bad_input_and_the_version_refusal(stream, connected):
    nbnats.add_consumer(stream, "p", durable=True)
    for until, words in (("yesterday", "neither a duration nor a time"), ("2001-01-01", "is in the past"),
                         (None, "say until when")):
        with pytest.raises(ValidationError, match=words) as err:
            nbnats.pause_consumer(stream, "p", until=until)
        one_sentence(err.value)
    with pytest.raises(NotFound, match="has no consumer 'nobody'"):
        nbnats.pause_consumer(stream, "nobody", until="1m")
    assert not nbnats.consumer_info(stream, "p").paused
    # the refusal a server older than the feature gets, through the one function that compares versions
    with pytest.raises(JetStreamError, match=r"pausing a consumer needs nats-server 9\.0\+ \(this one is 2\.\d+\.\d+\)"):
        api.needs(connected, (9, 0), "pausing a consumer")
    assert api.server_version(connected) >= consumer_ops.PAUSE_SINCE + (0,)


async def _pinned_pull(url: str, stream: str, consumer: str, group: str) -> str:
    """A pull in priority group ``group`` by another client (plain nats-py); the pin id the server gave it."""
    nc = await nats.connect(url)
    try:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                         orjson.dumps({"batch": 1, "expires": 2 * 10**9, "group": group}), reply=inbox)
        msg = await sub.next_msg(timeout=5)
        return (msg.headers or {}).get("Nats-Pin-Id", "")
    finally:
        await nc.close()


def test_unpin_clears_the_pinned_client(stream, nats_url):
    nbnats.add_consumer(stream, "w", durable=True, priority_policy="pinned_client", priority_groups=["jobs"],
                        priority_timeout="1m")
    pin = asyncio.run(_pinned_pull(nats_url, stream, "w", "jobs"))
    assert pin
    pinned = lambda: [g.get("pinned_client_id") for g in nbnats.consumer_info(stream, "w").get("priority_groups") or []]
    assert pinned() == [pin] and nbnats.consumer_report(stream).iloc[0]["pinned"] == ["jobs"]
    nbnats.unpin_consumer(stream, "w", "jobs")
    assert pinned() in ([None], [""], [])
    assert nbnats.consumer_report(stream).iloc[0]["pinned"] == []


def test_unpin_bad_input_is_one_sentence(stream):
    nbnats.add_consumer(stream, "w", durable=True, priority_policy="pinned_client", priority_groups=["jobs"])
    nbnats.add_consumer(stream, "plain", durable=True)
    cases = [
        (NotFound, r"has no priority group 'other' \(its groups: jobs\)", lambda: nbnats.unpin_consumer(stream, "w", "other")),
        (ValidationError, "pins no clients", lambda: nbnats.unpin_consumer(stream, "plain", "jobs")),
        (ValidationError, "not a valid group name", lambda: nbnats.unpin_consumer(stream, "w", "has space")),
    ]
    for cls, words, call in cases:
        with pytest.raises(cls, match=words) as err:
            call()
        one_sentence(err.value)


def test_reset_delivers_again_from_a_sequence_or_the_ack_floor(stream):
    nbnats.add_consumer(stream, "r", durable=True)
    nbnats.next(stream, "r", count=4)
    assert consumer_ops.reset_method(api.server_version(nbnats.current())) == "reset"
    info = nbnats.reset_consumer(stream, "r", seq=2)
    assert info["reset_seq"] == 2 and "in place" in info["reset"]
    assert nbnats.fetch(stream, "r", count=10, timeout="1s").df["seq"].tolist() == [2, 3, 4, 5, 6]
    back = nbnats.reset_consumer(stream, "r")              # nothing acked since: back to just after the ack floor
    assert back["reset_seq"] == 2
    assert consumer_ops.reset_method((2, 12, 9)) == "recreate"


def test_reset_bad_input(stream):
    nbnats.add_consumer(stream, "new", durable=True, deliver="new")
    nbnats.add_consumer(stream, "from3", durable=True, start_seq=3)
    cases = [
        (ValidationError, "can only go back to its ack floor", lambda: nbnats.reset_consumer(stream, "new", seq=1)),
        (ValidationError, "starts at seq 3, so it cannot go back to 1", lambda: nbnats.reset_consumer(stream, "from3", seq=1)),
        (ValidationError, "not a positive whole number", lambda: nbnats.reset_consumer(stream, "from3", seq=-1)),
    ]
    for cls, words, call in cases:
        with pytest.raises(cls, match=words) as err:
            call()
        one_sentence(err.value)
    assert nbnats.consumer_info(stream, "from3").num_pending == 4


def test_graph_is_a_live_figure_fed_by_a_lag_recorder(stream, uid):
    import plotly.graph_objects as go
    nbnats.add_consumer(stream, "g", durable=True)
    fig = nbnats.consumer_graph(stream, "g", every="0.2s")
    assert isinstance(fig, go.FigureWidget) and [t.name for t in fig.data] == ["pending", "ack pending"]
    assert fig.lag.id in background.pieces()["id"].tolist()
    wait_until(lambda: len(fig.data[0].y) >= 2, 10, "two samples drawn")
    assert fig.data[0].y[-1] == 6
    for i in range(3):
        nbnats.publish(f"{uid}.a", {"i": 10 + i}, js=True)
    nbnats.fetch(stream, "g", count=2)
    wait_until(lambda: fig.data[0].y[-1] == 7 and fig.data[1].y[-1] == 2, 10, "the chart showing 7 pending, 2 unacked")
    fig.stop()
    assert not fig.lag.running


def test_sub_tails_what_the_consumer_delivers_and_acks_it(stream, uid):
    nbnats.add_consumer(stream, "s", durable=True, filter=f"{uid}.a")
    t = nbnats.consumer_tail(stream, "s", count=2)
    t.wait(2, timeout=10)
    assert t.df["seq"].tolist() == [1, 3] and t.df["i"].tolist() == [0, 2]
    wait_until(lambda: not t.running, 10, "the tail stopping at its count")
    wait_until(lambda: nbnats.consumer_info(stream, "s")["ack_floor"]["consumer_seq"] == 2, 10, "acks of seq 1 and 3")
    assert nbnats.consumer_info(stream, "s")["ack_floor"]["stream_seq"] >= 3
    live = nbnats.consumer_tail(stream, "s")
    wait_until(lambda: live.count == 1, 10, "seq 5")
    nbnats.publish(f"{uid}.a", {"i": 42}, js=True)
    wait_until(lambda: live.count == 2, 10, "a new message through the consumer")
    assert live.df["i"].tolist() == [4, 42] and live.consumer == "s"          # seq 5 was handed back, not lost
    assert live.id in background.pieces()["id"].tolist()
    nbnats.stop_all()
    assert not live.running


def test_sub_of_a_push_consumer_and_without_acks(stream, uid):
    nbnats.add_consumer(stream, "push", durable=True, deliver_subject=f"deliver.{uid}")
    t = nbnats.consumer_tail(stream, "push", count=6)
    t.wait(6, timeout=10)
    assert t.df["seq"].tolist() == [1, 2, 3, 4, 5, 6]
    wait_until(lambda: nbnats.consumer_info(stream, "push").num_ack_pending == 0, 10, "the push consumer's acks")
    nbnats.add_consumer(stream, "keep", durable=True, ack_wait="30s")
    quiet = nbnats.consumer_tail(stream, "keep", ack=False, count=6)
    quiet.wait(6, timeout=10)
    assert nbnats.consumer_info(stream, "keep").num_ack_pending == 6            # nothing acknowledged
    for bad, words in (({"limit": 0}, "limit must be"), ({"count": 0}, "count must be"), ({"batch": "x"}, "batch must be")):
        with pytest.raises(ValidationError, match=words):
            nbnats.consumer_tail(stream, "keep", **bad)
    with pytest.raises(NotFound, match="has no consumer 'nope'"):
        nbnats.consumer_tail(stream, "nope")


def test_magics_for_every_consumer_verb(ip, stream, uid):
    nats = lambda line: ip.run_line_magic("nats", line)         # noqa: E731
    nbnats.add_consumer(stream, "m", durable=True)
    assert nats(f"consumer edit {stream} m --ack-wait 2m")["config"]["ack_wait"] == 120 * 10**9
    assert nats(f"consumer edit {stream} m --backoff 1s,2s")["config"]["backoff"] == [10**9, 2 * 10**9]
    assert nats(f"consumer report {stream}").iloc[0]["pending"] == 6
    assert nats(f"consumer pause {stream} m --until 5m").paused
    assert not nats(f"consumer resume {stream} m").paused
    nats(f"consumer next {stream} m --count 3")
    assert nats(f"consumer reset {stream} m --seq 1")["reset_seq"] == 1
    t = nats(f"consumer sub {stream} m --count 6 --no-widget")
    t.wait(6, timeout=10)
    assert t.df["seq"].tolist() == [1, 2, 3, 4, 5, 6]
    fig = nats(f"consumer graph {stream} m --every 0.2s")
    assert fig.lag.consumer == "m"
    nats(f"stop {fig.lag.id}")
    assert not fig.lag.running
    nbnats.add_consumer(stream, "pin", durable=True, priority_policy="pinned_client", priority_groups=["g"])
    assert nats(f"consumer unpin {stream} pin g").name == "pin"


def test_magic_bad_input_is_one_line(ip, stream):
    nbnats.add_consumer(stream, "m", durable=True)
    cases = [
        (f"consumer pause {stream} m --until whenever", "neither a duration nor a time"),
        (f"consumer pause {stream} m", "--until"),
        (f"consumer edit {stream} m", "changes nothing"),
        (f"consumer unpin {stream} m g", "pins no clients"),
        (f"consumer reset {stream} nope", "has no consumer 'nope'"),
        (f"consumer graph {stream} m --every 0", "every must be at least"),
    ]
    for line, words in cases:
        result, shown = run_cell(ip, f"%nats {line}")
        assert not result.success and words in shown, (line, shown)
        assert "Traceback" not in shown
    result, shown = run_cell(ip, f"%nats consumer pause {stream} m --until 2001-01-01")
    assert "is in the past" in shown and "Traceback" not in shown
    assert not nbnats.consumer_info(stream, "m").paused
