"""Exercises as declarations: what is checked, against which llmcore reference, with which mistakes.

An exercise is an :class:`Exercise` (a function) or a :class:`ModuleExercise` (an ``nn.Module``
class), registered in :data:`REGISTRY` under its id. A notebook calls its ``check``::

    FEED_FORWARD = register(ModuleExercise(id="feed_forward", ...))
    check_feed_forward = FEED_FORWARD.check          # check_feed_forward(FeedForward, hidden=False)

``check`` draws the cases from a seed derived from the exercise id (:func:`exercise_seed`; the
hidden run uses another seed, mixed with the course secret when grading), runs the learner's code
while :class:`~grader.checks.watchers.DelegationWatch` looks for the exercise's own reference, and
compares with llmcore. On the first difference it raises :class:`CheckFailure` with the case, how the
outputs differ and, when a known mistake reproduces them, its name and the idea of the fix; the
code-level hint comes on request (:func:`hint`) or when the same mistake fails again.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections import abc
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .cases import CaseRandom
from .framework import (
    Case,
    CheckFailure,
    Mistake,
    Output,
    as_items,
    describe_inputs,
    describe_mismatch,
    describe_value,
    has_non_finite,
    load_reference_weights,
    outputs_match,
)
from .watchers import DelegationWatch

__all__ = [
    "Exercise",
    "ModuleExercise",
    "REGISTRY",
    "register",
    "exercise_seed",
    "hint",
    "SECRET_ENV",
]

SECRET_ENV = "GRADER_COURSE_SECRET"
"""Environment variable holding the course's secret; the grader sets it in grading kernels only."""

REGISTRY: dict[str, "Exercise"] = {}


def exercise_seed(exercise_id: str, hidden: bool) -> int:
    """The seed of an exercise's cases: fixed by its id, different for the visible and hidden runs.

    The hidden seed also mixes in the course secret (``$GRADER_COURSE_SECRET``) when it is set, as it
    is while a course is graded, so a learner running ``hidden=True`` at home sees other cases than
    the graded ones.
    """
    material = f"{exercise_id}/hidden/{os.environ.get(SECRET_ENV, '')}" if hidden else f"{exercise_id}/visible"
    return int.from_bytes(hashlib.sha256(material.encode()).digest()[:7], "big")


def register(exercise: "Exercise") -> "Exercise":
    """Add ``exercise`` to :data:`REGISTRY` (ids are unique) and return it."""
    if exercise.id in REGISTRY and REGISTRY[exercise.id] is not exercise:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


# --------------------------------------------------------------------------------------------------
# Hints in tiers: the idea with the diagnosis, the code on request or when the same mistake repeats.
# --------------------------------------------------------------------------------------------------


@dataclass
class _Failure:
    mistake_id: str | None
    name: str | None
    code: str


_last_failure: dict[str, _Failure] = {}


def _lookup(exercise: "str | Exercise | Callable") -> "Exercise":
    if isinstance(exercise, Exercise):
        return exercise
    owner = getattr(exercise, "__self__", None)
    if isinstance(owner, Exercise):
        return owner
    if isinstance(exercise, str):
        wanted = exercise.strip().lower()
        for spec in REGISTRY.values():
            if wanted in (spec.id.lower(), spec.title.lower(), f"check_{spec.id}".lower()):
                return spec
    known = ", ".join(sorted(REGISTRY))
    raise ValueError(f"hint: no exercise called {exercise!r}; the exercises are: {known}")


def hint(exercise: "str | Exercise | Callable") -> None:
    """Print the code-level hint for the last failed check of ``exercise`` (its id, e.g.
    ``hint("causal_mask_mod")``, its title or its check function); before any failure, the
    exercise's general hint."""
    spec = _lookup(exercise)
    failure = _last_failure.get(spec.id)
    if failure is None:
        print(f"Hint for {spec.title}: {spec.fallback_hint}")
    elif failure.name:
        print(f"Hint for {spec.title} ({failure.name}): {failure.code}")
    else:
        print(f"Hint for {spec.title}: {failure.code}")


# --------------------------------------------------------------------------------------------------
# Running the learner's code
# --------------------------------------------------------------------------------------------------


def _clone(values: Sequence[Any], requires_grad: bool) -> list[Any]:
    """Fresh copies of a case's arguments, so that code changing its inputs in place changes no other run.

    Top-level tensors are cloned (floating ones get ``requires_grad`` when asked); lists and dicts are copied,
    the objects inside them (parameters with their gradients, for one) are passed as they are.
    """
    cloned = []
    for value in values:
        if isinstance(value, Tensor):
            value = value.detach().clone()
            if requires_grad and value.is_floating_point():
                value.requires_grad_(True)
        elif isinstance(value, (list, dict)):
            value = _copied_container(value)
        cloned.append(value)
    return cloned


def _copied_container(value: Any) -> Any:
    if isinstance(value, list):
        return [_copied_container(item) for item in value]
    if isinstance(value, dict):
        return {key: _copied_container(item) for key, item in value.items()}
    return value


def _leaves(values: Sequence[Any]) -> list[Tensor]:
    return [v for v in values if isinstance(v, Tensor) and v.requires_grad]


def _grads(output: Output, leaves: list[Tensor], upstream_seed: int) -> list[Tensor | None]:
    differentiable = [t for t in as_items(output) if isinstance(t, Tensor) and t.requires_grad]
    if not differentiable or not leaves:
        return [None] * len(leaves)
    generator = torch.Generator().manual_seed(upstream_seed)
    total = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum() for t in differentiable)
    return list(torch.autograd.grad(total, leaves, allow_unused=True))


def _argument_names(target: Callable, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
    try:
        bound = inspect.signature(target).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return [f"input {i}" for i in range(len(args))] + list(kwargs)
    names = []
    for name, value in bound.arguments.items():
        parameter = bound.signature.parameters[name]
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            names += [f"{name}[{i}]" for i in range(len(value))]
        elif parameter.kind is not inspect.Parameter.VAR_KEYWORD:
            names.append(name)
    return names


def _same_error(a: BaseException, b: BaseException) -> bool:
    return type(a) is type(b) and str(a) == str(b)


class _CaseRun:
    """What one case computes for a function exercise: the learner's, the reference's and each mistake's output."""

    def __init__(self, spec: "Exercise", learner: Callable, case: Case) -> None:
        self.spec, self.learner, self.case = spec, learner, case

    def learner_inputs(self) -> tuple[list[Any], dict[str, Tensor]]:
        return _clone(self.case.args, self.case.check_gradients), {}

    def reference_inputs(self) -> tuple[list[Any], dict[str, Tensor]]:
        """Fresh copies of the same inputs, for the reference's own forward and backward pass."""
        return self.learner_inputs()

    def run_learner(self, args: list[Any], params: dict[str, Tensor]) -> Output:
        return self.learner(*args, **self.case.kwargs)

    def run_reference(self, args: list[Any], params: dict[str, Tensor]) -> Output:
        return self.spec.reference(*args, **self.case.kwargs)

    def run_mistake(self, mistake: Mistake) -> Output:
        return mistake.output(*_clone(self.case.args, False), **self.case.kwargs)

    def argument_names(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
        return _argument_names(self.learner, args, kwargs)

    def forget_learner(self) -> None:
        """Start the next learner call from scratch (a module exercise builds a new module)."""


class _ModuleCaseRun(_CaseRun):
    """A case of a module exercise: the reference module is built once from a seed; the learner's
    module is built with the same constructor arguments and given the reference's weights."""

    spec: "ModuleExercise"

    def __init__(self, spec: "ModuleExercise", learner: type, case: Case, weights_seed: int) -> None:
        super().__init__(spec, learner, case)
        floating = [a for a in (*case.args, *case.params.values()) if isinstance(a, Tensor) and a.is_floating_point()]
        self.dtype = case.dtype or (floating[0].dtype if floating else torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(weights_seed)
            reference = spec.reference(*case.init.values())
            if spec.prepare is not None:
                spec.prepare(reference)
        reference = reference.to(self.dtype)
        with torch.no_grad():
            for name, value in case.params.items():
                reference.get_parameter(name).copy_(value)
        self.reference_module = reference
        self._learner_module: nn.Module | None = None

    def build(self, factory: Callable[..., nn.Module] | None = None) -> nn.Module:
        """A module from ``factory`` (default: the reference class) with the case's weights, dtype and mode."""
        return self._with_case_weights((factory or self.spec.reference)(*self.case.init.values()))

    def _with_case_weights(self, module: nn.Module) -> nn.Module:
        """``module`` cast to the case's dtype, given the reference's weights by name, in the exercise's mode."""
        module.to(self.dtype)
        load_reference_weights(self.spec.title, module, self.reference_module, exercise_id=self.spec.id)
        return module.train(self.spec.train_mode)

    def _construct_learner(self) -> nn.Module:
        arguments = ", ".join(repr(v) if not hasattr(v, "__dataclass_fields__") else type(v).__name__
                              for v in self.case.init.values())
        try:
            module = self.learner(*self.case.init.values())
        except NotImplementedError:
            raise
        except TypeError as error:
            raise CheckFailure(
                f"✘ {self.spec.title}({arguments}) could not be constructed: {error}\n"
                "Hint: keep the skeleton's __init__ signature; the check builds your class with those arguments.",
                exercise=self.spec.id, mistake_id="constructor",
            ) from None
        if not isinstance(module, nn.Module):
            raise CheckFailure(f"✘ {self.spec.title} must subclass torch.nn.Module; "
                               f"{self.learner.__name__}({arguments}) is a {type(module).__name__}",
                               exercise=self.spec.id, mistake_id="module_structure")
        return self._with_case_weights(module)

    def forget_learner(self) -> None:
        self._learner_module = None

    def learner_module(self) -> nn.Module:
        if self._learner_module is None:
            self._learner_module = self._construct_learner()
        return self._learner_module

    def learner_inputs(self) -> tuple[list[Any], dict[str, Tensor]]:
        gradients = self.case.check_gradients
        params = dict(zip(self.case.params, _clone(list(self.case.params.values()), gradients)))
        return _clone(self.case.args, gradients), params

    def _call(self, module: nn.Module, args: list[Any], params: dict[str, Tensor]) -> Output:
        if params:
            return functional_call(module, params, tuple(args), self.case.kwargs)
        if self.spec.forward is not None:
            return self.spec.forward(module, *args, **self.case.kwargs)
        return module(*args, **self.case.kwargs)

    def run_learner(self, args: list[Any], params: dict[str, Tensor]) -> Output:
        return self._call(self.learner_module(), args, params)

    def run_reference(self, args: list[Any], params: dict[str, Tensor]) -> Output:
        return self._call(self.build(), args, params)

    def run_mistake(self, mistake: Mistake) -> Output:
        return mistake.output(self.build, *_clone(self.case.args, False), **self.case.kwargs)

    def argument_names(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[str]:
        if self.spec.forward is not None:  # forward(module, *args): name the arguments after the module
            return _argument_names(self.spec.forward, [None, *args], kwargs)[1:]
        if self._learner_module is None:
            return _argument_names(self.spec.reference(*self.case.init.values()).forward, args, kwargs)
        return _argument_names(self._learner_module.forward, args, kwargs)


@dataclass(eq=False, kw_only=True)
class Exercise:
    """A function the learner writes, checked against llmcore.

    Attributes:
        id: stable snake_case id (the registry key; ``hint(id)``), e.g. ``scaled_dot_product_attention``.
        syllabus: the SYLLABUS ids the exercise grades, e.g. ``("T02", "T03")``.
        reference: learner-shaped reference, ``reference(*case.args, **case.kwargs) -> output``, built on llmcore.
        cases: ``cases(random, hidden) -> list[Case]``; ``random`` is a :class:`CaseRandom` seeded for this run.
        mistakes: known mistakes, each with a stable id.
        forbidden: callables that implement this very exercise (llmcore's, PyTorch's) → the name shown.
        forbidden_ops: ATen operators (name or ``prefix*``) that implement it → the name shown.
        delegation: a learner-shaped implementation that delegates to something forbidden: the check must
            refuse it, and :meth:`self_test` runs it with the watchers off to prove the cases are right.
        adapt: turns the learner's object into the callable compared with ``reference`` (e.g. a mask_mod
            evaluated on index grids); ``None`` compares the learner's function directly.
        output_names: names of the returned values, for messages.
        fallback_hint: the code-level hint when no known mistake explains a failure.
        title: the name the learner knows (defaults to ``id``).
    """

    id: str
    syllabus: tuple[str, ...]
    reference: Callable[..., Output]
    cases: Callable[[CaseRandom, bool], list[Case]]
    mistakes: Sequence[Mistake] = ()
    forbidden: Mapping[Callable, str] = field(default_factory=dict)
    forbidden_ops: Mapping[str, str] = field(default_factory=dict)
    delegation: Callable | None = None
    adapt: Callable[[Any], Callable[..., Output]] | None = None
    output_names: tuple[str, ...] = ()
    fallback_hint: str = ""
    title: str = ""

    expects = "a function"

    def __post_init__(self) -> None:
        self.title = self.title or self.id
        if isinstance(self.syllabus, str):
            self.syllabus = (self.syllabus,)
        ids = [m.id for m in self.mistakes]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"exercise {self.id}: mistake ids {duplicates} are used twice")
        for mistake in self.mistakes:
            if (mistake.output is None) == (mistake.detect is None):
                raise ValueError(f"exercise {self.id}: mistake {mistake.id} needs exactly one of output and detect")

    # ----------------------------------------------------------------------------------------------

    def seed(self, hidden: bool) -> int:
        return exercise_seed(self.id, hidden)

    def build_cases(self, hidden: bool) -> list[Case]:
        return self.cases(CaseRandom(self.seed(hidden)), hidden)

    def mistake(self, mistake_id: str) -> Mistake:
        for mistake in self.mistakes:
            if mistake.id == mistake_id:
                return mistake
        raise KeyError(f"exercise {self.id} has no mistake {mistake_id!r}")

    def check(self, learner: Any, *, hidden: bool = False) -> None:
        """Check the learner's function or class; print one line on success, raise :class:`CheckFailure` otherwise.

        Returns ``None``: nbgrader would read a number left as a test cell's result as partial credit.
        """
        self._run(learner, hidden=hidden, watch=True)

    def self_test(self, *, hidden: bool = False) -> None:
        """Run the check on :attr:`delegation` with the delegation watchers off: the cases, the reference
        and the comparison agree with the library implementation. For authors and the contract tests."""
        if self.delegation is None:
            raise ValueError(f"exercise {self.id} declares no delegation to test itself with")
        self._run(self.delegation, hidden=hidden, watch=False)

    # ----------------------------------------------------------------------------------------------

    def _guard(self, learner: Any) -> None:
        if isinstance(learner, type) or not callable(learner):
            raise CheckFailure(f"✘ {self.title}: expected {self.expects}, got {_describe(learner)}",
                               exercise=self.id, mistake_id="wrong_object")

    def _case_run(self, learner: Any, case: Case, number: int, seed: int) -> _CaseRun:
        return _CaseRun(self, self.adapt(learner) if self.adapt else learner, case)

    def _run(self, learner: Any, *, hidden: bool, watch: bool) -> None:
        self._guard(learner)
        seed = self.seed(hidden)
        cases = self.cases(CaseRandom(seed), hidden)
        watcher = DelegationWatch(self.forbidden if watch else {}, self.forbidden_ops if watch else {})
        for number, case in enumerate(cases, start=1):
            where = f"case {number} of {len(cases)} ({case.description})"
            run = self._case_run(learner, case, number, seed)
            learner_args, learner_params = run.learner_inputs()
            got = self._run_learner(run, learner_args, learner_params, where, number, watcher)
            reference_args, reference_params = run.reference_inputs()
            expected = run.run_reference(reference_args, reference_params)
            problem = describe_mismatch(expected, got, self.output_names)
            if problem:
                self._refuse_randomness(run, got, where, number, watcher)
                raise self._failure(f"✘ {self.title} is wrong on {where}:", [f"    {problem}"],
                                    self._diagnose(run, expected, got), number)
            if case.check_gradients:
                self._compare_gradients(run, got, expected, learner_args, learner_params, reference_args,
                                        reference_params, where, number, watcher)
        print(f"✔ {self.title}: all {len(cases)} cases passed.")

    def _run_learner(self, run: _CaseRun, args: list[Any], params: dict[str, Tensor], where: str, number: int,
                     watcher: DelegationWatch) -> Output:
        try:
            with watcher:
                result = run.run_learner(args, params)
        except NotImplementedError:
            raise CheckFailure(
                f"✘ {self.title} is not implemented yet: replace `raise NotImplementedError()` with your code.",
                exercise=self.id, mistake_id="not_implemented", case_number=number,
            ) from None
        except CheckFailure:
            raise
        except Exception as error:  # the learner's own bug: explain it with the case's inputs
            raise self._error_failure(run, error, args, where, number) from None
        self._refuse_delegation(watcher, number)
        if isinstance(result, abc.Iterator):
            raise CheckFailure(
                f"✘ {self.title} returns {describe_value(result)}, an iterator that can be read only once, on {where}.\n"
                "Hint: return a list (wrap it in list(...)) or a tensor.",
                exercise=self.id, mistake_id="iterator_returned", case_number=number,
            )
        return result

    def _refuse_randomness(self, run: _CaseRun, got: Output, where: str, number: int, watcher: DelegationWatch) -> None:
        """A wrong output that changes from one call to the next comes from randomness left on (dropout)."""
        args, params = run.learner_inputs()
        run.forget_learner()  # a custom forward may change the module (the tied-embedding shift)
        try:
            again = self._run_learner(run, args, params, where, number, watcher)
        except CheckFailure:
            return
        if not outputs_match(got, again):
            raise CheckFailure(
                f"✘ {self.title} gives different results on two calls with the same inputs ({where}).\n"
                "Diagnosis: something random is on, most likely dropout while the model is in eval mode.\n"
                "Idea: the check runs your code in eval mode, where dropout must do nothing.\n"
                "Hint: use an nn.Dropout module (it follows .train()/.eval()), or F.dropout(x, p, "
                "training=self.training); F.dropout's own default is training=True.",
                exercise=self.id, mistake_id="random_in_eval", case_number=number,
            )

    def _refuse_delegation(self, watcher: DelegationWatch, number: int) -> None:
        if watcher.calls:
            raise CheckFailure(
                f"✘ {self.title} calls {', '.join(watcher.calls)}, which implements this very exercise. "
                "Write the computation yourself; reference versions of *earlier* exercises are allowed.",
                exercise=self.id, mistake_id="delegation", case_number=number,
            )

    def _error_failure(self, run: _CaseRun, error: Exception, args: list[Any], where: str,
                       number: int) -> CheckFailure:
        names = run.argument_names(args, run.case.kwargs)
        values = list(args) + list(run.case.kwargs.values())
        lines = [f"    {type(error).__name__}: {error}".rstrip()]
        inputs = describe_inputs(names, values)
        if inputs:
            lines.append(f"    The inputs were: {inputs}.")
        reproduced = next((m for m, _, raised in self._mistake_runs(run) if raised and _same_error(raised, error)), None)
        diagnosis = [reproduced] if reproduced else []
        return self._failure(f"✘ {self.title} raised an error on {where}:", lines, diagnosis, number)

    def _mistake_runs(self, run: _CaseRun) -> Iterator[tuple[Mistake, Output, Exception | None]]:
        """``(mistake, output, None)`` or ``(mistake, None, error)`` for each mistake that has a variant, lazily."""
        for mistake in self.mistakes:
            if mistake.output is None:
                continue
            try:
                yield mistake, run.run_mistake(mistake), None
            except Exception as error:
                yield mistake, None, error

    def _diagnose(self, run: _CaseRun, expected: Output, got: Output) -> list[Mistake]:
        """The mistakes that explain ``got``, most informative first.

        Mistakes reproduced value for value come first; then mistakes reproduced everywhere the
        learner's output is finite (a NaN from a fully masked row must not hide an inverted mask),
        with the symptom named beside them; then symptoms alone.
        """
        distinct = [(m, wrong) for m, wrong, raised in self._mistake_runs(run)
                    if raised is None and describe_mismatch(wrong, expected) is not None]
        for mistake, wrong in distinct:
            if outputs_match(wrong, got):
                return [mistake]
        symptoms = [m for m in self.mistakes if m.detect is not None and m.detect(got, expected)]
        if has_non_finite(got) and not outputs_match(expected, got, ignore_non_finite=True):
            for mistake, wrong in distinct:
                if not has_non_finite(wrong) and outputs_match(wrong, got, ignore_non_finite=True):
                    return [mistake, *symptoms]
        return symptoms[:1]

    def _failure(self, headline: str, details: list[str], diagnosis: list[Mistake], number: int) -> CheckFailure:
        lines = [headline, *details]
        if diagnosis:
            primary = diagnosis[0]
            lines.append(f"Diagnosis: {primary.name}.")
            lines += [f"Also: {also.name}." for also in diagnosis[1:]]
            lines += [f"Idea: {m.idea}" for m in diagnosis]
            failure = _Failure(primary.id, primary.name, " ".join(m.hint for m in diagnosis))
        else:
            failure = _Failure(None, None, self.fallback_hint)
        previous = _last_failure.get(self.id)
        repeated = previous is not None and previous.mistake_id == failure.mistake_id
        _last_failure[self.id] = failure
        if failure.code:
            if repeated:
                lines.append(f"Hint: {failure.code}")
            else:
                lines.append(f'More help: hint("{self.id}") shows a code-level hint.')
        return CheckFailure("\n".join(lines), exercise=self.id,
                            mistake_id=diagnosis[0].id if diagnosis else None, case_number=number)

    def _compare_gradients(self, run: _CaseRun, got: Output, expected: Output, learner_args: list[Any],
                           learner_params: dict[str, Tensor], reference_args: list[Any],
                           reference_params: dict[str, Tensor], where: str, number: int,
                           watcher: DelegationWatch) -> None:
        names = run.argument_names(learner_args, {})
        labelled = [(n, a) for n, a in zip(names, learner_args) if isinstance(a, Tensor) and a.requires_grad]
        labelled += [(f"the parameter {n}", p) for n, p in learner_params.items() if p.requires_grad]
        learner_leaves = [leaf for _, leaf in labelled]
        reference_leaves = _leaves(reference_args) + _leaves(list(reference_params.values()))
        upstream_seed = 1000 + number
        try:
            with watcher:
                got_grads = _grads(got, learner_leaves, upstream_seed)
        except RuntimeError as error:
            raise CheckFailure(
                f"✘ {self.title}: the outputs match but the backward pass through your code fails on {where}:\n"
                f"    {type(error).__name__}: {str(error).splitlines()[0].split(' Hint: ')[0]}\n"
                "Hint: an in-place operation (x.mul_(…), x += …, out[...] = …) changed a tensor that autograd saved "
                "for the backward pass; write it out of place (x = x * …).",
                exercise=self.id, mistake_id="backward_failed", case_number=number,
            ) from None
        self._refuse_delegation(watcher, number)
        expected_grads = _grads(expected, reference_leaves, upstream_seed)
        for (name, _), g_got, g_exp in zip(labelled, got_grads, expected_grads):
            if g_exp is None:
                continue
            if g_got is None:
                raise CheckFailure(
                    f"✘ {self.title} on {where}: no gradient reaches {name}. "
                    "Did you detach, use .data, or go through numpy/Python numbers?",
                    exercise=self.id, mistake_id="no_gradient", case_number=number,
                )
            problem = describe_mismatch(g_exp, g_got, ("gradient",))
            if problem:
                raise CheckFailure(
                    f"✘ {self.title}: the outputs match but the gradient with respect to {name} differs on {where}:\n"
                    f"    {problem}\n"
                    "Hint: an in-place operation or a detach() on the path changes the backward pass; if the gradients "
                    "differ only in the last digits, a step computed in lower precision (a cast to float32) is the cause.",
                    exercise=self.id, mistake_id="wrong_gradient", case_number=number,
                )


@dataclass(eq=False, kw_only=True)
class ModuleExercise(Exercise):
    """An ``nn.Module`` class the learner writes, checked against an llmcore module.

    For each case the reference module is built as ``reference(*case.init.values())`` under a seed
    derived from the exercise and the case, passed to ``prepare`` (e.g. random norm weights) and cast
    to the case's dtype. The learner's class is built with the same arguments, cast, given the
    reference's weights by name (Hugging Face names; a structural difference is reported as such) and
    put in eval mode unless ``train_mode``. Both are called as ``forward(module, *args, **kwargs)``
    (default ``module(*args, **kwargs)``), or through ``functional_call`` with ``case.params``.

    A mistake's ``output`` receives ``build`` first: ``build()`` returns a fresh reference module with
    the case's weights, ``build(factory)`` a module from another factory with the same weights.
    """

    reference: Callable[..., nn.Module]
    forward: Callable[..., Output] | None = None
    prepare: Callable[[nn.Module], None] | None = None
    train_mode: bool = False

    expects = "the class itself (an nn.Module subclass)"

    def _guard(self, learner: Any) -> None:
        if isinstance(learner, nn.Module):
            name = type(learner).__name__
            raise CheckFailure(
                f"✘ {self.title}: expected the class itself, got an instance of {name}. "
                f"Pass the class: check_...({name}), not {name}(...).",
                exercise=self.id, mistake_id="wrong_object",
            )
        if not isinstance(learner, type) or not issubclass(learner, nn.Module):
            raise CheckFailure(f"✘ {self.title}: expected {self.expects}, got {_describe(learner)}",
                               exercise=self.id, mistake_id="wrong_object")

    def _case_run(self, learner: Any, case: Case, number: int, seed: int) -> _CaseRun:
        return _ModuleCaseRun(self, learner, case, CaseRandom(seed).child_seed(number))


def _describe(value: Any) -> str:
    return "None (did the cell that defines it run?)" if value is None else describe_value(value)

