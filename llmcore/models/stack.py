"""The building blocks every model of the zoo is assembled from.

:class:`TransformerLayer` is the one configurable block (pre-, post-, parallel and DeepNorm wiring;
optional cross-attention; MLP, gated or mixture-of-experts FFN). :class:`Embeddings` turns ids into
the residual stream with whichever absolute position scheme the config names, and
:class:`PositionContext` holds what relative schemes (RoPE, ALiBi, LogN) hand to every layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .. import masks
from ..alibi import alibi_bias, alibi_slopes
from ..attention import MultiHeadAttention
from ..cache import CrossAttentionCache, LayerKVCache
from ..deepnorm import deepnorm_residual
from ..embeddings import shrink_embedding_gradient
from ..ffn import FeedForward, GatedFeedForward, optional_dropout
from ..long_context import logn_scale
from ..norms import LayerNorm, RMSNorm
from ..positions import sinusoidal_position_encoding
from ..rope import Rotary2D, RotaryEmbedding
from .config import ModelConfig

__all__ = [
    "init_weights", "make_norm", "make_ffn", "TransformerLayer", "Embeddings", "PositionContext", "layer_mask_mod",
    "keep_mask", "causal_without_mask",
]


def init_weights(module: nn.Module) -> None:
    """The GPT-2/BERT initialisation every zoo model starts from: linear, embedding and convolution
    weights ~ N(0, 0.02), biases 0; norms keep their 1/0 (use with ``model.apply``)."""
    if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d)):
        nn.init.normal_(module.weight, std=0.02)
        if not isinstance(module, nn.Embedding) and module.bias is not None:
            nn.init.zeros_(module.bias)


def make_norm(config: ModelConfig, width: int | None = None) -> nn.Module:
    """The config's norm over ``width`` (default ``hidden_size``)."""
    width = config.hidden_size if width is None else width
    if config.norm == "rmsnorm":
        return RMSNorm(width, config.norm_eps, unit_offset=config.norm_unit_offset)
    return LayerNorm(width, config.norm_eps, bias=config.norm_bias)


def make_ffn(config: ModelConfig) -> nn.Module:
    """MLP, gated FFN, or - when ``n_experts > 0`` - a sparse mixture of experts."""
    if config.n_experts:
        from ..moe import MixtureOfExperts

        return MixtureOfExperts(
            config.hidden_size,
            config.intermediate_size,
            n_experts=config.n_experts,
            top_k=config.experts_per_token,
            activation=config.activation,
        )
    if config.ffn == "gated":
        return GatedFeedForward(
            config.hidden_size, config.intermediate_size, activation=config.activation, bias=config.mlp_bias
        )
    return FeedForward(config.hidden_size, config.intermediate_size, activation=config.activation, bias=config.mlp_bias)


def make_attention(config: ModelConfig) -> MultiHeadAttention:
    return MultiHeadAttention(
        config.hidden_size,
        config.n_heads,
        config.resolved_kv_heads,
        head_dim=config.resolved_head_dim,
        bias=config.qkv_bias,
        out_bias=config.o_bias,
        dropout=config.dropout,
        scale=config.attention_scale,
        rotary_interleaved=config.rope_interleaved,
    )


class TransformerLayer(nn.Module):
    """One block: self-attention, optional cross-attention, FFN, each with its norm and residual.

    The wiring follows ``config.block`` (see :class:`ModelConfig`). Submodules: ``self_attn``,
    ``self_attn_norm``, ``cross_attn``/``cross_attn_norm`` (encoder–decoder only), ``ffn``,
    ``ffn_norm`` (absent in the parallel block, which normalises once), and with
    ``sandwich_norm`` also ``self_attn_out_norm``/``ffn_out_norm``.

    ``self_attention`` replaces the standard attention for families whose attention differs (e.g.
    DeBERTa's disentangled attention); keyword arguments of :meth:`forward` beyond the documented
    ones are passed to it.

    Shapes: ``x [B, L, d] → [B, L, d]``; ``memory [B, S, d]``.
    """

    def __init__(
        self, config: ModelConfig, *, cross_attention: bool = False, self_attention: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.block = config.block
        self.alpha = config.residual_alpha
        self.self_attn = self_attention if self_attention is not None else make_attention(config)
        self.self_attn_norm = make_norm(config)
        if cross_attention:
            if config.block in ("parallel", "deepnorm"):
                raise ValueError(f"ModelConfig.block={config.block!r} is not defined for cross-attention layers")
            self.cross_attn = make_attention(config)
            self.cross_attn_norm = make_norm(config)
        self.ffn = make_ffn(config)
        if config.block != "parallel":
            self.ffn_norm = make_norm(config)
        self.self_attn_out_norm = make_norm(config) if config.sandwich_norm else None
        self.ffn_out_norm = make_norm(config) if config.sandwich_norm else None
        self.dropout = optional_dropout(config.dropout)

    def _dropped(self, x: Tensor) -> Tensor:
        # Dropout is the identity in eval mode; skipping the call matters when decoding token by token.
        return self.dropout(x) if self.training else x

    def _sublayer(self, x: Tensor, norm: nn.Module, out_norm: nn.Module | None, fn, *args, **kwargs) -> Tensor:
        """Wrap ``fn(h, *args, **kwargs)`` in its norm and residual as ``config.block`` says."""
        if self.block == "pre":
            out = fn(norm(x), *args, **kwargs)
            return x + self._dropped(out if out_norm is None else out_norm(out))
        if self.block == "post":
            out = fn(x, *args, **kwargs)
            return norm(x + self._dropped(out if out_norm is None else out_norm(out)))

        def branch(normed: Tensor) -> Tensor:
            out = fn(normed, *args, **kwargs)
            return self._dropped(out if out_norm is None else out_norm(out))

        return deepnorm_residual(x, branch, norm, self.alpha)

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        memory: Tensor | None = None,
        cross_mask: Tensor | None = None,
        cross_bias: Tensor | None = None,
        cache: LayerKVCache | None = None,
        cross_cache: CrossAttentionCache | None = None,
        is_causal: bool = False,
        **attention_kwargs,
    ) -> Tensor:
        """``cache``/``cross_cache`` (see :mod:`llmcore.cache`) make the layer incremental;
        ``is_causal`` adds the causal mask to ``mask`` (a fused kernel when ``mask`` is ``None``)."""
        if cache is not None:
            attention_kwargs["cache"] = cache
        if is_causal:
            attention_kwargs["is_causal"] = True
        if self.block == "parallel":
            normed = self.self_attn_norm(x)
            attended = self.self_attn(normed, mask=mask, **attention_kwargs)
            return x + self._dropped(attended) + self._dropped(self.ffn(normed))
        x = self._sublayer(x, self.self_attn_norm, self.self_attn_out_norm, self.self_attn, mask=mask, **attention_kwargs)
        if memory is not None:
            if not hasattr(self, "cross_attn"):
                raise ValueError("memory was given to a layer built without cross_attention")
            x = self._sublayer(
                x, self.cross_attn_norm, None, self.cross_attn, memory, mask=cross_mask, bias=cross_bias, cache=cross_cache
            )
        return self._sublayer(x, self.ffn_norm, self.ffn_out_norm, self.ffn)


class Embeddings(nn.Module):
    """Token ids → residual stream: token table, absolute positions, scale and norm as configured.

    Submodules: ``embed_tokens`` ``[vocab, embedding_size or d]``, ``embed_positions`` (learned
    positions), ``embed_types`` (BERT segments), ``embed_norm`` (BLOOM/BERT), ``embed_proj``
    (ALBERT/ELECTRA factorised embeddings: ``embedding_size → d``), ``embed_block_positions``
    (GLM-10B's second learned table, indexed by ``block_position_ids``; 0 where none is given).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        width = config.embedding_size or config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, width, padding_idx=None)
        if config.position == "learned":
            self.embed_positions = nn.Embedding(config.max_positions + config.position_offset, width)
            if config.position_2d:
                self.embed_block_positions = nn.Embedding(config.max_positions + config.position_offset, width)
        if config.position == "sinusoidal":
            self.register_buffer(
                "sinusoid", sinusoidal_position_encoding(config.max_positions, width), persistent=False
            )
        if config.type_vocab_size:
            self.embed_types = nn.Embedding(config.type_vocab_size, width)
        if config.embedding_norm:
            self.embed_norm = make_norm(config, width)
        if config.embedding_size is not None and config.embedding_size != config.hidden_size:
            self.embed_proj = nn.Linear(config.embedding_size, config.hidden_size)
        self.dropout = optional_dropout(config.dropout)

    def forward(
        self,
        input_ids: Tensor,
        position_ids: Tensor,
        token_type_ids: Tensor | None = None,
        block_position_ids: Tensor | None = None,
    ) -> Tensor:
        if input_ids.is_floating_point():
            raise TypeError(f"input_ids must be integers, got {input_ids.dtype}")
        config = self.config
        h = self.embed_tokens(input_ids)
        if config.embedding_grad_shrink is not None:
            h = shrink_embedding_gradient(h, config.embedding_grad_shrink)
        if config.embedding_scale is not None:
            # Gemma multiplies by √d rounded to the activation dtype; doing the same keeps bf16 exact.
            h = h * torch.tensor(config.embedding_scale, dtype=h.dtype)
        if config.position in ("learned", "sinusoidal") and int(position_ids.max()) >= config.max_positions:
            raise ValueError(f"position {int(position_ids.max())} exceeds max_positions={config.max_positions}")
        if config.position == "learned":
            h = h + self.embed_positions(position_ids + config.position_offset)
            if hasattr(self, "embed_block_positions"):
                blocks = torch.zeros_like(position_ids) if block_position_ids is None else block_position_ids
                if int(blocks.max()) >= config.max_positions:
                    raise ValueError(f"block position {int(blocks.max())} exceeds max_positions={config.max_positions}")
                h = h + self.embed_block_positions(blocks + config.position_offset)
        elif config.position == "sinusoidal":
            h = h + self.sinusoid[position_ids].to(h.dtype)
        if config.type_vocab_size:
            types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
            h = h + self.embed_types(types)
        if config.embedding_norm:
            h = self.embed_norm(h)
        if self.training:
            h = self.dropout(h)
        if hasattr(self, "embed_proj"):
            h = self.embed_proj(h)
        return h


@dataclass
class PositionContext:
    """Per-forward position information shared by all layers: RoPE tables, ALiBi bias, LogN scale."""

    rotary: tuple[Tensor, Tensor] | Rotary2D | None = None
    bias: Tensor | None = None
    query_scale: Tensor | None = None

    def attention_kwargs(self) -> dict:
        kwargs: dict = {}
        if self.rotary is not None:
            kwargs["rotary"] = self.rotary
        if self.bias is not None:
            kwargs["bias"] = self.bias
        if self.query_scale is not None:
            kwargs["query_scale"] = self.query_scale
        return kwargs


class RelativePositions(nn.Module):
    """RoPE tables, ALiBi slopes and LogN factors for a config (whichever it uses)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        if config.position == "rope":
            self.rotary = RotaryEmbedding(
                # 2-D RoPE: each half of the head is one full rotary of its own stream.
                config.resolved_head_dim // 2 if config.position_2d else config.resolved_rotary_dim,
                config.rope_theta,
                interleaved=config.rope_interleaved,
                scaling=config.rope_scaling,
            )
        if config.position == "alibi":
            self.register_buffer("slopes", alibi_slopes(config.n_heads), persistent=False)

    def forward(
        self, position_ids: Tensor, key_length: int, dtype: torch.dtype, block_position_ids: Tensor | None = None
    ) -> PositionContext:
        """``block_position_ids [B, L]`` is the second stream of ``position_2d`` (zeros when ``None``)."""
        context = PositionContext()
        if self.config.position == "rope" and self.config.position_2d:
            blocks = torch.zeros_like(position_ids) if block_position_ids is None else block_position_ids
            context.rotary = Rotary2D(self.rotary(position_ids, dtype), self.rotary(blocks, dtype))
        elif self.config.position == "rope":
            # Shaped [B, 1, L, rotary_dim] here once rather than in every layer.
            cos, sin = self.rotary(position_ids, dtype)
            context.rotary = (cos.unsqueeze(1), sin.unsqueeze(1))
        if self.config.position == "alibi":
            query_length = position_ids.shape[1]
            context.bias = alibi_bias(self.slopes, query_length, key_length, q_offset=key_length - query_length).to(dtype)
        if self.config.logn_trained_length is not None:
            context.query_scale = logn_scale(position_ids, self.config.logn_trained_length)
        return context


def keep_mask(attention_mask: Tensor | None, batch: int, length: int, device: torch.device) -> Tensor:
    """Normalise a Hugging Face-style ``attention_mask`` (``[B, S]``, 1/True = real token) to bool."""
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    if attention_mask.shape != (batch, length):
        raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, expected {(batch, length)}")
    return attention_mask.bool()


def causal_without_mask(
    past: int, query_length: int, *, within_window: bool = True, rolling_buffer: bool = False
) -> tuple[None, bool] | None:
    """``(None, is_causal)`` when a causal layer over unpadded rows needs no mask tensor, else ``None``.

    ``query_length`` new queries follow ``past`` cached positions. A block starting at position 0
    whose keys all lie within the window runs PyTorch's fused causal kernel; one new token may see
    every key handed to it - all of them within the window, or a rolling buffer (``rolling_buffer``),
    which after the write holds exactly its window.
    """
    if past == 0 and within_window:
        return None, query_length > 1
    if query_length == 1 and (within_window or rolling_buffer):
        return None, False
    return None


def layer_mask_mod(config: ModelConfig, kind: str, *, causal: bool) -> masks.MaskMod:
    """The mask_mod of one layer kind (``full``, ``sliding``, ``strided``, ``fixed``) with this config's sizes."""
    return masks.layer_kind_mask(kind, causal=causal, window=config.sliding_window, block=config.sparse_block)
