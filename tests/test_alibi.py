"""llmcore.alibi against closed forms: ALiBi head slopes (geometric for powers of two, interleaved from the next
power otherwise) written out per head, and the bias −slope · distance checked element by element.
"""
from __future__ import annotations

import pytest
import torch

from llmcore.alibi import alibi_bias, alibi_slopes


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
