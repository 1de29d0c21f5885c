"""Every background piece of this session in one list: tails, KV watches, responders, micro services, workers.

>>> nbnats.background.pieces()[["id", "kind", "target", "state"]]   # doctest: +SKIP
   id        kind        target    state
0  t1        tail      orders.>  running
1  w1      worker  ORDERS/proc  running
"""

from __future__ import annotations

import importlib
import itertools

import pandas as pd

from nbnats import messaging
from nbnats.errors import NatsError, NotFound
from nbnats.jetstream import worker
from nbnats.jetstream.display import listing
from nbnats.runtime import session

COLUMNS = ["id", "kind", "target", "state", "count", "dropped", "errors", "rate"]
services = importlib.import_module("nbnats.services")     # nbnats.services is also a function
_micro_ids: dict[int, str] = {}        # id(MicroService) → "m1", given when first listed
_next_micro = itertools.count(1)
_registered: dict[str, object] = {}    # pieces that list themselves (lag recorders …), by id


def register(piece) -> None:
    """List ``piece`` here: it has ``id``, ``row()`` (a dict of :data:`COLUMNS`), ``running`` and ``stop()``.

    >>> nbnats.background.register(recorder)   # doctest: +SKIP
    """
    _registered[piece.id] = piece


def _tails() -> list[dict]:
    tail = importlib.import_module("nbnats.tail")             # nbnats.tail is also a function
    rows = []
    for t in list(tail._tails.values()):
        if hasattr(t, "kv"):
            kind, target = "kv watch", f"{t.kv.bucket}/{t.key}"
        elif t.stream:
            kind, target = "stream tail", f"{t.stream}: {t.subject}"
        else:
            kind, target = "tail", t.subject + (f" (queue {t.queue})" if t.queue else "")
        state = ("stopped" if not t.running else "disconnected" if not t.conn.connected
                 else f"error: {t.error}" if t.error else "running")
        rows.append({"id": t.id, "kind": kind, "target": target, "state": state, "count": t.count,
                     "dropped": t.dropped, "errors": None, "rate": round(t.rate, 1)})
    return rows


def _responders() -> list[dict]:
    return [{"id": s.id, "kind": "responder", "target": s.subject + (f" (queue {s.queue})" if s.queue else ""),
             "state": "running" if s.running else "stopped", "count": s.handled, "dropped": None,
             "errors": s.errors, "rate": None} for s in list(messaging._services)]


def _micro_services() -> list[dict]:
    rows = []
    for svc in list(services._started):
        pid = _micro_ids.setdefault(id(svc), f"m{next(_next_micro)}")
        try:
            info = svc.info
            target = f"{info.get('name')}: " + ", ".join(e.get("subject", "") for e in info.get("endpoints") or [])
        except Exception:          # a stopped service may no longer describe itself
            target = "?"
        rows.append({"id": pid, "kind": "service", "target": target, "state": "running" if svc.running else "stopped",
                     "count": None, "dropped": None, "errors": None, "rate": None})
    return rows


def _workers() -> list[dict]:
    rows = []
    for w in worker.workers():
        s = w.stats
        rows.append({"id": w.id, "kind": "worker", "target": f"{w.stream}/{w.consumer}", "state": s["state"],
                     "count": s["processed"], "dropped": None, "errors": s["errors"], "rate": s["rate"]})
    return rows


def pieces() -> pd.DataFrame:
    """One row per background piece: id, kind, target, state, count, dropped, errors, rate.

    ``kind`` is tail, stream tail, kv watch, responder, service or worker;
    ``state`` running, stopped, disconnected, retrying: … ; ``count`` what it
    received (tails), answered (responders) or processed (workers).

    >>> nbnats.background.pieces()   # doctest: +SKIP
    """
    rows = _tails() + _responders() + _micro_services() + _workers() + [p.row() for p in list(_registered.values())]
    df = listing(rows, COLUMNS)
    df["rate"] = df["rate"].astype("Float64")          # a piece may count its rate in whole numbers
    return df


def stop(piece_id: str) -> None:
    """Stop one piece by its id: a tail or watch (t1), responder (s1), service (m1) or worker (w1).

    >>> nbnats.background.stop("w1")   # doctest: +SKIP
    """
    if piece_id in _registered:
        _registered[piece_id].stop()
        return
    if piece_id.startswith("w"):
        for w in worker.workers():
            if w.id == piece_id:
                w.stop()
                return
        raise NotFound(f"there is no worker {piece_id!r}", "list the background pieces with nbnats.background.pieces()")
    if piece_id.startswith("m"):
        for svc in list(services._started):
            if _micro_ids.get(id(svc)) == piece_id:
                svc.stop()
                return
        raise NotFound(f"there is no micro service {piece_id!r}",
                       "list the background pieces with nbnats.background.pieces()")
    if piece_id[:1] not in ("t", "s"):
        raise NatsError(f"{piece_id!r} is not the id of a background piece",
                        "ids look like t1 (tail or watch), s1 (responder), m1 (service) or w1 (worker)")
    session.stop(piece_id)


def stop_all() -> int:
    """Stop every running piece of this session; returns how many.

    >>> nbnats.background.stop_all()   # doctest: +SKIP
    3
    """
    running = [w for w in worker.workers() if w.running] + [p for p in list(_registered.values()) if p.running]
    for w in running:
        w.stop()
    return len(running) + session.stop_all()
