"""The one parser of JetStream ack subjects (``$JS.ACK.…``), one at a time or in bulk.

Every message a consumer delivers carries its metadata in its reply subject:
``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>``,
or, from servers with a domain, ``$JS.ACK.<domain>.<account hash>.<stream>.…`` with a
random token at the end. Both forms are read from the right, so the stream and
consumer names may be anything.

>>> meta = parse("$JS.ACK.ORDERS.c.1.42.7.1700000000123456789.0")
>>> meta.stream, meta.seq, meta.time_ns, meta.pending
('ORDERS', 42, 1700000000123456789, 0)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class AckMeta(NamedTuple):
    """What a delivered message's reply subject says about it."""

    stream: str
    consumer: str
    deliveries: int      # 1 on first delivery, 2+ when redelivered
    seq: int             # the stream sequence
    consumer_seq: int
    time_ns: int         # the stream's timestamp, nanoseconds since the epoch
    pending: int         # messages the consumer still has to deliver after this one


def parse(reply: str | None) -> AckMeta | None:
    """The metadata of one ack subject, or None when ``reply`` is not one.

    >>> parse("$JS.ACK.hub.ACC.KV_s.c.2.9.4.1700000000000000001.3.tok").deliveries
    2
    >>> parse("_INBOX.x") is None, parse("$JS.ACK.S.c.1.x.1.1700000000000000000.0") is None
    (True, True)
    """
    if not reply or not reply.startswith("$JS.ACK."):
        return None
    t = reply.split(".")
    at = 2 if len(t) == 9 else 4 if len(t) >= 12 else None
    if at is None or not all(n.isdigit() and n.isascii() for n in t[at + 2:at + 7]):
        return None
    return AckMeta(t[at], t[at + 1], *map(int, t[at + 2:at + 7]))


def parse_many(replies: list[str]) -> dict[str, np.ndarray]:
    """Stream sequences, times, deliveries and pending of many ack subjects at once (Arrow, no Python loop).

    >>> cols = parse_many(["$JS.ACK.S.c.1.5.1.100.2", "$JS.ACK.S.c.3.6.2.200.1"])
    >>> cols["seq"].tolist(), cols["time_ns"].tolist(), cols["deliveries"].tolist()
    ([5, 6], [100, 200], [1, 3])
    """
    if not replies:
        empty = np.zeros(0, np.int64)
        return {"seq": empty, "time_ns": empty, "deliveries": empty, "pending": empty}
    arr = pa.array(replies, pa.string())
    # Read from the right: … delivered . sseq . cseq . ns . pending [. token]. With the
    # domain form's token every field sits one place further left.
    token = pc.greater_equal(pc.count_substring(arr, "."), 11)
    parts = pc.split_pattern(arr, ".", max_splits=6, reverse=True)
    out = {}
    for name, pos in (("deliveries", 1), ("seq", 2), ("time_ns", 4), ("pending", 5)):
        with_token = pc.list_element(parts, pos)
        plain = pc.list_element(parts, pos + 1)
        out[name] = pc.if_else(token, with_token, plain).cast(pa.int64()).to_numpy()
    return out
