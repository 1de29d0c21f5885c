"""The whole-read cut of consumer messages: it takes a read only when every frame in it proves right.

These are protocol-level checks of a pure function on bytes (no server involved); the
replay tests run the same cut against real servers.
"""

from __future__ import annotations

import pytest

from nbnats.engine.msg_cut import Layout, cut

REPLY = b"$JS.ACK.ORDERS.nbnats_replay_x.1.%d.%d.17000000000000%05d.0"
LAYOUT = Layout.of(REPLY % (1, 1, 1))


def frame(seq: int, payload: bytes, subject: bytes = b"orders.eu", reply: bytes | None = None) -> bytes:
    reply = REPLY % (seq, seq, seq) if reply is None else reply
    return b"MSG %s 1 %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload)


def test_complete_frames_are_cut_and_the_unfinished_one_is_left():
    frames = [frame(i, b'{"n":%d}' % i) for i in range(1, 6)]
    whole = b"".join(frames)
    for tail in (b"", b"MSG orders", frames[0][:-2], frames[0][:-1], frames[0][:60]):
        got = cut(whole + tail, 0, LAYOUT)
        assert got.end == len(whole)
        assert got.seqs == [b"%d" % i for i in range(1, 6)]
        assert got.times == [b"17000000000000%05d" % i for i in range(1, 6)]
        assert got.payloads == [b'{"n":%d}' % i for i in range(1, 6)] and got.sizes == [7] * 5
        assert got.subjects == [b"orders.eu"] * 5


def test_a_cut_from_a_later_position_reports_positions_in_the_whole_buffer():
    head = b"PONG\r\n"
    buf = head + frame(1, b"x") + frame(2, b"yz")
    got = cut(buf, len(head), LAYOUT)
    assert got.end == len(buf) and got.payloads == [b"x", b"yz"]


def test_empty_payloads_are_rows():
    got = cut(frame(1, b"") + frame(2, b"a"), 0, LAYOUT)
    assert got.payloads == [b"", b"a"] and got.sizes == [0, 1]


@pytest.mark.parametrize("odd", [
    b"x\r\ny",                                  # CRLF inside a payload
    b"x\r\nMSG orders.eu 1 " + REPLY % (9, 9, 9) + b" 1\r\nz",   # a fake frame inside a payload
    b"\r\n",
])
def test_payloads_holding_crlf_are_refused(odd):
    assert cut(frame(1, b"a") + frame(2, odd) + frame(3, b"c"), 0, LAYOUT) is None


@pytest.mark.parametrize("other", [
    b"PING\r\n",
    b"HMSG orders.eu 1 " + REPLY % (2, 2, 2) + b" 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    b"HMSG _INBOX.x 1 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n",
    b"MSG orders.eu 1 4\r\nnone\r\n",            # no reply
    b"MSG orders.eu 1  " + REPLY % (2, 2, 2) + b" 1\r\nx\r\n",   # two spaces
    frame(2, b"x", reply=b"$JS.ACK.ORDERS.someone_else.1.2.2.1700000000000000002.0"),
    frame(2, b"x", reply=b"$JS.ACK.OTHER.nbnats_replay_x.1.2.2.1700000000000000002.0"),
    frame(2, b"x", reply=b"_INBOX.abc"),
])
def test_any_other_frame_makes_the_read_go_frame_by_frame(other):
    assert cut(frame(1, b"a") + other + frame(3, b"c"), 0, LAYOUT) is None


def test_a_declared_size_that_differs_is_refused():
    bad = b"MSG orders.eu 1 " + REPLY % (1, 1, 1) + b" 5\r\nabc\r\n"
    assert cut(bad + frame(2, b"ok"), 0, LAYOUT) is None


def test_layouts_of_both_ack_subject_forms():
    v1 = Layout.of(b"$JS.ACK.S.c.1.7.1.1700000000000000000.0")
    v2 = Layout.of(b"$JS.ACK.dom.ACCHASH.S.c.1.7.1.1700000000000000000.0.tok")
    assert (v1.stream, v1.consumer, v1.tokens) == (b"S", b"c", 9)
    assert (v2.stream, v2.consumer, v2.tokens) == (b"S", b"c", 12)
    buf = b"MSG a 1 $JS.ACK.dom.ACCHASH.S.c.1.7.1.1700000000000000000.0.tok 2\r\nhi\r\n"
    got = cut(buf, 0, v2)
    assert got.seqs == [b"7"] and got.times == [b"1700000000000000000"]
    assert Layout.of(b"_INBOX.abc") is None and Layout.of(b"$JS.ACK.S") is None
