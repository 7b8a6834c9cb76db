"""Position-wise feed-forward networks (逐位置前馈网络)."""

from __future__ import annotations

from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "get_activation", "FeedForward"]

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
}


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
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.dropout(self.activation(self.up_proj(x))))
