"""Plotly figures from tails and frames; each returns a ``go.Figure`` to restyle.

``rate`` messages per second per subject, ``subjects`` the subject tree,
``sizes`` the payload size distribution, ``latency`` request/reply round
trips (from ``nbnats.ping``), ``stream_fill`` how a stream filled over time.
Plotly renders in JupyterLab and on Binder without extra set-up.

>>> fig = nbnats.plot.rate(df)          # doctest: +SKIP
>>> fig.update_layout(height=500)       # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from nbnats.errors import NatsError

_LAYOUT = dict(height=360, margin=dict(l=50, r=20, t=50, b=40))


def _need(df, columns: list[str], what: str) -> pd.DataFrame:
    if hasattr(df, "records") and hasattr(df, "codec"):       # a Tail: plot its rows
        df = df.df
    if not isinstance(df, pd.DataFrame):
        raise NatsError(f"{what} needs a message frame, not a {type(df).__name__}",
                        "pass t.df, a tail, or a frame from nbnats.replay")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise NatsError(f"the frame has no {', '.join(repr(c) for c in missing)} column for {what}",
                        "pass a frame from a tail or a replay (they carry subject, time and size)")
    return df


def tail_rate(tail, by_subject: bool = True, every: str = "1s", top: int = 10) -> go.Figure:
    """A tail's message rate over time: the total (sampled every half second, counting
    rows the limit dropped too) and, when it sees several subjects, one line per subject
    (the ``top`` busiest, from the kept rows, in ``every`` bins).

    >>> t.plot()   # doctest: +SKIP
    """
    rates = tail.rates()
    fig = go.Figure(go.Scatter(x=rates["time"], y=rates["rate"], mode="lines", name=tail.subject))
    if by_subject:
        rows = tail.records()
        kept = pd.DataFrame({"subject": [r[0] for r in rows],
                             "time": pd.to_datetime([r[1] for r in rows], unit="ns", utc=True)})
        if kept["subject"].nunique() > 1:
            busiest = kept["subject"].value_counts().index[:top]
            kept["subject"] = kept["subject"].where(kept["subject"].isin(busiest), "(other subjects)")
            for trace in _rate_traces(kept, every, kept["subject"]):
                fig.add_trace(trace.update(line=dict(width=1)))
    fig.update_layout(title=f"{tail.subject} — messages per second", xaxis_title="time (UTC)",
                      yaxis_title="msg/s", height=320, margin=dict(l=40, r=20, t=40, b=40))
    return fig


def _group(subjects: pd.Series, depth: int | None) -> pd.Series:
    if not depth:
        return subjects
    return subjects.map(lambda s: ".".join(s.split(".")[:depth]) + (".>" if s.count(".") >= depth else ""))


def _seconds(every: str) -> float:
    try:
        seconds = pd.Timedelta(every).total_seconds()
    except ValueError:
        raise NatsError(f"{every!r} is not a bin width", "write it like '1s', '100ms' or '1min'") from None
    if seconds <= 0:
        raise NatsError(f"the bin width must be positive, not {every!r}", "write it like '1s' or '100ms'")
    return seconds


def _rate_traces(df: pd.DataFrame, every: str, keys: pd.Series) -> list[go.Scatter]:
    """One msg/s line per key, every line over the same bins (empty bins count zero)."""
    seconds = _seconds(every)
    bins = pd.date_range(df["time"].min().floor(every), df["time"].max().floor(every), freq=every)
    traces = []
    for key, part in df.groupby(keys, sort=True):
        counts = part.set_index("time").resample(every).size().reindex(bins, fill_value=0) / seconds
        traces.append(go.Scatter(x=counts.index, y=counts.values, mode="lines", name=str(key)))
    return traces


def rate(df: pd.DataFrame, every: str = "1s", by_subject: bool = True, depth: int | None = None) -> go.Figure:
    """Messages per second in ``every`` bins over the frame's ``time``, one line per subject.

    ``depth`` groups subjects by their first tokens (``depth=1``: ``orders.>``).

    >>> nbnats.plot.rate(t.df, every="100ms")   # doctest: +SKIP
    """
    df = _need(df, ["subject", "time"], "a rate chart")
    _seconds(every)
    if df.empty:
        return go.Figure().update_layout(title="no messages", **_LAYOUT)
    keys = _group(df["subject"].astype(str), depth) if by_subject else pd.Series("all", index=df.index)
    fig = go.Figure(_rate_traces(df, every, keys))
    fig.update_layout(title=f"messages per second ({every} bins)", xaxis_title="time (UTC)",
                      yaxis_title="msg/s", **_LAYOUT)
    return fig


def subjects(df: pd.DataFrame, kind: str = "sunburst", depth: int | None = None,
             value: str = "count") -> go.Figure:
    """The subject hierarchy as a sunburst (or ``kind="treemap"``) of message counts.

    Each ring is one token level; ``value="bytes"`` sizes by payload bytes;
    ``depth`` stops at that many levels.

    >>> nbnats.plot.subjects(t.df)                      # doctest: +SKIP
    >>> nbnats.plot.subjects(t.df, kind="treemap")      # doctest: +SKIP
    """
    if kind not in ("sunburst", "treemap"):
        raise NatsError(f"unknown kind {kind!r}", "use kind='sunburst' or kind='treemap'")
    if value not in ("count", "bytes"):
        raise NatsError(f"unknown value {value!r}", "use value='count' or value='bytes'")
    df = _need(df, ["subject"] + (["size"] if value == "bytes" else []), "a subject tree")
    per_subject = (df.groupby("subject")["size"].sum() if value == "bytes" else df["subject"].value_counts())
    totals: Counter = Counter()
    for subject, amount in per_subject.items():
        tokens = str(subject).split(".")[: depth or None]
        for i in range(1, len(tokens) + 1):
            totals[".".join(tokens[:i])] += int(amount)
    ids = sorted(totals)
    labels = [i.rsplit(".", 1)[-1] for i in ids]
    parents = [i.rsplit(".", 1)[0] if "." in i else "" for i in ids]
    trace = go.Sunburst if kind == "sunburst" else go.Treemap
    fig = go.Figure(trace(ids=ids, labels=labels, parents=parents, values=[totals[i] for i in ids],
                          branchvalues="total", hovertemplate="%{id}<br>%{value:,}<extra></extra>"))
    unit = "messages" if value == "count" else "bytes"
    fig.update_layout(title=f"subjects by {unit} ({int(per_subject.sum()):,} in all)",
                      **{**_LAYOUT, "height": 460})
    return fig


def sizes(df: pd.DataFrame, by_subject: bool = False, nbins: int | None = None,
          depth: int | None = None) -> go.Figure:
    """The payload size distribution (bytes), optionally one histogram per subject.

    >>> nbnats.plot.sizes(t.df, by_subject=True)   # doctest: +SKIP
    """
    df = _need(df, ["subject", "size"], "a size chart")
    fig = go.Figure()
    groups = df.groupby(_group(df["subject"].astype(str), depth)) if by_subject else [("all", df)]
    for name, part in groups:
        fig.add_trace(go.Histogram(x=part["size"].to_numpy(), name=str(name), nbinsx=nbins,
                                   opacity=0.75 if by_subject else 1.0))
    med = float(df["size"].median()) if len(df) else 0.0
    fig.update_layout(title=f"payload sizes (median {med:,.0f} bytes, max {int(df['size'].max() or 0):,})"
                      if len(df) else "no messages", xaxis_title="bytes", yaxis_title="messages",
                      barmode="overlay", **_LAYOUT)
    return fig


def latency(source, nbins: int | None = 50) -> go.Figure:
    """A histogram of request/reply latencies (ms), with p50/p90/p99 marked.

    ``source``: the frame from ``nbnats.ping`` (its ``latency_ms``), or any
    sequence of milliseconds.

    >>> nbnats.plot.latency(nbnats.ping(count=200))   # doctest: +SKIP
    """
    if isinstance(source, pd.DataFrame):
        if "latency_ms" not in source.columns:
            raise NatsError("the frame has no 'latency_ms' column",
                            "pass the frame from nbnats.ping, or a list of milliseconds")
        values = source["latency_ms"].dropna().to_numpy(dtype=float)
        name = source.attrs.get("subject", "latency")
    else:
        try:
            values = np.asarray([v for v in source if v is not None], dtype=float)
        except (TypeError, ValueError):
            raise NatsError("latency needs numbers (milliseconds)",
                            "pass the frame from nbnats.ping, or a list of milliseconds") from None
        name = "latency"
    fig = go.Figure(go.Histogram(x=values, nbinsx=nbins, name=str(name)))
    if len(values):
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        for label, v in (("p50", p50), ("p90", p90), ("p99", p99)):
            fig.add_vline(x=v, line_dash="dash", line_color="gray", annotation_text=f"{label} {v:.3g} ms")
        title = f"request/reply latency: {len(values):,} round trips, p50 {p50:.3g} ms, p99 {p99:.3g} ms"
    else:
        title = "no successful round trips"
    fig.update_layout(title=title, xaxis_title="milliseconds", yaxis_title="requests", **_LAYOUT)
    return fig


def stream_fill(source, max_msgs: int | None = None, max_bytes: int | None = None) -> go.Figure:
    """A stream's message count (left axis) and bytes (right axis) over time, with its limits.

    ``source``: a sampler from ``nbnats.measure.watch_stream`` (counts as
    the server reported them, purges and limits included), or a replayed
    frame of the stream (the counts it built up, message by message).

    >>> nbnats.plot.stream_fill(nbnats.replay("ORDERS"))   # doctest: +SKIP
    """
    if hasattr(source, "max_msgs") and hasattr(source, "df"):      # a StreamFill sampler
        df = source.df
        title = f"stream {source.stream} — fill over time"
        max_msgs = max_msgs or source.max_msgs
        max_bytes = max_bytes or source.max_bytes
    else:
        frame = _need(source, ["time", "size"], "a stream fill chart").sort_values("time")
        df = pd.DataFrame({"time": frame["time"].to_numpy(), "messages": np.arange(1, len(frame) + 1),
                           "bytes": frame["size"].cumsum().to_numpy()})
        title = "stream fill over time (from the replayed messages)"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=df["time"], y=df["messages"], mode="lines", name="messages",
                             line_shape="hv"))
    fig.add_trace(go.Scatter(x=df["time"], y=df["bytes"], mode="lines", name="bytes", yaxis="y2",
                             line_shape="hv"))
    if len(df):
        ends = [df["time"].iloc[0], df["time"].iloc[-1]]
        if max_msgs:
            fig.add_trace(go.Scatter(x=ends, y=[max_msgs] * 2, mode="lines", name="max_msgs",
                                     line=dict(dash="dash")))
        if max_bytes:
            fig.add_trace(go.Scatter(x=ends, y=[max_bytes] * 2, mode="lines", name="max_bytes", yaxis="y2",
                                     line=dict(dash="dot")))
    fig.update_layout(title=title, xaxis_title="time (UTC)", yaxis=dict(title="messages", rangemode="tozero"),
                      yaxis2=dict(title="bytes", overlaying="y", side="right", rangemode="tozero"),
                      legend=dict(orientation="h", y=-0.2), **_LAYOUT)
    return fig


__all__ = ["tail_rate", "rate", "subjects", "sizes", "latency", "stream_fill"]
