"""A socket read's consumer messages cut all at once: C-level splits and checks, no per-message Python.

A pull consumer's deliveries are runs of plain ``MSG`` frames::

    MSG <subject> <sid> $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending> <size>\\r\\n<payload>\\r\\n

:func:`cut` splits a buffer on CRLF once and reads the pieces as (line,
payload) pairs, then proves the pairing right rather than trusting it: every
line has the five fields of a ``MSG`` with a reply, every payload is exactly
the declared size, every reply is this consumer's. A payload holding CRLF
shifts the pairing and fails the size check, so does any other frame (a
status reply, a ``PING``): the caller then takes the careful frame-by-frame
path for this read. Nothing is guessed, so nothing is cut wrongly.

>>> layout = Layout.of(b"$JS.ACK.S.c.1.7.1.1700000000000000000.0")
>>> buf = b"MSG a.b 1 $JS.ACK.S.c.1.7.1.1700000000000000000.0 2\\r\\nhi\\r\\nMSG a"
>>> got = cut(buf, 0, layout); got.end, got.subjects, got.seqs, got.payloads
(57, [b'a.b'], [b'7'], [b'hi'])
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Where one consumer's ack subjects keep the stream sequence and the timestamp."""

    tokens: int        # dot-separated tokens in every ack subject of the consumer
    stream_at: int     # index of the stream's token (the consumer's follows)
    stream: bytes
    consumer: bytes

    @classmethod
    def of(cls, reply: bytes) -> Layout | None:
        """The layout of ``reply`` (an ack subject, with or without domain, account hash and token)."""
        parts = reply.split(b".")
        # $JS.ACK.<stream>.<consumer>.<5 numbers>[.<token>], or with <domain>.<account hash> after ACK
        at = 2 if len(parts) in (9, 10) else 4 if len(parts) in (11, 12) else None
        if at is None or parts[:2] != [b"$JS", b"ACK"]:
            return None
        return cls(len(parts), at, parts[at], parts[at + 1])


@dataclass
class Cut:
    end: int                  # where the first frame not taken starts
    subjects: list[bytes]
    seqs: list[bytes]         # stream sequences, as digits
    times: list[bytes]        # nanoseconds since the epoch, as digits
    payloads: list[bytes]
    sizes: list[int]


def cut(buf: bytes, pos: int, layout: Layout) -> Cut | None:
    """The complete consumer messages of ``buf`` from ``pos`` on, or None when something else is among them."""
    data = buf[pos:] if pos else buf
    parts = data.split(b"\r\n")
    pairs = (len(parts) - 1) // 2           # the last piece is unfinished (maybe empty)
    if not pairs:
        return None
    lines, payloads = parts[0:2 * pairs:2], parts[1:2 * pairs:2]
    fields = b" ".join(lines).split(b" ")
    if len(fields) != 5 * pairs or fields[0::5].count(b"MSG") != pairs:
        return None                          # a frame with headers, a reply-less one, a PING…
    sizes = list(map(len, payloads))
    try:
        if list(map(int, fields[4::5])) != sizes:
            return None                      # a payload with CRLF inside: the pairing is off
    except ValueError:
        return None
    k, at = layout.tokens, layout.stream_at
    tokens = b".".join(fields[3::5]).split(b".")
    if len(tokens) != k * pairs or tokens[at::k].count(layout.stream) != pairs or \
            tokens[at + 1::k].count(layout.consumer) != pairs:
        return None                          # not all this consumer's replies
    rest = parts[2 * pairs:]
    end = len(buf) - sum(map(len, rest)) - 2 * (len(rest) - 1)
    return Cut(end, fields[1::5], tokens[at + 3::k], tokens[at + 5::k], payloads, sizes)
