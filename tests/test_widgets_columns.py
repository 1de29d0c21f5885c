"""The live views show the payload's fields as columns: sorting, the clicked row's JSON, escaping, theming.

Real servers only; clicks are sent the way the browser sends them (the
table's hidden channel), and the Python calls (``sort_by``, ``select``) too.
"""

from __future__ import annotations

import json
import re
import time

import pandas as pd
import pytest

import nbnats
from faultkit import wait_until
from nbnats.jetstream import streams as js
from nbnats.kv.manage import delete_bucket
from nbnats.widgets.stream_view import view
from nbnats.widgets.table import DISPLAY_LIMIT, Table, table_html

HOSTILE = "<img src=x onerror=alert(1)>"


def click(table: Table, kind: str, index: int) -> None:
    """What the browser's click handler writes: kind:index:generation:nonce."""
    table.channel.value = f"{kind}:{index}:{table.generation}:{time.monotonic_ns()}"


def test_tail_view_columns_are_the_frames_columns(connected, uid):
    t = nbnats.tail(f"{uid}.>")
    v = t.widget
    nbnats.publish(f"{uid}.a", {"id": 1, "customer": {"name": "ada"}, "total": 9.5})
    nbnats.publish(f"{uid}.b", {"id": 2, "customer": {"name": "bob"}})
    nbnats.publish(f"{uid}.c", "plain text")
    nbnats.publish(f"{uid}.d", b"\xff\x00")
    t.wait(4, timeout=5)
    wait_until(lambda: len(v.table.row_keys) == 4, 3, "the view drawing the four rows")
    df = t.df
    assert v.table.columns == [c for c in df.columns if c != "seq"]          # core rows have no seq
    shown = v.table.frame
    assert shown["subject"].tolist() == df["subject"].tolist()[::-1]          # newest first
    assert shown["customer.name"].tolist()[2:] == ["bob", "ada"] and shown["id"].dtype == df["id"].dtype
    html = v.rows.value
    for text in ("<th title='sort by customer.name'>customer.name</th>", "<td>ada</td>", "<td>plain text</td>",
                 "&lt;2 bytes&gt;", "<td class='num'>9.5</td>"):
        assert text in html, text


def test_sort_by_header_click_and_again_the_other_way(connected, uid):
    t = nbnats.tail(uid)
    v = t.widget
    for n in (3, 1, 2):
        nbnats.publish(uid, {"n": n, "name": f"x{n}"})
    nbnats.publish(uid, {"name": "no n"})
    t.wait(4, timeout=5)
    v.render()
    table = v.table
    col = table.columns.index("n")
    click(table, "sort", col)
    assert table.sort == ("n", True)
    assert table.drawn["n"].tolist()[:3] == [1, 2, 3]
    assert "n ▲</th>" in table.html.value
    click(table, "sort", col)                                      # the same header again: descending
    assert table.sort == ("n", False) and "n ▼</th>" in table.html.value
    values = table.drawn["n"].tolist()
    assert values[:3] == [3, 2, 1] and pd.isna(values[3])          # a missing value sorts last either way
    table.sort_by("headers")                                       # an object column sorts too
    table.sort_by(None)
    assert table.drawn["name"].tolist() == ["no n", "x2", "x1", "x3"]          # back to newest first
    nbnats.publish(uid, {"n": 0})
    t.wait(5, timeout=5)
    table.sort_by("n")
    v.render()                                                     # a live redraw keeps the sort
    assert table.drawn["n"].tolist()[:2] == [0, 1]


def test_row_click_shows_headers_and_pretty_json(connected, uid):
    t = nbnats.tail(uid)
    v = t.widget
    payload = {"id": 7, "items": [{"sku": "a", "qty": 2}], "customer": {"id": 3}}
    nbnats.publish(uid, payload, headers={"Trace-Id": "t-42"})
    nbnats.publish(uid, "later")
    t.wait(2, timeout=5)
    v.render()
    click(v.table, "row", 1)                                      # the older row (newest is first)
    sel = v.table.selected
    assert sel["subject"] == uid and sel["headers"] == {"Trace-Id": "t-42"} and sel["payload"] == payload
    assert json.loads(v.table.selected_json) == payload and "\n  \"id\": 7" in v.table.selected_json
    assert "Trace-Id" in v.detail.value and "t-42" in v.detail.value and "<pre>" in v.detail.value
    assert "<tr class='nbnats-sel'>" in v.rows.value
    key = v.table.value
    for i in range(3):                                            # the row scrolls on: the detail stays
        nbnats.publish(uid, {"n": i})
    t.wait(5, timeout=5)
    v.render()
    assert v.table.value == key and v.table.selected["payload"] == payload
    assert v.table.row_keys.index(key) == 4                           # still marked where it is now
    click(v.table, "row", 0)
    assert v.table.selected["payload"] == {"n": 2}
    v.table.channel.value = "row:99:1:x"                          # junk or a stale click: ignored
    assert v.table.selected["payload"] == {"n": 2}


def test_everything_from_the_server_is_escaped(connected, uid):
    subject = f"{uid}.<img/src=x/onerror=alert(1)"
    t = nbnats.tail(f"{uid}.*")
    v = t.widget
    nbnats.publish(subject, {HOSTILE: HOSTILE, "nested": {"<b>": "<script>alert(2)</script>"}},
                   headers={"X-Evil": HOSTILE})
    t.wait(1, timeout=5)
    v.render()
    click(v.table, "row", 0)
    for html in (v.rows.value, v.detail.value, v.header.value):
        assert "<img" not in html and "<script" not in html and "<b>&lt" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in v.rows.value             # field name and value, as text
    assert "&lt;img/src=x/onerror=alert(1)" in v.rows.value                  # the subject
    assert "nested.&lt;b&gt;" in v.rows.value
    assert v.detail.value.count("&lt;img src=x onerror=alert(1)&gt;") >= 2   # header value and payload
    # every place a cell can come from, directly
    df = pd.DataFrame({HOSTILE: [HOSTILE], "key": [HOSTILE], "subject": [HOSTILE]})
    assert "<img" not in table_html(df) and table_html(df).count("&lt;img") == 5     # 3 cells, a header, its title


def test_colours_are_jupyterlab_theme_variables(connected, uid):
    t = nbnats.tail(uid)
    v = t.widget
    nbnats.publish(uid, {"a": 1})
    t.wait(1, timeout=5)
    v.render()
    click(v.table, "row", 0)
    html = v.rows.value + v.detail.value + v.header.value + v.chart.value
    colours = re.findall(r"(?:color|background|stroke)\s*:\s*([^;'\"}]+)", html)
    assert colours and all(c.strip().startswith(("var(--jp-", "transparent", "inherit")) for c in colours), colours
    assert "--jp-layout-color1" in html and "--jp-content-font-color1" in html and "--jp-border-color2" in html
    assert not re.search(r"#(?:fff|f[0-9a-f]{5}|e[0-9a-f]{5})\b", html, re.I)        # no light colour literal


def test_ten_thousand_rows_render_only_the_newest(connected, uid):
    t = nbnats.tail(uid, limit=20_000)
    v = t.widget
    nbnats.publish(uid, {"i": 0, "pad": "x" * 50}, count=10_000)
    t.wait(10_000, timeout=20)
    start = time.perf_counter()
    v.render()
    took = time.perf_counter() - start
    assert len(v.table.row_keys) == DISPLAY_LIMIT == v.rows.value.count("<tr><td>")
    assert took < 0.5, f"one redraw of a 10,000-row tail took {took:.3f} s"
    v.filter.value = f"{uid}.nothing"
    start = time.perf_counter()
    v.render()
    assert time.perf_counter() - start < 0.5 and v.table.row_keys == []


@pytest.fixture
def stream(connected, uid):
    name = f"C{uid}"
    js.add_stream(name, [f"{uid}.>"])
    for i in range(6):
        nbnats.publish(f"{uid}.{'eu' if i % 2 else 'us'}", {"id": i, "amount": 10 - i, "tag": HOSTILE},
                       js=True, headers={"Trace-Id": f"t{i}"})
    yield name
    js.delete_stream(name)


def test_stream_browser_columns_sort_and_row_json(stream, uid):
    v = view(stream, page_size=5)
    try:
        assert v.rows.columns[:5] == ["subject", "time", "seq", "size", "headers"]
        assert {"id", "amount", "tag"} <= set(v.rows.columns)
        assert v.rows.frame["id"].tolist() == [0, 1, 2, 3, 4]
        click(v.rows, "sort", v.rows.columns.index("amount"))
        assert v.rows.row_keys == [5, 4, 3, 2, 1]                    # seqs by amount, ascending
        v.rows.select(3)
        assert v.rows.selected["seq"] == 3 and v.rows.selected["payload"] == {"id": 2, "amount": 8, "tag": HOSTILE}
        assert json.loads(v.rows.selected_json)["amount"] == 8 and "t2" in v.detail.value
        assert "<img" not in v.rows.html.value + v.detail.value
        v.next_page()                                            # the sort holds across pages
        assert v.rows.sort == ("amount", True) and v.rows.row_keys == [6]
    finally:
        v.close()


def test_kv_watch_view_columns_and_value_json(connected, uid):
    kv = nbnats.kv(f"w{uid}", create=True)
    try:
        kv.put("user.1", {"name": "ada", "age": 36})
        kv.put("user.2", {"name": "bob", "age": 7, "tags": ["x"]})
        kv.put("note", "just text")
        w = kv.watch()
        v = w.widget
        w.wait(3, timeout=5)
        kv.put("user.1", {"name": "ada", "age": 37})
        w.wait(4, timeout=5)
        v.render()
        cols = v.table.columns
        assert cols[:5] == ["key", "value", "revision", "created", "operation"] and {"name", "age", "tags"} <= set(cols)
        assert sorted(v.table.frame["key"]) == ["note", "user.1", "user.2"]          # newest per key
        v.table.sort_by("age", ascending=False)
        assert [k for k, _ in v.table.row_keys][:2] == ["user.1", "user.2"]
        assert v.table.frame.loc[v.table.frame["key"] == "user.1", "age"].tolist() == [37]
        click(v.table, "row", 0)
        assert v.table.selected["key"] == "user.1" and v.table.selected["payload"] == {"name": "ada", "age": 37}
        assert json.loads(v.table.selected_json) == {"name": "ada", "age": 37} and "revision" in v.detail.value
        v.mode.value = "log"
        v.render()
        assert len(v.table.row_keys) == 4 and "<th title='sort by age'>age ▼</th>" in v.rows.value
        w.stop()
    finally:
        delete_bucket(f"w{uid}")
