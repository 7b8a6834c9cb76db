"""Components of the model zoo against closed forms: RMSNorm, RoPE (layouts, partial, scalings), ALiBi, SwiGLU width."""

from __future__ import annotations

import math

import pytest
import torch

from llmcore.alibi import alibi_bias, alibi_slopes
from llmcore.ffn import GatedFeedForward, gated_hidden_size
from llmcore.norms import RMSNorm, rms_norm
from llmcore.rope import RopeScaling, RotaryEmbedding, apply_rotary, rope_inverse_frequencies


def test_rms_norm_matches_the_formula():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    weight = torch.randn(16, dtype=torch.float64)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * weight
    torch.testing.assert_close(rms_norm(x, weight, 1e-6), expected)
    torch.testing.assert_close(rms_norm(x, weight, 1e-6, unit_offset=True), expected / weight * (1 + weight))


def test_rms_norm_keeps_eps_inside_the_root_and_does_not_centre():
    x = torch.full((1, 4), 1e-3, dtype=torch.float64)
    out = rms_norm(x, None, eps=1e-6)
    assert out[0, 0].item() == pytest.approx(1e-3 / math.sqrt(1e-6 + 1e-6))


def test_rms_norm_half_precision_computes_in_float32():
    x = torch.randn(4, 64) * 300
    out = RMSNorm(64).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rms_norm(x, torch.ones(64)), atol=2e-2, rtol=1e-2)


def test_gemma_norm_is_identity_scaled_at_init():
    norm = RMSNorm(8, unit_offset=True)
    x = torch.randn(2, 8)
    torch.testing.assert_close(norm(x), rms_norm(x, None, norm.eps))


@pytest.mark.parametrize("d, expected", [(4096, 11008), (5120, 13824), (6656, 17920), (8192, 22016)])
def test_swiglu_width_rule_gives_llama_sizes(d, expected):
    assert gated_hidden_size(d) == expected


def test_llama3_width_uses_multiplier_and_multiple():
    assert gated_hidden_size(4096, multiple_of=1024, multiplier=1.3) == 14336
    assert gated_hidden_size(8192, multiple_of=4096, multiplier=1.3) == 28672


def test_gated_ffn_computes_silu_gate_times_up():
    ffn = GatedFeedForward(6, 10)
    x = torch.randn(2, 6)
    gate, up = x @ ffn.gate_proj.weight.T, x @ ffn.up_proj.weight.T
    expected = (gate * torch.sigmoid(gate) * up) @ ffn.down_proj.weight.T
    torch.testing.assert_close(ffn(x), expected)


def rotate_pairs_naively(x: torch.Tensor, position: int, base: float, pairs: list[tuple[int, int]]) -> torch.Tensor:
    """Rotate each (i, j) pair by position·θ_k with an explicit 2×2 matrix."""
    out = x.clone()
    for k, (i, j) in enumerate(pairs):
        angle = position * base ** (-2 * k / (2 * len(pairs)))
        c, s = math.cos(angle), math.sin(angle)
        out[..., i] = c * x[..., i] - s * x[..., j]
        out[..., j] = s * x[..., i] + c * x[..., j]
    return out


@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_rotates_the_right_pairs(interleaved):
    head_dim = 8
    pairs = [(2 * k, 2 * k + 1) for k in range(4)] if interleaved else [(k, k + 4) for k in range(4)]
    rope = RotaryEmbedding(head_dim, 100.0, interleaved=interleaved)
    x = torch.randn(1, 1, 5, head_dim, dtype=torch.float64)
    cos, sin = rope(torch.arange(5).unsqueeze(0), torch.float64)
    rotated = apply_rotary(x, cos, sin, interleaved=interleaved)
    for position in range(5):
        expected = rotate_pairs_naively(x[0, 0, position], position, 100.0, pairs)
        torch.testing.assert_close(rotated[0, 0, position], expected, atol=1e-6, rtol=1e-6)


def test_rope_scores_depend_only_on_relative_distance():
    rope = RotaryEmbedding(16)
    q, k = torch.randn(1, 1, 1, 16), torch.randn(1, 1, 1, 16)

    def score(m: int, n: int) -> float:
        cos_m, sin_m = rope(torch.tensor([[m]]))
        cos_n, sin_n = rope(torch.tensor([[n]]))
        return float((apply_rotary(q, cos_m, sin_m) * apply_rotary(k, cos_n, sin_n)).sum())

    assert score(3, 1) == pytest.approx(score(103, 101), abs=1e-4)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


def test_partial_rotary_leaves_the_tail_untouched():
    rope = RotaryEmbedding(4)
    x = torch.randn(2, 3, 6, 10)
    cos, sin = rope(torch.arange(6).expand(2, 6))
    out = apply_rotary(x, cos, sin)
    assert torch.equal(out[..., 4:], x[..., 4:])
    assert not torch.allclose(out[..., :4], x[..., :4])


def test_inverse_frequencies_are_float32_and_follow_the_formula():
    inv = rope_inverse_frequencies(8, 10000.0)
    assert inv.dtype == torch.float32
    torch.testing.assert_close(inv, torch.tensor([10000.0 ** (-i / 8) for i in (0, 2, 4, 6)]))


def test_linear_scaling_divides_positions():
    scaled = RotaryEmbedding(8, scaling=RopeScaling("linear", 4.0))
    plain = RotaryEmbedding(8)
    torch.testing.assert_close(scaled(torch.tensor([[8, 12]]))[0], plain(torch.tensor([[2, 3]]))[0])


def test_ntk_scaling_raises_the_base():
    inv = rope_inverse_frequencies(8, 10000.0, RopeScaling("ntk", 4.0))
    torch.testing.assert_close(inv, rope_inverse_frequencies(8, 10000.0 * 4.0 ** (8 / 6)))


def test_dynamic_scaling_only_acts_past_the_trained_length():
    dynamic = RotaryEmbedding(8, scaling=RopeScaling("dynamic", 2.0, original_max_positions=16))
    plain = RotaryEmbedding(8)
    short = torch.arange(16).unsqueeze(0)
    torch.testing.assert_close(dynamic(short)[0], plain(short)[0])
    long = torch.arange(32).unsqueeze(0)
    base = 10000.0 * (2.0 * 32 / 16 - 1.0) ** (8 / 6)
    expected = RotaryEmbedding(8, base)(long)[0]
    torch.testing.assert_close(dynamic(long)[0], expected)


def test_llama3_scaling_matches_transformers_rope_utils():
    transformers = pytest.importorskip("transformers")
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    parameters = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    config = transformers.LlamaConfig(hidden_size=2048, num_attention_heads=16, rope_parameters=parameters,
                                      max_position_embeddings=131072)
    expected, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    scaling = RopeScaling("llama3", 8.0, original_max_positions=8192, low_freq_factor=1.0, high_freq_factor=4.0)
    torch.testing.assert_close(rope_inverse_frequencies(128, 500000.0, scaling), expected)


def test_rope_scaling_validation_names_the_problem():
    with pytest.raises(ValueError, match="unknown RoPE scaling"):
        RopeScaling("yarn-ish", 2.0)
    with pytest.raises(ValueError, match="original_max_positions"):
        RopeScaling("dynamic", 2.0)
    with pytest.raises(ValueError, match="rotary_dim"):
        rope_inverse_frequencies(7)


def test_alibi_slopes_for_powers_of_two_are_geometric():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(h + 1) for h in range(8)]))
    torch.testing.assert_close(alibi_slopes(4), torch.tensor([2.0 ** (-2 * (h + 1)) for h in range(4)]))


def test_alibi_slopes_for_other_head_counts_interleave_the_next_power():
    # 12 heads: the 8 slopes of 8 heads, then slopes 1, 3, 5, 7 (0-based odd... i.e. every other) of 16 heads.
    sixteen = [2.0 ** (-0.5 * (h + 1)) for h in range(16)]
    expected = [2.0 ** -(h + 1) for h in range(8)] + sixteen[0::2][:4]
    torch.testing.assert_close(alibi_slopes(12), torch.tensor(expected))


def test_alibi_bias_is_minus_slope_times_distance():
    bias = alibi_bias(torch.tensor([0.5, 0.25]), 3, 5, q_offset=2)
    assert bias.shape == (1, 2, 3, 5)
    assert bias[0, 0, 2, 1].item() == pytest.approx(-0.5 * (4 - 1))
    assert bias[0, 1, 0, 2].item() == 0.0
