"""Replay a stream as a Dask DataFrame: sequence ranges read by the workers themselves.

For streams that outgrow one machine: ``nbnats.dask.replay(stream, partitions=8)``
fixes the stream's sequence range now, cuts it into ``partitions`` ranges, and
returns a lazy ``dask.dataframe.DataFrame`` whose partitions each replay one
range on the worker that computes it, over that worker's own connection. The
task graph carries a :class:`~nbnats.runtime.wire.Dial` (the address and
credentials), whose repr shows ``***`` for every secret.

Dask is optional: ``pip install nbnats[dask]``.

>>> ddf = nbnats.dask.replay("ORDERS", partitions=8)          # doctest: +SKIP
>>> ddf.groupby("status").amount.sum().compute()             # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

import pandas as pd

from nbnats.errors import NotFound, ValidationError
from nbnats.runtime.wire import Dial

SAMPLE = 200       # messages read at each end to learn the columns


def _dask_dataframe():
    try:
        import dask.dataframe as dd
    except ModuleNotFoundError:
        raise ValidationError("nbnats.dask needs dask, which is not installed",
                              "pip install 'nbnats[dask]' (dask[dataframe] and distributed)") from None
    return dd


def replay(stream: str, partitions: int = 8, subject: str | list[str] | None = None, since: Any = None,
           until: Any = None, start_seq: int | None = None, end_seq: int | None = None,
           timeout: Any = 30.0, connection: str | None = None):
    """A ``dask.dataframe.DataFrame`` of ``stream`` as it is now, in ``partitions`` sequence ranges.

    The same rows as :func:`nbnats.replay` with the same filters; each
    partition is one range of sequences (the last one may hold fewer). The
    columns are learnt from the first and last messages; a partition lacking
    one gets it as missing, and a column no sample showed is left out (with
    a warning on the worker) — pass ``subject=`` to keep kinds of messages apart.

    >>> ddf = nbnats.dask.replay("ORDERS", partitions=4, subject="orders.eu.>")   # doctest: +SKIP
    >>> ddf.npartitions                                                            # doctest: +SKIP
    4
    """
    dd = _dask_dataframe()
    import nbnats
    from nbnats.runtime.connection import current
    if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
        raise ValidationError(f"partitions must be a positive whole number, not {partitions!r}",
                              "pass e.g. partitions=8")
    conn = current(connection)
    info = nbnats.stream_info(stream, connection=connection) if _takes_connection() else nbnats.stream_info(stream)
    state = info.state if hasattr(info, "state") else info["state"]
    first, last = _get(state, "first_seq"), _get(state, "last_seq")
    if not _get(state, "messages"):
        raise NotFound(f"stream {stream!r} is empty, so there is nothing to replay",
                       "publish to it first, or check the name with nbnats.streams()")
    lo, hi = max(start_seq or first, first), min(end_seq or last, last)
    if lo > hi:
        raise ValidationError(f"start_seq {lo} is after the stream's last sequence {hi}", "lower start_seq")
    span = hi - lo + 1
    if partitions > span:
        warnings.warn(f"{partitions} partitions asked for {span:,} sequences: using {span}", stacklevel=2)
        partitions = span
    step = -(-span // partitions)
    ranges = [(a, min(a + step - 1, hi)) for a in range(lo, hi + 1, step)]
    dial = Dial.of(conn)
    filters = dict(subject=subject, since=since, until=until, timeout=timeout)
    meta = _meta(stream, lo, hi, filters, connection)
    import dask
    # the same dtypes as nbnats.replay: headers stay dicts, not text (dask turns object columns into strings)
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_map(_Partition(stream, dial, filters, meta), ranges, meta=meta, enforce_metadata=False,
                           label=f"nbnats-replay-{stream}")


def _takes_connection() -> bool:
    import inspect

    import nbnats
    return "connection" in inspect.signature(nbnats.stream_info).parameters


def _get(state, key: str):
    return getattr(state, key) if not isinstance(state, dict) else state[key]


def _meta(stream: str, lo: int, hi: int, filters: dict, connection) -> pd.DataFrame:
    """An empty frame with the columns and dtypes of the first and last messages."""
    import nbnats
    sample_filters = {k: v for k, v in filters.items() if k != "timeout"}
    head = nbnats.replay(stream, start_seq=lo, end_seq=hi, limit=SAMPLE, progress=False, connection=connection,
                         **sample_filters)
    tail_start = max(lo, hi - SAMPLE + 1)
    tail = nbnats.replay(stream, start_seq=tail_start, end_seq=hi, progress=False, connection=connection,
                         **sample_filters) if tail_start > lo + SAMPLE else head.iloc[:0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = pd.concat([head, tail], ignore_index=True) if len(tail) else head
    meta = both.iloc[:0].copy()
    meta.attrs = {}
    return meta


class _Partition:
    """Reads one sequence range on a worker (its own connection, made once per worker process)."""

    def __init__(self, stream: str, dial: Dial, filters: dict, meta: pd.DataFrame):
        self.stream, self.dial, self.filters, self.meta = stream, dial, filters, meta

    def __repr__(self) -> str:
        return f"<nbnats replay partition of {self.stream!r} via {self.dial!r}>"

    def __call__(self, seq_range: tuple[int, int]) -> pd.DataFrame:
        import nbnats
        from nbnats.errors import NotFound as Missing
        name = _worker_connection(self.dial)
        try:
            df = nbnats.replay(self.stream, start_seq=seq_range[0], end_seq=seq_range[1], progress=False,
                               connection=name, **self.filters)
        except Missing:
            df = self.meta.iloc[:0]
        return _conform(df, self.meta)


def _worker_connection(dial: Dial) -> str:
    """The name of this process's connection for ``dial`` (connected on first use)."""
    from nbnats.runtime import connection as conn_mod
    name = f"nbnats-dask-{dial.host}-{dial.port}"
    live = conn_mod.connections().get(name)
    if live is None or not live.connected:
        scheme = "tls" if dial.tls else "nats"
        conn_mod.connect(f"{scheme}://{dial.host}:{dial.port}", name=name, user=dial.user, password=dial.password,
                         token=dial.token, nkey=dial.nkey, creds=dial.creds, tls_ca=dial.tls_ca,
                         tls_cert=dial.tls_cert, tls_key=dial.tls_key, client_name="nbnats-dask")
        conn_mod.use(conn_mod.DEFAULT) if conn_mod.DEFAULT in conn_mod.connections() else None
    return name


def _conform(df: pd.DataFrame, meta: pd.DataFrame) -> pd.DataFrame:
    """``df`` with exactly ``meta``'s columns and dtypes (missing ones as missing values)."""
    extra = [c for c in df.columns if c not in meta.columns]
    if extra:
        warnings.warn(f"columns {extra} appear only in some partitions and are left out of the Dask frame",
                      stacklevel=2)
    out = df.reindex(columns=meta.columns)
    for col in meta.columns:
        if out[col].dtype != meta[col].dtype:
            try:
                out[col] = out[col].astype(meta[col].dtype)
            except (TypeError, ValueError):
                out[col] = out[col].astype(object)
    out.attrs = {}
    return out
