"""``%nats search`` and ``%nats counter …``: thin faces over :mod:`nbnats.jetstream.search` and ``.counter``.

>>> df = %nats search ORDERS "total > 100" --subject 'orders.eu.>' --since 1d   # doctest: +SKIP
>>> %nats counter incr hits.home 5                                             # doctest: +SKIP
>>> %nats counter ls HITS                                                      # doctest: +SKIP
"""

from __future__ import annotations

from nbnats.jetstream import counter
from nbnats.jetstream.search import search
from nbnats.magics.registry import MagicUsageError, arg, group, verb

group("counter", "counters (server 2.12+): incr, get, ls")


@verb("search", "the messages of a stream that a pandas query keeps (read in chunks; a DataFrame)",
      arg("stream"), arg("expr", help="a pandas query over the frame's columns, e.g. \"total > 100\"; "
                                      "or the name of a notebook function taking a frame"),
      arg("--subject", default=None, help="only these subjects: 'orders.eu.*' or 'a.>,b.>' (sent to the server)"),
      arg("--since", default=None, help="from this time: ISO or ago (1h, 7d)"),
      arg("--until", default=None, help="up to this time: ISO or ago"),
      arg("--limit", type=int, default=None, help="stop after the first N matches"),
      arg("--chunk", type=int, default=100_000, help="messages read at a time (bounds memory)"))
def _search(a, ctx):
    expr = a.expr
    ns = getattr(ctx.shell, "user_ns", None) or {}
    if expr.isidentifier() and callable(ns.get(expr)):
        expr = ns[expr]
    subject = a.subject.split(",") if a.subject and "," in a.subject else a.subject
    return search(a.stream, expr, subject=subject, since=a.since, until=a.until, limit=a.limit, chunk=a.chunk)


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MagicUsageError(f"{text!r} is not a whole number", "write the increment like 1, 5 or -3") from None


@verb("counter incr", "add N (default 1; negative subtracts) to a counter; shows its new value",
      arg("subject"), arg("n", nargs="?", default="1", help="the increment, e.g. 5 or -3"))
def _counter_incr(a, ctx):
    return counter.counter_incr(a.subject, _whole(a.n))


@verb("counter get", "a counter's current value", arg("subject"))
def _counter_get(a, ctx):
    return counter.counter_get(a.subject)


@verb("counter ls", "every counter of a stream and its value (a DataFrame)", arg("stream"),
      arg("subject", nargs="?", default=">", help="only counters matching this, e.g. 'hits.*'"))
def _counter_ls(a, ctx):
    return counter.counters(a.stream, a.subject)
