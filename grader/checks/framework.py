"""What every exercise check compares and how it words a failure.

A check runs the learner's code on a list of :class:`Case` and compares each result with llmcore's
(:func:`describe_mismatch`). On a mismatch, each :class:`Mistake` — a known-wrong variant of the
reference, "the reference with one knob turned", or a symptom it recognises — is tried, and the one
that reproduces the learner's result becomes the diagnosis. The exercises themselves are declared in
:mod:`grader.checks.spec`; this module holds the parts they share.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

__all__ = [
    "CheckFailure",
    "Case",
    "Mistake",
    "tolerances",
    "describe_mismatch",
    "describe_value",
    "outputs_match",
    "load_reference_weights",
    "describe_inputs",
    "as_items",
    "has_non_finite",
    "non_finite_where_expected_is_finite",
    "is_numpy",
]

Output = Any  # a Tensor, a number, or a tuple/list of them
DISPLAY_WIDTH = 82


class CheckFailure(AssertionError):
    """The learner's code is wrong; the message is the complete feedback to show.

    Subclasses ``AssertionError`` so nbgrader counts the test cell as failed. In Jupyter only the
    message is shown (``_render_traceback_``): the grader's own frames mean nothing to a learner.
    ``exercise``, ``mistake_id`` and ``case_number`` say what was found, for tests and tools.
    """

    def __init__(self, message: str, *, exercise: str | None = None, mistake_id: str | None = None,
                 case_number: int | None = None) -> None:
        super().__init__(message)
        self.exercise = exercise
        self.mistake_id = mistake_id
        self.case_number = case_number

    def _render_traceback_(self) -> list[str]:
        """The message, wrapped to ``DISPLAY_WIDTH`` columns: nbgrader's Validate dialog does not wrap lines
        and its command line cuts them at 90 characters."""
        lines = []
        for line in str(self).splitlines():
            indent = line[: len(line) - len(line.lstrip())]
            lines += textwrap.wrap(line, DISPLAY_WIDTH, subsequent_indent=indent + "    ", break_long_words=False,
                                   break_on_hyphens=False) or [""]
        return lines


@dataclass
class Case:
    """One set of inputs. ``description`` is what the learner reads when this case fails.

    ``init`` holds a module exercise's constructor arguments (passed positionally, in order) and
    ``params`` parameter tensors passed to the module as inputs (``torch.func.functional_call``) so that
    their gradients are compared too. ``dtype`` overrides the dtype a module is cast to (by default the
    dtype of the first floating-point tensor argument).
    """

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    check_gradients: bool = False
    init: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    dtype: torch.dtype | None = None


@dataclass(frozen=True)
class Mistake:
    """A known-wrong variant and what to do about it.

    Args:
        id: short stable name (``no_scale``, ``mask_after_softmax``), used by tests and tools.
        name: what the mistake is, as the learner reads it after "Diagnosis:".
        idea: the idea of the fix, shown with the diagnosis.
        hint: the code-level fix, shown on request (``hint(exercise)``) or when the same mistake fails again.
        output: computes what the mistaken code returns for a case (the exercise's reference signature;
            module exercises get ``build`` first, see :class:`grader.checks.spec.ModuleExercise`).
            A learner whose code *raises* the same error as ``output`` is diagnosed too.
        detect: ``(got, expected) -> bool`` for mistakes recognised by their symptom (NaN where the
            reference has none, …). Symptoms are tried after every ``output`` mistake, so a symptom
            never hides a mistake that can be named from the values.
    """

    id: str
    name: str
    idea: str
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


def _shape(value: Tensor) -> str:
    return "[" + ", ".join(str(n) for n in value.shape) + "]"


def describe_value(value: Any) -> str:
    """What ``value`` is, for a message: "the class X", "a tensor of shape [2, 3]", "the function f" …"""
    if value is None:
        return "None"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    if isinstance(value, nn.Module):
        return f"an instance of {type(value).__name__} (an nn.Module)"
    if isinstance(value, Tensor):
        return f"a tensor of shape {_shape(value)}"
    if isinstance(value, (list, tuple)):
        return f"a Python {type(value).__name__} of {len(value)} item(s)"
    if callable(value) and hasattr(value, "__name__"):
        return f"the function {value.__name__}"
    return f"a {type(value).__name__}"


def _not_a_tensor(got: Any) -> str:
    if got is None:
        return "expected a torch.Tensor, got None: is the `return` statement missing?"
    if isinstance(got, (list, tuple)):
        return (f"expected a torch.Tensor, got {describe_value(got)}: build the result with tensor operations "
                "(or torch.stack/torch.tensor) instead of Python lists")
    return f"expected a torch.Tensor, got {describe_value(got)}"


def describe_mismatch(expected: Output, got: Output, names: Sequence[str] = ()) -> str | None:
    """``None`` if ``got`` equals ``expected`` within tolerance, else a sentence saying how they differ.

    Reports the first differing part: the number and kind of returned values, type, shape, dtype,
    NaN/inf, then the largest absolute error with its index and the expected and received values there.
    """
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            what = ", ".join(names) or "…"
            return f"expected {len(expected)} returned values ({what}), got {describe_value(got)}"
        if len(expected) != len(got):
            return f"expected {len(expected)} returned values ({', '.join(names) or '…'}), got {len(got)}"
        pairs = list(zip(expected, got))
    else:
        if isinstance(got, tuple) and isinstance(expected, Tensor) and got:
            return f"expected one returned value ({', '.join(names) or 'a tensor'}), got a tuple of {len(got)}"
        pairs = [(expected, got)]
    for position, (exp, out) in enumerate(pairs):
        label = names[position] if position < len(names) else f"returned value {position}"
        problem = _describe_one(exp, out)
        if problem:
            return f"{label}: {problem}"
    return None


def is_numpy(value: Any) -> bool:
    """A numpy array or scalar, recognised without importing numpy (the checks need only torch)."""
    return type(value).__module__ == "numpy" and hasattr(value, "tolist")


def _plainly_equal(expected: Any, got: Any) -> bool:
    """``expected == got`` for plain values; arrays (numpy's) compare as a whole, and anything else without a
    single truth value is unequal."""
    try:
        return bool(got == expected)
    except (RuntimeError, TypeError, ValueError):
        pass
    try:
        return torch.equal(torch.as_tensor(expected), torch.as_tensor(got))
    except (RuntimeError, TypeError, ValueError):
        return False


def _holds_tensors(*values: Any) -> bool:
    return any(isinstance(item, Tensor) or hasattr(item, "__array__") for value in values for item in value)


def _index_difference(expected: Tensor, got: Tensor) -> str:
    """For short lists of integer indices (``[N]``) or index pairs (``[N, 2]``): which entries are missing or extra."""
    if expected.dim() != got.dim() or expected.dim() not in (1, 2) or expected.shape[1:] != got.shape[1:] \
            or max(expected.shape[0], got.shape[0]) > 40:
        return ""
    expected_items = [tuple(row) if isinstance(row, list) else row for row in expected.tolist()]
    got_items = [tuple(row) if isinstance(row, list) else row for row in got.tolist()]
    missing = [item for item in expected_items if item not in got_items]
    extra = [item for item in got_items if item not in expected_items]
    parts = ([f"missing {missing}"] if missing else []) + ([f"not expected {extra}"] if extra else [])
    return f" ({'; '.join(parts)})" if parts else ""


def _describe_one(expected: Any, got: Any) -> str | None:
    if not isinstance(expected, Tensor):
        if isinstance(got, Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(expected, float) or isinstance(got, float):
            if not isinstance(got, (int, float)):
                return f"expected a number, got {describe_value(got)}"
            if abs(got - expected) <= 1e-6 + 1e-5 * abs(expected):
                return None
            return f"expected {expected:.6g}, got {got:.6g}"
        if isinstance(expected, (tuple, list)) and isinstance(got, (tuple, list)) and _holds_tensors(expected, got):
            return describe_mismatch(expected, got)
        return None if _plainly_equal(expected, got) else f"expected {expected!r}, got {got!r}"
    if not isinstance(got, Tensor):
        return _not_a_tensor(got)
    if tuple(got.shape) != tuple(expected.shape):
        indices = _index_difference(expected, got) if not (expected.is_floating_point() or got.is_floating_point()) else ""
        return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}{indices}"
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
        return f"expected dtype {expected.dtype} ({_dtype_advice(expected.dtype, got.dtype)}), got {got.dtype}"
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
    expected_value, got_value = _distinct_digits(exp_d[index].item(), got_d[index].item())
    message = (
        f"max abs error {worst:.3g} (tolerance {atol:g} + {rtol:g}·|expected|) at index {index}: "
        f"expected {expected_value}, got {got_value}"
    )
    scale = exp_d.abs().max().item()
    if expected.dtype == torch.float64 and scale > 0 and worst <= FLOAT32_AGREEMENT * scale:
        message += (" — the results agree only to float32 precision: was a step computed in float32 "
                    "(a .float(), a float32 constant or table)?")
    return message


# Relative agreement of a float64 result that went through float32 somewhere (float32's epsilon is
# 1.2e-7; a few operations accumulate it).
FLOAT32_AGREEMENT = 1e-5


def _distinct_digits(expected: float, got: float) -> tuple[str, str]:
    """The two numbers with 6 significant digits, or as many more as it takes to tell them apart."""
    digits = 6
    while digits < 17 and f"{expected:.{digits}g}" == f"{got:.{digits}g}":
        digits += 1
    return f"{expected:.{digits}g}", f"{got:.{digits}g}"


def _dtype_advice(expected: torch.dtype, got: torch.dtype) -> str:
    if expected == torch.float32 and got == torch.float64:
        return "float64 comes from Python floats or numpy, or from casting to .double(); compute in float32"
    return "keep the input's dtype"


def _finite_part(got: Output, like: Output) -> Output:
    """``got`` with its NaN/inf entries replaced by ``like``'s, for matching "everything else"."""
    if isinstance(got, (tuple, list)) and isinstance(like, (tuple, list)) and len(got) == len(like):
        return type(got)(_finite_part(g, l) for g, l in zip(got, like))
    if isinstance(got, Tensor) and isinstance(like, Tensor) and got.shape == like.shape \
            and got.is_floating_point() and like.dtype == got.dtype:
        return torch.where(torch.isfinite(got), got, like)
    return got


def _non_finite(item: Any) -> bool:
    return isinstance(item, Tensor) and item.is_floating_point() and not bool(torch.isfinite(item).all())


def has_non_finite(output: Output) -> bool:
    return any(_non_finite(item) for item in as_items(output))


def non_finite_where_expected_is_finite(got: Output, expected: Output) -> bool:
    """A symptom for ``Mistake.detect``: a returned tensor holds NaN or ±inf where the reference's tensor of the
    same shape is finite (a softmax over a fully masked row, a log of an underflowed probability)."""
    return any(
        isinstance(g, Tensor) and isinstance(e, Tensor) and g.shape == e.shape and _non_finite(g) and not _non_finite(e)
        for g, e in zip(as_items(got), as_items(expected))
    )


def as_items(output: Output) -> tuple:
    """The returned values as a tuple (one value becomes a 1-tuple)."""
    return tuple(output) if isinstance(output, (tuple, list)) else (output,)


def outputs_match(wrong: Output, got: Output, *, ignore_non_finite: bool = False) -> bool:
    """Whether a mistake's output reproduces the learner's (optionally ignoring the learner's NaN/inf)."""
    if ignore_non_finite:
        got = _finite_part(got, wrong)
    return describe_mismatch(wrong, got) is None


def describe_inputs(names: Sequence[str], values: Sequence[Any]) -> str:
    """``q [2, 3, 5, 8] float32, mask [2, 1, 1, 7] bool, n_heads = 4`` for an error message."""
    parts = []
    for name, value in zip(names, values):
        if isinstance(value, Tensor):
            parts.append(f"{name} {_shape(value)} {str(value.dtype).removeprefix('torch.')}")
        elif value is None or isinstance(value, (int, float, bool, str)):
            parts.append(f"{name} = {value!r}")
        else:
            parts.append(f"{name}: {describe_value(value)}")
    return ", ".join(parts)


def _owner(module: nn.Module, owner_path: str) -> nn.Module | None:
    """The submodule at ``owner_path`` ("" = the module itself), or None where there is none."""
    try:
        return module.get_submodule(owner_path) if owner_path else module
    except AttributeError:
        return None


def _structure_problems(learner_module: nn.Module, missing: list[str]) -> list[str]:
    """Sentences for missing parameters whose cause can be seen on the module itself."""
    sentences, without_bias = [], []
    for key in missing:
        owner_path, _, attribute = key.rpartition(".")
        owner = _owner(learner_module, owner_path)
        if owner is None:
            continue
        where = f"{owner_path}.{attribute}" if owner_path else attribute
        if parametrize.is_parametrized(owner, attribute):
            sentences.append(
                f"`{where}` is registered through torch.nn.utils.parametrize, which saves it as "
                f"`parametrizations.{attribute}.original`: keep a plain nn.Parameter named `{attribute}` and apply "
                "the transformation in forward."
            )
            continue
        value = getattr(owner, attribute, None)
        if isinstance(value, Tensor) and not isinstance(value, nn.Parameter):
            sentences.append(
                f"`{where}` is a plain tensor, not an nn.Parameter, so it is neither trained nor saved: "
                f"wrap it, e.g. self.{attribute} = nn.Parameter(torch.ones(...))."
            )
        elif attribute == "bias" and value is None and isinstance(owner, nn.Linear):
            without_bias.append(f"`{owner_path or 'the module'}`")
    if without_bias:
        verb = "has" if len(without_bias) == 1 else "have"
        sentences.append(
            f"{', '.join(without_bias)} {verb} no bias (built with bias=False?): the reference's layers have one, "
            "so keep nn.Linear's default bias=True."
        )
    return sentences


def _unexpected_buffers(learner_module: nn.Module, unexpected: list[str]) -> list[str]:
    buffers = dict(learner_module.named_buffers())
    return [
        f"`{key}` is a registered buffer, so it is saved with the weights, but the reference saves no such entry: "
        f"register it with persistent=False (or keep a plain Python number)."
        for key in unexpected if key in buffers
    ]


def _unexpected_biases(learner_module: nn.Module, reference_module: nn.Module, unexpected: list[str]) -> list[str]:
    """A sentence for linear layers that carry a bias where the reference's layers are built without one."""
    owners = []
    for key in unexpected:
        owner_path, _, attribute = key.rpartition(".")
        if attribute != "bias":
            continue
        learner_owner, reference_owner = _owner(learner_module, owner_path), _owner(reference_module, owner_path)
        if isinstance(learner_owner, nn.Linear) and isinstance(reference_owner, nn.Linear) and reference_owner.bias is None:
            owners.append(f"`{owner_path or 'the module'}`")
    if not owners:
        return []
    verb = "has" if len(owners) == 1 else "have"
    return [f"{', '.join(owners)} {verb} a bias the exercise's layers do not have: "
            "build them with nn.Linear(..., bias=False)."]


def _transposed_linears(learner_module: nn.Module, expected: dict[str, Tensor], got: dict[str, Tensor]) -> list[str]:
    """A sentence for each weight matrix stored transposed: an ``nn.Linear`` with in and out swapped, or a
    parameter of its own created with its dimensions the wrong way round."""
    sentences = []
    for key in sorted(set(expected) & set(got)):
        owner_path, _, attribute = key.rpartition(".")
        want, have = tuple(expected[key].shape), tuple(got[key].shape)
        if attribute != "weight" or len(want) != 2 or have != want[::-1] or want == have:
            continue
        if isinstance(_owner(learner_module, owner_path), nn.Linear):
            sentences.append(
                f"`{owner_path}` maps the wrong way: nn.Linear(in, out) stores its weight as [out, in], so it must be "
                f"nn.Linear({want[1]}, {want[0]}), not nn.Linear({want[0]}, {want[1]})."
            )
        else:
            sentences.append(f"`{key}` has its two dimensions swapped: create it with shape {list(want)}.")
    return sentences


def load_reference_weights(exercise: str, learner_module: nn.Module, reference_module: nn.Module, *,
                           exercise_id: str | None = None) -> None:
    """Copy the reference's weights into the learner's module so both compute with the same numbers.

    Raises :class:`CheckFailure` naming the missing, unexpected and mis-shaped parameters, with the
    cause where it shows on the module (a plain tensor instead of an ``nn.Parameter``, a layer built
    without its bias), so that a wrong structure is reported as such instead of as a wrong output.
    """
    if not isinstance(learner_module, nn.Module):
        raise CheckFailure(f"✘ {exercise} must be a torch.nn.Module subclass, got {describe_value(learner_module)}",
                           exercise=exercise_id or exercise)
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
        causes = (_structure_problems(learner_module, missing) + _unexpected_buffers(learner_module, unexpected)
                  + _unexpected_biases(learner_module, reference_module, unexpected)
                  + _transposed_linears(learner_module, expected, got))
        if causes:
            lines += [f"Diagnosis: {cause}" for cause in causes]
        else:
            lines.append("Hint: use exactly the submodule names given in the skeleton (they match Hugging Face's).")
        raise CheckFailure("\n".join(lines), exercise=exercise_id or exercise, mistake_id="module_structure")
    learner_module.load_state_dict(expected)
