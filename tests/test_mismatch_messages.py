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
