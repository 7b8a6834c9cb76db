"""llmcore.rope against closed forms: rotary embeddings against an explicit 2×2 rotation of each pair (half-split
and interleaved layouts), the relative-distance property of the scores, partial rotary, the inverse-frequency
formula, linear/NTK/dynamic scalings written out, and Llama-3 scaling against transformers' rope utils.
"""
from __future__ import annotations

import math

import pytest
import torch

from llmcore.rope import RopeScaling, RotaryEmbedding, apply_rotary, rope_inverse_frequencies


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


@pytest.mark.parametrize("scaling", [None, RopeScaling("linear", 4.0), RopeScaling("ntk", 4.0)])
def test_angles_are_position_times_frequency_by_a_naive_loop(scaling):
    """RotaryEmbedding.angles against the definition m·θ_i, written out term by term in float64."""
    head_dim, base = 8, 10000.0
    positions = [0, 1, 7, 300]
    if scaling is not None and scaling.type == "ntk":
        base_used, divisor = base * 4.0 ** (head_dim / (head_dim - 2)), 1.0
    else:
        base_used, divisor = base, (4.0 if scaling is not None else 1.0)
    expected = torch.tensor([[m / divisor * base_used ** (-2 * i / head_dim) for i in range(head_dim // 2)]
                             for m in positions], dtype=torch.float64)
    got = RotaryEmbedding(head_dim, base, scaling=scaling).angles(torch.tensor([positions]))[0]
    torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)


def test_tables_are_cos_and_sin_of_the_angles_in_the_layout_order():
    rotary = RotaryEmbedding(6, interleaved=True)
    positions = torch.tensor([[2, 5]])
    angles = rotary.angles(positions)
    cos, sin = rotary(positions)
    torch.testing.assert_close(cos[..., 0::2], angles.cos())
    torch.testing.assert_close(sin[..., 1::2], angles.sin())
