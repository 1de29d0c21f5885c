"""An interactive stream browser: pages, subject filter, jump to a sequence or a time.

It renders what :func:`nbnats.replay` returns (one page at a time), its
payloads decoded into columns as every frame decodes them, in a
:class:`~nbnats.widgets.table.Table`: a header click sorts the page, a row
click shows the message's headers and pretty payload. A timer on the nbnats
loop counts messages added since the page was loaded.

>>> v = nbnats.view("ORDERS", subject="orders.eu.>", page_size=20)   # doctest: +SKIP
>>> v.next_page(); v.jump_to_time("10m")                              # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from html import escape

import ipywidgets as w
import pandas as pd

from nbnats.data import frames
from nbnats.jetstream import streams as jetstream
from nbnats.runtime import loop
from nbnats.runtime.connection import current
from nbnats.errors import NatsError
from nbnats.jetstream.replay import ReplayWarning, replay
from nbnats.widgets.table import Table

LIVE_EVERY = 2.0     # seconds between "new messages" checks
NOTE = "color:var(--jp-warn-color1,currentColor)"
ERROR = "color:var(--jp-error-color1,currentColor)"


class StreamView(w.VBox):
    """The browser behind ``%nats stream view`` / :func:`view`.

    Drive it from code as well as by clicking: ``first_page()``,
    ``next_page()``, ``prev_page()``, ``last_page()``, ``jump_to_seq(n)``,
    ``jump_to_time(t)``, ``select(seq)``, ``filter.value = "orders.eu.*"``;
    ``page`` is the current page (a DataFrame, payloads as bytes in ``data``),
    ``rows`` the table of it (``rows.columns``, ``rows.sort_by(column)``,
    ``rows.value`` the selected seq, ``rows.selected_json``),
    ``new_messages`` the count stored since the view opened or last showed
    the newest page.
    """

    def __init__(self, stream: str, subject: str | None = None, page_size: int = 20,
                 connection: str | None = None, live: bool = True):
        if not isinstance(page_size, int) or page_size < 1:
            raise NatsError(f"page_size must be a positive whole number, not {page_size!r}", "use e.g. 20")
        self.stream, self.connection = stream, connection
        self.info = jetstream.stream_info(stream, connection)      # unknown stream: fails here, plainly
        self._conn = current(connection)
        self.page = pd.DataFrame()
        self.new_messages = 0
        self._seen_last = self.info.last_seq
        self._timer = None
        self._closed = False
        button = dict(layout=w.Layout(width="42px"))
        self.header = w.HTML()
        self.filter = w.Text(value=subject or "", placeholder="subject filter, e.g. orders.*.eu",
                             continuous_update=False, layout=w.Layout(width="230px"))
        self.first_button = w.Button(icon="fast-backward", tooltip="first page", **button)
        self.prev_button = w.Button(icon="step-backward", tooltip="previous page", **button)
        self.next_button = w.Button(icon="step-forward", tooltip="next page", **button)
        self.last_button = w.Button(icon="fast-forward", tooltip="last page (newest)", **button)
        self.page_size = w.Dropdown(options=sorted({10, 20, 50, 100, page_size}), value=page_size,
                                    description="rows", layout=w.Layout(width="130px"))
        self.seq_box = w.IntText(value=self.info.first_seq or 1, description="seq", layout=w.Layout(width="160px"))
        self.seq_button = w.Button(description="go", layout=w.Layout(width="44px"))
        self.time_box = w.Text(placeholder="2026-11-27T14:00Z or 1h", description="time",
                               layout=w.Layout(width="250px"))
        self.time_button = w.Button(description="go", layout=w.Layout(width="44px"))
        self.status = w.HTML()
        self.rows = Table(info=("seq", "subject", "time", "size"))
        self.detail = self.rows.detail
        self.first_button.on_click(lambda _: self.first_page())
        self.prev_button.on_click(lambda _: self.prev_page())
        self.next_button.on_click(lambda _: self.next_page())
        self.last_button.on_click(lambda _: self.last_page())
        self.seq_button.on_click(lambda _: self.jump_to_seq(self.seq_box.value))
        self.time_button.on_click(lambda _: self.jump_to_time(self.time_box.value))
        self.filter.observe(lambda _: self.first_page(), names="value")
        self.page_size.observe(lambda _: self._reload(), names="value")
        nav = w.HBox([self.first_button, self.prev_button, self.next_button, self.last_button, self.filter,
                      self.page_size])
        jump = w.HBox([self.seq_box, self.seq_button, self.time_box, self.time_button])
        super().__init__([self.header, nav, jump, self.status, self.rows, self.detail])
        self.first_page()
        if live:
            loop.call_soon(self._arm)

    # -- reading pages (the API does the work) --------------------------------
    @property
    def subject(self) -> str | None:
        return self.filter.value.strip() or None

    def _read(self, **kw) -> pd.DataFrame | None:
        """One replay; errors and warnings go to the status line instead of raising."""
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ReplayWarning)
                df = replay(self.stream, subject=self.subject, decode=False, progress=False,
                            connection=self.connection, **kw)
        except NatsError as exc:
            self._note(f"nbnats: {exc}", error=True)
            return None
        self._note("; ".join(str(c.message) for c in caught if issubclass(c.category, ReplayWarning)))
        return df

    def _show(self, df: pd.DataFrame | None, empty: str, clear: bool = False) -> None:
        if df is None:
            return
        if df.empty:
            if clear:
                self.page = df
                self.rows.show(df)
                self.rows.select(None)
                self._render_header()
            self._note(empty)
            return
        self.page = df.reset_index(drop=True)
        self._refresh_info()
        self._render()

    def first_page(self) -> None:
        """Show the oldest messages (matching the filter)."""
        self._show(self._read(limit=self.page_size.value), "no messages match the filter", clear=True)

    def next_page(self) -> None:
        """Show the page after this one."""
        if self.page.empty:
            return self.first_page()
        after = int(self.page["seq"].iloc[-1]) + 1
        self._show(self._read(start_seq=after, limit=self.page_size.value), "this is the last page")

    def prev_page(self) -> None:
        """Show the page before this one."""
        if self.page.empty:
            return self.first_page()
        before = int(self.page["seq"].iloc[0]) - 1
        if before < max(self.info.first_seq, 1):
            return self._note("this is the first page")
        self._show(self._page_ending(before), "this is the first page")

    def last_page(self) -> None:
        """Show the newest messages and reset the new-message count."""
        self._refresh_info()
        self._seen_last, self.new_messages = self.info.last_seq, 0
        self._show(self._page_ending(self.info.last_seq), "no messages match the filter")

    def _page_ending(self, end: int) -> pd.DataFrame | None:
        """The last ``page_size`` messages up to ``end``, widening the window backwards as needed."""
        size, first = self.page_size.value, max(self.info.first_seq, 1)
        window = size
        while True:
            start = max(first, end - window + 1)
            df = self._read(start_seq=start, end_seq=end)
            if df is None or len(df) >= size or start == first:
                return None if df is None else df.tail(size)
            window *= 4

    def jump_to_seq(self, seq: int) -> None:
        """Show the page starting at sequence ``seq`` (or the next match after it)."""
        try:
            seq = int(seq)
        except (TypeError, ValueError):
            return self._note(f"nbnats: {seq!r} is not a sequence number — type a whole number", error=True)
        self._show(self._read(start_seq=max(seq, 1), limit=self.page_size.value),
                   f"no messages at or after seq {seq}")

    def jump_to_time(self, when) -> None:
        """Show the page starting at a time (ISO text, datetime, or a duration ago like ``1h``)."""
        self._show(self._read(since=when, limit=self.page_size.value), f"no messages since {when}")

    def _reload(self) -> None:
        if self.page.empty:
            return self.first_page()
        self.jump_to_seq(int(self.page["seq"].iloc[0]))

    # -- drawing ---------------------------------------------------------------------
    def _note(self, text: str, error: bool = False) -> None:
        color = ERROR if error else NOTE
        self.status.value = f"<span style='{color}'>{escape(text, quote=False)}</span>" if text else ""

    def _render(self) -> None:
        df = self.page
        shown = frames.build(df["subject"].tolist(), df["time"].array.asi8, df["data"].tolist(),
                             df["headers"].tolist(), df["seq"].to_numpy(dtype="int64"))
        self.rows.show(shown, [int(s) for s in df["seq"]])
        self.rows.select(int(df["seq"].iloc[0]) if len(df) else None)
        self._render_header()

    def _render_header(self) -> None:
        i = self.info
        shown = (f"seq {int(self.page['seq'].iloc[0]):,}–{int(self.page['seq'].iloc[-1]):,}"
                 if not self.page.empty else "no page")
        new = (f" · <b style='color:var(--jp-brand-color1,currentColor)'>{self.new_messages:,} new message"
               f"{'s' if self.new_messages != 1 else ''}</b> (⏭ shows them)" if self.new_messages else "")
        filt = f" · filter <code>{escape(self.subject)}</code>" if self.subject else ""
        self.header.value = (f"<b>{escape(self.stream)}</b> · {i.messages:,} messages, seq "
                             f"{i.first_seq:,}–{i.last_seq:,} · showing {shown}{filt}{new}")

    def select(self, seq: int | None) -> None:
        """Show one message of the page: headers and the pretty payload."""
        self.rows.select(seq)

    # -- live count --------------------------------------------------------------------
    def _refresh_info(self) -> None:
        try:
            self.info = jetstream.stream_info(self.stream, self.connection)
        except NatsError as exc:
            self._note(f"nbnats: {exc}", error=True)
            return
        self.new_messages = max(0, self.info.last_seq - self._seen_last)

    def poll(self) -> int:
        """Count messages added since the page was loaded (the timer does this every 2 s)."""
        self._count_new(jetstream.stream_info(self.stream, self.connection))
        return self.new_messages

    def _count_new(self, resp: dict) -> None:
        self.new_messages = max(0, resp["state"]["last_seq"] - self._seen_last)
        self._render_header()

    def _arm(self) -> None:
        if not self._closed:
            self._timer = loop.get_loop().call_later(LIVE_EVERY, lambda: loop.get_loop().create_task(self._tick()))

    async def _tick(self) -> None:
        if self._closed or self._conn.nc.is_closed:
            return
        if not self._conn.connected:       # reconnecting: try again later
            return self._arm()
        try:
            resp = await loop.to_thread(jetstream.stream_info, self.stream, self.connection)
        except Exception:          # the stream went away or the connection closed: stop counting
            self._closed = True
            return
        self._count_new(resp)
        self._arm()

    def close(self) -> None:
        """Stop the live count and close the widget."""
        self._closed = True
        timer = getattr(self, "_timer", None)    # also called for a view whose __init__ failed
        if timer is not None:
            loop.call_soon(timer.cancel)
        super().close()


def view(stream: str, subject: str | None = None, page_size: int = 20, connection: str | None = None) -> StreamView:
    """An interactive browser for ``stream``: pages, subject filter, jump to a sequence or a time.

    >>> nbnats.view("ORDERS")                               # doctest: +SKIP
    >>> v = nbnats.view("ORDERS", subject="orders.eu.*")    # doctest: +SKIP
    >>> v.jump_to_seq(100); v.page[["seq", "subject"]]       # doctest: +SKIP
    """
    return StreamView(stream, subject=subject, page_size=page_size, connection=connection)
