"""A real Jupyter kernel: the first line of a fresh notebook, one-line errors, and kill -9."""

import asyncio
import os
import signal
import time

import pytest
from jupyter_client.manager import start_new_kernel

pytestmark = pytest.mark.timeout(120)


def _execute(kc, code, timeout=30):
    """Run code; return (outputs, reply content)."""
    msg_id = kc.execute(code)
    outputs = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind in ("stream", "error", "execute_result", "display_data"):
            outputs.append((kind, msg["content"]))
        if kind == "status" and msg["content"]["execution_state"] == "idle":
            break
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return outputs, reply["content"]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def kernel():
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)


def test_fresh_notebook_first_line_tail_and_kill9_leaves_no_server(kernel, uid):
    km, kc = kernel
    _, reply = _execute(kc, "%load_ext nbnats")
    assert reply["status"] == "ok"
    outputs, reply = _execute(kc, f"t = %nats sub '{uid}.>'")
    assert reply["status"] == "ok", outputs
    assert any(kind == "display_data" and "application/vnd.jupyter.widget-view+json" in c["data"]
               for kind, c in outputs), outputs

    outputs, _ = _execute(kc, "import nbnats; print(nbnats.server_url(secret=True)); "
                              "print(nbnats.runtime.connection._embedded.pid)")
    text = "".join(c["text"] for kind, c in outputs if kind == "stream")
    url, server_pid = text.split()[0], int(text.split()[1])
    assert _alive(server_pid)

    async def other_client():       # any other NATS client publishes
        import nats
        nc = await nats.connect(url)
        for i in range(5):
            await nc.publish(f"{uid}.created", b'{"id": %d}' % i)
        await nc.flush()
        await nc.close()

    asyncio.run(other_client())
    outputs, reply = _execute(kc, "print(t.wait(5, timeout=10).df['id'].tolist())")
    assert "[0, 1, 2, 3, 4]" in "".join(c.get("text", "") for _, c in outputs)

    outputs, reply = _execute(kc, f"%nats pub '{uid}.*' oops")
    errors = [c for kind, c in outputs if kind == "error"]
    assert reply["status"] == "error" and len(errors) == 1
    assert errors[0]["ename"] == "InvalidSubject"
    assert len(errors[0]["traceback"]) == 1 and errors[0]["traceback"][0].startswith("nbnats: cannot publish")

    os.kill(km.provisioner.process.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(server_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(server_pid), "the bundled nats-server outlived its kernel"


def test_interrupt_does_not_kill_the_server(kernel, uid):
    km, kc = kernel
    _execute(kc, "%load_ext nbnats\nimport nbnats\nt = nbnats.tail('x')")
    outputs, _ = _execute(kc, "print(nbnats.runtime.connection._embedded.pid)")
    pid = int("".join(c["text"] for k, c in outputs if k == "stream").strip())
    kc.execute("import time; time.sleep(30)")
    time.sleep(1)
    km.interrupt_kernel()
    time.sleep(1)
    assert _alive(pid)
    outputs, reply = _execute(kc, "nbnats.publish('x', 'after'); print(t.wait(1, timeout=5).count)")
    assert reply["status"] == "ok" and "1" in "".join(c.get("text", "") for _, c in outputs)
    km.shutdown_kernel(now=False)
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid)
