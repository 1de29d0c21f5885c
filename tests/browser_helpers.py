"""JupyterLab on a temp directory, and Debian's Chromium driven by Playwright.

Used by tests/test_browser.py. Nothing here downloads a browser:
Chromium is ``/usr/bin/chromium`` from ``apt-get install chromium``.

>>> with Lab(root_dir, home_dir) as lab:            # doctest: +SKIP
...     lab.get("api/contents")["content"]
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The news pop-up would cover the bottom-right corner of every screenshot.
NO_NEWS = {"fetchNews": "false", "checkForUpdates": False}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(home: Path) -> dict[str, str]:
    """Environment with HOME, Jupyter's and IPython's dirs under ``home``, news off."""
    dirs = {"HOME": home, "JUPYTER_RUNTIME_DIR": home / "runtime", "JUPYTER_CONFIG_DIR": home / "config",
            "JUPYTER_DATA_DIR": home / "data", "IPYTHONDIR": home / "ipython",
            "JUPYTERLAB_SETTINGS_DIR": home / "lab-settings", "JUPYTERLAB_WORKSPACES_DIR": home / "workspaces",
            "XDG_CONFIG_HOME": home / "xdg-config", "XDG_CACHE_HOME": home / "xdg-cache",
            "XDG_DATA_HOME": home / "xdg-data"}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    news = home / "lab-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True, exist_ok=True)
    news.write_text(json.dumps(NO_NEWS))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "NATS_URL"))}
    env.update({k: str(v) for k, v in dirs.items()})
    return env


def require_chromium() -> None:
    """Skip (or, under CI, fail loudly) when Chromium or Playwright is missing."""
    problems = []
    if not os.access(CHROMIUM, os.X_OK):
        problems.append(f"{CHROMIUM} is missing (as root: apt-get update && apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problems.append("the playwright package is missing (pip install -e '.[test]'; never `playwright install`)")
    if problems:
        reason = "browser test cannot run: " + "; ".join(problems)
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


class Lab:
    """A JupyterLab server from this Python environment, serving ``root``.

    ``get(path)`` calls its REST API; ``url(path)`` a page URL with the token.
    ``stop()`` asks it to shut down (``POST /api/shutdown``) and waits for it.
    """

    def __init__(self, root: Path, home: Path, timeout: float = 30.0, extra_env: dict | None = None):
        self.root, self.home, self.timeout = Path(root), Path(home), timeout
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.env = {**isolated_env(self.home), **(extra_env or {})}
        self.log_path = self.home / "jupyterlab.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Lab:
        jupyter = Path(sys.executable).parent / "jupyter"
        argv = [str(jupyter), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--ServerApp.port_retries=0"]
        if os.geteuid() == 0:
            argv.append("--allow-root")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log()}")
            try:
                self.get("api/status", timeout=1)
                return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"JupyterLab did not answer /api/status within {self.timeout:g} s:\n{self.log()}")
            time.sleep(0.2)

    def url(self, path: str = "lab") -> str:
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}{sep}token={self.token}"

    def request(self, path: str, method: str = "GET", timeout: float = 5.0):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/{path.lstrip('/')}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def get(self, path: str, timeout: float = 5.0):
        return self.request(path, timeout=timeout)

    def log(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            try:
                self.request("api/shutdown", method="POST", timeout=5)
            except (OSError, ValueError, urllib.error.HTTPError):
                pass
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)   # its own session: kernels and their servers too
                proc.wait(5)
        self._log.close()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def launch_chromium(playwright, home: Path):
    """Headless Debian Chromium with the flags that keep it off the network."""
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "xdg-config"),
           "XDG_CACHE_HOME": str(home / "xdg-cache"), "XDG_DATA_HOME": str(home / "xdg-data")}
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, env=env)


def wait_kernel_idle(page, timeout: float = 60.0) -> None:
    """The status bar says ``Python 3 (ipykernel) | Idle`` once a kernel exists and is idle."""
    page.get_by_text("Python 3 (ipykernel) | Idle").first.wait_for(timeout=timeout * 1000)


def run_all(page) -> None:
    """Run ▸ Run All Cells, from the menu bar as a user would."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']:not(.lm-mod-disabled)").click()


def run_all_and_wait(page, lab: Lab, timeout: float = 90.0) -> None:
    """Run every cell, and wait until none is queued or running and the kernel stays idle.

    A cell whose source is hidden shows no ``[*]`` prompt, so the kernel's
    own state (from the server's REST API) decides: idle for a whole second.
    After an error JupyterLab drops the queued cells; :func:`saved_cells` tells.
    """
    run_all(page)
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            return prompts.some(p => /\\[\\d+\\]/.test(p.textContent))
                && !prompts.some(p => p.textContent.includes('*'));
        }""", timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    idle_since = None
    while True:
        busy = [k for k in lab.get("api/kernels") if k.get("execution_state") != "idle"]
        now = time.monotonic()
        if busy:
            idle_since = None
        elif idle_since is None:
            idle_since = now
        elif now - idle_since >= 1.0:
            return
        if now > deadline:
            raise TimeoutError(f"the kernel was still busy after {timeout:g} s: {busy}")
        time.sleep(0.1)


def saved_cells(page, lab: Lab, notebook: str, timeout: float = 15.0) -> list[dict]:
    """Save the notebook from the browser (File ▸ Save) and read the saved code cells back.

    Each: ``source``, ``execution_count`` and ``errors`` (the error outputs' ``ename: evalue``).
    """
    before = lab.get(f"api/contents/{notebook}?content=0")["last_modified"]
    page.get_by_role("menuitem", name="File", exact=True).click()
    page.locator(".lm-Menu-item[data-command='docmanager:save']:not(.lm-mod-disabled)").click()
    deadline = time.monotonic() + timeout
    while lab.get(f"api/contents/{notebook}?content=0")["last_modified"] == before:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{notebook} was not saved within {timeout:g} s")
        time.sleep(0.1)
    model = _whole_notebook(lab, notebook, deadline)
    return [{"source": c["source"].splitlines()[0] if c["source"] else "",
             "execution_count": c.get("execution_count"),
             "errors": [f"{o.get('ename')}: {o.get('evalue')}" for o in c.get("outputs", [])
                        if o.get("output_type") == "error"]}
            for c in model["cells"] if c["cell_type"] == "code"]


def _whole_notebook(lab: Lab, notebook: str, deadline: float) -> dict:
    """The saved notebook's content. Jupyter writes a notebook in place, so its modification time
    changes before the write ends: a read meanwhile is refused as unreadable (400) and is tried again."""
    while True:
        try:
            return lab.get(f"api/contents/{notebook}")["content"]
        except urllib.error.HTTPError as exc:
            if exc.code != 400 or time.monotonic() > deadline:
                raise
        time.sleep(0.1)


def copy_notebooks(names: list[str], dest: Path) -> None:
    src = Path(__file__).resolve().parent.parent / "notebooks"
    dest.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(src / name, dest / name)
