"""The one asyncio event loop nbnats runs on, on its own daemon thread.

Notebook code is synchronous and the kernel owns its own loop, so every
NATS coroutine runs here instead; sync calls wait for it with a timeout.
Bulk work (a tail, a replay) runs as one coroutine in this loop, never as
one bridge call per message.

>>> import asyncio
>>> run(asyncio.sleep(0, result=42), timeout=1, what="a nap")
42
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from nbnats.errors import LoopThreadError, NatsError, Timeout

T = TypeVar("T")

_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_thread: threading.Thread | None = None


def get_loop() -> asyncio.AbstractEventLoop:
    """The running nbnats loop, started on first use.

    >>> get_loop().is_running()
    True
    """
    global _loop, _thread
    with _lock:
        if _loop is None or not _thread.is_alive():
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            _thread = threading.Thread(target=serve, name="nbnats-loop", daemon=True)
            _thread.start()
            if not ready.wait(5):
                raise Timeout("the nbnats event-loop thread did not start within 5 s",
                              "restart the kernel")
            _loop = loop
        return _loop


def in_loop_thread() -> bool:
    """True when called from the nbnats loop thread (a handler or callback).

    >>> in_loop_thread()
    False
    """
    return _thread is not None and threading.current_thread() is _thread


def _refuse_in_loop(coro: Coroutine | None = None) -> None:
    if in_loop_thread():
        if coro is not None:
            coro.close()
        raise LoopThreadError(
            "a blocking nbnats call was made from nbnats's own event-loop thread "
            "(inside an async handler or callback), where it would deadlock",
            "await the async form instead (nbnats.aio), or make the handler a plain def "
            "so it runs in a worker thread",
        )


def run(coro: Coroutine[Any, Any, T], timeout: float | None, what: str) -> T:
    """Run ``coro`` on the nbnats loop and wait at most ``timeout`` seconds.

    ``what`` names the wait in the timeout error. A KeyboardInterrupt (the
    kernel's stop button) cancels the coroutine and propagates.

    >>> import asyncio
    >>> run(asyncio.sleep(0.01, result="done"), 1, "a short sleep")
    'done'
    """
    _refuse_in_loop(coro)
    fut = asyncio.run_coroutine_threadsafe(coro, get_loop())
    try:
        return fut.result(timeout)
    except NatsError:
        raise                       # the coroutine's own error (our Timeout is a TimeoutError too)
    except concurrent.futures.TimeoutError:
        if fut.done() and not fut.cancelled():
            raise                   # a TimeoutError raised inside the coroutine

        fut.cancel()
        raise Timeout(f"{what} did not finish within {timeout:g} s",
                      "raise the timeout, or check that the server is reachable") from None
    except concurrent.futures.CancelledError:
        raise Timeout(f"{what} was cancelled", "run it again") from None
    except BaseException:
        fut.cancel()
        raise


def submit(coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future:
    """Start ``coro`` on the nbnats loop without waiting; returns its future.

    >>> import asyncio
    >>> submit(asyncio.sleep(0, result=1)).result(1)
    1
    """
    return asyncio.run_coroutine_threadsafe(coro, get_loop())


def call_soon(fn: Callable[..., Any], *args: Any) -> None:
    """Schedule a plain function on the loop thread (thread-safe).

    >>> call_soon(lambda: None)
    """
    get_loop().call_soon_threadsafe(fn, *args)


async def to_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking user function in a worker thread, from loop code."""
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
