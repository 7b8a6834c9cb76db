"""Absolute position information added to token embeddings.

Self-attention is permutation-equivariant: without position information "dog bites man" and
"man bites dog" look alike. The 2017 Transformer adds a fixed sinusoid (正弦位置编码); BERT and GPT
learn a table (可学习位置编码).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["sinusoidal_position_encoding", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding"]


def sinusoidal_position_encoding(
    n_positions: int, d_model: int, *, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The sinusoid of Vaswani et al. (2017, §3.5), interleaved as in the paper.

    ``PE[pos, 2i] = sin(pos / base^(2i/d_model))`` and ``PE[pos, 2i+1] = cos(pos / base^(2i/d_model))``.
    Each pair of dimensions is a clock of its own wavelength, from 2π up to base·2π, and
    ``PE[pos + k]`` is a fixed rotation of ``PE[pos]`` for every offset ``k``.

    Returns:
        ``[n_positions, d_model]``. Computed in float64 and cast, so large positions stay exact.
    """
    if d_model % 2:
        raise ValueError(f"sinusoidal encoding needs an even d_model, got {d_model}")
    if n_positions < 0:
        raise ValueError(f"n_positions must be >= 0, got {n_positions}")
    position = torch.arange(n_positions, dtype=torch.float64).unsqueeze(1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    angles = position * inv_freq
    encoding = torch.empty(n_positions, d_model, dtype=torch.float64)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding.to(dtype)


class SinusoidalPositionalEncoding(nn.Module):
    """Adds the fixed sinusoid to ``[B, L, d_model]`` embeddings (no parameters)."""

    def __init__(self, max_positions: int, d_model: int, *, base: float = 10000.0) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.base = base
        self.register_buffer("encoding", sinusoidal_position_encoding(max_positions, d_model, base=base), persistent=False)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        if offset + length > self.max_positions:
            raise ValueError(f"sequence of {offset + length} positions exceeds max_positions={self.max_positions}")
        if x.dtype == torch.float64:
            # The buffer holds float32 values (also after .double()); recompute so float64 stays exact.
            encoding = sinusoidal_position_encoding(offset + length, self.encoding.shape[-1], base=self.base, dtype=torch.float64)
            return x + encoding[offset:].to(x.device)
        return x + self.encoding[offset : offset + length].to(x.dtype)


class LearnedPositionalEmbedding(nn.Module):
    """A learned table of ``max_positions × d_model`` added to the embeddings (BERT, GPT-1/2)."""

    def __init__(self, max_positions: int, d_model: int) -> None:
        super().__init__()
        self.max_positions = max_positions
        self.weight = nn.Parameter(torch.empty(max_positions, d_model))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: Tensor, offset: int = 0) -> Tensor:
        length = x.shape[1]
        if offset + length > self.max_positions:
            raise ValueError(f"sequence of {offset + length} positions exceeds max_positions={self.max_positions}")
        return x + self.weight[offset : offset + length]
