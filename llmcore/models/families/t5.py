"""T5 (Raffel et al., 2020): the text-to-text encoder–decoder with relative position buckets.

T5 departs from the 2017 Transformer in four ways that are all configuration here: pre-norm with a
scale-only LayerNorm (T5LayerNorm, i.e. RMSNorm) and no biases anywhere; no absolute positions but
a learned bias per head and *relative position bucket* (相对位置偏置, :mod:`llmcore.relative_position`),
one table per stack shared by all its layers; unscaled attention scores (``attention_scale = 1``,
the 1/√d is folded into the initialisation of ``W_q``); and, in T5 v1.0, an output layer tied to the
embeddings whose input is scaled by ``d^-0.5``. T5 v1.1 and FLAN-T5 switch the ReLU MLP for gated
GELU (``feed_forward_proj="gated-gelu"``, tanh approximation) and untie the head (then unscaled).

Hugging Face stores the FFN of v1.0 as ``wi``/``wo`` and the gated one as ``wi_0`` (gate) /
``wi_1`` (up) / ``wo``; :func:`_from_hf_tensors` renames ``wi`` to ``wi_1`` so one key map serves
both. Transformers 5 always ties the head in memory and keeps the v1.0/v1.1 distinction in
``scale_decoder_outputs``; on disk, ``tie_word_embeddings`` carries it (v1.1: ``false``).
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ...ffn import ACTIVATIONS
from ..config import ModelConfig
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from ..seq2seq import Seq2SeqLM

__all__ = ["t5_config"]

# llmcore activation name → the one transformers' ACT2FN knows (T5's "gated-gelu" is gelu_new).
_HF_ACTIVATION = {"gelu_tanh": "gelu_new"}


def t5_config(**fields: Any) -> ModelConfig:
    """A T5 :class:`ModelConfig`; defaults are v1.0 (ReLU MLP, head tied and fed ``d^-0.5 · h``).

    Pass ``ffn="gated", activation="gelu_tanh", tie_word_embeddings=False`` for v1.1 / FLAN-T5.
    """
    defaults: dict[str, Any] = dict(
        position="relative_buckets", block="pre", norm="rmsnorm", norm_eps=1e-6, ffn="mlp", activation="relu",
        attention_scale=1.0, qkv_bias=False, o_bias=False, mlp_bias=False, tie_word_embeddings=True,
        relative_buckets=32, relative_max_distance=128, max_positions=512, pad_token_id=0,
    )
    values = {**defaults, **fields}
    if "lm_head_scale" not in fields and values["tie_word_embeddings"]:
        values["lm_head_scale"] = values["hidden_size"] ** -0.5
    return ModelConfig(**values)


def _register_presets() -> None:
    sizes = [
        # name, d_model, d_ff, d_kv, heads, layers per stack, published parameters
        ("t5-small", 512, 2048, 64, 8, 6, 60e6),
        ("t5-base", 768, 3072, 64, 12, 12, 220e6),
        ("t5-large", 1024, 4096, 64, 16, 24, 770e6),
        ("t5-3b", 1024, 16384, 128, 32, 24, 3e9),
        ("t5-11b", 1024, 65536, 128, 128, 24, 11e9),
    ]
    for name, d, ffn, d_kv, heads, layers, published in sizes:
        # 32,000 SentencePiece pieces + 100 sentinels, padded to 32,128 in the released checkpoints.
        config = t5_config(
            vocab_size=32128, hidden_size=d, intermediate_size=ffn, head_dim=d_kv, n_heads=heads, n_layers=layers
        )
        register_preset(Preset(name, config, Seq2SeqLM, "T5 paper (Raffel et al., 2020), §3.7 and Table 14", published))
    tiny = t5_config(vocab_size=256, hidden_size=64, intermediate_size=128, head_dim=16, n_heads=4, n_layers=2)
    register_preset(Preset("tiny-t5", tiny, Seq2SeqLM, "tests and notebooks"))


def _feed_forward(proj: str) -> tuple[str, str]:
    """Hugging Face ``feed_forward_proj`` (``relu``, ``gated-gelu``, ``gated-silu`` …) → (ffn, activation)."""
    parts = proj.split("-")
    gated = parts[0] == "gated" and len(parts) == 2
    activation = "gelu_tanh" if proj == "gated-gelu" else parts[-1]
    if (len(parts) > 1 and not gated) or activation not in ACTIVATIONS:
        raise ValueError(f"T5 feed_forward_proj={proj!r} is not supported; expected '<act>' or 'gated-<act>'")
    return ("gated" if gated else "mlp"), activation


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    ffn, activation = _feed_forward(hf.get("feed_forward_proj", "relu"))
    # transformers 5 keeps v1.0's output scaling in scale_decoder_outputs; 4.x configs in tie_word_embeddings.
    scaled = hf.get("scale_decoder_outputs")
    if scaled is None:
        scaled = hf.get("tie_word_embeddings", True) is not False
    n_layers = hf["num_layers"]
    n_decoder_layers = hf.get("num_decoder_layers") or n_layers
    return t5_config(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["d_model"],
        intermediate_size=hf["d_ff"],
        head_dim=hf["d_kv"],
        n_heads=hf["num_heads"],
        n_layers=n_layers,
        n_decoder_layers=None if n_decoder_layers == n_layers else n_decoder_layers,
        norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        ffn=ffn,
        activation=activation,
        relative_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_max_distance=hf.get("relative_attention_max_distance", 128),
        tie_word_embeddings=bool(scaled),
        lm_head_scale=hf["d_model"] ** -0.5 if scaled else None,
        pad_token_id=hf.get("pad_token_id"),
        max_positions=hf.get("n_positions") or 512,
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    scaled = config.lm_head_scale is not None
    fixed = dict(
        position="relative_buckets", block="pre", norm="rmsnorm", attention_scale=1.0, qkv_bias=False,
        o_bias=False, mlp_bias=False, lm_head_bias=False, final_norm=True, final_logits_bias=False,
        share_embeddings=True,
    )
    for name, expected in fixed.items():
        if getattr(config, name) != expected:
            raise ValueError(f"ModelConfig.{name}={getattr(config, name)!r} has no Hugging Face T5 equivalent (T5: {expected!r})")
    if config.tie_word_embeddings != scaled or (scaled and abs(config.lm_head_scale - config.hidden_size**-0.5) > 1e-12):
        raise ValueError(
            "Hugging Face T5 ties the head exactly when it scales its input by d^-0.5: ModelConfig.tie_word_embeddings="
            f"{config.tie_word_embeddings} with lm_head_scale={config.lm_head_scale}"
        )
    activation = _HF_ACTIVATION.get(config.activation, config.activation)
    if config.ffn == "gated":
        proj = "gated-gelu" if config.activation == "gelu_tanh" else f"gated-{activation}"
    else:
        proj = activation
    return {
        "vocab_size": config.vocab_size,
        "d_model": config.hidden_size,
        "d_kv": config.resolved_head_dim,
        "d_ff": config.intermediate_size,
        "num_layers": config.n_layers,
        "num_decoder_layers": config.n_decoder_layers or config.n_layers,
        "num_heads": config.n_heads,
        "relative_attention_num_buckets": config.relative_buckets,
        "relative_attention_max_distance": config.relative_max_distance,
        "layer_norm_epsilon": config.norm_eps,
        "feed_forward_proj": proj,
        "tie_word_embeddings": config.tie_word_embeddings,
        "is_encoder_decoder": True,
        "n_positions": config.max_positions,
        "pad_token_id": config.pad_token_id,
        "decoder_start_token_id": config.pad_token_id,
    }


_PLAIN_FFN = re.compile(r"(\.DenseReluDense\.)wi(\.weight)$")
_GATED_UP = re.compile(r"(\.DenseReluDense\.)wi_1(\.weight)$")


def _from_hf_tensors(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    """One shared table under ``shared.weight``; the plain FFN's ``wi`` renamed to the gated ``wi_1``."""
    if "shared.weight" not in state_dict:
        # Some exports keep only a stack's copy of the shared table.
        for name in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if name in state_dict:
                state_dict["shared.weight"] = state_dict[name]
                break
    if config.ffn == "gated":
        return state_dict
    return {_PLAIN_FFN.sub(r"\1wi_1\2", name): tensor for name, tensor in state_dict.items()}


def _to_hf_tensors(state_dict: dict[str, Tensor], config: ModelConfig) -> dict[str, Tensor]:
    if config.ffn == "gated":
        return state_dict
    return {_GATED_UP.sub(r"\1wi\2", name): tensor for name, tensor in state_dict.items()}


def _key_map() -> tuple[tuple[str, str], ...]:
    pairs = [
        ("shared.weight", "encoder_embeddings.embed_tokens.weight"),
        ("lm_head.weight", "lm_head.weight"),
        ("encoder.final_layer_norm.weight", "encoder_norm.weight"),
        ("decoder.final_layer_norm.weight", "decoder_norm.weight"),
        ("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "encoder_positions.relative_attention_bias.weight"),
        ("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", "decoder_positions.relative_attention_bias.weight"),
    ]
    # Sublayer indices inside a Hugging Face T5Block: the decoder has cross-attention at 1, FFN at 2.
    for stack, ffn_index in (("encoder", 1), ("decoder", 2)):
        block, ours = f"{stack}.block.{{i}}.layer", f"{stack}_layers.{{i}}"
        pairs.append((f"{block}.0.layer_norm.weight", f"{ours}.self_attn_norm.weight"))
        for projection in ("q", "k", "v", "o"):
            pairs.append((f"{block}.0.SelfAttention.{projection}.weight", f"{ours}.self_attn.{projection}_proj.weight"))
        if stack == "decoder":
            pairs.append((f"{block}.1.layer_norm.weight", f"{ours}.cross_attn_norm.weight"))
            for projection in ("q", "k", "v", "o"):
                pairs.append((f"{block}.1.EncDecAttention.{projection}.weight", f"{ours}.cross_attn.{projection}_proj.weight"))
        pairs.append((f"{block}.{ffn_index}.layer_norm.weight", f"{ours}.ffn_norm.weight"))
        for theirs, mine in (("wi_0", "gate_proj"), ("wi_1", "up_proj"), ("wo", "down_proj")):
            pairs.append((f"{block}.{ffn_index}.DenseReluDense.{theirs}.weight", f"{ours}.ffn.{mine}.weight"))
    return tuple(pairs)


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="t5",
        hf_class_name="T5ForConditionalGeneration",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=_key_map(),
        model_class=Seq2SeqLM,
        from_hf_tensors=_from_hf_tensors,
        to_hf_tensors=_to_hf_tensors,
        # The stacks' views of the shared table, and a cross-attention bias table old checkpoints carry unused.
        ignore=(
            r"^(encoder|decoder)\.embed_tokens\.weight$",
            r"^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$",
        ),
    )
)
