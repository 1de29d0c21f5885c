"""Publishing a DataFrame: one message a row, plainly, acknowledged by JetStream, or as atomic batches.

>>> nbnats.publish_frame("orders.created", df)                          # doctest: +SKIP
3
>>> nbnats.publish_frame("orders.created", df, js=True)                 # doctest: +SKIP
3
>>> nbnats.publish_frame("orders.created", df, atomic=True, msg_id="id")   # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

import orjson
import pandas as pd

from nbnats.data import frames, validate
from nbnats.data import payload as payload_mod
from nbnats.data.payload import encode
from nbnats.engine import api
from nbnats.engine import publish as engine_publish
from nbnats.engine.window import publish_window
from nbnats.errors import JetStreamError, NatsError, NotFound, PayloadTooLarge, ValidationError
from nbnats.messaging import _flush, _timeout
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.schema import hooks as schema_hooks

JS_WINDOW = 512           # publish_frame(js=True): acks outstanding at most


class BatchSplitWarning(UserWarning):
    """An atomic ``publish_frame`` had more rows than one batch may hold: it went out as several batches."""


def publish_frame(subject: str | None, df, subject_column: str | None = None, headers: dict | None = None,
                  progress: bool | None = None, connection: str | None = None, *, atomic: bool = False,
                  msg_id: str | None = None, dry_run: bool = False, batch_size: int | None = None,
                  timeout: float = 10.0, js: bool = False):
    """Publish each row of a DataFrame as one JSON message; returns the count.

    The subject comes from ``subject`` or, per row, from ``subject_column``.
    Columns named like the standard frame's (time, seq, size, headers) are
    dropped, so a replayed frame can be published again. ``msg_id`` names a
    column whose value becomes each row's ``Nats-Msg-Id`` (JetStream drops
    duplicates). Every row is checked before any is sent.

    ``atomic=True`` (nats-server 2.12+, a stream with ``allow_atomic=True``)
    stores the rows as one atomic batch: all of them or none. The server
    takes at most ``batch_size`` messages a batch (its default, 1000, unless
    it says less): more rows go out as several batches, each atomic, which a
    :class:`BatchSplitWarning` and the result's ``attrs`` say. It returns a
    frame of the batches (batch, rows, stream, first_seq, last_seq).

    ``dry_run=True`` sends nothing and returns what would be sent: a frame
    of subject, headers, bytes (the payload), size.

    ``js=True`` publishes each row to JetStream and waits for the stream's
    acks (a window of them outstanding), so every row is stored or the first
    refusal is raised; it returns how many were stored. Use it for a subject a
    stream stores: plain publishes faster than the stream can store are
    dropped by the server without a word.

    >>> nbnats.publish_frame("orders.created", df)                # doctest: +SKIP
    3
    >>> nbnats.publish_frame(None, df, subject_column="subject")  # doctest: +SKIP
    3
    >>> nbnats.publish_frame("orders.created", df, atomic=True, msg_id="id")   # doctest: +SKIP
    >>> nbnats.publish_frame("orders.created", df, atomic=True, dry_run=True)  # doctest: +SKIP
    """
    from nbnats.progress import progress_bar

    if subject is None and subject_column is None:
        raise NatsError("publish_frame needs a subject or a subject_column",
                        "pass subject='orders.created' or subject_column='subject'")
    for column, label in ((subject_column, "subject_column"), (msg_id, "msg_id")):
        if column is not None and column not in df.columns:
            raise ValidationError(f"the frame has no column {column!r} (for {label})", f"use one of {list(df.columns)}")
    limit = _batch_size(batch_size)
    timeout = _timeout(timeout)
    conn = current(connection)
    meta = {"time", "seq", "size", "headers", "decode_error"}
    body = df.drop(columns=[c for c in df.columns if c in meta or c == subject_column or c == "subject"])
    subjects = df[subject_column].astype(str).tolist() if subject_column else [subject] * len(df)
    for s in set(subjects):
        validate.subject(s, publish=True)
    hdrs = validate.headers(headers)
    row_headers = _row_headers(df, msg_id, hdrs, atomic)
    values = frames.payloads_of(body)
    payloads = [_encode_row(s, v) for s, v in zip(subjects, values)]
    batch_ids = [_batch_id() for _ in range(0, len(payloads), limit)] if atomic else []
    for i, (s, v, p) in enumerate(zip(subjects, values, payloads)):   # every row is checked before any is sent
        h = row_headers[i]
        if atomic:     # the batch headers count against max_payload too
            h = engine_publish.batch_headers(batch_ids[i // limit], i % limit + 1, True, h)
        validate.payload_size(len(p), conn.max_payload, s, h)
        schema_hooks.before_publish(s, v, p, conn)
    if dry_run:
        return _dry_run(subjects, payloads, row_headers, batch_ids, limit)
    if atomic:
        return _publish_atomic(conn, subjects, payloads, row_headers, limit, timeout, progress)
    bar = progress_bar(len(payloads), f"publishing to {subject or subject_column}", enabled=progress)
    if js:
        async def rows():
            for i, (s, p) in enumerate(zip(subjects, payloads)):
                yield s, p, row_headers[i]
                if i % 10_000 == 9_999:
                    bar.update(10_000)

        try:
            stored = loop.run(publish_window(conn, subject or subject_column, rows(), window=JS_WINDOW,
                                             timeout=timeout), 30 + len(payloads) / 5_000,
                              f"publishing {len(payloads):,} rows to JetStream")
            bar.update(len(payloads) % 10_000)
        finally:
            bar.close()
        return stored

    async def send():
        for i, (s, p) in enumerate(zip(subjects, payloads)):
            await conn.nc.publish(s, p, headers=row_headers[i])
            if i % 10_000 == 9_999:
                await _flush(conn, timeout)
                bar.update(10_000)
        await _flush(conn, timeout)
        bar.update(len(payloads) % 10_000)

    try:
        loop.run(send(), 30 + len(payloads) / 20_000, f"publishing {len(payloads):,} rows")
    finally:
        bar.close()
    return len(payloads)


def _batch_size(value: Any) -> int:
    if value is None:
        return engine_publish.BATCH_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"batch_size must be a whole number of at least 1, not {value!r}",
                              f"pass e.g. batch_size={engine_publish.BATCH_LIMIT}, the server's default limit")
    return value


def _batch_id() -> str:
    import uuid
    return uuid.uuid4().hex


def _row_headers(df, msg_id: str | None, hdrs: dict | None, atomic: bool = False) -> list[dict | None]:
    """Each row's headers: the common ones, plus its ``Nats-Msg-Id`` from the ``msg_id`` column."""
    if msg_id is None:
        return [hdrs] * len(df)
    ids = df[msg_id]
    missing = ids.isna()
    if missing.any():
        raise ValidationError(f"row {missing.to_numpy().argmax()} has no value in the msg_id column {msg_id!r}",
                              "fill every row's id, or publish without msg_id")
    texts = [str(v.item() if hasattr(v, "item") else v) for v in ids.tolist()]
    dup = ids.duplicated()
    if atomic and dup.any():
        raise ValidationError(f"the msg_id column {msg_id!r} repeats {texts[dup.to_numpy().argmax()]!r}: an atomic "
                              "batch refuses a message id twice", "give every row its own id")
    validate.headers({"Nats-Msg-Id": t for t in texts[:1]})
    if any(not t.strip() or "\n" in t or "\r" in t for t in texts):
        raise ValidationError(f"a value of the msg_id column {msg_id!r} is empty or spans lines",
                              "use ids that are one line of text")
    return [{**(hdrs or {}), "Nats-Msg-Id": t} for t in texts]


def _dry_run(subjects, payloads, row_headers, batch_ids, limit) -> pd.DataFrame:
    heads = []
    for i, h in enumerate(row_headers):
        if batch_ids:
            last = i % limit == limit - 1 or i == len(payloads) - 1
            h = engine_publish.batch_headers(batch_ids[i // limit], i % limit + 1, last, h)
        heads.append(dict(h) if h else None)
    out = pd.DataFrame({"subject": pd.Series(subjects, dtype=object), "headers": pd.Series(heads, dtype=object),
                        "bytes": pd.Series(payloads, dtype=object),
                        "size": pd.array([len(p) for p in payloads], dtype="Int64")})
    out.attrs.update(dry_run=True, rows=len(payloads), atomic=bool(batch_ids), batches=len(batch_ids),
                     batch_limit=limit if batch_ids else None, split=len(batch_ids) > 1)
    return out


def _publish_atomic(conn: Connection, subjects, payloads, row_headers, limit: int, timeout: float,
                    progress: bool | None) -> pd.DataFrame:
    """The rows as atomic batches of at most ``limit`` (less when the server says its limit is lower)."""
    from nbnats.progress import progress_bar

    api.needs(conn, (2, 12), "atomic publish")
    info = loop.run(_atomic_stream(conn, sorted(set(subjects))), api.TIMEOUT + 2, "finding the stream")
    stream = info["config"]["name"]
    _check_msg_size(info, payloads, row_headers, limit)
    bar = progress_bar(len(payloads), f"atomic publish to {stream}", enabled=progress)
    rows: list[dict] = []
    notes: list[str] = []

    async def send():
        nonlocal limit
        start = 0
        while start < len(payloads):
            end = min(start + limit, len(payloads))
            batch = [(subjects[i], payloads[i], row_headers[i]) for i in range(start, end)]
            bid = _batch_id()
            try:
                ack = await engine_publish.publish_batch(conn, batch, bid, timeout=timeout, stream=stream)
            except NatsError as exc:
                lower = _server_limit(exc)
                if lower is None or lower >= limit:
                    raise
                notes.append(f"the server takes at most {lower:,} messages in an atomic batch")
                limit = lower          # nothing of the refused batch was stored: send it again, smaller
                continue
            count = int(ack.get("count") or len(batch))
            rows.append({"batch": ack.get("batch") or bid, "rows": count, "stream": ack["stream"],
                         "first_seq": int(ack["seq"]) - count + 1, "last_seq": int(ack["seq"])})
            bar.update(count)
            start = end

    try:
        loop.run(send(), 30 + len(payloads) / 2_000, f"publishing {len(payloads):,} rows atomically")
    finally:
        bar.close()
    out = pd.DataFrame(rows, columns=["batch", "rows", "stream", "first_seq", "last_seq"])
    for col in ("rows", "first_seq", "last_seq"):
        out[col] = out[col].astype("Int64")
    split = len(rows) > 1
    if split:
        notes.append(f"{len(payloads):,} rows are more than one atomic batch may hold ({limit:,}): they were "
                     f"stored as {len(rows)} batches, each all-or-nothing on its own, not the frame as a whole")
        warnings.warn(notes[-1], BatchSplitWarning, stacklevel=3)
    out.attrs.update(rows=len(payloads), atomic=True, batches=len(rows), batch_limit=limit, split=split,
                     stream=stream, warnings=notes)
    return out


def _server_limit(exc: NatsError) -> int | None:
    """The batch size a "batch is too large: N" refusal names, else None."""
    if getattr(exc, "err_code", None) != 10199:
        return None
    digits = "".join(ch for ch in str(getattr(exc, "description", "")).rsplit(":", 1)[-1] if ch.isdigit())
    return int(digits) if digits else None


async def _atomic_stream(conn: Connection, subjects: list[str]) -> str:
    """The one stream that stores every subject, refused plainly unless it allows atomic publish."""
    infos = await api.paged(conn, "STREAM.LIST", "streams", what="listing streams")
    found: dict[str, dict] = {}
    for s in subjects:
        owners = [si for si in infos if any(validate.subject_matches(p, s) for p in si["config"].get("subjects") or [])]
        if not owners:
            raise NotFound(f"no JetStream stream stores subject {s!r}",
                           f"add one: nbnats.add_stream(NAME, subjects={s!r}, allow_atomic=True)")
        found[owners[0]["config"]["name"]] = owners[0]
    if len(found) > 1:
        raise ValidationError(f"the rows go to {len(found)} streams ({', '.join(sorted(found))}); an atomic batch "
                              "is stored by one stream", "publish each stream's rows in their own call")
    name, info = next(iter(found.items()))
    if not info["config"].get("allow_atomic"):
        raise JetStreamError(f"stream {name!r} does not allow atomic publish",
                             f"turn it on with nbnats.edit_stream({name!r}, allow_atomic=True)")
    return info


def _check_msg_size(info: dict, payloads, row_headers, limit: int) -> None:
    """Refuse, before sending, a row over the stream's max_msg_size (a batch would fail as "incomplete")."""
    most = info["config"].get("max_msg_size") or -1
    if most < 0:
        return
    for i, (p, h) in enumerate(zip(payloads, row_headers)):
        n = len(p) + validate.header_block_size(engine_publish.batch_headers("0" * 32, i % limit + 1, True, h))
        if n > most:
            raise PayloadTooLarge(f"row {i} is {n:,} bytes with its headers, over the max_msg_size of stream "
                                  f"{info['config']['name']!r} ({most:,} bytes); nothing was sent",
                                  "shorten the row, or raise the stream's max_msg_size")


def _encode_row(subject: str, value: Any) -> bytes:
    if payload_mod.subject_encoder is not None:
        encoded = payload_mod.subject_encoder(subject, value)
        if encoded is not None:
            return encoded
    if isinstance(value, (str, bytes)):
        return encode(value)
    return orjson.dumps(value, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def _jsonable(v: Any) -> Any:
    return v.isoformat() if hasattr(v, "isoformat") else str(v)   # timestamps as ISO 8601
