"""Buckets and objects written by nats.js read back through nbnats, and the other way round.

nats.js makes KV buckets with direct get on (nats-py's are off), writes object metadata in
its own layout and chunk sizes; both sides must read each other. Needs the packages in
tests/interop: ``npm ci --prefix tests/interop``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from nbnats.errors import KeyDeleted, NatsError
from nbnats.kv.bucket import delete_bucket, kv as open_kv
from nbnats.objects import delete_object_store, objects

HERE = Path(__file__).parent
pytestmark = pytest.mark.skipif(
    not (HERE / "node_modules" / "@nats-io" / "kv").is_dir() or shutil.which("node") is None,
    reason="nats.js is not installed: run `npm ci --prefix tests/interop` (needs node and npm)")


def natsjs(url: str, command: str, bucket: str) -> dict:
    done = subprocess.run(["node", str(HERE / "natsjs.mjs"), url.split(",")[0], command, bucket],
                          capture_output=True, text=True, timeout=60, cwd=HERE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def test_kv_written_by_natsjs_reads_back(connected, nats_url, uid):
    bucket = f"js_{uid}"
    wrote = natsjs(nats_url, "kv-write", bucket)
    try:
        kv = open_kv(bucket)
        assert kv.direct                               # nats.js's default: reads use direct get
        e = kv.get("js.json")
        assert e.value == {"from": "nats.js", "n": 2} and e.revision == wrote["updated"]
        assert kv.get("js.json", revision=wrote["put"]).value == {"from": "nats.js", "n": 1}
        assert kv.get("js.text").value == "hello from nats.js"
        with pytest.raises(KeyDeleted):
            kv.get("js.gone")
        assert kv.keys() == ["js.json", "js.text"]
        assert kv.history("js.json")["n"].tolist() == [1, 2]
        assert kv.update("js.json", {"from": "nbnats"}, last=wrote["updated"]) > wrote["updated"]
    finally:
        delete_bucket(bucket)


@pytest.mark.parametrize("direct", [True, False])
def test_kv_written_by_nbnats_reads_in_natsjs(connected, nats_url, uid, direct):
    bucket = f"py_{uid}_{int(direct)}"
    kv = open_kv(bucket, create=True, history=3, direct=direct)
    try:
        kv.put("py.json", {"from": "nbnats", "n": 1})
        kv.put("py.text", "hello from nbnats")
        kv.put("py.gone", "x")
        kv.delete("py.gone")
        seen = natsjs(nats_url, "kv-read", bucket)
        assert json.loads(seen["py.json"]["value"]) == {"from": "nbnats", "n": 1}
        assert seen["py.text"]["value"] == "hello from nbnats"
        assert seen["py.gone"]["operation"] == "DEL" and seen["py.missing"] is None
        assert seen["keys"] == ["py.json", "py.text"] and seen["status"]["direct"] is direct
    finally:
        delete_bucket(bucket)


@pytest.fixture
def their_url(connected, nats_url) -> str:
    """The session server's URL with its credentials, for nats.js."""
    from nbnats.runtime import session
    return session.server_url(secret=True) if hasattr(session, "server_url") else nats_url


def test_objects_written_by_natsjs_read_back(their_url, uid):
    bucket = f"jso_{uid}"
    wrote = natsjs(their_url, "obj-write", bucket)
    try:
        ob = objects(bucket)
        data = ob.get("js.bin")
        assert data == pattern(300_000) and hashlib.sha256(data).hexdigest() == wrote["sha256"]
        assert ob.get("js/notes.txt") == b"notes from nats.js"
        ls = ob.ls().set_index("name")
        assert ls.loc["js.bin", "size"] == 300_000 and ls.loc["js.bin", "description"] == "from nats.js"
        assert ob.info("js.bin").chunks == wrote["bin"]["info"]["chunks"] == 3
    finally:
        delete_object_store(bucket)


def test_objects_written_by_nbnats_read_in_natsjs(their_url, uid):
    bucket = f"pyo_{uid}"
    ob = objects(bucket, create=True)
    try:
        payload = pattern(1_500_000)                   # chunked, larger than max_payload
        ob.put("py.bin", b"an older version, replaced")
        ob.put("py.bin", payload)
        ob.put("py.gone", b"deleted before nats.js looks")
        ob.delete("py.gone")
        df = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
        ob.put("py.parquet", df)
        seen = natsjs(their_url, "obj-read", bucket)
        assert seen["bin"] == {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
        assert seen["parquet"]["magic"] == "PAR1"
        assert seen["parquet"]["headers"] == {"Content-Type": "application/vnd.apache.parquet"}
        assert seen["names"] == ["py.bin", "py.parquet"]          # deleted objects are not listed
        assert ob.status()["messages"] == len(payload) // (128 * 1024) + 1 + 1 + 3   # old chunks purged
    finally:
        try:
            delete_object_store(bucket)
        except NatsError:
            pass
