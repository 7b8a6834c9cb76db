"""What every exercise check shares: run the learner's code on cases, compare with llmcore, explain.

A check is a list of :class:`Case` (inputs with a human description), a reference (llmcore), and a
list of :class:`Mistake` (known-wrong variants of the reference, each with a hint). For each case
the learner's output is compared with the reference; on the first mismatch the learner's output is
compared with every mistake's output on the same inputs, and the one it equals is the diagnosis.

While the learner's code runs, :class:`CallWatcher` records calls of the functions that implement
*this* exercise (llmcore's and PyTorch's own), so delegating the exercise is caught at run time, not
by grepping the source. Reference versions of *earlier* exercises stay allowed, so a mistake early
in a chapter never costs the later exercises.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "CheckFailure",
    "Case",
    "Mistake",
    "CallWatcher",
    "check_function",
    "load_reference_weights",
    "tolerances",
    "describe_mismatch",
]

Output = Any  # a Tensor, a number, or a tuple/list of them


class CheckFailure(AssertionError):
    """The learner's code is wrong; the message is the complete feedback to show.

    Subclasses ``AssertionError`` so nbgrader counts the test cell as failed.
    """


@dataclass
class Case:
    """One set of inputs. ``description`` is what the learner reads when this case fails."""

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    check_gradients: bool = False


@dataclass
class Mistake:
    """A known-wrong variant and what to do about it.

    Args:
        name: what the mistake is, e.g. "the 1/√d_k scale is missing".
        hint: how to fix it.
        output: computes what the mistaken code returns for a case (same signature as the reference).
            ``None`` when ``detect`` recognises the mistake from the learner's output directly.
        detect: optional ``(got, expected) -> bool`` for mistakes recognised by their symptom
            (e.g. NaN where the reference has none).
    """

    name: str
    hint: str
    output: Callable[..., Output] | None = None
    detect: Callable[[Output, Output], bool] | None = None


def tolerances(dtype: torch.dtype) -> tuple[float, float]:
    """``(atol, rtol)`` for comparing a learner's result with the reference in ``dtype``."""
    if dtype == torch.float64:
        return 1e-9, 1e-7
    if dtype in (torch.float16, torch.bfloat16):
        return 1e-2, 1e-2
    return 1e-5, 1e-4


def _as_tuple(output: Output) -> tuple:
    return tuple(output) if isinstance(output, (tuple, list)) else (output,)


def _output_dtype(output: Output) -> torch.dtype:
    for item in _as_tuple(output):
        if isinstance(item, Tensor) and item.is_floating_point():
            return item.dtype
    return torch.float32


def describe_mismatch(expected: Output, got: Output, names: Sequence[str] = ()) -> str | None:
    """``None`` if ``got`` equals ``expected`` within tolerance, else a sentence saying how they differ.

    Reports the first differing part: count of returned values, type, shape, dtype, NaN/inf, then the
    largest absolute error with its index and the expected and received values there.
    """
    expected_items, got_items = _as_tuple(expected), _as_tuple(got)
    if len(expected_items) != len(got_items):
        return f"expected {len(expected_items)} returned value(s) ({', '.join(names) or '…'}), got {len(got_items)}"
    for position, (exp, out) in enumerate(zip(expected_items, got_items)):
        label = names[position] if position < len(names) else f"returned value {position}"
        problem = _describe_one(exp, out)
        if problem:
            return f"{label}: {problem}"
    return None


def _describe_one(expected: Any, got: Any) -> str | None:
    if not isinstance(expected, Tensor):
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(expected, float) or isinstance(got, float):
            if not isinstance(got, (int, float)):
                return f"expected a number, got {type(got).__name__}"
            if abs(got - expected) <= 1e-6 + 1e-5 * abs(expected):
                return None
            return f"expected {expected:.6g}, got {got:.6g}"
        return None if got == expected else f"expected {expected!r}, got {got!r}"
    if not isinstance(got, Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
    if expected.dtype == torch.bool or got.dtype == torch.bool:
        if got.dtype != expected.dtype:
            return f"expected dtype {expected.dtype}, got {got.dtype}"
        wrong = (got != expected).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            return (
                f"{len(wrong)} of {expected.numel()} entries differ; first at index {index}: "
                f"expected {expected[index].item()}, got {got[index].item()}"
            )
        return None
    if expected.is_floating_point() and got.dtype != expected.dtype:
        return f"expected dtype {expected.dtype} (keep the input's dtype), got {got.dtype}"
    if not expected.is_floating_point():
        wrong = (got != expected).nonzero()
        if len(wrong):
            index = tuple(wrong[0].tolist())
            return f"first difference at index {index}: expected {expected[index].item()}, got {got[index].item()}"
        return None
    atol, rtol = tolerances(expected.dtype)
    got_d, exp_d = got.detach(), expected.detach()
    if torch.isnan(got_d).any() and not torch.isnan(exp_d).any():
        index = tuple(torch.isnan(got_d).nonzero()[0].tolist())
        return f"contains NaN (first at index {index}) where the expected result has none"
    if torch.allclose(got_d, exp_d, atol=atol, rtol=rtol, equal_nan=True):
        return None
    error = (got_d - exp_d).abs().nan_to_num(nan=float("inf"))
    flat_index = int(error.argmax())
    index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat_index), error.shape))
    worst = error.max().item()
    return (
        f"max abs error {worst:.3g} (tolerance {atol:g} + {rtol:g}·|expected|) at index {index}: "
        f"expected {exp_d[index].item():.6g}, got {got_d[index].item():.6g}"
    )


class CallWatcher:
    """Record calls of forbidden functions while a block runs (``sys.setprofile``).

    ``forbidden`` maps a callable to the name shown to the learner. Python functions are matched by
    code object (so aliases and ``from … import`` copies are caught), classes by the code of their
    ``forward``, builtins (``torch.nn.functional.scaled_dot_product_attention`` …) by identity.
    """

    def __init__(self, forbidden: dict[Callable, str]) -> None:
        self._codes: dict[Any, str] = {}
        self._builtins: dict[int, str] = {}
        for target, label in forbidden.items():
            function = target.forward if isinstance(target, type) else target
            function = inspect.unwrap(function)
            code = getattr(function, "__code__", None)
            if code is not None:
                self._codes[code] = label
            else:
                self._builtins[id(function)] = label
        self.calls: list[str] = []

    def _profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            label = self._codes.get(frame.f_code)
        elif event == "c_call":
            label = self._builtins.get(id(arg))
        else:
            return
        if label is not None and label not in self.calls:
            self.calls.append(label)

    def __enter__(self) -> "CallWatcher":
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)


def _clone_args(args: Iterable[Any], requires_grad: bool) -> list[Any]:
    cloned = []
    for arg in args:
        if isinstance(arg, Tensor):
            arg = arg.detach().clone()
            if requires_grad and arg.is_floating_point():
                arg.requires_grad_(True)
        cloned.append(arg)
    return cloned


def _run_learner(
    exercise: str, learner: Callable[..., Output], case: Case, args: list[Any], watcher: CallWatcher
) -> Output:
    try:
        with watcher:
            result = learner(*args, **case.kwargs)
    except NotImplementedError:
        raise CheckFailure(
            f"✘ {exercise} is not implemented yet: replace `raise NotImplementedError()` with your code."
        ) from None
    except CheckFailure:
        raise
    except Exception as error:  # the learner's own bug: report it with the case that triggered it
        raise CheckFailure(
            f"✘ {exercise} raised {type(error).__name__} on the case {case.description}:\n    {error}"
        ) from error
    if watcher.calls:
        raise CheckFailure(
            f"✘ {exercise} calls {', '.join(watcher.calls)}, which implements this very exercise. "
            "Write the computation yourself; reference versions of *earlier* exercises are allowed."
        )
    return result


def _grads(output: Output, inputs: list[Any], upstream_seed: int) -> list[Tensor | None]:
    differentiable = [t for t in _as_tuple(output) if isinstance(t, Tensor) and t.requires_grad]
    leaves = [a for a in inputs if isinstance(a, Tensor) and a.requires_grad]
    if not differentiable or not leaves:
        return [None] * len(leaves)
    generator = torch.Generator().manual_seed(upstream_seed)
    total = sum((t * torch.randn(t.shape, generator=generator, dtype=t.dtype)).sum() for t in differentiable)
    return list(torch.autograd.grad(total, leaves, allow_unused=True))


def _diagnose(mistakes: Sequence[Mistake], case: Case, expected: Output, got: Output) -> Mistake | None:
    for mistake in mistakes:
        if mistake.detect is not None and mistake.detect(got, expected):
            return mistake
        if mistake.output is not None:
            try:
                wrong = mistake.output(*_clone_args(case.args, False), **case.kwargs)
            except Exception:
                continue
            if describe_mismatch(wrong, got) is None and describe_mismatch(wrong, expected) is not None:
                return mistake
    return None


def check_function(
    exercise: str,
    learner: Callable[..., Output],
    reference: Callable[..., Output],
    cases: Sequence[Case],
    *,
    mistakes: Sequence[Mistake] = (),
    forbidden: dict[Callable, str] | None = None,
    output_names: Sequence[str] = (),
    fallback_hint: str = "",
) -> None:
    """Compare ``learner`` with ``reference`` on every case; raise :class:`CheckFailure` at the first
    difference, with the case, how the outputs differ and, when a known mistake reproduces the
    learner's output, its name and a hint. Gradients with respect to floating-point tensor inputs are
    compared for cases with ``check_gradients``.

    Prints a one-line report and returns ``None``: nbgrader would read a number left as a test
    cell's result as partial credit.
    """
    if not callable(learner):
        raise CheckFailure(f"✘ {exercise}: expected a function or class, got {type(learner).__name__}")
    watcher = CallWatcher(forbidden or {})
    for number, case in enumerate(cases, start=1):
        learner_args = _clone_args(case.args, case.check_gradients)
        reference_args = _clone_args(case.args, case.check_gradients)
        got = _run_learner(exercise, learner, case, learner_args, watcher)
        expected = reference(*reference_args, **case.kwargs)
        problem = describe_mismatch(expected, got, output_names)
        where = f"case {number} of {len(cases)} ({case.description})"
        if problem:
            lines = [f"✘ {exercise} is wrong on {where}:", f"    {problem}"]
            mistake = _diagnose(mistakes, case, expected, got)
            if mistake is not None:
                lines += [f"Diagnosis: {mistake.name}.", f"Hint: {mistake.hint}"]
            elif fallback_hint:
                lines.append(f"Hint: {fallback_hint}")
            raise CheckFailure("\n".join(lines))
        if case.check_gradients:
            seed = 1000 + number
            got_grads = _grads(got, learner_args, seed)
            expected_grads = _grads(expected, reference_args, seed)
            for position, (g_got, g_exp) in enumerate(zip(got_grads, expected_grads)):
                if g_exp is None:
                    continue
                if g_got is None:
                    raise CheckFailure(
                        f"✘ {exercise} on {where}: no gradient reaches input {position}. "
                        "Did you detach, use .data, or go through numpy/Python numbers?"
                    )
                problem = describe_mismatch(g_exp, g_got)
                if problem:
                    raise CheckFailure(
                        f"✘ {exercise}: the outputs match but the gradient with respect to input {position} "
                        f"differs on {where}:\n    {problem}\n"
                        "Hint: an in-place operation or a detach() on the path changes the backward pass."
                    )
    print(f"✔ {exercise}: all {len(cases)} cases passed.")


def load_reference_weights(exercise: str, learner_module: nn.Module, reference_module: nn.Module) -> None:
    """Copy the reference's weights into the learner's module so both compute with the same numbers.

    Raises :class:`CheckFailure` naming the missing, unexpected and mis-shaped parameters, so that a
    wrong submodule name or a transposed weight is reported as such instead of as a wrong output.
    """
    if not isinstance(learner_module, nn.Module):
        raise CheckFailure(f"✘ {exercise} must be a torch.nn.Module subclass, got {type(learner_module).__name__}")
    expected = reference_module.state_dict()
    got = learner_module.state_dict()
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    misshaped = [
        f"{key}: expected {tuple(expected[key].shape)}, got {tuple(got[key].shape)}"
        for key in sorted(set(expected) & set(got))
        if expected[key].shape != got[key].shape
    ]
    if missing or unexpected or misshaped:
        lines = [f"✘ {exercise}: the parameters do not match the names and shapes the exercise asks for."]
        if missing:
            lines.append(f"    missing: {', '.join(missing)}")
        if unexpected:
            lines.append(f"    unexpected: {', '.join(unexpected)}")
        lines += [f"    wrong shape: {m}" for m in misshaped]
        lines.append("Hint: use exactly the submodule names given in the skeleton (they match Hugging Face's).")
        raise CheckFailure("\n".join(lines))
    learner_module.load_state_dict(expected)
