"""Plots built from real tail, replay, ping and stream data; assertions on the figures' data."""

from __future__ import annotations

import time

import numpy as np
import plotly.graph_objects as go
import pytest

import nbnats
from nbnats.schema import inference
from nbnats import measure, plot, schema
from nbnats.runtime import loop
from nbnats.errors import NatsError, NoResponders, NotFound

pytestmark = pytest.mark.timeout(60)


def _traffic(uid: str) -> nbnats.Tail:
    t = nbnats.tail(f"{uid}.>")
    for i in range(12):
        nbnats.publish(f"{uid}.orders.created", {"id": i, "pad": "x" * i})
    for i in range(5):
        nbnats.publish(f"{uid}.orders.shipped", {"id": i})
    for i in range(3):
        nbnats.publish(f"{uid}.users.signup", "ada" * (i + 1))
    return t.wait(20, timeout=5)


def test_rate_per_subject(connected, uid):
    t = _traffic(uid)
    fig = plot.rate(t.df, every="100ms")
    assert isinstance(fig, go.Figure)
    names = [tr.name for tr in fig.data]
    assert names == sorted({f"{uid}.orders.created", f"{uid}.orders.shipped", f"{uid}.users.signup"})
    per_subject = {tr.name: round(float(np.sum(tr.y)) * 0.1) for tr in fig.data}
    assert per_subject == {f"{uid}.orders.created": 12, f"{uid}.orders.shipped": 5, f"{uid}.users.signup": 3}
    assert len({len(tr.x) for tr in fig.data}) == 1          # every line spans the same bins

    grouped = plot.rate(t.df, every="1s", depth=2)
    assert sorted(tr.name for tr in grouped.data) == [f"{uid}.orders.>", f"{uid}.users.>"]
    total = plot.rate(t, every="1s", by_subject=False)       # a tail works as well as its frame
    assert round(float(np.sum(total.data[0].y))) == 20


def test_tail_plot_total_and_per_subject(connected, uid):
    t = nbnats.tail(f"{uid}.r.*")
    for _ in range(10):
        nbnats.publish(f"{uid}.r.a", b"x")
    for _ in range(4):
        nbnats.publish(f"{uid}.r.b", b"x")
    t.wait(14, timeout=5)
    time.sleep(1.1)                                            # two rate samples
    fig = t.plot()
    assert isinstance(fig, go.Figure) and fig.data[0].name == f"{uid}.r.*"
    assert max(fig.data[0].y) > 0                              # the sampled total
    per = {tr.name: round(float(np.sum(tr.y))) for tr in fig.data[1:]}
    assert per == {f"{uid}.r.a": 10, f"{uid}.r.b": 4}
    assert len(plot.tail_rate(t, by_subject=False).data) == 1


def test_subject_tree(connected, uid):
    t = _traffic(uid)
    fig = plot.subjects(t.df)
    sb = fig.data[0]
    assert isinstance(sb, go.Sunburst) and sb.branchvalues == "total"
    values = dict(zip(sb.ids, sb.values))
    assert values[uid] == 20
    assert values[f"{uid}.orders"] == 17
    assert values[f"{uid}.orders.created"] == 12 and values[f"{uid}.users.signup"] == 3
    parents = dict(zip(sb.ids, sb.parents))
    assert parents[f"{uid}.orders.created"] == f"{uid}.orders" and parents[uid] == ""
    assert dict(zip(sb.ids, sb.labels))[f"{uid}.orders.shipped"] == "shipped"

    tree = plot.subjects(t.df, kind="treemap", depth=2, value="bytes")
    assert isinstance(tree.data[0], go.Treemap)
    assert max(len(i.split(".")) for i in tree.data[0].ids) == 2
    assert dict(zip(tree.data[0].ids, tree.data[0].values))[uid] == int(t.df["size"].sum())
    with pytest.raises(NatsError, match="unknown kind 'pie'"):
        plot.subjects(t.df, kind="pie")


def test_sizes(connected, uid):
    t = _traffic(uid)
    df = t.df
    fig = plot.sizes(df)
    assert sorted(fig.data[0].x) == sorted(df["size"])
    per = plot.sizes(df, by_subject=True)
    assert len(per.data) == 3
    assert sum(len(tr.x) for tr in per.data) == 20


def test_latency_from_ping(connected, uid):
    df = nbnats.measure.ping(count=30)
    assert len(df) == 30 and df["error"].isna().all()
    assert (df["latency_ms"] > 0).all() and df["latency_ms"].max() < 1000
    fig = plot.latency(df)
    assert list(fig.data[0].x) == df["latency_ms"].tolist()
    assert "p99" in fig.layout.title.text
    assert len(fig.layout.shapes) == 3                         # p50, p90, p99 lines

    svc = nbnats.serve(f"{uid}.echo", lambda m: m.data)
    try:
        served = measure.ping(f"{uid}.echo", count=5, data={"q": 1})
    finally:
        svc.stop()
    assert served["latency_ms"].notna().all() and svc.handled == 5
    assert plot.latency([0.1, 0.2, None]).data[0].x.tolist() == [0.1, 0.2]

    with pytest.raises(NoResponders, match=f"no service is listening on '{uid}.nobody'"):
        measure.ping(f"{uid}.nobody", count=3)
    with pytest.raises(NatsError, match="count must be a positive number"):
        measure.ping(count=0)
    with pytest.raises(NatsError, match="no 'latency_ms' column"):
        plot.latency(df.drop(columns="latency_ms"))


def test_stream_fill(connected, uid):
    stream = f"F{uid}"
    conn = nbnats.current()
    loop.run(conn.nc.jetstream().add_stream(name=stream, subjects=[f"{uid}.fill.>"], max_msgs=1000), 5, "adding a stream")
    try:
        fill = measure.watch_stream(stream, every=0.2)
        for i in range(8):
            nbnats.publish(f"{uid}.fill.x", {"i": i, "pad": "y" * 10}, js=True)
        fill.sample()
        fill.stop()
        assert not fill.sampling
        df = fill.df
        assert df["messages"].iloc[0] == 0 and df["messages"].iloc[-1] == 8
        fig = plot.stream_fill(fill)
        names = [tr.name for tr in fig.data]
        assert names == ["messages", "bytes", "max_msgs"]
        assert fig.data[0].y[-1] == 8 and fig.data[2].y[0] == 1000
        assert fig.data[1].y[-1] == df["bytes"].iloc[-1] > 0

        replay = getattr(nbnats, "replay", None)      # nbnats.replay once exported; the same frame
        frame = replay(stream) if callable(replay) else inference._stream_frame(stream)
        from_frame = plot.stream_fill(frame, max_bytes=10_000)
        assert list(from_frame.data[0].y) == list(range(1, 9))
        assert from_frame.data[1].y[-1] == frame["size"].sum()
        assert from_frame.data[2].name == "max_bytes"
    finally:
        loop.run(conn.nc.jetstream().delete_stream(stream), 5, "deleting a stream")
    with pytest.raises(NotFound, match="stream 'NOPE_" ):
        measure.watch_stream(f"NOPE_{uid}")


def test_plot_bad_input(connected, uid):
    t = _traffic(uid)
    with pytest.raises(NatsError, match="'fast' is not a bin width"):
        plot.rate(t.df, every="fast")
    with pytest.raises(NatsError, match="needs a message frame, not a list"):
        plot.rate([1, 2])
    with pytest.raises(NatsError, match="no 'subject' column"):
        plot.subjects(t.df.drop(columns="subject"))
    empty = plot.rate(t.df.iloc[0:0])
    assert empty.layout.title.text == "no messages" and not empty.data
