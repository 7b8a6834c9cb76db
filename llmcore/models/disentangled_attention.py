"""DeBERTa-v2/v3's disentangled attention (解耦注意力, He et al., 2021; He et al., 2023).

DeBERTa represents a token by two vectors, its content ``H`` and its position relative to the other
tokens, and scores a query ``q`` against a key ``k`` with three terms (paper eq. 4, p2c indexed as in
the released code, see below)::

    A[q, k] = Q_q·K_kᵀ                      content → content (c2c)
            + Q_q·(K^r_{δ(q,k)})ᵀ           content → position (c2p)
            + K_k·(Q^r_{δ(q,k)})ᵀ           position → content (p2c)
    scaled by 1/√(3·D)                      (1/√((1 + number of position terms)·D))

``K^r = W_k·P`` and ``Q^r = W_q·P`` are the shared relative-position table ``P`` (``2·span`` rows,
LayerNorm'd once per forward, 共享相对位置嵌入) pushed through the layer's own key and query
projections (``share_att_key``). ``δ(q,k) = span + bucket(q − k)`` clamped to ``[0, 2·span)``, with
the log buckets of :func:`log_bucket_positions`: distances up to ``span/2`` are exact, longer ones
share logarithmically wider buckets up to ``max_distance``.

The p2c index deserves care. The reference code computes the key-side scores ``K·(Q^r)ᵀ`` as a
``[key, table]`` matrix, gathers it with ``span − bucket(k − q)`` and transposes; bucket is odd
(``bucket(−x) = −bucket(x)``), so this is ``δ(q,k)`` of the c2p term, read from the key's row. Read
literally, the paper's eq. 4 indexes p2c with ``δ(k,q) = span + (k − q)``, the opposite sign; the
released code, and so every checkpoint, uses ``δ(q,k)`` (``tests/test_zoo_deberta.py`` shows the
literal reading disagrees). DeBERTa adds no absolute position to the input
(``position_biased_input=False``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..attention import MultiHeadAttention, merge_heads, scaled_dot_product_attention, split_heads
from ..ffn import get_activation
from .config import ModelConfig
from .encoder import EncoderModel, MaskedLM
from .stack import make_norm

__all__ = ["log_bucket_positions", "relative_position_buckets", "DisentangledSelfAttention", "NGramConv",
           "DisentangledEncoder", "DisentangledMaskedLM"]


def log_bucket_positions(relative: Tensor, buckets: int, max_distance: int) -> Tensor:
    """DeBERTa's log buckets of signed relative positions (``make_log_bucket_position``).

    With ``mid = buckets // 2``: ``|r| ≤ mid`` is kept exactly; beyond, ``sign(r)·(mid +
    ⌈log(|r|/mid) / log((max_distance−1)/mid) · (mid−1)⌉)``, so ``|r| = max_distance − 1`` lands
    on ``buckets − 1``. Computed in float32 like the reference, so bucket edges agree exactly.
    Integer tensor of any shape → same shape (long).
    """
    mid = buckets // 2
    sign = torch.sign(relative)
    near = (relative < mid) & (relative > -mid)
    magnitude = torch.where(near, torch.full_like(relative, mid - 1), relative.abs())
    log_position = (
        torch.ceil(torch.log(magnitude / mid) / torch.log(torch.tensor((max_distance - 1) / mid)) * (mid - 1)) + mid
    )
    bucketed = torch.where(magnitude <= mid, relative.to(log_position.dtype), log_position * sign)
    return bucketed.long()


def relative_position_buckets(length: int, buckets: int, max_distance: int, device: torch.device | None = None) -> Tensor:
    """``bucket(q − k)`` for every query ``q`` and key ``k`` of a sequence: ``[L, L]`` long."""
    positions = torch.arange(length, device=device)
    return log_bucket_positions(positions[:, None] - positions[None, :], buckets, max_distance)


class DisentangledSelfAttention(MultiHeadAttention):
    """Disentangled self-attention (c2c + c2p + p2c), DeBERTa-v2's ``share_att_key`` variant.

    The projections are :class:`MultiHeadAttention`'s (``q_proj``/``k_proj``/``v_proj``/``o_proj``,
    all with biases); the position terms reuse ``q_proj``/``k_proj`` on the relative table, so the
    module has no parameters of its own. ``terms`` ⊆ {``c2p``, ``p2c``} (released models: both).

    ``forward(x [B, L, d], mask [B, 1, L, L] bool, relative_positions [L, L] = bucket(q − k),
    relative_embeddings [2·span, d])`` → ``[B, L, d]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(
            config.hidden_size,
            config.n_heads,
            head_dim=config.resolved_head_dim,
            bias=True,
            dropout=config.dropout,
        )
        self.terms = tuple(config.disentangled_terms)
        self.factor = 1 + len(self.terms)

    def forward(  # type: ignore[override]
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        relative_positions: Tensor,
        relative_embeddings: Tensor,
        return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        batch, length, _ = x.shape
        q = split_heads(self.q_proj(x), self.n_heads)
        k = split_heads(self.k_proj(x), self.n_heads)
        v = split_heads(self.v_proj(x), self.n_heads)
        span = relative_embeddings.shape[0] // 2
        table = F.dropout(relative_embeddings, p=self.dropout, training=self.training).unsqueeze(0)
        expand = (batch, self.n_heads, length, length)
        position_scores = torch.zeros((), dtype=q.dtype, device=q.device)
        if "c2p" in self.terms:
            key_positions = split_heads(self.k_proj(table), self.n_heads)  # [1, H, 2·span, D]
            c2p = torch.matmul(q, key_positions.transpose(-1, -2))  # [B, H, L(query), 2·span]
            index = (relative_positions + span).clamp(0, 2 * span - 1)
            position_scores = position_scores + torch.gather(c2p, -1, index.expand(expand))
        if "p2c" in self.terms:
            query_positions = split_heads(self.q_proj(table), self.n_heads)
            p2c = torch.matmul(k, query_positions.transpose(-1, -2))  # [B, H, L(key), 2·span]
            # Row k, column span − bucket(k − q): the reference's gather, then back to [query, key].
            index = (span - relative_positions).clamp(0, 2 * span - 1)
            position_scores = position_scores + torch.gather(p2c, -1, index.expand(expand)).transpose(-1, -2)
        scale = 1.0 / math.sqrt(self.head_dim * self.factor)
        out, weights = scaled_dot_product_attention(
            q, k, v, mask, position_scores * scale, scale=scale,
            dropout_p=self.dropout if self.training else 0.0, return_weights=True,
        )
        if self.weight_sink is not None:
            self.weight_sink.append(weights.detach())
        out = self.o_proj(merge_heads(out))
        return (out, weights) if return_weights else out


class NGramConv(nn.Module):
    """DeBERTa-v2's n-gram induced input encoding (nGiE): a convolution beside the first layer.

    ``norm(layer_out + act(conv(embedded)))`` with the convolution's output and the result zeroed
    at padding, so that the first layer also sees local n-gram structure (DeBERTa-v2 release
    notes; xlarge/xxlarge use kernel 3). Shapes: ``embedded, layer_out [B, L, d]``, ``keep [B, L]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        kernel = config.conv_kernel_size
        self.conv = nn.Conv1d(config.hidden_size, config.hidden_size, kernel, padding=(kernel - 1) // 2)
        self.activation = get_activation(config.activation)
        self.norm = make_norm(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, embedded: Tensor, layer_out: Tensor, keep: Tensor) -> Tensor:
        real = keep.unsqueeze(-1).to(layer_out.dtype)
        local = self.conv(embedded.transpose(1, 2)).transpose(1, 2) * real
        return self.norm(layer_out + self.activation(self.dropout(local))) * real


class DisentangledEncoder(EncoderModel):
    """DeBERTa-v2/v3's encoder: :class:`EncoderModel` with disentangled attention in every layer.

    Extra submodules: ``relative_embeddings`` (``[2·relative_buckets, d]``, shared by all layers),
    ``relative_norm`` (its LayerNorm, ``norm_rel_ebd="layer_norm"``) and, with
    ``conv_kernel_size``, ``conv`` (:class:`NGramConv`). The embeddings are zeroed at padding, as
    in the reference, which the convolution relies on.
    """

    positions = ("disentangled",)

    def __init__(self, config: ModelConfig) -> None:
        super().__init__(config)
        self.relative_embeddings = nn.Embedding(2 * config.relative_buckets, config.hidden_size)
        self.relative_norm = make_norm(config)
        if config.conv_kernel_size:
            self.conv = NGramConv(config)

    def build_attention(self) -> nn.Module:
        return DisentangledSelfAttention(self.config)

    def embed(self, input_ids: Tensor, keep: Tensor, position_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        h = super().embed(input_ids, keep, position_ids, token_type_ids)
        return h * keep.unsqueeze(-1).to(h.dtype)

    def run_layers(self, h: Tensor, keep: Tensor) -> Tensor:
        mask = self.attention_mask(keep)
        kwargs = dict(
            relative_positions=relative_position_buckets(
                h.shape[1], self.config.relative_buckets, self.config.relative_max_distance, h.device
            ),
            relative_embeddings=self.relative_norm(self.relative_embeddings.weight),
        )
        embedded = h
        for index in range(self.config.n_layers):
            h = self.layer(index)(h, mask, **kwargs)
            if index == 0 and hasattr(self, "conv"):
                h = self.conv(embedded, h, keep)
        return h


class DisentangledMaskedLM(MaskedLM):
    """DeBERTa-v2/v3 with the masked-LM head (``DebertaV2ForMaskedLM``)."""

    encoder_class = DisentangledEncoder
