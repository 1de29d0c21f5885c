"""``%nats`` verbs for connections, the bundled server and core NATS.

Each verb parses nothing itself and holds no NATS logic: it maps arguments
onto the Python API and returns what the notebook should show.
"""

from __future__ import annotations

import ast

import orjson
import pandas as pd
from IPython.display import display

import nbnats
from nbnats.data import units
from nbnats.errors import NatsError, Timeout
from nbnats.magics.registry import arg, group, verb


def duration(text: str) -> float:
    """Seconds from '2', '2s', '500ms', '1m', '1h' (a clear error otherwise).

    >>> duration("500ms"), duration("2"), duration("1m")
    (0.5, 2.0, 60.0)
    """
    try:
        return units.seconds(text, "the duration")
    except ValueError:   # raised as a plain NatsError: argparse would reword a ValueError
        raise NatsError(f"{text!r} is not a duration", "write it like 2, 2s, 500ms, 1m or 1h") from None


def headers_from(pairs: list[str] | None) -> dict | None:
    """``["K:V", …]`` from repeated ``-H`` flags as a dict.

    >>> headers_from(["Trace-Id:abc", "X: y z"])
    {'Trace-Id': 'abc', 'X': 'y z'}
    """
    if not pairs:
        return None
    out = {}
    for p in pairs:
        if ":" not in p:
            raise NatsError(f"header {p!r} has no ':'", "write -H KEY:VALUE, e.g. -H Trace-Id:abc")
        k, v = p.split(":", 1)
        out[k.strip()] = v.strip()
    return out


def body_from(text: str | None):
    """A typed body: JSON text is sent as written; a Python dict/list literal as JSON; else text.

    >>> body_from("{'a': 1}"), body_from('{"a": 1}'), body_from("hi")
    ({'a': 1}, '{"a": 1}', 'hi')
    """
    if text is None:
        return b""
    try:
        orjson.loads(text)
        return text
    except orjson.JSONDecodeError:
        pass
    if text[:1] in "{[":
        try:
            value = ast.literal_eval(text)
            if isinstance(value, (dict, list)):
                return value
        except (ValueError, SyntaxError):
            pass
    return text


HEADER = arg("-H", "--header", action="append", metavar="KEY:VALUE", help="a header (repeatable)")
TIMEOUT = arg("--timeout", type=duration, default=None, help="seconds to wait (2, 500ms, 1m)")


# -- connections ----------------------------------------------------------
@verb("connect", "connect to a NATS server (URL list, natscli context, credentials)",
      arg("url", nargs="?", help="nats://host:4222, or several separated by commas"),
      arg("--name", default="default", help="name this connection"),
      arg("--context", help="a natscli context name"),
      arg("--creds", help="a .creds file"), arg("--nkey", help="an nkey seed file"),
      arg("--user"), arg("--password"), arg("--token"),
      arg("--tls-ca"), arg("--tls-cert"), arg("--tls-key"), TIMEOUT)
def _connect(a, ctx):
    conn = nbnats.connect(a.url, name=a.name, context=a.context, creds=a.creds, nkey=a.nkey,
                          user=a.user, password=a.password, token=a.token, tls_ca=a.tls_ca,
                          tls_cert=a.tls_cert, tls_key=a.tls_key, timeout=a.timeout or 5.0)
    return conn


@verb("status", "the current connection: server, version, JetStream, round trip, tails")
def _status(a, ctx):
    return pd.Series(nbnats.status()).to_frame("value")


@verb("close", "drain and close the connection; every tail stops cleanly",
      arg("--name", default=None, help="the connection to close"))
def _close(a, ctx):
    nbnats.close(a.name)


# -- core NATS -----------------------------------------------------------
@verb("pub", "publish a message (the %%nats cell body is the payload)",
      arg("subject"), arg("body", nargs="?", default=None), HEADER,
      arg("--count", type=int, default=1, help="publish the message N times"),
      arg("--js", action="store_true", help="publish to JetStream and show the ack"),
      arg("--msg-id", default=None, help="Nats-Msg-Id for JetStream de-duplication"),
      arg("--ttl", default=None, help="expire this message after this long: 10s, 1h, never (server 2.11+; implies --js)"),
      arg("--schedule", default=None,
          help="keep it as a schedule: a delay (10s), '@at 2026-12-01T10:00:00Z' (2.12+), '@every 5m' (2.14+)"),
      arg("--schedule-dest", "--target", dest="schedule_dest", default=None,
          help="with --schedule: the subject the message is published to when it fires"),
      arg("--schedule-ttl", default=None, help="with --schedule: the TTL of the message it publishes"),
      arg("--lines", action="store_true", help="with %%nats: each non-empty line is one message"),
      cell=True)
def _pub(a, ctx):
    headers = headers_from(a.header)
    if ctx.cell is not None and a.body is not None:
        raise NatsError("the body is given twice (on the line and in the cell)", "keep one of them")
    features = dict(ttl=a.ttl, schedule=a.schedule, schedule_target=a.schedule_dest, schedule_ttl=a.schedule_ttl)
    js = a.js or a.ttl is not None or a.schedule is not None
    if ctx.cell is not None and a.lines:
        acks = [nbnats.publish(a.subject, body_from(line), headers=headers, js=js, count=a.count, **features)
                for line in ctx.cell.splitlines() if line.strip()]
        return pd.DataFrame(acks) if js else None
    body = body_from(ctx.cell.strip("\n") if ctx.cell is not None else a.body)
    result = nbnats.publish(a.subject, body, headers=headers, js=js, msg_id=a.msg_id, count=a.count, **features)
    if isinstance(result, list):
        return pd.DataFrame(result)
    return result


@verb("sub", "tail one or more subjects in the background; rows land in t.df",
      arg("subject", nargs="+", help="one or more subjects (wildcards * and >)"), arg("--queue", default=None, help="join a queue group"),
      arg("--limit", type=int, default=10_000, help="rows kept (older ones are dropped)"),
      arg("--count", type=int, default=None, help="stop after N messages"),
      arg("--timeout", type=duration, default=None, help="with --count: wait up to S seconds for them"),
      arg("--stream", default=None, help="read through this JetStream stream (rows carry seq)"),
      arg("--codec", default=None, help="decode payloads with this codec (msgpack, text, raw, hex, base64 …)"),
      arg("--no-widget", action="store_true", help="do not show the live view"))
def _sub(a, ctx):
    subject = a.subject[0] if len(a.subject) == 1 else a.subject
    t = nbnats.tail(subject, queue=a.queue, limit=a.limit, count=a.count, stream=a.stream, codec=a.codec)
    if a.timeout is not None and a.count:
        try:
            t.wait(a.count, timeout=a.timeout)
        except Timeout:       # the tail is still the cell's value: say so, and that it runs on
            print(f"nbnats: {t.id} received {t.count} of {a.count} messages within {a.timeout:g} s; it keeps "
                  f"tailing until it has them — {t.id}.stop() (or %nats stop {t.id}) ends it")
    if not a.no_widget:
        display(t.widget)
    return t


@verb("req", "send a request and show the reply",
      arg("subject"), arg("body", nargs="?", default=None), HEADER, TIMEOUT, cell=True)
def _req(a, ctx):
    body = body_from(ctx.cell.strip("\n") if ctx.cell is not None else a.body)
    return nbnats.request(a.subject, body, timeout=a.timeout or 2.0, headers=headers_from(a.header))


@verb("reply", "answer requests on a subject with BODY (or echo them without one)",
      arg("subject"), arg("body", nargs="?", default=None),
      arg("--queue", default=None, help="share the requests with other responders in this group"))
def _reply(a, ctx):
    if a.body is None:
        return nbnats.serve(a.subject, lambda m: m.data, queue=a.queue)
    fixed = body_from(a.body)
    return nbnats.serve(a.subject, lambda m: fixed, queue=a.queue)


@verb("tails", "list every background piece: tails, watches, responders, services, workers")
def _tails(a, ctx):
    from nbnats import background
    return background.pieces()


@verb("stop", "stop a background piece by id (t1, s1, m1, w1), or --all",
      arg("id", nargs="?", default=None), arg("--all", action="store_true"))
def _stop(a, ctx):
    from nbnats import background
    if a.all:
        print(f"stopped {background.stop_all()} background piece(s)")
        return None
    if not a.id:
        raise NatsError("say which piece to stop", "give its id (see %nats tails) or --all")
    background.stop(a.id)


group("service", "discover NATS micro services ($SRV.*)")


@verb("service ls", "every running micro-service instance", TIMEOUT)
def _service_ls(a, ctx):
    return nbnats.services(wait=a.timeout or 0.5)


@verb("service info", "the INFO of one service's instances", arg("name"), TIMEOUT)
def _service_info(a, ctx):
    return nbnats.service_info(a.name, wait=a.timeout or 0.5)


@verb("service stats", "request counts, errors and timings per endpoint", arg("name", nargs="?"), TIMEOUT)
def _service_stats(a, ctx):
    return nbnats.service_stats(a.name, wait=a.timeout or 0.5)
