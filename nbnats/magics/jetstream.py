"""``%nats stream …``, ``%nats consumer …`` and ``%nats replay``: thin faces over the JetStream API.

>>> %nats stream add ORDERS --subjects 'orders.>' --max-age 7d     # doctest: +SKIP
>>> df = %nats replay ORDERS --since 1h                            # doctest: +SKIP
"""

from __future__ import annotations

import nbnats as js   # the public API (streams and consumers)
from nbnats.data import units
from nbnats.jetstream import consume, worker
from nbnats.jetstream.replay import replay
from nbnats.widgets import stream_view

from nbnats.magics.registry import MagicUsageError, arg, group, verb

group("stream", "JetStream streams: ls, add, info, edit, rm, purge, get, view, report, subjects, find, rmm, copy, "
      "seal, gaps, backup, restore, state")
group("consumer", "JetStream consumers: ls, add, info, next, rm, edit, report, pause, resume, unpin, reset, graph, sub")

_LIMITS = (
    arg("--max-msgs", type=int, default=None, help="keep at most N messages"),
    arg("--max-bytes", default=None, help="keep at most this much (1000000, 512MB, 1GB)"),
    arg("--max-age", default=None, help="drop messages older than this (7d, 12h, 30m)"),
    arg("--max-msgs-per-subject", type=int, default=None, help="keep the last N per subject"),
    arg("--max-msg-size", default=None, help="refuse larger messages (1MB)"),
    arg("--discard", default=None, help="when full: old (drop the oldest) or new (refuse new ones)"),
    arg("--dupe-window", default=None, help="Nats-Msg-Id de-duplication window (2m)"),
    arg("--description", default=None),
)


_FLAGS = (
    arg("--allow-msg-ttl", action="store_true", default=None, help="messages may carry their own TTL (server 2.11+)"),
    arg("--allow-counter", action="store_true", default=None, help="subjects are counters (server 2.12+)"),
    arg("--allow-schedules", action="store_true", default=None, help="messages may be scheduled (server 2.12+)"),
    arg("--allow-atomic", action="store_true", default=None, help="atomic batch publish (server 2.12+)"),
)


def _limits(a) -> dict:
    return {k: getattr(a, k, None) for k in ("max_msgs", "max_bytes", "max_age", "max_msgs_per_subject",
                                             "max_msg_size", "discard", "dupe_window", "description",
                                             "allow_msg_ttl", "allow_counter", "allow_schedules", "allow_atomic")}


@verb("stream ls", "every stream: messages, size, sequences, consumers (a DataFrame)")
def _stream_ls(a, ctx):
    return js.streams()


@verb("stream add", "create a stream",
      arg("name"), arg("--subjects", required=True, help="subjects to store: 'orders.>' or 'a.*,b.>'"),
      *_LIMITS, *_FLAGS,
      arg("--storage", default="file", help="file or memory"),
      arg("--replicas", type=int, default=1, help="copies kept in a cluster"),
      arg("--retention", default="limits",
          help="limits: keep by limits; interest: until every consumer acked; workqueue: until one consumer acked"))
def _stream_add(a, ctx):
    return js.add_stream(a.name, a.subjects, storage=a.storage, replicas=a.replicas, retention=a.retention,
                         **_limits(a))


@verb("stream info", "a stream's configuration and state", arg("name"))
def _stream_info(a, ctx):
    return js.stream_info(a.name)


@verb("stream edit", "change a stream's subjects or limits (others stay as they are)",
      arg("name"), arg("--subjects", default=None, help="the new full list of subjects"), *_LIMITS, *_FLAGS,
      arg("--replicas", type=int, default=None))
def _stream_edit(a, ctx):
    return js.edit_stream(a.name, a.subjects, replicas=a.replicas, **_limits(a))


@verb("stream rm", "delete a stream with its messages and consumers", arg("name"))
def _stream_rm(a, ctx):
    js.delete_stream(a.name)
    print(f"deleted stream {a.name}")


@verb("stream purge", "remove messages: all, one subject's, all but the newest N, or below a sequence",
      arg("name"), arg("--subject", default=None, help="only this subject (wildcards allowed)"),
      arg("--keep", type=int, default=None, help="keep the newest N"),
      arg("--seq", type=int, default=None, help="remove everything below this sequence"))
def _stream_purge(a, ctx):
    n = js.purge_stream(a.name, subject=a.subject, keep=a.keep, seq=a.seq)
    print(f"purged {n:,} message(s) from {a.name}")


@verb("stream get", "one stored message, by sequence or the last on a subject",
      arg("name"), arg("seq", nargs="?", type=int, default=None),
      arg("--last-for", default=None, metavar="SUBJECT", help="the last message on this subject"))
def _stream_get(a, ctx):
    return js.get_message(a.name, seq=a.seq, last_for=a.last_for)


@verb("stream view", "browse a stream: pages, subject filter, jump to a sequence or a time",
      arg("name"), arg("--subject", default=None, help="show only this subject (wildcards allowed)"),
      arg("--page-size", type=int, default=20))
def _stream_view(a, ctx):
    return stream_view.view(a.name, subject=a.subject, page_size=a.page_size)


@verb("replay", "read a stream into a DataFrame (as it was when the replay began)",
      arg("stream"), arg("--subject", default=None, help="only these subjects: 'orders.eu.*' or 'a.>,b.>'"),
      arg("--since", default=None, help="from this time: ISO (2026-11-27T14:00Z) or ago (1h, 7d)"),
      arg("--until", default=None, help="up to this time: ISO or ago"),
      arg("--start-seq", type=int, default=None), arg("--end-seq", type=int, default=None),
      arg("--limit", type=int, default=None, help="the first N messages that match"),
      arg("--raw", action="store_true", help="keep payloads as bytes in a data column"),
      arg("--no-progress", action="store_true", help="no progress bar"),
      arg("--output", default=None, choices=("pandas", "arrow", "polars"),
          help="what to return (default: NatsMagic.output)"),
      arg("--to", default=None, help="write a Parquet dataset here (a folder or fsspec URL) instead"),
      arg("--resume", action="store_true", help="with --to: continue after the last sequence written"))
def _replay(a, ctx):
    subject = a.subject.split(",") if a.subject and "," in a.subject else a.subject
    return replay(a.stream, subject=subject, since=a.since, until=a.until, start_seq=a.start_seq,
                  end_seq=a.end_seq, limit=a.limit, decode=False if a.raw else None,
                  progress=False if a.no_progress else None, output=a.output or "pandas", to=a.to,
                  resume=a.resume)


@verb("consumer ls", "a stream's consumers: pending, waiting for ack, redelivered", arg("stream"))
def _consumer_ls(a, ctx):
    return js.consumers(a.stream)


@verb("consumer add", "add a pull consumer (ephemeral unless --durable)",
      arg("stream"), arg("name", nargs="?", default=None),
      arg("--filter", default=None, help="only these subjects: 'orders.eu.>' or 'a.*,b.*' (server 2.10+)"),
      arg("--ack", default="explicit", help="explicit, none or all"),
      arg("--deliver", default="all", help="all, new, last or last-per-subject"),
      arg("--start-seq", type=int, default=None, help="start at this sequence"),
      arg("--start-time", default=None, help="start at this time: ISO or ago (1h)"),
      arg("--durable", action="store_true", help="keep it, and its position, until removed"),
      arg("--ack-wait", default=None, help="redeliver an unacked message after this (30s)"),
      arg("--max-deliver", type=int, default=None, help="give up on a message after N deliveries"),
      arg("--inactive", default=None, help="an ephemeral consumer goes away after this long unused (1h)"))
def _consumer_add(a, ctx):
    return js.add_consumer(a.stream, a.name, filter=a.filter, ack=a.ack, deliver=a.deliver, durable=a.durable,
                           start_seq=a.start_seq, start_time=a.start_time, ack_wait=a.ack_wait,
                           max_deliver=a.max_deliver, inactive=a.inactive)


@verb("consumer info", "a consumer's configuration and state", arg("stream"), arg("name"))
def _consumer_info(a, ctx):
    return js.consumer_info(a.stream, a.name)


@verb("consumer next", "fetch the next messages from a pull consumer: a frame, acked; with --no-ack a batch to answer",
      arg("stream"), arg("name"), arg("--count", type=int, default=1),
      arg("--no-ack", action="store_true",
          help="acknowledge nothing: returns a batch; b.ack() (or each msg.ack()) after processing"),
      arg("--timeout", default="2s", help="wait this long when nothing is ready (2s)"))
def _consumer_next(a, ctx):
    if a.no_ack:
        got = consume.fetch(a.stream, a.name, count=a.count, timeout=a.timeout)
    else:
        got = consume.next(a.stream, a.name, count=a.count, ack=True, timeout=a.timeout)
    note = got.note if a.no_ack else got.attrs.get("note")
    if note:
        print(f"nbnats: {note}")
    elif not len(got):
        print(f"no message for consumer {a.name} within {units.seconds(a.timeout, 'timeout'):g} s")
    return got


@verb("consume", "run a notebook function on every message in the background; ack after it returns",
      arg("stream"), arg("name"), arg("handler", help="the name of a notebook function taking the message"),
      arg("--batch", type=int, default=100, help="messages pulled at a time (100)"),
      arg("--max-handler-time", default="5m", help="nak a message whose handler runs longer (5m)"))
def _consume(a, ctx):
    ns = getattr(ctx.shell, "user_ns", None) or {}
    if a.handler not in ns:
        raise MagicUsageError(f"there is no notebook variable {a.handler!r}",
                              f"define the handler first, e.g. def {a.handler}(msg): ..., then run the line again")
    if not callable(ns[a.handler]):
        raise MagicUsageError(f"{a.handler!r} is a {type(ns[a.handler]).__name__}, not a function",
                              "name a function that takes the message")
    return worker.consume(a.stream, a.name, ns[a.handler], batch=a.batch, max_handler_time=a.max_handler_time)


@verb("consumer rm", "remove a consumer (the messages stay)", arg("stream"), arg("name"))
def _consumer_rm(a, ctx):
    js.delete_consumer(a.stream, a.name)
    print(f"removed consumer {a.name} from {a.stream}")
