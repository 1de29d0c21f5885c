"""Shapes that broke for a new user (issue 13, item 5): a duration said without its unit, and a
fetch from a consumer whose max_ack_pending is reached waiting its whole timeout.
"""

from __future__ import annotations

import ast
import re
import time
from pathlib import Path

import pytest

import nbnats
from conftest import run_cell
from nbnats.jetstream.consume import ack_room

PACKAGE = Path(nbnats.__file__).resolve().parent
DURATION = re.compile(r"timeout|wait|delay|every|seconds|secs|ttl|elapsed|took|interval|expires|ack_wait")
LEAD = re.compile(r"\b(within|after|every|for|in|waited|took)\s*$")
UNIT = re.compile(r"^\s?(s|ms|µs|ns|seconds?|minutes?|hours?|days?)\b")


def bare_durations(source: str) -> list[str]:
    """f-string pieces like ``within {timeout}`` with no unit after the value."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.JoinedStr):
            continue
        parts = node.values
        for i, part in enumerate(parts):
            if not isinstance(part, ast.FormattedValue) or i == 0:
                continue
            before, after = parts[i - 1], parts[i + 1] if i + 1 < len(parts) else None
            expr = ast.unparse(part.value)
            if not (isinstance(before, ast.Constant) and LEAD.search(str(before.value)) and DURATION.search(expr)):
                continue
            if "human_" in expr or "len(" in expr or "count" in expr:
                continue
            tail = str(after.value) if isinstance(after, ast.Constant) else ""
            if not UNIT.match(tail):
                found.append(f"line {node.lineno}: …{str(before.value)[-20:]}{{{expr}}}{tail[:12]}…")
    return found


def test_the_scanner_finds_a_bare_number_of_seconds():
    assert bare_durations('f"no reply within {timeout}"') and bare_durations('f"retry after {delay:g}."')
    assert not bare_durations('f"no reply within {timeout:g} s"') and not bare_durations('f"after {n} messages"')
    assert not bare_durations('f"within {human_duration(ns)}"')


def test_no_message_says_a_duration_without_its_unit():
    found = {str(p.relative_to(PACKAGE)): bad for p in sorted(PACKAGE.rglob("*.py"))
             if (bad := bare_durations(p.read_text()))}
    assert not found, found


@pytest.fixture
def limited(connected, uid):
    """A stream of 5 messages and a consumer that lets 2 wait for an ack at a time."""
    stream = f"M{uid}"
    nbnats.add_stream(stream, [f"{uid}.>"])
    for i in range(5):
        nbnats.publish(f"{uid}.x", {"i": i}, js=True)
    nbnats.add_consumer(stream, "two", durable=True, max_ack_pending=2)
    yield stream
    nbnats.delete_stream(stream)


def timed(call):
    start = time.monotonic()
    got = call()
    return got, time.monotonic() - start


def test_next_returns_what_max_ack_pending_allows_at_once_and_says_why(limited):
    df, took = timed(lambda: nbnats.next(limited, "two", count=5, timeout=5))
    assert len(df) == 2 and took < 1.5, (len(df), took)
    assert df.attrs["acked"] and "max_ack_pending (2)" in df.attrs["note"] and "read again" in df.attrs["note"]
    df, took = timed(lambda: nbnats.next(limited, "two", count=5, timeout=5))     # acked: the next two come
    assert df["i"].tolist() == [2, 3] and took < 1.5
    df, took = timed(lambda: nbnats.next(limited, "two", count=5, timeout=5))     # 1 left: fewer, no limit hit
    assert df["i"].tolist() == [4] and df.attrs["note"] is None and took < 1.5


def test_fetch_with_ack_pending_full_returns_at_once_with_the_reason(limited):
    b, took = timed(lambda: nbnats.fetch(limited, "two", count=5, timeout=5))
    assert len(b) == 2 and took < 1.5
    assert b.note == "the consumer's max_ack_pending (2) is reached: ack some to get more (2 of 5 delivered)"
    assert b.df.attrs["note"] == b.note and b.note in repr(b)
    again, took = timed(lambda: nbnats.fetch(limited, "two", count=5, timeout=5))
    assert len(again) == 0 and took < 1.5 and "(0 of 5 delivered)" in again.note
    b[0].ack()
    one, took = timed(lambda: nbnats.fetch(limited, "two", count=5, timeout=5))   # room for one
    assert [m.json()["i"] for m in one] == [2] and took < 1.5 and "(1 of 5 delivered)" in one.note
    b.ack()
    one.ack()
    rest = nbnats.fetch(limited, "two", count=2, timeout=5)                        # within the limit: no note
    assert [m.json()["i"] for m in rest] == [3, 4] and rest.note is None
    rest.ack()


def test_ack_room_of_each_kind_of_consumer():
    assert ack_room({"config": {"ack_policy": "explicit", "max_ack_pending": 1000}, "num_ack_pending": 10}) == 990
    assert ack_room({"config": {"ack_policy": "all", "max_ack_pending": 3}, "num_ack_pending": 5}) == 0
    assert ack_room({"config": {"ack_policy": "explicit", "max_ack_pending": -1}, "num_ack_pending": 5}) is None
    assert ack_room({"config": {"ack_policy": "none", "max_ack_pending": 2}, "num_ack_pending": 0}) is None


def test_consumer_next_magic_says_the_limit_and_the_wait_with_its_unit(ip, limited):
    _, out = run_cell(ip, f"b = %nats consumer next {limited} two --count 5 --no-ack --timeout 5")
    assert "max_ack_pending (2) is reached" in out and len(ip.user_ns["b"]) == 2
    ip.user_ns["b"].ack()
    while len(nbnats.next(limited, "two", count=5, timeout="200ms")):              # read the rest
        pass
    _, out = run_cell(ip, f"%nats consumer next {limited} two --timeout 1")
    assert "within 1 s" in out, out
