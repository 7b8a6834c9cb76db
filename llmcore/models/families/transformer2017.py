"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as a :class:`Seq2SeqLM` config.

Chapter 1's :class:`llmcore.Transformer` is the readable reference; here the same network is one
configuration of the zoo's encoder–decoder: token embeddings scaled by √d plus the interleaved
sinusoid (正弦位置编码), post-norm LayerNorm blocks with biases, a ReLU MLP, one token table for
source and target (the shared English–German BPE vocabulary of 37,000 tokens) tied to the output
projection. :func:`from_transformer` copies a chapter-1 model into it; the test suite proves both
compute the same logits, so :class:`Seq2SeqLM` inherits chapter 1's oracle (``torch.nn.Transformer``).
"""

from __future__ import annotations

import math
from typing import Any

from ...transformer import Transformer, TransformerConfig
from ..config import ModelConfig
from ..hub import load_converted
from ..registry import Preset, register_preset
from ..seq2seq import Seq2SeqLM

__all__ = ["transformer_config", "config_from_transformer", "from_transformer"]


def transformer_config(**fields: Any) -> ModelConfig:
    """A 2017-Transformer :class:`ModelConfig`; defaults are the base model without its vocabulary."""
    defaults: dict[str, Any] = dict(
        position="sinusoidal", block="post", norm="layernorm", norm_eps=1e-5, final_norm=False, ffn="mlp",
        activation="relu", qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True,
        max_positions=512, pad_token_id=0, dropout=0.1,
    )
    values = {**defaults, **fields}
    values.setdefault("embedding_scale", math.sqrt(values["hidden_size"]))
    return ModelConfig(**values)


def _register_presets() -> None:
    source = "Attention Is All You Need (Vaswani et al., 2017), Table 3"
    base = transformer_config(vocab_size=37000, hidden_size=512, n_layers=6, n_heads=8, intermediate_size=2048)
    big = transformer_config(
        vocab_size=37000, hidden_size=1024, n_layers=6, n_heads=16, intermediate_size=4096, dropout=0.3
    )
    register_preset(Preset("transformer-base", base, Seq2SeqLM, source, 65e6))
    register_preset(Preset("transformer-big", big, Seq2SeqLM, source, 213e6))
    tiny = transformer_config(
        vocab_size=32, hidden_size=32, n_layers=2, n_heads=4, intermediate_size=64, max_positions=64, dropout=0.0
    )
    register_preset(Preset("tiny-transformer", tiny, Seq2SeqLM, "tests and notebooks (chapter 1's 'tiny')"))


def config_from_transformer(config: TransformerConfig) -> ModelConfig:
    """Chapter 1's :class:`TransformerConfig` → the equivalent :class:`ModelConfig`.

    Separate source and target vocabularies cannot share a table: ``share_embeddings=False`` needs
    ``src_vocab_size == tgt_vocab_size`` here, since :class:`ModelConfig` has one ``vocab_size``.
    """
    if config.src_vocab_size != config.tgt_vocab_size:
        raise ValueError(
            f"TransformerConfig.src_vocab_size={config.src_vocab_size} differs from tgt_vocab_size="
            f"{config.tgt_vocab_size}; ModelConfig has one vocab_size"
        )
    return transformer_config(
        vocab_size=config.src_vocab_size,
        hidden_size=config.d_model,
        n_layers=config.n_encoder_layers,
        n_decoder_layers=None if config.n_decoder_layers == config.n_encoder_layers else config.n_decoder_layers,
        n_heads=config.n_heads,
        intermediate_size=config.d_ff,
        max_positions=config.max_positions,
        dropout=config.dropout,
        pad_token_id=config.pad_id,
        block="pre" if config.norm_first else "post",
        final_norm=config.norm_first,
        norm_eps=config.norm_eps,
        tie_word_embeddings=config.tie_output,
        share_embeddings=config.share_embeddings,
    )


def from_transformer(model: Transformer) -> Seq2SeqLM:
    """A :class:`Seq2SeqLM` with chapter 1's weights (same module names apart from the embedding tables).

    Chapter 1 masks padding by ``pad_id``; pass ``attention_mask=(ids != pad_id)`` to the result.
    """
    converted = Seq2SeqLM(config_from_transformer(model.config))
    tables = {"src_embed.weight": "encoder_embeddings.embed_tokens.weight", "tgt_embed.weight": "decoder_embeddings.embed_tokens.weight"}
    state_dict = {tables.get(name, name): tensor for name, tensor in model.state_dict().items()}
    load_converted(converted, state_dict, "llmcore.Transformer")
    return converted.to(next(model.parameters()).dtype).train(model.training)


_register_presets()
