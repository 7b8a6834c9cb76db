"""LLaMA 1/2/3 (Touvron et al., 2023; Meta, 2024): the pre-norm RMSNorm + SwiGLU + RoPE decoder.

LLaMA 1 fixed the recipe most later open models copy: pre-normalisation with RMSNorm, SwiGLU with
``8d/3`` hidden units rounded to 256, rotary positions, no biases, untied output. LLaMA 2 doubled the
context to 4096 and used grouped-query attention for 70B (8 KV heads); LLaMA 3 moved to a 128K
vocabulary, GQA everywhere and ``θ = 500 000``.

Meta's own checkpoints store RoPE in the interleaved layout; Hugging Face's store it half-split.
:func:`from_meta_state_dict` converts one to the other by permuting the rows of ``W_q``/``W_k``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ...ffn import gated_hidden_size
from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, hf_common_fields_to_hf, llama_like_key_map

__all__ = ["llama_config", "permute_for_half_split", "from_meta_state_dict"]


def llama_config(**fields: Any) -> ModelConfig:
    """A LLaMA-style :class:`ModelConfig`: RMSNorm, pre-norm, SwiGLU, RoPE, no biases."""
    defaults: dict[str, Any] = dict(
        position="rope", block="pre", norm="rmsnorm", ffn="gated", activation="silu", norm_eps=1e-6
    )
    return ModelConfig(**{**defaults, **fields})


def _register_presets() -> None:
    sizes = [
        # name, d, layers, heads, kv heads, ffn, vocab, context, eps, theta, published parameters, source
        ("llama-7b", 4096, 32, 32, None, gated_hidden_size(4096), 32000, 2048, 1e-6, 1e4, 6.7e9, "LLaMA paper, Table 2"),
        ("llama-13b", 5120, 40, 40, None, gated_hidden_size(5120), 32000, 2048, 1e-6, 1e4, 13.0e9, "LLaMA paper, Table 2"),
        ("llama-33b", 6656, 60, 52, None, gated_hidden_size(6656), 32000, 2048, 1e-6, 1e4, 32.5e9, "LLaMA paper, Table 2"),
        ("llama-65b", 8192, 80, 64, None, gated_hidden_size(8192), 32000, 2048, 1e-5, 1e4, 65.2e9, "LLaMA paper, Table 2"),
        ("llama2-7b", 4096, 32, 32, None, 11008, 32000, 4096, 1e-5, 1e4, 6.7e9, "LLaMA 2 paper, Table 1"),
        ("llama2-13b", 5120, 40, 40, None, 13824, 32000, 4096, 1e-5, 1e4, 13.0e9, "LLaMA 2 paper, Table 1"),
        ("llama2-70b", 8192, 80, 64, 8, 28672, 32000, 4096, 1e-5, 1e4, 69.0e9, "LLaMA 2 paper, Table 1"),
        ("llama3-8b", 4096, 32, 32, 8, 14336, 128256, 8192, 1e-5, 5e5, 8.0e9, "LLaMA 3 model card"),
        ("llama3-70b", 8192, 80, 64, 8, 28672, 128256, 8192, 1e-5, 5e5, 70.6e9, "LLaMA 3 model card"),
    ]
    for name, d, layers, heads, kv, ffn, vocab, context, eps, theta, published, source in sizes:
        config = llama_config(
            vocab_size=vocab, hidden_size=d, n_layers=layers, n_heads=heads, n_kv_heads=kv,
            intermediate_size=ffn, max_positions=context, norm_eps=eps, rope_theta=theta,
        )
        register_preset(Preset(name, config, CausalLM, source, published))
    tiny = llama_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=176, max_positions=256
    )
    register_preset(Preset("tiny-llama", tiny, CausalLM, "tests and notebooks"))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    bias = bool(hf.get("attention_bias", False))
    return llama_config(
        **hf_common_fields(hf),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation=hf.get("hidden_act", "silu"),
        qkv_bias=bias,
        o_bias=bias,
        mlp_bias=bool(hf.get("mlp_bias", False)),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if config.qkv_bias != config.o_bias:
        raise ValueError("the Hugging Face LLaMA config has one attention_bias for Q/K/V and O")
    return {
        **hf_common_fields_to_hf(config),
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "attention_bias": config.qkv_bias,
        "mlp_bias": config.mlp_bias,
    }


def permute_for_half_split(weight: Tensor, n_heads: int) -> Tensor:
    """Rows of a Meta ``W_q``/``W_k`` (interleaved RoPE pairs) → half-split order, per head.

    Within each head, Meta's output rows are ordered ``(pair 0: re, im), (pair 1: re, im), …``; the
    half-split layout wants all ``re`` rows then all ``im`` rows. ``[n_heads·D, d] → [n_heads·D, d]``.
    """
    rows, width = weight.shape
    head_dim = rows // n_heads
    return weight.view(n_heads, head_dim // 2, 2, width).transpose(1, 2).reshape(rows, width)


_META_NAMES = (
    ("tok_embeddings.weight", "embeddings.embed_tokens.weight"),
    ("norm.weight", "norm.weight"),
    ("output.weight", "lm_head.weight"),
    ("layers.{i}.attention_norm.weight", "layers.{i}.self_attn_norm.weight"),
    ("layers.{i}.ffn_norm.weight", "layers.{i}.ffn_norm.weight"),
    ("layers.{i}.attention.wq.weight", "layers.{i}.self_attn.q_proj.weight"),
    ("layers.{i}.attention.wk.weight", "layers.{i}.self_attn.k_proj.weight"),
    ("layers.{i}.attention.wv.weight", "layers.{i}.self_attn.v_proj.weight"),
    ("layers.{i}.attention.wo.weight", "layers.{i}.self_attn.o_proj.weight"),
    ("layers.{i}.feed_forward.w1.weight", "layers.{i}.ffn.gate_proj.weight"),
    ("layers.{i}.feed_forward.w3.weight", "layers.{i}.ffn.up_proj.weight"),
    ("layers.{i}.feed_forward.w2.weight", "layers.{i}.ffn.down_proj.weight"),
)


def from_meta_state_dict(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """A Meta-format LLaMA state dict (``consolidated.00.pth``) → llmcore names, half-split RoPE.

    Load the result into ``CausalLM(config)`` with ``rope_interleaved=False``. (Alternatively keep
    Meta's rows and set ``rope_interleaved=True``: both give the same logits.) ``rope.freqs`` is a
    buffer and is dropped.
    """
    from ..registry import KeyMap

    key_map = KeyMap(_META_NAMES)
    converted: dict[str, Tensor] = {}
    unknown = []
    for name, tensor in state_dict.items():
        target = key_map.to_llmcore(name)
        if target is None:
            if name != "rope.freqs":
                unknown.append(name)
            continue
        if target.endswith("self_attn.q_proj.weight"):
            tensor = permute_for_half_split(tensor, config.n_heads)
        elif target.endswith("self_attn.k_proj.weight"):
            tensor = permute_for_half_split(tensor, config.resolved_kv_heads)
        converted[target] = tensor
    if unknown:
        raise KeyError(f"Meta LLaMA checkpoint tensors with no llmcore counterpart: {sorted(unknown)}")
    return converted


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="llama",
        hf_class_name="LlamaForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
