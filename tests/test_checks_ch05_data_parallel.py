"""Special cases of the data-parallel check (the registry-wide promises are in test_exercise_contracts.py)."""

import pytest
import torch
import torch.distributed as dist

from grader.checks.ch05 import data_parallel as dp_check
from grader.checks.ch05 import check_data_parallel_step
from grader.checks.framework import CheckFailure
from learners_ch05_data_parallel import per_parameter


def _failure(learner, **kwargs) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check_data_parallel_step(learner, **kwargs)
    return info.value


def no_broadcast_and_no_divide(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
    generator = torch.Generator().manual_seed(seed + dist.get_rank())
    for _ in range(steps):
        rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
        optimizer.zero_grad()
        loss_fn(model(inputs[rows]), targets[rows]).backward()
        for p in model.parameters():
            dist.all_reduce(p.grad)
        optimizer.step()


def test_two_mistakes_at_once_are_both_named() -> None:
    failure = _failure(no_broadcast_and_no_divide)
    message = str(failure)
    assert failure.mistake_id in ("no_broadcast", "not_averaged"), message
    assert "the model is not broadcast from rank 0" in message
    assert "the gradients are all-reduced but not averaged" in message
    assert "Also: " in message


def test_distributed_data_parallel_is_refused() -> None:
    def with_ddp(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        generator = torch.Generator().manual_seed(seed + dist.get_rank())
        for _ in range(steps):
            rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
            optimizer.zero_grad()
            loss_fn(ddp(inputs[rows]), targets[rows]).backward()
            optimizer.step()

    failure = _failure(with_ddp)
    assert failure.mistake_id == "delegation"
    assert "torch.nn.parallel.DistributedDataParallel" in str(failure)


def test_without_the_watchers_ddp_passes_so_the_cases_are_right() -> None:
    """DDP (which broadcasts at construction and averages in its hooks) agrees with the oracle."""
    def with_ddp(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        generator = torch.Generator().manual_seed(seed + dist.get_rank())
        for _ in range(steps):
            rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator)
            optimizer.zero_grad()
            loss_fn(ddp(inputs[rows]), targets[rows]).backward()
            optimizer.step()

    dp_check.DATA_PARALLEL_STEP._run(with_ddp, hidden=True, watch=False)


def test_an_error_in_one_rank_names_the_rank_and_the_exception() -> None:
    def rank_one_breaks(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
        if dist.get_rank() == 1:
            raise KeyError("no such rows")
        per_parameter(model, optimizer, inputs, targets, loss_fn, steps=steps, batch_per_rank=batch_per_rank,
                      seed=seed)

    message = str(_failure(rank_one_breaks))
    assert "raised an error on rank 1 on case 1 of 3" in message
    assert "KeyError: 'no such rows'" in message


def test_a_collective_called_by_one_rank_only_stops_with_an_explanation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dp_check, "LAUNCH_TIMEOUT_S", 3.0)

    def rank_zero_only(model, optimizer, inputs, targets, loss_fn, *, steps, batch_per_rank, seed):
        if dist.get_rank() == 0:
            for p in model.parameters():
                dist.broadcast(p.data, src=0)
        per_parameter(model, optimizer, inputs, targets, loss_fn, steps=steps, batch_per_rank=batch_per_rank,
                      seed=seed)

    failure = _failure(rank_zero_only)
    assert failure.mistake_id in ("ranks_hang", None), str(failure)
    assert "case 1" in str(failure)


def test_passing_a_call_instead_of_the_function_is_explained() -> None:
    failure = _failure(None)
    assert failure.mistake_id == "wrong_object"
    assert "did the cell that defines it run?" in str(failure)


def test_the_mistake_simulations_differ_from_the_oracle_on_the_visible_cases() -> None:
    """Every knob changes the result on at least one visible case, so each mistake can be named."""
    setups = [case.args[0] for case in dp_check.DATA_PARALLEL_STEP.build_cases(hidden=False)]
    for mistake_id, knob in dp_check.KNOBS.items():
        differs = [not torch.allclose(dp_check._simulate(s, **knob), dp_check._reference(s), atol=1e-4)
                   for s in setups]
        assert any(differs), mistake_id


def test_broadcasting_the_parameter_itself_passes_without_autograd_warnings() -> None:
    """dist.broadcast(p) outside no_grad makes backward warn in every rank (c10d::broadcast_ has no autograd
    kernel); llmcore's launcher silences it, so the learner sees only the check's verdict."""
    import subprocess
    import sys
    from pathlib import Path

    tests = Path(__file__).parent
    script = ("import sys; sys.path.insert(0, %r)\n"
              "from learners_ch05_data_parallel import broadcast_the_parameter\n"
              "from grader.checks.ch05 import check_data_parallel_step\n"
              "check_data_parallel_step(broadcast_the_parameter)\n") % str(tests)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=tests.parent)
    assert result.returncode == 0, result.stderr
    assert "all 3 cases passed" in result.stdout
    assert "autograd kernel was not registered" not in result.stderr, result.stderr
