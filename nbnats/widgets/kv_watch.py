"""The live table of a KV watch (ipywidgets): each key's newest value, or every change.

>>> nbnats.kv("sessions").watch().widget   # doctest: +SKIP
"""

from __future__ import annotations

import time
from html import escape

import ipywidgets as w

from nbnats.kv.frame import decode_value, operation, preview
from nbnats.widgets.kv_keys import matching
from nbnats.widgets.tail_view import ROWS_SHOWN, TailView, _rate_points, sparkline, state_html

SCANNED = 5_000     # newest watch rows searched for the per-key table


class KVWatchView(TailView):
    """The live table of a :class:`~nbnats.kv.KVWatch`: each key's newest value, or every change."""

    def __init__(self, watch):
        self.mode = w.ToggleButtons(options=[("latest per key", "keys"), ("every change", "log")], value="keys",
                                    style={"button_width": "110px"})
        super().__init__(watch)
        self.filter.placeholder = "filter keys, e.g. user.*"
        self.mode.observe(lambda _: self._force(), names="value")
        self.children = [self.header, self.mode, *self.children[1:]]

    def _rows(self) -> list[tuple]:
        ring = self.tail.last(SCANNED)        # (key, time_ns, revision, data, headers) rows
        pattern = self.filter.value.strip()
        if pattern:
            wanted = set(matching(list({r[0] for r in ring}), pattern))
            ring = [r for r in ring if r[0] in wanted]
        if getattr(self, "mode", None) is None or self.mode.value == "log":
            return ring[-ROWS_SHOWN:][::-1]
        seen, out = set(), []
        for r in reversed(ring):
            if r[0] not in seen:
                seen.add(r[0])
                out.append(r)
                if len(out) == ROWS_SHOWN:
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
        body = "".join(
            f"<tr><td>{escape(key)}</td><td>{seq if seq is not None else ''}</td>"
            f"<td>{time.strftime('%H:%M:%S', time.gmtime(ts / 1e9))}.{int(ts % 1_000_000_000 / 1e6):03d}</td>"
            f"<td>{operation(h)}</td><td><code>{escape(_value_preview(data, h))}</code></td></tr>"
            for key, ts, seq, data, h in self._rows())
        self.rows.value = ("<table class='nbnats-kv-watch' style='font-size:12px'><thead><tr><th>key</th>"
                           "<th>revision</th><th>time (UTC)</th><th>op</th><th>value</th></tr></thead>"
                           f"<tbody>{body}</tbody></table>")


def _value_preview(data: bytes, headers: dict | None) -> str:
    if operation(headers) != "PUT":
        return ""
    return preview(decode_value(data), 100)


__all__ = ["KVWatchView"]
