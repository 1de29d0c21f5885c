"""Closing the connections nbnats opens beside the user's (``bench``'s clients, ``server_check``'s probe).

They are opened with :func:`nbnats.runtime.connection.open_like` (the same server and
credentials, never the current connection, so its tails are not disturbed).

>>> other = await open_like(nbnats.current(), "bench-1", 5.0)   # doctest: +SKIP
>>> await close_quietly([other])                                 # doctest: +SKIP
"""

from __future__ import annotations

import asyncio


async def close_quietly(conns, timeout: float = 2.0) -> None:
    """Close every connection in ``conns``; one that is gone already is no error.

    >>> await close_quietly([bench_conn])   # doctest: +SKIP
    """
    for c in conns:
        try:
            await asyncio.wait_for(c.nc.close(), timeout)
        except Exception:        # already closed or unreachable: nothing is left to free
            pass
