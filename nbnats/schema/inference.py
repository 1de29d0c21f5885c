"""Inferring a JSON Schema from observed messages: types, required keys, nested objects, drift.

``infer`` reads a tail, a frame, a stream or a list of values and returns a
JSON Schema with a ``drift`` report: keys that changed type, keys that appear
only sometimes.

>>> s = nbnats.schema.infer(t)   # doctest: +SKIP
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import warnings
from collections import Counter
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import orjson
import pandas as pd

from nbnats.data import codecs, frames
from nbnats.data import validate as rules
from nbnats.engine import api
from nbnats.errors import NatsError
from nbnats.runtime import loop
from nbnats.runtime.connection import current


DRAFT = "https://json-schema.org/draft/2020-12/schema"
ENUM_MAX = 10               # at most this many distinct strings become an enum
_ENUM_TRACK = 64            # stop counting distinct strings past this


# -- inference ----------------------------------------------------------------------
class InferredSchema(dict):
    """A JSON Schema dict, plus what inference saw: ``drift`` (DataFrame), ``messages``, ``pattern``.

    ``pattern`` is a subject pattern covering the observed subjects (or None).
    """

    drift: pd.DataFrame
    messages: int
    pattern: str | None

    def _repr_html_(self) -> str:
        from html import escape
        body = escape(orjson.dumps(dict(self), option=orjson.OPT_INDENT_2).decode())
        drift = self.drift.to_html(index=False) if len(self.drift) else "<i>no drift</i>"
        return (f"<div><b>schema inferred from {self.messages:,} messages</b>"
                f"{' for ' + escape(self.pattern) if self.pattern else ''}"
                f"<pre style='max-height:24em;overflow:auto'>{body}</pre><b>drift</b>{drift}</div>")


class _Node:
    """What was seen at one place in the payloads: types (count, first row, last row) and details."""

    __slots__ = ("types", "rows", "on", "props", "items", "strings", "lo", "hi")

    def __init__(self):
        self.types: dict[str, list[int]] = {}
        self.rows: list[int] = []           # the rows where this node was an object
        self.on: Counter = Counter()        # how often it was seen, by subject
        self.props: dict[str, _Node] = {}
        self.items: _Node | None = None
        self.strings: dict[str, int] | None = {}
        self.lo = self.hi = None

    def add(self, v: Any, row: int, subject: str | None = None) -> None:
        self.on[subject] += 1
        t = _json_type(v)
        seen = self.types.get(t)
        if seen is None:
            self.types[t] = [1, row, row]
        else:
            seen[0] += 1
            seen[2] = row
        if t == "object":
            self.rows.append(row)
            for k, x in v.items():           # keys are str: values pass through _norm first
                child = self.props.get(k)
                if child is None:
                    child = self.props[k] = _Node()
                child.add(x, row, subject)
        elif t == "array":
            if self.items is None:
                self.items = _Node()
            for x in v:
                self.items.add(x, row, subject)
        elif t == "string":
            if self.strings is not None:
                self.strings[v] = self.strings.get(v, 0) + 1
                if len(self.strings) > _ENUM_TRACK:
                    self.strings = None
        elif t in ("integer", "number"):
            if self.lo is None or v < self.lo:
                self.lo = v
            if self.hi is None or v > self.hi:
                self.hi = v

    def presence(self) -> tuple[int, int, int]:
        counts = self.types.values()
        return sum(c[0] for c in counts), min(c[1] for c in counts), max(c[2] for c in counts)


_TYPE_ORDER = ["object", "array", "string", "integer", "number", "boolean", "null"]


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    return "array"


def _norm(v: Any) -> Any:
    """A decoded or frame value as plain JSON types (numpy, timestamps and bytes converted)."""
    if v is None or isinstance(v, (str, bool, int)):
        return v
    if isinstance(v, float):
        return None if v != v else v
    if isinstance(v, dict):
        return {str(k): _norm(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_norm(x) for x in v]
    if isinstance(v, np.generic):
        return _norm(v.item())
    if isinstance(v, (dt.datetime, dt.date, pd.Timestamp)):
        return v.isoformat()
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode("ascii")
    if v is pd.NA or v is pd.NaT:
        return None
    return str(v)


class _Observed(NamedTuple):
    subjects: list[str | None]
    times: list[int | None]          # ns since the epoch
    values: list[Any]                # the decoded payloads (plain JSON types)
    errors: list[str | None]         # why a payload could not be decoded
    frame: pd.DataFrame | None       # the rows, for check() to return


def infer(source: Any = None, subject: str | None = None, enums: bool = False, ranges: bool = False,
          enum_max: int = ENUM_MAX, stream: str | None = None, limit: int = 1000,
          connection: str | None = None) -> InferredSchema:
    """Infer a JSON Schema from a tail, a message frame, a list of values, or a stream.

    Types, required keys (present in every message) and nested objects; on
    request also enums for small categorical string sets (``enums=True``) and the
    observed number ranges (``ranges=True``) — off by default, since a sample's
    values and ranges would refuse the next valid message. ``subject`` keeps only rows whose
    subject matches that pattern; ``stream=NAME`` reads that stream's last
    ``limit`` messages instead of ``source``. The result's ``drift`` lists keys
    that changed type, appeared, disappeared or appear only sometimes.

    >>> s = infer([{"id": 1, "status": "new"}, {"id": 2, "status": "new"},
    ...            {"id": "3", "status": "paid"}, {"id": "4", "status": "paid"}])
    >>> s["properties"]["status"]["enum"], s["required"]
    (['new', 'paid'], ['id', 'status'])
    >>> s.drift[["field", "kind"]].values.tolist()
    [['id', 'type changed']]
    """
    obs = _observe(_source(source, stream, limit, connection), subject)
    root = _Node()
    undecodable: list[int] = []
    for row, (value, error) in enumerate(zip(obs.values, obs.errors)):
        if error is not None:
            undecodable.append(row)
        else:
            root.add(value, row, obs.subjects[row])
    drift: list[dict] = []
    ctx = _Ctx(obs.times, enums, ranges, enum_max)
    body = _to_schema(root, "", drift, ctx) if root.types else {}
    if undecodable:
        first = undecodable[0]
        drift.append({"field": "(payload)", "kind": "undecodable", "messages": len(undecodable),
                      "detail": f"{len(undecodable)} payloads could not be decoded, first at "
                                f"{ctx.where(first)}: {obs.errors[first]}"})
    subjects = sorted({s for s in obs.subjects if s})
    pattern = _cover(subjects)
    n = len(obs.values) - len(undecodable)
    out = InferredSchema({"$schema": DRAFT,
                          "description": f"inferred by nbnats from {n:,} messages"
                                         + (f" on {pattern}" if pattern else ""),
                          **body})
    out.drift = pd.DataFrame(drift, columns=["field", "kind", "messages", "detail"])
    out.messages = n
    out.pattern = pattern
    return out


class _Ctx:
    def __init__(self, times: list[int | None], enums: bool, ranges: bool, enum_max: int):
        self.times, self.enums, self.ranges, self.enum_max = times, enums, ranges, enum_max

    def where(self, row: int) -> str:
        ns = self.times[row] if row < len(self.times) else None
        when = f" ({pd.Timestamp(ns, unit='ns', tz='UTC').isoformat(timespec='milliseconds')})" if ns else ""
        return f"message {row}{when}"


def _to_schema(node: _Node, path: str, drift: list[dict], ctx: _Ctx) -> dict:
    seen = node.types
    kinds = [t for t in _TYPE_ORDER if t in seen and t != "null"]
    if "integer" in kinds and "number" in kinds:
        kinds.remove("integer")
    field = path or "(payload)"
    if len(kinds) > 1:
        drift.append({"field": field, "kind": "type changed", "messages": sum(c[0] for c in seen.values()),
                      "detail": _type_story(seen, ctx)})
    if "null" in seen and kinds:
        drift.append({"field": field, "kind": "sometimes null", "messages": seen["null"][0],
                      "detail": f"null in {seen['null'][0]} of {sum(c[0] for c in seen.values())} messages"})
    types = kinds + (["null"] if "null" in seen else [])
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    if "object" in kinds:
        props: dict[str, Any] = {}
        required: list[str] = []
        n_objects = seen["object"][0]
        for key, child in node.props.items():
            sub = f"{path}.{key}" if path else key
            props[key] = _to_schema(child, sub, drift, ctx)
            count, first, last = child.presence()
            if count >= n_objects:
                required.append(key)
            else:
                drift.append(_presence(sub, node, child, ctx))
        out["properties"] = props
        if required:
            out["required"] = required
    if "array" in kinds and node.items is not None and node.items.types:
        out["items"] = _to_schema(node.items, f"{path}[]", drift, ctx)
    if ctx.enums and kinds == ["string"] and node.strings:
        n, distinct = seen["string"][0], len(node.strings)
        if distinct <= ctx.enum_max and n >= 2 * distinct:
            out["enum"] = sorted(node.strings) + ([None] if "null" in seen else [])
    if ctx.ranges and node.lo is not None:
        out["minimum"], out["maximum"] = node.lo, node.hi
    return out


def _type_story(seen: dict[str, list[int]], ctx: _Ctx) -> str:
    spans = sorted(((t, c) for t, c in seen.items() if t != "null"), key=lambda tc: tc[1][1])
    ordered = all(a[1][2] < b[1][1] for a, b in zip(spans, spans[1:]))
    if ordered:
        steps = [f"{b[0]} from {ctx.where(b[1][1])}" for b in spans[1:]]
        return f"was {spans[0][0]} ({spans[0][1][0]}×), then " + ", then ".join(steps)
    return "mixed: " + ", ".join(f"{t} ×{c[0]}" for t, c in spans)


def _presence(field: str, parent: _Node, child: _Node, ctx: _Ctx) -> dict:
    """How a key that is not always there comes and goes: by subject, appearing, dropped, or now and then."""
    count, first, last = child.presence()
    rows = parent.rows
    total = len(rows)
    in_span = bisect.bisect_right(rows, last) - bisect.bisect_left(rows, first)
    subjects = sorted(s for s in child.on if s)
    if subjects and None not in child.on and len(subjects) < len([s for s in parent.on if s]) \
            and all(child.on[s] == parent.on[s] for s in subjects):
        kind, detail = "by subject", f"always on {', '.join(subjects)}, never on the other subjects"
    elif count >= in_span and last == rows[-1]:
        kind, detail = "new key", f"appears from {ctx.where(first)} on"
    elif count >= in_span and first == rows[0]:
        kind, detail = "dropped key", f"absent after {ctx.where(last)}"
    else:
        kind, detail = "sometimes present", "present in some messages only"
    return {"field": field, "kind": kind, "messages": count,
            "detail": f"{detail} (in {count} of {total} messages)"}


def _cover(subjects: list[str]) -> str | None:
    """The narrowest simple pattern covering every subject: itself, or a common prefix + '>'."""
    if not subjects:
        return None
    if len(subjects) == 1:
        return subjects[0]
    split = [s.split(".") for s in subjects]
    prefix: list[str] = []
    for tokens in zip(*split):
        if len(set(tokens)) != 1:
            break
        prefix.append(tokens[0])
    lengths = {len(t) for t in split}
    if len(lengths) == 1 and len(prefix) == min(lengths) - 1:
        return ".".join(prefix + ["*"])
    return ".".join(prefix[: min(lengths) - 1] + [">"])    # '>' needs a token after the prefix


# -- reading sources ------------------------------------------------------------------
def _decode_default(data: bytes) -> Any:
    """JSON first; else UTF-8 text; else bytes (what a frame's default decoding shows)."""
    if not data:
        return None
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(data)


def _decode_payload(subject: str | None, data: bytes, codec: Any = None) -> Any:
    chosen = codec if codec is not None else (codecs.for_subject(subject) if subject else None)
    if chosen is None or (chosen.name == "json" and codec is None):
        return _decode_default(data)
    return chosen.decode(data)


def _source(source: Any, stream: str | None, limit: int, connection: str | None) -> Any:
    if stream is None:
        if source is None:
            raise NatsError("there is nothing to read messages from",
                            "pass a tail, a DataFrame or a list of values, or stream='NAME'")
        return source
    if source is not None:
        raise NatsError("both a source and a stream were given", "pass one of them")
    return _stream_frame(stream, limit, connection)


def _observe(source: Any, subject: str | None = None) -> _Observed:
    if subject is not None:
        rules.subject(subject, what="subject pattern")
    if isinstance(source, pd.DataFrame):
        obs = _from_frame(source)
    elif hasattr(source, "records") and hasattr(source, "codec"):     # a Tail
        obs = _from_records(source.records(), source.codec)
    elif isinstance(source, (str, bytes, dict)) or not isinstance(source, Iterable):
        raise NatsError(f"cannot read messages from a {type(source).__name__}",
                        "pass a tail, a DataFrame from a tail/replay, or a list of payload values")
    else:
        values = [_norm(v) for v in source]
        obs = _Observed([None] * len(values), [None] * len(values), values, [None] * len(values), None)
    if subject is None or obs.frame is None:
        return obs
    keep = [i for i, s in enumerate(obs.subjects) if s and rules.subject_matches(subject, s)]
    return _Observed([obs.subjects[i] for i in keep], [obs.times[i] for i in keep],
                     [obs.values[i] for i in keep], [obs.errors[i] for i in keep],
                     obs.frame.iloc[keep].reset_index(drop=True))


def _from_records(records: list[tuple], codec: Any = None) -> _Observed:
    """Raw tail records (subject, time_ns, seq, data, headers): exact values, straight from the bytes."""
    values: list[Any] = []
    errors: list[str | None] = []
    for subj, _, _, data, _ in records:
        try:
            values.append(_norm(_decode_payload(subj, data, codec)))
            errors.append(None)
        except Exception as exc:
            values.append(None)
            errors.append(str(exc))
    if records:
        subjects, times, seqs, payloads, headers = zip(*records)
        frame = frames.build(subjects, times, payloads, headers, seqs,
                             decode=codec.decode_for if codec is not None else None)
    else:
        subjects, times, frame = (), (), frames.build([], [], [], [], [])
    return _Observed(list(subjects), list(times), values, errors, frame)


def _from_frame(df: pd.DataFrame) -> _Observed:
    """A message frame back to payloads (the '.' flattening undone, ints with gaps ints again)."""
    n = len(df)
    errs = df["decode_error"].tolist() if "decode_error" in df.columns else [None] * n
    values = [None if isinstance(e, str) else _norm(v) for v, e in zip(frames.payloads_of(df), errs)]
    errors = [e if isinstance(e, str) else None for e in errs]
    subjects = df["subject"].tolist() if "subject" in df.columns else [None] * n
    if "time" in df.columns and pd.api.types.is_datetime64_any_dtype(df["time"]):
        times = [None if t is pd.NaT else int(t.value) for t in df["time"]]
    else:
        times = [None] * n
    return _Observed(subjects, times, values, errors, df.reset_index(drop=True))


def _stream_frame(stream: str, limit: int = 1000, connection: str | None = None) -> pd.DataFrame:
    """The last ``limit`` messages of a stream as the standard frame (a replay: consumes nothing).

    >>> nbnats.schema._stream_frame("ORDERS", limit=500)   # doctest: +SKIP
    """
    from nbnats.jetstream.replay import ReplayWarning, replay
    rules.name(stream, "stream")
    conn = current(connection)
    info = loop.run(api.request(conn, f"STREAM.INFO.{stream}", what=f"reading stream {stream!r}", stream=stream),
                    api.TIMEOUT + 2, f"reading stream {stream!r}")
    state = info["state"]
    if not state.get("messages"):
        return frames.build([], [], [], [], [])
    first = max(state["first_seq"], state["last_seq"] - limit + 1)
    with warnings.catch_warnings():          # messages deleted inside the range are simply not there
        warnings.simplefilter("ignore", ReplayWarning)
        return replay(stream, start_seq=first, end_seq=state["last_seq"], progress=False, connection=conn.name)
