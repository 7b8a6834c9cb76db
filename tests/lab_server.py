"""A private JupyterLab server for browser tests (tests/test_browser_widgets.py, tests/test_formgrader_browser.py).

Every Jupyter, IPython and matplotlib folder lives in the test's temporary directory; the server
listens on 127.0.0.1 only and is stopped by its PID whatever happens. The browser is Debian's
Chromium (never ``playwright install``), told to resolve nothing but the loopback address.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Every host name but the loopback address resolves to nothing, so nothing can leave the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server by its PID (it shuts its kernels down), SIGKILL its process group if it hangs.

    Kernels run in sessions of their own but poll their parent (JPY_PARENT_PID) and exit once it is gone.
    """
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the server was started in a session of its own
        process.wait(timeout=10)


class LabServer:
    def __init__(self, url: str, token: str, root: Path, log: Path) -> None:
        self.url, self.token, self.root, self.log = url, token, root, log

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


JUPYTER_DIRS = ("root", "config", "data", "runtime", "settings", "workspaces", "ipython", "mpl", "exchange")


def jupyter_dirs(tmp_path: Path) -> dict[str, Path]:
    dirs = {name: tmp_path / name for name in JUPYTER_DIRS}
    for folder in dirs.values():
        folder.mkdir()
    return dirs


def lab_env(dirs: dict[str, Path]) -> dict[str, str]:
    """Every Jupyter, IPython and matplotlib folder in the test's temporary directory."""
    return {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "MPLCONFIGDIR": str(dirs["mpl"]),
        "PYTHONUNBUFFERED": "1",
    }


def server_args(port: int, token: str) -> list[str]:
    args = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    return args + (["--allow-root"] if os.geteuid() == 0 else [])


@contextlib.contextmanager
def running_lab(command: list[str], env: dict[str, str], cwd: Path, root: Path, tmp_path: Path, port: int, token: str):
    """Start the server, wait until it answers, yield a LabServer; stopped by PID whatever happens."""
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = LabServer(f"http://127.0.0.1:{port}", token, root, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"JupyterLab exited with {process.returncode} before answering:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer on {server.url} within 90 s:\n{server.log_tail()}")
            time.sleep(0.2)
        yield server
    finally:
        stop(process)


def is_local(url: str) -> bool:
    """Whether the page may load ``url``: loopback, or data the page made itself."""
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return True
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname in {"127.0.0.1", "localhost"}


@contextlib.contextmanager
def chromium_page(playwright, profile: Path, home: Path, timeout_ms: int):
    """Debian's Chromium with a fresh profile and HOME (1280 × 900); yields ``(context, page)``, closed whatever happens."""
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900},
        env={**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache")},
    )  # fmt: skip
    try:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(timeout_ms)
        yield context, page
    finally:
        context.close()
