"""``%nats kv …`` verbs: thin faces over :mod:`nbnats.kv`.

>>> %nats kv add sessions --ttl 30m --history 5    # doctest: +SKIP
>>> %nats kv put sessions user.123 {"name": "ada"}  # doctest: +SKIP
>>> %nats kv edit sessions                          # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd
from IPython.display import display

from nbnats.data import validate
from nbnats.errors import NatsError
from nbnats.kv import buckets, delete_bucket, kv as open_kv

from nbnats.magics.core import body_from, duration
from nbnats.magics.registry import arg, group, verb

group("kv", "key-value buckets: ls, add, rm, put, get, del, purge, history, watch, edit, dump, compact")

BUCKET = arg("bucket", help="the bucket name")
def _open(a, wildcards: bool = False):
    """The verb's bucket, opened only after its key arguments passed the server's rules (bad input first)."""
    for value in (getattr(a, "key", None), getattr(a, "pattern", None)):
        if value is not None:
            validate.key(value, pattern=wildcards or value is getattr(a, "pattern", None))
    return open_kv(a.bucket)


KEY = arg("key", help="the key, e.g. user.123 (letters, digits, - / _ = and . as separator)")


def _value(a, ctx):
    if ctx.cell is not None and a.value is not None:
        raise NatsError("the value is given twice (on the line and in the cell)", "keep one of them")
    text = ctx.cell.strip("\n") if ctx.cell is not None else a.value
    if text is None:
        raise NatsError("no value was given", "write it after the key, or put it in a %%nats cell body")
    return body_from(text)


@verb("kv ls", "list KV buckets, or the keys of one bucket", arg("bucket", nargs="?", default=None),
      arg("--pattern", default=">", help="with a bucket: only keys matching this, e.g. 'user.*'"))
def _ls(a, ctx):
    if a.bucket is None:
        return buckets()
    return pd.DataFrame({"key": _open(a).keys(a.pattern)})


@verb("kv add", "create a KV bucket (or open it if it exists with these settings)", BUCKET,
      arg("--history", type=int, default=None, help="revisions kept per key (1-64, default 1)"),
      arg("--ttl", type=duration, default=None, help="values expire after this long (30m, 1h, 7d)"),
      arg("--replicas", type=int, default=None, help="copies kept in a cluster"),
      arg("--max-value-size", default=None, help="largest value: bytes, or 64KB, 1MB"),
      arg("--max-bytes", default=None, help="bucket size limit: bytes, or 512MB, 1GB"),
      arg("--storage", choices=["file", "memory"], default=None),
      arg("--description", default=None))
def _add(a, ctx):
    return open_kv(a.bucket, create=True, history=a.history, ttl=a.ttl, replicas=a.replicas,
                   max_value_size=a.max_value_size, max_bytes=a.max_bytes, storage=a.storage,
                   description=a.description)


@verb("kv info", "a bucket's settings and size", BUCKET)
def _info(a, ctx):
    return _open(a)


@verb("kv rm", "remove a KV bucket and everything in it", BUCKET)
def _rm(a, ctx):
    delete_bucket(a.bucket)
    print(f"removed KV bucket {a.bucket!r}")


@verb("kv put", "store a value (the %%nats cell body may be the value); shows the revision", BUCKET, KEY,
      arg("value", nargs="?", default=None, help="JSON, a Python dict/list literal, or text"),
      arg("--ttl", type=duration, default=None, help="expire this revision after this long (server 2.11+)"),
      cell=True)
def _put(a, ctx):
    return _open(a).put(a.key, _value(a, ctx), ttl=a.ttl)


@verb("kv create", "store a value only if the key does not exist", BUCKET, KEY,
      arg("value", nargs="?", default=None), cell=True)
def _create(a, ctx):
    return _open(a).create(a.key, _value(a, ctx))


@verb("kv update", "compare-and-set: store VALUE only if KEY is still at REVISION", BUCKET, KEY,
      arg("value"), arg("revision", type=int))
def _update(a, ctx):
    return _open(a).update(a.key, body_from(a.value), last=a.revision)


@verb("kv get", "a key's value, revision and time", BUCKET, KEY,
      arg("--revision", type=int, default=None, help="an earlier revision of the key"))
def _get(a, ctx):
    return _open(a).get(a.key, revision=a.revision)


@verb("kv del", "delete a key (its history stays until purged)", BUCKET, KEY)
def _del(a, ctx):
    rev = _open(a).delete(a.key)
    print(f"deleted {a.key!r} (delete marker at revision {rev})")


@verb("kv purge", "remove a key and all its revisions", BUCKET, KEY)
def _purge(a, ctx):
    rev = _open(a).purge(a.key)
    print(f"purged {a.key!r} (purge marker at revision {rev})")


@verb("kv revert", "make an earlier revision of a key current again", BUCKET, KEY, arg("revision", type=int))
def _revert(a, ctx):
    return _open(a).revert(a.key, a.revision)


@verb("kv history", "every kept revision of a key, as a DataFrame", BUCKET, KEY)
def _history(a, ctx):
    return _open(a).history(a.key)


@verb("kv watch", "a live table of a bucket's changes (kept in the returned watch's .df)", BUCKET,
      arg("key", nargs="?", default=">", help="a key or pattern (default: every key)"),
      arg("--updates-only", action="store_true", help="skip the current values"),
      arg("--history", action="store_true", help="start with every kept revision"),
      arg("--limit", type=int, default=10_000, help="changes kept (older ones are dropped)"),
      arg("--no-widget", action="store_true", help="do not show the live table"))
def _watch(a, ctx):
    w = _open(a, wildcards=True).watch(a.key, updates_only=a.updates_only, history=a.history, limit=a.limit)
    if not a.no_widget:
        display(w.widget)
    return w


@verb("kv compact", "reclaim the space of deleted keys (their kept revisions, and markers older than --older-than)",
      BUCKET, arg("--older-than", default="30m", help="remove delete markers older than this (30m; 0: all)"))
def _compact(a, ctx):
    done = _open(a).compact(older_than=a.older_than)
    print(f"compacted {len(done)} deleted key(s) in {a.bucket!r}")
    return done


@verb("kv edit", "an editor: keys and values, edit in place, add, delete, history, revert; live",
      BUCKET, arg("--page-size", type=int, default=50, help="keys per page"))
def _edit(a, ctx):
    return _open(a).editor(page_size=a.page_size)


@verb("kv dump", "the bucket as a DataFrame: key, value, revision, created, operation", BUCKET,
      arg("pattern", nargs="?", default=">", help="only keys matching this, e.g. 'user.*'"),
      arg("--deleted", action="store_true", help="keep deleted keys (their delete markers)"))
def _dump(a, ctx):
    return _open(a).to_frame(a.pattern, deleted=a.deleted)
