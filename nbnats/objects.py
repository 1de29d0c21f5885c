"""The object store: files, bytes and DataFrames of any size in a JetStream bucket.

An object is cut into chunks (128 KiB, well under max_payload) stored in the
stream ``OBJ_<bucket>``, plus one metadata message (name, size, SHA-256
digest). DataFrames are stored as Parquet, so their dtypes come back intact.

>>> ob = nbnats.objects("reports", create=True)         # doctest: +SKIP
>>> ob.put("sales.parquet", df)                          # doctest: +SKIP
>>> ob.get_frame("sales.parquet").dtypes.equals(df.dtypes)   # doctest: +SKIP
True
>>> ob.put("raw.bin", b"\\x00" * 5_000_000)              # doctest: +SKIP
>>> ob.ls()[["name", "size"]]                            # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import os
import queue
import tempfile
from pathlib import Path
from typing import Any

import nats.js.errors as jse
import orjson
import pandas as pd
from nats.js import api

from nbnats.runtime import loop
from nbnats.data import validate
from nbnats.runtime.connection import Connection, current
from nbnats.errors import CodecError, JetStreamError, NatsError, NotFound, Timeout, ValidationError
from nbnats.kv.bucket import WAIT, _info_table, _streams_with_prefix, ack_meta, guarded, scan, seconds
from nbnats.progress import progress_bar

PARQUET = "application/vnd.apache.parquet"
PROGRESS_FROM = 8 * 1024 * 1024          # bytes: bars show for objects this large
IDLE = 30.0                              # seconds without a chunk before a get gives up


def _meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def _name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"object name {name!r} is empty or not text",
                              "name the object, e.g. 'sales.parquet'")
    return name


def _header_values(headers: dict | None) -> dict | None:
    """Object headers as other clients write them: each value a list of strings."""
    if not headers:
        return None
    validate.headers({k: v if isinstance(v, str) else ",".join(map(str, v)) for k, v in headers.items()})
    return {str(k): [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for k, v in headers.items()}


class ObjectInfo:
    """An object's metadata: ``name``, ``size``, ``chunks``, ``modified`` (UTC), ``digest``,
    ``description``, ``headers``, ``content_type``, ``deleted``, ``bucket``.

    >>> ObjectInfo({"name": "a.txt", "bucket": "b", "size": 3, "chunks": 1}).size
    3
    """

    def __init__(self, meta: dict, modified_ns: int | None = None):
        self.meta = meta
        self.name: str = meta.get("name", "")
        self.bucket: str = meta.get("bucket", "")
        self.nuid: str = meta.get("nuid", "")
        self.size: int = int(meta.get("size") or 0)
        self.chunks: int = int(meta.get("chunks") or 0)
        self.digest: str = meta.get("digest") or ""
        self.deleted: bool = bool(meta.get("deleted"))
        self.description: str | None = meta.get("description") or None
        self.headers: dict | None = meta.get("headers") or None
        stamp = modified_ns if modified_ns is not None else meta.get("mtime") or None
        self.modified = pd.Timestamp(stamp, unit="ns", tz="UTC") if isinstance(stamp, int) else (
            pd.Timestamp(stamp).tz_convert("UTC") if stamp else None)

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, if the writer set one."""
        for k, v in (self.headers or {}).items():
            if k.lower() == "content-type":
                return v[0] if isinstance(v, list) and v else (v or None)
        return None

    @property
    def link(self) -> dict | None:
        """``{"bucket": …, "name": …}`` when this object is a link to another."""
        return ((self.meta.get("options") or {}).get("link")) or None

    def as_dict(self) -> dict:
        """The row ``ls()`` shows for this object.

        >>> ObjectInfo({"name": "a", "size": 1})
        <ObjectInfo /a 1 bytes in 0 chunk(s)>
        """
        return {"name": self.name, "size": self.size, "chunks": self.chunks, "modified": self.modified,
                "content_type": self.content_type, "description": self.description, "digest": self.digest,
                "deleted": self.deleted}

    def __repr__(self) -> str:
        return f"<ObjectInfo {self.bucket}/{self.name} {self.size:,} bytes in {self.chunks} chunk(s)>"

    def _repr_html_(self) -> str:
        return _info_table(f"object <b>{html.escape(self.name)}</b> in bucket {html.escape(self.bucket)}",
                           {k: v for k, v in self.as_dict().items() if k != "name"})


class _ProgressReader(io.RawIOBase):
    """A readable that feeds nats-py's chunker and moves a progress bar (worker thread)."""

    def __init__(self, raw, bar):
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self.raw.readinto(b)
        if n:
            self.bar.update(n)
        return n or 0


class ObjectStore:
    """An object-store bucket; see :func:`objects`."""

    def __init__(self, bucket: str, connection: str | None = None):
        self.bucket = bucket
        self.stream = f"OBJ_{bucket}"
        self.connection = connection

    @property
    def conn(self) -> Connection:
        """The live connection used for this bucket."""
        return current(self.connection)

    def _store(self, conn: Connection):
        from nats.js.object_store import ObjectStore as NatsObjectStore
        return NatsObjectStore(name=self.bucket, stream=self.stream, js=conn.js)

    async def _info(self, conn: Connection, name: str) -> ObjectInfo | None:
        try:
            msg = await conn.js.get_last_msg(self.stream, _meta_subject(self.bucket, name))
        except jse.NotFoundError as exc:
            if exc.err_code == 10059:       # stream not found: the bucket is gone
                raise self._no_bucket() from None
            return None
        try:
            meta = orjson.loads(msg.data)
        except orjson.JSONDecodeError:
            raise JetStreamError(f"the metadata of object {name!r} is not valid JSON",
                                 "write the object again") from None
        return ObjectInfo(meta, pd.Timestamp(msg.time).value if msg.time else None)

    def _missing(self, name: str, info: ObjectInfo | None) -> NotFound:
        if info is not None and info.deleted:
            return NotFound(f"object {name!r} was deleted from bucket {self.bucket!r}",
                            "put it again, or list what is there with ob.ls()")
        return NotFound(f"object {name!r} is not in bucket {self.bucket!r}",
                        "check the name; ob.ls() lists the objects")

    # -- writing
    def put(self, name: str, data: Any, description: str | None = None, headers: dict | None = None,
            progress: bool | None = None, timeout: float | None = None) -> ObjectInfo:
        """Store ``data`` as object ``name``, replacing any object of that name.

        ``data``: bytes; a path (``str`` or ``Path``) to a file; a readable
        binary file; or a pandas DataFrame (stored as Parquet with its
        dtypes). A progress bar shows for large objects (``progress=True``
        forces it).

        >>> ob.put("notes.txt", b"hello")           # doctest: +SKIP
        >>> ob.put("model.bin", "out/model.bin")    # doctest: +SKIP
        >>> ob.put("sales.parquet", df)             # doctest: +SKIP
        """
        _name(name)
        hdrs = _header_values(headers) or {}
        source, size, closer = self._source(data, hdrs)
        conn = self.conn
        bar = progress_bar(size, f"put {name}", progress, PROGRESS_FROM, unit="B")
        reader = _ProgressReader(source, bar)
        meta = api.ObjectMeta(name=name, description=description, headers=hdrs or None,
                              options=api.ObjectMetaOptions(max_chunk_size=128 * 1024))

        async def go():
            try:
                await conn.js.stream_info(self.stream)
            except jse.NotFoundError:
                raise self._no_bucket() from None
            await self._store(conn).put(name, reader, meta=meta)
            return await self._info(conn, name)

        try:
            wait = timeout or WAIT + size / (20 * 1024 * 1024)
            return loop.run(guarded(go(), f"putting object {name!r} into {self.bucket!r}", conn), wait,
                            f"putting object {name!r}")
        finally:
            bar.close()
            if closer:
                closer.close()

    def _source(self, data: Any, hdrs: dict) -> tuple[Any, int, Any]:
        """(a binary readable, its size, what to close after)."""
        if isinstance(data, pd.DataFrame):
            buf = io.BytesIO()
            try:
                data.to_parquet(buf, engine="pyarrow")
            except Exception as exc:
                raise CodecError(f"this DataFrame cannot be stored as Parquet ({exc})",
                                 "convert mixed-type object columns to str first, e.g. df[col].astype(str)") from None
            hdrs.setdefault("Content-Type", [PARQUET])
            buf.seek(0)
            return buf, buf.getbuffer().nbytes, None
        if isinstance(data, (bytes, bytearray, memoryview)):
            raw = bytes(data)
            return io.BytesIO(raw), len(raw), None
        if isinstance(data, (str, os.PathLike)):
            path = Path(data)
            if not path.is_file():
                hint = ("a str is read as a file path; pass bytes (text.encode()) to store text"
                        if isinstance(data, str) else "check the path")
                raise NotFound(f"there is no file {str(path)!r}", hint)
            f = open(path, "rb")
            return f, path.stat().st_size, f
        if hasattr(data, "readinto") or hasattr(data, "read"):
            raw = data.read()
            if isinstance(raw, str):
                raw = raw.encode()
            return io.BytesIO(raw), len(raw), None
        raise CodecError(f"cannot store a {type(data).__name__} as an object",
                         "pass bytes, a file path, a binary file or a pandas DataFrame")

    def delete(self, name: str) -> None:
        """Delete an object (its chunks are purged).

        >>> ob.delete("notes.txt")   # doctest: +SKIP
        """
        _name(name)
        conn = self.conn

        async def go():
            info = await self._info(conn, name)
            if info is None or info.deleted:
                raise self._missing(name, info)
            await self._store(conn).delete(name)

        loop.run(guarded(go(), f"deleting object {name!r}", conn), WAIT + 2, f"deleting object {name!r}")

    # -- reading
    def info(self, name: str) -> ObjectInfo:
        """The metadata of object ``name``.

        >>> ob.info("sales.parquet").size   # doctest: +SKIP
        """
        _name(name)
        conn = self.conn
        info = loop.run(guarded(self._info(conn, name), f"reading object {name!r}", conn), WAIT + 2,
                        f"reading object {name!r}")
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

        The SHA-256 digest is checked; a file is only written when it matches.

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
            self._receive(info, sink, bar)
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

    def _receive(self, info: ObjectInfo, sink, bar) -> None:
        """Stream the chunks: the loop thread queues them, this thread writes and hashes."""
        if info.size == 0:
            return
        conn = self.conn
        chunks: queue.SimpleQueue = queue.SimpleQueue()

        async def on_chunk(msg):
            chunks.put((msg.data, ack_meta(msg.reply)[2]))

        async def subscribe():
            sub = await conn.js.subscribe(f"$O.{self.bucket}.C.{info.nuid}", stream=self.stream, cb=on_chunk,
                                          ordered_consumer=True, idle_heartbeat=2.0)
            ci = await sub.consumer_info()
            if ci.num_pending == 0 and not (ci.delivered and ci.delivered.consumer_seq):
                await _quietly(sub.unsubscribe())
                raise JetStreamError(f"the chunks of object {info.name!r} are missing from bucket {self.bucket!r}",
                                     "write the object again")
            return sub

        sub = loop.run(guarded(subscribe(), f"reading object {info.name!r}", conn), WAIT + 2,
                       f"reading object {info.name!r}")
        digest, got = hashlib.sha256(), 0
        try:
            while True:
                try:
                    data, pending = chunks.get(timeout=IDLE)
                except queue.Empty:
                    raise Timeout(f"object {info.name!r} stopped arriving after {got:,} of {info.size:,} bytes",
                                  "check the connection and try again") from None
                sink.write(data)
                digest.update(data)
                got += len(data)
                bar.update(len(data))
                if pending == 0:
                    break
        finally:
            loop.run(_quietly(sub.unsubscribe()), WAIT, "closing the object reader")
        want = info.digest.split("=", 1)[-1] if info.digest else ""
        if got != info.size or (want and base64.urlsafe_b64decode(want + "=" * (-len(want) % 4)) != digest.digest()):
            raise JetStreamError(f"object {info.name!r} came back damaged ({got:,} of {info.size:,} bytes, "
                                 f"or its SHA-256 digest does not match)", "write the object again")

    def get_frame(self, name: str, progress: bool | None = None) -> pd.DataFrame:
        """A DataFrame stored with :meth:`put` (Parquet), with its dtypes.

        >>> ob.get_frame("sales.parquet")   # doctest: +SKIP
        """
        return read_frame(self.get(name, progress=progress), name)

    def ls(self, deleted: bool = False) -> pd.DataFrame:
        """The objects: name, size, chunks, modified, content_type, description, digest.

        >>> ob.ls()   # doctest: +SKIP
        """
        conn = self.conn

        async def go():
            try:
                await conn.js.stream_info(self.stream)
            except jse.NotFoundError:
                raise self._no_bucket() from None
            return await scan(conn, self.stream, f"$O.{self.bucket}.M.>")

        rows = loop.run(guarded(go(), f"listing bucket {self.bucket!r}", conn), 60, f"listing bucket {self.bucket!r}")
        infos = []
        for _, _, ts, data, _ in rows:
            try:
                info = ObjectInfo(orjson.loads(data), ts)
            except orjson.JSONDecodeError:
                continue
            if deleted or not info.deleted:
                infos.append(info.as_dict())
        cols = ["name", "size", "chunks", "modified", "content_type", "description", "digest"] + (
            ["deleted"] if deleted else [])
        df = pd.DataFrame(infos, columns=cols + ([] if deleted else ["deleted"]))[cols]
        df["modified"] = pd.to_datetime(df["modified"], utc=True)
        return df.sort_values("name", ignore_index=True)

    def _no_bucket(self) -> NotFound:
        return NotFound(f"object store {self.bucket!r} does not exist",
                        f"create it with nbnats.objects({self.bucket!r}, create=True) or %nats obj add {self.bucket}")

    def status(self) -> dict:
        """The bucket's settings and size: bucket, bytes, ttl, replicas, storage, sealed …

        >>> ob.status()["bytes"]   # doctest: +SKIP
        """
        conn = self.conn

        async def go():
            try:
                return await conn.js.stream_info(self.stream)
            except jse.NotFoundError:
                raise self._no_bucket() from None

        si = loop.run(guarded(go(), f"reading bucket {self.bucket!r}", conn), WAIT + 2, f"reading bucket {self.bucket!r}")
        return _store_row(si)

    def __repr__(self) -> str:
        return f"<nbnats.ObjectStore {self.bucket!r}>"

    def _repr_html_(self) -> str:
        try:
            row, listing = self.status(), self.ls()
        except NatsError as exc:
            return f"<div>{html.escape(repr(self))} — {html.escape(str(exc))}</div>"
        table = listing.head(20).to_html(index=False, max_cols=6) if len(listing) else "<i>no objects</i>"
        return _info_table(f"object store <b>{html.escape(self.bucket)}</b> · {len(listing)} object(s)", row) + table


def is_parquet(data: bytes) -> bool:
    """True when ``data`` is a Parquet file (its magic bytes).

    >>> is_parquet(b"PAR1...PAR1"), is_parquet(b"hello")
    (True, False)
    """
    return data[:4] == b"PAR1" and data[-4:] == b"PAR1"


def read_frame(data: bytes, name: str = "object") -> pd.DataFrame:
    """A DataFrame from Parquet bytes, with the dtypes it was written with.

    >>> read_frame(ob.get("sales.parquet"))   # doctest: +SKIP
    """
    if not is_parquet(data):
        raise CodecError(f"object {name!r} is not a Parquet file", "read its bytes with ob.get(name)")
    return pd.read_parquet(io.BytesIO(data), engine="pyarrow")


def _store_row(si: api.StreamInfo) -> dict:
    c, s = si.config, si.state
    return {"bucket": c.name[4:], "bytes": s.bytes, "messages": s.messages,
            "ttl": pd.Timedelta(seconds=c.max_age) if c.max_age else pd.NaT, "replicas": c.num_replicas,
            "storage": c.storage.value if hasattr(c.storage, "value") else c.storage, "sealed": bool(c.sealed),
            "description": c.description, "created": pd.Timestamp(si.created) if si.created else pd.NaT}


async def _quietly(coro) -> None:
    try:
        await coro
    except Exception:
        pass


def objects(bucket: str, create: bool = False, *, ttl: Any = None, max_bytes: int | None = None,
            replicas: int | None = None, storage: str | None = None, description: str | None = None,
            connection: str | None = None) -> ObjectStore:
    """Open an object-store bucket (``create=True`` makes it if missing).

    >>> ob = nbnats.objects("reports", create=True)   # doctest: +SKIP
    """
    validate.bucket(bucket)
    ttl = seconds(ttl)
    if replicas is not None and not (isinstance(replicas, int) and 1 <= replicas <= 5):
        raise ValidationError(f"replicas must be between 1 and 5, not {replicas!r}", "pass e.g. replicas=3")
    if storage is not None and storage not in ("file", "memory"):
        raise ValidationError(f"storage must be 'file' or 'memory', not {storage!r}", "pass storage='file'")
    conn = current(connection)
    store = ObjectStore(bucket, conn.name)

    async def open_or_create():
        try:
            await conn.js.stream_info(store.stream)
            return
        except jse.NotFoundError:
            if not create:
                raise store._no_bucket() from None
        cfg = api.ObjectStoreConfig(bucket=bucket, description=description, ttl=ttl, max_bytes=max_bytes,
                                    replicas=replicas or 1,
                                    storage=api.StorageType(storage) if storage else None)
        await conn.js.create_object_store(bucket, config=cfg)

    loop.run(guarded(open_or_create(), f"opening object store {bucket!r}", conn), WAIT + 2,
             f"opening object store {bucket!r}")
    return store


def object_stores(connection: str | None = None) -> pd.DataFrame:
    """Every object-store bucket: bucket, bytes, messages, ttl, replicas, storage, sealed, created.

    >>> nbnats.object_stores()   # doctest: +SKIP
    """
    return pd.DataFrame([_store_row(si) for si in _streams_with_prefix("OBJ_", connection)],
                        columns=["bucket", "bytes", "messages", "ttl", "replicas", "storage", "sealed",
                                 "description", "created"])


def delete_object_store(bucket: str, connection: str | None = None) -> None:
    """Remove an object-store bucket and every object in it.

    >>> nbnats.delete_object_store("reports")   # doctest: +SKIP
    """
    validate.bucket(bucket)
    conn = current(connection)
    store = ObjectStore(bucket, conn.name)

    async def go():
        try:
            await conn.js.stream_info(store.stream)
        except jse.NotFoundError:
            raise store._no_bucket() from None
        await conn.js.delete_object_store(bucket)

    loop.run(guarded(go(), f"removing object store {bucket!r}", conn), WAIT + 2, f"removing object store {bucket!r}")


__all__ = ["ObjectStore", "ObjectInfo", "objects", "object_stores", "delete_object_store", "read_frame"]
