"""The encoder–decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017).

One readable model: embeddings scaled by √d_model plus the sinusoid, a stack of post-norm encoder
blocks, a stack of decoder blocks with causal self-attention and cross-attention, and an output
projection tied to the target embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from .blocks import DecoderBlock, EncoderBlock
from .embeddings import TokenEmbedding
from .masks import and_masks, causal_mask, dense_mask, padding_mask
from .norms import LayerNorm
from .positions import SinusoidalPositionalEncoding

__all__ = ["TransformerConfig", "Transformer", "TRANSFORMER_PRESETS"]


@dataclass
class TransformerConfig:
    """Hyper-parameters of the encoder–decoder; defaults are the paper's base model (~65M parameters).

    ``share_embeddings`` ties the source and target embeddings (the paper shares one vocabulary of
    37,000 BPE tokens for English–German); ``tie_output`` ties the target embedding to the
    pre-softmax projection.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 512
    n_heads: int = 8
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    d_ff: int = 2048
    dropout: float = 0.1
    max_positions: int = 512
    pad_id: int = 0
    share_embeddings: bool = False
    tie_output: bool = True
    norm_first: bool = False
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for field in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "d_ff", "max_positions"):
            if getattr(self, field) <= 0:
                raise ValueError(f"TransformerConfig.{field} must be positive, got {getattr(self, field)}")
        for field in ("n_encoder_layers", "n_decoder_layers"):
            if getattr(self, field) < 0:
                raise ValueError(f"TransformerConfig.{field} must be >= 0, got {getattr(self, field)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"TransformerConfig.n_heads={self.n_heads} must divide d_model={self.d_model}")
        if self.d_model % 2:
            raise ValueError(f"TransformerConfig.d_model must be even for the sinusoidal encoding, got {self.d_model}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError(
                "TransformerConfig.share_embeddings needs src_vocab_size == tgt_vocab_size, "
                f"got {self.src_vocab_size} and {self.tgt_vocab_size}"
            )
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(f"TransformerConfig.pad_id={self.pad_id} is outside the vocabulary")


TRANSFORMER_PRESETS: dict[str, dict] = {
    # Table 3 of the paper; vocabulary: the shared 37K BPE of WMT 2014 English–German.
    "base": dict(src_vocab_size=37000, tgt_vocab_size=37000, share_embeddings=True),
    "big": dict(
        src_vocab_size=37000, tgt_vocab_size=37000, share_embeddings=True, d_model=1024, n_heads=16, d_ff=4096, dropout=0.3
    ),
    "tiny": dict(
        src_vocab_size=32, tgt_vocab_size=32, d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64,
        dropout=0.0, max_positions=64,
    ),
}


def _check_ids(ids: Tensor, name: str) -> None:
    if ids.dim() != 2 or ids.is_floating_point():
        raise ValueError(f"{name} must be a [B, L] integer tensor, got {ids.dtype} of shape {tuple(ids.shape)}")


class Transformer(nn.Module):
    """Encoder–decoder Transformer.

    ``forward(src_ids [B, S], tgt_ids [B, T]) → logits [B, T, tgt_vocab]``, where ``tgt_ids`` are the
    decoder inputs (targets shifted right behind a start token: teacher forcing, 教师强制).
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.src_embed = TokenEmbedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = self.src_embed if c.share_embeddings else TokenEmbedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.positions = SinusoidalPositionalEncoding(c.max_positions, c.d_model)
        self.embed_dropout = nn.Dropout(c.dropout)
        block_args = dict(dropout=c.dropout, norm_first=c.norm_first, norm_eps=c.norm_eps)
        self.encoder_layers = nn.ModuleList(
            EncoderBlock(c.d_model, c.n_heads, c.d_ff, **block_args) for _ in range(c.n_encoder_layers)
        )
        self.decoder_layers = nn.ModuleList(
            DecoderBlock(c.d_model, c.n_heads, c.d_ff, **block_args) for _ in range(c.n_decoder_layers)
        )
        # Post-norm blocks end in a LayerNorm already; pre-norm stacks need one after the last block.
        self.encoder_norm = LayerNorm(c.d_model, c.norm_eps) if c.norm_first else nn.Identity()
        self.decoder_norm = LayerNorm(c.d_model, c.norm_eps) if c.norm_first else nn.Identity()
        self.lm_head = nn.Linear(c.d_model, c.tgt_vocab_size, bias=False)
        if c.tie_output:
            self.lm_head.weight = self.tgt_embed.weight

    def encode(self, src_ids: Tensor) -> Tensor:
        """``[B, S]`` source ids → ``[B, S, d_model]`` memory; padding (``pad_id``) is masked out."""
        _check_ids(src_ids, "src_ids")
        batch, src_len = src_ids.shape
        mask = dense_mask(padding_mask(src_ids != self.config.pad_id), batch, 1, src_len, src_len, device=src_ids.device)
        x = self.embed_dropout(self.positions(self.src_embed(src_ids)))
        for layer in self.encoder_layers:
            x = layer(x, mask)
        return self.encoder_norm(x)

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_ids: Tensor) -> Tensor:
        """Decoder inputs ``[B, T]`` and encoder memory ``[B, S, d_model]`` → logits ``[B, T, V]``.

        ``src_ids`` tells which memory positions are padding.
        """
        _check_ids(tgt_ids, "tgt_ids")
        batch, tgt_len = tgt_ids.shape
        src_len = src_ids.shape[1]
        pad = self.config.pad_id
        self_mask = dense_mask(
            and_masks(causal_mask, padding_mask(tgt_ids != pad)), batch, 1, tgt_len, tgt_len, device=tgt_ids.device
        )
        cross_mask = dense_mask(padding_mask(src_ids != pad), batch, 1, tgt_len, src_len, device=tgt_ids.device)
        x = self.embed_dropout(self.positions(self.tgt_embed(tgt_ids)))
        for layer in self.decoder_layers:
            x = layer(x, memory, self_mask, cross_mask)
        return self.lm_head(self.decoder_norm(x))

    def forward(self, src_ids: Tensor, tgt_ids: Tensor) -> Tensor:
        return self.decode(tgt_ids, self.encode(src_ids), src_ids)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "Transformer":
        """Build ``"base"``, ``"big"`` or ``"tiny"``; keyword overrides replace config fields."""
        if name not in TRANSFORMER_PRESETS:
            raise ValueError(f"unknown Transformer preset {name!r}; known: {sorted(TRANSFORMER_PRESETS)}")
        return cls(TransformerConfig(**{**TRANSFORMER_PRESETS[name], **overrides}))

    def num_parameters(self) -> int:
        """Distinct trainable parameters (tied matrices counted once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
