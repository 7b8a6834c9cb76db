"""The GLM line (Tsinghua KEG / Zhipu AI, 2021–2025): GLM, GLM-130B, ChatGLM-6B, GLM-4.

* **GLM** (Du et al., 2022, "GLM: General Language Model Pretraining with Autoregressive Blank
  Infilling"): a pre-norm GPT stack trained by autoregressive blank infilling (自回归空白填充,
  :mod:`llmcore.data.glm_infilling`). Its positions are two learned tables summed (2-D positions,
  二维位置编码): the position in the corrupted text and the position inside a span. GLM-10B: 48
  layers × 4096, 64 heads, GPT-2's 50,304-token vocabulary, 1,025 positions, tied output.
* **GLM-130B** (Zeng et al., 2022): 70 layers × 12,288, 96 heads, DeepNorm (``x = α·n + f(n)`` with
  ``n = LN(x)``, ``α = √(2N)``) for stable post-LN training, RoPE, GeGLU (exact GELU) with 32,768
  hidden units, a 150,528-token icetk vocabulary tied to the output, and the embedding gradient
  shrink (词嵌入梯度缩减, ``ModelConfig.embedding_grad_shrink = 0.1``). Its released code rotates
  the whole head by one position stream (``--position-encoding-2d`` off).
* **ChatGLM-6B** (THUDM, 2023): GLM-130B's DeepNorm wiring at 28 layers × 4096 with a GELU (tanh)
  MLP of 16,384, biases everywhere, an untied head, and 2-D RoPE: each head's first half rotates by
  the position, its second half by the intra-span (block) position. Prompts end with
  ``[gMASK] <sop>``; attention is bidirectional over the context up to ``<sop>`` and causal after
  it (``CausalLM(..., prefix_lengths=...)``, :func:`chatglm_position_ids`).
* **GLM-4** (GLM team, 2024; Hugging Face ``glm``): a LLaMA-like decoder — RMSNorm, SwiGLU stored as
  one fused ``gate_up_proj``, grouped-query attention with 2 KV heads, Q/K/V biases, RoPE on the
  first half of each head in the interleaved pair layout. **GLM-4-0414** (``glm4``) adds sandwich
  norms: ``post_self_attn_layernorm`` and ``post_mlp_layernorm`` normalise each sublayer's output
  before the residual add (``ModelConfig.sandwich_norm``).

Checkpoint layouts. ``gate_up_proj [2I, d]`` holds the gate rows then the up rows
(:func:`glm_from_hf` splits them). ChatGLM-6B's ``query_key_value [3d, d]`` is grouped per head —
``[n_heads, 3, head_dim]`` rows, head 0's q, k, v, then head 1's — as in BLOOM
(:func:`chatglm_from_hf`). Numerics the port does not copy: ChatGLM-6B's code rounds the RoPE
inverse frequencies to float16 even when run in float32 (angles differ by ~5e-4 relative).
"""

from __future__ import annotations

import math
import re
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import fuse_per_head_qkv, hf_common_fields, llama_like_key_map, rope_scaling_to_hf, split_per_head_qkv

__all__ = [
    "glm4_config", "chatglm_config", "glm_config", "glm130b_config", "glm_from_hf", "glm_to_hf",
    "chatglm_from_hf", "chatglm_to_hf", "chatglm_position_ids", "CHATGLM_TOKENS",
]

StateDict = dict[str, Tensor]

# ChatGLM-6B's special tokens (its config.json): [MASK], [gMASK], <sop> (= bos, starts the answer), <eop>.
CHATGLM_TOKENS = {"mask_token_id": 130000, "gmask_token_id": 130001, "bos_token_id": 130004, "eos_token_id": 130005}


def glm4_config(**fields: Any) -> ModelConfig:
    """GLM-4 (HF ``glm``): RMSNorm, pre-norm, SwiGLU, GQA, Q/K/V biases, interleaved RoPE on part of each head.

    Give ``rotary_dim`` (GLM-4: ``head_dim/2``); ``sandwich_norm=True`` makes it GLM-4-0414 (``glm4``).
    """
    defaults: dict[str, Any] = dict(
        position="rope", block="pre", norm="rmsnorm", ffn="gated", activation="silu", norm_eps=1.5625e-7,
        qkv_bias=True, o_bias=False, rope_interleaved=True,
    )
    return ModelConfig(**{**defaults, **fields})


def chatglm_config(**fields: Any) -> ModelConfig:
    """ChatGLM-6B: DeepNorm (α = √(2·n_layers)), LayerNorm, 2-D RoPE, GELU (tanh) MLP, biases, untied head.

    α is computed here from ``n_layers``; a later ``config.replace(n_layers=…)`` keeps the old α.
    """
    defaults: dict[str, Any] = dict(
        position="rope", position_2d=True, block="deepnorm", norm="layernorm", norm_eps=1e-5, ffn="mlp",
        activation="gelu_tanh", qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=False,
        final_norm=True, max_positions=2048,
    )
    values = {**defaults, **fields}
    values.setdefault("residual_alpha", math.sqrt(2 * values["n_layers"]))
    return ModelConfig(**values)


def glm_config(**fields: Any) -> ModelConfig:
    """The original GLM (GLM-10B): pre-norm GPT stack, two learned position tables, GELU (tanh), biases, tied."""
    defaults: dict[str, Any] = dict(
        position="learned", position_2d=True, block="pre", norm="layernorm", norm_eps=1e-5, ffn="mlp",
        activation="gelu_tanh", qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True,
        final_norm=True,
    )
    return ModelConfig(**{**defaults, **fields})


def glm130b_config(**fields: Any) -> ModelConfig:
    """GLM-130B: DeepNorm, RoPE over whole heads, GeGLU (exact GELU), biases, tied, embedding gradient shrink 0.1.

    In its checkpoint ``dense_h_to_4h`` holds the up rows first and the gate rows second (``x₁·gelu(x₂)``).
    """
    defaults: dict[str, Any] = dict(
        position="rope", block="deepnorm", norm="layernorm", norm_eps=1e-5, ffn="gated", activation="gelu",
        qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True, final_norm=True,
        embedding_grad_shrink=0.1, max_positions=2048,
    )
    values = {**defaults, **fields}
    values.setdefault("residual_alpha", math.sqrt(2 * values["n_layers"]))
    return ModelConfig(**values)


def _register_presets() -> None:
    register_preset(Preset(
        "glm-10b",
        glm_config(
            vocab_size=50304, hidden_size=4096, n_layers=48, n_heads=64, intermediate_size=16384, max_positions=1025
        ),
        CausalLM,
        "GLM paper (Du et al. 2022), GLM-10B; sizes from THUDM/GLM-130B configs/model_glm_10b.sh",
        10e9,
    ))
    register_preset(Preset(
        "glm-130b",
        glm130b_config(vocab_size=150528, hidden_size=12288, n_layers=70, n_heads=96, intermediate_size=32768),
        CausalLM,
        "GLM-130B paper (Zeng et al. 2022); sizes from THUDM/GLM-130B configs/model_glm_130b.sh",
        130e9,
    ))
    # The README's "6.2B" (62 亿) counts the embedding matrix once; the checkpoint, with its separate
    # output matrix, holds 6.71B. published_parameters is compared with the full count, so it stays
    # unset here and the 6.2B figure is tested on its own terms (tests/test_zoo_glm.py).
    register_preset(Preset(
        "chatglm-6b",
        chatglm_config(vocab_size=130528, hidden_size=4096, n_layers=28, n_heads=32, intermediate_size=16384),
        CausalLM,
        "THUDM/chatglm-6b config.json; README: 6.2B counting the embedding matrix once (6.71B stored)",
    ))
    glm4_9b = dict(
        vocab_size=151552, hidden_size=4096, n_layers=40, n_heads=32, n_kv_heads=2, head_dim=128, rotary_dim=64,
        intermediate_size=13696,
    )
    register_preset(Preset(
        "glm-4-9b",
        glm4_config(**glm4_9b, max_positions=131072, pad_token_id=151329),
        CausalLM,
        "THUDM/glm-4-9b-chat-hf config.json (= transformers GlmConfig defaults)",
        9.4e9,
    ))
    register_preset(Preset(
        "glm-4-9b-0414",
        glm4_config(**glm4_9b, max_positions=32768, norm_eps=1e-5, sandwich_norm=True, pad_token_id=151329),
        CausalLM,
        "THUDM/GLM-4-9B-0414 config.json (Glm4ForCausalLM)",
        9.4e9,
    ))
    register_preset(Preset(
        "glm-4-32b-0414",
        glm4_config(
            vocab_size=151552, hidden_size=6144, n_layers=61, n_heads=48, n_kv_heads=2, head_dim=128, rotary_dim=64,
            intermediate_size=23040, max_positions=32768, norm_eps=1e-5, qkv_bias=False, sandwich_norm=True,
            pad_token_id=151329,
        ),
        CausalLM,
        "THUDM/GLM-4-32B-0414 config.json (Glm4ForCausalLM); model card: 32 billion parameters",
        32e9,
    ))
    tiny_glm4 = dict(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, rotary_dim=8,
        intermediate_size=96, max_positions=256, norm_eps=1e-5,
    )
    register_preset(Preset("tiny-glm", glm4_config(**tiny_glm4), CausalLM, "tests and notebooks"))
    register_preset(Preset("tiny-glm4", glm4_config(**tiny_glm4, sandwich_norm=True), CausalLM, "tests and notebooks"))
    register_preset(Preset(
        "tiny-chatglm",
        chatglm_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, max_positions=256),
        CausalLM,
        "tests and notebooks",
    ))
    register_preset(Preset(
        "tiny-glm-infilling",
        glm_config(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=256, max_positions=128),
        CausalLM,
        "tests and notebooks",
    ))


# ---------------------------------------------------------------------------------------------------
# Hugging Face glm / glm4 (native transformers classes)
# ---------------------------------------------------------------------------------------------------


def _glm_config_from_hf(hf: dict[str, Any], *, sandwich: bool) -> ModelConfig:
    common = hf_common_fields(hf)
    # GlmConfig's own default (kept for configs written before the field existed) is 0.5.
    rotary_dim = int(common["head_dim"] * float(hf.get("partial_rotary_factor", 0.5)))
    return glm4_config(
        **common,
        rotary_dim=None if rotary_dim == common["head_dim"] else rotary_dim,
        norm_eps=hf.get("rms_norm_eps", 1.5625e-7),
        activation=hf.get("hidden_act", "silu"),
        qkv_bias=bool(hf.get("attention_bias", True)),
        sandwich_norm=sandwich,
    )


def _glm_config_to_hf(config: ModelConfig, *, sandwich: bool) -> dict[str, Any]:
    expected = dict(
        position="rope", block="pre", norm="rmsnorm", ffn="gated", o_bias=False, mlp_bias=False,
        rope_interleaved=True, sandwich_norm=sandwich, position_2d=False, n_experts=0,
    )
    for name, value in expected.items():
        if getattr(config, name) != value:
            raise ValueError(f"ModelConfig.{name}={getattr(config, name)!r}: the Hugging Face GLM config needs {value!r}")
    rope = rope_scaling_to_hf(config)
    rope["rope_parameters"]["partial_rotary_factor"] = config.resolved_rotary_dim / config.resolved_head_dim
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.resolved_kv_heads,
        "head_dim": config.resolved_head_dim,
        "max_position_embeddings": config.max_positions,
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "attention_bias": config.qkv_bias,
        "tie_word_embeddings": config.tie_word_embeddings,
        "pad_token_id": config.pad_token_id,
        **rope,
    }


_GATE_UP = re.compile(r"^(?P<mlp>model\.layers\.\d+\.mlp\.)gate_up_proj\.weight$")
_GATE_OR_UP = re.compile(r"^(?P<mlp>model\.layers\.\d+\.mlp\.)(?P<part>gate|up)_proj\.weight$")


def glm_from_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split every fused ``gate_up_proj.weight [2I, d]`` into ``gate_proj`` (rows ``[0, I)``) and ``up_proj``."""
    converted: StateDict = {}
    for name, tensor in state_dict.items():
        fused = _GATE_UP.match(name)
        if fused is None:
            converted[name] = tensor
            continue
        expected = (2 * config.intermediate_size, config.hidden_size)
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name}: expected shape {expected}, got {tuple(tensor.shape)}")
        gate, up = tensor.chunk(2, dim=0)
        converted[f"{fused['mlp']}gate_proj.weight"] = gate
        converted[f"{fused['mlp']}up_proj.weight"] = up
    return converted


def glm_to_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`glm_from_hf`: stack ``gate_proj`` over ``up_proj`` into ``gate_up_proj``."""
    converted: StateDict = {}
    parts: dict[str, dict[str, Tensor]] = {}
    for name, tensor in state_dict.items():
        split = _GATE_OR_UP.match(name)
        if split:
            parts.setdefault(split["mlp"], {})[split["part"]] = tensor
        else:
            converted[name] = tensor
    for mlp, pieces in parts.items():
        if set(pieces) != {"gate", "up"}:
            raise KeyError(f"{mlp}gate_up_proj.weight: needs gate_proj and up_proj, got {sorted(pieces)}")
        converted[f"{mlp}gate_up_proj.weight"] = torch.cat((pieces["gate"], pieces["up"]), dim=0)
    return converted


def _glm_key_map(*, sandwich: bool) -> tuple[tuple[str, str], ...]:
    pairs = list(llama_like_key_map())
    if sandwich:
        pairs += [
            ("model.layers.{i}.post_self_attn_layernorm.weight", "layers.{i}.self_attn_out_norm.weight"),
            ("model.layers.{i}.post_mlp_layernorm.weight", "layers.{i}.ffn_out_norm.weight"),
        ]
    return tuple(pairs)


# ---------------------------------------------------------------------------------------------------
# ChatGLM-6B (remote code, model_type "chatglm")
# ---------------------------------------------------------------------------------------------------


def chatglm_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """ChatGLM-6B's config.json → :class:`ModelConfig`; refuses the later ChatGLM2/3 layout and quantised weights."""
    later = sorted(key for key in ("padded_vocab_size", "multi_query_attention", "ffn_hidden_size") if key in hf)
    if later:
        raise ValueError(
            f"chatglm: config has {later}, the ChatGLM2/ChatGLM3/GLM-4 remote-code layout; llmcore reads ChatGLM-6B "
            "(v1) only (GLM-4's '-hf' checkpoints load as model_type 'glm')"
        )
    if hf.get("quantization_bit"):
        raise ValueError(f"chatglm: quantization_bit={hf['quantization_bit']}: quantised checkpoints are not supported")
    if hf.get("pre_seq_len"):
        raise ValueError(f"chatglm: pre_seq_len={hf['pre_seq_len']}: P-tuning v2 prefixes are not supported")
    d = hf["hidden_size"]
    return chatglm_config(
        vocab_size=hf["vocab_size"],
        hidden_size=d,
        n_layers=hf["num_layers"],
        n_heads=hf["num_attention_heads"],
        intermediate_size=hf.get("inner_hidden_size") or 4 * d,
        norm_eps=hf.get("layernorm_epsilon", 1e-5),
        max_positions=hf.get("max_sequence_length", 2048),
        position_2d=bool(hf.get("position_encoding_2d", True)),
        pad_token_id=hf.get("pad_token_id"),
        extra={key: hf.get(key, default) for key, default in CHATGLM_TOKENS.items()},
    )


def chatglm_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    expected = dict(
        position="rope", block="deepnorm", norm="layernorm", ffn="mlp", activation="gelu_tanh", qkv_bias=True,
        o_bias=True, mlp_bias=True, tie_word_embeddings=False, rotary_dim=None, rope_interleaved=False,
        rope_theta=10000.0, rope_scaling=None, n_experts=0, sandwich_norm=False,
        resolved_kv_heads=config.n_heads, resolved_head_dim=config.hidden_size // config.n_heads,
    )
    for name, value in expected.items():
        if getattr(config, name) != value:
            field = name.removeprefix("resolved_")
            raise ValueError(f"ModelConfig.{field}={getattr(config, name)!r}: ChatGLM-6B needs {value!r}")
    if not math.isclose(config.residual_alpha, math.sqrt(2 * config.n_layers)):
        raise ValueError(
            f"ModelConfig.residual_alpha={config.residual_alpha}: ChatGLM-6B fixes it to √(2·n_layers) = "
            f"{math.sqrt(2 * config.n_layers)}"
        )
    tokens = {key: config.extra.get(key, default) for key, default in CHATGLM_TOKENS.items()}
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "inner_hidden_size": config.intermediate_size,
        "layernorm_epsilon": config.norm_eps,
        "max_sequence_length": config.max_positions,
        "position_encoding_2d": config.position_2d,
        "pad_token_id": config.pad_token_id,
        "quantization_bit": 0,
        "pre_seq_len": None,
        "prefix_projection": False,
        **tokens,
    }


_CHATGLM_ATTENTION = r"transformer\.layers\.\d+\.attention\."


def chatglm_from_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split every per-head ``query_key_value`` (rows ``[n_heads, 3, head_dim]``) into ``q/k/v_proj``."""
    return split_per_head_qkv(state_dict, config, _CHATGLM_ATTENTION)


def chatglm_to_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Inverse of :func:`chatglm_from_hf`: interleave Q, K, V per head into ``query_key_value``."""
    return fuse_per_head_qkv(state_dict, config, _CHATGLM_ATTENTION)


def _chatglm_key_map() -> tuple[tuple[str, str], ...]:
    layer = "transformer.layers.{i}."
    pairs = [
        ("transformer.word_embeddings.weight", "embeddings.embed_tokens.weight"),
        ("lm_head.weight", "lm_head.weight"),
    ]
    for kind in ("weight", "bias"):
        pairs += [
            (f"transformer.final_layernorm.{kind}", f"norm.{kind}"),
            (f"{layer}input_layernorm.{kind}", f"layers.{{i}}.self_attn_norm.{kind}"),
            (f"{layer}attention.q_proj.{kind}", f"layers.{{i}}.self_attn.q_proj.{kind}"),
            (f"{layer}attention.k_proj.{kind}", f"layers.{{i}}.self_attn.k_proj.{kind}"),
            (f"{layer}attention.v_proj.{kind}", f"layers.{{i}}.self_attn.v_proj.{kind}"),
            (f"{layer}attention.dense.{kind}", f"layers.{{i}}.self_attn.o_proj.{kind}"),
            (f"{layer}post_attention_layernorm.{kind}", f"layers.{{i}}.ffn_norm.{kind}"),
            (f"{layer}mlp.dense_h_to_4h.{kind}", f"layers.{{i}}.ffn.up_proj.{kind}"),
            (f"{layer}mlp.dense_4h_to_h.{kind}", f"layers.{{i}}.ffn.down_proj.{kind}"),
        ]
    return tuple(pairs)


def chatglm_position_ids(
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    *,
    bos_token_id: int = CHATGLM_TOKENS["bos_token_id"],
    gmask_token_id: int = CHATGLM_TOKENS["gmask_token_id"],
    mask_token_id: int = CHATGLM_TOKENS["mask_token_id"],
) -> tuple[Tensor, Tensor, Tensor]:
    """ChatGLM-6B's 2-D positions and context lengths (its ``get_position_ids``/``get_masks``), batched.

    In each row the context is every token before ``<sop>`` (``bos_token_id``), ``c`` tokens long,
    and ``m`` is the index of ``[gMASK]`` (``[MASK]`` when there is none). Counting real tokens only,
    ``position_ids`` run ``0 … c−1`` over the context and stay at ``m`` from ``<sop>`` on;
    ``block_position_ids`` are 0 over the context and ``1, 2, …`` from ``<sop>`` on. Padding
    (``attention_mask`` 0, on the left as ChatGLM's tokenizer pads) gets 0 in both, as the tokenizer
    writes it. ``prefix_lengths [B]`` is the padded index of ``<sop>``: pass it to
    ``CausalLM(..., prefix_lengths=...)`` for the bidirectional context.

    Shapes: ``input_ids [B, L]`` → ``position_ids``, ``block_position_ids`` ``[B, L]``, ``prefix_lengths [B]``.
    """
    batch, length = input_ids.shape
    keep = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
    position_ids = torch.zeros_like(input_ids)
    block_position_ids = torch.zeros_like(input_ids)
    prefix_lengths = torch.zeros(batch, dtype=torch.long, device=input_ids.device)
    for row in range(batch):
        real = keep[row].nonzero().flatten()
        tokens = input_ids[row, real].tolist()
        if bos_token_id not in tokens:
            raise ValueError(f"chatglm_position_ids: row {row} has no <sop> token (bos_token_id={bos_token_id})")
        context = tokens.index(bos_token_id)
        mask_id = gmask_token_id if gmask_token_id in tokens else mask_token_id
        if mask_id not in tokens[:context]:
            raise ValueError(f"chatglm_position_ids: row {row} has no [gMASK]/[MASK] before its <sop> token")
        mask_position = tokens.index(mask_id)
        count = len(tokens)
        positions = torch.arange(count, device=input_ids.device)
        positions[context:] = mask_position
        blocks = torch.cat((
            torch.zeros(context, dtype=torch.long, device=input_ids.device),
            torch.arange(1, count - context + 1, device=input_ids.device),
        ))
        position_ids[row, real] = positions
        block_position_ids[row, real] = blocks
        prefix_lengths[row] = int(real[context])
    return position_ids, block_position_ids, prefix_lengths


def _register_glm(model_type: str, hf_class_name: str, *, sandwich: bool) -> None:
    register_architecture(
        HFArchitecture(
            model_type=model_type,
            hf_class_name=hf_class_name,
            config_from_hf=partial(_glm_config_from_hf, sandwich=sandwich),
            config_to_hf=partial(_glm_config_to_hf, sandwich=sandwich),
            key_map=_glm_key_map(sandwich=sandwich),
            model_class=CausalLM,
            from_hf_tensors=glm_from_hf,
            to_hf_tensors=glm_to_hf,
            ignore=(r"rotary_emb\.inv_freq$",),
        )
    )


_register_presets()
_register_glm("glm", "GlmForCausalLM", sandwich=False)
_register_glm("glm4", "Glm4ForCausalLM", sandwich=True)
register_architecture(
    HFArchitecture(
        model_type="chatglm",
        # What THUDM/chatglm-6b's config.json lists; its weights are those of ChatGLMForConditionalGeneration.
        hf_class_name="ChatGLMModel",
        config_from_hf=chatglm_config_from_hf,
        config_to_hf=chatglm_config_to_hf,
        key_map=_chatglm_key_map(),
        model_class=CausalLM,
        from_hf_tensors=chatglm_from_hf,
        to_hf_tensors=chatglm_to_hf,
        # ChatGLM-6B saves each layer's RoPE frequencies as a (persistent) buffer.
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
