"""The checks behind ``server_check``: natscli's ``server check connection`` and ``server check jetstream``.

Each check is one row: check, status (OK, WARNING, CRITICAL), value, warn,
critical, reason. A check that cannot be made (no JetStream) is a CRITICAL
row saying why, as natscli reports it, not an exception.

>>> worst(pd.Series(["OK", "WARNING"]))
'WARNING'
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pandas as pd

from nbnats.data import units
from nbnats.engine import api
from nbnats.errors import NatsError, ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import ping as round_trip
from nbnats.runtime.connection import open_like
from nbnats.system.clients import close_quietly

LEVELS = ("OK", "WARNING", "CRITICAL")
COLUMNS = {"check": "string", "status": "string", "value": "float64", "warn": "float64", "critical": "float64",
           "reason": "string"}
CONNECTION_DEFAULTS = {"connect_warn": "500ms", "connect_critical": "1s", "rtt_warn": "500ms",
                       "rtt_critical": "1s", "req_warn": "500ms", "req_critical": "1s"}
JETSTREAM_DEFAULTS = {"mem_warn": 75, "mem_critical": 90, "store_warn": 75, "store_critical": 90,
                      "streams_warn": -1, "streams_critical": -1, "consumers_warn": -1, "consumers_critical": -1,
                      "replica_seen_critical": "5s", "replica_lag_critical": 200}


def worst(statuses) -> str:
    """The worst of the statuses (OK when there are none).

    >>> worst(["OK", "CRITICAL", "WARNING"])
    'CRITICAL'
    """
    return max(statuses, key=LEVELS.index, default="OK")


def _settings(given: dict, defaults: dict, verb: str) -> dict:
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValidationError(f"{verb} has no threshold {unknown[0]!r}", f"use one of {', '.join(defaults)}")
    return {**defaults, **given}


def _row(check: str, value: float | None, warn: float | None, critical: float | None, reason: str,
         status: str | None = None) -> dict:
    if status is None:
        status = ("CRITICAL" if critical is not None and critical >= 0 and value >= critical else
                  "WARNING" if warn is not None and warn >= 0 and value >= warn else "OK")
    return {"check": check, "status": status, "value": value, "warn": warn, "critical": critical, "reason": reason}


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS)


def connection(conn, timeout: Any = "5s", **thresholds: Any) -> pd.DataFrame:
    """Connect time, PING round trip and a request round trip on a fresh connection, in milliseconds.

    >>> connection(nbnats.current())["status"].tolist()   # doctest: +SKIP
    ['OK', 'OK', 'OK']
    """
    limits = {k: units.seconds(v, k) * 1000 for k, v in _settings(thresholds, CONNECTION_DEFAULTS,
                                                                  "server check connection").items()}
    timeout = units.seconds(timeout, "timeout")

    async def measure() -> list[dict]:
        clock = asyncio.get_running_loop().time
        started = clock()
        try:
            probe = await open_like(conn, "nbnats-check", timeout)
        except NatsError as exc:
            return [_row("connect", None, limits["connect_warn"], limits["connect_critical"],
                         f"could not connect: {exc.what}", "CRITICAL")]
        try:
            connected = (clock() - started) * 1000
            rows = [_row("connect", connected, limits["connect_warn"], limits["connect_critical"],
                         f"connected in {connected:.1f} ms")]
            rtt = await round_trip(probe, timeout, "the check's ping") * 1000
            rows.append(_row("rtt", rtt, limits["rtt_warn"], limits["rtt_critical"], f"round trip {rtt:.2f} ms"))
            subject = f"_nbnats.check.{uuid.uuid4().hex[:12]}"

            async def echo(msg):
                await probe.nc.publish(msg.reply, msg.data)
            sub = await probe.nc.subscribe(subject, cb=echo)
            try:
                await round_trip(probe, timeout, "subscribing the check's responder", flush=True)
                sent = clock()
                await probe.nc.request(subject, b"nbnats check", timeout=timeout)
                req = (clock() - sent) * 1000
                rows.append(_row("request", req, limits["req_warn"], limits["req_critical"],
                                 f"request answered in {req:.2f} ms"))
            except Exception as exc:      # a request that fails is the check's finding, not an error
                rows.append(_row("request", None, limits["req_warn"], limits["req_critical"],
                                 f"the request was not answered ({type(exc).__name__})", "CRITICAL"))
            finally:
                await sub.unsubscribe()
            return rows
        finally:
            await close_quietly([probe])

    return _frame(loop.run(measure(), 4 * timeout + 5, "checking the connection"))


def _usage(check: str, used: int, limit: int | None, warn: float, critical: float, unit: str) -> dict:
    if not limit or limit < 0:
        return _row(check, float(used), warn, critical, f"{used:,} {unit} used, no limit", "OK")
    pct = 100.0 * used / limit
    return _row(check, pct, warn, critical, f"{pct:.1f}% of the limit ({used:,} of {limit:,} {unit})")


def _replica_rows(streams: list[dict], seen_critical: float, lag_critical: int) -> list[dict]:
    rows = []
    for s in streams:
        cfg, cluster = s.get("config") or {}, s.get("cluster") or {}
        want = cfg.get("num_replicas") or 1
        if want <= 1:
            continue
        peers = cluster.get("replicas") or []
        problems = []
        if not cluster.get("leader"):
            problems.append("no leader")
        if len(peers) + 1 < want:
            problems.append(f"{len(peers) + 1} of {want} replicas")
        for p in peers:
            seen = (p.get("active") or 0) / 1e9
            if p.get("offline"):
                problems.append(f"{p.get('name')} offline")
            elif not p.get("current"):
                problems.append(f"{p.get('name')} not current")
            if seen > seen_critical:
                problems.append(f"{p.get('name')} last seen {seen:.1f} s ago")
            if (p.get("lag") or 0) > lag_critical:
                problems.append(f"{p.get('name')} {p.get('lag')} operations behind")
        reason = "; ".join(problems) or f"{want} replicas, all current"
        rows.append(_row(f"replicas {cfg.get('name')}", float(len(peers) + 1), None, None, reason,
                         "CRITICAL" if problems else "OK"))
    return rows


def jetstream(conn, **thresholds: Any) -> pd.DataFrame:
    """The account's JetStream use against its limits, and the health of every replicated stream.

    >>> jetstream(nbnats.current())[["check", "status"]]   # doctest: +SKIP
    """
    t = _settings(thresholds, JETSTREAM_DEFAULTS, "server check jetstream")
    seen_critical = units.seconds(t["replica_seen_critical"], "replica_seen_critical")
    lag_critical = units.count(t["replica_lag_critical"], "replica_lag_critical")

    async def inspect() -> list[dict]:
        try:
            info = await api.request(conn, "INFO", what="reading the JetStream account")
        except NatsError as exc:
            return [_row("jetstream", None, None, None, exc.what, "CRITICAL")]
        limits = info.get("limits") or {}
        rows = [_usage("memory", info.get("memory", 0), limits.get("max_memory"), t["mem_warn"],
                       t["mem_critical"], "bytes"),
                _usage("storage", info.get("storage", 0), limits.get("max_storage"), t["store_warn"],
                       t["store_critical"], "bytes"),
                _usage("streams", info.get("streams", 0), limits.get("max_streams"), t["streams_warn"],
                       t["streams_critical"], "streams"),
                _usage("consumers", info.get("consumers", 0), limits.get("max_consumers"), t["consumers_warn"],
                       t["consumers_critical"], "consumers")]
        streams = await api.paged(conn, "STREAM.LIST", "streams", what="listing streams")
        return rows + _replica_rows(streams, seen_critical, lag_critical)

    return _frame(loop.run(inspect(), 30, "checking JetStream"))
