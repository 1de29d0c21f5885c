"""The notebook session's own things: its bundled server, and stopping what runs.

>>> srv = nbnats.start_server()   # doctest: +SKIP
>>> nbnats.stop("t1")             # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from nbnats.runtime import connection, server
from nbnats import messaging, tail
from nbnats.services import stop_services
from nbnats.errors import NatsError, NotFound

_server = None


def start_server(port: int | None = None, jetstream: bool = True, cluster: int = 1,
                 store: str | None = None, auth: str | None = None, connect: bool = True):
    """Start the bundled nats-server and (by default) connect the session to it.

    >>> srv = nbnats.start_server(cluster=3)   # doctest: +SKIP
    >>> srv.url                                # doctest: +SKIP
    'nats://127.0.0.1:41001,nats://127.0.0.1:41002,nats://127.0.0.1:41003'
    """
    global _server
    srv = server.start(port=port, jetstream=jetstream, cluster=cluster, store=store, auth=auth)
    if _server is not None and _server.running:
        stop_server()
    _server = srv
    if connect:
        creds = srv.auth.options() if getattr(srv, "auth", None) else {}
        connection.connect(srv.url, **creds)
    return srv


def stop_server(timeout: float = 10.0) -> None:
    """Close connections to the session's server, then stop it.

    >>> nbnats.stop_server()   # doctest: +SKIP
    """
    global _server
    srv, _server = _server, None
    if srv is None:
        raise NotFound("no server was started with %nats server start", "start one first")
    for name, conn in connection.connections().items():
        if conn.server is srv or any(u in conn.url for u in srv.urls):
            connection.close(name)
    srv.stop(timeout)


def server_info() -> dict[str, Any]:
    """varz/jsz figures of the session's server (or the embedded default one).

    >>> nbnats.server_info()["version"]   # doctest: +SKIP
    '2.15.1'
    """
    srv = _server if _server is not None else connection._embedded
    if srv is None or not srv.running:
        raise NotFound("no bundled server is running in this session",
                       "start one with %nats server start")
    return srv.info()


def stop(item_id: str) -> None:
    """Stop a tail (``t1``) or a responder (``s1``) by id.

    >>> nbnats.stop("t1")   # doctest: +SKIP
    """
    if item_id.startswith("s"):
        for svc in messaging._services:
            if svc.id == item_id:
                svc.stop()
                return
        raise NotFound(f"there is no responder {item_id!r}", "list them with %nats tails")
    if not item_id.startswith("t"):
        raise NatsError(f"{item_id!r} is not a tail or responder id", "ids look like t1 or s1")
    tail.get(item_id).stop()


def stop_all() -> int:
    """Stop every tail, responder and micro service of this session; returns how many.

    >>> nbnats.stop_all()   # doctest: +SKIP
    2
    """
    responders = messaging.services_running()
    for svc in responders:
        svc.stop()
    return tail.stop_all() + len(responders) + stop_services()
