"""How a verb's frame is handed back: as pandas (at most ``display_limit`` rows shown), Arrow or Polars.

``%config NatsMagic.display_limit = 50`` and ``%config NatsMagic.output = "arrow"`` set it for the
session; the value a cell returns always holds every row — only its display is cut.

>>> import pandas as pd
>>> shown = present(pd.DataFrame({"n": range(100)}), display_limit=3, output="pandas")
>>> len(shown), "97 more rows" in shown._repr_html_()
(100, True)
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data.outputs import OUTPUTS, as_output  # noqa: F401  (OUTPUTS: the magics' Enum)
from nbnats.errors import ValidationError


class Shown(pd.DataFrame):
    """A frame whose notebook display stops at ``display_limit`` rows; any operation gives a plain DataFrame."""

    _metadata = ["display_limit"]

    @property
    def _constructor(self):
        return pd.DataFrame

    def _note(self) -> str:
        return f"… {len(self) - self.display_limit:,} more rows ({len(self):,} in all; NatsMagic.display_limit)"

    def _repr_html_(self) -> str:
        return pd.DataFrame(self.head(self.display_limit))._repr_html_() + f"<p>{self._note()}</p>"

    def __repr__(self) -> str:
        return repr(pd.DataFrame(self.head(self.display_limit))) + "\n" + self._note()


def present(result: Any, display_limit: int, output: str) -> Any:
    """``result`` as the session's settings want it shown (anything but a plain frame passes through)."""
    if type(result) is not pd.DataFrame:          # listings, infos, tails … display themselves
        return result
    if output != "pandas":
        try:
            return as_output(result, output)
        except ValidationError:
            raise ValidationError(f"NatsMagic.output is {output!r}, but polars is not installed",
                                  "pip install polars, or %config NatsMagic.output = 'pandas'") from None
    if display_limit and len(result) > display_limit:
        shown = Shown(result)
        shown.display_limit = display_limit
        shown.attrs = dict(result.attrs)
        return shown
    return result
