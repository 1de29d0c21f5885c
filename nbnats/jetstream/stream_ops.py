"""natscli's stream verbs as DataFrames: report, subjects, find, rmm, seal, gaps, state (copy, backup, restore too).

Each one is a ``$JS.API`` request through :mod:`nbnats.engine.api`; what natscli
prints as a table comes back as a frame. Copying with data, backups and
restores live in :mod:`nbnats.jetstream.stream_copy` and are re-exported here.

>>> nbnats.stream_report()[["name", "messages", "leader", "lagging"]]   # doctest: +SKIP
>>> nbnats.stream_subjects("ORDERS", "orders.eu.>")                     # doctest: +SKIP
>>> nbnats.delete_message("ORDERS", 42)                                 # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data import validate
from nbnats.data.units import parse_time
from nbnats.engine import api
from nbnats.errors import JetStreamError, NotFound, ValidationError
from nbnats.jetstream.display import StreamInfo
from nbnats.jetstream.streams import _run, check_filters
from nbnats.jetstream.stream_copy import backup_stream, copy_stream, restore_stream  # noqa: F401  (one home for stream verbs)
from nbnats.runtime.connection import current

REPORT_SORTS = ("name", "messages", "bytes", "consumers", "storage")
SUBJECT_SORTS = ("messages", "subject")


def _times(values: list) -> pd.Series:
    """Server RFC 3339 times (or None) as a UTC datetime column."""
    return pd.to_datetime(pd.array([parse_time(v) for v in values], dtype="Int64"), unit="ns", utc=True)


def positive_seq(seq: Any, what: str = "sequence") -> int:
    """A stream sequence given by the user: a whole number from 1 on.

    >>> positive_seq(3)
    3
    >>> positive_seq(0)
    Traceback (most recent call last):
    ...
    nbnats.errors.ValidationError: sequence 0 is not a positive whole number — stream sequences start at 1
    """
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        if isinstance(seq, str) and seq.isdigit() and int(seq) > 0:
            return int(seq)
        raise ValidationError(f"{what} {seq!r} is not a positive whole number", "stream sequences start at 1")
    return seq


def _held(state: dict) -> str:
    return f"it holds seq {state['first_seq']}–{state['last_seq']}" if state["messages"] else "it is empty"


# -- report, state, find ------------------------------------------------------------------------
def _report_row(s: dict) -> dict:
    c, st, cl = s["config"], s["state"], s.get("cluster") or {}
    replicas = cl.get("replicas") or []
    lagging = [r.get("name", "?") for r in replicas
               if r.get("offline") or not r.get("current", True) or (r.get("lag") or 0) > 0]
    return {"name": c["name"], "storage": c.get("storage"), "replicas": c.get("num_replicas", 1),
            "messages": st["messages"], "bytes": st["bytes"], "consumers": st.get("consumer_count", 0),
            "subjects": st.get("num_subjects", 0), "deleted": st.get("num_deleted", 0),
            "first_seq": st["first_seq"], "last_seq": st["last_seq"], "last_ts": st.get("last_ts"),
            "cluster": cl.get("name"), "leader": cl.get("leader"),
            "peers": [r.get("name", "?") for r in replicas], "lagging": lagging,
            "sealed": bool(c.get("sealed")), "mirror": (c.get("mirror") or {}).get("name"),
            "sources": [x.get("name") for x in c.get("sources") or []]}


def stream_report(subject: str | None = None, sort: str = "name", connection: str | None = None) -> pd.DataFrame:
    """Every stream (storing ``subject``, when given): messages, bytes, consumers, replicas, leader, lagging peers.

    ``peers`` are the other replicas; ``lagging`` those not current (behind
    the leader, or offline). ``sort``: name, messages, bytes, consumers or
    storage (natscli's ``stream report`` flags). Largest first for counts.

    >>> nbnats.stream_report(sort="messages")[["name", "messages", "replicas", "leader", "lagging"]]   # doctest: +SKIP
    """
    if sort not in REPORT_SORTS:
        raise ValidationError(f"sort {sort!r} is not one of {', '.join(REPORT_SORTS)}", "use e.g. sort='messages'")
    body = {"subject": validate.subject(subject)} if subject else None
    conn = current(connection)
    listed = _run(api.paged(conn, "STREAM.LIST", "streams", body, what="listing streams"), "listing streams")
    cols = list(_report_row({"config": {"name": ""}, "state": {"messages": 0, "bytes": 0, "first_seq": 0,
                                                               "last_seq": 0}}))
    df = pd.DataFrame([_report_row(s) for s in listed], columns=cols)
    df["last_ts"] = _times(df["last_ts"].tolist())
    for col in ("name", "storage", "cluster", "leader", "mirror"):
        df[col] = df[col].astype("string")
    for col in ("replicas", "messages", "bytes", "consumers", "subjects", "deleted", "first_seq", "last_seq"):
        df[col] = df[col].astype("int64")
    df["sealed"] = df["sealed"].astype(bool)
    descending = sort in ("messages", "bytes", "consumers")
    return df.sort_values([sort, "name"], ascending=[not descending, True], ignore_index=True)


def stream_state(stream: str, connection: str | None = None) -> pd.DataFrame:
    """The stream's state as one row: messages, bytes, first/last seq and time, deleted, subjects, consumers.

    >>> nbnats.stream_state("ORDERS")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    conn = current(connection)
    what = f"reading stream {stream!r}"
    st = _run(api.request(conn, f"STREAM.INFO.{stream}", None, what=what, stream=stream), what)["state"]
    df = pd.DataFrame([{"stream": stream, "messages": st["messages"], "bytes": st["bytes"],
                        "first_seq": st["first_seq"], "first_ts": st.get("first_ts"), "last_seq": st["last_seq"],
                        "last_ts": st.get("last_ts"), "deleted": st.get("num_deleted", 0),
                        "subjects": st.get("num_subjects", 0), "consumers": st.get("consumer_count", 0)}])
    for col in ("first_ts", "last_ts"):
        df[col] = _times(df[col].tolist())
    df["stream"] = df["stream"].astype("string")
    return df


def find_streams(subject: str, connection: str | None = None) -> pd.DataFrame:
    """The streams that store ``subject`` (wildcards allowed): name, subjects, messages, bytes, consumers.

    >>> nbnats.find_streams("orders.eu.new")["name"].tolist()   # doctest: +SKIP
    ['ORDERS']
    """
    validate.subject(subject)
    rows = [{k: r[k] for k in ("name", "messages", "bytes", "consumers")} for r in
            stream_report(subject, connection=connection).to_dict("records")]
    conn = current(connection)

    async def subjects_of():
        return {r["name"]: (await api.request(conn, f"STREAM.INFO.{r['name']}", None, what=f"reading stream {r['name']!r}",
                                              stream=r["name"]))["config"].get("subjects") or [] for r in rows}

    stored = _run(subjects_of(), "reading the streams") if rows else {}
    df = pd.DataFrame([{**r, "subjects": stored.get(r["name"], [])} for r in rows],
                      columns=["name", "subjects", "messages", "bytes", "consumers"])
    df["name"] = df["name"].astype("string")
    for col in ("messages", "bytes", "consumers"):
        df[col] = df[col].astype("int64")
    df.attrs["subject"] = subject
    return df


# -- subjects and gaps -----------------------------------------------------------------------------
def stream_subjects(stream: str, filter: str | None = None, sort: str = "messages",
                    connection: str | None = None) -> pd.DataFrame:
    """The subjects ``stream`` holds (matching ``filter``) and how many messages each: subject, messages.

    Read in pages (STREAM.INFO with ``subjects_filter``), so streams with
    millions of subjects work. ``sort``: messages (most first) or subject.

    >>> nbnats.stream_subjects("ORDERS", "orders.eu.>")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    pattern = validate.subject(filter) if filter is not None else ">"
    if sort not in SUBJECT_SORTS:
        raise ValidationError(f"sort {sort!r} is not one of {', '.join(SUBJECT_SORTS)}", "use sort='messages'")
    conn = current(connection)
    what = f"reading the subjects of stream {stream!r}"

    async def read() -> dict:
        got: dict[str, int] = {}
        while True:
            resp = await api.request(conn, f"STREAM.INFO.{stream}", {"subjects_filter": pattern, "offset": len(got)},
                                     what=what, stream=stream)
            if not got and filter is not None:
                check_filters(resp, [pattern])
            page = resp["state"].get("subjects") or {}
            got.update(page)
            if not page or len(got) >= resp.get("total", 0):
                return got

    counts = _run(read(), what, timeout=60.0)
    df = pd.DataFrame({"subject": pd.array(list(counts), dtype="string"),
                       "messages": pd.array(list(counts.values()), dtype="int64")})
    if sort == "messages":
        df = df.sort_values(["messages", "subject"], ascending=[False, True], ignore_index=True)
    else:
        df = df.sort_values("subject", ignore_index=True)
    df.attrs.update(stream=stream, filter=pattern)
    return df


def gaps_of(deleted: list[int]) -> pd.DataFrame:
    """Deleted sequences as ranges: from_seq, to_seq, missing.

    >>> gaps_of([4, 5, 6, 9]).values.tolist()
    [[4, 6, 3], [9, 9, 1]]
    """
    ranges: list[list[int]] = []
    for seq in sorted(deleted):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    df = pd.DataFrame(ranges, columns=["from_seq", "to_seq"], dtype="int64")
    df["missing"] = (df["to_seq"] - df["from_seq"] + 1).astype("int64")
    return df


def stream_gaps(stream: str, connection: str | None = None) -> pd.DataFrame:
    """The ranges of deleted messages inside the stream: from_seq, to_seq, missing.

    From the server's own list (STREAM.INFO with ``deleted_details``), so the
    stream is not read. An empty frame means no gaps.

    >>> nbnats.stream_gaps("ORDERS")   # doctest: +SKIP
       from_seq  to_seq  missing
    0         4       6        3
    """
    validate.name(stream, "stream")
    conn = current(connection)
    what = f"reading the deleted messages of stream {stream!r}"
    st = _run(api.request(conn, f"STREAM.INFO.{stream}", {"deleted_details": True}, what=what, stream=stream),
              what, timeout=60.0)["state"]
    df = gaps_of(st.get("deleted") or [])
    df.attrs.update(stream=stream, first_seq=st["first_seq"], last_seq=st["last_seq"])
    return df


# -- changing a stream --------------------------------------------------------------------------------
def delete_message(stream: str, seq: int, erase: bool = True, connection: str | None = None) -> pd.DataFrame:
    """Remove the message at ``seq`` (natscli ``rmm``); ``erase`` overwrites its data on disk as well.

    Returns one row: stream, seq, erased, messages (what is left). A sequence
    the stream does not hold is a plain :class:`~nbnats.errors.NotFound`.

    >>> nbnats.delete_message("ORDERS", 42)   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    seq = positive_seq(seq)
    conn = current(connection)
    what = f"removing seq {seq} from stream {stream!r}"

    async def remove():
        info = await api.request(conn, f"STREAM.INFO.{stream}", None, what=f"reading stream {stream!r}", stream=stream)
        cfg, st = info["config"], info["state"]
        if cfg.get("sealed"):
            raise JetStreamError(f"stream {stream!r} is sealed, so its messages cannot be removed",
                                 "a sealed stream stays as it is; copy it with nbnats.copy_stream to change the copy")
        if cfg.get("deny_delete"):
            raise JetStreamError(f"stream {stream!r} denies removing messages (deny_delete)",
                                 "remove messages only from streams made without deny_delete")
        if not st["messages"] or not st["first_seq"] <= seq <= st["last_seq"]:
            raise NotFound(f"stream {stream!r} has no message at seq {seq} ({_held(st)})",
                           "pick a sequence the stream holds (nbnats.stream_state)")
        try:
            await api.request(conn, f"STREAM.MSG.DELETE.{stream}", {"seq": seq, "no_erase": not erase},
                              what=what, stream=stream)
        except NotFound:
            raise NotFound(f"stream {stream!r} has no message at seq {seq}: it was removed already ({_held(st)})",
                           "see the removed ranges with nbnats.stream_gaps") from None
        return st["messages"] - 1

    left = _run(remove(), what)
    return pd.DataFrame({"stream": pd.array([stream], dtype="string"), "seq": [seq], "erased": [bool(erase)],
                         "messages": [left]})


def seal_stream(stream: str, connection: str | None = None) -> StreamInfo:
    """Seal the stream: no more messages, deletes, purges or changes, ever (natscli ``seal``).

    Sealing a sealed stream again changes nothing. Returns its info.

    >>> nbnats.seal_stream("ORDERS_2025")   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    conn = current(connection)
    what = f"sealing stream {stream!r}"

    async def seal():
        info = await api.request(conn, f"STREAM.INFO.{stream}", None, what=f"reading stream {stream!r}", stream=stream)
        if info["config"].get("sealed"):
            return info
        return await api.request(conn, f"STREAM.UPDATE.{stream}", {**info["config"], "sealed": True},
                                 what=what, stream=stream)

    return StreamInfo(_run(seal(), what))
