"""llmcore.training.data_parallel against independent oracles: a single-process loop written here (manual SGD
on the concatenated shards) and PyTorch's DistributedDataParallel; the launcher's failure modes."""

import os
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from llmcore.training import data_parallel as dp

pytestmark = pytest.mark.slow  # a dozen launches of forked process groups: about 10 s

DATASET = torch.Generator().manual_seed(0)
INPUTS = torch.randn(37, 5, generator=DATASET, dtype=torch.float64)
TARGETS = torch.randint(0, 3, (37,), generator=DATASET)
STEPS, BATCH_PER_RANK, SEED, LR = 6, 4, 11, 0.3


def _model(init_seed: int) -> nn.Module:
    torch.manual_seed(init_seed)
    return nn.Sequential(nn.Linear(5, 8), nn.GELU(), nn.Linear(8, 3)).double()


def _naive_full_batch(world_size: int) -> list[torch.Tensor]:
    """One model, plain SGD by hand, each step on the rows every rank draws (rank r: seed + r), in rank order."""
    params = [p.detach().clone().requires_grad_() for p in _model(init_seed=0).parameters()]
    generators = [torch.Generator().manual_seed(SEED + rank) for rank in range(world_size)]

    def forward(x):
        w1, b1, w2, b2 = params
        return F.gelu(x @ w1.T + b1) @ w2.T + b2

    for _ in range(STEPS):
        rows = torch.cat([torch.randint(len(INPUTS), (BATCH_PER_RANK,), generator=g) for g in generators])
        grads = torch.autograd.grad(F.cross_entropy(forward(INPUTS[rows]), TARGETS[rows]), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
    return [p.detach() for p in params]


def _train_rank(rank: int, world_size: int) -> list[torch.Tensor]:
    model = _model(init_seed=rank)  # every rank starts from its own weights: the broadcast must fix that
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    dp.train_data_parallel(model, optimizer, INPUTS, TARGETS, F.cross_entropy, steps=STEPS,
                           batch_per_rank=BATCH_PER_RANK, seed=SEED)
    return [p.detach() for p in model.parameters()]


@pytest.mark.parametrize("world_size", [2, 3])
def test_train_data_parallel_equals_a_single_process_on_the_full_batch(world_size: int) -> None:
    expected = _naive_full_batch(world_size)
    for rank_parameters in dp.launch(_train_rank, world_size):
        for got, want in zip(rank_parameters, expected):
            torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-10)  # measured: 1.1e-16
    # and the step really moved the weights: the comparison is not between two copies of the start
    assert not torch.allclose(expected[0], _model(init_seed=0)[0].weight)


def test_train_full_batch_equals_the_naive_loop() -> None:
    model = _model(init_seed=0)
    dp.train_full_batch(model, torch.optim.SGD(model.parameters(), lr=LR), INPUTS, TARGETS, F.cross_entropy,
                        steps=STEPS, batch_per_rank=BATCH_PER_RANK, seed=SEED, world_size=2)
    for got, want in zip(model.parameters(), _naive_full_batch(2)):
        torch.testing.assert_close(got.detach(), want, atol=1e-12, rtol=1e-10)


def _ddp_against_llmcore(rank: int, world_size: int) -> list[float]:
    ours = _model(init_seed=rank)
    theirs = nn.parallel.DistributedDataParallel(_model(init_seed=rank))  # broadcasts rank 0's weights itself
    dp.train_data_parallel(ours, torch.optim.SGD(ours.parameters(), lr=LR, momentum=0.9), INPUTS, TARGETS,
                           F.cross_entropy, steps=STEPS, batch_per_rank=BATCH_PER_RANK, seed=SEED)
    optimizer = torch.optim.SGD(theirs.parameters(), lr=LR, momentum=0.9)
    generator = torch.Generator().manual_seed(SEED + rank)
    for _ in range(STEPS):
        rows = torch.randint(len(INPUTS), (BATCH_PER_RANK,), generator=generator)
        optimizer.zero_grad()
        F.cross_entropy(theirs(INPUTS[rows]), TARGETS[rows]).backward()
        optimizer.step()
    return [(a - b).abs().max().item() for a, b in zip(ours.parameters(), theirs.module.parameters())]


def test_train_data_parallel_equals_distributed_data_parallel() -> None:
    for errors in dp.launch(_ddp_against_llmcore, 2):
        assert max(errors) < 1e-12, errors


def _gradients_and_weights(rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(rank + 10)
    for p in model.parameters():
        p.grad = torch.full_like(p, float(rank + 1))
    dp.broadcast_parameters(model)
    dp.all_reduce_gradients(model)
    return model.weight.detach(), model.weight.grad


def test_broadcast_copies_rank_zero_and_all_reduce_averages() -> None:
    results = dp.launch(_gradients_and_weights, 3)
    for weight, grad in results:
        assert torch.equal(weight, torch.full((2, 3), 10.0))
        assert torch.equal(grad, torch.full((2, 3), (1 + 2 + 3) / 3))


def test_launch_returns_in_rank_order_with_one_thread_per_rank_and_cleans_up() -> None:
    before = set(os.listdir(tempfile.gettempdir()))
    results = dp.launch(lambda rank, world_size: (rank, world_size, torch.get_num_threads(), os.getpid()), 3)
    assert [r[:3] for r in results] == [(0, 3, 1), (1, 3, 1), (2, 3, 1)]
    assert len({r[3] for r in results}) == 3 and os.getpid() not in {r[3] for r in results}
    for _, _, _, pid in results:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped: no zombie left behind
    assert not [name for name in set(os.listdir(tempfile.gettempdir())) - before if name.startswith("llmcore-dp-")]


def _rank_one_fails(rank: int, world_size: int) -> None:
    if rank == 1:
        raise ValueError("shard is empty")
    dist.barrier()  # rank 0 then fails too, in the collective: the report must name rank 1's error


def test_an_error_names_the_rank_that_raised_first_and_its_exception() -> None:
    with pytest.raises(dp.WorkerError) as info:
        dp.launch(_rank_one_fails, 2)
    assert info.value.rank == 1
    assert isinstance(info.value.error, ValueError)
    assert str(info.value).startswith("rank 1 failed: ValueError: shard is empty")
    assert "_rank_one_fails" in info.value.child_traceback


def _hangs(rank: int, world_size: int) -> None:
    if rank == 0:
        dist.barrier()  # rank 1 never comes
    else:
        time.sleep(60)


def test_a_rank_that_never_finishes_is_killed_at_the_timeout() -> None:
    start = time.monotonic()
    with pytest.raises((TimeoutError, dp.WorkerError)) as info:
        dp.launch(_hangs, 2, timeout=2.0)
    assert time.monotonic() - start < 10
    assert "rank" in str(info.value)


def test_a_result_that_cannot_travel_is_an_error_not_a_hang() -> None:
    with pytest.raises(dp.WorkerError, match="rank [01] failed: the worker.s result cannot be pickled"):
        dp.launch(lambda rank, world_size: (lambda: rank), 2)


def _in_fresh_namespace(script: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["unshare", "-n", sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                              text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")


def test_loopback_down_is_named_before_anything_starts() -> None:
    result = _in_fresh_namespace("""
        from llmcore.training import data_parallel as dp
        print(dp.loopback_is_up())
        try:
            dp.launch(lambda rank, world_size: rank, 2)
        except RuntimeError as error:
            print(error)
    """)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"`unshare -n` is not allowed here: {result.stderr.strip()}")
    lines = result.stdout.splitlines()
    assert lines[0] == "False", result.stderr
    assert "the loopback interface `lo` is down" in lines[1]


def test_concurrent_runs_in_one_namespace_do_not_collide() -> None:
    """Graded notebooks share their template's namespace: each run rendezvous in its own folder, not on a port."""
    result = _in_fresh_namespace("""
        import subprocess, sys
        from grader.kernel_launcher import bring_loopback_up
        assert bring_loopback_up()
        run = ("import torch, torch.distributed as dist\\n"
               "from llmcore.training.data_parallel import launch\\n"
               "def worker(rank, world_size):\\n"
               "    total = torch.zeros(1)\\n"
               "    for _ in range(200):\\n"
               "        t = torch.ones(1); dist.all_reduce(t); total += t\\n"
               "    return total.item()\\n"
               "print(launch(worker, 2))")
        runs = [subprocess.Popen([sys.executable, "-c", run], stdout=subprocess.PIPE, text=True) for _ in range(3)]
        print([p.communicate()[0].strip() for p in runs])
    """)
    if result.returncode != 0 and "unshare" in result.stderr:
        pytest.skip(f"`unshare -n` is not allowed here: {result.stderr.strip()}")
    assert result.stdout.strip() == str(["[400.0, 400.0]"] * 3), result.stderr


def train_step(model):
    raise NotImplementedError()


def test_a_stub_comes_back_as_not_implemented_naming_the_function() -> None:
    with pytest.raises(NotImplementedError, match="`train_step` is not implemented yet"):
        dp.launch(lambda rank, world_size: train_step(None), 2)


def _broadcast_the_parameter_itself(rank: int, world_size: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    weight = nn.Parameter(torch.full((2, 3), float(rank + 1)))
    with warnings.catch_warnings(record=True) as caught:  # keeps the filters the rank was started with
        dist.broadcast(weight, src=0)  # in place on the Parameter, outside torch.no_grad(): a common learner spelling
        (weight * torch.arange(6.0).view(2, 3)).sum().backward()
    return weight.detach(), weight.grad, [str(warning.message) for warning in caught]


def test_broadcasting_a_parameter_in_grad_mode_keeps_the_ranks_output_clean() -> None:
    """backward after dist.broadcast(p) warns that c10d::broadcast_ has no autograd kernel; the ranks silence it,
    and the values and gradients are those of a broadcast under torch.no_grad()."""
    results = dp.launch(_broadcast_the_parameter_itself, 2)
    for weight, grad, warned in results:
        assert torch.equal(weight, torch.ones(2, 3))
        assert torch.equal(grad, torch.arange(6.0).view(2, 3))
        assert not [text for text in warned if "autograd kernel was not registered" in text]
