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

import difflib
from typing import Any

import pandas as pd

from nbnats.data import validate
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.engine import api
from nbnats.engine.get import get as get_stored
from nbnats.errors import JetStreamError, NotFound, ValidationError
from nbnats.jetstream.display import StreamInfo, StreamList, StreamMessage, listing, stored_message
from nbnats.data.units import count, nanos, parse_time, size
RETENTION = ("limits", "interest", "workqueue")
STORAGE = ("file", "memory")
DISCARD = ("old", "new")

_STREAM_FIELDS = frozenset("""name description subjects retention max_consumers max_msgs max_bytes max_age
    max_msgs_per_subject max_msg_size discard discard_new_per_subject storage num_replicas no_ack duplicate_window
    placement mirror sources sealed deny_delete deny_purge allow_rollup_hdrs allow_direct mirror_direct republish
    subject_transform compression first_seq metadata consumer_limits allow_msg_ttl subject_delete_marker_ttl
    allow_msg_counter allow_atomic allow_msg_schedules persist_mode""".split())


# the newer features' flags: friendly name → (server field); the server version each needs
FLAGS = {"allow_msg_ttl": "allow_msg_ttl", "allow_counter": "allow_msg_counter",
         "allow_schedules": "allow_msg_schedules", "allow_atomic": "allow_atomic"}
FLAG_NEEDS = {"allow_msg_ttl": ((2, 11), "per-message TTLs (allow_msg_ttl)"),
              "allow_msg_counter": ((2, 12), "counters (allow_counter)"),
              "allow_msg_schedules": ((2, 12), "scheduled messages (allow_schedules)"),
              "allow_atomic": ((2, 12), "atomic publish (allow_atomic)")}


def check_flags(conn: Connection, cfg: dict) -> None:
    """Refuse plainly a flag the server is too old for (an old server would ignore it silently).

    >>> check_flags(nbnats.current(), {"allow_msg_counter": True})   # doctest: +SKIP
    """
    for field, (version, feature) in FLAG_NEEDS.items():
        if cfg.get(field):
            api.needs(conn, version, feature)


def _run(coro, what: str, timeout: float = 10.0):
    return loop.run(coro, timeout, what)


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
            resp = await api.request(conn, "STREAM.LIST", {"offset": len(out)}, what="listing streams")
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
    df = listing(rows, cols)
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
    for key, server_key in FLAGS.items():
        if o.get(key) is not None:
            value = o.pop(key)
            if not isinstance(value, bool):
                raise ValidationError(f"{key} must be True or False, not {value!r}", f"pass {key}=True")
            cfg[server_key] = value
    if cfg.get("allow_msg_counter") and (cfg.get("allow_msg_ttl") or cfg.get("allow_msg_schedules")):
        raise ValidationError("a counter stream cannot also allow per-message TTLs or schedules (the server refuses it)",
                              "keep the counters in a stream of their own: allow_counter=True alone")
    if o.get("replicas") is not None:
        cfg["num_replicas"] = count(o.pop("replicas"), "replicas")
    if o.get("dupe_window") is not None:
        cfg["duplicate_window"] = nanos(o.pop("dupe_window"), "dupe_window")
    for key, value in o.items():
        if value is None:
            continue
        if key not in fields:
            close = difflib.get_close_matches(key, sorted(fields) + list(friendly) + list(FLAGS) + ["replicas", "dupe_window"], n=1)
            raise ValidationError(f"{key!r} is not a stream setting",
                                  f"did you mean {close[0]!r}?" if close else "see help(nbnats.add_stream)")
        cfg[key] = value
    if cfg.get("num_replicas", 1) < 1:
        raise ValidationError("replicas must be at least 1", "use replicas=1 (or 3 on a cluster)")
    return cfg


async def _check_overlap(conn: Connection, name: str, subjects: list[str]) -> None:
    for s in subjects:
        others = [n for n in await api.stream_names(conn, s) if n != name]
        if others:
            raise JetStreamError(f"subject {s!r} is already stored by stream {others[0]!r}",
                                 f"a subject belongs to one stream: pick another, or add it to {others[0]!r} "
                                 f"with nbnats.edit_stream({others[0]!r}, ...)")


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
    Adding an identical stream again is a no-op. The newer features are
    flags: ``allow_msg_ttl`` (per-message TTLs, nats-server 2.11+),
    ``allow_counter`` (counters), ``allow_schedules`` (scheduled messages),
    ``allow_atomic`` (atomic batches), each 2.12+.

    >>> nbnats.add_stream("ORDERS", "orders.>", max_age="7d", dupe_window="2m")   # doctest: +SKIP
    <StreamInfo ORDERS: subjects=orders.>, retention=limits, …>
    >>> nbnats.add_stream("HITS", "hits.>", allow_counter=True)                   # doctest: +SKIP
    """
    validate.name(name, "stream")
    if subjects is None and not (config.get("mirror") or config.get("sources")):
        raise ValidationError(f"stream {name!r} needs subjects to store",
                              f"pass them, e.g. nbnats.add_stream({name!r}, subjects='orders.>')")
    config.setdefault("allow_direct", True)
    cfg = _config(name, subjects, dict(config, max_msgs=max_msgs, max_bytes=max_bytes, max_age=max_age,
                                       storage=storage, replicas=replicas, retention=retention,
                                       dupe_window=dupe_window))
    conn = current(connection)
    check_flags(conn, cfg)

    async def add():
        try:
            existing = await api.request(conn, f"STREAM.INFO.{name}", None, what=f"looking up stream {name!r}")
        except NotFound:
            existing = None
        if existing is None:
            await _check_overlap(conn, name, cfg.get("subjects") or [])
        return await api.request(conn, f"STREAM.CREATE.{name}", cfg, what=f"adding stream {name!r}", stream=name)

    return StreamInfo(_run(add(), f"adding stream {name!r}"))


def stream_info(name: str, connection: str | None = None) -> StreamInfo:
    """The stream's configuration and state (a dict that displays as a table).

    >>> nbnats.stream_info("ORDERS").messages   # doctest: +SKIP
    42
    """
    validate.name(name, "stream")
    conn = current(connection)
    return StreamInfo(_run(api.request(conn, f"STREAM.INFO.{name}", None, what=f"reading stream {name!r}", stream=name),
                           f"reading stream {name!r}"))


def edit_stream(name: str, subjects: str | list[str] | None = None, connection: str | None = None,
                **changes: Any) -> StreamInfo:
    """Change a stream's settings (same arguments as :func:`add_stream`); others stay as they are.

    >>> nbnats.edit_stream("ORDERS", max_age="30d", subjects="orders.>,returns.>")   # doctest: +SKIP
    """
    validate.name(name, "stream")
    conn = current(connection)
    wanted = _config(name, subjects, changes)
    check_flags(conn, wanted)

    async def edit():
        info = await api.request(conn, f"STREAM.INFO.{name}", None, what=f"reading stream {name!r}", stream=name)
        cfg = {**info["config"], **wanted}
        if subjects is not None:
            await _check_overlap(conn, name, cfg["subjects"])
        return await api.request(conn, f"STREAM.UPDATE.{name}", cfg, what=f"changing stream {name!r}", stream=name)

    return StreamInfo(_run(edit(), f"changing stream {name!r}"))


def delete_stream(name: str, connection: str | None = None) -> None:
    """Delete a stream with all its messages and consumers.

    >>> nbnats.delete_stream("ORDERS")   # doctest: +SKIP
    """
    validate.name(name, "stream")
    conn = current(connection)
    _run(api.request(conn, f"STREAM.DELETE.{name}", None, what=f"deleting stream {name!r}", stream=name),
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
            info = await api.request(conn, f"STREAM.INFO.{name}", None, what=f"reading stream {name!r}", stream=name)
            check_filters(info, [subject])
        return await api.request(conn, f"STREAM.PURGE.{name}", body, what=f"purging stream {name!r}", stream=name)

    return int(_run(purge(), f"purging stream {name!r}").get("purged", 0))



def get_message(stream: str, seq: int | None = None, last_for: str | None = None,
                connection: str | None = None) -> StreamMessage:
    """One stored message, by sequence or as the last one on a subject.

    >>> m = nbnats.get_message("ORDERS", 5)                       # doctest: +SKIP
    >>> nbnats.get_message("ORDERS", last_for="orders.eu").json()  # doctest: +SKIP
    """
    validate.name(stream, "stream")
    if (seq is None) == (last_for is None):
        raise ValidationError("say which message: a sequence or last_for=SUBJECT (one of them)",
                              f"e.g. nbnats.get_message({stream!r}, 1), or last_for='orders.new'")
    if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 1):
        raise ValidationError(f"sequence {seq!r} is not a positive whole number", "stream sequences start at 1")
    if last_for is not None:
        validate.subject(last_for, publish=True)
    conn = current(connection)

    async def get():
        info = await api.request(conn, f"STREAM.INFO.{stream}", None, what=f"reading stream {stream!r}", stream=stream)
        if last_for is not None:
            check_filters(info, [last_for])
        try:
            resp = await get_stored(conn, stream, seq=seq, last_for=last_for, direct=False)
        except NotFound:
            st = info["state"]
            held = f"it holds seq {st['first_seq']}–{st['last_seq']}" if st["messages"] else "it is empty"
            if seq is not None:
                raise NotFound(f"stream {stream!r} has no message at seq {seq} ({held})",
                               "pick a sequence from nbnats.stream_info(), or replay the stream") from None
            raise NotFound(f"stream {stream!r} has no message on {last_for!r}",
                           "check the subject, or list what is there with nbnats.replay()") from None
        return stored_message(stream, resp)

    return _run(get(), f"reading from stream {stream!r}")


