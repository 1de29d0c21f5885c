"""NATS micro-service discovery over ``$SRV.PING|INFO|STATS``, and adding a service.

Any service built with a NATS micro library (nats.py ``nats.micro``,
nats.go ``micro``, nats.js ``services``) answers these requests; every
running instance replies, so replies are gathered for a short window.

>>> nbnats.services()                 # doctest: +SKIP
>>> nbnats.service_stats("orders")    # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import orjson
import pandas as pd

from nbnats.runtime import loop
from nbnats.data import validate
from nbnats.runtime.connection import current
from nbnats.errors import NatsError, NotFound
from nbnats.jetstream.display import listing
from nbnats.messaging import gather
from nbnats.data.payload import Message, encode


def _ask(verb: str, name: str | None, wait: float, connection: str | None) -> list[dict]:
    if name is not None:
        validate.name(name, "service")
    subject = f"$SRV.{verb}" + (f".{name}" if name else "")
    conn = current(connection)
    replies = loop.run(gather(conn, subject, wait=wait), wait + 5, f"discovering services ({subject})")
    out = []
    for r in replies:
        try:
            out.append(orjson.loads(r.data))
        except orjson.JSONDecodeError:
            continue
    if name and not out:
        raise NotFound(f"no service named {name!r} answered within {wait:g} s",
                       "list the running ones with nbnats.services()")
    return out


def services(wait: float = 0.5, connection: str | None = None) -> pd.DataFrame:
    """Every running service instance: name, id, version, description, endpoints.

    >>> nbnats.services()[["name", "version"]]   # doctest: +SKIP
    """
    rows = [{"name": i.get("name"), "id": i.get("id"), "version": i.get("version"),
             "description": i.get("description", ""),
             "endpoints": [e.get("subject") for e in i.get("endpoints") or []],
             "metadata": i.get("metadata") or None} for i in _ask("INFO", None, wait, connection)]
    df = listing(rows, ["name", "id", "version", "description", "endpoints", "metadata"])
    return df.sort_values(["name", "id"], ignore_index=True)


def service_info(name: str, wait: float = 0.5, connection: str | None = None) -> list[dict]:
    """The INFO document of each instance of service ``name``.

    >>> nbnats.service_info("orders")[0]["endpoints"]   # doctest: +SKIP
    """
    return _ask("INFO", name, wait, connection)


def service_stats(name: str | None = None, wait: float = 0.5, connection: str | None = None) -> pd.DataFrame:
    """Per endpoint and instance: requests, errors, processing time, last error.

    >>> nbnats.service_stats("orders")   # doctest: +SKIP
    """
    rows = []
    for inst in _ask("STATS", name, wait, connection):
        for ep in inst.get("endpoints") or []:
            rows.append({"name": inst.get("name"), "id": inst.get("id"), "endpoint": ep.get("name"),
                         "subject": ep.get("subject"), "requests": ep.get("num_requests", 0),
                         "errors": ep.get("num_errors", 0),
                         "avg_ms": (ep.get("average_processing_time") or 0) / 1e6,
                         "last_error": ep.get("last_error") or ""})
    return listing(rows, ["name", "id", "endpoint", "subject", "requests", "errors",
                          "avg_ms", "last_error"])


class MicroService:
    """A micro service started by :func:`add_service`; discoverable, with stats."""

    def __init__(self, svc, conn):
        self._svc = svc
        self.conn = conn
        self.running = True

    @property
    def info(self) -> dict:
        """The service's INFO document (name, id, version, endpoints)."""
        return self._svc.info().to_dict() if hasattr(self._svc.info(), "to_dict") else dict(self._svc.info())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the service and all its endpoints (idempotent)."""
        if self.running:
            self.running = False
            loop.run(self._svc.stop(), timeout, "stopping the service")

    def __repr__(self) -> str:
        info = self.info()
        return f"<MicroService {info.get('name')} {info.get('id')}>"


def add_service(name: str, endpoints: dict[str, Callable[[Message], Any]], version: str = "0.1.0",
                description: str = "", queue: str | None = None, connection: str | None = None) -> MicroService:
    """Start a discoverable micro service whose endpoints are ``{subject: handler}``.

    Each handler gets the request :class:`Message` and returns the reply
    (dict, str or bytes); an exception answers with a service error.

    >>> svc = nbnats.add_service("orders", {"orders.get": lambda m: {"id": m.json()["id"]}})   # doctest: +SKIP
    """
    from nats import micro
    from nats.micro.request import ServiceError

    validate.name(name, "service")
    if not endpoints:
        raise NatsError("a service needs at least one endpoint", "pass endpoints={'subject': handler}")
    for subject in endpoints:
        validate.subject(subject)
    conn = current(connection)

    def wrap(handler):
        is_async = inspect.iscoroutinefunction(handler)

        async def handle(req):
            msg = Message(req.subject, req.data, req.headers)
            try:
                result = await handler(msg) if is_async else await loop.to_thread(handler, msg)
            except Exception as exc:
                # Raised, not answered here, so the endpoint counts it in $SRV.STATS (errors, last_error).
                raise ServiceError("500", f"{type(exc).__name__}: {exc}") from None
            await req.respond(encode(result))

        return handle

    async def start():
        kwargs = dict(name=name, version=version, description=description)
        if queue:
            kwargs["queue_group"] = queue
        svc = await micro.add_service(conn.nc, **kwargs)
        for subject, handler in endpoints.items():
            await svc.add_endpoint(name=subject.replace(".", "_").replace("*", "any").replace(">", "all"),
                                   subject=subject, handler=wrap(handler))
        return svc

    svc = MicroService(loop.run(start(), 10, f"starting service {name!r}"), conn)
    _started.append(svc)
    return svc


_started: list[MicroService] = []


def stop_services() -> int:
    """Stop every micro service this session started; returns how many were running."""
    running = [s for s in _started if s.running]
    for svc in running:
        try:
            svc.stop()
        except NatsError:
            pass   # its connection is already gone
    _started.clear()
    return len(running)
