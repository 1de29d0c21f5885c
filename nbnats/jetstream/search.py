"""Search a stream's messages by content: what Kafka UIs offer and natscli does not.

The stream is read in sequence ranges of ``chunk`` messages with
:func:`nbnats.jetstream.replay.replay` (subject and time filters go to the
server), each range is filtered with the expression and dropped, and only the
matching rows are kept, so memory stays bounded by the chunk and the matches.

>>> hits = nbnats.search("ORDERS", "total > 100 and country == 'NL'", since="1d")   # doctest: +SKIP
>>> hits = nbnats.search("ORDERS", lambda df: df["note"].str.contains("refund", na=False))   # doctest: +SKIP
>>> hits.attrs["scanned"], len(hits)                                             # doctest: +SKIP
(250000, 17)
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from nbnats.data import frames, validate
from nbnats.engine import api
from nbnats.errors import NatsError, NotFound, ValidationError
from nbnats.jetstream.replay import ReplayWarning, replay
from nbnats.runtime import loop
from nbnats.runtime.connection import current

CHUNK = 100_000
_UNDEFINED = re.compile(r"name '([^']+)' is not defined")


def _check_expr(expr: Any) -> None:
    """Refuse an expression that cannot be a search before anything is read."""
    if callable(expr):
        return
    if not isinstance(expr, str) or not expr.strip():
        raise ValidationError(f"a search needs a pandas query string or a function, not {expr!r}",
                              "pass e.g. \"total > 100\" or lambda df: df['total'] > 100")
    try:
        pd.DataFrame().query(expr)
    except NatsError:
        raise
    except Exception as exc:            # pandas' parse errors carry no common base class
        if _UNDEFINED.search(str(exc)):
            return                      # names are checked against each chunk's columns
        raise _parse_error(expr, exc) from None


def _column_named(expr: str, name: str, columns) -> str:
    """The column a pandas "name … is not defined" means (backticked names come back mangled)."""
    if name.startswith("BACKTICK_QUOTED_STRING_"):
        absent = [b for b in re.findall(r"`([^`]+)`", expr) if b not in columns]
        if absent:
            return absent[0]
    return name


def _parse_error(expr: str, exc: Exception) -> ValidationError:
    text = re.sub(r" \(<unknown>, line \d+\)", "", " ".join(str(exc).split())) or type(exc).__name__
    return ValidationError(f"the search expression {expr!r} does not parse: {text}",
                           "write a pandas query, e.g. \"total > 100 and country == 'NL'\"; "
                           "quote column names with dots in backticks: `customer.id` == 7")


def _matches(frame: pd.DataFrame, expr: Any, missing: set[str]) -> pd.DataFrame:
    """The rows of ``frame`` the expression keeps; names it uses that this chunk lacks go to ``missing``."""
    if callable(expr):
        try:
            got = expr(frame)
        except Exception as exc:
            raise ValidationError(f"the search function failed: {type(exc).__name__}: {exc}",
                                  "make it take a DataFrame and return a boolean mask or the matching rows "
                                  f"(the columns here: {', '.join(map(str, frame.columns))})") from None
        if isinstance(got, pd.DataFrame):
            return got
        mask = np.asarray(got)
        if mask.dtype != bool or mask.shape != (len(frame),):
            raise ValidationError(f"the search function returned {type(got).__name__} "
                                  f"{getattr(mask, 'dtype', '')}, not a mask of {len(frame)} booleans",
                                  "return e.g. df['total'] > 100, or a filtered frame")
        return frame[mask]
    try:
        return frame.query(expr)
    except Exception as exc:
        name = _UNDEFINED.search(str(exc))
        if name:
            missing.add(_column_named(expr, name.group(1), frame.columns))
            return frame.iloc[0:0]
        raise ValidationError(f"the search expression {expr!r} failed on the stream's rows: "
                              f"{' '.join(str(exc).split())}",
                              f"check the columns and their types ({', '.join(map(str, frame.columns))})") from None


def _positive(value: Any, label: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1):
        raise ValidationError(f"{label} must be a positive whole number, not {value!r}", f"pass e.g. {label}=1000")


def search(stream: str, expr: str | Callable[[pd.DataFrame], Any], subject: str | list[str] | None = None,
           since: Any = None, until: Any = None, limit: int | None = None, chunk: int = CHUNK,
           connection: str | None = None) -> pd.DataFrame:
    """The messages of ``stream`` that ``expr`` keeps, as the standard frame.

    ``expr`` is a pandas ``query`` string over the frame's columns
    (``"total > 100 and subject == 'orders.eu'"``; backticks around names
    with dots) or a function taking a frame and returning a boolean mask or
    the matching rows. ``subject``, ``since`` and ``until`` are sent to the
    server; ``limit`` stops at the first N matches. The stream is read as it
    was when the search began, ``chunk`` messages at a time.

    ``attrs``: stream, scanned (messages read), chunks, first_seq/last_seq
    (the range searched), warnings (what the reads reported missing).

    >>> nbnats.search("ORDERS", "`customer.id` == 7", subject="orders.eu.>", limit=10)   # doctest: +SKIP
    """
    validate.name(stream, "stream")
    _check_expr(expr)
    _positive(limit, "limit")
    _positive(chunk, "chunk")
    conn = current(connection)
    info = loop.run(api.request(conn, f"STREAM.INFO.{stream}", what=f"reading stream {stream!r}", stream=stream),
                    api.TIMEOUT + 2, f"reading stream {stream!r}")
    first, last = info["state"]["first_seq"], info["state"]["last_seq"]
    parts: list[pd.DataFrame] = []
    found = scanned = chunks = 0
    missing: set[str] = set()
    seen: set[str] = set()
    notes: list[str] = []
    start = first if info["state"]["messages"] else last + 1
    while start <= last and (limit is None or found < limit):
        end = min(start + chunk - 1, last)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ReplayWarning)
            try:
                frame = replay(stream, subject=subject, since=since, until=until, start_seq=start, end_seq=end,
                               progress=False, connection=connection)
            except NotFound as exc:
                if "is empty" not in exc.what:        # purged meanwhile: nothing more to read
                    raise
                break
        notes += [str(w.message) for w in caught if issubclass(w.category, ReplayWarning)]
        chunks += 1
        scanned += len(frame)
        seen.update(map(str, frame.columns))
        if len(frame):
            hit = _matches(frame, expr, missing)
            if len(hit):
                parts.append(hit)
                found += len(hit)
        del frame
        start = end + 1
    unknown = sorted(missing - seen)
    if unknown and not parts:
        raise ValidationError(f"the search expression {expr!r} names {', '.join(map(repr, unknown))}, which is no "
                              f"column of the messages in stream {stream!r}",
                              f"use one of {', '.join(sorted(seen)) or 'subject, time, seq, size, headers'}")
    out = pd.concat(parts, ignore_index=True) if parts else frames.build([], [], [], [], [])
    if limit is not None:
        out = out.iloc[:limit].reset_index(drop=True)
    out.attrs.update(stream=stream, scanned=scanned, chunks=chunks, first_seq=first, last_seq=last,
                     matched=len(out), warnings=notes)
    return out


__all__ = ["search"]
