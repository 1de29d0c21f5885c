"""Acknowledge after processing: fetch messages and answer each one when it is done.

``fetch`` hands over a :class:`Batch` whose messages wait for the notebook's
answer (``ack``, ``nak``, ``term``); ``next`` keeps its old meaning: a frame,
acknowledged as it is fetched. The background form is :mod:`nbnats.jetstream.worker`.

>>> b = nbnats.fetch("ORDERS", "billing", count=10)      # doctest: +SKIP
>>> for msg in b:                                        # doctest: +SKIP
...     charge(msg.json()); msg.ack()
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

import pandas as pd

from nbnats.data import frames, units, validate
from nbnats.data.payload import Message
from nbnats.engine import acks, api
from nbnats.engine.pull import ACK, NAK, TERM, WPI, answer, answer_many, pull
from nbnats.errors import JetStreamError, NatsError, ValidationError
from nbnats.runtime import loop
from nbnats.runtime.connection import current

ANSWERS = {ACK: "acknowledged", NAK: "naked", TERM: "terminated"}


class AlreadyAnswered(NatsError):
    """A fetched message was answered twice (ack after ack, nak after ack …)."""


# -- one fetched message -------------------------------------------------------------------
class FetchedMessage(Message):
    """A message delivered by a consumer, waiting for its one answer.

    ``.subject .data .headers .json() .text``, plus ``.seq`` (stream sequence),
    ``.time``, ``.deliveries`` (1 first time, 2+ when redelivered); answer with
    ``ack()``, ``nak(delay=None)`` or ``term(reason=None)`` — once;
    ``in_progress()`` (more time, as often as needed).

    >>> msg = nbnats.fetch("ORDERS", "billing")[0]   # doctest: +SKIP
    >>> msg.ack()                                     # doctest: +SKIP
    """

    __slots__ = ("stream", "consumer", "seq", "time_ns", "deliveries", "pending", "answered",
                 "_conn", "_policy", "_touched")

    def __init__(self, conn, msg, policy: str):
        super().__init__(msg.subject, msg.data, msg.headers, msg.reply)
        meta = acks.parse(msg.reply)
        self.stream, self.consumer, self.seq = meta.stream, meta.consumer, meta.seq
        self.time_ns, self.deliveries, self.pending = meta.time_ns, meta.deliveries, meta.pending
        self.answered: str | None = None        # "acknowledged", "naked" or "terminated" once answered
        self._conn, self._policy = conn, policy
        self._touched = time.monotonic()         # last delivery or in-progress: the ack wait runs from here

    @property
    def time(self) -> pd.Timestamp:
        """The stream's timestamp of the message (UTC).

        >>> msg.time   # doctest: +SKIP
        Timestamp('2026-12-01 20:04:55.112539964+0000', tz='UTC')
        """
        return pd.Timestamp(self.time_ns, unit="ns", tz="UTC")

    @property
    def name(self) -> str:
        """``STREAM#seq``, as errors name the message.

        >>> msg.name   # doctest: +SKIP
        'ORDERS#42'
        """
        return f"{self.stream}#{self.seq}"

    async def _send(self, kind: bytes, delay: float | None = None, reason: str | None = None,
                    timeout: float = api.TIMEOUT) -> None:
        """Answer on the loop thread; a final answer is claimed first, so it is never sent twice."""
        if self._policy == "none":
            raise JetStreamError(f"message {self.name} needs no answer: consumer {self.consumer!r} has ack "
                                 "policy none", "nothing to acknowledge; read a consumer with ack='explicit' to answer")
        if self.answered is not None:
            raise AlreadyAnswered(f"message {self.name} ({self.subject}) was already {self.answered}",
                                  "a message takes one answer (ack, nak or term); fetch again to read it anew")
        if kind != WPI:
            self.answered = ANSWERS[kind]
        try:
            await answer(self._conn, self.reply, kind, delay=delay, reason=reason, timeout=timeout)
        except BaseException:
            if kind != WPI:
                self.answered = None             # not taken: it may be answered again
            raise
        self._touched = time.monotonic()

    def _answer(self, kind: bytes, what: str, timeout: float, **how: Any) -> None:
        loop.run(self._send(kind, timeout=timeout, **how), timeout + 1, f"{what} message {self.name}")

    def ack(self, timeout: float = api.TIMEOUT) -> None:
        """Acknowledge: processed, never deliver it again (the server confirms it).

        >>> msg.ack()   # doctest: +SKIP
        """
        self._answer(ACK, "acknowledging", timeout)

    def nak(self, delay: Any = None, timeout: float = api.TIMEOUT) -> None:
        """Not processed: deliver it again, after ``delay`` (``"5s"``) or at once.

        >>> msg.nak(delay="10s")   # doctest: +SKIP
        """
        self._answer(NAK, "naking", timeout, delay=units.seconds(delay, "delay"))

    def term(self, reason: str | None = None, timeout: float = api.TIMEOUT) -> None:
        """Give up on it: never deliver it again, though it was not processed.

        >>> msg.term(reason="malformed order")   # doctest: +SKIP
        """
        self._answer(TERM, "terminating", timeout, reason=reason)

    def in_progress(self) -> None:
        """Still working on it: restart its ack wait (may be repeated).

        >>> msg.in_progress()   # doctest: +SKIP
        """
        loop.run(self._send(WPI), api.TIMEOUT, f"extending the ack wait of message {self.name}")

    def __repr__(self) -> str:
        state = self.answered or "unanswered"
        return f"<FetchedMessage {self.name} {self.subject} delivery {self.deliveries} {state} {self.data[:60]!r}>"


def frame(messages: list, column: str = "deliveries") -> pd.DataFrame:
    """The standard frame of delivered messages plus their delivery counts in ``column``.

    >>> frame(batch.messages)[["seq", "deliveries"]]   # doctest: +SKIP
    """
    meta = acks.parse_many([m.reply for m in messages])
    df = frames.build([m.subject for m in messages], meta["time_ns"], [m.data for m in messages],
                      [m.headers for m in messages], meta["seq"])
    if column in df.columns:
        df = df.rename(columns={column: f"data.{column}"})
    df.insert(5, column, pd.array(meta["deliveries"], dtype="Int64"))
    return df


class Batch:
    """What one :func:`fetch` brought: iterate for the messages, ``df`` for the frame, ``ack()`` the rest.

    >>> b = nbnats.fetch("ORDERS", "billing", count=10)   # doctest: +SKIP
    >>> b.df[["seq", "deliveries"]]; b.ack()              # doctest: +SKIP
    """

    def __init__(self, stream: str, consumer: str, messages: list[FetchedMessage], note: str | None = None):
        self.stream, self.consumer, self.messages = stream, consumer, messages
        self.note = note          # why fewer than asked came back at once (max_ack_pending reached), or None
        self.ack_limit: int | None = None       # that max_ack_pending, when it cut the batch short
        self._df: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.messages)

    def __iter__(self):
        return iter(self.messages)

    def __getitem__(self, i: int) -> FetchedMessage:
        return self.messages[i]

    @property
    def df(self) -> pd.DataFrame:
        """The standard frame plus ``deliveries``; ``attrs`` has stream, consumer, pending, note.

        >>> b.df[["seq", "deliveries"]]   # doctest: +SKIP
        """
        if self._df is None:
            self._df = frame(self.messages)
            self._df.attrs.update(stream=self.stream, consumer=self.consumer, pending=self.pending, note=self.note)
        return self._df.copy()

    @property
    def pending(self) -> int | None:
        """Messages the consumer still had to deliver after this batch (None for an empty batch).

        >>> b.pending   # doctest: +SKIP
        7
        """
        return self.messages[-1].pending if self.messages else None

    @property
    def unanswered(self) -> list[FetchedMessage]:
        """The messages not yet acked, naked or terminated.

        >>> len(b.unanswered)   # doctest: +SKIP
        3
        """
        return [m for m in self.messages if m.answered is None and m._policy != "none"]

    def _answer_all(self, kind: bytes, timeout: float, **how: Any) -> int:
        """Claim every unanswered message, answer them in one burst, give back those not confirmed."""
        todo = self.unanswered
        if not todo:
            return 0
        for m in todo:
            m.answered = ANSWERS[kind]
        try:
            # each answer is confirmed; the burst may take as long as it keeps being confirmed, bounded
            # by a rate no server falls below (10,000 a second)
            results = loop.run(answer_many(todo[0]._conn, [m.reply for m in todo], kind, timeout=timeout, **how),
                               timeout + 2 + len(todo) / 10_000, f"answering {len(todo):,} message(s) of {self.consumer!r}")
        except BaseException:
            for m in todo:
                m.answered = None            # not known to be taken: they may be answered again
            raise
        now = time.monotonic()
        failed = []
        for m, error in zip(todo, results):
            if error is None:
                m._touched = now
            else:
                m.answered = None
                failed.append(error)
        if len(failed) == len(todo):
            raise failed[0]
        if failed:
            first = failed[0]
            raise type(first)(f"{len(failed):,} of {len(todo):,} answers were not confirmed ({first.what}); "
                              "those messages stay unanswered", first.fix)
        return len(todo)

    def ack(self, timeout: float = api.TIMEOUT) -> int:
        """Acknowledge every message not answered yet, in one burst, each confirmed; returns how many.

        Messages whose confirmation did not come back stay unanswered, and the
        error says how many (they may be acked again).

        >>> b.ack()   # doctest: +SKIP
        3
        """
        return self._answer_all(ACK, timeout)

    def nak(self, delay: Any = None, timeout: float = api.TIMEOUT) -> int:
        """Deliver every message not answered yet again (after ``delay``); returns how many.

        >>> b.nak(delay="5s")   # doctest: +SKIP
        """
        return self._answer_all(NAK, timeout, delay=units.seconds(delay, "delay"))

    def __repr__(self) -> str:
        note = f" — {self.note}" if self.note else ""
        return (f"<Batch {self.stream}/{self.consumer}: {len(self)} message(s), "
                f"{len(self.unanswered)} unanswered, {self.pending} pending{note}>")

    def _repr_html_(self) -> str:
        note = f"<div>{escape(self.note)}</div>" if self.note else ""
        return (f"<div><b>{len(self)} message(s)</b> from {escape(self.stream)}/{escape(self.consumer)} · "
                f"{len(self.unanswered)} unanswered · {self.pending or 0} pending</div>{note}"
                + self.df.to_html(index=False))


# -- reading a pull consumer ----------------------------------------------------------------
def checked(stream: str, consumer: str, count: int, wait: Any, names: tuple[str, str] = ("count", "timeout")) -> float:
    """Check the names, a positive whole ``count`` and a positive duration ``wait``; the wait in seconds.

    >>> checked("ORDERS", "billing", 10, "2s")
    2.0
    """
    validate.name(stream, "stream")
    validate.name(consumer, "consumer")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValidationError(f"{names[0]} must be a positive whole number, not {count!r}", f"pass e.g. {names[0]}=10")
    seconds = units.seconds(wait, names[1])
    if not seconds:
        raise ValidationError(f"{names[1]} must be more than 0 s, not {wait!r}", f"pass e.g. {names[1]}='2s'")
    return seconds


async def pull_config(conn, stream: str, consumer: str) -> dict:
    """The configuration of a pull consumer; a push consumer is refused plainly (loop thread).

    >>> (await pull_config(conn, "ORDERS", "billing"))["ack_policy"]   # doctest: +SKIP
    'explicit'
    """
    return (await pull_info(conn, stream, consumer))["config"]


async def pull_info(conn, stream: str, consumer: str) -> dict:
    """The consumer info of a pull consumer (config and state); a push consumer is refused plainly (loop thread).

    >>> (await pull_info(conn, "ORDERS", "billing"))["num_ack_pending"]   # doctest: +SKIP
    0
    """
    info = await api.request(conn, f"CONSUMER.INFO.{stream}.{consumer}", what=f"reading consumer {consumer!r}",
                             stream=stream, consumer=consumer)
    cfg = info["config"]
    if cfg.get("deliver_subject"):
        raise JetStreamError(f"consumer {consumer!r} of stream {stream!r} is a push consumer, which delivers to "
                             f"{cfg['deliver_subject']!r} by itself",
                             f"fetch and consume read pull consumers: add one with nbnats.add_consumer({stream!r}, NAME)")
    return info


def ack_room(info: dict) -> int | None:
    """How many more messages the consumer may hand out before its max_ack_pending is reached (None: no limit).

    The server holds a pull open, delivering nothing, while that many wait for
    an ack; so a fetch asks for no more than this and returns at once.

    >>> ack_room({"config": {"ack_policy": "explicit", "max_ack_pending": 2}, "num_ack_pending": 1})
    1
    >>> ack_room({"config": {"ack_policy": "none", "max_ack_pending": -1}, "num_ack_pending": 0}) is None
    True
    """
    cfg = info.get("config") or {}
    limit = cfg.get("max_ack_pending") or 0
    if cfg.get("ack_policy", "explicit") == "none" or limit <= 0:
        return None
    return max(0, limit - (info.get("num_ack_pending") or 0))


def full_note(limit: int, got: int, asked: int, acked: bool = False) -> str:
    """Why a fetch brought fewer than asked at once: the consumer's max_ack_pending.

    >>> full_note(2, 0, 5)
    "the consumer's max_ack_pending (2) is reached: ack some to get more (0 of 5 delivered)"
    >>> full_note(2, 2, 5, acked=True)
    "the consumer's max_ack_pending (2) allowed 2 of 5 at once: these are acked, read again for more"
    """
    if acked:
        return f"the consumer's max_ack_pending ({limit}) allowed {got} of {asked} at once: these are acked, read again for more"
    return f"the consumer's max_ack_pending ({limit}) is reached: ack some to get more ({got} of {asked} delivered)"


async def take(conn, stream: str, consumer: str, count: int, wait: float) -> list:
    """What is ready now; if nothing is, the first message within ``wait`` and whatever is ready after it (loop thread).

    >>> msgs = await take(conn, "ORDERS", "billing", 10, 2.0)   # doctest: +SKIP
    """
    msgs = await pull(conn, stream, consumer, count, no_wait=True)
    if not msgs:
        msgs = await pull(conn, stream, consumer, 1, expires=wait)
        if msgs and count > 1:
            msgs += await pull(conn, stream, consumer, count - 1, no_wait=True)
    return msgs


def fetch(stream: str, consumer: str, count: int = 1, timeout: Any = 2, connection: str | None = None) -> Batch:
    """Up to ``count`` messages of a pull consumer, unanswered: process each, then ``ack()`` it.

    It returns what is ready at once, or waits up to ``timeout`` (``2``,
    ``"500ms"``) for the first; fewer than ``count`` (or none) is not an error.
    When the consumer's ``max_ack_pending`` is reached (that many delivered
    and not yet acked), it returns at once with what could be delivered, and
    ``b.note`` says so. Unanswered messages come back after the ack wait.

    >>> b = nbnats.fetch("ORDERS", "billing", count=10, timeout="5s")   # doctest: +SKIP
    >>> for msg in b:                                                    # doctest: +SKIP
    ...     process(msg.json()); msg.ack()
    """
    wait = checked(stream, consumer, count, timeout)
    conn = current(connection)

    async def go():
        info = await pull_info(conn, stream, consumer)
        policy = info["config"].get("ack_policy", "explicit")
        room = ack_room(info)
        asked = count if room is None else min(count, room)
        msgs = await take(conn, stream, consumer, asked, wait) if asked else []
        limit = info["config"]["max_ack_pending"] if room is not None and room < count and len(msgs) == room else None
        return [FetchedMessage(conn, m, policy) for m in msgs], limit

    messages, limit = loop.run(go(), wait + 15, f"fetching from consumer {consumer!r} of {stream!r}")
    batch = Batch(stream, consumer, messages, full_note(limit, len(messages), count) if limit else None)
    batch.ack_limit = limit
    return batch


def next(stream: str, consumer: str, count: int = 1, ack: bool = True, timeout: Any = 2.0,
         connection: str | None = None) -> pd.DataFrame:
    """Up to ``count`` messages of a pull consumer as the standard frame, acknowledged unless ``ack=False``.

    The frame has a ``delivered`` column (1 on first delivery, 2+ when
    redelivered); ``df.attrs["pending"]`` is what the consumer still has to
    deliver, ``df.attrs["acked"]`` whether these were acknowledged,
    ``df.attrs["note"]`` why fewer than ``count`` came back at once (the
    consumer's ``max_ack_pending`` reached; None otherwise). It waits up to
    ``timeout`` only when nothing is ready. To ack after processing instead,
    use :func:`fetch`.

    >>> nbnats.next("ORDERS", "billing", count=10)[["seq", "delivered"]]   # doctest: +SKIP
    """
    batch = fetch(stream, consumer, count, timeout, connection)
    policy = batch[0]._policy if len(batch) else "none"
    acked = bool(ack and len(batch) and policy != "none")
    if acked and policy == "all":
        batch[-1].ack()                   # acks everything before it too
    elif acked:
        batch.ack()
    df = frame(batch.messages, "delivered")
    note = full_note(batch.ack_limit, len(batch), count, acked=True) if acked and batch.ack_limit else batch.note
    df.attrs.update(stream=stream, consumer=consumer, acked=acked, pending=batch.pending, note=note)
    return df
