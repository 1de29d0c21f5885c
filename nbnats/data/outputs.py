"""A frame as pandas, Arrow or Polars: one conversion for every verb that takes ``output=``.

The columns are the same in all three; Arrow keeps nanosecond times, ``json``
columns become JSON text, and ``headers`` a map of strings (every row's keys
differ, so a struct would not do).

>>> import pandas as pd
>>> as_output(pd.DataFrame({"n": [1, 2]}), "arrow").column_names
['n']
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import pyarrow as pa

from nbnats.errors import ValidationError

OUTPUTS = ("pandas", "arrow", "polars")
HEADERS = pa.map_(pa.string(), pa.string())


def check(output: str, what: str = "output") -> str:
    """``output`` if it is one of :data:`OUTPUTS` (and installed), else one plain sentence.

    >>> check("arrow")
    'arrow'
    """
    if output not in OUTPUTS:
        raise ValidationError(f"{what} must be one of pandas, arrow or polars, not {output!r}",
                              f"pass {what}='pandas' (or 'arrow', 'polars')")
    if output == "polars":
        polars()
    return output


def polars():
    """The polars module, or a sentence saying how to install it."""
    try:
        import polars as pl
    except ModuleNotFoundError:
        raise ValidationError("output='polars' needs polars, which is not installed",
                              "pip install polars (or nbnats[polars]), or use output='pandas' or 'arrow'") from None
    return pl


def to_arrow(df: pd.DataFrame) -> pa.Table:
    """The frame as an Arrow table with the same columns (headers as a map of strings).

    >>> to_arrow(pd.DataFrame({"headers": [{"A": "1"}, None]})).schema.field("headers").type
    MapType(map<string, string>)
    """
    table = pa.Table.from_pandas(df.drop(columns=["headers"]) if "headers" in df else df, preserve_index=False)
    if "headers" in df:
        cells = [None if not isinstance(h, dict) else [(str(k), str(v)) for k, v in h.items()]
                 for h in df["headers"].tolist()]
        table = table.add_column(list(df.columns).index("headers"), "headers", pa.array(cells, HEADERS))
    return table


def as_output(df: pd.DataFrame, output: str) -> Any:
    """``df`` as pandas (itself), a ``pyarrow.Table`` or a ``polars.DataFrame``.

    >>> as_output(pd.DataFrame({"n": [1]}), "pandas")["n"].tolist()
    [1]
    """
    if output == "pandas":
        return df
    table = to_arrow(df)
    return polars().from_arrow(table) if output == "polars" else table
