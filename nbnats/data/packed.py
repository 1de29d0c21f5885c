"""Payloads packed into one growing buffer: how bulk reads hold many messages without a bytes object each.

>>> p = Packed(); p.add(b'{"a":1}'); p.add(b"hi"); p.finish()
>>> list(p), bytes(p.joined)
([b'{"a":1}', b'hi'], b'{"a":1}\\nhi')
"""

from __future__ import annotations

import array

import numpy as np


class Packed:
    """Payloads as one newline-joined buffer plus their sizes, instead of a bytes object each.

    Each payload is appended to one growing buffer as it arrives (the bytes
    object nats-py made is freed at once). :func:`nbnats.frames.build` reads
    ``sizes`` and the ``joined`` buffer directly and Arrow parses it in place,
    so a replay holds its payloads once. It reads as a sequence of bytes.

    >>> p = Packed(); p.add(b'{"a":1}'); p.add(b"hi"); p.finish()
    >>> list(p), bytes(p.joined)
    ([b'{"a":1}', b'hi'], b'{"a":1}\\nhi')
    """

    def __init__(self):
        self._buf = bytearray()
        self._sizes = array.array("q")
        self._starts: np.ndarray | None = None
        self.joined: bytearray | None = None

    def add(self, data: bytes) -> None:
        self._buf += data
        self._buf.append(10)
        self._sizes.append(len(data))

    def add_joined(self, joined: bytes, sizes) -> None:
        """Append payloads already joined by newlines (``sizes`` gives each one's length)."""
        if len(sizes):
            self._buf += joined
            self._buf.append(10)
            self._sizes.extend(sizes)

    def appenders(self):
        """Bound (extend, separate, add_size) functions, for a reader's hot loop (one message: all three)."""
        return self._buf.extend, self._buf.append, self._sizes.append

    def finish(self) -> None:
        """Drop the last separator; the buffer is frozen from now on."""
        if self.joined is None:
            del self._buf[-1:]
            self.joined = self._buf

    def _offsets(self) -> np.ndarray:
        self.finish()
        if self._starts is None:
            sizes = self.sizes
            self._starts = np.concatenate(([0], np.cumsum(sizes[:-1] + 1))) if len(sizes) else sizes
        return self._starts

    @property
    def sizes(self) -> np.ndarray:
        return np.frombuffer(self._sizes, dtype=np.int64) if len(self._sizes) else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._sizes)

    def __getitem__(self, i: int) -> bytes:
        start = int(self._offsets()[i])
        return bytes(memoryview(self.joined)[start:start + self._sizes[i]])

    def __iter__(self):
        starts, view = self._offsets().tolist(), memoryview(self.joined)
        for start, n in zip(starts, self._sizes):
            yield bytes(view[start:start + n])

    def select(self, keep: np.ndarray) -> Packed:
        """A new Packed with the rows where ``keep`` is True."""
        out = Packed()
        for data, k in zip(self, keep.tolist()):
            if k:
                out.add(data)
        return out
