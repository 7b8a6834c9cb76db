"""T5's relative position buckets and bias (llmcore.relative_position).

Oracles: an exact-integer implementation written from the description in the T5 paper (§2.1) and
Mesh TensorFlow's docstring, which compares powers instead of taking float logarithms, so bin edges
are decided exactly; and transformers' ``T5Attention._relative_position_bucket``.
"""

from __future__ import annotations

import pytest
import torch

from llmcore.models import ModelConfig
from llmcore.relative_position import RelativePositionBias, relative_position_bucket

SIZES = [(32, 128), (8, 12), (16, 64), (32, 20), (64, 1000), (48, 100)]


def naive_bucket(offset: int, *, bidirectional: bool, num_buckets: int, max_distance: int) -> int:
    """Bucket of ``offset = key − query`` from the paper's description, in exact integer arithmetic.

    Each direction owns ``n`` buckets (all of them when unidirectional, half when bidirectional, the
    upper half for keys after the query). Distances ``0 … n/2 − 1`` get a bucket each; beyond, bucket
    ``n/2 + k`` starts at distance ``n/2 · (max_distance / (n/2))^(k / (n/2))`` - logarithmically
    spaced edges reaching ``max_distance`` at ``k = n/2`` - and everything past the last edge shares
    bucket ``n − 1``. ``d ≥ e·(M/e)^(k/m)`` is tested as ``d^m · e^k ≥ M^k · e^m`` (integers).
    """
    n, base = (num_buckets // 2, num_buckets // 2 if offset > 0 else 0) if bidirectional else (num_buckets, 0)
    distance = abs(offset) if bidirectional else max(-offset, 0)
    exact = n // 2
    if distance < exact:
        return base + distance
    m = n - exact
    k = max(k for k in range(m + 1) if distance**m * exact**k >= max_distance**k * exact**m)
    return base + min(exact + k, n - 1)


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets, max_distance", SIZES)
def test_buckets_match_the_exact_description(bidirectional, num_buckets, max_distance):
    offsets = torch.arange(-3 * max_distance, 3 * max_distance + 1)
    ours = relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    expected = [naive_bucket(int(o), bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance) for o in offsets]
    assert ours.tolist() == expected


@pytest.mark.parametrize("bidirectional", [True, False], ids=["encoder", "decoder"])
@pytest.mark.parametrize("num_buckets, max_distance", SIZES)
def test_buckets_match_transformers(bidirectional, num_buckets, max_distance):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    offsets = torch.arange(-5000, 5001)
    expected = t5.T5Attention._relative_position_bucket(
        offsets, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance
    )
    ours = relative_position_bucket(offsets, bidirectional=bidirectional, num_buckets=num_buckets, max_distance=max_distance)
    assert torch.equal(ours, expected)


def test_t5_buckets_by_hand():
    encoder = lambda o: int(relative_position_bucket(torch.tensor(o), bidirectional=True))  # noqa: E731
    decoder = lambda o: int(relative_position_bucket(torch.tensor(o), bidirectional=False))  # noqa: E731
    # Encoder: 16 buckets per direction, 8 exact; keys after the query use buckets 16…31.
    assert [encoder(o) for o in (0, -1, -7, 1, 7)] == [0, 1, 7, 17, 23]
    assert [encoder(o) for o in (-8, -11, -12, -16, -127, -128, -10**6)] == [8, 8, 9, 10, 15, 15, 15]
    assert encoder(10**6) == 31
    # Decoder: 32 buckets, 16 exact, future keys share bucket 0.
    assert [decoder(o) for o in (5, 0, -15, -16, -127, -128, -10**6)] == [0, 0, 15, 16, 31, 31, 31]


def test_buckets_grow_with_distance_and_stay_in_range():
    distances = torch.arange(0, 2000)
    for bidirectional in (True, False):
        buckets = relative_position_bucket(-distances, bidirectional=bidirectional)
        assert torch.all(buckets[1:] >= buckets[:-1])
        assert int(buckets.min()) == 0 and int(buckets.max()) == (15 if bidirectional else 31)


def test_bias_is_the_table_looked_up_per_offset():
    """Per-element loop: bias[0, h, q, k] = table[bucket(k − q), h]."""
    torch.manual_seed(0)
    for bidirectional in (True, False):
        module = RelativePositionBias(3, bidirectional=bidirectional, num_buckets=8, max_distance=12)
        nn_table = module.relative_attention_bias.weight
        bias = module(5, 7)
        assert bias.shape == (1, 3, 5, 7)
        for h in range(3):
            for q in range(5):
                for k in range(7):
                    bucket = naive_bucket(k - q, bidirectional=bidirectional, num_buckets=8, max_distance=12)
                    assert bias[0, h, q, k] == nn_table[bucket, h]


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="relative_position must be integers"):
        relative_position_bucket(torch.zeros(3), bidirectional=True)
    with pytest.raises(ValueError, match="num_buckets=2"):
        relative_position_bucket(torch.zeros(3, dtype=torch.long), bidirectional=True, num_buckets=2)
    with pytest.raises(ValueError, match="max_distance=8"):
        RelativePositionBias(4, bidirectional=False, num_buckets=32, max_distance=8)
    with pytest.raises(ValueError, match="ModelConfig.relative_buckets"):
        ModelConfig(vocab_size=8, hidden_size=8, n_layers=1, n_heads=2, intermediate_size=8,
                    position="relative_buckets", relative_buckets=32, relative_max_distance=16)
