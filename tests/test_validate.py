"""The server's naming rules, checked before anything is sent (table-driven)."""

import pytest

from nbnats.data import validate
from nbnats.errors import InvalidHeader, InvalidKey, InvalidName, InvalidSubject, PayloadTooLarge

# (subject, ok to subscribe, ok to publish) — mirrors nats-server's IsValidSubject / IsValidPublishSubject
SUBJECTS = [
    ("foo", True, True),
    ("foo.bar", True, True),
    ("foo.*", True, False),
    ("foo.>", True, False),
    (">", True, False),
    ("*", True, False),
    ("foo.*.bar", True, False),
    ("foo*.bar", False, True),       # '*' inside a token is a literal: nats-py will not subscribe to it
    ("foo.bar>", False, True),
    ("foo.>.bar", False, False),     # '>' must be last
    ("", False, False),
    ("foo..bar", False, False),
    (".foo", False, False),
    ("foo.", False, False),
    ("foo bar", False, False),
    ("foo\tbar", False, False),
    ("foo\r\nbar", False, False),
    ("$JS.API.INFO", True, True),
    ("ünïcode.ok", True, True),
]


@pytest.mark.parametrize("subject,sub_ok,pub_ok", SUBJECTS)
def test_subject_rules(subject, sub_ok, pub_ok):
    for publish, ok in ((False, sub_ok), (True, pub_ok)):
        if ok:
            assert validate.subject(subject, publish=publish) == subject
        else:
            with pytest.raises(InvalidSubject) as err:
                validate.subject(subject, publish=publish)
            assert " — " in str(err.value)      # what is wrong — what to do


@pytest.mark.parametrize("pattern,subject,expected", [
    ("orders.>", "orders.eu.new", True), ("orders.>", "orders", False), ("orders.*", "orders.eu", True),
    ("orders.*", "orders.eu.new", False), ("*.new", "orders.new", True), ("a.b", "a.b", True), ("a.b", "a.c", False),
])
def test_subject_matches(pattern, subject, expected):
    assert validate.subject_matches(pattern, subject) is expected


@pytest.mark.parametrize("name,ok", [
    ("ORDERS", True), ("orders_v2", True), ("a-b", True), ("a.b", False), ("a*", False), ("a>", False),
    ("a/b", False), ("a\\b", False), ("a b", False), ("", False), ("x" * 255, True), ("x" * 256, False),
])
def test_stream_names(name, ok):
    if ok:
        assert validate.name(name) == name
    else:
        with pytest.raises(InvalidName):
            validate.name(name)


@pytest.mark.parametrize("key,ok", [
    ("user.123", True), ("a/b=c_d-e", True), ("user:123", False), ("a..b", False), (".a", False),
    ("a.", False), ("", False), ("a b", False), ("a*", False),
])
def test_kv_keys(key, ok):
    if ok:
        assert validate.key(key) == key
    else:
        with pytest.raises(InvalidKey):
            validate.key(key)


def test_redis_style_key_suggests_dots():
    with pytest.raises(InvalidKey, match=r"try 'user\.123'"):
        validate.key("user:123")


def test_headers():
    assert validate.headers({"Trace-Id": 1}) == {"Trace-Id": "1"}
    assert validate.headers(None) is None
    with pytest.raises(InvalidHeader):
        validate.headers({"Bad Name": "x"})
    with pytest.raises(InvalidHeader):
        validate.headers({"X": "a\r\nInjected: yes"})


def test_payload_size_names_both_sizes():
    with pytest.raises(PayloadTooLarge, match=r"2,000 bytes.*1,024 bytes"):
        validate.payload_size(2000, 1024, "big")
