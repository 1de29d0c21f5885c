"""The async face: ``await nbnats.aio.publish(...)`` from a notebook's own loop.

Each call runs the sync API in a worker thread, which hands the work to the
nbnats loop thread; the caller's loop never blocks.

>>> await nbnats.aio.request("greet", "ada")   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import functools

from nbnats.runtime import connection
from nbnats import frame_publish, messaging, tail as _tail


def _async(fn):
    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)
    wrapper.__doc__ = f"Async form of :func:`nbnats.{fn.__name__}`.\n\n{fn.__doc__ or ''}"
    return wrapper


connect = _async(connection.connect)
close = _async(connection.close)
status = _async(connection.status)
publish = _async(messaging.publish)
request = _async(messaging.request)
serve = _async(messaging.serve)
publish_frame = _async(frame_publish.publish_frame)
tail = _async(_tail.tail)
