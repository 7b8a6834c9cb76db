"""How any check treats learner code that returns or does something unusual: an iterator, a tuple
holding tensors, a numpy array, an in-place change autograd cannot undo, a changed input list, and
wrong index lists, whose missing and extra entries are named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from grader.checks.framework import Case, CheckFailure, describe_mismatch
from grader.checks.spec import Exercise


def _exercise(reference, cases) -> Exercise:
    return Exercise(id="edge_case_exercise", syllabus=("T01",), reference=reference,
                    cases=lambda random, hidden: cases)


def _failure(exercise: Exercise, learner) -> CheckFailure:
    with pytest.raises(CheckFailure) as caught:
        exercise.check(learner)
    return caught.value


def test_an_iterator_is_refused_as_read_once_not_as_randomness() -> None:
    exercise = _exercise(lambda n: [i * i for i in range(n)], [Case("n = 4", (4,))])
    failure = _failure(exercise, lambda n: map(lambda i: i * i, range(n)))
    assert failure.mistake_id == "iterator_returned"
    assert "a map" in str(failure) and "list(...)" in str(failure) and "dropout" not in str(failure)


def test_a_tuple_holding_a_tensor_where_one_tensor_is_expected_is_named() -> None:
    x = torch.randn(2, 3)
    exercise = _exercise(lambda t: t * 2, [Case("x [2, 3]", (x,))])
    failure = _failure(exercise, lambda t: (t * 2, 0.5))
    assert "expected one returned value" in str(failure) and "tuple of 2" in str(failure)
    assert failure.mistake_id is None


def test_equal_numpy_arrays_and_nested_tensors_compare_equal_and_unequal_ones_do_not() -> None:
    assert describe_mismatch(np.array([1, 2, 3]), np.array([1, 2, 3])) is None
    assert "array([1, 2, 4])" in describe_mismatch(np.array([1, 2, 3]), np.array([1, 2, 4]))
    x = torch.randn(4)
    assert describe_mismatch(((x, 0.1), x), ((x.clone(), 0.1), x)) is None
    assert "max abs error 1" in describe_mismatch(((x, 0.1), x), ((x + 1, 0.1), x))


def test_a_backward_pass_broken_by_an_in_place_change_is_explained() -> None:
    def reference(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * 2

    def in_place(x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x)
        return y.mul_(2)

    exercise = _exercise(reference, [Case("x [3, 5] float64, gradients", (torch.randn(3, 5, dtype=torch.float64),),
                                          check_gradients=True)])
    failure = _failure(exercise, in_place)
    assert failure.mistake_id == "backward_failed"
    assert "modified by an inplace operation" in str(failure) and "out of place" in str(failure)
    assert "anomaly detection" not in str(failure)


def test_a_wrong_gradient_is_labelled_as_the_gradient() -> None:
    exercise = _exercise(lambda x: x * 3, [Case("x [4] float64", (torch.randn(4, dtype=torch.float64),),
                                                check_gradients=True)])
    failure = _failure(exercise, lambda x: x.detach() * 3 + (x - x.detach()) * 2)
    assert "gradient with respect to x differs" in str(failure)
    assert "gradient: max abs error" in str(failure) and "returned value 0" not in str(failure)


def test_code_that_changes_its_input_list_leaves_the_next_call_its_own_copy() -> None:
    def reference(spans: list[tuple[int, int]]) -> int:
        return sum(end - start for start, end in spans)

    def sorts_and_extends(spans: list[tuple[int, int]]) -> int:
        spans.sort(reverse=True)
        total = sum(end - start for start, end in spans)
        spans.append((9, 12))
        return total

    exercise = _exercise(reference, [Case("two spans", ([(0, 2), (5, 8)],))])
    exercise.check(sorts_and_extends)
    exercise.check(sorts_and_extends, hidden=True)


def test_short_index_lists_name_their_missing_and_extra_entries() -> None:
    message = describe_mismatch(torch.tensor([0, 1, 3, 4, 6]), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7]), ("kept",))
    assert message == "kept: expected shape (5,), got (8,) (not expected [2, 5, 7])"
    message = describe_mismatch(torch.tensor([[0, 1], [2, 3], [4, 5]]), torch.tensor([[0, 1], [2, 4]]), ("pairs",))
    assert message == "pairs: expected shape (3, 2), got (2, 2) (missing [(2, 3), (4, 5)]; not expected [(2, 4)])"
    long_list = describe_mismatch(torch.arange(50), torch.arange(60), ("kept",))
    assert long_list == "kept: expected shape (50,), got (60,)"
