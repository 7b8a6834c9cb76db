"""llmcore's RoPE scaling against Hugging Face's `modeling_rope_utils.ROPE_INIT_FUNCTIONS` (transformers 5.x).

Each HF init function returns ``(inv_freq, attention_factor)`` for a config; llmcore's frequencies are
read back from :meth:`llmcore.rope.RotaryEmbedding.angles` at position 1 (angle = 1 · θ_i), which is
where a model would use them, so position interpolation and the dynamic length rule are covered too.
Pinned numbers are re-derived from the papers' formulas (see each test).
"""

from __future__ import annotations

import math

import pytest
import torch

from llmcore.rope import RopeScaling, RotaryEmbedding, yarn_attention_factor

transformers = pytest.importorskip("transformers")
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402

HEAD_DIM = 128


def _hf(rope_type: str, *, theta: float, max_positions: int, seq_len: int | None = None,
        **parameters: float) -> tuple[torch.Tensor, float]:
    config = transformers.LlamaConfig(
        hidden_size=HEAD_DIM * 4, num_attention_heads=4, max_position_embeddings=max_positions,
        rope_parameters={"rope_type": rope_type, "rope_theta": theta, **parameters},
    )
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len)


def _frequencies_at(rotary: RotaryEmbedding, length: int) -> torch.Tensor:
    """θ_i as the module applies them to a sequence of ``length`` tokens (the angle of position 1)."""
    positions = torch.tensor([[0, 1, length - 1]])
    return rotary.angles(positions)[0, 1]


def _assert_close_and_measure(got: torch.Tensor, expected: torch.Tensor) -> None:
    absolute = (got - expected).abs().max().item()
    relative = ((got - expected).abs() / expected.abs()).max().item()
    assert relative < 1e-6, f"largest absolute error {absolute:.3g}, relative {relative:.3g}"


@pytest.mark.parametrize("factor", [2.0, 4.0, 8.0])
def test_linear_interpolation_matches_transformers(factor):
    expected, attention_factor = _hf("linear", theta=10000.0, max_positions=2048, factor=factor)
    got = _frequencies_at(RotaryEmbedding(HEAD_DIM, 10000.0, scaling=RopeScaling("linear", factor)), 4096)
    _assert_close_and_measure(got, expected)
    assert attention_factor == 1.0


@pytest.mark.parametrize("length", [1024, 4096, 4097, 8192, 16384])
def test_dynamic_ntk_matches_transformers_at_the_current_length(length):
    expected, _ = _hf("dynamic", theta=10000.0, max_positions=4096, seq_len=length, factor=2.0)
    rotary = RotaryEmbedding(HEAD_DIM, 10000.0, scaling=RopeScaling("dynamic", 2.0, original_max_positions=4096))
    _assert_close_and_measure(_frequencies_at(rotary, length), expected)


def test_dynamic_ntk_base_for_twice_the_trained_length():
    """base·(f·L/M − (f − 1))^(d/(d−2)) = 10⁴ · 3^(128/126) ≈ 30,527.7 for f = 2, L = 8192, M = 4096, d = 128."""
    rotary = RotaryEmbedding(HEAD_DIM, 10000.0, scaling=RopeScaling("dynamic", 2.0, original_max_positions=4096))
    theta_1 = _frequencies_at(rotary, 8192)[1].double()  # base^(-2/128)
    assert theta_1.pow(-HEAD_DIM / 2).item() == pytest.approx(30527.7, rel=2e-5)


@pytest.mark.parametrize("factor,theta,trained", [(2.0, 10000.0, 4096), (4.0, 10000.0, 2048), (16.0, 500000.0, 8192)])
def test_yarn_matches_transformers(factor, theta, trained):
    expected, expected_attention = _hf("yarn", theta=theta, max_positions=int(trained * factor), factor=factor,
                                       original_max_position_embeddings=trained)
    rotary = RotaryEmbedding(HEAD_DIM, theta, scaling=RopeScaling("yarn", factor, original_max_positions=trained))
    _assert_close_and_measure(_frequencies_at(rotary, 2 * trained), expected)
    assert rotary.attention_factor == pytest.approx(expected_attention, rel=1e-12)


def test_yarn_attention_factor_and_ramp_pinned():
    """YaRN eq. 22: 0.1·ln 2 + 1 = 1.0693; ramp over pairs 20…46 for d = 128, base 10⁴, L₀ = 4096 (β = 32, 1)."""
    assert yarn_attention_factor(2.0) == pytest.approx(1.0693, abs=5e-5)
    assert yarn_attention_factor(1.0) == 1.0
    rotary = RotaryEmbedding(HEAD_DIM, 10000.0, scaling=RopeScaling("yarn", 2.0, original_max_positions=4096))
    plain = 10000.0 ** (-torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
    ratio = plain / _frequencies_at(rotary, 8192).double()  # 1 = kept, 2 = interpolated
    kept = torch.isclose(ratio, torch.tensor(1.0, dtype=torch.float64), rtol=1e-6)
    interpolated = torch.isclose(ratio, torch.tensor(2.0, dtype=torch.float64), rtol=1e-6)
    assert kept.nonzero().max().item() == 20 and interpolated.nonzero().min().item() == 46
    # cos and sin carry the attention factor, so a rotated vector's length grows by it
    cos, sin = rotary(torch.tensor([[5]]))
    assert math.isclose(float(cos[0, 0, 0] ** 2 + sin[0, 0, 0] ** 2), 1.0693**2, rel_tol=1e-4)


def test_llama3_matches_transformers():
    expected, attention_factor = _hf("llama3", theta=500000.0, max_positions=131072, factor=8.0,
                                     low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
    scaling = RopeScaling("llama3", 8.0, original_max_positions=8192, low_freq_factor=1.0, high_freq_factor=4.0)
    _assert_close_and_measure(_frequencies_at(RotaryEmbedding(HEAD_DIM, 500000.0, scaling=scaling), 8192), expected)
    assert attention_factor == 1.0
