"""nbnats.server against the real bundled nats-server; nothing is mocked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nats
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

from nbnats.runtime import procguard, server  # noqa: E402
from nbnats.errors import ServerError  # noqa: E402


def alive(pid: int) -> bool:
    """Running, i.e. /proc entry present and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def wait_dead(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def tcp_ok(url: str) -> bool:
    host, port = url.removeprefix("nats://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=2) as s:
        return s.recv(4).startswith(b"INFO")


async def roundtrip(url: str, **opts) -> bytes:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, **opts)
    try:
        sub = await nc.subscribe("t.x")
        await nc.publish("t.x", b"hi")
        return (await sub.next_msg(timeout=2)).data
    finally:
        await nc.close()


@pytest.mark.timeout(30)
def test_start_stop_reachable_and_cleans_up():
    srv = server.start()
    run_dir = srv.log_path.parent
    try:
        assert srv.running and srv.url == f"nats://127.0.0.1:{srv.port}" and srv.urls == [srv.url]
        assert srv.monitor_port is None                      # no open monitoring port unless asked
        assert tcp_ok(srv.url)
        assert asyncio.run(roundtrip(srv.url, **srv.auth.options())) == b"hi"
        assert srv in server.running_servers()
        assert (procguard.state_dir() / f"{srv.pid}.json").exists()
        assert os.getsid(srv.pid) == srv.pid  # own session: a Ctrl-C to the kernel's group misses it
        assert srv.store_dir.is_dir() and srv.log_path.read_text()
    finally:
        pid = srv.pid
        srv.stop()
    assert not srv.running and srv.pid is None and not alive(pid)
    assert srv not in server.running_servers()
    assert not run_dir.exists() and not srv.store_dir.exists()
    assert not (procguard.state_dir() / f"{pid}.json").exists()


@pytest.mark.timeout(30)
def test_info_reports_version_and_jetstream():
    with server.start() as srv:
        info = srv.info()
        assert info["version"] == "2.15.1"
        assert info["port"] == srv.port and info["running"] and info["server_name"].startswith("nbnats-")
        assert info["jetstream"]["enabled"] is True and info["jetstream"]["streams"] == 0
        assert {"connections", "in_msgs", "out_msgs", "in_bytes", "out_bytes", "mem", "max_payload"} <= info.keys()
        assert str(srv.store_dir) in srv.log_path.read_text()  # the private store, not the shared default
    assert srv.info()["running"] is False


@pytest.mark.timeout(30)
def test_without_jetstream():
    with server.start(jetstream=False) as srv:
        assert srv.store_dir is None
        assert srv.info()["jetstream"] == {"enabled": False}


@pytest.mark.timeout(30)
def test_two_servers_get_their_own_ports_and_stores():
    with server.start() as a, server.start() as b:
        assert a.port != b.port and a.auth.password != b.auth.password
        assert a.store_dir != b.store_dir
        assert {a, b} <= set(server.running_servers())
        assert tcp_ok(a.url) and tcp_ok(b.url)


@pytest.mark.timeout(30)
def test_context_manager_stops_on_exit_even_on_error():
    with pytest.raises(RuntimeError):
        with server.start() as srv:
            pid = srv.pid
            raise RuntimeError("boom")
    assert not srv.running and not alive(pid)


@pytest.mark.timeout(30)
def test_stop_is_idempotent_and_reaps():
    srv = server.start()
    pid = srv.pid
    srv.stop()
    srv.stop()
    srv.nodes[0].stop()
    with pytest.raises(ChildProcessError):  # already waited for: no zombie left behind
        os.waitpid(pid, os.WNOHANG)
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(ServerError, match="stopped server"):
        srv.nodes[0].start()


@pytest.mark.timeout(30)
def test_port_in_use_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerError) as err:
            server.start(port=port)
    assert str(err.value) == f"port {port} is already in use — choose another port or omit port"


@pytest.mark.timeout(30)
def test_fixed_port():
    port = server._free_ports(1)[0]
    with server.start(port=port) as srv:
        assert srv.port == port and srv.url == f"nats://127.0.0.1:{port}"


@pytest.mark.timeout(30)
def test_server_dying_during_start_shows_its_log():
    with pytest.raises(ServerError) as err:
        server.start(extra_args=["--no_such_flag"])
    assert "exited while starting" in err.value.what and "no_such_flag" in err.value.what


@pytest.mark.timeout(30)
def test_missing_binary(monkeypatch):
    monkeypatch.setenv("NBNATS_SERVER", "/nonexistent")
    with pytest.raises(ServerError) as err:
        server.start()
    assert "NBNATS_SERVER=/nonexistent" in err.value.what and "unset it" in err.value.fix


def test_default_binary_is_next_to_the_interpreter(monkeypatch):
    monkeypatch.delenv("NBNATS_SERVER", raising=False)
    assert server.find_binary() == str(Path(sys.executable).parent / "nats-server")


@pytest.mark.timeout(30)
def test_too_old_binary_is_refused(monkeypatch, tmp_path):
    old = tmp_path / "nats-server"
    old.write_text("#!/bin/sh\necho 'nats-server: v2.9.25'\n")
    old.chmod(0o755)
    monkeypatch.setenv("NBNATS_SERVER", str(old))
    with pytest.raises(ServerError, match=r"nats-server 2\.9\.25; nbnats needs 2\.10 or newer — pip install -U"):
        server.start()


@pytest.mark.timeout(30)
def test_max_payload_is_honoured():
    with server.start(max_payload=4096) as srv:
        assert srv.info()["max_payload"] == 4096


@pytest.mark.timeout(30)
def test_user_store_is_kept(tmp_path):
    with server.start(store=tmp_path / "js") as srv:
        assert srv.store_dir == tmp_path / "js"
    assert (tmp_path / "js" / "jetstream").is_dir()


@pytest.mark.timeout(30)
def test_locked_by_default_open_only_when_asked():
    with server.start(jetstream=False) as locked, server.start(jetstream=False, auth="none") as open_:
        with pytest.raises(nats.errors.Error, match="Authorization"):
            asyncio.run(roundtrip(locked.url))
        assert asyncio.run(roundtrip(locked.auth.url(locked.url))) == b"hi"
        password = locked.auth.password
        assert len(password) >= 32 and password not in Path(f"/proc/{locked.pid}/cmdline").read_text()
        for shown in (repr(locked), str(locked), repr(locked.auth), str(locked.auth), str(locked.info())):
            assert password not in shown
        assert open_.auth is None and asyncio.run(roundtrip(open_.url)) == b"hi"
        assert open_.info()["version"]                       # reports still go through the system account


@pytest.mark.timeout(30)
def test_monitoring_port_only_when_asked_and_on_loopback():
    with server.start(jetstream=False, host="0.0.0.0", monitor=True) as srv:
        assert srv.monitor_port and srv.monitor_port != srv.port
        import psutil
        bound = {c.laddr.ip for c in psutil.Process(srv.pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == srv.monitor_port}
        assert bound == {"127.0.0.1"}
    with pytest.raises(ServerError, match="auth='user'"):
        server.start(auth="token")


@pytest.mark.timeout(30)
def test_store_folders_are_private(tmp_path):
    with server.start(store=tmp_path / "js") as srv, server.start(cluster=3, timeout=30) as cluster:
        assert (srv.store_dir.stat().st_mode & 0o777) == 0o700
        for node in cluster.nodes:
            assert (node.store_dir.stat().st_mode & 0o777) == 0o700
        assert (cluster.store_dir.stat().st_mode & 0o777) == 0o700


@pytest.mark.timeout(30)
def test_user_auth():
    with server.start(auth="user", jetstream=False) as srv:
        user, password = srv.auth.user, srv.auth.password
        with pytest.raises(Exception):
            asyncio.run(roundtrip(srv.url, user=user, password="wrong"))
        assert asyncio.run(roundtrip(srv.url, user=user, password=password)) == b"hi"
        assert password not in repr(srv) and password not in repr(srv.auth)


@pytest.mark.timeout(60)
def test_cluster_of_three():
    with server.start(cluster=3, timeout=30) as srv:
        assert len(srv.nodes) == 3 and len(set(srv.urls)) == 3 and srv.url == ",".join(srv.urls)
        assert len({n.store_dir for n in srv.nodes}) == 3
        info = srv.info()
        names = {n.name for n in srv.nodes}
        assert info["meta_leader"] in names and info["jetstream"]["cluster_size"] == 3
        assert [n["running"] for n in info["nodes"]] == [True] * 3
        assert asyncio.run(roundtrip(srv.urls[1], **srv.auth.options())) == b"hi"

        node = srv.nodes[0]
        port, old_pid = node.port, node.pid
        node.stop()
        assert not node.running and not alive(old_pid) and srv.running
        assert srv.info()["nodes"][0]["running"] is False
        node.start(timeout=20)
        assert node.running and node.port == port and node.pid != old_pid
        assert tcp_ok(node.url)
        assert srv.info()["nodes"][0]["running"] is True
        pids = [n.pid for n in srv.nodes]
    assert not any(alive(p) for p in pids)


def _child(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)


@pytest.mark.timeout(30)
def test_server_dies_with_its_killed_owner():
    child = _child("from nbnats import server; s = server.start(); print(s.pid, s.log_path.parent, flush=True);"
                   "import time; time.sleep(60)")
    try:
        pid, run_dir = child.stdout.readline().split()
        pid = int(pid)
        assert alive(pid)
    finally:
        child.kill()
        child.wait()
    assert wait_dead(pid, 5), "nats-server outlived its SIGKILLed owner"
    # What the dead owner left behind (its temporary store too) goes at the next start.
    assert (procguard.state_dir() / f"{pid}.json").exists() and (Path(run_dir) / "jetstream").is_dir()
    with server.start(jetstream=False):
        assert not (procguard.state_dir() / f"{pid}.json").exists() and not Path(run_dir).exists()


@pytest.mark.timeout(30)
def test_server_stops_when_its_owner_exits_normally():
    child = _child("from nbnats import server; s = server.start(); print(s.pid, s.log_path.parent, flush=True)")
    pid, run_dir = child.stdout.readline().split()
    assert child.wait(timeout=15) == 0
    assert wait_dead(int(pid), 2) and not Path(run_dir).exists()


@pytest.mark.timeout(30)
def test_stale_pidfile_of_dead_owner_is_reaped():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no process: the "kernel" that died
    binary = server.find_binary()

    def by_hand(owner: int):
        store = tempfile.mkdtemp(prefix="nbnats-test-stale-")
        proc = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", "-1", "-m", "-1", "-js", "-sd", store],
                                start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        entry = {"pid": proc.pid, "owner": owner, "binary": binary, "store_dir": store, "temp_dirs": [store]}
        (procguard.state_dir() / f"{proc.pid}.json").write_text(json.dumps(entry))
        return proc, store

    orphan, orphan_store = by_hand(dead.pid)
    owned, owned_store = by_hand(os.getpid())
    # Not a nats-server: must survive even though its pidfile names a dead owner.
    bystander = subprocess.Popen(["sleep", "30"], start_new_session=True)
    (procguard.state_dir() / f"{bystander.pid}.json").write_text(
        json.dumps({"pid": bystander.pid, "owner": dead.pid, "binary": binary}))
    try:
        with server.start():
            assert orphan.wait(timeout=5) == -signal.SIGKILL
            assert not Path(orphan_store).exists()
            assert not (procguard.state_dir() / f"{orphan.pid}.json").exists()
            assert owned.poll() is None and Path(owned_store).exists()
            assert bystander.poll() is None
            assert not (procguard.state_dir() / f"{bystander.pid}.json").exists()
    finally:
        for p in (orphan, owned, bystander):
            p.kill()
            p.wait()
        (procguard.state_dir() / f"{owned.pid}.json").unlink(missing_ok=True)
        procguard._remove_temp_dir(owned_store)


@pytest.mark.timeout(30)
def test_child_outlives_the_short_lived_thread_that_asked_for_it():
    # PDEATHSIG fires when the forking *thread* exits: spawns must run on procguard's thread.
    procs = []
    t = threading.Thread(target=lambda: procs.append(procguard.spawn(["sleep", "30"], stdout=subprocess.DEVNULL)))
    t.start()
    t.join()
    proc = procs[0]
    try:
        time.sleep(0.3)
        assert proc.poll() is None and os.getsid(proc.pid) == proc.pid
    finally:
        assert procguard.terminate(proc) == -signal.SIGTERM
    assert proc not in procguard._children


@pytest.mark.timeout(30)
def test_start_timeout_leaves_nothing_behind():
    before = set(server.running_servers())
    alive_before = {p.pid for p in procguard._children if p.poll() is None}   # other tests' servers

    def new_alive():
        return [p for p in procguard._children if p.poll() is None and p.pid not in alive_before]

    with pytest.raises(ServerError, match=r"within 0 s"):
        server.start(timeout=0)
    assert set(server.running_servers()) == before
    deadline = time.monotonic() + 3
    while new_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not new_alive()


@pytest.mark.timeout(30)
def test_all_interfaces_host_gives_a_loopback_url():
    with server.start(host="0.0.0.0", jetstream=False) as srv:
        assert srv.url == f"nats://127.0.0.1:{srv.port}" and tcp_ok(srv.url)
        assert srv.info()["running"]


def test_state_changes_are_said_and_a_stopped_server_is_not_retried(capsys):
    """Starting another server stops the tails of the old connection, saying so; after stopping the session's
    server the next call connects by the default rules (the embedded server), not to the dead URL."""
    import nbnats
    from nbnats.runtime import connection as conn_mod
    os.environ.pop("NATS_URL", None)
    try:
        first = nbnats.start_server()
        t = nbnats.tail("moving.>")
        second = nbnats.start_server()
        assert not t.running and f"{t.id} on 'moving.>' stopped" in capsys.readouterr().out
        assert not first.running and second.running
        nbnats.stop_server()
        back = nbnats.current()                          # no retrying of the stopped server's URL
        assert back.connected and back.server is conn_mod._embedded and back.server is not second
    finally:
        nbnats.stop_all()
        conn_mod.close_all()
