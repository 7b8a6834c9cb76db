"""Worker side of grader.forkserver: ForkServer (one template) and ForkedKernel (Popen-like)."""
import json
import os
import signal
import socket
import subprocess
import sys


class ForkServerUnavailable(RuntimeError):
    """The template could not start, refused to serve (not single-threaded) or stopped forking."""


class ForkedKernel:
    """What jupyter_client's LocalProvisioner uses of a Popen, for a kernel forked by the template."""

    stdin = stdout = stderr = None

    def __init__(self, pid, channel):
        self.pid, self.returncode, self._channel = pid, None, channel

    def _read(self, timeout):
        self._channel.settimeout(timeout)
        try:
            message = self._channel.recv(4096)
        except (BlockingIOError, TimeoutError):
            return
        except OSError:
            message = b""
        if message:
            self.returncode = json.loads(message)["exit"]
        else:  # the template is gone: make sure the kernel is too
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
            self.returncode = -signal.SIGKILL
        self._channel.close()

    def poll(self):
        if self.returncode is None:
            self._read(0)
        return self.returncode

    def wait(self, timeout=None):
        if self.returncode is None:
            self._read(timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
        return self.returncode

    def send_signal(self, signum):
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def kill(self):
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """One template process (``python -m grader.forkserver``) and the socket to ask it for kernels."""

    def __init__(self, preload, threads, isolate_network, start_timeout=120, course_secret=""):
        self.control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        cmd = [sys.executable, "-m", "grader.forkserver", str(theirs.fileno())]
        if isolate_network:
            cmd = ["unshare", "-n", "--", *cmd]
        # the secret is in the template too, for checks that derive their hidden seeds at import
        env = {**os.environ, "GRADER_PRELOAD": preload, "PYTHONNOUSERSITE": "1", "GRADER_COURSE_SECRET": course_secret}
        if threads:
            env["GRADER_THREADS"] = str(threads)
        self.process = subprocess.Popen(cmd, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        theirs.close()
        self.control.settimeout(start_timeout)
        try:
            ready = json.loads(self.control.recv(4096) or b'{"ready": false, "reason": "template exited"}')
        except (OSError, ValueError) as error:
            ready = {"ready": False, "reason": str(error)}
        if not ready["ready"]:
            self.close()
            raise ForkServerUnavailable(ready["reason"])
        self.control.settimeout(30)

    def alive(self):
        return self.process.poll() is None

    def spawn(self, connection_file, env, cwd):
        """Fork a kernel for ``connection_file`` with environment ``env`` in folder ``cwd``."""
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        request = json.dumps({"connection_file": connection_file, "env": dict(env), "cwd": str(cwd)}).encode()
        try:
            socket.send_fds(self.control, [request], [theirs.fileno()])
        finally:
            theirs.close()
        mine.settimeout(30)
        reply = mine.recv(4096)
        if not reply:
            mine.close()
            raise ForkServerUnavailable("the template did not fork a kernel")
        return ForkedKernel(json.loads(reply)["pid"], mine)

    def close(self):
        self.control.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_SERVERS = {}


def server_for(preload, threads, isolate_network, course_secret=""):
    """This process's template for these settings, started on first use; None where it cannot serve."""
    key = (preload, threads, isolate_network, course_secret)
    server = _SERVERS.get(key)
    if server is False:
        return None
    if server is None or not server.alive():
        try:
            server = ForkServer(preload, threads, isolate_network, course_secret=course_secret)
        except (ForkServerUnavailable, OSError) as error:
            print(f"grader: kernels start without the fork server ({error})", file=sys.stderr)
            server = False
        _SERVERS[key] = server
    return server or None


def close_all():
    for key, server in list(_SERVERS.items()):
        if server:
            server.close()
        del _SERVERS[key]
