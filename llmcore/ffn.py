"""Position-wise feed-forward networks (逐位置前馈网络)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "get_activation", "FeedForward", "GatedFeedForward", "gated_hidden_size"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


def optional_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` when ``p == 0`` (callers also skip it in eval mode: a
    no-op module still costs a call on every layer of every generated token)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """Look up an activation by name; an unknown name raises an error listing the known ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}") from None


class FeedForward(nn.Module):
    """``down_proj(dropout(act(up_proj(x))))``, applied to every position independently.

    The 2017 model uses ReLU and ``d_ff = 4·d_model`` (512 → 2048 → 512), two linear maps with
    biases: FFN(x) = max(0, xW₁ + b₁)W₂ + b₂.

    Shapes: ``[..., d_model] → [..., d_model]``.
    """

    def __init__(
        self, d_model: int, d_ff: int, *, activation: str = "relu", bias: bool = True, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.activation = get_activation(activation)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = optional_dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.activation(self.up_proj(x))
        return self.down_proj(self.dropout(hidden) if self.training else hidden)


def gated_hidden_size(d_model: int, *, multiple_of: int = 256, multiplier: float | None = None) -> int:
    """Hidden width of a gated FFN with the parameter count of a ``4·d`` MLP (LLaMA's rule).

    A gated FFN has three matrices instead of two, so the width shrinks to ``2/3 · 4d = 8d/3``,
    optionally scaled by ``multiplier`` (LLaMA 2 70B: 1.3, LLaMA 3: 1.3) and rounded *up* to a
    multiple of ``multiple_of`` for efficient matrix shapes. LLaMA-7B: d=4096 → 11008.
    """
    if d_model <= 0 or multiple_of <= 0:
        raise ValueError(f"d_model and multiple_of must be positive, got {d_model} and {multiple_of}")
    hidden = int(2 * 4 * d_model / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


class GatedFeedForward(nn.Module):
    """Gated linear unit FFN: ``down_proj(act(gate_proj(x)) ⊙ up_proj(x))`` (Shazeer, 2020).

    SwiGLU (``act = silu``: PaLM, LLaMA, Qwen, Mistral, Baichuan) and GeGLU (``act = gelu_tanh``:
    Gemma, T5 v1.1). The gate decides, per hidden unit, how much of the linear path passes.

    Shapes: ``[..., d_model] → [..., d_model]``.
    """

    def __init__(
        self, d_model: int, d_ff: int, *, activation: str = "silu", bias: bool = False, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.activation = get_activation(activation)
        self.gate_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.up_proj = nn.Linear(d_model, d_ff, bias=bias)
        self.down_proj = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = optional_dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.activation(self.gate_proj(x)) * self.up_proj(x)
        return self.down_proj(self.dropout(hidden) if self.training else hidden)
