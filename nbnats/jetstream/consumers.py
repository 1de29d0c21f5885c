"""JetStream consumers: add, list, inspect, remove.

>>> nbnats.add_consumer("ORDERS", "billing", filter="orders.eu.>", durable=True)   # doctest: +SKIP
>>> nbnats.consumers("ORDERS")[["name", "pending"]]                               # doctest: +SKIP
"""

from __future__ import annotations

import difflib
from typing import Any

import pandas as pd

from nbnats.data import validate
from nbnats.data.units import count, nanos, parse_time, rfc3339, to_ns
from nbnats.engine import api
from nbnats.errors import JetStreamError, ValidationError
from nbnats.jetstream.display import ConsumerInfo, ConsumerList, listing
from nbnats.jetstream.streams import _run, check_filters, subjects_list
from nbnats.runtime.connection import current

ACK = ("explicit", "none", "all")
DELIVER = {"all": "all", "new": "new", "last": "last", "last-per-subject": "last_per_subject"}
EPHEMERAL_IDLE = 3600.0      # seconds an unused ephemeral consumer lives (the server default is 5 s)

_CONSUMER_FIELDS = frozenset("""name durable_name description deliver_policy opt_start_seq opt_start_time
    ack_policy ack_wait max_deliver backoff filter_subject filter_subjects replay_policy rate_limit_bps sample_freq
    max_waiting max_ack_pending flow_control idle_heartbeat headers_only max_batch max_expires max_bytes
    inactive_threshold num_replicas mem_storage metadata pause_until priority_policy priority_groups
    priority_timeout deliver_subject deliver_group""".split())


def consumers(stream: str, connection: str | None = None) -> ConsumerList:
    """The stream's consumers: name, durable, kind, filter, ack, deliver, pending, ack_pending, …

    >>> nbnats.consumers("ORDERS")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    conn = current(connection)

    async def fetch():
        out: list[dict] = []
        while True:
            resp = await api.request(conn, f"CONSUMER.LIST.{stream}", {"offset": len(out)}, what=f"listing the consumers of {stream!r}", stream=stream)
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
    df = listing(rows, cols)
    df["created"] = pd.to_datetime(df["created"].astype("Int64"), unit="ns", utc=True)
    return ConsumerList(df.sort_values("name", ignore_index=True))


_DURATIONS = {"idle_heartbeat", "max_expires", "inactive_threshold", "priority_timeout"}


def _server_units(key: str, value: Any) -> Any:
    """A setting passed by its server name, in the server's units (durations as nanoseconds).

    >>> _server_units("backoff", ["1s", "5s"]), _server_units("max_ack_pending", 10)
    ([1000000000, 5000000000], 10)
    """
    if key == "backoff":
        if isinstance(value, (str, int, float)):
            value = [value]
        return [nanos(v, "backoff") for v in value]
    if key in _DURATIONS:
        return nanos(value, key)
    return value


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
        cfg[key] = _server_units(key, value)
    if config.get("deliver_subject"):
        validate.subject(config["deliver_subject"], publish=True, what="deliver subject")
    conn = current(connection)
    if len(filters) > 1 and api.server_version(conn) < (2, 10, 0):
        raise JetStreamError(f"the server ({'.'.join(map(str, api.server_version(conn)))}) supports one filter "
                             "subject per consumer; several are silently ignored before 2.10",
                             "use one filter (e.g. a wildcard), or upgrade the server to 2.10+")
    if len(filters) == 1:
        cfg["filter_subject"] = filters[0]
    elif filters:
        cfg["filter_subjects"] = filters
    elif deliver == "last-per-subject":
        cfg["filter_subject"] = ">"        # the server wants a filter for this policy; '>' means every subject

    async def add():
        info = await api.request(conn, f"STREAM.INFO.{stream}", None, what=f"reading stream {stream!r}", stream=stream)
        check_filters(info, filters)
        subject = f"CONSUMER.CREATE.{stream}" + (f".{name}" if name else "")
        return await api.request(conn, subject, {"stream_name": stream, "config": cfg}, what=f"adding consumer {name or '(ephemeral)'!r} to {stream!r}", stream=stream, consumer=name)

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
    return ConsumerInfo(_run(api.request(conn, f"CONSUMER.INFO.{stream}.{name}", None, what=what,
                                     stream=stream, consumer=name), what))


def delete_consumer(stream: str, name: str, connection: str | None = None) -> None:
    """Remove a consumer (the stream's messages stay).

    >>> nbnats.delete_consumer("ORDERS", "billing")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    validate.name(name, "consumer")
    conn = current(connection)
    what = f"removing consumer {name!r} from {stream!r}"
    _run(api.request(conn, f"CONSUMER.DELETE.{stream}.{name}", None, what=what, stream=stream, consumer=name), what)
