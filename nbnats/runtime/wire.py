"""A NATS connection of nbnats's own for bulk reads: frames cut in bulk from each socket read.

nats-py parses every message into a ``Msg`` object and calls a callback for it;
a replay of millions of messages spends most of its time there. A bulk read
instead opens this connection (the session's own credentials and TLS, see
:class:`Dial`), subscribes one inbox and hands the raw read buffer to a
*parser*: a function that cuts as many ``MSG`` frames as it can recognise
(with one precompiled pattern) and returns where it stopped. What it leaves —
frames with headers, status replies, ``PING`` — the generic loop here takes.

The protocol spoken is the documented client protocol (``CONNECT``, ``SUB``,
``PUB``, ``PING``/``PONG``, ``MSG``/``HMSG``); no library's internals are used.

>>> wire = await Wire.open(Dial.of(conn), timeout=5)   # doctest: +SKIP
>>> sid = wire.subscribe("_INBOX.abc")                  # doctest: +SKIP
>>> wire.publish("$JS.API.CONSUMER.MSG.NEXT.S.C", b'{"batch":10}', reply="_INBOX.abc")   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from nbnats.errors import ConnectError, NatsError, NotConnected, Timeout

# Fields are split by one space or more: the server writes an empty reply as two spaces
# (seen on $JS.EVENT.ADVISORY.API); a parser that wants single spaces would drop the connection.
_CONTROL = re.compile(rb"(H?)MSG +([^ \r\n]+) +([^ \r\n]+)(?: +([^ \r\n]+))? +(\d+)(?: +(\d+))? *\r\n")
_STATUS = re.compile(rb"NATS/1\.0 (\d{3}) ?([^\r]*)")

Parser = Callable[[bytes, int], int]
"""``parser(buffer, pos) -> new_pos``: consume complete frames it recognises, stop at the first it does not."""


def subject_text(raw: bytes) -> str:
    """A subject off the wire as the frames show it: one interned str (bytes that are not UTF-8 kept
    as surrogates).

    >>> subject_text(b"orders.eu")
    'orders.eu'
    """
    return sys.intern(raw.decode("utf-8", "surrogateescape"))


class Names(dict):
    """Subject bytes → one interned str each, made on first sight (``names[b"a.b"]``)."""

    def __missing__(self, key: bytes) -> str:
        value = self[key] = subject_text(key)
        return value


@dataclass(frozen=True)
class Dial:
    """How to reach the session's server again: address and credentials; secrets never in the repr.

    Picklable (TLS is kept as file names and rebuilt where it is used), so a
    Dask task can carry it to a worker; ``repr(dial)`` shows ``***`` for every secret.

    >>> Dial("127.0.0.1", 4222, user="u", password="p")
    Dial(nats://127.0.0.1:4222, user=***, password=***)
    """

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None
    nkey: str | None = None          # a seed file or the seed itself
    creds: str | None = None         # a creds file (JWT + seed)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls: bool = False
    name: str = "nbnats"             # the client name the server shows (the session's own)

    def __repr__(self) -> str:
        shown = [f"nats://{self.host}:{self.port}"]
        shown += [f"{k}=***" for k in ("user", "password", "token", "nkey", "creds") if getattr(self, k)]
        shown += [f"{k}={getattr(self, k)}" for k in ("tls_ca", "tls_cert") if getattr(self, k)]
        return f"Dial({', '.join(shown)})"

    @classmethod
    def of(cls, conn) -> Dial:
        """The dial of a live :class:`~nbnats.runtime.connection.Connection` (the server it is connected to now)."""
        base = conn.dial
        url = conn.nc.connected_url
        if url is not None and url.hostname:
            return cls(**{**base.__dict__, "host": url.hostname, "port": url.port or 4222})
        return base

    @classmethod
    def candidates(cls, conn, avoid: tuple[str, int] | None = None) -> list[Dial]:
        """Where to connect: the server the session is on, then every other server it knows
        (``avoid``, a server going away, last)."""
        base, seen, out = conn.dial, set(), []
        urls = [conn.nc.connected_url, *conn.nc.servers]
        for url in urls:
            if url is None or not url.hostname:
                continue
            where = (url.hostname, url.port or 4222)
            if where not in seen:
                seen.add(where)
                out.append(cls(**{**base.__dict__, "host": where[0], "port": where[1]}))
        out.sort(key=lambda d: (d.host, d.port) == avoid)
        return out or [base]

    @classmethod
    def from_options(cls, url: str, opts: dict[str, Any]) -> Dial:
        """Build from ``connect()``'s options (the first URL of a list)."""
        parts = urlsplit(url.split(",")[0].strip() if "://" in url else f"nats://{url.split(',')[0].strip()}")
        user, password = opts.get("user") or parts.username, opts.get("password") or parts.password
        if parts.username and not parts.password and not opts.get("user"):
            user, token = None, parts.username       # nats://TOKEN@host
        else:
            token = opts.get("token")
        return cls(parts.hostname or "127.0.0.1", parts.port or 4222, user and str(user),
                   password and str(password), token and str(token), opts.get("nkey") and str(opts["nkey"]),
                   opts.get("creds") and str(opts["creds"]), opts.get("tls_ca"), opts.get("tls_cert"),
                   opts.get("tls_key") and str(opts["tls_key"]), parts.scheme == "tls",
                   opts.get("client_name") or "nbnats")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls or self.tls_ca or self.tls_cert):
            return None
        ctx = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            ctx.load_cert_chain(self.tls_cert, self.tls_key)
        return ctx


def _sign(dial: Dial, nonce: str) -> dict:
    """The CONNECT fields that prove an nkey or creds identity (signing the server's nonce)."""
    import nkeys    # nats-py's own optional dependency (nats-py[nkeys])
    jwt = None
    if dial.creds:
        text = open(dial.creds).read()
        blocks = re.findall(r"-----BEGIN [^-]+-----\s*(.+?)\s*------END", text, re.S)
        if len(blocks) < 2:
            raise ConnectError(f"the creds file {dial.creds} holds no JWT and seed", "check the file")
        jwt, seed = blocks[0].strip(), blocks[1].strip()
    else:
        seed = dial.nkey
        if seed and not seed.startswith("S"):
            seed = open(seed).read().strip()
    kp = nkeys.from_seed(seed.encode())
    sig = base64.urlsafe_b64encode(kp.sign(nonce.encode())).rstrip(b"=").decode()
    out = {"sig": sig}
    if jwt:
        out["jwt"] = jwt
    else:
        out["nkey"] = kp.public_key.decode()
    return out


class Wire(asyncio.Protocol):
    """One client connection on the nbnats loop; messages go to :attr:`parser`, then to the callbacks.

    ``on_msg(subject, reply, payload)`` and ``on_hmsg(subject, reply, header_block, payload)``
    take what the parser leaves; ``status(header_block)`` reads a status reply's code.
    ``lost`` is set (with :attr:`error`) when the connection ends.
    """

    def __init__(self):
        self.buf = b""                  # an incomplete frame left from the last read
        self._short = 0                 # bytes the incomplete frame needs in all
        self._parts: list[bytes] = []   # pieces of one large frame still arriving
        self._have = self._need = 0
        self.transport: asyncio.Transport | None = None
        self.parser: Parser | None = None
        self.on_msg: Callable[[bytes, bytes | None, bytes], None] | None = None
        self.on_hmsg: Callable[[bytes, bytes | None, bytes, bytes], None] | None = None
        self.after_read: Callable[[], None] | None = None     # called once per socket read, after parsing
        self.on_lame_duck: Callable[[], None] | None = None   # the server said it enters lame-duck mode
        self.info: dict = {}
        self.dial: Dial | None = None
        self.lost = asyncio.Event()
        self.error: BaseException | None = None
        self._info_seen = asyncio.Event()
        self._pongs: list[asyncio.Future] = []
        self._sids = 0

    # -- opening ----------------------------------------------------------------------
    @classmethod
    async def open(cls, dial: Dial, timeout: float) -> Wire:
        """Connect, authenticate and wait for the first PONG, within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(cls._open(loop, dial, timeout), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"the server at {dial.host}:{dial.port} did not answer a bulk connection within "
                          f"{timeout:g} s", "check it with nbnats.status()") from None
        except OSError as exc:
            raise NotConnected(f"could not open a bulk connection to {dial.host}:{dial.port} "
                               f"({exc.strerror or exc})", "check the server with nbnats.status()") from None

    @classmethod
    async def _open(cls, loop, dial: Dial, timeout: float) -> Wire:
        transport, wire = await loop.create_connection(cls, dial.host, dial.port)
        wire.dial = dial
        try:
            await wire._info_seen.wait()
            ctx = dial.ssl_context()
            if wire.info.get("tls_required") and ctx is None:
                ctx = ssl.create_default_context()
            if ctx is not None:
                transport = await loop.start_tls(transport, wire, ctx, server_hostname=dial.host)
                wire.transport = transport
            connect: dict[str, Any] = {"verbose": False, "pedantic": False, "tls_required": ctx is not None,
                                       "name": dial.name, "lang": "python-nbnats", "version": "1",
                                       "protocol": 1, "headers": True, "no_responders": True}
            if dial.user:
                connect.update(user=dial.user, **({"pass": dial.password} if dial.password else {}))
            if dial.token:
                connect["auth_token"] = dial.token
            if dial.nkey or dial.creds:
                connect.update(_sign(dial, wire.info.get("nonce", "")))
            wire._write(b"CONNECT " + orjson.dumps(connect) + b"\r\n")
            await wire.ping(timeout)
            return wire
        except BaseException:
            transport.close()
            raise

    # -- asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if self.error is None:
            self.error = exc or ConnectionResetError("the server closed the bulk connection")
        self.lost.set()
        self._info_seen.set()
        why = self.error if isinstance(self.error, NatsError) else NotConnected(
            "the bulk connection closed", "run it again")
        for fut in self._pongs:
            if not fut.done():
                fut.set_exception(why)
        self._pongs.clear()

    def data_received(self, data: bytes) -> None:
        # Parse an immutable bytes object, so every payload sliced from it is ``bytes``; only an
        # incomplete frame at the end is kept over (a copy of at most one frame per read).
        if self._need:
            # the rest of one large frame: gather the pieces, join once it is whole
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data, self._parts, self._have, self._need = b"".join(self._parts), [], 0, 0
        buf = self.buf + data if self.buf else data
        pos, end = 0, len(buf)
        parser = self.parser
        while pos < end:
            if parser is not None:
                pos = parser(buf, pos)
                if pos >= end:
                    break
            new = self._one(buf, pos, end)
            if new == pos:
                break                       # an incomplete frame: wait for the rest
            pos = new
        self.buf = buf[pos:] if pos < end else b""
        if self._short > len(self.buf):        # the frame left over needs more than this read brought
            self._parts, self._have, self._need = [self.buf], len(self.buf), self._short
            self.buf = b""
        self._short = 0
        if self.after_read is not None:
            self.after_read()

    def _one(self, buf: bytes, pos: int, end: int) -> int:
        """Take one frame the parser left; return where the next starts (``pos`` if incomplete)."""
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return pos
        first = buf[pos]
        if first in (77, 72):     # M, H
            m = _CONTROL.match(buf, pos)
            if m is None:
                self._fail(f"an unreadable frame {bytes(buf[pos:eol])[:80]!r}")
                return end
            h, subject, _sid, reply, n1, n2 = m.groups()
            if h and n2 is None:            # HMSG subject sid hlen tlen (no reply)
                reply, n1, n2 = None, reply, n1
            start = m.end()
            total = int(n2 if h else n1)
            if start + total + 2 > end:
                self._short = start + total + 2 - pos
                return pos
            if h:
                split = start + int(n1)
                if self.on_hmsg is not None:
                    self.on_hmsg(subject, reply, buf[start:split], buf[split:start + total])
            elif self.on_msg is not None:
                self.on_msg(subject, reply, buf[start:start + total])
            return start + total + 2
        line = buf[pos:eol]
        if line == b"PING":
            self._write(b"PONG\r\n")
        elif line == b"PONG":
            if self._pongs:
                fut = self._pongs.pop(0)
                if not fut.done():
                    fut.set_result(None)
        elif line.startswith(b"INFO "):
            self.info = orjson.loads(line[5:])
            self._info_seen.set()
            if self.info.get("ldm") and self.on_lame_duck is not None:
                self.on_lame_duck()          # the server is going away: move before it closes us
        elif line.startswith(b"-ERR"):
            text = line[4:].strip().strip(b"'").decode("utf-8", "replace")
            self._fail(text)
        return eol + 2

    def _fail(self, text: str) -> None:
        low = text.lower()
        if "authoriz" in low or "authentic" in low:
            self.error = ConnectError(f"the server refused the bulk connection: {text}",
                                      "check the connection's credentials")
        else:
            self.error = NotConnected(f"the server ended the bulk connection: {text}", "run it again")
        if self.transport is not None:
            self.transport.close()

    # -- sending ----------------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise NotConnected("the bulk connection is closed", "run it again")
        self.transport.write(data)

    def subscribe(self, subject: str, queue: str | None = None) -> int:
        """Subscribe ``subject`` (in queue group ``queue``); returns the subscription id."""
        self._sids += 1
        group = b" " + queue.encode() if queue else b""
        self._write(b"SUB %s%s %d\r\n" % (subject.encode(), group, self._sids))
        return self._sids

    def unsubscribe(self, sid: int) -> None:
        """End subscription ``sid`` (nothing to do once the connection is gone)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"UNSUB %d\r\n" % sid)

    def publish(self, subject: str, payload: bytes, reply: str | None = None) -> None:
        """Send one message (no headers)."""
        if reply:
            self._write(b"PUB %s %s %d\r\n%s\r\n" % (subject.encode(), reply.encode(), len(payload), payload))
        else:
            self._write(b"PUB %s %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))

    async def ping(self, timeout: float) -> None:
        """Round trip to the server: everything sent before has been processed by it."""
        fut = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        self._write(b"PING\r\n")
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            raise Timeout(f"the server did not answer a PING on the bulk connection within {timeout:g} s",
                          "check it with nbnats.status()") from None
        if self.error is not None and isinstance(self.error, ConnectError):
            raise self.error

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def status(header_block: bytes) -> tuple[str, str]:
    """A status reply's code and description (``("", "")`` for ordinary headers).

    >>> status(b"NATS/1.0 404 No Messages\\r\\n\\r\\n")
    ('404', 'No Messages')
    """
    m = _STATUS.match(header_block)
    return (m.group(1).decode(), m.group(2).decode("utf-8", "replace").strip()) if m else ("", "")
