"""What an object is, as every NATS client writes it: names, subjects, the metadata JSON, the digest.

The layout is the one nats.go, nats.js and nats-py share: the bucket ``B`` is
the stream ``OBJ_B``; an object's chunks go to ``$O.B.C.<nuid>`` (a fresh nuid
for every put) and its metadata, one JSON message kept by ``Nats-Rollup:
sub``, to ``$O.B.M.<base64url(name)>``.

>>> meta_subject("files", "a.txt")
'$O.files.M.YS50eHQ='
>>> digest_text(bytes(32))
'SHA-256=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='
"""

from __future__ import annotations

import base64
import html
import secrets
import string
from typing import Any

import orjson
import pandas as pd

from nbnats.data import units, validate
from nbnats.engine import api, get
from nbnats.errors import JetStreamError, NotFound, ValidationError
from nbnats.kv.frame import info_table

CHUNK_SIZE = 128 * 1024            # what the other clients write by default
DIGEST_PREFIX = "SHA-256="
_NUID_ALPHABET = string.digits + string.ascii_letters


def stream_name(bucket: str) -> str:
    """The stream that holds a bucket.

    >>> stream_name("files")
    'OBJ_files'
    """
    return f"OBJ_{bucket}"


def meta_subject(bucket: str, name: str) -> str:
    """The subject of an object's metadata (``$O.<bucket>.M.<base64url(name)>``).

    >>> meta_subject("files", "report.pdf")
    '$O.files.M.cmVwb3J0LnBkZg=='
    """
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


def chunk_subject(bucket: str, nuid: str) -> str:
    """The subject of an object's chunks.

    >>> chunk_subject("files", "N1")
    '$O.files.C.N1'
    """
    return f"$O.{bucket}.C.{nuid}"


def new_nuid() -> str:
    """A fresh 22-character id for one put's chunks (as nats.go's nuid: base62).

    >>> len(new_nuid())
    22
    """
    return "".join(secrets.choice(_NUID_ALPHABET) for _ in range(22))


def digest_text(digest: bytes) -> str:
    """A SHA-256 digest as the metadata writes it (``SHA-256=<base64url>``).

    >>> digest_text(bytes([255] * 32))[:12]
    'SHA-256=____'
    """
    return DIGEST_PREFIX + base64.urlsafe_b64encode(digest).decode()


def digest_bytes(text: str) -> bytes | None:
    """The 32 bytes a metadata digest names (padded or not, any case of prefix), or None when absent.

    >>> digest_bytes("SHA-256=" + "_" * 43) == bytes([255] * 32), digest_bytes("")
    (True, None)
    """
    if not text:
        return None
    value = text.split("=", 1)[1] if text.upper().startswith(DIGEST_PREFIX) else text
    value = value.rstrip("=")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except ValueError:
        return None


def check_name(name: Any) -> str:
    """An object name: any non-empty text.

    >>> check_name("sales.parquet")
    'sales.parquet'
    """
    if not isinstance(name, str) or not name.strip():
        raise ValidationError(f"object name {name!r} is empty or not text", "name the object, e.g. 'sales.parquet'")
    return name


def header_values(headers: dict | None) -> dict | None:
    """Object headers as the other clients write them: each value a list of strings.

    >>> header_values({"Owner": "ada", "Tags": ["a", "b"]})
    {'Owner': ['ada'], 'Tags': ['a', 'b']}
    """
    if not headers:
        return None
    validate.headers({k: v if isinstance(v, str) else ",".join(map(str, v)) for k, v in headers.items()})
    return {str(k): [str(x) for x in (v if isinstance(v, (list, tuple)) else [v])] for k, v in headers.items()}


def meta_json(*, name: str, bucket: str, nuid: str, size: int, chunks: int, digest: str,
              description: str | None = None, headers: dict | None = None, chunk_size: int = CHUNK_SIZE,
              deleted: bool = False, mtime_ns: int | None = None, link: dict | None = None) -> bytes:
    """The metadata message, fields as nats.go orders them (empty ones left out, as it does).

    >>> orjson.loads(meta_json(name="a", bucket="b", nuid="n", size=1, chunks=1, digest="SHA-256=x"))["options"]
    {'max_chunk_size': 131072}
    """
    meta: dict[str, Any] = {"name": name}
    if description:
        meta["description"] = description
    if headers:
        meta["headers"] = headers
    options: dict[str, Any] = {"max_chunk_size": chunk_size}
    if link:
        options["link"] = link
    meta["options"] = options
    meta.update(bucket=bucket, nuid=nuid, size=size,
                mtime=units.rfc3339(mtime_ns) if mtime_ns else "0001-01-01T00:00:00Z", chunks=chunks)
    if digest:
        meta["digest"] = digest
    if deleted:
        meta["deleted"] = True
    return orjson.dumps(meta)


class ObjectInfo:
    """An object's metadata: ``name``, ``size``, ``chunks``, ``modified`` (UTC), ``digest``,
    ``description``, ``headers``, ``content_type``, ``deleted``, ``bucket``, ``nuid``.

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
        stamp = modified_ns if modified_ns else units.parse_time(meta.get("mtime") or None)
        self.modified = pd.Timestamp(stamp, unit="ns", tz="UTC") if stamp else None

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, if the writer set one.

        >>> ObjectInfo({"headers": {"Content-Type": ["text/csv"]}}).content_type
        'text/csv'
        """
        for k, v in (self.headers or {}).items():
            if k.lower() == "content-type":
                return v[0] if isinstance(v, list) and v else (v or None)
        return None

    @property
    def link(self) -> dict | None:
        """``{"bucket": …, "name": …}`` when this object is a link to another.

        >>> ObjectInfo({"options": {"link": {"bucket": "b", "name": "x"}}}).link
        {'bucket': 'b', 'name': 'x'}
        """
        return ((self.meta.get("options") or {}).get("link")) or None

    def as_dict(self) -> dict:
        """The row ``ls()`` shows for this object.

        >>> ObjectInfo({"name": "a", "size": 1}).as_dict()["size"]
        1
        """
        return {"name": self.name, "size": self.size, "chunks": self.chunks, "modified": self.modified,
                "content_type": self.content_type, "description": self.description, "digest": self.digest,
                "deleted": self.deleted}

    def __repr__(self) -> str:
        return f"<ObjectInfo {self.bucket}/{self.name} {self.size:,} bytes in {self.chunks} chunk(s)>"

    def _repr_html_(self) -> str:
        return info_table(f"object <b>{html.escape(self.name)}</b> in bucket {html.escape(self.bucket)}",
                          {k: v for k, v in self.as_dict().items() if k != "name"})


def parse_meta(data: bytes, name: str, modified_ns: int | None = None) -> ObjectInfo:
    """An :class:`ObjectInfo` from a metadata message, or a plain error when it is not JSON.

    >>> parse_meta(b'{"name": "a", "size": 2}', "a").size
    2
    """
    try:
        meta = orjson.loads(data)
    except orjson.JSONDecodeError:
        meta = None
    if not isinstance(meta, dict):
        raise JetStreamError(f"the metadata of object {name!r} is not valid JSON", "write the object again")
    return ObjectInfo(meta, modified_ns)


def no_bucket(bucket: str) -> NotFound:
    """The error for a bucket that does not exist.

    >>> no_bucket("x").what
    "object store 'x' does not exist"
    """
    return NotFound(f"object store {bucket!r} does not exist",
                    f"create it with nbnats.objects({bucket!r}, create=True); nbnats.object_stores() lists them")


async def stream_info(conn, bucket: str) -> dict:
    """The bucket's stream info (``config``, ``state`` …), or :func:`no_bucket` (loop thread).

    >>> (await stream_info(conn, "files"))["state"]["messages"]   # doctest: +SKIP
    4
    """
    stream = stream_name(bucket)
    try:
        return await api.request(conn, f"STREAM.INFO.{stream}", what=f"reading object store {bucket!r}",
                                 stream=stream)
    except NotFound:
        raise no_bucket(bucket) from None


async def read_info(conn, bucket: str, name: str) -> ObjectInfo | None:
    """The metadata of object ``name`` (deleted ones too), None when there is none (loop thread).

    >>> (await read_info(conn, "files", "a.txt")).size   # doctest: +SKIP
    5
    """
    try:
        stored = await get.get(conn, stream_name(bucket), last_for=meta_subject(bucket, name))
    except NotFound:
        await stream_info(conn, bucket)         # the bucket itself may be gone
        return None
    return parse_meta(stored.data, name, stored.time_ns)


def store_row(si: dict) -> dict:
    """A bucket's settings and size from its stream info.

    >>> store_row({"config": {"name": "OBJ_f", "max_age": 3600 * 10**9}, "state": {}})["ttl"]
    Timedelta('0 days 01:00:00')
    """
    c, s = si.get("config") or {}, si.get("state") or {}
    created = units.parse_time(si.get("created"))
    return {"bucket": c.get("name", "")[4:], "bytes": s.get("bytes", 0), "messages": s.get("messages", 0),
            "ttl": pd.Timedelta(c["max_age"], unit="ns") if c.get("max_age") else pd.NaT,
            "replicas": c.get("num_replicas", 1), "storage": c.get("storage", "file"),
            "sealed": bool(c.get("sealed")), "description": c.get("description"),
            "created": pd.Timestamp(created, unit="ns", tz="UTC") if created else pd.NaT}
