"""``%nats server …`` verbs: start, stop and inspect the bundled nats-server.

>>> %nats server start --cluster 3   # doctest: +SKIP
"""

from __future__ import annotations

import nbnats
from nbnats.magics.registry import arg, group, verb
from nbnats.runtime import session

group("server", "the bundled nats-server (start, stop, info, context, url) and every server's reports: report, ls, ping, check")


@verb("server start", "start the bundled nats-server and connect to it",
      arg("--port", type=int, default=None), arg("--no-jetstream", action="store_true"),
      arg("--cluster", type=int, default=1, help="nodes in a local cluster (e.g. 3)"),
      arg("--store", default=None, help="JetStream store directory (default: a temporary one)"),
      arg("--auth", choices=["user", "none"], default="user",
          help="user: generated credentials (the default); none: an open server, for lessons that need one"))
def _server_start(a, ctx):
    return session.start_server(port=a.port, jetstream=not a.no_jetstream, cluster=a.cluster,
                                store=a.store, auth=a.auth)


@verb("server stop", "stop the server started by %nats server start")
def _server_stop(a, ctx):
    nbnats.stop_server()


@verb("server info", "varz and jsz figures of the bundled server")
def _server_info(a, ctx):
    return nbnats.server_info()


@verb("server context", "write a natscli context for this connection (nats --context NAME …)", arg("name"))
def _server_context(a, ctx):
    path = session.write_context(a.name)
    print(f"wrote {path} (readable by you only); try: nats --context {a.name} server check connection")


@verb("server url", "the connection's URL for other programs (credentials masked unless --secret)",
      arg("--secret", action="store_true", help="include the user and password"))
def _server_url(a, ctx):
    return session.server_url(secret=a.secret)
