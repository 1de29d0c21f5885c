"""natscli's stream and consumer verbs, and ``%nats lag``: thin faces over the Python calls.

>>> %nats stream report                             # doctest: +SKIP
>>> %nats stream copy ORDERS ARCHIVE --with-data --subjects 'archive.>'   # doctest: +SKIP
>>> %nats consumer pause ORDERS billing --until 10m  # doctest: +SKIP
>>> lag = %nats lag ORDERS --every 5s               # doctest: +SKIP
"""

from __future__ import annotations

from IPython.display import display

from nbnats.jetstream import consumer_ops, lag, stream_ops
from nbnats.magics.registry import MagicUsageError, arg, verb


def _notebook_function(ctx, name: str | None):
    if name is None:
        return None
    ns = getattr(ctx.shell, "user_ns", None) or {}
    if name not in ns:
        raise MagicUsageError(f"there is no notebook variable {name!r}",
                              f"define the function first, e.g. def {name}(msg): return msg, then run the line again")
    if not callable(ns[name]):
        raise MagicUsageError(f"{name!r} is a {type(ns[name]).__name__}, not a function",
                              "name a function that takes the message")
    return ns[name]


# -- stream ------------------------------------------------------------------------------------------
@verb("stream report", "every stream: messages, bytes, consumers, replicas, leader, lagging peers",
      arg("--subject", default=None, help="only streams storing this subject"),
      arg("--sort", default="name", choices=stream_ops.REPORT_SORTS, help="name, messages, bytes, consumers or storage"))
def _stream_report(a, ctx):
    return stream_ops.stream_report(a.subject, sort=a.sort)


@verb("stream subjects", "the subjects a stream holds, and how many messages each",
      arg("stream"), arg("filter", nargs="?", default=None, help="only subjects matching this (wildcards)"),
      arg("--sort", default="messages", choices=stream_ops.SUBJECT_SORTS, help="messages (most first) or subject"))
def _stream_subjects(a, ctx):
    return stream_ops.stream_subjects(a.stream, a.filter, sort=a.sort)


@verb("stream find", "which streams store a subject",
      arg("--subject", required=True, help="the subject (wildcards allowed)"))
def _stream_find(a, ctx):
    return stream_ops.find_streams(a.subject)


@verb("stream rmm", "remove one message by its sequence (its data is erased on disk too)",
      arg("stream"), arg("seq", type=int),
      arg("--no-erase", action="store_true", help="only mark it deleted, do not overwrite its data"))
def _stream_rmm(a, ctx):
    return stream_ops.delete_message(a.stream, a.seq, erase=not a.no_erase)


@verb("stream copy", "a new stream with another's configuration; --with-data copies its messages too",
      arg("source"), arg("destination"),
      arg("--with-data", action="store_true", help="copy every message too, keeping subjects and headers"),
      arg("--subjects", default=None, help="subjects the copy stores ('copy.>'); the source keeps its own"),
      arg("--transform", default=None, metavar="FUNCTION",
          help="a notebook function applied to each message: return it, a new payload, or None to skip it"))
def _stream_copy(a, ctx):
    return stream_ops.copy_stream(a.source, a.destination, with_data=a.with_data, subjects=a.subjects,
                                  transform=_notebook_function(ctx, a.transform))


@verb("stream seal", "seal a stream: no more messages, deletes or changes, ever", arg("stream"))
def _stream_seal(a, ctx):
    return stream_ops.seal_stream(a.stream)


@verb("stream gaps", "the ranges of deleted messages inside a stream", arg("stream"))
def _stream_gaps(a, ctx):
    gaps = stream_ops.stream_gaps(a.stream)
    if gaps.empty:
        print(f"no deleted messages in {a.stream}")
    return gaps


@verb("stream backup", "write a stream's configuration and messages to a directory",
      arg("stream"), arg("directory"),
      arg("--overwrite", action="store_true", help="replace a backup already in the directory"))
def _stream_backup(a, ctx):
    return stream_ops.backup_stream(a.stream, a.directory, overwrite=a.overwrite)


@verb("stream restore", "recreate a stream from a backup directory (an existing stream is left alone)",
      arg("directory"), arg("--name", default=None, help="restore under another name"),
      arg("--replicas", type=int, default=None, help="copies kept in a cluster"))
def _stream_restore(a, ctx):
    return stream_ops.restore_stream(a.directory, name=a.name, replicas=a.replicas)


@verb("stream state", "a stream's state: messages, bytes, sequences, deleted, subjects, consumers", arg("stream"))
def _stream_state(a, ctx):
    return stream_ops.stream_state(a.stream)


# -- consumer --------------------------------------------------------------------------------------------
@verb("consumer edit", "change a consumer's settings (the others stay as they are)",
      arg("stream"), arg("name"),
      arg("--ack-wait", default=None, help="redeliver an unacked message after this (30s)"),
      arg("--max-deliver", type=int, default=None, help="give up on a message after N deliveries"),
      arg("--max-ack-pending", type=int, default=None, help="messages delivered and not yet acked, at most"),
      arg("--filter", default=None, help="only these subjects: 'orders.eu.>' or 'a.*,b.*'"),
      arg("--inactive", default=None, help="an ephemeral consumer goes away after this long unused (1h)"),
      arg("--backoff", default=None, help="redelivery delays, e.g. 1s,5s,30s"),
      arg("--description", default=None))
def _consumer_edit(a, ctx):
    changes = {k: getattr(a, k) for k in ("ack_wait", "max_deliver", "max_ack_pending", "inactive", "description")
               if getattr(a, k) is not None}
    if a.filter is not None:
        changes["filter"] = a.filter
    if a.backoff is not None:
        changes["backoff"] = [b.strip() for b in a.backoff.split(",") if b.strip()]
    if not changes:
        raise MagicUsageError(f"%nats consumer edit {a.stream} {a.name} changes nothing",
                              "pass the settings to change, e.g. --ack-wait 1m")
    return consumer_ops.edit_consumer(a.stream, a.name, **changes)


@verb("consumer report", "per consumer: pending, ack pending, redelivered, waiting, last delivered/acked, paused",
      arg("stream"))
def _consumer_report(a, ctx):
    return consumer_ops.consumer_report(a.stream)


@verb("consumer pause", "stop a consumer delivering until a time (or for a while)",
      arg("stream"), arg("name"),
      arg("--until", required=True, help="a duration from now (10m, 2h) or a time (2026-12-24T18:00Z)"))
def _consumer_pause(a, ctx):
    return consumer_ops.pause_consumer(a.stream, a.name, a.until)


@verb("consumer resume", "let a paused consumer deliver again", arg("stream"), arg("name"))
def _consumer_resume(a, ctx):
    return consumer_ops.resume_consumer(a.stream, a.name)


@verb("consumer unpin", "unpin the client pinned to a priority group", arg("stream"), arg("name"), arg("group"))
def _consumer_unpin(a, ctx):
    return consumer_ops.unpin_consumer(a.stream, a.name, a.group)


@verb("consumer reset", "deliver again from a sequence (default: just after the ack floor)",
      arg("stream"), arg("name"), arg("--seq", "--sequence", dest="seq", type=int, default=None,
                                      help="the sequence to deliver next"))
def _consumer_reset(a, ctx):
    info = consumer_ops.reset_consumer(a.stream, a.name, seq=a.seq)
    print(f"consumer {a.name}: {info['reset']}; it delivers seq {info.get('reset_seq')} next")
    return info


@verb("consumer graph", "a live chart of a consumer's pending and ack pending",
      arg("stream"), arg("name"), arg("--every", default="1s", help="sample this often (1s)"))
def _consumer_graph(a, ctx):
    return consumer_ops.consumer_graph(a.stream, a.name, every=a.every)


@verb("consumer sub", "tail what a consumer delivers, acking each message once recorded",
      arg("stream"), arg("name"),
      arg("--no-ack", action="store_true", help="do not acknowledge (the server delivers them again)"),
      arg("--count", type=int, default=None, help="stop after N messages"),
      arg("--limit", type=int, default=10_000, help="rows kept (older ones are dropped)"),
      arg("--no-widget", action="store_true", help="do not show the live view"))
def _consumer_sub(a, ctx):
    t = consumer_ops.consumer_tail(a.stream, a.name, ack=not a.no_ack, count=a.count, limit=a.limit)
    if not a.no_widget:
        display(t.widget)
    return t


@verb("lag", "record consumer lag (pending, ack pending) over time in the background",
      arg("stream"), arg("consumer", nargs="?", default=None, help="one consumer (default: every one)"),
      arg("--every", default="5s", help="sample this often (5s)"))
def _lag(a, ctx):
    return lag.lag(a.stream, a.consumer, every=a.every)
