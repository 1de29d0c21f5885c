"""The seam between publishing and registered event schemas.

``before_publish`` is called for every publish; the schema module installs
its validator here once a schema is registered, so plain publishing pays
nothing while no schema exists.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_validators: list[Callable[[str, Any, bytes], None]] = []


def before_publish(subject: str, data: Any, payload: bytes) -> None:
    """Run every installed validator; each raises a SchemaError to refuse."""
    for check in _validators:
        check(subject, data, payload)


def install(check: Callable[[str, Any, bytes], None]) -> None:
    """Install a publish-time validator (idempotent)."""
    if check not in _validators:
        _validators.append(check)
