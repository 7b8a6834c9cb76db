"""Exercise of notebook 04_recipe_and_scale: a data-parallel training step with ``torch.distributed`` (SYLLABUS L18).

The learner writes what every rank runs, ``train_data_parallel(model, optimizer, inputs, targets, loss_fn, *,
steps, batch_per_rank, seed)``, inside a gloo process group that the check starts
(:func:`llmcore.training.data_parallel.launch`, one forked process per rank, one launch per case). Each rank
starts from its *own* random weights, as independent processes do, so a missing broadcast shows.

The oracle is a single process training one model from rank 0's weights on the full batch (the ranks' rows
concatenated: :func:`llmcore.training.data_parallel.train_full_batch`); the compared output is every rank's
parameters after training, ``[world_size, n_parameters]``. Each mistake is a single-process simulation of
the ranks with one knob turned (:func:`_simulate`); two knobs at once are tried too, so that two mistakes
do not hide each other. The optimizer is plain SGD (with or without momentum): Adam's update barely
changes when all gradients are scaled, so a sum instead of a mean would hide behind it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcore.training import data_parallel as reference_dp

from ..cases import CaseRandom
from ..framework import Case, CheckFailure, Mistake, Output, outputs_match
from ..spec import Exercise, _CaseRun, register
from ..watchers import DelegationWatch

__all__ = ["DATA_PARALLEL_STEP", "check_data_parallel_step"]

LAUNCH_TIMEOUT_S = 20.0
"""How long one case's ranks may run: a rank left waiting in a collective is stopped after this."""


@dataclass(frozen=True, eq=False)
class DataParallelSetup:
    """One case: ``world_size`` ranks train a ``Linear–Tanh–Linear`` model of ``widths`` with SGD.

    ``initial_states[r]`` are rank r's own random weights (before any broadcast); ``inputs`` ``[N, widths[0]]``
    and ``targets`` (``[N]`` class ids for cross-entropy, ``[N, widths[2]]`` for MSE) are the whole dataset.
    """

    world_size: int
    widths: tuple[int, int, int]
    initial_states: tuple[dict[str, Tensor], ...]
    inputs: Tensor
    targets: Tensor
    loss: str
    lr: float
    momentum: float
    steps: int
    batch_per_rank: int
    seed: int

    def model(self, rank: int) -> nn.Module:
        d_in, hidden, d_out = self.widths
        model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).to(self.inputs.dtype)
        model.load_state_dict(self.initial_states[rank])
        return model

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum)

    def loss_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return F.cross_entropy if self.loss == "cross_entropy" else F.mse_loss

    def training_arguments(self) -> dict[str, int]:
        return {"steps": self.steps, "batch_per_rank": self.batch_per_rank, "seed": self.seed}


def _flat_parameters(model: nn.Module) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _reference(setup: DataParallelSetup) -> Tensor:
    """One process, one model from rank 0's weights, the full batch each step; every rank must end there."""
    model = setup.model(0)
    reference_dp.train_full_batch(model, setup.optimizer(model), setup.inputs, setup.targets, setup.loss_fn(),
                                  world_size=setup.world_size, **setup.training_arguments())
    return _flat_parameters(model).expand(setup.world_size, -1).clone()


def _simulate(setup: DataParallelSetup, *, average: bool = True, same_seed: bool = False, broadcast: bool = True,
              all_reduce: bool = True, zero_grad: bool = True) -> Tensor:
    """The ranks simulated in one process, each with its own model and optimizer; every knob is a mistake."""
    ranks = range(setup.world_size)
    models = [setup.model(0 if broadcast else rank) for rank in ranks]
    optimizers = [setup.optimizer(model) for model in models]
    generators = [torch.Generator().manual_seed(setup.seed + (0 if same_seed else rank)) for rank in ranks]
    loss_fn = setup.loss_fn()
    for _ in range(setup.steps):
        for model, optimizer, generator in zip(models, optimizers, generators):
            rows = torch.randint(len(setup.inputs), (setup.batch_per_rank,), generator=generator)
            if zero_grad:
                optimizer.zero_grad()
            loss_fn(model(setup.inputs[rows]), setup.targets[rows]).backward()
        if all_reduce:
            for parameters in zip(*(model.parameters() for model in models)):
                total = torch.stack([p.grad for p in parameters]).sum(0)
                for p in parameters:
                    p.grad = total / setup.world_size if average else total.clone()
        for optimizer in optimizers:
            optimizer.step()
    return torch.stack([_flat_parameters(model) for model in models])


KNOBS = {
    "not_averaged": {"average": False},
    "same_shard": {"same_seed": True},
    "no_broadcast": {"broadcast": False},
    "no_all_reduce": {"all_reduce": False},
    "grads_not_zeroed": {"zero_grad": False},
}


def _mistake(mistake_id: str) -> Callable[[DataParallelSetup], Tensor]:
    return lambda setup: _simulate(setup, **KNOBS[mistake_id])


DATA_PARALLEL_MISTAKES = [
    Mistake(
        "not_averaged",
        "the gradients are all-reduced but not averaged (the sum over the ranks is used)",
        "all_reduce adds the ranks' gradients; each rank's loss is a mean over its shard, so the full batch's "
        "gradient is that sum divided by the world size (else the learning rate is world_size times too large).",
        "after dist.all_reduce(p.grad) divide: p.grad /= dist.get_world_size().",
        output=_mistake("not_averaged"),
    ),
    Mistake(
        "same_shard",
        "every rank draws the same rows (the generator is seeded identically on all ranks)",
        "the ranks only add up to a bigger batch if each draws its own shard: offset the seed by the rank, as "
        "nanoGPT's seed_offset = rank does.",
        "generator = torch.Generator().manual_seed(seed + dist.get_rank()), created once before the loop.",
        output=_mistake("same_shard"),
    ),
    Mistake(
        "no_broadcast",
        "the model is not broadcast from rank 0 at the start (each rank keeps its own initial weights)",
        "each process initialised its model with its own random numbers; identical gradients applied to "
        "different weights keep them different, so copy rank 0's parameters to everyone before training.",
        "before the loop: for p in model.parameters(): dist.broadcast(p.data, src=0).",
        output=_mistake("no_broadcast"),
    ),
    Mistake(
        "no_all_reduce",
        "the gradients are never all-reduced (each rank steps on its own shard alone)",
        "without communication each rank is an independent run on its own shard and the copies drift apart; "
        "sum the gradients over the ranks after backward and before the optimizer step.",
        "between loss.backward() and optimizer.step(): for p in model.parameters(): "
        "dist.all_reduce(p.grad); p.grad /= world_size.",
        output=_mistake("no_all_reduce"),
    ),
    Mistake(
        "grads_not_zeroed",
        "the gradients are not zeroed between steps (backward adds to the previous step's averaged gradient)",
        "backward() accumulates into .grad; every step must start from empty gradients.",
        "call optimizer.zero_grad() at the start of every step, before loss.backward().",
        output=_mistake("grads_not_zeroed"),
    ),
]


def _setup(random: CaseRandom, *, world_size: int, widths: tuple[int, int, int], rows: int, dtype: torch.dtype,
           loss: str, lr: float, momentum: float, steps: int, batch_per_rank: int) -> DataParallelSetup:
    d_in, hidden, d_out = widths
    states = []
    for rank in range(world_size):  # independent processes draw independent initial weights
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(random.child_seed(rank))
            model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, d_out)).to(dtype)
        states.append({name: value.detach().clone() for name, value in model.state_dict().items()})
    inputs = random.tensor((rows, d_in), dtype)
    targets = random.ids(d_out, (rows,)) if loss == "cross_entropy" else random.tensor((rows, d_out), dtype)
    seed = int(random.ids(10_000, ()).item())
    return DataParallelSetup(world_size, widths, tuple(states), inputs, targets, loss, lr, momentum, steps,
                             batch_per_rank, seed)


def _describe(setup: DataParallelSetup) -> str:
    d_in, hidden, d_out = setup.widths
    momentum = f", momentum {setup.momentum:g}" if setup.momentum else ""
    dtype = str(setup.inputs.dtype).removeprefix("torch.")
    return (f"{setup.world_size} ranks, Linear({d_in}→{hidden})–Tanh–Linear({hidden}→{d_out}) {dtype}, "
            f"{len(setup.inputs)} rows, {setup.loss}, SGD lr {setup.lr:g}{momentum}, {setup.steps} steps of "
            f"{setup.batch_per_rank} rows per rank, seed {setup.seed}")


def _cases(random: CaseRandom, hidden: bool) -> list[Case]:
    setups = [
        _setup(random, world_size=2, widths=(5, 7, 3), rows=23, dtype=torch.float32, loss="cross_entropy",
               lr=0.5, momentum=0.0, steps=3, batch_per_rank=4),
        _setup(random, world_size=2, widths=(6, 9, 4), rows=19, dtype=torch.float64, loss="mse",
               lr=0.2, momentum=0.9, steps=4, batch_per_rank=3),
        _setup(random, world_size=2, widths=(4, 6, 2), rows=11, dtype=torch.float32, loss="cross_entropy",
               lr=0.3, momentum=0.0, steps=5, batch_per_rank=1),
    ]
    if hidden:
        setups += [
            _setup(random, world_size=3, widths=(8, 10, 5), rows=31, dtype=torch.float64, loss="cross_entropy",
                   lr=0.4, momentum=0.5, steps=6, batch_per_rank=5),
            _setup(random, world_size=2, widths=(3, 12, 7), rows=40, dtype=torch.float32, loss="mse",
                   lr=0.1, momentum=0.0, steps=8, batch_per_rank=6),
        ]
    descriptions = ["", ", float64 with momentum", ", one row per rank (edge case)", ", three ranks", ""]
    return [Case(_describe(setup) + note, (setup,)) for setup, note in zip(setups, descriptions)]


class _DataParallelRun(_CaseRun):
    """One case run by the learner in ``world_size`` forked ranks; the forbidden calls each rank made come back."""

    spec: "DataParallelExercise"

    def __init__(self, spec: "DataParallelExercise", learner: Callable, case: Case, number: int) -> None:
        super().__init__(spec, learner, case)
        self.number = number
        self.where = f"case {number} ({case.description})"
        self.failed_rank: int | None = None

    def run_learner(self, args: list[Any], params: dict[str, Tensor]) -> Output:
        setup: DataParallelSetup = args[0]
        learner = self.learner
        forbidden, forbidden_ops = self.spec.active_forbidden()

        def worker(rank: int, world_size: int) -> tuple[Tensor, list[str]]:
            model = setup.model(rank)
            watcher = DelegationWatch(forbidden, forbidden_ops)
            with watcher:
                learner(model, setup.optimizer(model), setup.inputs.clone(), setup.targets.clone(), setup.loss_fn(),
                        **setup.training_arguments())
            return _flat_parameters(model), watcher.calls

        try:
            results = reference_dp.launch(worker, setup.world_size, timeout=LAUNCH_TIMEOUT_S)
        except reference_dp.WorkerError as failure:  # the learner's exception, re-raised here to be explained
            self.failed_rank = failure.rank
            if isinstance(failure.error, Exception):
                raise failure.error from None
            raise RuntimeError(failure.child_traceback.strip().splitlines()[-1]) from None
        except TimeoutError as error:
            raise CheckFailure(
                f"✘ {self.spec.title} did not finish on {self.where}: {error}.\n"
                "Idea: a collective (broadcast, all_reduce) returns only when every rank has called it, so every "
                "rank must call the same collectives, on the same parameters, in the same order.",
                exercise=self.spec.id, mistake_id="ranks_hang", case_number=self.number,
            ) from None
        calls = sorted({call for _, rank_calls in results for call in rank_calls})
        if calls:
            self.spec.refuse(calls, self.number)
        return torch.stack([parameters for parameters, _ in results])

    def run_mistake(self, mistake: Mistake) -> Output:
        return mistake.output(self.case.args[0])


@dataclass(eq=False, kw_only=True)
class DataParallelExercise(Exercise):
    """An exercise whose learner code runs in a process group: one :func:`launch` per case, watched inside
    each rank; two mistakes at once are named together where their combined simulation reproduces the output."""

    expects = "the function train_data_parallel"
    _watching = True  # False while self_test runs the library version with the watchers off

    def active_forbidden(self) -> tuple[dict, dict]:
        return (dict(self.forbidden), dict(self.forbidden_ops)) if self._watching else ({}, {})

    def refuse(self, calls: list[str], number: int) -> None:
        raise CheckFailure(
            f"✘ {self.title} calls {', '.join(calls)}, which implements this very exercise. "
            "Write the computation yourself; reference versions of *earlier* exercises are allowed.",
            exercise=self.id, mistake_id="delegation", case_number=number,
        )

    def _run(self, learner: Any, *, hidden: bool, watch: bool) -> None:
        self._watching = watch
        super()._run(learner, hidden=hidden, watch=watch)

    def _case_run(self, learner: Any, case: Case, number: int, seed: int) -> _CaseRun:
        return _DataParallelRun(self, learner, case, number)

    def _error_failure(self, run: _CaseRun, error: Exception, args: list[Any], where: str,
                       number: int) -> CheckFailure:
        rank = run.failed_rank if isinstance(run, _DataParallelRun) else None
        on_rank = f" on rank {rank}" if rank is not None else ""
        return self._failure(f"✘ {self.title} raised an error{on_rank} on {where}:",
                             [f"    {type(error).__name__}: {error}".rstrip()], [], number)

    def _diagnose(self, run: _CaseRun, expected: Output, got: Output) -> list[Mistake]:
        named = super()._diagnose(run, expected, got)
        if named:
            return named
        setup = run.case.args[0]
        for first, second in itertools.combinations(self.mistakes, 2):
            together = _simulate(setup, **KNOBS[first.id], **KNOBS[second.id])
            if outputs_match(together, got):
                return [first, second]
        return []


def _delegation(model: nn.Module, optimizer: torch.optim.Optimizer, inputs: Tensor, targets: Tensor,
                loss_fn: Callable[[Tensor, Tensor], Tensor], *, steps: int, batch_per_rank: int, seed: int) -> None:
    reference_dp.train_data_parallel(model, optimizer, inputs, targets, loss_fn, steps=steps,
                                     batch_per_rank=batch_per_rank, seed=seed)


DATA_PARALLEL_STEP = register(DataParallelExercise(
    id="data_parallel_step",
    title="train_data_parallel",
    syllabus=("L18",),
    reference=_reference,
    cases=_cases,
    mistakes=DATA_PARALLEL_MISTAKES,
    forbidden={
        reference_dp.train_data_parallel: "llmcore.training.data_parallel.train_data_parallel",
        reference_dp.broadcast_parameters: "llmcore.training.data_parallel.broadcast_parameters",
        reference_dp.all_reduce_gradients: "llmcore.training.data_parallel.all_reduce_gradients",
        nn.parallel.DistributedDataParallel: "torch.nn.parallel.DistributedDataParallel",
    },
    delegation=_delegation,
    output_names=("the parameters of every rank after training (row = rank, column = flattened parameter)",),
    fallback_hint="rank = dist.get_rank(); broadcast every parameter from rank 0; generator seeded with seed + rank; "
    "each step: rows = torch.randint(len(inputs), (batch_per_rank,), generator=generator), zero_grad, "
    "loss_fn(model(inputs[rows]), targets[rows]).backward(), all_reduce each p.grad and divide by the world size, "
    "optimizer.step().",
))
check_data_parallel_step = DATA_PARALLEL_STEP.check
