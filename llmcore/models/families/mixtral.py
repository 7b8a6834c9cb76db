"""Mixtral (Jiang et al., 2024, "Mixtral of Experts"): Mistral's decoder with a sparse MoE in every layer.

Everything but the FFN is the LLaMA/Mistral recipe (pre-norm RMSNorm, RoPE with ``θ = 10⁶``, GQA
with 8 KV heads, no biases, untied head). Each FFN becomes a mixture of 8 SwiGLU experts with top-2
routing (稀疏混合专家, :class:`llmcore.moe.MixtureOfExperts`): softmax over the two chosen logits,
so each token runs through 2 of 8 experts and 8x7B uses 12.9B of its 46.7B parameters per token.

Checkpoint layouts. The published checkpoints (and transformers 4.x) store one tensor per expert:
``block_sparse_moe.experts.{e}.w1`` (gate), ``w3`` (up), ``w2`` (down) and the router
``block_sparse_moe.gate``. transformers 5.x renames the block to ``mlp`` and fuses the experts into
3-D parameters ``mlp.experts.gate_up_proj [E, 2F, d]`` (gate rows first, then up) and
``mlp.experts.down_proj [E, d, F]`` in memory, while its ``save_pretrained`` still writes the
per-expert layout. Both load; :func:`mixtral_from_hf` splits the fused tensors. Saving writes the
published per-expert layout, which both transformers generations read.

transformers' ``router_jitter_noise`` (training-time multiplicative noise on the MoE input) is not
implemented; it does not change inference. ``router_aux_loss_coef`` is kept in ``config.extra`` for
training loops (see :func:`llmcore.moe.router_losses`).
"""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor

from ..config import ModelConfig
from ..decoder import CausalLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .common import hf_common_fields, hf_common_fields_to_hf, llama_like_key_map
from .llama import llama_config

__all__ = ["mixtral_config", "mixtral_from_hf", "PUBLISHED_ACTIVE_PARAMETERS"]

StateDict = dict[str, Tensor]

# Parameters used per token (Mistral AI announcements; see the presets' sources).
PUBLISHED_ACTIVE_PARAMETERS = {"mixtral-8x7b": 12.9e9, "mixtral-8x22b": 39e9}

_AUX_LOSS_KEY = "router_aux_loss_coef"


def mixtral_config(**fields: Any) -> ModelConfig:
    """A Mixtral-style :class:`ModelConfig`: the LLaMA recipe with 8 experts, top-2, ``θ = 10⁶``."""
    defaults: dict[str, Any] = dict(n_experts=8, experts_per_token=2, rope_theta=1e6, norm_eps=1e-5)
    return llama_config(**{**defaults, **fields})


def _register_presets() -> None:
    sizes = [
        # name, d, layers, heads, kv heads, ffn per expert, vocab, context, published total, source
        (
            "mixtral-8x7b", 4096, 32, 32, 8, 14336, 32000, 32768, 46.7e9,
            "Mixtral paper (Jiang et al., 2024), Table 1; 46.7B total / 12.9B active: Mistral AI, "
            "'Mixtral of experts' (Dec 2023)",
        ),
        (
            "mixtral-8x22b", 6144, 56, 48, 8, 16384, 32768, 65536, 141e9,
            "mistralai/Mixtral-8x22B-v0.1 config.json; 141B total / 39B active: Mistral AI, "
            "'Cheaper, Better, Faster, Stronger' (Apr 2024)",
        ),
    ]
    for name, d, layers, heads, kv, ffn, vocab, context, published, source in sizes:
        config = mixtral_config(
            vocab_size=vocab, hidden_size=d, n_layers=layers, n_heads=heads, n_kv_heads=kv,
            intermediate_size=ffn, max_positions=context,
        )
        register_preset(Preset(name, config, CausalLM, source, published))
    tiny = mixtral_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, n_kv_heads=2, intermediate_size=96,
        n_experts=4, max_positions=256,
    )
    register_preset(Preset("tiny-mixtral", tiny, CausalLM, "tests and notebooks"))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    return mixtral_config(
        **hf_common_fields(hf),
        norm_eps=hf.get("rms_norm_eps", 1e-5),
        activation=hf.get("hidden_act", "silu"),
        sliding_window=hf.get("sliding_window"),
        n_experts=hf["num_local_experts"],
        experts_per_token=hf["num_experts_per_tok"],
        extra={_AUX_LOSS_KEY: hf.get(_AUX_LOSS_KEY, 0.001)},
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if not config.n_experts:
        raise ValueError("ModelConfig.n_experts must be positive for a Mixtral checkpoint")
    for name in ("qkv_bias", "o_bias", "mlp_bias"):
        if getattr(config, name):
            raise ValueError(f"ModelConfig.{name}=True cannot be written as Mixtral (it has no biases)")
    expected = "sliding" if config.sliding_window is not None else "full"
    if set(config.resolved_layer_kinds) != {expected}:
        raise ValueError(f"ModelConfig.layer_kinds={config.resolved_layer_kinds}: Mixtral uses {expected!r} in every layer")
    return {
        **hf_common_fields_to_hf(config),
        "rms_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "sliding_window": config.sliding_window,
        "num_local_experts": config.n_experts,
        "num_experts_per_tok": config.experts_per_token,
        _AUX_LOSS_KEY: config.extra.get(_AUX_LOSS_KEY, 0.001),
    }


_FUSED = re.compile(r"^(?P<layer>.*\.layers\.\d+)\.mlp\.experts\.(?P<kind>gate_up_proj|down_proj)$")


def mixtral_from_hf(state_dict: StateDict, config: ModelConfig) -> StateDict:
    """Split transformers 5.x fused expert tensors into the published per-expert ``w1``/``w3``/``w2``.

    ``mlp.experts.gate_up_proj [E, 2F, d]`` → ``w1`` (rows ``:F``, gate) and ``w3`` (rows ``F:``,
    up), each ``[F, d]``; ``mlp.experts.down_proj [E, d, F]`` → ``w2 [d, F]``. Other tensors pass.
    """
    converted: StateDict = {}
    width = config.intermediate_size
    for name, tensor in state_dict.items():
        match = _FUSED.match(name)
        if match is None:
            converted[name] = tensor
            continue
        expected = (
            (config.n_experts, 2 * width, config.hidden_size)
            if match["kind"] == "gate_up_proj"
            else (config.n_experts, config.hidden_size, width)
        )
        if tuple(tensor.shape) != expected:
            raise ValueError(f"{name}: shape {tuple(tensor.shape)}, expected {expected} from the config")
        prefix = f"{match['layer']}.block_sparse_moe.experts"
        for expert, weight in enumerate(tensor):
            if match["kind"] == "gate_up_proj":
                converted[f"{prefix}.{expert}.w1.weight"] = weight[:width]
                converted[f"{prefix}.{expert}.w3.weight"] = weight[width:]
            else:
                converted[f"{prefix}.{expert}.w2.weight"] = weight
    return converted


def _key_map() -> tuple[tuple[str, str], ...]:
    shared = tuple(pair for pair in llama_like_key_map() if ".mlp." not in pair[0])
    experts = tuple(
        (f"model.layers.{{i}}.block_sparse_moe.experts.{{e}}.{hf_name}.weight", f"layers.{{i}}.ffn.experts.{{e}}.{name}.weight")
        for hf_name, name in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj"))
    )
    # The published router name comes first, so saving writes it; 5.x's `mlp.gate` still loads.
    routers = (
        ("model.layers.{i}.block_sparse_moe.gate.weight", "layers.{i}.ffn.gate.weight"),
        ("model.layers.{i}.mlp.gate.weight", "layers.{i}.ffn.gate.weight"),
    )
    return shared + routers + experts


_register_presets()
register_architecture(
    HFArchitecture(
        model_type="mixtral",
        hf_class_name="MixtralForCausalLM",
        config_from_hf=config_from_hf,
        config_to_hf=config_to_hf,
        key_map=_key_map(),
        model_class=CausalLM,
        from_hf_tensors=mixtral_from_hf,
        ignore=(r"rotary_emb\.inv_freq$",),
    )
)
