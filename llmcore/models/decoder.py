"""Decoder-only language models: GPT-1/2/3, LLaMA, Qwen, Mistral, Gemma, BLOOM, Baichuan, GLM, Phi, Mixtral.

All of them are one :class:`CausalLM` built from a :class:`ModelConfig`: embeddings, a stack of
:class:`TransformerLayer`, an optional final norm and the language-model head. What differs between
the families is only configuration (the presets are registered by ``llmcore.models.families``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import masks
from ..cache import KVCache, LayerKVCache, RollingKVCache
from .config import ModelConfig
from .stack import (
    Embeddings, RelativePositions, TransformerLayer, causal_without_mask, init_weights, keep_mask, layer_mask_mod, make_norm,
)

__all__ = ["CausalLM", "NormHead"]


class NormHead(nn.Linear):
    """Baichuan 2's output layer (归一化输出层): each vocabulary row is normalised to unit length before the product.

    ``weight [V, d]``; ``forward(x [..., d]) -> [..., V]`` is ``x @ F.normalize(weight, dim=-1)ᵀ``: each
    row divided by ``max(‖row‖, 1e-12)``, so an all-zero row gives logits 0. Normalising the rows stops
    rare tokens' embeddings from growing large and keeps the logits of the early training steps
    stable (Baichuan 2 report, §2.5).

    Convention: the rows are normalised on every forward, in training and in evaluation, and the
    stored weight is never changed. Baichuan's released ``modeling_baichuan.py`` does the same in
    training, but on the first forward in eval mode it *overwrites* ``weight`` with its normalised
    copy and from then on uses it as stored; the logits are the same until someone changes the
    weight while the module stays in eval mode (a loaded checkpoint, an edit), which that code
    then uses unnormalised.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, F.normalize(self.weight, dim=-1), self.bias)


def _refuse_encoder_only_fields(config: ModelConfig) -> None:
    """Fields the decoder-only stack does not implement must not be silently ignored."""
    if config.position in ("relative_buckets", "disentangled"):
        raise ValueError(f"ModelConfig.position={config.position!r} is not supported by CausalLM (T5 and DeBERTa only)")
    for name in ("share_layers", "pooler", "positions_skip_padding", "final_logits_bias"):
        if getattr(config, name):
            raise ValueError(f"ModelConfig.{name} is not supported by CausalLM")
    if config.lm_head_scale is not None:
        raise ValueError("ModelConfig.lm_head_scale is not supported by CausalLM (T5 only)")


class CausalLM(nn.Module):
    """A decoder-only Transformer language model (因果语言模型).

    Submodules: ``embeddings`` (:class:`Embeddings`), ``positions`` (RoPE/ALiBi/LogN),
    ``layers`` (``n_layers`` × :class:`TransformerLayer`), ``norm`` (final norm or identity),
    ``lm_head`` (tied to ``embeddings.embed_tokens`` when configured).

    ``forward(input_ids [B, L], attention_mask [B, L] | None, position_ids [B, L] | None)`` returns
    logits ``[B, L, vocab]``. ``attention_mask`` marks real tokens (1/True) and padding (0/False);
    ``position_ids`` default to ``0 … L−1`` in every row.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        _refuse_encoder_only_fields(config)
        self.config = config
        self.embeddings = Embeddings(config)
        self.positions = RelativePositions(config)
        self.layers = nn.ModuleList(TransformerLayer(config) for _ in range(config.n_layers))
        self.norm = make_norm(config) if config.final_norm else nn.Identity()
        head = NormHead if config.norm_head else nn.Linear
        self.lm_head = head(config.hidden_size, config.vocab_size, bias=config.lm_head_bias)
        if config.tie_word_embeddings:
            if config.embedding_size not in (None, config.hidden_size):
                raise ValueError("ModelConfig.tie_word_embeddings needs embedding_size == hidden_size")
            self.lm_head.weight = self.embeddings.embed_tokens.weight
        self.apply(init_weights)

    def layer_masks(
        self,
        keep: Tensor,
        query_length: int,
        prefix_lengths: int | Tensor | None = None,
        cache: KVCache | None = None,
    ) -> list[tuple[Tensor | None, bool]]:
        """One ``(mask, is_causal)`` per layer for queries at the last ``query_length`` of ``keep``'s positions.

        ``keep [B, T+L]`` marks the real tokens of every position so far (the cache's past ones and the
        ``L`` new ones). ``mask`` is a boolean ``[B or 1, 1, L, S]`` over the keys the layer will see,
        or ``None`` when nothing needs masking beyond ``is_causal`` - a plain causal batch, or one new
        token that may see all its keys - so that the fused kernels run without a mask tensor.
        Layers of the same kind share one tensor.

        ``prefix_lengths`` (an int or ``[B]``) turns the causal mask into the prefix-LM mask (前缀语言
        模型): every query also sees the keys before index ``prefix_lengths[b]`` of its row (GLM's
        Part A, ChatGLM's context up to [gMASK]), so the prefix is encoded bidirectionally.
        """
        batch, total = keep.shape
        past = total - query_length
        padded = not bool(keep.all())
        kinds = self.config.resolved_layer_kinds
        by_kind: dict[str, tuple[Tensor | None, bool]] = {}
        for kind in set(kinds):
            layer_cache = cache.layers[kinds.index(kind)] if cache is not None else None
            if prefix_lengths is None and not padded:
                shortcut = self._unmasked(kind, query_length, past, layer_cache)
                if shortcut is not None:
                    by_kind[kind] = shortcut
                    continue
            base = layer_mask_mod(self.config, kind, causal=True)
            if prefix_lengths is not None:
                if kind != "full":
                    raise ValueError(f"prefix_lengths needs full-attention layers; ModelConfig.layer_kinds has {kind!r}")
                base = masks.prefix_lm_mask(self._prefix_lengths(prefix_lengths, batch, keep.device))
            if padded and kind == "fixed":
                base = self._anchored_at_first_real_token(base, keep)
            mask_mod = masks.and_masks(base, masks.padding_mask(keep)) if padded else base
            q_positions = torch.arange(past, total, device=keep.device)
            if layer_cache is not None:
                kv_positions = layer_cache.key_positions(query_length, keep.device)
            else:
                kv_positions = torch.arange(total, device=keep.device)
            rows = batch if padded or prefix_lengths is not None else 1
            by_kind[kind] = (masks.dense_mask_at(mask_mod, rows, q_positions, kv_positions), False)
        return [by_kind[kind] for kind in kinds]

    @staticmethod
    def _anchored_at_first_real_token(mask_mod: masks.MaskMod, keep: Tensor) -> masks.MaskMod:
        """Evaluate ``mask_mod`` on indices counted from each row's first real token.

        The Sparse Transformer's fixed blocks are cut at absolute positions; under left padding they
        must start where the row's text starts, as they would for the row alone (the other patterns
        depend only on ``q − kv`` and need no shift).
        """
        leading_padding = keep.int().argmax(dim=1)

        def shifted(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
            shift = leading_padding[b]
            return mask_mod(b, h, q_idx - shift, kv_idx - shift)

        return shifted

    def _unmasked(
        self, kind: str, query_length: int, past: int, layer_cache: LayerKVCache | None
    ) -> tuple[None, bool] | None:
        """``(None, is_causal)`` when a layer of ``kind`` needs no mask tensor, else ``None``."""
        window = self.config.sliding_window
        within_window = kind == "full" or (
            kind == "sliding" and window is not None and past + query_length <= window
        )
        return causal_without_mask(
            past, query_length, within_window=within_window, rolling_buffer=isinstance(layer_cache, RollingKVCache)
        )

    @staticmethod
    def _prefix_lengths(prefix_lengths: int | Tensor, batch: int, device: torch.device) -> Tensor:
        lengths = torch.as_tensor(prefix_lengths, device=device)
        if lengths.dim() == 0:
            lengths = lengths.expand(batch)
        if lengths.shape != (batch,) or lengths.is_floating_point():
            raise ValueError(f"prefix_lengths must be an int or [B={batch}] integers, got {prefix_lengths!r}")
        return lengths

    def hidden_states(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        block_position_ids: Tensor | None = None,
        prefix_lengths: int | Tensor | None = None,
        cache: KVCache | None = None,
    ) -> Tensor:
        """The final-normalised residual stream ``[B, L, d]`` (arguments as in :meth:`forward`)."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        past = 0 if cache is None else cache.length
        if position_ids is None:
            position_ids = torch.arange(past, past + length, device=input_ids.device).expand(batch, length)
        keep = keep_mask(attention_mask, batch, length, input_ids.device)
        if cache is not None:
            if len(cache.layers) != len(self.layers):
                raise ValueError(f"the cache has {len(cache.layers)} layers, the model {len(self.layers)}")
            keep = cache.extend_keep(keep)
        # Only GLM-style models take a second position stream; the others keep their call unchanged.
        second: dict[str, Tensor] = {}
        if block_position_ids is not None:
            if not self.config.position_2d:
                raise ValueError("block_position_ids needs ModelConfig.position_2d=True")
            if block_position_ids.shape != position_ids.shape:
                raise ValueError(
                    f"block_position_ids has shape {tuple(block_position_ids.shape)}, expected {tuple(position_ids.shape)}"
                )
            second["block_position_ids"] = block_position_ids
        h = self.embeddings(input_ids, position_ids, **second)
        context = self.positions(position_ids, past + length, h.dtype, **second)
        kwargs = context.attention_kwargs()
        layer_caches = cache.layers if cache is not None else [None] * len(self.layers)
        for layer, (mask, is_causal), layer_cache in zip(
            self.layers, self.layer_masks(keep, length, prefix_lengths, cache), layer_caches
        ):
            h = layer(h, mask, is_causal=is_causal, cache=layer_cache, **kwargs)
        return self.norm(h)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        *,
        block_position_ids: Tensor | None = None,
        prefix_lengths: int | Tensor | None = None,
        cache: KVCache | None = None,
        logits_to_keep: int = 0,
    ) -> Tensor:
        """Logits ``[B, L, vocab]`` (``[B, logits_to_keep, vocab]`` for the last positions when
        ``logits_to_keep > 0``: generation needs only the last, and the head is the widest matrix).

        With a :class:`llmcore.cache.KVCache` (``KVCache.for_model(model)``) the call is incremental:
        ``input_ids`` are the ``L`` tokens that follow the ``T`` already in the cache,
        ``attention_mask [B, L]`` describes only them (the cache remembers the earlier ones), and
        ``position_ids`` default to ``T … T+L−1``. The keys and values of the new tokens are added to
        the cache.

        GLM-style inputs, both optional: ``block_position_ids [B, L]`` is the second position stream
        of ``ModelConfig.position_2d`` (an error for models without it);
        ``prefix_lengths`` (int or ``[B]``) makes attention bidirectional over each row's first
        ``prefix_lengths[b]`` positions and causal after them (GLM blank infilling, ChatGLM).
        """
        if logits_to_keep < 0:
            raise ValueError(f"logits_to_keep must be >= 0, got {logits_to_keep}")
        h = self.hidden_states(
            input_ids,
            attention_mask,
            position_ids,
            block_position_ids=block_position_ids,
            prefix_lengths=prefix_lengths,
            cache=cache,
        )
        return self.lm_head(h[:, -logits_to_keep:] if logits_to_keep else h)

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (a tied head counts once)."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            for table in (self.embeddings.embed_tokens.weight, self.lm_head.weight):
                params.pop(id(table), None)
        return sum(p.numel() for p in params.values())
