"""The seam between publishing and registered event schemas.

``before_publish`` is called for every publish; the schema module installs
its validator here once a schema is registered, so plain publishing pays
nothing while no schema exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_validators: list[Callable[[str, Any, bytes, Any], None]] = []


def before_publish(subject: str, data: Any, payload: bytes, conn: Any = None) -> None:
    """Run every installed validator; each raises a SchemaError to refuse.

    ``conn`` is the publishing :class:`~nbnats.runtime.connection.Connection` (schemas live on its server).
    """
    for check in _validators:
        check(subject, data, payload, conn)


def install(check: Callable[[str, Any, bytes, Any], None]) -> None:
    """Install a publish-time validator (idempotent)."""
    if check not in _validators:
        _validators.append(check)
