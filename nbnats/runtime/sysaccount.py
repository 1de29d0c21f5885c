"""The bundled server's locks and its system account: generated credentials, reports without an open port.

Every bundled server is configured with two accounts: ``NBNATS`` (JetStream
on) for the session's user, and ``SYS``, its system account, whose user is
known only to this process. Server reports (varz, jsz, healthz, connz, kick)
are system-account requests sent over a short-lived plain socket, so no
unauthenticated monitoring port is needed.

>>> creds = Credentials.generate(); creds
Credentials(user='nbnats-…', <hidden>)
>>> reply = request(srv.nodes[0], "VARZ")            # doctest: +SKIP
>>> reply["server_name"]                             # doctest: +SKIP
'nbnats-1a2b3c'
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import ssl
from urllib.parse import quote

__all__ = ["Credentials", "config", "read_info", "request", "kick"]


class Credentials:
    """A generated user and password; never shown by ``repr``.

    >>> c = Credentials("ada", "s3cret"); c
    Credentials(user='ada', <hidden>)
    >>> c.options()
    {'user': 'ada', 'password': 's3cret'}
    """

    __slots__ = ("kind", "user", "password")

    def __init__(self, user: str, password: str):
        self.kind, self.user, self.password = "user", user, password

    @classmethod
    def generate(cls, prefix: str = "nbnats") -> Credentials:
        """A random user name and a 32-hex-digit password.

        >>> len(Credentials.generate().password)
        32
        """
        return cls(f"{prefix}-{secrets.token_hex(3)}", secrets.token_hex(16))

    def options(self) -> dict:
        """Keyword arguments for ``nbnats.connect(url, **creds.options())`` (or nats-py's ``connect``).

        >>> Credentials("u", "p").options()
        {'user': 'u', 'password': 'p'}
        """
        return {"user": self.user, "password": self.password}

    def url(self, url: str) -> str:
        """``url`` (one or several, comma-separated) with these credentials in it.

        >>> Credentials("u", "p w").url("nats://127.0.0.1:1,nats://127.0.0.1:2")
        'nats://u:p%20w@127.0.0.1:1,nats://u:p%20w@127.0.0.1:2'
        """
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
        return ",".join(re.sub(r"^(\w+://)", rf"\g<1>{auth}", u.strip()) for u in url.split(","))

    def __repr__(self) -> str:
        return f"Credentials(user={self.user!r}, <hidden>)"

    __str__ = __repr__


def config(user: Credentials | None, system: Credentials, jetstream: bool) -> str:
    """The server configuration: the session's account and the system account.

    ``user=None`` leaves the server open: clients without credentials land in
    the session's account (``no_auth_user``); the system account stays locked.

    >>> "system_account: SYS" in config(Credentials("u", "p"), Credentials("s", "q"), True)
    True
    """
    session = user or Credentials.generate()
    js = "jetstream: enabled, " if jetstream else ""
    lines = ["accounts {",
             f'  NBNATS: {{ {js}users: [ {{ user: "{session.user}", password: "{session.password}" }} ] }}',
             f'  SYS: {{ users: [ {{ user: "{system.user}", password: "{system.password}" }} ] }}',
             "}", "system_account: SYS"]
    if user is None:
        lines.append(f'no_auth_user: "{session.user}"')
    return "\n".join(lines) + "\n"


def _host(host: str) -> str:
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host


def read_info(host: str, port: int, timeout: float) -> dict:
    """The INFO a nats-server sends every client on connecting (raises OSError/ValueError if none).

    >>> read_info("127.0.0.1", srv.port, 1)["server_name"]   # doctest: +SKIP
    'nbnats-1a2b3c'
    """
    with socket.create_connection((_host(host), port), timeout) as s:
        line = s.makefile("rb").readline()
    if not line.startswith(b"INFO "):
        raise ValueError(f"not a NATS server: {line[:40]!r}")
    return json.loads(line[5:])


def request(node, endpoint: str, body: dict | None = None, timeout: float = 2.0) -> dict:
    """A system-account request to one node (``VARZ``, ``JSZ``, ``HEALTHZ``, ``CONNZ``, ``KICK`` …); its ``data``.

    Raises OSError (unreachable, stalled, refused) or ValueError (an error reply).

    >>> request(srv.nodes[0], "HEALTHZ")["status"]   # doctest: +SKIP
    'ok'
    """
    system = node.system
    if system is None or not node.server_id:
        raise OSError(f"node {node.name} has no system account nbnats can use")
    payload = json.dumps(body or {}).encode()
    connect = json.dumps({"verbose": False, "pedantic": False, "user": system.user, "pass": system.password,
                          "name": "nbnats-system", "lang": "python", "protocol": 1}).encode()
    subject = f"$SYS.REQ.SERVER.{node.server_id}.{endpoint}".encode()
    with socket.create_connection((_host(node.host), node.port), timeout) as raw:
        raw.settimeout(timeout)
        s = raw
        info = raw.makefile("rb").readline()                     # the server's INFO
        if b'"tls_required":true' in info:
            # Our own child on loopback, so its certificate need not be checked here.
            tls = ssl.create_default_context()
            tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
            s = tls.wrap_socket(raw)
        reader = s.makefile("rb")
        s.sendall(b"CONNECT " + connect + b"\r\nSUB _INBOX.nbnats.sys 1\r\nPUB " + subject
                  + b" _INBOX.nbnats.sys " + str(len(payload)).encode() + b"\r\n" + payload + b"\r\nPING\r\n")
        while True:
            line = reader.readline()
            if not line:
                raise OSError(f"node {node.name} closed the system-account connection")
            if line.startswith(b"MSG "):
                data = reader.read(int(line.split()[-1]) + 2)[:-2]
                reply = json.loads(data)
                if reply.get("error"):
                    raise ValueError(reply["error"].get("description") or str(reply["error"]))
                return reply.get("data") or {}
            if line.startswith(b"-ERR"):
                raise OSError(f"node {node.name} refused the system account: {line[5:].strip().decode()}")
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")


def kick(srv, client_name: str | None = None, timeout: float = 2.0) -> int:
    """Disconnect the session-account clients (named ``client_name``) from every node; returns how many.

    The server drops them as it would a misbehaving client; they reconnect by
    themselves. Needs nats-server 2.11+. Used to prove reconnects in tests.

    >>> kick(srv, client_name="nbnats")   # doctest: +SKIP
    1
    """
    kicked = 0
    for node in srv.nodes:
        if not node.running:
            continue
        conns = request(node, "CONNZ", {"limit": 1024, "auth": True}, timeout).get("connections") or []
        for c in conns:
            if c.get("account") != "NBNATS" or (client_name and c.get("name") != client_name):
                continue
            request(node, "KICK", {"cid": c["cid"]}, timeout)
            kicked += 1
    return kicked
