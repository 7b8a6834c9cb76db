"""Gradient clipping by the global norm (梯度裁剪, Pascanu et al., 2013).

All gradients are treated as one long vector ``g``. When its L2 norm exceeds ``max_norm``, every
gradient is multiplied by the same factor ``max_norm / (‖g‖ + eps)``, so the update keeps its
direction and only its length shrinks. Clipping each tensor by its own norm would change the
direction (a small gradient would keep its size while a large one shrinks). GPT-3 and LLaMA
(Touvron et al., 2023, §2.2) clip at 1.0.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

__all__ = ["clip_grad_norm"]


def clip_grad_norm(parameters: Iterable[Tensor], max_norm: float, *, eps: float = 1e-6) -> Tensor:
    """Scale the gradients of ``parameters`` in place so that their global L2 norm is at most ``max_norm``.

    ``total = sqrt(Σ_p ‖p.grad‖²)`` over the parameters that have a gradient (``None`` ones are
    skipped); the factor ``min(1, max_norm / (total + eps))`` multiplies every gradient, so nothing
    changes when ``total <= max_norm``. Conventions as ``torch.nn.utils.clip_grad_norm_``: ``eps =
    1e-6`` in the denominator, the norm is accumulated in the gradients' dtype, ``max_norm = inf``
    only measures.

    Returns:
        the global norm *before* clipping, a 0-dim tensor (0 when no parameter has a gradient).
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be positive, got {max_norm}")
    gradients = [p.grad for p in parameters if p.grad is not None]
    if not gradients:
        return torch.tensor(0.0)
    total = torch.stack([torch.linalg.vector_norm(g.detach()) for g in gradients]).pow(2).sum().sqrt()
    factor = torch.clamp(max_norm / (total + eps), max=1.0)
    for gradient in gradients:
        gradient.detach().mul_(factor.to(gradient.dtype))
    return total
