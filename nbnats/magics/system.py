"""``%nats server report|ls|ping|check``, ``%nats rtt``, ``%nats bench`` and ``%nats trace``: parse, call nbnats.system.

>>> %nats server report connections               # doctest: +SKIP
>>> %nats bench pub bench.x --msgs 10000 --size 64  # doctest: +SKIP
>>> %nats trace orders.new '{"id": 1}'             # doctest: +SKIP
"""

from __future__ import annotations

from nbnats.errors import PermissionDenied
from nbnats.magics.core import HEADER, TIMEOUT, body_from, headers_from
from nbnats.magics.registry import arg, verb
from nbnats.system import bench, report, trace


def _worded(fn, *args, **kwargs):
    """Run a report; a missing system account is said with the %nats verbs that fix it."""
    try:
        return fn(*args, **kwargs)
    except PermissionDenied as exc:
        if "system account" not in exc.what:
            raise
        raise PermissionDenied(exc.what, "connect as a system-account user (%nats connect URL --creds FILE, or "
                                         "--user/--password of the system user), or use the bundled server "
                                         "(%nats server start)") from None


def _timeout(a) -> dict:
    return {} if a.timeout is None else {"timeout": a.timeout}


@verb("server report", "natscli's server report: connections, jetstream, accounts or health of every server",
      arg("kind", choices=list(report.REPORTS)), TIMEOUT)
def _server_report(a, ctx):
    return _worded(report.server_report, a.kind, **_timeout(a))


@verb("server ls", "every server of the system: name, cluster, version, connections, uptime, rtt", TIMEOUT)
def _server_ls(a, ctx):
    return _worded(report.server_ls, **_timeout(a))


@verb("server ping", "each server's round trip through the system account", TIMEOUT)
def _server_ping(a, ctx):
    return _worded(report.server_ping, **_timeout(a))


@verb("server check", "natscli's server check: OK / WARNING / CRITICAL rows for the connection or JetStream",
      arg("kind", choices=list(report.CHECKS)))
def _server_check(a, ctx):
    return report.server_check(a.kind)


@verb("rtt", "the connection's round trip, several samples",
      arg("--count", type=int, default=5, help="round trips to take (default 5)"), TIMEOUT)
def _rtt(a, ctx):
    return report.rtt(a.count, **_timeout(a))


@verb("bench", "natscli's bench: rates (and latency percentiles for req/js) on connections of its own",
      arg("kind", choices=list(bench.KINDS)), arg("subject"),
      arg("--msgs", default="100000", help="messages to send (default 100000)"),
      arg("--size", default="128", help="bytes a message: 128, 1KB (default 128)"),
      arg("--clients", default="1", help="publishers, requesters, or (sub) subscribers (default 1)"), TIMEOUT)
def _bench(a, ctx):
    return bench.bench(a.kind, a.subject, msgs=a.msgs, size=a.size, clients=a.clients, **_timeout(a))


@verb("trace", "trace a message through the servers (nats-server 2.11+): its hops and a graph of the path",
      arg("subject"), arg("body", nargs="?", default=None), HEADER,
      arg("--deliver", action="store_true", help="deliver the message too (by default it is only traced)"), TIMEOUT)
def _trace(a, ctx):
    body = body_from(a.body) if a.body is not None else b""
    return trace.trace(a.subject, body, headers=headers_from(a.header), deliver=a.deliver, **_timeout(a))
