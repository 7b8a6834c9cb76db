"""Decoder-only language models: GPT-1/2/3, LLaMA, Qwen, Mistral, Gemma, BLOOM, Baichuan, GLM, Phi, Mixtral.

All of them are one :class:`CausalLM` built from a :class:`ModelConfig`: embeddings, a stack of
:class:`TransformerLayer`, an optional final norm and the language-model head. What differs between
the families is only configuration (see ``llmcore.models.presets``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import masks
from .config import ModelConfig
from .stack import Embeddings, RelativePositions, TransformerLayer, keep_mask, layer_mask_mod, make_norm

__all__ = ["CausalLM", "NormHead"]


class NormHead(nn.Linear):
    """Baichuan 2's output layer: each vocabulary row is normalised to unit length before the product.

    Normalising the rows stops rare tokens' embeddings from growing large and keeps the logits of
    the early training steps stable (Baichuan 2 report, §2.5).
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, F.normalize(self.weight, dim=-1), self.bias)


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
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def layer_masks(self, keep: Tensor, query_length: int) -> list[Tensor]:
        """One boolean ``[B, 1, Q, KV]`` mask per layer (layers of the same kind share one tensor)."""
        batch, key_length = keep.shape
        by_kind: dict[str, Tensor] = {}
        for kind in set(self.config.resolved_layer_kinds):
            mask_mod = masks.and_masks(layer_mask_mod(self.config, kind, causal=True), masks.padding_mask(keep))
            by_kind[kind] = masks.dense_mask(
                mask_mod, batch, 1, query_length, key_length, q_offset=key_length - query_length, device=keep.device
            )
        return [by_kind[kind] for kind in self.config.resolved_layer_kinds]

    def hidden_states(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None
    ) -> Tensor:
        """The final-normalised residual stream ``[B, L, d]``."""
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        if position_ids is None:
            position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
        keep = keep_mask(attention_mask, batch, length, input_ids.device)
        h = self.embeddings(input_ids, position_ids)
        context = self.positions(position_ids, length, h.dtype)
        kwargs = context.attention_kwargs()
        for layer, mask in zip(self.layers, self.layer_masks(keep, length)):
            h = layer(h, mask, **kwargs)
        return self.norm(h)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, position_ids: Tensor | None = None
    ) -> Tensor:
        return self.lm_head(self.hidden_states(input_ids, attention_mask, position_ids))

    def num_parameters(self, *, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (a tied head counts once)."""
        params = {id(p): p for p in self.parameters()}
        if exclude_embeddings:
            for table in (self.embeddings.embed_tokens.weight, self.lm_head.weight):
                params.pop(id(table), None)
        return sum(p.numel() for p in params.values())
