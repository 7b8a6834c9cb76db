"""Learning-rate schedules."""

from __future__ import annotations

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["transformer_lr", "transformer_lr_scheduler"]


def transformer_lr(step: int, d_model: int, warmup_steps: int = 4000, factor: float = 1.0) -> float:
    """The warm-up schedule of Vaswani et al. (2017, §5.3) (学习率预热).

    ``lr = factor · d_model^−0.5 · min(step^−0.5, step · warmup_steps^−1.5)``: linear growth for
    ``warmup_steps`` steps, then decay with the inverse square root of the step. The peak, at
    ``step = warmup_steps``, is ``factor · (d_model · warmup_steps)^−0.5`` (≈ 7.0e-4 for the base model).
    Steps count from 1.
    """
    if step < 1:
        raise ValueError(f"steps count from 1, got step={step}")
    if warmup_steps < 1:
        raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup_steps**-1.5)


def transformer_lr_scheduler(optimizer: Optimizer, d_model: int, warmup_steps: int = 4000, factor: float = 1.0) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`transformer_lr`; create the optimizer with ``lr=1.0``.

    ``LambdaLR`` counts from 0, the paper from 1, hence the ``+ 1``.
    """
    return LambdaLR(optimizer, lambda step: transformer_lr(step + 1, d_model, warmup_steps, factor))
