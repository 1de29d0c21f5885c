"""Replay a stream into a DataFrame, fast, without consuming it.

The read is the engine's bulk path (:mod:`nbnats.engine.bulk`): one coroutine on
the nbnats loop that only appends raw bytes to columns, by a plan fixed before the
first message (the stream's last sequence at the start); this module checks the
arguments, picks the reader (a consumer for limits streams; direct or message gets
for WorkQueue/Interest streams, which are never consumed), builds the frame once at
the end (Arrow decodes the JSON in bulk) and reports what was missing.

>>> df = nbnats.replay("ORDERS", subject="orders.eu.>", since="1h")   # doctest: +SKIP
>>> df.attrs["gaps"], df.attrs["warnings"]                            # doctest: +SKIP
([], [])
"""

from __future__ import annotations

import concurrent.futures
import itertools
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from nbnats.data import bulk as data_bulk, frames, outputs, validate
from nbnats.data.packed import Packed
from nbnats.data.units import parse_time, seconds, to_ns
from nbnats.engine import api, bulk
from nbnats.engine.bulk import Plan, Sink, read_by_consumer, read_by_get, read_direct
from nbnats.errors import JetStreamError, NotFound, Timeout, ValidationError
from nbnats.jetstream import dataset
from nbnats.jetstream.streams import check_filters, subjects_list
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current

GAPS_KEPT = 10_000


class ReplayWarning(UserWarning):
    """A replay read less than was asked for: a purged start, or messages missing inside the range."""


def replay(stream: str, subject: str | list[str] | None = None, since: Any = None, start_seq: int | None = None,
           until: Any = None, limit: int | None = None, *, end_seq: int | None = None,
           decode: bool | Callable[[bytes], Any] | None = None, progress: bool | None = None,
           timeout: Any = 10.0, connection: str | None = None, output: str = "pandas",
           to: str | None = None, resume: bool = False) -> Any:
    """Read ``stream`` into the standard frame, as it was when the replay began.

    Filters: ``subject`` (one pattern or a list), ``start_seq``/``end_seq``
    (inclusive), ``since``/``until`` (ISO time, datetime, or a duration ago
    such as ``"1h"``; inclusive), ``limit`` (the first N that match). The read
    stops at the stream's last sequence at the start, so its length does not
    depend on who publishes meanwhile; it never consumes WorkQueue or
    Interest streams. ``time`` keeps the stream's nanosecond timestamps.
    ``decode=False`` keeps payloads as bytes in ``data``; a function decodes
    each payload. A progress bar appears for long replays (``progress=``
    forces it on or off). ``timeout`` is how long the read may stall.

    What was missing is reported, as a :class:`ReplayWarning` and in
    ``df.attrs``: ``"warnings"`` (sentences such as ``"asked for seq 1, the
    stream starts at 6 …"``), ``"gaps"`` (a list of ``{"from_seq", "to_seq",
    "missing"}`` for sequences absent inside the range; only computed without
    a subject filter, where every sequence is expected), plus ``"stream"``,
    ``"first_seq"``/``"last_seq"`` (the stream's at the start) and
    ``"reader"`` (consumer, direct or get).

    >>> df = nbnats.replay("ORDERS", since="1h", subject="orders.eu.*")   # doctest: +SKIP
    >>> df.groupby("subject").size()                                       # doctest: +SKIP
    """
    plan = _checked_plan(stream, subject, since, start_seq, until, end_seq, limit)
    if decode is not None and decode is not False and not callable(decode):
        raise ValidationError(f"decode must be None, False or a function, not {decode!r}",
                              "pass decode=False to keep raw bytes")
    outputs.check(output)
    timeout = seconds(timeout, "timeout") or 10.0
    loop._refuse_in_loop()
    conn = current(connection)
    if to is not None:
        if decode is not None or output != "pandas":
            raise ValidationError("a replay to Parquet decodes JSON itself and takes neither decode= nor output=",
                                  "drop them, or replay into memory and write the frame yourself")
        return dataset.write(stream, to, plan, conn, resume=resume, timeout=timeout, progress=progress,
                             reader=_read)
    sink = Sink()
    fut = loop.submit(_read(conn, plan, sink, timeout))
    bar, shown = None, 0
    # JSON payloads are parsed by Arrow here, chunk by chunk, while the loop thread reads on
    preread = decode is None and frames.subject_decoder is None
    try:
        while True:
            # wait() rather than result(timeout): the read's own Timeout is a TimeoutError too
            concurrent.futures.wait([fut], 0.02 if preread else 0.1)
            if fut.done():
                fut.result()
                break
            if preread:
                sink.payloads.preread(data_bulk.read_chunk)
            if bar is None and sink.total is not None:
                from nbnats.progress import progress_bar
                bar = progress_bar(sink.total, f"replay {stream}", enabled=progress)
            if bar is not None and sink.count > shown:
                bar.update(sink.count - shown)
                shown = sink.count
    except concurrent.futures.CancelledError:
        raise Timeout(f"the replay of {stream!r} was cancelled", "run it again") from None
    except BaseException:
        fut.cancel()
        raise
    finally:
        if bar is None and progress and sink.total:
            from nbnats.progress import progress_bar
            bar = progress_bar(sink.total, f"replay {stream}", enabled=progress)
        if bar is not None:
            bar.update(max(0, sink.count - shown))
            bar.close()
    return outputs.as_output(_frame(plan, sink, decode), output)


def _checked_plan(stream, subject, since, start_seq, until, end_seq, limit) -> Plan:
    validate.name(stream, "stream")
    filters = subjects_list(subject, "subject filter") if subject is not None else []
    if filters == [">"]:
        filters = []
    for value, label in ((start_seq, "start_seq"), (end_seq, "end_seq"), (limit, "limit")):
        if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
            raise ValidationError(f"{label} must be a positive whole number, not {value!r}",
                                  f"pass e.g. {label}={'1' if label != 'limit' else '1000'}")
    since_ns, until_ns = to_ns(since, "since"), to_ns(until, "until")
    if since_ns is not None and until_ns is not None and since_ns > until_ns:
        raise ValidationError("since is later than until", "swap them: since is the start of the time range")
    if start_seq is not None and end_seq is not None and start_seq > end_seq:
        raise ValidationError(f"start_seq {start_seq} is after end_seq {end_seq}", "swap them")
    return Plan(stream, filters, start_seq, since_ns, until_ns, end_seq, limit)


# -- the read, one coroutine on the loop ----------------------------------------------
async def _read(conn: Connection, plan: Plan, sink: Sink, stall: float) -> None:
    info = await api.request(conn, f"STREAM.INFO.{plan.stream}", None, what=f"reading stream {plan.stream!r}", stream=plan.stream)
    plan.info = info
    check_filters(info, plan.filters)
    state, cfg = info["state"], info["config"]
    if state["messages"] == 0:
        raise NotFound(f"stream {plan.stream!r} is empty, so there is nothing to replay",
                       "publish to it first (nbnats.publish(subject, data, js=True)), "
                       "or check the name with nbnats.streams()")
    plan.stop = min(state["last_seq"], plan.end_seq or state["last_seq"])
    first = max(plan.start_seq or 1, state["first_seq"])
    if first > plan.stop:
        sink.total = 0
        return
    version = api.server_version(conn)
    if cfg.get("retention", "limits") == "limits":
        plan.path = "consumer"
        plan.client_filter = len(plan.filters) > 1 and version < (2, 10, 0)   # 2.9 ignores filter_subjects
        try:
            return await read_by_consumer(conn, plan, sink, first, stall)
        except JetStreamError as exc:
            if "maximum consumers" not in str(exc):
                raise
    if cfg.get("allow_direct") and version >= (2, 11, 0):
        plan.path = "direct"
        plan.client_filter = len(plan.filters) > 1
        return await read_direct(conn, plan, sink, first, stall)
    plan.path = "get"
    plan.client_filter = bool(plan.filters)
    return await read_by_get(conn, plan, sink, first, stall)


def _frame(plan: Plan, sink: Sink, decode, warn: bool = True) -> pd.DataFrame:
    seqs = np.concatenate(sink.seqs) if sink.seqs else np.zeros(0, np.int64)
    times = np.concatenate(sink.times) if sink.times else np.zeros(0, np.int64)
    sink.seqs, sink.times = [], []          # the chunks (Arrow memory) are not needed any more
    subjects, payloads, headers = sink.subjects, sink.payloads, sink.headers
    keep = seqs <= plan.stop
    if plan.start_seq is not None:
        keep &= seqs >= plan.start_seq
    if plan.since is not None:
        keep &= times >= plan.since
    if plan.until is not None:
        keep &= times <= plan.until
    if plan.client_filter:
        hits = {s: any(validate.subject_matches(f, s) for f in plan.filters) for s in set(subjects)}
        keep &= np.fromiter((hits[s] for s in subjects), bool, len(subjects))
    if plan.limit is not None:
        keep &= np.cumsum(keep) <= plan.limit
    if not keep.all():
        subjects = list(itertools.compress(subjects, keep))
        payloads = payloads.select(keep)
        headers = list(itertools.compress(headers, keep))
        seqs, times = seqs[keep], times[keep]
    payloads.finish()
    if decode is None and frames.subject_decoder is None:
        payloads.preread(data_bulk.read_chunk)      # what the read left (all of it, for a short read)
    sink.subjects, sink.payloads, sink.headers = [], Packed(), []
    if decode is False:
        decoder = _raw
    else:
        decoder = decode
    df = frames.build(subjects, times, payloads, headers, seqs, decode=decoder)
    _report(df, plan, seqs, warn)
    return df


def _raw(payload: bytes) -> bytes:
    return payload


def _report(df: pd.DataFrame, plan: Plan, seqs: np.ndarray, warn: bool = True) -> None:
    """Fill ``df.attrs`` and warn about a purged start or missing sequences."""
    state = plan.info.get("state", {})
    first_seq, last_seq = state.get("first_seq", 0), state.get("last_seq", 0)
    notes: list[str] = []
    gaps: list[dict] = []
    if plan.start_seq is not None and plan.start_seq < first_seq:
        notes.append(f"asked for seq {plan.start_seq}, the stream starts at {first_seq} "
                     f"(seq {plan.start_seq}–{first_seq - 1} were purged, deleted or expired)")
    if plan.start_seq is not None and plan.start_seq > last_seq:
        notes.append(f"asked for seq {plan.start_seq}, the stream ends at {last_seq}")
    first_ts = parse_time(state.get("first_ts"))
    if plan.since is not None and first_seq > 1 and first_ts is not None and plan.since < first_ts:
        notes.append(f"asked for messages since {pd.Timestamp(plan.since, unit='ns', tz='UTC')}, the stream starts at "
                     f"seq {first_seq} from {pd.Timestamp(first_ts, unit='ns', tz='UTC')} "
                     "(older messages were purged, deleted or expired)")
    if not plan.filters and len(seqs) and plan.path:
        # the edges count only where every sequence was asked for: not past a time bound or the limit
        lo = max(plan.start_seq or first_seq, first_seq) if plan.since is None else int(seqs[0])
        full = plan.until is None and (plan.limit is None or len(seqs) < plan.limit)
        hi = plan.stop if full else int(seqs[-1])
        edges = np.concatenate(([lo - 1], seqs, [hi + 1]))
        jumps = np.flatnonzero(np.diff(edges) > 1)
        missing = int((np.diff(edges)[jumps] - 1).sum())
        gaps = [{"from_seq": int(edges[i]) + 1, "to_seq": int(edges[i + 1]) - 1,
                 "missing": int(edges[i + 1] - edges[i] - 1)} for i in jumps[:GAPS_KEPT]]
        if gaps:
            shown = ", ".join(f"{g['from_seq']}" if g["missing"] == 1 else f"{g['from_seq']}–{g['to_seq']}"
                              for g in gaps[:5])
            more = f" and {len(jumps) - 5} more ranges" if len(jumps) > 5 else ""
            notes.append(f"{missing:,} message(s) inside seq {lo}–{hi} are missing (deleted or expired): "
                         f"seq {shown}{more}")
    df.attrs.update(stream=plan.stream, first_seq=first_seq, last_seq=last_seq, stop_seq=plan.stop,
                    reader=plan.path or "none", gaps=gaps, warnings=notes,
                    transport="wire" if plan.path == "consumer" and not plan.notes and bulk.WIRE else "nats-py",
                    notes=list(plan.notes), reconnects=plan.reconnects)
    for note in notes if warn else ():
        warnings.warn(note, ReplayWarning, stacklevel=4)
