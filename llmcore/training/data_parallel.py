"""Data parallelism (数据并行) on one machine: a process per rank, gloo over loopback, started from a notebook.

Every rank holds a full copy of the model, trains on its own shard of each batch and averages the
gradients with its peers (an all-reduce) before the optimizer step, so all copies stay equal and the
run equals a single process training on the union of the shards. This is the scheme of PyTorch's
``DistributedDataParallel`` (Li et al., "PyTorch Distributed", VLDB 2020) and the innermost of
LLaMA 3's four dimensions of parallelism (Llama Team, "The Llama 3 Herd of Models", 2024, §3.3.2).

Conventions:

- **rank 0 is the source of truth at start**: every rank copies rank 0's parameters (a broadcast),
  because each process initialised its model with its own random state;
- **shards are drawn per rank**: rank ``r`` draws its rows with ``torch.Generator().manual_seed(seed + r)``
  (nanoGPT's ``seed_offset = rank``), ``batch_per_rank`` rows a step, with replacement; the full batch of
  a step is the ranks' rows concatenated in rank order;
- **gradients are averaged, not summed**: the loss is a mean over each shard, so the mean of the ranks'
  gradients is the gradient of the mean loss over the full batch (shards have equal sizes).

:func:`launch` starts the ranks by ``fork``: a function defined in a notebook lives in ``__main__`` and
could not be pickled for a ``spawn`` start. The ranks meet through a :class:`torch.distributed.FileStore`
in a private temporary folder (no TCP port to agree on, so concurrent runs never collide) and gloo talks
over the loopback interface ``lo``.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import tempfile
import time
import traceback
import warnings
from datetime import timedelta
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "WorkerError",
    "launch",
    "loopback_is_up",
    "broadcast_parameters",
    "all_reduce_gradients",
    "shard_rows",
    "train_data_parallel",
    "train_full_batch",
]

T = TypeVar("T")

ERROR_GRACE_S = 1.0
"""After a rank fails, how long :func:`launch` waits for the others' reports before stopping them."""

_SIOCGIFFLAGS = 0x8913
_IFF_UP = 0x1


class WorkerError(RuntimeError):
    """A rank failed. ``rank`` is the first rank that reported, ``error`` its exception when it could be
    sent back (else ``None``) and ``child_traceback`` the traceback as text."""

    def __init__(self, message: str, *, rank: int | None = None, error: BaseException | None = None,
                 child_traceback: str = "") -> None:
        super().__init__(message)
        self.rank = rank
        self.error = error
        self.child_traceback = child_traceback


def loopback_is_up(interface: str = "lo") -> bool:
    """Whether ``interface`` is up in this process's network namespace (``SIOCGIFFLAGS``; ``/sys`` may show
    another namespace's interfaces). A fresh namespace (``unshare -n``) starts with ``lo`` down."""
    request = struct.pack("16sH", interface.encode(), 0) + bytes(22)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            answer = fcntl.ioctl(probe.fileno(), _SIOCGIFFLAGS, request)
    except OSError:
        return False
    return bool(struct.unpack_from("H", answer, 16)[0] & _IFF_UP)


def _run_rank(worker: Callable[[int, int], Any], rank: int, world_size: int, store_path: str, timeout: float,
              results: int) -> None:
    """In the forked child: join the group, run ``worker``, send ``("ok", value)`` or ``("error", …)`` back."""
    raised_at = None  # when the worker itself raised: the earliest error among the ranks is the cause
    try:
        torch.set_num_threads(1)  # the ranks share the machine's cores; more threads only contend
        # A collective called in place on a Parameter outside torch.no_grad() (dist.broadcast(p, src=0)) makes
        # backward warn, once per rank, that c10d's op has no autograd kernel; the op only copies values into a
        # leaf and the gradients are unchanged, so the warning would only bury the rank's own output.
        warnings.filterwarnings("ignore", message=r"c10d::\w+: an autograd kernel was not registered",
                                category=UserWarning)
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", init_method=f"file://{store_path}", rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout))
        try:
            message: tuple = ("ok", worker(rank, world_size))
        except BaseException:
            raised_at = time.monotonic()
            raise
        finally:
            dist.destroy_process_group()
    except BaseException as error:  # noqa: BLE001 (everything goes back to the parent, named by rank)
        message = ("error", error, traceback.format_exc(), raised_at or time.monotonic())
    try:
        payload = pickle.dumps(message)
    except Exception as unpicklable:  # the result or the exception cannot travel: send its text
        text = message[2] if message[0] == "error" else ""
        payload = pickle.dumps(("error", None, text or f"the worker's result cannot be pickled: {unpicklable!r}",
                                time.monotonic()))
    with os.fdopen(results, "wb") as pipe:
        pipe.write(payload)


def _kill(pids: dict[int, int]) -> None:
    for pid in pids.values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in pids.values():
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def launch(worker: Callable[[int, int], T], world_size: int = 2, *, timeout: float = 60.0) -> list[T]:
    """Run ``worker(rank, world_size)`` in ``world_size`` forked processes joined in a gloo process group.

    Returns the workers' return values in rank order (they travel back pickled). Each child uses one
    torch thread. When a rank raises, the others are killed at once (they would wait in a collective
    for a peer that never comes) and :class:`WorkerError` names the rank and its exception (a bare
    ``NotImplementedError``, an exercise's stub, comes back as ``NotImplementedError`` naming the
    function that raised it); after
    ``timeout`` seconds every rank still running is killed and ``TimeoutError`` names them. The group,
    the store's folder and the children are cleaned up in every case.

    Raises ``RuntimeError`` before starting anything when the loopback interface is down.
    """
    if not loopback_is_up():
        raise RuntimeError(
            "the loopback interface `lo` is down in this network namespace, so the ranks cannot talk to each "
            "other (a sandbox started with `unshare -n` must bring `lo` up first)"
        )
    folder = tempfile.mkdtemp(prefix="llmcore-dp-")
    pids: dict[int, int] = {}
    pipes: dict[int, int] = {}
    try:
        for rank in range(world_size):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child never returns into the caller's code
                code = 1
                try:
                    os.close(read_end)
                    for other in pipes.values():
                        os.close(other)
                    _run_rank(worker, rank, world_size, os.path.join(folder, "store"), timeout, write_end)
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_end)
            pids[rank], pipes[rank] = pid, read_end
        return _collect(pids, pipes, timeout)
    finally:
        _kill(pids)
        for read_end in pipes.values():
            try:
                os.close(read_end)
            except OSError:
                pass
        shutil.rmtree(folder, ignore_errors=True)


def _collect(pids: dict[int, int], pipes: dict[int, int], timeout: float) -> list[Any]:
    """Read every rank's message. After the first error the others get :data:`ERROR_GRACE_S` to report too, and the
    error raised first is the one reported: a peer's crash makes the other ranks fail in their collectives."""
    chunks: dict[int, list[bytes]] = {rank: [] for rank in pipes}
    open_pipes = {fd: rank for rank, fd in pipes.items()}
    results: dict[int, Any] = {}
    errors: list[tuple[float, int, BaseException | None, str]] = []
    deadline = time.monotonic() + timeout
    while open_pipes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        ready, _, _ = select.select(list(open_pipes), [], [], remaining)
        for fd in ready:
            rank = open_pipes[fd]
            data = os.read(fd, 1 << 20)
            if data:
                chunks[rank].append(data)
                continue
            del open_pipes[fd]
            if not chunks[rank]:
                errors.append((time.monotonic(), rank, None, f"rank {rank} died without a result (killed, or out "
                               "of memory?)"))
            else:
                message = pickle.loads(b"".join(chunks[rank]))
                if message[0] == "ok":
                    results[rank] = message[1]
                else:
                    errors.append((message[3], rank, message[1], message[2]))
            if errors and len(errors) == 1:
                deadline = min(deadline, time.monotonic() + ERROR_GRACE_S)
    if errors:
        _, rank, error, text = min(errors, key=lambda entry: entry[0])
        if type(error) is NotImplementedError and not error.args:  # a stub: name the function still to write
            stub = _innermost_function(text)
            raise NotImplementedError(f"`{stub}` is not implemented yet (rank {rank} reached its "
                                      "`raise NotImplementedError()`)")
        summary = f"{type(error).__name__}: {error}" if error is not None else text.strip().splitlines()[-1]
        raise WorkerError(f"rank {rank} failed: {summary}\n--- traceback of rank {rank} ---\n{text}",
                          rank=rank, error=error, child_traceback=text)
    if open_pipes:
        waiting = sorted(open_pipes.values())
        raise TimeoutError(f"rank(s) {waiting} did not finish within {timeout:g} s (waiting in a collective that "
                           "another rank never reached?)")
    return [results[rank] for rank in sorted(results)]


def _innermost_function(traceback_text: str) -> str:
    """The function of the last frame of a formatted traceback (``File "…", line 3, in train``)."""
    frames = [line for line in traceback_text.splitlines() if line.lstrip().startswith("File ")]
    return frames[-1].rsplit(" in ", 1)[-1] if frames else "the worker"


# --------------------------------------------------------------------------------------------------
# The parts of a data-parallel step (run inside a rank, after init_process_group)
# --------------------------------------------------------------------------------------------------


def broadcast_parameters(model: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters into every rank's ``model`` (in place)."""
    with torch.no_grad():
        for parameter in model.parameters():
            dist.broadcast(parameter, src=src)


def all_reduce_gradients(model: nn.Module) -> None:
    """Replace each parameter's ``.grad`` by its mean over the ranks (sum by all-reduce, then divide)."""
    world_size = dist.get_world_size()
    for parameter in model.parameters():
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad, op=dist.ReduceOp.SUM)
            parameter.grad.div_(world_size)


def shard_rows(n_rows: int, batch_per_rank: int, generator: torch.Generator) -> Tensor:
    """``[batch_per_rank]`` row indices in ``[0, n_rows)``, drawn with replacement from ``generator``."""
    return torch.randint(n_rows, (batch_per_rank,), generator=generator)


def train_data_parallel(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor,
                        loss_fn: Callable[[Tensor, Tensor], Tensor], *, steps: int, batch_per_rank: int,
                        seed: int) -> None:
    """Train ``model`` for ``steps`` data-parallel steps on this rank (inside an initialised process group).

    Args:
        model: this rank's copy; overwritten by rank 0's parameters first.
        optimizer: built on ``model.parameters()``.
        inputs: ``[N, ...]`` the whole dataset, the same on every rank.
        targets: ``[N, ...]`` the matching targets.
        loss_fn: ``loss_fn(model(x), y)``, a mean over the rows.
        steps: optimizer steps.
        batch_per_rank: rows each rank draws per step (the full batch is ``world_size`` times that).
        seed: rank ``r`` draws its rows from ``torch.Generator().manual_seed(seed + r)``.
    """
    rank = dist.get_rank()
    broadcast_parameters(model, src=0)
    generator = torch.Generator().manual_seed(seed + rank)
    for _ in range(steps):
        rows = shard_rows(len(inputs), batch_per_rank, generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        all_reduce_gradients(model)
        optimizer.step()


def train_full_batch(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor,
                     loss_fn: Callable[[Tensor, Tensor], Tensor], *, steps: int, batch_per_rank: int, seed: int,
                     world_size: int) -> None:
    """The single-process run that :func:`train_data_parallel` must equal: one model, each step on the
    ``world_size * batch_per_rank`` rows that the ranks would draw, concatenated in rank order."""
    generators = [torch.Generator().manual_seed(seed + rank) for rank in range(world_size)]
    for _ in range(steps):
        rows = torch.cat([shard_rows(len(inputs), batch_per_rank, g) for g in generators])
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        optimizer.step()
