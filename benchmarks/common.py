"""What every benchmark returns, and how a figure is printed.

A benchmark module ``benchmarks/bench_<name>.py`` defines ``run() -> list[Figure]``. Figures are
ratios against a peer measured in the same run whenever there is a peer, so that a busy machine
slows both sides alike.
"""

from __future__ import annotations

import operator
import statistics
import time
from dataclasses import dataclass
from typing import Callable

__all__ = ["Figure", "median_seconds"]

_COMPARE = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Figure:
    """One measured value and its target, e.g. ``Figure("mask_redraw", 35.2, "ms", "<=", 200)``."""

    name: str
    value: float
    unit: str
    op: str
    target: float

    def __post_init__(self) -> None:
        if self.op not in _COMPARE:
            raise ValueError(f"Figure.op must be one of {sorted(_COMPARE)}, got {self.op!r}")

    @property
    def met(self) -> bool:
        return _COMPARE[self.op](self.value, self.target)

    def line(self) -> str:
        return f"bench {self.name}: {self.value:.3g} {self.unit} (target {self.op} {self.target:g})"


def median_seconds(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` runs after ``warmup`` unmeasured runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
