"""Connections: resolving which server to use, auth, and the live client.

The first call that needs a connection connects by, in order: the last
``connect(...)``; the ``NATS_URL`` environment variable; otherwise the
bundled nats-server, started on a free loopback port.

>>> conn = connect("nats://127.0.0.1:4222")   # doctest: +SKIP
>>> status()["jetstream"]                      # doctest: +SKIP
True
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from nbnats.runtime import loop
from nbnats.errors import ConnectError, NatsError, NotConnected, Timeout
from nbnats.runtime.wire import Dial

log = logging.getLogger("nbnats")

DEFAULT = "default"
_SECRET_KEYS = {"password", "token", "nkey", "creds", "nkeys_seed", "user_credentials", "tls_key"}

_lock = threading.RLock()
_connections: dict[str, Connection] = {}
_settings: dict[str, dict[str, Any]] = {}   # the last connect(...) arguments, by connection name
_current = DEFAULT
_embedded = None                             # the bundled server started by default, if any

# nats-py cancels its PONG future when its own rtt()/flush() timeout fires but
# leaves it queued; the late PONG then breaks its read loop. So nbnats gives
# nats-py this much patience and bounds every wait from outside (ping() below).
PING_PATIENCE = 3600.0


class Connection:
    """One live NATS client on the nbnats loop; secrets never appear in its repr.

    ``conn.nc`` is the nats-py client (use it only from the loop thread);
    ``conn.url`` the server URL, with no credentials in it.
    """

    def __init__(self, name: str, nc: Client, url: str, server=None, credentials: dict | None = None):
        self.name = name
        self.nc = nc
        self.url = url
        self.server = server
        self._credentials = _hide(credentials or {})   # for server_url(secret=True) only
        self._pings: set[asyncio.Task] = set()          # PING/PONG waits still queued in nats-py
        self._slow_owners: dict[int, tuple[Any, Any]] = {}   # id(subscription) → (subscription, owner)
        self.listeners: list[Any] = []          # objects told about disconnects/reconnects
        self.disconnected_at: float | None = None
        self.dial: Dial | None = None              # how a bulk read reaches the same server (runtime/wire.py)

    @property
    def max_payload(self) -> int:
        """The server's max_payload in bytes."""
        return self.nc.max_payload

    @property
    def connected(self) -> bool:
        """True while the client is connected (not closed, not reconnecting)."""
        return self.nc.is_connected

    def __repr__(self) -> str:
        state = "connected" if self.nc.is_connected else ("closed" if self.nc.is_closed else "reconnecting")
        return f"<nbnats.Connection {self.name!r} {self.url} {state}>"

    def watch_slow(self, sub, owner) -> None:
        """Tell ``owner._slow_consumer()`` about every message the client drops from ``sub`` (loop thread)."""
        self._slow_owners[id(sub)] = (sub, owner)

    def unwatch_slow(self, sub) -> None:
        """Stop telling anyone about ``sub``'s drops."""
        self._slow_owners.pop(id(sub), None)

    # nats-py callbacks, run on the loop thread
    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, nats.errors.SlowConsumerError):
            sub, owner = self._slow_owners.get(id(exc.sub), (None, None))
            if sub is exc.sub and hasattr(owner, "_slow_consumer"):
                owner._slow_consumer()
                return
        log.debug("nats error on %s: %r", self.name, exc)

    async def _on_disconnect(self) -> None:
        self.disconnected_at = time.time()
        for listener in list(self.listeners):
            listener._disconnected(self.disconnected_at)

    async def _on_reconnect(self) -> None:
        since, self.disconnected_at = self.disconnected_at, None
        self._forget_pings()       # nats-py dropped their PONG futures on reconnecting
        self.url = _redact(str(self.nc.connected_url.geturl())) if self.nc.connected_url else self.url
        for listener in list(self.listeners):
            listener._reconnected(since, time.time())


    def _forget_pings(self) -> None:
        for task in list(self._pings):
            task.cancel()
        self._pings.clear()


async def ping(conn: Connection, timeout: float, what: str, *, flush: bool = False) -> float:
    """PING the server and wait at most ``timeout`` s for its PONG; returns the round trip in seconds.

    ``flush=True`` makes it a flush (everything written so far reached the
    server). nats-py's own timeout never fires (see ``PING_PATIENCE``), so a
    stalled server leaves the client consistent; a timeout is an nbnats
    :class:`~nbnats.errors.Timeout`, a connection that is down a ``NotConnected``.

    >>> await ping(nbnats.current(), 2, "checking the server")   # doctest: +SKIP
    0.00021
    """
    nc = conn.nc
    if nc.is_closed:
        raise NotConnected(f"the connection to {conn.url} is closed", "connect again with nbnats.connect()")
    clock = asyncio.get_running_loop().time
    started = clock()
    while True:
        task = asyncio.ensure_future(nc.flush(PING_PATIENCE) if flush else nc.rtt(PING_PATIENCE))
        conn._pings.add(task)
        task.add_done_callback(lambda t: (conn._pings.discard(t), t.cancelled() or t.exception()))
        try:
            await asyncio.wait_for(asyncio.shield(task), max(started + timeout - clock(), 0.001))
            break
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if not task.cancelled() or (me is not None and me.cancelling()):
                raise                      # we are being cancelled, not just the PING
            if clock() - started >= timeout:
                raise Timeout(f"the server at {conn.url} did not answer {what} within {timeout:g} s",
                              "it reconnected meanwhile: try again") from None
            # a reconnect dropped this PING's PONG (nats-py forgets them): ask again on the new connection
        except (asyncio.TimeoutError, nats.errors.TimeoutError):
            if nc.is_reconnecting or not nc.is_connected:
                raise NotConnected(f"the server at {conn.url} went away while {what}; the client is reconnecting",
                                   "wait for the server to come back, or connect elsewhere with nbnats.connect(url)") from None
            raise Timeout(f"the server at {conn.url} did not answer {what} within {timeout:g} s",
                          "it may be stalled or overloaded: try again in a moment") from None
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            raise NotConnected(f"the connection to {conn.url} is down", "wait for it to come back, or connect again") from None
    return clock() - started


def _redact(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


class _Secret(str):
    """A credential: used as the string it is, shown as ``'***'`` (reprs, verbose tracebacks)."""

    def __repr__(self) -> str:
        return repr(getattr(self, "shown", "***"))


def _hide(opts: dict[str, Any]) -> dict[str, Any]:
    """``opts`` with its credentials, and any ``user:password@`` of its URL, hidden from reprs."""
    out = {}
    for k, v in opts.items():
        if isinstance(v, str) and (k in _SECRET_KEYS or (k == "url" and _redact(v) != v)):
            v = _Secret(v)
            if k == "url":
                v.shown = _redact(v)
        out[k] = v
    return out


def _read_context(name: str | None) -> dict[str, Any]:
    """Read a natscli context file (``~/.config/nats/context/NAME.json``)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "nats"
    if not name:
        selected = base / "context.txt"
        if not selected.exists():
            raise ConnectError("no natscli context is selected",
                               "name one with nbnats.connect(context=NAME), or run `nats context select`")
        name = selected.read_text().strip()
    path = base / "context" / f"{name}.json"
    try:
        ctx = json.loads(path.read_text())
    except FileNotFoundError:
        found = sorted(p.stem for p in (base / "context").glob("*.json"))
        raise ConnectError(f"natscli context {name!r} was not found in {path.parent}",
                           f"use one of {found}" if found else "create it with `nats context add`") from None
    except json.JSONDecodeError as exc:
        raise ConnectError(f"natscli context file {path} is not valid JSON ({exc.msg})",
                           "fix or recreate it with `nats context edit`") from None
    mapping = {"url": "url", "user": "user", "password": "password", "token": "token",
               "creds": "creds", "nkey": "nkey", "ca": "tls_ca", "cert": "tls_cert", "key": "tls_key"}
    return {ours: ctx[theirs] for theirs, ours in mapping.items() if ctx.get(theirs)}


def _tls_context(tls_ca: str | None, tls_cert: str | None, tls_key: str | None) -> ssl.SSLContext | None:
    if not (tls_ca or tls_cert):
        return None
    ctx = ssl.create_default_context(cafile=tls_ca)
    if tls_cert:
        ctx.load_cert_chain(tls_cert, tls_key)
    return ctx


async def _open(name: str, url: str, opts: dict[str, Any], timeout: float, server=None) -> Connection:
    holder: dict[str, Any] = {}

    async def on_error(exc):
        if "conn" in holder:
            await holder["conn"]._on_error(exc)
        else:
            holder.setdefault("errors", []).append(exc)

    async def on_disconnect():
        if "conn" in holder:
            await holder["conn"]._on_disconnect()

    async def on_reconnect():
        if "conn" in holder:
            await holder["conn"]._on_reconnect()

    kwargs: dict[str, Any] = dict(
        servers=[u.strip() for u in url.split(",")], name=opts.get("client_name") or "nbnats",
        connect_timeout=max(1, int(timeout)), reconnect_time_wait=0.5, max_reconnect_attempts=-1,
        allow_reconnect=True, error_cb=on_error, disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect, drain_timeout=max(1, int(timeout)),
    )
    for ours, theirs in (("user", "user"), ("password", "password"), ("token", "token"),
                         ("creds", "user_credentials"), ("nkey", "nkeys_seed")):
        if opts.get(ours):
            kwargs[theirs] = opts[ours]
    tls = _tls_context(opts.get("tls_ca"), opts.get("tls_cert"), opts.get("tls_key"))
    if tls is not None:
        kwargs["tls"] = tls
    nc = Client()
    try:
        # With unlimited reconnects nats-py retries a failed first connect
        # forever; try each listed server twice, then fail plainly.
        await asyncio.wait_for(nc.connect(**{**kwargs, "max_reconnect_attempts": 1}), timeout)
    except BaseException as exc:
        try:
            await nc.close()
        except Exception:
            pass
        seen = holder.get("errors", [])
        cause = next((e for e in seen if "uthoriz" in str(e)), seen[0] if seen else exc)
        raise _connect_error(url, cause) from None
    nc.options["max_reconnect_attempts"] = -1
    secrets = {k: opts[k] for k in ("user", "password", "token") if opts.get(k)}
    conn = Connection(name, nc, _redact(url), server, secrets)
    conn.dial = Dial.from_options(url, opts)
    holder["conn"] = conn
    return conn


async def open_as(name: str, url: str, opts: dict[str, Any], timeout: float, server=None) -> Connection:
    """A new connection beside the session's (loop thread), not registered as one of its connections;
    the caller closes it. ``opts`` as :func:`connect` takes them.

    >>> own = await open_as("nbnats-system", srv.url, srv.nodes[0].system.options(), 2.0, srv)   # doctest: +SKIP
    """
    return await _open(name, url, opts, timeout, server)


async def open_like(conn: Connection, client_name: str, timeout: float) -> Connection:
    """A new connection to ``conn``'s server as ``conn``'s user (loop thread); the caller closes it.

    >>> bench_conn = await open_like(nbnats.current(), "nbnats-bench", 5.0)   # doctest: +SKIP
    """
    opts = dict(_settings.get(conn.name, {}))
    url = opts.get("url") or os.environ.get("NATS_URL") or (conn.server.url if conn.server is not None else conn.url)
    started = conn.server or _started_server(url)
    if started is not None and started.auth and not _has_credentials(opts, url):
        opts.update(started.auth.options())
    return await _open(client_name, url, {**opts, "client_name": client_name}, timeout, conn.server)


def started_server(url: str):
    """The running server this process started at ``url`` (any loopback name for its host), if any."""
    return _started_server(url)


def _connect_error(url: str, exc: BaseException) -> NatsError:
    text = str(exc) or type(exc).__name__
    shown = _redact(url)
    if "Authorization" in text or "authorization" in text or "Authentication" in text:
        return ConnectError(f"the server at {shown} refused the credentials",
                            "check the user/password, token, nkey or creds file")
    if isinstance(exc, ssl.SSLError) or "CERTIFICATE" in text.upper() or "SSL" in text:
        host = re.sub(r"^\w+://", "", shown).split(",")[0]
        return ConnectError(f"TLS verification failed for {host} ({text})",
                            "pass the server's CA with tls_ca=FILE, or connect by the name on its certificate")
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ConnectError(f"no NATS server answered at {shown} in time",
                            "check the URL, or start one with nbnats.start_server()")
    return ConnectError(f"could not connect to {shown} ({text})",
                        "check the URL, or start a local server with nbnats.start_server()")


def connect(url: str | None = None, *, name: str = DEFAULT, context: str | None = None,
            creds: str | None = None, nkey: str | None = None, user: str | None = None,
            password: str | None = None, token: str | None = None, tls_ca: str | None = None,
            tls_cert: str | None = None, tls_key: str | None = None, client_name: str | None = None,
            timeout: float = 5.0) -> Connection:
    """Connect (or reconnect) and make this the current connection.

    ``url`` may list several servers separated by commas. ``context`` reads a
    natscli context; explicit arguments override it. Without ``url`` the
    ``NATS_URL`` variable is used, else the bundled server is started.

    >>> conn = nbnats.connect("nats://127.0.0.1:4222", name="local")   # doctest: +SKIP
    """
    global _current
    loop._refuse_in_loop()          # before anything is closed or replaced
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise NatsError(f"timeout must be a positive number of seconds, not {timeout!r}", "pass e.g. timeout=5")
    opts: dict[str, Any] = {}
    if context is not None:
        opts.update(_read_context(context or None))
    given = dict(url=url, creds=creds, nkey=nkey, user=user, password=password, token=token,
                 tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key, client_name=client_name)
    opts.update({k: v for k, v in given.items() if v is not None})
    opts = _hide(opts)
    try:
        with _lock:
            old = _connections.pop(name, None)
            if old is not None:
                _close(old, timeout)
            conn = _establish(name, opts, timeout)
            _settings[name] = opts
            _current = name
            return conn
    except NatsError:
        raise
    except Exception as exc:
        # A NatsError shows as one line; any other traceback would list this call's
        # arguments, password included, in IPython's verbose mode.
        raise ConnectError(f"connecting failed ({type(exc).__name__}: {exc})",
                           "check the arguments passed to connect") from None


def _establish(name: str, opts: dict[str, Any], timeout: float) -> Connection:
    global _embedded
    url = opts.get("url") or os.environ.get("NATS_URL")
    server = None
    if not url:
        if _embedded is None or not _embedded.running:
            from nbnats.runtime import server as server_mod
            _embedded = server_mod.start()
        server, url = _embedded, _embedded.url
    started = server or _started_server(url)
    if started is not None and started.auth and not _has_credentials(opts, url):
        # A server this process started: its generated credentials are ours to use.
        opts = _hide({**opts, **started.auth.options()})
    conn = loop.run(_open(name, url, opts, timeout, server), timeout + 1, f"connecting to {_redact(url)}")
    _connections[name] = conn
    return conn


def _started_server(url: str):
    """The running server this process started at ``url`` (any loopback name for its host), if any."""
    from urllib.parse import urlsplit
    from nbnats.runtime import server as server_mod
    loopback = {"127.0.0.1", "localhost", "::1"}

    def where(u: str) -> tuple[str, int | None]:
        parts = urlsplit(u.strip() if "://" in u else f"nats://{u.strip()}")
        host = parts.hostname or ""
        return ("loopback" if host in loopback else host), parts.port
    wanted = {where(u) for u in url.split(",")}
    return next((s for s in server_mod.running_servers() if wanted & {where(u) for u in s.urls}), None)


def _has_credentials(opts: dict[str, Any], url: str) -> bool:
    return any(opts.get(k) for k in ("user", "password", "token", "creds", "nkey")) or _redact(url) != url


def current(name: str | None = None, timeout: float = 10.0) -> Connection:
    """The connection to use now, connecting by the default rules if needed.

    >>> current().connected   # doctest: +SKIP
    True
    """
    name = name or _current
    with _lock:
        conn = _connections.get(name)
        if conn is not None and not conn.nc.is_closed:
            return conn
        return _establish(name, _settings.get(name, {}), timeout)


def forget(name: str) -> None:
    """Forget how the connection ``name`` was made, so its next use connects by the default rules again.

    >>> nbnats.runtime.connection.forget("default")   # doctest: +SKIP
    """
    with _lock:
        _settings.pop(name, None)


def use(name: str) -> Connection:
    """Make the named connection current.

    >>> nbnats.use("local")   # doctest: +SKIP
    """
    global _current
    with _lock:
        if name not in _connections and name not in _settings:
            raise NotConnected(f"there is no connection named {name!r}",
                               f"connect it first with nbnats.connect(url, name={name!r}); known: {sorted(_connections)}")
        _current = name
        return current(name)


def connections() -> dict[str, Connection]:
    """All open connections by name.

    >>> sorted(connections())   # doctest: +SKIP
    ['default']
    """
    return dict(_connections)


def status(name: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
    """A summary of the current connection: url, server, version, JetStream, RTT, tails.

    >>> nbnats.status()["url"]   # doctest: +SKIP
    'nats://127.0.0.1:40123'
    """
    from nbnats.data import units
    timeout = units.seconds(timeout, "timeout")
    conn = current(name)

    async def probe():
        rtt = await ping(conn, timeout, "the status ping")
        # $SYS.REQ.USER.INFO is open to every user; its envelope names the server.
        try:
            reply = await conn.nc.request("$SYS.REQ.USER.INFO", b"", timeout=timeout)   # safe to time out
            about = json.loads(reply.data).get("server") or {}
        except (asyncio.TimeoutError, nats.errors.Error, ValueError):
            about = {}           # an older or locked-down server: the fields it would fill stay None
        return rtt, about

    rtt, about = loop.run(probe(), 2 * timeout + 1, "asking the server for its status")
    version = conn.nc.connected_server_version
    return {
        "url": conn.url,
        "server_name": about.get("name"),
        "version": about.get("ver") or (f"{version.major}.{version.minor}.{version.patch}" if version else None),
        "jetstream": bool(about.get("jetstream")),
        "rtt_ms": round(rtt * 1000, 3),
        "max_payload": conn.max_payload,
        "connection": conn.name,
        "tails": sum(1 for t in conn.listeners if getattr(t, "running", False)),
    }


def _close(conn: Connection, timeout: float) -> None:
    for listener in list(conn.listeners):
        listener._closing()

    async def shut():
        try:
            if not conn.nc.is_closed:
                await asyncio.wait_for(conn.nc.drain(), timeout)
        except Exception:
            pass
        finally:
            if not conn.nc.is_closed:
                try:
                    await asyncio.wait_for(conn.nc.close(), timeout)
                except Exception:
                    pass         # publishes buffered during an outage meet the dead socket; closed anyway
            conn._forget_pings()

    def tell_closed() -> None:       # on the loop thread: listeners cancel their timers and tasks there
        for listener in list(conn.listeners):
            listener._closed()
        conn.listeners.clear()

    try:
        loop.run(shut(), timeout + 2, f"closing the connection to {conn.url}")
    finally:
        done = threading.Event()
        loop.call_soon(lambda: (tell_closed(), done.set()))
        done.wait(5)


def close(name: str | None = None, timeout: float = 5.0) -> None:
    """Drain and close a connection: buffered messages reach their tails first.

    >>> nbnats.close()   # doctest: +SKIP
    """
    loop._refuse_in_loop()          # else the connection would be unlisted but left open
    with _lock:
        conn = _connections.pop(name or _current, None)
    if conn is not None:
        _close(conn, timeout)


def close_all(timeout: float = 5.0) -> None:
    """Close every connection (used at interpreter exit and by tests)."""
    for name in list(_connections):
        close(name, timeout)
