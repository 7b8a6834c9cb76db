"""GPT-1, GPT-2 and GPT-3 (OpenAI, 2018–2020): the decoder-only line of generative pre-training (生成式预训练).

GPT-1 (Radford et al., 2018, "Improving Language Understanding by Generative Pre-Training") is the
2017 decoder without cross-attention: post-norm blocks (后归一化, ``x = LN(x + f(x))``), learned
positions, GELU, 12 layers × 768, 512 tokens of context, a 40,478-token BPE vocabulary, and no final
norm — the last block already ends in a LayerNorm. GPT-2 (Radford et al., 2019) moved the LayerNorm
to the input of each sub-block (pre-norm, 前归一化), added a final ``ln_f``, doubled the context to
1024 and grew the byte-level BPE vocabulary to 50,257. GPT-3 (Brown et al., 2020, §2.1) keeps GPT-2's
wiring but alternates dense and locally banded sparse attention layers (稀疏注意力), "similar to the
Sparse Transformer" (Child et al., 2019), with 2048 tokens of context.

All three tie the output matrix to the token embeddings and put biases everywhere.

Checkpoint layout. OpenAI's code (and Hugging Face's port) stores every projection as a ``Conv1D``:
a ``[in, out]`` matrix used as ``x @ W + b``, the transpose of ``nn.Linear``'s ``[out, in]``; Q, K
and V are one fused ``c_attn`` of ``[d, 3d]`` whose output columns are ``[q | k | v]``.
:func:`conv1d_from_hf` transposes and splits them, :func:`conv1d_to_hf` undoes it. GPT-3 was never
released, so it has presets but no Hugging Face architecture.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset

__all__ = [
    "gpt2_config", "gpt1_config", "gpt3_config", "alternating_layer_kinds",
    "conv1d_from_hf", "conv1d_to_hf", "with_base_prefix", "GPT2_PAPER_PARAMETERS",
]

StateDict = dict[str, Tensor]
PREFIX = "transformer."

# The GPT-2 paper's Table 2 sizes. They are exactly what the same networks have with GPT-1's 40,478-token
# vocabulary (and GPT-2's 1024 positions); see _register_gpt2.
GPT2_PAPER_PARAMETERS = {"gpt2-small": 117e6, "gpt2-medium": 345e6, "gpt2-large": 762e6, "gpt2-xl": 1542e6}


def gpt2_config(**fields: Any) -> ModelConfig:
    """A GPT-2-style :class:`ModelConfig`: pre-norm LayerNorm, learned positions, GELU (tanh) MLP, biases, tied head."""
    defaults: dict[str, Any] = dict(
        position="learned", block="pre", norm="layernorm", norm_eps=1e-5, ffn="mlp", activation="gelu_new",
        qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True, final_norm=True,
    )
    return ModelConfig(**{**defaults, **fields})


def gpt1_config(**fields: Any) -> ModelConfig:
    """GPT-1: GPT-2's parts with the 2017 post-norm wiring and no final norm."""
    return gpt2_config(**{"block": "post", "final_norm": False, **fields})


def alternating_layer_kinds(n_layers: int, sparse: str = "strided") -> tuple[str, ...]:
    """GPT-3's per-layer pattern: dense, sparse, dense, sparse, … (交替的稠密与稀疏注意力层)."""
    return tuple("full" if i % 2 == 0 else sparse for i in range(n_layers))


def gpt3_config(*, sparse_block: int, **fields: Any) -> ModelConfig:
    """GPT-2 wiring whose odd layers use the banded sparse pattern of width ``sparse_block``."""
    kinds = alternating_layer_kinds(fields["n_layers"])
    return gpt2_config(**{"layer_kinds": kinds, "sparse_block": sparse_block, "max_positions": 2048, **fields})


def _register_gpt1() -> None:
    # GPT-1 paper §4.1 "Model specifications": 12 layers, 768 wide, 12 heads, 3072 FFN, 512 tokens;
    # 40,000 BPE merges give the 40,478-token vocabulary of the released code. The GPT-2 paper (Table 2)
    # calls it 117M.
    config = gpt1_config(
        vocab_size=40478, hidden_size=768, n_layers=12, n_heads=12, intermediate_size=3072, max_positions=512
    )
    register_preset(Preset("gpt1", config, CausalLM, "GPT-1 paper §4.1; 117M in GPT-2 paper Table 2", 117e6))
    tiny = gpt1_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, max_positions=128)
    register_preset(Preset("tiny-gpt1", tiny, CausalLM, "tests and notebooks"))


def _register_gpt2() -> None:
    """GPT-2 small/medium/large/XL (GPT-2 paper, Table 2) with the counts of the released weights.

    The paper lists 117M, 345M, 762M and 1542M; the released checkpoints hold 124.4M, 354.8M, 774.0M and
    1557.6M parameters, and OpenAI's gpt-2 repository later renamed the models, saying the original
    counts were wrong. The paper's figures are, to the rounding, the counts of the same networks with
    GPT-1's 40,478-token vocabulary instead of 50,257: e.g. small ``124.4M − 9,779 × 768 ≈ 116.9M``
    (``GPT2_PAPER_PARAMETERS``; the parameter-count test checks all four).
    """
    sizes = [
        # name, layers, d_model, heads, released parameters
        ("gpt2-small", 12, 768, 12, 124e6),
        ("gpt2-medium", 24, 1024, 16, 355e6),
        ("gpt2-large", 36, 1280, 20, 774e6),
        ("gpt2-xl", 48, 1600, 25, 1558e6),
    ]
    for name, layers, d, heads, published in sizes:
        config = gpt2_config(
            vocab_size=50257, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d, max_positions=1024
        )
        register_preset(Preset(name, config, CausalLM, "GPT-2 paper Table 2; counts of the released weights", published))
    tiny = gpt2_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, max_positions=128)
    register_preset(Preset("tiny-gpt2", tiny, CausalLM, "tests and notebooks"))


def _register_gpt3() -> None:
    """GPT-3 (Brown et al., 2020, Table 2.1): eight sizes, 50,257 tokens, 2048 context, FFN = 4·d.

    The names round the counts (Medium computes to 355.9M, XL to 1.316B). Two rows of Table 2.1 are
    inconsistent: XL lists d_model 2048 with 24 heads of 128 (= 3072), and 13B lists d_model 5140 with
    40 heads of 128 (= 5120). We keep d_head = 128 and the attention width = d_model (XL: 16 heads;
    13B: d_model 5120), which is what the published counts imply — 24 heads of 128 would make XL 1.52B.
    The paper does not publish the band width of the sparse layers; ``sparse_block = 128`` is an
    assumption (the stride the Sparse Transformer used for text). It changes no parameter count.
    """
    sizes = [
        # name, layers, d_model, heads, published parameters
        ("gpt3-small", 12, 768, 12, 125e6),
        ("gpt3-medium", 24, 1024, 16, 350e6),
        ("gpt3-large", 24, 1536, 16, 760e6),
        ("gpt3-xl", 24, 2048, 16, 1.3e9),
        ("gpt3-2.7b", 32, 2560, 32, 2.7e9),
        ("gpt3-6.7b", 32, 4096, 32, 6.7e9),
        ("gpt3-13b", 40, 5120, 40, 13.0e9),
        ("gpt3-175b", 96, 12288, 96, 175.0e9),
    ]
    for name, layers, d, heads, published in sizes:
        config = gpt3_config(
            vocab_size=50257, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d, sparse_block=128
        )
        register_preset(Preset(name, config, CausalLM, "GPT-3 paper Table 2.1", published))
    tiny = gpt3_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, max_positions=128, sparse_block=4
    )
    register_preset(Preset("tiny-gpt3-sparse", tiny, CausalLM, "tests and notebooks"))


_ACTIVATIONS_FROM_HF = {
    "gelu_new": "gelu_new", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "silu": "silu", "swish": "silu"
}
_ACTIVATIONS_TO_HF = {"gelu_new": "gelu_new", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu", "silu": "silu"}
# OpenAI GPT's `afn` names: its "gelu" is the tanh approximation (transformers' gelu_new).
_GPT1_ACTIVATIONS_FROM_HF = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}
_GPT1_ACTIVATIONS_TO_HF = {"gelu_new": "gelu", "relu": "relu", "silu": "silu"}


def _translate(table: dict[str, str], value: str, field_name: str) -> str:
    if value not in table:
        raise ValueError(f"{field_name}={value!r} is not supported; known: {sorted(table)}")
    return table[value]


def _gpt_sizes(hf: dict[str, Any]) -> dict[str, Any]:
    return dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["n_embd"],
        n_layers=hf["n_layer"],
        n_heads=hf["n_head"],
        max_positions=hf["n_positions"],
        norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
        pad_token_id=hf.get("pad_token_id"),
    )


def _only_dense(config: ModelConfig, model_type: str) -> None:
    kinds = set(config.resolved_layer_kinds)
    if kinds != {"full"}:
        raise ValueError(f"ModelConfig.layer_kinds {sorted(kinds)} has no {model_type} equivalent (dense attention only)")


def gpt1_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    d = hf["n_embd"]
    activation = _translate(_GPT1_ACTIVATIONS_FROM_HF, hf.get("afn", "gelu"), "openai-gpt afn")
    return gpt1_config(**_gpt_sizes(hf), intermediate_size=4 * d, activation=activation)


def gpt1_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    _only_dense(config, "openai-gpt")
    if config.intermediate_size != 4 * config.hidden_size:
        raise ValueError(f"ModelConfig.intermediate_size={config.intermediate_size}: openai-gpt fixes it to 4·hidden_size")
    return {
        "vocab_size": config.vocab_size,
        "n_positions": config.max_positions,
        "n_embd": config.hidden_size,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "afn": _translate(_GPT1_ACTIVATIONS_TO_HF, config.activation, "ModelConfig.activation"),
        "layer_norm_epsilon": config.norm_eps,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
    }


def gpt2_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    if hf.get("scale_attn_by_inverse_layer_idx"):
        raise ValueError("gpt2 scale_attn_by_inverse_layer_idx=True is not supported by llmcore")
    if hf.get("add_cross_attention"):
        raise ValueError("gpt2 add_cross_attention=True is not supported by llmcore's CausalLM")
    # reorder_and_upcast_attn only changes the float precision of the scores, not the function.
    d = hf["n_embd"]
    return gpt2_config(
        **_gpt_sizes(hf),
        intermediate_size=hf.get("n_inner") or 4 * d,
        activation=_translate(_ACTIVATIONS_FROM_HF, hf.get("activation_function", "gelu_new"), "gpt2 activation_function"),
        attention_scale=None if hf.get("scale_attn_weights", True) else 1.0,
    )


def gpt2_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    _only_dense(config, "gpt2")
    if config.attention_scale not in (None, 1.0):
        raise ValueError(f"ModelConfig.attention_scale={config.attention_scale}: gpt2 knows only 1/√head_dim or 1")
    return {
        "vocab_size": config.vocab_size,
        "n_positions": config.max_positions,
        "n_embd": config.hidden_size,
        "n_layer": config.n_layers,
        "n_head": config.n_heads,
        "n_inner": config.intermediate_size,
        "activation_function": _translate(_ACTIVATIONS_TO_HF, config.activation, "ModelConfig.activation"),
        "layer_norm_epsilon": config.norm_eps,
        "scale_attn_weights": config.attention_scale is None,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
    }


def with_base_prefix(state_dict: StateDict, prefix: str = PREFIX) -> StateDict:
    """Add the ``transformer.`` prefix that checkpoints saved from the base model (original GPT-2, BLOOM) lack."""
    return {
        name if name.startswith(prefix) or name.startswith("lm_head.") else prefix + name: tensor
        for name, tensor in state_dict.items()
    }


_C_ATTN = re.compile(r"^(?P<layer>transformer\.h\.\d+\.attn\.)c_attn\.(?P<kind>weight|bias)$")
_SPLIT = re.compile(r"^(?P<layer>transformer\.h\.\d+\.attn\.)(?P<part>[qkv])_proj\.(?P<kind>weight|bias)$")
_TRANSPOSED = re.compile(r"^transformer\.h\.\d+\.(attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")


def conv1d_from_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """OpenAI GPT / GPT-2 tensors → ``nn.Linear`` layout, still in Hugging Face names.

    ``c_attn.weight [d, 3d]`` (Conv1D, ``[in, out]``; output columns ``[q | k | v]``) becomes
    ``q_proj``/``k_proj``/``v_proj.weight`` of ``[d, d]`` each, transposed; ``c_attn.bias [3d]`` splits
    the same way. ``c_proj`` and ``c_fc`` weights are transposed in place.
    """
    d = config.hidden_size
    converted: StateDict = {}
    for name, tensor in with_base_prefix(state_dict).items():
        fused = _C_ATTN.match(name)
        if fused:
            expected = (d, 3 * d) if fused["kind"] == "weight" else (3 * d,)
            if tuple(tensor.shape) != expected:
                raise ValueError(f"{name}: expected the Conv1D shape {expected} ([in, out]), got {tuple(tensor.shape)}")
            for part, piece in zip("qkv", tensor.split(d, dim=-1)):
                linear = piece.t().contiguous() if piece.dim() == 2 else piece
                converted[f"{fused['layer']}{part}_proj.{fused['kind']}"] = linear
        elif _TRANSPOSED.match(name):
            converted[name] = tensor.t().contiguous()
        else:
            converted[name] = tensor
    return converted


def conv1d_to_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`conv1d_from_hf`: fuse Q/K/V into ``c_attn`` and transpose back to Conv1D."""
    converted: StateDict = {}
    parts: dict[tuple[str, str], dict[str, Tensor]] = {}
    for name, tensor in state_dict.items():
        split = _SPLIT.match(name)
        if split:
            parts.setdefault((split["layer"], split["kind"]), {})[split["part"]] = tensor
        elif _TRANSPOSED.match(name):
            converted[name] = tensor.t().contiguous()
        else:
            converted[name] = tensor
    for (layer, kind), pieces in parts.items():
        if set(pieces) != set("qkv"):
            raise KeyError(f"{layer}c_attn.{kind}: needs q, k and v projections, got {sorted(pieces)}")
        fused = torch.cat([pieces[p] for p in "qkv"], dim=0)
        converted[f"{layer}c_attn.{kind}"] = fused.t().contiguous() if fused.dim() == 2 else fused
    return converted


def _gpt_key_map(token_table: str, position_table: str, final_norm: bool) -> tuple[tuple[str, str], ...]:
    h = f"{PREFIX}h.{{i}}."
    pairs = [
        (f"{PREFIX}{token_table}.weight", "embeddings.embed_tokens.weight"),
        (f"{PREFIX}{position_table}.weight", "embeddings.embed_positions.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ]
    for kind in ("weight", "bias"):
        pairs += [
            (f"{h}ln_1.{kind}", f"layers.{{i}}.self_attn_norm.{kind}"),
            (f"{h}ln_2.{kind}", f"layers.{{i}}.ffn_norm.{kind}"),
            (f"{h}attn.q_proj.{kind}", f"layers.{{i}}.self_attn.q_proj.{kind}"),
            (f"{h}attn.k_proj.{kind}", f"layers.{{i}}.self_attn.k_proj.{kind}"),
            (f"{h}attn.v_proj.{kind}", f"layers.{{i}}.self_attn.v_proj.{kind}"),
            (f"{h}attn.c_proj.{kind}", f"layers.{{i}}.self_attn.o_proj.{kind}"),
            (f"{h}mlp.c_fc.{kind}", f"layers.{{i}}.ffn.up_proj.{kind}"),
            (f"{h}mlp.c_proj.{kind}", f"layers.{{i}}.ffn.down_proj.{kind}"),
        ]
        if final_norm:
            pairs.append((f"{PREFIX}ln_f.{kind}", f"norm.{kind}"))
    return tuple(pairs)


# Causal-mask buffers that older checkpoints saved; the mask is rebuilt at run time.
_MASK_BUFFERS = (r"\.attn\.bias$", r"\.attn\.masked_bias$")

_register_gpt1()
_register_gpt2()
_register_gpt3()
register_architecture(
    HFArchitecture(
        model_type="openai-gpt",
        hf_class_name="OpenAIGPTLMHeadModel",
        config_from_hf=gpt1_config_from_hf,
        config_to_hf=gpt1_config_to_hf,
        key_map=_gpt_key_map("tokens_embed", "positions_embed", final_norm=False),
        model_class=CausalLM,
        from_hf_tensors=conv1d_from_hf,
        to_hf_tensors=conv1d_to_hf,
        ignore=_MASK_BUFFERS,
    )
)
register_architecture(
    HFArchitecture(
        model_type="gpt2",
        hf_class_name="GPT2LMHeadModel",
        config_from_hf=gpt2_config_from_hf,
        config_to_hf=gpt2_config_to_hf,
        key_map=_gpt_key_map("wte", "wpe", final_norm=True),
        model_class=CausalLM,
        from_hf_tensors=conv1d_from_hf,
        to_hf_tensors=conv1d_to_hf,
        ignore=_MASK_BUFFERS,
    )
)
