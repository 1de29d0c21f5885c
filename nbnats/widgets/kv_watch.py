"""The live table of a KV watch (ipywidgets): each key's newest value, or every change, as columns.

The rows are a KV frame (:func:`nbnats.kv.frame.kv_frame`, as ``w.df``): key,
value, revision, created, operation, and a JSON value's fields as columns;
a header click sorts, a row click shows the value as indented JSON.

>>> nbnats.kv("sessions").watch().widget   # doctest: +SKIP
"""

from __future__ import annotations

from html import escape

import ipywidgets as w
import pandas as pd

from nbnats.kv.frame import kv_frame
from nbnats.widgets.kv_keys import matching
from nbnats.widgets.table import Table
from nbnats.widgets.tail_view import SCAN, TailView, _rate_points, sparkline, state_html


def _value(frame: pd.DataFrame, pos: int):
    return frame["value"].iloc[pos]


class KVWatchView(TailView):
    """The live table of a :class:`~nbnats.kv.KVWatch`: each key's newest value, or every change."""

    def __init__(self, watch, **options):
        self.mode = w.ToggleButtons(options=[("latest per key", "keys"), ("every change", "log")], value="keys",
                                    style={"button_width": "110px"})
        super().__init__(watch, **options)
        self.filter.placeholder = "filter keys, e.g. user.*"
        self.mode.observe(lambda _: self._force(), names="value")
        self.children = [self.header, self.mode, *self.children[1:]]

    def _new_table(self) -> Table:
        return Table(detail=_value, info=("key", "revision", "created", "operation"), on_change=self._force)

    def _rows(self) -> list[tuple]:
        """(key, time_ns, revision, data, headers) rows to show, newest first."""
        n = self.display_limit
        ring = self.tail.last(n * SCAN)
        pattern = self.filter.value.strip()
        if pattern:
            wanted = set(matching(list({r[0] for r in ring}), pattern))
            ring = [r for r in ring if r[0] in wanted]
        if getattr(self, "mode", None) is None or self.mode.value == "log":
            return ring[-n:][::-1]
        seen, out = set(), []
        for r in reversed(ring):
            if r[0] not in seen:
                seen.add(r[0])
                out.append(r)
                if len(out) == n:
                    break
        return out

    def render(self) -> None:
        """Draw the header, the chart and the newest row per key (or the newest changes)."""
        t = self.tail
        self._seen, self._dirty = t.count, False
        self.renders += 1
        state = state_html(t)
        initial = "" if t.caught_up else " · loading current values…"
        paused = " · <b>paused</b>" if self.pause.value else ""
        self.header.value = (f"<b>KV {escape(t.kv.bucket)}</b> watch <code>{escape(t.key)}</code> · {t.id} · "
                             f"{state} · {t.count:,} changes · {t.kept:,} kept · {t.rate:,.0f}/s{initial}{paused}")
        self.chart.value = sparkline([r for _, r in _rate_points(t)][-60:])
        if self.pause.value:
            return
        rows = self._rows()
        self.table.show(kv_frame((k, rev, ts, data, h) for k, ts, rev, data, h in rows),
                        [(k, rev) for k, _, rev, _, _ in rows])


__all__ = ["KVWatchView"]
