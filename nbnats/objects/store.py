"""One object-store bucket: put, get, info, ls, delete, seal — on nbnats's JetStream engine.

>>> ob = nbnats.objects("reports", create=True)   # doctest: +SKIP
>>> ob.put("notes.txt", b"hello").size            # doctest: +SKIP
5
>>> ob.get("notes.txt")                           # doctest: +SKIP
b'hello'
"""

from __future__ import annotations

import html
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from nbnats.engine import api, ordered, publish
from nbnats.errors import JetStreamError, NatsError, NotFound
from nbnats.kv.frame import info_table
from nbnats.objects import meta as m
from nbnats.objects.meta import ObjectInfo, check_name
from nbnats.objects.sources import open_source, read_frame
from nbnats.objects.transfer import receive, write_chunks
from nbnats.jetstream.display import listing
from nbnats.progress import progress_bar
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current

PROGRESS_FROM = 8 * 1024 * 1024          # bytes: bars show for objects this large
WAIT = api.TIMEOUT + 2                   # seconds for one request/reply round, seen from the caller
ROLLUP = {"Nats-Rollup": "sub"}          # a metadata message replaces the previous one of its subject
FULL = (10077, 10047, 10028, 10023)      # the stream (or JetStream) has no room left
LS_COLUMNS = ["name", "size", "chunks", "modified", "content_type", "description", "digest"]


class ObjectStore:
    """An object-store bucket; see :func:`nbnats.objects`.

    >>> ob = ObjectStore("reports"); ob.stream
    'OBJ_reports'
    """

    def __init__(self, bucket: str, connection: str | None = None):
        self.bucket = bucket
        self.stream = m.stream_name(bucket)
        self.connection = connection

    @property
    def conn(self) -> Connection:
        """The live connection used for this bucket."""
        return current(self.connection)

    def _run(self, coro, what: str, timeout: float = WAIT):
        return loop.run(coro, timeout, what)

    def _missing(self, name: str, info: ObjectInfo | None) -> NotFound:
        if info is not None and info.deleted:
            return NotFound(f"object {name!r} was deleted from bucket {self.bucket!r}",
                            f"put it again, or list what is there with nbnats.objects({self.bucket!r}).ls()")
        return NotFound(f"object {name!r} is not in bucket {self.bucket!r}", f"check the name; nbnats.objects({self.bucket!r}).ls() lists the objects")

    async def _writable(self, conn: Connection) -> dict:
        si = await m.stream_info(conn, self.bucket)
        if (si.get("config") or {}).get("sealed"):
            raise JetStreamError(f"object store {self.bucket!r} is sealed: it can be read but not changed",
                                 "write to another bucket")
        return si

    async def _purge(self, conn: Connection, nuid: str) -> None:
        await api.request(conn, f"STREAM.PURGE.{self.stream}", {"filter": m.chunk_subject(self.bucket, nuid)},
                          what=f"removing old chunks from {self.bucket!r}", stream=self.stream)

    async def _purge_quietly(self, conn: Connection, nuid: str) -> None:
        try:
            await self._purge(conn, nuid)
        except NatsError:       # cleaning up after a failure: the failure is what the caller hears of
            pass

    async def _write_meta(self, conn: Connection, name: str, body: bytes) -> None:
        await publish.publish(conn, m.meta_subject(self.bucket, name), body, headers=ROLLUP, stream=self.stream)

    # -- writing
    def put(self, name: str, data: Any, description: str | None = None, headers: dict | None = None,
            progress: bool | None = None, timeout: float | None = None) -> ObjectInfo:
        """Store ``data`` as object ``name``, replacing any object of that name.

        ``data``: bytes; a path (``str`` or ``Path``) to a file; a readable
        binary file; or a pandas DataFrame (stored as Parquet with its
        dtypes). A progress bar shows for large objects (``progress=True``
        forces it). ``timeout`` bounds the whole put (default: grows with the size).

        >>> ob.put("notes.txt", b"hello")           # doctest: +SKIP
        >>> ob.put("model.bin", "out/model.bin")    # doctest: +SKIP
        >>> ob.put("sales.parquet", df)             # doctest: +SKIP
        """
        check_name(name)
        hdrs = m.header_values(headers) or {}
        source, size, closer = open_source(data, hdrs)
        conn = self.conn
        bar = progress_bar(size, f"put {name}", progress, PROGRESS_FROM, unit="B")
        chunk_size = min(m.CHUNK_SIZE, max(conn.nc.max_payload - 4096, 1024))
        try:
            return self._run(self._put(conn, name, source, description, hdrs or None, chunk_size, bar),
                             f"putting object {name!r}", timeout or WAIT + size / (10 * 1024 * 1024))
        finally:
            bar.close()
            if closer:
                closer.close()

    async def _put(self, conn, name, source, description, headers, chunk_size, bar) -> ObjectInfo:
        await self._writable(conn)
        before = await m.read_info(conn, self.bucket, name)
        nuid = m.new_nuid()
        try:
            size, chunks, digest = await write_chunks(conn, self.bucket, nuid, source, chunk_size=chunk_size, bar=bar)
            await self._write_meta(conn, name, m.meta_json(
                name=name, bucket=self.bucket, nuid=nuid, size=size, chunks=chunks, digest=m.digest_text(digest),
                description=description, headers=headers, chunk_size=chunk_size, mtime_ns=time.time_ns()))
        except BaseException as exc:
            await self._purge_quietly(conn, nuid)
            if isinstance(exc, NatsError) and getattr(exc, "err_code", None) in FULL:
                raise JetStreamError(f"object store {self.bucket!r} refused object {name!r}: {exc.what}",
                                     "the bucket is full: delete objects, or make the bucket again with a "
                                     "larger max_bytes") from None
            raise
        if before is not None and not before.deleted and before.nuid and before.nuid != nuid:
            await self._purge(conn, before.nuid)
        return await m.read_info(conn, self.bucket, name)

    def delete(self, name: str) -> None:
        """Delete an object: its chunks are purged, its metadata kept, marked deleted.

        >>> ob.delete("notes.txt")   # doctest: +SKIP
        """
        check_name(name)
        conn = self.conn

        async def go():
            await self._writable(conn)
            info = await m.read_info(conn, self.bucket, name)
            if info is None or info.deleted:
                raise self._missing(name, info)
            try:
                await self._write_meta(conn, name, m.meta_json(
                    name=name, bucket=self.bucket, nuid=info.nuid, size=0, chunks=0, digest="",
                    description=info.description, headers=info.headers, deleted=True, mtime_ns=time.time_ns()))
            finally:
                await self._purge(conn, info.nuid)

        self._run(go(), f"deleting object {name!r}")

    def seal(self) -> None:
        """Seal the bucket: from now on it can be read, never changed (nor unsealed).

        >>> ob.seal(); ob.status()["sealed"]   # doctest: +SKIP
        True
        """
        conn = self.conn

        async def go():
            cfg = {**(await m.stream_info(conn, self.bucket))["config"], "sealed": True}
            await api.request(conn, f"STREAM.UPDATE.{self.stream}", cfg, what=f"sealing object store {self.bucket!r}",
                              stream=self.stream)

        self._run(go(), f"sealing object store {self.bucket!r}")

    # -- reading
    def info(self, name: str) -> ObjectInfo:
        """The metadata of object ``name``.

        >>> ob.info("sales.parquet").size   # doctest: +SKIP
        """
        check_name(name)
        info = self._run(m.read_info(self.conn, self.bucket, name), f"reading object {name!r}")
        if info is None or info.deleted:
            raise self._missing(name, info)
        return info

    def __contains__(self, name: str) -> bool:
        try:
            self.info(name)
        except NotFound:
            return False
        return True

    def get(self, name: str, out: str | os.PathLike | None = None, progress: bool | None = None) -> bytes | Path:
        """The bytes of object ``name``; with ``out``, written to that file instead (its Path returned).

        Size and SHA-256 digest are checked (a mismatch is an error); a file
        is only written when they match. A link to another object is followed.

        >>> ob.get("notes.txt")                       # doctest: +SKIP
        b'hello'
        >>> ob.get("model.bin", out="model.bin")      # doctest: +SKIP
        """
        info = self.info(name)
        if info.link:
            link = info.link
            if not link.get("name"):
                raise NotFound(f"object {name!r} links to a whole bucket ({link.get('bucket')!r})",
                               f"open that bucket with nbnats.objects({link.get('bucket')!r})")
            return ObjectStore(link["bucket"], self.connection).get(link["name"], out, progress)
        target = Path(out) if out is not None else None
        sink = tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", delete=False) \
            if target is not None else io.BytesIO()
        bar = progress_bar(info.size, f"get {name}", progress, PROGRESS_FROM, unit="B")
        try:
            receive(self.conn, info, sink, bar)
        except BaseException:
            if target is not None:
                sink.close()
                os.unlink(sink.name)
            raise
        finally:
            bar.close()
        if target is None:
            return sink.getvalue()
        sink.close()
        os.replace(sink.name, target)
        return target

    def get_frame(self, name: str, progress: bool | None = None) -> pd.DataFrame:
        """A DataFrame stored with :meth:`put` (Parquet), with its dtypes.

        >>> ob.get_frame("sales.parquet")   # doctest: +SKIP
        """
        return read_frame(self.get(name, progress=progress), name)

    def ls(self, deleted: bool = False) -> pd.DataFrame:
        """The objects: name, size, chunks, modified, content_type, description, digest (and ``deleted``).

        >>> ob.ls()   # doctest: +SKIP
        """
        conn = self.conn

        async def go():
            await m.stream_info(conn, self.bucket)
            return await ordered.read_all(conn, self.stream, [f"$O.{self.bucket}.M.>"], deliver="last_per_subject")

        infos = []
        for subject, _, ts, data, _ in self._run(go(), f"listing bucket {self.bucket!r}", 60):
            try:
                info = m.parse_meta(data, subject, ts)
            except JetStreamError:        # one unreadable entry must not hide the others
                continue
            if deleted or not info.deleted:
                infos.append(info.as_dict())
        cols = LS_COLUMNS + (["deleted"] if deleted else [])
        df = listing(infos, cols)
        df["modified"] = pd.to_datetime(df["modified"], utc=True)
        return df.sort_values("name", ignore_index=True)

    def watch(self, updates_only: bool = False, limit: int = 10_000):
        """Follow puts and deletes live in the background: ``w.df`` of the changes, ``w.stop()``.

        It starts with each object's current metadata (``updates_only=True``:
        nothing old); listed by ``nbnats.background.pieces()``.

        >>> w = ob.watch()   # doctest: +SKIP
        """
        from nbnats.objects.watch import start_watch
        return start_watch(self, updates_only=updates_only, limit=limit)

    def status(self) -> dict:
        """The bucket's settings and size: bucket, bytes, messages, ttl, replicas, storage, sealed …

        >>> ob.status()["bytes"]   # doctest: +SKIP
        """
        return m.store_row(self._run(m.stream_info(self.conn, self.bucket), f"reading bucket {self.bucket!r}"))

    def __repr__(self) -> str:
        return f"<nbnats.ObjectStore {self.bucket!r}>"

    def _repr_html_(self) -> str:
        try:
            row, listing = self.status(), self.ls()
        except NatsError as exc:
            return f"<div>{html.escape(repr(self))} — {html.escape(str(exc))}</div>"
        table = listing.head(20).to_html(index=False, max_cols=6) if len(listing) else "<i>no objects</i>"
        title = f"object store <b>{html.escape(self.bucket)}</b> · {len(listing)} object(s)"
        return info_table(title, row) + table
