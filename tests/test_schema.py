"""Event schemas against the bundled server: inference, the shared registry, publish checks, check()."""

from __future__ import annotations

import time

import orjson
import pandas as pd
import pytest

import nbnats
from nbnats.schema import inference, registry
from faultkit import wait_until
from nbnats import schema
from nbnats.errors import InvalidSubject, NatsError, NotFound, SchemaError

pytestmark = pytest.mark.timeout(60)

ORDER = {"type": "object",
         "properties": {"id": {"type": "integer"}, "amount": {"type": "number", "minimum": 0},
                        "customer": {"type": "object", "properties": {"id": {"type": "string"}},
                                     "required": ["id"]}},
         "required": ["id", "amount"]}


@pytest.fixture
def patterns(connected):
    """Patterns registered by a test; removed afterwards so no other test is checked against them."""
    made: list[str] = []
    yield made
    for p in made:
        try:
            schema.rm(p)
        except NotFound:
            pass


@pytest.fixture(scope="module", autouse=True)
def drop_bucket(nats_server):
    yield
    nbnats.connect(nats_server.url)

    try:
        nbnats.delete_bucket(schema.BUCKET)
    except NotFound:
        pass
    nbnats.close()


def _orders(uid: str, n: int = 20) -> list[dict]:
    out = []
    for i in range(n):
        order = {"id": i, "status": ["new", "paid", "shipped"][i % 3],
                 "amount": 10.5 + i if i < 12 else f"{10.5 + i:.2f}",     # drifts to a string
                 "customer": {"id": f"c{i % 4}", "tier": i % 2}}
        if i >= 15:
            order["coupon"] = "SPRING"                                   # a key that appears
        if i % 5 == 0:
            order["note"] = "gift"                                       # a key that comes and goes
        if i % 2:
            order["channel"] = "web"                                     # sent on '.created' only
        out.append(order)
    return out


def _add_stream(name: str, subjects: list[str]) -> None:
    nbnats.add_stream(name, subjects=subjects)


def _delete_stream(name: str) -> None:
    nbnats.delete_stream(name)


# -- inference ------------------------------------------------------------------------
def test_infer_from_tail_mixed_and_drifting(connected, uid):
    t = nbnats.tail(f"{uid}.orders.>")
    for i, order in enumerate(_orders(uid)):
        nbnats.publish(f"{uid}.orders.{'created' if i % 2 else 'paid'}", order)
    t.wait(20, timeout=5)
    s = schema.infer(t, enums=True, ranges=True)
    assert s["$schema"].endswith("2020-12/schema") and s["type"] == "object"
    props = s["properties"]
    assert props["id"] == {"type": "integer", "minimum": 0, "maximum": 19}
    assert props["status"]["enum"] == ["new", "paid", "shipped"]
    assert props["amount"]["type"] == ["string", "number"]
    assert props["customer"]["type"] == "object"
    assert props["customer"]["required"] == ["id", "tier"]
    assert props["customer"]["properties"]["id"]["enum"] == ["c0", "c1", "c2", "c3"]
    assert props["customer"]["properties"]["tier"]["maximum"] == 1
    assert s["required"] == ["id", "status", "amount", "customer"]
    assert s.pattern == f"{uid}.orders.*" and s.messages == 20
    drift = s.drift.set_index("field")
    assert drift.loc["amount", "kind"] == "type changed"
    assert "was number (12×), then string from message 12" in drift.loc["amount", "detail"]
    assert drift.loc["coupon", "kind"] == "new key"
    assert "appears from message 15" in drift.loc["coupon", "detail"]
    assert drift.loc["note", "kind"] == "sometimes present" and drift.loc["note", "messages"] == 4
    assert drift.loc["channel", "kind"] == "by subject"
    assert drift.loc["channel", "detail"].startswith(f"always on {uid}.orders.created, never on the other")
    assert jsonschema_accepts(s, _orders(uid))


def jsonschema_accepts(doc: dict, values: list) -> bool:
    import jsonschema
    v = jsonschema.Draft202012Validator(doc)
    return all(v.is_valid(x) for x in values)


def test_infer_from_frame_undoes_flattening(connected, uid):
    t = nbnats.tail(f"{uid}.f")
    nbnats.publish(f"{uid}.f", {"id": 1, "geo": {"lat": 1.5, "lon": 2.5}, "tags": ["a"]})
    nbnats.publish(f"{uid}.f", {"id": 2, "geo": {"lat": 3.0, "lon": 4.0}, "tags": [], "opt": 7})
    nbnats.publish(f"{uid}.f", {"id": 3, "geo": {"lat": 5.0, "lon": 6.0}, "tags": ["b", "c"]})
    t.wait(3, timeout=5)
    from_frame = schema.infer(t.df)
    from_tail = schema.infer(t)
    assert from_frame["properties"]["geo"]["properties"]["lat"]["type"] == "number"
    assert from_frame["properties"]["geo"]["required"] == ["lat", "lon"]
    assert from_frame["properties"]["tags"] == {"type": "array", "items": {"type": "string"}}
    # 'opt' has gaps, so the frame holds it as float: inference still says integer
    assert from_frame["properties"]["opt"]["type"] == "integer"
    assert dict(from_frame)["properties"] == dict(from_tail)["properties"]
    assert from_frame["required"] == ["id", "geo", "tags"]


def test_infer_non_object_and_undecodable_payloads(connected, uid):
    t = nbnats.tail(f"{uid}.x")
    nbnats.publish(f"{uid}.x", "hello")
    nbnats.publish(f"{uid}.x", {"a": 1})
    nbnats.publish(f"{uid}.x", b'{"broken": ')
    t.wait(3, timeout=5)
    s = schema.infer(t.df)
    assert s["type"] == ["object", "string"]
    kinds = dict(zip(s.drift["field"] + "/" + s.drift["kind"], s.drift["messages"]))
    assert kinds["(payload)/type changed"] == 2
    assert kinds["(payload)/undecodable"] == 1


def test_infer_bad_source():
    with pytest.raises(NatsError, match="cannot read messages from a int"):
        schema.infer(42)
    with pytest.raises(NatsError, match="nothing to read messages from"):
        schema.infer()
    with pytest.raises(InvalidSubject):
        schema.infer([{"a": 1}], subject="a..b")


# -- the shared registry and publish checks --------------------------------------------
def test_register_refuses_bad_publish_naming_the_field(connected, uid, patterns):
    pattern = f"{uid}.orders.>"
    patterns.append(pattern)
    t = nbnats.tail(f"{uid}.>")
    revision = schema.register(pattern, ORDER)
    assert revision >= 1
    nbnats.publish(f"{uid}.orders.new", {"id": 1, "amount": 2.5})
    with pytest.raises(SchemaError) as err:
        nbnats.publish(f"{uid}.orders.new", {"id": 2, "amount": "lots"})
    assert str(err.value).startswith(f"the message for '{uid}.orders.new' breaks the schema for "
                                     f"'{pattern}': field 'amount': 'lots' is not of type 'number' (rule 'type')")
    with pytest.raises(SchemaError, match="field 'customer.id' is missing \\(rule 'required'\\)"):
        nbnats.publish(f"{uid}.orders.new", {"id": 3, "amount": 1, "customer": {}})
    with pytest.raises(SchemaError, match="field 'amount': -1 is less than the minimum of 0"):
        nbnats.publish(f"{uid}.orders.new", '{"id": 4, "amount": -1}')     # JSON text is checked too
    with pytest.raises(SchemaError, match="field 'id' is missing"):
        nbnats.request(f"{uid}.orders.ask", {"amount": 1}, timeout=0.5)
    nbnats.publish(f"{uid}.other", {"anything": True})                    # other subjects are free
    t.wait(2, timeout=5)
    time.sleep(0.1)
    assert t.count == 2                                                    # nothing refused was sent
    listed = schema.ls()
    assert pattern in listed["pattern"].tolist()
    row = listed.set_index("pattern").loc[pattern]
    assert row["required"] == ["id", "amount"] and row["revision"] == revision
    assert schema.get(pattern) == ORDER

    schema.rm(pattern)
    nbnats.publish(f"{uid}.orders.new", {"id": "now fine"})
    assert pattern not in schema.ls()["pattern"].tolist()


def test_inferred_schema_registers_and_validates(connected, uid, patterns):
    t = nbnats.tail(f"{uid}.o.*")
    for order in _orders(uid, 10):
        nbnats.publish(f"{uid}.o.created", order)
    t.wait(10, timeout=5)
    inferred = schema.infer(t, enums=True)
    patterns.append(inferred.pattern)
    schema.register(inferred.pattern, inferred)
    nbnats.publish(f"{uid}.o.created", _orders(uid, 3)[2])
    with pytest.raises(SchemaError, match="field 'status': 'lost' is not one of"):
        nbnats.publish(f"{uid}.o.created", {**_orders(uid, 1)[0], "status": "lost"})


def test_another_notebooks_registration_is_seen(connected, nats_server, uid, patterns):
    """A second connection stands for another notebook; the watcher brings its schema here."""
    pattern = f"{uid}.pay.*"
    patterns.append(pattern)
    nbnats.publish(f"{uid}.pay.x", {"warm": "up"})        # this connection's registry is started
    nbnats.connect(nats_server.url, name="other")
    try:
        schema.register(pattern, {"type": "object", "required": ["amount"]}, connection="other")
    finally:
        nbnats.close("other")
    nbnats.use("default")
    refusals: list[str] = []

    def refused() -> bool:
        try:
            nbnats.publish(f"{uid}.pay.x", {"id": 1})
        except SchemaError as err:
            refusals.append(str(err))
        return bool(refusals)

    wait_until(refused, 5, "the other connection's schema arriving here")
    assert "field 'amount' is missing" in refusals[0]


def test_bad_schema_documents_and_patterns(connected, uid):
    with pytest.raises(SchemaError) as err:
        schema.register(f"{uid}.a", {"type": "objekt"})
    assert str(err.value).startswith("the schema is not valid JSON Schema: 'objekt' is not valid")
    assert "(at type)" in str(err.value)
    with pytest.raises(SchemaError, match="the schema is not valid JSON Schema: 'x' is not of type 'array'"):
        schema.register(f"{uid}.a", {"type": "object", "required": "x"})
    with pytest.raises(SchemaError, match="a schema must be a JSON object \\(a dict\\), not a list"):
        schema.register(f"{uid}.a", ["type", "object"])
    with pytest.raises(SchemaError, match="the schema is not valid JSON"):
        schema.register(f"{uid}.a", '{"type": ')
    with pytest.raises(SchemaError, match="cannot be stored as JSON"):
        schema.register(f"{uid}.a", {"type": "object", "default": object()})
    with pytest.raises(InvalidSubject, match="subject pattern 'a..b' has an empty token"):
        schema.register("a..b", ORDER)
    with pytest.raises(InvalidSubject, match="whitespace"):
        schema.register("orders created", ORDER)
    with pytest.raises(NotFound, match=f"no schema is registered for '{uid}.nothing'"):
        schema.rm(f"{uid}.nothing")
    with pytest.raises(NotFound):
        schema.get(f"{uid}.nothing")
    assert f"{uid}.a" not in schema.ls()["pattern"].tolist()


def test_register_accepts_json_text_and_validate_helper(connected, uid, patterns):
    pattern = f"{uid}.txt"
    patterns.append(pattern)
    schema.register(pattern, '{"type": "object", "required": ["a"]}')
    schema.validate(pattern, {"a": 1})
    with pytest.raises(SchemaError, match="field 'a' is missing"):
        schema.validate(pattern, {"b": 1})


# -- check ------------------------------------------------------------------------------
def test_check_on_a_replayed_frame(connected, uid, patterns):
    stream = f"S{uid}"
    _add_stream(stream, [f"{uid}.ck.>"])
    try:
        rows = [{"id": 1, "amount": 5}, {"id": "two", "amount": 5}, {"amount": 1},
                {"id": 4, "amount": -3}, {"id": 5, "amount": 1.5}]
        for r in rows:
            nbnats.publish(f"{uid}.ck.order", r, js=True)
        nbnats.publish(f"{uid}.ck.note", "free text", js=True)   # no schema for this subject
        patterns.append(f"{uid}.ck.order")
        schema.register(f"{uid}.ck.order", ORDER)
        replay = getattr(nbnats, "replay", None)      # nbnats.replay once exported; the same frame
        frame = replay(stream) if callable(replay) else inference._stream_frame(stream)
        assert len(frame) == 6
        bad = schema.check(frame)
        assert bad.index.tolist() == [1, 2, 3]
        assert bad["field"].tolist() == ["id", "id", "amount"]
        assert bad["rule"].tolist() == ["type", "required", "minimum"]
        assert bad["pattern"].unique().tolist() == [f"{uid}.ck.order"]
        assert bad["seq"].tolist() == [2, 3, 4]                   # the rows keep their columns
        assert "'two' is not of type 'integer'" in bad.loc[1, "error"]
        last_two = inference._stream_frame(stream, limit=2)              # what --stream reads
        assert last_two["seq"].tolist() == [5, 6] and last_two["subject"].tolist()[-1] == f"{uid}.ck.note"

        by_stream = schema.check(stream=stream)
        assert by_stream.index.tolist() == [1, 2, 3]
        strict = schema.check(frame, schema={"type": "object", "required": ["id"]})
        assert strict.index.tolist() == [2, 5]                   # the text payload is no object
    finally:
        _delete_stream(stream)


def test_check_a_tail_and_bad_input(connected, uid):
    t = nbnats.tail(f"{uid}.c")
    nbnats.publish(f"{uid}.c", {"id": 1})
    nbnats.publish(f"{uid}.c", b"\xff\xfe")
    t.wait(2, timeout=5)
    bad = schema.check(t, schema={"type": "object"})
    assert bad.index.tolist() == [1]
    assert bad.loc[1, "rule"] == "type"
    assert schema.check(t, schema={"type": "object"}, subject=f"{uid}.none").empty
    with pytest.raises(NatsError, match="no subject column"):
        schema.check(pd.DataFrame({"id": [1]}))
    assert schema.check(pd.DataFrame({"id": [1, "x"]}), schema={
        "properties": {"id": {"type": "integer"}}}).index.tolist() == [1]


# -- the %nats schema verbs ---------------------------------------------------------------
def test_schema_magics(ip, uid, patterns):
    from conftest import run_cell
    pattern = f"{uid}.mg.>"
    patterns.append(pattern)
    ip.run_cell(f"t_{uid} = nbnats.tail('{uid}.mg.>')" if "nbnats" in ip.user_ns
                else f"import nbnats; t_{uid} = nbnats.tail('{uid}.mg.>')")
    t = ip.user_ns[f"t_{uid}"]
    for i in range(6):
        nbnats.publish(f"{uid}.mg.a", {"id": i, "kind": "a" if i % 2 else "b"})
    t.wait(6, timeout=5)
    assert ip.run_line_magic("nats", f"schema infer t_{uid}")["properties"]["kind"] == {"type": "string"}
    inferred = ip.run_line_magic("nats", f"schema infer t_{uid} --enums")
    assert inferred["properties"]["kind"]["enum"] == ["a", "b"]
    ip.user_ns[f"s_{uid}"] = inferred
    ip.run_line_magic("nats", f"schema set '{pattern}' s_{uid}")
    listed = ip.run_line_magic("nats", "schema ls")
    assert pattern in listed["pattern"].tolist()
    with pytest.raises(SchemaError, match="field 'kind'"):
        nbnats.publish(f"{uid}.mg.a", {"id": 9, "kind": "zzz"})
    ip.user_ns[f"df_{uid}"] = t.df
    assert ip.run_line_magic("nats", f"schema check df_{uid}").empty
    ip.run_cell_magic("nats", f"schema set '{pattern}'", '{"type": "object", "required": ["other"]}')
    bad = ip.run_line_magic("nats", f"schema check df_{uid}")
    assert len(bad) == 6 and set(bad["field"]) == {"other"}
    shown_schema = ip.run_line_magic("nats", f"schema get '{pattern}'")
    assert shown_schema.data == {"type": "object", "required": ["other"]}
    ip.run_line_magic("nats", f"schema rm '{pattern}'")
    assert pattern not in schema.ls()["pattern"].tolist()

    result, shown = run_cell(ip, f"%nats schema infer no_such_var_{uid}")
    assert isinstance(result.error_in_exec, NatsError)
    assert f"nbnats: there is no notebook variable 'no_such_var_{uid}'" in shown
    result, shown = run_cell(ip, "%nats schema set 'a..b' x")
    assert isinstance(result.error_in_exec, NatsError)
    result, shown = run_cell(ip, f"%nats schema set '{uid}.q'")
    assert "no schema was given" in str(result.error_in_exec)


def test_schema_magic_stream_source(ip, uid):
    stream = f"M{uid}"
    _add_stream(stream, [f"{uid}.st.>"])
    try:
        for i in range(4):
            nbnats.publish(f"{uid}.st.x", {"n": i}, js=True)
        inferred = ip.run_line_magic("nats", f"schema infer --stream {stream} --ranges")
        assert inferred["properties"]["n"] == {"type": "integer", "minimum": 0, "maximum": 3}
        assert inferred.messages == 4
        ip.user_ns[f"strict_{uid}"] = {"properties": {"n": {"maximum": 1}}}
        bad = ip.run_line_magic("nats", f"schema check --stream {stream} --schema strict_{uid}")
        assert bad["seq"].tolist() == [3, 4]
    finally:
        _delete_stream(stream)


def test_server_without_jetstream(nats_server, uid):
    srv = nbnats.server.start(jetstream=False)
    try:
        nbnats.connect(srv.url, name="nojs")
        nbnats.publish(f"{uid}.x", {"a": 1})                    # publishing is not held up
        with pytest.raises(nbnats.JetStreamError, match="JetStream is not enabled on the server at"):
            schema.register(f"{uid}.x", {"type": "object"})
    finally:
        nbnats.close("nojs")
        srv.stop()


def test_values_written_by_hand_into_the_bucket(connected, uid, patterns):
    """The bucket is shared: junk written there by other tools must not break publishing here."""
    junk, unusable = f"{uid}.junk", f"{uid}.unusable"
    patterns.extend([junk, unusable])
    schema.register(f"{uid}.seed", {"type": "object"})              # makes sure the bucket exists
    patterns.append(f"{uid}.seed")

    kv = nbnats.kv(schema.BUCKET)                                  # as another tool would write it
    kv.put(registry._key(junk), b"not json at all")
    kv.put(registry._key(unusable), orjson.dumps({"pattern": unusable, "schema": {"type": "objekt"}}))
    assert junk not in schema.ls()["pattern"].tolist()
    nbnats.publish(junk, {"a": 1})                                  # the unreadable value is ignored
    with pytest.raises(SchemaError, match=f"the schema registered for '{unusable}' cannot be used"):
        nbnats.publish(unusable, {"a": 1})


def test_inferred_schemas_describe_types_and_required_fields_by_default(connected, uid, patterns):
    """The default never refuses the next valid message for a value or range the sample did not show."""
    sample = [{"id": i, "status": ["new", "paid"][i % 2], "amount": 10.0 + i} for i in range(40)]
    s = schema.infer(sample)
    assert s["properties"]["status"] == {"type": "string"} and "minimum" not in s["properties"]["amount"]
    assert sorted(s["required"]) == ["amount", "id", "status"]
    pattern = f"{uid}.d.>"
    patterns.append(pattern)
    schema.register(pattern, s)
    nbnats.publish(f"{uid}.d.x", {"id": 10_000, "status": "refunded", "amount": 0.5})   # new value, new range
    with pytest.raises(SchemaError) as err:
        nbnats.publish(f"{uid}.d.x", {"id": 1})
    said = str(err.value)
    assert said.count("'amount'") == 1 and said.count("'status'") == 1      # each missing field named, once
