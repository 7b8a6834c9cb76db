"""Gemma (Gemma Team, 2024): a LLaMA-style decoder with Gemini's choices.

What differs from LLaMA, each a configuration field:

* token embeddings are multiplied by ``√d`` (``embedding_scale``; the tied output layer reuses the
  unscaled table), as in the 2017 Transformer;
* RMSNorm multiplies by ``1 + w`` (``norm_unit_offset``: the stored weight is an offset from 1);
* GeGLU (门控 GELU) with the tanh approximation instead of SwiGLU (``activation="gelu_tanh"``);
* ``head_dim = 256`` independent of ``d / H`` (7B: 16 heads × 256 = 4096 ≠ 3072);
* multi-query attention in 2B (one KV head), multi-head in 7B;
* a 256K vocabulary with tied input/output embeddings.

The report's "feedforward hidden dims" (32 768 and 49 152) count the gate and up matrices together;
each is half as wide.
"""

from __future__ import annotations

import math
from typing import Any

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, hf_common_fields_to_hf, llama_like_key_map
from .llama import llama_config

__all__ = ["gemma_config"]

# Gemma's released configs say "gelu" but were trained with the tanh approximation; transformers
# maps every spelling to gelu_pytorch_tanh, and so does llmcore.
_ACTIVATIONS = {"gelu": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "gelu_tanh": "gelu_tanh"}


def gemma_config(**fields: Any) -> ModelConfig:
    """A Gemma :class:`ModelConfig`: ``√d`` embedding scale, ``1 + w`` RMSNorm, GeGLU, tied embeddings."""
    defaults: dict[str, Any] = dict(
        norm_unit_offset=True, activation="gelu_tanh", tie_word_embeddings=True, max_positions=8192, norm_eps=1e-6
    )
    merged = {**defaults, **fields}
    merged.setdefault("embedding_scale", math.sqrt(merged["hidden_size"]))
    return llama_config(**merged)


def _register_presets() -> None:
    sizes = [
        # name, d, layers, heads, kv heads, ffn per matrix, published parameters
        ("gemma-2b", 2048, 18, 8, 1, 16384, 2.51e9),
        ("gemma-7b", 3072, 28, 16, 16, 24576, 8.54e9),
    ]
    for name, d, layers, heads, kv, ffn, published in sizes:
        config = gemma_config(
            vocab_size=256000, hidden_size=d, n_layers=layers, n_heads=heads, n_kv_heads=kv, head_dim=256,
            intermediate_size=ffn,
        )
        register_preset(Preset(name, config, CausalLM, "Gemma report (Gemma Team, 2024), Tables 1 and 2", published))
    tiny = gemma_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=32, intermediate_size=128,
        max_positions=256,
    )
    register_preset(Preset("tiny-gemma", tiny, CausalLM, "tests and notebooks"))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    if hf.get("use_bidirectional_attention"):
        raise ValueError("gemma config: use_bidirectional_attention=True is an encoder (EmbeddingGemma), not a causal LM")
    # transformers 4.38-4.4x read hidden_activation first and fell back to the tanh GELU.
    name = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
    if name not in _ACTIVATIONS:
        raise ValueError(f"gemma config: hidden_act={name!r} is not a GELU; known: {sorted(_ACTIVATIONS)}")
    bias = bool(hf.get("attention_bias", False))
    return gemma_config(
        **{**hf_common_fields(hf), "tie_word_embeddings": bool(hf.get("tie_word_embeddings", True))},
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation=_ACTIVATIONS[name],
        qkv_bias=bias,
        o_bias=bias,
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if not config.norm_unit_offset:
        raise ValueError("Gemma's RMSNorm multiplies by 1 + w; ModelConfig.norm_unit_offset must be True")
    if config.embedding_scale is None or not math.isclose(config.embedding_scale, math.sqrt(config.hidden_size)):
        raise ValueError(f"Gemma scales embeddings by √hidden_size; ModelConfig.embedding_scale={config.embedding_scale}")
    if config.activation != "gelu_tanh" or config.qkv_bias != config.o_bias or config.mlp_bias:
        raise ValueError(
            "Gemma has a tanh-GELU gate, one attention_bias and no MLP bias; check ModelConfig.activation, "
            "qkv_bias/o_bias and mlp_bias"
        )
    return {
        **hf_common_fields_to_hf(config),
        "rms_norm_eps": config.norm_eps,
        "hidden_act": "gelu_pytorch_tanh",
        "attention_bias": config.qkv_bias,
    }


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="gemma",
        hf_class_name="GemmaForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
