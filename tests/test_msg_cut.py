"""The cut of one consumer's messages from a socket read, compiled and in Python, on the same bytes.

Protocol-level checks of a pure function on bytes (no server involved); the replay tests run
the same cut against real servers.
"""

from __future__ import annotations

import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nbnats.engine import msg_cut
from nbnats.engine.msg_cut import Cutter

REPLY = b"$JS.ACK.ORDERS.nbnats_replay_x.1.%d.%d.17000000000000%05d.0"
IMPLEMENTATIONS = [pytest.param(True, id="compiled"), pytest.param(False, id="python")]


@pytest.fixture(params=IMPLEMENTATIONS)
def cutter(request) -> Cutter:
    if request.param:
        _need_compiled()
    return Cutter.of(REPLY % (1, 1, 1), "ORDERS", "nbnats_replay_x", compiled=request.param)


def _need_compiled() -> None:
    if msg_cut.NATIVE:
        return
    if os.environ.get("NBNATS_PURE_PYTHON") or not shutil.which("cc"):
        pytest.skip("the compiled cut is off (NBNATS_PURE_PYTHON) or there is no C compiler to build it")
    pytest.fail("the compiled cut was not built: run scripts/setup again (pip install -e . builds nbnats/engine/_cut.c)")


def frame(seq: int, payload: bytes, subject: bytes = b"orders.eu", reply: bytes | None = None) -> bytes:
    reply = REPLY % (seq, seq, seq) if reply is None else reply
    return b"MSG %s 1 %s %d\r\n%s\r\n" % (subject, reply, len(payload), payload)


def test_complete_frames_are_cut_and_the_unfinished_one_is_left(cutter):
    frames = [frame(i, b'{"n":%d}' % i) for i in range(1, 6)]
    whole = b"".join(frames)
    for tail in (b"", b"MSG orders", frames[0][:-2], frames[0][:-1], frames[0][:60]):
        got = cutter.cut(whole + tail, 0)
        assert got.end == len(whole)
        assert got.seqs.tolist() == [1, 2, 3, 4, 5]
        assert got.times.tolist() == [1700000000000000000 + i for i in range(1, 6)]
        assert got.joined == b"\n".join(b'{"n":%d}' % i for i in range(1, 6)) and got.sizes.tolist() == [7] * 5
        assert got.subjects == ["orders.eu"] * 5


def test_a_cut_from_a_later_position_reports_positions_in_the_whole_buffer(cutter):
    head = b"PONG\r\n"
    buf = head + frame(1, b"x") + frame(2, b"yz")
    got = cutter.cut(buf, len(head))
    assert got.end == len(buf) and got.joined == b"x\nyz" and got.sizes.tolist() == [1, 2]


def test_empty_payloads_are_rows(cutter):
    got = cutter.cut(frame(1, b"") + frame(2, b"a"), 0)
    assert got.joined == b"\na" and got.sizes.tolist() == [0, 1]


def test_a_read_of_many_small_frames_is_cut_whole(cutter):
    # more rows than the compiled cut's first allocation (4,096): its columns grow as it goes
    buf = b"".join(frame(i, b"%d" % (i % 10)) for i in range(1, 20_001)) + b"MSG orders"
    got = cutter.cut(buf, 0)
    assert got.end == len(buf) - len(b"MSG orders") and got.seqs.tolist() == list(range(1, 20_001))
    assert got.joined == b"\n".join(b"%d" % (i % 10) for i in range(1, 20_001))


@pytest.mark.parametrize("odd", [
    b"x\r\ny",                                  # CRLF inside a payload
    b"x\r\nMSG orders.eu 1 " + REPLY % (9, 9, 9) + b" 1\r\nz",   # a fake frame inside a payload
    b"\r\n",
    b"\r\n\r\n\r\n",
])
def test_payloads_holding_crlf_are_cut_by_their_declared_size(cutter, odd):
    buf = frame(1, b"a") + frame(2, odd) + frame(3, b"c")
    got = cutter.cut(buf, 0)
    assert got.end == len(buf) and got.seqs.tolist() == [1, 2, 3] and got.sizes.tolist() == [1, len(odd), 1]
    assert got.joined == b"a\n" + odd + b"\nc"


@pytest.mark.parametrize("other", [
    b"PING\r\n",
    b"HMSG orders.eu 1 " + REPLY % (2, 2, 2) + b" 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
    b"HMSG _INBOX.x 1 28 28\r\nNATS/1.0 404 No Messages\r\n\r\n\r\n",
    b"MSG orders.eu 1 4\r\nnone\r\n",            # no reply
    b"MSG orders.eu 1  " + REPLY % (2, 2, 2) + b" 1\r\nx\r\n",   # two spaces
    b"MSG orders.eu 1 " + REPLY % (2, 2, 2) + b" 5\r\nabc\r\n",   # a declared size that differs
    b"MSG orders.eu 1 $JS.ACK.ORDERS.nbnats_replay_x.1.2.2.99999999999999999999.0 1\r\nx\r\n",  # past int64
    frame(2, b"x", reply=b"$JS.ACK.ORDERS.someone_else.1.2.2.1700000000000000002.0"),
    frame(2, b"x", reply=b"$JS.ACK.OTHER.nbnats_replay_x.1.2.2.1700000000000000002.0"),
    frame(2, b"x", reply=b"$JS.ACK.ORDERS.nbnats_replay_x.1.2.2.1700000000000000002"),
    frame(2, b"x", reply=b"_INBOX.abc"),
])
def test_the_cut_stops_at_any_other_frame_and_goes_on_after_it(cutter, other):
    first, last = frame(1, b"a"), frame(3, b"c")
    buf = first + other + last
    got = cutter.cut(buf, 0)
    assert got.end == len(first) and got.seqs.tolist() == [1]
    assert cutter.cut(buf, len(first)) is None          # the wire's own parser takes that frame
    after = cutter.cut(buf, len(first) + len(other))
    assert after.end == len(buf) and after.seqs.tolist() == [3] and after.joined == b"c"


def test_both_ack_subject_forms():
    v2 = b"$JS.ACK.dom.ACCHASH.S.c.1.7.1.1700000000000000000.0.tok"
    for compiled in (True, False):
        c = Cutter.of(v2, "S", "c", compiled=compiled)
        assert (c.prefix, c.token) == (b"$JS.ACK.dom.ACCHASH.S.c.", True)
        got = c.cut(b"MSG a 1 %s 2\r\nhi\r\nMSG a 1 %s 1\r\nx\r\n" % (v2, v2.replace(b".tok", b"")), 0)
        assert got.seqs.tolist() == [7] and got.times.tolist() == [1700000000000000000]
    assert Cutter.of(b"$JS.ACK.S.c.1.7.1.1700000000000000000.0", "S", "c").prefix == b"$JS.ACK.S.c."
    for reply in (b"_INBOX.abc", b"$JS.ACK.S", b"$JS.ACK.S.other.1.7.1.1700000000000000000.0",
                  b"$JS.ACK.S.c.1.x.1.1700000000000000000.0"):
        assert Cutter.of(reply, "S", "c") is None


def test_one_message_parsed_by_the_wire_is_a_row_when_it_is_this_consumers(cutter):
    row = cutter.one(b"orders.eu", REPLY % (4, 4, 4), b"{}")
    assert row.seqs.tolist() == [4] and row.subjects == ["orders.eu"] and row.joined == b"{}"
    assert cutter.one(b"orders.eu", b"$JS.ACK.ORDERS.other.1.4.4.1.0", b"{}") is None


def test_subjects_that_are_not_utf8_keep_their_bytes(cutter):
    got = cutter.cut(frame(1, b"a", subject=b"orders.\xff") + frame(2, b"b", subject=b"orders.eu"), 0)
    assert got.subjects == ["orders.\udcff", "orders.eu"]


# -- both implementations, the same result, on reads as the server cuts them -----------------------
_payloads = st.one_of(st.binary(max_size=40), st.sampled_from([b"\r\n", b"MSG x 1 y 1\r\n", b"\r", b"\n", b""]),
                      st.builds(lambda a, b: a + b"\r\n" + b, st.binary(max_size=10), st.binary(max_size=10)))
_others = st.sampled_from([b"PING\r\n", b"PONG\r\n", b"+OK\r\n",
                           b"HMSG _INBOX.x 1 38 38\r\nNATS/1.0 409 Batch Completed\r\n\r\n\r\n"])
_subjects = st.sampled_from([b"orders.eu", b"orders.us", b"a", b"orders.\xff"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.tuples(_subjects, _payloads), _others), max_size=25), st.floats(0, 1))
def test_compiled_and_python_cuts_give_the_same_rows_however_the_read_ends(items, where):
    _need_compiled()
    frames, expected, seq = [], [], 0
    for item in items:
        if isinstance(item, tuple):
            seq += 1
            frames.append(frame(seq, item[1], subject=item[0]))
            expected.append((item[0].decode("utf-8", "surrogateescape"), seq, item[1]))
        else:
            frames.append(item)
    whole = b"".join(frames)
    buf = whole[:int(len(whole) * where)]
    complete = 0            # the rows whose frames the read holds whole
    at = 0
    for f, item in zip(frames, items):
        at += len(f)
        if at > len(buf):
            break
        complete += isinstance(item, tuple)
    for compiled in (True, False):
        cutter = Cutter.of(REPLY % (1, 1, 1), "ORDERS", "nbnats_replay_x", compiled=compiled)
        rows, pos, starts = [], 0, {sum(map(len, frames[:i])): f for i, f in enumerate(frames)}
        while pos < len(buf):
            got = cutter.cut(buf, pos)
            if got is not None:
                assert got.end > pos and got.end in starts or got.end == len(whole)
                payloads = _split(got.joined, got.sizes.tolist())
                rows += list(zip(got.subjects, got.seqs.tolist(), payloads))
                pos = got.end
                continue
            f = starts.get(pos)
            if f is None or pos + len(f) > len(buf) or f.startswith(b"MSG "):
                break           # the unfinished frame: the wire waits for the rest
            pos += len(f)       # another frame: the wire's own parser takes it
        assert rows == expected[:complete], compiled


def _split(joined: bytes, sizes: list[int]) -> list[bytes]:
    out, at = [], 0
    for n in sizes:
        out.append(joined[at:at + n])
        at += n + 1
    return out


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 400))
def test_the_compiled_cut_takes_any_bytes_without_reading_past_them(noise, pos):
    _need_compiled()
    cutter = Cutter.of(REPLY % (1, 1, 1), "ORDERS", "nbnats_replay_x", compiled=True)
    buf = frame(1, b"ok") + noise
    pos = min(pos, len(buf))
    got = cutter.cut(buf, pos)
    if got is not None:
        assert pos < got.end <= len(buf) and len(got.seqs) == len(got.subjects) == len(got.sizes) >= 1
        assert len(got.joined) == sum(got.sizes.tolist()) + len(got.sizes) - 1
