"""DeBERTa-v2 and v3 (He et al., 2021; 2023): BERT with disentangled attention (解耦注意力).

DeBERTa keeps BERT's post-norm encoder and masked-LM head but adds no absolute position to the
input. Each layer instead scores content against content *and* against relative positions (c2p,
p2c; see :mod:`llmcore.models.disentangled_attention`), from one log-bucketed relative table shared by all layers
(256 buckets each way, LayerNorm'd). v2 (xlarge, xxlarge) adds a 128K SentencePiece vocabulary and
a kernel-3 convolution beside the first layer (nGiE); v3 drops the convolution and pre-trains as an
ELECTRA-style discriminator, but its checkpoints have the same layout (``model_type`` "deberta-v2").

Hugging Face's ``DebertaV2ForMaskedLM`` stores its head as ``cls.predictions.*`` (``legacy=True``,
the default) or ``lm_predictions.lm_head.*``; both load, the first is written back.
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from ..disentangled_attention import DisentangledMaskedLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset
from .bert import bert_layer_key_map, key_pairs, mlm_head_key_map

__all__ = ["deberta_config"]


def deberta_config(**fields: Any) -> ModelConfig:
    """A DeBERTa-v2/v3 :class:`ModelConfig`: BERT's encoder, no absolute positions, disentangled attention."""
    defaults: dict[str, Any] = dict(
        position="disentangled", disentangled_terms=("c2p", "p2c"), relative_buckets=256, relative_max_distance=512,
        max_positions=512, type_vocab_size=0, embedding_norm=True, block="post", norm="layernorm", norm_eps=1e-7,
        ffn="mlp", activation="gelu", mlp_bias=True, qkv_bias=True, o_bias=True, final_norm=False,
        tie_word_embeddings=True, pad_token_id=0,
    )
    return ModelConfig(**{**defaults, **fields})


def _register_presets() -> None:
    # microsoft/deberta-v3-base model card: "86M backbone parameters with a vocabulary containing 128K
    # tokens which introduces 98M parameters in the Embedding layer" (184M in all).
    v3_base = deberta_config(vocab_size=128100, hidden_size=768, n_layers=12, n_heads=12, intermediate_size=3072)
    register_preset(Preset("deberta-v3-base", v3_base, DisentangledMaskedLM, "microsoft/deberta-v3-base model card", 184e6))
    # microsoft/deberta-v2-xlarge model card: "24 layers, 1536 hidden size. The total parameters are 900M";
    # the configuration gives 887M, the card's figure is rounded to one significant figure.
    v2_xlarge = deberta_config(
        vocab_size=128100, hidden_size=1536, n_layers=24, n_heads=24, intermediate_size=6144, conv_kernel_size=3
    )
    source = "microsoft/deberta-v2-xlarge model card"
    register_preset(Preset("deberta-v2-xlarge", v2_xlarge, DisentangledMaskedLM, source, 900e6))
    tiny = deberta_config(
        vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=128, max_positions=128,
        relative_buckets=16, relative_max_distance=128,
    )
    register_preset(Preset("tiny-deberta", tiny, DisentangledMaskedLM, "tests and notebooks"))


def _attention_terms(hf: dict[str, Any]) -> tuple[str, ...]:
    terms = hf.get("pos_att_type") or []
    if isinstance(terms, str):  # old configs: "p2c|c2p"
        terms = [term.strip() for term in terms.lower().split("|")]
    return tuple(sorted(terms))


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    expected = dict(relative_attention=True, position_biased_input=False, share_att_key=True, norm_rel_ebd="layer_norm")
    for key, value in expected.items():
        if hf.get(key) != value:
            raise ValueError(f"deberta-v2: {key}={hf.get(key)!r} is not supported by llmcore (only {value!r})")
    if hf.get("embedding_size", hf["hidden_size"]) != hf["hidden_size"]:
        raise ValueError("deberta-v2: embedding_size != hidden_size is not supported by llmcore")
    if hf.get("position_buckets", -1) <= 0:
        raise ValueError(f"deberta-v2: position_buckets={hf.get('position_buckets')!r} is not supported (must be > 0)")
    conv = hf.get("conv_kernel_size", 0)
    if conv and hf.get("conv_act", "tanh") != hf.get("hidden_act", "gelu"):
        raise ValueError(f"deberta-v2: conv_act={hf.get('conv_act', 'tanh')!r} must equal hidden_act in llmcore")
    if conv and hf.get("conv_groups", 1) != 1:
        raise ValueError(f"deberta-v2: conv_groups={hf['conv_groups']!r} is not supported (only 1)")
    max_relative = hf.get("max_relative_positions", -1)
    n_heads = hf["num_attention_heads"]
    return deberta_config(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=n_heads,
        head_dim=hf.get("attention_head_size") or hf["hidden_size"] // n_heads,
        intermediate_size=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 0),
        norm_eps=hf.get("layer_norm_eps", 1e-7),
        activation=hf.get("hidden_act", "gelu"),
        disentangled_terms=_attention_terms(hf),
        relative_buckets=hf["position_buckets"],
        relative_max_distance=max_relative if max_relative >= 1 else hf.get("max_position_embeddings", 512),
        conv_kernel_size=conv,
        pad_token_id=hf.get("pad_token_id", 0),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )


def config_to_hf(config: ModelConfig) -> dict[str, Any]:
    hf: dict[str, Any] = {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "attention_head_size": config.resolved_head_dim,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "relative_attention": True,
        "position_biased_input": False,
        "pos_att_type": list(config.disentangled_terms),
        "position_buckets": config.relative_buckets,
        "max_relative_positions": config.relative_max_distance,
        "share_att_key": True,
        "norm_rel_ebd": "layer_norm",
        "pad_token_id": config.pad_token_id,
        "tie_word_embeddings": config.tie_word_embeddings,
        "legacy": True,
    }
    if config.conv_kernel_size:
        hf.update(conv_kernel_size=config.conv_kernel_size, conv_act=config.activation)
    return hf


_KEYS = (
    *key_pairs("deberta.embeddings.", "encoder.embeddings.", [("word_embeddings", "embed_tokens")], kinds=("weight",)),
    *key_pairs("deberta.embeddings.", "encoder.embeddings.", [("token_type_embeddings", "embed_types")], kinds=("weight",)),
    *key_pairs("deberta.embeddings.", "encoder.embeddings.", [("LayerNorm", "embed_norm")]),
    *bert_layer_key_map("deberta.encoder.layer.{i}.", ("query_proj", "key_proj", "value_proj")),
    *key_pairs("deberta.encoder.", "encoder.", [("rel_embeddings", "relative_embeddings")], kinds=("weight",)),
    *key_pairs("deberta.encoder.", "encoder.", [
        ("LayerNorm", "relative_norm"), ("conv.conv", "conv.conv"), ("conv.LayerNorm", "conv.norm"),
    ]),
    *mlm_head_key_map("cls.predictions.", "transform.dense", "transform.LayerNorm", "bias"),
    *key_pairs("lm_predictions.lm_head.", "head.", [("dense", "dense"), ("LayerNorm", "norm")]),
    ("lm_predictions.lm_head.bias", "head.decoder.bias"),
)

_register_presets()
register_architecture(HFArchitecture(
    model_type="deberta-v2", hf_class_name="DebertaV2ForMaskedLM", config_from_hf=config_from_hf,
    config_to_hf=config_to_hf, key_map=_KEYS, model_class=DisentangledMaskedLM,
    # Buffers, v1's unused absolute table, and v3's replaced-token-detection head (transformers drops them too).
    ignore=(r"\.position_ids$", r"^deberta\.embeddings\.position_embeddings\.", r"^mask_predictions\."),
))
