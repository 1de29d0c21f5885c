"""The notebook session's own things: its bundled server, and stopping what runs.

>>> srv = nbnats.start_server()   # doctest: +SKIP
>>> nbnats.stop("t1")             # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nbnats import messaging, tail
from nbnats.data import validate
from nbnats.errors import NatsError, NotFound
from nbnats.runtime import connection, server
from nbnats.runtime.sysaccount import Credentials
from nbnats.services import stop_services

_server = None


OPEN_NOTICE = "nbnats: this server accepts anyone on this machine without credentials (auth='none')"


def start_server(port: int | None = None, jetstream: bool = True, cluster: int = 1,
                 store: str | None = None, auth: str = "user", connect: bool = True):
    """Start the bundled nats-server and (by default) connect the session to it.

    It requires the credentials generated for it (``auth="user"``); other
    programs get them from :func:`server_url` or :func:`write_context`.
    ``auth="none"`` starts an open server, and says so.

    >>> srv = nbnats.start_server(cluster=3)   # doctest: +SKIP
    >>> srv.url                                # doctest: +SKIP
    'nats://127.0.0.1:41001,nats://127.0.0.1:41002,nats://127.0.0.1:41003'
    """
    global _server
    srv = server.start(port=port, jetstream=jetstream, cluster=cluster, store=store, auth=auth)
    if srv.auth is None:
        print(OPEN_NOTICE)
    if _server is not None and _server.running:
        stop_server()
    _server = srv
    if connect:
        moving = _running_on(connection.DEFAULT)      # connect() replaces the default connection
        connection.connect(srv.url)          # finds the generated credentials itself
        for piece in moving:                 # they cannot follow: say so, and how to start them again
            print(f"nbnats: {piece.id} on {piece.subject!r} stopped: its connection moved to the new server "
                  f"at {srv.url} — start it again (nbnats.tail(...) or %nats sub …) to read there")
    return srv


def _running_on(name: str) -> list:
    """The tails and watches running on the connection ``name``."""
    conn = connection.connections().get(name)
    return [t for t in tail._tails.values() if t.running and t.conn is conn] if conn is not None else []


def server_url(secret: bool = False, connection_name: str | None = None) -> str:
    """The current connection's URL for another program; its credentials masked unless ``secret=True``.

    >>> nbnats.server_url()              # doctest: +SKIP
    'nats://***:***@127.0.0.1:41001'
    >>> nbnats.server_url(secret=True)   # doctest: +SKIP
    'nats://nbnats-1a2b3c:8f0c…@127.0.0.1:41001'
    """
    conn = connection.current(connection_name)
    creds = conn._credentials
    if creds.get("user") and creds.get("password"):
        shown = Credentials(creds["user"], creds["password"]) if secret else Credentials("***", "***")
        return shown.url(conn.url).replace("%2A", "*")
    if creds.get("token"):
        return conn.url.replace("://", f"://{creds['token'] if secret else '***'}@")
    return conn.url


def write_context(name: str, connection_name: str | None = None) -> Path:
    """Write a natscli context for the current connection (``nats --context NAME …``); returns its path.

    The file holds the credentials, so it is created readable by this user only (0600).

    >>> nbnats.write_context("notebook")   # doctest: +SKIP
    PosixPath('/home/ada/.config/nats/context/notebook.json')
    """
    validate.name(name, "context")
    conn = connection.current(connection_name)
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "nats" / "context"
    base.mkdir(parents=True, exist_ok=True, mode=0o700)
    creds = conn._credentials
    ctx = {"description": "the nbnats notebook's server", "url": conn.url, "user": creds.get("user", ""),
           "password": creds.get("password", ""), "token": creds.get("token", "")}
    path = base / f"{name}.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump(ctx, f, indent=2)
    return path


def stop_server(timeout: float = 10.0) -> None:
    """Close connections to the session's server, then stop it.

    >>> nbnats.stop_server()   # doctest: +SKIP
    """
    global _server
    srv, _server = _server, None
    if srv is None:
        raise NotFound("no server was started with nbnats.start_server()", "start one first")
    for name, conn in connection.connections().items():
        if conn.server is srv or any(u in conn.url for u in srv.urls):
            stopping = _running_on(name)
            connection.close(name)
            connection.forget(name)          # the next call connects by the default rules, not to the dead URL
            for piece in stopping:
                print(f"nbnats: {piece.id} on {piece.subject!r} stopped with the server it read from — "
                      "start it again to read from the next one")
    srv.stop(timeout)


def server_info() -> dict[str, Any]:
    """varz/jsz figures of the session's server (or the embedded default one).

    >>> nbnats.server_info()["version"]   # doctest: +SKIP
    '2.15.1'
    """
    srv = _server if _server is not None else connection._embedded
    if srv is None or not srv.running:
        raise NotFound("no bundled server is running in this session",
                       "start one with nbnats.start_server()")
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
        raise NotFound(f"there is no responder {item_id!r}", "list them with nbnats.tails()")
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
