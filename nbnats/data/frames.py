"""Messages → pandas DataFrames, decoded in bulk.

Tails, replays and consumers keep raw bytes; the frame is built here only
when asked for. JSON objects become one column per key (nested keys joined
with ``.``); anything else lands in ``data``; a payload that fails to decode
keeps its row with the reason in ``decode_error``.

>>> df = build(["a.b", "a.c"], [0, 1_000], [b'{"id": 1, "c": {"x": 2}}', b"hello"])
>>> list(df.columns)
['subject', 'time', 'seq', 'size', 'headers', 'id', 'c.x', 'data']
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

BASE_COLUMNS = ["subject", "time", "seq", "size", "headers"]
_RESERVED = set(BASE_COLUMNS) | {"data", "decode_error"}

# Set by nbnats.codecs.use() while a subject pattern has a codec: subject -> its decode
# function, or None for the default JSON decoding. Unset, build() takes the Arrow path as before.
subject_decoder: Callable[[str], Callable[[bytes], Any] | None] | None = None


def build(subjects: Sequence[str], times_ns: Sequence[int], payloads: Sequence[bytes],
          headers: Sequence[dict | None] | None = None, seqs: Sequence[int | None] | None = None,
          decode: Callable[[bytes], Any] | None = None) -> pd.DataFrame:
    """Build the standard message frame from parallel columns.

    ``times_ns`` are nanoseconds since the epoch (UTC). ``decode`` replaces
    the default JSON decoding with a per-payload function (a codec).

    >>> build(["s"], [0], [b"\\xff"]).loc[0, "data"]
    b'\\xff'
    """
    n = len(payloads)
    sizes = getattr(payloads, "sizes", None)   # a packed payload column (replay) knows its sizes
    if sizes is None:
        sizes = np.fromiter(map(len, payloads), dtype="int64", count=n)
    base = pd.DataFrame({
        "subject": pd.Series(list(subjects), dtype=object),
        "time": pd.to_datetime(np.asarray(times_ns, dtype="int64"), unit="ns", utc=True),
        "seq": _seq_column(seqs, n),
        "size": sizes,
        "headers": pd.Series(list(headers) if headers is not None else [None] * n, dtype=object),
    })
    if decode is None and subject_decoder is not None:
        body = _decode_by_subject(subjects, payloads, sizes)
    else:
        body = decode_payloads(payloads, decode, sizes)
    if body.empty and not len(body.columns):
        return base
    body.columns = [f"data.{c}" if c in _RESERVED and c not in ("data", "decode_error") else c
                    for c in body.columns]
    return pd.concat([base, body.set_axis(base.index)], axis=1)


def _seq_column(seqs: Sequence[int | None] | None, n: int) -> pd.arrays.IntegerArray:
    """Stream sequences as nullable Int64; core NATS rows (no ``seqs``) are all <NA>."""
    if seqs is None:   # built directly: pd.array([None] * n) costs ~50 ms per 300k rows
        return pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))
    return pd.array(seqs if isinstance(seqs, np.ndarray) else list(seqs), dtype="Int64")


def decode_payloads(payloads: Sequence[bytes], decode: Callable[[bytes], Any] | None = None,
                    sizes: np.ndarray | None = None) -> pd.DataFrame:
    """Decode payloads into payload columns (without the base columns).

    >>> decode_payloads([b'{"a": {"b": 1}}', b'{"a": {"b": 2}}'])["a.b"].tolist()
    [1, 2]
    """
    n = len(payloads)
    if n == 0:
        return pd.DataFrame(index=range(0))
    if decode is None:
        if sizes is None:
            sizes = np.fromiter(map(len, payloads), dtype="int64", count=n)
        fast = _arrow_json(payloads, sizes)
        if fast is not None:
            return fast
        decode = _json_or_text
    return _per_row(payloads, decode)


def _decode_by_subject(subjects: Sequence[str], payloads: Sequence[bytes], sizes: np.ndarray) -> pd.DataFrame:
    """Decode each run of rows with its subject's codec; JSON rows keep the bulk path."""
    decoders = {s: subject_decoder(s) for s in set(subjects)}
    if not any(decoders.values()):
        return decode_payloads(payloads, None, sizes)
    groups: dict[Any, list[int]] = {}
    for i, s in enumerate(subjects):
        groups.setdefault(decoders[s], []).append(i)
    parts = [decode_payloads([payloads[i] for i in rows], dec, sizes[rows]).set_axis(rows)
             for dec, rows in groups.items()]
    parts = [p for p in parts if len(p.columns)]
    if not parts:
        return pd.DataFrame(index=range(len(payloads)))
    return pd.concat(parts, sort=False).reindex(range(len(payloads)))


def payloads_of(df: pd.DataFrame) -> list[Any]:
    """A message frame's rows back to payloads: nested dicts again, or the lone ``data`` cell.

    The base columns and ``decode_error`` are left out; integer columns that
    gaps turned into floats give ints again.

    >>> df = build(["s", "s"], [0, 1], [b'{"a": {"b": 1}, "n": 2}', b'{"a": {"b": 3}}'])
    >>> payloads_of(df)
    [{'a': {'b': 1}, 'n': 2}, {'a': {'b': 3}}]
    """
    body = df[[c for c in df.columns if c not in _RESERVED or c == "data"]]
    if not len(body.columns):
        return [{} for _ in range(len(df))]
    gappy = [c for c in body.columns if body[c].dtype.kind == "f" and body[c].isna().any()]
    if gappy:
        body = body.copy()
        for c in gappy:
            col = body[c]
            present = col.dropna()
            if len(present) and (present == np.floor(present)).all() and present.abs().max() < 2 ** 53:
                body[c] = col.astype(object).where(col.isna(), col.fillna(0).astype("int64").astype(object))
    out = []
    for row in body.to_dict(orient="records"):
        data = row.get("data")
        if not is_missing(data) and not isinstance(data, dict) and \
                all(is_missing(v) for k, v in row.items() if k != "data"):
            out.append(data)
        else:
            out.append(unflatten(row))
    return out


def unflatten(row: dict) -> dict:
    """Undo the frame's ``a.b`` flattening of one row's payload columns; missing values are left out.

    >>> unflatten({"id": 1, "customer.name": "ada", "note": float("nan"), "data.size": 3})
    {'id': 1, 'customer': {'name': 'ada'}, 'size': 3}
    """
    out: dict = {}
    for k, v in row.items():
        if is_missing(v):
            continue
        k = str(k)
        if k.startswith("data.") and k[5:] in BASE_COLUMNS:
            parts = [k[5:]]                  # a payload key renamed to avoid a base column
        else:
            parts = k.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = v
    return out


def is_missing(v: Any) -> bool:
    """True for a frame's empty cell (None, NaN, pd.NA, NaT) — not for a list or dict.

    >>> is_missing(float("nan")), is_missing([]), is_missing(0)
    (True, False, False)
    """
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v)


class _Text:
    """Marker for a payload that is not a JSON object: it goes to ``data``."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _as_text(p: bytes) -> str | bytes:
    try:
        return p.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(p)


def _json_or_text(p: bytes) -> Any:
    head = p[:1]
    if head in (b"{", b"["):
        try:
            value = orjson.loads(p)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from None
        return value if type(value) is dict else _Text(_as_text(p))
    return _Text(_as_text(p))


def _flatten(d: dict, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for k, v in d.items():
        if type(v) is dict and v:
            _flatten(v, f"{prefix}{k}.", out)
        else:
            out[f"{prefix}{k}"] = v
    return out


def _per_row(payloads: Sequence[bytes], decode: Callable[[bytes], Any]) -> pd.DataFrame:
    n = len(payloads)
    rows: list[dict] = []
    row_index: list[int] = []
    data: list[Any] = [None] * n
    errors: list[str | None] = [None] * n
    has_data = has_error = False
    for i, p in enumerate(payloads):
        try:
            value = decode(p)
        except Exception as exc:  # a codec's failure keeps the row
            errors[i] = str(exc) or type(exc).__name__
            data[i] = _as_text(p)
            has_error = has_data = True
            continue
        if type(value) is dict:
            rows.append(_flatten(value))
            row_index.append(i)
        else:
            data[i] = value.value if isinstance(value, _Text) else value
            has_data = True
    if rows:
        body = pd.DataFrame(rows, index=row_index).reindex(range(n))
    else:
        body = pd.DataFrame(index=range(n))
    if has_data:
        body["data"] = pd.Series(data, dtype=object)
    if has_error:
        body["decode_error"] = pd.Series(errors, dtype=object)
    return body


def _arrow_json(payloads: Sequence[bytes], sizes: np.ndarray) -> pd.DataFrame | None:
    """Decode all payloads at once with Arrow when every one is a one-line JSON object."""
    if not sizes.all():
        return None
    buf = getattr(payloads, "joined", None)   # a packed payload column is one joined buffer already
    if buf is None:
        buf = b"\n".join(payloads)
    if buf.count(b"\n") != len(payloads) - 1:
        return None
    starts = np.concatenate(([0], np.cumsum(sizes[:-1] + 1)))
    if not (np.frombuffer(buf, dtype=np.uint8)[starts] == ord("{")).all():
        return None
    read = pa_json.ReadOptions(block_size=max(1 << 20, 2 * int(sizes.max()) + 2))
    try:
        table = pa_json.read_json(pa.BufferReader(buf), read_options=read)
        schema = _strings_not_timestamps(table.schema)
        if schema is not None:  # Arrow guessed timestamps; keep strings as sent
            table = pa_json.read_json(pa.BufferReader(buf), read_options=read,
                                      parse_options=pa_json.ParseOptions(explicit_schema=schema))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    if table.num_rows != len(payloads):
        return None
    while any(pa.types.is_struct(f.type) and f.type.num_fields for f in table.schema):
        table = table.flatten()
    lists = [f.name for f in table.schema if pa.types.is_list(f.type) or pa.types.is_struct(f.type)]
    df = table.to_pandas()
    for name in lists:
        df[name] = pd.Series(table.column(name).to_pylist(), dtype=object)
    return df


def _strings_not_timestamps(schema: pa.Schema) -> pa.Schema | None:
    def fix(t: pa.DataType) -> pa.DataType:
        if pa.types.is_timestamp(t):
            return pa.string()
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, fix(f.type)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(fix(t.value_type))
        return t

    fixed = pa.schema([pa.field(f.name, fix(f.type)) for f in schema])
    return None if fixed.equals(schema) else fixed
