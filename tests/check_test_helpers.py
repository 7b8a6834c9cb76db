"""Helpers shared by the tests of the exercise checks (tests/test_checks_*.py)."""

from __future__ import annotations

from typing import Callable

import pytest

from grader.checks.framework import CheckFailure


def failure_message(check: Callable, learner: object, *, hidden: bool = False) -> str:
    """The feedback a check gives for ``learner``; fails the test if the check passes."""
    with pytest.raises(CheckFailure) as info:
        check(learner, hidden=hidden)
    return str(info.value)


def diagnosed(message: str, mistake_name: str) -> bool:
    return f"Diagnosis: {mistake_name}." in message


def stub(*args, **kwargs):
    """A learner's cell as released: the nbgrader stub."""
    raise NotImplementedError()


def broken(*args, **kwargs):
    """A learner's own bug, unrelated to the exercise."""
    raise ValueError("an index went out of range")
