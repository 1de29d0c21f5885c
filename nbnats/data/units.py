"""Units people write and the server's units: durations, sizes, counts, times.

``7d``, ``1h30m``, ``500ms`` → seconds (or the server's nanoseconds); ``512MB`` →
bytes (powers of 1024, as natscli); ISO times or "ago" (``1h``) → epoch ns; and
the reverse, for display.

>>> seconds("1h30m", "max age"), size("1.5KB", "max bytes")
(5400.0, 1536)
"""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pandas as pd

from nbnats.errors import ValidationError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|ms|s|m|h|d|w|y)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
NANOS_FROM = 10**12     # a bare number this large is nanoseconds (the server's unit): 10**12 s would be 31,000 years
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.I)


def seconds(value: Any, what: str) -> float | None:
    """Seconds from a number, a timedelta or text like ``7d``, ``1h30m``, ``500ms``.

    A bare number is seconds, unless it is 10**12 or more: then it is the server's
    nanoseconds (what ``stream_info`` itself returns, e.g. ``7 * 24 * 60 * 60 * 1e9``).

    >>> seconds("1h30m", "max age"), seconds(90, "x"), seconds(None, "x"), seconds(7 * 24 * 60 * 60 * 1e9, "x")
    (5400.0, 90.0, None, 604800.0)
    """
    if value is None:
        return None
    if isinstance(value, (dt.timedelta, pd.Timedelta)):
        return value.total_seconds()
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():      # numpy scalars
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")) or value < 0:
            raise ValidationError(f"{what} {value!r} is not a duration",
                                  "pass a number of seconds >= 0, or text like 90s, 30m, 1h, 7d")
        return value / 1e9 if value >= NANOS_FROM else float(value)
    text = str(value).strip().lower().replace(" ", "")
    if text and _DURATION.sub("", text) == "":
        return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    try:
        number = float(text)
    except ValueError:
        number = -1.0
    if number >= 0:
        return number
    raise ValidationError(f"{what} {value!r} is not a duration", "write it like 90s, 30m, 1h, 7d or 1h30m")


def nanos(value: Any, what: str) -> int | None:
    """A duration in nanoseconds (the server's unit), or None.

    >>> nanos("2m", "dupe_window")
    120000000000
    """
    s = seconds(value, what)
    return None if s is None else int(round(s * 1e9))


def size(value: Any, what: str) -> int | None:
    """Bytes from a number or text like ``512MB``, ``1GiB``, ``10k`` (powers of 1024, as natscli).

    >>> size("1.5KB", "max bytes"), size(-1, "x")
    (1536, -1)
    """
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValidationError(f"{what} {value!r} is not a size", "write bytes like 1000000, 512MB or 1GB")
    return int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2).lower() or " "))


def count(value: Any, what: str) -> int | None:
    """A whole-number limit (``-1`` means unlimited), or None.

    >>> count("1000", "max_msgs"), count(-1, "max_msgs")
    (1000, -1)
    """
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = None
    if n is None or isinstance(value, (bool, float)) or n < -1:
        raise ValidationError(f"{what} {value!r} is not a whole number", f"write e.g. {what}=1000, or -1 for no limit")
    return n


def to_ns(value: Any, what: str) -> int | None:
    """A point in time as UTC nanoseconds: a datetime, ISO text, or a duration meaning "ago".

    Naive times are UTC. ``"1h"`` is one hour before now.

    >>> to_ns("2026-01-01T00:00:00Z", "since")
    1767225600000000000
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return time.time_ns() - nanos(value, what)
        except ValidationError:
            pass
    elif isinstance(value, (dt.timedelta, int, float)) and not isinstance(value, bool):
        return time.time_ns() - nanos(value, what)
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError):
        ts = None
    if ts is None or ts is pd.NaT:
        raise ValidationError(f"{what} {value!r} is not a time",
                              "give an ISO time like 2026-11-27T14:00Z, a datetime, or a duration ago like 1h or 7d")
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value)


def rfc3339(ns: int) -> str:
    """UTC nanoseconds as the server's RFC 3339 text.

    >>> rfc3339(1767225600000000001)
    '2026-01-01T00:00:00.000000001Z'
    """
    return pd.Timestamp(ns, unit="ns", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.") + f"{ns % 1_000_000_000:09d}Z"


def parse_time(text: str | None) -> int | None:
    """The server's RFC 3339 time as UTC nanoseconds (exact; None for the zero time).

    >>> parse_time("2026-01-01T00:00:00.5Z"), parse_time("0001-01-01T00:00:00Z")
    (1767225600500000000, None)
    """
    if not text or text.startswith("0001-01-01"):
        return None
    return int(pd.Timestamp(text).value)


def human_bytes(n: Any) -> str:
    """``1536`` → ``'1.5 KiB'``; -1 or None → ``'unlimited'``.

    >>> human_bytes(1536), human_bytes(-1)
    ('1.5 KiB', 'unlimited')
    """
    if n is None or n < 0:
        return "unlimited"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:,.0f} B" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


def human_duration(ns: Any) -> str:
    """Nanoseconds as ``7d``, ``2m``, ``1h30m``; 0 or None → ``'forever'``.

    >>> human_duration(7 * 86400 * 10**9), human_duration(90 * 10**9), human_duration(0)
    ('7d', '1m30s', 'forever')
    """
    if not ns or ns < 0:
        return "forever"
    s = ns / 1e9
    if s < 1:
        return f"{s * 1000:g}ms"
    out = ""
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= span:
            k = int(s // span)
            out += f"{k}{unit}"
            s -= k * span
    return out or "0s"


def human_count(n: Any) -> str:
    """A limit as text: ``-1`` → ``'unlimited'``.

    >>> human_count(1_000_000), human_count(-1)
    ('1,000,000', 'unlimited')
    """
    return "unlimited" if n is None or n < 0 else f"{n:,}"
