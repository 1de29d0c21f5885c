"""Key-value buckets: values with revisions, compare-and-set, history, watches.

>>> kv = nbnats.kv("sessions", create=True, ttl="1h")   # doctest: +SKIP
"""

from nbnats.kv.bucket import KV, Entry  # noqa: F401
from nbnats.kv.manage import buckets, delete_bucket, kv  # noqa: F401
from nbnats.kv.watch import KVWatch  # noqa: F401

__all__ = ["KV", "Entry", "KVWatch", "buckets", "delete_bucket", "kv"]
