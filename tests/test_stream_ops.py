"""natscli's stream verbs against the real bundled nats-server: report, subjects, find, rmm, copy (with data and a
transform), seal, gaps, backup/restore, state — through Python and %nats, and their bad input (one sentence each,
nothing changed on the server)."""

from __future__ import annotations

import doctest
import importlib
import warnings

import pandas as pd
import pytest

import nbnats
from nbnats.errors import Conflict, JetStreamError, NatsError, NotFound, ValidationError
from nbnats.jetstream import stream_copy

from conftest import run_cell

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def stream(connected, uid):
    """``S<uid>`` on ``<uid>.>`` with 10 messages on three subjects (odd ones with a header), removed afterwards."""
    name = f"S{uid}"
    nbnats.add_stream(name, f"{uid}.>", max_age="7d", max_msgs_per_subject=100)
    for i in range(10):
        nbnats.publish(f"{uid}.{['a', 'b', 'c'][i % 3]}", {"i": i}, js=True, headers={"N": str(i)} if i % 2 else None)
    yield name
    for other in nbnats.streams()["name"]:
        if uid in other:
            try:
                nbnats.delete_stream(other)
            except NatsError:
                pass


def replay(name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # gaps inside the stream are what some tests make
        return nbnats.replay(name, decode=False)


def one_sentence(err: Exception) -> str:
    text = str(err)
    assert " — " in text and "\n" not in text and "Traceback" not in text, text
    return text


def test_docstring_examples():
    for name in ("nbnats.jetstream.stream_ops", "nbnats.jetstream.stream_copy"):
        assert doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).failed == 0, name


def test_report_lists_every_stream_with_figures_and_writes_parquet(stream, uid, tmp_path):
    nbnats.add_consumer(stream, "c1", durable=True)
    df = nbnats.stream_report()
    row = df[df["name"] == stream].iloc[0]
    assert (row["messages"], row["consumers"], row["replicas"], row["subjects"]) == (10, 1, 1, 3)
    assert row["storage"] == "file" and row["lagging"] == [] and row["last_seq"] == 10 and not row["sealed"]
    assert str(df["name"].dtype) == "string" and str(df["last_ts"].dtype) == "datetime64[ns, UTC]"
    df.to_parquet(tmp_path / "report.parquet")
    only = nbnats.stream_report(subject=f"{uid}.a")
    assert only["name"].tolist() == [stream]
    by_messages = nbnats.stream_report(sort="messages")["messages"].tolist()
    assert by_messages == sorted(by_messages, reverse=True)
    with pytest.raises(ValidationError, match="sort 'size' is not one of"):
        nbnats.stream_report(sort="size")


def test_state_is_one_row_matching_stream_info(stream):
    state = nbnats.stream_state(stream)
    info = nbnats.stream_info(stream)
    assert len(state) == 1
    row = state.iloc[0]
    assert (row["messages"], row["bytes"], row["first_seq"], row["last_seq"]) == (info.messages, info.bytes, 1, 10)
    assert row["subjects"] == 3 and row["deleted"] == 0 and row["last_ts"] >= row["first_ts"]


def test_subjects_counts_each_subject_and_filters(stream, uid):
    df = nbnats.stream_subjects(stream)
    assert dict(zip(df["subject"], df["messages"])) == {f"{uid}.a": 4, f"{uid}.b": 3, f"{uid}.c": 3}
    assert df["messages"].tolist() == [4, 3, 3]          # most first
    assert nbnats.stream_subjects(stream, f"{uid}.b")["subject"].tolist() == [f"{uid}.b"]
    assert nbnats.stream_subjects(stream, sort="subject")["subject"].tolist() == sorted(df["subject"])
    with pytest.raises(ValidationError, match="is outside stream") as err:
        nbnats.stream_subjects(stream, "elsewhere.>")
    one_sentence(err.value)


def test_find_names_the_streams_storing_a_subject(stream, uid):
    found = nbnats.find_streams(f"{uid}.zzz")
    assert found["name"].tolist() == [stream] and found["subjects"].tolist() == [[f"{uid}.>"]]
    assert nbnats.find_streams(f"nobody{uid}.x").empty


def test_rmm_removes_one_message_and_gaps_show_the_ranges(stream):
    row = nbnats.delete_message(stream, 4)
    assert row.iloc[0]["seq"] == 4 and row.iloc[0]["messages"] == 9 and row.iloc[0]["erased"]
    nbnats.delete_message(stream, 5, erase=False)
    nbnats.delete_message(stream, 8)
    with pytest.raises(NotFound):
        nbnats.get_message(stream, 4)
    gaps = nbnats.stream_gaps(stream)
    assert gaps.values.tolist() == [[4, 5, 2], [8, 8, 1]]
    assert list(gaps.columns) == ["from_seq", "to_seq", "missing"] and str(gaps["missing"].dtype) == "int64"
    assert replay(stream)["seq"].tolist() == [1, 2, 3, 6, 7, 9, 10]


def test_rmm_of_a_missing_sequence_is_one_sentence_and_changes_nothing(stream):
    nbnats.delete_message(stream, 3)
    for seq, words in ((3, "removed already"), (99, "has no message at seq 99 (it holds seq 1–10)")):
        with pytest.raises(NotFound, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
            nbnats.delete_message(stream, seq)
        one_sentence(err.value)
    with pytest.raises(ValidationError, match="not a positive whole number"):
        nbnats.delete_message(stream, 0)
    assert nbnats.stream_state(stream).iloc[0]["messages"] == 9


def test_copy_takes_the_configuration_only_by_default(stream, uid):
    out = nbnats.copy_stream(stream, f"C{uid}", subjects=f"copy{uid}.>")
    assert out.iloc[0]["messages"] == 0 and out.iloc[0]["subjects"] == [f"copy{uid}.>"]
    src, dst = nbnats.stream_info(stream)["config"], nbnats.stream_info(f"C{uid}")["config"]
    assert dst["max_age"] == src["max_age"] and dst["max_msgs_per_subject"] == 100 and dst["subjects"] == [f"copy{uid}.>"]
    assert nbnats.stream_info(f"C{uid}").messages == 0


def test_copy_with_data_keeps_subjects_headers_and_order(stream, uid):
    out = nbnats.copy_stream(stream, f"D{uid}", with_data=True, max_age="1d")
    assert out.iloc[0]["messages"] == 10 and out.iloc[0]["skipped"] == 0
    src, dst = replay(stream), replay(f"D{uid}")
    assert dst["subject"].tolist() == src["subject"].tolist() and dst["data"].tolist() == src["data"].tolist()
    assert dst["headers"].tolist() == src["headers"].tolist() and dst["seq"].tolist() == list(range(1, 11))
    info = nbnats.stream_info(f"D{uid}")
    assert info["config"]["max_age"] == 86400 * 10**9 and info["config"].get("subject_transform") is None
    assert not any(s.startswith(stream_copy.STAGE) for s in info.subjects)
    # the source still takes its own subjects: publishing goes there, not to the copy
    assert nbnats.publish(f"{uid}.a", {"i": 99}, js=True).stream == stream


def test_copy_transform_skips_and_rewrites_messages(stream, uid):
    def only_even(msg):
        body = msg.json()
        if body["i"] % 2:
            return None
        return {**body, "copied_from": msg.seq}

    out = nbnats.copy_stream(stream, f"T{uid}", with_data=True, subjects=f"t{uid}.>", transform=only_even)
    assert (out.iloc[0]["messages"], out.iloc[0]["skipped"]) == (5, 5)
    df = nbnats.replay(f"T{uid}")
    assert df["i"].tolist() == [0, 2, 4, 6, 8] and df["copied_from"].tolist() == [1, 3, 5, 7, 9]
    renamed = nbnats.copy_stream(stream, f"R{uid}", with_data=True, subjects=f"r{uid}.>",
                                 transform=lambda m: nbnats.Message(f"r{uid}.x", m.data, m.headers))
    assert renamed.iloc[0]["messages"] == 10 and set(replay(f"R{uid}")["subject"]) == {f"r{uid}.x"}


def test_copy_bad_input_changes_nothing(stream, uid):
    cases = [
        (ValidationError, "with_data is False", lambda: nbnats.copy_stream(stream, f"X{uid}", transform=lambda m: m)),
        (ValidationError, "onto itself", lambda: nbnats.copy_stream(stream, stream)),
        (ValidationError, "transform must be a function", lambda: nbnats.copy_stream(stream, f"X{uid}", True, 5)),
        (JetStreamError, "already stored by stream", lambda: nbnats.copy_stream(stream, f"X{uid}", subjects=f"{uid}.a")),
        (NotFound, "does not exist", lambda: nbnats.copy_stream(f"NO{uid}", f"X{uid}")),
    ]
    for cls, words, call in cases:
        with pytest.raises(cls, match=words) as err:
            call()
        one_sentence(err.value)
    assert f"X{uid}" not in nbnats.streams()["name"].tolist()
    nbnats.copy_stream(stream, f"Y{uid}", subjects=f"y{uid}.>")
    nbnats.publish(f"y{uid}.1", b"kept", js=True)
    with pytest.raises(Conflict, match="already exists, so nothing was written") as err:
        nbnats.copy_stream(stream, f"Y{uid}", with_data=True, subjects=f"y{uid}.>")
    one_sentence(err.value)
    assert nbnats.stream_info(f"Y{uid}").messages == 1


def test_seal_refuses_every_later_change(stream, uid):
    info = nbnats.seal_stream(stream)
    assert info["config"]["sealed"] is True
    assert nbnats.seal_stream(stream)["config"]["sealed"] is True            # sealing again changes nothing
    with pytest.raises(JetStreamError, match="is sealed") as err:
        nbnats.delete_message(stream, 1)
    one_sentence(err.value)
    with pytest.raises(NatsError):
        nbnats.publish(f"{uid}.a", b"late", js=True)
    assert nbnats.stream_info(stream).messages == 10


def test_backup_and_restore_keep_sequences_subjects_headers_and_bytes(stream, uid, tmp_path):
    nbnats.publish(f"{uid}.bin", b"\xff\x00\x01", js=True)
    nbnats.delete_message(stream, 3)
    nbnats.delete_message(stream, 4)
    nbnats.delete_message(stream, 11)            # the last one too: the restored stream must end at 11
    summary = nbnats.backup_stream(stream, tmp_path / "b")
    assert summary.iloc[0]["messages"] == 8 and summary.iloc[0]["last_seq"] == 11
    assert {p.name for p in (tmp_path / "b").iterdir()} == {"backup.json", "messages.parquet"}
    stored = pd.read_parquet(tmp_path / "b" / "messages.parquet")
    assert stored["seq"].tolist() == [1, 2, 5, 6, 7, 8, 9, 10] and str(stored["time"].dtype) == "datetime64[ns, UTC]"
    before = replay(stream)
    nbnats.delete_stream(stream)
    out = nbnats.restore_stream(tmp_path / "b")
    assert out.iloc[0]["same_seqs"] and out.iloc[0]["messages"] == 8 and out.iloc[0]["last_seq"] == 11
    after = replay(stream)
    for col in ("seq", "subject", "data", "headers"):
        assert after[col].tolist() == before[col].tolist(), col
    assert nbnats.stream_gaps(stream).values.tolist() == [[3, 4, 2], [11, 11, 1]]
    info = nbnats.stream_info(stream)
    assert info.subjects == [f"{uid}.>"] and info["config"]["max_age"] == 7 * 86400 * 10**9
    assert nbnats.publish(f"{uid}.a", b"new", js=True).seq == 12       # it stores its subjects again


def test_restore_under_another_name_and_of_a_sealed_stream(stream, uid, tmp_path):
    nbnats.seal_stream(stream)
    nbnats.backup_stream(stream, tmp_path / "s")
    with pytest.raises(JetStreamError, match="already stored by stream"):
        nbnats.restore_stream(tmp_path / "s", name=f"N{uid}")        # its subjects belong to the original
    assert f"N{uid}" not in nbnats.streams()["name"].tolist()
    nbnats.delete_stream(stream)
    out = nbnats.restore_stream(tmp_path / "s", name=f"N{uid}")
    assert out.iloc[0]["stream"] == f"N{uid}" and nbnats.stream_info(f"N{uid}")["config"]["sealed"] is True
    assert replay(f"N{uid}")["seq"].tolist() == list(range(1, 11))


def test_restore_onto_an_existing_stream_is_a_conflict_and_changes_nothing(stream, uid, tmp_path):
    nbnats.backup_stream(stream, tmp_path / "b")
    nbnats.publish(f"{uid}.a", b"after the backup", js=True)
    with pytest.raises(Conflict, match=f"stream '{stream}' already exists, so nothing was written") as err:
        nbnats.restore_stream(tmp_path / "b")
    one_sentence(err.value)
    assert nbnats.stream_info(stream).messages == 11
    with pytest.raises(Conflict, match="already holds a backup"):
        nbnats.backup_stream(stream, tmp_path / "b")
    assert nbnats.backup_stream(stream, tmp_path / "b", overwrite=True).iloc[0]["messages"] == 11
    with pytest.raises(NotFound, match="holds no stream backup") as err:
        nbnats.restore_stream(tmp_path / "empty")
    one_sentence(err.value)


def test_magics_for_every_stream_verb(ip, stream, uid, tmp_path):
    nats = lambda line: ip.run_line_magic("nats", line)            # noqa: E731
    assert stream in nats("stream report")["name"].tolist()
    assert nats(f"stream subjects {stream} {uid}.a")["messages"].tolist() == [4]
    assert nats(f"stream find --subject {uid}.b")["name"].tolist() == [stream]
    assert nats(f"stream rmm {stream} 2").iloc[0]["seq"] == 2
    assert nats(f"stream gaps {stream}").values.tolist() == [[2, 2, 1]]
    assert nats(f"stream state {stream}").iloc[0]["messages"] == 9
    ip.user_ns["tag"] = lambda m: {**m.json(), "tagged": True}
    assert nats(f"stream copy {stream} M{uid} --with-data --subjects m{uid}.> --transform tag").iloc[0]["messages"] == 9
    assert nbnats.replay(f"M{uid}")["tagged"].all()
    assert nats(f"stream backup {stream} {tmp_path / 'm'}").iloc[0]["messages"] == 9
    nbnats.delete_stream(stream)
    assert nats(f"stream restore {tmp_path / 'm'} --name Q{uid}").iloc[0]["stream"] == f"Q{uid}"
    assert nbnats.stream_state(f"Q{uid}").iloc[0]["messages"] == 9
    nats(f"stream seal M{uid}")
    assert nbnats.stream_info(f"M{uid}")["config"]["sealed"] is True


def test_magic_bad_input_is_one_line(ip, stream, uid, tmp_path):
    cases = [
        (f"stream rmm {stream} 99", f"nbnats: stream '{stream}' has no message at seq 99"),
        (f"stream subjects {stream} other.>", "is outside stream"),
        (f"stream copy {stream} Z{uid} --transform nope --with-data", "there is no notebook variable 'nope'"),
        (f"stream restore {tmp_path}", "holds no stream backup"),
        (f"stream gaps NOPE{uid}", "does not exist"),
    ]
    for line, words in cases:
        result, shown = run_cell(ip, f"%nats {line}")
        assert not result.success and words in shown, (line, shown)
        assert "Traceback" not in shown and len([x for x in shown.splitlines() if x.startswith("nbnats:")]) == 1
    nbnats.backup_stream(stream, tmp_path / "again")
    result, shown = run_cell(ip, f"%nats stream backup {stream} {tmp_path / 'again'}")
    assert not result.success and "--overwrite" in shown
    assert nbnats.stream_state(stream).iloc[0]["messages"] == 10
