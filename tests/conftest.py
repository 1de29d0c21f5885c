"""Shared fixtures: a real bundled nats-server per test session, never a mock."""

from __future__ import annotations

import itertools
import os
import uuid

import pytest

import nbnats
from nbnats.runtime import connection, server

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def nats_server():
    """One bundled nats-server (JetStream on, free loopback port) for the whole run."""
    srv = server.start()
    yield srv
    srv.stop()


@pytest.fixture
def nats_url(nats_server) -> str:
    """The session server's URL with its generated credentials, for other programs (nats-py, node)."""
    return nats_server.auth.url(nats_server.url) if nats_server.auth else nats_server.url


@pytest.fixture
def connected(nats_server):
    """nbnats connected to the session server; every tail and responder stopped afterwards."""
    os.environ.pop("NATS_URL", None)
    conn = nbnats.connect(nats_server.url)
    yield conn
    nbnats.stop_all()
    connection.close_all()


@pytest.fixture
def uid() -> str:
    """A short unique token for subjects, streams and buckets, so tests never collide."""
    return f"u{next(_counter)}{uuid.uuid4().hex[:6]}"


@pytest.fixture
def ip(connected):
    """An IPython shell with ``%load_ext nbnats`` done, connected to the session server."""
    from IPython.testing.globalipapp import get_ipython, start_ipython
    shell = get_ipython() or start_ipython()
    shell.run_line_magic("load_ext", "nbnats")
    yield shell


def run_cell(shell, code: str):
    """Run a cell; return (result, error_lines) where error_lines is what the user saw."""
    import io
    from contextlib import redirect_stderr, redirect_stdout
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = shell.run_cell(code)
    return result, out.getvalue() + err.getvalue()
