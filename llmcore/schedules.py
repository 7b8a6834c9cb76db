"""Learning-rate schedules."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["transformer_lr", "transformer_lr_scheduler", "cosine_lr", "cosine_lr_scheduler"]


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


def cosine_lr(step: int, *, peak_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Linear warm-up, then cosine decay to a floor (余弦退火; Loshchilov & Hutter, 2017, without restarts).

    With ``floor = min_lr_ratio · peak_lr``::

        step < warmup_steps:                 lr = peak_lr · step / warmup_steps
        warmup_steps <= step < total_steps:  lr = floor + (peak_lr − floor) · ½ · (1 + cos(π · p)),
                                             p = (step − warmup_steps) / (total_steps − warmup_steps)
        step >= total_steps:                 lr = floor

    Steps count from 0, so step 0 has lr 0 and ``warmup_steps`` the peak. GPT-3 decays to 10 % of
    the peak and LLaMA (Touvron et al., 2023, §2.2) does the same: warm-up 2,000 steps, floor 10 %,
    hence ``min_lr_ratio = 0.1``; ``0`` decays all the way to zero.
    """
    if step < 0:
        raise ValueError(f"steps count from 0, got step={step}")
    if peak_lr <= 0:
        raise ValueError(f"peak_lr must be positive, got {peak_lr}")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"need 0 <= warmup_steps < total_steps, got warmup_steps={warmup_steps}, total_steps={total_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
    floor = min_lr_ratio * peak_lr
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if step >= total_steps:
        return floor
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return floor + (peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def cosine_lr_scheduler(
    optimizer: Optimizer, *, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """A ``LambdaLR`` applying :func:`cosine_lr` to every parameter group.

    Create the optimizer with the *peak* learning rate: ``LambdaLR`` multiplies each group's initial
    rate by ``cosine_lr(step, peak_lr=1.0, ...)``, so groups with different peaks keep their ratio.
    Call ``scheduler.step()`` once per optimizer step; ``LambdaLR`` counts from 0, as
    :func:`cosine_lr` does, so the first update runs at lr 0. Bad settings raise at construction,
    when ``LambdaLR`` evaluates step 0.
    """
    return LambdaLR(
        optimizer,
        lambda step: cosine_lr(step, peak_lr=1.0, warmup_steps=warmup_steps, total_steps=total_steps, min_lr_ratio=min_lr_ratio),
    )
