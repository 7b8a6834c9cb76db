"""Qwen-1's training-free tricks for reading past the trained length (Bai et al., 2023, Qwen technical report §3).

Qwen-1 was trained on sequences of ``L₀`` tokens (``seq_length`` in its config.json: 2048 in the first
Qwen-7B release, 8192 later) and reads longer inputs without fine-tuning by two changes that leave
every sequence of at most ``L₀`` tokens exactly as trained:

* **dynamic NTK-aware interpolation** (动态 NTK 插值): RoPE's base grows with the length ``L`` of the
  sequence, ``base' = base · α^(d/(d−2))`` with ``α = max(2^⌈log₂(L/L₀) + 1⌉ − 1, 1)``, so ``α`` jumps
  1 → 3 → 7 → 15 as ``L`` passes ``L₀``, ``2L₀``, ``4L₀`` (``get_ntk_alpha`` in Qwen's
  ``modeling_qwen.py``; Hugging Face's ``dynamic`` scaling grows the base smoothly instead).
* **LogN attention scaling** (LogN 注意力缩放): the query at 0-based position ``p`` is multiplied by
  ``log_{L₀}(p + 1)`` when ``p + 1 > L₀`` (1 otherwise), so that the attention entropy stays steady
  as more keys compete (Chiang & Cholak 2022; Su 2021). Qwen applies it to the queries only and only
  at inference (``not self.training``).

Conventions: lengths count tokens; positions are 0-based; ``d`` is the rotary dimension (the head
dimension when the whole head rotates).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["qwen_ntk_alpha", "qwen_ntk_base", "logn_scale"]


def qwen_ntk_alpha(length: int, trained_length: int) -> int:
    """Qwen-1's dynamic NTK factor for a sequence of ``length`` tokens (``get_ntk_alpha`` in its code).

    ``α = max(2^⌈log₂(L/L₀) + 1⌉ − 1, 1)``: 1 up to ``L₀``, then 3 up to ``2L₀``, 7 up to ``4L₀`` …
    (for ``L₀ = 2048``: 1 up to 2048, 3 from 2049, 7 from 4097).
    """
    if length < 1 or trained_length < 1:
        raise ValueError(f"qwen_ntk_alpha: length and trained_length must be positive, got {length} and {trained_length}")
    context_value = math.log(length / trained_length, 2) + 1
    return max(2 ** math.ceil(context_value) - 1, 1)


def qwen_ntk_base(length: int, trained_length: int, rotary_dim: int, base: float = 10000.0) -> tuple[int, float]:
    """``(α, base')`` of Qwen-1's dynamic NTK for a sequence of ``length`` tokens: ``base' = base · α^(d/(d−2))``.

    The exponent ``d/(d−2)`` slows the slowest rotary pair by exactly ``α`` while the fastest keeps its
    frequency (NTK-aware scaling, bloc97 2023). ``base' = base`` (``α = 1``) up to ``trained_length``.
    """
    alpha = qwen_ntk_alpha(length, trained_length)
    return alpha, base * alpha ** (rotary_dim / (rotary_dim - 2))


def logn_scale(position_ids: Tensor, trained_length: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Qwen-1's LogN factors ``log_{L₀}(p + 1)`` beyond the trained length, 1 up to it.

    Args:
        position_ids: 0-based positions of the queries, any shape (``[L]`` or ``[B, L]``), integers.
        trained_length: ``L₀`` (``seq_length``), at least 2.
        dtype: the factors' dtype (they are computed in it: float64 queries get float64 factors).

    Returns:
        the multipliers of the queries, the shape of ``position_ids``. Qwen's ``logn_tensor`` holds
        the same numbers indexed by position (``math.log(i, seq_length) if i > seq_length else 1``
        for ``i = p + 1``).
    """
    if trained_length < 2:
        raise ValueError(f"logn_scale: trained_length must be at least 2, got {trained_length}")
    one_based = (position_ids + 1).to(dtype)
    return torch.where(one_based > trained_length, torch.log(one_based) / math.log(trained_length),
                       torch.ones_like(one_based))
