"""llmcore.alibi against published numbers and transformers' BLOOM: the slopes quoted in the ALiBi paper's
code and the course notes (8, 12 and 40 heads), and the bias, which must give BLOOM's attention weights.

BLOOM's ``build_alibi_tensor`` writes ``slope · kv`` (key positions only) where llmcore writes
``−slope · (q − kv)``; the two differ by ``slope · q``, a constant per query row, so after the causal mask
the softmax of both must agree exactly.
"""
from __future__ import annotations

import math

import pytest
import torch

from llmcore.alibi import alibi_bias, alibi_slopes

transformers = pytest.importorskip("transformers")
from transformers.models.bloom.modeling_bloom import build_alibi_tensor  # noqa: E402


def test_published_slopes():
    # 8 heads: 1/2 … 1/256 (Press et al., 2022, §3); 12 heads end 0.354, 0.177, 0.088; Baichuan 2-13B's 40 start 0.8409.
    assert alibi_slopes(8).tolist() == [2.0 ** -h for h in range(1, 9)]
    assert [round(s, 3) for s in alibi_slopes(12)[-3:].tolist()] == [0.354, 0.177, 0.088]
    assert alibi_slopes(40)[0].item() == pytest.approx(2 ** -0.25, abs=1e-7)
    assert round(alibi_slopes(40)[0].item(), 4) == 0.8409


@pytest.mark.parametrize("n_heads", [3, 12, 40, 112])
def test_bias_gives_bloom_attention_weights(n_heads):
    length = 9
    torch.manual_seed(n_heads)
    scores = torch.randn(n_heads, length, length, dtype=torch.float64)
    bloom = build_alibi_tensor(torch.ones(1, length), n_heads, torch.float64).view(n_heads, 1, length)
    ours = alibi_bias(alibi_slopes(n_heads).double(), length, length)[0]
    future = torch.ones(length, length, dtype=torch.bool).triu(1)
    expected = (scores + bloom).masked_fill(future, -math.inf).softmax(-1)
    actual = (scores + ours).masked_fill(future, -math.inf).softmax(-1)
    # BLOOM's slopes are computed in float32 too, so the two agree to float32's rounding of the slopes.
    torch.testing.assert_close(actual, expected, atol=1e-7, rtol=1e-6)


def test_bias_against_a_loop_with_a_query_offset_in_float64():
    slopes = torch.tensor([0.75, 0.1, 2.0 ** -0.5], dtype=torch.float64)
    bias = alibi_bias(slopes, 3, 7, q_offset=4)
    assert bias.dtype == torch.float64
    for h in range(3):
        for q in range(3):
            for kv in range(7):
                assert bias[0, h, q, kv].item() == -slopes[h].item() * (q + 4 - kv)
    assert alibi_bias(slopes.float(), 3, 7).dtype == torch.float32
