"""llmcore.masks: every mask_mod against hand-written boolean matrices and per-element rules.

Expected matrices are written out literally (1 = may attend, row = query, column = key) so that a
wrong convention (off-by-one window, transposed causal mask, True = masked) fails visibly.
"""
import pytest
import torch

from llmcore.attention import scaled_dot_product_attention
from llmcore.masks import (
    and_masks,
    causal_mask,
    dense_mask,
    full_mask,
    not_mask,
    or_masks,
    padding_mask,
    prefix_lm_mask,
    sliding_window_mask,
)


def as_bool(rows):
    return torch.tensor(rows, dtype=torch.bool)


def first_key_only(b, h, q_idx, kv_idx):
    """An 'attention sink' column, written here so the combinators are tested with a foreign mask_mod."""
    return kv_idx == 0


# --------------------------------------------------------------------------------------------------
# Single masks against literal matrices
# --------------------------------------------------------------------------------------------------


def test_full_mask_keeps_everything():
    assert torch.equal(dense_mask(full_mask, 1, 1, 2, 3)[0, 0], as_bool([[1, 1, 1], [1, 1, 1]]))


def test_causal_mask_is_lower_triangular_including_the_diagonal():
    expected = as_bool([
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 1],
    ])
    assert torch.equal(dense_mask(causal_mask, 1, 1, 4, 4)[0, 0], expected)


def test_causal_mask_with_q_offset_aligns_bottom_right():
    # The last 2 of 4 positions are queries (decoding with a cache of 2 earlier keys).
    expected = as_bool([
        [1, 1, 1, 0],
        [1, 1, 1, 1],
    ])
    assert torch.equal(dense_mask(causal_mask, 1, 1, 2, 4, q_offset=2)[0, 0], expected)


def test_causal_mask_without_offset_is_top_left_aligned_for_short_queries():
    expected = as_bool([
        [1, 0, 0, 0],
        [1, 1, 0, 0],
    ])
    assert torch.equal(dense_mask(causal_mask, 1, 1, 2, 4)[0, 0], expected)


def test_sliding_window_of_two_sees_itself_and_one_key_before():
    expected = as_bool([
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ])
    assert torch.equal(dense_mask(sliding_window_mask(2), 1, 1, 5, 5)[0, 0], expected)


def test_sliding_window_of_three_sees_exactly_three_keys():
    keep = dense_mask(sliding_window_mask(3), 1, 1, 6, 6)[0, 0]
    expected = as_bool([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 1],
    ])
    assert torch.equal(keep, expected)
    assert keep.sum(dim=-1).tolist() == [1, 2, 3, 3, 3, 3]


def test_sliding_window_of_one_is_the_identity():
    assert torch.equal(dense_mask(sliding_window_mask(1), 1, 1, 4, 4)[0, 0], torch.eye(4, dtype=torch.bool))


def test_sliding_window_wider_than_the_sequence_is_causal():
    expected = torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(dense_mask(sliding_window_mask(10), 1, 1, 4, 4)[0, 0], expected)


def test_sliding_window_with_q_offset():
    expected = as_bool([
        [0, 0, 1, 1, 0],
        [0, 0, 0, 1, 1],
    ])
    assert torch.equal(dense_mask(sliding_window_mask(2), 1, 1, 2, 5, q_offset=3)[0, 0], expected)


def test_prefix_lm_with_int_prefix_is_bidirectional_inside_the_prefix():
    expected = as_bool([
        [1, 1, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 1],
    ])
    assert torch.equal(dense_mask(prefix_lm_mask(2), 1, 1, 4, 4)[0, 0], expected)


def test_prefix_lm_with_zero_prefix_is_causal():
    assert torch.equal(dense_mask(prefix_lm_mask(0), 1, 1, 3, 3)[0, 0], torch.ones(3, 3, dtype=torch.bool).tril())


def test_prefix_lm_with_per_row_prefixes():
    keep = dense_mask(prefix_lm_mask(torch.tensor([0, 3])), 2, 1, 4, 4)
    row_0 = as_bool([
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 1],
    ])
    row_1 = as_bool([
        [1, 1, 1, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 0],
        [1, 1, 1, 1],
    ])
    assert keep.shape == (2, 1, 4, 4)
    assert torch.equal(keep[0, 0], row_0)
    assert torch.equal(keep[1, 0], row_1)


def test_padding_mask_from_booleans_hides_padded_keys_of_each_row():
    key_keep = as_bool([[1, 1, 0], [1, 0, 0]])
    keep = dense_mask(padding_mask(key_keep), 2, 1, 2, 3)
    assert keep.shape == (2, 1, 2, 3)
    assert torch.equal(keep[0, 0], as_bool([[1, 1, 0], [1, 1, 0]]))
    assert torch.equal(keep[1, 0], as_bool([[1, 0, 0], [1, 0, 0]]))


def test_padding_mask_from_lengths_keeps_the_first_length_keys():
    keep = dense_mask(padding_mask(torch.tensor([2, 1, 3])), 3, 1, 1, 3)
    assert torch.equal(keep[:, 0, 0], as_bool([[1, 1, 0], [1, 0, 0], [1, 1, 1]]))


def test_padding_mask_with_non_contiguous_keep_pattern():
    # Left padding: the boolean form must not assume real tokens come first.
    keep = dense_mask(padding_mask(as_bool([[0, 0, 1, 1]])), 1, 1, 1, 4)
    assert torch.equal(keep[0, 0, 0], as_bool([0, 0, 1, 1]))


# --------------------------------------------------------------------------------------------------
# Combinators
# --------------------------------------------------------------------------------------------------


def test_and_masks_causal_with_padding():
    keep = dense_mask(and_masks(causal_mask, padding_mask(torch.tensor([3, 2]))), 2, 1, 3, 3)
    assert torch.equal(keep[0, 0], as_bool([[1, 0, 0], [1, 1, 0], [1, 1, 1]]))
    assert torch.equal(keep[1, 0], as_bool([[1, 0, 0], [1, 1, 0], [1, 1, 0]]))


def test_or_masks_window_with_sink_column():
    expected = as_bool([
        [1, 0, 0, 0],
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [1, 0, 0, 1],
    ])
    assert torch.equal(dense_mask(or_masks(sliding_window_mask(1), first_key_only), 1, 1, 4, 4)[0, 0], expected)


def test_not_mask_of_causal_is_strictly_upper_triangular():
    expected = as_bool([
        [0, 1, 1],
        [0, 0, 1],
        [0, 0, 0],
    ])
    assert torch.equal(dense_mask(not_mask(causal_mask), 1, 1, 3, 3)[0, 0], expected)


def test_three_way_and_is_the_intersection():
    combined = and_masks(causal_mask, sliding_window_mask(3), not_mask(first_key_only))
    expected = as_bool([
        [0, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 1, 1, 0],
        [0, 1, 1, 1],
    ])
    assert torch.equal(dense_mask(combined, 1, 1, 4, 4)[0, 0], expected)


def test_combinators_of_one_mask_return_that_mask():
    expected = torch.ones(3, 3, dtype=torch.bool).tril()
    assert torch.equal(dense_mask(and_masks(causal_mask), 1, 1, 3, 3)[0, 0], expected)
    assert torch.equal(dense_mask(or_masks(causal_mask), 1, 1, 3, 3)[0, 0], expected)


@pytest.mark.parametrize("combinator", [and_masks, or_masks])
def test_combinators_need_at_least_one_mask(combinator):
    with pytest.raises(ValueError):
        combinator()


# --------------------------------------------------------------------------------------------------
# Per-element rules on larger sizes (the definition, evaluated in plain Python)
# --------------------------------------------------------------------------------------------------

RULES = {
    "causal": (lambda: causal_mask, lambda b, q, kv: kv <= q),
    "window3": (lambda: sliding_window_mask(3), lambda b, q, kv: 0 <= q - kv < 3),
    "prefix2": (lambda: prefix_lm_mask(2), lambda b, q, kv: kv < 2 or kv <= q),
    "lengths": (lambda: padding_mask(torch.tensor([5, 1, 7])), lambda b, q, kv: kv < [5, 1, 7][b]),
}


@pytest.mark.parametrize("rule", sorted(RULES))
@pytest.mark.parametrize("q_len, kv_len, q_offset", [(7, 7, 0), (3, 7, 4), (5, 2, 0), (1, 7, 6)])
def test_dense_mask_matches_the_rule_element_by_element(rule, q_len, kv_len, q_offset):
    make_mask_mod, rule_fn = RULES[rule]
    batch = 3
    keep = dense_mask(make_mask_mod(), batch, 2, q_len, kv_len, q_offset=q_offset)
    assert keep.shape == (batch, 2, q_len, kv_len)
    for b in range(batch):
        for h in range(2):
            for i in range(q_len):
                for j in range(kv_len):
                    assert bool(keep[b, h, i, j]) == rule_fn(b, i + q_offset, j), (b, h, i, j)


# --------------------------------------------------------------------------------------------------
# dense_mask: shapes, broadcasting, head and batch indices, errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, heads", [(1, 1), (3, 1), (1, 4), (2, 5)])
def test_dense_mask_returns_the_requested_shape(batch, heads):
    keep = dense_mask(causal_mask, batch, heads, 3, 4)
    assert keep.shape == (batch, heads, 3, 4)
    assert keep.dtype == torch.bool
    assert torch.equal(keep, torch.ones(3, 4, dtype=torch.bool).tril().expand(batch, heads, 3, 4))


def test_dense_mask_with_singleton_batch_and_heads_broadcasts_against_scores():
    scores = torch.zeros(2, 4, 3, 3)
    masked = scores.masked_fill(~dense_mask(causal_mask, 1, 1, 3, 3), float("-inf"))
    assert masked.shape == (2, 4, 3, 3)
    assert torch.isinf(masked[1, 3, 0, 1]) and masked[1, 3, 1, 0] == 0


def test_dense_mask_passes_head_and_batch_indices():
    def head_one_sees_all_row_one_sees_nothing(b, h, q_idx, kv_idx):
        return ((kv_idx <= q_idx) | (h == 1)) & (b != 1)

    keep = dense_mask(head_one_sees_all_row_one_sees_nothing, 2, 2, 3, 3)
    assert torch.equal(keep[0, 0], torch.ones(3, 3, dtype=torch.bool).tril())
    assert torch.equal(keep[0, 1], torch.ones(3, 3, dtype=torch.bool))
    assert not keep[1].any()


def test_dense_mask_with_empty_query_length():
    assert dense_mask(causal_mask, 2, 1, 0, 4).shape == (2, 1, 0, 4)


@pytest.mark.parametrize("field, sizes", [
    ("batch_size", (-1, 1, 2, 2)),
    ("n_heads", (1, -1, 2, 2)),
    ("q_len", (1, 1, -2, 2)),
    ("kv_len", (1, 1, 2, -3)),
])
def test_dense_mask_rejects_negative_sizes_naming_the_argument(field, sizes):
    with pytest.raises(ValueError, match=field):
        dense_mask(causal_mask, *sizes)


def test_dense_mask_rejects_a_non_boolean_mask_mod():
    with pytest.raises(TypeError, match="boolean"):
        dense_mask(lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx).float(), 1, 1, 2, 2)


# --------------------------------------------------------------------------------------------------
# Constructor errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("window", [0, -1, 2.0, None])
def test_sliding_window_rejects_non_positive_int(window):
    with pytest.raises(ValueError, match="window"):
        sliding_window_mask(window)


@pytest.mark.parametrize("prefix", [-1, 1.5, torch.tensor([2, -1]), torch.tensor([[1, 2]]), torch.tensor([1.0])])
def test_prefix_lm_rejects_bad_prefix_lengths(prefix):
    with pytest.raises(ValueError, match="prefix_length"):
        prefix_lm_mask(prefix)


@pytest.mark.parametrize("key_keep", [
    torch.tensor([True, False]),          # boolean but 1-D
    torch.ones(2, 3, 4, dtype=torch.bool),  # boolean but 3-D
    torch.tensor([2.0, 3.0]),             # float lengths
    torch.tensor([[2, 3]]),               # 2-D integer
])
def test_padding_mask_rejects_bad_shapes_and_dtypes(key_keep):
    with pytest.raises(ValueError, match="key_keep"):
        padding_mask(key_keep)


# --------------------------------------------------------------------------------------------------
# The same mask_mods drive PyTorch FlexAttention unchanged
# --------------------------------------------------------------------------------------------------

FLEX_B, FLEX_H, FLEX_L, FLEX_D = 2, 2, 16, 8
FLEX_MASKS = {
    "causal": lambda: causal_mask,
    "window4": lambda: sliding_window_mask(4),
    "prefix_per_row": lambda: prefix_lm_mask(torch.tensor([3, 9])),
    "causal_and_lengths": lambda: and_masks(causal_mask, padding_mask(torch.tensor([16, 5]))),
    "bool_padding": lambda: padding_mask(torch.arange(FLEX_L).expand(FLEX_B, FLEX_L) < torch.tensor([[11], [16]])),
}


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("name", sorted(FLEX_MASKS))
def test_mask_mod_works_in_flex_attention(name):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    mask_mod = FLEX_MASKS[name]()
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(FLEX_B, FLEX_H, FLEX_L, FLEX_D, generator=generator) for _ in range(3))
    block_mask = flex.create_block_mask(mask_mod, FLEX_B, FLEX_H, FLEX_L, FLEX_L, device="cpu")
    expected = flex.flex_attention(q, k, v, block_mask=block_mask)
    actual = scaled_dot_product_attention(q, k, v, dense_mask(mask_mod, FLEX_B, FLEX_H, FLEX_L, FLEX_L))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
