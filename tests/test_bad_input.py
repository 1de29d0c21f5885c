"""Bad input, as one table through both faces (Python and %nats), and a property test of subjects.

Every row must fail with an nbnats error that reads "what is wrong — what to do" on one
line, before anything reaches the server, leaving nothing running. The subject rules
are checked against the server's own verdicts (a raw, pedantic protocol connection).
"""

from __future__ import annotations

import importlib
import json
import socket

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nbnats
import nbnats.magics  # noqa: F401  (registers every %nats verb, to know which exist)
from nbnats.runtime import connection, server
from nbnats.data import validate
from nbnats.magics.registry import VERBS

js = nbnats          # the public API: streams and consumers
replay = importlib.import_module("nbnats.jetstream.replay").replay
kv_mod = importlib.import_module("nbnats.kv.bucket")

MAX = 4096           # the private server's max_payload

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def small_server():
    """A JetStream server with max_payload=4096 and a KV bucket ``known``."""
    with server.start(max_payload=MAX) as srv:
        kv_mod.kv("known", create=True, connection=nbnats.connect(srv.url, name="badinput-setup").name)
        connection.close("badinput-setup")
        yield srv


@pytest.fixture
def small(small_server, uid):
    """The session connected to the small server, plus a catch-all tail on a connection of its own."""
    conn = nbnats.connect(small_server.url)
    nbnats.connect(small_server.url, name=f"{uid}watch")
    watch = nbnats.tail(">", connection=f"{uid}watch", limit=1000)
    yield small_server, conn, watch
    connection.close(f"{uid}watch")
    connection.close()


def sent(watch) -> list[str]:
    """Subjects the catch-all tail saw, leaving out JetStream API calls and their replies."""
    return [s for s in watch.df["subject"] if not s.startswith(("$JS.", "_INBOX."))]


def server_accepts(srv, command: bytes) -> bool:
    """The server's verdict on one protocol line, from a verbose and pedantic connection."""
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
        f = s.makefile("rb")
        f.readline()                                       # INFO
        login = {"user": srv.auth.user, "pass": srv.auth.password} if srv.auth else {}
        s.sendall(b"CONNECT " + json.dumps({"verbose": True, "pedantic": True, **login}).encode() + b"\r\n")
        assert f.readline().startswith(b"+OK")
        s.sendall(command + b"\r\nPING\r\n")
        while line := f.readline():
            if line.startswith(b"-ERR"):
                return False
            if line.startswith(b"PONG"):
                return True
    return False


# (subject, the server accepts SUB, the server accepts PUB); checked live below
SUBJECTS = [
    ("foo", True, True), ("foo.bar", True, True), ("foo.*", True, False), ("foo.>", True, False),
    (">", True, False), ("*", True, False), ("*.*", True, False), ("foo.*.bar", True, False),
    ("foo*.bar", True, True), ("foo.bar>", True, True), ("foo.**", True, True), ("$JS.API.INFO", True, True),
    ("ünïcode.ok", True, True), ("a\x00b", True, True), ("a\u2028b", True, True),
    ("foo.>.bar", False, False), (">.foo", False, False), ("a.>.>", False, False), ("foo..bar", False, False),
    (".foo", False, False), ("foo.", False, False), ("", False, False),
]
# Refused although the server would take them: the protocol splits on them, or nats-py does (\v).
WHITESPACE = " \t\r\n\x0c\x0b"


def client_refuses_to_subscribe(subject: str) -> bool:
    """'*' or '>' inside a token: a literal to the server, refused by nats-py's subscribe (and so by nbnats)."""
    return any(t not in ("*", ">") and ("*" in t or ">" in t) for t in subject.split("."))


@pytest.mark.parametrize("subject,sub_ok,pub_ok", SUBJECTS, ids=[repr(s[0]) for s in SUBJECTS])
def test_subject_rules_are_the_servers(small_server, subject, sub_ok, pub_ok):
    srv = small_server
    raw = subject.encode()
    assert server_accepts(srv, b"SUB " + raw + b" 1") is sub_ok if raw else True
    assert server_accepts(srv, b"PUB " + raw + b" 0\r\n") is pub_ok if raw else True
    for publish, ok in ((False, sub_ok and not client_refuses_to_subscribe(subject)), (True, pub_ok)):
        if ok:
            assert validate.subject(subject, publish=publish) == subject
        else:
            with pytest.raises(nbnats.InvalidSubject):
                validate.subject(subject, publish=publish)


def _py(fn):
    return ("py", fn)


def _magic(line, cell=None):
    return ("magic", line, cell)


big = "x" * (MAX + 1)
ROWS = [
    # subjects, through every call that takes one
    ("publish to a wildcard", _py(lambda: nbnats.publish("orders.>", "x")), nbnats.InvalidSubject, "wildcards"),
    ("publish to an empty token", _py(lambda: nbnats.publish("a..b", "x")), nbnats.InvalidSubject, "empty token"),
    ("publish to ''", _py(lambda: nbnats.publish("", "x")), nbnats.InvalidSubject, "empty"),
    ("request to a wildcard", _py(lambda: nbnats.request("a.*", "x")), nbnats.InvalidSubject, "wildcards"),
    ("tail with '>' inside", _py(lambda: nbnats.tail("a.>.b")), nbnats.InvalidSubject, "last token"),
    ("tail with a space", _py(lambda: nbnats.tail("a b")), nbnats.InvalidSubject, "whitespace"),
    ("tail with a vertical tab", _py(lambda: nbnats.tail("a\x0bb")), nbnats.InvalidSubject, "whitespace"),
    ("tail in a bad queue group", _py(lambda: nbnats.tail("a", queue="q 1")), nbnats.InvalidSubject, "queue group"),
    ("serve on an empty token", _py(lambda: nbnats.serve(".a", lambda m: m.data)), nbnats.InvalidSubject, "empty"),
    ("%nats pub to a wildcard", _magic("pub 'orders.*' x"), nbnats.InvalidSubject, "wildcards"),
    ("%nats pub to a trailing dot", _magic("pub orders. x"), nbnats.InvalidSubject, "empty token"),
    ("%nats sub with a space", _magic("sub 'a b'"), nbnats.InvalidSubject, "whitespace"),
    ("%nats req to '>'", _magic("req '>' x"), nbnats.InvalidSubject, "wildcards"),
    ("%nats reply on '>.a'", _magic("reply '>.a' x"), nbnats.InvalidSubject, "last token"),
    # stream, consumer, bucket names and KV keys
    ("tail through a dotted stream", _py(lambda: nbnats.tail("a", stream="ORD.ERS")), nbnats.InvalidName, "ORD_ERS"),
    ("%nats sub through a stream with '*'", _magic("sub a --stream 'S*'"), nbnats.InvalidName, "stream name"),
    ("bucket with a dot", _py(lambda: kv_mod.kv("my.bucket")), nbnats.InvalidName, "my_bucket"),
    ("bucket with a space", _py(lambda: kv_mod.kv("my bucket")), nbnats.InvalidName, "letters, digits"),
    ("stream name with a dot", _py(lambda: js.add_stream("ORD.ERS", "orders.>")), nbnats.InvalidName, "ORD_ERS"),
    ("stream name empty", _py(lambda: js.add_stream("", "orders.>")), nbnats.InvalidName, "is empty"),
    ("stream subjects with an empty token", _py(lambda: js.add_stream("OK", "a..b")), nbnats.InvalidSubject, "empty"),
    ("consumer name with a dot", _py(lambda: js.add_consumer("S", "c.1")), nbnats.InvalidName, "c_1"),
    ("get from a stream named with '>'", _py(lambda: js.get_message("a>b", 1)), nbnats.InvalidName, "a_b"),
    ("replay a stream named with a space", _py(lambda: replay("A B")), nbnats.InvalidName, "A_B"),
    ("replay from seq 0", _py(lambda: replay("S", start_seq=0)), nbnats.ValidationError, "positive whole number"),
    ("%nats stream add a dotted name", _magic("stream add ORD.ERS --subjects 'orders.>'"), nbnats.InvalidName,
     "ORD_ERS"),
    ("%nats consumer add a dotted name", _magic("consumer add S c.1"), nbnats.InvalidName, "c_1"),
    ("%nats replay a bad stream name", _magic("replay 'S*'"), nbnats.InvalidName, "stream name"),
    ("%nats kv add a bad bucket", _magic("kv add 'b/1'"), nbnats.InvalidName, "bucket name"),
    ("Redis-style key", _py(lambda: kv_mod.kv("known").put("user:123", 1)), nbnats.InvalidKey, "user.123"),
    ("key with an empty token", _py(lambda: kv_mod.kv("known").put("a..b", 1)), nbnats.InvalidKey, "a.b"),
    ("key with a leading dot", _py(lambda: kv_mod.kv("known").put(".a", 1)), nbnats.InvalidKey, "'a'"),
    ("key with a wildcard", _py(lambda: kv_mod.kv("known").put("a.*", 1)), nbnats.InvalidKey, "'*'"),
    ("%nats kv put a Redis-style key", _magic("kv put known user:1 v"), nbnats.InvalidKey, "user.1"),
    ("%nats kv get a key with a space", _magic("kv get known 'a b'"), nbnats.InvalidKey, "' '"),
    # headers
    ("a CRLF in a header value", _py(lambda: nbnats.publish("h", "x", headers={"X": "a\r\nY: b"})),
     nbnats.InvalidHeader, "line break"),
    ("a CRLF in a header name", _py(lambda: nbnats.publish("h", "x", headers={"X\r\nY": "b"})),
     nbnats.InvalidHeader, "not allowed"),
    ("a space in a header name", _magic("pub h x -H 'Bad Name:v'"), nbnats.InvalidHeader, "not allowed"),
    ("a header without ':'", _magic("pub h x -H NoColon"), nbnats.NatsError, "KEY:VALUE"),
    # payload size, on a server whose max_payload is 4096
    ("payload over max_payload", _py(lambda: nbnats.publish("p", big)), nbnats.PayloadTooLarge, "4,097 bytes"),
    ("request over max_payload", _py(lambda: nbnats.request("p", big)), nbnats.PayloadTooLarge, "4,096"),
    ("JetStream publish over max_payload", _py(lambda: nbnats.publish("p", big, js=True)),
     nbnats.PayloadTooLarge, "object store"),
    ("a frame with one row over", _py(lambda: nbnats.publish_frame("p", pd.DataFrame({"v": ["ok", big]}))),
     nbnats.PayloadTooLarge, "4,096"),
    ("KV value over max_payload", _py(lambda: kv_mod.kv("known").put("k", big)), nbnats.PayloadTooLarge, "4,096"),
    ("%nats pub over max_payload", _magic("pub p {big}"), nbnats.PayloadTooLarge, "max_payload"),
    ("%%nats pub cell over max_payload", _magic("pub p", big), nbnats.PayloadTooLarge, "max_payload"),
    # the grammar: verbs, flags, quotes, values
    ("an unknown verb", _magic("pubb x"), nbnats.NatsError, "did you mean 'pub'"),
    ("an unknown subverb", _magic("kv pput b k v"), nbnats.NatsError, "did you mean 'put'"),
    ("an unknown flag", _magic("sub x --limt 5"), nbnats.NatsError, "did you mean --limit"),
    ("no verb at all", _magic(""), nbnats.NatsError, "needs a command"),
    ("a group without a subverb", _magic("kv"), nbnats.NatsError, "needs a subcommand"),
    ("unbalanced quotes", _magic("pub x 'oops"), nbnats.NatsError, "unbalanced quotes"),
    ("--timeout abc on req", _magic("req x --timeout abc"), nbnats.NatsError, "not a duration"),
    ("--timeout abc on sub", _magic("sub x --count 1 --timeout abc"), nbnats.NatsError, "not a duration"),
    ("--limit abc", _magic("sub x --limit abc"), nbnats.NatsError, "invalid int value"),
    ("--limit 0", _magic("sub x --limit 0"), nbnats.NatsError, "limit must be"),
    ("--count 0 on pub", _magic("pub x y --count 0"), nbnats.NatsError, "at least 1"),
    ("a body twice", _magic("pub x line", "cell"), nbnats.NatsError, "given twice"),
    ("tail limit=0", _py(lambda: nbnats.tail("x", limit=0)), nbnats.NatsError, "limit must be"),
    ("connect timeout='soon'", _py(lambda: nbnats.connect("nats://127.0.0.1:1", name="never", timeout="soon")),
     nbnats.NatsError, "positive number of seconds"),
]


@pytest.mark.parametrize("case,call,error,fragment", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_clear_error_and_nothing_is_sent(ip, small, case, call, error, fragment):
    srv, conn, watch = small               # the session (and so the magics) on the small server
    if call[0] == "magic" and call[1] and tuple(call[1].split()[:2]) not in VERBS \
            and tuple(call[1].split()[:1]) not in VERBS and error is not nbnats.NatsError:
        pytest.skip(f"%nats {' '.join(call[1].split()[:2])} does not exist yet")
    ip.user_ns["big"] = big
    seen_before, tails_before = len(sent(watch)), nbnats.tails()["running"].sum()
    if call[0] == "py":
        with pytest.raises(error) as info:
            call[1]()
        err = info.value
    else:
        _, line, cell = call
        r = ip.run_cell(f"%nats {line}" if cell is None else f"%%nats {line}\n{cell}")
        assert not r.success
        err = r.error_in_exec
        assert isinstance(err, error), repr(err)
    text = str(err)
    assert isinstance(err, nbnats.NatsError) and fragment in text, text
    assert " — " in text and "\n" not in text and err._render_traceback_() == [f"nbnats: {text}"]
    before_probe = watch.count
    nbnats.publish("probe.after", "x")      # the session still works, and fences what it sent before
    watch.wait(before_probe + 1, timeout=5)
    assert conn.connected and nbnats.tails()["running"].sum() == tails_before
    assert [s for s in sent(watch)[seen_before:] if s != "probe.after"] == [], "something was sent"


def test_payload_exactly_at_max_payload_is_sent(small, uid):
    srv, conn, watch = small
    assert conn.max_payload == MAX
    t = nbnats.tail(uid)
    nbnats.publish(uid, "x" * MAX)
    nbnats.publish(uid, {"v": "y" * (MAX - 8)})   # {"v":"…"} is 8 bytes more
    assert t.wait(2, timeout=5).df["size"].tolist() == [MAX, MAX]


def test_headers_count_for_every_kind_of_write(small, uid):
    """A payload that fits only without its headers — the caller's, Nats-Msg-Id, the KV compare-and-set
    and operation headers — is refused before sending, and the session's subscriptions stay live."""
    srv, conn, watch = small
    t = nbnats.tail(f"{uid}.>")
    kv = nbnats.kv("known")
    rev = kv.put(f"k{uid}", "v")
    fits = "x" * (MAX - 8)                           # fits with no headers, not with any of these
    cases = {
        "own headers": lambda: nbnats.publish(f"{uid}.a", fits, headers={"Trace-Id": "t" * 20}),
        "msg id": lambda: nbnats.publish(f"{uid}.a", fits, msg_id="m" * 20),
        "kv compare-and-set": lambda: kv.update(f"k{uid}", fits, last=rev),
        "kv create": lambda: kv.create(f"n{uid}", fits),
    }
    for name, call in cases.items():
        with pytest.raises(nbnats.PayloadTooLarge, match="headers count too"):
            call()
    nbnats.publish(f"{uid}.b", "still connected")
    assert t.wait(1, timeout=5).df["data"].tolist() == ["still connected"] and conn.connected


# -- the property: whatever the validator accepts, the server takes and gives back -------------------
CHARS = list("ab9_-$*>.") + ["é", "ü", " ", "\t", "\x00", "\x0b", "\x0c", "\x85", "\u2028"]
subjects = st.lists(st.text(alphabet=st.sampled_from(CHARS), max_size=4), min_size=1, max_size=4).map(".".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=subjects)
def test_any_accepted_subject_round_trips_through_the_server(small, subject):
    srv = small[0]
    raw = subject.encode()
    spaced = any(c in subject for c in WHITESPACE)
    try:
        validate.subject(subject)
        sub_ok = True
    except nbnats.InvalidSubject:
        sub_ok = False
    if sub_ok:
        assert server_accepts(srv, b"SUB " + raw + b" 1"), f"the server refuses to subscribe {subject!r}"
    elif not spaced and raw and not client_refuses_to_subscribe(subject):
        assert not server_accepts(srv, b"SUB " + raw + b" 1"), f"{subject!r} was refused, the server takes it"
    try:
        validate.subject(subject, publish=True)
    except nbnats.InvalidSubject:
        if not spaced and raw:
            assert not server_accepts(srv, b"PUB " + raw + b" 0\r\n"), f"{subject!r} refused, the server takes it"
        return
    if client_refuses_to_subscribe(subject):
        pattern = ".".join("*" if "*" in t or ">" in t else t for t in subject.split("."))
    else:
        pattern = subject
    t = nbnats.tail(pattern, count=1)
    nbnats.publish(subject, b"round trip")
    df = t.wait(1, timeout=5).df
    assert df["subject"].tolist() == [subject] and df["data"].tolist() == ["round trip"]
