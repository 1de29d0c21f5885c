"""Event schemas: infer a JSON Schema from observed messages, share it on the server, enforce it.

``infer`` reads a tail, a frame or a list of values and returns a JSON Schema
(types, required keys, nested objects, enums for small categorical sets,
number ranges) with a ``drift`` report: keys that changed type, keys that
appear only sometimes. ``register(pattern, schema)`` stores it in the KV
bucket ``nbnats_schemas`` on the server, so every notebook connected to it
shares it; from then on ``publish`` to a matching subject refuses a payload
that breaks it, naming the field and the rule. ``check`` lists the rows of a
frame that break their subject's schema. Validation is the ``jsonschema``
library's.

How registrations reach other notebooks: each connection keeps a local copy
of the registered schemas and keeps it fresh with a *watcher* — a plain
subscription to the bucket's subject ``$KV.nbnats_schemas.>``, which sees
every put and delete from any client (even before the bucket exists) — and
re-reads the bucket after a reconnect. A registration made elsewhere applies
here one network hop later.

>>> s = nbnats.schema.infer(t)                         # doctest: +SKIP
>>> nbnats.schema.register("orders.>", s)              # doctest: +SKIP
>>> nbnats.publish("orders.created", {"id": "x"})      # doctest: +SKIP
SchemaError: the message for 'orders.created' breaks the schema for 'orders.>': field 'id': 'x' is not of type 'integer' (rule 'type') — ...
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import logging
import threading
import time
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
from nbnats.errors import NatsError, NotFound, SchemaError
from nbnats.kv.bucket import KV
from nbnats.kv.frame import KV_OP, operation
from nbnats.kv.manage import open_bucket, stream_info
from nbnats.runtime import loop
from nbnats.runtime.connection import Connection, current
from nbnats.schema import hooks as schema_hooks

log = logging.getLogger("nbnats")

BUCKET = "nbnats_schemas"
DRAFT = "https://json-schema.org/draft/2020-12/schema"
ENUM_MAX = 10               # at most this many distinct strings become an enum
_ENUM_TRACK = 64            # stop counting distinct strings past this
_RETRY_LOAD = 5.0           # seconds before a failed read of the bucket is tried again


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


def infer(source: Any = None, subject: str | None = None, enums: bool = True, ranges: bool = True,
          enum_max: int = ENUM_MAX, stream: str | None = None, limit: int = 1000,
          connection: str | None = None) -> InferredSchema:
    """Infer a JSON Schema from a tail, a message frame, a list of values, or a stream.

    Types, required keys (present in every message), nested objects, enums for
    small categorical string sets (``enums=False`` to skip) and the observed
    number ranges (``ranges=False`` to skip). ``subject`` keeps only rows whose
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


# -- documents and validation -------------------------------------------------------------------
# jsonschema is imported only where a schema is checked or compiled: with the optional format
# checkers installed beside JupyterLab its import takes seconds, which neither ``import nbnats``
# nor the loop thread (reading the bucket) should pay.
def _jsonschema():
    import jsonschema
    return jsonschema


class _Entry:
    """A registered schema; its validator is compiled on first use (in the caller's thread)."""

    __slots__ = ("pattern", "schema", "revision", "updated", "_validator")

    def __init__(self, pattern: str, schema: dict, revision: int | None = None, updated: str | None = None):
        self.pattern, self.schema, self.revision, self.updated = pattern, schema, revision, updated
        self._validator = None

    @property
    def validator(self):
        if self._validator is None:
            js = _jsonschema()
            self._validator = js.validators.validator_for(self.schema, default=js.Draft202012Validator)(self.schema)
        return self._validator


def _document(schema: Any) -> dict:
    """A schema as a checked JSON-serialisable dict, or a SchemaError saying what is wrong."""
    if isinstance(schema, (str, bytes)):
        try:
            schema = orjson.loads(schema)
        except orjson.JSONDecodeError as exc:
            raise SchemaError(f"the schema is not valid JSON ({exc})",
                              "pass a dict, or JSON text of an object") from None
    if not isinstance(schema, dict):
        raise SchemaError(f"a schema must be a JSON object (a dict), not a {type(schema).__name__}",
                          "pass a dict such as {'type': 'object', 'properties': {...}}")
    try:
        doc = orjson.loads(orjson.dumps(schema, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY))
    except TypeError as exc:
        raise SchemaError(f"the schema cannot be stored as JSON ({exc})",
                          "use only dicts, lists, strings, numbers, booleans and None in it") from None
    js = _jsonschema()
    cls = js.validators.validator_for(doc, default=js.Draft202012Validator)
    try:
        cls.check_schema(doc)
    except js.exceptions.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        raise SchemaError(f"the schema is not valid JSON Schema: {exc.message} (at {where})",
                          "fix that keyword (see json-schema.org/understanding-json-schema)") from None
    return doc


def _path(parts: Iterable) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _explain(error) -> tuple[str, str, str]:
    """(field, rule, sentence) for one jsonschema error."""
    rule = str(error.validator)
    base = list(error.absolute_path)
    if rule == "required" and isinstance(error.instance, dict):
        missing = [k for k in error.validator_value if k not in error.instance] or list(error.validator_value)
        field = _path(base + [missing[0]])
        return field, rule, f"field {field!r} is missing"
    if rule in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        extra = [k for k in error.instance if k not in allowed] or ["?"]
        field = _path(base + [extra[0]])
        return field, rule, f"field {field!r} is not allowed"
    field = _path(base) or "(payload)"
    return field, rule, f"field {field!r}: {error.message}"


def _violation(entry: _Entry, value: Any) -> list[tuple[str, str, str]]:
    """The broken rules of ``value``, most relevant first: (field, rule, sentence) each; [] when valid."""
    js = _jsonschema()
    try:
        if entry.validator.is_valid(value):
            return []
        errors = sorted(entry.validator.iter_errors(value), key=js.exceptions.relevance, reverse=True)
    except Exception as exc:     # a schema stored by hand may be one jsonschema cannot use
        raise SchemaError(f"the schema registered for {entry.pattern!r} cannot be used ({exc})",
                          "register a valid one with nbnats.schema.register") from None
    best = js.exceptions.best_match(errors)
    return [_explain(best)] + [_explain(e) for e in errors if e is not best]


def _sentence(problems: list[tuple[str, str, str]], shown: int = 3) -> str:
    """'field … (rule …)', then up to two more problems, then how many are left."""
    parts = [f"{sentence} (rule {rule!r})" for _, rule, sentence in problems[:shown]]
    more = len(problems) - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- the shared registry, one local copy per connection ------------------------------------
def _key(pattern: str) -> str:
    return base64.urlsafe_b64encode(pattern.encode("utf-8")).decode("ascii")


def _pattern_of(key: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(key.encode("ascii")).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _entry_from(data: bytes, revision: int | None) -> _Entry | None:
    try:
        stored = orjson.loads(data)
        if not isinstance(stored["schema"], dict) or not isinstance(stored["pattern"], str):
            raise ValueError("not a pattern and a schema object")
        return _Entry(stored["pattern"], stored["schema"], revision, stored.get("updated"))
    except Exception as exc:   # a broken value written by someone else must not break publishing
        log.debug("nbnats: ignoring an unreadable schema in %s: %r", BUCKET, exc)
        return None


class _Registry:
    """The schemas registered on one connection's server, kept fresh by a subscription."""

    def __init__(self, conn: Connection):
        self.conn = conn
        self.entries: dict[str, _Entry] = {}
        self._matches: dict[str, list[_Entry]] = {}
        self._sub = None
        self._touched: set[str] = set()
        self.loaded = False
        self._retry_at = 0.0

    def matching(self, subject: str) -> list[_Entry]:
        """The entries whose pattern matches ``subject`` (cached per subject)."""
        cache = self._matches
        found = cache.get(subject)
        if found is None:
            found = [e for p, e in self.entries.items() if rules.subject_matches(p, subject)]
            if len(cache) > 50_000:
                cache.clear()
            cache[subject] = found
        return found

    def set(self, pattern: str, entry: _Entry | None) -> None:
        entries = dict(self.entries)          # copy on write: publishers read without a lock
        if entry is None:
            entries.pop(pattern, None)
        else:
            entries[pattern] = entry
        self.entries, self._matches = entries, {}

    async def _on_update(self, msg) -> None:
        pattern = _pattern_of(msg.subject[len(f"$KV.{BUCKET}."):])
        if pattern is None:
            return
        self._touched.add(pattern)
        self.set(pattern, None if operation(msg.headers) != "PUT" else _entry_from(msg.data, None))

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.conn.nc.subscribe(f"$KV.{BUCKET}.>", cb=self._on_update)
        await self.load()

    async def load(self) -> None:
        self._touched = set()
        snapshot = await _read_all(self.conn)
        merged = {p: e for p, e in snapshot.items() if p not in self._touched}
        for p in self._touched:             # an update seen while reading is newer than the snapshot
            if p in self.entries:
                merged[p] = self.entries[p]
        self.entries, self._matches = merged, {}
        self.loaded = True

    def refresh_later(self) -> None:
        if not self.loaded and time.monotonic() >= self._retry_at:
            self._retry_at = time.monotonic() + _RETRY_LOAD
            loop.submit(self._quiet(self.load()))

    @staticmethod
    async def _quiet(coro) -> None:
        try:
            await coro
        except Exception as exc:
            log.debug("nbnats: could not read the schema bucket: %r", exc)

    # connection events
    def _disconnected(self, at: float) -> None: ...
    def _closing(self) -> None: ...

    def _reconnected(self, since: float | None, at: float) -> None:
        self.loaded = False
        loop.get_loop().create_task(self._quiet(self.load()))

    def _closed(self) -> None:
        self._sub = None
        with _lock:
            if _registries.get(self.conn) is self:
                del _registries[self.conn]


_lock = threading.Lock()
_registries: dict[Connection, _Registry] = {}


def _registry(conn: Connection) -> _Registry:
    reg = _registries.get(conn)
    if reg is not None:
        return reg
    with _lock:
        reg = _registries.get(conn)
        if reg is not None:
            return reg
        reg = _registries[conn] = _Registry(conn)
        conn.listeners.append(reg)
    if loop.in_loop_thread():
        loop.get_loop().create_task(reg._quiet(reg.start()))
        return reg
    try:
        loop.run(reg.start(), 3, "reading the registered event schemas")
    except Exception as exc:   # no JetStream, no permission, an outage: try again later
        reg._retry_at = time.monotonic() + _RETRY_LOAD
        log.debug("nbnats: could not read the schema bucket yet: %r", exc)
    return reg


async def _bucket(conn: Connection, create: bool) -> KV | None:
    """The schema bucket (made when ``create``), or None when it does not exist yet (loop thread)."""
    if not create and await stream_info(conn, BUCKET) is None:
        return None
    info = await open_bucket(conn, BUCKET, create=True, check=False,
                             settings={"history": 10, "description": "event schemas registered by nbnats"})
    return KV(BUCKET, info, conn.name)


async def _read_all(conn: Connection) -> dict[str, _Entry]:
    kv = await _bucket(conn, create=False)
    if kv is None:
        return {}
    out: dict[str, _Entry] = {}
    for key, revision, _, data, headers in await kv.read_rows(">"):
        pattern = _pattern_of(key) if operation(headers) == "PUT" else None
        found = _entry_from(data, revision) if pattern else None
        if found is not None:
            out[found.pattern] = found
    return out


def _before_publish(subject: str, data: Any, payload: bytes, conn: Connection | None = None) -> None:
    """The publish-time check installed in :mod:`nbnats.schema_hooks`."""
    if conn is None:
        conn = current()
    reg = _registries.get(conn) or _registry(conn)
    if not reg.loaded:
        reg.refresh_later()
    if not reg.entries:
        return
    entries = reg.matching(subject)
    if not entries:
        return
    try:
        value = _norm(_decode_payload(subject, payload))
    except NatsError as exc:
        raise SchemaError(f"the message for {subject!r} cannot be checked against the schema for "
                          f"{entries[0].pattern!r}: {exc.what}", exc.fix) from None
    for entry in entries:
        problems = _violation(entry, value)
        if problems:
            raise SchemaError(f"the message for {subject!r} breaks the schema for {entry.pattern!r}: "
                              f"{_sentence(problems)}",
                              "fix the payload, or update the schema with nbnats.schema.register")


schema_hooks.install(_before_publish)


# -- the public registry API ----------------------------------------------------------
def register(pattern: str, schema: Any, connection: str | None = None) -> int:
    """Store ``schema`` for subjects matching ``pattern`` on the server; returns its KV revision.

    From then on ``publish`` to a matching subject, from any notebook on the
    server, refuses a payload that breaks it.

    >>> nbnats.schema.register("orders.>", {"type": "object", "required": ["id"]})   # doctest: +SKIP
    1
    """
    rules.subject(pattern, what="subject pattern")
    doc = _document(schema)
    conn = current(connection)
    reg = _registry(conn)
    updated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    value = orjson.dumps({"pattern": pattern, "schema": doc, "updated": updated})

    async def put():
        kv = await _bucket(conn, create=True)
        return await kv.write(_key(pattern), value)

    revision = loop.run(put(), 12, f"storing the schema for {pattern!r}")
    reg.set(pattern, _Entry(pattern, doc, revision, updated))
    return revision


def _all(connection: str | None = None) -> dict[str, _Entry]:
    conn = current(connection)
    reg = _registry(conn)
    loop.run(reg.load(), 12, "reading the registered event schemas")
    return reg.entries


def ls(connection: str | None = None) -> pd.DataFrame:
    """The registered schemas: pattern, fields, required, revision, updated.

    >>> nbnats.schema.ls()   # doctest: +SKIP
    """
    rows = [{"pattern": e.pattern, "fields": list(e.schema.get("properties", {})),
             "required": list(e.schema.get("required", [])), "revision": e.revision, "updated": e.updated}
            for e in sorted(_all(connection).values(), key=lambda e: e.pattern)]
    return pd.DataFrame(rows, columns=["pattern", "fields", "required", "revision", "updated"])


def get(pattern: str, connection: str | None = None) -> dict:
    """The schema registered for exactly ``pattern``.

    >>> nbnats.schema.get("orders.>")["required"]   # doctest: +SKIP
    ['id']
    """
    rules.subject(pattern, what="subject pattern")
    entries = _all(connection)
    if pattern not in entries:
        raise NotFound(f"no schema is registered for {pattern!r}",
                       f"registered patterns: {sorted(entries) or 'none'}; add one with nbnats.schema.register")
    return entries[pattern].schema


def rm(pattern: str, connection: str | None = None) -> None:
    """Remove the schema registered for ``pattern`` (its history stays in the bucket).

    >>> nbnats.schema.rm("orders.>")   # doctest: +SKIP
    """
    rules.subject(pattern, what="subject pattern")
    conn = current(connection)
    reg = _registry(conn)

    async def delete():
        kv = await _bucket(conn, create=False)
        now = await kv.read_entry(_key(pattern)) if kv is not None else None
        if now is None or now.deleted:
            known = sorted((await _read_all(conn)) if kv is not None else [])
            raise NotFound(f"no schema is registered for {pattern!r}",
                           f"registered patterns: {known or 'none'} (see nbnats.schema.ls())")
        await kv.write(_key(pattern), b"", {KV_OP: "DEL"})

    loop.run(delete(), 12, f"removing the schema for {pattern!r}")
    reg.set(pattern, None)


def validate(subject: str, value: Any, connection: str | None = None) -> None:
    """Raise :class:`SchemaError` when ``value`` breaks a schema registered for ``subject``.

    >>> nbnats.schema.validate("orders.created", {"id": 1})   # doctest: +SKIP
    """
    rules.subject(subject, publish=True)
    conn = current(connection)
    _before_publish(subject, value, codecs.encode(value, subject=subject), conn)


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
