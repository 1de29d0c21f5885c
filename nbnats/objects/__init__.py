"""The object store: files, bytes and DataFrames of any size in a JetStream bucket.

An object is cut into chunks (128 KiB, well under max_payload) stored in the
stream ``OBJ_<bucket>``, plus one metadata message (name, size, SHA-256
digest), in the layout nats.go, nats.js and nats-py share, so each reads what
the others write. DataFrames are stored as Parquet, so their dtypes come back intact.

* :mod:`.meta` — names, subjects, the metadata JSON and :class:`ObjectInfo`;
* :mod:`.transfer` — chunks out (windowed publishes) and in (ordered consumer, digest checked);
* :mod:`.store` — :class:`ObjectStore`: put, get, info, ls, delete, seal;
* :mod:`.bucket` — buckets: :func:`objects`, :func:`object_stores`, :func:`delete_object_store`;
* :mod:`.sources` — what can be stored, and Parquet back into DataFrames.

>>> ob = nbnats.objects("reports", create=True)         # doctest: +SKIP
>>> ob.put("sales.parquet", df)                          # doctest: +SKIP
>>> ob.get_frame("sales.parquet").dtypes.equals(df.dtypes)   # doctest: +SKIP
True
>>> ob.put("raw.bin", b"\\x00" * 5_000_000)              # doctest: +SKIP
>>> ob.ls()[["name", "size"]]                            # doctest: +SKIP
"""

from nbnats.objects.bucket import delete_object_store, object_stores, objects
from nbnats.objects.meta import ObjectInfo
from nbnats.objects.sources import is_parquet, read_frame
from nbnats.objects.store import ObjectStore

__all__ = ["ObjectStore", "ObjectInfo", "objects", "object_stores", "delete_object_store", "read_frame",
           "is_parquet"]
