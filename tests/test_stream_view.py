"""The stream browser, driven through its widget state in the kernel: pages, the subject filter,
jumps to a sequence and a time, the message pane, the live new-message count, and bad input."""

from __future__ import annotations

import importlib
import time

import pytest

import nbnats
from nbnats.errors import InvalidName, NatsError, NotFound
from nbnats.widgets import stream_view
from nbnats.widgets.stream_view import StreamView, view

js = nbnats          # the public API: streams and consumers

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def orders(connected, uid):
    """25 messages: seq 1–25 alternating <uid>.eu / <uid>.us; seq 3 has a header."""
    name = f"V{uid}"
    js.add_stream(name, f"{uid}.>")
    for i in range(25):
        nbnats.publish(f"{uid}.{'eu' if i % 2 else 'us'}", {"id": i, "items": [1, 2]}, js=True,
                       headers={"Trace-Id": "t3"} if i == 2 else None)
    yield name
    try:
        js.delete_stream(name)
    except NatsError:
        pass


def seqs(v: StreamView) -> list[int]:
    return [seq for _, seq in v.rows.options]


def test_pages_forward_back_first_last(orders):
    v = view(orders, page_size=10)
    try:
        assert seqs(v) == list(range(1, 11)) and v.page["seq"].tolist() == list(range(1, 11))
        assert "25 messages" in v.header.value and "showing seq 1–10" in v.header.value
        v.next_page()
        assert seqs(v) == list(range(11, 21))
        v.next_button.click()
        assert seqs(v) == list(range(21, 26))
        v.next_page()
        assert seqs(v) == list(range(21, 26)) and "last page" in v.status.value
        v.prev_page()
        assert seqs(v) == list(range(11, 21))
        v.first_button.click()
        assert seqs(v) == list(range(1, 11))
        v.prev_page()
        assert "first page" in v.status.value
        v.last_button.click()
        assert seqs(v) == list(range(16, 26))
        v.page_size.value = 20
        assert seqs(v) == list(range(16, 26))          # reloaded from the same start, up to 20 rows
    finally:
        v.close()


def test_subject_filter_and_jumps(orders, uid):
    v = view(orders, page_size=5)
    try:
        v.filter.value = f"{uid}.eu"
        assert seqs(v) == [2, 4, 6, 8, 10] and set(v.page["subject"]) == {f"{uid}.eu"}
        assert f"filter <code>{uid}.eu</code>" in v.header.value
        v.next_page()
        assert seqs(v) == [12, 14, 16, 18, 20]
        v.prev_page()
        assert seqs(v) == [2, 4, 6, 8, 10]
        v.last_page()
        assert seqs(v) == [16, 18, 20, 22, 24]
        v.seq_box.value = 7
        v.seq_button.click()
        assert seqs(v) == [8, 10, 12, 14, 16]          # the next match at or after seq 7
        v.filter.value = ""
        t = js.get_message(orders, 13).time
        v.time_box.value = t.isoformat()
        v.time_button.click()
        assert seqs(v)[0] == 13
        v.jump_to_time("1h")
        assert seqs(v)[0] == 1
        v.filter.value = f"{uid}.nothing"
        assert seqs(v) == [] and "no messages match" in v.status.value and v.page.empty
    finally:
        v.close()


def test_message_pane_shows_headers_and_pretty_payload(orders, uid):
    v = view(orders, page_size=5)
    try:
        v.rows.value = 3                                # as a click on the third row
        html = v.detail.value
        assert "Trace-Id" in html and "t3" in html and f"{uid}.us" in html
        assert "&quot;id&quot;: 2" in html and "<pre" in html       # indented JSON
        assert js.get_message(orders, 3).time.isoformat() in html   # the exact stream time
        v.select(5)
        assert v.rows.value == 5 and "&quot;id&quot;: 4" in v.detail.value
        label = v.rows.options[0][0]
        assert f"{uid}.us" in label and "id" in v.rows.columns and v.rows.columns[:2] == ["subject", "time"]
    finally:
        v.close()


def test_live_new_message_count(orders, uid, monkeypatch):
    monkeypatch.setattr(stream_view, "LIVE_EVERY", 0.1)
    v = view(orders, page_size=5)
    try:
        assert v.poll() == 0
        for i in range(3):
            nbnats.publish(f"{uid}.eu", {"id": 100 + i}, js=True)
        deadline = time.monotonic() + 5
        while v.new_messages < 3 and time.monotonic() < deadline:     # the loop's timer counts them
            time.sleep(0.05)
        assert v.new_messages == 3 and "3 new messages" in v.header.value
        v.first_page()                                  # paging elsewhere keeps the count
        assert v.new_messages == 3 and "3 new messages" in v.header.value
        v.last_page()
        assert v.new_messages == 0 and seqs(v)[-1] == 28 and "new message" not in v.header.value
    finally:
        v.close()
    assert v._closed


def test_warnings_and_errors_go_to_the_status_line(orders, uid):
    js.purge_stream(orders, keep=20)                     # seq 1–5 gone
    v = view(orders, page_size=5)
    try:
        assert seqs(v) == [6, 7, 8, 9, 10]
        v.jump_to_seq(2)
        assert seqs(v) == [6, 7, 8, 9, 10] and "asked for seq 2, the stream starts at 6" in v.status.value
        v.filter.value = "a..b"
        assert "nbnats: subject filter 'a..b' has an empty token" in v.status.value
        v.filter.value = "elsewhere.>"
        assert "outside stream" in v.status.value
        v.filter.value = ""
        v.jump_to_time("someday")
        assert "is not a time" in v.status.value
        v.jump_to_seq("x")
        assert "not a sequence number" in v.status.value
    finally:
        v.close()


def test_bad_input(connected, uid):
    with pytest.raises(NotFound, match="does not exist"):
        view(f"NOPE{uid}")
    with pytest.raises(InvalidName, match="try 'A_B'"):
        view("A.B")
    with pytest.raises(NatsError, match="page_size must be a positive whole number"):
        view("S", page_size=0)


def test_empty_stream_opens_empty(connected, uid):
    name = f"E{uid}"
    js.add_stream(name, f"{uid}.>")
    try:
        v = view(name)
        assert seqs(v) == [] and "is empty" in v.status.value
        nbnats.publish(f"{uid}.x", {"a": 1}, js=True)
        v.first_page()
        assert seqs(v) == [1]
        v.close()
    finally:
        js.delete_stream(name)
