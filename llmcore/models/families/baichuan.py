"""Baichuan 2 (Yang et al., 2023, "Baichuan 2: Open Large-scale Language Models"): LLaMA with two changes.

Both sizes are LLaMA's pre-norm RMSNorm + SwiGLU decoder with a 125,696-token vocabulary, trained on
2.6T tokens. What differs:

* **Positions.** Baichuan 2-7B uses RoPE (half-split, ``θ = 10 000``); Baichuan 2-13B uses ALiBi
  (线性偏置注意力, no position embedding at all; report §2.3, Table 2).
* **NormHead** (归一化输出层, §2.5): the rows of the output matrix are normalised to unit length before
  the product, which stabilised training and keeps rare tokens' rows from dominating the logits.
  ``ModelConfig.norm_head`` (:class:`llmcore.models.NormHead`). The report pairs it with the max-z loss,
  :func:`llmcore.losses.max_z_loss`.

Checkpoints (Baichuan's own ``modeling_baichuan.py``; transformers has no class for it) store Q, K and V
as one ``W_pack`` of ``[3d, d]`` whose rows are ``[q | k | v]``; :func:`baichuan_from_hf_tensors`
splits it, :func:`baichuan_to_hf_tensors` packs it again. The other names are LLaMA's.

Both sizes (and Baichuan 1) declare ``model_type = "baichuan"`` and their ``config.json`` names neither
the position scheme nor the head. :func:`config_from_hf` reads the keys ``position_embedding``
(``"rope"``/``"alibi"``) and ``norm_head`` when present (llmcore writes them), and otherwise decides as
vLLM does for positions — ``hidden_size == 4096`` (the 7B models) means RoPE, anything else ALiBi —
and takes NormHead from the presence of ``z_loss_weight``, a key only Baichuan 2's configs carry.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, llama_like_key_map
from .llama import llama_config

__all__ = ["baichuan_config", "baichuan_from_hf_tensors", "baichuan_to_hf_tensors", "config_from_hf", "config_to_hf"]

StateDict = dict[str, Tensor]
VOCAB_SIZE = 125696
POSITIONS = ("rope", "alibi")


def baichuan_config(**fields: Any) -> ModelConfig:
    """A Baichuan 2 :class:`ModelConfig`: LLaMA's recipe with NormHead; pass ``position="alibi"`` for 13B."""
    return llama_config(**{"norm_head": True, "norm_eps": 1e-6, **fields})


def _register_presets() -> None:
    sizes = [
        # name, position, d, layers, heads, ffn, published parameters
        ("baichuan2-7b", "rope", 4096, 32, 32, 11008, 7.51e9),
        ("baichuan2-13b", "alibi", 5120, 40, 40, 13696, 13.9e9),
    ]
    for name, position, d, layers, heads, ffn, published in sizes:
        config = baichuan_config(
            vocab_size=VOCAB_SIZE, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=ffn,
            max_positions=4096, position=position, pad_token_id=0,
        )
        source = "Baichuan 2 report, Table 2; baichuan-inc/" + ("Baichuan2-7B-Base" if d == 4096 else "Baichuan2-13B-Base")
        register_preset(Preset(name, config, CausalLM, source, published))
    tiny = dict(vocab_size=256, n_layers=2, intermediate_size=128, max_positions=256)
    register_preset(
        Preset("tiny-baichuan2-7b", baichuan_config(hidden_size=64, n_heads=4, **tiny), CausalLM, "tests and notebooks")
    )
    # Six heads, like 13B's forty, is not a power of two: the ALiBi slopes take the interleaved branch.
    register_preset(
        Preset(
            "tiny-baichuan2-13b",
            baichuan_config(hidden_size=48, n_heads=6, position="alibi", **tiny),
            CausalLM,
            "tests and notebooks",
        )
    )


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Baichuan ``config.json`` (normalised) → :class:`ModelConfig` (see the module docstring for the rules)."""
    common = hf_common_fields(hf)
    position = str(hf.get("position_embedding") or ("rope" if hf["hidden_size"] == 4096 else "alibi")).lower()
    if position not in POSITIONS:
        raise ValueError(f"baichuan: position_embedding={position!r} is not one of {list(POSITIONS)}")
    common["max_positions"] = hf.get("max_position_embeddings") or hf.get("model_max_length") or 4096
    return baichuan_config(
        **common,
        position=position,
        norm_head=bool(hf["norm_head"]) if "norm_head" in hf else "z_loss_weight" in hf,
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation=hf.get("hidden_act", "silu"),
    )


# What Baichuan's modeling code hard-codes; a config that differs cannot be saved as it.
_FIXED = dict(
    block="pre", norm="rmsnorm", ffn="gated", qkv_bias=False, o_bias=False, mlp_bias=False, lm_head_bias=False,
    rotary_dim=None, rope_interleaved=False, rope_scaling=None, layer_kinds=None, sliding_window=None,
    norm_unit_offset=False,
)


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    for name, value in _FIXED.items():
        if getattr(config, name) != value:
            raise ValueError(f"Baichuan's config cannot express ModelConfig.{name}={getattr(config, name)!r}")
    if config.position not in POSITIONS:
        raise ValueError(f"Baichuan's config cannot express ModelConfig.position={config.position!r}")
    if config.position == "rope" and config.rope_theta != 10000.0:
        raise ValueError(f"Baichuan's RoPE has θ = 10000, not ModelConfig.rope_theta={config.rope_theta}")
    if config.resolved_kv_heads != config.n_heads or config.resolved_head_dim * config.n_heads != config.hidden_size:
        raise ValueError("Baichuan's W_pack needs n_kv_heads == n_heads and head_dim == hidden_size / n_heads (ModelConfig.n_kv_heads, head_dim)")
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "model_max_length": config.max_positions,
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        "position_embedding": config.position,
        "norm_head": config.norm_head,
    }


def baichuan_from_hf_tensors(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split every ``self_attn.W_pack.weight [3d, d]`` into ``q_proj``, ``k_proj``, ``v_proj`` ``[d, d]``."""
    width = config.n_heads * config.resolved_head_dim
    for name in [name for name in state_dict if name.endswith("self_attn.W_pack.weight")]:
        packed = state_dict.pop(name)
        if packed.shape[0] != 3 * width:
            raise ValueError(f"{name} has {packed.shape[0]} rows, expected 3 × {width}")
        prefix = name.removesuffix("W_pack.weight")
        for projection, part in zip(("q_proj", "k_proj", "v_proj"), packed.split(width, dim=0)):
            state_dict[f"{prefix}{projection}.weight"] = part
    return state_dict


def baichuan_to_hf_tensors(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`baichuan_from_hf_tensors`: stack Q, K, V rows into ``W_pack``."""
    for name in [name for name in state_dict if name.endswith("self_attn.q_proj.weight")]:
        prefix = name.removesuffix("q_proj.weight")
        parts = [state_dict.pop(f"{prefix}{projection}.weight") for projection in ("q_proj", "k_proj", "v_proj")]
        state_dict[f"{prefix}W_pack.weight"] = torch.cat(parts, dim=0)
    return state_dict


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="baichuan",
        hf_class_name="BaichuanForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        from_hf_tensors=baichuan_from_hf_tensors,
        to_hf_tensors=baichuan_to_hf_tensors,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
