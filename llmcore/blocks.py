"""Encoder and decoder blocks of the 2017 Transformer: sublayers wrapped in "Add & Norm".

Post-norm (后归一化, the 2017 paper and BERT): ``x = LayerNorm(x + Dropout(sublayer(x)))``.
Pre-norm (前归一化, GPT-2, LLaMA): ``x = x + Dropout(sublayer(LayerNorm(x)))``; it trains deep stacks
without warm-up tricks but needs a final norm after the last block.
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor, nn

from .attention import MultiHeadAttention
from .ffn import FeedForward
from .norms import LayerNorm

__all__ = ["residual", "EncoderBlock", "DecoderBlock"]


def residual(x: Tensor, sublayer: Callable[[Tensor], Tensor], norm: nn.Module, dropout: nn.Module, norm_first: bool) -> Tensor:
    """One residual sublayer with its norm, post-norm (``norm_first=False``) or pre-norm."""
    if norm_first:
        return x + dropout(sublayer(norm(x)))
    return norm(x + dropout(sublayer(x)))


class EncoderBlock(nn.Module):
    """Self-attention then a feed-forward network, each with a residual connection and a LayerNorm.

    Shapes: ``[B, S, d_model] → [B, S, d_model]``; ``mask`` broadcastable to ``[B, H, S, S]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.self_attn_norm = LayerNorm(d_model, norm_eps)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.ffn_norm = LayerNorm(d_model, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        x = residual(x, lambda h: self.self_attn(h, mask=mask), self.self_attn_norm, self.dropout, self.norm_first)
        return residual(x, self.ffn, self.ffn_norm, self.dropout, self.norm_first)


class DecoderBlock(nn.Module):
    """Masked self-attention, cross-attention to the encoder output, then a feed-forward network.

    The self-attention mask must be causal (a target token may not see the tokens it is trained to
    predict); cross-attention (交叉注意力) sees every real source token.

    Shapes: ``x [B, T, d_model]``, ``memory [B, S, d_model]`` → ``[B, T, d_model]``;
    ``self_mask`` broadcastable to ``[B, H, T, T]``, ``cross_mask`` to ``[B, H, T, S]``.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_ff: int,
        *,
        dropout: float = 0.0,
        norm_first: bool = False,
        norm_eps: float = 1e-5,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.self_attn_norm = LayerNorm(d_model, norm_eps)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn_norm = LayerNorm(d_model, norm_eps)
        self.ffn = FeedForward(d_model, d_ff, activation=activation, dropout=dropout)
        self.ffn_norm = LayerNorm(d_model, norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None, cross_mask: Tensor | None = None
    ) -> Tensor:
        x = residual(x, lambda h: self.self_attn(h, mask=self_mask), self.self_attn_norm, self.dropout, self.norm_first)
        x = residual(
            x, lambda h: self.cross_attn(h, memory, mask=cross_mask), self.cross_attn_norm, self.dropout, self.norm_first
        )
        return residual(x, self.ffn, self.ffn_norm, self.dropout, self.norm_first)
