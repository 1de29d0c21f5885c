"""One pull consumer's messages cut out of a socket read, with their sequences and times.

A pull consumer's deliveries are runs of plain ``MSG`` frames::

    MSG <subject> <sid> $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ns>.<pending> <size>\\r\\n<payload>\\r\\n

A :class:`Cutter` is made from the consumer's first ack subject and cuts the
complete frames of that consumer from a position on, stopping at the first
that is anything else (a status reply, a ``PING``, a frame with headers) or
not whole yet; the wire's own parser takes that one. Rows come out as columns
(:class:`Cut`): subjects, stream sequences and timestamps as int64, sizes, and
the payloads joined by newlines, ready for Arrow's JSON reader.

Two implementations. The compiled one (``nbnats/engine/_cut.c``, built at
install time where a C compiler is found) walks the frames in one pass. The
Python one, used where it was not built or when ``NBNATS_PURE_PYTHON`` is set,
splits a whole read on CRLF in C-level calls and proves the pairing right
(every line a ``MSG`` of this consumer, every payload of its declared size),
else goes frame by frame with one exact pattern. Whatever the payloads, both
cut the same rows from what a server sends (tests run both on the same hostile
reads, split anywhere); on control lines no server writes (a sid of letters, a
sign before a number) the compiled cut is the stricter and stops there.

>>> c = Cutter.of(b"$JS.ACK.S.c.1.7.1.1700000000000000000.0", "S", "c")
>>> got = c.cut(b"MSG a.b 1 $JS.ACK.S.c.1.7.1.1700000000000000000.0 2\\r\\nhi\\r\\nMSG a", 0)
>>> got.end, got.subjects, got.seqs.tolist(), got.joined
(57, ['a.b'], [7], b'hi')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nbnats.engine import acks
from nbnats.runtime.wire import subject_text

try:
    from nbnats.engine import _cut
except ImportError:         # built without a C compiler: the Python cut below does the same
    _cut = None

NATIVE = _cut is not None and not os.environ.get("NBNATS_PURE_PYTHON")


class Codes(dict):
    """Subject bytes → a small int, handed out on first sight; ``strings[code]`` is the subject."""

    def __init__(self):
        super().__init__()
        self.strings: list[str] = []

    def __missing__(self, key: bytes) -> int:
        self.strings.append(subject_text(key))
        value = self[key] = len(self.strings) - 1
        return value


@dataclass
class Cut:
    """Consecutive rows cut from one read: ``end`` is where the first frame not taken starts."""

    end: int
    subjects: list[str]
    seqs: np.ndarray          # stream sequences, int64
    times: np.ndarray         # nanoseconds since the epoch, int64
    sizes: np.ndarray         # payload sizes, int64
    joined: bytes             # the payloads, separated by newlines

    def __len__(self) -> int:
        return len(self.sizes)


class Cutter:
    """The frames of one consumer, known by its ack subjects' ``prefix`` (up to the consumer's name
    and its dot) and whether they end in a ``token``; made by :meth:`of`.

    ``compiled=False`` takes the Python implementation even where the C one is built.
    """

    def __init__(self, prefix: bytes, token: bool, compiled: bool | None = None):
        self.prefix, self.token = prefix, token
        self._head = prefix.split(b".")[:-1]    # the prefix's tokens; five numbers (and a token) follow
        self.compiled = NATIVE if compiled is None else compiled and _cut is not None
        self.codes = Codes()
        n = rb"\d{1,19}"           # as the compiled cut: a number fits int64
        self._exact = re.compile(rb"MSG ([^ \r\n]+) %s %s%s\.(%s)\.%s\.(%s)\.%s%s (%s)\r\n" % (
            n, re.escape(prefix), n, n, n, n, n, rb"\.[^ .\r\n]+" if token else b"", n)).match
        self._skip = 0      # reads left before the whole-read split is tried again (it failed lately)
        self._tries = 0     # whole-read splits left to try in this read

    @classmethod
    def of(cls, reply: bytes, stream: str, consumer: str, compiled: bool | None = None) -> Cutter | None:
        """The cutter for ``consumer`` of ``stream`` from one of its ack subjects (read by
        :func:`nbnats.engine.acks.parse`: with or without domain, account hash and token); None
        when ``reply`` is not one of them."""
        meta = acks.parse(reply.decode("utf-8", "surrogateescape"))
        if meta is None or (meta.stream, meta.consumer) != (stream, consumer):
            return None
        parts = reply.split(b".")
        if len(parts) not in (9, 12):
            return None
        token = len(parts) == 12        # the domain form: <domain>.<account hash> after ACK, a token at the end
        return cls(b".".join(parts[:6 if token else 4]) + b".", token, compiled)

    def one(self, subject: bytes, reply: bytes, payload: bytes) -> Cut | None:
        """One message the wire parsed itself (one with headers, say) as a row; None if not this consumer's."""
        meta = acks.parse(reply.decode("utf-8", "surrogateescape")) if reply.startswith(self.prefix) else None
        if meta is None:
            return None
        codes = self.codes
        return Cut(0, [codes.strings[codes[subject]]], np.array([meta.seq], np.int64),
                   np.array([meta.time_ns], np.int64), np.array([len(payload)], np.int64), payload)

    def cut(self, buf: bytes, pos: int) -> Cut | None:
        """This consumer's complete frames in ``buf`` from ``pos`` on; None when the first is not one."""
        if self.compiled:
            end, rows, codes, seqs, times, sizes, joined = _cut.cut(buf, pos, self.prefix, self.token, self.codes)
            if not rows:
                return None
            strings = self.codes.strings
            return Cut(end, list(map(strings.__getitem__, np.frombuffer(codes, np.int32).tolist())),
                       np.frombuffer(seqs, np.int64), np.frombuffer(times, np.int64),
                       np.frombuffer(sizes, np.int64), joined)
        return self._python(buf, pos)

    # -- the Python implementation -------------------------------------------------------
    def _python(self, buf: bytes, pos: int) -> Cut | None:
        # Each pull ends in a status reply, so a read may hold one: after a failed split the
        # frame-by-frame path reads up to it, the wire takes it, and the rest is split once more.
        # Two failures in one read (headers, CRLF in payloads) leave the next reads to that path.
        if not pos:
            self._tries = 2 if not self._skip else 0
            self._skip = max(self._skip - 1, 0)
        if self._tries:
            self._tries -= 1
            got = self._whole(buf, pos)
            if got is not None:
                return got
            if not self._tries:
                self._skip = 4
        return self._by_frame(buf, pos)

    def _whole(self, buf: bytes, pos: int) -> Cut | None:
        """Every frame of the read at once, or None when anything else is among them."""
        data = buf[pos:] if pos else buf
        parts = data.split(b"\r\n")
        pairs = (len(parts) - 1) // 2           # the last piece is unfinished (maybe empty)
        if not pairs:
            return None
        lines, payloads = parts[0:2 * pairs:2], parts[1:2 * pairs:2]
        joined_lines = b" ".join(lines)
        fields = joined_lines.split(b" ")
        if len(fields) != 5 * pairs or fields[0::5].count(b"MSG") != pairs or b"\r" in joined_lines or \
                b"\n" in joined_lines or b"" in fields[1::5]:
            return None                          # a frame with headers, a reply-less one, a PING…
        try:
            sizes = list(map(int, fields[4::5]))
        except ValueError:
            return None
        if sizes != list(map(len, payloads)):
            return None                          # a payload with CRLF inside: the pairing is off
        head = self._head
        k = len(head) + (6 if self.token else 5)
        tokens = b".".join(fields[3::5]).split(b".")
        if len(tokens) != k * pairs or any(tokens[i::k].count(t) != pairs for i, t in enumerate(head)) or \
                (self.token and b"" in tokens[k - 1::k]):
            return None                          # not all this consumer's replies
        rest = parts[2 * pairs:]
        end = pos + len(data) - sum(map(len, rest)) - 2 * (len(rest) - 1)
        p = len(head)
        return self._columns(end, fields[1::5], tokens[p + 1::k], tokens[p + 3::k], payloads, sizes)

    def _by_frame(self, buf: bytes, pos: int) -> Cut | None:
        match, end = self._exact, len(buf)
        subjects: list[bytes] = []
        seqs: list[bytes] = []
        times: list[bytes] = []
        payloads: list[bytes] = []
        while True:
            m = match(buf, pos)
            if m is None:
                break
            start = m.end()
            subject, seq, ts, size = m.groups()
            stop = start + int(size)
            if stop + 2 > end or buf[stop:stop + 2] != b"\r\n":
                break
            subjects.append(subject)
            seqs.append(seq)
            times.append(ts)
            payloads.append(buf[start:stop])
            pos = stop + 2
        return self._columns(pos, subjects, seqs, times, payloads) if subjects else None

    def _columns(self, end: int, subjects, seqs, times, payloads, sizes=None) -> Cut | None:
        """The rows as columns; None when a sequence or time is not a number that fits int64."""
        seqs, times = _ints(seqs), _ints(times)
        if seqs is None or times is None:
            return None
        codes, strings = self.codes, self.codes.strings
        return Cut(end, [strings[codes[s]] for s in subjects], seqs, times,
                   np.array(sizes if sizes is not None else list(map(len, payloads)), np.int64),
                   b"\n".join(payloads))


def _ints(digits: list[bytes]) -> np.ndarray | None:
    """ASCII digits → int64, converted by Arrow in one call; None if one is not such a number."""
    if b"".join(digits).isdigit():      # (Arrow would take signs and spaces)
        try:
            return pa.array(digits, pa.binary()).cast(pa.string()).cast(pa.int64()).to_numpy()
        except pa.ArrowInvalid:
            pass
    return None
