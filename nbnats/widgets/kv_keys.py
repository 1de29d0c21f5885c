"""The KV editor's live key index: every key's newest revision, sorted and filtered from memory.

A headers-only ordered consumer (:mod:`nbnats.engine.ordered`) delivers each
key's newest revision and then every change; the sorted key list is rebuilt
only when the set of keys changes, and a filter is computed once per
(keys, filter) pair, so a keystroke in the editor's filter never waits for
the server, whatever the bucket's size.

>>> index = KeyIndex(kv, on_change=lambda: None)   # doctest: +SKIP
>>> await index.list(); await index.follow()       # doctest: +SKIP
>>> index.matching("user.*")[:3]                   # doctest: +SKIP
['user.1', 'user.2', 'user.3']
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nbnats.data import validate
from nbnats.engine import api
from nbnats.engine.ordered import OrderedConsumer
from nbnats.errors import NatsError
from nbnats.kv.frame import operation


_DIGITS = re.compile(r"\d+")


def natural_key(key: str) -> str:
    """Sort ``user.2`` before ``user.10`` (numbers padded: plain strings sort fast).

    >>> sorted(["user.10", "user.2", "a"], key=natural_key)
    ['a', 'user.2', 'user.10']
    """
    return _DIGITS.sub(lambda m: m.group().rjust(20, "0"), key)


def matching(keys: list[str], pattern: str) -> list[str]:
    """The keys that match a filter: a subject pattern (``user.*``) or, else, a case-blind substring.

    >>> matching(["user.1", "User.2", "cfg"], "user"), matching(["a.b", "a.b.c"], "a.*")
    (['user.1', 'User.2'], ['a.b'])
    """
    if "*" in pattern or ">" in pattern:
        try:
            validate.key(pattern, pattern=True)
            validate.subject(pattern)
            return [k for k in keys if validate.subject_matches(pattern, k)]
        except NatsError:
            pass
    low = pattern.lower()
    return [k for k in keys if low in k.lower()]


async def subjects(conn, stream: str, filter_subject: str) -> list[str]:
    """Every subject ``stream`` holds under ``filter_subject``, page by page (loop thread).

    >>> await subjects(conn, "KV_sessions", "$KV.sessions.>")   # doctest: +SKIP
    ['$KV.sessions.user.1', '$KV.sessions.user.2']
    """
    found: dict = {}
    while True:
        info = await api.request(conn, f"STREAM.INFO.{stream}", {"subjects_filter": filter_subject,
                                                                 "offset": len(found)},
                                 what=f"listing the keys of {stream!r}", stream=stream)
        page = (info.get("state") or {}).get("subjects") or {}
        found.update(page)
        if not page or len(found) >= info.get("total", 0):
            return list(found)


class KeyIndex:
    """Every key of ``kv`` with its newest (revision, operation, time_ns), followed live.

    ``caught_up`` once every key's newest revision has arrived;
    ``last_change`` (key, revision, operation) of the latest change after
    that; ``on_change()`` is called on the loop thread after each message.
    """

    def __init__(self, kv, on_change: Callable[[], None]):
        self.kv = kv
        self.on_change = on_change
        self.newest: dict[str, tuple[int, str, int]] = {}
        self.listed: set[str] = set()            # keys listed at open, before the consumer caught up
        self.version = 0                         # bumped when the set of keys changes
        self.caught_up = False
        self.last_change: tuple[str, int, str] | None = None
        self._natural: dict[str, str] = {}
        self._sorted: tuple[tuple, list[str]] = ((), [])
        self._filtered: tuple[tuple, list[str]] = ((), [])
        self._reader: OrderedConsumer | None = None

    async def list(self) -> None:
        """Read the bucket's key names at once (one request per page), before the values arrive."""
        n = len(self.kv.prefix)
        self.listed = {s[n:] for s in await subjects(self.kv.conn, self.kv.stream, self.kv.prefix + ">")}
        self.caught_up = not self.listed
        self.version += 1

    async def follow(self) -> None:
        """Start the live consumer: each key's newest revision, then every change."""
        self._reader = OrderedConsumer(self.kv.conn, self.kv.stream, [self.kv.prefix + ">"], self._on_message,
                                       deliver="last_per_subject", headers_only=True)
        info = await self._reader.start()
        if not info.get("num_pending"):
            self.caught_up = True
            self.version += 1

    async def stop(self) -> None:
        """Stop following (the index keeps what it has)."""
        reader, self._reader = self._reader, None
        if reader is not None and reader.running:
            await reader.stop()

    def _on_message(self, msg, meta) -> None:
        key = msg.subject[len(self.kv.prefix):]
        op = operation(msg.headers)
        old = self.newest.get(key)
        self.newest[key] = (meta.seq, op, meta.time_ns)
        if old is None and not (key in self.listed and op == "PUT" and not self.caught_up):
            self.version += 1            # a key the list did not show yet (a listed one already shows)
        elif old is not None and (old[1] == "PUT") != (op == "PUT"):
            self.version += 1
        if self.caught_up:
            self.last_change = (key, meta.seq, op)
        elif meta.pending == 0:
            self.caught_up = True
            self.version += 1
        self.on_change()

    def revision(self, key: str) -> int | None:
        """The newest revision of ``key`` seen, or None."""
        found = self.newest.get(key)
        return found[0] if found else None

    def keys(self, deleted: bool = False) -> list[str]:
        """Every key (with ``deleted``, the deleted ones too), naturally sorted; rebuilt only on change."""
        state = (self.version, deleted)
        if self._sorted[0] != state:
            known = {k for k, (_, op, _) in list(self.newest.items()) if deleted or op == "PUT"}
            if not self.caught_up:
                known |= {k for k in self.listed if k not in self.newest}
            natural = self._natural
            for k in known:
                if k not in natural:
                    natural[k] = natural_key(k)
            self._sorted = (state, sorted(known, key=natural.__getitem__))
        return self._sorted[1]

    def matching(self, pattern: str, deleted: bool = False) -> list[str]:
        """The sorted keys that match ``pattern`` (see :func:`matching`), cached per pattern."""
        keys = self.keys(deleted)
        state = (self._sorted[0], pattern)
        if self._filtered[0] != state:
            self._filtered = (state, matching(keys, pattern) if pattern else keys)
        return self._filtered[1]


__all__ = ["KeyIndex", "matching", "natural_key", "subjects"]
