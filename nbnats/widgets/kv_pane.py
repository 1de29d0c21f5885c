"""The KV editor's widgets and their layout, and how a value becomes editable text and back.

>>> from_text('{"a": 2}', "json")
{'a': 2}
"""

from __future__ import annotations

from typing import Any

from html import escape

import ipywidgets as w
import orjson

from nbnats.errors import ValidationError
from nbnats.kv.frame import Entry, preview

MAX_TEXT = 1_000_000    # characters: a longer value is shown read-only, never edited (or saved) in part


def to_text(entry: Entry) -> tuple[str, str]:
    """(text shown in the editor, kind) where kind is json, text or bytes.

    >>> to_text(Entry("b", "k", b'{"a":1}', 1, 0))
    ('{\\n  "a": 1\\n}', 'json')
    """
    value = entry.value
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode(), "json"
    if isinstance(value, bytes):
        return f"<{len(value):,} binary bytes: not editable here>", "bytes"
    return ("" if value is None else value), "text"


def from_text(text: str, kind: str) -> Any:
    """The value to store for what was typed: JSON objects/arrays stay JSON, else text.

    >>> from_text('{"a": 2}', "json"), from_text("hi", "text")
    ({'a': 2}, 'hi')
    """
    if kind == "json" or text.lstrip()[:1] in ("{", "["):
        try:
            value = orjson.loads(text)
            if isinstance(value, (dict, list)):
                return value
        except orjson.JSONDecodeError as exc:
            if kind == "json":
                raise ValidationError(f"the value is not valid JSON ({exc})",
                                      "fix it (or Reload to start over) before saving") from None
        if kind == "json":
            raise ValidationError("the value was JSON and is no longer an object or array",
                                  "keep it a JSON object/array, or delete the key and add it again as text")
    return text


class EditorLayout(w.VBox):
    """The editor's widgets: filter, pages, key list, key and value boxes, buttons, status, history."""

    def _build(self) -> None:
        L = w.Layout
        self.header = w.HTML()
        self.filter = w.Text(placeholder="filter keys: text, or a pattern like user.*", layout=L(width="300px"))
        self.show_deleted = w.Checkbox(description="deleted keys", indent=False, layout=L(width="120px"))
        self.prev_button = w.Button(icon="chevron-left", tooltip="previous page", layout=L(width="40px"))
        self.next_button = w.Button(icon="chevron-right", tooltip="next page", layout=L(width="40px"))
        self.page_label = w.HTML()
        self.key_list = w.Select(options=[], rows=14, layout=L(width="360px"))
        self.key_box = w.Text(placeholder="key, e.g. user.123", layout=L(width="auto"))
        self.info = w.HTML()
        self.value_box = w.Textarea(layout=L(width="auto", height="220px"))
        self.save_button = w.Button(description="Save", icon="save", button_style="primary", layout=L(width="90px"))
        self.add_button = w.Button(description="Add", icon="plus", tooltip="create the key in the key box",
                                   layout=L(width="80px"))
        self.delete_button = w.Button(description="Delete", icon="trash", layout=L(width="90px"))
        self.reload_button = w.Button(description="Reload", icon="refresh", layout=L(width="90px"))
        self.history_button = w.ToggleButton(description="History", icon="history", layout=L(width="95px"))
        self.overwrite_button = w.Button(description="Overwrite theirs", button_style="danger",
                                         layout=L(width="140px", display="none"))
        self.status = w.HTML()
        self.history_table = w.HTML()
        self.revisions = w.Dropdown(options=[], description="revision", layout=L(width="200px"))
        self.revert_button = w.Button(description="Revert", icon="undo", layout=L(width="90px"))
        self.history_box = w.VBox([w.HBox([self.revisions, self.revert_button]), self.history_table],
                                  layout=L(display="none"))

        nav = w.HBox([self.filter, self.prev_button, self.page_label, self.next_button, self.show_deleted])
        buttons = w.HBox([self.save_button, self.add_button, self.delete_button, self.reload_button,
                          self.history_button, self.overwrite_button])
        pane = w.VBox([self.key_box, self.info, self.value_box, buttons, self.status, self.history_box],
                      layout=L(flex="1 1 0%", min_width="320px", margin="0 0 0 8px"))
        super().__init__([self.header, nav, w.HBox([self.key_list, pane])])

    def _fill_history(self, df) -> None:
        """Show a key's history (a KV frame) in the table and its earlier revisions in the dropdown."""
        rows = "".join(
            f"<tr><td>{r.revision}</td><td>{r.created.strftime('%Y-%m-%d %H:%M:%S')}</td>"
            f"<td>{r.operation}</td><td><code>{escape(preview(r.value, 80))}</code></td></tr>"
            for r in df.iloc[::-1].itertuples())
        self.history_table.value = ("<table style='font-size:12px'><tr><th>rev</th><th>created (UTC)</th>"
                                    f"<th>op</th><th>value</th></tr>{rows}</table>")
        current = int(df["revision"].iloc[-1])
        options = [(f"{int(r.revision)} · {r.operation}", int(r.revision)) for r in df.iloc[::-1].itertuples()
                   if int(r.revision) != current]
        self.revisions.options = options
        self.revisions.value = options[0][1] if options else None


__all__ = ["MAX_TEXT", "EditorLayout", "from_text", "to_text"]
