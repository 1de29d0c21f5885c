"""The one table the live views draw: a frame's columns, sorted by a header click, a row's JSON on click.

Every view (tail, stream browser, KV watch) builds its frame with the frames'
own decoding (:mod:`nbnats.data.frames`, :func:`nbnats.kv.frame.kv_frame`) and
hands it here with a key per row. The table is plain HTML in an ipywidgets
``HTML``; a click on a header or a row writes ``sort:<column>`` or
``row:<row>`` into a hidden ``Text`` of the same view, which syncs it to the
kernel like any typed text (no front-end extension needed). Everything from
the server is escaped; colours are JupyterLab's CSS variables, so the dark
theme works.

>>> t = Table()
>>> t.show(pd.DataFrame({"subject": ["a", "b"], "n": [2, 1]}), keys=["k1", "k2"])
>>> t.sort_by("n"); t.row_keys
['k2', 'k1']
>>> t.select("k1"); t.selected["subject"]
'a'
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from html import escape
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd
import traitlets

from nbnats.data import frames
from nbnats.data.values import is_missing

DISPLAY_LIMIT = 50      # rows a live view draws (the newest); the core keeps them all
CELL = 80               # characters of one cell shown; the row's JSON has it whole
DETAIL = 200_000        # characters of a row's JSON shown
_GENERATIONS = 8        # renders whose row keys a click may still name (the view redraws while you click)

CSS = """<style>
.nbnats-t{overflow:auto;max-height:32em;border:1px solid var(--jp-border-color2,#8884)}
.nbnats-t table{border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);
 font-size:var(--jp-code-font-size,12px);color:var(--jp-content-font-color1,inherit);
 background:var(--jp-layout-color1,transparent);width:max-content;min-width:100%}
.nbnats-t th{position:sticky;top:0;z-index:1;cursor:pointer;user-select:none;text-align:left;
 background:var(--jp-layout-color2,inherit);color:var(--jp-content-font-color1,inherit);
 border-bottom:1px solid var(--jp-border-color1,#8888);padding:3px 8px;font-weight:600}
.nbnats-t td{padding:2px 8px;border-bottom:1px solid var(--jp-border-color2,#8884);white-space:nowrap;
 max-width:28em;overflow:hidden;text-overflow:ellipsis;cursor:pointer}
.nbnats-t td.num{text-align:right}
.nbnats-t tbody tr:hover td{background:var(--jp-layout-color2,inherit)}
.nbnats-t tbody tr.nbnats-sel td{background:var(--jp-layout-color3,inherit);
 box-shadow:inset 0 1px 0 var(--jp-brand-color1,currentColor),inset 0 -1px 0 var(--jp-brand-color1,currentColor)}
.nbnats-d{color:var(--jp-content-font-color1,inherit);font-size:var(--jp-code-font-size,12px)}
.nbnats-d table{border-collapse:collapse}
.nbnats-d th{text-align:left;padding-right:1em;color:var(--jp-content-font-color2,inherit)}
.nbnats-d pre{max-height:28em;overflow:auto;padding:6px;margin:4px 0;
 background:var(--jp-cell-editor-background,var(--jp-layout-color2,transparent));
 color:var(--jp-content-font-color1,inherit);border:1px solid var(--jp-border-color2,#8884)}
</style>"""

# One handler on the table (event delegation): which header or row was clicked, into the hidden Text.
_PICK = ("var c=event.target.closest('th,tbody tr');if(!c)return;"
         "var v=this.closest('.nbnats-table-view');var i=v&&v.querySelector('.nbnats-channel input');"
         "if(!i)return;i.value=(c.tagName==='TH'?'sort:'+c.cellIndex:'row:'+c.sectionRowIndex)"
         "+':'+this.dataset.gen+':'+Date.now();i.dispatchEvent(new Event('change',{bubbles:true}));")


def cell(value: Any, limit: int = CELL) -> str:
    """One value as a table cell's text (not yet escaped): short, one line.

    >>> cell(pd.Timestamp("2026-01-02 03:04:05.678", tz="UTC")), cell({"a": 1}), cell(b"\\x00"), cell(pd.NA)
    ('2026-01-02 03:04:05.678', '{"a":1}', '<1 bytes>', '')
    """
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value):,} bytes>"
    elif isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M:%S.") + f"{value.microsecond // 1000:03d}"
    elif is_missing(value):
        return ""
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return f"{value:,}"
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pretty_json(value: Any) -> str:
    """A decoded payload as indented JSON (text stays text; bytes are shown as hex).

    >>> print(pretty_json({"a": [1]}))
    {
      "a": [
        1
      ]
    }
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return " ".join(f"{b:02x}" for b in bytes(value)[: DETAIL // 3])
    if isinstance(value, str):
        return value[:DETAIL]
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)[:DETAIL]


def message_payload(frame: pd.DataFrame, pos: int) -> Any:
    """Row ``pos`` of a message frame back to its payload, by the frames' own rules.

    >>> message_payload(frames.build(["s"], [0], [b'{"a": {"b": 1}}']), 0)
    {'a': {'b': 1}}
    """
    return frames.payloads_of(frame.iloc[[pos]])[0]


def _sort_key(col: pd.Series) -> pd.Series:
    if col.dtype == object or str(col.dtype) == "json":      # dicts, bytes, mixed: sort by the text shown
        return col.map(lambda v: "" if is_missing(v) else cell(v, 10_000)).astype(object)
    return col


class Table(w.VBox):
    """A sortable HTML table of a frame with a detail pane for the clicked row.

    ``show(frame, keys)`` draws it (``keys`` identify the rows across redraws);
    ``sort_by(column)`` sorts (again: the other way), ``select(key)`` shows a
    row's JSON. Read back: ``columns``, ``row_keys`` (rows in the order drawn),
    ``drawn`` (the frame in that order), ``sort`` (column, ascending), ``value`` (the selected key), ``selected``
    (the selected row as a dict: its fields, ``headers`` and ``payload``),
    ``selected_json`` (the payload as indented JSON). ``detail`` maps
    ``(frame, position)`` to the payload shown; ``on_change()`` runs after a
    click changed the sort or the selection.
    """

    value = traitlets.Any(None, allow_none=True)

    def __init__(self, detail: Callable[[pd.DataFrame, int], Any] = message_payload,
                 info: tuple[str, ...] = ("subject", "seq", "time", "size"), on_change: Callable | None = None):
        self.html = w.HTML()
        self.detail = w.HTML()
        self.channel = w.Text(continuous_update=False, layout=w.Layout(display="none"))
        self.channel.add_class("nbnats-channel")
        super().__init__([self.html, self.detail])
        self.children = [self.html, self.detail, self.channel]
        self.add_class("nbnats-table-view")
        self._payload, self._info, self.on_change = detail, info, on_change
        self._lock = threading.RLock()
        self.frame = pd.DataFrame()
        self.row_keys: list = []
        self.sort: tuple[str | None, bool] = (None, True)
        self.selected: dict | None = None
        self._gen = 0
        self._drawn: dict[int, tuple[list, list]] = {}      # generation -> (columns, keys) as drawn
        self.channel.observe(self._on_pick, names="value")
        self._selecting = False
        self.observe(lambda change: self._selecting or self.select(change["new"]), names="value")

    # -- state -------------------------------------------------------------------------------------
    @property
    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    @property
    def drawn(self) -> pd.DataFrame:
        """The rows in the order drawn (sorted or as given)."""
        return self._ordered()

    @property
    def generation(self) -> int:
        """How many times the table was drawn; a click names the drawing it was made on."""
        return self._gen

    @property
    def selected_json(self) -> str:
        return "" if self.selected is None else pretty_json(self.selected["payload"])

    @property
    def options(self) -> list[tuple[str, Any]]:
        """The rows as (one line of text, key), in the order drawn."""
        rows = self._ordered()
        return [(" · ".join(cell(v) for v in row), key)
                for row, key in zip(rows.itertuples(index=False), self._ordered_keys(rows))]

    def show(self, frame: pd.DataFrame, keys: list | None = None) -> None:
        """Draw ``frame`` (already cut to the rows to show); ``keys`` default to the row numbers."""
        with self._lock:
            self.frame = frame.reset_index(drop=True)
            self._keys_in = list(range(len(frame))) if keys is None else list(keys)
            if self.sort[0] is not None and self.sort[0] not in self.frame.columns:
                self.sort = (None, True)
            self._draw()

    def sort_by(self, column: str | None, ascending: bool | None = None) -> None:
        """Sort by ``column`` (None: as given); the same column again sorts the other way."""
        with self._lock:
            if column is not None and column not in self.frame.columns:
                return
            if ascending is None:
                ascending = not self.sort[1] if column == self.sort[0] and column is not None else True
            self.sort = (column, ascending)
            self._draw()

    def select(self, key: Any) -> None:
        """Show the row ``key``: its fields, headers and payload as indented JSON (None: nothing)."""
        with self._lock:
            if key is None:
                self.selected = None
            elif key in self._keys_in:
                pos = self._keys_in.index(key)
                self.selected = self._row(pos)
            else:
                return
            self._selecting = True          # setting value below must not select (and draw) twice
            try:
                self.value = key
            finally:
                self._selecting = False
            self._draw()
            self.detail.value = detail_html(self.selected)

    def _row(self, pos: int) -> dict:
        row = self.frame.iloc[pos]
        fields = {c: row[c] for c in self._info if c in self.frame.columns and not is_missing(row[c])}
        headers = row["headers"] if "headers" in self.frame.columns else None
        return {**fields, "headers": headers if isinstance(headers, dict) else None,
                "payload": self._payload(self.frame, pos)}

    def _on_pick(self, change) -> None:
        """A click in the browser: ``sort:<column>:<generation>:<nonce>`` or ``row:<row>:…``."""
        try:
            kind, index, gen, _ = str(change["new"]).split(":", 3)
            columns, keys = self._drawn[int(gen)]
            if kind == "sort":
                self.sort_by(columns[int(index)])
            elif kind == "row":
                self.select(keys[int(index)])
        except (ValueError, KeyError, IndexError):
            return               # a click on a table redrawn long ago, or junk typed into the channel
        if self.on_change is not None:
            self.on_change()

    # -- drawing -----------------------------------------------------------------------------------
    def _ordered(self) -> pd.DataFrame:
        column, ascending = self.sort
        if column is None or self.frame.empty:
            return self.frame
        try:
            return self.frame.sort_values(column, ascending=ascending, na_position="last", kind="stable",
                                          key=_sort_key)
        except TypeError:
            return self.frame.sort_values(column, ascending=ascending, na_position="last", kind="stable",
                                          key=lambda c: c.map(lambda v: cell(v, 10_000)))

    def _ordered_keys(self, rows: pd.DataFrame) -> list:
        return [self._keys_in[i] for i in rows.index]

    def _draw(self) -> None:
        rows = self._ordered()
        self.row_keys = self._ordered_keys(rows)
        self._gen += 1
        self._drawn[self._gen] = (self.columns, self.row_keys)
        self._drawn.pop(self._gen - _GENERATIONS, None)
        self.html.value = table_html(rows, self.sort, self.row_keys, self.value, self._gen)


def table_html(rows: pd.DataFrame, sort: tuple[str | None, bool] = (None, True), keys: list | None = None,
               selected: Any = None, generation: int = 0) -> str:
    """The table's HTML: escaped headers (▲/▼ on the sorted one) and cells, the selected row marked.

    >>> "&lt;b&gt;" in table_html(pd.DataFrame({"<b>": ["<b>"]}))
    True
    """
    column, ascending = sort
    numeric = [pd.api.types.is_numeric_dtype(rows[c]) and not pd.api.types.is_bool_dtype(rows[c])
               for c in rows.columns]
    head = "".join(
        f"<th title='sort by {escape(str(c), quote=True)}'>{escape(str(c))}"
        f"{(' ▲' if ascending else ' ▼') if c == column else ''}</th>" for c in rows.columns)
    body = []
    for row, key in zip(rows.itertuples(index=False), keys if keys is not None else range(len(rows))):
        cells = "".join(f"<td class='num'>{escape(cell(v))}</td>" if num else f"<td>{escape(cell(v))}</td>"
                        for v, num in zip(row, numeric))
        mark = " class='nbnats-sel'" if selected is not None and key == selected else ""
        body.append(f"<tr{mark}>{cells}</tr>")
    return (f"{CSS}<div class='nbnats-t'><table class='nbnats-table' data-gen='{generation}' "
            f"onclick=\"{escape(_PICK, quote=True)}\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>")


def detail_html(row: dict | None) -> str:
    """A selected row: its fields, its headers and its payload as indented JSON, all escaped.

    >>> "&lt;x&gt;" in detail_html({"subject": "<x>", "headers": None, "payload": {"a": 1}})
    True
    """
    if row is None:
        return ""
    fields = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_exact(v))}</td></tr>"
                     for k, v in row.items() if k not in ("headers", "payload"))
    headers = row.get("headers") or {}
    hdrs = ("<b>headers</b><table>" + "".join(
        f"<tr><th>{escape(str(k))}</th><td>{escape(', '.join(map(str, v)) if isinstance(v, list) else str(v))}"
        f"</td></tr>" for k, v in headers.items()) + "</table>") if headers else ""
    return (f"<div class='nbnats-d'>{CSS}<table>{fields}</table>{hdrs}"
            f"<pre>{escape(pretty_json(row['payload']))}</pre></div>")


def _exact(v: Any) -> str:
    return v.isoformat() if isinstance(v, pd.Timestamp) else cell(v, 10_000)


__all__ = ["DISPLAY_LIMIT", "Table", "cell", "detail_html", "message_payload", "pretty_json", "table_html"]
