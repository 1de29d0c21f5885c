"""nbnats — NATS from Jupyter: magics, live tails into pandas, JetStream, KV, objects.

>>> import nbnats
>>> t = nbnats.tail("orders.>")                  # doctest: +SKIP
>>> nbnats.publish("orders.created", {"id": 1})   # doctest: +SKIP
>>> t.wait(1).df                                  # doctest: +SKIP

In IPython: ``%load_ext nbnats`` then ``%nats --help``.
"""

from __future__ import annotations

import atexit

from nbnats import aio, measure, schema
from nbnats.data import codecs
from nbnats.runtime import server
from nbnats.measure import ping
from nbnats.runtime.connection import close, connect, connections, current, status, use
from nbnats.errors import (CodecError, Conflict, ConnectError, KeyDeleted, InvalidHeader, InvalidKey, InvalidName, InvalidSubject,
                     JetStreamError, LoopThreadError, NatsError, NoResponders, NotConnected, NotFound,
                     PayloadTooLarge, PermissionDenied, SchemaError, ServerError, ServiceError, Timeout,
                     ValidationError)
from nbnats.jetstream.consumers import add_consumer, consumer_info, consumers, delete_consumer
from nbnats.jetstream.display import ConsumerInfo, StreamInfo, StreamMessage
from nbnats.jetstream.streams import (add_stream, delete_stream, edit_stream, get_message, purge_stream,
                                      stream_info, streams)
from nbnats.kv import KV, Entry, KVWatch, buckets, delete_bucket, kv
from nbnats.messaging import PubAck, Service, publish, request, serve
from nbnats.frame_publish import BatchSplitWarning, publish_frame
from nbnats.objects import ObjectInfo, ObjectStore, delete_object_store, object_stores, objects
from nbnats.data.payload import Message
from nbnats.services import add_service, service_info, service_stats, services
from nbnats.jetstream.replay import ReplayWarning, replay
from nbnats.jetstream.consume import Batch, fetch, next
from nbnats.jetstream.worker import Worker, consume
from nbnats.background import stop, stop_all
from nbnats.runtime.session import server_info, server_url, start_server, stop_server, write_context
from nbnats.tail import Tail, tail, tails

__version__ = "0.1.0"


def load_ipython_extension(ip) -> None:
    """``%load_ext nbnats``: register ``%nats`` / ``%%nats``."""
    from nbnats.magics import load
    load(ip)


def _at_exit() -> None:
    from nbnats.runtime import connection
    try:
        connection.close_all(timeout=2.0)
    except Exception:
        pass


atexit.register(_at_exit)

# Figures and widgets load on first use, so `import nbnats` stays light (no plotly, no ipywidgets).
_LAZY = {"plot": ("nbnats.plot", None), "view": ("nbnats.widgets.stream_view", "view"),
         "StreamView": ("nbnats.widgets.stream_view", "StreamView"), "dask": ("nbnats.dask", None)}
# natscli's verbs, bulk exploration and the server's newer features, loaded on first use
for _module, _names in {
        "nbnats.jetstream.stream_ops": ("stream_report", "stream_subjects", "find_streams", "delete_message",
                                        "copy_stream", "seal_stream", "stream_gaps", "backup_stream",
                                        "restore_stream", "stream_state"),
        "nbnats.jetstream.consumer_ops": ("edit_consumer", "consumer_report", "pause_consumer", "resume_consumer",
                                          "unpin_consumer", "reset_consumer", "consumer_graph", "consumer_tail"),
        "nbnats.jetstream.lag": ("lag", "Lag"),
        "nbnats.jetstream.search": ("search",),
        "nbnats.jetstream.counter": ("counter_incr", "counter_get", "counters"),
        "nbnats.system.report": ("server_report", "server_ls", "server_ping", "server_check", "rtt"),
        "nbnats.system.bench": ("bench",),
        "nbnats.system.trace": ("trace",)}.items():
    _LAZY.update({_name: (_module, _name) for _name in _names})


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'nbnats' has no attribute {name!r}")
    import importlib
    module, attr = _LAZY[name]
    value = importlib.import_module(module)
    return value if attr is None else getattr(value, attr)

__all__ = [
    "aio", "measure", "codecs", "plot", "schema", "server", "ping", "close", "connect", "connections", "current", "status", "use",
    "publish", "publish_frame", "request", "serve", "PubAck", "Service", "Message",
    "add_service", "service_info", "service_stats", "services",
    "server_info", "server_url", "write_context", "start_server", "stop", "stop_all", "stop_server", "Tail", "tail", "tails",
    "NatsError", "ValidationError", "InvalidSubject", "InvalidName", "InvalidKey", "InvalidHeader",
    "PayloadTooLarge", "ServerError", "NotConnected", "ConnectError", "Timeout", "NoResponders",
    "LoopThreadError", "ServiceError", "NotFound", "JetStreamError", "SchemaError", "CodecError", "Conflict", "KeyDeleted",
    "kv", "buckets", "delete_bucket", "KV", "Entry", "KVWatch",
    "objects", "object_stores", "delete_object_store", "ObjectStore", "ObjectInfo",
    "streams", "add_stream", "stream_info", "edit_stream", "delete_stream", "purge_stream", "get_message",
    "consumers", "add_consumer", "consumer_info", "delete_consumer", "next", "StreamInfo", "ConsumerInfo",
    "StreamMessage", "replay", "ReplayWarning", "view", "StreamView", "fetch", "Batch", "consume", "Worker",
    "PermissionDenied", "BatchSplitWarning", "dask",
    *(_name for _name, (_module, _attr) in _LAZY.items() if _attr is not None and _module.startswith(
        ("nbnats.jetstream.", "nbnats.system."))),
]
