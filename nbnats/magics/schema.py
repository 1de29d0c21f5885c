"""``%nats schema`` verbs: infer, set, get, ls, rm, check — thin faces over :mod:`nbnats.schema`.

SOURCE is a notebook variable holding a tail or a DataFrame (or a tail id
such as ``t1``); ``--stream NAME`` reads a stream's last messages instead.

>>> %nats schema infer t                          # doctest: +SKIP
>>> %nats schema set 'orders.>' inferred           # doctest: +SKIP
>>> %nats schema check --stream ORDERS            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from nbnats import schema as _schema
from nbnats.errors import NatsError, NotFound
from nbnats.tail import get as _tail_by_id
from nbnats.magics.registry import arg, group, verb

group("schema", "event schemas: infer from messages, register on the server, check frames")

_SOURCE = arg("source", nargs="?", default=None,
              help="a notebook variable holding a tail or a DataFrame (or a tail id such as t1)")
_STREAM = arg("--stream", default=None, help="read the last --limit messages of this stream instead")
_LIMIT = arg("--limit", type=int, default=1000, help="with --stream: how many messages (default 1000)")
_SUBJECT = arg("--subject", default=None, help="only rows whose subject matches this pattern")


def _variable(ctx, name: str) -> Any:
    ns = getattr(ctx.shell, "user_ns", None) or {}
    if name in ns:
        return ns[name]
    try:
        return _tail_by_id(name)
    except NotFound:
        pass
    raise NatsError(f"there is no notebook variable {name!r}",
                    "pass the name of a variable holding a tail or a DataFrame, or use --stream NAME")


def _read(a, ctx) -> dict:
    if a.source is None and a.stream is None:
        raise NatsError("say what to read", "name a tail or DataFrame variable, or pass --stream NAME")
    source = None if a.source is None else _variable(ctx, a.source)
    return dict(source=source, stream=a.stream, limit=a.limit, subject=a.subject)


@verb("schema infer", "infer a JSON Schema (and its drift) from a tail, a DataFrame or a stream",
      _SOURCE, _STREAM, _LIMIT, _SUBJECT,
      arg("--enums", action="store_true", help="also turn small string sets into enums"),
      arg("--ranges", action="store_true", help="also record the number ranges seen"))
def _infer(a, ctx):
    return _schema.infer(enums=a.enums, ranges=a.ranges, **_read(a, ctx))


@verb("schema set", "register a schema for a subject pattern (from a variable or the %%nats cell's JSON)",
      arg("pattern", help="subject pattern, e.g. 'orders.>'"),
      arg("variable", nargs="?", default=None, help="a notebook variable holding the schema dict"),
      cell=True)
def _set(a, ctx):
    if a.variable is not None and ctx.cell is not None:
        raise NatsError("the schema is given twice (a variable and the cell)", "keep one of them")
    if a.variable is not None:
        doc = _variable(ctx, a.variable)
    elif ctx.cell is not None and ctx.cell.strip():
        doc = ctx.cell
    else:
        raise NatsError(f"no schema was given for {a.pattern!r}",
                        "name a variable holding it (%nats schema set PATTERN VAR) or put its JSON in a %%nats cell")
    revision = _schema.register(a.pattern, doc)
    print(f"schema for {a.pattern!r} registered (revision {revision}): "
          "publishing to matching subjects is now checked")


@verb("schema get", "show the schema registered for a subject pattern", arg("pattern"))
def _get(a, ctx):
    from IPython.display import JSON
    return JSON(_schema.get(a.pattern), expanded=True)


@verb("schema ls", "the registered schemas (shared by every notebook on the server)")
def _ls(a, ctx):
    return _schema.ls()


@verb("schema rm", "remove the schema registered for a subject pattern", arg("pattern"))
def _rm(a, ctx):
    _schema.rm(a.pattern)
    print(f"schema for {a.pattern!r} removed")


@verb("schema check", "the rows of a tail, DataFrame or stream that break their subject's schema",
      _SOURCE, _STREAM, _LIMIT, _SUBJECT,
      arg("--schema", default=None, help="check against the schema in this variable instead"))
def _check(a, ctx):
    schema = None if a.schema is None else _variable(ctx, a.schema)
    bad = _schema.check(schema=schema, **_read(a, ctx))
    if bad.empty:
        print("every row matches its schema")
    return bad

