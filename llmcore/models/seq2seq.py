"""Encoder–decoder language models: the 2017 Transformer, T5, BART.

All of them are one :class:`Seq2SeqLM` built from a :class:`ModelConfig`: token embeddings (one table
for both stacks, as a rule), a bidirectional encoder of :class:`TransformerLayer`, a causal decoder whose layers also
attend to the encoder output (cross-attention), final norms as configured, and the language-model
head. What differs between the families is configuration: post-norm LayerNorm with sinusoidal
(2017) or learned (BART) positions, pre-norm RMSNorm with relative position buckets (T5).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import masks
from ..cache import KVCache
from ..relative_position import RelativePositionBias
from .config import ModelConfig
from .stack import Embeddings, TransformerLayer, causal_without_mask, init_weights, keep_mask, make_norm

__all__ = ["Seq2SeqLM"]

_POSITIONS = ("learned", "sinusoidal", "relative_buckets", "none")


def _check_config(config: ModelConfig) -> None:
    if config.position not in _POSITIONS:
        raise ValueError(f"ModelConfig.position={config.position!r} is not supported by Seq2SeqLM; use one of {list(_POSITIONS)}")
    if set(config.resolved_layer_kinds) != {"full"}:
        raise ValueError(f"ModelConfig.layer_kinds={config.layer_kinds} must be all 'full' in Seq2SeqLM")
    if config.logn_trained_length is not None:
        raise ValueError("ModelConfig.logn_trained_length is not supported by Seq2SeqLM")
    if config.norm_head:
        raise ValueError("ModelConfig.norm_head is not supported by Seq2SeqLM")
    if config.tie_word_embeddings and config.embedding_size not in (None, config.hidden_size):
        raise ValueError("ModelConfig.tie_word_embeddings needs embedding_size == hidden_size")


class Seq2SeqLM(nn.Module):
    """An encoder–decoder Transformer (编码器-解码器模型): Vaswani et al. 2017, T5, BART.

    Submodules: ``encoder_embeddings`` and ``decoder_embeddings`` (:class:`Embeddings`; with
    ``share_embeddings`` one token table, owned by the encoder side; each stack has its own
    positions and embedding norm, as BART does), ``encoder_positions``/``decoder_positions``
    (T5's :class:`RelativePositionBias`, with ``position="relative_buckets"`` only: bidirectional
    buckets for the encoder, causal ones for the decoder), ``encoder_layers`` (``n_layers`` × :class:`TransformerLayer`), ``decoder_layers``
    (``n_decoder_layers`` × :class:`TransformerLayer` with cross-attention), ``encoder_norm`` and
    ``decoder_norm`` (final norms or identity), ``lm_head`` (tied to the decoder's token table
    when configured) and, with ``final_logits_bias``, a buffer of that name ``[1, vocab]``.

    Shapes: ``input_ids [B, S]``, ``decoder_input_ids [B, T]`` → logits ``[B, T, vocab]``. Masks are
    Hugging Face-style ``[B, S]``/``[B, T]`` with 1/True at real tokens; positions run ``0 … L−1`` in
    every row (left padding shifts them, as in the reference implementations).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        _check_config(config)
        self.config = config
        self.encoder_embeddings = Embeddings(config)
        self.decoder_embeddings = Embeddings(config)
        if config.share_embeddings:
            self.decoder_embeddings.embed_tokens = self.encoder_embeddings.embed_tokens
        if config.position == "relative_buckets":
            sizes = dict(num_buckets=config.relative_buckets, max_distance=config.relative_max_distance)
            self.encoder_positions = RelativePositionBias(config.n_heads, bidirectional=True, **sizes)
            self.decoder_positions = RelativePositionBias(config.n_heads, bidirectional=False, **sizes)
        n_decoder_layers = config.n_decoder_layers or config.n_layers
        self.encoder_layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.n_layers))
        self.decoder_layers = nn.ModuleList(TransformerLayer(config, cross_attention=True) for _ in range(n_decoder_layers))
        self.encoder_norm = make_norm(config) if config.final_norm else nn.Identity()
        self.decoder_norm = make_norm(config) if config.final_norm else nn.Identity()
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        if config.final_logits_bias:
            self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))
        if config.tie_word_embeddings:
            self.lm_head.weight = self.decoder_embeddings.embed_tokens.weight
        self.apply(init_weights)

    @staticmethod
    def _positions(ids: Tensor) -> Tensor:
        if ids.dim() != 2:
            raise ValueError(f"token ids must be [B, L], got shape {tuple(ids.shape)}")
        batch, length = ids.shape
        return torch.arange(length, device=ids.device).expand(batch, length)

    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Source ids ``[B, S]`` (and their 0/1 mask) → the encoder output ("memory") ``[B, S, d]``."""
        positions = self._positions(src_ids)
        batch, length = src_ids.shape
        keep = keep_mask(src_mask, batch, length, src_ids.device)
        mask = masks.dense_mask(masks.padding_mask(keep), batch, 1, length, length, device=src_ids.device)
        h = self.encoder_embeddings(src_ids, positions)
        kwargs = {"bias": self.encoder_positions(length, length).to(h.dtype)} if hasattr(self, "encoder_positions") else {}
        for layer in self.encoder_layers:
            h = layer(h, mask, **kwargs)
        return self.encoder_norm(h)

    def decoder_hidden_states(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
    ) -> Tensor:
        """Decoder inputs ``[B, T]`` attending to ``memory [B, S, d]`` → the final-normalised ``[B, T, d]``."""
        if tgt_ids.dim() != 2:
            raise ValueError(f"token ids must be [B, L], got shape {tuple(tgt_ids.shape)}")
        batch, length = tgt_ids.shape
        if memory.dim() != 3 or memory.shape[0] != batch:
            raise ValueError(f"memory must be [B={batch}, S, d], got shape {tuple(memory.shape)}")
        past = 0 if cache is None else cache.length
        positions = torch.arange(past, past + length, device=tgt_ids.device).expand(batch, length)
        src_length = memory.shape[1]
        tgt_keep = keep_mask(tgt_mask, batch, length, tgt_ids.device)
        if cache is not None:
            if cache.cross is None or len(cache.layers) != len(self.decoder_layers):
                raise ValueError("the cache must come from KVCache.for_model(this model)")
            tgt_keep = cache.extend_keep(tgt_keep)
        src_keep = keep_mask(src_mask, batch, src_length, tgt_ids.device)
        unmasked = causal_without_mask(past, length) if bool(tgt_keep.all()) else None
        if unmasked is not None:
            self_mask, is_causal = unmasked
        else:
            self_mask, is_causal = masks.dense_mask(
                masks.and_masks(masks.causal_mask, masks.padding_mask(tgt_keep)),
                batch, 1, length, past + length, q_offset=past, device=tgt_ids.device,
            ), False
        cross_mask = None if bool(src_keep.all()) else masks.dense_mask(
            masks.padding_mask(src_keep), batch, 1, length, src_length, device=tgt_ids.device
        )
        h = self.decoder_embeddings(tgt_ids, positions)
        kwargs = {}
        if hasattr(self, "decoder_positions"):
            kwargs["bias"] = self.decoder_positions(length, past + length, query_offset=past).to(h.dtype)
        for index, layer in enumerate(self.decoder_layers):
            if cache is not None:
                assert cache.cross is not None
                kwargs.update(cache=cache.layers[index], cross_cache=cache.cross[index])
            h = layer(h, self_mask, memory=memory, cross_mask=cross_mask, is_causal=is_causal, **kwargs)
        return self.decoder_norm(h)

    def decode(
        self,
        tgt_ids: Tensor,
        memory: Tensor,
        src_mask: Tensor | None = None,
        tgt_mask: Tensor | None = None,
        *,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> Tensor:
        """Decoder inputs ``[B, T]`` (targets shifted right, 教师强制) and memory → logits ``[B, T, vocab]``
        (only the last ``logits_to_keep`` positions when it is > 0).

        With a :class:`llmcore.cache.KVCache` (``KVCache.for_model(model)``) the call is incremental:
        ``tgt_ids`` (and ``tgt_mask``) are only the tokens after those already in the cache, and the
        cross-attention keys/values of ``memory`` are computed at the first call and reused.
        """
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        h = self.decoder_hidden_states(tgt_ids, memory, src_mask, tgt_mask, cache=cache)
        if logits_to_keep:
            h = h[:, -logits_to_keep:]
        if self.config.lm_head_scale is not None:
            h = h * self.config.lm_head_scale
        logits = self.lm_head(h)
        if self.config.final_logits_bias:
            logits = logits + self.final_logits_bias.to(logits.dtype)
        return logits

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None,
        decoder_input_ids: Tensor,
        decoder_attention_mask: Tensor | None = None,
    ) -> Tensor:
        """Source ``[B, S]`` and its mask, decoder inputs ``[B, T]`` and theirs → logits ``[B, T, vocab]``."""
        memory = self.encode(input_ids, attention_mask)
        return self.decode(decoder_input_ids, memory, attention_mask, decoder_attention_mask)

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (a shared token table and a tied head count once)."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            tables = (self.encoder_embeddings.embed_tokens, self.decoder_embeddings.embed_tokens, self.lm_head)
            for table in (module.weight for module in tables):
                params.pop(id(table), None)
        return sum(p.numel() for p in params.values())
