"""The bulk half of frame decoding: all clean JSON-object payloads in one Arrow read.

Arrow's JSON reader is several times faster than decoding row by row, but it
is not exact everywhere: it accepts ``NaN``/``Infinity``, does not check
UTF-8, turns integers past int64 into floats (and ints into floats in a
column that mixes them), and fills absent keys of objects inside lists. A
cheap screen of the joined buffer finds lines that are not one-line JSON
objects or not UTF-8; Arrow's result shows the rest (non-finite floats,
integral floats past 2**53, nesting past ``MAX_DEPTH``, lists of objects with
gaps). Those rows go to the per-row decoder (bad lines are blanked to ``{}``
in a copy of the buffer first); every other row keeps the bulk path.

>>> rows, slow, cols = decode([b'{"a": 1}', b'{"a": NaN}', b'{"a": 2}', b"text"], np.array([8, 10, 8, 4]))
>>> rows.tolist(), slow.tolist(), cols[("a",)].tolist()
([0, 1, 2, 3], [1, 3], [1.0, nan, 2.0, nan])
"""

from __future__ import annotations

import codecs
import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.json as pa_json

from nbnats.data.flatten import MAX_DEPTH
from nbnats.data.values import JsonArray, storable

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")   # Arrow refuses a lone one: the whole read fails
_EXACT_IN_FLOAT = 2.0 ** 53


def decode(payloads: Sequence[bytes], sizes: np.ndarray):
    """Decode what Arrow can decode exactly.

    Returns ``(rows, slow, columns)`` or None when the bulk path does not pay:
    ``rows`` are the row numbers read in bulk, ``slow`` the rows (among them or
    not) the per-row decoder must take, and ``columns`` maps a key path to one
    array aligned with ``rows``; the per-row results override it at ``slow``.
    """
    n = len(payloads)
    rows = np.flatnonzero(sizes >= 2)        # shorter payloads are never a JSON object
    got = _preread(payloads) if len(rows) == n else None
    if got is None:
        if len(rows) < n:
            if len(rows) * 2 < n:
                return None
            buf = b"\n".join(payloads[i] for i in rows.tolist())
        else:
            buf = getattr(payloads, "joined", None)   # a packed payload column is one joined buffer already
            if buf is None:
                buf = b"\n".join(payloads)
        got = read_chunk(buf, sizes[rows])
        if got is None:
            return None
    table, bad = got
    if bad.sum() * 2 > len(rows):
        return None
    leaves: dict[tuple, pa.ChunkedArray] = {}
    for name, col in zip(table.column_names, table.columns):
        _leaves(col, (name,), leaves)
    columns = {}
    for path, col in leaves.items():
        if col.null_count == len(col):   # missing in every row: no column (as per row)
            continue
        if not _well_formed(col):        # Arrow loses nulls that open a list: its offsets show it
            bad |= col.is_valid().to_numpy(zero_copy_only=False)
            columns[path] = np.full(len(col), None, dtype=object)
            continue
        values = _pandas(col)
        inexact = _inexact(path, col, values)
        if inexact is not None:
            bad |= inexact
        columns[path] = values
    return rows, rows[bad], columns


def read_chunk(buf, sizes: np.ndarray) -> tuple[pa.Table, np.ndarray] | None:
    """Arrow's read of newline-joined payloads (each 2 bytes or more), with the rows it must not take
    (``bad``) blanked to ``{}`` first; None when the bulk path does not pay or Arrow refuses.

    Safe on any thread for an immutable ``buf``: a replay runs it on each chunk while the read goes on.

    >>> table, bad = read_chunk(b'{"a": 1}\\n[2]', np.array([8, 3]))
    >>> table.column("a").to_pylist(), bad.tolist()
    ([1, None], [False, True])
    """
    if not len(sizes) or sizes.min() < 2:       # never JSON objects: the caller's per-row path takes them
        return None
    starts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1] + 1, out=starts[1:])
    bad = _suspect_lines(buf, starts)
    table = None
    for attempt in range(2):
        if bad.sum() * 2 > len(sizes):
            return None
        table = _read(_blank(buf, starts, sizes, bad) if bad.any() else buf, int(sizes.max()))
        if table is not None or attempt:
            break
        surrogates = [m.start() for m in _SURROGATE_ESCAPE.finditer(buf)]
        if not surrogates:
            return None
        _mark(bad, starts, surrogates)
    if table is None or table.num_rows != len(sizes):
        return None
    return table, bad


def _preread(payloads) -> tuple[pa.Table, np.ndarray] | None:
    """The chunks a replay read while it went on (:meth:`Packed.preread`), as one table; None unless
    every chunk was read and their columns fit together (then the whole buffer is read at once)."""
    chunks, tables = getattr(payloads, "chunks", None), getattr(payloads, "tables", None)
    if not chunks or len(tables) != len(chunks) or any(tables[i] is None for i in range(len(chunks))):
        return None
    try:
        table = pa.concat_tables([tables[i][0] for i in range(len(chunks))], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table, np.concatenate([tables[i][1] for i in range(len(chunks))])


def _read(buf, longest: int) -> pa.Table | None:
    # one block per chunk read in one thread: a replay's chunks are parsed while another thread reads
    small = len(buf) <= 4 << 20
    read = pa_json.ReadOptions(block_size=max(1 << 20, 2 * longest + 2), use_threads=not small)
    try:
        table = pa_json.read_json(pa.BufferReader(buf), read_options=read)
        schema = _strings_not_timestamps(table.schema)
        if schema is not None:  # Arrow guessed timestamps; keep strings as sent
            table = pa_json.read_json(pa.BufferReader(buf), read_options=read,
                                      parse_options=pa_json.ParseOptions(explicit_schema=schema))
        # what pandas' string columns hold: cast per chunk, not all at once at the end (only the columns
        # that change: Arrow's own malformed lists, seen by _well_formed later, would fail a whole-table cast)
        for i, (field, large) in enumerate(zip(table.schema, _large_strings(table.schema))):
            if not field.type.equals(large):
                table = table.set_column(i, field.name, table.column(i).cast(large))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    return table


def _large_strings(schema: pa.Schema) -> list[pa.DataType]:
    """The types of ``schema``'s columns with their strings (top level and in objects, not in lists) large."""
    def fix(t: pa.DataType, depth: int) -> pa.DataType:
        if pa.types.is_string(t):
            return pa.large_string()
        if pa.types.is_struct(t) and depth < MAX_DEPTH:    # deeper rows go to the per-row decoder
            return pa.struct([pa.field(f.name, fix(f.type, depth + 1)) for f in t])
        return t

    return [fix(f.type, 1) for f in schema]


def _mark(bad: np.ndarray, starts: np.ndarray, positions) -> None:
    if len(positions):
        bad[np.searchsorted(starts, np.asarray(positions), side="right") - 1] = True


def _suspect_lines(buf, starts: np.ndarray) -> np.ndarray:
    """Lines not for Arrow: not starting with ``{``, holding a newline, or not UTF-8."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    bad = arr[starts] != ord("{")
    if buf.count(b"\n") != len(starts) - 1:             # a payload with a newline of its own
        newlines = np.flatnonzero(arr == 10)
        _mark(bad, starts, newlines[~np.isin(newlines, starts[1:] - 1)])
    if not buf.isascii() and not _valid_utf8(buf):
        _mark(bad, starts, _invalid_utf8(buf))
    return bad


def _valid_utf8(buf) -> bool:
    """Arrow's (SIMD) UTF-8 check of the whole buffer: ~100x faster than decoding it."""
    offsets = pa.array([0, len(buf)], pa.int64()).buffers()[1]
    try:
        pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(buf)]).cast(pa.large_string())
    except pa.ArrowInvalid:
        return False
    return True


def _invalid_utf8(buf) -> list[int]:
    where: list[int] = []

    def note(exc: UnicodeDecodeError):
        where.append(exc.start)
        return "", exc.end

    codecs.register_error("nbnats.where", note)   # registering again replaces it: harmless
    buf.decode("utf-8", errors="nbnats.where")
    return where


def _blank(buf, starts: np.ndarray, sizes: np.ndarray, bad: np.ndarray) -> bytearray:
    """A copy of the buffer with each bad line replaced by ``{}`` and spaces."""
    out = bytearray(buf)
    for start, size in zip(starts[bad].tolist(), sizes[bad].tolist()):
        out[start:start + size] = b"{}" + b" " * (size - 2)
    return out


def _inexact(path: tuple, col: pa.ChunkedArray, values) -> np.ndarray | None:
    """Rows whose bulk value may differ from the per-row decoder's (None: none)."""
    t = col.type
    if len(path) + _list_depth(t) > MAX_DEPTH or pa.types.is_struct(t) or \
            (_lists_of(t, pa.types.is_struct) and _holds_nulls_below(col)) or \
            (_lists_of(t, pa.types.is_floating) and not all(map(_exact_floats, values))):
        return col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(t):
        valid = col.is_valid().to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        if (finite & (np.abs(np.where(finite, values, 0)) >= _EXACT_IN_FLOAT)).any():
            return valid             # maybe an int past 2**53 read as float: the whole column per row
        return valid & ~finite       # a NaN or Infinity literal
    return None


def _well_formed(col: pa.ChunkedArray) -> bool:
    if not (pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return True
    try:
        for chunk in col.chunks:
            chunk.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _exact_floats(value) -> bool:
    """No float past 2**53 (maybe an int read as float) and no NaN/Infinity literal inside."""
    if isinstance(value, float):
        return math.isfinite(value) and abs(value) < _EXACT_IN_FLOAT
    if isinstance(value, list):
        return all(map(_exact_floats, value))
    if isinstance(value, dict):
        return all(map(_exact_floats, value.values()))
    return True


def _list_depth(t: pa.DataType) -> int:
    d = 0
    while pa.types.is_list(t) or pa.types.is_large_list(t):
        t, d = t.value_type, d + 1
    return d


def _lists_of(t: pa.DataType, kind) -> bool:
    """A list type with ``kind`` somewhere inside (structs and lists looked through)."""
    stack, seen_list = [t], False
    while stack:
        t = stack.pop()
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            seen_list = True
            stack.append(t.value_type)
        elif pa.types.is_struct(t):
            if seen_list and kind(t):
                return True
            stack.extend(f.type for f in t)
        elif seen_list and kind(t):
            return True
    return False


def _holds_nulls_below(col: pa.ChunkedArray) -> bool:
    """Any null inside the list values (where Arrow may have filled an absent key)."""
    stack = [chunk for chunk in col.chunks]
    while stack:
        arr = stack.pop()
        if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
            stack.append(arr.flatten())
        elif pa.types.is_struct(arr.type):
            for i in range(arr.type.num_fields):
                child = arr.field(i)
                if child.null_count:
                    return True
                stack.append(child)
    return False


def _leaves(col: pa.ChunkedArray, path: tuple, out: dict) -> None:
    if pa.types.is_struct(col.type) and len(path) < MAX_DEPTH:
        for field, child in zip(col.type, col.flatten()):
            _leaves(child, path + (field.name,), out)   # an empty object (no fields) leaves nothing
    else:
        out[path] = col


def _lists_hold_nulls_in_objects(t: pa.DataType) -> bool:
    """A list of objects: Arrow gives every object every key seen (absent ones as None)."""
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_struct(t.value_type)
    return False


def _has_struct(t: pa.DataType) -> bool:
    if pa.types.is_struct(t):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_struct(t.value_type)
    return False


def _pandas(col: pa.ChunkedArray):
    t = col.type
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        if not col.null_count:
            return col.to_numpy()
        values = col.fill_null(False if pa.types.is_boolean(t) else 0).to_numpy()
        mask = col.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_boolean(t):
            return pd.arrays.BooleanArray(values, mask)
        return pd.arrays.IntegerArray(values, mask)
    if pa.types.is_null(t):
        return np.full(len(col), None, dtype=object)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.to_pandas().array
    if pa.types.is_floating(t):
        return col.to_pandas().to_numpy()
    values = col.to_pylist()
    values = np.fromiter(values, dtype=object, count=len(values))
    return values if storable(t) else JsonArray(values)


def _strings_not_timestamps(schema: pa.Schema) -> pa.Schema | None:
    def fix(t: pa.DataType, depth: int) -> pa.DataType:
        if depth > MAX_DEPTH:        # left as it is: rows this deep go to the per-row decoder anyway
            return t
        if pa.types.is_timestamp(t):
            return pa.string()
        if pa.types.is_struct(t):
            return pa.struct([pa.field(f.name, fix(f.type, depth + 1)) for f in t])
        if pa.types.is_list(t):
            return pa.list_(fix(t.value_type, depth + 1))
        return t

    fixed = pa.schema([pa.field(f.name, fix(f.type, 1)) for f in schema])
    return None if fixed.equals(schema) else fixed
