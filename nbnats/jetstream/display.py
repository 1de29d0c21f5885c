"""How JetStream objects look in a notebook: info tables, listings in human units, stored messages.

>>> html_table([("messages", 3)]).count("<tr>")
1
"""

from __future__ import annotations

from datetime import datetime, timedelta
from html import escape
from typing import Any

import numpy as np
import orjson
import pandas as pd

from nbnats.data.payload import Message
from nbnats.data.values import is_missing
from nbnats.data.units import human_bytes, human_count, human_duration, parse_time
from nbnats.engine.get import Stored

_CSS = "font-size:12px;border-collapse:collapse"


def html_table(rows: list[tuple[str, Any]], title: str = "") -> str:
    """Key/value rows as a small HTML table.

    >>> html_table([("messages", 3)]).count("<tr>")
    1
    """
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{escape(str(k))}</th>"
                   f"<td style='text-align:left'>{escape(str(v))}</td></tr>" for k, v in rows)
    caption = f"<caption style='text-align:left;font-weight:bold'>{escape(title)}</caption>" if title else ""
    return f"<table style='{_CSS}'>{caption}{body}</table>"


def pretty(data: bytes, limit: int = 20_000) -> str:
    """A payload as readable text: indented JSON, else UTF-8, else a hex dump.

    >>> print(pretty(b'{"a":1}'))
    {
      "a": 1
    }
    """
    try:
        return orjson.dumps(orjson.loads(data), option=orjson.OPT_INDENT_2).decode()[:limit]
    except orjson.JSONDecodeError:
        pass
    try:
        return data.decode("utf-8")[:limit]
    except UnicodeDecodeError:
        return " ".join(f"{b:02x}" for b in data[: limit // 3])


def _kind(v: Any) -> type | None:
    if is_missing(v):
        return None
    if isinstance(v, (bool, np.bool_)):
        return bool
    if isinstance(v, (int, np.integer)):
        return int
    if isinstance(v, (float, np.floating)):
        return float
    if isinstance(v, str):
        return str
    if isinstance(v, (pd.Timestamp, datetime)):
        return datetime
    if isinstance(v, (pd.Timedelta, timedelta)):
        return timedelta
    return object


_DTYPES = {frozenset({bool}): "boolean", frozenset({int}): "Int64", frozenset({float}): "Float64",
           frozenset({int, float}): "Float64", frozenset({str}): "string"}


def typed_column(values: Any) -> pd.Series | pd.api.extensions.ExtensionArray:
    """One listing column with one missing marker: Int64, Float64, boolean, string, UTC datetime or
    timedelta with pd.NA/NaT; lists, dicts and mixed values stay objects with None.

    >>> typed_column([1, None]).dtype, typed_column(["a", float("nan")]).dtype, typed_column([[1], None]).dtype
    (Int64Dtype(), <StringDtype(na_value=<NA>)>, dtype('O'))
    """
    values = list(values)
    kinds = {_kind(v) for v in values}
    kinds.discard(None)
    dtype = _DTYPES.get(frozenset(kinds))
    if dtype is not None:
        return pd.array([None if is_missing(v) else v for v in values], dtype=dtype)
    if kinds == {datetime}:
        return pd.to_datetime(pd.Series([None if is_missing(v) else v for v in values], dtype=object),
                              utc=True).astype("datetime64[ns, UTC]")
    if kinds == {timedelta}:
        return pd.to_timedelta(pd.Series([None if is_missing(v) else v for v in values], dtype=object))
    out = np.empty(len(values), dtype=object)        # element by element: a list stays one cell
    for i, v in enumerate(values):
        out[i] = None if _kind(v) is None else v
    return out


def listing(rows: list[dict] | pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """A listing frame (``nbnats.streams()``, ``buckets()``, ``tails()`` …) from rows, each column
    typed by :func:`typed_column`, so no column mixes NaN and None and every frame writes Parquet.

    >>> df = listing([{"name": "a", "n": 1}, {"name": "b", "n": None}], ["name", "n", "created"])
    >>> df.dtypes.astype(str).tolist(), df["n"].tolist()
    (['string', 'Int64', 'object'], [1, <NA>])
    """
    if isinstance(rows, pd.DataFrame):
        rows = rows.to_dict(orient="records")
    return pd.DataFrame({c: typed_column([r.get(c) for r in rows]) for c in columns},
                        index=pd.RangeIndex(len(rows)))


class _Listing(pd.DataFrame):
    """A DataFrame that shows human units in the notebook; any operation gives a plain DataFrame."""

    _formats: dict = {}

    @property
    def _constructor(self):
        return pd.DataFrame

    def _repr_html_(self) -> str:
        shown = pd.DataFrame(self).copy()
        for col, fmt in self._formats.items():
            if col in shown:
                shown[col] = [fmt(v) for v in shown[col]]
        return shown.to_html(index=False, na_rep="")


def _when(ts: Any) -> str:
    return "" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


class StreamList(_Listing):
    """``nbnats.streams()``: one row a stream; bytes and times shown in human units."""

    _formats = {"bytes": human_bytes, "created": _when, "max_age": lambda v: human_duration(v * 1e9 if v else 0)}


class ConsumerList(_Listing):
    """``nbnats.consumers(stream)``: one row a consumer."""

    _formats = {"created": _when, "ack_wait": lambda v: human_duration(v * 1e9 if v else 0)}


class StreamInfo(dict):
    """The server's stream info (``config``, ``state``, ``created`` …) as a dict, shown as a table.

    Durations are nanoseconds and times RFC 3339 text, as the server sends
    them; the properties give the common figures directly.
    """

    name = property(lambda self: self["config"]["name"])
    subjects = property(lambda self: list(self["config"].get("subjects") or []))
    messages = property(lambda self: self["state"]["messages"])
    bytes = property(lambda self: self["state"]["bytes"])
    first_seq = property(lambda self: self["state"]["first_seq"])
    last_seq = property(lambda self: self["state"]["last_seq"])
    retention = property(lambda self: self["config"].get("retention", "limits"))

    @property
    def created(self) -> pd.Timestamp | None:
        ns = parse_time(self.get("created"))
        return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")

    def rows(self) -> list[tuple[str, Any]]:
        c, s = self["config"], self["state"]
        first = parse_time(s.get("first_ts"))
        last = parse_time(s.get("last_ts"))
        return [
            ("subjects", ", ".join(c.get("subjects") or []) or "—"),
            ("retention", c.get("retention")), ("storage", c.get("storage")),
            ("replicas", c.get("num_replicas", 1)),
            ("max messages", human_count(c.get("max_msgs"))), ("max bytes", human_bytes(c.get("max_bytes"))),
            ("max age", human_duration(c.get("max_age"))),
            ("max per subject", human_count(c.get("max_msgs_per_subject"))),
            ("duplicate window", human_duration(c.get("duplicate_window"))),
            ("discard", c.get("discard")), ("direct get", "yes" if c.get("allow_direct") else "no"),
            ("messages", f"{s['messages']:,}"), ("size", human_bytes(s["bytes"])),
            ("first seq", f"{s['first_seq']:,}" + (f" at {_when(pd.Timestamp(first, tz='UTC'))}" if first else "")),
            ("last seq", f"{s['last_seq']:,}" + (f" at {_when(pd.Timestamp(last, tz='UTC'))}" if last else "")),
            ("deleted", f"{s.get('num_deleted', 0):,}"), ("subjects stored", f"{s.get('num_subjects', 0):,}"),
            ("consumers", s.get("consumer_count", 0)), ("created", _when(self.created)),
        ]

    def _repr_html_(self) -> str:
        return html_table(self.rows(), f"Stream {self.name}")

    def __repr__(self) -> str:
        return f"<StreamInfo {self.name}: " + ", ".join(f"{k}={v}" for k, v in self.rows()[:12]) + ">"


class ConsumerInfo(dict):
    """The server's consumer info as a dict, shown as a table."""

    name = property(lambda self: self["name"])
    stream = property(lambda self: self["stream_name"])
    num_pending = property(lambda self: self.get("num_pending", 0))
    num_ack_pending = property(lambda self: self.get("num_ack_pending", 0))
    num_redelivered = property(lambda self: self.get("num_redelivered", 0))
    durable = property(lambda self: bool(self["config"].get("durable_name")))
    paused = property(lambda self: bool(self.get("paused")))

    @property
    def pause_until(self) -> pd.Timestamp | None:
        """When a paused consumer delivers again (None when it is not paused)."""
        ns = parse_time(self["config"].get("pause_until")) if self.paused else None
        return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")

    def rows(self) -> list[tuple[str, Any]]:
        c = self["config"]
        filters = c.get("filter_subjects") or ([c["filter_subject"]] if c.get("filter_subject") else [])
        start = {"by_start_sequence": f" from seq {c.get('opt_start_seq')}",
                 "by_start_time": f" from {c.get('opt_start_time')}"}.get(c.get("deliver_policy"), "")
        return [
            ("stream", self.stream), ("durable", "yes" if self.durable else "no (ephemeral)"),
            ("kind", "push" if c.get("deliver_subject") else "pull"),
            ("filter", ", ".join(filters) or "— (all subjects)"),
            ("deliver", f"{c.get('deliver_policy')}{start}"), ("ack", c.get("ack_policy")),
            ("ack wait", human_duration(c.get("ack_wait"))),
            ("max deliveries", human_count(c.get("max_deliver"))),
            ("pending", f"{self.num_pending:,}"), ("waiting for ack", f"{self.num_ack_pending:,}"),
            ("redelivered", f"{self.num_redelivered:,}"),
            ("last delivered seq", f"{(self.get('delivered') or {}).get('stream_seq', 0):,}"),
            ("ack floor seq", f"{(self.get('ack_floor') or {}).get('stream_seq', 0):,}"),
            ("idle timeout", human_duration(c.get("inactive_threshold"))),
            ("paused", f"yes, until {_when(self.pause_until)}" if self.paused else "no"),
        ]

    def _repr_html_(self) -> str:
        return html_table(self.rows(), f"Consumer {self.name}")

    def __repr__(self) -> str:
        return f"<ConsumerInfo {self.stream}/{self.name}: " + ", ".join(f"{k}={v}" for k, v in self.rows()[1:10]) + ">"


class StreamMessage(Message):
    """A stored message: ``subject``, ``data``, ``headers``, plus ``seq``, ``stream`` and ``time``.

    ``time_ns`` is the stream's exact nanosecond timestamp; ``time`` the same as a pandas Timestamp.
    """

    __slots__ = ("seq", "time_ns", "stream")

    def __init__(self, stream: str, subject: str, seq: int, time_ns: int, data: bytes, headers: dict | None):
        super().__init__(subject, data, headers)
        self.stream, self.seq, self.time_ns = stream, seq, time_ns

    @property
    def time(self) -> pd.Timestamp:
        return pd.Timestamp(self.time_ns, unit="ns", tz="UTC")

    def __repr__(self) -> str:
        return f"<StreamMessage {self.stream}#{self.seq} {self.subject} {self.data[:80]!r}>"

    def _repr_html_(self) -> str:
        head = html_table([("stream", self.stream), ("seq", self.seq), ("subject", self.subject),
                           ("time", self.time.isoformat()), ("size", f"{len(self.data):,} bytes")])
        hdrs = html_table(list((self.headers or {}).items()), "headers") if self.headers else ""
        return f"<div>{head}{hdrs}<pre style='font-size:12px'>{escape(pretty(self.data))}</pre></div>"



def stored_message(stream: str, row: Stored) -> StreamMessage:
    """A stored message read by :func:`nbnats.engine.get.get` as a :class:`StreamMessage`."""
    return StreamMessage(stream, row.subject, row.seq, row.time_ns, row.data, row.headers)
