"""Copy a stream (its configuration, optionally its messages), back it up to files, restore it.

Messages are read with :func:`nbnats.replay` (in sequence ranges, so memory
stays bounded; WorkQueue and Interest streams are not consumed) and written
through :mod:`nbnats.engine.publish`. While a copy is written it stores a
staging subject of its own (``_nbnats_copy.<NAME>.>``) that the stream's
subject transform maps back to each message's original subject, so the
copy keeps its subjects and headers without overlapping the source; then
it gets its final configuration. New messages get new timestamps (the
server sets them); a backup keeps the original ones in its Parquet file.

A backup directory holds ``backup.json`` (the configuration and state) and
``messages.parquet`` (seq, subject, time, headers as JSON text, data). A
restore recreates the stream with the same first sequence and, where the
backup had deleted messages, the same sequences (placeholders are written
and removed again), then seals it if it was sealed.

>>> nbnats.copy_stream("ORDERS", "ORDERS_TEST", with_data=True, subjects="test.orders.>")   # doctest: +SKIP
>>> nbnats.backup_stream("ORDERS", "backups/orders")                                       # doctest: +SKIP
>>> nbnats.restore_stream("backups/orders", name="ORDERS_RESTORED")                        # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from nbnats.data import payload, validate
from nbnats.data.payload import Message
from nbnats.engine import api
from nbnats.engine.publish import publish
from nbnats.errors import Conflict, NatsError, NotFound, ValidationError
from nbnats.jetstream.display import StreamMessage
from nbnats.jetstream.streams import _check_overlap, _config, _run, subjects_list
from nbnats.runtime.connection import current

STAGE = "_nbnats_copy"
GAP_SUBJECT = "_nbnats_gap"
CHUNK = 5_000             # sequences read and written at a time
WINDOW = 128              # publishes outstanding at a time
GAP_FILL = 100_000        # at most this many deleted sequences are recreated by a restore
FORMAT = "nbnats-stream-backup"
CONFIG_FILE, MESSAGES_FILE = "backup.json", "messages.parquet"
# set by the server (or meaningless on another stream): never copied
_SERVER_OWNED = ("sealed", "metadata")


# -- reading -----------------------------------------------------------------------------------------
def chunks(stream: str, first: int, last: int, connection: str | None = None) -> Iterator[pd.DataFrame]:
    """The stream's messages from ``first`` to ``last`` as raw frames (``data`` bytes), CHUNK sequences at a time.

    >>> sum(len(df) for df in chunks("ORDERS", 1, 100))   # doctest: +SKIP
    100
    """
    from nbnats.jetstream.replay import replay
    for start in range(first, last + 1, CHUNK):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")        # gaps are expected; stream_gaps reports them
            df = replay(stream, start_seq=start, end_seq=min(start + CHUNK - 1, last), decode=False,
                        progress=False, connection=connection)
        if len(df):
            yield df


def _rows(df: pd.DataFrame) -> Iterator[tuple[int, str, int, bytes, dict | None]]:
    data = df["data"] if "data" in df else [b""] * len(df)
    yield from zip(df["seq"].tolist(), df["subject"].tolist(), df["time"].array.asi8.tolist(),
                   [bytes(d) if d is not None and d is not pd.NA else b"" for d in data], df["headers"].tolist())


# -- writing -------------------------------------------------------------------------------------------
def _staging(name: str) -> dict:
    return {"subjects": [f"{STAGE}.{name}.>"], "subject_transform": {"src": f"{STAGE}.{name}.>", "dest": ">"}}


def _kept_headers(headers: dict | None) -> dict | None:
    # A stored message's expectations were met when it was first stored; they would fail on the copy.
    kept = {k: v for k, v in (headers or {}).items() if not k.startswith("Nats-Expected-")}
    return kept or None


async def _write(conn, name: str, items: list[tuple[str, bytes, dict | None]]) -> list[int]:
    """Publish ``(subject, data, headers)`` in order to stream ``name`` (staged); the stored sequences."""
    seqs: list[int] = []
    for i in range(0, len(items), WINDOW):
        acks = await asyncio.gather(*(publish(conn, f"{STAGE}.{name}.{subject}", data, headers=headers, stream=name)
                                      for subject, data, headers in items[i:i + WINDOW]))
        seqs += [a["seq"] for a in acks]
    return seqs


async def _remove(conn, name: str, seqs: list[int]) -> None:
    for i in range(0, len(seqs), WINDOW):
        await asyncio.gather(*(api.request(conn, f"STREAM.MSG.DELETE.{name}", {"seq": s, "no_erase": True},
                                           what=f"removing a placeholder from {name!r}", stream=name)
                               for s in seqs[i:i + WINDOW]))


async def _refuse_existing(conn, name: str, subjects: list[str]) -> None:
    """Refuse a stream name in use, or subjects another stream stores, before anything is written."""
    try:
        await api.request(conn, f"STREAM.INFO.{name}", None, what=f"looking up stream {name!r}")
    except NotFound:
        pass
    else:
        raise Conflict(f"stream {name!r} already exists, so nothing was written (it is unchanged)",
                       f"pick another name, or remove it first with nbnats.delete_stream({name!r})")
    await _check_overlap(conn, name, subjects)


def _create(conn, name: str, cfg: dict) -> None:
    """Create ``name`` taking only its staging subject, refusing an existing stream (nothing changed)."""
    async def create():
        await _refuse_existing(conn, name, cfg.get("subjects") or [])
        staged = {k: v for k, v in cfg.items() if k not in ("mirror", "sources", "subject_transform")}
        await api.request(conn, f"STREAM.CREATE.{name}", {**staged, **_staging(name), "name": name},
                          what=f"adding stream {name!r}", stream=name)

    _run(create(), f"adding stream {name!r}")


def _finish(conn, name: str, cfg: dict) -> dict:
    """Give the written stream its final configuration (its own subjects, its transform, sealed …)."""
    async def update():
        current_cfg = (await api.request(conn, f"STREAM.INFO.{name}", None, what=f"reading stream {name!r}",
                                         stream=name))["config"]
        final = {**current_cfg, **{k: v for k, v in cfg.items() if k not in ("mirror", "sources")}, "name": name,
                 "subjects": cfg.get("subjects") or []}
        if "subject_transform" not in cfg:
            final.pop("subject_transform", None)
        return await api.request(conn, f"STREAM.UPDATE.{name}", final, what=f"configuring stream {name!r}", stream=name)

    return _run(update(), f"configuring stream {name!r}")


def _drop(conn, name: str) -> None:
    """Remove a half-written copy after a failure (best effort; the failure is what the user hears of)."""
    try:
        _run(api.request(conn, f"STREAM.DELETE.{name}", None, what=f"removing stream {name!r}", stream=name),
             f"removing stream {name!r}")
    except NatsError:
        pass


def _transformed(transform: Callable, msg: StreamMessage) -> tuple[str, bytes, dict | None] | None:
    out = transform(msg)
    if out is None:
        return None
    if isinstance(out, Message):
        validate.subject(out.subject, publish=True)
        return out.subject, payload.encode(out.data, out.subject), _kept_headers(out.headers)
    return msg.subject, payload.encode(out, msg.subject), _kept_headers(msg.headers)


def _source_info(conn, stream: str) -> dict:
    what = f"reading stream {stream!r}"
    return _run(api.request(conn, f"STREAM.INFO.{stream}", None, what=what, stream=stream), what)


def _copied_config(cfg: dict, with_data: bool) -> tuple[dict, list[str]]:
    out = {k: v for k, v in cfg.items() if k not in _SERVER_OWNED}
    notes = []
    if cfg.get("sealed"):
        notes.append("the source is sealed; the copy is not")
    if with_data and (cfg.get("mirror") or cfg.get("sources")):
        out.pop("mirror", None)
        out.pop("sources", None)
        notes.append("the copy holds the messages but does not mirror or source other streams")
    if (cfg.get("metadata") or {}):
        user = {k: v for k, v in cfg["metadata"].items() if not k.startswith("_nats.")}
        if user:
            out["metadata"] = user
    return out, notes


# -- copy ---------------------------------------------------------------------------------------------------
def copy_stream(source: str, destination: str, with_data: bool = False,
                transform: Callable[[StreamMessage], Any] | None = None, subjects: str | list[str] | None = None,
                connection: str | None = None, **changes: Any) -> pd.DataFrame:
    """Create ``destination`` with the configuration of ``source``; with ``with_data`` its messages too.

    As natscli's ``stream copy``, the copy gets the source's settings; a
    subject is stored by one stream only, so the copy stores ``subjects``
    (default: none of the source's — then the server gives it its own name as
    its subject). ``changes`` override settings by the names of
    :func:`nbnats.add_stream` (``max_age="1d"``, ``replicas=3`` …).

    ``with_data=True`` copies every message, in order, keeping its subject and
    headers. ``transform(msg)`` (a :class:`~nbnats.StreamMessage`) may change
    each one first: return None to leave it out, a message
    (``nbnats.Message(subject, data, headers)``) to store that instead, or a
    new payload (dict, str, bytes) for the same subject and headers.

    Returns one row: source, stream, messages (copied), skipped, bytes, notes.

    >>> nbnats.copy_stream("ORDERS", "ORDERS_EU", with_data=True, subjects="eu.orders.>",
    ...                    transform=lambda m: m if m.json()["region"] == "eu" else None)   # doctest: +SKIP
    """
    validate.name(source, "stream")
    validate.name(destination, "stream")
    if source == destination:
        raise ValidationError(f"a stream cannot be copied onto itself ({source!r})", "give the copy another name")
    if transform is not None and not with_data:
        raise ValidationError("transform changes the copied messages, but with_data is False (only the "
                              "configuration is copied)", "pass with_data=True as well")
    if transform is not None and not callable(transform):
        raise ValidationError(f"transform must be a function taking a message, not a {type(transform).__name__}",
                              "pass e.g. transform=lambda msg: msg")
    wanted = subjects_list(subjects) if subjects is not None else []
    overrides = _config(destination, None, changes)
    conn = current(connection)
    info = _source_info(conn, source)
    cfg, notes = _copied_config(info["config"], with_data)
    cfg.update({k: v for k, v in overrides.items() if k != "name"}, name=destination, subjects=wanted)
    if cfg.get("mirror"):
        cfg["subjects"] = []
    if not with_data:
        async def create():
            await _refuse_existing(conn, destination, wanted)
            return await api.request(conn, f"STREAM.CREATE.{destination}", cfg, what=f"adding stream {destination!r}",
                                     stream=destination)

        made = _run(create(), f"copying stream {source!r}")
        return _summary(source, destination, 0, 0, made, notes)
    _create(conn, destination, cfg)
    copied = skipped = 0
    try:
        st = info["state"]
        if st["messages"]:
            for df in chunks(source, st["first_seq"], st["last_seq"], connection):
                items = []
                for seq, subject, time_ns, data, headers in _rows(df):
                    if transform is None:
                        items.append((subject, data, _kept_headers(headers)))
                        continue
                    out = _transformed(transform, StreamMessage(source, subject, seq, time_ns, data, headers))
                    if out is None:
                        skipped += 1
                    else:
                        items.append(out)
                copied += len(_run(_write(conn, destination, items), f"writing to stream {destination!r}",
                                   timeout=60.0))
        made = _finish(conn, destination, cfg)
    except BaseException:
        _drop(conn, destination)
        raise
    return _summary(source, destination, copied, skipped, made, notes)


def _summary(source: str, destination: str, copied: int, skipped: int, info: dict, notes: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"source": pd.array([source], dtype="string"), "stream": pd.array([destination], dtype="string"),
                         "subjects": [list(info["config"].get("subjects") or [])], "messages": [copied],
                         "skipped": [skipped], "bytes": [info["state"]["bytes"]],
                         "notes": pd.array(["; ".join(notes)], dtype="string")})


# -- backup and restore -------------------------------------------------------------------------------------
def backup_stream(stream: str, directory: str | Path, overwrite: bool = False,
                  connection: str | None = None) -> pd.DataFrame:
    """Write the stream's configuration and messages to ``directory`` (``backup.json`` + ``messages.parquet``).

    The messages are read as the stream was when the backup began, in
    sequence ranges (memory stays bounded), without consuming them. An
    existing backup in ``directory`` is kept unless ``overwrite=True``.
    Consumers are not part of the backup. Returns one row: stream,
    directory, messages, bytes, first_seq, last_seq.

    >>> nbnats.backup_stream("ORDERS", "backups/orders")   # doctest: +SKIP
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    validate.name(stream, "stream")
    folder = Path(directory).expanduser()
    if (folder / CONFIG_FILE).exists() and not overwrite:
        raise Conflict(f"{folder} already holds a backup, so nothing was written",
                       "pick another directory, or pass overwrite=True to replace it")
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{folder} is a file, not a directory", "give a directory to write the backup into")
    conn = current(connection)
    info = _source_info(conn, stream)
    st = info["state"]
    folder.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("seq", pa.int64()), ("subject", pa.string()), ("time", pa.timestamp("ns", tz="UTC")),
                        ("headers", pa.string()), ("data", pa.binary())])
    count = size = 0
    part = folder / (MESSAGES_FILE + ".partial")
    with pq.ParquetWriter(part, schema) as writer:
        if st["messages"]:
            for df in chunks(stream, st["first_seq"], st["last_seq"], connection):
                rows = list(_rows(df))
                writer.write_table(pa.table({
                    "seq": [r[0] for r in rows], "subject": [r[1] for r in rows],
                    "time": pa.array([r[2] for r in rows], pa.timestamp("ns", tz="UTC")),
                    "headers": [json.dumps(r[4]) if r[4] else None for r in rows],
                    "data": [r[3] for r in rows]}, schema=schema))
                count += len(rows)
                size += sum(len(r[3]) for r in rows)
    part.replace(folder / MESSAGES_FILE)
    state = {k: v for k, v in st.items() if k not in ("deleted", "subjects")}
    (folder / CONFIG_FILE).write_text(json.dumps({
        "format": FORMAT, "version": 1, "stream": stream, "config": info["config"], "state": state,
        "created": info.get("created"), "backed_up": pd.Timestamp.now(tz="UTC").isoformat(),
        "messages": count, "files": [MESSAGES_FILE]}, indent=2))
    return pd.DataFrame({"stream": pd.array([stream], dtype="string"), "directory": pd.array([str(folder)], dtype="string"),
                         "messages": [count], "bytes": [size], "first_seq": [st["first_seq"]],
                         "last_seq": [st["last_seq"]]})


def read_backup(directory: str | Path) -> dict:
    """The ``backup.json`` of a backup directory, checked.

    >>> read_backup("backups/orders")["stream"]   # doctest: +SKIP
    'ORDERS'
    """
    folder = Path(directory).expanduser()
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text())
    except FileNotFoundError:
        raise NotFound(f"{folder} holds no stream backup (no {CONFIG_FILE})",
                       "give the directory nbnats.backup_stream wrote") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValidationError(f"{folder / CONFIG_FILE} is not a readable backup ({exc})",
                              "give the directory nbnats.backup_stream wrote") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not (folder / MESSAGES_FILE).exists():
        raise ValidationError(f"{folder} is not a complete nbnats stream backup",
                              "give the directory nbnats.backup_stream wrote")
    return meta


def restore_stream(directory: str | Path, name: str | None = None, replicas: int | None = None,
                   connection: str | None = None) -> pd.DataFrame:
    """Recreate a stream from :func:`backup_stream`'s files, under its own ``name`` or another.

    A stream of that name that exists already is left as it is: a
    :class:`~nbnats.errors.Conflict`, nothing written. Sequences are those of
    the backup (deleted ones included, up to 100,000 of them); timestamps are
    new. A mirror or sourcing stream comes back as a plain stream holding the
    messages. Returns one row: stream, directory, messages, first_seq,
    last_seq, same_seqs, notes.

    >>> nbnats.restore_stream("backups/orders", name="ORDERS_RESTORED")   # doctest: +SKIP
    """
    import pyarrow.parquet as pq
    meta = read_backup(directory)
    folder = Path(directory).expanduser()
    target = validate.name(name or meta["stream"], "stream")
    cfg, notes = _copied_config(meta["config"], with_data=True)
    cfg["name"] = target
    if replicas is not None:
        cfg["num_replicas"] = _config(target, None, {"replicas": replicas})["num_replicas"]
    st = meta["state"]
    first, last = int(st.get("first_seq") or 1), int(st.get("last_seq") or 0)
    missing = max(0, last - first + 1 - int(meta.get("messages", 0)))
    fill = missing <= GAP_FILL
    if not fill:
        notes.append(f"{missing:,} deleted sequences were not recreated: later messages have new sequences")
    cfg["first_seq"] = max(first, 1)
    conn = current(connection)
    _create(conn, target, cfg)
    written, gaps, same = 0, [], True
    try:
        expected = cfg["first_seq"]
        for batch in pq.ParquetFile(folder / MESSAGES_FILE).iter_batches(batch_size=CHUNK):
            items, wanted = [], []
            for row in batch.to_pylist():
                while fill and expected < row["seq"]:
                    items.append((GAP_SUBJECT, b"", None))
                    wanted.append(None)
                    expected += 1
                headers = json.loads(row["headers"]) if row["headers"] else None
                items.append((row["subject"], row["data"] or b"", _kept_headers(headers)))
                wanted.append(row["seq"])
                expected = row["seq"] + 1
            got = _run(_write(conn, target, items), f"writing to stream {target!r}", timeout=60.0)
            gaps += [g for g, w in zip(got, wanted) if w is None]
            same = same and all(w is None or w == g for g, w in zip(got, wanted))
            written += sum(1 for w in wanted if w is not None)
        if fill and expected <= last:                     # deleted at the end: the last sequence too
            gaps += _run(_write(conn, target, [(GAP_SUBJECT, b"", None)] * (last - expected + 1)),
                         f"writing to stream {target!r}", timeout=60.0)
        _run(_remove(conn, target, gaps), f"removing placeholders from {target!r}", timeout=60.0)
        final = {**cfg, "sealed": bool(meta["config"].get("sealed"))}
        info = _finish(conn, target, final)
    except BaseException:
        _drop(conn, target)
        raise
    if written != meta.get("messages", written):
        same = False
    return pd.DataFrame({"stream": pd.array([target], dtype="string"), "directory": pd.array([str(folder)], dtype="string"),
                         "messages": [written], "first_seq": [info["state"]["first_seq"]],
                         "last_seq": [info["state"]["last_seq"]], "same_seqs": [bool(same and fill)],
                         "notes": pd.array(["; ".join(notes)], dtype="string")})
