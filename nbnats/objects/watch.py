"""Live watches of an object store: every put and delete, as natscli's ``nats object watch``.

An object's metadata is one message on ``$O.<bucket>.M.<name>``; the watch is
an ordered consumer on those subjects, in the background, listed by
``%nats tails`` and stopped by ``nbnats.stop_all()``.

>>> w = nbnats.objects("reports").watch()   # doctest: +SKIP
>>> w.df[["name", "operation", "size"]]      # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd

from nbnats import background
from nbnats.engine.ordered import OrderedConsumer
from nbnats.errors import JetStreamError, ValidationError
from nbnats.objects import meta as m
from nbnats.runtime import loop
from nbnats.tail import Tail

WAIT = 10.0
COLUMNS = ["time", "seq", "name", "operation", "size", "chunks", "modified", "digest", "description"]


class ObjectWatch(Tail):
    """A live watch of an object-store bucket (see :meth:`ObjectStore.watch`).

    ``df`` the changes received (time, seq, name, operation PUT/DEL, size,
    chunks, modified, digest, description), newest last; ``count``; ``stop()``.
    """

    def __init__(self, store, conn, limit: int):
        super().__init__(conn, f"$O.{store.bucket}.M.>", None, limit, None, store.stream)
        self.store = store

    @property
    def df(self) -> pd.DataFrame:
        """The changes received, one row a put or delete."""
        rows = []
        for subject, ts, seq, data, _ in self.records():
            try:
                info = m.parse_meta(data, subject, None)
            except JetStreamError:         # an unreadable entry keeps its row, with what is known
                info = m.ObjectInfo({})
            rows.append({"time": ts, "seq": seq, "name": info.name, "operation": "DEL" if info.deleted else "PUT",
                         "size": info.size, "chunks": info.chunks, "modified": info.modified,
                         "digest": info.digest or None, "description": info.description})
        df = pd.DataFrame(rows, columns=COLUMNS)
        df["time"] = pd.to_datetime(df["time"].astype("int64"), unit="ns", utc=True)
        for col in ("seq", "size", "chunks"):
            df[col] = df[col].astype("Int64")
        df["modified"] = pd.to_datetime(df["modified"], utc=True)
        return df

    def row(self) -> dict:
        """This watch as a row of ``nbnats.background.pieces()``."""
        state = "stopped" if not self.running else "disconnected" if not self.conn.connected else "running"
        return {"id": self.id, "kind": "obj watch", "target": self.store.bucket, "state": state,
                "count": self.count, "dropped": self.dropped, "errors": None, "rate": round(self.rate, 1)}

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<ObjectWatch {self.id} {self.store.bucket} {state}: {self.count:,} changes, {self.kept:,} kept>"


def start_watch(store, updates_only: bool = False, limit: int = 10_000) -> ObjectWatch:
    """Start watching ``store`` (every object's current metadata first, unless ``updates_only``)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(f"limit must be a positive number of rows, not {limit!r}", "pass e.g. limit=10_000")
    conn = store.conn
    w = ObjectWatch(store, conn, limit)
    reader = OrderedConsumer(conn, store.stream, [w.subject], w._on_js_msg,
                             deliver="new" if updates_only else "last_per_subject", on_event=w._on_reader_event)

    async def start():
        await m.stream_info(conn, store.bucket)       # a missing bucket is said plainly
        w._reader = reader                             # before the first message can arrive
        try:
            await reader.start()
        except BaseException:
            w._reader = None
            raise

    loop.run(start(), WAIT + 2, f"watching object store {store.bucket!r}")
    conn.listeners.append(w)
    loop.call_soon(w._sample)
    background.register(w)
    return w


__all__ = ["ObjectWatch", "start_watch"]
