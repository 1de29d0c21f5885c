"""The %nats grammar: parsing, quoting, help, closest-match errors, cell bodies."""

import pytest

import nbnats
from nbnats.magics.registry import MagicUsageError, tokenize


@pytest.mark.parametrize("line,tokens", [
    ('pub a "hello world"', ["pub", "a", "hello world"]),
    ("pub a 'single quoted'", ["pub", "a", "single quoted"]),
    ('pub a {"id": 1, "n": "x y"}', ["pub", "a", '{"id": 1, "n": "x y"}']),
    ('pub a [1, 2] --count 2', ["pub", "a", "[1, 2]", "--count", "2"]),
    ('pub -H K:V a {"x": {"y": 2}}', ["pub", "-H", "K:V", "a", '{"x": {"y": 2}}']),
    ("sub 'orders.>' --limit 5", ["sub", "orders.>", "--limit", "5"]),
    ("""pub s '{"a": ["x"]}'""", ["pub", "s", '{"a": ["x"]}']),
])
def test_tokenize_keeps_quotes_and_json(line, tokens):
    assert tokenize(line) == tokens


def test_unbalanced_quotes():
    with pytest.raises(MagicUsageError, match="unbalanced quotes"):
        tokenize("pub a 'oops")


def _error(ip, code):
    r = ip.run_cell(code)
    assert not r.success
    return r.error_in_exec


def test_unknown_verb_suggests_the_closest(ip):
    err = _error(ip, "%nats pubb x")
    assert isinstance(err, nbnats.NatsError) and "did you mean 'pub'" in str(err)
    err = _error(ip, "%nats stream lss")
    assert "did you mean" in str(err) or "unknown command" in str(err)


def test_unknown_flag_suggests_the_closest(ip):
    err = _error(ip, "%nats pub x --cout 3")
    assert "--cout" in str(err) and "did you mean --count" in str(err)


def test_bad_values_are_usage_errors(ip):
    assert "is not a duration" in str(_error(ip, "%nats req x --timeout abc"))
    assert "invalid int value" in str(_error(ip, "%nats pub x --count lots"))


def test_help_prints_and_does_not_fail(ip, capsys):
    r = ip.run_cell("%nats --help")
    assert r.success
    r = ip.run_cell("%nats pub --help")
    assert r.success


def test_pub_sub_req_reply_from_magics(ip, uid):
    t = ip.run_line_magic("nats", f"sub '{uid}.>' --no-widget")
    assert isinstance(t, nbnats.Tail)
    ip.run_line_magic("nats", f'pub {uid}.a {{"id": 1, "note": "a b"}} -H Trace-Id:xyz --count 2')
    ip.run_line_magic("nats", f'pub {uid}.b "hello world"')
    df = t.wait(3, timeout=5).df
    assert df["id"].tolist()[:2] == [1, 1] and df["note"].tolist()[:2] == ["a b", "a b"]
    assert df.loc[0, "headers"] == {"Trace-Id": "xyz"} and df.loc[2, "data"] == "hello world"

    svc = ip.run_line_magic("nats", f"reply {uid}.echo")
    assert ip.run_line_magic("nats", f"req {uid}.echo ping").text == "ping"
    fixed = ip.run_line_magic("nats", f'reply {uid}.fixed {{"ok": true}}')
    assert ip.run_line_magic("nats", f"req {uid}.fixed").json() == {"ok": True}
    assert {svc.id, fixed.id} <= {s.id for s in nbnats.messaging.services_running()}
    ip.run_line_magic("nats", "stop --all")
    assert not svc.running and not t.running


def test_cell_body_and_lines(ip, uid):
    t = ip.run_line_magic("nats", f"sub {uid} --no-widget")
    ip.run_cell_magic("nats", f"pub {uid}", '{\n  "pretty": true\n}\n')
    ip.run_cell_magic("nats", f"pub {uid} --lines", '{"n": 1}\n\nplain line\n')
    df = t.wait(3, timeout=5).df
    assert df.loc[0, "pretty"] == True  # noqa: E712
    assert df.loc[1, "n"] == 1 and df.loc[2, "data"] == "plain line"


def test_variable_expansion_fills_bodies(ip, uid):
    t = ip.run_line_magic("nats", f"sub {uid} --no-widget")
    ip.user_ns["order"] = {"id": 42}
    ip.run_cell(f"%nats pub {uid} {{order}}")       # a Python dict repr becomes JSON
    ip.user_ns["word"] = "dollar"
    ip.run_cell(f"%nats pub {uid} $word")
    df = t.wait(2, timeout=5).df
    assert df.loc[0, "id"] == 42 and df.loc[1, "data"] == "dollar"


def test_status_tails_and_errors_are_one_line(ip, uid):
    status = ip.run_line_magic("nats", "status")
    assert status.loc["jetstream", "value"] is True
    err = _error(ip, f"%nats pub {uid}.* x")
    assert isinstance(err, nbnats.InvalidSubject)
    lines = err._render_traceback_()
    assert lines == [f"nbnats: {err}"] and "\n" not in lines[0] and " — " in lines[0]


def test_group_without_subcommand(ip):
    err = _error(ip, "%nats server")
    assert "needs a subcommand" in str(err) and "start" in str(err)


def test_cell_body_refused_where_it_makes_no_sense(ip):
    r = ip.run_cell("%%nats status\nsomething\n")
    assert not r.success and "takes no cell body" in str(r.error_in_exec)


def test_server_start_info_stop_and_connect(ip, uid):
    srv = ip.run_line_magic("nats", "server start")
    try:
        assert srv.running and nbnats.status()["url"] == srv.url
        info = ip.run_line_magic("nats", "server info")
        assert info["version"] == "2.15.1" and info["jetstream"]["enabled"]
    finally:
        ip.run_line_magic("nats", "server stop")
    assert not srv.running
    err = _error(ip, "%nats server stop")
    assert "no server was started" in str(err)


def test_connect_and_close_magics(ip, nats_url, uid):
    conn = ip.run_line_magic("nats", f"connect {nats_url} --name {uid}")
    assert conn.connected and conn.name == uid
    ip.run_line_magic("nats", f"close --name {uid}")
    assert not conn.connected
    nbnats.use("default")


def test_service_magics(ip, uid):
    name = f"m{uid}"
    svc = nbnats.add_service(name, {f"{uid}.hi": lambda m: "hi"})
    try:
        ls = ip.run_line_magic("nats", "service ls")
        assert name in ls["name"].tolist()
        stats = ip.run_line_magic("nats", f"service stats {name}")
        assert stats["endpoint"].tolist() == [f"{uid}.hi".replace(".", "_")]
    finally:
        svc.stop()


def test_errors_are_worded_for_python_in_python_and_for_magics_in_magics(ip, uid):
    """One error, two faces: the Python API advises Python calls, a %nats cell advises %nats verbs."""
    from nbnats.errors import NotFound
    with pytest.raises(NotFound) as py:
        nbnats.stream_info(f"NOPE{uid}")
    assert "nbnats.streams()" in py.value.fix and "%nats" not in str(py.value)
    with pytest.raises(NotFound) as magic:
        ip.run_line_magic("nats", f"stream info NOPE{uid}")
    assert "%nats stream ls" in magic.value.fix and "nbnats." not in magic.value.fix
    with pytest.raises(nbnats.JetStreamError) as replicas:
        ip.run_line_magic("nats", f"stream add R{uid} --subjects {uid}.r --replicas 3")
    assert "--replicas 1" in replicas.value.fix and "%nats server start --cluster 3" in replicas.value.fix


def test_a_bad_key_is_refused_before_the_bucket_is_looked_up(ip, uid):
    from nbnats.errors import InvalidKey
    for line in (f"kv put nobucket{uid} user:123 1", f"kv get nobucket{uid} user:123", f"kv del nobucket{uid} a..b"):
        with pytest.raises(InvalidKey):
            ip.run_line_magic("nats", line)
    with pytest.raises(nbnats.NotFound):                   # a good key on a missing bucket: the bucket is named
        ip.run_line_magic("nats", f"kv get nobucket{uid} user.123")


def test_sub_takes_several_subjects(ip, uid):
    t = ip.run_line_magic("nats", f"sub {uid}.a {uid}.b --no-widget")
    nbnats.publish(f"{uid}.a", "1")
    nbnats.publish(f"{uid}.b", "2")
    assert t.subjects == [f"{uid}.a", f"{uid}.b"] and sorted(t.wait(2, timeout=5).df["data"]) == ["1", "2"]


def test_sub_with_count_and_timeout_still_gives_the_tail(ip, uid, capsys):
    t = ip.run_line_magic("nats", f"sub {uid} --count 2 --timeout 0.3 --no-widget")
    assert t is not None and t.running and "received 0 of 2" in capsys.readouterr().out
    nbnats.publish(uid, "1")
    nbnats.publish(uid, "2")
    assert t.wait(2, timeout=5).count == 2


def test_natsmagic_settings(ip, uid, capsys):
    """%config NatsMagic.display_limit / .timeout / .output, as jupysql users expect; listed by %config NatsMagic."""
    import time as _time
    import pyarrow as pa
    ip.run_line_magic("config", "NatsMagic")
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("display_limit", "timeout", "output"))
    stream = f"C{uid}"
    nbnats.add_stream(stream, f"{uid}.>")
    try:
        for i in range(10):
            nbnats.publish(f"{uid}.x", {"i": i}, js=True)
        ip.run_line_magic("config", "NatsMagic.display_limit = 3")
        df = ip.run_line_magic("nats", f"replay {stream} --no-progress")
        assert len(df) == 10 and "7 more rows" in df._repr_html_() and df["i"].sum() == 45
        ip.run_line_magic("config", "NatsMagic.output = 'arrow'")
        table = ip.run_line_magic("nats", f"replay {stream} --no-progress")
        assert isinstance(table, pa.Table) and table.num_rows == 10
        ip.run_line_magic("config", "NatsMagic.output = 'polars'")
        try:
            import polars  # noqa: F401
        except ModuleNotFoundError:
            with pytest.raises(nbnats.ValidationError, match="pip install polars"):
                ip.run_line_magic("nats", f"replay {stream} --no-progress")
        else:
            assert len(ip.run_line_magic("nats", f"replay {stream} --no-progress")) == 10
        ip.run_line_magic("config", "NatsMagic.output = 'pandas'")
        nbnats.serve(f"slow{uid}", lambda m: _time.sleep(1) or "late")   # (outside the stream's subjects)
        ip.run_line_magic("config", "NatsMagic.timeout = 0.3")
        with pytest.raises(nbnats.Timeout, match="within 0.3 s"):
            ip.run_line_magic("nats", f"req slow{uid}")
    finally:
        ip.run_line_magic("config", "NatsMagic.display_limit = 50")
        ip.run_line_magic("config", "NatsMagic.output = 'pandas'")
        ip.run_line_magic("config", "NatsMagic.timeout = None")
        nbnats.delete_stream(stream)


def test_tab_completion_from_the_live_server(ip, uid):
    """Names after the verbs that take them, through IPython's completer; fast with thousands of names."""
    import time as _time
    from faultkit import wait_until
    from nbnats.magics import complete
    nbnats.add_stream(f"TAB{uid}A", f"{uid}.a")
    nbnats.add_stream(f"TAB{uid}B", f"{uid}.b")
    kv = nbnats.kv(f"tab{uid}", create=True)
    for i in range(3000):
        kv.put(f"user.{i}", i)
    try:
        line = f"%nats stream info TAB{uid}"
        wait_until(lambda: ip.complete("", line, len(line))[1] == [f"TAB{uid}A", f"TAB{uid}B"], 10, "stream names")
        line = f"%nats consumer add TAB{uid}"
        assert f"TAB{uid}A" in ip.complete("", line, len(line))[1]
        line = f"%nats kv get tab{uid} user.29"
        wait_until(lambda: len(complete.complete(line)) == 111, 10, "the bucket's keys")   # user.29, .290-.299, .2900-.2999
        assert ip.complete("", line, len(line))[1][:2] == ["user.29", "user.290"]
        start = _time.perf_counter()
        complete.complete(f"%nats kv get tab{uid} user.")     # 3,000 names, from the cache
        assert _time.perf_counter() - start < 0.2
        assert complete.complete(f"%nats pub TAB{uid}") == [] and complete.complete("%nats stream info --") == []
    finally:
        nbnats.delete_stream(f"TAB{uid}A")
        nbnats.delete_stream(f"TAB{uid}B")
        nbnats.delete_bucket(f"tab{uid}")


def test_variables_expand_in_lines_and_cell_bodies(ip, uid):
    ip.user_ns.update(subj=f"{uid}.v", who="ada", n=3)
    t = nbnats.tail(f"{uid}.v")
    ip.run_line_magic("nats", "pub {subj} hello-$who")
    ip.run_cell_magic("nats", "pub {subj} --lines", "one {who}\ntwo $n")
    assert t.wait(3, timeout=5).df["data"].tolist() == ["hello-ada", "one ada", "two 3"]
