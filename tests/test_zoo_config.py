"""ModelConfig validation (errors name the field) and the preset registry as a whole."""

from __future__ import annotations

import pytest
import torch

from llmcore.models import PRESETS, CausalLM, ModelConfig, build, preset_config
from llmcore.models.config import LAYER_KINDS

BASE = dict(vocab_size=32, hidden_size=16, n_layers=2, n_heads=4, intermediate_size=32)


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(hidden_size=18), "n_heads"),
        (dict(n_kv_heads=3), "n_kv_heads"),
        (dict(n_kv_heads=0), "n_kv_heads"),
        (dict(vocab_size=0), "vocab_size"),
        (dict(n_layers=-1), "n_layers"),
        (dict(activation="swish-ish"), "activation"),
        (dict(norm="batchnorm"), "norm"),
        (dict(block="sideways"), "block"),
        (dict(position="spiral"), "position"),
        (dict(ffn="conv"), "ffn"),
        (dict(sliding_window=0), "sliding_window"),
        (dict(sliding_window=-4), "sliding_window"),
        (dict(layer_kinds=("full",)), "layer_kinds"),
        (dict(layer_kinds=("full", "sliding")), "sliding_window"),
        (dict(layer_kinds=("full", "strided")), "sparse_block"),
        (dict(layer_kinds=("full", "dilated")), "layer_kinds"),
        (dict(rotary_dim=5), "rotary_dim"),
        (dict(rotary_dim=8), "rotary_dim"),
        (dict(n_experts=4, experts_per_token=5), "experts_per_token"),
        (dict(dropout=1.0), "dropout"),
        (dict(norm_eps=0.0), "norm_eps"),
        (dict(head_dim=0), "head_dim"),
        (dict(logn_trained_length=1), "logn_trained_length"),
    ],
)
def test_an_impossible_config_names_its_field(changes, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**{**BASE, **changes})


def test_head_dim_may_be_set_when_heads_do_not_divide_the_width():
    config = ModelConfig(**{**BASE, "hidden_size": 18, "head_dim": 8})
    assert config.resolved_head_dim == 8
    assert CausalLM(config)(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, 32)


def test_layer_kinds_default_from_the_window():
    assert ModelConfig(**BASE).resolved_layer_kinds == ("full", "full")
    assert ModelConfig(**BASE, sliding_window=4).resolved_layer_kinds == ("sliding", "sliding")
    assert set(LAYER_KINDS) >= {"full", "sliding", "strided", "fixed"}


def test_dict_round_trip_and_unknown_fields():
    config = preset_config("tiny-llama")
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ModelConfig fields: \\['n_layer'\\]"):
        ModelConfig.from_dict({**config.to_dict(), "n_layer": 3})


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError, match="unknown preset 'llama-8b'.*llama-7b"):
        build("llama-8b")


def test_overrides_are_validated():
    with pytest.raises(ValueError, match="n_kv_heads"):
        preset_config("tiny-llama", n_kv_heads=3)


def test_every_published_preset_is_within_five_percent_of_its_published_size():
    preset_config("tiny-llama")  # registers every family
    checked = 0
    for name, preset in sorted(PRESETS.items()):
        if preset.published_parameters is None:
            continue
        model = build(name, device="meta")
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - preset.published_parameters) / preset.published_parameters < 0.05, (
            f"{name}: {count / 1e9:.3f}B parameters vs published {preset.published_parameters / 1e9:.3f}B ({preset.source})"
        )
        checked += 1
    assert checked >= 9


@pytest.mark.parametrize("name", ["llama-7b", "llama2-70b", "llama3-8b"])
def test_llama_sizes_match_the_published_counts_to_three_digits(name):
    expected = {"llama-7b": 6_738_415_616, "llama2-70b": 68_976_648_192, "llama3-8b": 8_030_261_248}[name]
    assert build(name, device="meta").num_parameters() == expected


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(position="disentangled"), "position"),
        (dict(position="relative_buckets"), "position"),
        (dict(share_layers=True), "share_layers"),
        (dict(lm_head_scale=0.125), "lm_head_scale"),
        (dict(final_logits_bias=True), "final_logits_bias"),
    ],
)
def test_causal_lm_refuses_fields_it_would_ignore(changes, field):
    with pytest.raises(ValueError, match=field):
        CausalLM(ModelConfig(**{**BASE, **changes}))


def test_importing_the_registry_alone_registers_every_family() -> None:
    """Families register eagerly when llmcore.models is imported: no call has to trigger it first."""
    import subprocess
    import sys

    script = ("from llmcore.models.registry import ARCHITECTURES, PRESETS; "
              "assert 'llama2-7b' in PRESETS and 'mixtral' in ARCHITECTURES, (len(PRESETS), len(ARCHITECTURES))")
    subprocess.run([sys.executable, "-c", script], check=True)
