"""nbnats — NATS from Jupyter: magics, live tails into pandas, JetStream, KV, objects.

>>> import nbnats
>>> t = nbnats.tail("orders.>")                  # doctest: +SKIP
>>> nbnats.publish("orders.created", {"id": 1})   # doctest: +SKIP
>>> t.wait(1).df                                  # doctest: +SKIP

In IPython: ``%load_ext nbnats`` then ``%nats --help``.
"""

from __future__ import annotations

import atexit

from . import aio, bench_tools, codecs, plot, schema, server
from .bench_tools import ping
from .connection import close, connect, connections, current, status, use
from .errors import (CodecError, Conflict, ConnectError, KeyDeleted, InvalidHeader, InvalidKey, InvalidName, InvalidSubject,
                     JetStreamError, LoopThreadError, NatsError, NoResponders, NotConnected, NotFound,
                     PayloadTooLarge, SchemaError, ServerError, Timeout, ValidationError)
from .jetstream import (ConsumerInfo, StreamInfo, StreamMessage, add_consumer, add_stream, consumer_info,
                        consumers, delete_consumer, delete_stream, edit_stream, get_message, next,
                        purge_stream, stream_info, streams)
from .kv import KV, Entry, KVWatch, buckets, delete_bucket, kv
from .messaging import PubAck, Service, publish, publish_frame, request, serve
from .objects import ObjectInfo, ObjectStore, delete_object_store, object_stores, objects
from .payload import Message
from .services import add_service, service_info, service_stats, services
from .replay import ReplayWarning, replay
from .session import server_info, start_server, stop, stop_all, stop_server
from .tail import Tail, tail, tails
from .widgets.stream_view import StreamView, view

__version__ = "0.1.0"


def load_ipython_extension(ip) -> None:
    """``%load_ext nbnats``: register ``%nats`` / ``%%nats``."""
    from .magics import load
    load(ip)


def _at_exit() -> None:
    from . import connection
    try:
        connection.close_all(timeout=2.0)
    except Exception:
        pass


atexit.register(_at_exit)

__all__ = [
    "aio", "bench_tools", "codecs", "plot", "schema", "server", "ping", "close", "connect", "connections", "current", "status", "use",
    "publish", "publish_frame", "request", "serve", "PubAck", "Service", "Message",
    "add_service", "service_info", "service_stats", "services",
    "server_info", "start_server", "stop", "stop_all", "stop_server", "Tail", "tail", "tails",
    "NatsError", "ValidationError", "InvalidSubject", "InvalidName", "InvalidKey", "InvalidHeader",
    "PayloadTooLarge", "ServerError", "NotConnected", "ConnectError", "Timeout", "NoResponders",
    "LoopThreadError", "NotFound", "JetStreamError", "SchemaError", "CodecError", "Conflict", "KeyDeleted",
    "kv", "buckets", "delete_bucket", "KV", "Entry", "KVWatch",
    "objects", "object_stores", "delete_object_store", "ObjectStore", "ObjectInfo",
    "streams", "add_stream", "stream_info", "edit_stream", "delete_stream", "purge_stream", "get_message",
    "consumers", "add_consumer", "consumer_info", "delete_consumer", "next", "StreamInfo", "ConsumerInfo",
    "StreamMessage", "replay", "ReplayWarning", "view", "StreamView",
]
