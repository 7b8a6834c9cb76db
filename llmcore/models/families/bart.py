"""BART (Lewis et al., 2020): a denoising autoencoder (去噪自编码器) for pre-training sequence-to-sequence models.

Architecturally BART is the 2017 encoder–decoder with BERT/GPT habits: post-norm LayerNorm blocks
with biases everywhere, learned absolute positions (stored with an offset of 2: fairseq reserved the
first two rows for its padding scheme, so position ``p`` reads row ``p + 2``), a LayerNorm right
after the embeddings (``layernorm_embedding``), GELU instead of ReLU, and one token table shared by
encoder, decoder and output layer. ``final_logits_bias`` is a buffer added to the logits (zero in the
released checkpoints; fine-tuning scripts may fill it). ``scale_embedding`` multiplies the token
embeddings by √d as in 2017 (off in bart-base/large).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from ..seq2seq import Seq2SeqLM

__all__ = ["bart_config"]


def bart_config(**fields: Any) -> ModelConfig:
    """A BART :class:`ModelConfig`: post-norm LayerNorm, learned positions offset by 2, GELU, biases."""
    defaults: dict[str, Any] = dict(
        position="learned", position_offset=2, embedding_norm=True, block="post", norm="layernorm", norm_eps=1e-5,
        final_norm=False, ffn="mlp", activation="gelu", qkv_bias=True, o_bias=True, mlp_bias=True,
        tie_word_embeddings=True, final_logits_bias=True, max_positions=1024, pad_token_id=1,
    )
    return ModelConfig(**{**defaults, **fields})


def _register_presets() -> None:
    sizes = [
        # name, d_model, layers per stack, heads, ffn, published parameters
        ("bart-base", 768, 6, 12, 3072, 140e6),
        ("bart-large", 1024, 12, 16, 4096, 400e6),
    ]
    for name, d, layers, heads, ffn, published in sizes:
        config = bart_config(vocab_size=50265, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=ffn)
        source = "BART paper (Lewis et al., 2020), §2.1; sizes from the fairseq BART release"
        register_preset(Preset(name, config, Seq2SeqLM, source, published))
    tiny = bart_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=128, max_positions=64)
    register_preset(Preset("tiny-bart", tiny, Seq2SeqLM, "tests and notebooks"))


# Keys of old (4.x) BART configs that select mBART-like variants this family does not implement.
_UNSUPPORTED = (
    ("normalize_before", False), ("add_final_layer_norm", False), ("static_position_embeddings", False),
    ("add_bias_logits", False), ("normalize_embedding", True),
)


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    for key, supported in _UNSUPPORTED:
        if hf.get(key, supported) != supported:
            raise ValueError(f"BART config {key}={hf[key]!r} is not supported (only {supported!r} is)")
    for encoder_key, decoder_key in (("encoder_attention_heads", "decoder_attention_heads"), ("encoder_ffn_dim", "decoder_ffn_dim")):
        if hf[encoder_key] != hf[decoder_key]:
            raise ValueError(f"BART config {encoder_key}={hf[encoder_key]} differs from {decoder_key}={hf[decoder_key]}")
    d = hf["d_model"]
    tied = bool(hf.get("tie_word_embeddings", True))
    n_layers, n_decoder_layers = hf["encoder_layers"], hf["decoder_layers"]
    return bart_config(
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        n_layers=n_layers,
        n_decoder_layers=None if n_decoder_layers == n_layers else n_decoder_layers,
        n_heads=hf["encoder_attention_heads"],
        intermediate_size=hf["encoder_ffn_dim"],
        max_positions=hf["max_position_embeddings"],
        activation=hf.get("activation_function", "gelu"),
        embedding_scale=math.sqrt(d) if hf.get("scale_embedding") else None,
        # transformers ties encoder, decoder and head all together or not at all.
        tie_word_embeddings=tied,
        share_embeddings=tied,
        pad_token_id=hf.get("pad_token_id"),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    fixed = dict(
        position="learned", position_offset=2, embedding_norm=True, block="post", norm="layernorm", norm_bias=True,
        final_norm=False, ffn="mlp", qkv_bias=True, o_bias=True, mlp_bias=True, lm_head_bias=False,
        final_logits_bias=True, lm_head_scale=None, norm_eps=1e-5,
    )
    for name, expected in fixed.items():
        if getattr(config, name) != expected:
            raise ValueError(f"ModelConfig.{name}={getattr(config, name)!r} has no Hugging Face BART equivalent (BART: {expected!r})")
    if config.share_embeddings != config.tie_word_embeddings:
        raise ValueError(
            "Hugging Face BART ties encoder, decoder and head together or not at all: ModelConfig.share_embeddings="
            f"{config.share_embeddings} with tie_word_embeddings={config.tie_word_embeddings}"
        )
    if config.embedding_scale not in (None, math.sqrt(config.hidden_size)):
        raise ValueError(f"ModelConfig.embedding_scale={config.embedding_scale} must be None or √d for BART")
    return {
        "vocab_size": config.vocab_size,
        "d_model": config.hidden_size,
        "encoder_layers": config.n_layers,
        "decoder_layers": config.n_decoder_layers or config.n_layers,
        "encoder_attention_heads": config.n_heads,
        "decoder_attention_heads": config.n_heads,
        "encoder_ffn_dim": config.intermediate_size,
        "decoder_ffn_dim": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "activation_function": "gelu_new" if config.activation == "gelu_tanh" else config.activation,
        "scale_embedding": config.embedding_scale is not None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "is_encoder_decoder": True,
        "pad_token_id": config.pad_token_id,
    }


_SHARED, _ENCODER_TABLE, _DECODER_TABLE = (
    "model.shared.weight", "model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight"
)


def _from_hf_tensors(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """Token tables by stack, and the zero ``final_logits_bias`` that checkpoints may omit.

    Tied, ``model.shared`` is the one table (the stacks' entries are views of it); untied, each stack
    reads its own and ``model.shared`` is unused by transformers' forward pass.
    """
    shared = state_dict.pop(_SHARED, None)
    if config.share_embeddings:
        state_dict.pop(_DECODER_TABLE, None)
        if shared is not None:
            state_dict[_ENCODER_TABLE] = shared
    if "final_logits_bias" not in state_dict:
        state_dict["final_logits_bias"] = torch.zeros(1, config.vocab_size)
    return state_dict


def _to_hf_tensors(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    state_dict[_SHARED] = state_dict[_ENCODER_TABLE] if not config.share_embeddings else state_dict.pop(_ENCODER_TABLE)
    return state_dict


def _key_map() -> tuple[tuple[str, str], ...]:
    pairs = [
        (_ENCODER_TABLE, "encoder_embeddings.embed_tokens.weight"),
        (_DECODER_TABLE, "decoder_embeddings.embed_tokens.weight"),
        ("lm_head.weight", "lm_head.weight"),
        ("final_logits_bias", "final_logits_bias"),
    ]
    for stack in ("encoder", "decoder"):
        hf, ours = f"model.{stack}", f"{stack}_layers.{{i}}"
        pairs.append((f"{hf}.embed_positions.weight", f"{stack}_embeddings.embed_positions.weight"))
        sublayers = [("self_attn", "self_attn")] + ([("encoder_attn", "cross_attn")] if stack == "decoder" else [])
        for kind in ("weight", "bias"):
            pairs.append((f"{hf}.layernorm_embedding.{kind}", f"{stack}_embeddings.embed_norm.{kind}"))
            for theirs, mine in sublayers:
                pairs.append((f"{hf}.layers.{{i}}.{theirs}_layer_norm.{kind}", f"{ours}.{mine}_norm.{kind}"))
                for projection in ("q", "k", "v"):
                    pairs.append((f"{hf}.layers.{{i}}.{theirs}.{projection}_proj.{kind}", f"{ours}.{mine}.{projection}_proj.{kind}"))
                pairs.append((f"{hf}.layers.{{i}}.{theirs}.out_proj.{kind}", f"{ours}.{mine}.o_proj.{kind}"))
            pairs.append((f"{hf}.layers.{{i}}.fc1.{kind}", f"{ours}.ffn.up_proj.{kind}"))
            pairs.append((f"{hf}.layers.{{i}}.fc2.{kind}", f"{ours}.ffn.down_proj.{kind}"))
            pairs.append((f"{hf}.layers.{{i}}.final_layer_norm.{kind}", f"{ours}.ffn_norm.{kind}"))
    return tuple(pairs)


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="bart",
        hf_class_name="BartForConditionalGeneration",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=_key_map(),
        model_class=Seq2SeqLM,
        from_hf_tensors=_from_hf_tensors,
        to_hf_tensors=_to_hf_tensors,
    )
)
