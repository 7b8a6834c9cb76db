"""Mistral 7B (Jiang et al., 2023): LLaMA with GQA and sliding-window attention.

Every layer lets a token attend to the last ``W = 4096`` positions only, itself included
(滑动窗口注意力, ``ModelConfig.sliding_window``). Information still travels further than ``W``:
each layer reaches ``W − 1`` positions back, so after ``k`` layers a token can be influenced by
tokens up to ``k·(W − 1)`` positions back: 131,040 for the 32-layer model, which the paper rounds to
``k·W`` ≈ 131K (§2), while each layer's cost and KV cache stay bounded by ``W``. Grouped-query attention (8 KV heads for 32 query heads) shrinks the cache further.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, hf_common_fields_to_hf, llama_like_key_map
from .llama import llama_config

__all__ = ["mistral_config"]


def mistral_config(**fields: Any) -> ModelConfig:
    """A Mistral :class:`ModelConfig`: LLaMA (no biases, SwiGLU, RMSNorm ε = 1e-5) with a window on every layer."""
    return llama_config(**{"norm_eps": 1e-5, "sliding_window": 4096, **fields})


def _register_presets() -> None:
    mistral_7b = mistral_config(
        vocab_size=32000, hidden_size=4096, n_layers=32, n_heads=32, n_kv_heads=8, intermediate_size=14336,
        max_positions=8192, sliding_window=4096,
    )
    register_preset(
        Preset("mistral-7b", mistral_7b, CausalLM, "Mistral 7B paper (Jiang et al., 2023), Table 1; 7.24B on the model card", 7.24e9)
    )
    tiny = mistral_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=176,
        max_positions=256, sliding_window=16,
    )
    register_preset(Preset("tiny-mistral", tiny, CausalLM, "tests and notebooks"))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    # MistralForCausalLM ignores layer_types (Ministral's field): the window applies to every layer.
    return mistral_config(
        **hf_common_fields(hf),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation=hf.get("hidden_act", "silu"),
        sliding_window=hf.get("sliding_window"),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if config.qkv_bias or config.o_bias or config.mlp_bias:
        raise ValueError("Mistral has no biases; ModelConfig.qkv_bias, o_bias and mlp_bias must be False")
    expected = "sliding" if config.sliding_window is not None else "full"
    if set(config.resolved_layer_kinds) != {expected}:
        raise ValueError(
            f"Mistral uses one attention pattern for all layers; ModelConfig.layer_kinds={config.resolved_layer_kinds} "
            f"should all be {expected!r}"
        )
    return {
        **hf_common_fields_to_hf(config),
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "sliding_window": config.sliding_window,
    }


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="mistral",
        hf_class_name="MistralForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
