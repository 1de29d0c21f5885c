"""The shared schema registry: schemas kept in a KV bucket on the server, enforced on publish.

``infer`` reads a tail, a frame or a list of values and returns a JSON Schema
(types, required keys, nested objects, enums for small categorical sets,
number ranges) with a ``drift`` report: keys that changed type, keys that
appear only sometimes. ``register(pattern, schema)`` stores it in the KV
bucket ``nbnats_schemas`` on the server, so every notebook connected to it
shares it; from then on ``publish`` to a matching subject refuses a payload
that breaks it, naming the field and the rule. ``check`` lists the rows of a
frame that break their subject's schema. Validation is the ``jsonschema``
library's.

How registrations reach other notebooks: each connection keeps a local copy
of the registered schemas and keeps it fresh with a *watcher* — a plain
subscription to the bucket's subject ``$KV.nbnats_schemas.>``, which sees
every put and delete from any client (even before the bucket exists) — and
re-reads the bucket after a reconnect. A registration made elsewhere applies
here one network hop later.

>>> s = nbnats.schema.infer(t)                         # doctest: +SKIP
>>> nbnats.schema.register("orders.>", s)              # doctest: +SKIP
>>> nbnats.publish("orders.created", {"id": "x"})      # doctest: +SKIP
SchemaError: the message for 'orders.created' breaks the schema for 'orders.>': field 'id': 'x' is not of type 'integer' (rule 'type') — ...
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import threading
import time
from typing import Any

import orjson
import pandas as pd

from nbnats.data import codecs
from nbnats.data import validate as rules
from nbnats.errors import NatsError, NotFound, SchemaError
from nbnats.kv.bucket import KV
from nbnats.kv.frame import KV_OP, operation
from nbnats.kv.manage import open_bucket, stream_info
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.jetstream.display import listing
from nbnats.schema import hooks as schema_hooks
from nbnats.schema.documents import _document, _Entry, _sentence, _violation
from nbnats.schema.inference import _decode_payload, _norm

log = logging.getLogger("nbnats")

BUCKET = "nbnats_schemas"
_RETRY_LOAD = 5.0           # seconds before a failed read of the bucket is tried again


# -- the shared registry, one local copy per connection ------------------------------------
def _key(pattern: str) -> str:
    return base64.urlsafe_b64encode(pattern.encode("utf-8")).decode("ascii")


def _pattern_of(key: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(key.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _entry_from(data: bytes, revision: int | None) -> _Entry | None:
    try:
        stored = orjson.loads(data)
        if not isinstance(stored["schema"], dict) or not isinstance(stored["pattern"], str):
            raise ValueError("not a pattern and a schema object")
        return _Entry(stored["pattern"], stored["schema"], revision, stored.get("updated"))
    except Exception as exc:   # a broken value written by someone else must not break publishing
        log.debug("nbnats: ignoring an unreadable schema in %s: %r", BUCKET, exc)
        return None


class _Registry:
    """The schemas registered on one connection's server, kept fresh by a subscription."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.entries: dict[str, _Entry] = {}
        self._matches: dict[str, list[_Entry]] = {}
        self._sub = None
        self._touched: set[str] = set()
        self.loaded = False
        self._retry_at = 0.0

    def matching(self, subject: str) -> list[_Entry]:
        """The entries whose pattern matches ``subject`` (cached per subject)."""
        cache = self._matches
        found = cache.get(subject)
        if found is None:
            found = [e for p, e in self.entries.items() if rules.subject_matches(p, subject)]
            if len(cache) > 50_000:
                cache.clear()
            cache[subject] = found
        return found

    def set(self, pattern: str, entry: _Entry | None) -> None:
        entries = dict(self.entries)          # copy on write: publishers read without a lock
        if entry is None:
            entries.pop(pattern, None)
        else:
            entries[pattern] = entry
        self.entries, self._matches = entries, {}

    async def _on_update(self, msg) -> None:
        pattern = _pattern_of(msg.subject[len(f"$KV.{BUCKET}."):])
        if pattern is None:
            return
        self._touched.add(pattern)
        self.set(pattern, None if operation(msg.headers) != "PUT" else _entry_from(msg.data, None))

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.conn.nc.subscribe(f"$KV.{BUCKET}.>", cb=self._on_update)
        await self.load()

    async def load(self) -> None:
        self._touched = set()
        snapshot = await _read_all(self.conn)
        merged = {p: e for p, e in snapshot.items() if p not in self._touched}
        for p in self._touched:             # an update seen while reading is newer than the snapshot
            if p in self.entries:
                merged[p] = self.entries[p]
        self.entries, self._matches = merged, {}
        self.loaded = True

    def refresh_later(self) -> None:
        if not self.loaded and time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + _RETRY_LOAD
            loop.submit(self._quiet(self.load()))

    @staticmethod
    async def _quiet(coro) -> None:
        try:
            await coro
        except Exception as exc:
            log.debug("nbnats: could not read the schema bucket: %r", exc)

    # connection events
    def _disconnected(self, at: float) -> None: ...
    def _closing(self) -> None: ...

    def _reconnected(self, since: float | None, at: float) -> None:
        self.loaded = False
        loop.get_loop().create_task(self._quiet(self.load()))

    def _closed(self) -> None:
        self._sub = None
        with _lock:
            if _registries.get(self.conn) is self:
                del _registries[self.conn]


_lock = threading.Lock()
_registries: dict[Connection, _Registry] = {}


def _registry(conn: Connection) -> _Registry:
    reg = _registries.get(conn)
    if reg is not None:
        return reg
    with _lock:
        reg = _registries.get(conn)
        if reg is not None:
            return reg
        reg = _registries[conn] = _Registry(conn)
        conn.listeners.append(reg)
    if loop.in_loop_thread():
        loop.get_loop().create_task(reg._quiet(reg.start()))
        return reg
    try:
        loop.run(reg.start(), 3, "reading the registered event schemas")
    except Exception as exc:   # no JetStream, no permission, an outage: try again later
        reg._retry_at = time.monotonic() + _RETRY_LOAD
        log.debug("nbnats: could not read the schema bucket yet: %r", exc)
    return reg


async def _bucket(conn: Connection, create: bool) -> KV | None:
    """The schema bucket (made when ``create``), or None when it does not exist yet (loop thread)."""
    if not create and await stream_info(conn, BUCKET) is None:
        return None
    info = await open_bucket(conn, BUCKET, create=True, check=False,
                             settings={"history": 10, "description": "event schemas registered by nbnats"})
    return KV(BUCKET, info, conn.name)


async def _read_all(conn: Connection) -> dict[str, _Entry]:
    kv = await _bucket(conn, create=False)
    if kv is None:
        return {}
    out: dict[str, _Entry] = {}
    for key, revision, _, data, headers in await kv.read_rows(">"):
        pattern = _pattern_of(key) if operation(headers) == "PUT" else None
        found = _entry_from(data, revision) if pattern else None
        if found is not None:
            out[found.pattern] = found
    return out


def _before_publish(subject: str, data: Any, payload: bytes, conn: Connection | None = None) -> None:
    """The publish-time check installed in :mod:`nbnats.schema_hooks`."""
    if conn is None:
        conn = current()
    reg = _registries.get(conn) or _registry(conn)
    if not reg.loaded:
        reg.refresh_later()
    if not reg.entries:
        return
    entries = reg.matching(subject)
    if not entries:
        return
    try:
        value = _norm(_decode_payload(subject, payload))
    except NatsError as exc:
        raise SchemaError(f"the message for {subject!r} cannot be checked against the schema for "
                          f"{entries[0].pattern!r}: {exc.what}", exc.fix) from None
    for entry in entries:
        problems = _violation(entry, value)
        if problems:
            raise SchemaError(f"the message for {subject!r} breaks the schema for {entry.pattern!r}: "
                              f"{_sentence(problems)}",
                              "fix the payload, or update the schema with nbnats.schema.register")


schema_hooks.install(_before_publish)


# -- the public registry API ----------------------------------------------------------
def register(pattern: str, schema: Any, connection: str | None = None) -> int:
    """Store ``schema`` for subjects matching ``pattern`` on the server; returns its KV revision.

    From then on ``publish`` to a matching subject, from any notebook on the
    server, refuses a payload that breaks it.

    >>> nbnats.schema.register("orders.>", {"type": "object", "required": ["id"]})   # doctest: +SKIP
    1
    """
    rules.subject(pattern, what="subject pattern")
    doc = _document(schema)
    conn = current(connection)
    reg = _registry(conn)
    updated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    value = orjson.dumps({"pattern": pattern, "schema": doc, "updated": updated})

    async def put():
        kv = await _bucket(conn, create=True)
        return await kv.write(_key(pattern), value)

    revision = loop.run(put(), 12, f"storing the schema for {pattern!r}")
    reg.set(pattern, _Entry(pattern, doc, revision, updated))
    return revision


def _all(connection: str | None = None) -> dict[str, _Entry]:
    conn = current(connection)
    reg = _registry(conn)
    loop.run(reg.load(), 12, "reading the registered event schemas")
    return reg.entries


def ls(connection: str | None = None) -> pd.DataFrame:
    """The registered schemas: pattern, fields, required, revision, updated.

    >>> nbnats.schema.ls()   # doctest: +SKIP
    """
    rows = [{"pattern": e.pattern, "fields": list(e.schema.get("properties", {})),
             "required": list(e.schema.get("required", [])), "revision": e.revision, "updated": e.updated}
            for e in sorted(_all(connection).values(), key=lambda e: e.pattern)]
    return listing(rows, ["pattern", "fields", "required", "revision", "updated"])


def get(pattern: str, connection: str | None = None) -> dict:
    """The schema registered for exactly ``pattern``.

    >>> nbnats.schema.get("orders.>")["required"]   # doctest: +SKIP
    ['id']
    """
    rules.subject(pattern, what="subject pattern")
    entries = _all(connection)
    if pattern not in entries:
        raise NotFound(f"no schema is registered for {pattern!r}",
                       f"registered patterns: {sorted(entries) or 'none'}; add one with nbnats.schema.register")
    return entries[pattern].schema


def rm(pattern: str, connection: str | None = None) -> None:
    """Remove the schema registered for ``pattern`` (its history stays in the bucket).

    >>> nbnats.schema.rm("orders.>")   # doctest: +SKIP
    """
    rules.subject(pattern, what="subject pattern")
    conn = current(connection)
    reg = _registry(conn)

    async def delete():
        kv = await _bucket(conn, create=False)
        now = await kv.read_entry(_key(pattern)) if kv is not None else None
        if now is None or now.deleted:
            known = sorted((await _read_all(conn)) if kv is not None else [])
            raise NotFound(f"no schema is registered for {pattern!r}",
                           f"registered patterns: {known or 'none'} (see nbnats.schema.ls())")
        await kv.write(_key(pattern), b"", {KV_OP: "DEL"})

    loop.run(delete(), 12, f"removing the schema for {pattern!r}")
    reg.set(pattern, None)


def validate(subject: str, value: Any, connection: str | None = None) -> None:
    """Raise :class:`SchemaError` when ``value`` breaks a schema registered for ``subject``.

    >>> nbnats.schema.validate("orders.created", {"id": 1})   # doctest: +SKIP
    """
    rules.subject(subject, publish=True)
    conn = current(connection)
    _before_publish(subject, value, codecs.encode(value, subject=subject), conn)
