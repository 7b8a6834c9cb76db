"""Normalisation layers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LayerNorm", "layer_norm"]


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalise the last dimension to zero mean and unit variance, then scale and shift.

    ``(x − mean) / √(var + eps) · weight + bias`` with the *biased* variance (divide by d, not d−1)
    and ``eps`` inside the square root (Ba et al., 2016).
    """
    mean = x.mean(dim=-1, keepdim=True)
    variance = (x - mean).pow(2).mean(dim=-1, keepdim=True)
    normalised = (x - mean) * torch.rsqrt(variance + eps)
    if weight is not None:
        normalised = normalised * weight
    if bias is not None:
        normalised = normalised + bias
    return normalised


class LayerNorm(nn.Module):
    """Layer normalisation (层归一化) over the last dimension, ``[..., d] → [..., d]``.

    Args:
        d_model: size of the normalised dimension.
        eps: added to the variance inside the root (1e-5 in the 2017 model and PyTorch, 1e-12 in BERT).
        bias: learn a shift (``False`` in some later models, e.g. OLMo).
    """

    def __init__(self, d_model: int, eps: float = 1e-5, *, bias: bool = True) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps)
