"""Connections of nbnats's own beside the user's: the same server and credentials, never the current one.

``bench`` measures on clients of its own and ``server_check("connection")``
times a fresh connect, so neither disturbs the user's connection (its tails,
its subscriptions). They are opened with the options the user's connection was
made with, and closed by the caller.

>>> other = await open_like(nbnats.current(), "bench-1", 5.0)   # doctest: +SKIP
>>> await close_quietly([other])                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os

from nbnats.runtime import connection


def _target(conn) -> tuple[str, dict]:
    """The URL and options ``conn`` was opened with, credentials included (as connection._establish resolves them)."""
    opts = dict(connection._settings.get(conn.name, {}))
    url = opts.get("url") or os.environ.get("NATS_URL") or (conn.server.url if conn.server is not None else conn.url)
    started = conn.server or connection._started_server(url)
    if started is not None and started.auth and not connection._has_credentials(opts, url):
        opts.update(started.auth.options())
    return url, opts


async def open_like(conn, client_name: str, timeout: float):
    """A new :class:`~nbnats.runtime.connection.Connection` to ``conn``'s server, as its user (loop thread).

    >>> bench_conn = await open_like(nbnats.current(), "nbnats-bench", 5.0)   # doctest: +SKIP
    """
    url, opts = _target(conn)
    return await connection._open(client_name, url, {**opts, "client_name": client_name}, timeout, conn.server)


async def close_quietly(conns, timeout: float = 2.0) -> None:
    """Close every connection in ``conns``; one that is gone already is no error.

    >>> await close_quietly([bench_conn])   # doctest: +SKIP
    """
    for c in conns:
        try:
            await asyncio.wait_for(c.nc.close(), timeout)
        except Exception:        # already closed or unreachable: nothing is left to free
            pass
