"""Mixtral against Hugging Face transformers at random init (the independent oracle).

Logits with padding masks, the router logits of every layer, and the load-balancing loss against
``MixtralForCausalLM(..., output_router_logits=True).aux_loss`` (transformers'
``load_balancing_loss_func``). Padding is treated the same way on both sides: padded tokens still go
through router and experts (their outputs are never read), and the attention mask removes them
from both ``f`` and ``P`` of the loss; without a mask every position counts. Both pool the tokens of
all layers before forming ``f`` and ``P`` (not a mean of per-layer losses).
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from llmcore.models import build, from_hf_model, from_pretrained, save_pretrained  # noqa: E402
from llmcore.models.families.mixtral import PUBLISHED_ACTIVE_PARAMETERS, config_from_hf, config_to_hf, mixtral_from_hf  # noqa: E402
from llmcore.models.registry import PRESETS  # noqa: E402
from llmcore import checkpoints  # noqa: E402
from llmcore.moe import active_parameters, router_losses  # noqa: E402
from zoo_helpers import assert_parity, padded_batch, randomize_  # noqa: E402

ORACLE = "transformers MixtralForCausalLM (eager)"


def tiny_hf_mixtral(**overrides):
    fields = dict(
        vocab_size=96, hidden_size=64, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=64,
        rms_norm_eps=1e-5, tie_word_embeddings=False,
    )
    fields.update(overrides)
    config = transformers.MixtralConfig(**fields)
    torch.manual_seed(0)
    model = transformers.MixtralForCausalLM(config).eval()
    model.config._attn_implementation = "eager"
    return randomize_(model)


def compare(name, hf_model, ours=None, *, lengths=(11, 7, 9), left=False):
    ids, mask = padded_batch(hf_model.config.vocab_size, list(lengths), left=left)
    ours = from_hf_model(hf_model) if ours is None else ours
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask).logits
        actual = ours(ids, attention_mask=mask)
    return assert_parity(name, ORACLE, actual, expected, mask)


@pytest.mark.parametrize(
    "name, overrides",
    [
        ("mixtral (top-2 of 4)", {}),
        ("mixtral (top-1 of 4)", dict(num_experts_per_tok=1)),
        ("mixtral (top-4 of 4)", dict(num_experts_per_tok=4)),
        ("mixtral (8 experts, MHA, θ=1e6)", dict(num_local_experts=8, num_key_value_heads=4, rope_theta=1e6)),
        ("mixtral (sliding window 4)", dict(sliding_window=4)),
    ],
)
def test_mixtral_logits_match_transformers(name, overrides):
    compare(name, tiny_hf_mixtral(**overrides))


def test_mixtral_left_padding_matches_transformers():
    compare("mixtral (left padding)", tiny_hf_mixtral(), left=True)


@pytest.mark.parametrize("padded", [True, False], ids=["padding mask", "no mask"])
def test_router_logits_and_load_balancing_loss_match_transformers(padded):
    hf = tiny_hf_mixtral()
    ours = from_hf_model(hf)
    ids, mask = padded_batch(hf.config.vocab_size, [11, 7, 9] if padded else [10, 10])
    with torch.no_grad():
        expected = hf(input_ids=ids, attention_mask=mask if padded else None, output_router_logits=True)
        ours(ids, mask if padded else None)
    for layer, hf_logits in zip(ours.layers, expected.router_logits):
        torch.testing.assert_close(layer.ffn.last_routing.logits.reshape(hf_logits.shape), hf_logits, rtol=1e-5, atol=1e-5)
    losses = router_losses(ours, mask if padded else None)
    torch.testing.assert_close(losses.load_balancing, expected.aux_loss, rtol=1e-6, atol=1e-6)


def test_load_balancing_loss_with_padding_differs_from_the_unmasked_one():
    """The mask matters: counting padded positions changes f and P (guards against an ignored mask)."""
    hf = tiny_hf_mixtral()
    ours = from_hf_model(hf)
    ids, mask = padded_batch(hf.config.vocab_size, [11, 3, 4])
    with torch.no_grad():
        ours(ids, mask)
    assert abs(float(router_losses(ours, mask).load_balancing - router_losses(ours).load_balancing)) > 1e-3


def test_a_swapped_gate_and_up_projection_is_caught_by_the_parity_check():
    hf = tiny_hf_mixtral()
    ours = from_hf_model(hf)
    with torch.no_grad():
        for layer in ours.layers:
            for expert in layer.ffn.experts:
                gate = expert.gate_proj.weight.clone()
                expert.gate_proj.weight.copy_(expert.up_proj.weight)
                expert.up_proj.weight.copy_(gate)
    ids, mask = padded_batch(hf.config.vocab_size, [12, 12])
    with torch.no_grad():
        error = (ours(ids, mask) - hf(input_ids=ids, attention_mask=mask).logits).abs().max()
    assert error > 1e-1


def test_saved_folder_loads_in_transformers_and_back(tmp_path):
    """llmcore and transformers 5.x both save the published per-expert layout (5.x fuses it on load);
    a folder holding 5.x's fused in-memory tensors loads as well."""
    hf = tiny_hf_mixtral()
    ours = from_hf_model(hf)
    save_pretrained(ours, tmp_path / "ours")
    reloaded_hf = transformers.MixtralForCausalLM.from_pretrained(tmp_path / "ours", attn_implementation="eager").eval()
    compare("mixtral (saved by llmcore)", reloaded_hf, ours)
    hf.save_pretrained(tmp_path / "theirs")
    compare("mixtral (saved by transformers)", hf, from_pretrained(tmp_path / "theirs"))
    fused = {name: tensor.contiguous() for name, tensor in hf.state_dict().items()}
    assert "model.layers.0.mlp.experts.gate_up_proj" in fused
    checkpoints.save_state_dict(tmp_path / "fused", fused)
    checkpoints.write_config(tmp_path / "fused", hf.config.to_dict())
    compare("mixtral (fused tensors on disk)", hf, from_pretrained(tmp_path / "fused"))


def test_config_round_trip_and_fused_shape_check():
    config = PRESETS["tiny-mixtral"].config
    back = config_from_hf(checkpoints.normalise_config({"model_type": "mixtral", **config_to_hf(config)}))
    assert back == config.replace(head_dim=config.resolved_head_dim)
    with pytest.raises(ValueError, match="ModelConfig.mlp_bias"):
        config_to_hf(config.replace(mlp_bias=True))
    with pytest.raises(ValueError, match="ModelConfig.layer_kinds"):
        config_to_hf(config.replace(sliding_window=4, layer_kinds=("full", "sliding")))
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.experts\.gate_up_proj"):
        mixtral_from_hf({"model.layers.0.mlp.experts.gate_up_proj": torch.zeros(4, 10, 64)}, config)


# Published totals (preset sources): 8x7B 46.7B (Mistral AI, Dec 2023; paper: "47B"),
# 8x22B 141B (Mistral AI, Apr 2024). Active: 12.9B and 39B per token, counted as the non-expert
# parameters plus top_k/E = 2/8 of the expert parameters.
@pytest.mark.parametrize(
    "name, total_digits, active_digits", [("mixtral-8x7b", 1, 1), ("mixtral-8x22b", 0, 0)]
)
def test_parameter_counts_match_the_published_figures(name, total_digits, active_digits):
    model = build(name, device="meta")
    total = sum(p.numel() for p in model.parameters())
    assert round(total / 1e9, total_digits) == PRESETS[name].published_parameters / 1e9
    assert round(active_parameters(model) / 1e9, active_digits) == PUBLISHED_ACTIVE_PARAMETERS[name] / 1e9
