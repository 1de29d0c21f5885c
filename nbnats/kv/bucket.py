"""Key-value buckets: values with revisions, compare-and-set, history, watches and an editor.

A bucket is a JetStream stream (``KV_<bucket>``, configured exactly as
nats-py, nats.go and natscli make it) with one subject per key
(``$KV.<bucket>.<key>``); every write is a new *revision* (the stream
sequence). Everything goes through :mod:`nbnats.engine`. Values and frames:
see :mod:`nbnats.kv.frame`; the bucket's stream, listing and removal:
:mod:`nbnats.kv.manage`.

>>> kv = nbnats.kv("sessions", create=True, ttl="1h")   # doctest: +SKIP
>>> rev = kv.put("user.123", {"name": "ada"})           # doctest: +SKIP
>>> kv.get("user.123").value                            # doctest: +SKIP
{'name': 'ada'}
>>> kv.update("user.123", {"name": "ada", "cart": 2}, last=rev)   # doctest: +SKIP
"""

from __future__ import annotations

import html
import time
from typing import Any

import pandas as pd

from nbnats.data import units, validate
from nbnats.data.payload import encode
from nbnats.engine import api
from nbnats.engine.get import get as get_stored
from nbnats.engine.ordered import read_all
from nbnats.engine.publish import publish, ttl_value
from nbnats.errors import Conflict, JetStreamError, KeyDeleted, NotFound, PayloadTooLarge, ValidationError
from nbnats.kv.frame import KV_OP, Entry, decode_value, info_table, kv_frame, operation  # noqa: F401
from nbnats.kv.manage import WAIT, bucket_row, buckets, delete_bucket, kv, stream_info  # noqa: F401
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current

TTL_HEADER = "Nats-TTL"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
ROLLUP = "Nats-Rollup"


# -- the bucket -------------------------------------------------------------------
class KV:
    """A key-value bucket; see :func:`kv`.

    ``put``/``create``/``update`` write and return the new revision; ``get``
    returns an :class:`~nbnats.kv.frame.Entry`; ``keys``, ``history``,
    ``to_frame`` read; ``watch`` follows changes live; ``editor()`` is the
    interactive view. The ``read_*`` coroutines are the same reads for code
    on the nbnats loop.

    >>> kv = nbnats.kv("sessions")   # doctest: +SKIP
    """

    def __init__(self, bucket: str, info: dict, connection: str | None = None):
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.connection = connection
        self.config: dict = info["config"]

    @property
    def conn(self) -> Connection:
        """The live connection this bucket is read and written through."""
        return current(self.connection)

    @property
    def direct(self) -> bool:
        """True when reads use JetStream direct get (the bucket allows it)."""
        return bool(self.config.get("allow_direct"))

    @property
    def history_depth(self) -> int:
        """How many revisions of each key the bucket keeps."""
        return int(self.config.get("max_msgs_per_subject") or 1)

    @property
    def per_key_ttl(self) -> bool:
        """True when the bucket accepts ``put(key, value, ttl=…)`` (its stream allows message TTLs)."""
        return bool(self.config.get("allow_msg_ttl"))

    def _no_bucket(self) -> NotFound:
        return NotFound(f"KV bucket {self.bucket!r} does not exist (any more)",
                        f"create it again with nbnats.kv({self.bucket!r}, create=True)")

    def _run(self, coro, what: str, timeout: float = WAIT + 2):
        return loop.run(coro, timeout, what)

    # -- the loop-thread reads and writes everything else is made of
    async def read_entry(self, key: str, revision: int | None = None) -> Entry | None:
        """The newest message of ``key`` (delete markers included), or revision ``revision``; None if none.

        >>> await kv.read_entry("user.123")   # doctest: +SKIP
        <Entry sessions/user.123 rev 4: {"name":"ada"}>
        """
        subject = self.prefix + key
        conn = self.conn
        try:
            if revision is None:
                got = await get_stored(conn, self.stream, last_for=subject, direct=self.direct)
            else:
                got = await get_stored(conn, self.stream, seq=revision, direct=self.direct)
        except NotFound:
            if await stream_info(conn, self.bucket) is None:
                raise self._no_bucket() from None
            return None
        if got.subject != subject:
            return None
        return Entry(self.bucket, key, got.data, got.seq, got.time_ns, operation(got.headers))

    async def read_rows(self, pattern: str = ">", deliver: str = "last_per_subject",
                        headers_only: bool = False) -> list[tuple]:
        """(key, revision, time_ns, data, headers) rows of the keys matching ``pattern`` (loop thread).

        ``deliver="last_per_subject"``: each key's newest message; ``"all"``: every kept revision.

        >>> rows = await kv.read_rows("user.>")   # doctest: +SKIP
        """
        try:
            rows = await read_all(self.conn, self.stream, [self.prefix + pattern], deliver=deliver,
                                  headers_only=headers_only)
        except NotFound:
            raise self._no_bucket() from None
        n = len(self.prefix)
        return [(s[n:], seq, ts, data, h) for s, seq, ts, data, h in rows]

    async def write(self, key: str, data: bytes, headers: dict | None = None, ttl: float | None = None) -> int:
        """Store ``data`` under ``key`` with KV ``headers``; returns the revision (loop thread).

        A lost compare-and-set raises :class:`~nbnats.Conflict` (engine-worded).

        >>> await kv.write("user.1", b"{}", {"Nats-Expected-Last-Subject-Sequence": "0"})   # doctest: +SKIP
        9
        """
        if ttl is not None:
            headers = {**(headers or {}), TTL_HEADER: ttl_value(ttl)}
        # the server counts the KV headers (compare-and-set, operation, TTL) against max_payload too
        validate.payload_size(len(data), self.conn.max_payload, f"{self.bucket}/{key}", headers or None)
        try:
            ack = await publish(self.conn, self.prefix + key, data, headers=headers or None, timeout=WAIT,
                                stream=self.stream)
        except NotFound:
            raise self._no_bucket() from None
        return int(ack["seq"])

    # -- plumbing of the writes
    def _value_bytes(self, key: str, value: Any) -> bytes:
        data = encode(value)
        validate.payload_size(len(data), self.conn.max_payload, f"{self.bucket}/{key}")
        limit = self.config.get("max_msg_size")
        if limit and limit > 0 and len(data) > limit:
            raise PayloadTooLarge(f"the value for {key!r} is {len(data):,} bytes, over bucket {self.bucket!r}'s "
                                  f"max value size of {limit:,} bytes",
                                  "store large data in the object store (nbnats.objects)")
        return data

    def _ttl(self, ttl: Any) -> float | None:
        ttl = units.seconds(ttl, "ttl")
        if ttl is None:
            return None
        if ttl < 1:
            raise ValidationError(f"a key's ttl must be at least 1 second, not {ttl:g} s", "pass ttl=1 or more")
        api.needs(self.conn, (2, 11), "a per-key ttl")
        if not self.per_key_ttl:
            raise JetStreamError(f"KV bucket {self.bucket!r} does not allow per-key TTLs (its stream was made "
                                 "without allow_msg_ttl)", "give the bucket a ttl instead, or make the bucket "
                                 f"again with nbnats.kv({self.bucket!r}, create=True) on nats-server 2.11+")
        return ttl

    async def _cas(self, key: str, data: bytes, headers: dict, last: int, ttl: float | None = None) -> int:
        try:
            return await self.write(key, data, {**headers, EXPECTED_LAST: str(last)}, ttl)
        except Conflict:
            raise self._conflict(key, last, await self.read_entry(key)) from None

    def _conflict(self, key: str, last: int, now: Entry | None) -> Conflict:
        if last == 0 and now is not None and not now.deleted:
            err = Conflict(f"key {key!r} already exists in bucket {self.bucket!r} (revision {now.revision})",
                           f"overwrite it with kv.put, or kv.update({key!r}, value, last={now.revision})")
        elif now is None:
            err = Conflict(f"key {key!r} changed since revision {last}: it no longer exists",
                           f"create it with kv.create({key!r}, value)")
        else:
            state = f"deleted at revision {now.revision}" if now.deleted else f"now at revision {now.revision}"
            err = Conflict(f"key {key!r} changed since revision {last}: it is {state}",
                           f"read it again with kv.get({key!r}), merge, then update with last={now.revision}")
        err.current = now
        return err

    # -- writing
    def put(self, key: str, value: Any, ttl: Any = None) -> int:
        """Store ``value`` under ``key``; returns the new revision.

        ``ttl`` (seconds, a timedelta or text like ``"2s"``; at least 1 s)
        expires just this revision (nats-server 2.11+, buckets that allow it).

        >>> kv.put("user.123", {"name": "ada"}, ttl="1h")   # doctest: +SKIP
        1
        """
        validate.key(key)
        data = self._value_bytes(key, value)
        return self._run(self.write(key, data, None, self._ttl(ttl)), f"putting {key!r} into {self.bucket!r}")

    def create(self, key: str, value: Any, ttl: Any = None) -> int:
        """Store ``value`` only if ``key`` does not exist (a deleted key counts as absent).

        Raises :class:`~nbnats.Conflict` when it exists.

        >>> kv.create("lock.job1", "owner-a")   # doctest: +SKIP
        7
        """
        validate.key(key)
        data, ttl = self._value_bytes(key, value), self._ttl(ttl)

        async def go():
            now = await self.read_entry(key)
            last = now.revision if now is not None and now.deleted else 0
            try:
                return await self.write(key, data, {EXPECTED_LAST: str(last)}, ttl)
            except Conflict:
                raise self._conflict(key, 0, await self.read_entry(key)) from None

        return self._run(go(), f"creating {key!r} in {self.bucket!r}")

    def update(self, key: str, value: Any, last: int) -> int:
        """Compare-and-set: store ``value`` only if ``key`` is still at revision ``last``.

        Raises :class:`~nbnats.Conflict` (with ``.current``, the newer entry)
        when someone else wrote the key in between; nothing is written.

        >>> e = kv.get("user.123")                                    # doctest: +SKIP
        >>> kv.update("user.123", {**e.value, "cart": 3}, last=e.revision)   # doctest: +SKIP
        """
        validate.key(key)
        if isinstance(last, bool) or not isinstance(last, int) or last < 0:
            raise ValidationError(f"last must be a revision number, not {last!r}",
                                  "pass the revision you read, e.g. last=kv.get(key).revision")
        data = self._value_bytes(key, value)
        return self._run(self._cas(key, data, {}, last), f"updating {key!r} in {self.bucket!r}")

    def delete(self, key: str, last: int | None = None) -> int:
        """Delete ``key`` (its history stays until purged); returns the delete marker's revision.

        With ``last``, only if the key is still at that revision. A key that
        does not exist, or is already deleted, raises and writes nothing.

        >>> kv.delete("user.123")   # doctest: +SKIP
        4
        """
        validate.key(key)

        async def go():
            now = await self.read_entry(key)
            if now is None or now.deleted:
                raise self.missing(key, now)
            if last is None:
                return await self.write(key, b"", {KV_OP: "DEL"})
            return await self._cas(key, b"", {KV_OP: "DEL"}, last)

        return self._run(go(), f"deleting {key!r} from {self.bucket!r}")

    def purge(self, key: str) -> int:
        """Remove ``key`` and all its revisions, leaving one PURGE marker; returns its revision.

        >>> kv.purge("user.123")   # doctest: +SKIP
        5
        """
        validate.key(key)

        async def go():
            if await self.read_entry(key) is None:
                raise self.missing(key, None)
            return await self.write(key, b"", {KV_OP: "PURGE", ROLLUP: "sub"})

        return self._run(go(), f"purging {key!r} from {self.bucket!r}")

    def revert(self, key: str, revision: int, last: int | None = None) -> int:
        """Make revision ``revision`` of ``key`` current again; returns the new revision.

        Written with compare-and-set against the current revision (or
        ``last``). A revision the bucket no longer keeps raises NotFound.

        >>> kv.revert("user.123", 2)   # doctest: +SKIP
        6
        """
        validate.key(key)
        _revision_number(revision, key)

        async def go():
            old = await self.read_entry(key, revision)
            if old is None:
                raise self._gone(key, revision)
            now = await self.read_entry(key)
            expect = last if last is not None else (now.revision if now is not None else 0)
            if now is not None and now.revision == revision and expect == revision:
                return revision
            if old.deleted:
                return await self._cas(key, b"", {KV_OP: "DEL"}, expect)
            return await self._cas(key, old.raw, {}, expect)

        return self._run(go(), f"reverting {key!r} to revision {revision}")

    # -- reading
    def missing(self, key: str, now: Entry | None) -> NotFound:
        """The error for a key that holds no value: KeyDeleted (with ``.entry``) or NotFound.

        >>> kv.missing("user.9", None).what   # doctest: +SKIP
        "key 'user.9' does not exist in bucket 'sessions'"
        """
        if now is not None and now.deleted:
            verb = "purged" if now.operation == "PURGE" else "deleted"
            when = now.created.strftime("%Y-%m-%d %H:%M:%S UTC") if now.created is not None else "?"
            err = KeyDeleted(f"key {key!r} in bucket {self.bucket!r} was {verb} at revision {now.revision} "
                             f"({when})", f"put it again to restore it; kv.history({key!r}) shows what it was")
            err.entry = now
            return err
        return NotFound(f"key {key!r} does not exist in bucket {self.bucket!r}",
                        "check the spelling; kv.keys() lists the keys")

    def _gone(self, key: str, revision: int) -> NotFound:
        return NotFound(f"revision {revision} of key {key!r} is not in bucket {self.bucket!r} "
                        f"(never written for this key, or gone: the bucket keeps {self.history_depth} "
                        f"revision(s) a key)", f"pick a revision from kv.history({key!r})")

    def entry(self, key: str) -> Entry:
        """The newest entry of ``key``, a delete marker included; NotFound when never written.

        >>> kv.entry("user.123").operation   # doctest: +SKIP
        'DEL'
        """
        validate.key(key)
        found = self._run(self.read_entry(key), f"getting {key!r} from {self.bucket!r}")
        if found is None:
            raise self.missing(key, None)
        return found

    def get(self, key: str, revision: int | None = None) -> Entry:
        """The current entry of ``key`` (or revision ``revision`` of it).

        A key never written raises :class:`~nbnats.NotFound`; a deleted or
        purged one :class:`~nbnats.KeyDeleted` (with ``.entry``, the marker).

        >>> kv.get("user.123").value                   # doctest: +SKIP
        {'name': 'ada'}
        """
        validate.key(key)
        if revision is not None:
            _revision_number(revision, key)
        found = self._run(self.read_entry(key, revision), f"getting {key!r} from {self.bucket!r}")
        if found is None:
            raise self._gone(key, revision) if revision is not None else self.missing(key, None)
        if found.deleted:
            raise self.missing(key, found)
        return found

    def __contains__(self, key: str) -> bool:
        try:
            self.get(key)
        except NotFound:
            return False
        return True

    def keys(self, pattern: str = ">") -> list[str]:
        """The keys that hold a value (deleted ones left out), sorted; ``pattern`` may use ``*`` / ``>``.

        >>> kv.keys("user.*")     # doctest: +SKIP
        ['user.123', 'user.124']
        """
        validate.key(pattern, pattern=True)
        rows = self._run(self.read_rows(pattern, headers_only=True), f"listing the keys of {self.bucket!r}", 120)
        return sorted(r[0] for r in rows if operation(r[4]) == "PUT")

    def history(self, key: str) -> pd.DataFrame:
        """Every revision the bucket keeps of ``key`` (or of a ``*``/``>`` pattern), oldest first.

        >>> kv.history("user.123")[["revision", "operation", "value"]]   # doctest: +SKIP
        """
        validate.key(key, pattern=True)
        return self._run(self.read_history(key), f"reading the history of {key!r}", 120)

    async def read_history(self, key: str) -> pd.DataFrame:
        """:meth:`history` for code on the nbnats loop."""
        rows = await self.read_rows(key, deliver="all")
        if not rows:
            raise NotFound(f"key {key!r} has no history in bucket {self.bucket!r}",
                           "check the spelling; kv.keys() lists the keys")
        return kv_frame(rows)

    def to_frame(self, pattern: str = ">", deleted: bool = False) -> pd.DataFrame:
        """The bucket as it is now: one row per key, sorted by key (``deleted=True`` keeps tombstones).

        >>> kv.to_frame()[["key", "value", "revision"]]   # doctest: +SKIP
        """
        validate.key(pattern, pattern=True)
        rows = self._run(self.read_rows(pattern), f"reading bucket {self.bucket!r}", 300)
        return kv_frame(sorted((r for r in rows if deleted or operation(r[4]) == "PUT"), key=lambda r: r[0]))

    def watch(self, key: str = ">", updates_only: bool = False, history: bool = False,
              limit: int = 10_000, count: int | None = None):
        """Follow changes live in the background: ``w.df`` (a KV frame), ``w.latest()``, ``w.widget``.

        It starts with each key's current value (``history=True``: every kept
        revision; ``updates_only=True``: nothing old) and then receives every
        change. Memory is bounded by ``limit`` rows.

        >>> w = kv.watch("user.>")   # doctest: +SKIP
        """
        from nbnats.kv.watch import start_watch
        return start_watch(self, key, updates_only, history, limit, count)

    def editor(self, page_size: int = 50):
        """The interactive editor (ipywidgets): keys, values, edit, add, delete, history, revert.

        >>> kv.editor()   # doctest: +SKIP
        """
        from nbnats.widgets.kv_editor import KVEditor
        return KVEditor(self, page_size=page_size)

    # -- the bucket itself
    def compact(self, older_than: Any = "30m") -> pd.DataFrame:
        """Reclaim the space of deleted keys (natscli's ``kv compact``); returns the keys compacted.

        Each deleted or purged key loses the revisions it still keeps; its
        delete marker goes too when older than ``older_than`` (``"30m"``, as
        nats.go; ``0`` removes every marker), else it stays so watchers see
        the delete. Columns: key, operation, revision, created, marker_removed.

        >>> kv.compact()   # doctest: +SKIP
        """
        keep_younger = units.nanos(older_than, "older_than") or 0

        async def go():
            rows = await self.read_rows(">", headers_only=True)
            now = time.time_ns()
            done = []
            for key, revision, ts, _, headers in rows:
                op = operation(headers)
                if op == "PUT":
                    continue
                body: dict[str, Any] = {"filter": self.prefix + key}
                young = bool(keep_younger) and now - ts < keep_younger
                if young:
                    body["keep"] = 1
                await api.request(self.conn, f"STREAM.PURGE.{self.stream}", body, stream=self.stream,
                                  what=f"compacting {key!r} in bucket {self.bucket!r}")
                done.append((key, op, revision, ts, not young))
            return done

        done = self._run(go(), f"compacting bucket {self.bucket!r}", 300)
        df = pd.DataFrame({"key": pd.Series([d[0] for d in done], dtype=object),
                           "operation": pd.Series([d[1] for d in done], dtype=object),
                           "revision": pd.array([d[2] for d in done], dtype="Int64"),
                           "created": pd.to_datetime(pd.Series([d[3] for d in done], dtype="int64"), unit="ns",
                                                     utc=True),
                           "marker_removed": pd.Series([d[4] for d in done], dtype=bool)})
        return df.sort_values("key", ignore_index=True)

    def info(self) -> dict:
        """The bucket's settings and size: bucket, values, bytes, history, ttl, replicas, storage …

        >>> kv.info()["history"]   # doctest: +SKIP
        1
        """
        found = self._run(stream_info(self.conn, self.bucket), f"reading bucket {self.bucket!r}")
        if found is None:
            raise self._no_bucket()
        self.config = found["config"]
        return bucket_row(found)

    def __repr__(self) -> str:
        ttl = units.human_duration(self.config.get("max_age")).replace("forever", "none")
        return f"<nbnats.KV {self.bucket!r} history={self.history_depth} ttl={ttl}>"

    def _repr_html_(self) -> str:
        try:
            row = self.info()
        except NotFound as exc:
            return f"<div>{html.escape(repr(self))} — {html.escape(str(exc))}</div>"
        return info_table(f"KV bucket <b>{html.escape(self.bucket)}</b>", row)


def _revision_number(revision: Any, key: str) -> None:
    if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
        raise ValidationError(f"revision must be a positive number, not {revision!r}",
                              f"pick one from kv.history({key!r})")


__all__ = ["KV", "Entry", "kv", "buckets", "delete_bucket", "decode_value", "kv_frame", "operation"]
