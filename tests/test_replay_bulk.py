"""Replay at wire speed, beyond memory and across workers: the bulk connection, outputs, Parquet, Dask.

Real servers only: the session server (with its generated credentials, so the bulk
connection authenticates like the session), and private file-store servers for the
restart and the full-disk cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pandas as pd
import pyarrow.parquet as pq
import pytest

import nbnats
from nbnats.engine import bulk as engine_bulk, msg_cut
from nbnats.jetstream import dataset
from nbnats.runtime import server
from nbnats.runtime.wire import Dial, Wire

from faultkit import wait_until


@pytest.fixture
def stream(connected, uid):
    name = f"B{uid}"
    nbnats.add_stream(name, f"{uid}.>")
    yield name
    try:
        nbnats.delete_stream(name)
    except nbnats.NatsError:
        pass


def fill(uid: str, n: int, start: int = 0, connection: str | None = None) -> None:
    """Publish ``n`` rows to ``<uid>.x`` and wait until the stream on ``<uid>.>`` holds them."""
    stream = f"B{uid}" if connection is None else "RESTART"
    before = nbnats.stream_info(stream, connection=connection).messages
    nbnats.publish_frame(f"{uid}.x", pd.DataFrame({"id": range(start, start + n),
                                                     "amount": [i * 0.5 for i in range(n)],
                                                     "status": ["paid", "sent"] * (n // 2) + ["paid"] * (n % 2)}),
                         connection=connection)
    wait_until(lambda: nbnats.stream_info(stream, connection=connection).messages >= before + n, 20,
               f"{n} messages stored")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-cut", "python-cut"])
def test_the_bulk_connection_reads_what_nats_py_reads(stream, uid, monkeypatch, compiled):
    """Same frame over both transports (and both cuts of the wire's reads): plain, with headers,
    hostile payloads that look like frames."""
    if compiled and not msg_cut.NATIVE:
        pytest.skip("the compiled cut is not built here (tests/test_msg_cut.py says why)")
    monkeypatch.setattr(msg_cut, "NATIVE", compiled)
    fill(uid, 2000)
    nbnats.publish(f"{uid}.h", {"id": 2000}, headers={"Trace": "t-1", "X": "a b"}, js=True)
    tricky = [b"MSG a.b 1 $JS.ACK.x.y.1.2.3.4.0 5\r\nhello\r\n", b"\r\n", b"PING\r\n", b"", b"\xff\x00HMSG",
              b"x" * 70_000]
    for p in tricky:
        nbnats.publish(f"{uid}.t", p, js=True)
    monkeypatch.setattr(engine_bulk, "PULL", 300)       # several pulls, frames split across socket reads
    monkeypatch.setattr(engine_bulk, "CHUNK", 100)
    wire = nbnats.replay(stream, progress=False)
    monkeypatch.setattr(engine_bulk, "WIRE", False)
    plain = nbnats.replay(stream, progress=False)
    assert wire.attrs["transport"] == "wire" and plain.attrs["transport"] == "nats-py"
    assert len(wire) == 2001 + len(tricky) and wire["seq"].tolist() == list(range(1, len(wire) + 1))
    pd.testing.assert_frame_equal(wire.drop(columns=["time"]), plain.drop(columns=["time"]))
    assert wire.loc[wire["subject"] == f"{uid}.h", "headers"].iloc[0] == {"Trace": "t-1", "X": "a b"}
    raw = nbnats.replay(stream, subject=f"{uid}.t", decode=False, progress=False)
    assert [bytes(d) if not isinstance(d, bytes) else d for d in raw["data"]] == tricky
    assert not [c for c in nbnats.consumers(stream)["name"] if c.startswith("nbnats_replay")]


def test_the_dial_hides_secrets_and_refuses_a_wrong_password(connected, nats_server):
    dial = Dial.of(connected)
    assert dial.user and dial.password and dial.password not in repr(dial) and "***" in repr(dial)
    from nbnats.runtime import loop
    wrong = Dial(dial.host, dial.port, user=dial.user, password="not-it")
    with pytest.raises(nbnats.ConnectError, match="refused the bulk connection"):
        loop.run(Wire.open(wrong, 5), 10, "opening a bulk connection")


def test_outputs_have_the_same_columns_and_integers_stay_integers(stream, uid):
    fill(uid, 10)
    nbnats.publish(f"{uid}.y", {"note": "no id"}, js=True)
    df = nbnats.replay(stream)
    table = nbnats.replay(stream, output="arrow")
    assert df["id"].dtype == "Int64" and df["id"].tolist()[:3] == [0, 1, 2] and df["id"].isna().sum() == 1
    assert table.column_names == list(df.columns) and str(table.schema.field("id").type) == "int64"
    pl = pytest.importorskip("polars")
    frame = nbnats.replay(stream, output="polars")
    assert isinstance(frame, pl.DataFrame) and frame.columns == list(df.columns)
    assert frame["id"].dtype == pl.Int64 and frame["id"].null_count() == 1
    with pytest.raises(nbnats.ValidationError, match="output must be one of pandas, arrow or polars"):
        nbnats.replay(stream, output="excel")


def test_output_polars_without_polars_says_how_to_install_it(stream, uid, monkeypatch):
    fill(uid, 2)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(nbnats.ValidationError, match="pip install polars"):
        nbnats.replay(stream, output="polars")


def test_replay_to_parquet_in_chunks_resumes_and_queries_with_duckdb(stream, uid, tmp_path, monkeypatch):
    monkeypatch.setattr(dataset, "CHUNK_ROWS", 700)
    monkeypatch.setattr(dataset, "FILE_ROWS", 1500)
    fill(uid, 3000)
    to = tmp_path / "orders"
    s = nbnats.replay(stream, to=str(to), progress=False)
    assert (s.rows, s.first_seq, s.last_seq, s.rows_this_run) == (3000, 1, 3000, 3000)
    assert s.files == len(list(to.glob("*.parquet"))) >= 2 and s.bytes > 0 and not list(to.glob("*.tmp"))
    back = pq.read_table(to).to_pandas()
    assert sorted(back["seq"]) == list(range(1, 3001)) and back["id"].dtype == "int64"
    fill(uid, 500, start=3000)
    again = nbnats.replay(stream, to=str(to), resume=True, progress=False)
    assert (again.rows, again.rows_this_run, again.last_seq, again.resumed) == (3500, 500, 3500, True)
    duckdb = pytest.importorskip("duckdb")
    count, lo, hi, ids = duckdb.sql(f"select count(*), min(seq), max(seq), count(distinct id) "
                                    f"from read_parquet('{to}/*.parquet', union_by_name=true)").fetchall()[0]
    assert (count, lo, hi, ids) == (3500, 1, 3500, 3500)
    manifest = json.loads((to / dataset.MANIFEST).read_text())
    assert manifest["stream"] == stream and manifest["last_seq"] == 3500
    with pytest.raises(nbnats.Conflict, match="pass resume=True"):
        nbnats.replay(stream, to=str(to))


def test_replay_to_parquet_refuses_paths_it_must_not_write(stream, uid, tmp_path):
    fill(uid, 5)
    other = tmp_path / "other"
    nbnats.replay(stream, to=str(other))
    manifest = json.loads((other / dataset.MANIFEST).read_text())
    manifest["stream"] = "SOMETHING_ELSE"
    (other / dataset.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(nbnats.Conflict, match="holds a replay of stream 'SOMETHING_ELSE'"):
        nbnats.replay(stream, to=str(other), resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(nbnats.Conflict, match="not an nbnats replay"):
        nbnats.replay(stream, to=str(foreign))
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(nbnats.NatsError, match="writing to .*afile/sub failed|cannot write to"):
        nbnats.replay(stream, to=str(afile / "sub"))
    with pytest.raises(nbnats.ValidationError, match="takes neither decode= nor output="):
        nbnats.replay(stream, to=str(tmp_path / "x"), output="arrow")


FULL_DISK = r"""
import resource, signal, sys, nbnats
from nbnats.jetstream import dataset
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)          # a write past the limit fails with EFBIG, like a full disk
dataset.CHUNK_ROWS, dataset.FILE_ROWS = 500, 1000
nbnats.connect(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[4]), int(sys.argv[4])))
try:
    nbnats.replay(sys.argv[2], to=sys.argv[3], progress=False)
    print("WROTE")
except nbnats.NatsError as exc:
    print("ERROR", type(exc).__name__, exc)
"""


def test_a_full_disk_is_one_sentence_and_what_was_written_resumes(stream, uid, tmp_path, nats_url):
    fill(uid, 3000)
    # then rows that do not compress: their files outgrow the limit the child sets on file sizes
    nbnats.publish_frame(f"{uid}.x", pd.DataFrame({"id": range(3000, 6000),
                                                     "note": [os.urandom(40).hex() for _ in range(3000)]}))
    wait_until(lambda: nbnats.stream_info(stream).messages >= 6000, 20, "6000 messages stored")
    to = tmp_path / "full"
    out = subprocess.run([sys.executable, "-c", FULL_DISK, nats_url, stream, str(to), "40000"],
                         capture_output=True, text=True, timeout=120)
    line = out.stdout.strip().splitlines()[-1]
    assert line.startswith("ERROR DatasetError") and "stay valid" in line and "resume=True" in line, out.stdout + out.stderr
    assert not list(to.glob("*.tmp"))
    kept = json.loads((to / dataset.MANIFEST).read_text())
    assert kept["files"] and kept["last_seq"] == sum(f["rows"] for f in kept["files"]) == len(pq.read_table(to))
    done = nbnats.replay(stream, to=str(to), resume=True, progress=False)
    assert done.rows == 6000 and sorted(pq.read_table(to).to_pandas()["seq"]) == list(range(1, 6001))


def test_a_server_restart_mid_replay_resumes_after_the_last_sequence(uid, tmp_path, monkeypatch):
    srv = server.start(store=str(tmp_path / "store"))
    name = f"r{uid}"
    try:
        nbnats.connect(srv.url, name=name)
        nbnats.add_stream("RESTART", "rs.>", storage="file", connection=name)
        fill("rs", 30_000, connection=name)
        monkeypatch.setattr(engine_bulk, "PULL", 2000)
        real, state = Wire.data_received, {"bytes": 0, "killed": False}

        def counting(self, data):
            real(self, data)
            state["bytes"] += len(data)
            if state["bytes"] > 300_000 and not state["killed"]:
                state["killed"] = True
                os.kill(srv.pid, signal.SIGKILL)
                threading.Thread(target=restart, daemon=True).start()

        def restart():
            wait_until(lambda: not srv.nodes[0].running, 10, "the killed server gone")
            srv.nodes[0].start()

        monkeypatch.setattr(Wire, "data_received", counting)
        df = nbnats.replay("RESTART", connection=name, timeout=20, progress=False)
        assert state["killed"] and df.attrs["reconnects"] >= 1
        assert df["id"].tolist() == list(range(30_000)) and df["seq"].is_unique
        print(f"\n[replay restart] 30000/30000 rows after {df.attrs['reconnects']} reconnect(s); lost: nothing")
    finally:
        nbnats.close(name)
        srv.stop()


def test_dask_replay_on_a_local_cluster_has_the_rows_of_replay(stream, uid, connected):
    pytest.importorskip("dask.dataframe")
    distributed = pytest.importorskip("distributed")
    fill(uid, 5000)
    nbnats.publish(f"{uid}.y", {"id": 5000, "extra": "only here"}, js=True)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
            distributed.Client(cl):
        ddf = nbnats.dask.replay(stream, partitions=3)
        graph = str(dict(ddf.__dask_graph__())) + repr(ddf) + ddf.dask.__repr__()
        tasks = [repr(getattr(t, "func", t)) for t in dict(ddf.__dask_graph__()).values()]
        assert str.__str__(connected._credentials["password"]) not in graph + "".join(tasks)
        assert all("***" in t for t in tasks if "partition" in t) and any("partition" in t for t in tasks)
        got = ddf.compute()
        workers = {w for w in ddf.map_partitions(lambda p: pd.DataFrame({"pid": [os.getpid()]}),
                                                 meta={"pid": "int64"}).compute()["pid"]}
    ref = nbnats.replay(stream)
    assert ddf.npartitions == 3 and len(got) == len(ref) == 5001
    assert sorted(got["seq"]) == ref["seq"].tolist() and got["id"].tolist() == ref["id"].tolist()
    assert os.getpid() not in workers and len(workers) >= 1
    with pytest.warns(UserWarning, match="using 5001"):
        assert nbnats.dask.replay(stream, partitions=10_000).npartitions == 5001


def test_dask_replay_without_dask_says_how_to_install_it(stream, uid, monkeypatch):
    fill(uid, 2)
    monkeypatch.setitem(sys.modules, "dask.dataframe", None)
    with pytest.raises(nbnats.ValidationError, match=r"pip install 'nbnats\[dask\]'"):
        nbnats.dask.replay(stream)


def test_replay_magic_outputs_and_parquet(ip, stream, uid, tmp_path):
    fill(uid, 20)
    ip.run_cell(f"t = %nats replay {stream} --output arrow")
    assert ip.user_ns["t"].num_rows == 20
    ip.run_cell(f"s = %nats replay {stream} --to {tmp_path / 'm'} --no-progress")
    assert ip.user_ns["s"].rows == 20
    result = ip.run_cell(f"%nats replay {stream} --to {tmp_path / 'm'}")
    assert isinstance(result.error_in_exec, nbnats.Conflict)
    ip.run_cell(f"s = %nats replay {stream} --to {tmp_path / 'm'} --resume")
    assert ip.user_ns["s"].rows == 20 and ip.user_ns["s"].rows_this_run == 0


def test_publish_frame_js_stores_every_row_or_says_why(stream, uid):
    """Plain publishes faster than a stream can store are dropped by the server without a word;
    js=True waits for the stream's acks, so a large frame is stored whole (and refused plainly)."""
    n = 120_000
    frame = pd.DataFrame({"id": range(n), "kind": ["a", "b", "c"] * (n // 3)})
    assert nbnats.publish_frame(f"{uid}.x", frame, js=True, progress=False) == n
    assert nbnats.stream_info(stream).messages == n
    assert nbnats.replay(stream, progress=False)["id"].tolist() == list(range(n))
    with pytest.raises(nbnats.NotFound, match="no JetStream stream stores subject"):
        nbnats.publish_frame(f"nostream{uid}.x", frame.head(3), js=True)
