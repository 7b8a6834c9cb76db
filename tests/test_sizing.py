"""llmcore.models.sizing.parameter_count against independent oracles: transformers' models built on the
meta device from the real configurations, llmcore's own models built on the meta device, and the counts
the model cards publish."""

from __future__ import annotations

import pytest
import torch

import llmcore
import llmcore.models
from llmcore.ffn import gated_hidden_size
from llmcore.models import CausalLM, ModelConfig
from llmcore.models.registry import PRESETS, preset_config
from llmcore.models.sizing import parameter_count

transformers = pytest.importorskip("transformers")

# Published totals (model cards and safetensors indexes on the Hugging Face Hub; LLaMA-7B also in
# Touvron et al. 2023 and the shared seeds): the closed form must hit them to the parameter.
PUBLISHED = {
    "llama-7b": 6_738_415_616,
    "llama2-7b": 6_738_415_616,
    "llama2-13b": 13_015_864_320,
    "llama2-70b": 68_976_648_192,
    "llama3-8b": 8_030_261_248,
    "mistral-7b": 7_241_732_096,
    "gemma-7b": 8_537_680_896,
    "gemma-2b": 2_506_172_416,
    "mixtral-8x7b": 46_702_792_704,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_counts(name: str) -> None:
    assert parameter_count(preset_config(name)) == PUBLISHED[name]


def _hf_model(config: ModelConfig):
    common = dict(vocab_size=config.vocab_size, hidden_size=config.hidden_size, num_hidden_layers=config.n_layers,
                  num_attention_heads=config.n_heads, num_key_value_heads=config.resolved_kv_heads,
                  intermediate_size=config.intermediate_size, tie_word_embeddings=config.tie_word_embeddings)
    if config.sliding_window is not None:
        hf_config, model_class = transformers.MistralConfig(sliding_window=config.sliding_window, **common), \
            transformers.MistralForCausalLM
    elif config.norm_unit_offset:
        hf_config, model_class = transformers.GemmaConfig(head_dim=config.resolved_head_dim, **common), \
            transformers.GemmaForCausalLM
    else:
        hf_config, model_class = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    with torch.device("meta"):
        return model_class(hf_config)


HF_FAMILIES = ["llama-7b", "llama-65b", "llama2-70b", "llama3-8b", "mistral-7b", "gemma-2b", "gemma-7b",
               "tiny-llama", "tiny-mistral", "tiny-gemma"]


@pytest.mark.parametrize("name", HF_FAMILIES)
def test_matches_transformers_models_built_on_meta(name: str) -> None:
    config = preset_config(name)
    model = _hf_model(config)
    assert parameter_count(config) == model.num_parameters()


def test_tying_removes_exactly_one_vocabulary_matrix() -> None:
    config = preset_config("tiny-llama")
    tied = config.replace(tie_word_embeddings=True)
    assert parameter_count(config) - parameter_count(tied) == config.vocab_size * config.hidden_size
    assert parameter_count(tied) == _hf_model(tied).num_parameters()


DECODER_PRESETS = [name for name, preset in PRESETS.items()
                   if issubclass(preset.model_class, CausalLM) and not preset.config.position_2d]


@pytest.mark.parametrize("name", DECODER_PRESETS)
def test_matches_llmcore_models_built_on_meta(name: str) -> None:
    model = llmcore.build(name, device="meta")
    assert parameter_count(preset_config(name)) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["bert-base", "t5-small", "deberta-v3-base", "chatglm-6b", "albert-base"])
def test_encoder_features_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="parameter_count"):
        parameter_count(preset_config(name))


def _from_meta_params(dim: int, n_layers: int, n_heads: int, n_kv_heads: int, vocab_size: int, multiplier: float,
                      multiple_of: int, tie: bool) -> ModelConfig:
    """A ModelConfig from the fields of Meta's params.json, the FFN width by LLaMA's rounding rule."""
    return ModelConfig(vocab_size=vocab_size, hidden_size=dim, n_layers=n_layers, n_heads=n_heads,
                       n_kv_heads=n_kv_heads, tie_word_embeddings=tie,
                       intermediate_size=gated_hidden_size(dim, multiple_of=multiple_of, multiplier=multiplier))


def test_published_counts_of_models_without_a_preset() -> None:
    """Llama 3.1 405B (Meta's params.json: 16384, 126 layers, 128/8 heads, multiplier 1.2, multiple_of 4096) and
    Llama 3.2 1B, whose head is tied to its embedding (model cards on the Hugging Face Hub)."""
    llama_405b = _from_meta_params(16384, 126, 128, 8, 128256, 1.2, 4096, tie=False)
    llama_1b = _from_meta_params(2048, 16, 32, 8, 128256, 1.5, 256, tie=True)
    assert llama_405b.intermediate_size == 53248 and llama_1b.intermediate_size == 8192
    assert parameter_count(llama_405b) == 405_853_388_800
    assert parameter_count(llama_1b) == 1_235_814_400 == _hf_model(llama_1b).num_parameters()
