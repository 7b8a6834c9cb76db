"""Encoder-only language models: BERT, RoBERTa, ALBERT, ELECTRA (and DeBERTa, see ``deberta.py``).

An :class:`EncoderModel` (编码器) is the bidirectional half of the 2017 Transformer: embeddings
(word + learned positions + segments, a LayerNorm, and ALBERT/ELECTRA's factorised projection
``E → d``), then ``n_layers`` post-norm :class:`TransformerLayer` that see the whole sentence
except padding, with no final norm. What the families pre-train differs only in the head on top:

* :class:`MaskedLM` - BERT's masked language model (掩码语言模型, Devlin et al., 2019), also
  RoBERTa's, ALBERT's and DeBERTa's: ``dense → act → LayerNorm → tied decoder + bias``;
* :class:`Discriminator` - ELECTRA's replaced-token detection (替换词检测, Clark et al., 2020):
  one logit per token, "was this token replaced by the generator?".

:class:`Pooler` (dense + tanh on [CLS]) belongs to the encoder when ``config.pooler`` is set: BERT
trained it on next-sentence prediction, ALBERT on sentence-order prediction.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import masks
from ..ffn import get_activation
from .config import ModelConfig
from .stack import Embeddings, TransformerLayer, init_weights, keep_mask, make_norm

__all__ = ["EncoderModel", "Pooler", "MaskedLMHead", "DiscriminatorHead", "MaskedLM", "Discriminator"]


def skip_padding_positions(input_ids: Tensor, pad_token_id: int) -> Tensor:
    """RoBERTa's position ids (from fairseq's ``make_positions``): real tokens count ``0, 1, 2, …``.

    Padding tokens (``input_ids == pad_token_id``) get ``−1``, so that with RoBERTa's
    ``position_offset = pad_token_id + 1`` they look up row ``pad_token_id`` of the table and the
    first real token row ``pad_token_id + 1``. Left padding therefore does not shift positions,
    unlike BERT's ``0 … L−1``. ``[B, L] → [B, L]``.
    """
    real = input_ids.ne(pad_token_id).long()
    return torch.cumsum(real, dim=1) * real - 1


class Pooler(nn.Module):
    """BERT's pooler: ``tanh(W · h[CLS] + b)``, the sentence vector of NSP/SOP. ``[B, L, d] → [B, d]``."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))


class EncoderModel(nn.Module):
    """A bidirectional Transformer encoder (双向编码器): BERT and its descendants.

    Submodules: ``embeddings`` (:class:`Embeddings`), ``layers`` (``n_layers`` ×
    :class:`TransformerLayer`, or a single one applied ``n_layers`` times with ``share_layers``, as
    ALBERT shares all parameters across depth), ``norm`` (identity unless ``final_norm``), and
    ``pooler`` with ``config.pooler``.

    ``forward(input_ids [B, L], attention_mask [B, L] | None, position_ids [B, L] | None,
    token_type_ids [B, L] | None)`` returns the last hidden states ``[B, L, d]``. Position ids
    default to ``0 … L−1`` (BERT) or, with ``positions_skip_padding``, to RoBERTa's count of real
    tokens. Subclasses with a different attention (DeBERTa) override ``positions``,
    :meth:`build_attention`, :meth:`embed` and :meth:`run_layers`.
    """

    positions: tuple[str, ...] = ("learned", "sinusoidal", "none")

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if config.position not in self.positions:
            hint = " (DeBERTa's needs DisentangledEncoder)" if config.position == "disentangled" else ""
            raise ValueError(
                f"ModelConfig.position={config.position!r} is not supported by {type(self).__name__}{hint}; "
                f"use one of {list(self.positions)}"
            )
        if set(config.resolved_layer_kinds) != {"full"}:
            raise ValueError(f"ModelConfig.layer_kinds={config.layer_kinds} must be all 'full' in an encoder")
        self.config = config
        self.embeddings = Embeddings(config)
        distinct = 1 if config.share_layers else config.n_layers
        self.layers = nn.ModuleList(
            TransformerLayer(config, self_attention=self.build_attention()) for _ in range(distinct)
        )
        self.norm = make_norm(config) if config.final_norm else nn.Identity()
        if config.pooler:
            self.pooler = Pooler(config.hidden_size)

    def build_attention(self) -> nn.Module | None:
        """The self-attention of one layer; ``None`` selects the standard multi-head attention."""
        return None

    def layer(self, index: int) -> TransformerLayer:
        """The block applied at depth ``index`` (the same module at every depth when shared)."""
        return self.layers[0 if self.config.share_layers else index]

    def attention_mask(self, keep: Tensor) -> Tensor:
        """Boolean ``[B, 1, L, L]``: every query sees every real key (padding hidden)."""
        batch, length = keep.shape
        mask_mod = masks.and_masks(masks.full_mask, masks.padding_mask(keep))
        return masks.dense_mask(mask_mod, batch, 1, length, length, device=keep.device)

    def default_position_ids(self, input_ids: Tensor) -> Tensor:
        if self.config.positions_skip_padding:
            assert self.config.pad_token_id is not None
            return skip_padding_positions(input_ids, self.config.pad_token_id)
        batch, length = input_ids.shape
        return torch.arange(length, device=input_ids.device).expand(batch, length)

    def embed(self, input_ids: Tensor, keep: Tensor, position_ids: Tensor, token_type_ids: Tensor | None) -> Tensor:
        """Token ids → the first residual stream ``[B, L, d]``."""
        return self.embeddings(input_ids, position_ids, token_type_ids)

    def run_layers(self, h: Tensor, keep: Tensor) -> Tensor:
        """The ``n_layers`` blocks over ``h [B, L, d]``."""
        mask = self.attention_mask(keep)
        for index in range(self.config.n_layers):
            h = self.layer(index)(h, mask)
        return h

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be [B, L], got shape {tuple(input_ids.shape)}")
        batch, length = input_ids.shape
        keep = keep_mask(attention_mask, batch, length, input_ids.device)
        if position_ids is None:
            position_ids = self.default_position_ids(input_ids)
        h = self.embed(input_ids, keep, position_ids, token_type_ids)
        return self.norm(self.run_layers(h, keep))

    def pooled(self, hidden: Tensor) -> Tensor:
        """The pooler's sentence vector ``[B, d]`` of hidden states ``[B, L, d]``."""
        if not hasattr(self, "pooler"):
            raise ValueError("this encoder has no pooler (ModelConfig.pooler=False)")
        return self.pooler(hidden)


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: ``decoder(LayerNorm(act(dense h)))`` with the decoder tied to the word table.

    ``dense`` maps ``d → E`` (``E = embedding_size``; ALBERT projects back to its small embedding
    width, BERT has ``E = d``), ``norm`` is a LayerNorm over ``E``, ``decoder`` is ``E → vocab`` with
    its own bias; its weight is the token embedding matrix when ``tie_word_embeddings``.
    Shapes: ``[B, L, d] → [B, L, vocab]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        width = config.embedding_size or config.hidden_size
        self.dense = nn.Linear(config.hidden_size, width)
        self.activation = get_activation(config.activation)
        self.norm = make_norm(config, width)
        self.decoder = nn.Linear(width, config.vocab_size)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


class DiscriminatorHead(nn.Module):
    """ELECTRA's discriminator head: ``dense_prediction(act(dense h))``, one logit per token.

    A positive logit says "this token was replaced by the generator". ``[B, L, d] → [B, L]``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = get_activation(config.activation)
        self.dense_prediction = nn.Linear(config.hidden_size, 1)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.dense_prediction(self.activation(self.dense(hidden))).squeeze(-1)


class MaskedLM(nn.Module):
    """An encoder with the masked-LM head: BERT, RoBERTa, ALBERT (and DeBERTa via ``encoder_class``).

    Submodules: ``encoder`` (:class:`EncoderModel`), ``head`` (:class:`MaskedLMHead`, its decoder
    tied to ``encoder.embeddings.embed_tokens`` when ``tie_word_embeddings``).

    ``forward(input_ids [B, L], attention_mask, position_ids, token_type_ids)`` → logits
    ``[B, L, vocab]``; only the masked positions' logits are trained.
    """

    encoder_class: type[EncoderModel] = EncoderModel

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = self.encoder_class(config)
        self.head = MaskedLMHead(config)
        if config.tie_word_embeddings:
            self.head.decoder.weight = self.encoder.embeddings.embed_tokens.weight
        self.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        return self.head(self.encoder(input_ids, attention_mask, position_ids, token_type_ids))


class Discriminator(nn.Module):
    """ELECTRA's pre-trained discriminator: an encoder and :class:`DiscriminatorHead`.

    ``forward(input_ids [B, L], attention_mask, position_ids, token_type_ids)`` → logits ``[B, L]``
    (replaced-token detection, trained with a sigmoid cross-entropy on every token).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = EncoderModel(config)
        self.head = DiscriminatorHead(config)
        self.apply(init_weights)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        return self.head(self.encoder(input_ids, attention_mask, position_ids, token_type_ids))
