"""Moving an object's chunks: windowed JetStream publishes out, an ordered consumer in.

Writing hashes each chunk as it is read and keeps a window of acks in flight
(:func:`nbnats.engine.window.publish_window`), so a put is not one round trip
per chunk. Reading hands chunks from the loop thread to the caller's thread
through a bounded read-ahead, so a slow disk slows the server down instead of
filling memory; the caller writes, hashes, and checks size and digest.

>>> size, chunks, digest = loop.run(write_chunks(conn, "files", new_nuid(), io.BytesIO(b"hi")), 10, "put")   # doctest: +SKIP
>>> receive(conn, info, sink)                                                                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import queue
from typing import Any

from nbnats.engine import api
from nbnats.engine.ordered import OrderedConsumer
from nbnats.engine.window import publish_window
from nbnats.errors import JetStreamError, Timeout
from nbnats.objects.meta import CHUNK_SIZE, ObjectInfo, chunk_subject, digest_bytes, stream_name
from nbnats.progress import progress_bar
from nbnats.runtime import loop

READ_AHEAD = 64          # chunks received but not yet written (8 MiB at the default chunk size)
IDLE = 30.0              # seconds without a chunk before a get gives up


async def write_chunks(conn, bucket: str, nuid: str, source: Any, *, chunk_size: int = CHUNK_SIZE,
                       bar: Any = None, timeout: float = api.TIMEOUT) -> tuple[int, int, bytes]:
    """Publish ``source`` (a binary readable) as chunks of ``nuid``; return (size, chunks, SHA-256 digest).

    Files are read in a worker thread, in-memory buffers directly (loop thread).

    >>> await write_chunks(conn, "files", "NUID", io.BytesIO(b"x" * 300_000))   # doctest: +SKIP
    (300000, 3, b'...')
    """
    digest = hashlib.sha256()
    counted = {"size": 0, "chunks": 0}
    in_memory = isinstance(source, io.BytesIO)

    async def chunks():
        while True:
            data = source.read(chunk_size) if in_memory else await loop.to_thread(source.read, chunk_size)
            if not data:
                return
            digest.update(data)
            counted["size"] += len(data)
            counted["chunks"] += 1
            if bar is not None:
                bar.update(len(data))
            yield data

    await publish_window(conn, chunk_subject(bucket, nuid), chunks(), timeout=timeout, stream=stream_name(bucket))
    return counted["size"], counted["chunks"], digest.digest()


def damaged(info: ObjectInfo, detail: str) -> JetStreamError:
    """The error for an object whose chunks do not match its metadata.

    >>> damaged(ObjectInfo({"name": "a", "bucket": "b"}), "x").what
    "object 'a' in bucket 'b' came back damaged: x"
    """
    return JetStreamError(f"object {info.name!r} in bucket {info.bucket!r} came back damaged: {detail}",
                          "its stored chunks do not match its metadata: write the object again")


def receive(conn, info: ObjectInfo, sink: Any, bar: Any = None, idle: float = IDLE) -> None:
    """Write the chunks of ``info`` to ``sink`` (caller's thread), checking size and SHA-256 digest.

    Raises a plain :class:`~nbnats.errors.JetStreamError` when chunks are
    missing, too many, or do not hash to the digest; nothing is silent.

    >>> receive(conn, ob.info("a.bin"), open("a.bin", "wb"))   # doctest: +SKIP
    """
    if info.size == 0:
        return
    bar = bar or progress_bar(0, "", False)
    handoff: queue.SimpleQueue = queue.SimpleQueue()
    reader: dict[str, Any] = {}

    async def start():
        space = asyncio.Semaphore(READ_AHEAD)

        async def on_chunk(msg, meta):
            await space.acquire()
            if oc.running:
                handoff.put((msg.data, meta.pending))

        oc = OrderedConsumer(conn, stream_name(info.bucket), [chunk_subject(info.bucket, info.nuid)], on_chunk)
        reader.update(oc=oc, space=space)
        made = await oc.start()
        if made.get("num_pending", 0) == 0 and not (made.get("delivered") or {}).get("consumer_seq"):
            await oc.stop()
            raise JetStreamError(f"the chunks of object {info.name!r} are missing from bucket {info.bucket!r}",
                                 "write the object again")

    async def stop():
        await reader["oc"].stop()
        for _ in range(READ_AHEAD):          # wake a callback waiting for room, so it ends
            reader["space"].release()

    loop.run(start(), api.TIMEOUT + 2, f"reading object {info.name!r}")
    digest, got = hashlib.sha256(), 0
    try:
        while True:
            try:
                data, pending = handoff.get(timeout=idle)
            except queue.Empty:
                raise Timeout(f"object {info.name!r} stopped arriving after {got:,} of {info.size:,} bytes",
                              "check the connection and try again") from None
            loop.call_soon(reader["space"].release)
            got += len(data)
            if got > info.size:
                raise damaged(info, f"its chunks hold more than the {info.size:,} bytes its metadata names")
            sink.write(data)
            digest.update(data)
            bar.update(len(data))
            if pending == 0:
                break
    finally:
        loop.run(stop(), api.TIMEOUT, "closing the object reader")
    if got != info.size:
        raise damaged(info, f"its chunks hold {got:,} bytes, its metadata names {info.size:,}")
    if info.digest and digest_bytes(info.digest) != digest.digest():
        raise damaged(info, "its SHA-256 digest does not match")
