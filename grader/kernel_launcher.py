"""The kernel that runs a student notebook during grading: ``python -m grader.kernel_launcher -f CONNECTION``.

Before any student code runs it

* applies resource limits (address space, file size, no core dumps) from ``GRADER_MEMORY_MB`` and
  ``GRADER_FILE_MB``, and pins the math libraries to ``GRADER_THREADS`` threads;
* imports the modules in ``GRADER_PRELOAD`` (torch, the chapter's checks), which is also where the
  grader takes its snapshot of what student code must not redefine;
* brings up the loopback interface of its network namespace when ``GRADER_LOOPBACK_UP`` is set: a
  fresh namespace (``unshare -n``) starts with ``lo`` down, and notebooks that run several processes
  (chapter 5's data-parallel step over gloo) talk over it. Only that namespace's own ``lo``: there is
  still no route out of it;
* installs an audit hook (``sys.addaudithook``: it can never be removed) that records network
  attempts and answers the grader's integrity probe.

The probe (:data:`PROBE_EVENT`) compares the watched objects with the snapshot and signs its answer
with a key read from ``GRADER_PROBE_KEY_FILE`` (the file is deleted at once and the key lives only in
the hook's closure), so student code that replaced a check or ``sys.audit`` cannot forge a clean
answer by printing one. This keeps honest-but-clever monkeypatching (rebinding ``check_*``, patching
``grader.checks``, llmcore's reference or ``torch.allclose``) out of the grades; it is not a sandbox
against code that reverse-engineers the grader.

Then it hands over to ipykernel as ``ipykernel_launcher`` would.
"""
import fcntl
import hashlib
import hmac
import json
import os
import socket
import struct
import sys

ARM_EVENT = "llmcore.grader.arm"
PROBE_EVENT = "llmcore.grader.probe"
NETWORK_EVENTS = ("socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto", "urllib.Request")
WATCHED_PREFIXES = ("grader.checks", "llmcore")
WATCHED_MODULES = ("torch", "torch.nn.functional", "torch.testing", "inspect", "math")
WATCHED_TYPES = (("torch", "Tensor"), ("torch.nn", "Module"))
WATCHED_SYS = ("setprofile", "getprofile", "settrace", "gettrace", "audit", "modules")
WATCHED_BUILTINS = (
    "isinstance", "issubclass", "callable", "len", "abs", "sum", "min", "max", "any", "all", "getattr",
    "setattr", "hasattr", "type", "tuple", "list", "dict", "range", "zip", "enumerate", "float", "int",
    "bool", "str", "repr", "round", "sorted", "iter", "next", "super", "__import__", "print", "id",
)


def _apply_limits():
    import resource

    memory_mb = int(os.environ.get("GRADER_MEMORY_MB", "0") or 0)
    if memory_mb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb * 2**20, memory_mb * 2**20))
    file_mb = int(os.environ.get("GRADER_FILE_MB", "0") or 0)
    if file_mb > 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    threads = os.environ.get("GRADER_THREADS")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = threads


_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def bring_loopback_up(interface="lo"):
    """Set ``interface`` up in this process's network namespace (``ip link set lo up`` as two ioctls, since
    ``ip`` may be missing); return whether it is up. Needs CAP_NET_ADMIN in the namespace, as its creator has."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
            request = struct.pack("16sH", interface.encode(), 0) + bytes(22)
            flags = struct.unpack_from("H", fcntl.ioctl(control.fileno(), _SIOCGIFFLAGS, request), 16)[0]
            if not flags & _IFF_UP:
                fcntl.ioctl(control.fileno(), _SIOCSIFFLAGS, struct.pack("16sH", interface.encode(), flags | _IFF_UP)
                            + bytes(22))
        return True
    except OSError:
        return False


def _watched_objects():
    """{qualified name: object} of everything a check relies on, as it is now."""
    watched = {}
    modules = [name for name in list(sys.modules) if name.startswith(WATCHED_PREFIXES)]
    modules += [name for name in WATCHED_MODULES if name in sys.modules]
    for name in modules:
        module = sys.modules.get(name)
        if module is None:
            continue
        watched[f"sys.modules[{name!r}]"] = module
        for attr, value in list(vars(module).items()):
            if not attr.startswith("__"):
                watched[f"{name}.{attr}"] = value
    for module_name, type_name in WATCHED_TYPES:
        cls = getattr(sys.modules.get(module_name), type_name, None)
        if isinstance(cls, type):
            watched[f"type {module_name}.{type_name}"] = cls
            for attr, value in list(vars(cls).items()):
                watched[f"{module_name}.{type_name}.{attr}"] = value
    import builtins

    for attr in WATCHED_BUILTINS:
        watched[f"builtins.{attr}"] = getattr(builtins, attr)
    for attr in WATCHED_SYS:
        watched[f"sys.{attr}"] = getattr(sys, attr)
    return watched


def _install_hook(key):
    snapshot = _watched_objects()
    network = []
    state = {"armed": False}
    names = [name for name in snapshot if name.startswith("grader.checks.")]

    def current(name):
        """The object ``name`` refers to now, or a sentinel when it is gone."""
        if name.startswith("sys.modules["):
            return sys.modules.get(name[len("sys.modules['"):-2], _GONE)
        if name.startswith("builtins."):
            import builtins

            return getattr(builtins, name.split(".", 1)[1], _GONE)
        if name.startswith("sys."):
            return getattr(sys, name[4:], _GONE)
        for module_name, type_name in WATCHED_TYPES:
            prefix = f"{module_name}.{type_name}."
            if name.startswith(prefix):
                cls = snapshot.get(f"type {module_name}.{type_name}")
                return vars(cls).get(name[len(prefix):], _GONE)
        if name.startswith("type "):
            module_name, _, type_name = name[5:].rpartition(".")
            return getattr(sys.modules.get(module_name), type_name, _GONE)
        module_name, _, attr = name.rpartition(".")
        module = snapshot_modules.get(module_name)
        return vars(module).get(attr, _GONE) if module is not None else _GONE

    snapshot_modules = {name[len("sys.modules['"):-2]: value for name, value in snapshot.items()
                        if name.startswith("sys.modules[")}

    def probe(user_ns):
        changed = sorted(name for name, value in snapshot.items() if current(name) is not value)
        genuine_checks = {name.rsplit(".", 1)[1]: snapshot[name] for name in names}
        for var, value in list((user_ns or {}).items()):
            if var.startswith("check_") and var in genuine_checks and value is not genuine_checks[var]:
                changed.append(f"notebook variable {var}")
        return {"changed": changed, "network": list(network)}

    def hook(event, args):
        if event.startswith(("socket.", "urllib.")):
            if state["armed"] and event in NETWORK_EVENTS:
                if event == "socket.getaddrinfo":
                    detail = f"{event} {args[0]}:{args[1]}"
                elif event == "urllib.Request":
                    detail = f"{event} {args[0]}"
                else:
                    detail = f"{event} {args[1]!r}"
                if len(network) < 20 and detail not in network:
                    network.append(detail)
        elif event == ARM_EVENT:
            state["armed"] = True
        elif event == PROBE_EVENT:
            nonce, user_ns, out = args
            answer = json.dumps(probe(user_ns), sort_keys=True)
            signature = hmac.new(key, (nonce + answer).encode(), hashlib.sha256).hexdigest()
            out.append(answer)
            out.append(signature)

    sys.addaudithook(hook)


class _Gone:
    def __repr__(self):
        return "<gone>"


_GONE = _Gone()


def _read_key():
    path = os.environ.pop("GRADER_PROBE_KEY_FILE", "")
    if not path:
        return os.urandom(32)
    try:
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


def main():
    if os.environ.pop("GRADER_LOOPBACK_UP", "") and not bring_loopback_up():
        print("grader: could not bring up the loopback interface of the kernel's network namespace", file=sys.stderr)
    _apply_limits()
    key = _read_key()
    for name in filter(None, os.environ.get("GRADER_PRELOAD", "").split(",")):
        try:
            __import__(name)
        except Exception as error:  # a missing module must not stop grading; the notebook will say
            print(f"grader: could not preload {name}: {error}", file=sys.stderr)
    threads = os.environ.get("GRADER_THREADS")
    if threads and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    _install_hook(key)
    if os.environ.pop("GRADER_QUIET_KERNEL", ""):
        # ipykernel logs to the process's stderr (e.g. "KeyboardInterrupt caught in kernel" when the
        # grader interrupts or shuts it down); the notebook's own output travels over the sockets.
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            os.dup2(null, fd)
        os.close(null)
    for name in ("GRADER_MEMORY_MB", "GRADER_FILE_MB", "GRADER_PRELOAD", "GRADER_THREADS"):
        os.environ.pop(name, None)
    if sys.path and sys.path[0] == "":
        del sys.path[0]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    main()
