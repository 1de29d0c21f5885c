"""Replay a stream into a Parquet dataset, in bounded memory, resumable.

``nbnats.replay(stream, to="orders/")`` reads the stream in chunks of rows
(each one a replay of its own, fixed to the stream's last sequence when the
write began) and writes each chunk as a row group while the next chunk is
being read. Files roll every :data:`FILE_ROWS` rows, or when a chunk's columns
do not fit the open file's schema; each file is written under a temporary
name and renamed when complete, and the manifest (``_nbnats_replay.json``)
is rewritten after each one — so what is on disk is always a valid dataset,
and ``resume=True`` continues after the last sequence it lists.

Read it back without pandas, e.g. ``duckdb.sql("select * from read_parquet('orders/*.parquet',
union_by_name=true)")``.

>>> summary = nbnats.replay("ORDERS", to="orders/")           # doctest: +SKIP
>>> summary.rows, summary.files, summary.last_seq              # doctest: +SKIP
(10000000, 10, 10000000)
"""

from __future__ import annotations

import concurrent.futures
import errno
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from nbnats.data.outputs import to_arrow
from nbnats.data.units import human_bytes
from nbnats.engine.bulk import Plan, Sink
from nbnats.errors import Conflict, NatsError, PermissionDenied
from nbnats.runtime import loop

MANIFEST = "_nbnats_replay.json"
CHUNK_ROWS = 250_000        # rows read (and held) at a time
FILE_ROWS = 2_000_000       # rows per Parquet file
ROW_GROUP = 250_000


class DatasetError(NatsError, OSError):
    """The dataset could not be written (a full disk, a read-only folder); what was written stays valid."""


@dataclass
class Summary:
    """What a replay to Parquet wrote (in all, including earlier runs it resumed)."""

    path: str
    stream: str
    rows: int = 0
    files: int = 0
    bytes: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    rows_this_run: int = 0
    resumed: bool = False
    seconds: float = 0.0
    file_names: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    gaps: list[dict] = field(default_factory=list)

    def __repr__(self) -> str:
        span = f"seq {self.first_seq}–{self.last_seq}" if self.rows else "no rows"
        again = f", {self.rows_this_run:,} new (resumed)" if self.resumed else ""
        return (f"<replay of {self.stream!r} to {self.path}: {self.rows:,} rows{again} in {self.files} "
                f"file(s), {human_bytes(self.bytes)}, {span}>")


def write(stream: str, to: str, plan: Plan, conn, *, resume: bool, timeout: float, progress,
          reader) -> Summary:
    """Write the replay ``plan`` of ``stream`` under ``to`` (see the module); ``reader(conn, plan, sink,
    timeout)`` is the coroutine that reads one chunk (replay's ``_read``)."""
    from nbnats.jetstream.replay import _frame
    fs, root = _filesystem(to)
    manifest = _prepare(fs, root, to, stream, resume)
    summary = Summary(to, stream, resumed=bool(manifest["files"]))
    _tally(summary, manifest)
    start = plan.start_seq
    if manifest["files"]:
        start = max(start or 1, manifest["last_seq"] + 1)
    limit = None if plan.limit is None else plan.limit - summary.rows
    began = time.monotonic()
    writer = _Files(fs, root, manifest, summary)

    def chunk_plan(first: int | None, stop: int | None, written: int | None) -> Plan:
        left = None if limit is None else limit - (written or 0)
        return Plan(stream, plan.filters, first, plan.since, plan.until, stop or plan.end_seq,
                    CHUNK_ROWS if left is None else min(CHUNK_ROWS, left))

    def submit(p: Plan):
        sink = Sink()
        return p, sink, loop.submit(reader(conn, p, sink, timeout))

    bar, shown, written, stop = None, 0, 0, None
    try:
        current = submit(chunk_plan(start, None, None)) if limit is None or limit > 0 else None
        while current is not None:
            p, sink, fut = current
            _wait(fut)
            stop = stop or p.stop
            read = [a for a in sink.seqs if len(a)]
            last = max(int(a[-1]) for a in read) if read else 0
            ended = not read or (p.limit is not None and sink.count < p.limit and not p.client_filter)
            # read the next chunk on the loop thread while this one is decoded and written here
            current = submit(chunk_plan(last + 1, stop, written)) if not ended and last < stop else None
            df = _frame(p, sink, None, warn=False)
            summary.warnings += df.attrs.get("warnings", [])
            summary.gaps += df.attrs.get("gaps", [])
            if len(df):
                written += len(df)
                writer.add(to_arrow(df), int(df["seq"].iloc[0]), int(df["seq"].iloc[-1]))
            if limit is not None and written >= limit and current is not None:
                current[2].cancel()
                current = None
            if bar is None:
                from nbnats.progress import progress_bar
                first = start or p.info.get("state", {}).get("first_seq", 1)
                bar = progress_bar(max(stop - first + 1, 1), f"replay {stream} → {to}", enabled=progress,
                                   threshold=CHUNK_ROWS)
                shown, base = 0, first
            done_now = (last - base + 1) if current is not None else max(stop - base + 1, 1)
            if done_now > shown:
                bar.update(done_now - shown)
                shown = done_now
        writer.close()
    except BaseException:
        writer.abandon()
        raise
    finally:
        if bar is not None:
            bar.close()
    summary.seconds = time.monotonic() - began
    return summary


def _wait(fut) -> None:
    try:
        while True:
            concurrent.futures.wait([fut], 0.2)
            if fut.done():
                return fut.result()
    except BaseException:
        fut.cancel()
        raise


def _filesystem(to: str):
    try:
        import fsspec
    except ModuleNotFoundError:       # local paths need nothing more
        fsspec = None
    if fsspec is not None:
        fs, root = fsspec.core.url_to_fs(str(to))
        return fs, root.rstrip("/")
    from pyarrow import fs as pafs
    return pafs.LocalFileSystem(), str(to).rstrip("/")


def _prepare(fs, root: str, to: str, stream: str, resume: bool) -> dict:
    """The manifest to continue, a fresh one, or a refusal for a folder that holds other data."""
    fresh = {"stream": stream, "files": [], "last_seq": 0, "created": None}
    try:
        exists = fs.exists(root)
        listing = fs.ls(root, detail=False) if exists else []
    except OSError as exc:
        raise _os_error(exc, to) from None
    if not listing:
        try:
            fs.makedirs(root, exist_ok=True)
            with fs.open(f"{root}/{MANIFEST}", "w") as f:
                json.dump(fresh, f)
        except OSError as exc:
            raise _os_error(exc, to) from None
        return fresh
    manifest_path = f"{root}/{MANIFEST}"
    if not fs.exists(manifest_path):
        raise Conflict(f"{to} already holds files that are not an nbnats replay",
                       "choose an empty or new folder")
    with fs.open(manifest_path, "r") as f:
        manifest = json.load(f)
    if manifest.get("stream") != stream:
        raise Conflict(f"{to} holds a replay of stream {manifest.get('stream')!r}, not {stream!r}",
                       "choose another folder for this stream")
    if not resume:
        raise Conflict(f"{to} already holds a replay of {stream!r} (up to seq {manifest.get('last_seq', 0)})",
                       "pass resume=True to continue after it, or choose an empty folder")
    for name in fs.ls(root, detail=False):        # a file cut short by a crash is not part of it
        if str(name).endswith(".tmp"):
            fs.rm(name)
    return manifest


def _tally(summary: Summary, manifest: dict) -> None:
    files = manifest["files"]
    summary.files, summary.file_names = len(files), [f["name"] for f in files]
    summary.rows = sum(f["rows"] for f in files)
    summary.bytes = sum(f["bytes"] for f in files)
    summary.first_seq = files[0]["first_seq"] if files else None
    summary.last_seq = files[-1]["last_seq"] if files else None


def _os_error(exc: OSError, to: str) -> NatsError:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"cannot write to {to}: {exc.strerror or 'permission denied'}",
                                "choose a folder you can write to")
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return DatasetError(f"writing to {to} failed: {exc.strerror or 'the disk is full'}; the files "
                            "written before stay valid", "free some space, then run it again with resume=True")
    return DatasetError(f"writing to {to} failed: {exc.strerror or exc}; the files written before stay valid",
                        "fix the cause, then run it again with resume=True")


class _Files:
    """The open Parquet file (a temporary name until complete) and the manifest after each one."""

    def __init__(self, fs, root: str, manifest: dict, summary: Summary):
        self.fs, self.root, self.manifest, self.summary = fs, root, manifest, summary
        self.writer: pq.ParquetWriter | None = None
        self.handle = None
        self.schema: pa.Schema | None = None
        self.name = ""
        self.rows = 0
        self.first = self.last = 0

    def add(self, table: pa.Table, first_seq: int, last_seq: int) -> None:
        try:
            if self.writer is not None:
                fitted = _fit(table, self.schema)
                if fitted is None or self.rows >= FILE_ROWS:
                    self._finish()
                else:
                    table = fitted
            if self.writer is None:
                self._open(table.schema, first_seq)
            self.writer.write_table(table, row_group_size=ROW_GROUP)
        except OSError as exc:
            raise _os_error(exc, self.summary.path) from None
        self.rows += table.num_rows
        self.last = last_seq

    def _open(self, schema: pa.Schema, first_seq: int) -> None:
        n = len(self.manifest["files"])
        self.name = f"part-{n:05d}-seq{first_seq}.parquet"
        self.handle = self.fs.open(f"{self.root}/{self.name}.tmp", "wb")
        self.schema = schema
        self.writer = pq.ParquetWriter(self.handle, schema, compression="zstd")
        self.rows, self.first = 0, first_seq

    def _finish(self) -> None:
        self.writer.close()
        self.handle.close()
        self.writer = self.handle = None
        final = f"{self.root}/{self.name}"
        self.fs.mv(f"{final}.tmp", final)
        size = self.fs.size(final)
        self.manifest["files"].append({"name": self.name, "rows": self.rows, "bytes": size,
                                       "first_seq": self.first, "last_seq": self.last})
        self.manifest["last_seq"] = self.last
        tmp = f"{self.root}/{MANIFEST}.tmp"
        with self.fs.open(tmp, "w") as f:
            json.dump(self.manifest, f)
        self.fs.mv(tmp, f"{self.root}/{MANIFEST}")
        self.summary.rows_this_run += self.rows
        _tally(self.summary, self.manifest)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self._finish()
            except OSError as exc:
                self.abandon()
                raise _os_error(exc, self.summary.path) from None

    def abandon(self) -> None:
        """Drop the file being written (it has no footer yet); the manifest still lists only complete files."""
        for closing in (self.writer, self.handle):
            try:
                if closing is not None:
                    closing.close()
            except Exception:
                pass
        self.writer = self.handle = None
        if self.name:
            try:
                self.fs.rm(f"{self.root}/{self.name}.tmp")
            except Exception:
                pass


def _fit(table: pa.Table, schema: pa.Schema) -> pa.Table | None:
    """``table`` in ``schema`` (missing columns as nulls), or None when its columns do not fit."""
    if table.schema.equals(schema, check_metadata=False):
        return table
    names = set(table.column_names)
    if not names <= set(schema.names):
        return None
    columns: list[Any] = []
    for f in schema:
        if f.name in names:
            col = table.column(f.name)
            if not col.type.equals(f.type):
                try:
                    col = col.cast(f.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    return None
            columns.append(col)
        else:
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)
