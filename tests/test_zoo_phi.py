"""Phi-1/1.5/2 and Phi-3 against Hugging Face transformers at random init (the independent oracle)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import PRESETS, build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.families.phi import phi3_config_to_hf, phi_config_to_hf  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402

PHI_ORACLE = "transformers PhiForCausalLM (eager)"
PHI3_ORACLE = "transformers Phi3ForCausalLM (eager)"


def tiny_hf(kind: str, **overrides):
    common = dict(
        vocab_size=96, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
        tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )
    if kind == "phi":
        fields = dict(common, intermediate_size=112, partial_rotary_factor=0.5, layer_norm_eps=1e-5)
        config_class, model_class = transformers.PhiConfig, transformers.PhiForCausalLM
    else:
        fields = dict(common, intermediate_size=80, num_key_value_heads=2, rms_norm_eps=1e-5)
        config_class, model_class = transformers.Phi3Config, transformers.Phi3ForCausalLM
    fields.update(overrides)
    torch.manual_seed(0)
    model = model_class(config_class(**fields)).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def logits_pair(hf_model, ours, *, lengths=(11, 7, 9), left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    with torch.no_grad():
        return ours(ids, attention_mask=mask), hf_model(input_ids=ids, attention_mask=mask).logits, mask


def compare(name, oracle, hf_model, **kwargs):
    actual, expected, mask = logits_pair(hf_model, from_hf_model(hf_model), **kwargs)
    return assert_parity(name, oracle, actual, expected, mask)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("phi (partial rotary 1/2)", {}),
        ("phi (rotary 0.4 of head_dim 20)", dict(hidden_size=80, partial_rotary_factor=0.4)),
        ("phi (full rotary)", dict(partial_rotary_factor=1.0)),
        ("phi (GQA 4:2)", dict(num_key_value_heads=2)),
        ("phi (tied, θ=5e4)", dict(tie_word_embeddings=True, rope_theta=50000.0)),
    ],
)
def test_phi_logits_match_transformers(name, overrides):
    compare(name, PHI_ORACLE, tiny_hf("phi", **overrides))


def test_phi_left_padding_matches_transformers():
    compare("phi (left padding)", PHI_ORACLE, tiny_hf("phi"), left=True)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("phi3 (GQA 4:2)", {}),
        ("phi3 (MHA)", dict(num_key_value_heads=4)),
        ("phi3 (sliding window 4)", dict(sliding_window=4)),
        ("phi3 (partial rotary 1/2)", dict(partial_rotary_factor=0.5)),
        ("phi3 (tied)", dict(tie_word_embeddings=True)),
    ],
)
def test_phi3_logits_match_transformers(name, overrides):
    compare(name, PHI3_ORACLE, tiny_hf("phi3", **overrides))


def test_phi3_left_padding_with_sliding_window_matches_transformers():
    compare("phi3 (left padding, window 5)", PHI3_ORACLE, tiny_hf("phi3", sliding_window=5), left=True)


def test_phi_as_a_sequential_two_norm_block_is_caught():
    """The deliberate bug: Phi's one shared LayerNorm wired as a pre-norm block with two norms."""
    hf = tiny_hf("phi")
    right = from_hf_model(hf)
    wrong = type(right)(right.config.replace(block="pre"))
    state = right.state_dict()
    for i in range(right.config.n_layers):
        state[f"layers.{i}.ffn_norm.weight"] = state[f"layers.{i}.self_attn_norm.weight"]
        state[f"layers.{i}.ffn_norm.bias"] = state[f"layers.{i}.self_attn_norm.bias"]
    wrong.load_state_dict(state)
    actual, expected, mask = logits_pair(hf, wrong.eval())
    assert (actual - expected)[mask.bool()].abs().max() > 0.1 * expected.abs().max()


def test_phi3_with_gate_and_up_swapped_is_caught():
    """The deliberate bug: reading Phi-3's fused ``gate_up_proj`` rows as ``[up | gate]``."""
    hf = tiny_hf("phi3")
    wrong = from_hf_model(hf)
    with torch.no_grad():
        for layer in wrong.layers:
            gate, up = layer.ffn.gate_proj.weight.clone(), layer.ffn.up_proj.weight.clone()
            layer.ffn.gate_proj.weight.copy_(up)
            layer.ffn.up_proj.weight.copy_(gate)
    actual, expected, mask = logits_pair(hf, wrong)
    assert (actual - expected)[mask.bool()].abs().max() > 0.1 * expected.abs().max()


@pytest.mark.parametrize("kind", ["phi", "phi3"])
def test_save_pretrained_is_read_back_by_transformers(kind, tmp_path):
    """Our folder (config_to_hf + fused Phi-3 tensors) loads into transformers and gives its logits."""
    hf = tiny_hf(kind, sliding_window=6) if kind == "phi3" else tiny_hf(kind, partial_rotary_factor=0.4, hidden_size=80)
    ours = from_hf_model(hf)
    save_pretrained(ours, tmp_path)
    model_class = transformers.PhiForCausalLM if kind == "phi" else transformers.Phi3ForCausalLM
    reloaded_hf = model_class.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert {k: v.shape for k, v in reloaded_hf.state_dict().items()} == {k: v.shape for k, v in hf.state_dict().items()}
    for name, tensor in hf.state_dict().items():
        assert torch.equal(reloaded_hf.state_dict()[name], tensor), name
    if kind == "phi3":
        assert reloaded_hf.config.sliding_window == hf.config.sliding_window
    actual, expected, mask = logits_pair(reloaded_hf, from_pretrained(tmp_path))
    assert_parity(f"{kind} (saved, reloaded by transformers)", f"transformers {model_class.__name__}", actual, expected, mask)


def test_phi_with_qk_layernorm_is_refused():
    with pytest.raises(ValueError, match="qk_layernorm"):
        from_hf_model(tiny_hf("phi", qk_layernorm=True))


def test_phi3_config_with_biases_cannot_be_saved():
    config = PRESETS["tiny-phi3"].config.replace(mlp_bias=True)
    with pytest.raises(ValueError, match="mlp_bias"):
        phi3_config_to_hf(config)


# Released-weight counts (Hugging Face hub safetensors metadata of microsoft/phi-1, phi-1_5, phi-2 and
# Phi-3-mini-4k-instruct). The papers round differently: Phi-1 and Phi-1.5 are "1.3B", Phi-2 "2.7B",
# Phi-3-mini "3.8B" — hence the second, looser check against the paper figures.
PUBLISHED = {
    "phi-1": (1.42e9, 1.3e9),
    "phi-1.5": (1.42e9, 1.3e9),
    "phi-2": (2.78e9, 2.7e9),
    "phi-3-mini": (3.82e9, 3.8e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_parameter_counts(name):
    released, paper = PUBLISHED[name]
    model = build(name, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert PRESETS[name].published_parameters == released
    assert abs(count - released) / released < 0.005, f"{name}: {count:,} vs {released:,.0f}"
    assert abs(count - paper) / paper < 0.10, f"{name}: {count:,} vs the paper's {paper:,.0f}"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_preset_counts_equal_transformers(name):
    """The same config given to transformers (on the meta device) has exactly as many parameters."""
    config = PRESETS[name].config
    if name.startswith("phi-3"):
        hf_config, model_class = transformers.Phi3Config(**phi3_config_to_hf(config)), transformers.Phi3ForCausalLM
    else:
        hf_config, model_class = transformers.PhiConfig(**phi_config_to_hf(config)), transformers.PhiForCausalLM
    with torch.device("meta"):
        hf = model_class(hf_config)
    assert sum(p.numel() for p in hf.parameters()) == sum(p.numel() for p in build(name, device="meta").parameters())


@pytest.mark.parametrize("name", ["tiny-phi", "tiny-phi3"])
def test_tiny_presets_run(name):
    model = build(name).eval()
    ids, mask = padded_batch(model.config.vocab_size, [12, 5])
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
    assert logits.shape == (2, 12, model.config.vocab_size) and torch.isfinite(logits).all()


def test_partial_rotary_factor_survives_transformers_rounding():
    """26 of 45 dims: 26/45·45 = 25.99… in floats, which transformers' int() would turn into 25."""
    from llmcore import checkpoints
    from llmcore.models.families.phi import phi_config_from_hf

    config = PRESETS["tiny-phi"].config.replace(hidden_size=90, n_heads=2, rotary_dim=26)
    hf_config = transformers.PhiConfig(**phi_config_to_hf(config))
    assert phi_config_from_hf(checkpoints.normalise_config(hf_config.to_dict())).rotary_dim == 26
    with torch.device("meta"):
        assert transformers.PhiForCausalLM(hf_config).model.layers[0].self_attn.rotary_ndims == 26
