"""The live view of a tail: newest rows as columns, pause, clear, subject filter, rate chart.

It redraws on a timer on the loop thread, at most ten times a second and
only when something changed, whatever the message rate. The rows are the
newest ``display_limit`` messages decoded as ``t.df`` decodes them, in a
:class:`~nbnats.widgets.table.Table`: a header click sorts, a row click
shows its headers and its payload as indented JSON.

>>> t.widget   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from html import escape

import ipywidgets as w
import pandas as pd

from nbnats.data import frames, validate
from nbnats.runtime import loop
from nbnats.widgets.table import DISPLAY_LIMIT, Table

REFRESH = 0.1       # seconds: the ≤ 10 Hz redraw cap
SCAN = 20           # with a filter, this many times display_limit newest rows are searched
ERROR = "color:var(--jp-error-color1,currentColor)"


def sparkline(values: list[float], width: int = 160, height: int = 28) -> str:
    """A small inline SVG line of ``values`` (no JavaScript needed).

    >>> sparkline([0, 1, 2]).startswith("<svg")
    True
    """
    if len(values) < 2:
        values = [0.0, *values, 0.0][:2]
    top = max(values) or 1.0
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(values))
    return (f'<svg width="{width}" height="{height}" style="vertical-align:middle">'
            f'<polyline fill="none" style="stroke:var(--jp-brand-color1,currentColor)" stroke-width="1.5" '
            f'points="{points}"/></svg>')


class TailView(w.VBox):
    """An ipywidgets box bound to a :class:`~nbnats.tail.Tail`.

    ``table`` is the :class:`~nbnats.widgets.table.Table` of the newest
    ``display_limit`` rows (``rows`` its HTML, ``detail`` the clicked row).
    """

    def __init__(self, tail, display_limit: int = DISPLAY_LIMIT):
        self.tail = tail
        self.display_limit = display_limit
        self.header = w.HTML()
        self.pause = w.ToggleButton(description="Pause", icon="pause", layout=w.Layout(width="90px"))
        self.clear_button = w.Button(description="Clear", icon="trash", layout=w.Layout(width="90px"))
        self.stop_button = w.Button(description="Stop", icon="stop", layout=w.Layout(width="90px"))
        self.filter = w.Text(placeholder="filter subject, e.g. orders.*.eu", layout=w.Layout(width="260px"))
        self.chart = w.HTML()
        self.table = self._new_table()
        self.rows, self.detail = self.table.html, self.table.detail
        self.clear_button.on_click(lambda _: self._clear())
        self.stop_button.on_click(lambda _: self.tail.stop())
        self.filter.observe(lambda _: self._force(), names="value")
        self.pause.observe(lambda _: self._force(), names="value")
        controls = w.HBox([self.pause, self.clear_button, self.stop_button, self.filter, self.chart])
        super().__init__([self.header, controls, self.table])
        self._seen = -1
        self._state = None             # (disconnected, running) at the last render
        self._dirty = True
        self.renders = 0
        self._timer: asyncio.TimerHandle | None = None
        self.render()
        loop.call_soon(self._tick)

    def _new_table(self) -> Table:
        return Table(on_change=self._force)

    def _force(self) -> None:
        self._dirty = True          # the loop thread's next tick redraws
        if not self.tail.running:
            self.render()

    def _clear(self) -> None:
        self.tail.clear()
        self._dirty = True

    def _tick(self) -> None:
        """Redraw if anything changed; re-arm while the tail runs (loop thread)."""
        t = self.tail
        state = (t.disconnected, t.running)             # a disconnect or a reconnect is news without a message
        if self._dirty or state != self._state or (t.count != self._seen and not self.pause.value):
            self.render()
        if t.running:
            self._timer = loop.get_loop().call_later(REFRESH, self._tick)
        else:
            self.render()

    def _visible(self) -> list[tuple]:
        """The newest ``display_limit`` rows (of those the subject filter matches), oldest first."""
        n = self.display_limit
        pattern = self.filter.value.strip()
        if not pattern:
            return self.tail.last(n)
        rows = self.tail.last(n * SCAN)
        try:
            validate.subject(pattern)
        except Exception:
            return [r for r in rows if pattern in r[0]][-n:]
        return [r for r in rows if validate.subject_matches(pattern, r[0])][-n:]

    def _frame(self, rows: list[tuple]) -> tuple[pd.DataFrame, list]:
        """The rows (newest first) as ``t.df`` decodes them, and a key per row."""
        t = self.tail
        rows = rows[::-1]
        subjects, times, seqs, payloads, headers = (list(c) for c in zip(*rows)) if rows else ([],) * 5
        decode = t.codec.decode_for if t.codec is not None else None
        df = frames.build(subjects, times, payloads, headers, seqs if t.stream else None, decode=decode)
        if not t.stream:
            df = df.drop(columns="seq")          # core NATS rows have none
        return df, [(s, ts, q) for s, ts, q, _, _ in rows]

    def render(self) -> None:
        """Draw the header, the chart and the newest rows from the tail's state."""
        t = self.tail
        self._seen, self._dirty, self._state = t.count, False, (t.disconnected, t.running)
        self.renders += 1
        state = state_html(t)
        lost = t.loss
        dropped = "0 dropped" if lost == "none" else f"<span style='{ERROR}'>{escape(lost)} dropped</span>"
        paused = " · <b>paused</b>" if self.pause.value else ""
        n_gaps = len(t.gaps)
        gaps = f" · {n_gaps} gap(s)" if n_gaps else ""
        self.header.value = (f"<b>{escape(t.subject)}</b> · {t.id} · {state} · {t.count:,} received · "
                             f"{t.kept:,} kept · {dropped} · {t.rate:,.0f} msg/s{gaps}{paused}")
        rates = [r for _, r in _rate_points(t)]
        self.chart.value = sparkline(rates[-60:])
        if self.pause.value:
            return
        self.table.show(*self._frame(self._visible()))


def state_html(t) -> str:
    """'running', 'stopped', or a red 'disconnected — reconnecting' during an outage."""
    if t.disconnected:
        return f"<span style='{ERROR}'>disconnected — reconnecting</span>"
    return "running" if t.running else "stopped"


def _rate_points(t) -> list[tuple[float, float]]:
    samples = t.samples()
    return [(t1, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in zip(samples, samples[1:]) if t1 > t0]
