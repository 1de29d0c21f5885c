"""JetStream streams and consumers: add, list, inspect, edit, purge, read.

Requests go straight to the ``$JS.API`` subjects and come back as the
server's own JSON (wrapped in dicts that display as tables), so no field
is dropped and nanosecond timestamps stay exact. Names and subjects are
checked before anything is sent.

>>> nbnats.add_stream("ORDERS", "orders.>", max_age="7d")          # doctest: +SKIP
>>> nbnats.publish("orders.new", {"id": 1}, js=True)                # doctest: +SKIP
PubAck(stream='ORDERS', seq=1, duplicate=False)
>>> nbnats.streams()[["name", "messages"]]                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import difflib
from html import escape
from typing import Any

import nats.errors
import nats.js.api
import orjson
import pandas as pd

from nbnats.data import frames, validate
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.errors import JetStreamError, NatsError, NotConnected, NotFound, Timeout, ValidationError
from nbnats.data.payload import Message
from nbnats.data.units import count, human_bytes, human_count, human_duration, nanos, parse_time, rfc3339, size, to_ns

RETENTION = ("limits", "interest", "workqueue")
STORAGE = ("file", "memory")
DISCARD = ("old", "new")
ACK = ("explicit", "none", "all")
DELIVER = {"all": "all", "new": "new", "last": "last", "last-per-subject": "last_per_subject"}
EPHEMERAL_IDLE = 3600.0      # seconds an unused ephemeral consumer lives (the server default is 5 s)

_STREAM_FIELDS = {f.name for f in dataclasses.fields(nats.js.api.StreamConfig)}
_CONSUMER_FIELDS = {f.name for f in dataclasses.fields(nats.js.api.ConsumerConfig)}


# -- the $JS.API request and its errors ---------------------------------------
async def request(conn: Connection, subject: str, body: Any = None, what: str = "the JetStream request",
                  timeout: float = 5.0, **names: str) -> dict:
    """Send one ``$JS.API.<subject>`` request (loop thread); the reply as a dict or a plain error.

    ``names`` (``stream=``, ``consumer=``) make the error sentences precise.

    >>> await request(conn, "STREAM.INFO.ORDERS", stream="ORDERS")   # doctest: +SKIP
    {'type': 'io.nats.jetstream.api.v1.stream_info_response', 'config': {...}, 'state': {...}, ...}
    """
    payload = b"" if body is None else orjson.dumps(body)
    try:
        msg = await conn.nc.request(f"$JS.API.{subject}", payload, timeout=timeout)
    except nats.errors.NoRespondersError:
        raise disabled(conn) from None
    except (nats.errors.TimeoutError, asyncio.TimeoutError):
        raise Timeout(f"JetStream did not answer {what} within {timeout:g} s",
                      "check that the server runs with JetStream on (%nats status)") from None
    except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
        raise NotConnected(f"the connection to {conn.url} is down", "wait for it to come back, or %nats connect") from None
    resp = orjson.loads(msg.data) if msg.data else {}
    if "error" in resp:
        raise await _refused(conn, resp["error"], what, **names)
    return resp


def disabled(conn: Connection) -> JetStreamError:
    """The error for a server without JetStream.

    >>> raise disabled(nbnats.current())   # doctest: +SKIP
    nbnats.errors.JetStreamError: JetStream is not enabled on the server at nats://… — start nats-server with -js …
    """
    return JetStreamError(f"JetStream is not enabled on the server at {conn.url}",
                          "start nats-server with -js (or use %nats server start, which has it on)")


async def _refused(conn: Connection, err: dict, what: str, stream: str | None = None,
                   consumer: str | None = None) -> NatsError:
    code, text = err.get("err_code"), err.get("description", "unknown error")
    if code == 10059 and not stream:
        return NotFound(f"the stream does not exist ({what})", "list streams with %nats stream ls")
    if code == 10059:
        names = await stream_names(conn)
        close = difflib.get_close_matches(stream, names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return NotFound(f"stream {stream!r} does not exist",
                        f"{hint}list streams with %nats stream ls, or add it with %nats stream add {stream} --subjects …")
    if code == 10014:
        return NotFound(f"stream {stream!r} has no consumer {consumer!r}",
                        f"list its consumers with %nats consumer ls {stream}")
    if code == 10039:
        return disabled(conn)
    if code == 10037:
        return NotFound(f"stream {stream!r} has no such message", "check the sequence or subject with %nats stream info")
    if code == 10058:
        return JetStreamError(f"stream {stream!r} already exists with a different configuration",
                              f"change it with %nats stream edit {stream} …, or remove it first with %nats stream rm {stream}")
    if code == 10065:
        return JetStreamError(f"the subjects of stream {stream!r} overlap another stream's",
                              "a subject can be stored by one stream only: pick other subjects")
    if code == 10074:
        return JetStreamError("replicas > 1 need a JetStream cluster, and this server is a single node",
                              "use --replicas 1, or start a cluster with %nats server start --cluster 3")
    if code == 10084:
        return JetStreamError(f"stream {stream!r} is a WorkQueue, whose pull consumers must ack explicitly",
                              "use ack='explicit' (--ack explicit)")
    if code in (10099, 10100):
        return JetStreamError(f"stream {stream!r} is a WorkQueue: each message goes to one consumer, "
                              "so consumers may not overlap",
                              "give this consumer a filter no other consumer covers, or remove the other consumer")
    if code in (10013, 10148, 10105):
        return JetStreamError(f"consumer {consumer!r} already exists on stream {stream!r} with another configuration",
                              f"remove it first with %nats consumer rm {stream} {consumer}, or pick another name")
    return JetStreamError(f"JetStream refused {what}: {text}", "check the arguments (see --help)")


async def stream_names(conn: Connection, subject: str | None = None) -> list[str]:
    """Names of the streams (that store ``subject``, when given), loop thread.

    >>> await stream_names(conn, "orders.new")   # doctest: +SKIP
    ['ORDERS']
    """
    names: list[str] = []
    while True:
        body: dict[str, Any] = {"offset": len(names)}
        if subject:
            body["subject"] = subject
        resp = await request(conn, "STREAM.NAMES", body, "listing streams")
        names += resp.get("streams") or []
        if len(names) >= resp.get("total", 0) or not resp.get("streams"):
            return names


def server_version(conn: Connection) -> tuple[int, int, int]:
    """The connected server's version, e.g. ``(2, 15, 1)``.

    >>> server_version(nbnats.current())   # doctest: +SKIP
    (2, 15, 1)
    """
    v = conn.nc.connected_server_version
    return (v.major, v.minor, v.patch)


def _run(coro, what: str, timeout: float = 10.0):
    return loop.run(coro, timeout, what)


# -- rich displays ------------------------------------------------------------
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


# -- subjects ---------------------------------------------------------------------
def overlaps(a: str, b: str) -> bool:
    """True when some subject matches both patterns.

    >>> overlaps("orders.>", "orders.*.eu"), overlaps("orders.*", "users.>"), overlaps("a.*", "a.b.c")
    (True, False, False)
    """
    ta, tb = a.split("."), b.split(".")
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x == ">" or y == ">":
            return x is not None and y is not None
        if x is None or y is None:
            return False
        if x != y and x != "*" and y != "*":
            return False
    return True


def subjects_list(value: Any, what: str = "subject") -> list[str]:
    """One subject, a comma-separated string or a list → a checked list.

    >>> subjects_list("orders.>, users.*")
    ['orders.>', 'users.*']
    """
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else list(value)
    return [validate.subject(s, what=what) for s in items]


def check_filters(info: dict, filters: list[str]) -> None:
    """Refuse filter subjects that no subject of the stream can match.

    >>> check_filters({"config": {"name": "S", "subjects": ["orders.>"]}}, ["users.*"])
    Traceback (most recent call last):
    ...
    nbnats.errors.ValidationError: subject 'users.*' is outside stream 'S', which stores orders.> — filter on a subject under 'orders.>'
    """
    stored = info["config"].get("subjects") or []
    if not stored:      # a mirror or sourced stream: any subject may be stored
        return
    for f in filters:
        if not any(overlaps(f, s) for s in stored):
            raise ValidationError(f"subject {f!r} is outside stream {info['config']['name']!r}, "
                                  f"which stores {', '.join(stored)}",
                                  f"filter on a subject under {stored[0]!r}")


# -- streams -------------------------------------------------------------------------
def streams(connection: str | None = None) -> StreamList:
    """Every stream: name, subjects, messages, bytes, first_seq, last_seq, consumers, created, …

    >>> nbnats.streams()[["name", "messages"]]   # doctest: +SKIP
    """
    conn = current(connection)

    async def fetch():
        out: list[dict] = []
        while True:
            resp = await request(conn, "STREAM.LIST", {"offset": len(out)}, "listing streams")
            out += resp.get("streams") or []
            if len(out) >= resp.get("total", 0) or not resp.get("streams"):
                return out

    rows = []
    for s in _run(fetch(), "listing streams"):
        c, st = s["config"], s["state"]
        rows.append({"name": c["name"], "subjects": list(c.get("subjects") or []), "messages": st["messages"],
                     "bytes": st["bytes"], "first_seq": st["first_seq"], "last_seq": st["last_seq"],
                     "consumers": st.get("consumer_count", 0), "created": parse_time(s.get("created")),
                     "retention": c.get("retention"), "storage": c.get("storage"),
                     "replicas": c.get("num_replicas", 1), "max_age": (c.get("max_age") or 0) / 1e9})
    cols = ["name", "subjects", "messages", "bytes", "first_seq", "last_seq", "consumers", "created",
            "retention", "storage", "replicas", "max_age"]
    df = pd.DataFrame(rows, columns=cols)
    df["created"] = pd.to_datetime(df["created"].astype("Int64"), unit="ns", utc=True)
    return StreamList(df.sort_values("name", ignore_index=True))


def _config(name: str, subjects: Any, options: dict, fields: set[str] = _STREAM_FIELDS) -> dict:
    """Turn friendly arguments (``max_age="7d"``, ``replicas=3``) into the server's stream config."""
    cfg: dict[str, Any] = {"name": name}
    if subjects is not None:
        cfg["subjects"] = subjects_list(subjects)
    o = dict(options)
    friendly = {
        "max_msgs": lambda v: count(v, "max_msgs"), "max_bytes": lambda v: size(v, "max_bytes"),
        "max_msg_size": lambda v: size(v, "max_msg_size"), "max_age": lambda v: nanos(v, "max_age"),
        "max_msgs_per_subject": lambda v: count(v, "max_msgs_per_subject"),
    }
    for key, conv in friendly.items():
        if o.get(key) is not None:
            cfg[key] = conv(o.pop(key))
    for key, choices in (("storage", STORAGE), ("retention", RETENTION), ("discard", DISCARD)):
        if o.get(key) is not None:
            value = str(o.pop(key)).lower()
            if value not in choices:
                raise ValidationError(f"{key} {value!r} is not one of {', '.join(choices)}",
                                      f"use e.g. {key}={choices[0]!r}")
            cfg[key] = value
    if o.get("replicas") is not None:
        cfg["num_replicas"] = count(o.pop("replicas"), "replicas")
    if o.get("dupe_window") is not None:
        cfg["duplicate_window"] = nanos(o.pop("dupe_window"), "dupe_window")
    for key, value in o.items():
        if value is None:
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields) + list(friendly) + ["replicas", "dupe_window"], n=1)
            raise ValidationError(f"{key!r} is not a stream setting",
                                  f"did you mean {close[0]!r}?" if close else "see help(nbnats.add_stream)")
        cfg[key] = value
    if cfg.get("num_replicas", 1) < 1:
        raise ValidationError("replicas must be at least 1", "use replicas=1 (or 3 on a cluster)")
    return cfg


async def _check_overlap(conn: Connection, name: str, subjects: list[str]) -> None:
    for s in subjects:
        others = [n for n in await stream_names(conn, s) if n != name]
        if others:
            raise JetStreamError(f"subject {s!r} is already stored by stream {others[0]!r}",
                                 f"a subject belongs to one stream: pick another, or add it to {others[0]!r} "
                                 f"with %nats stream edit {others[0]} --subjects …")


def add_stream(name: str, subjects: str | list[str] | None = None, *, max_msgs: int | None = None,
               max_bytes: int | str | None = None, max_age: Any = None, storage: str = "file",
               replicas: int = 1, retention: str = "limits", dupe_window: Any = None,
               connection: str | None = None, **config: Any) -> StreamInfo:
    """Create a stream storing ``subjects`` (a list or ``"a.>,b.*"``); returns its info.

    ``max_age``/``dupe_window`` take ``7d``, ``1h``, ``2m`` or seconds; ``max_bytes``
    ``512MB`` or bytes; ``retention`` limits, interest or workqueue; ``storage``
    file or memory. Other server settings (``max_msgs_per_subject``, ``discard``,
    ``description`` …) pass through by their server names. Direct get is on
    (as natscli does), which lets replays read WorkQueue streams quickly.
    Adding an identical stream again is a no-op.

    >>> nbnats.add_stream("ORDERS", "orders.>", max_age="7d", dupe_window="2m")   # doctest: +SKIP
    <StreamInfo ORDERS: subjects=orders.>, retention=limits, …>
    """
    validate.name(name, "stream")
    if subjects is None and not (config.get("mirror") or config.get("sources")):
        raise ValidationError(f"stream {name!r} needs subjects to store",
                              f"pass them, e.g. %nats stream add {name} --subjects 'orders.>'")
    config.setdefault("allow_direct", True)
    cfg = _config(name, subjects, dict(config, max_msgs=max_msgs, max_bytes=max_bytes, max_age=max_age,
                                       storage=storage, replicas=replicas, retention=retention,
                                       dupe_window=dupe_window))
    conn = current(connection)

    async def add():
        try:
            existing = await request(conn, f"STREAM.INFO.{name}", None, f"looking up stream {name!r}")
        except NotFound:
            existing = None
        if existing is None:
            await _check_overlap(conn, name, cfg.get("subjects") or [])
        return await request(conn, f"STREAM.CREATE.{name}", cfg, f"adding stream {name!r}", stream=name)

    return StreamInfo(_run(add(), f"adding stream {name!r}"))


def stream_info(name: str, connection: str | None = None) -> StreamInfo:
    """The stream's configuration and state (a dict that displays as a table).

    >>> nbnats.stream_info("ORDERS").messages   # doctest: +SKIP
    42
    """
    validate.name(name, "stream")
    conn = current(connection)
    return StreamInfo(_run(request(conn, f"STREAM.INFO.{name}", None, f"reading stream {name!r}", stream=name),
                           f"reading stream {name!r}"))


def edit_stream(name: str, subjects: str | list[str] | None = None, connection: str | None = None,
                **changes: Any) -> StreamInfo:
    """Change a stream's settings (same arguments as :func:`add_stream`); others stay as they are.

    >>> nbnats.edit_stream("ORDERS", max_age="30d", subjects="orders.>,returns.>")   # doctest: +SKIP
    """
    validate.name(name, "stream")
    conn = current(connection)
    wanted = _config(name, subjects, changes)

    async def edit():
        info = await request(conn, f"STREAM.INFO.{name}", None, f"reading stream {name!r}", stream=name)
        cfg = {**info["config"], **wanted}
        if subjects is not None:
            await _check_overlap(conn, name, cfg["subjects"])
        return await request(conn, f"STREAM.UPDATE.{name}", cfg, f"changing stream {name!r}", stream=name)

    return StreamInfo(_run(edit(), f"changing stream {name!r}"))


def delete_stream(name: str, connection: str | None = None) -> None:
    """Delete a stream with all its messages and consumers.

    >>> nbnats.delete_stream("ORDERS")   # doctest: +SKIP
    """
    validate.name(name, "stream")
    conn = current(connection)
    _run(request(conn, f"STREAM.DELETE.{name}", None, f"deleting stream {name!r}", stream=name),
         f"deleting stream {name!r}")


def purge_stream(name: str, subject: str | None = None, keep: int | None = None, seq: int | None = None,
                 connection: str | None = None) -> int:
    """Remove messages (all, or those on ``subject``); keep the newest ``keep``, or those from ``seq`` on.

    Returns how many were removed.

    >>> nbnats.purge_stream("ORDERS", subject="orders.test.>")   # doctest: +SKIP
    12
    """
    validate.name(name, "stream")
    if keep is not None and seq is not None:
        raise ValidationError("keep and seq cannot be combined in one purge", "pass one of them")
    for value, label in ((keep, "keep"), (seq, "seq")):
        if value is not None and (not isinstance(value, int) or value < (0 if label == "keep" else 1)):
            raise ValidationError(f"{label} must be a {'non-negative' if label == 'keep' else 'positive'} "
                                  f"whole number, not {value!r}", f"pass e.g. {label}=10")
    body: dict[str, Any] = {}
    if subject is not None:
        body["filter"] = validate.subject(subject)
    if keep is not None:
        body["keep"] = keep
    if seq is not None:
        body["seq"] = seq
    conn = current(connection)

    async def purge():
        if subject is not None:
            info = await request(conn, f"STREAM.INFO.{name}", None, f"reading stream {name!r}", stream=name)
            check_filters(info, [subject])
        return await request(conn, f"STREAM.PURGE.{name}", body, f"purging stream {name!r}", stream=name)

    return int(_run(purge(), f"purging stream {name!r}").get("purged", 0))


def parse_headers(raw: bytes) -> dict | None:
    """A ``NATS/1.0`` header block as a dict (None when empty).

    >>> parse_headers(b"NATS/1.0\\r\\nA: 1\\r\\n\\r\\n")
    {'A': '1'}
    """
    out = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out or None


def raw_message(stream: str, m: dict) -> StreamMessage:
    """A ``STREAM.MSG.GET`` reply's ``message`` as a :class:`StreamMessage`.

    >>> raw_message("S", {"subject": "a", "seq": 1, "data": "aGk=", "time": "2026-01-01T00:00:00Z"}).data
    b'hi'
    """
    data = base64.b64decode(m["data"]) if m.get("data") else b""
    headers = parse_headers(base64.b64decode(m["hdrs"])) if m.get("hdrs") else None
    return StreamMessage(stream, m["subject"], m["seq"], parse_time(m["time"]) or 0, data, headers)


def get_message(stream: str, seq: int | None = None, last_for: str | None = None,
                connection: str | None = None) -> StreamMessage:
    """One stored message, by sequence or as the last one on a subject.

    >>> m = nbnats.get_message("ORDERS", 5)                       # doctest: +SKIP
    >>> nbnats.get_message("ORDERS", last_for="orders.eu").json()  # doctest: +SKIP
    """
    validate.name(stream, "stream")
    if (seq is None) == (last_for is None):
        raise ValidationError("say which message: a sequence or last_for=SUBJECT (one of them)",
                              f"e.g. %nats stream get {stream} 1, or --last-for orders.new")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise ValidationError(f"sequence {seq!r} is not a positive whole number", "stream sequences start at 1")
    if last_for is not None:
        validate.subject(last_for, publish=True)
    conn = current(connection)

    async def get():
        info = await request(conn, f"STREAM.INFO.{stream}", None, f"reading stream {stream!r}", stream=stream)
        body = {"seq": seq} if seq is not None else {"last_by_subj": last_for}
        if last_for is not None:
            check_filters(info, [last_for])
        try:
            resp = await request(conn, f"STREAM.MSG.GET.{stream}", body, f"reading from stream {stream!r}",
                                 stream=stream)
        except NotFound:
            st = info["state"]
            held = f"it holds seq {st['first_seq']}–{st['last_seq']}" if st["messages"] else "it is empty"
            if seq is not None:
                raise NotFound(f"stream {stream!r} has no message at seq {seq} ({held})",
                               "pick a sequence from %nats stream info, or replay the stream") from None
            raise NotFound(f"stream {stream!r} has no message on {last_for!r}",
                           "check the subject, or list what is there with %nats replay") from None
        return raw_message(stream, resp["message"])

    return _run(get(), f"reading from stream {stream!r}")


# -- consumers -------------------------------------------------------------------
def consumers(stream: str, connection: str | None = None) -> ConsumerList:
    """The stream's consumers: name, durable, kind, filter, ack, deliver, pending, ack_pending, …

    >>> nbnats.consumers("ORDERS")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    conn = current(connection)

    async def fetch():
        out: list[dict] = []
        while True:
            resp = await request(conn, f"CONSUMER.LIST.{stream}", {"offset": len(out)},
                                 f"listing the consumers of {stream!r}", stream=stream)
            out += resp.get("consumers") or []
            if len(out) >= resp.get("total", 0) or not resp.get("consumers"):
                return out

    rows = []
    for c in _run(fetch(), f"listing the consumers of {stream!r}"):
        cfg = c["config"]
        rows.append({"name": c["name"], "durable": bool(cfg.get("durable_name")),
                     "kind": "push" if cfg.get("deliver_subject") else "pull",
                     "filter": cfg.get("filter_subjects") or ([cfg["filter_subject"]] if cfg.get("filter_subject") else []),
                     "ack": cfg.get("ack_policy"), "deliver": cfg.get("deliver_policy"),
                     "pending": c.get("num_pending", 0), "ack_pending": c.get("num_ack_pending", 0),
                     "redelivered": c.get("num_redelivered", 0),
                     "delivered_seq": (c.get("delivered") or {}).get("stream_seq", 0),
                     "ack_floor": (c.get("ack_floor") or {}).get("stream_seq", 0),
                     "ack_wait": (cfg.get("ack_wait") or 0) / 1e9, "created": parse_time(c.get("created"))})
    cols = ["name", "durable", "kind", "filter", "ack", "deliver", "pending", "ack_pending", "redelivered",
            "delivered_seq", "ack_floor", "ack_wait", "created"]
    df = pd.DataFrame(rows, columns=cols)
    df["created"] = pd.to_datetime(df["created"].astype("Int64"), unit="ns", utc=True)
    return ConsumerList(df.sort_values("name", ignore_index=True))


def add_consumer(stream: str, name: str | None = None, filter: str | list[str] | None = None,
                 ack: str = "explicit", deliver: str = "all", durable: bool = False,
                 start_seq: int | None = None, start_time: Any = None, ack_wait: Any = None,
                 max_deliver: int | None = None, inactive: Any = None, connection: str | None = None,
                 **config: Any) -> ConsumerInfo:
    """Add a pull consumer to ``stream``; returns its info.

    ``durable=True`` keeps it (and its position) until removed, across server
    restarts; otherwise it is ephemeral and goes away after ``inactive``
    (default one hour) unused. ``filter`` takes one subject or several (server
    2.10+). ``ack``: explicit, none or all. ``deliver``: all, new, last or
    last-per-subject; ``start_seq``/``start_time`` start at a sequence or time.
    ``ack_wait`` (``30s``) is how long a delivered, unacked message waits
    before it is delivered again.

    >>> nbnats.add_consumer("ORDERS", "billing", filter="orders.eu.>", durable=True, ack_wait="30s")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    if name is not None:
        validate.name(name, "consumer")
    if durable and not name:
        raise ValidationError("a durable consumer needs a name", "pass a name, e.g. add_consumer(stream, 'billing', durable=True)")
    ack = str(ack).lower()
    if ack not in ACK:
        raise ValidationError(f"ack policy {ack!r} is not one of {', '.join(ACK)}", "use ack='explicit'")
    if deliver not in DELIVER:
        raise ValidationError(f"deliver policy {deliver!r} is not one of {', '.join(DELIVER)}",
                              "use deliver='all', or start_seq=N / start_time=… to start elsewhere")
    if start_seq is not None and start_time is not None:
        raise ValidationError("start_seq and start_time cannot be combined", "pass one of them")
    if (start_seq is not None or start_time is not None) and deliver != "all":
        raise ValidationError(f"deliver={deliver!r} cannot be combined with a start sequence or time",
                              "leave deliver at 'all' when you pass start_seq or start_time")
    if start_seq is not None and (not isinstance(start_seq, int) or start_seq < 1):
        raise ValidationError(f"start_seq {start_seq!r} is not a positive whole number", "stream sequences start at 1")
    filters = subjects_list(filter, "filter subject") if filter is not None else []
    cfg: dict[str, Any] = {"ack_policy": ack, "deliver_policy": DELIVER[deliver], "replay_policy": "instant"}
    if name:
        cfg["name"] = name
    if durable:
        cfg["durable_name"] = name
    else:
        cfg["inactive_threshold"] = nanos(inactive if inactive is not None else EPHEMERAL_IDLE, "inactive")
    if start_seq is not None:
        cfg.update(deliver_policy="by_start_sequence", opt_start_seq=start_seq)
    if start_time is not None:
        cfg.update(deliver_policy="by_start_time", opt_start_time=rfc3339(to_ns(start_time, "start_time")))
    if ack_wait is not None:
        cfg["ack_wait"] = nanos(ack_wait, "ack_wait")
    if max_deliver is not None:
        cfg["max_deliver"] = count(max_deliver, "max_deliver")
    for key, value in config.items():
        if key not in _CONSUMER_FIELDS:
            close = difflib.get_close_matches(key, sorted(_CONSUMER_FIELDS), n=1)
            raise ValidationError(f"{key!r} is not a consumer setting",
                                  f"did you mean {close[0]!r}?" if close else "see help(nbnats.add_consumer)")
        cfg[key] = value
    if config.get("deliver_subject"):
        validate.subject(config["deliver_subject"], publish=True, what="deliver subject")
    conn = current(connection)
    if len(filters) > 1 and server_version(conn) < (2, 10, 0):
        raise JetStreamError(f"the server ({'.'.join(map(str, server_version(conn)))}) supports one filter "
                             "subject per consumer; several are silently ignored before 2.10",
                             "use one filter (e.g. a wildcard), or upgrade the server to 2.10+")
    if len(filters) == 1:
        cfg["filter_subject"] = filters[0]
    elif filters:
        cfg["filter_subjects"] = filters
    elif deliver == "last-per-subject":
        cfg["filter_subject"] = ">"        # the server wants a filter for this policy; '>' means every subject

    async def add():
        info = await request(conn, f"STREAM.INFO.{stream}", None, f"reading stream {stream!r}", stream=stream)
        check_filters(info, filters)
        subject = f"CONSUMER.CREATE.{stream}" + (f".{name}" if name else "")
        return await request(conn, subject, {"stream_name": stream, "config": cfg},
                             f"adding consumer {name or '(ephemeral)'!r} to {stream!r}", stream=stream, consumer=name)

    return ConsumerInfo(_run(add(), f"adding a consumer to {stream!r}"))


def consumer_info(stream: str, name: str, connection: str | None = None) -> ConsumerInfo:
    """A consumer's configuration and state (pending, waiting for ack, redelivered …).

    >>> nbnats.consumer_info("ORDERS", "billing").num_pending   # doctest: +SKIP
    3
    """
    validate.name(stream, "stream")
    validate.name(name, "consumer")
    conn = current(connection)
    what = f"reading consumer {name!r} of {stream!r}"
    return ConsumerInfo(_run(request(conn, f"CONSUMER.INFO.{stream}.{name}", None, what,
                                     stream=stream, consumer=name), what))


def delete_consumer(stream: str, name: str, connection: str | None = None) -> None:
    """Remove a consumer (the stream's messages stay).

    >>> nbnats.delete_consumer("ORDERS", "billing")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    validate.name(name, "consumer")
    conn = current(connection)
    what = f"removing consumer {name!r} from {stream!r}"
    _run(request(conn, f"CONSUMER.DELETE.{stream}.{name}", None, what, stream=stream, consumer=name), what)


async def _pull(conn: Connection, stream: str, consumer: str, body: dict, timeout: float) -> list:
    """One hand-made pull request; the messages it brought (loop thread)."""
    got: list = []
    done = asyncio.Event()
    status: dict[str, str] = {}
    want = body["batch"]

    async def on_msg(msg):
        if msg.reply:
            got.append(msg)
            if len(got) >= want:
                done.set()
        elif msg.headers and msg.headers.get("Status"):
            status.update(code=msg.headers["Status"], text=msg.headers.get("Description", ""))
            done.set()

    inbox = conn.nc.new_inbox()
    sub = await conn.nc.subscribe(inbox, cb=on_msg)
    try:
        await conn.nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}", orjson.dumps(body), reply=inbox)
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except asyncio.TimeoutError:
            pass
    finally:
        await sub.unsubscribe()
    if status.get("code") == "409":
        raise JetStreamError(f"consumer {consumer!r} of {stream!r} refused the pull: {status['text']}",
                             "check it with %nats consumer info")
    return got


def next(stream: str, consumer: str, count: int = 1, ack: bool = True, timeout: float = 2.0,
         connection: str | None = None) -> pd.DataFrame:
    """Fetch up to ``count`` messages from a pull consumer as the standard frame; ack them unless ``ack=False``.

    It returns what is ready at once; when nothing is, it waits up to
    ``timeout`` seconds for the first message. The frame has a ``delivered``
    column (1 on first delivery, 2+ when redelivered after ``ack_wait``);
    ``df.attrs["pending"]`` is how many the consumer still has to deliver.
    Unacked messages come back after the consumer's ack wait.

    >>> nbnats.next("ORDERS", "billing", count=10)              # doctest: +SKIP
    >>> nbnats.next("ORDERS", "billing", ack=False)["delivered"]  # doctest: +SKIP
    """
    validate.name(stream, "stream")
    validate.name(consumer, "consumer")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValidationError(f"count must be a positive whole number, not {count!r}", "pass e.g. count=10")
    conn = current(connection)
    what = f"reading consumer {consumer!r} of {stream!r}"

    async def fetch():
        info = await request(conn, f"CONSUMER.INFO.{stream}.{consumer}", None, what, stream=stream, consumer=consumer)
        cfg = info["config"]
        if cfg.get("deliver_subject"):
            raise JetStreamError(f"consumer {consumer!r} is a push consumer, which delivers to "
                                 f"{cfg['deliver_subject']!r} by itself",
                                 f"next reads pull consumers: add one with %nats consumer add {stream} NAME")
        msgs = await _pull(conn, stream, consumer, {"batch": count, "no_wait": True}, 5.0)
        if not msgs:
            msgs = await _pull(conn, stream, consumer, {"batch": 1, "expires": int(timeout * 1e9)}, timeout + 1)
            if msgs and count > 1:
                msgs += await _pull(conn, stream, consumer, {"batch": count - 1, "no_wait": True}, 5.0)
        policy = cfg.get("ack_policy")
        if ack and msgs and policy != "none":
            for m in (msgs[-1:] if policy == "all" else msgs):
                await conn.nc.publish(m.reply, b"+ACK")
            await conn.nc.flush(5)
        return msgs, policy

    msgs, policy = _run(fetch(), what, timeout + 12)
    return _frame(msgs, stream, consumer, acked=bool(ack and msgs and policy != "none"))


def _frame(msgs: list, stream: str, consumer: str, acked: bool) -> pd.DataFrame:
    meta = [m.reply.split(".") for m in msgs]
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending> (+3 tokens with a domain)
    off = [0 if len(t) == 9 else 2 for t in meta]
    df = frames.build([m.subject for m in msgs], [int(t[7 + o]) for t, o in zip(meta, off)],
                      [m.data for m in msgs], [m.headers for m in msgs],
                      [int(t[5 + o]) for t, o in zip(meta, off)])
    if "delivered" in df.columns:
        df = df.rename(columns={"delivered": "data.delivered"})
    df.insert(5, "delivered", pd.array([int(t[4 + o]) for t, o in zip(meta, off)], dtype="Int64"))
    df.attrs.update(stream=stream, consumer=consumer, acked=acked,
                    pending=int(meta[-1][8 + off[-1]]) if meta else None)
    return df
