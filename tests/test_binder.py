"""The Binder set-up (binder/) works: checked here with scripts/binder-local.

mybinder.org cannot be reached from CI, so scripts/binder-local runs the same
files in repo2docker's order. The test reuses this environment (``--no-install``:
only ``binder/start`` + JupyterLab); ``NBNATS_BINDER_FULL=1`` also runs the full
install into a fresh venv (about two minutes).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
QUICKSTART = "notebooks/01-quickstart.ipynb"


def _binder_local(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "NATS_URL"}
    return subprocess.run(["bash", str(ROOT / "scripts" / "binder-local"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_binder_files_follow_repo2docker():
    for name in ("postBuild", "start"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} must be executable"
        assert path.read_text().startswith("#!"), f"binder/{name} needs a shebang line"
    start = [ln.strip() for ln in (BINDER / "start").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert start[-1] == 'exec "$@"', "binder/start must end with exec \"$@\""
    assert re.search(r"pip install .*-e \.", (BINDER / "postBuild").read_text()), "postBuild installs the package"
    reqs = (BINDER / "requirements.txt").read_text()
    assert re.search(r"^jupyterlab\b", reqs, re.M) and re.search(r"^ipykernel\b", reqs, re.M)

    wanted = tuple(int(x) for x in re.fullmatch(r"python-(\d+)\.(\d+)\s*", (BINDER / "runtime.txt").read_text()).groups())
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(x) for x in re.fullmatch(r">=(\d+)\.(\d+)", requires).groups())
    assert wanted >= minimum, f"binder/runtime.txt asks for Python {wanted}, nbnats needs {requires}"


def test_readme_binder_badge_opens_the_quickstart():
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"\(https://mybinder\.org/v2/gh/([^)\s]+)\)", readme)
    assert badge, "README.md has no Binder badge link"
    urlpath = parse_qs(urlparse(badge.group(0)[1:-1]).query)["urlpath"][0]
    assert urlpath == f"lab/tree/{QUICKSTART}"
    assert (ROOT / QUICKSTART).is_file()


def test_binder_start_execs_its_arguments():
    proc = subprocess.Popen([str(BINDER / "start"), sys.executable, "-c", "import os; print(os.getpid())"],
                            stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert int(out) == proc.pid, "binder/start ran its arguments as a child instead of exec-ing them"


@pytest.mark.timeout(90)
def test_binder_local_check_serves_and_runs_the_quickstart():
    r = _binder_local("--venv", sys.prefix, "--no-install", "--check", "--timeout", "40", timeout=85)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK — a Binder user would land on /lab/tree/notebooks/01-quickstart.ipynb" in r.stdout
    assert "01-quickstart.ipynb runs top to bottom" in r.stdout


def test_binder_local_refuses_unknown_options():
    r = _binder_local("--chek", timeout=10)
    assert r.returncode == 2 and "unknown option '--chek'" in r.stderr


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(os.environ.get("NBNATS_BINDER_FULL") != "1",
                    reason="the full Binder install takes ~2 min; set NBNATS_BINDER_FULL=1 to run it")
def test_binder_local_full_install(tmp_path):
    r = _binder_local("--venv", str(tmp_path / "venv"), "--check", timeout=880)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "bundled nats-server" in r.stdout and "OK — a Binder user" in r.stdout
