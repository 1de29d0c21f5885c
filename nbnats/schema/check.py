"""Checking frames against their subjects' registered schemas.

>>> nbnats.schema.check(df)   # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from nbnats.data import validate as rules
from nbnats.errors import NatsError
from nbnats.schema.documents import _document, _Entry, _sentence, _violation
from nbnats.schema.inference import _observe, _source
from nbnats.schema.registry import _all




def check(source: Any = None, schema: Any = None, subject: str | None = None,
          stream: str | None = None, limit: int = 1000, connection: str | None = None) -> pd.DataFrame:
    """The rows of a frame (or tail, or ``stream``) that break their subject's schema, and why.

    Each row's subject picks the registered schemas that match it (rows with
    none are fine); with ``schema`` every row is checked against that one.
    The result keeps the rows' columns and adds ``pattern``, ``field``,
    ``rule``, ``error`` and ``problems`` (how many rules the row breaks).

    >>> bad = nbnats.schema.check(nbnats.replay("ORDERS"))   # doctest: +SKIP
    """
    obs = _observe(_source(source, stream, limit, connection), subject)
    if schema is not None:
        doc = _document(schema)
        fixed = [_Entry("(given)", doc)]

        def pick(s: str | None) -> list[_Entry]:
            return fixed
    else:
        if obs.frame is not None and "subject" not in obs.frame.columns:
            raise NatsError("the frame has no subject column to pick each row's schema",
                            "pass the schema to check against: check(df, schema=...)")
        entries = list(_all(connection).values())
        cache: dict[str, list[_Entry]] = {}

        def pick(s: str | None) -> list[_Entry]:
            if not s:
                return []
            if s not in cache:
                cache[s] = [e for e in entries if rules.subject_matches(e.pattern, s)]
            return cache[s]
    bad_rows: list[int] = []
    extra: list[dict] = []
    for i, (subj, value, error) in enumerate(zip(obs.subjects, obs.values, obs.errors)):
        for entry in pick(subj):
            if error is not None:
                problems = [("(payload)", "decode", f"the payload could not be decoded: {error}")]
            else:
                problems = _violation(entry, value)
            if problems:
                field, rule, _ = problems[0]
                bad_rows.append(i)
                extra.append({"pattern": entry.pattern, "field": field, "rule": rule,
                              "error": _sentence(problems), "problems": len(problems)})
                break
    frame = obs.frame if obs.frame is not None else pd.DataFrame({"value": obs.values})
    out = frame.iloc[bad_rows].reset_index(drop=True)
    report = pd.DataFrame(extra, columns=["pattern", "field", "rule", "error", "problems"])
    out = pd.concat([out, report], axis=1)
    out.index = pd.Index(bad_rows, name="row")
    return out
