"""Mistral and Gemma against transformers ``MistralForCausalLM`` / ``GemmaForCausalLM`` (eager) at random init.

Mistral's inputs are longer than its window, so the window shapes the logits; Gemma's variants
cover MQA with ``head_dim ≠ d/H``, the ``√d`` embedding scale and the ``1 + w`` RMSNorm.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import build, from_hf_model, save_pretrained  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_, relative_error  # noqa: E402

MISTRAL_ORACLE = "transformers MistralForCausalLM (eager)"
GEMMA_ORACLE = "transformers GemmaForCausalLM (eager)"
WINDOW = 4


def tiny_hf(kind: str, **overrides):
    common = dict(
        vocab_size=96, hidden_size=64, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=64, rms_norm_eps=1e-6,
    )
    if kind == "mistral":
        config = transformers.MistralConfig(**{**common, "num_key_value_heads": 2, "sliding_window": WINDOW, **overrides})
        cls = transformers.MistralForCausalLM
    else:
        config = transformers.GemmaConfig(**{**common, "num_key_value_heads": 1, "head_dim": 24, **overrides})
        cls = transformers.GemmaForCausalLM
    torch.manual_seed(0)
    model = cls(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def logits_of(model, hf_model, lengths, *, left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    with torch.no_grad():
        return model(ids, mask), hf_model(input_ids=ids, attention_mask=mask).logits, mask


def rebuilt(model, **changes):
    """The same weights in a model whose config differs by ``changes`` (a deliberate bug)."""
    other = type(model)(model.config.replace(**changes)).eval()
    other.load_state_dict(model.state_dict())
    return other


# ----------------------------------------------------------------------------- Mistral


@pytest.mark.parametrize("left", [False, True], ids=["right padding", "left padding"])
def test_mistral_beyond_the_window_matches_transformers(left):
    hf = tiny_hf("mistral")
    ours = from_hf_model(hf)
    assert ours.config.resolved_layer_kinds == ("sliding", "sliding")
    actual, expected, mask = logits_of(ours, hf, (13, 9, 11), left=left)
    assert_parity(f"mistral (W={WINDOW}, {'left' if left else 'right'} pad)", MISTRAL_ORACLE, actual, expected, mask)


def test_mistral_without_window_matches_transformers():
    hf = tiny_hf("mistral", sliding_window=None, num_key_value_heads=4)
    actual, expected, mask = logits_of(from_hf_model(hf), hf, (11, 7))
    assert_parity("mistral (no window, MHA)", MISTRAL_ORACLE, actual, expected, mask)


@pytest.mark.parametrize("window", [WINDOW - 1, WINDOW + 1, None], ids=["W-1", "W+1", "no window"])
def test_mistral_with_a_wrong_window_is_caught(window):
    hf = tiny_hf("mistral")
    actual, expected, mask = logits_of(rebuilt(from_hf_model(hf), sliding_window=window), hf, (13, 13))
    assert relative_error(actual, expected, mask) > 1e-2


def test_mistral_folder_round_trip_loads_in_transformers(tmp_path):
    ours = from_hf_model(tiny_hf("mistral"))
    save_pretrained(ours, tmp_path)
    reloaded = transformers.MistralForCausalLM.from_pretrained(tmp_path).eval()
    reloaded.config._attn_implementation = "eager"
    assert reloaded.config.sliding_window == WINDOW
    actual, expected, mask = logits_of(ours, reloaded, (13, 8))
    assert_parity("mistral (saved, reloaded by HF)", MISTRAL_ORACLE, actual, expected, mask)


# ----------------------------------------------------------------------------- Gemma


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("gemma (2B-like: MQA, D=24)", {}),
        ("gemma (7B-like: MHA)", dict(num_key_value_heads=4)),
        ("gemma (attention bias)", dict(attention_bias=True)),
    ],
)
def test_gemma_logits_match_transformers(name, overrides):
    hf = tiny_hf("gemma", **overrides)
    ours = from_hf_model(hf)
    config = ours.config
    assert (config.norm_unit_offset, config.activation, config.tie_word_embeddings) == (True, "gelu_tanh", True)
    assert config.embedding_scale == pytest.approx(8.0)
    actual, expected, mask = logits_of(ours, hf, (11, 7, 9))
    assert_parity(name, GEMMA_ORACLE, actual, expected, mask)


def test_gemma_left_padding_matches_transformers():
    hf = tiny_hf("gemma")
    actual, expected, mask = logits_of(from_hf_model(hf), hf, (11, 6), left=True)
    assert_parity("gemma (left padding)", GEMMA_ORACLE, actual, expected, mask)


@pytest.mark.parametrize(
    "changes",
    [dict(norm_unit_offset=False), dict(embedding_scale=None), dict(activation="gelu")],
    ids=["RMSNorm without 1+w", "no √d scale", "exact GELU"],
)
def test_gemma_with_a_llama_habit_is_caught(changes):
    hf = tiny_hf("gemma")
    # Same stored weights (for the norms: offsets from 1), read the LLaMA way.
    wrong = rebuilt(from_hf_model(hf), **changes)
    actual, expected, mask = logits_of(wrong, hf, (11, 11))
    # The exact and tanh GELUs differ by < 1e-3, so that bug moves logits least; still 10× the tolerance.
    assert relative_error(actual, expected, mask) > 1e-4


def test_gemma_folder_round_trip_loads_in_transformers(tmp_path):
    ours = from_hf_model(tiny_hf("gemma"))
    save_pretrained(ours, tmp_path)
    reloaded = transformers.GemmaForCausalLM.from_pretrained(tmp_path).eval()
    reloaded.config._attn_implementation = "eager"
    assert reloaded.config.head_dim == 24 and reloaded.config.hidden_act == "gelu_pytorch_tanh"
    actual, expected, mask = logits_of(ours, reloaded, (10, 8))
    assert_parity("gemma (saved, reloaded by HF)", GEMMA_ORACLE, actual, expected, mask)


@pytest.mark.parametrize("spelling", [{"hidden_act": "gelu"}, {"hidden_act": "gelu", "hidden_activation": "gelu_pytorch_tanh"}])
def test_gemma_legacy_gelu_spelling_means_the_tanh_approximation(spelling):
    from llmcore.models.families.gemma import config_from_hf

    hf = tiny_hf("gemma").config.to_dict() | spelling
    assert config_from_hf(hf).activation == "gelu_tanh"


def test_gemma_bidirectional_config_is_refused():
    from llmcore.models.families.gemma import config_from_hf

    hf = tiny_hf("gemma").config.to_dict() | {"use_bidirectional_attention": True}
    with pytest.raises(ValueError, match="use_bidirectional_attention"):
        config_from_hf(hf)


# ----------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    "name, published, unit",
    [
        ("mistral-7b", 7.24e9, 0.01e9),  # Mistral 7B: 7.24B (model card); dims from the paper's Table 1
        ("gemma-2b", 2.51e9, 0.01e9),    # Gemma report: "2B" = 2.51B with its 256K vocabulary
        ("gemma-7b", 8.54e9, 0.01e9),    # Gemma report: "7B" = 8.54B
    ],
)
def test_preset_parameter_counts_match_published(name, published, unit):
    model = build(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - published) <= unit / 2, f"{name}: {count:,} parameters vs published {published:,.0f}"


@pytest.mark.parametrize("name, non_embedding", [("gemma-2b", 1_981_884_416), ("gemma-7b", 7_751_248_896)])
def test_gemma_non_embedding_parameters_are_exact(name, non_embedding):
    # Gemma report, Table 2 lists non-embedding parameters to the unit. (Its embedding counts use a
    # 256 128-row table; the released checkpoints have 256 000 rows.)
    assert build(name, device="meta").num_parameters(exclude_embeddings=True) == non_embedding


def test_tiny_presets_run():
    for name in ("tiny-mistral", "tiny-gemma"):
        model = build(name).eval()
        ids, mask = padded_batch(model.config.vocab_size, [20, 17])
        assert model(ids, mask).shape == (2, 20, model.config.vocab_size)
