"""Executing a student notebook under limits, for ``nbgrader autograde`` (``SandboxExecute``).

``SandboxExecute`` replaces nbgrader's ``Execute`` preprocessor. Per notebook it

* starts the kernel through :mod:`grader.kernel_launcher` (memory and file-size limits, math
  libraries pinned to a number of threads, torch and the chapter's checks preloaded) inside a new
  network namespace (``unshare -n``) when the OS allows it, talking to it over Unix sockets; the
  kernel brings that namespace's own loopback up (processes a notebook starts talk over it);
* caps the output it keeps, and kills the kernel when the notebook's wall-clock limit is reached;
* probes the kernel before every test cell: a test cell that would run after student code replaced
  a grader check (or what the checks rely on) is not run and fails with an explanation;
* never lets a dying kernel fail the notebook: the test cells that did not run get an error output,
  so they score 0 while the tests that passed before keep their points.

What happened is recorded in :data:`RUNS` (keyed by student, notebook) for the grading engine.
"""
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Integer, Unicode

from grader.kernel_launcher import ARM_EVENT, PROBE_EVENT
from grader.nbgrader_setup import SECRET_ENV

# (student_id, notebook) -> dict describing the run; filled by SandboxExecute, read by grading.py.
RUNS = {}

INTEGRITY_ERROR = "GraderIntegrityError"
KILLED_ERROR = "NotebookNotFinished"


def network_isolation_available():
    """Whether ``unshare -n`` works here (root or user namespaces allowed)."""
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class SandboxKernelManager(AsyncKernelManager):
    """Starts ``grader.kernel_launcher`` (optionally in a fresh network namespace) over Unix sockets."""

    sandbox_env = {}
    isolate_network = False
    fork_server = None

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        if self.fork_server is not None:
            try:
                process = self.fork_server.spawn(os.path.realpath(self.connection_file), kw["env"],
                                                 kw.get("cwd") or os.getcwd())
            except OSError:
                self.fork_server = None
            else:
                provisioner = self.provisioner
                provisioner.process, provisioner.pid, provisioner.pgid = process, process.pid, process.pid
                provisioner.cwd = kw.get("cwd")
                self._reconcile_connection_info(provisioner.connection_info)
                return
        await super()._async_launch_kernel(kernel_cmd, **kw)

    def format_kernel_cmd(self, extra_arguments=None):
        cmd = [sys.executable, "-m", "grader.kernel_launcher", "-f", os.path.realpath(self.connection_file)]
        cmd += list(extra_arguments or [])
        if self.isolate_network:
            cmd = ["unshare", "-n", "--", *cmd]
        return cmd

    async def _async_pre_start_kernel(self, **kw):
        cmd, kw = await super()._async_pre_start_kernel(**kw)
        env = dict(kw.get("env") or os.environ)
        env.update(self.sandbox_env)
        kw["env"] = env
        return cmd, kw


def _error_output(ename, message):
    return NotebookNode(
        output_type="error", ename=ename, evalue=message, traceback=[f"{ename}: {message}"]
    )


def _is_grade_cell(cell):
    return bool(cell.metadata.get("nbgrader", {}).get("grade")) and cell.cell_type == "code"


class SandboxExecute(Execute):
    """nbgrader's Execute, run under the limits and integrity probes described in the module doc."""

    memory_mb = Integer(4096, help="address-space limit of the kernel in MiB (0: none)").tag(config=True)
    file_mb = Integer(256, help="largest file the kernel may write, MiB (0: none)").tag(config=True)
    threads = Integer(0, help="threads for torch/OpenMP in the kernel (0: library default)").tag(config=True)
    preload = Unicode("", help="comma-separated modules imported before the notebook runs").tag(config=True)
    notebook_timeout = Integer(900, help="wall-clock limit of one notebook in seconds (0: none)").tag(config=True)
    max_output_kb = Integer(10240, help="output kept per notebook in KiB; the rest is dropped").tag(config=True)
    isolate_network = Bool(True, help="run the kernel without network (unshare -n) when possible").tag(config=True)
    fork_kernels = Bool(True, help="fork each kernel from a template that preloaded the modules").tag(config=True)
    probe = Bool(True, help="check before each test cell that the grader checks are intact").tag(config=True)
    course_secret = Unicode("", help="seed of the hidden checks' cases (GRADER_COURSE_SECRET in the kernel)").tag(config=True)
    # A busy machine can delay a cell's last output; waiting a little longer beats failing the notebook.
    iopub_timeout = Integer(15).tag(config=True)
    raise_on_iopub_timeout = Bool(False).tag(config=True)

    _network_ok = None

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(*args, **kwargs)

    def create_kernel_manager(self):
        km = super().create_kernel_manager()
        self._ipc_dir = tempfile.mkdtemp(prefix="grader-k-")
        km.transport = "ipc"
        km.ip = os.path.join(self._ipc_dir, "k")
        key_file = os.path.join(self._ipc_dir, "key")
        with open(os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
            handle.write(self._key)
        env = {"GRADER_PROBE_KEY_FILE": key_file, "PYTHONNOUSERSITE": "1", "GRADER_QUIET_KERNEL": "1"}
        if self.memory_mb:
            env["GRADER_MEMORY_MB"] = str(self.memory_mb)
        if self.file_mb:
            env["GRADER_FILE_MB"] = str(self.file_mb)
        if self.threads:
            env["GRADER_THREADS"] = str(self.threads)
        if self.preload:
            env["GRADER_PRELOAD"] = self.preload
        env[SECRET_ENV] = self.course_secret  # empty: the public seeds a student gets at home
        if self._isolated:
            env["GRADER_LOOPBACK_UP"] = "1"
        km.sandbox_env = env
        km.isolate_network = self._isolated
        if self.fork_kernels:
            from grader.forkserver_client import server_for

            km.fork_server = server_for(self.preload, self.threads, self._isolated, self.course_secret)
        return km

    @property
    def _isolated(self):
        if not self.isolate_network:
            return False
        if SandboxExecute._network_ok is None:
            SandboxExecute._network_ok = network_isolation_available()
        return SandboxExecute._network_ok

    # --- output cap ---------------------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {}), default=str))
        self._output_bytes += size
        if self._output_bytes > self.max_output_kb * 1024:
            self._dropped_bytes += size
            self._dropped_cells.add(cell_index)
            return None
        return super().output(outs, msg, display_id, cell_index)

    # --- kernel probes ------------------------------------------------------------------------
    def _silent(self, code, expression=None):
        """Run ``code`` silently in the kernel; return the repr of ``expression`` (or None)."""
        user_expressions = {"r": expression} if expression else {}
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=user_expressions)
        reply = self.wait_for_reply(msg_id)
        if not reply or reply["content"].get("status") != "ok" or not expression:
            return None
        value = reply["content"].get("user_expressions", {}).get("r", {})
        return value.get("data", {}).get("text/plain") if value.get("status") == "ok" else None

    def _probe(self):
        """The kernel's integrity answer: a dict, or None when it could not be trusted."""
        import ast
        import hashlib
        import hmac

        nonce = secrets.token_hex(16)
        code = (
            "__grader_probe__ = []\n"
            f"__import__('sys').audit({PROBE_EVENT!r}, {nonce!r}, globals(), __grader_probe__)"
        )
        msg_id = self.kc.execute(code, silent=True, store_history=False,
                                 user_expressions={"r": "__grader_probe__"})
        reply = self.wait_for_reply(msg_id)
        if reply is None:  # no reply in time: a cell ignored its interrupt and the kernel is stuck
            self._record["killed"] = "timed_out"
            self._record["killed_detail"] = (f"stopped after the {self.timeout} s limit for one cell, in {self._cell_label()} "
                                             "(it ignored the interrupt)")
            self._kill_kernel()
            raise DeadKernelError("kernel unresponsive")
        value = reply["content"].get("user_expressions", {}).get("r", {})
        text = value.get("data", {}).get("text/plain") if value.get("status") == "ok" else None
        try:
            answer, signature = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError):
            return None
        expected = hmac.new(self._key, (nonce + answer).encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return None
        answer = json.loads(answer)
        for event in answer["network"]:
            if event not in self._record["network"]:
                self._record["network"].append(event)
        return answer

    # --- execution ----------------------------------------------------------------------------
    def preprocess_cell(self, cell, resources, index):
        self._current = index
        if self.probe and _is_grade_cell(cell) and cell.source.strip():
            answer = self._probe()
            if answer is None or answer["changed"]:
                what = "the integrity probe got no trustworthy answer" if answer is None else (
                    "replaced: " + ", ".join(answer["changed"][:5])
                )
                self._record["integrity"].append(
                    {"cell": cell.metadata["nbgrader"].get("grade_id"), "detail": what}
                )
                cell.outputs = [_error_output(
                    INTEGRITY_ERROR,
                    "not graded: code in this notebook modified the grader's checks or what they rely on "
                    f"({what}). This test scores 0.",
                )]
                cell.execution_count = None
                return cell, self.resources
        result = super().preprocess_cell(cell, resources, index)
        if index in self._dropped_cells:
            cell.outputs.append(NotebookNode(
                output_type="stream", name="stderr",
                text=f"[grader: output limit of {self.max_output_kb} KiB per notebook reached; "
                "further output was dropped]\n",
            ))
        return result

    def _cell_label(self):
        """The running cell, as a student finds it: its grade_id, else its number."""
        try:
            cell = self.nb.cells[self._current]
        except (AttributeError, IndexError, TypeError):
            return "an unknown cell"
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {grade_id}" if grade_id else f"cell {self._current + 1}"

    def _kill_kernel(self):
        self._record["killed"] = "timed_out"
        self._record.setdefault(
            "killed_detail", f"stopped after the {self.notebook_timeout} s limit for the whole notebook, in {self._cell_label()}"
        )
        try:
            pid = self.km.provisioner.process.pid
        except Exception:
            return
        # The kernel leads its own process group, so processes the notebook started die with it.
        for kill in (os.killpg, os.kill):
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass

    def preprocess(self, nb, resources=None, km=None):
        from nbclient.client import NotebookClient

        info = (resources or {}).get("nbgrader", {})
        key = (info.get("student"), info.get("notebook"))
        self._key = secrets.token_bytes(32)
        self._output_bytes = self._dropped_bytes = 0
        self._dropped_cells = set()
        self._current = -1
        self._record = {
            "status": "ok", "detail": "", "integrity": [], "network": [], "killed": None,
            "isolated": self._isolated, "output_dropped_bytes": 0, "seconds": 0.0,
        }
        RUNS[key] = self._record
        start = time.monotonic()
        NotebookClient.__init__(self, nb, km)
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        timer = None
        try:
            with self.setup_kernel():
                if self.notebook_timeout:
                    timer = threading.Timer(self.notebook_timeout, self._kill_kernel)
                    timer.daemon = True
                    timer.start()
                info_msg = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info_msg["content"]["language_info"]
                self._silent(f"__import__('sys').audit({ARM_EVENT!r})")
                for index, cell in enumerate(self.nb.cells):
                    self.preprocess_cell(cell, resources, index)
                final = self._probe() if self.probe else {"changed": [], "network": []}
                if final is None:
                    self._record["integrity"].append(
                        {"cell": None, "detail": "the integrity probe got no trustworthy answer at the end"}
                    )
        except (DeadKernelError, CellTimeoutError, RuntimeError, asyncio.TimeoutError, TimeoutError) as error:
            status = self._record["killed"] or (
                "timed_out" if isinstance(error, (CellTimeoutError, TimeoutError, asyncio.TimeoutError)) else "kernel_died"
            )
            self._record["status"] = status
            self._record["detail"] = (
                self._record.get("killed_detail", "") if self._record["killed"]
                else f"stopped after the {self.timeout} s limit for one cell, in {self._cell_label()}" if status == "timed_out"
                else f"the notebook's Python process ended (os._exit, a crash, or the {self.memory_mb} MB memory "
                f"limit) in {self._cell_label()}"
            )
            self._fail_unfinished(status)
        finally:
            if timer is not None:
                timer.cancel()
            shutil.rmtree(getattr(self, "_ipc_dir", ""), ignore_errors=True)
            self._record["seconds"] = round(time.monotonic() - start, 3)
            self._record["output_dropped_bytes"] = self._dropped_bytes
        self.set_widgets_metadata()
        return self.nb, self.resources

    def _fail_unfinished(self, status):
        """Give every test cell from the one that was running onwards an error, so it scores 0."""
        message = (
            "not run: the notebook reached its wall-clock limit" if status == "timed_out"
            else "not run: the kernel died (os._exit, a crash or the memory limit) before this test finished"
        )
        for index, cell in enumerate(self.nb.cells):
            if index >= max(self._current, 0) and _is_grade_cell(cell):
                cell.outputs = [*cell.outputs, _error_output(KILLED_ERROR, message)]
