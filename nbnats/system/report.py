"""Server reports as DataFrames, as natscli's ``server report|ls|ping|check`` and ``rtt`` show them.

Reports ask every server of the system (a whole cluster) through the system
account (see :mod:`nbnats.system.sources`): the bundled server's own system
user, or the connection's when it is a system-account user. ``server_check``
and ``rtt`` need no system account.

>>> nbnats.server_report("connections")[["cid", "name", "server", "account", "subs"]]   # doctest: +SKIP
>>> nbnats.server_ls()[["name", "cluster", "version", "connections", "uptime"]]          # doctest: +SKIP
>>> nbnats.server_check("jetstream")[["check", "status", "reason"]]                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data import units
from nbnats.errors import ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import current, ping as round_trip
from nbnats.system import checks
from nbnats.system.sources import open_source

REPORTS = ("connections", "jetstream", "accounts", "health")
CHECKS = ("jetstream", "connection")
PAGE = 1024
OWN_CLIENT = "nbnats-system"       # the report's own client: left out of the connections it lists


def _kind(kind: str, allowed: tuple[str, ...], verb: str) -> str:
    if kind not in allowed:
        import difflib
        close = difflib.get_close_matches(str(kind), allowed, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValidationError(f"{verb} has no kind {kind!r}", f"{hint}choose one of {', '.join(allowed)}")
    return kind


def _gather(endpoint: str, body: dict | None, timeout: Any, verb: str, connection: str | None):
    timeout = units.seconds(timeout, "timeout")
    conn = current(connection)

    async def ask():
        async with await open_source(conn, timeout) as src:
            if endpoint != "CONNZ":
                return await src.gather(endpoint, body, timeout, verb), src.own is not None
            return await _connz(src, body, timeout, verb), src.own is not None

    return loop.run(ask(), 3 * timeout + 5, f"asking the servers for {verb}")


async def _connz(src, body: dict, timeout: float, verb: str) -> list[tuple[dict, dict]]:
    """Every connection of every server, paging past the server's limit per reply."""
    pages = await src.gather("CONNZ", {**body, "limit": PAGE, "offset": 0}, timeout, verb)
    out = []
    for server, data in pages:
        conns = list(data.get("connections") or [])
        while len(conns) < (data.get("total") or 0):
            more = await src.gather("CONNZ", {**body, "limit": PAGE, "offset": len(conns),
                                              "server_name": server.get("name")}, timeout, verb)
            page = next((d.get("connections") or [] for s, d in more if s.get("id") == server.get("id")), [])
            if not page:
                break
            conns += page
        out.append((server, {**data, "connections": conns}))
    return out


def _frame(rows: list[dict], columns: dict[str, str]) -> pd.DataFrame:
    """Rows → a frame with these columns and dtypes (``Int64``, ``string``, ``float64`` …)."""
    df = pd.DataFrame(rows, columns=list(columns))
    for col, dtype in columns.items():
        if dtype == "datetime":
            df[col] = pd.to_datetime(df[col], utc=True, format="ISO8601")
        elif dtype == "timedelta":
            df[col] = pd.to_timedelta(df[col])
        else:
            df[col] = df[col].astype(dtype)
    return df


def _since(start: str | None, now: str | None) -> pd.Timedelta | None:
    if not start or not now:
        return None
    return pd.Timestamp(now) - pd.Timestamp(start)


CONNECTION_COLUMNS = {"cid": "Int64", "kind": "string", "name": "string", "server": "string", "cluster": "string",
                      "ip": "string", "account": "string", "uptime": "timedelta", "rtt": "string",
                      "in_msgs": "Int64", "out_msgs": "Int64", "in_bytes": "Int64", "out_bytes": "Int64",
                      "subs": "Int64"}
JETSTREAM_COLUMNS = {"server": "string", "cluster": "string", "domain": "string", "meta_leader": "boolean",
                     "streams": "Int64", "consumers": "Int64", "messages": "Int64", "bytes": "Int64",
                     "memory": "Int64", "file": "Int64", "api_requests": "Int64", "api_errors": "Int64",
                     "pending": "Int64"}
ACCOUNT_COLUMNS = {"account": "string", "connections": "Int64", "in_msgs": "Int64", "out_msgs": "Int64",
                   "in_bytes": "Int64", "out_bytes": "Int64", "subs": "Int64"}
HEALTH_COLUMNS = {"server": "string", "cluster": "string", "domain": "string", "status": "string",
                  "status_code": "Int64", "type": "string", "error": "string"}
LS_COLUMNS = {"name": "string", "cluster": "string", "host": "string", "version": "string", "jetstream": "boolean",
              "connections": "Int64", "subscriptions": "Int64", "routes": "Int64", "gateways": "Int64",
              "mem": "Int64", "cpu": "float64", "cores": "Int64", "slow_consumers": "Int64", "uptime": "timedelta",
              "rtt_ms": "float64"}


def _connection_rows(replies, own: bool) -> list[dict]:
    rows = []
    for server, data in replies:
        for c in data.get("connections") or []:
            if own and c.get("name") == OWN_CLIENT:
                continue
            rows.append({"cid": c.get("cid"), "kind": c.get("kind"), "name": c.get("name") or c.get("mqtt_client"),
                         "server": server.get("name"), "cluster": server.get("cluster"),
                         "ip": f"{c.get('ip')}:{c.get('port')}", "account": c.get("account"),
                         "uptime": _since(c.get("start"), data.get("now")), "rtt": c.get("rtt"),
                         "in_msgs": c.get("in_msgs"), "out_msgs": c.get("out_msgs"), "in_bytes": c.get("in_bytes"),
                         "out_bytes": c.get("out_bytes"), "subs": c.get("subscriptions")})
    return rows


def _connections(replies, own: bool) -> pd.DataFrame:
    df = _frame(_connection_rows(replies, own), CONNECTION_COLUMNS)
    return df.sort_values(["subs", "cid"], ascending=[False, True], ignore_index=True)


def _accounts(replies, own: bool) -> pd.DataFrame:
    conns = _frame(_connection_rows(replies, own), CONNECTION_COLUMNS)
    totals = conns.groupby("account", dropna=False).agg(
        connections=("cid", "size"), in_msgs=("in_msgs", "sum"), out_msgs=("out_msgs", "sum"),
        in_bytes=("in_bytes", "sum"), out_bytes=("out_bytes", "sum"), subs=("subs", "sum")).reset_index()
    df = _frame(totals.to_dict("records"), ACCOUNT_COLUMNS)
    return df.sort_values(["subs", "account"], ascending=[False, True], ignore_index=True)


def _jetstream(replies) -> pd.DataFrame:
    rows = []
    for server, data in replies:
        meta = data.get("meta_cluster") or {}
        rows.append({"server": server.get("name"), "cluster": server.get("cluster"),
                     "domain": (data.get("config") or {}).get("domain") or server.get("domain"),
                     "meta_leader": bool(meta) and meta.get("leader") == server.get("name"),
                     "streams": data.get("streams", 0), "consumers": data.get("consumers", 0),
                     "messages": data.get("messages", 0), "bytes": data.get("bytes", 0),
                     "memory": data.get("memory", 0), "file": data.get("storage", 0),
                     "api_requests": (data.get("api") or {}).get("total", 0),
                     "api_errors": (data.get("api") or {}).get("errors", 0),
                     "pending": meta.get("pending", 0)})
    df = _frame(rows, JETSTREAM_COLUMNS)
    return df.sort_values(["cluster", "server"], ignore_index=True, na_position="first")


def _health(replies) -> pd.DataFrame:
    rows = []
    for server, data in replies:
        base = {"server": server.get("name"), "cluster": server.get("cluster"), "domain": server.get("domain"),
                "status": data.get("status"), "status_code": data.get("status_code"),
                "type": None, "error": data.get("error")}
        rows.append(base)
        for err in data.get("errors") or []:
            rows.append({**base, "type": str(err.get("type")), "error": err.get("error")})
    return _frame(rows, HEALTH_COLUMNS)


def server_report(kind: str = "connections", *, timeout: Any = "2s", connection: str | None = None) -> pd.DataFrame:
    """natscli's ``server report KIND`` over every server: ``connections``, ``jetstream``, ``accounts`` or ``health``.

    connections: one row a client connection (cid, kind, name, server, cluster,
    ip, account, uptime, rtt, in/out msgs and bytes, subs), most subscriptions
    first; jetstream: one row a server (streams, consumers, messages, bytes,
    memory, file, api_requests, api_errors, pending, meta_leader); accounts:
    one row an account (connections, traffic, subs); health: one row a server's
    healthz (status, status_code) plus one row each error it names. Needs the
    system account (the bundled server's is used by itself): else
    :class:`~nbnats.errors.PermissionDenied`.

    >>> nbnats.server_report("jetstream")[["server", "streams", "messages", "meta_leader"]]   # doctest: +SKIP
    """
    kind = _kind(kind, REPORTS, "server report")
    verb = f"server report {kind}"
    if kind in ("connections", "accounts"):
        replies, own = _gather("CONNZ", {"auth": True, "subscriptions": False}, timeout, verb, connection)
        df = _connections(replies, own) if kind == "connections" else _accounts(replies, own)
    elif kind == "jetstream":
        replies, _ = _gather("JSZ", {"raft": True}, timeout, verb, connection)
        df = _jetstream(replies)
    else:
        replies, _ = _gather("HEALTHZ", {"details": True}, timeout, verb, connection)
        df = _health(replies)
    df.attrs["servers"] = len(replies)
    return df


def _ping(timeout: Any, verb: str, connection: str | None):
    timeout = units.seconds(timeout, "timeout")
    conn = current(connection)

    async def ask():
        async with await open_source(conn, timeout) as src:
            return await src.ping(timeout, verb)

    return loop.run(ask(), timeout + 5, f"pinging the servers for {verb}")


def server_ls(*, timeout: Any = "2s", connection: str | None = None) -> pd.DataFrame:
    """natscli's ``server ls``: one row a server (name, cluster, host, version, jetstream, connections,
    subscriptions, routes, gateways, mem, cpu, cores, slow_consumers, uptime, rtt_ms), by name.

    Needs the system account, as :func:`server_report` does; for a server this
    process started, ``connections`` counts the report's own short-lived client too.

    >>> nbnats.server_ls()[["name", "version", "connections", "uptime"]]   # doctest: +SKIP
    """
    rows = []
    for rtt, server, st in _ping(timeout, "server ls", connection):
        rows.append({"name": server.get("name"), "cluster": server.get("cluster"), "host": server.get("host"),
                     "version": server.get("ver"), "jetstream": bool(server.get("jetstream")),
                     "connections": st.get("connections"), "subscriptions": st.get("subscriptions"),
                     "routes": len(st.get("routes") or []), "gateways": len(st.get("gateways") or []),
                     "mem": st.get("mem"), "cpu": st.get("cpu"), "cores": st.get("cores"),
                     "slow_consumers": st.get("slow_consumers"), "uptime": _since(st.get("start"), server.get("time")),
                     "rtt_ms": rtt * 1000})
    return _frame(rows, LS_COLUMNS).sort_values("name", ignore_index=True)


def server_ping(*, timeout: Any = "2s", connection: str | None = None) -> pd.DataFrame:
    """natscli's ``server ping``: each server's round trip (server, cluster, rtt_ms), fastest first.

    ``df.attrs`` holds ``replies`` and ``expected`` (the servers the system
    counts; fewer replies mean a server did not answer in time).

    >>> nbnats.server_ping()   # doctest: +SKIP
    """
    replies = _ping(timeout, "server ping", connection)
    rows = [{"server": s.get("name"), "cluster": s.get("cluster"), "rtt_ms": rtt * 1000} for rtt, s, _ in replies]
    df = _frame(rows, {"server": "string", "cluster": "string", "rtt_ms": "float64"})
    df = df.sort_values("rtt_ms", ignore_index=True)
    df.attrs.update(replies=len(rows), expected=max((st.get("active_servers") or 0 for _, _, st in replies),
                                                    default=len(rows)))
    return df


def rtt(count: int = 5, *, timeout: Any = "2s", connection: str | None = None) -> pd.DataFrame:
    """natscli's ``rtt``: ``count`` PING/PONG round trips of the connection (sample, address, rtt_ms).

    >>> nbnats.rtt(10)["rtt_ms"].median()   # doctest: +SKIP
    0.08
    """
    count = units.count(count, "count")
    if not count or count > 10_000:
        raise ValidationError(f"count={count!r} is not a number of round trips to take",
                              "pass a count from 1 to 10000, e.g. count=5")
    timeout = units.seconds(timeout, "timeout")
    conn = current(connection)

    async def sample() -> list[float]:
        return [await round_trip(conn, timeout, "the rtt ping") for _ in range(count)]

    times = loop.run(sample(), count * (timeout + 1) + 5, "measuring the round trip")
    where = conn.nc.connected_url.netloc.rsplit("@", 1)[-1] if conn.nc.connected_url else conn.url
    df = pd.DataFrame({"sample": pd.array(range(1, count + 1), dtype="Int64"),
                       "address": pd.array([where] * count, dtype="string"),
                       "rtt_ms": pd.array([t * 1000 for t in times], dtype="float64")})
    df.attrs["url"] = conn.url
    return df


def server_check(kind: str = "connection", *, connection: str | None = None, **thresholds: Any) -> pd.DataFrame:
    """natscli's ``server check connection|jetstream``: OK / WARNING / CRITICAL rows with reasons.

    connection: connect time, rtt and a request round trip on a fresh
    connection, against ``connect_warn``/``connect_critical``, ``rtt_warn``/
    ``rtt_critical``, ``req_warn``/``req_critical`` (defaults 500ms / 1s).
    jetstream: the account's memory and storage use against their limits
    (``mem_warn``/``mem_critical``, ``store_warn``/``store_critical`` in percent,
    defaults 75 / 90), streams and consumers against theirs (off unless set),
    and every replicated stream's peers (``replica_seen_critical`` 5s,
    ``replica_lag_critical`` 200 operations). ``df.attrs["status"]`` is the worst.

    >>> nbnats.server_check("connection")   # doctest: +SKIP
                   check status  value   warn  critical                 reason
    0  connect          OK    2.1  500.0    1000.0  connected in 2.1 ms
    """
    kind = _kind(kind, CHECKS, "server check")
    conn = current(connection)
    if kind == "connection":
        df = checks.connection(conn, **thresholds)
    else:
        df = checks.jetstream(conn, **thresholds)
    df.attrs["status"] = checks.worst(df["status"])
    return df
