"""Qwen (Bai et al., 2023) and Qwen2 (Yang et al., 2024): LLaMA with biases on Q, K and V.

**Qwen-1** (通义千问) keeps LLaMA's pre-norm RMSNorm + SwiGLU + RoPE decoder and adds a bias to the
query/key/value projections only ("to enhance the extrapolation ability", report §2.2), an untied
output layer, and two training-free tricks for inputs longer than the trained length ``L₀``
(``seq_length``): LogN attention scaling (LogN 注意力缩放, ``ModelConfig.logn_trained_length``) and
its own dynamic NTK RoPE (``RopeScaling("qwen_dynamic")``: ``α = 2^⌈log₂(L/L₀)+1⌉ − 1``,
``base' = base · α^(d/(d−2))``, one ``α`` per sequence). Its checkpoints (``QWenLMHeadModel``, remote
code, ``model_type "qwen"``) fuse Q/K/V into ``c_attn`` and name the SwiGLU matrices ``w1`` (the
linear "up" input), ``w2`` (the SiLU gate) and ``c_proj``; ``intermediate_size`` in its config.json
is *twice* the width of each matrix.

Qwen's original code derives α and LogN once per ``generate`` call and only in eval mode; llmcore
has no KV cache and applies both in every forward from the positions it is given. For a padded
batch beyond ``L₀`` pass ``position_ids = cumsum(mask) − 1`` so that each row's α comes from its
own length, as Qwen's does.

**Qwen2** (``model_type "qwen2"``) keeps the Q/K/V biases, drops LogN/NTK for a larger base
(``θ = 10⁶``), adds GQA and ties the embeddings of the small models. Its optional sliding-window
attention (滑动窗口注意力) applies to layers ``i ≥ max_window_layers`` when ``use_sliding_window``
is set; transformers 5 spells the per-layer pattern ``layer_types`` and llmcore maps it to
``ModelConfig.layer_kinds``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ...rope import RopeScaling
from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, hf_common_fields_to_hf, llama_like_key_map
from .llama import llama_config

__all__ = ["qwen_config", "qwen2_config", "qwen1_config_from_hf", "qwen1_config_to_hf", "qwen2_layer_kinds"]

StateDict = dict[str, Tensor]
_QKV = ("q_proj", "k_proj", "v_proj")
_KIND_FROM_HF = {"full_attention": "full", "sliding_attention": "sliding"}
_KIND_TO_HF = {kind: name for name, kind in _KIND_FROM_HF.items()}


def qwen_config(*, trained_length: int | None = 2048, **fields: Any) -> ModelConfig:
    """A Qwen-1 :class:`ModelConfig`: LLaMA + Q/K/V bias, with LogN and dynamic NTK beyond ``trained_length``.

    ``trained_length=None`` switches both long-context tricks off.
    """
    extension: dict[str, Any] = {}
    if trained_length is not None:
        extension = dict(
            logn_trained_length=trained_length,
            rope_scaling=RopeScaling("qwen_dynamic", 1.0, original_max_positions=trained_length),
        )
    return llama_config(**{"qkv_bias": True, "o_bias": False, **extension, **fields})


def qwen2_config(**fields: Any) -> ModelConfig:
    """A Qwen2 :class:`ModelConfig`: LLaMA + Q/K/V bias, ``θ = 10⁶``."""
    return llama_config(**{"qkv_bias": True, "o_bias": False, "rope_theta": 1e6, **fields})


def _register_presets() -> None:
    qwen1 = [
        # name, d, layers, heads, ffn per matrix, vocab, trained length, max positions, published, source
        ("qwen-7b", 4096, 32, 32, 22016 // 2, 151936, 8192, 32768, 7.7e9,
         "Qwen technical report (Bai et al., 2023), Table 1; Qwen/Qwen-7B config.json (seq_length 8192)"),
        ("qwen-14b", 5120, 40, 40, 27392 // 2, 152064, 2048, 8192, 14.2e9,
         "Qwen technical report (Bai et al., 2023), Table 1; Qwen/Qwen-14B config.json"),
    ]
    for name, d, layers, heads, ffn, vocab, trained, context, published, source in qwen1:
        config = qwen_config(
            trained_length=trained, vocab_size=vocab, hidden_size=d, n_layers=layers, n_heads=heads,
            intermediate_size=ffn, max_positions=context,
        )
        register_preset(Preset(name, config, CausalLM, source, published))
    qwen2 = [
        # name, d, layers, heads, kv heads, ffn, vocab, tied, published, source
        ("qwen2-0.5b", 896, 24, 14, 2, 4864, 151936, True, 0.49e9,
         "Qwen2 technical report (Yang et al., 2024), Table 1; 494M on the Qwen/Qwen2-0.5B model card"),
        ("qwen2-7b", 3584, 28, 28, 4, 18944, 152064, False, 7.62e9,
         "Qwen2 technical report (Yang et al., 2024), Table 1; 7.62B on the Qwen/Qwen2-7B model card"),
    ]
    for name, d, layers, heads, kv, ffn, vocab, tied, published, source in qwen2:
        config = qwen2_config(
            vocab_size=vocab, hidden_size=d, n_layers=layers, n_heads=heads, n_kv_heads=kv, intermediate_size=ffn,
            max_positions=32768, tie_word_embeddings=tied,
        )
        register_preset(Preset(name, config, CausalLM, source, published))
    tiny = dict(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=176, max_positions=256)
    register_preset(Preset("tiny-qwen", qwen_config(trained_length=64, **tiny), CausalLM, "tests and notebooks"))
    register_preset(
        Preset("tiny-qwen2", qwen2_config(n_kv_heads=2, tie_word_embeddings=True, **tiny), CausalLM, "tests and notebooks")
    )


# ----------------------------------------------------------------------------- Qwen-1 (remote code)


def qwen1_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """A Qwen-1 ``config.json`` (``QWenConfig``) → :class:`ModelConfig`."""
    d, heads = hf["hidden_size"], hf["num_attention_heads"]
    head_dim = hf.get("kv_channels", d // heads)
    if head_dim * heads != d:
        # Qwen splits c_attn's output at hidden_size, so any other projection width breaks its own code.
        raise ValueError(f"qwen config: kv_channels={head_dim} × num_attention_heads={heads} must equal hidden_size={d}")
    if hf["intermediate_size"] % 2:
        raise ValueError(f"qwen config: intermediate_size={hf['intermediate_size']} must be even (w1 and w2 get half each)")
    use_ntk, use_logn = hf.get("use_dynamic_ntk", True), hf.get("use_logn_attn", True)
    trained = hf.get("seq_length")
    if trained is None and (use_ntk or use_logn):
        raise ValueError("qwen config: seq_length (the trained length for LogN and dynamic NTK) is missing")
    rotary_pct = float(hf.get("rotary_pct", 1.0))
    bias = not hf.get("no_bias", True)
    return qwen_config(
        trained_length=None,
        logn_trained_length=trained if use_logn else None,
        rope_scaling=RopeScaling("qwen_dynamic", 1.0, original_max_positions=trained) if use_ntk else None,
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        n_layers=hf["num_hidden_layers"],
        n_heads=heads,
        intermediate_size=hf["intermediate_size"] // 2,
        max_positions=hf.get("max_position_embeddings", 8192),
        norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        rope_theta=float(hf.get("rotary_emb_base", 10000.0)),
        rotary_dim=None if rotary_pct == 1.0 else int(head_dim * rotary_pct),
        o_bias=bias,
        mlp_bias=bias,
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
        pad_token_id=hf.get("pad_token_id"),
    )


def qwen1_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    """:class:`ModelConfig` → a Qwen-1 ``config.json`` (loadable by Qwen's remote code)."""
    if not config.qkv_bias:
        raise ValueError("Qwen-1 always has a Q/K/V bias; ModelConfig.qkv_bias must be True")
    if config.o_bias != config.mlp_bias:
        raise ValueError(f"Qwen-1 has one no_bias flag for c_proj and the MLP; ModelConfig.o_bias={config.o_bias} != mlp_bias={config.mlp_bias}")
    if config.resolved_kv_heads != config.n_heads or config.resolved_head_dim * config.n_heads != config.hidden_size:
        raise ValueError("Qwen-1 has no GQA and head_dim = hidden_size / n_heads; check ModelConfig.n_kv_heads and head_dim")
    scaling = config.rope_scaling
    if scaling is not None and scaling.type != "qwen_dynamic":
        raise ValueError(f"Qwen-1 knows only its own dynamic NTK; ModelConfig.rope_scaling.type={scaling.type!r}")
    trained = {config.logn_trained_length, scaling.original_max_positions if scaling is not None else None} - {None}
    if len(trained) > 1:
        raise ValueError(f"Qwen-1 has one seq_length; ModelConfig.logn_trained_length and rope_scaling disagree: {sorted(trained)}")
    return {
        "architectures": ["QWenLMHeadModel"],
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "kv_channels": config.resolved_head_dim,
        "intermediate_size": 2 * config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "seq_length": trained.pop() if trained else config.max_positions,
        "layer_norm_epsilon": config.norm_eps,
        "rotary_emb_base": config.rope_theta,
        "rotary_pct": config.resolved_rotary_dim / config.resolved_head_dim,
        "no_bias": not config.o_bias,
        "use_dynamic_ntk": scaling is not None,
        "use_logn_attn": config.logn_trained_length is not None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "scale_attn_weights": True,
    }


def _split_c_attn(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """``attn.c_attn`` (rows: all Q, then all K, then all V) → ``attn.q_proj``/``k_proj``/``v_proj``."""
    for name in [name for name in state_dict if ".attn.c_attn." in name]:
        fused = state_dict.pop(name)
        if fused.shape[0] != 3 * config.hidden_size:
            raise ValueError(f"{name}: {fused.shape[0]} rows, expected 3 × hidden_size = {3 * config.hidden_size}")
        prefix, kind = name.rsplit(".c_attn.", 1)
        for projection, part in zip(_QKV, fused.chunk(3, dim=0)):
            state_dict[f"{prefix}.{projection}.{kind}"] = part
    return state_dict


def _fuse_c_attn(state_dict: StateDict, config: ModelConfig) -> StateDict:
    for name in [name for name in state_dict if ".attn.q_proj." in name]:
        prefix, kind = name.rsplit(".q_proj.", 1)
        parts = [state_dict.pop(f"{prefix}.{projection}.{kind}") for projection in _QKV]
        state_dict[f"{prefix}.c_attn.{kind}"] = torch.cat(parts, dim=0)
    return state_dict


def _qwen1_key_map() -> tuple[tuple[str, str], ...]:
    pairs = [
        ("transformer.wte.weight", "embeddings.embed_tokens.weight"),
        ("transformer.ln_f.weight", "norm.weight"),
        ("lm_head.weight", "lm_head.weight"),
        ("transformer.h.{i}.ln_1.weight", "layers.{i}.self_attn_norm.weight"),
        ("transformer.h.{i}.ln_2.weight", "layers.{i}.ffn_norm.weight"),
    ]
    # w1 is the linear branch and w2 the SiLU gate: Qwen's MLP is c_proj(w1(x) * silu(w2(x))).
    renames = [(f"attn.{p}", f"self_attn.{p}") for p in _QKV] + [
        ("attn.c_proj", "self_attn.o_proj"), ("mlp.w1", "ffn.up_proj"), ("mlp.w2", "ffn.gate_proj"), ("mlp.c_proj", "ffn.down_proj"),
    ]
    for theirs, ours in renames:
        for kind in ("weight", "bias"):
            pairs.append((f"transformer.h.{{i}}.{theirs}.{kind}", f"layers.{{i}}.{ours}.{kind}"))
    return tuple(pairs)


# ----------------------------------------------------------------------------- Qwen2 (transformers)


def qwen2_layer_kinds(hf: dict[str, Any]) -> tuple[tuple[str, ...] | None, int | None]:
    """``(layer_kinds, sliding_window)`` of a Qwen2 config, following ``Qwen2Config.__post_init__``.

    The window is used only with ``use_sliding_window``; then ``layer_types`` (transformers 5) or,
    in older configs, ``i ≥ max_window_layers`` decides which layers slide.
    """
    window = hf.get("sliding_window") if hf.get("use_sliding_window", False) else None
    if window is None:
        return None, None
    n_layers = hf["num_hidden_layers"]
    types = hf.get("layer_types") or [
        "sliding_attention" if i >= hf.get("max_window_layers", 28) else "full_attention" for i in range(n_layers)
    ]
    unknown = sorted(set(types) - set(_KIND_FROM_HF))
    if unknown:
        raise ValueError(f"qwen2 config: layer_types contains {unknown}; known: {sorted(_KIND_FROM_HF)}")
    return tuple(_KIND_FROM_HF[name] for name in types), int(window)


def qwen2_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    kinds, window = qwen2_layer_kinds(hf)
    return qwen2_config(
        **hf_common_fields(hf),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        activation=hf.get("hidden_act", "silu"),
        layer_kinds=kinds,
        sliding_window=window,
    )


def qwen2_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if not config.qkv_bias or config.o_bias or config.mlp_bias:
        raise ValueError(
            "Qwen2 has biases on Q/K/V only; ModelConfig.qkv_bias must be True and o_bias, mlp_bias False "
            f"(got {config.qkv_bias}, {config.o_bias}, {config.mlp_bias})"
        )
    kinds = config.resolved_layer_kinds
    unsupported = sorted(set(kinds) - set(_KIND_TO_HF))
    if unsupported:
        raise ValueError(f"Qwen2 layers are full or sliding; ModelConfig.layer_kinds contains {unsupported}")
    sliding = [kind == "sliding" for kind in kinds]
    return {
        **hf_common_fields_to_hf(config),
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "use_sliding_window": any(sliding),
        "sliding_window": config.sliding_window,
        "max_window_layers": sliding.index(True) if any(sliding) else config.n_layers,
        "layer_types": [_KIND_TO_HF[kind] for kind in kinds],
    }


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="qwen",
        hf_class_name="QWenLMHeadModel",
        config_from_hf=qwen1_config_from_hf,
        config_to_hf=qwen1_config_to_hf,
        key_map=_qwen1_key_map(),
        model_class=CausalLM,
        from_hf_tensors=_split_c_attn,
        to_hf_tensors=_fuse_c_attn,
        ignore=(r"rotary_emb\.inv_freq$", r"attn\.masked_bias$", r"attn\.bias$", r"logn_tensor$"),
    )
)
register_architecture(
    HFArchitecture(
        model_type="qwen2",
        hf_class_name="Qwen2ForCausalLM",
        config_from_hf=qwen2_config_from_hf,
        config_to_hf=qwen2_config_to_hf,
        key_map=llama_like_key_map(),
        model_class=CausalLM,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
