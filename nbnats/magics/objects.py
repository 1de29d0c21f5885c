"""``%nats obj …`` verbs: thin faces over :mod:`nbnats.objects`.

>>> %nats obj add reports                         # doctest: +SKIP
>>> %nats obj put reports data/sales.csv          # doctest: +SKIP
>>> %nats obj put reports df --name sales.parquet  # a DataFrame variable   # doctest: +SKIP
>>> df = %nats obj get reports sales.parquet      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from nbnats.errors import NatsError, NotFound
from nbnats.objects import delete_object_store, is_parquet, object_stores, objects, read_frame

from nbnats.magics.core import duration
from nbnats.magics.registry import arg, group, verb

group("obj", "the object store: ls, add, rm, put, get, info, seal, watch")

BUCKET = arg("bucket", help="the object-store bucket")


@verb("obj ls", "list object stores, or the objects in one", arg("bucket", nargs="?", default=None),
      arg("--deleted", action="store_true", help="include deleted objects"))
def _ls(a, ctx):
    if a.bucket is None:
        return object_stores()
    return objects(a.bucket).ls(deleted=a.deleted)


@verb("obj add", "create an object store (or open it if it exists)", BUCKET,
      arg("--ttl", type=duration, default=None, help="objects expire after this long (1h, 7d)"),
      arg("--max-bytes", default=None, help="bucket size limit (1000000, 512MB, 1GB)"),
      arg("--replicas", type=int, default=None), arg("--storage", choices=["file", "memory"], default=None),
      arg("--description", default=None))
def _add(a, ctx):
    return objects(a.bucket, create=True, ttl=a.ttl, max_bytes=a.max_bytes, replicas=a.replicas,
                   storage=a.storage, description=a.description)


@verb("obj rm", "delete one object, or (without NAME) the whole bucket", BUCKET,
      arg("name", nargs="?", default=None))
def _rm(a, ctx):
    if a.name is None:
        delete_object_store(a.bucket)
        print(f"removed object store {a.bucket!r}")
    else:
        objects(a.bucket).delete(a.name)
        print(f"deleted object {a.name!r} from {a.bucket!r}")


@verb("obj put", "store a file, or a notebook variable holding a DataFrame or bytes", BUCKET,
      arg("path", help="a file path, or the name of a DataFrame/bytes variable"),
      arg("--name", default=None, help="the object name (default: the file name)"),
      arg("--description", default=None),
      arg("--progress", action="store_true", help="always show a progress bar"))
def _put(a, ctx):
    data, name = _source(a.path, ctx)
    return objects(a.bucket).put(a.name or name, data, description=a.description,
                                 progress=True if a.progress else None)


def _source(path: str, ctx):
    if Path(path).expanduser().is_file():
        p = Path(path).expanduser()
        return p, p.name
    ns = getattr(ctx.shell, "user_ns", None) or {}
    if path.isidentifier() and path in ns:
        value = ns[path]
        if isinstance(value, pd.DataFrame):
            return value, f"{path}.parquet"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value), path
        raise NatsError(f"variable {path!r} is a {type(value).__name__}, not a DataFrame or bytes",
                        "store files, DataFrames or bytes (text: pass name.encode())")
    raise NotFound(f"there is no file or notebook variable {path!r}", "check the path (relative to the notebook)")


@verb("obj get", "an object: a DataFrame if it is Parquet, else its bytes; --out writes a file", BUCKET,
      arg("name"), arg("--out", default=None, help="write to this file instead"),
      arg("--progress", action="store_true", help="always show a progress bar"))
def _get(a, ctx):
    store = objects(a.bucket)
    progress = True if a.progress else None
    if a.out:
        path = store.get(a.name, out=a.out, progress=progress)
        print(f"wrote {path.stat().st_size:,} bytes to {path}")
        return None
    data = store.get(a.name, progress=progress)
    return read_frame(data, a.name) if is_parquet(data) else data


@verb("obj seal", "seal a bucket: it can be read, never changed again", BUCKET)
def _seal(a, ctx):
    objects(a.bucket).seal()
    print(f"sealed object store {a.bucket!r}")


@verb("obj info", "an object's metadata, or (without NAME) the bucket's", BUCKET, arg("name", nargs="?", default=None))
def _info(a, ctx):
    store = objects(a.bucket)
    return store.info(a.name) if a.name else store


@verb("obj watch", "follow a bucket's puts and deletes in the background (the changes in the watch's .df)", BUCKET,
      arg("--updates-only", action="store_true", help="skip the objects already there"),
      arg("--limit", type=int, default=10_000, help="changes kept (older ones are dropped)"))
def _watch(a, ctx):
    return objects(a.bucket).watch(updates_only=a.updates_only, limit=a.limit)
