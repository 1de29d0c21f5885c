"""Security: loopback by default, generated credentials kept out of sight, TLS verified, refusals final."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import nbformat
import psutil
import pytest

import nbnats
from nbnats.runtime import connection, loop, server

pytestmark = pytest.mark.timeout(60)


def listening(pid: int) -> set[str]:
    """The addresses a process accepts connections on."""
    return {c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def loop_tasks() -> list[str]:
    async def probe():
        return sorted(t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task())
    return loop.run(probe(), 5, "listing the loop's tasks")


def visible(*objects) -> str:
    """Everything a user could see of these objects: repr, str and the repr of their dicts."""
    out = []
    for o in objects:
        out += [repr(o), str(o)]
        if hasattr(o, "__dict__"):
            out.append(repr(vars(o)))
    return "\n".join(out)


# -- loopback only, unless asked -----------------------------------------------------------------
def test_bundled_server_and_cluster_listen_on_loopback_only():
    with server.start() as single, server.start(cluster=3, timeout=30) as cluster:
        for node in single.nodes + cluster.nodes:
            addresses = listening(node.pid)
            assert addresses and addresses <= {"127.0.0.1", "::1"}, (node.name, addresses)
        assert len(listening(cluster.nodes[0].pid)) >= 1
        ports = {c.laddr.port for c in psutil.Process(cluster.nodes[0].pid).net_connections(kind="inet")
                 if c.status == psutil.CONN_LISTEN}
        assert cluster.nodes[0].port in ports and cluster.nodes[0].monitor_port is None   # no open monitoring


def test_the_embedded_default_server_is_loopback_too(monkeypatch, uid):
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.setattr(connection, "_embedded", None)
    monkeypatch.setitem(connection._settings, uid, {})
    try:
        conn = connection.current(uid)        # nothing configured: the bundled server starts
        assert listening(conn.server.pid) <= {"127.0.0.1", "::1"}
    finally:
        connection.close(uid)
        connection._settings.pop(uid, None)
        if connection._embedded is not None:
            connection._embedded.stop()


def test_all_interfaces_only_when_asked():
    with server.start(host="0.0.0.0", jetstream=False) as srv:
        assert listening(srv.pid) & {"0.0.0.0", "::"}          # every interface (Go binds "::" dual-stack)


# -- generated credentials -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["user"])
def test_server_start_auth_connects_the_session_without_showing_the_secret(ip, kind, caplog):
    caplog.set_level(logging.DEBUG)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = ip.run_cell(f"srv = %nats server start --auth {kind}\nsrv")
        ip.run_cell("%nats status")
        ip.run_cell("%nats server info")
    try:
        assert result.success
        srv = ip.user_ns["srv"]
        secret = srv.auth.password
        assert nbnats.status()["url"] == srv.url          # the session uses it, with the credentials
        nbnats.publish("x", "y")
        seen = "\n".join([out.getvalue(), err.getvalue(), caplog.text, repr(result.result),
                          visible(srv, srv.auth, nbnats.current(), nbnats.status(), nbnats.connections(),
                                  nbnats.server_info())])
        assert secret not in seen
        assert secret not in Path(f"/proc/{srv.pid}/cmdline").read_text()
    finally:
        ip.run_line_magic("nats", "server stop")


def test_secrets_never_reach_a_saved_notebook(tmp_path, uid):
    from nbclient import NotebookClient

    cells = [
        "%load_ext nbnats\nimport logging, nbnats\nlogging.basicConfig(level=logging.DEBUG)",
        "srv = nbnats.server.start(auth='user')\nuser, pw = srv.auth.user, srv.auth.password\nsrv",
        "%nats connect {srv.url} --user {user} --password $pw\n",
        "%nats status",
        "conn = nbnats.connect(srv.url.replace('//', f'//{user}:{pw}@'), name='inurl')\n"
        "print(conn, nbnats.connections(), nbnats.status('inurl'))\nconn",
        f"t = %nats sub {uid}.>\nnbnats.publish('{uid}.x', {{'n': 1}})\nt.wait(1).df",
        "%nats connect {srv.url} --user {user} --password wrong$pw --name bad",
        "nbnats.connect(srv.url, user=user, password=pw + 'x', name='bad2')",
        "%xmode Verbose",
        "nbnats.connect(srv.url, user=user, password=pw, timeout='soon')",
        "import nbnats.runtime.connection as c\nc._settings",
        "tok = nbnats.server.start(); secret2 = tok.auth.password\n"
        "nbnats.connect(tok.url, name='tok'); nbnats.status('tok')",
        "%nats server start",
        "%nats server url",
        "print(nbnats.runtime.session.server_url())",
        "%nats connect {srv.url} --user {user} --password two words --name spaced",
        "open('secrets.txt', 'w').write('\\n'.join([pw, secret2, nbnats.runtime.session._server.auth.password]))\n"
        "nbnats.stop_server(); srv.stop(); tok.stop()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, kernel_name="python3", timeout=60, allow_errors=True,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    text = path.read_text()
    secrets = (tmp_path / "secrets.txt").read_text().split()     # written by the kernel, never shown
    assert len(secrets) == 3 and all(len(s) >= 32 for s in secrets)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert len(errors) >= 3                     # the refused connects and the bad timeout did fail
    for secret in secrets:
        assert secret not in text, "a secret was saved in the notebook"
    assert "refused the credentials" in text and "status" in text


# -- TLS --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    """A self-signed certificate for DNS:localhost only, made with the openssl CLI."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


def test_tls_is_verified_by_default_and_failures_name_the_host(tls_files, ip, uid):
    cert, key = tls_files
    with server.start(jetstream=False, extra_args=["--tls", "--tlscert", str(cert), "--tlskey", str(key)]) as srv:
        host = f"127.0.0.1:{srv.port}"
        before = loop_tasks()
        with pytest.raises(nbnats.ConnectError) as unknown_ca:
            nbnats.connect(srv.url, name=uid, timeout=2)
        assert f"TLS verification failed for {host}" in str(unknown_ca.value)
        assert "self-signed" in str(unknown_ca.value) and "tls_ca=FILE" in unknown_ca.value.fix   # worded for Python; %nats says --tls-ca
        with pytest.raises(nbnats.ConnectError) as wrong_name:
            nbnats.connect(srv.url, name=uid, tls_ca=str(cert), timeout=2)
        assert f"TLS verification failed for {host}" in str(wrong_name.value)
        assert "127.0.0.1" in str(wrong_name.value) and "name on its certificate" in wrong_name.value.fix
        assert uid not in nbnats.connections() and loop_tasks() == before      # nothing left retrying

        url = f"tls://localhost:{srv.port}"
        conn = ip.run_line_magic("nats", f"connect {url} --tls-ca {cert} --name {uid}")
        try:
            t = nbnats.tail(uid, connection=uid)
            nbnats.publish(uid, "over tls", connection=uid)
            assert t.wait(1, timeout=5).df["data"].tolist() == ["over tls"] and conn.connected
        finally:
            nbnats.close(uid)


# -- refused credentials -------------------------------------------------------------------------------
def test_nkey_auth_and_its_seed_never_shown(tmp_path, uid):
    import nkeys
    seed = nkeys.encode_seed(bytes(range(32)), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    conf = tmp_path / "nkey.conf"
    conf.write_text(f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}\n')
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    other = tmp_path / "other.nk"
    other.write_bytes(nkeys.encode_seed(bytes(32), nkeys.PREFIX_BYTE_USER))
    with server.start(jetstream=False, extra_args=["-c", str(conf)]) as srv:
        conn = nbnats.connect(srv.url, nkey=str(seed_file), name=uid)
        try:
            assert seed.decode() not in visible(conn, nbnats.status(uid), nbnats.connections())
        finally:
            nbnats.close(uid)
        with pytest.raises(nbnats.ConnectError, match="refused the credentials") as refused:
            nbnats.connect(srv.url, nkey=str(other), name=uid, timeout=3)
        assert seed.decode() not in str(refused.value)


def test_wrong_credentials_are_one_error_and_leave_no_retry_loop(ip, uid):
    with server.start(jetstream=False, auth="user") as srv:
        tasks, threads = loop_tasks(), {t.name for t in threading.enumerate()}
        def total() -> int:       # each reading is one system-account connection of its own
            return srv.nodes[0].report("VARZ")["total_connections"]
        connections_before = total()
        start = time.monotonic()
        r = ip.run_cell(f"%nats connect {srv.url} --user {srv.auth.user} --password not-it --name {uid}")
        took = time.monotonic() - start
        err = r.error_in_exec
        assert isinstance(err, nbnats.ConnectError) and err._render_traceback_() == [f"nbnats: {err}"]
        assert "refused the credentials" in str(err) and "not-it" not in str(err) and took < 5
        assert uid not in nbnats.connections()
        tried = total() - connections_before - 1
        time.sleep(1.5)                          # three reconnect waits: a retry loop would show
        assert total() - connections_before - 2 == tried <= 2
        assert loop_tasks() == tasks and {t.name for t in threading.enumerate()} <= threads | {"asyncio_0"}
        print(f"\n[wrong credentials] one ConnectError after {took:.2f} s, {tried} attempt(s), no retry after")


# -- the locked-down default server -----------------------------------------------------------------
def test_the_default_server_refuses_a_client_without_credentials(nats_server):
    import nats

    async def anonymous():
        return await nats.connect(nats_server.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2)
    with pytest.raises(nats.errors.Error, match="Authorization"):
        asyncio.run(anonymous())


def test_server_url_masks_and_secret_works_for_another_client(connected, uid):
    import nats
    from nbnats.runtime import session
    masked, full = session.server_url(), session.server_url(secret=True)
    password = connected._credentials["password"]
    assert password not in masked and "***" in masked and password in full

    async def other_program():
        nc = await nats.connect(full, allow_reconnect=False, connect_timeout=2)
        try:
            await nc.publish(uid, b"from another program")
            await nc.flush()
        finally:
            await nc.close()
    t = nbnats.tail(uid)
    asyncio.run(other_program())
    assert t.wait(1, timeout=5).df["data"].tolist() == ["from another program"]
    assert password not in visible(connected, nbnats.status(), nbnats.connections(), t)


def test_context_file_is_private_and_reaches_the_server(connected, tmp_path, monkeypatch, uid):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    ip_out = io.StringIO()
    from nbnats.runtime import session
    with redirect_stdout(ip_out):
        path = session.write_context(uid)
    assert path == tmp_path / "nats" / "context" / f"{uid}.json" and (path.stat().st_mode & 0o777) == 0o600
    conn = nbnats.connect(context=uid, name=uid)      # what natscli would read
    try:
        assert conn.connected
    finally:
        nbnats.close(uid)


def test_auth_none_is_open_and_says_so(ip):
    out = io.StringIO()
    with redirect_stdout(out):
        r = ip.run_cell("srv = %nats server start --auth none --no-jetstream")
    try:
        assert r.success and ip.user_ns["srv"].auth is None
        assert out.getvalue().count("without credentials") == 1
        import nats

        async def anonymous():
            nc = await nats.connect(ip.user_ns["srv"].url, allow_reconnect=False, connect_timeout=2)
            await nc.close()
            return True
        assert asyncio.run(anonymous())
    finally:
        ip.run_line_magic("nats", "server stop")


def test_an_unquoted_password_with_a_space_never_reaches_the_error(ip, nats_server, uid):
    r = ip.run_cell(f"%nats connect {nats_server.url} --user ada --password correct horse --name {uid}")
    err = r.error_in_exec
    assert isinstance(err, nbnats.NatsError) and "horse" not in str(err) and "quote" in str(err)
