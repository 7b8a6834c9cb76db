"""BERT, RoBERTa, ALBERT and ELECTRA: the encoder-only line of pre-training (预训练编码器).

BERT (Devlin et al., 2019) is the 2017 encoder with learned positions, segment (token-type)
embeddings, an embedding LayerNorm, GELU and post-norm blocks, pre-trained on masked-LM (MLM, 掩码语言
模型) plus next-sentence prediction through the [CLS] pooler. RoBERTa (Liu et al., 2019) keeps the
network and changes the recipe: no NSP (no pooler in fairseq's model), a 50K byte-level BPE, and
fairseq's position ids, which start at ``padding_idx + 1`` and skip padding. ALBERT (Lan et al., 2020)
shrinks the parameters twice: factorised embeddings (``E = 128 ≪ d``, projected to d) and one layer
shared across all depths (跨层参数共享); it replaces NSP with sentence-order prediction. ELECTRA
(Clark et al., 2020) pre-trains a discriminator to spot tokens replaced by a small MLM generator
(replaced token detection, 替换词检测); the discriminator is BERT with ELECTRA's head, and the
small model has factorised embeddings too.

All of them are :class:`~llmcore.models.encoder.MaskedLM` or
:class:`~llmcore.models.encoder.Discriminator` plus a configuration. The Hugging Face heads map as
``cls.predictions.transform.dense`` (BERT) / ``lm_head.dense`` (RoBERTa) / ``predictions.dense``
(ALBERT) → ``head.dense`` and the decoder bias (stored twice, ``….bias`` and ``….decoder.bias``) →
``head.decoder.bias``. Hugging Face's ``…ForMaskedLM`` classes have no pooler, so a checkpoint's
pooler (and its NSP/SOP classifier) is dropped on load, as transformers does.
"""

from __future__ import annotations

from typing import Any, Callable

from torch import Tensor

from ..config import ModelConfig
from ..encoder import Discriminator, MaskedLM
from ..registry import HFArchitecture, Preset, register_architecture, register_preset

__all__ = [
    "bert_config", "roberta_config", "albert_config", "electra_config", "bert_layer_key_map",
    "bert_embedding_key_map", "mlm_head_key_map", "key_pairs", "drop_pooler",
]

StateDict = dict[str, Tensor]
# Non-persistent buffers that older checkpoints saved.
_BUFFERS = (r"\.position_ids$", r"\.token_type_ids$")


def bert_config(**fields: Any) -> ModelConfig:
    """A BERT-style :class:`ModelConfig`: learned positions + 2 segments + embedding LayerNorm, post-norm GELU MLP."""
    defaults: dict[str, Any] = dict(
        position="learned", max_positions=512, type_vocab_size=2, embedding_norm=True, block="post",
        norm="layernorm", norm_eps=1e-12, ffn="mlp", activation="gelu", mlp_bias=True, qkv_bias=True, o_bias=True,
        final_norm=False, tie_word_embeddings=True, pad_token_id=0,
    )
    return ModelConfig(**{**defaults, **fields})


def roberta_config(**fields: Any) -> ModelConfig:
    """RoBERTa: BERT's network with fairseq positions (start at pad + 1 = 2, skip padding), 1 segment, eps 1e-5."""
    pad = fields.get("pad_token_id", 1)
    defaults: dict[str, Any] = dict(
        pad_token_id=pad, position_offset=pad + 1, positions_skip_padding=True, type_vocab_size=1, norm_eps=1e-5
    )
    return bert_config(**{**defaults, **fields})


def albert_config(**fields: Any) -> ModelConfig:
    """ALBERT: factorised embeddings (E=128), one layer shared across depth, GELU (tanh), a pooler (SOP)."""
    defaults: dict[str, Any] = dict(embedding_size=128, share_layers=True, activation="gelu_new", pooler=True)
    return bert_config(**{**defaults, **fields})


def electra_config(**fields: Any) -> ModelConfig:
    """ELECTRA's discriminator: BERT's network (the small one with factorised embeddings), no pooler."""
    return bert_config(**fields)


# --------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------


def _register_presets() -> None:
    # BERT §3 (Model Architecture): BERT_BASE "L=12, H=768, A=12, Total Parameters=110M" and BERT_LARGE
    # "L=24, H=1024, A=16, Total Parameters=340M"; the released checkpoints add the pooler and the MLM
    # transform. The paper rounds to two significant figures: 110.1M → 110M, 336.2M → 340M.
    for name, d, layers, heads, published in (("bert-base", 768, 12, 12, 110e6), ("bert-large", 1024, 24, 16, 340e6)):
        config = bert_config(
            vocab_size=30522, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d, pooler=True
        )
        register_preset(Preset(name, config, MaskedLM, "BERT paper (Devlin et al., 2019), §3", published))
    # fairseq's RoBERTa README lists roberta.base 125M and roberta.large 355M (its model has no pooler;
    # Hugging Face's port adds one token-type row, 768 or 1024 parameters).
    for name, d, layers, heads, published in (("roberta-base", 768, 12, 12, 125e6), ("roberta-large", 1024, 24, 16, 355e6)):
        config = roberta_config(
            vocab_size=50265, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d, max_positions=512
        )
        register_preset(Preset(name, config, MaskedLM, "fairseq RoBERTa README (Liu et al., 2019)", published))
    # ALBERT Table 1 (30K vocabulary, E=128). For xxlarge the paper's 235M (Table 1) and 233M (§3.2)
    # are not reachable from its stated shape; the released checkpoint has 223M (model card), which
    # this configuration reproduces.
    albert = (
        ("albert-base", 768, 12, 12, 12e6, "ALBERT paper (Lan et al., 2020), Table 1"),
        ("albert-large", 1024, 24, 16, 18e6, "ALBERT paper (Lan et al., 2020), Table 1"),
        ("albert-xxlarge", 4096, 12, 64, 223e6, "albert-xxlarge-v2 model card (ALBERT paper Table 1: 235M)"),
    )
    for name, d, layers, heads, published, source in albert:
        config = albert_config(vocab_size=30000, hidden_size=d, n_layers=layers, n_heads=heads, intermediate_size=4 * d)
        register_preset(Preset(name, config, MaskedLM, source, published))
    # ELECTRA Table 1 (Small 14M, Base 110M) and Table 2 (Large 335M); Small's shape from its appendix
    # hyper-parameter table (E=128, d=256, 4 heads, FFN 1024).
    electra = (
        ("electra-small", dict(hidden_size=256, n_layers=12, n_heads=4, intermediate_size=1024, embedding_size=128),
         14e6, "Table 1"),
        ("electra-base", dict(hidden_size=768, n_layers=12, n_heads=12, intermediate_size=3072), 110e6, "Table 1"),
        ("electra-large", dict(hidden_size=1024, n_layers=24, n_heads=16, intermediate_size=4096), 335e6, "Table 2"),
    )
    for name, sizes, published, table in electra:
        config = electra_config(vocab_size=30522, **sizes)
        register_preset(Preset(name, config, Discriminator, f"ELECTRA paper (Clark et al., 2020), {table}", published))

    tiny = dict(vocab_size=256, hidden_size=64, n_layers=2, n_heads=4, intermediate_size=128, max_positions=128)
    register_preset(Preset("tiny-bert", bert_config(**tiny, pooler=True), MaskedLM, "tests and notebooks"))
    register_preset(Preset("tiny-roberta", roberta_config(**tiny), MaskedLM, "tests and notebooks"))
    register_preset(Preset("tiny-albert", albert_config(**{**tiny, "embedding_size": 32}), MaskedLM, "tests and notebooks"))
    tiny_electra = electra_config(**{**tiny, "embedding_size": 32})
    register_preset(Preset("tiny-electra", tiny_electra, Discriminator, "tests and notebooks"))


# --------------------------------------------------------------------------------------------------
# Hugging Face configs
# --------------------------------------------------------------------------------------------------


def _require(hf: dict[str, Any], model_type: str, **expected: Any) -> None:
    for key, value in expected.items():
        if hf.get(key, value) != value:
            raise ValueError(f"{model_type}: {key}={hf[key]!r} is not supported by llmcore (only {value!r})")


def _bert_fields(hf: dict[str, Any]) -> dict[str, Any]:
    _require(hf, hf.get("model_type", "bert"), position_embedding_type="absolute", is_decoder=False)
    return dict(
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        intermediate_size=hf["intermediate_size"],
        max_positions=hf.get("max_position_embeddings", 512),
        type_vocab_size=hf.get("type_vocab_size", 2),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        activation=hf.get("hidden_act", "gelu"),
        pad_token_id=hf.get("pad_token_id"),
        tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
    )


def _bert_fields_to_hf(config: ModelConfig) -> dict[str, Any]:
    return {
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions + config.position_offset,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.norm_eps,
        "hidden_act": config.activation,
        "pad_token_id": config.pad_token_id,
        "tie_word_embeddings": config.tie_word_embeddings,
    }


def bert_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    return bert_config(**_bert_fields(hf))


def roberta_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    fields = _bert_fields(hf)
    pad = fields["pad_token_id"] if fields["pad_token_id"] is not None else 1
    # Hugging Face's table has pad + 1 rows below the first real position (514 = 512 + 2).
    fields.update(pad_token_id=pad, max_positions=fields["max_positions"] - pad - 1, norm_eps=hf.get("layer_norm_eps", 1e-5))
    return roberta_config(**fields)


def roberta_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if not config.positions_skip_padding or config.pad_token_id is None or config.position_offset != config.pad_token_id + 1:
        raise ValueError("RoBERTa needs positions_skip_padding=True and position_offset = pad_token_id + 1")
    return _bert_fields_to_hf(config)


def albert_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    _require(hf, "albert", num_hidden_groups=1, inner_group_num=1)
    fields = _bert_fields(hf)
    if hf["embedding_size"] == hf["hidden_size"]:
        raise ValueError("albert: embedding_size == hidden_size is not supported (llmcore has no identity-size projection)")
    return albert_config(**{**fields, "embedding_size": hf["embedding_size"], "pooler": False})


def albert_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    if not config.share_layers or config.embedding_size is None:
        raise ValueError("ALBERT needs share_layers=True and an embedding_size")
    fields = _bert_fields_to_hf(config)
    return {**fields, "embedding_size": config.embedding_size, "num_hidden_groups": 1, "inner_group_num": 1}


def electra_config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    fields = _bert_fields(hf)
    embedding = hf.get("embedding_size", hf["hidden_size"])
    return electra_config(**fields, embedding_size=None if embedding == hf["hidden_size"] else embedding)


def electra_config_to_hf(config: ModelConfig) -> dict[str, Any]:
    return {**_bert_fields_to_hf(config), "embedding_size": config.embedding_size or config.hidden_size}


# --------------------------------------------------------------------------------------------------
# Tensor names
# --------------------------------------------------------------------------------------------------


def key_pairs(
    hf_prefix: str, ours_prefix: str, names: list[tuple[str, str]], kinds: tuple[str, ...] = ("weight", "bias")
) -> list[tuple[str, str]]:
    """``(hf_prefix + hf + "." + kind, ours_prefix + ours + "." + kind)`` for every name pair and kind."""
    return [(f"{hf_prefix}{hf}.{kind}", f"{ours_prefix}{mine}.{kind}") for hf, mine in names for kind in kinds]


def bert_embedding_key_map(prefix: str) -> list[tuple[str, str]]:
    """``{prefix}embeddings.*`` → ``encoder.embeddings.*`` (word, position, token type, LayerNorm)."""
    pairs = key_pairs(
        f"{prefix}embeddings.", "encoder.embeddings.",
        [("word_embeddings", "embed_tokens"), ("position_embeddings", "embed_positions"),
         ("token_type_embeddings", "embed_types")],
        kinds=("weight",),
    )
    return pairs + key_pairs(f"{prefix}embeddings.", "encoder.embeddings.", [("LayerNorm", "embed_norm")])


def bert_layer_key_map(layer: str, projections: tuple[str, str, str] = ("query", "key", "value")) -> list[tuple[str, str]]:
    """One BERT layer ``{layer}`` (with ``{i}``) → ``encoder.layers.{i}``; DeBERTa names Q/K/V ``*_proj``."""
    query, key, value = projections
    return key_pairs(layer, "encoder.layers.{i}.", [
        (f"attention.self.{query}", "self_attn.q_proj"),
        (f"attention.self.{key}", "self_attn.k_proj"),
        (f"attention.self.{value}", "self_attn.v_proj"),
        ("attention.output.dense", "self_attn.o_proj"),
        ("attention.output.LayerNorm", "self_attn_norm"),
        ("intermediate.dense", "ffn.up_proj"),
        ("output.dense", "ffn.down_proj"),
        ("output.LayerNorm", "ffn_norm"),
    ])


def mlm_head_key_map(head: str, dense: str, norm: str, bias: str) -> list[tuple[str, str]]:
    """A masked-LM head under ``head``; the canonical bias name comes first (the one written back)."""
    return [
        *key_pairs(head, "head.", [(dense, "dense"), (norm, "norm")]),
        (f"{head}{bias}", "head.decoder.bias"),
        (f"{head}decoder.bias", "head.decoder.bias"),
        (f"{head}decoder.weight", "head.decoder.weight"),
    ]


def drop_pooler(prefix: str) -> Callable[[StateDict, ModelConfig], StateDict]:
    """A ``from_hf_tensors`` hook discarding ``{prefix}…`` pooler tensors when the config has no pooler."""

    def hook(state_dict: StateDict, config: ModelConfig) -> StateDict:
        if config.pooler:
            return state_dict
        return {name: tensor for name, tensor in state_dict.items() if not name.startswith(prefix)}

    return hook


_BERT_KEYS = (
    *bert_embedding_key_map("bert."),
    *bert_layer_key_map("bert.encoder.layer.{i}."),
    *key_pairs("bert.pooler.", "encoder.pooler.", [("dense", "dense")]),
    *mlm_head_key_map("cls.predictions.", "transform.dense", "transform.LayerNorm", "bias"),
)
_ROBERTA_KEYS = (
    *bert_embedding_key_map("roberta."),
    *bert_layer_key_map("roberta.encoder.layer.{i}."),
    *key_pairs("roberta.pooler.", "encoder.pooler.", [("dense", "dense")]),
    *mlm_head_key_map("lm_head.", "dense", "layer_norm", "bias"),
)
_ALBERT_LAYER = "albert.encoder.albert_layer_groups.0.albert_layers.0."
_ALBERT_KEYS = (
    *bert_embedding_key_map("albert."),
    *key_pairs("albert.encoder.", "encoder.embeddings.", [("embedding_hidden_mapping_in", "embed_proj")]),
    *key_pairs(_ALBERT_LAYER, "encoder.layers.0.", [
        ("attention.query", "self_attn.q_proj"),
        ("attention.key", "self_attn.k_proj"),
        ("attention.value", "self_attn.v_proj"),
        ("attention.dense", "self_attn.o_proj"),
        ("attention.LayerNorm", "self_attn_norm"),
        ("ffn", "ffn.up_proj"),
        ("ffn_output", "ffn.down_proj"),
        ("full_layer_layer_norm", "ffn_norm"),
    ]),
    *key_pairs("albert.", "encoder.pooler.", [("pooler", "dense")]),
    *mlm_head_key_map("predictions.", "dense", "LayerNorm", "bias"),
)
_ELECTRA_KEYS = (
    *bert_embedding_key_map("electra."),
    *key_pairs("electra.", "encoder.embeddings.", [("embeddings_project", "embed_proj")]),
    *bert_layer_key_map("electra.encoder.layer.{i}."),
    *key_pairs("discriminator_predictions.", "head.", [("dense", "dense"), ("dense_prediction", "dense_prediction")]),
)

_register_presets()
register_architecture(HFArchitecture(
    model_type="bert", hf_class_name="BertForMaskedLM", config_from_hf=bert_config_from_hf,
    config_to_hf=_bert_fields_to_hf, key_map=_BERT_KEYS, model_class=MaskedLM,
    from_hf_tensors=drop_pooler("bert.pooler."), ignore=(*_BUFFERS, r"^cls\.seq_relationship\."),
))
register_architecture(HFArchitecture(
    model_type="roberta", hf_class_name="RobertaForMaskedLM", config_from_hf=roberta_config_from_hf,
    config_to_hf=roberta_config_to_hf, key_map=_ROBERTA_KEYS, model_class=MaskedLM,
    from_hf_tensors=drop_pooler("roberta.pooler."), ignore=_BUFFERS,
))
register_architecture(HFArchitecture(
    model_type="albert", hf_class_name="AlbertForMaskedLM", config_from_hf=albert_config_from_hf,
    config_to_hf=albert_config_to_hf, key_map=_ALBERT_KEYS, model_class=MaskedLM,
    from_hf_tensors=drop_pooler("albert.pooler."), ignore=(*_BUFFERS, r"^sop_classifier\."),
))
register_architecture(HFArchitecture(
    model_type="electra", hf_class_name="ElectraForPreTraining", config_from_hf=electra_config_from_hf,
    config_to_hf=electra_config_to_hf, key_map=_ELECTRA_KEYS, model_class=Discriminator, ignore=_BUFFERS,
))
