"""A template that forks one fresh grading kernel per notebook.

``python -m grader.forkserver CONTROL_FD`` imports GRADER_PRELOAD (torch, llmcore, the checks) and
ipykernel once, refuses to serve if it is not single-threaded (fork copies only the calling thread),
then for each request on the control socket (JSON + one per-kernel socket fd, SOCK_SEQPACKET) forks a
child that becomes a new session, closes every server descriptor, takes the notebook's env/cwd/
connection file and runs grader.kernel_launcher.main() (limits, key, snapshot, audit hook, ipykernel).
Replies {"pid"} then {"exit"} on the per-kernel socket; kills the child's group when the worker closes
that socket; kills everything and exits when the control socket closes.
"""
import atexit
import json
import os
import selectors
import signal
import socket
import sys
import traceback

# ``python -m`` put the template's start folder first on sys.path; a kernel gets its own folder there.
TEMPLATE_DIR = sys.path[0] if sys.path else ""


def _prepare_template():
    """Import what every kernel needs; return (threads now running, preload errors)."""
    threads = os.environ.get("GRADER_THREADS")
    if threads:  # the math libraries read these when they load, so before the imports
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = threads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # else numpy's BLAS starts a thread pool at import
    errors = []
    for name in filter(None, os.environ.get("GRADER_PRELOAD", "").split(",")):
        try:
            __import__(name)
        except Exception as error:
            errors.append(f"{name}: {error}")
    import ipykernel.kernelapp  # noqa: F401
    import gc
    gc.freeze()
    return len(os.listdir("/proc/self/task")), errors


def _fork(request, status, control, kernels, selector):
    """Fork the kernel for ``request``; return its pid once it leads a session of its own."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(ready_r)
            os.setsid()
            os.close(ready_w)
            sockets = [control, status] + [entry[0] for entry in kernels.values() if entry[0] is not None]
            for _, pidfd in kernels.values():
                os.close(pidfd)
            _become_kernel_after_setsid(request, sockets, selector)
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(ready_w)
    os.read(ready_r, 1)  # EOF once the child is its own session (or died)
    os.close(ready_r)
    return pid


def _become_kernel_after_setsid(request, sockets, selector):
    """In the child: drop everything of the server, take the notebook's setting, run the launcher."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    selector.close()
    for sock in sockets:
        os.close(sock.detach())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.environ.clear()
    os.environ.update(request["env"])
    os.environ["JPY_PARENT_PID"] = str(os.getppid())
    os.chdir(request["cwd"])
    if sys.path and sys.path[0] == TEMPLATE_DIR:
        sys.path[0] = os.getcwd()
    sys.argv = ["grader.kernel_launcher", "-f", request["connection_file"], f"--IPKernelApp.parent_handle={os.getppid()}"]
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    from grader import kernel_launcher

    kernel_launcher.main()


def _kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def serve(control):
    """Fork kernels on request until the worker closes ``control``; then kill them all."""
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, ("control", None))
    kernels = {}  # pid -> [status socket or None, pidfd]
    while True:
        for key, _ in selector.select():
            kind, pid = key.data
            if kind == "control":
                try:
                    message, fds, _, _ = socket.recv_fds(control, 1 << 20, 1)
                except OSError:
                    message, fds = b"", []
                if not message:
                    for child in kernels:
                        _kill_group(child)
                    for child in list(kernels):
                        os.waitpid(child, 0)
                    return
                status = socket.socket(fileno=fds[0])
                child = _fork(json.loads(message), status, control, kernels, selector)
                pidfd = os.pidfd_open(child)
                kernels[child] = [status, pidfd]
                status.send(json.dumps({"pid": child}).encode())
                selector.register(status, selectors.EVENT_READ, ("status", child))
                selector.register(pidfd, selectors.EVENT_READ, ("exit", child))
            elif kind == "status":  # the worker let go of this kernel: it must not outlive that
                status = kernels[pid][0]
                selector.unregister(status)
                status.close()
                kernels[pid][0] = None
                _kill_group(pid)
            else:
                status, pidfd = kernels.pop(pid)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, wait_status = os.waitpid(pid, 0)
                if status is not None:
                    selector.unregister(status)
                    try:
                        status.send(json.dumps({"exit": os.waitstatus_to_exitcode(wait_status)}).encode())
                    except OSError:
                        pass
                    status.close()


def main():
    control = socket.socket(fileno=int(sys.argv[1]))
    threads, errors = _prepare_template()
    for error in errors:
        print(f"grader: could not preload {error}", file=sys.stderr)
    if threads != 1:
        control.send(json.dumps({"ready": False, "reason": f"template has {threads} threads after its imports"}).encode())
        return
    control.send(json.dumps({"ready": True, "pid": os.getpid()}).encode())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(control)


if __name__ == "__main__":
    main()
