"""Messages → pandas DataFrames: one decoding rule set, a bulk path and a per-row path.

Tails, replays and consumers keep raw bytes; the frame is built here only
when asked for. The rules (docs/API.md, "DataFrames"):

- **Rows.** No row is ever dropped for its content. A JSON object payload
  becomes one column per key; any other payload stands in ``data`` (``str``
  when it is UTF-8, else ``bytes``). A payload that fails to decode keeps its
  row: ``data`` holds it as it came, ``decode_error`` the reason. Strict JSON
  only: no ``NaN``/``Infinity``, valid UTF-8, at most 100 levels of nesting.
- **Names.** A column is named by its key path joined with ``.``
  (``customer.id``). Names are handed out shortest path first (ties in sorted
  order); a name already taken — by a base column (``subject``, ``time``,
  ``seq``, ``size``, ``headers``), by ``data`` or ``decode_error``, or by a
  shorter path — gets ``data.`` in front until it is free: a payload key
  ``subject`` is ``data.subject``, and ``{"a.b": 1, "a": {"b": 2}}`` gives
  ``a.b`` (the key ``"a.b"``) and ``data.a.b`` (the path a → b). Names are
  unique; ``df.attrs["nbnats.paths"]`` records each renamed or dotted key's
  path, and :func:`payloads_of` reads it back.
- **Values** round-trip exactly or are refused with a reason. ``null``, an
  absent key and an empty object are all a missing cell; a key missing in
  every row has no column. Integers stay
  integers: int64 (``Int64`` where a row lacks them), uint64/``UInt64`` past
  2**63; floats are float64, and so are ints mixed with floats when every one
  is exact as a float. Strings are pandas' string type. A key whose values
  share no one type (``1`` and ``"one"``, integers past 64 bits, lists mixing
  types) is a ``json`` column (:mod:`nbnats.data.values`): the cells are the
  decoded values, and Parquet receives JSON text.
- **Every frame** displays, iterates and writes to Parquet.

The bulk path (:mod:`nbnats.data.bulk`, Arrow) decodes every clean line at
once; lines it could get wrong go to the per-row path
(:mod:`nbnats.data.flatten`), which is the reference.

>>> df = build(["a.b", "a.c"], [0, 1_000], [b'{"id": 1, "c": {"x": 2}}', b"hello"])
>>> list(df.columns)
['subject', 'time', 'seq', 'size', 'headers', 'id', 'c.x', 'data']
>>> df["id"].tolist()
[1, <NA>]
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from nbnats.data import bulk, flatten
from nbnats.data.values import is_missing

BASE_COLUMNS = ["subject", "time", "seq", "size", "headers"]
SPECIAL_COLUMNS = ("data", "decode_error")
PATHS = "nbnats.paths"       # df.attrs key: column name -> key path, where the name alone is ambiguous
_RESERVED = set(BASE_COLUMNS) | set(SPECIAL_COLUMNS)

# Set by nbnats.codecs.use() while a subject pattern has a codec: subject -> its decode
# function, or None for the default JSON decoding. Unset, build() takes the Arrow path as before.
subject_decoder: Callable[[str], Callable[[bytes], Any] | None] | None = None

__all__ = ["build", "decode_payloads", "payloads_of", "unflatten", "is_missing", "BASE_COLUMNS"]


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
    parts = _Parts(n)
    decoders = {s: subject_decoder(s) for s in set(subjects)} if decode is None and subject_decoder else {}
    if any(decoders.values()):
        groups: dict[Any, list[int]] = {}
        for i, s in enumerate(subjects):
            groups.setdefault(decoders[s], []).append(i)
        for dec, rows in groups.items():
            where = np.asarray(rows, dtype=np.int64)
            parts.decode([payloads[i] for i in rows], dec, sizes[where], where)
    else:
        parts.decode(payloads, decode, sizes)
    body, paths = parts.frame(_RESERVED, "data.")
    # after the payloads, and unconsolidated (copy=False): a frame of a million rows is not held twice
    base = pd.DataFrame({
        "subject": pd.Series(np.fromiter(subjects, dtype=object, count=n), dtype=object, copy=False),
        "time": pd.to_datetime(np.asarray(times_ns, dtype="int64"), unit="ns", utc=True),
        "seq": _seq_column(seqs, n),
        "size": _writable(sizes),
        "headers": pd.Series(np.fromiter(headers, dtype=object, count=n) if headers is not None else np.full(n, None, dtype=object),
                             dtype=object, copy=False),
    }, copy=False)
    df = pd.concat([base, body], axis=1) if len(body.columns) else base
    df.attrs[PATHS] = paths
    return df


def decode_payloads(payloads: Sequence[bytes], decode: Callable[[bytes], Any] | None = None,
                    sizes: np.ndarray | None = None, reserved: Sequence[str] = SPECIAL_COLUMNS,
                    prefix: str = "data.") -> pd.DataFrame:
    """Decode payloads into payload columns (without the base columns), by the module's rules.

    ``reserved`` are the names payload keys must not take (a frame's own
    columns; ``data`` and ``decode_error`` always); ``prefix`` goes in front of
    a key that would take one.

    >>> decode_payloads([b'{"a": {"b": 1}}', b'{"a": {"b": 2}}'])["a.b"].tolist()
    [1, 2]
    >>> list(decode_payloads([b'{"key": 1}'], reserved=["key"], prefix="value.").columns)
    ['value.key']
    """
    n = len(payloads)
    if sizes is None:
        sizes = np.fromiter(map(len, payloads), dtype="int64", count=n)
    parts = _Parts(n)
    parts.decode(payloads, decode, sizes)
    body, paths = parts.frame(set(reserved) | set(SPECIAL_COLUMNS), prefix)
    body.attrs[PATHS] = paths
    return body


def _writable(values):
    """``values``, copied if it is a read-only view (of Arrow memory, say): a frame's cells can be set."""
    if isinstance(values, np.ndarray) and not values.flags.writeable:
        return values.copy()
    return values


def _seq_column(seqs: Sequence[int | None] | None, n: int) -> pd.arrays.IntegerArray:
    """Stream sequences as nullable Int64; core NATS rows (no ``seqs``) are all <NA>."""
    if seqs is None:   # built directly: pd.array([None] * n) costs ~50 ms per 300k rows
        return pd.arrays.IntegerArray(np.zeros(n, dtype="int64"), np.ones(n, dtype=bool))
    return pd.array(seqs if isinstance(seqs, np.ndarray) else list(seqs), dtype="Int64")


class _Parts:
    """Decoded pieces of a frame's payload columns, gathered from the bulk and per-row paths."""

    def __init__(self, n: int):
        self.n = n
        self.columns: dict[tuple, list[tuple]] = {}   # path -> [(rows, values, typed already)]
        self.data: dict[int, Any] = {}
        self.errors: dict[int, str] = {}
        self.redone: list[np.ndarray] = []      # rows the bulk read that the per-row decoder took over
        self.sources: list[tuple] = []          # (payloads, per-row decode, frame rows): to read one row again

    def decode(self, payloads, decode, sizes: np.ndarray, where: np.ndarray | None = None) -> None:
        """Decode ``payloads`` (frame rows ``where``, default 0..n-1): in bulk what can be."""
        n = len(payloads)
        where = np.arange(n) if where is None else where
        slow = range(n)
        if decode is None:
            got = bulk.decode(payloads, sizes) if n else None
            if got is not None:
                rows, slow_rows, columns = got
                at = where[rows]            # once: one copy of the row numbers, shared by the columns
                for path, values in columns.items():
                    self.columns.setdefault(path, []).append((at, values, True))
                left = np.ones(n, dtype=bool)
                left[rows] = False
                left[slow_rows] = True
                self.redone.append(where[slow_rows])
                slow = np.flatnonzero(left).tolist()
            decode = flatten.json_or_text
        self.sources.append((payloads, decode, where))
        columns, data, errors = flatten.decode_rows(payloads, slow, decode)
        for path, (rows, values) in columns.items():   # after the bulk pieces: these override them
            self.columns.setdefault(path, []).append(
                (where[rows], np.fromiter(values, dtype=object, count=len(values)), False))
        self.data.update((int(where[i]), v) for i, v in data.items())
        self.errors.update((int(where[i]), v) for i, v in errors.items())

    def frame(self, reserved: set[str], prefix: str) -> tuple[pd.DataFrame, dict[str, tuple]]:
        """The payload columns, named by the rules, and the paths of the ambiguous names."""
        redone = np.concatenate(self.redone) if self.redone else np.zeros(0, dtype=np.int64)
        columns = {path: column for path, pieces in self.columns.items()
                   if (column := self._column(pieces, redone)) is not None}
        names = column_names(columns, reserved, prefix)
        arrays: dict[str, Any] = {}
        # by the first row that has a value, then by the key order of that row, whichever path decoded
        # it (Arrow's field order and the per-row decoder's also count keys whose value is null)
        first = {p: min(_first_row(piece) for piece in self.columns[p]) for p in columns}
        ties = {r for r, k in Counter(first.values()).items() if k > 1}
        ranks = {r: self._key_order(r) for r in ties}
        order = sorted(columns, key=lambda p: (first[p], ranks.get(first[p], {}).get(p, 0)))
        for path in order:
            arrays[names[path]] = _writable(columns[path])
        for name, cells in (("data", self.data), ("decode_error", self.errors)):
            if cells:
                values = np.full(self.n, None, dtype=object)
                values[list(cells)] = np.fromiter(cells.values(), dtype=object, count=len(cells))
                arrays[name] = flatten.column(values)
        body = pd.DataFrame(arrays, index=pd.RangeIndex(self.n), copy=False) if arrays else \
            pd.DataFrame(index=range(self.n))
        # recorded: names that do not simply join their path, and those that look like a renamed
        # reserved key (the path data → size is named "data.size", as the renamed key "size" is)
        paths = {names[p]: p for p in columns
                 if names[p] != ".".join(map(str, p)) or any(not isinstance(k, str) or "." in k for k in p)
                 or (names[p].startswith(prefix) and names[p][len(prefix):] in reserved)}
        return body, paths

    def _key_order(self, row: int) -> dict[tuple, int]:
        """Frame row ``row``'s key paths in the order its payload holds them (decoded once more)."""
        for payloads, decode, where in self.sources:
            i = int(np.searchsorted(where, row))
            if i < len(where) and where[i] == row:
                try:
                    value = decode(payloads[i])
                except Exception:
                    return {}
                return {path: k for k, path in enumerate(flatten.flat(value))} if type(value) is dict else {}
        return {}

    def _column(self, pieces: list, redone: np.ndarray):
        """One path's column from its pieces; None when nothing is left in it."""
        if len(pieces) == 1 and pieces[0][2] and len(pieces[0][0]) == self.n and \
                (not len(redone) or pd.isna(pieces[0][1][redone]).all()):
            return pieces[0][1]             # one bulk column over every row: typed already
        values = np.full(self.n, None, dtype=object)
        for rows, part, typed in pieces:
            if typed:
                values[rows] = _objects(part)
        values[redone] = None               # what the bulk read of those rows said does not count
        for rows, part, typed in pieces:
            if not typed:
                values[rows] = part
        if not any(v is not None for v in values):
            return None                     # missing in every row: no column
        return flatten.column(values)


def _first_row(piece: tuple) -> int:
    """The first frame row where this piece of a column holds a value (1 << 62: none)."""
    rows, values, typed = piece
    if not typed:                   # the per-row decoder's cells: None where a key held null
        present = np.flatnonzero(np.fromiter((v is not None for v in values), bool, len(values)))
    elif len(values) and not np.asarray(pd.isna(values[:1]))[0]:
        return int(rows[0])
    else:
        present = np.flatnonzero(~np.asarray(pd.isna(values), dtype=bool))
    return int(rows[present[0]]) if len(present) else 1 << 62


def _objects(values) -> np.ndarray:
    """Any column array as Python objects with None where missing."""
    if isinstance(values, np.ndarray):
        if values.dtype == object:
            return values
        out = values.astype(object)
        if values.dtype.kind == "f":
            out[np.isnan(values)] = None
        return out
    return values.to_numpy(dtype=object, na_value=None)


def column_names(paths, reserved: set[str], prefix: str = "data.") -> dict[tuple, str]:
    """Unique column names for key paths: joined with ``.``, shortest path first, a taken
    name prefixed until free. Names are compared as Python reads identifiers (NFKC): ``ª``
    and ``a`` would be one field of ``df.itertuples()``.

    >>> column_names([("a", "b"), ("a.b",), ("subject",)], {"subject"})
    {('a.b',): 'a.b', ('subject',): 'data.subject', ('a', 'b'): 'data.a.b'}
    >>> column_names([("a",), ("ª",)], set())
    {('a',): 'a', ('ª',): 'data.ª'}
    """
    taken = {unicodedata.normalize("NFKC", name) for name in reserved}
    names: dict[tuple, str] = {}
    for path in sorted(paths, key=lambda p: (len(p), tuple(map(str, p)))):
        name = ".".join(map(str, path))
        while unicodedata.normalize("NFKC", name) in taken:
            name = prefix + name
        taken.add(unicodedata.normalize("NFKC", name))
        names[path] = name
    return names


def payloads_of(df: pd.DataFrame) -> list[Any]:
    """A message frame's rows back to payloads: nested dicts again, or the lone ``data`` cell.

    The base columns and ``decode_error`` are left out. Column names are read
    back with ``df.attrs["nbnats.paths"]`` where the frame has it.

    >>> df = build(["s", "s"], [0, 1], [b'{"a": {"b": 1}, "n": 2}', b'{"a": {"b": 3}, "a.b": 4}'])
    >>> payloads_of(df)
    [{'a': {'b': 1}, 'n': 2}, {'a': {'b': 3}, 'a.b': 4}]
    """
    body = df[[c for c in df.columns if c not in _RESERVED or c == "data"]]
    if not len(body.columns):
        return [{} for _ in range(len(df))]
    paths = df.attrs.get(PATHS)
    if paths is None:           # not built here: a float column with gaps may have been ints
        body = _whole_floats_as_ints(body)
    out = []
    for row in body.to_dict(orient="records"):
        data = row.get("data")
        if not is_missing(data) and all(is_missing(v) for k, v in row.items() if k != "data"):
            out.append(data)
        else:
            out.append(unflatten({k: v for k, v in row.items() if k != "data"}, paths))
    return out


def _whole_floats_as_ints(body: pd.DataFrame) -> pd.DataFrame:
    gappy = [c for c in body.columns if body[c].dtype.kind == "f" and body[c].isna().any()]
    if not gappy:
        return body
    body = body.copy()
    for c in gappy:
        col = body[c]
        present = col.dropna()
        if len(present) and (present == np.floor(present)).all() and present.abs().max() < 2 ** 53:
            body[c] = col.astype(object).where(col.isna(), col.fillna(0).astype("int64").astype(object))
    return body


def unflatten(row: dict, paths: dict[str, tuple] | None = None) -> dict:
    """Undo the frame's ``a.b`` flattening of one row's payload columns; missing values are left out.

    ``paths`` (a frame's ``attrs["nbnats.paths"]``) gives the key path of the
    names that are not simply dot-joined.

    >>> unflatten({"id": 1, "customer.name": "ada", "note": float("nan"), "data.size": 3})
    {'id': 1, 'customer': {'name': 'ada'}, 'size': 3}
    """
    out: dict = {}
    for k, v in row.items():
        if is_missing(v):
            continue
        if paths and k in paths:
            parts = list(paths[k])
        elif isinstance(k, str) and k.startswith("data.") and k[5:] in _RESERVED:
            parts = [k[5:]]                  # a payload key renamed to avoid a base column
        else:
            parts = str(k).split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = v
    return out
