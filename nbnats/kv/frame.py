"""What a KV message means: its operation, its value decoded, entries, frames and info tables.

Values go in like payloads (dict/list → JSON, str → UTF-8, bytes as they
are) and come back decoded: a JSON object or array → dict/list, other UTF-8
→ str, anything else → bytes. Frames (``history``, ``to_frame``, a watch's
``df``) have ``key``, ``value`` (None for a delete), ``revision`` (Int64),
``created`` (UTC), ``operation`` (PUT, DEL, PURGE); a JSON-object value is
also spread into one column per key after those (nested keys joined with
``.``, a name that collides with the five taken as ``value.<name>``), with
``decode_error`` when a value looks like JSON but is not.

>>> kv_frame([("a", 1, 0, b'{"x": 1}', None)])[["key", "value", "x"]].values.tolist()
[['a', {'x': 1}, 1]]
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import numpy as np
import orjson
import pandas as pd

from nbnats.data import frames
from nbnats.data.flatten import column, loads as strict_json

KV_OP = "KV-Operation"
MARKER = "Nats-Marker-Reason"       # nats-server 2.11+ places these for TTL/limit expiries
COLUMNS = ["key", "value", "revision", "created", "operation"]


def decode_value(raw: bytes | None) -> Any:
    """A stored value as Python: JSON object/array → dict/list, UTF-8 → str, else bytes.

    >>> decode_value(b'{"a": 1}'), decode_value(b"5"), decode_value(b"\\xff")
    ({'a': 1}, '5', b'\\xff')
    """
    if raw is None:
        return None
    if raw[:1] in (b"{", b"["):
        try:
            return strict_json(raw)      # the frames' rules: no NaN, not too deep, big integers exact
        except ValueError:
            pass
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(raw)


def operation(headers: dict | None) -> str:
    """PUT, DEL or PURGE from a KV message's headers (server expiry markers included).

    >>> operation(None), operation({"KV-Operation": "DEL"}), operation({"Nats-Marker-Reason": "MaxAge"})
    ('PUT', 'DEL', 'PURGE')
    """
    if not headers:
        return "PUT"
    op = headers.get(KV_OP)
    if op in ("DEL", "PURGE"):
        return op
    reason = headers.get(MARKER)
    if reason == "Remove":
        return "DEL"
    if reason in ("MaxAge", "Purge"):
        return "PURGE"
    return "PUT"


def preview(value: Any, n: int = 60) -> str:
    """A one-line preview of a decoded value.

    >>> preview({"a": 1}), preview(b"\\x00\\x01"), preview("x" * 9, 5)
    ('{"a":1}', '<2 bytes>', 'xxxx…')
    """
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = orjson.dumps(value).decode()
    elif isinstance(value, bytes):
        return f"<{len(value):,} bytes>"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= n else text[: n - 1] + "…"


def _objects(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)      # element by element: lists stay cells, not a 2-D array
    for i, v in enumerate(values):
        out[i] = v
    return out


def kv_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """The KV frame from (key, revision, time_ns, data, headers) rows.

    >>> kv_frame([("a", 1, 0, b'{"x": 1}', None)])[["key", "value", "revision", "operation", "x"]].values.tolist()
    [['a', {'x': 1}, 1, 'PUT', 1]]
    """
    rows = list(rows)
    ops = [operation(r[4]) for r in rows]
    payloads = [bytes(r[3] or b"") for r in rows]
    base = pd.DataFrame({
        "key": pd.Series([r[0] for r in rows], dtype=object),
        # one value column whatever the values: mixed types become a json column, so it writes Parquet
        "value": pd.Series(column(_objects([decode_value(p) if op == "PUT" else None
                                            for p, op in zip(payloads, ops)]))),
        "revision": pd.array([r[1] for r in rows], dtype="Int64"),
        "created": pd.to_datetime(pd.Series([r[2] or 0 for r in rows], dtype="int64"), unit="ns", utc=True),
        "operation": pd.Series(ops, dtype=object),
    })
    puts = [i for i, op in enumerate(ops) if op == "PUT" and payloads[i][:1] in (b"{", b"[")]
    if not puts:
        return base
    body = frames.decode_payloads([payloads[i] for i in puts], reserved=COLUMNS, prefix="value.")
    body = body.drop(columns=["data"], errors="ignore")       # the raw text is already in "value"
    if not len(body.columns):
        return base
    body.index = puts
    return pd.concat([base, body.reindex(range(len(rows)))], axis=1)


class Entry:
    """One revision of a key: ``key``, ``value`` (decoded), ``raw`` (bytes), ``revision``,
    ``created`` (UTC Timestamp), ``operation`` (PUT, DEL, PURGE), ``bucket``.

    >>> e = Entry("sessions", "user.1", b'{"n": 1}', 3, 0, "PUT")
    >>> e.value, e.revision, e.deleted
    ({'n': 1}, 3, False)
    """

    __slots__ = ("bucket", "key", "raw", "revision", "created", "operation")

    def __init__(self, bucket: str, key: str, raw: bytes | None, revision: int, created_ns: int | None,
                 operation: str = "PUT"):
        self.bucket = bucket
        self.key = key
        self.raw = bytes(raw or b"")
        self.revision = revision
        self.created = None if created_ns is None else pd.Timestamp(created_ns, unit="ns", tz="UTC")
        self.operation = operation

    @property
    def value(self) -> Any:
        """The value decoded (None for a delete marker)."""
        return None if self.deleted else decode_value(self.raw)

    @property
    def deleted(self) -> bool:
        """True for a DEL or PURGE marker."""
        return self.operation != "PUT"

    def __repr__(self) -> str:
        shown = self.operation if self.deleted else preview(self.value, 80)
        return f"<Entry {self.bucket}/{self.key} rev {self.revision}: {shown}>"

    def _repr_html_(self) -> str:
        value = self.value
        if isinstance(value, (dict, list)):
            body = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        elif isinstance(value, bytes):
            body = f"<{len(value):,} bytes> " + value[:64].hex(" ")
        else:
            body = "" if value is None else str(value)
        when = self.created.strftime("%Y-%m-%d %H:%M:%S.%f UTC") if self.created is not None else ""
        op = "" if not self.deleted else f" · <b style='color:#b91c1c'>{self.operation}</b>"
        return (f"<div><b>{html.escape(self.key)}</b> · bucket {html.escape(self.bucket)} · "
                f"revision {self.revision} · {when} · {len(self.raw):,} bytes{op}"
                f"<pre style='max-height:24em;overflow:auto'>{html.escape(body[:20_000])}</pre></div>")


def shown(v: Any) -> str:
    """A settings value as a table cell shows it.

    >>> shown(None), shown(1500), shown(pd.Timedelta(hours=1))
    ('—', '1,500', '01:00:00')
    """
    if v is None or v is pd.NaT or (isinstance(v, float) and v != v):
        return "—"
    if isinstance(v, pd.Timedelta):
        return str(v).replace("0 days ", "")
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def info_table(title: str, row: dict) -> str:
    """A settings dict as a two-column HTML table under ``title`` (HTML).

    >>> "<th style='text-align:left'>history</th>" in info_table("KV", {"history": 5})
    True
    """
    cells = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td style='text-align:left'>"
                    f"{html.escape(shown(v))}</td></tr>" for k, v in row.items())
    return f"<div>{title}<table>{cells}</table></div>"


__all__ = ["COLUMNS", "Entry", "KV_OP", "MARKER", "decode_value", "info_table", "kv_frame", "operation",
           "preview", "shown"]
