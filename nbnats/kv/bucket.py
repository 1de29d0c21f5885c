"""Key-value buckets: values with revisions, compare-and-set, history, watches and an editor.

A bucket is a JetStream stream (``KV_<bucket>``) with one subject per key
(``$KV.<bucket>.<key>``); every write is a new *revision* (the stream
sequence). Values go in like payloads (dict/list → JSON, str → UTF-8, bytes
as they are) and come back decoded: a JSON object or array → dict/list,
other UTF-8 → str, anything else → bytes.

>>> kv = nbnats.kv("sessions", create=True, ttl=3600)   # doctest: +SKIP
>>> rev = kv.put("user.123", {"name": "ada"})           # doctest: +SKIP
>>> kv.get("user.123").value                            # doctest: +SKIP
{'name': 'ada'}
>>> kv.update("user.123", {"name": "ada", "cart": 2}, last=rev)   # doctest: +SKIP

Frames (``history``, ``to_frame``, a watch's ``df``) have ``key``, ``value``
(the decoded value; None for a delete), ``revision`` (Int64), ``created``
(UTC), ``operation`` (PUT, DEL, PURGE); a JSON-object value is also spread
into one column per key after those (nested keys joined with ``.``, a name
that collides with the five taken as ``value.<name>``), with
``decode_error`` when a value looks like JSON but is not.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import time
from collections.abc import Iterable
from typing import Any

import nats.errors
import nats.js.errors as jse
import orjson
import pandas as pd
from nats.js import api

from nbnats.data import frames, validate
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.errors import (Conflict, JetStreamError, KeyDeleted, NatsError, NotConnected, NotFound,
                     PayloadTooLarge, Timeout, ValidationError)
from nbnats.messaging import js_publish
from nbnats.data.payload import encode

KV_OP = "KV-Operation"
MARKER = "Nats-Marker-Reason"       # nats-server 2.11+ places these for TTL/limit expiries
TTL_HEADER = "Nats-TTL"
COLUMNS = ["key", "value", "revision", "created", "operation"]
WAIT = 10.0                         # seconds for one request/reply round


# -- small helpers ------------------------------------------------------------
def seconds(value: Any, what: str = "ttl") -> float | None:
    """Seconds from a number or a ``timedelta`` (None stays None).

    >>> seconds(90), seconds(dt.timedelta(hours=1)), seconds(None)
    (90.0, 3600.0, None)
    """
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, pd.Timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValidationError(f"{what} must be a number of seconds or a timedelta, not {value!r}",
                              f"pass e.g. {what}=3600 or {what}=datetime.timedelta(hours=1)")
    return float(value)


def decode_value(raw: bytes | None) -> Any:
    """A stored value as Python: JSON object/array → dict/list, UTF-8 → str, else bytes.

    >>> decode_value(b'{"a": 1}'), decode_value(b"5"), decode_value(b"\\xff")
    ({'a': 1}, '5', b'\\xff')
    """
    if raw is None:
        return None
    if raw[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)


def operation(headers: dict | None) -> str:
    """PUT, DEL or PURGE from a KV message's headers (server expiry markers included).

    >>> operation(None), operation({"KV-Operation": "DEL"}), operation({"Nats-Marker-Reason": "MaxAge"})
    ('PUT', 'DEL', 'PURGE')
    """
    if not headers:
        return "PUT"
    op = headers.get(KV_OP)
    if op in ("DEL", "PURGE"):
        return op
    reason = headers.get(MARKER)
    if reason == "Remove":
        return "DEL"
    if reason in ("MaxAge", "Purge"):
        return "PURGE"
    return "PUT"


def ack_meta(reply: str) -> tuple[int | None, int | None, int | None]:
    """(stream seq, ns timestamp, pending) from a JetStream ack subject.

    >>> ack_meta("$JS.ACK.KV_s.c.1.42.7.1700000000123456789.3")
    (42, 1700000000123456789, 3)
    """
    t = reply.split(".") if reply else ()
    if len(t) == 9:          # $JS.ACK.stream.consumer.delivered.sseq.cseq.ts.pending
        return int(t[5]), int(t[7]), int(t[8])
    if len(t) >= 12:         # $JS.ACK.domain.account.stream.consumer.delivered.sseq.cseq.ts.pending.token
        return int(t[7]), int(t[9]), int(t[10])
    return None, None, None


def _ns(when: Any) -> int:
    if when is None:
        return time.time_ns()
    return pd.Timestamp(when).value


def _ts(ns: int | None) -> pd.Timestamp | None:
    return None if ns is None else pd.Timestamp(ns, unit="ns", tz="UTC")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def preview(value: Any, n: int = 60) -> str:
    """A one-line preview of a decoded value.

    >>> preview({"a": 1}), preview(b"\\x00\\x01")
    ('{"a":1}', '<2 bytes>')
    """
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    elif isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    else:
        text = str(value)
    return _short(text.replace("\n", " "), n)


def _fmt_seconds(s: float | None) -> str:
    if not s:
        return "none"
    return str(pd.Timedelta(seconds=s)).replace("0 days ", "")


# -- JetStream errors → one plain sentence -------------------------------------
def js_error(exc: BaseException, doing: str, conn: Connection | None = None) -> NatsError:
    """Translate a nats-py failure while ``doing`` something into an nbnats error.

    >>> js_error(asyncio.TimeoutError(), "reading 'k'").what
    "JetStream did not answer within the timeout while reading 'k'"
    """
    if isinstance(exc, NatsError):
        return exc
    silent = isinstance(exc, jse.ServiceUnavailableError) and not getattr(exc, "description", None)
    if silent or isinstance(exc, (jse.NoStreamResponseError, nats.errors.NoRespondersError)):
        return JetStreamError(f"JetStream did not answer while {doing}",
                              "the server may have JetStream off: start the bundled one (it has JetStream) "
                              "or enable it")
    if isinstance(exc, jse.APIError):
        desc = exc.description or str(exc)
        if exc.err_code == 10074 or "replicas > 1" in desc:
            return JetStreamError(f"JetStream refused {doing}: {desc}",
                                  "use replicas=1 on a single server, or start a cluster with "
                                  "%nats server start --cluster 3")
        if exc.err_code == 10166 or "message TTL" in desc or "per-message TTL" in desc.lower():
            return JetStreamError(f"JetStream refused {doing}: {desc}",
                                  "this bucket does not allow per-key TTLs; set a bucket ttl instead")
        if "maximum bytes" in desc or "maximum messages" in desc or "insufficient resources" in desc:
            return JetStreamError(f"JetStream refused {doing}: {desc}",
                                  "the bucket is full: remove data or create it with a larger max_bytes")
        return JetStreamError(f"JetStream refused {doing}: {desc}", "check the bucket with %nats kv info")
    if isinstance(exc, (nats.errors.TimeoutError, asyncio.TimeoutError)):
        return Timeout(f"JetStream did not answer within the timeout while {doing}",
                       "check the connection with %nats status")
    if isinstance(exc, (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError)):
        where = f" to {conn.url}" if conn else ""
        return NotConnected(f"the connection{where} is closed", "connect again with %nats connect")
    return JetStreamError(f"{doing} failed ({type(exc).__name__}: {exc})", "check the server with %nats status")


async def guarded(coro, doing: str, conn: Connection | None = None):
    """Await ``coro`` turning nats-py errors into nbnats ones (loop thread).

    >>> loop.run(guarded(conn.js.stream_info("KV_x"), "reading KV_x"), 5, "reading KV_x")   # doctest: +SKIP
    """
    try:
        return await coro
    except NatsError:
        raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise js_error(exc, doing, conn) from None


# -- reading a stream in bulk (one coroutine in the loop) ----------------------
async def scan(conn: Connection, stream: str, subject: str, *, last_per_subject: bool = True,
               headers_only: bool = False, idle: float = WAIT) -> list[tuple]:
    """Read ``subject`` of ``stream`` as it is now: (subject, seq, time_ns, data, headers) rows.

    ``last_per_subject`` keeps only the latest message of each subject (a
    bucket's current state); otherwise every message (a key's history). An
    ordered consumer with a callback, so nothing waits on a bounded queue.

    >>> rows = loop.run(scan(conn, "KV_sessions", "$KV.sessions.>"), 30, "a scan")   # doctest: +SKIP
    >>> rows[0][:2]                                                                   # doctest: +SKIP
    ('$KV.sessions.user.1', 4)
    """
    rows: list[tuple] = []
    done = asyncio.Event()

    async def on_msg(msg):
        seq, ts, pending = ack_meta(msg.reply)
        rows.append((msg.subject, seq, ts, msg.data, msg.headers))
        if pending == 0:
            done.set()

    policy = api.DeliverPolicy.LAST_PER_SUBJECT if last_per_subject else api.DeliverPolicy.ALL
    sub = await conn.js.subscribe(subject, stream=stream, cb=on_msg, ordered_consumer=True,
                                  deliver_policy=policy, headers_only=headers_only or None)
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and (info.delivered is None or not info.delivered.consumer_seq):
            return rows
        seen = -1
        while not done.is_set():       # wait while messages keep arriving
            if len(rows) == seen:
                raise Timeout(f"reading {subject!r} from stream {stream!r} stalled after {len(rows):,} "
                              f"messages", "check the connection and try again")
            seen = len(rows)
            try:
                await asyncio.wait_for(done.wait(), idle)
            except asyncio.TimeoutError:
                pass
        return rows
    finally:
        try:
            await sub.unsubscribe()
        except Exception:
            pass


def kv_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """The KV frame from (key, revision, time_ns, data, headers) rows.

    >>> kv_frame([("a", 1, 0, b'{"x": 1}', None)])[["key", "value", "revision", "operation", "x"]].values.tolist()
    [['a', {'x': 1}, 1, 'PUT', 1]]
    """
    rows = list(rows)
    ops = [operation(r[4]) for r in rows]
    payloads = [bytes(r[3] or b"") for r in rows]
    base = pd.DataFrame({
        "key": pd.Series([r[0] for r in rows], dtype=object),
        "value": pd.Series([decode_value(p) if op == "PUT" else None for p, op in zip(payloads, ops)],
                           dtype=object),
        "revision": pd.array([r[1] for r in rows], dtype="Int64"),
        "created": pd.to_datetime(pd.Series([r[2] or 0 for r in rows], dtype="int64"), unit="ns", utc=True),
        "operation": pd.Series(ops, dtype=object),
    })
    if not rows:
        return base
    puts = [i for i, op in enumerate(ops) if op == "PUT" and payloads[i][:1] in (b"{", b"[")]
    if not puts:
        return base
    body = frames.decode_payloads([payloads[i] for i in puts]).drop(columns=["data"], errors="ignore")
    if not len(body.columns):
        return base
    body.index = puts
    body = body.reindex(range(len(rows)))
    body.columns = [f"value.{c}" if c in COLUMNS else c for c in body.columns]
    return pd.concat([base, body], axis=1)


# -- entries --------------------------------------------------------------------
class Entry:
    """One revision of a key: ``key``, ``value`` (decoded), ``raw`` (bytes), ``revision``,
    ``created`` (UTC Timestamp), ``operation`` (PUT, DEL, PURGE), ``bucket``.

    >>> e = Entry("sessions", "user.1", b'{"n": 1}', 3, 0, "PUT")
    >>> e.value, e.revision, e.deleted
    ({'n': 1}, 3, False)
    """

    __slots__ = ("bucket", "key", "raw", "revision", "created", "operation")

    def __init__(self, bucket: str, key: str, raw: bytes | None, revision: int, created_ns: int | None,
                 operation: str = "PUT"):
        self.bucket = bucket
        self.key = key
        self.raw = bytes(raw or b"")
        self.revision = revision
        self.created = _ts(created_ns)
        self.operation = operation

    @property
    def value(self) -> Any:
        """The value decoded (None for a delete marker)."""
        return None if self.deleted else decode_value(self.raw)

    @property
    def deleted(self) -> bool:
        """True for a DEL or PURGE marker."""
        return self.operation != "PUT"

    def __repr__(self) -> str:
        shown = self.operation if self.deleted else preview(self.value, 80)
        return f"<Entry {self.bucket}/{self.key} rev {self.revision}: {shown}>"

    def _repr_html_(self) -> str:
        value = self.value
        if isinstance(value, (dict, list)):
            body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        elif isinstance(value, bytes):
            body = f"<{len(value):,} bytes> " + value[:64].hex(" ")
        else:
            body = "" if value is None else str(value)
        when = self.created.strftime("%Y-%m-%d %H:%M:%S.%f UTC") if self.created is not None else ""
        op = "" if not self.deleted else f" · <b style='color:#b91c1c'>{self.operation}</b>"
        return (f"<div><b>{html.escape(self.key)}</b> · bucket {html.escape(self.bucket)} · "
                f"revision {self.revision} · {when} · {len(self.raw):,} bytes{op}"
                f"<pre style='max-height:24em;overflow:auto'>{html.escape(body[:20_000])}</pre></div>")


# -- the bucket -------------------------------------------------------------------
class KV:
    """A key-value bucket; see :func:`kv`.

    ``put``/``create``/``update`` write and return the new revision; ``get``
    returns an :class:`Entry`; ``keys``, ``history``, ``to_frame`` read;
    ``watch`` follows changes live; ``editor()`` is the interactive view.
    """

    def __init__(self, bucket: str, info: api.StreamInfo, connection: str | None = None):
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.connection = connection
        self._config = info.config

    # -- plumbing
    @property
    def conn(self) -> Connection:
        """The live connection this bucket is read and written through."""
        return current(self.connection)

    @property
    def direct(self) -> bool:
        """True when reads use JetStream direct get (the bucket allows it)."""
        return bool(self._config.allow_direct)

    @property
    def history_depth(self) -> int:
        """How many revisions of each key the bucket keeps."""
        return int(self._config.max_msgs_per_subject or 1)

    def _run(self, coro, what: str, timeout: float = WAIT + 2):
        try:
            return loop.run(guarded(coro, what, None), timeout, what)
        except JetStreamError:
            if not self._exists():      # the usual reason: someone removed the bucket
                raise self._no_bucket() from None
            raise

    def _exists(self) -> bool:
        async def probe():
            try:
                await self.conn.js.stream_info(self.stream)
                return True
            except jse.NotFoundError:
                return False
            except Exception:
                return True
        return loop.run(probe(), WAIT + 2, f"looking up bucket {self.bucket!r}")

    def _no_bucket(self) -> NotFound:
        return NotFound(f"KV bucket {self.bucket!r} does not exist (any more)",
                        f"create it again with nbnats.kv({self.bucket!r}, create=True)")

    def _value_bytes(self, key: str, value: Any) -> bytes:
        data = encode(value)
        conn = self.conn
        validate.payload_size(len(data), conn.max_payload, f"{self.bucket}/{key}")
        limit = self._config.max_msg_size
        if limit and limit > 0 and len(data) > limit:
            raise PayloadTooLarge(f"the value for {key!r} is {len(data):,} bytes, over bucket {self.bucket!r}'s "
                                  f"max value size of {limit:,} bytes",
                                  "store large data in the object store (nbnats.objects)")
        return data

    async def _latest(self, conn: Connection, key: str) -> Entry | None:
        """The newest message of a key (tombstones included), or None (loop thread)."""
        return await self._fetch(conn, key, None)

    async def _fetch(self, conn: Connection, key: str, revision: int | None) -> Entry | None:
        subject = self.prefix + key
        try:
            if revision is None:
                msg = await conn.js.get_msg(self.stream, subject=subject, direct=self.direct)
            else:
                msg = await conn.js.get_msg(self.stream, seq=revision, direct=self.direct)
        except jse.NotFoundError as exc:
            if exc.err_code == 10059:       # stream not found: the bucket is gone
                raise self._no_bucket() from None
            return None
        if msg.subject != subject:
            return None
        headers = msg.headers or {}
        stamp = headers.get("Nats-Time-Stamp")
        return Entry(self.bucket, key, msg.data, msg.seq, _ns(stamp or msg.time), operation(headers))

    async def _publish(self, conn: Connection, key: str, data: bytes, headers: dict | None,
                       ttl: float | None = None) -> int:
        if ttl is not None:
            headers = {**(headers or {}), TTL_HEADER: str(int(ttl))}
        try:
            ack = await js_publish(conn, self.prefix + key, data, WAIT, headers)   # rides out failovers
        except jse.NoStreamResponseError:
            raise self._no_bucket() from None
        except jse.APIError as exc:
            if exc.err_code in (10071, 10164):
                raise _WrongLast() from None
            raise
        return ack.seq

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

    def _ttl(self, ttl: Any) -> float | None:
        ttl = seconds(ttl, "ttl")
        if ttl is not None and ttl < 1:
            raise ValidationError(f"a key's ttl must be at least 1 second, not {ttl:g}", "pass ttl=1 or more")
        return ttl

    # -- writing
    def put(self, key: str, value: Any, ttl: Any = None) -> int:
        """Store ``value`` under ``key``; returns the new revision.

        ``ttl`` (seconds or timedelta, ≥ 1 s) expires just this revision
        (nats-server 2.11+, buckets that allow per-key TTLs).

        >>> kv.put("user.123", {"name": "ada"})   # doctest: +SKIP
        1
        """
        validate.key(key)
        data = self._value_bytes(key, value)
        ttl = self._ttl(ttl)
        conn = self.conn
        return self._run(self._publish(conn, key, data, None, ttl), f"putting {key!r} into {self.bucket!r}")

    def create(self, key: str, value: Any, ttl: Any = None) -> int:
        """Store ``value`` only if ``key`` does not exist (a deleted key counts as absent).

        Raises :class:`~nbnats.Conflict` when it exists.

        >>> kv.create("lock.job1", "owner-a")   # doctest: +SKIP
        7
        """
        validate.key(key)
        data = self._value_bytes(key, value)
        ttl = self._ttl(ttl)
        conn = self.conn

        async def go():
            now = await self._latest(conn, key)
            last = now.revision if now is not None and now.deleted else 0
            try:
                return await self._publish(conn, key, data, {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)}, ttl)
            except _WrongLast:
                raise self._conflict(key, 0, await self._latest(conn, key)) from None

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
        conn = self.conn

        async def go():
            try:
                return await self._publish(conn, key, data, {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)})
            except _WrongLast:
                raise self._conflict(key, last, await self._latest(conn, key)) from None

        return self._run(go(), f"updating {key!r} in {self.bucket!r}")

    def delete(self, key: str, last: int | None = None) -> int:
        """Delete ``key`` (its history stays until purged); returns the delete marker's revision.

        With ``last``, only if the key is still at that revision. A key that
        does not exist, or is already deleted, raises and writes nothing.

        >>> kv.delete("user.123")   # doctest: +SKIP
        4
        """
        validate.key(key)
        conn = self.conn

        async def go():
            now = await self._latest(conn, key)
            if now is None or now.deleted:
                raise self._missing(key, now)
            headers = {KV_OP: "DEL"}
            if last is not None:
                headers[api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE] = str(last)
            try:
                return await self._publish(conn, key, b"", headers)
            except _WrongLast:
                raise self._conflict(key, last, await self._latest(conn, key)) from None

        return self._run(go(), f"deleting {key!r} from {self.bucket!r}")

    def purge(self, key: str) -> int:
        """Remove ``key`` and all its revisions, leaving one PURGE marker; returns its revision.

        >>> kv.purge("user.123")   # doctest: +SKIP
        5
        """
        validate.key(key)
        conn = self.conn

        async def go():
            if await self._latest(conn, key) is None:
                raise self._missing(key, None)
            return await self._publish(conn, key, b"", {KV_OP: "PURGE", api.Header.ROLLUP: "sub"})

        return self._run(go(), f"purging {key!r} from {self.bucket!r}")

    def revert(self, key: str, revision: int, last: int | None = None) -> int:
        """Make revision ``revision`` of ``key`` current again; returns the new revision.

        Written with compare-and-set against the current revision (or
        ``last``). A revision the bucket no longer keeps raises NotFound.

        >>> kv.revert("user.123", 2)   # doctest: +SKIP
        6
        """
        validate.key(key)
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            raise ValidationError(f"revision must be a positive number, not {revision!r}",
                                  f"pick one from kv.history({key!r})")
        conn = self.conn

        async def go():
            old = await self._fetch(conn, key, revision)
            if old is None:
                raise self._gone(key, revision)
            now = await self._latest(conn, key)
            expect = last if last is not None else (now.revision if now is not None else 0)
            if now is not None and now.revision == revision and expect == revision:
                return revision
            headers = {api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE: str(expect)}
            if old.deleted:
                headers[KV_OP] = "DEL"
            try:
                return await self._publish(conn, key, b"" if old.deleted else old.raw, headers)
            except _WrongLast:
                raise self._conflict(key, expect, await self._latest(conn, key)) from None

        return self._run(go(), f"reverting {key!r} to revision {revision}")

    # -- reading
    def _missing(self, key: str, now: Entry | None) -> NotFound:
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

    def get(self, key: str, revision: int | None = None) -> Entry:
        """The current entry of ``key`` (or revision ``revision`` of it).

        A key never written raises :class:`~nbnats.NotFound`; a deleted or
        purged one :class:`~nbnats.KeyDeleted` (with ``.entry``, the marker).

        >>> kv.get("user.123").value                   # doctest: +SKIP
        {'name': 'ada'}
        >>> kv.get("user.123", revision=1).revision    # doctest: +SKIP
        1
        """
        validate.key(key)
        if revision is not None and (isinstance(revision, bool) or not isinstance(revision, int) or revision < 1):
            raise ValidationError(f"revision must be a positive number, not {revision!r}",
                                  f"pick one from kv.history({key!r})")
        conn = self.conn
        entry = self._run(self._fetch(conn, key, revision), f"getting {key!r} from {self.bucket!r}")
        if entry is None:
            if revision is not None:
                raise self._gone(key, revision)
            raise self._missing(key, None)
        if entry.deleted:
            raise self._missing(key, entry)
        return entry

    def __contains__(self, key: str) -> bool:
        try:
            self.get(key)
        except NotFound:
            return False
        return True

    def keys(self, pattern: str = ">") -> list[str]:
        """The keys that hold a value (deleted ones left out), sorted; ``pattern`` may use ``*`` / ``>``.

        >>> kv.keys()             # doctest: +SKIP
        ['user.123', 'user.124']
        >>> kv.keys("user.*")     # doctest: +SKIP
        """
        validate.key(pattern, pattern=True)
        conn = self.conn
        rows = self._run(scan(conn, self.stream, self.prefix + pattern, headers_only=True),
                         f"listing the keys of {self.bucket!r}", timeout=120)
        n = len(self.prefix)
        return sorted(r[0][n:] for r in rows if operation(r[4]) == "PUT")

    def history(self, key: str) -> pd.DataFrame:
        """Every revision the bucket keeps of ``key`` (or of a ``*``/``>`` pattern), oldest first.

        >>> kv.history("user.123")[["revision", "operation", "value"]]   # doctest: +SKIP
        """
        validate.key(key, pattern=True)
        conn = self.conn
        return self._run(self._history(conn, key), f"reading the history of {key!r}", timeout=120)

    async def _history(self, conn: Connection, key: str) -> pd.DataFrame:
        rows = await scan(conn, self.stream, self.prefix + key, last_per_subject=False)
        if not rows:
            raise NotFound(f"key {key!r} has no history in bucket {self.bucket!r}",
                           "check the spelling; kv.keys() lists the keys")
        n = len(self.prefix)
        return kv_frame((s[n:], seq, ts, data, h) for s, seq, ts, data, h in rows)

    def to_frame(self, pattern: str = ">", deleted: bool = False) -> pd.DataFrame:
        """The bucket as it is now: one row per key, sorted by key (``deleted=True`` keeps tombstones).

        >>> kv.to_frame()[["key", "value", "revision"]]   # doctest: +SKIP
        """
        validate.key(pattern, pattern=True)
        conn = self.conn
        rows = self._run(scan(conn, self.stream, self.prefix + pattern),
                         f"reading bucket {self.bucket!r}", timeout=300)
        n = len(self.prefix)
        rows = sorted(((s[n:], seq, ts, data, h) for s, seq, ts, data, h in rows
                       if deleted or operation(h) == "PUT"), key=lambda r: r[0])
        return kv_frame(rows)

    def watch(self, key: str = ">", updates_only: bool = False, history: bool = False,
              limit: int = 10_000, count: int | None = None) -> "KVWatch":
        """Follow changes live in the background: ``w.df`` (a KV frame), ``w.latest()``, ``w.widget``.

        It starts with each key's current value (``history=True``: every kept
        revision; ``updates_only=True``: nothing old) and then receives every
        change. Memory is bounded by ``limit`` rows.

        >>> w = kv.watch("user.>")   # doctest: +SKIP
        >>> w.latest()               # doctest: +SKIP
        >>> w.stop()                 # doctest: +SKIP
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
    def info(self) -> dict:
        """The bucket's settings and size: bucket, values, bytes, history, ttl, replicas, storage …

        >>> kv.info()["history"]   # doctest: +SKIP
        1
        """
        conn = self.conn
        si = self._run(conn.js.stream_info(self.stream), f"reading bucket {self.bucket!r}")
        self._config = si.config
        return _bucket_row(si)

    def __repr__(self) -> str:
        ttl = _fmt_seconds(self._config.max_age)
        return f"<nbnats.KV {self.bucket!r} history={self.history_depth} ttl={ttl}>"

    def _repr_html_(self) -> str:
        try:
            row = self.info()
        except NatsError as exc:
            return f"<div>{html.escape(repr(self))} — {html.escape(str(exc))}</div>"
        return _info_table(f"KV bucket <b>{html.escape(self.bucket)}</b>", row)


class _WrongLast(Exception):
    """The server refused a write whose expected last revision did not match."""


def _shown(v: Any) -> str:
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, pd.Timedelta):
        return str(v).replace("0 days ", "")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def _info_table(title: str, row: dict) -> str:
    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                    f"{html.escape(_shown(v))}</td></tr>" for k, v in row.items())
    return f"<div>{title}<table>{cells}</table></div>"


def _bucket_row(si: api.StreamInfo) -> dict:
    c, s = si.config, si.state
    return {
        "bucket": c.name[3:] if c.name.startswith("KV_") else c.name,
        "values": s.messages, "bytes": s.bytes, "history": c.max_msgs_per_subject,
        "ttl": pd.Timedelta(seconds=c.max_age) if c.max_age else pd.NaT,
        "replicas": c.num_replicas, "storage": c.storage.value if hasattr(c.storage, "value") else c.storage,
        "max_value_size": c.max_msg_size if c.max_msg_size and c.max_msg_size > 0 else None,
        "direct": bool(c.allow_direct), "description": c.description,
        "created": pd.Timestamp(si.created) if si.created else pd.NaT,
    }


# -- opening, creating, listing buckets ----------------------------------------
_SETTINGS = ("history", "ttl", "replicas", "max_value_size", "max_bytes", "storage", "description", "direct")


def kv(bucket: str, create: bool = False, *, history: int | None = None, ttl: Any = None,
       replicas: int | None = None, max_value_size: int | None = None, max_bytes: int | None = None,
       storage: str | None = None, description: str | None = None, direct: bool | None = None,
       connection: str | None = None) -> KV:
    """Open a key-value bucket (``create=True`` makes it if missing).

    ``history`` revisions kept per key (1–64); ``ttl`` seconds (or a
    timedelta) before values expire; ``replicas`` copies in a cluster;
    ``max_value_size``/``max_bytes`` limits; ``storage`` "file" or "memory";
    ``direct`` (default True) lets every replica answer reads. Opening an
    existing bucket with settings that differ from its own is refused.

    >>> kv = nbnats.kv("sessions", create=True, ttl=1800, history=5)   # doctest: +SKIP
    >>> kv = nbnats.kv("sessions")                                     # doctest: +SKIP
    """
    validate.bucket(bucket)
    given = dict(history=history, ttl=seconds(ttl), replicas=replicas, max_value_size=max_value_size,
                 max_bytes=max_bytes, storage=storage, description=description, direct=direct)
    given = {k: v for k, v in given.items() if v is not None}
    if "history" in given and not (isinstance(history, int) and 1 <= history <= 64):
        raise ValidationError(f"history must be between 1 and 64 revisions, not {history!r}",
                              "pass e.g. history=5")
    if "replicas" in given and not (isinstance(replicas, int) and 1 <= replicas <= 5):
        raise ValidationError(f"replicas must be between 1 and 5, not {replicas!r}", "pass e.g. replicas=3")
    if "storage" in given and storage not in ("file", "memory"):
        raise ValidationError(f"storage must be 'file' or 'memory', not {storage!r}", "pass storage='file'")
    conn = current(connection)
    name = conn.name

    async def open_or_create():
        try:
            si = await conn.js.stream_info(f"KV_{bucket}")
        except jse.NotFoundError:
            if not create:
                fix = (f"create it with nbnats.kv({bucket!r}, create=True) or %nats kv add {bucket}")
                raise NotFound(f"KV bucket {bucket!r} does not exist", fix) from None
            cfg = dict(bucket=bucket, history=given.get("history", 1), ttl=given.get("ttl"),
                       replicas=given.get("replicas", 1), max_value_size=given.get("max_value_size"),
                       max_bytes=given.get("max_bytes"), description=given.get("description"),
                       direct=given.get("direct", True))
            if "storage" in given:
                cfg["storage"] = api.StorageType(storage)
            await conn.js.create_key_value(**cfg)
            return await conn.js.stream_info(f"KV_{bucket}")
        if si.config.max_msgs_per_subject is None or si.config.max_msgs_per_subject < 1:
            raise JetStreamError(f"stream KV_{bucket} exists but is not a KV bucket",
                                 "pick another bucket name")
        _check_same(bucket, si, given)
        return si

    si = loop.run(guarded(open_or_create(), f"opening KV bucket {bucket!r}", conn), WAIT + 2,
                  f"opening KV bucket {bucket!r}")
    return KV(bucket, si, name)


def _check_same(bucket: str, si: api.StreamInfo, given: dict) -> None:
    c = si.config
    have = {"history": c.max_msgs_per_subject, "ttl": c.max_age or None, "replicas": c.num_replicas,
            "max_value_size": c.max_msg_size if c.max_msg_size and c.max_msg_size > 0 else None,
            "max_bytes": c.max_bytes if c.max_bytes and c.max_bytes > 0 else None,
            "storage": c.storage.value if hasattr(c.storage, "value") else c.storage,
            "description": c.description, "direct": bool(c.allow_direct)}
    for k, want in given.items():
        got = have[k]
        same = abs((got or 0) - want) < 1e-6 if k == "ttl" else got == want
        if not same:
            raise JetStreamError(f"KV bucket {bucket!r} already exists with {k}={got!r}, not {want!r}",
                                 f"open it without settings, nbnats.kv({bucket!r}), or remove it first "
                                 f"(%nats kv rm {bucket})")


def buckets(connection: str | None = None) -> pd.DataFrame:
    """Every KV bucket: bucket, values, bytes, history, ttl, replicas, storage, direct, created.

    >>> nbnats.buckets()   # doctest: +SKIP
    """
    return pd.DataFrame([_bucket_row(si) for si in _streams_with_prefix("KV_", connection)],
                        columns=["bucket", "values", "bytes", "history", "ttl", "replicas", "storage",
                                 "max_value_size", "direct", "description", "created"])


def _streams_with_prefix(prefix: str, connection: str | None) -> list[api.StreamInfo]:
    conn = current(connection)

    async def all_streams():
        out, offset = [], 0
        while True:
            page = await conn.js.streams_info(offset)
            out.extend(si for si in page if si.config.name.startswith(prefix))
            if not page:
                return out
            offset += len(page)

    found = loop.run(guarded(all_streams(), "listing streams", conn), 30, "listing streams")
    return sorted(found, key=lambda si: si.config.name)


def delete_bucket(bucket: str, connection: str | None = None) -> None:
    """Remove a KV bucket and everything in it.

    >>> nbnats.delete_bucket("sessions")   # doctest: +SKIP
    """
    validate.bucket(bucket)
    conn = current(connection)

    async def go():
        try:
            await conn.js.stream_info(f"KV_{bucket}")
        except jse.NotFoundError:
            raise NotFound(f"KV bucket {bucket!r} does not exist", "list buckets with %nats kv ls") from None
        await conn.js.delete_key_value(bucket)

    loop.run(guarded(go(), f"removing KV bucket {bucket!r}", conn), WAIT + 2, f"removing KV bucket {bucket!r}")


__all__ = ["KV", "Entry", "kv", "buckets", "delete_bucket", "decode_value", "kv_frame", "scan"]
