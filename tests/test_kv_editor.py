"""The KV editor and the watch table, driven through their widget state in this process,
while a second, independent connection writes to the same bucket."""

from __future__ import annotations

import asyncio
import time

import pytest

import nbnats
from faultkit import wait_until
from nbnats.runtime import loop
from nbnats.engine.publish import publish
from nbnats.errors import KeyDeleted, NatsError, NotFound
from nbnats.kv import delete_bucket, kv as open_kv
from nbnats.widgets.kv_editor import MAX_TEXT, KVEditor, KVWatchView, from_text, natural_key


def eventually(check, timeout: float = 5.0, what: str = "the condition"):
    return wait_until(check, timeout, what)


def fill(kv, values: dict[str, bytes]) -> None:
    """Write many keys at once through the engine, a thousand publishes in flight at a time."""
    conn = kv.conn
    items = list(values.items())

    async def go():
        for i in range(0, len(items), 1000):
            await asyncio.gather(*(publish(conn, kv.prefix + k, v) for k, v in items[i:i + 1000]))

    loop.run(go(), 120, f"writing {len(items):,} keys")


@pytest.fixture
def kv(connected, uid):
    b = open_kv(f"ed_{uid}", create=True, history=4)
    yield b
    try:
        delete_bucket(b.bucket)
    except NatsError:
        pass


@pytest.fixture
def other(kv, nats_url):
    """The same bucket through a second connection, as another client would write it."""
    nbnats.connect(nats_url, name="other")
    nbnats.use("default")
    yield open_kv(kv.bucket, connection="other")
    nbnats.close("other")


def labels(ed: KVEditor) -> dict[str, str]:
    return {key: label for label, key in ed.key_list.options}


def test_lists_keys_and_values_and_edits_in_place(kv):
    kv.put("user.2", {"name": "bo"})
    kv.put("user.10", {"name": "al"})
    kv.put("note", "plain text")
    ed = kv.editor()
    try:
        assert [k for _, k in ed.key_list.options] == ["note", "user.2", "user.10"]
        assert '{"name":"bo"}' in labels(ed)["user.2"]
        ed.key_list.value = "user.2"                   # what clicking does
        assert ed.loaded.key == "user.2" and ed.key_box.value == "user.2"
        assert ed.value_box.value == '{\n  "name": "bo"\n}' and ed.kind == "json"
        ed.value_box.value = '{"name": "bo", "cart": 3}'
        ed.save_button.click()
        assert "saved as revision" in ed.status.value and ed.error is None
        assert kv.get("user.2").value == {"name": "bo", "cart": 3}
        eventually(lambda: '"cart":3' in labels(ed)["user.2"], what="the new value in the list")
        ed.key_list.value = "note"
        ed.value_box.value = "still text"
        ed.save_button.click()
        assert kv.get("note").value == "still text"
    finally:
        ed.stop()


def test_another_clients_change_shows_live_and_a_stale_edit_is_a_conflict(kv, other):
    kv.put("cfg.mode", {"mode": "a"})
    ed = kv.editor()
    try:
        ed.select("cfg.mode")
        base = ed.loaded.revision
        # an untouched editor follows the other client's write
        rev = other.put("cfg.mode", {"mode": "b"})
        eventually(lambda: ed.loaded.revision == rev, what="the live update")
        assert '"b"' in ed.value_box.value and "updated live" in ed.status.value
        assert '"mode":"b"' in labels(ed)["cfg.mode"]
        # now I edit, and they write again before I save
        ed.history_button.value = True
        ed.value_box.value = '{"mode": "mine"}'
        theirs = other.put("cfg.mode", {"mode": "theirs"})
        eventually(lambda: "changed by someone else" in ed.status.value, what="the warning")
        assert ed.loaded.revision == rev and ed.theirs.revision == theirs      # the CAS base stays mine
        eventually(lambda: f"<td>{theirs}</td>" in ed.history_table.value, what="their revision in the history")
        assert ed.value_box.value == '{"mode": "mine"}'        # my edit is kept, not clobbered
        ed.save_button.click()
        assert "conflict" in ed.status.value and "NOT saved" in ed.status.value
        assert ed.conflict.revision == theirs and ed.overwrite_button.layout.display == ""
        assert kv.get("cfg.mode").value == {"mode": "theirs"}   # nothing was overwritten
        assert base < rev < theirs
        ed.overwrite_button.click()                             # a deliberate overwrite
        assert kv.get("cfg.mode").value == {"mode": "mine"} and "saved" in ed.status.value
        # a new key and a deletion by the other client appear and vanish
        other.put("cfg.added", "new")
        eventually(lambda: "cfg.added" in labels(ed), what="the new key in the list")
        other.delete("cfg.added")
        eventually(lambda: "cfg.added" not in labels(ed), what="the deleted key leaving the list")
        assert ed.last_change[0] == "cfg.added" and ed.last_change[2] == "DEL"
    finally:
        ed.stop()


def test_add_delete_history_and_revert(kv):
    ed = kv.editor()
    try:
        ed.key_box.value = "job.1"
        ed.value_box.value = '{"state": "new"}'
        ed.add_button.click()
        assert kv.get("job.1").value == {"state": "new"} and "added" in ed.status.value
        ed.add_button.click()                                   # it exists now
        assert "already exists" in ed.status.value and ed.error
        first = ed.loaded.revision
        ed.value_box.value = '{"state": "done"}'
        ed.save_button.click()
        ed.history_button.value = True
        assert ed.history_box.layout.display == "" and "done" in ed.history_table.value
        assert ed.revisions.value == first
        ed.revert_button.click()
        assert kv.get("job.1").value == {"state": "new"} and "reverted" in ed.status.value
        ed.delete_button.click()
        assert "deleted" in ed.status.value and ed.loaded.deleted
        with pytest.raises(KeyDeleted):
            kv.get("job.1")
        eventually(lambda: "job.1" not in labels(ed), what="the deleted key leaving the list")
        ed.show_deleted.value = True
        assert "✗ del" in labels(ed)["job.1"]
        ed.revert(first)                                        # bring it back
        assert kv.get("job.1").value == {"state": "new"}
    finally:
        ed.stop()


def test_revert_to_a_gone_revision_and_bad_edits_write_nothing(kv):
    first = kv.put("k", {"v": 0})
    kv.put("k", {"v": 1})
    ed = kv.editor()
    try:
        ed.select("k")
        ed.history_button.value = True
        ed.revisions.value = first                              # picked in the History dropdown …
        ed.stop()                                               # (frozen, so the dropdown keeps it)
        for i in range(2, 6):                                   # … then it falls out (history 4)
            kv.put("k", {"v": i})
        before = kv.info()["values"]
        ed.revert_button.click()
        assert f"revision {first} of key 'k' is not in bucket" in ed.error and "✗" in ed.status.value
        with pytest.raises(NotFound):
            ed.revert(first)
        ed.reload_button.click()
        assert first not in [v for _, v in ed.revisions.options] and "{&quot;v&quot;:5}" in ed.history_table.value
        ed.value_box.value = '{"v": broken'
        ed.save_button.click()
        assert "not valid JSON" in ed.status.value
        ed.key_box.value = "bad..key"
        ed.add_button.click()
        assert "empty token" in ed.status.value
        assert kv.info()["values"] == before and kv.get("k").value == {"v": 5}
        kv.put("bin", b"\xff\xfe")
        ed.select("bin")
        assert ed.kind == "bytes" and ed.value_box.disabled
        ed.save_button.click()
        assert "binary" in ed.status.value
    finally:
        ed.stop()


def test_paging_and_filter_on_ten_thousand_keys(kv):
    fill(kv, {f"user.{i}": b'{"n": %d}' % i for i in range(10_000)})
    ed = kv.editor(page_size=50)
    try:
        print(f"\n10k-key editor opened in {ed.open_seconds * 1000:.0f} ms")
        assert len(ed.key_list.options) == 50 and "1 / 200" in ed.page_label.value
        assert [k for _, k in ed.key_list.options][:3] == ["user.0", "user.1", "user.2"]
        ed.next_button.click()
        assert "2 / 200" in ed.page_label.value and ed.key_list.options[0][1] == "user.50"
        assert '{"n":50}' in ed.key_list.options[0][0]
        started = time.perf_counter()
        ed.filter.value = "user.999"
        typed = time.perf_counter() - started
        print(f"a filter keystroke on 10k keys took {typed * 1000:.1f} ms")
        assert typed < 0.5                                      # from the index, no round trip
        assert [k for _, k in ed.key_list.options] == ["user.999", "user.9990", "user.9991", "user.9992",
                                                       "user.9993", "user.9994", "user.9995", "user.9996",
                                                       "user.9997", "user.9998", "user.9999"]
        ed.filter.value = "user.*"
        assert "1 / 200" in ed.page_label.value
        ed.filter.value = "nothing"
        assert ed.key_list.options == () and "1 / 1" in ed.page_label.value
        eventually(lambda: ed.caught_up, what="the index catching up")
        ed.filter.value = "user.999"
        eventually(lambda: '{"n":9999}' in ed.key_list.options[-1][0], what="the filtered page's values")
    finally:
        ed.stop()


def test_redraws_at_most_ten_times_a_second(kv):
    ed = kv.editor()
    conn = kv.conn

    async def storm():
        for i in range(40):
            await asyncio.gather(*(publish(conn, f"{kv.prefix}hot.{j}", b"%d" % i) for j in range(50)))
            await asyncio.sleep(0.025)          # the storm's pace, not a wait for a condition

    try:
        eventually(lambda: ed.caught_up, what="the index catching up")
        before, started = ed.renders, time.monotonic()
        loop.run(storm(), 30, "a storm of writes")
        time.sleep(0.3)                         # let the last redraws happen before counting them
        elapsed = time.monotonic() - started
        assert ed.renders - before <= 10 * elapsed + 3
        eventually(lambda: labels(ed).get("hot.0", "").endswith("= 39"), what="the last value shown")
    finally:
        ed.stop()


def test_watch_view_shows_latest_per_key_and_every_change(kv):
    kv.put("a", 1)
    w = kv.watch()
    try:
        view = w.widget
        assert isinstance(view, KVWatchView) and view is w.widget
        kv.put("a", 2)
        kv.put("b", {"x": 1})
        w.wait(3, timeout=5)
        view.render()
        assert view.rows.value.count("<tr><td>") == 2           # a and b, newest revision each
        view.mode.value = "log"
        view.render()
        assert view.rows.value.count("<tr><td>") == 3
        view.filter.value = "b"
        view.render()
        assert view.rows.value.count("<tr><td>") == 1 and "KV " in view.header.value
    finally:
        w.stop()


def test_helpers():
    assert sorted(["a.10", "a.9", "b"], key=natural_key) == ["a.9", "a.10", "b"]
    assert from_text("[1, 2]", "text") == [1, 2] and from_text("{oops", "text") == "{oops"
    with pytest.raises(nbnats.ValidationError, match="not valid JSON"):
        from_text("{oops", "json")
    with pytest.raises(nbnats.ValidationError, match="no longer an object"):
        from_text("5", "json")


def test_editor_stops_with_its_connection(kv, nats_url, uid):
    nbnats.connect(nats_url, name="short")
    nbnats.use("default")
    b = open_kv(kv.bucket, connection="short")
    ed = b.editor()
    nbnats.close("short")
    assert not ed.running
    ed.stop()


def test_a_value_too_long_to_edit_is_never_saved_cut_short(kv):
    long_text = "x" * (MAX_TEXT + 10)
    rev = kv.put("big", long_text)
    ed = kv.editor()
    try:
        ed.select("big")
        assert ed.kind == "too long" and ed.value_box.disabled and len(ed.value_box.value) < 100
        ed.value_box.value = "x" * MAX_TEXT                  # even if the box is changed from code
        ed.save_button.click()
        assert "cut it short" in ed.status.value and ed.error
        stored = kv.get("big")
        assert stored.revision == rev and stored.value == long_text
        ed.overwrite_button.click()
        assert kv.get("big").revision == rev
    finally:
        ed.stop()


def test_someone_elses_change_while_editing_never_becomes_the_base(kv, other):
    base = kv.put("doc", {"v": "base"})
    ed = kv.editor()
    try:
        ed.select("doc")
        ed.value_box.value = '{"v": "mine"}'
        ed.value_box.value = '{\n  "v": "base"\n}'          # typed back to the loaded text: still an edit
        assert ed.edited
        theirs = other.put("doc", {"v": "theirs"})
        eventually(lambda: "changed by someone else" in ed.status.value, what="the notice")
        assert ed.loaded.revision == base and ed.theirs.revision == theirs
        ed.render()
        ed.render()
        assert ed.loaded.revision == base                      # redraws do not adopt theirs either
        ed.value_box.value = '{"v": "mine"}'
        ed.save_button.click()
        assert "conflict" in ed.status.value and ed.conflict.revision == theirs
        assert kv.get("doc").value == {"v": "theirs"}
        ed.reload_button.click()                               # taking theirs is a choice
        assert ed.loaded.revision == theirs and not ed.edited and ed.theirs is None
    finally:
        ed.stop()


def test_a_save_with_an_unknown_outcome_reads_the_key_back(kv, other):
    rev = kv.put("k", {"v": 1})
    ed = kv.editor()
    try:
        ed.select("k")
        ed.stop()                                              # frozen: only what the server says counts
        assert ed.settle_unknown_save({"v": 2}, last=rev) is None
        assert "nothing was stored" in ed.status.value and kv.get("k").revision == rev
        mine = other.update("k", {"v": 2}, last=rev)           # as if our lost-ack save had been stored
        assert ed.settle_unknown_save({"v": 2}, last=rev) == mine
        theirs = other.put("k", {"v": "theirs"})
        assert ed.settle_unknown_save({"v": 3}, last=mine) is None
        assert "conflict" in ed.status.value and ed.conflict.revision == theirs
    finally:
        ed.stop()
