"""Where system reports come from: a system-account client, and the scatter-gather ``$SYS.REQ.SERVER.PING.*``.

For a server this process started, a short-lived client logs in with that
server's own system user; any other connection is used as it is, and must be
a system-account user (else :class:`~nbnats.errors.PermissionDenied`). Every
server of the system (a whole cluster) answers each request once.

>>> async with await open_source(nbnats.current(), 2.0) as src:   # doctest: +SKIP
...     replies = await src.gather("VARZ")
>>> [server["name"] for server, data in replies]                   # doctest: +SKIP
['nbnats-1a2b3c']
"""

from __future__ import annotations

import asyncio

import nats.errors
import orjson

from nbnats.engine import api
from nbnats.errors import PermissionDenied
from nbnats.runtime import connection
from nbnats.system.clients import close_quietly

STATUS = "Status"


def needs_system(conn, verb: str) -> PermissionDenied:
    """The refusal for a system report over a connection outside the system account.

    >>> needs_system(conn, "server report connections").what   # doctest: +SKIP
    'server report connections needs the system account, which the connection to nats://… is not in'
    """
    return PermissionDenied(f"{verb} needs the system account, which the connection to {conn.url} is not in",
                            "connect as a system-account user (nbnats.connect(url, creds=FILE) or user=/password= "
                            "of the system user), or use the bundled server (nbnats.start_server())")


class Source:
    """A client that may ask ``$SYS.REQ.SERVER.*``; ``own`` is a connection opened here (closed on exit)."""

    def __init__(self, conn, nc, own=None):
        self.conn, self.nc, self.own = conn, nc, own
        self.expect: int | None = None          # how many servers answer, learned from the first ping

    async def __aenter__(self) -> Source:
        return self

    async def __aexit__(self, *exc) -> None:
        if self.own is not None:
            await close_quietly([self.own])

    async def _scatter(self, subject: str, body: dict | None, timeout: float, verb: str) -> list[tuple[float, dict]]:
        """Every reply to ``subject`` within ``timeout`` (fewer waits when the servers are counted)."""
        loop = asyncio.get_running_loop()
        replies: list[tuple[float, dict]] = []
        done = asyncio.Event()
        refused: list[str] = []

        async def on_reply(msg) -> None:
            if msg.headers and msg.headers.get(STATUS):
                refused.append(msg.headers[STATUS])
                done.set()
                return
            try:
                replies.append((loop.time() - started, orjson.loads(msg.data)))
            except orjson.JSONDecodeError:
                return                        # not a server's report: ignore it
            if self.expect is None:
                self.expect = (replies[-1][1].get("statsz") or {}).get("active_servers") or None
            if self.expect and len(replies) >= self.expect:
                done.set()

        inbox = self.nc.new_inbox()
        try:
            sub = await self.nc.subscribe(inbox, cb=on_reply)
            started = loop.time()
            await self.nc.publish(subject, orjson.dumps(body or {}), reply=inbox)
            try:
                await asyncio.wait_for(done.wait(), timeout)
            except asyncio.TimeoutError:
                pass                          # the servers that answered in time are the report
            await sub.unsubscribe()
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                nats.errors.ConnectionDrainingError, nats.errors.StaleConnectionError):
            raise api.disconnected(self.conn) from None
        if not replies:
            raise needs_system(self.conn, verb)
        return replies

    async def ping(self, timeout: float, verb: str = "server ping") -> list[tuple[float, dict, dict]]:
        """``(rtt_s, server, statsz)`` from every server (``$SYS.REQ.SERVER.PING``).

        >>> await src.ping(2.0)   # doctest: +SKIP
        [(0.0004, {'name': 'nbnats-1a2b3c', ...}, {'connections': 2, ...})]
        """
        replies = await self._scatter("$SYS.REQ.SERVER.PING", None, timeout, verb)
        return [(rtt, r.get("server") or {}, r.get("statsz") or {}) for rtt, r in replies]

    async def gather(self, endpoint: str, body: dict | None = None, timeout: float = 2.0,
                     verb: str = "server report") -> list[tuple[dict, dict]]:
        """``(server, data)`` from every server for ``VARZ``, ``CONNZ``, ``JSZ``, ``HEALTHZ`` …, sorted by name.

        >>> await src.gather("HEALTHZ")   # doctest: +SKIP
        [({'name': 'nbnats-1a2b3c', ...}, {'status': 'ok', 'status_code': 200})]
        """
        if self.expect is None:
            await self.ping(timeout, verb)
        replies = await self._scatter(f"$SYS.REQ.SERVER.PING.{endpoint}", body, timeout, verb)
        out = []
        for _, r in replies:
            if r.get("error"):
                err = r["error"]
                raise PermissionDenied(f"server {(r.get('server') or {}).get('name', '?')} refused {verb}: "
                                     f"{err.get('description') or err}", "check the system user's permissions")
            out.append((r.get("server") or {}, r.get("data") or {}))
        return sorted(out, key=lambda pair: pair[0].get("name") or "")


async def open_source(conn, timeout: float) -> Source:
    """A :class:`Source` for ``conn``'s servers: their own system user when this process started them.

    >>> src = await open_source(nbnats.current(), 2.0)   # doctest: +SKIP
    """
    srv = conn.server or connection.started_server(conn.url)
    system = srv.nodes[0].system if srv is not None else None
    if system is None:
        return Source(conn, conn.nc)
    urls = ",".join(n.url for n in srv.nodes if n.running) or srv.url
    own = await connection.open_as("nbnats-system", urls, {**system.options(), "client_name": "nbnats-system"},
                                 timeout, srv)
    return Source(conn, own.nc, own)
