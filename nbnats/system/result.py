"""A DataFrame that also says one line about itself and draws itself: what bench and trace return.

It is a pandas DataFrame (indexing, ``to_parquet``, ``isinstance`` all work);
``note`` is the sentence shown above the table, ``figure`` a plotly figure built
on first use (plotly is imported only then). Any operation on it gives a plain
DataFrame.

>>> r = Result({"n": [1]}); r.attrs["note"] = "one row"; r.note
'one row'
"""

from __future__ import annotations

import html

import pandas as pd


class Result(pd.DataFrame):
    """A frame with ``note`` (one sentence) and ``figure`` (drawn by the subclass's ``_draw``)."""

    _metadata: list[str] = []

    @property
    def _constructor(self):
        return pd.DataFrame

    @property
    def note(self) -> str:
        """The sentence that sums the frame up."""
        return self.attrs.get("note", "")

    @property
    def figure(self):
        """A plotly figure of the frame (plotly is imported on first use)."""
        return self._draw(pd.DataFrame(self))

    def _draw(self, df: pd.DataFrame):
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.note)}</p>" + pd.DataFrame(self)._repr_html_()

    def __repr__(self) -> str:
        return f"{self.note}\n{pd.DataFrame(self)!r}" if self.note else repr(pd.DataFrame(self))


def typed(cls: type[Result], df: pd.DataFrame, note: str, **attrs) -> Result:
    """``df`` as a ``cls`` with its ``note`` and other attrs (JSON-friendly, so Parquet keeps them).

    >>> typed(Result, pd.DataFrame({"n": [1]}), "one row").note
    'one row'
    """
    out = cls(df)
    out.attrs = {**df.attrs, **attrs, "note": note}
    return out
