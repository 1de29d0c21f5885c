"""KV buckets as streams: their configuration, opening and creating, listing and removing.

A bucket ``b`` is the stream ``KV_b`` storing ``$KV.b.>``, configured field
for field as nats-py's ``create_key_value`` makes it, so nats.go, natscli
and the JavaScript client see the same bucket. Every call is one
``$JS.API`` request through :mod:`nbnats.engine.api`.

>>> stream_config("sessions", history=5)["max_msgs_per_subject"]
5
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data import units, validate
from nbnats.engine import api
from nbnats.errors import JetStreamError, NotFound, ValidationError
from nbnats.jetstream.display import listing
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current

WAIT = 10.0                         # seconds for one JetStream round
DUPLICATE_WINDOW = 120.0            # seconds, as nats-py and nats.go: the bucket ttl when shorter


def stream_config(bucket: str, *, history: int = 1, ttl: float | None = None, replicas: int = 1,
                  max_value_size: int | None = None, max_bytes: int | None = None, storage: str | None = None,
                  description: str | None = None, direct: bool = True, msg_ttl: bool = True) -> dict:
    """The stream configuration of a bucket, field for field what nats-py's ``create_key_value`` sends.

    >>> c = stream_config("s", history=5, ttl=60)
    >>> c["name"], c["subjects"], c["max_msgs_per_subject"], c["discard"], c["duplicate_window"]
    ('KV_s', ['$KV.s.>'], 5, 'new', 60000000000)
    """
    window = min(DUPLICATE_WINDOW, ttl) if ttl else DUPLICATE_WINDOW
    config: dict[str, Any] = {
        "name": f"KV_{bucket}", "subjects": [f"$KV.{bucket}.>"], "max_consumers": -1, "max_msgs": -1,
        "discard": "new", "discard_new_per_subject": False, "max_msgs_per_subject": history,
        "num_replicas": replicas, "no_ack": False, "duplicate_window": units.nanos(window, "duplicate window"),
        "sealed": False, "deny_delete": True, "deny_purge": False, "allow_rollup_hdrs": True,
        "allow_direct": direct, "max_age": units.nanos(ttl, "ttl") or 0,
    }
    if msg_ttl:
        config["allow_msg_ttl"] = True
    optional = {"description": description, "max_msg_size": max_value_size, "max_bytes": max_bytes,
                "storage": storage}
    config.update({k: v for k, v in optional.items() if v is not None})
    return config


async def stream_info(conn: Connection, bucket: str) -> dict | None:
    """The bucket's stream info (a dict), or None when there is no such bucket (loop thread).

    >>> (await stream_info(conn, "sessions"))["config"]["max_msgs_per_subject"]   # doctest: +SKIP
    5
    """
    stream = f"KV_{bucket}"
    try:
        return await api.request(conn, f"STREAM.INFO.{stream}", what=f"reading KV bucket {bucket!r}", stream=stream)
    except NotFound:
        return None


async def open_bucket(conn: Connection, bucket: str, create: bool = False, settings: dict | None = None,
                      check: bool = True) -> dict:
    """Open (or with ``create``, make) a bucket; returns its stream info (loop thread).

    ``settings`` are :func:`kv`'s (history, ttl in seconds, …); with ``check``
    an existing bucket whose settings differ is refused.

    >>> info = await open_bucket(conn, "schemas", create=True, settings={"history": 10}, check=False)   # doctest: +SKIP
    """
    settings = settings or {}
    info = await stream_info(conn, bucket)
    if info is None and create:
        msg_ttl = api.server_version(conn)[:2] >= (2, 11)
        config = stream_config(bucket, msg_ttl=msg_ttl, **settings)
        try:
            info = await api.request(conn, f"STREAM.CREATE.KV_{bucket}", config, stream=f"KV_{bucket}",
                                     what=f"creating KV bucket {bucket!r}")
        except JetStreamError:
            info = await stream_info(conn, bucket)     # made meanwhile by another client?
            if info is None:
                raise
    if info is None:
        raise NotFound(f"KV bucket {bucket!r} does not exist", f"create it with nbnats.kv({bucket!r}, create=True)")
    if (info["config"].get("max_msgs_per_subject") or 0) < 1:
        raise JetStreamError(f"stream KV_{bucket} exists but is not a KV bucket", "pick another bucket name")
    if check:
        _check_same(bucket, info["config"], settings)
    return info


def _settings_of(c: dict) -> dict:
    positive = lambda v: v if v and v > 0 else None     # noqa: E731  (-1 and 0 mean "no limit")
    return {"history": c.get("max_msgs_per_subject"), "ttl": (c.get("max_age") or 0) / 1e9 or None,
            "replicas": c.get("num_replicas"), "max_value_size": positive(c.get("max_msg_size")),
            "max_bytes": positive(c.get("max_bytes")), "storage": c.get("storage", "file"),
            "description": c.get("description"), "direct": bool(c.get("allow_direct"))}


def _check_same(bucket: str, config: dict, given: dict) -> None:
    have = _settings_of(config)
    for k, want in given.items():
        got = have[k]
        if not (abs((got or 0) - want) < 1e-6 if k == "ttl" else got == want):
            raise JetStreamError(f"KV bucket {bucket!r} already exists with {k}={got!r}, not {want!r}",
                                 f"open it without settings, nbnats.kv({bucket!r}), or remove it first "
                                 f"with nbnats.delete_bucket({bucket!r})")


def bucket_row(info: dict) -> dict:
    """One row of :func:`buckets` from a bucket's stream info.

    >>> bucket_row({"config": {"name": "KV_s", "max_msgs_per_subject": 3}, "state": {}})["history"]
    3
    """
    c, s = info["config"], info.get("state") or {}
    have = _settings_of(c)
    name = c["name"]
    return {"bucket": name[3:] if name.startswith("KV_") else name, "values": s.get("messages", 0),
            "bytes": s.get("bytes", 0), "history": have["history"],
            "ttl": pd.Timedelta(seconds=have["ttl"]) if have["ttl"] else pd.NaT,
            "replicas": have["replicas"], "storage": have["storage"], "max_value_size": have["max_value_size"],
            "direct": have["direct"], "description": have["description"],
            "created": pd.Timestamp(info["created"]) if info.get("created") else pd.NaT}


def kv(bucket: str, create: bool = False, *, history: int | None = None, ttl: Any = None,
       replicas: int | None = None, max_value_size: Any = None, max_bytes: Any = None,
       storage: str | None = None, description: str | None = None, direct: bool | None = None,
       connection: str | None = None):
    """Open a key-value bucket, a :class:`~nbnats.kv.bucket.KV` (``create=True`` makes it if missing).

    ``history`` revisions kept per key (1–64); ``ttl`` before values expire
    (seconds, a timedelta, or text like ``"1h"``); ``replicas`` copies in a
    cluster; ``max_value_size``/``max_bytes`` limits (bytes or ``"1MB"``);
    ``storage`` "file" or "memory"; ``direct`` (default True) lets every
    replica answer reads. Opening an existing bucket with settings that
    differ from its own is refused.

    >>> kv = nbnats.kv("sessions", create=True, ttl="30m", history=5)   # doctest: +SKIP
    >>> kv = nbnats.kv("sessions")                                      # doctest: +SKIP
    """
    validate.bucket(bucket)
    given = dict(history=history, ttl=units.seconds(ttl, "ttl"), replicas=replicas,
                 max_value_size=units.size(max_value_size, "max_value_size"),
                 max_bytes=units.size(max_bytes, "max_bytes"), storage=storage, description=description,
                 direct=direct)
    given = {k: v for k, v in given.items() if v is not None}
    if "history" in given and not (isinstance(history, int) and 1 <= history <= 64):
        raise ValidationError(f"history must be between 1 and 64 revisions, not {history!r}", "pass e.g. history=5")
    if "replicas" in given and not (isinstance(replicas, int) and 1 <= replicas <= 5):
        raise ValidationError(f"replicas must be between 1 and 5, not {replicas!r}", "pass e.g. replicas=3")
    if "storage" in given and storage not in ("file", "memory"):
        raise ValidationError(f"storage must be 'file' or 'memory', not {storage!r}", "pass storage='file'")
    conn = current(connection)
    info = loop.run(open_bucket(conn, bucket, create, given), WAIT + 2, f"opening KV bucket {bucket!r}")
    from nbnats.kv.bucket import KV      # the bucket module builds on this one
    return KV(bucket, info, conn.name)


def buckets(connection: str | None = None) -> pd.DataFrame:
    """Every KV bucket: bucket, values, bytes, history, ttl, replicas, storage, direct, created.

    >>> nbnats.buckets()   # doctest: +SKIP
    """
    conn = current(connection)
    found = loop.run(api.paged(conn, "STREAM.LIST", "streams", what="listing KV buckets"), 30, "listing KV buckets")
    rows = [bucket_row(si) for si in sorted(found, key=lambda si: si["config"]["name"])
            if si["config"]["name"].startswith("KV_")]
    return listing(rows, ["bucket", "values", "bytes", "history", "ttl", "replicas", "storage",
                          "max_value_size", "direct", "description", "created"])


def delete_bucket(bucket: str, connection: str | None = None) -> None:
    """Remove a KV bucket and everything in it.

    >>> nbnats.delete_bucket("sessions")   # doctest: +SKIP
    """
    validate.bucket(bucket)
    conn = current(connection)

    async def go():
        try:
            await api.request(conn, f"STREAM.DELETE.KV_{bucket}", what=f"removing KV bucket {bucket!r}",
                              stream=f"KV_{bucket}")
        except NotFound:
            raise NotFound(f"KV bucket {bucket!r} does not exist", "list buckets with nbnats.buckets()") from None

    loop.run(go(), WAIT + 2, f"removing KV bucket {bucket!r}")


__all__ = ["bucket_row", "buckets", "kv", "delete_bucket", "open_bucket", "stream_config", "stream_info"]
