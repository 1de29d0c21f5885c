"""Payloads packed into joined buffers: how bulk reads hold many messages without a bytes object each.

A chunk Arrow has read already is kept compressed (zstd, level 1: ~0.2 µs a message), since the frame
needs its raw bytes again only for the rare row the per-row decoder takes; a million-row replay then
holds its payloads once (as columns), not twice.

>>> p = Packed(); p.add(b'{"a":1}'); p.add(b"hi"); p.finish()
>>> list(p), bytes(p.joined)
([b'{"a":1}', b'hi'], b'{"a":1}\\nhi')
"""

from __future__ import annotations

import array
import bisect

import numpy as np
import pyarrow as pa

_CODEC = pa.Codec("zstd", 1)


class _Squeezed:
    """A chunk's joined payloads, compressed; :meth:`Packed._data` expands it again when asked."""

    __slots__ = ("blob", "size")

    def __init__(self, data: bytes):
        self.blob, self.size = _CODEC.compress(data, asbytes=True), len(data)

    def expand(self) -> bytes:
        return _CODEC.decompress(self.blob, decompressed_size=self.size, asbytes=True)


class Packed:
    """Payloads as newline-joined buffers plus their sizes, instead of a bytes object each.

    Two ways in: :meth:`add` (or the :meth:`appenders` of a reader's hot loop)
    append to one growing buffer; :meth:`add_joined` keeps a chunk a reader
    joined already, as it is (no copy), so that Arrow can parse the chunks
    while the read goes on (:meth:`preread`). :func:`nbnats.data.frames.build`
    reads ``sizes`` and the pre-read tables or the ``joined`` buffer (made on
    first use). It reads as a sequence of bytes.

    >>> p = Packed(); p.add_joined(b'{"a":1}\\nhi', [7, 2]); p.add_joined(b"x", [1]); p.finish()
    >>> list(p), p[2], bytes(p.joined)
    ([b'{"a":1}', b'hi', b'x'], b'x', b'{"a":1}\\nhi\\nx')
    """

    def __init__(self):
        self._buf = bytearray()
        self._sizes = array.array("q")
        self._starts: np.ndarray | None = None
        self._joined: bytes | bytearray | None = None
        self._finished = False
        self.chunks: list[tuple[bytes | _Squeezed, int, int]] = []   # (joined payloads, first row, rows)
        self.tables: dict[int, tuple] = {}               # chunk index → what data.bulk.read_chunk made of it
        self._expanded: tuple[int, bytes] | None = None  # the last chunk expanded (rows are asked in order)

    def add(self, data: bytes) -> None:
        if self.chunks:
            self._to_buffer()
        self._buf += data
        self._buf.append(10)
        self._sizes.append(len(data))

    def add_joined(self, joined: bytes, sizes) -> None:
        """Append payloads already joined by newlines (``sizes`` gives each one's length)."""
        if not len(sizes):
            return
        if self._buf:
            self._buf += joined
            self._buf.append(10)
        else:
            self.chunks.append((joined, len(self._sizes), len(sizes)))
        if isinstance(sizes, np.ndarray):
            self._sizes.frombytes(sizes.astype(np.int64, copy=False).tobytes())
        else:
            self._sizes.extend(sizes)

    def appenders(self):
        """Bound (extend, separate, add_size) functions, for a reader's hot loop (one message: all three)."""
        if self.chunks:
            self._to_buffer()
        return self._buf.extend, self._buf.append, self._sizes.append

    def _to_buffer(self) -> None:
        for i in range(len(self.chunks)):
            self._buf += self._data(i)
            self._buf.append(10)
        self.chunks, self.tables, self._expanded = [], {}, None

    def _data(self, i: int) -> bytes:
        """Chunk ``i``'s joined payloads, expanded if they were squeezed."""
        data = self.chunks[i][0]
        if not isinstance(data, _Squeezed):
            return data
        if self._expanded is None or self._expanded[0] != i:
            self._expanded = (i, data.expand())
        return self._expanded[1]

    def preread(self, reader) -> int:
        """Run ``reader(chunk, sizes)`` on each chunk not read yet (any thread; the chunks are
        immutable); keep what it returns in :attr:`tables`. Returns how many chunks were read."""
        done = 0
        for i in range(len(self.chunks)):
            if i not in self.tables:
                data, first, n = self.chunks[i]
                # a copy of the sizes: a view would stop the reader's thread from growing the array
                self.tables[i] = got = reader(data, np.frombuffer(self._sizes[first:first + n], np.int64))
                if got is not None and len(data) >= 65_536:
                    self.chunks[i] = (_Squeezed(data), first, n)
                done += 1
        return done

    def finish(self) -> None:
        """Drop the last separator; the buffers are frozen from now on."""
        if not self._finished:
            self._finished = True
            if not self.chunks:
                del self._buf[-1:]

    @property
    def joined(self):
        """All payloads in one newline-joined buffer (joined from the chunks on first use)."""
        self.finish()
        if self._joined is None:
            if self.chunks:
                self._joined = b"\n".join(self._data(i) for i in range(len(self.chunks)))
                self.chunks, self._expanded = [], None      # held once: the joined buffer replaces them
            else:
                self._joined = self._buf
        return self._joined

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
        if self.chunks and self._joined is None:       # one row: no need to join everything
            c = bisect.bisect_right([first for _, first, _ in self.chunks], i) - 1
            first = self.chunks[c][1]
            start = int(self._offsets()[i] - self._offsets()[first])
            return self._data(c)[start:start + self._sizes[i]]
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
