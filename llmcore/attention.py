"""Scaled dot-product attention and multi-head attention (Vaswani et al., 2017, §3.2).

Shapes use ``B`` batch, ``H`` query heads, ``H_kv`` key/value heads, ``L`` query length, ``S`` key
length, ``D`` head dimension, ``d_model`` model width.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .cache import CrossAttentionCache, LayerKVCache
from .rope import Rotary2D, apply_rotary

__all__ = [
    "scaled_dot_product_attention",
    "split_heads",
    "merge_heads",
    "repeat_kv",
    "MultiHeadAttention",
    "record_attention",
]


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    mask: Tensor | None = None,
    bias: Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    return_weights: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(Q Kᵀ / √D + bias, masked) · V  (缩放点积注意力).

    Args:
        query: ``[..., L, D]``.
        key: ``[..., S, D]``.
        value: ``[..., S, D_v]``.
        mask: boolean, broadcastable to ``[..., L, S]``; ``True`` = may attend. Masked scores are set
            to −∞ *before* the softmax, so masked keys get exactly zero weight.
        bias: additive scores broadcastable to ``[..., L, S]`` (ALiBi, T5 relative buckets), added
            after scaling.
        scale: defaults to ``1/√D`` - without it the dot products grow like √D and the softmax
            saturates.
        dropout_p: dropout on the attention weights (training only; pass 0 in eval).
        return_weights: also return the ``[..., L, S]`` attention weights.

    A query whose keys are all masked gets all-zero weights and a zero output (as PyTorch's fused
    kernels do) instead of NaN, so padded query rows never poison a batch.
    """
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(f"query and key head dims differ: {query.shape[-1]} vs {key.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"key and value lengths differ: {key.shape[-2]} vs {value.shape[-2]}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean (True = attend), got {mask.dtype}")
        # A row with no visible key would be softmax(-inf, ..., -inf) = NaN; unmask it for the softmax
        # and zero its weights afterwards.
        has_visible_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~(mask | ~has_visible_key), float("-inf"))
        weights = torch.softmax(scores, dim=-1).masked_fill(~has_visible_key, 0.0)
    else:
        weights = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    output = torch.matmul(weights, value)
    return (output, weights) if return_weights else output


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """``[B, L, n_heads·D]`` → ``[B, n_heads, L, D]``: the last dim is ``n_heads`` blocks of ``D``."""
    batch, length, width = x.shape
    if width % n_heads:
        raise ValueError(f"width {width} is not divisible by n_heads={n_heads}")
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """``[B, H, L, D]`` → ``[B, L, H·D]``, the inverse of :func:`split_heads`."""
    batch, n_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * head_dim)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """``[B, H_kv, S, D]`` → ``[B, H_kv·n_rep, S, D]`` for grouped-query attention.

    Key/value head ``j`` serves query heads ``j·n_rep … j·n_rep + n_rep − 1`` (repeat_interleave,
    the layout of LLaMA 2/3 and Hugging Face checkpoints).
    """
    return x if n_rep == 1 else x.repeat_interleave(n_rep, dim=1)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (多头注意力) with optional grouped-query / multi-query key-value heads.

    ``n_kv_heads = n_heads`` is the 2017 multi-head attention, ``1 < n_kv_heads < n_heads`` GQA
    (LLaMA 2 70B, LLaMA 3), ``n_kv_heads = 1`` MQA (PaLM, Gemma 2B, ChatGLM2).

    Module names follow Hugging Face (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) so checkpoints
    map without glue.

    Args:
        d_model: model width.
        n_heads: query heads.
        n_kv_heads: key/value heads; must divide ``n_heads``. Defaults to ``n_heads``.
        head_dim: per-head width, defaults to ``d_model // n_heads``.
        bias: bias on the query/key/value projections (the 2017 model and BERT: yes; LLaMA: no;
            Qwen: yes).
        out_bias: bias on the output projection, defaults to ``bias`` (Qwen: no).
        dropout: dropout on attention weights.
        scale: score scale, defaults to ``1/√head_dim`` (T5 folds it into its initialisation: 1.0).
        rotary_interleaved: pair layout of the RoPE tables passed to :meth:`forward`.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int | None = None,
        *,
        head_dim: int | None = None,
        bias: bool = True,
        out_bias: bool | None = None,
        dropout: float = 0.0,
        scale: float | None = None,
        rotary_interleaved: bool = False,
    ) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if n_heads <= 0 or n_kv_heads <= 0:
            raise ValueError(f"n_heads and n_kv_heads must be positive, got {n_heads} and {n_kv_heads}")
        if head_dim is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; pass head_dim explicitly")
            head_dim = d_model // n_heads
        if n_heads % n_kv_heads:
            raise ValueError(f"n_kv_heads={n_kv_heads} must divide n_heads={n_heads}")
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = head_dim
        self.dropout = dropout
        self.scale = scale
        self.rotary_interleaved = rotary_interleaved
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * head_dim, d_model, bias=bias if out_bias is None else out_bias)
        self.weight_sink: list[Tensor] | None = None

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        mask: Tensor | None = None,
        bias: Tensor | None = None,
        *,
        rotary: tuple[Tensor, Tensor] | Rotary2D | None = None,
        query_scale: Tensor | None = None,
        is_causal: bool = False,
        cache: LayerKVCache | CrossAttentionCache | None = None,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``x`` to ``context``.

        Args:
            x: ``[B, L, d_model]`` queries.
            context: ``[B, S, d_model]`` keys/values for cross-attention (编码器-解码器注意力);
                ``None`` for self-attention.
            mask: boolean, broadcastable to ``[B, H, L, S]``, ``True`` = may attend.
            bias: additive score bias broadcastable to ``[B, H, L, S]``.
            rotary: RoPE ``(cos, sin)`` tables ``[B, L, rotary_dim]`` (or ``[B, 1, L, rotary_dim]``) from
                :class:`llmcore.rope.RotaryEmbedding`, applied to queries and keys (self-attention),
                or a :class:`llmcore.rope.Rotary2D` (ChatGLM-6B's two position streams).
            query_scale: ``[L]`` or ``[B, L]`` multipliers of the queries (Qwen's LogN scaling).
            is_causal: apply the causal mask (``L == S``) on top of ``mask``; with no ``mask`` and no
                ``bias`` this takes PyTorch's fused causal kernel without building a mask.
            cache: a :class:`llmcore.cache.LayerKVCache` for self-attention (the new keys/values are
                appended and attention sees all of them), or a
                :class:`llmcore.cache.CrossAttentionCache` for cross-attention (``context`` is
                projected once, then reused).
            return_weights: also return the ``[B, H, L, S]`` weights.

        Returns:
            ``[B, L, d_model]`` (and the weights if asked).

        Without ``return_weights`` (or :func:`record_attention`) the product runs in
        ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels, grouped heads without
        copies); with them it runs in :func:`scaled_dot_product_attention`, the readable reference.
        """
        cross = isinstance(cache, CrossAttentionCache)
        q, k, v = self._project(x, context, cache if cross else None)
        if rotary is not None:
            q, k = self._rotate(q, k, rotary)
        if query_scale is not None:
            q = q * query_scale.to(q.dtype).reshape(-1, 1, q.shape[2], 1)
        if cross:
            if not cache.filled:
                cache.store(k, v)
        elif cache is not None:
            k, v = cache.update(k, v)
        recording = return_weights or self.weight_sink is not None
        if is_causal and (mask is not None or bias is not None or recording):
            causal = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool, device=q.device).tril(k.shape[2] - q.shape[2])
            mask, is_causal = (causal if mask is None else mask & causal), False
        dropout_p = self.dropout if self.training else 0.0
        if recording:
            n_rep = self.n_heads // self.n_kv_heads
            out, weights = scaled_dot_product_attention(
                q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask, bias,
                scale=self.scale, dropout_p=dropout_p, return_weights=True,
            )
            if self.weight_sink is not None:
                self.weight_sink.append(weights.detach())
        else:
            if bias is not None:
                scores_mask = bias.to(q.dtype) if mask is None else bias.to(q.dtype).masked_fill(~mask, float("-inf"))
            else:
                scores_mask = mask
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=scores_mask, dropout_p=dropout_p, is_causal=is_causal, scale=self.scale,
                enable_gqa=self.n_heads != self.n_kv_heads,
            )
        out = self.o_proj(merge_heads(out))
        return (out, weights) if return_weights else out

    def _project(self, x: Tensor, context: Tensor | None, cross_cache: CrossAttentionCache | None) -> tuple[Tensor, ...]:
        """Queries ``[B, H, L, D]``, keys and values ``[B, H_kv, S, D]`` (from the cache if filled)."""
        q = split_heads(self.q_proj(x), self.n_heads)
        if cross_cache is not None and cross_cache.filled:
            assert cross_cache.keys is not None and cross_cache.values is not None
            return q, cross_cache.keys, cross_cache.values
        source = x if context is None else context
        return q, split_heads(self.k_proj(source), self.n_kv_heads), split_heads(self.v_proj(source), self.n_kv_heads)

    def _rotate(self, q: Tensor, k: Tensor, rotary: tuple[Tensor, Tensor] | Rotary2D) -> tuple[Tensor, Tensor]:
        """RoPE on queries ``[B, H, L, D]`` and keys ``[B, H_kv, L, D]``."""
        if isinstance(rotary, Rotary2D):
            return rotary.apply(q, interleaved=self.rotary_interleaved), rotary.apply(k, interleaved=self.rotary_interleaved)
        cos, sin = rotary
        if q.shape[2] == k.shape[2] == 1:
            # Decoding one token: rotating queries and keys together halves the operations, which
            # dominate at this size (for long inputs the concatenation's copy would not pay).
            rotated = apply_rotary(torch.cat([q, k], dim=1), cos, sin, interleaved=self.rotary_interleaved)
            return rotated[:, : self.n_heads], rotated[:, self.n_heads :]
        return (
            apply_rotary(q, cos, sin, interleaved=self.rotary_interleaved),
            apply_rotary(k, cos, sin, interleaved=self.rotary_interleaved),
        )


@contextmanager
def record_attention(model: nn.Module) -> Iterator[dict[str, list[Tensor]]]:
    """Collect the attention weights of every :class:`MultiHeadAttention` inside ``model``.

    Yields a dict from module name (e.g. ``"decoder_layers.1.cross_attn"``) to the list of
    ``[B, H, L, S]`` weight tensors of each call made while the context is open::

        with record_attention(model) as maps:
            model(src, tgt)
        plt.imshow(maps["decoder_layers.0.cross_attn"][0][0, 0])
    """
    recorded: dict[str, list[Tensor]] = {}
    modules = [(name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadAttention)]
    try:
        for name, module in modules:
            module.weight_sink = recorded.setdefault(name, [])
        yield recorded
    finally:
        for _, module in modules:
            module.weight_sink = None
