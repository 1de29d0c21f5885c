"""Tab completion for ``%nats`` from the live server: stream, consumer, bucket and object-store names, keys.

Names come from the session's current connection (completion never starts a server), are cached per
kind, and are refreshed in the background when used, so a Tab answers at once even with thousands of
names; the first Tab of a kind waits at most ``FIRST_WAIT`` seconds.

>>> words_after("%nats stream info OR")
(['stream', 'info'], 'OR')
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

FIRST_WAIT = 0.15        # seconds the first Tab of a kind may wait for the server
FRESH = 10.0             # seconds a list of names is fresh

_cache: dict[tuple, tuple[float, list[str]]] = {}
_loading: set[tuple] = set()
_lock = threading.Lock()


def words_after(line: str) -> tuple[list[str], str]:
    """The finished words after ``%nats`` and the one being typed.

    >>> words_after("%nats kv get sessions ")
    (['kv', 'get', 'sessions'], '')
    """
    parts = line.split()
    if parts and parts[0].lstrip("%") == "nats":
        parts = parts[1:]
    if line.endswith((" ", "\t")):
        return parts, ""
    return parts[:-1], (parts[-1] if parts else "")


def _connected() -> bool:
    from nbnats.runtime import connection
    conn = connection.connections().get(connection._current)
    return conn is not None and conn.connected


def _names(kind: str, *args: str) -> list[str]:
    """Read the names of ``kind`` from the server (blocking; run off the kernel thread)."""
    import nbnats
    if kind == "streams":
        return list(nbnats.streams()["name"])
    if kind == "consumers":
        return list(nbnats.consumers(args[0])["name"])
    if kind == "buckets":
        return list(nbnats.buckets()["bucket"])
    if kind == "keys":
        return list(nbnats.kv(args[0]).keys())
    if kind == "object_stores":
        return list(nbnats.object_stores()["bucket"])
    if kind == "objects":
        return list(nbnats.objects(args[0]).ls()["name"])
    return []


def cached(kind: str, *args: str, fetch: Callable[..., list[str]] = _names) -> list[str]:
    """The names of ``kind`` now (cached), refreshing them in the background when stale."""
    key = (kind, *args)
    with _lock:
        hit = _cache.get(key)
        stale = hit is None or time.monotonic() - hit[0] > FRESH
        start = stale and key not in _loading
        if start:
            _loading.add(key)

    def load() -> None:
        try:
            _cache[key] = (time.monotonic(), sorted(fetch(kind, *args)))
        except Exception:       # a Tab never raises: no names this time
            pass
        finally:
            with _lock:
                _loading.discard(key)

    if start:
        worker = threading.Thread(target=load, name="nbnats-complete", daemon=True)
        worker.start()
        if hit is None:
            worker.join(FIRST_WAIT)
    found = _cache.get(key)
    return found[1] if found else []


# what the word at each position after the verb is: a verb's path → kinds of its positional arguments
_POSITIONS: dict[tuple[str, ...], tuple[str, ...]] = {
    **{("stream", v): ("streams",) for v in ("info", "edit", "rm", "purge", "get", "view")},
    ("replay",): ("streams",),
    **{("consumer", v): ("streams", "consumers") for v in ("info", "next", "rm")},
    ("consumer", "ls"): ("streams",), ("consumer", "add"): ("streams",),
    ("consume",): ("streams", "consumers"),
    **{("kv", v): ("buckets", "keys") for v in ("get", "put", "del", "purge", "history", "watch", "create",
                                                  "update", "revert")},
    **{("kv", v): ("buckets",) for v in ("rm", "edit", "dump", "info", "ls")},
    **{("obj", v): ("object_stores", "objects") for v in ("get", "info", "rm")},
    **{("obj", v): ("object_stores",) for v in ("ls", "put", "seal")},
}


def complete(line: str) -> list[str]:
    """Completions for a ``%nats`` line (names only where the verb takes them).

    >>> complete("%nats stream info ")  # doctest: +SKIP
    ['ORDERS', 'PAYMENTS']
    """
    words, typed = words_after(line)
    if typed.startswith("-") or not _connected():
        return []
    for size in (2, 1):
        path = tuple(words[:size])
        kinds = _POSITIONS.get(path)
        if kinds is None or len(words) < size:
            continue
        done = [w for w in words[size:] if not w.startswith("-")]
        if len(done) >= len(kinds):
            return []
        kind = kinds[len(done)]
        names = cached(kind, *done[:1]) if kind in ("consumers", "keys", "objects") else cached(kind)
        return [n for n in names if n.startswith(typed)]
    return []


def install(ip) -> None:
    """Hook the completer into IPython for ``%nats`` lines."""
    def hook(shell, event):
        return complete(event.line)
    ip.set_hook("complete_command", hook, str_key="%nats")
