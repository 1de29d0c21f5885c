"""Object-store buckets: open or create, list, remove — streams made as nats.go makes them.

>>> ob = objects("reports", create=True, ttl="7d", max_bytes="1GB")   # doctest: +SKIP
>>> object_stores()[["bucket", "bytes"]]                               # doctest: +SKIP
>>> delete_object_store("reports")                                     # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data import units, validate
from nbnats.engine import api
from nbnats.errors import NotFound, ValidationError
from nbnats.objects.meta import no_bucket, store_row, stream_info, stream_name
from nbnats.jetstream.display import listing
from nbnats.objects.store import ObjectStore
from nbnats.runtime import loop
from nbnats.runtime.connection import current

WAIT = api.TIMEOUT + 2
COLUMNS = ["bucket", "bytes", "messages", "ttl", "replicas", "storage", "sealed", "description", "created"]


def stream_config(bucket: str, *, ttl_ns: int | None = None, max_bytes: int | None = None, replicas: int = 1,
                  storage: str | None = None, description: str | None = None) -> dict:
    """The stream of a bucket, configured as nats.go, nats.js and nats-py configure it.

    >>> stream_config("files")["subjects"]
    ['$O.files.C.>', '$O.files.M.>']
    """
    cfg: dict[str, Any] = {
        "name": stream_name(bucket), "subjects": [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        "retention": "limits", "max_age": ttl_ns or 0, "max_bytes": max_bytes if max_bytes else -1,
        "storage": storage or "file", "num_replicas": replicas, "discard": "new",
        "allow_rollup_hdrs": True, "allow_direct": True,
    }
    if description:
        cfg["description"] = description
    return cfg


def objects(bucket: str, create: bool = False, *, ttl: Any = None, max_bytes: Any = None,
            replicas: int | None = None, storage: str | None = None, description: str | None = None,
            connection: str | None = None) -> ObjectStore:
    """Open an object-store bucket (``create=True`` makes it if missing).

    ``ttl`` (``"7d"``, seconds) and ``max_bytes`` (``"1GB"``, bytes) apply when it is created.

    >>> ob = nbnats.objects("reports", create=True, ttl="30d", max_bytes="512MB")   # doctest: +SKIP
    """
    validate.bucket(bucket, "object store")
    ttl_ns = units.nanos(ttl, "ttl")
    max_bytes = units.size(max_bytes, "max_bytes")
    if replicas is not None and not (isinstance(replicas, int) and 1 <= replicas <= 5):
        raise ValidationError(f"replicas must be between 1 and 5, not {replicas!r}", "pass e.g. replicas=3")
    if storage is not None and storage not in ("file", "memory"):
        raise ValidationError(f"storage must be 'file' or 'memory', not {storage!r}", "pass storage='file'")
    conn = current(connection)
    store = ObjectStore(bucket, conn.name)

    async def open_or_create():
        try:
            await stream_info(conn, bucket)
            return
        except NotFound:
            if not create:
                raise
        cfg = stream_config(bucket, ttl_ns=ttl_ns, max_bytes=max_bytes, replicas=replicas or 1,
                            storage=storage, description=description)
        await api.request(conn, f"STREAM.CREATE.{cfg['name']}", cfg, what=f"creating object store {bucket!r}",
                          stream=cfg["name"])

    loop.run(open_or_create(), WAIT, f"opening object store {bucket!r}")
    return store


def object_stores(connection: str | None = None) -> pd.DataFrame:
    """Every object-store bucket: bucket, bytes, messages, ttl, replicas, storage, sealed, description, created.

    >>> nbnats.object_stores()   # doctest: +SKIP
    """
    conn = current(connection)
    infos = loop.run(api.paged(conn, "STREAM.LIST", "streams", what="listing object stores"), 30,
                     "listing object stores")
    rows = [store_row(si) for si in infos if (si.get("config") or {}).get("name", "").startswith("OBJ_")]
    return listing(rows, COLUMNS).sort_values("bucket", ignore_index=True)


def delete_object_store(bucket: str, connection: str | None = None) -> None:
    """Remove an object-store bucket and every object in it.

    >>> nbnats.delete_object_store("reports")   # doctest: +SKIP
    """
    validate.bucket(bucket, "object store")
    conn = current(connection)
    stream = stream_name(bucket)

    async def go():
        try:
            await api.request(conn, f"STREAM.DELETE.{stream}", what=f"removing object store {bucket!r}",
                              stream=stream)
        except NotFound:
            raise no_bucket(bucket) from None

    loop.run(go(), WAIT, f"removing object store {bucket!r}")
