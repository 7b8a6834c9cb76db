"""BLOOM (BigScience, 2022, "BLOOM: A 176B-Parameter Open-Access Multilingual Language Model").

GPT-2's pre-norm decoder with three changes (BLOOM paper §3.2.2):

* ALiBi (线性偏置注意力, :mod:`llmcore.alibi`) instead of position embeddings: each head adds
  ``−m_h·(q − kv)`` to its scores. With 112 heads (176B) — not a power of two — the slopes are
  the 64 of a 64-head model followed by every other slope of a 128-head one.
* A LayerNorm right after the token embeddings (``word_embeddings_layernorm``, 词嵌入层归一化,
  ``ModelConfig.embedding_norm``), which the paper found to stabilise training in bfloat16.
* A 250,880-token multilingual vocabulary, tied to the output layer.

Biases are everywhere, the MLP is ``4d`` wide with the tanh-approximated GELU, and a final ``ln_f``
closes the stack.

Checkpoint layout. Megatron-DeepSpeed fuses Q, K and V into one ``query_key_value`` linear layer of
``[3d, d]`` whose output rows are grouped **per head**: ``[n_heads, 3, head_dim]``, i.e. head 0's
q, k, v rows, then head 1's, … — not ``[q | k | v]`` as in GPT-2. :func:`bloom_from_hf` splits them
accordingly; splitting in GPT-2's order gives wrong logits with the right shapes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import fuse_per_head_qkv, split_per_head_qkv
from .gpt import with_base_prefix

__all__ = ["bloom_config", "bloom_from_hf", "bloom_to_hf"]

StateDict = dict[str, Tensor]


def bloom_config(**fields: Any) -> ModelConfig:
    """A BLOOM-style :class:`ModelConfig`: pre-norm LayerNorm, ALiBi, embedding LayerNorm, GELU (tanh) MLP, biases, tied."""
    defaults: dict[str, Any] = dict(
        position="alibi", block="pre", norm="layernorm", norm_eps=1e-5, embedding_norm=True, ffn="mlp",
        activation="gelu_tanh", qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True,
        final_norm=True, max_positions=2048,
    )
    return ModelConfig(**{**defaults, **fields})


def _register_presets() -> None:
    sizes = [
        # name, layers, d_model, heads, published parameters (BLOOM paper, Table 3)
        ("bloom-560m", 24, 1024, 16, 559e6),
        ("bloom-1b1", 24, 1536, 16, 1065e6),
        ("bloom-1b7", 24, 2048, 16, 1722e6),
        ("bloom-3b", 30, 2560, 32, 3003e6),
        ("bloom-7b1", 30, 4096, 32, 7069e6),
        ("bloom-176b", 70, 14336, 112, 176247e6),
    ]
    for name, layers, d, heads, published in sizes:
        config = bloom_config(vocab_size=250880, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d)
        register_preset(Preset(name, config, CausalLM, "BLOOM paper, Table 3", published))
    # Six heads: not a power of two, so the interleaved extra ALiBi slopes are used.
    tiny = bloom_config(vocab_size=256, hidden_size=48, n_layers=2, n_heads=6, intermediate_size=192, max_positions=128)
    register_preset(Preset("tiny-bloom", tiny, CausalLM, "tests and notebooks"))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    d = hf.get("hidden_size") or hf["n_embed"]
    # With apply_residual_connection_post_layernorm the residual is the normalised input:
    # n = LN(x); x = n + f(n), which is the DeepNorm wiring with α = 1.
    post_ln_residual = bool(hf.get("apply_residual_connection_post_layernorm", False))
    return bloom_config(
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        n_layers=hf.get("n_layer") or hf["num_hidden_layers"],
        n_heads=hf.get("n_head") or hf["num_attention_heads"],
        intermediate_size=4 * d,
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        block="deepnorm" if post_ln_residual else "pre",
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
        pad_token_id=hf.get("pad_token_id"),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if config.block == "deepnorm" and config.residual_alpha == 1.0:
        post_ln_residual = True
    elif config.block == "pre":
        post_ln_residual = False
    else:
        raise ValueError(f"ModelConfig.block={config.block!r} (α={config.residual_alpha}) has no BLOOM equivalent")
    if config.intermediate_size != 4 * config.hidden_size:
        raise ValueError(f"ModelConfig.intermediate_size={config.intermediate_size}: BLOOM fixes it to 4·hidden_size")
    if config.activation != "gelu_tanh":
        raise ValueError(f"ModelConfig.activation={config.activation!r}: BLOOM's MLP is the tanh GELU ('gelu_tanh')")
    if set(config.resolved_layer_kinds) != {"full"}:
        raise ValueError("ModelConfig.layer_kinds: BLOOM has dense attention only")
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "layer_norm_epsilon": config.norm_eps,
        "apply_residual_connection_post_layernorm": post_ln_residual,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
    }


_ATTENTION = r"transformer\.h\.\d+\.self_attention\."


def bloom_from_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split every per-head ``query_key_value`` into ``q_proj``/``k_proj``/``v_proj``."""
    return split_per_head_qkv(with_base_prefix(state_dict), config, _ATTENTION)


def bloom_to_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`bloom_from_hf`: interleave Q, K, V per head into ``query_key_value``."""
    return fuse_per_head_qkv(state_dict, config, _ATTENTION)


def _key_map() -> tuple[tuple[str, str], ...]:
    h = "transformer.h.{i}."
    pairs = [
        ("transformer.word_embeddings.weight", "embeddings.embed_tokens.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ]
    for kind in ("weight", "bias"):
        pairs += [
            (f"transformer.word_embeddings_layernorm.{kind}", f"embeddings.embed_norm.{kind}"),
            (f"transformer.ln_f.{kind}", f"norm.{kind}"),
            (f"{h}input_layernorm.{kind}", f"layers.{{i}}.self_attn_norm.{kind}"),
            (f"{h}post_attention_layernorm.{kind}", f"layers.{{i}}.ffn_norm.{kind}"),
            (f"{h}self_attention.q_proj.{kind}", f"layers.{{i}}.self_attn.q_proj.{kind}"),
            (f"{h}self_attention.k_proj.{kind}", f"layers.{{i}}.self_attn.k_proj.{kind}"),
            (f"{h}self_attention.v_proj.{kind}", f"layers.{{i}}.self_attn.v_proj.{kind}"),
            (f"{h}self_attention.dense.{kind}", f"layers.{{i}}.self_attn.o_proj.{kind}"),
            (f"{h}mlp.dense_h_to_4h.{kind}", f"layers.{{i}}.ffn.up_proj.{kind}"),
            (f"{h}mlp.dense_4h_to_h.{kind}", f"layers.{{i}}.ffn.down_proj.{kind}"),
        ]
    return tuple(pairs)


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="bloom",
        hf_class_name="BloomForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=_key_map(),
        model_class=CausalLM,
        from_hf_tensors=bloom_from_hf,
        to_hf_tensors=bloom_to_hf,
    )
)
