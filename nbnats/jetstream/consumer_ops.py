"""natscli's consumer verbs: edit, report, pause/resume, unpin, reset, graph, sub.

>>> nbnats.consumer_report("ORDERS")                                 # doctest: +SKIP
>>> nbnats.pause_consumer("ORDERS", "billing", until="10m")          # doctest: +SKIP
>>> nbnats.reset_consumer("ORDERS", "billing", seq=100)              # doctest: +SKIP
>>> t = nbnats.consumer_tail("ORDERS", "billing"); t.df              # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import difflib
import re
import time
from typing import Any

import pandas as pd

from nbnats.data import validate
from nbnats.data.units import count, nanos, parse_time, rfc3339, seconds, to_ns
from nbnats.engine import acks, api
from nbnats.engine.pull import ACK, NAK, answer
from nbnats.errors import JetStreamError, NatsError, NotFound, ValidationError
from nbnats.jetstream.consume import pull_config, take
from nbnats.jetstream.consumers import _CONSUMER_FIELDS, _server_units
from nbnats.jetstream.display import ConsumerInfo
from nbnats.jetstream.lag import consumer_states
from nbnats.jetstream.stream_ops import positive_seq
from nbnats.jetstream.streams import _run, check_filters, subjects_list
from nbnats.runtime import loop
from nbnats.runtime.connection import current

PAUSE_SINCE, PIN_SINCE, RESET_SINCE = (2, 11), (2, 11), (2, 14)
GROUP_NAME = re.compile(r"^[a-zA-Z0-9/_=-]{1,16}$")      # nats-server's validGroupName
_FRIENDLY = {"ack_wait": lambda v: nanos(v, "ack_wait"), "max_deliver": lambda v: count(v, "max_deliver"),
             "inactive": lambda v: nanos(v, "inactive"), "max_ack_pending": lambda v: count(v, "max_ack_pending"),
             "max_waiting": lambda v: count(v, "max_waiting")}
_RENAMED = {"inactive": "inactive_threshold"}
_NO_RESET_TO = ("new", "last", "last_per_subject")


def _names(stream: str, name: str) -> None:
    validate.name(stream, "stream")
    validate.name(name, "consumer")


def _request(conn, subject: str, body: Any, what: str, stream: str, name: str):
    return api.request(conn, subject, body, what=what, stream=stream, consumer=name)


# -- edit ---------------------------------------------------------------------------------------------
def edit_consumer(stream: str, name: str, connection: str | None = None, **changes: Any) -> ConsumerInfo:
    """Change a consumer's settings; the others stay as they are. Returns its info.

    ``ack_wait``/``inactive`` (``30s``, ``1h``), ``max_deliver``,
    ``max_ack_pending``, ``filter`` (a subject or several), ``description``,
    ``backoff`` (``["1s", "5s"]``) and the server's other settings by their
    names. What the server cannot change (ack or deliver policy) is refused by it.

    >>> nbnats.edit_consumer("ORDERS", "billing", ack_wait="1m", max_deliver=5)   # doctest: +SKIP
    """
    _names(stream, name)
    if not changes:
        raise ValidationError(f"nothing to change on consumer {name!r}",
                              "pass the settings to change, e.g. edit_consumer(stream, name, ack_wait='1m')")
    wanted: dict[str, Any] = {}
    filters = None
    for key, value in changes.items():
        if key == "filter":
            filters = subjects_list(value, "filter subject") if value is not None else []
        elif key in _FRIENDLY:
            wanted[_RENAMED.get(key, key)] = _FRIENDLY[key](value)
        elif key in _CONSUMER_FIELDS:
            wanted[key] = _server_units(key, value)
        else:
            close = difflib.get_close_matches(key, sorted(_CONSUMER_FIELDS | set(_FRIENDLY) | {"filter"}), n=1)
            raise ValidationError(f"{key!r} is not a consumer setting",
                                  f"did you mean {close[0]!r}?" if close else "see help(nbnats.edit_consumer)")
    conn = current(connection)
    what = f"changing consumer {name!r} of {stream!r}"

    async def edit():
        info = await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)
        cfg = {**info["config"], **wanted}
        if filters is not None:
            check_filters(await api.request(conn, f"STREAM.INFO.{stream}", None, what=f"reading stream {stream!r}",
                                            stream=stream), filters)
            cfg.pop("filter_subject", None)
            cfg.pop("filter_subjects", None)
            if len(filters) == 1:
                cfg["filter_subject"] = filters[0]
            elif filters:
                cfg["filter_subjects"] = filters
        body = {"stream_name": stream, "config": cfg, "action": "update"}
        return await _request(conn, f"CONSUMER.CREATE.{stream}.{name}", body, what, stream, name)

    return ConsumerInfo(_run(edit(), what))


# -- report ----------------------------------------------------------------------------------------------
def report_row(c: dict) -> dict:
    """One consumer info as a ``consumer_report`` row."""
    delivered, floor = c.get("delivered") or {}, c.get("ack_floor") or {}
    groups = c.get("priority_groups") or []
    return {"name": c["name"], "pending": c.get("num_pending", 0), "ack_pending": c.get("num_ack_pending", 0),
            "redelivered": c.get("num_redelivered", 0), "waiting": c.get("num_waiting", 0),
            "last_delivered_seq": delivered.get("stream_seq", 0), "last_delivered": delivered.get("last_active"),
            "last_acked_seq": floor.get("stream_seq", 0), "last_acked": floor.get("last_active"),
            "paused": bool(c.get("paused")),
            "pause_until": c["config"].get("pause_until") if c.get("paused") else None,
            "pinned": [g["group"] for g in groups if g.get("pinned_client_id")],
            "leader": (c.get("cluster") or {}).get("leader")}


def consumer_report(stream: str, connection: str | None = None) -> pd.DataFrame:
    """Per consumer: pending, ack_pending, redelivered, waiting, last delivered/acked (seq and time), paused.

    ``pinned`` lists the priority groups that have a pinned client;
    ``leader`` is the server leading the consumer.

    >>> nbnats.consumer_report("ORDERS")[["name", "pending", "ack_pending", "paused"]]   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    conn = current(connection)
    infos = _run(consumer_states(conn, stream, None), f"listing the consumers of {stream!r}")
    rows = [report_row(c) for c in infos]
    cols = list(report_row({"name": "", "config": {}}))
    df = pd.DataFrame(rows, columns=cols)
    for col in ("last_delivered", "last_acked", "pause_until"):
        df[col] = pd.to_datetime(pd.array([parse_time(r[col]) for r in rows], dtype="Int64"), unit="ns", utc=True)
    for col in ("name", "leader"):
        df[col] = df[col].astype("string")
    for col in ("pending", "ack_pending", "redelivered", "waiting", "last_delivered_seq", "last_acked_seq"):
        df[col] = df[col].astype("int64")
    df["paused"] = df["paused"].astype(bool)
    df.attrs["stream"] = stream
    return df.sort_values("name", ignore_index=True)


# -- pause, resume, unpin ---------------------------------------------------------------------------------
def until_ns(until: Any, now_ns: int | None = None) -> int:
    """A pause's end as UTC nanoseconds: a duration from now (``10m``, 60) or a time (ISO, datetime).

    >>> until_ns("10m", now_ns=0), until_ns("2099-01-01T00:00:00Z", now_ns=0)
    (600000000000, 4070908800000000000)
    """
    now_ns = time.time_ns() if now_ns is None else now_ns
    if until is None:
        raise ValidationError("say until when to pause", "pass a duration (until='10m') or a time (until='2026-12-24T18:00Z')")
    try:
        ahead = seconds(until, "until")
    except ValidationError:
        ahead = None
    if ahead is not None:
        end = now_ns + int(ahead * 1e9)
    else:
        try:
            end = to_ns(until, "until")
        except ValidationError:
            raise ValidationError(f"until {until!r} is neither a duration nor a time",
                                  "pass a duration (until='10m') or an ISO time (until='2026-12-24T18:00Z')") from None
    if end <= now_ns:
        raise ValidationError(f"until {until!r} is in the past", "pause until a later time, or for a duration like '10m'")
    return end


def pause_consumer(stream: str, name: str, until: Any, connection: str | None = None) -> ConsumerInfo:
    """Stop the consumer delivering until ``until`` (``10m`` from now, or a time); needs nats-server 2.11+.

    Its info then shows ``paused`` and ``pause_until``.

    >>> nbnats.pause_consumer("ORDERS", "billing", until="30m").paused   # doctest: +SKIP
    True
    """
    _names(stream, name)
    end = until_ns(until)
    conn = current(connection)
    api.needs(conn, PAUSE_SINCE, "pausing a consumer")
    return _pause(conn, stream, name, {"pause_until": rfc3339(end)}, f"pausing consumer {name!r} of {stream!r}")


def resume_consumer(stream: str, name: str, connection: str | None = None) -> ConsumerInfo:
    """Let a paused consumer deliver again at once; needs nats-server 2.11+.

    >>> nbnats.resume_consumer("ORDERS", "billing").paused   # doctest: +SKIP
    False
    """
    _names(stream, name)
    conn = current(connection)
    api.needs(conn, PAUSE_SINCE, "resuming a paused consumer")
    return _pause(conn, stream, name, {}, f"resuming consumer {name!r} of {stream!r}")


def _pause(conn, stream: str, name: str, body: dict, what: str) -> ConsumerInfo:
    async def go():
        await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)
        await _request(conn, f"CONSUMER.PAUSE.{stream}.{name}", body, what, stream, name)
        return await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)

    return ConsumerInfo(_run(go(), what))


def unpin_consumer(stream: str, name: str, group: str, connection: str | None = None) -> ConsumerInfo:
    """Unpin the client pinned to priority ``group``, so the next pull is pinned afresh; needs nats-server 2.11+.

    Only consumers made with ``priority_policy="pinned_client"`` pin clients.

    >>> nbnats.unpin_consumer("ORDERS", "workers", "jobs")   # doctest: +SKIP
    """
    _names(stream, name)
    if not isinstance(group, str) or not GROUP_NAME.match(group):
        raise ValidationError(f"priority group {group!r} is not a valid group name",
                              "group names are 1–16 characters of A–Z, a–z, 0–9, - _ / =")
    conn = current(connection)
    api.needs(conn, PIN_SINCE, "unpinning a priority group")
    what = f"unpinning group {group!r} of consumer {name!r}"

    async def go():
        info = await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)
        cfg = info["config"]
        if cfg.get("priority_policy") != "pinned_client":
            raise ValidationError(f"consumer {name!r} of {stream!r} pins no clients (its priority policy is "
                                  f"{cfg.get('priority_policy') or 'none'})",
                                  "unpin works on consumers made with priority_policy='pinned_client'")
        groups = cfg.get("priority_groups") or []
        if group not in groups:
            raise NotFound(f"consumer {name!r} of {stream!r} has no priority group {group!r} "
                           f"(its groups: {', '.join(groups) or 'none'})", "pass one of its groups")
        await _request(conn, f"CONSUMER.UNPIN.{stream}.{name}", {"group": group}, what, stream, name)
        return await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)

    return ConsumerInfo(_run(go(), what))


# -- reset -----------------------------------------------------------------------------------------------------
def reset_method(version: tuple[int, int, int]) -> str:
    """How a consumer is reset on a server of ``version``: ``"reset"`` (CONSUMER.RESET, 2.14+) or ``"recreate"``.

    >>> reset_method((2, 15, 1)), reset_method((2, 12, 3))
    ('reset', 'recreate')
    """
    return "reset" if version[:2] >= RESET_SINCE else "recreate"


def _reset_target(cfg: dict, seq: int | None, name: str) -> None:
    policy = cfg.get("deliver_policy", "all")
    if seq is None:
        return
    if policy in _NO_RESET_TO:
        raise ValidationError(f"consumer {name!r} delivers {policy!r} messages, so it can only go back to its ack floor",
                              "leave seq out, or reset a consumer that delivers all (or from a sequence)")
    if policy == "by_start_sequence" and seq < cfg.get("opt_start_seq", 1):
        raise ValidationError(f"consumer {name!r} starts at seq {cfg['opt_start_seq']}, so it cannot go back to {seq}",
                              f"pass a sequence from {cfg['opt_start_seq']} on")


def reset_consumer(stream: str, name: str, seq: int | None = None, connection: str | None = None) -> ConsumerInfo:
    """Move the consumer back (or on) to deliver from ``seq``; without it, from just after its ack floor.

    nats-server 2.14+ resets it in place (``CONSUMER.RESET``); an older one
    gets the consumer made again with the same configuration, starting at
    ``seq`` — its info's ``"reset"`` says which happened. ``reset_seq`` is
    the sequence it delivers next.

    >>> nbnats.reset_consumer("ORDERS", "billing", seq=1)["reset_seq"]   # doctest: +SKIP
    1
    """
    _names(stream, name)
    if seq is not None:
        seq = positive_seq(seq)
    conn = current(connection)
    method = reset_method(api.server_version(conn))
    what = f"resetting consumer {name!r} of {stream!r}"

    async def go():
        info = await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}", stream, name)
        cfg = info["config"]
        _reset_target(cfg, seq, name)
        if method == "reset":
            out = await _request(conn, f"CONSUMER.RESET.{stream}.{name}", {"seq": seq} if seq else None, what, stream,
                                 name)
            return {**out, "reset": "reset in place (CONSUMER.RESET)"}
        start = seq or (info.get("ack_floor") or {}).get("stream_seq", 0) + 1
        fresh = {k: v for k, v in cfg.items() if k not in ("opt_start_time",)}
        fresh.update(deliver_policy="by_start_sequence", opt_start_seq=start)
        await _request(conn, f"CONSUMER.DELETE.{stream}.{name}", None, what, stream, name)
        out = await _request(conn, f"CONSUMER.CREATE.{stream}.{name}", {"stream_name": stream, "config": fresh},
                             what, stream, name)
        return {**out, "reset_seq": start,
                "reset": f"made again from seq {start} (this server has no CONSUMER.RESET before 2.14)"}

    return ConsumerInfo(_run(go(), what))


# -- graph -------------------------------------------------------------------------------------------------------
GRAPH_POINTS = 600
_graph_class = None


def _graph_type():
    global _graph_class
    if _graph_class is None:
        import plotly.graph_objects as go

        class ConsumerGraph(go.FigureWidget):
            """A live FigureWidget of a consumer's pending and ack-pending, fed by a lag recorder."""

            @property
            def lag(self):
                """The recorder feeding the chart (its ``df`` holds every sample)."""
                return self._nbnats_lag

            def stop(self) -> None:
                """Stop updating (the recorder stops; the chart keeps what it shows)."""
                self._nbnats_lag.stop()

        _graph_class = ConsumerGraph
    return _graph_class


def consumer_graph(stream: str, name: str, every: Any = "1s", points: int = GRAPH_POINTS,
                   connection: str | None = None):
    """A live plotly chart (a FigureWidget) of the consumer's pending and ack-pending over time.

    A :func:`nbnats.lag` recorder samples it every ``every`` and redraws the
    last ``points`` samples; ``fig.lag`` is the recorder, ``fig.stop()`` ends
    it (as do ``nbnats.stop_all()`` and ``%nats stop``).

    >>> fig = nbnats.consumer_graph("ORDERS", "billing"); fig   # doctest: +SKIP
    """
    from nbnats.jetstream.lag import lag
    _names(stream, name)
    recorder = lag(stream, name, every=every, connection=connection)
    fig = _graph_type()()
    fig._nbnats_lag = recorder
    fig.add_scatter(x=[], y=[], mode="lines", name="pending")
    fig.add_scatter(x=[], y=[], mode="lines", name="ack pending", line=dict(dash="dot"))
    fig.update_layout(title=f"{stream}/{name} — pending and ack pending", xaxis_title="time (UTC)",
                      yaxis_title="messages", height=340, margin=dict(l=50, r=20, t=50, b=40))

    def redraw(rec) -> None:
        df = rec.df.tail(points)
        with fig.batch_update():
            fig.data[0].x, fig.data[0].y = df["time"].tolist(), df["pending"].tolist()
            fig.data[1].x, fig.data[1].y = df["time"].tolist(), df["ack_pending"].tolist()

    redraw(recorder)
    recorder.on_sample(redraw)
    return fig


# -- sub: a tail through a consumer ------------------------------------------------------------------------------
IDLE_WAIT, RETRY = 1.0, 0.5


class ConsumerReader:
    """Reads a consumer into a :class:`~nbnats.tail.Tail`, acking each message after the tail recorded it.

    It stands where a stream tail keeps its ordered consumer (``name``,
    ``resets``, ``stop()``), so the tail's frame, rates and listing work as for any tail.
    """

    def __init__(self, tail, stream: str, consumer: str, cfg: dict, ack: bool, batch: int):
        self.tail, self.stream, self.name, self.batch = tail, stream, consumer, batch
        self.ack = ack and cfg.get("ack_policy", "explicit") != "none"
        self.push = cfg.get("deliver_subject")
        self.group = cfg.get("deliver_group")
        self.resets = 0
        self._stopped = False
        self._task: asyncio.Task | None = None
        self._sub = None

    async def start(self) -> None:
        if self.push:
            self._sub = await self.tail.conn.nc.subscribe(self.push, queue=self.group or "", cb=self._on_push)
        else:
            self._task = asyncio.ensure_future(self._pull())

    async def _take(self, msg) -> None:
        meta = acks.parse(msg.reply)
        if meta is None:
            return
        before = self.tail.count
        self.tail._on_js_msg(msg, meta)
        t = self.tail
        if t.max_count is not None and t.count >= t.max_count:
            self._stopped = True                 # pull no more: the tail has what it wanted
        if self.ack:
            # recorded: done with it; past the tail's count: hand it back for the next reader
            await answer(self.tail.conn, msg.reply, ACK if self.tail.count > before else NAK, confirm=False)

    async def _on_push(self, msg) -> None:
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            await self._take(msg)
        elif msg.reply:                     # a flow-control request
            await self.tail.conn.nc.publish(msg.reply, b"")

    async def _pull(self) -> None:
        while not self._stopped:
            try:
                msgs = await take(self.tail.conn, self.stream, self.name, self.batch, IDLE_WAIT)
                self.tail.error = None
            except NatsError as exc:
                self.tail.error = exc.what
                await asyncio.sleep(RETRY)
                continue
            for msg in msgs:
                await self._take(msg)

    async def stop(self) -> None:
        self._stopped = True
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                pass
        if self._task is not None and self._task is not asyncio.current_task():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), IDLE_WAIT + api.TIMEOUT)
            except (asyncio.TimeoutError, NatsError):
                self._task.cancel()


def consumer_tail(stream: str, name: str, ack: bool = True, limit: int = 10_000, count: int | None = None,
                  batch: int = 100, connection: str | None = None):
    """Tail what the consumer delivers (natscli ``consumer sub``): a :class:`~nbnats.Tail` whose rows carry ``seq``.

    Each message is acknowledged once the tail has recorded it (``ack=False``
    leaves them unanswered, so the server delivers them again after the ack
    wait). Pull consumers are pulled ``batch`` at a time; push consumers are
    read on their deliver subject (and group). ``count`` stops after that
    many; ``t.stop()`` stops it, as do ``nbnats.stop_all()`` and ``%nats stop``.

    >>> t = nbnats.consumer_tail("ORDERS", "billing", count=10)   # doctest: +SKIP
    >>> t.wait().df[["seq", "subject"]]                           # doctest: +SKIP
    """
    from nbnats.tail import Tail, _tails
    _names(stream, name)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValidationError(f"limit must be a positive number of rows, not {limit!r}", "pass e.g. limit=10_000")
    if count is not None and (not isinstance(count, int) or count < 1):
        raise ValidationError(f"count must be a positive whole number, not {count!r}", "omit it to tail until stopped")
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ValidationError(f"batch must be a positive whole number, not {batch!r}", "pass e.g. batch=100")
    conn = current(connection)

    async def start():
        try:
            cfg = await pull_config(conn, stream, name)
        except JetStreamError as exc:
            if "push consumer" not in exc.what:
                raise
            cfg = (await _request(conn, f"CONSUMER.INFO.{stream}.{name}", None, f"reading consumer {name!r}",
                                  stream, name))["config"]
        subjects = cfg.get("filter_subjects") or ([cfg["filter_subject"]] if cfg.get("filter_subject") else [">"])
        t = Tail(conn, subjects, cfg.get("deliver_group"), limit, count, stream)
        reader = ConsumerReader(t, stream, name, cfg, ack, batch)
        t._reader = reader
        await reader.start()
        return t

    t = loop.run(start(), api.TIMEOUT + 5, f"reading consumer {name!r} of {stream!r}")
    conn.listeners.append(t)
    loop.call_soon(t._sample)
    _tails[t.id] = t
    return t
