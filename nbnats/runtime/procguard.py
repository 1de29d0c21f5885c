"""Keep the processes nbnats starts from outliving the process that started them.

Three layers, because no single one covers every way a kernel dies:

* ``atexit`` stops every child still running on a normal exit;
* on Linux each child gets ``PR_SET_PDEATHSIG=SIGKILL``, so the kernel kills it
  when its parent dies, even by SIGKILL. The signal fires when the *thread*
  that forked the child exits, so every spawn runs on one long-lived daemon
  thread owned by this module (:func:`spawn`);
* a pidfile per child in a per-user directory lets the next start reap
  children whose owner died without running either of the above
  (:func:`register`, :func:`reap_stale`).

Children start in their own session, so a Ctrl-C (SIGINT) sent to the
kernel's process group does not reach them.

>>> import subprocess, sys
>>> proc = spawn([sys.executable, "-c", "import time; time.sleep(30)"], stdout=subprocess.DEVNULL)
>>> terminate(proc)
-15
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from nbnats.errors import ServerError

__all__ = ["spawn", "terminate", "terminate_all", "register", "unregister", "reap_stale", "state_dir", "pid_alive"]

_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def _load_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        # Resolved here, in the parent: the forked child should only call it.
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()
_lock = threading.Lock()
_children: set[subprocess.Popen] = set()
_worker: _Worker | None = None


class _Worker:
    """One daemon thread that runs every spawn (see the module docstring)."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="nbnats-procguard", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            fn, fut = self.queue.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                fut.set_exception(exc)

    def call(self, fn: Callable, timeout: float):
        if threading.current_thread() is self.thread:
            return fn()
        fut: cf.Future = cf.Future()
        self.queue.put((fn, fut))
        try:
            return fut.result(timeout)
        except cf.TimeoutError:
            if not fut.cancel():  # already forking: stop the child once it exists
                fut.add_done_callback(lambda f: f.exception() or terminate(f.result(), 1.0))
            raise


def _get_worker() -> _Worker:
    global _worker
    with _lock:
        # A forked copy of this process has the object but not the thread.
        if _worker is None or _worker.owner != os.getpid():
            _worker = _Worker()
        return _worker


def _child_setup(parent: int) -> Callable[[], None]:
    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, _SIGKILL)
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(1)

    return setup


def spawn(argv: Sequence[str], *, stdout=None, stderr=subprocess.STDOUT, env=None, cwd=None,
          timeout: float = 10.0) -> subprocess.Popen:
    """Start a child that cannot outlive this process; returns its ``Popen``.

    Runs the fork on procguard's thread and waits up to ``timeout`` seconds.
    stdin is ``/dev/null``; pass a file for ``stdout`` rather than a PIPE
    nobody reads.

    >>> import subprocess
    >>> proc = spawn(["sleep", "30"], stdout=subprocess.DEVNULL)
    >>> terminate(proc)
    -15
    """
    kwargs: dict = dict(stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd, close_fds=True)
    if os.name == "posix":
        kwargs["start_new_session"] = True
        if _prctl is not None:
            kwargs["preexec_fn"] = _child_setup(os.getpid())
    else:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP

    def launch() -> subprocess.Popen:
        proc = subprocess.Popen(list(argv), **kwargs)
        proc.nbnats_owner = os.getpid()
        with _lock:
            _children.add(proc)
        return proc

    return _get_worker().call(launch, timeout)


def terminate(proc: subprocess.Popen, timeout: float = 5.0) -> int:
    """Stop a child: SIGTERM, wait up to ``timeout``, then SIGKILL; always reaped.

    Returns the exit code (negative signal number if signalled).

    >>> import subprocess
    >>> terminate(spawn(["sleep", "30"], stdout=subprocess.DEVNULL))
    -15
    """
    return terminate_all([proc], timeout)[0]


def terminate_all(procs: Iterable[subprocess.Popen], timeout: float = 5.0) -> list[int]:
    """Like :func:`terminate` for several children at once, sharing one ``timeout``.

    >>> import subprocess
    >>> terminate_all([spawn(["sleep", "30"], stdout=subprocess.DEVNULL) for _ in range(2)])
    [-15, -15]
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            try:
                proc.terminate()
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with _lock:
            _children.discard(proc)
    return [proc.returncode for proc in procs]


# -- pidfiles ---------------------------------------------------------------

def state_dir() -> Path:
    """The per-user directory holding one ``<pid>.json`` per running child.

    >>> state_dir().name
    'servers'
    """
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    base = Path(tempfile.gettempdir()) / f"nbnats-{user}"
    (base / "servers").mkdir(parents=True, exist_ok=True, mode=0o700)
    if hasattr(os, "getuid"):
        # The shared temp dir is writable by all: refuse a directory someone else planted.
        st = base.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise ServerError(f"{base} is not a private directory of this user",
                              f"remove it (rm -r {base}) and start again")
    return base / "servers"


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # fields from 3 (state) on; comm may hold spaces


def _start_time(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None  # field 22: start time in clock ticks


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a running process (zombies count as dead).

    >>> pid_alive(os.getpid())
    True
    """
    if os.name != "posix":
        raise NotImplementedError("pid_alive is POSIX-only")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except OSError:
        return False
    fields = _proc_stat(pid)
    return not (fields and fields[0] in ("Z", "X"))


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        pass
    try:
        out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, timeout=5)
        return out.stdout.split()
    except (OSError, subprocess.SubprocessError):
        return []


def register(pid: int, *, binary: str, store_dir: str | None = None, temp_dirs: Sequence[str] = ()) -> Path:
    """Record a child so a later start can reap it if this process dies uncleanly.

    ``temp_dirs`` are removed when the entry is reaped; ``store_dir`` (kept)
    and ``binary`` identify the process before it is killed.

    >>> path = register(999999, binary="nats-server"); unregister(999999); path.name
    '999999.json'
    """
    entry = {"pid": pid, "owner": os.getpid(), "owner_start": _start_time(os.getpid()), "binary": binary,
             "store_dir": store_dir, "temp_dirs": list(temp_dirs), "started": time.time()}
    path = state_dir() / f"{pid}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    os.replace(tmp, path)
    return path


def unregister(pid: int | None) -> None:
    """Forget a child's pidfile (after it has been reaped).

    >>> unregister(999999)
    """
    if pid is not None:
        (state_dir() / f"{pid}.json").unlink(missing_ok=True)


def _owner_alive(entry: dict) -> bool:
    owner = entry.get("owner")
    if not isinstance(owner, int) or not pid_alive(owner):
        return False
    recorded, now = entry.get("owner_start"), _start_time(owner)
    return recorded is None or now is None or recorded == now  # else the pid was reused


def _is_our_child(entry: dict) -> bool:
    argv = [a for a in _cmdline(entry["pid"]) if a]
    if not argv:
        return False
    exe = os.path.basename(argv[0])
    if "nats-server" not in exe and exe != os.path.basename(str(entry.get("binary", ""))):
        return False
    marks = [d for d in [entry.get("store_dir"), *entry.get("temp_dirs", [])] if d]
    joined = " ".join(argv)
    return not marks or any(m in joined for m in marks)


def _remove_temp_dir(path: str) -> None:
    # Only ever delete what nbnats created under the temp dir, whatever the pidfile says.
    p = Path(path)
    if p.parent == Path(tempfile.gettempdir()) and p.name.startswith("nbnats-"):
        shutil.rmtree(p, ignore_errors=True)


def reap_stale() -> list[int]:
    """Kill children whose owner process is gone; returns the pids killed.

    Entries whose owner is alive are left alone; entries of dead children
    just lose their pidfile and temp dirs.

    >>> isinstance(reap_stale(), list)
    True
    """
    killed: list[int] = []
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return killed
    for path in state_dir().glob("*.json"):
        try:
            entry = json.loads(path.read_text())
            pid = int(entry["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)
            continue
        if _owner_alive(entry):
            continue
        if pid_alive(pid) and _is_our_child(entry):
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
            deadline = time.monotonic() + 2.0
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        for d in entry.get("temp_dirs", []):
            _remove_temp_dir(d)
        path.unlink(missing_ok=True)
    return killed


def _at_exit() -> None:
    with _lock:
        procs = [p for p in _children if getattr(p, "nbnats_owner", None) == os.getpid()]
    terminate_all([p for p in procs if p.poll() is None], timeout=3.0)


atexit.register(_at_exit)
