"""``trace``: follow one message through the servers with nats-server's message tracing (2.11+).

The message goes out with a ``Nats-Trace-Dest`` header; every server it
passes reports an event there (its ingress, subject mappings, imports and
exports, JetStream, and each egress to a client, route, gateway or leaf).
By default it is only traced, not delivered (``Nats-Trace-Only``), as natscli
does; ``deliver=True`` delivers it too.

>>> hops = nbnats.trace("orders.new", {"id": 1})     # doctest: +SKIP
>>> hops[["server", "type", "kind", "name", "subject", "latency_ms"]]   # doctest: +SKIP
>>> hops.note, hops.figure                           # doctest: +SKIP
('delivered to 1 subscriber (traced only: pass deliver=True to deliver it)', Figure(...))
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import nats.errors
import orjson
import pandas as pd

from nbnats.data import units, validate
from nbnats.data.payload import encode
from nbnats.engine import api
from nbnats.runtime import loop
from nbnats.runtime.connection import current
from nbnats.system.result import Result, typed

DEST, ONLY, HOP = "Nats-Trace-Dest", "Nats-Trace-Only", "Nats-Trace-Hop"
SINCE = (2, 11)
TYPES = {"in": "ingress", "sm": "subject mapping", "se": "stream export", "si": "service import",
         "js": "jetstream", "eg": "egress"}
KINDS = {0: "client", 1: "router", 2: "gateway", 3: "system", 4: "leaf", 5: "jetstream", 6: "account"}
LINKS = {1, 2, 4}                 # egress kinds that carry the message on to another server
COLUMNS = {"server": "string", "hop": "string", "type": "string", "kind": "string", "name": "string",
           "account": "string", "subject": "string", "latency_ms": "float64", "error": "string"}


class TraceResult(Result):
    """What :func:`trace` returns: one row an event of the message's path, ``note`` and ``figure``."""

    def _draw(self, df: pd.DataFrame):
        import plotly.graph_objects as go
        df = df.astype(object).where(df.notna(), None)
        labels: list[str] = []

        def node(label: str) -> int:
            label = html.escape(label)          # the server's names and subjects, shown as plotly text
            if label not in labels:
                labels.append(label)
            return labels.index(label)

        server_of_hop = {r.hop: r.server for r in df.itertuples() if r.type == "ingress" and r.hop}
        links = []
        for r in df.itertuples():
            here = node(f"server {r.server}")
            if r.type == "ingress" and r.kind == "client":
                links.append((node(f"publisher {r.name or r.account}"), here))
            elif r.type == "jetstream":
                links.append((here, node(f"stream {r.name}")))
            elif r.type == "egress" and r.kind in ("router", "gateway", "leaf"):
                nxt = server_of_hop.get(r.hop)
                links.append((here, node(f"server {nxt}" if nxt else f"{r.kind} {r.name}")))
            elif r.type == "egress":
                links.append((here, node(f"{r.kind} {r.name or r.subject}")))
        fig = go.Figure(go.Sankey(node=dict(label=labels, pad=20),
                                  link=dict(source=[a for a, _ in links], target=[b for _, b in links],
                                            value=[1] * len(links))))
        fig.update_layout(title=html.escape(self.note), height=360, margin=dict(l=20, r=20, t=60, b=20))
        return fig


def _events(event: dict, start: pd.Timestamp | None) -> list[dict]:
    server = (event.get("server") or {}).get("name")
    hop = ((event.get("request") or {}).get("header") or {}).get(HOP, [None])[0]
    rows = []
    for e in event.get("events") or []:
        kind = e.get("kind")
        row = {"server": server, "hop": hop or e.get("hop"), "type": TYPES.get(e.get("type"), e.get("type")),
               "kind": KINDS.get(kind, str(kind) if kind is not None else None), "name": e.get("name"),
               "account": e.get("acc"), "subject": e.get("subj") or e.get("sub") or e.get("subject"),
               "ts": pd.Timestamp(e["ts"]) if e.get("ts") else None, "error": e.get("error")}
        if row["type"] == "jetstream":
            row.update(kind="jetstream", name=e.get("stream"),
                       error=e.get("error") or ("no interest" if e.get("nointerest") else None))
        elif row["type"] == "subject mapping":
            row["subject"] = e.get("to")
        elif row["type"] in ("stream export", "service import"):
            row["subject"] = e.get("to")
        if row["type"] != "ingress":
            row["hop"] = e.get("hop") or None
        rows.append(row)
    return rows


def _note(df: pd.DataFrame, deliver: bool, complete: bool) -> str:
    clients = int(((df["type"] == "egress") & (df["kind"] == "client")).sum())
    streams = sorted(set(df.loc[(df["type"] == "jetstream") & df["error"].isna(), "name"].dropna()))
    if not clients and not streams:
        note = "no subscriber received it"
    else:
        parts = []
        if clients:
            parts.append(f"{'delivered' if deliver else 'would be delivered'} to {clients} subscriber"
                         f"{'s' if clients != 1 else ''}")
        if streams:
            parts.append(f"{'stored' if deliver else 'would be stored'} in stream {', '.join(streams)}")
        note = " and ".join(parts)
    if not deliver and (clients or streams):
        note += " (traced only: pass deliver=True to deliver it)"
    if not complete:
        note += "; some servers on the path did not report in time"
    return note


def trace(subject: str, body: Any = b"", timeout: Any = "2s", *, headers: dict | None = None,
          deliver: bool = False, connection: str | None = None) -> TraceResult:
    """Trace a message to ``subject`` through the servers; one row an event of its path.

    Columns: server, hop (which route hop brought it there), type (ingress,
    egress, jetstream, subject mapping, service import, stream export), kind
    (client, router, gateway, leaf, jetstream …), name (the client, route or
    stream), account, subject, latency_ms (since the first server took it in),
    error. ``.note`` says who received it — "no subscriber received it" when
    nobody did — and ``.figure`` draws the path. Needs nats-server 2.11+.

    >>> nbnats.trace("orders.new", {"id": 1}).note    # doctest: +SKIP
    'would be delivered to 1 subscriber (traced only: pass deliver=True to deliver it)'
    """
    validate.subject(subject, publish=True)
    timeout = units.seconds(timeout, "timeout")
    conn = current(connection)
    api.needs(conn, SINCE, "trace")
    payload = encode(body, subject)
    sent_headers = {**(validate.headers(headers) or {})}
    validate.payload_size(len(payload), conn.max_payload, subject, {**sent_headers, DEST: "_INBOX.x" * 4})

    async def run() -> tuple[list[dict], bool]:
        events: list[dict] = []
        expected = [1]
        origin = [False]        # the first server's event (no hop header): events come in any order
        done = asyncio.Event()

        async def on_event(msg) -> None:
            try:
                event = orjson.loads(msg.data)
            except orjson.JSONDecodeError:
                return
            events.append(event)
            expected[0] += int(event.get("hops") or 0)
            origin[0] = origin[0] or not ((event.get("request") or {}).get("header") or {}).get(HOP)
            if origin[0] and len(events) >= expected[0]:
                done.set()

        inbox = conn.nc.new_inbox()
        try:
            sub = await conn.nc.subscribe(inbox, cb=on_event)
            try:
                out = {**sent_headers, DEST: inbox}
                if not deliver:
                    out[ONLY] = "true"
                await conn.nc.publish(subject, payload, headers=out)
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                except asyncio.TimeoutError:
                    pass                # the events that came are the trace
            finally:
                await sub.unsubscribe()
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                nats.errors.StaleConnectionError):
            raise api.disconnected(conn) from None
        return events, origin[0] and len(events) >= expected[0]

    events, complete = loop.run(run(), timeout + 5, f"tracing a message to {subject!r}")
    rows = [row for event in events for row in _events(event, None)]
    df = pd.DataFrame(rows, columns=list(COLUMNS) + ["ts"])
    starts = df.loc[df["type"] == "ingress", "ts"].dropna()
    first = starts.min() if len(starts) else None
    df["latency_ms"] = [(t - first).total_seconds() * 1000 if first is not None and t is not None else None
                        for t in df["ts"]]
    df = df.drop(columns="ts").astype(COLUMNS)
    if df.empty:
        note = f"no server reported the message to {subject!r} within {timeout:g} s"
    else:
        note = _note(df, deliver, complete)
    return typed(TraceResult, df, note, subject=subject, delivered=bool(deliver), complete=complete)
