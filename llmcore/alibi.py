"""ALiBi, attention with linear biases (线性偏置注意力; Press et al., 2022), used by BLOOM and Baichuan-13B.

No position is embedded at all. Each head ``h`` adds ``−m_h · (q − kv)`` to its scores: a penalty
growing linearly with distance, steep for some heads (local) and gentle for others (global). The
slopes form a geometric sequence ``m_h = 2^(−8h/n)`` for ``h = 1 … n`` when ``n`` is a power of two;
otherwise the ``2^⌊log₂ n⌋`` slopes are followed by every other slope of the sequence for
``2·2^⌊log₂ n⌋`` heads.

Shapes: bias ``[1, H, Q, KV]``, added to the scaled scores.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["alibi_slopes", "alibi_bias"]


def alibi_slopes(n_heads: int) -> Tensor:
    """The ``[n_heads]`` float32 slopes (8 heads: 1/2, 1/4, …, 1/256)."""
    if n_heads <= 0:
        raise ValueError(f"n_heads must be positive, got {n_heads}")
    closest_power = 2 ** math.floor(math.log2(n_heads))
    base = 2.0 ** (-8.0 / closest_power)
    slopes = [base ** (h + 1) for h in range(closest_power)]
    if closest_power < n_heads:
        extra_base = 2.0 ** (-4.0 / closest_power)
        slopes += [extra_base ** (2 * h + 1) for h in range(n_heads - closest_power)]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: Tensor, query_length: int, key_length: int, *, q_offset: int = 0) -> Tensor:
    """``bias[0, h, q, kv] = −slopes[h] · (q + q_offset − kv)`` for the past (kv ≤ q).

    Computed in float32, or in float64 when ``slopes`` are float64 (so that float64 checks stay exact).

    Future keys get positive values, but the causal mask removes them. Only the distance
    matters, so left padding needs no position bookkeeping: adding a constant to a whole row leaves
    the softmax unchanged (BLOOM writes ``slope · kv`` instead, which differs by such a constant).
    """
    q_positions = torch.arange(query_length, device=slopes.device).unsqueeze(1) + q_offset
    kv_positions = torch.arange(key_length, device=slopes.device).unsqueeze(0)
    dtype = torch.float64 if slopes.dtype == torch.float64 else torch.float32
    distance = (kv_positions - q_positions).to(dtype)
    return (slopes.to(dtype).view(-1, 1, 1) * distance).unsqueeze(0)
