"""Normalisation layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LayerNorm", "layer_norm", "RMSNorm", "rms_norm"]


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
        # PyTorch's fused kernel computes exactly what layer_norm spells out, in one pass instead of
        # eight operations (tests pin the two together); the function stays the readable definition.
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)


def rms_norm(x: Tensor, weight: Tensor | None, eps: float = 1e-6, *, unit_offset: bool = False) -> Tensor:
    """Root-mean-square normalisation: ``x / √(mean(x²) + eps) · weight`` (Zhang & Sennrich, 2019).

    No mean is subtracted and there is no bias. The statistic is computed in float32 even for
    half-precision inputs, and the result is cast back before the weight is applied, as LLaMA does.
    ``unit_offset`` multiplies by ``1 + weight`` instead (Gemma stores the weight as an offset from 1,
    so a zero-initialised weight is the identity).
    """
    input_dtype = x.dtype
    compute = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    normalised = compute * torch.rsqrt(compute.pow(2).mean(dim=-1, keepdim=True) + eps)
    if weight is None:
        return normalised.to(input_dtype)
    if unit_offset:
        # Gemma scales in float32 before casting back; the order is part of its numerics.
        return (normalised * (1.0 + weight.to(normalised.dtype))).to(input_dtype)
    return weight * normalised.to(input_dtype)


class RMSNorm(nn.Module):
    """RMSNorm (均方根归一化) over the last dimension, ``[..., d] → [..., d]``.

    LLaMA, Qwen, Mistral, Gemma, Baichuan and ChatGLM2+ use it; T5's "layer norm" is the same
    scale-only normalisation (T5LayerNorm: no mean subtraction, no bias).

    Args:
        d_model: size of the normalised dimension.
        eps: added to the mean square inside the root (1e-6 in LLaMA/T5, 1e-5 in LLaMA 2/Mistral).
        unit_offset: Gemma's ``1 + weight`` parametrisation (weight initialised to 0).
    """

    def __init__(self, d_model: int, eps: float = 1e-6, *, unit_offset: bool = False) -> None:
        super().__init__()
        self.eps = eps
        self.unit_offset = unit_offset
        self.weight = nn.Parameter(torch.zeros(d_model) if unit_offset else torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        return rms_norm(x, self.weight, self.eps, unit_offset=self.unit_offset)
