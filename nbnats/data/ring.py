"""The bounded ring a tail keeps its rows in, column by column.

>>> r = Ring(2); r.append("a", 1, None, b"x", None); r.append("b", 2, None, b"y", None)
>>> r.append("c", 3, None, b"z", None); r.snapshot()[0]
['b', 'c']
"""

from __future__ import annotations

import itertools
from collections import deque


class Ring:
    """The kept messages, column by column, each a bounded deque.

    Columns (not one tuple per message) so that ``t.df`` needs no transposing.

    >>> r = Ring(2); r.append("a", 1, None, b"x", None); r.append("b", 2, None, b"y", None)
    >>> r.append("c", 3, None, b"z", None); r.snapshot()[0]
    ['b', 'c']
    """

    __slots__ = ("subjects", "times", "seqs", "payloads", "headers")

    def __init__(self, limit: int):
        self.subjects: deque = deque(maxlen=limit)
        self.times: deque = deque(maxlen=limit)
        self.seqs: deque = deque(maxlen=limit)
        self.payloads: deque = deque(maxlen=limit)
        self.headers: deque = deque(maxlen=limit)

    def append(self, subject: str, time_ns: int, seq: int | None, data: bytes, headers: dict | None) -> None:
        self.subjects.append(subject)
        self.times.append(time_ns)
        self.seqs.append(seq)
        self.payloads.append(data)
        self.headers.append(headers)

    def __len__(self) -> int:
        return len(self.payloads)

    def clear(self) -> None:
        for column in (self.subjects, self.times, self.seqs, self.payloads, self.headers):
            column.clear()

    def snapshot(self) -> tuple[list, list, list, list, list]:
        """Copies of the five columns (call on the loop thread)."""
        return (list(self.subjects), list(self.times), list(self.seqs), list(self.payloads),
                list(self.headers))

    def last(self, n: int) -> list[tuple]:
        """The newest ``n`` rows as (subject, time_ns, seq, data, headers) tuples."""
        k = min(n, len(self.payloads))
        cols = [list(itertools.islice(c, len(c) - k, None)) for c in
                (self.subjects, self.times, self.seqs, self.payloads, self.headers)]
        return list(zip(*cols))
