"""Live watches of a KV bucket: a Tail whose rows are KV revisions.

>>> w = nbnats.kv("sessions").watch("user.>")   # doctest: +SKIP
>>> w.latest()                                  # doctest: +SKIP
"""

from __future__ import annotations

import time

import pandas as pd

from nbnats.data import validate
from nbnats.engine.ordered import OrderedConsumer
from nbnats.errors import Timeout, ValidationError
from nbnats.kv.bucket import KV
from nbnats.kv.frame import kv_frame, operation
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection
from nbnats.tail import Tail, _tails

WAIT = 10.0                         # seconds for the watch to start


# -- watches: a Tail whose rows are KV revisions --------------------------------
class KVWatch(Tail):
    """A live watch of a bucket (see :meth:`KV.watch`); listed by ``%nats tails``.

    ``df`` the KV frame of the changes received (newest last); ``latest()``
    the current value of each key seen; ``widget`` the live table;
    ``caught_up`` True once the initial values have arrived; ``stop()``.
    """

    def __init__(self, kv: KV, conn: Connection, key: str, limit: int, count: int | None):
        super().__init__(conn, kv.prefix + key, None, limit, count, kv.stream)
        self.kv = kv
        self.key = key
        self.caught_up = False

    def _on_kv_msg(self, msg, meta) -> None:
        if self.max_count is not None and self.count >= self.max_count:
            return
        self._last_seq = meta.seq
        if len(self._ring) == self.limit:
            self.overflow += 1
        self._ring.append(msg.subject[len(self.kv.prefix):], meta.time_ns, meta.seq, msg.data, msg.headers)
        self.count += 1
        if meta.pending == 0:
            self.caught_up = True
        if self.max_count is not None and self.count >= self.max_count:
            self._finish()

    @property
    def df(self) -> pd.DataFrame:
        """The changes received as a KV frame (key, value, revision, created, operation …)."""
        return kv_frame((k, seq, ts, data, h) for k, ts, seq, data, h in self.records())

    def latest(self, deleted: bool = False) -> pd.DataFrame:
        """The newest revision of each key seen, sorted by key (deleted keys left out unless asked).

        >>> w.latest()[["key", "value"]]   # doctest: +SKIP
        """
        newest: dict[str, tuple] = {}
        for k, ts, seq, data, h in self.records():
            newest[k] = (k, seq, ts, data, h)
        rows = [r for _, r in sorted(newest.items()) if deleted or operation(r[4]) == "PUT"]
        return kv_frame(rows)

    def wait_caught_up(self, timeout: float = 10.0) -> KVWatch:
        """Block until the initial values have arrived.

        >>> kv.watch().wait_caught_up()   # doctest: +SKIP
        """
        deadline = time.monotonic() + timeout
        while not self.caught_up:
            if time.monotonic() > deadline:
                raise Timeout(f"watch {self.id} on bucket {self.kv.bucket!r} did not catch up within {timeout:g} s",
                              "wait longer")
            time.sleep(0.01)
        return self

    @property
    def widget(self):
        """The live table: each key's newest value (or every change), pause, filter, stop."""
        if self._widget is None:
            from nbnats.widgets.kv_watch import KVWatchView
            self._widget = KVWatchView(self)
        return self._widget

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<KVWatch {self.id} {self.kv.bucket}/{self.key} {state}: {self.count:,} changes, "
                f"{len(self._ring):,} kept>")


def start_watch(kv: KV, key: str, updates_only: bool, history: bool, limit: int,
                 count: int | None) -> KVWatch:
    validate.key(key, pattern=True)
    if not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a positive number of rows, not {limit!r}", "pass e.g. limit=10_000")
    conn = kv.conn
    w = KVWatch(kv, conn, key, limit, count)
    deliver = "new" if updates_only else "all" if history else "last_per_subject"
    reader = OrderedConsumer(conn, kv.stream, [w.subject], w._on_kv_msg, deliver=deliver,
                             on_event=w._on_reader_event)

    async def start():
        w._reader = reader             # before the first message can arrive
        try:
            info = await reader.start()
        except BaseException:
            w._reader = None
            raise
        if updates_only or info.get("num_pending", 0) == 0:
            w.caught_up = True

    loop.run(start(), WAIT + 2, f"watching {kv.bucket}/{key}")
    conn.listeners.append(w)
    loop.call_soon(w._sample)
    _tails[w.id] = w
    return w


__all__ = ["KVWatch", "start_watch"]
