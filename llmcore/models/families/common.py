"""Translation helpers shared by the families whose Hugging Face code descends from LLaMA's."""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ...rope import RopeScaling
from ..config import ModelConfig

__all__ = ["rope_scaling_from_hf", "rope_scaling_to_hf", "llama_like_key_map", "hf_common_fields", "hf_common_fields_to_hf",
           "split_per_head_qkv", "fuse_per_head_qkv"]


def rope_scaling_from_hf(hf: dict[str, Any]) -> RopeScaling | None:
    """``rope_scaling`` of a normalised Hugging Face config → :class:`RopeScaling` (``None`` = plain RoPE)."""
    scaling = hf.get("rope_scaling")
    if not scaling:
        return None
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind in (None, "default"):
        return None
    factor = float(scaling["factor"])
    original = scaling.get("original_max_position_embeddings") or hf.get("max_position_embeddings")
    if kind == "linear":
        return RopeScaling("linear", factor)
    if kind == "dynamic":
        return RopeScaling("dynamic", factor, original_max_positions=int(original))
    if kind == "llama3":
        return RopeScaling(
            "llama3",
            factor,
            original_max_positions=int(scaling["original_max_position_embeddings"]),
            low_freq_factor=float(scaling["low_freq_factor"]),
            high_freq_factor=float(scaling["high_freq_factor"]),
        )
    if kind == "ntk":
        return RopeScaling("ntk", factor)
    if kind == "yarn":
        variants = {key: scaling[key] for key in ("attention_factor", "mscale", "mscale_all_dim") if scaling.get(key)}
        if variants or scaling.get("truncate", True) is False:
            raise ValueError(
                f"YaRN with {variants or {'truncate': False}} (DeepSeek-style attention factor or an untruncated ramp) "
                "is not supported by llmcore: only the paper's YaRN (attention factor 0.1·ln s + 1) is"
            )
        return RopeScaling(
            "yarn",
            factor,
            original_max_positions=int(original),
            beta_fast=float(scaling.get("beta_fast") or 32.0),
            beta_slow=float(scaling.get("beta_slow") or 1.0),
        )
    raise ValueError(f"RoPE scaling type {kind!r} is not supported by llmcore (linear, dynamic, llama3, ntk, yarn are)")


def rope_scaling_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The RoPE fields of a transformers 5.x config (``rope_parameters``)."""
    parameters: dict[str, Any] = {"rope_type": "default", "rope_theta": config.rope_theta}
    scaling = config.rope_scaling
    if scaling is not None:
        parameters.update(rope_type=scaling.type, factor=scaling.factor)
        if scaling.original_max_positions is not None:
            parameters["original_max_position_embeddings"] = scaling.original_max_positions
        if scaling.type == "llama3":
            parameters.update(low_freq_factor=scaling.low_freq_factor, high_freq_factor=scaling.high_freq_factor)
        if scaling.type == "yarn":
            parameters.update(beta_fast=scaling.beta_fast, beta_slow=scaling.beta_slow)
    return {"rope_parameters": parameters}


def hf_common_fields(hf: dict[str, Any]) -> dict[str, Any]:
    """ModelConfig fields every LLaMA-descended config spells the same way."""
    n_heads = hf["num_attention_heads"]
    return dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // n_heads,
        intermediate_size=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 2048),
        rope_theta=float(hf.get("rope_theta", 10000.0)),
        rope_scaling=rope_scaling_from_hf(hf),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        pad_token_id=hf.get("pad_token_id"),
    )


def hf_common_fields_to_hf(config: ModelConfig) -> dict[str, Any]:
    """The inverse of :func:`hf_common_fields`: sizes, RoPE, tying and padding in Hugging Face spelling."""
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.resolved_kv_heads,
        "head_dim": config.resolved_head_dim,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        **rope_scaling_to_hf(config),
    }


def llama_like_key_map(prefix: str = "model.") -> tuple[tuple[str, str], ...]:
    """Hugging Face LLaMA tensor names ↔ llmcore's, biases included (used only when present)."""
    pairs = [
        (f"{prefix}embed_tokens.weight", "embeddings.embed_tokens.weight"),
        (f"{prefix}norm.weight", "norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
        (f"{prefix}layers.{{i}}.input_layernorm.weight", "layers.{i}.self_attn_norm.weight"),
        (f"{prefix}layers.{{i}}.post_attention_layernorm.weight", "layers.{i}.ffn_norm.weight"),
    ]
    for projection in ("q_proj", "k_proj", "v_proj", "o_proj"):
        for kind in ("weight", "bias"):
            pairs.append((f"{prefix}layers.{{i}}.self_attn.{projection}.{kind}", f"layers.{{i}}.self_attn.{projection}.{kind}"))
    for projection in ("gate_proj", "up_proj", "down_proj"):
        for kind in ("weight", "bias"):
            pairs.append((f"{prefix}layers.{{i}}.mlp.{projection}.{kind}", f"layers.{{i}}.ffn.{projection}.{kind}"))
    return tuple(pairs)


def split_per_head_qkv(state_dict: dict[str, Tensor], config: ModelConfig, attention_prefix: str) -> dict[str, Tensor]:
    """Split fused ``{attention_prefix}query_key_value`` tensors stored per head (BLOOM, ChatGLM-6B).

    Rows are ordered ``[n_heads, 3, head_dim]`` (each head's q, k, v together), unlike GPT-2's
    ``[q | k | v]``. ``attention_prefix`` is a regex for the module path up to the projection, e.g.
    ``r"transformer\\.h\\.\\d+\\.self_attention\\."``. ``weight [3d, d] → 3 × [d, d]``,
    ``bias [3d] → 3 × [d]``; other names are kept.
    """
    fused_name = re.compile(rf"^(?P<attn>{attention_prefix})query_key_value\.(?P<kind>weight|bias)$")
    heads, head_dim, width = config.n_heads, config.resolved_head_dim, config.hidden_size
    converted: dict[str, Tensor] = {}
    for name, tensor in state_dict.items():
        fused = fused_name.match(name)
        if fused is None:
            converted[name] = tensor
            continue
        expected = (3 * heads * head_dim, width) if fused["kind"] == "weight" else (3 * heads * head_dim,)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")
        per_head = tensor.reshape(heads, 3, head_dim, *tensor.shape[1:])
        for index, part in enumerate("qkv"):
            converted[f"{fused['attn']}{part}_proj.{fused['kind']}"] = per_head[:, index].reshape(
                heads * head_dim, *tensor.shape[1:]
            )
    return converted


def fuse_per_head_qkv(state_dict: dict[str, Tensor], config: ModelConfig, attention_prefix: str) -> dict[str, Tensor]:
    """Inverse of :func:`split_per_head_qkv`: interleave q, k, v per head into ``query_key_value``."""
    split_name = re.compile(rf"^(?P<attn>{attention_prefix})(?P<part>[qkv])_proj\.(?P<kind>weight|bias)$")
    heads, head_dim = config.n_heads, config.resolved_head_dim
    converted: dict[str, Tensor] = {}
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for name, tensor in state_dict.items():
        split = split_name.match(name)
        if split:
            parts.setdefault((split["attn"], split["kind"]), {})[split["part"]] = tensor
        else:
            converted[name] = tensor
    for (attn, kind), pieces in parts.items():
        if set(pieces) != set("qkv"):
            raise KeyError(f"{attn}query_key_value.{kind}: needs q, k and v projections, got {sorted(pieces)}")
        rest = pieces["q"].shape[1:]
        per_head = torch.stack([pieces[p].reshape(heads, head_dim, *rest) for p in "qkv"], dim=1)
        converted[f"{attn}query_key_value.{kind}"] = per_head.reshape(3 * heads * head_dim, *rest)
    return converted
