"""The live view of a tail: newest rows, pause, clear, subject filter, rate chart.

It redraws on a timer on the loop thread, at most ten times a second and
only when something changed, whatever the message rate.

>>> t.widget   # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import time
from html import escape

import ipywidgets as w

from nbnats.data import codecs, validate
from nbnats.runtime import loop

REFRESH = 0.1       # seconds: the ≤ 10 Hz redraw cap
ROWS_SHOWN = 15
PREVIEW = 120


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
            f'<polyline fill="none" stroke="#3b82f6" stroke-width="1.5" points="{points}"/></svg>')


class TailView(w.VBox):
    """An ipywidgets box bound to a :class:`~nbnats.tail.Tail`."""

    def __init__(self, tail):
        self.tail = tail
        self.header = w.HTML()
        self.pause = w.ToggleButton(description="Pause", icon="pause", layout=w.Layout(width="90px"))
        self.clear_button = w.Button(description="Clear", icon="trash", layout=w.Layout(width="90px"))
        self.stop_button = w.Button(description="Stop", icon="stop", layout=w.Layout(width="90px"))
        self.filter = w.Text(placeholder="filter subject, e.g. orders.*.eu", layout=w.Layout(width="260px"))
        self.chart = w.HTML()
        self.rows = w.HTML()
        self.clear_button.on_click(lambda _: self._clear())
        self.stop_button.on_click(lambda _: self.tail.stop())
        self.filter.observe(lambda _: self._force(), names="value")
        self.pause.observe(lambda _: self._force(), names="value")
        controls = w.HBox([self.pause, self.clear_button, self.stop_button, self.filter, self.chart])
        super().__init__([self.header, controls, self.rows])
        self._seen = -1
        self._state = None             # (disconnected, running) at the last render
        self._dirty = True
        self.renders = 0
        self._timer: asyncio.TimerHandle | None = None
        self.render()
        loop.call_soon(self._tick)

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
        rows = self.tail.last(ROWS_SHOWN * 20)
        pattern = self.filter.value.strip()
        if pattern:
            try:
                validate.subject(pattern)
            except Exception:
                return [r for r in rows if pattern in r[0]][-ROWS_SHOWN:]
            return [r for r in rows if validate.subject_matches(pattern, r[0])][-ROWS_SHOWN:]
        return rows[-ROWS_SHOWN:]

    def render(self) -> None:
        """Draw the header, the chart and the newest rows from the tail's state."""
        t = self.tail
        self._seen, self._dirty, self._state = t.count, False, (t.disconnected, t.running)
        self.renders += 1
        state = state_html(t)
        lost = t.loss
        dropped = "0 dropped" if lost == "none" else f"<span style='color:#b91c1c'>{escape(lost)} dropped</span>"
        paused = " · <b>paused</b>" if self.pause.value else ""
        n_gaps = len(t.gaps)
        gaps = f" · {n_gaps} gap(s)" if n_gaps else ""
        self.header.value = (f"<b>{escape(t.subject)}</b> · {t.id} · {state} · {t.count:,} received · "
                             f"{t.kept:,} kept · {dropped} · {t.rate:,.0f} msg/s{gaps}{paused}")
        rates = [r for _, r in _rate_points(t)]
        self.chart.value = sparkline(rates[-60:])
        if self.pause.value:
            return
        body = "".join(
            f"<tr><td>{seq if seq is not None else ''}</td>"
            f"<td>{time.strftime('%H:%M:%S', time.gmtime(ts / 1e9))}.{int(ts % 1_000_000_000 / 1e6):03d}</td>"
            f"<td>{escape(subject)}</td><td>{len(data)}</td>"
            f"<td><code>{escape(codecs.preview(data, subject, t.codec, PREVIEW))}</code></td></tr>"
            for subject, ts, seq, data, _ in reversed(self._visible()))
        self.rows.value = ("<table class='nbnats-tail' style='font-size:12px'><thead><tr><th>seq</th>"
                           "<th>time (UTC)</th><th>subject</th><th>size</th><th>payload</th></tr></thead>"
                           f"<tbody>{body}</tbody></table>")


def state_html(t) -> str:
    """'running', 'stopped', or a red 'disconnected — reconnecting' during an outage."""
    if t.disconnected:
        return "<span style='color:#b91c1c'>disconnected — reconnecting</span>"
    return "running" if t.running else "stopped"


def _rate_points(t) -> list[tuple[float, float]]:
    samples = t.samples()
    return [(t1, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in zip(samples, samples[1:]) if t1 > t0]
