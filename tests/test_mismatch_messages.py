"""How a check describes a wrong result (grader.checks.framework.describe_mismatch): numbers a learner
can tell apart, and advice that fits the slip."""

from __future__ import annotations

import torch

from grader.checks.framework import describe_mismatch


def test_close_numbers_get_enough_digits_to_differ() -> None:
    expected = torch.tensor([3.108970123, 1.0], dtype=torch.float64)
    message = describe_mismatch(expected, expected + torch.tensor([2e-6, 0.0], dtype=torch.float64), ("output",))
    shown = message.split("expected ")[-1]
    value, got = shown.split(", got ")
    assert value != got.split(" ")[0], message


def test_a_float64_result_that_went_through_float32_is_named() -> None:
    expected = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    through_float32 = (expected.float() * 1.0000003).double()
    assert "float32 precision" in describe_mismatch(expected, through_float32, ("output",))
    assert "float32 precision" not in describe_mismatch(expected, expected + 0.1, ("output",))


def test_float64_where_float32_is_expected_gets_its_own_advice() -> None:
    message = describe_mismatch(torch.zeros(3), torch.zeros(3, dtype=torch.float64), ("angles",))
    assert "expected dtype torch.float32" in message and "Python floats or numpy" in message
    message = describe_mismatch(torch.zeros(3, dtype=torch.float64), torch.zeros(3), ("output",))
    assert "keep the input's dtype" in message


def _structure_message(learner: torch.nn.Module, reference: torch.nn.Module) -> str:
    from grader.checks.framework import CheckFailure, load_reference_weights

    try:
        load_reference_weights("Block", learner, reference)
    except CheckFailure as failure:
        return str(failure)
    raise AssertionError("a wrong structure was accepted")


def test_a_bias_the_reference_does_not_have_is_named() -> None:
    reference = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False))
    message = _structure_message(torch.nn.Sequential(torch.nn.Linear(4, 6)), reference)
    assert "`0` has a bias the exercise's layers do not" in message and "bias=False" in message


def test_a_linear_layer_built_the_wrong_way_round_is_named() -> None:
    reference = torch.nn.Sequential(torch.nn.Linear(4, 6))
    message = _structure_message(torch.nn.Sequential(torch.nn.Linear(6, 4)), reference)
    assert "maps the wrong way" in message and "nn.Linear(4, 6), not nn.Linear(6, 4)" in message


def test_a_weight_of_its_own_stored_transposed_is_named() -> None:
    class Head(torch.nn.Module):
        def __init__(self, rows: int, columns: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(rows, columns))

    message = _structure_message(Head(8, 11), Head(11, 8))
    assert "`weight` has its two dimensions swapped: create it with shape [11, 8]" in message
    assert "use exactly the submodule names" not in message


def test_a_parametrized_weight_is_named_as_such_not_as_a_plain_tensor() -> None:
    class UnitRows(torch.nn.Module):
        def forward(self, weight: torch.Tensor) -> torch.Tensor:
            return weight / weight.norm(dim=1, keepdim=True)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(11, 8))

    learner = Head()
    torch.nn.utils.parametrize.register_parametrization(learner, "weight", UnitRows())
    message = _structure_message(learner, Head())
    assert "registered through torch.nn.utils.parametrize" in message and "plain tensor" not in message
