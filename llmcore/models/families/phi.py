"""Phi-1, Phi-1.5, Phi-2 and Phi-3 (Microsoft, 2023–2024): small models trained on "textbook-quality" data.

Phi-1 (Gunasekar et al., 2023, "Textbooks Are All You Need"), Phi-1.5 (Li et al., 2023) and Phi-2
(Microsoft, Dec 2023) share one architecture, GPT-J's parallel block (并行块): a single LayerNorm
feeds both the attention and the MLP, whose outputs are added to the residual together,
``x + attn(LN(x)) + mlp(LN(x))``. Positions are *partial* rotary (部分旋转位置编码): only the first
32 dimensions of each head rotate, half-split layout, the rest pass through. Every projection has a
bias (Q/K/V, ``dense``, ``fc1``/``fc2``), the MLP uses GELU (tanh approximation, ``gelu_new``), a
final LayerNorm precedes an untied output layer that also has a bias.

Phi-3 (Abdin et al., 2024, "Phi-3 Technical Report") switched to the LLaMA recipe: pre-norm RMSNorm,
SwiGLU, full rotary, no biases, LLaMA 2's tokenizer (vocabulary padded to 32,064); the released 4K-context
model's configuration adds a sliding window of 2047 keys (滑动窗口注意力). Its checkpoints fuse Q/K/V into one
``qkv_proj`` (rows ``[q | k | v]``) and the gate and up projections into ``gate_up_proj`` (rows
``[gate | up]``); :func:`phi3_from_hf_tensors` splits them, :func:`phi3_to_hf_tensors` fuses them back.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, llama_like_key_map, rope_scaling_to_hf
from .llama import llama_config

__all__ = ["phi_config", "phi3_config", "phi3_from_hf_tensors", "phi3_to_hf_tensors"]

StateDict = dict[str, Tensor]


def phi_config(**fields: Any) -> ModelConfig:
    """A Phi-1/1.5/2 :class:`ModelConfig`: parallel block, LayerNorm, partial RoPE, GELU MLP, biases everywhere."""
    defaults: dict[str, Any] = dict(
        position="rope", block="parallel", norm="layernorm", norm_eps=1e-5, ffn="mlp", activation="gelu_new",
        qkv_bias=True, o_bias=True, mlp_bias=True, lm_head_bias=True, tie_word_embeddings=False,
    )
    return ModelConfig(**{**defaults, **fields})


def phi3_config(**fields: Any) -> ModelConfig:
    """A Phi-3 :class:`ModelConfig`: LLaMA's pre-norm RMSNorm + SwiGLU + RoPE, ``ε = 1e-5``."""
    return llama_config(**{"norm_eps": 1e-5, **fields})


def _register_presets() -> None:
    # Parameter counts are those of the released weights (Hugging Face hub, safetensors metadata);
    # the papers round them: Phi-1 and Phi-1.5 are "1.3B" in their abstracts but hold 1.42B.
    sizes = [
        # name, layers, d, heads, published parameters, source
        ("phi-1", 24, 2048, 32, 1.42e9, "Gunasekar et al. 2023 (\"1.3B\"); microsoft/phi-1 weights: 1.42B"),
        ("phi-1.5", 24, 2048, 32, 1.42e9, "Li et al. 2023 (\"1.3B\"); microsoft/phi-1_5 weights: 1.42B"),
        ("phi-2", 32, 2560, 32, 2.78e9, "Microsoft blog Dec 2023 (\"2.7B\"); microsoft/phi-2 weights: 2.78B"),
    ]
    for name, layers, d, heads, published, source in sizes:
        config = phi_config(
            vocab_size=51200, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d,
            rotary_dim=32, max_positions=2048,
        )
        register_preset(Preset(name, config, CausalLM, source, published))
    mini = phi3_config(
        vocab_size=32064, hidden_size=3072, n_layers=32, n_heads=32, intermediate_size=8192, max_positions=4096,
        sliding_window=2047, pad_token_id=32000,
    )
    register_preset(
        Preset("phi-3-mini", mini, CausalLM, "Abdin et al. 2024 (\"3.8B\"); microsoft/Phi-3-mini-4k-instruct weights: 3.82B", 3.82e9)
    )
    tiny = phi_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, rotary_dim=8, max_positions=256)
    register_preset(Preset("tiny-phi", tiny, CausalLM, "tests and notebooks"))
    tiny3 = phi3_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=128, max_positions=256,
        sliding_window=8,
    )
    register_preset(Preset("tiny-phi3", tiny3, CausalLM, "tests and notebooks"))


def _rotary_dim_from_hf(hf: dict[str, Any], head_dim: int) -> int | None:
    """``partial_rotary_factor`` → rotary dims, as transformers computes them (``int(head_dim·factor)``)."""
    rotary_dim = int(head_dim * float(hf.get("partial_rotary_factor", 1.0)))
    return None if rotary_dim == head_dim else rotary_dim


def _partial_rotary_factor(config: ModelConfig) -> float:
    """The factor whose ``int(head_dim · factor)`` gives back ``rotary_dim`` (``26/45·45`` is 25.99…)."""
    rotary_dim, head_dim = config.resolved_rotary_dim, config.resolved_head_dim
    factor = rotary_dim / head_dim
    return factor if int(head_dim * factor) == rotary_dim else math.nextafter(factor, 1.0)


def _rope_to_hf(config: ModelConfig) -> dict[str, Any]:
    fields = rope_scaling_to_hf(config)
    fields["rope_parameters"]["partial_rotary_factor"] = _partial_rotary_factor(config)
    return fields


def _shared_to_hf(config: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.resolved_kv_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "hidden_act": config.activation,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        **_rope_to_hf(config),
    }


def phi_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    if hf.get("qk_layernorm"):
        raise ValueError("phi: qk_layernorm=True (LayerNorm on queries and keys) is not supported by llmcore")
    common = hf_common_fields(hf)
    return phi_config(
        **common,
        norm_eps=hf.get("layer_norm_eps", 1e-5),
        activation=hf.get("hidden_act", "gelu_new"),
        rotary_dim=_rotary_dim_from_hf(hf, common["head_dim"]),
    )


def phi_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    _require(config, _PHI_FIXED, "Phi")
    return {**_shared_to_hf(config), "layer_norm_eps": config.norm_eps, "qk_layernorm": False}


# The choices the Hugging Face classes hard-code; a config that differs cannot be saved as them.
_PHI_FIXED = dict(
    position="rope", block="parallel", norm="layernorm", ffn="mlp", norm_bias=True, qkv_bias=True, o_bias=True,
    mlp_bias=True, lm_head_bias=True, layer_kinds=None, sliding_window=None, norm_head=False, rope_interleaved=False,
)
_PHI3_FIXED = dict(
    position="rope", block="pre", norm="rmsnorm", ffn="gated", qkv_bias=False, o_bias=False, mlp_bias=False,
    lm_head_bias=False, layer_kinds=None, norm_head=False, norm_unit_offset=False, rope_interleaved=False,
)


def _require(config: ModelConfig, fixed: dict[str, Any], family: str) -> None:
    for name, value in fixed.items():
        if getattr(config, name) != value:
            raise ValueError(f"the Hugging Face {family} config cannot express ModelConfig.{name}={getattr(config, name)!r}")


def phi3_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    common = hf_common_fields(hf)
    return phi3_config(
        **common,
        norm_eps=hf.get("rms_norm_eps", 1e-5),
        activation=hf.get("hidden_act", "silu"),
        rotary_dim=_rotary_dim_from_hf(hf, common["head_dim"]),
        sliding_window=hf.get("sliding_window"),
    )


def phi3_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    _require(config, _PHI3_FIXED, "Phi-3")
    return {**_shared_to_hf(config), "rms_norm_eps": config.norm_eps, "sliding_window": config.sliding_window}


def _phi_key_map() -> tuple[tuple[str, str], ...]:
    pairs = [
        ("model.embed_tokens.weight", "embeddings.embed_tokens.weight"),
        ("model.final_layernorm.weight", "norm.weight"),
        ("model.final_layernorm.bias", "norm.bias"),
        ("lm_head.weight", "lm_head.weight"),
        ("lm_head.bias", "lm_head.bias"),
    ]
    layer = [
        ("input_layernorm", "self_attn_norm"),
        ("self_attn.q_proj", "self_attn.q_proj"),
        ("self_attn.k_proj", "self_attn.k_proj"),
        ("self_attn.v_proj", "self_attn.v_proj"),
        ("self_attn.dense", "self_attn.o_proj"),
        ("mlp.fc1", "ffn.up_proj"),
        ("mlp.fc2", "ffn.down_proj"),
    ]
    for hf_name, ours in layer:
        for kind in ("weight", "bias"):
            pairs.append((f"model.layers.{{i}}.{hf_name}.{kind}", f"layers.{{i}}.{ours}.{kind}"))
    return tuple(pairs)


def _layer_prefixes(state_dict: StateDict, suffix: str) -> list[str]:
    return [name.removesuffix(suffix) for name in state_dict if name.endswith(suffix)]


def phi3_from_hf_tensors(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split Phi-3's fused ``qkv_proj`` (rows ``[q | k | v]``) and ``gate_up_proj`` (rows ``[gate | up]``).

    ``qkv_proj.weight [(H + 2·H_kv)·D, d] → q_proj [H·D, d], k_proj/v_proj [H_kv·D, d]``;
    ``gate_up_proj.weight [2·d_ff, d] → gate_proj, up_proj [d_ff, d]``. Names stay Hugging Face's.
    """
    q_rows = config.n_heads * config.resolved_head_dim
    kv_rows = config.resolved_kv_heads * config.resolved_head_dim
    for prefix in _layer_prefixes(state_dict, "self_attn.qkv_proj.weight"):
        fused = state_dict.pop(f"{prefix}self_attn.qkv_proj.weight")
        if fused.shape[0] != q_rows + 2 * kv_rows:
            raise ValueError(f"{prefix}self_attn.qkv_proj.weight has {fused.shape[0]} rows, expected {q_rows + 2 * kv_rows}")
        q, k, v = fused.split([q_rows, kv_rows, kv_rows], dim=0)
        state_dict |= {f"{prefix}self_attn.q_proj.weight": q, f"{prefix}self_attn.k_proj.weight": k, f"{prefix}self_attn.v_proj.weight": v}
    for prefix in _layer_prefixes(state_dict, "mlp.gate_up_proj.weight"):
        fused = state_dict.pop(f"{prefix}mlp.gate_up_proj.weight")
        if fused.shape[0] != 2 * config.intermediate_size:
            raise ValueError(f"{prefix}mlp.gate_up_proj.weight has {fused.shape[0]} rows, expected {2 * config.intermediate_size}")
        gate, up = fused.chunk(2, dim=0)
        state_dict |= {f"{prefix}mlp.gate_proj.weight": gate, f"{prefix}mlp.up_proj.weight": up}
    return state_dict


def phi3_to_hf_tensors(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`phi3_from_hf_tensors`: fuse Q/K/V and gate/up back into Phi-3's tensors."""
    for prefix in _layer_prefixes(state_dict, "self_attn.q_proj.weight"):
        parts = [state_dict.pop(f"{prefix}self_attn.{p}_proj.weight") for p in ("q", "k", "v")]
        state_dict[f"{prefix}self_attn.qkv_proj.weight"] = torch.cat(parts, dim=0)
    for prefix in _layer_prefixes(state_dict, "mlp.gate_proj.weight"):
        parts = [state_dict.pop(f"{prefix}mlp.{p}_proj.weight") for p in ("gate", "up")]
        state_dict[f"{prefix}mlp.gate_up_proj.weight"] = torch.cat(parts, dim=0)
    return state_dict


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="phi",
        hf_class_name="PhiForCausalLM",
        config_from_hf=phi_config_from_hf,
        config_to_hf=phi_config_to_hf,
        key_map=_phi_key_map(),
        model_class=CausalLM,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
register_architecture(
    HFArchitecture(
        model_type="phi3",
        hf_class_name="Phi3ForCausalLM",
        config_from_hf=phi3_config_from_hf,
        config_to_hf=phi3_config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        from_hf_tensors=phi3_from_hf_tensors,
        to_hf_tensors=phi3_to_hf_tensors,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
