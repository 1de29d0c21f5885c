"""Plotly figures from tails and frames; each returns a ``go.Figure`` to restyle.

>>> fig = nbnats.plot.rate(df)   # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go


def tail_rate(tail) -> go.Figure:
    """The message rate of a tail over time (msg/s, sampled every half second).

    >>> t.plot()   # doctest: +SKIP
    """
    rates = tail.rates()
    fig = go.Figure(go.Scatter(x=rates["time"], y=rates["rate"], mode="lines", name=tail.subject))
    fig.update_layout(title=f"{tail.subject} — messages per second", xaxis_title="time (UTC)",
                      yaxis_title="msg/s", height=320, margin=dict(l=40, r=20, t=40, b=40))
    return fig


def rate(df: pd.DataFrame, every: str = "1s", by_subject: bool = True) -> go.Figure:
    """Messages per ``every`` over the frame's ``time``, one line per subject.

    >>> nbnats.plot.rate(t.df, every="100ms")   # doctest: +SKIP
    """
    fig = go.Figure()
    if df.empty:
        return fig.update_layout(title="no messages")
    seconds = pd.Timedelta(every).total_seconds()
    groups = df.groupby("subject") if by_subject else [("all", df)]
    for subject, part in groups:
        counts = part.set_index("time").resample(every).size() / seconds
        fig.add_trace(go.Scatter(x=counts.index, y=counts.values, mode="lines", name=str(subject)))
    fig.update_layout(title=f"messages per second ({every} bins)", xaxis_title="time (UTC)",
                      yaxis_title="msg/s", height=360)
    return fig
