"""llmcore.long_context (Qwen-1's dynamic NTK and LogN) and Qwen2's layer-wise windows against independent oracles:
the thresholds quoted for Qwen-7B (L₀ = 2048: α = 1 up to 2048, 3 from 2049, 7 from 4097), a doubling loop, the
closed-form property that NTK scaling slows the slowest rotary pair by exactly α, Qwen's own LogN table written as a
Python list (``modeling_qwen.py``: ``math.log(i, seq_length) if i > seq_length else 1``), and transformers'
``Qwen2Config.layer_types``."""

from __future__ import annotations

import math

import pytest
import torch

from llmcore.long_context import logn_scale, qwen_ntk_alpha, qwen_ntk_base
from llmcore.models.families.qwen import qwen2_layer_kinds
from llmcore.rope import RopeScaling, RotaryEmbedding, rope_inverse_frequencies


@pytest.mark.parametrize("length,alpha", [(1, 1), (1024, 1), (2048, 1), (2049, 3), (4096, 3), (4097, 7), (8192, 7),
                                          (8193, 15)])
def test_qwen_ntk_alpha_at_the_published_thresholds(length: int, alpha: int) -> None:
    assert qwen_ntk_alpha(length, 2048) == alpha


def _alpha_by_doubling(length: int, trained_length: int) -> int:
    """α = 2^k − 1 where k − 1 doublings of L₀ are needed to cover L (k = 1 up to L₀)."""
    alpha, covered = 1, trained_length
    while covered < length:
        covered, alpha = 2 * covered, 2 * alpha + 1
    return alpha


def test_qwen_ntk_alpha_equals_a_doubling_loop() -> None:
    for trained_length in (7, 32, 100, 2048):
        for length in range(1, 20 * trained_length, max(1, trained_length // 7)):
            assert qwen_ntk_alpha(length, trained_length) == _alpha_by_doubling(length, trained_length), (length,
                                                                                                         trained_length)


@pytest.mark.parametrize("head_dim", [8, 64, 128])
def test_qwen_ntk_base_slows_the_slowest_pair_by_exactly_alpha(head_dim: int) -> None:
    alpha, base = qwen_ntk_base(5000, 2048, head_dim, 10000.0)
    plain = rope_inverse_frequencies(head_dim, 10000.0).double()
    scaled = rope_inverse_frequencies(head_dim, base).double()
    assert alpha == 7
    assert scaled[0] == plain[0] == 1.0  # the fastest pair keeps its frequency
    assert float(plain[-1] / scaled[-1]) == pytest.approx(alpha, rel=1e-5)


def test_qwen_dynamic_rotary_uses_the_scaled_base_per_row() -> None:
    """RotaryEmbedding("qwen_dynamic") reads each row's length and rotates with qwen_ntk_base's frequencies."""
    rotary = RotaryEmbedding(16, 10000.0, scaling=RopeScaling("qwen_dynamic", 1.0, original_max_positions=32))
    positions = torch.stack([torch.arange(100), torch.arange(100).clamp(max=19)])  # lengths 100 and 20
    angles = rotary.angles(positions)
    _, base = qwen_ntk_base(100, 32, 16)
    torch.testing.assert_close(angles[0], torch.arange(100.0)[:, None] * rope_inverse_frequencies(16, base))
    torch.testing.assert_close(angles[1], positions[1].float()[:, None] * rope_inverse_frequencies(16, 10000.0))


@pytest.mark.parametrize("trained_length", [2, 6, 2048])
def test_logn_scale_equals_qwens_table(trained_length: int) -> None:
    length = 3 * trained_length + 5
    table = [math.log(i, trained_length) if i > trained_length else 1 for i in range(1, length + 1)]
    expected = torch.tensor(table, dtype=torch.float64)
    got = logn_scale(torch.arange(length), trained_length, torch.float64)
    assert got.dtype == torch.float64
    assert (got - expected).abs().max().item() <= 1e-12
    torch.testing.assert_close(logn_scale(torch.arange(length).view(1, -1), trained_length)[0], expected.float())


@pytest.mark.parametrize(("length", "trained_length"), [(0, 2048), (16, 0)])
def test_qwen_ntk_alpha_names_a_length_that_is_not_positive(length: int, trained_length: int) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        qwen_ntk_alpha(length, trained_length)


def test_logn_scale_refuses_a_trained_length_without_a_logarithm_base() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        logn_scale(torch.arange(4), 1)


@pytest.mark.parametrize("layers,max_window_layers,use", [(7, 2, True), (5, 0, True), (6, 6, True), (6, 2, False),
                                                          (28, 21, True)])
def test_qwen2_layer_kinds_follow_transformers_layer_types(layers: int, max_window_layers: int, use: bool) -> None:
    transformers = pytest.importorskip("transformers")
    hf = transformers.Qwen2Config(num_hidden_layers=layers, max_window_layers=max_window_layers,
                                  use_sliding_window=use, sliding_window=16)
    kinds, window = qwen2_layer_kinds({"num_hidden_layers": layers, "max_window_layers": max_window_layers,
                                       "use_sliding_window": use, "sliding_window": 16})
    ours = ["sliding_attention" if kinds and kind == "sliding" else "full_attention" for kind in kinds or [None] * layers]
    assert ours == list(hf.layer_types)
    assert window == hf.sliding_window


def test_qwen_alpha_stretches_between_one_and_a_half_and_four_times_the_length_ratio() -> None:
    """The notebook's claim: past L₀, Qwen's α is at least 1.5 and less than 4 times Hugging Face's ratio L/L₀."""
    trained_length = 64
    ratios = [qwen_ntk_alpha(length, trained_length) / (length / trained_length)
              for length in range(trained_length + 1, 40 * trained_length)]
    assert min(ratios) == pytest.approx(1.5) and max(ratios) < 4.0
