"""Kernels forked from the grading template: each notebook gets a fresh process under the same limits.

:class:`grader.sandbox.SandboxExecute` is run on tiny notebooks (no torch preload, so the template
starts in well under a second) and the kernel reports what it sees about itself.
"""
import os

import nbformat
import pytest

from grader import forkserver_client, sandbox
from grader.sandbox import SandboxExecute

pytestmark = pytest.mark.slow  # three kernels and a refused template: about 10 s

REPORT = (
    "import os, resource\n"
    "print(os.getpid(), os.getppid(), os.readlink('/proc/self/ns/net'), "
    "resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_FSIZE)[0], "
    "'leftover' in globals())\n"
    "leftover = 1"
)


@pytest.fixture
def executor():
    yield SandboxExecute(memory_mb=1024, file_mb=8, preload="json", timeout=30, notebook_timeout=60)
    forkserver_client.close_all()


def _run(executor, student, source):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    nb, _ = executor.preprocess(nb, {"nbgrader": {"student": student, "notebook": "nb"}})
    return nb.cells[0], sandbox.RUNS[(student, "nb")]


def _report(cell):
    pid, ppid, netns, memory, file_size, leftover = cell.outputs[0]["text"].split()
    return int(pid), int(ppid), netns, int(memory), int(file_size), leftover == "True"


def test_each_notebook_gets_a_fresh_forked_kernel_under_the_limits(executor):
    first = _report(_run(executor, "a", REPORT)[0])
    second = _report(_run(executor, "b", REPORT)[0])
    assert first[0] != second[0]  # two processes
    assert first[1] == second[1] != os.getpid()  # both forked by the template, not by this process
    assert not first[5] and not second[5]  # the second never saw the first's global
    assert first[3] == second[3] == 1024 * 2**20
    assert first[4] == second[4] == 8 * 2**20
    if executor._isolated:
        assert first[2] == second[2] != os.readlink("/proc/self/ns/net")


def test_kernel_death_costs_only_that_notebook(executor):
    _, record = _run(executor, "dies", "import os\nos._exit(3)")
    assert record["status"] == "kernel_died"
    cell, record = _run(executor, "next", REPORT)
    assert record["status"] == "ok" and not _report(cell)[5]


def test_template_that_started_a_thread_is_refused_and_kernels_are_exec_started(tmp_path, monkeypatch):
    (tmp_path / "threaded_module.py").write_text(
        "import threading, time\nthreading.Thread(target=time.sleep, args=(30,), daemon=True).start()\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    executor = SandboxExecute(memory_mb=0, preload="threaded_module", timeout=30, notebook_timeout=60)
    try:
        cell, record = _run(executor, "threaded", REPORT)
        assert record["status"] == "ok"
        assert _report(cell)[1] == os.getpid()  # exec-started by this process, not forked
        assert forkserver_client.server_for("threaded_module", 0, executor._isolated) is None
    finally:
        forkserver_client.close_all()


SPAWN_CHILD = "import subprocess\nchild = subprocess.Popen(['sleep', '300'])\nprint(child.pid)"


def _gone(pid: int, within: float = 10.0) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for its new parent counts as ended)."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_processes_a_notebook_started_end_with_its_kernel(executor):
    cell, record = _run(executor, "spawns", SPAWN_CHILD)
    assert record["status"] == "ok"
    assert _gone(int(cell.outputs[0]["text"]))


def test_processes_a_notebook_started_end_when_the_notebook_times_out():
    executor = SandboxExecute(memory_mb=1024, preload="json", timeout=30, notebook_timeout=4)
    try:
        nb = nbformat.v4.new_notebook(cells=[
            nbformat.v4.new_code_cell(SPAWN_CHILD),
            nbformat.v4.new_code_cell("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"),
        ])
        nb, _ = executor.preprocess(nb, {"nbgrader": {"student": "spawns_and_hangs", "notebook": "nb"}})
        assert sandbox.RUNS[("spawns_and_hangs", "nb")]["status"] == "timed_out"
        assert _gone(int(nb.cells[0].outputs[0]["text"]))
    finally:
        forkserver_client.close_all()
