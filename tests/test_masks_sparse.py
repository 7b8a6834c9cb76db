"""llmcore.masks sparse patterns: Sparse Transformer strided/fixed, Phi-3-small block-sparse, GLM.

Expected matrices are typed out literally (1 = may attend, row = query, column = key). A naive
double loop written from each paper's set notation (not from the mask_mod's formula) checks many
parameter values, and the same mask_mods are run through ``torch.vmap`` and FlexAttention.
"""
import pytest
import torch

from llmcore.attention import scaled_dot_product_attention
from llmcore.masks import (
    block_sparse_mask,
    causal_mask,
    dense_mask,
    fixed_local_mask,
    fixed_mask,
    fixed_summary_mask,
    glm_blank_infilling_mask,
    or_masks,
    prefix_lm_mask,
    sliding_window_mask,
    strided_column_mask,
    strided_local_mask,
    strided_mask,
)


def as_bool(rows):
    return torch.tensor(rows, dtype=torch.bool)


def single(mask_mod, n, *, heads=1, q_offset=0, q_len=None):
    q_len = n if q_len is None else q_len
    return dense_mask(mask_mod, 1, heads, q_len, n, q_offset=q_offset)[0]


# --------------------------------------------------------------------------------------------------
# Literal matrices
# --------------------------------------------------------------------------------------------------


def test_strided_stride_3_on_8_positions():
    # Last 3 positions (band), plus keys 3, 6, ... back from the query.
    expected = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [1, 0, 0, 1, 1, 1, 1, 0],
        [0, 1, 0, 0, 1, 1, 1, 1],
    ])
    assert torch.equal(single(strided_mask(3), 8)[0], expected)


def test_strided_factor_heads_stride_3():
    local = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1, 1, 1],
    ])
    column = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [1, 0, 0, 1, 0, 0, 0, 0],
        [0, 1, 0, 0, 1, 0, 0, 0],
        [0, 0, 1, 0, 0, 1, 0, 0],
        [1, 0, 0, 1, 0, 0, 1, 0],
        [0, 1, 0, 0, 1, 0, 0, 1],
    ])
    assert torch.equal(single(strided_local_mask(3), 8)[0], local)
    assert torch.equal(single(strided_column_mask(3), 8)[0], column)


def test_fixed_block_4_summary_1_on_8_positions():
    expected = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 1, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 1, 1, 1, 1, 0],
        [0, 0, 0, 1, 1, 1, 1, 1],
    ])
    assert torch.equal(single(fixed_mask(4), 8)[0], expected)


def test_fixed_block_3_summary_2_on_8_positions():
    # Blocks {0,1,2} {3,4,5} {6,7}; summary keys: 1, 2, 4, 5, 7.
    expected = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0, 0, 0],
        [0, 1, 1, 1, 1, 1, 0, 0],
        [0, 1, 1, 0, 1, 1, 1, 0],
        [0, 1, 1, 0, 1, 1, 1, 1],
    ])
    assert torch.equal(single(fixed_mask(3, n_summary=2), 8)[0], expected)


def test_fixed_factor_heads_block_4():
    local = as_bool([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 1, 1],
    ])
    summary = as_bool([
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0, 0],
    ])
    assert torch.equal(single(fixed_local_mask(4), 6)[0], local)
    assert torch.equal(single(fixed_summary_mask(4, 1), 6)[0], summary)


def test_block_sparse_block_2_local_1_stride_2():
    # Blocks of 2; vertical blocks are kb with (kb + 1) % 2 == 0: blocks 1 and 3 (keys 2-3, 6-7).
    expected = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 1, 1, 0, 0, 1, 0],
        [0, 0, 1, 1, 0, 0, 1, 1],
    ])
    assert torch.equal(single(block_sparse_mask(2, 1, 2), 8)[0], expected)


def test_block_sparse_block_2_local_2_stride_3():
    # Local: own block and the one before. Vertical: block 2 (keys 4-5) for (2 + 1) % 3 == 0.
    expected = as_bool([
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 1, 0],
        [0, 0, 0, 0, 1, 1, 1, 1, 1, 1],
    ])
    assert torch.equal(single(block_sparse_mask(2, 2, 3), 10)[0], expected)


def test_block_sparse_heads_slide_their_vertical_blocks():
    # head 0: vertical block 1 (keys 2-3); head 1 (shift 1): vertical blocks kb with (kb + 2) % 2 == 0,
    # i.e. blocks 0 and 2 (keys 0-1 and 4-5).
    head_0 = as_bool([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1],
    ])
    head_1 = as_bool([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],
        [1, 1, 0, 0, 1, 1],
    ])
    keep = single(block_sparse_mask(2, 1, 2, head_sliding_step=1), 6, heads=2)
    assert torch.equal(keep[0], head_0)
    assert torch.equal(keep[1], head_1)


def test_glm_with_two_rows_of_different_part_a_lengths():
    keep = dense_mask(glm_blank_infilling_mask(torch.tensor([2, 4])), 2, 1, 6, 6)
    row_0 = as_bool([
        [1, 1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1],
    ])
    row_1 = as_bool([
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 1, 1, 1],
    ])
    assert torch.equal(keep[0, 0], row_0)
    assert torch.equal(keep[1, 0], row_1)


def test_glm_with_int_part_a_equals_prefix_lm():
    for part_a in (0, 1, 3, 7, 9):
        assert torch.equal(single(glm_blank_infilling_mask(part_a), 7), single(prefix_lm_mask(part_a), 7))


# --------------------------------------------------------------------------------------------------
# Naive oracles written from the papers' set notation
# --------------------------------------------------------------------------------------------------


def oracle(n, rule):
    return torch.tensor([[bool(rule(i, j)) for j in range(n)] for i in range(n)])


def sparse_transformer_strided(l):
    # A(1)_i = {max(0, i - l), ..., i} (l + 1 keys, as printed in the paper), A(2)_i = {j : (i - j) mod l = 0}.
    def rule(i, j):
        return j <= i and (max(0, i - l) <= j or (i - j) % l == 0)
    return rule


def sparse_transformer_fixed(l, c):
    # A(1)_i = {j : floor(j / l) = floor(i / l)}, A(2)_i = {j : j mod l in {l - c, ..., l}}, both causal.
    def rule(i, j):
        return j <= i and (j // l == i // l or j % l in range(l - c, l + 1))
    return rule


def phi3_block_sparse_kron(n, block_size, local_blocks, vertical_stride, shift=0):
    # As the released kernel builds it: block mask, Kronecker-expanded, times the token lower triangle.
    n_blocks = -(-n // block_size)
    block = torch.zeros(n_blocks, n_blocks, dtype=torch.int64)
    for qb in range(n_blocks):
        for kb in range(n_blocks):
            block[qb, kb] = qb >= kb and (qb - kb < local_blocks or (kb + shift + 1) % vertical_stride == 0)
    dense = torch.kron(block, torch.ones(block_size, block_size, dtype=torch.int64))[:n, :n]
    return (dense * torch.ones(n, n, dtype=torch.int64).tril()).bool()


@pytest.mark.parametrize("stride", [1, 2, 3, 4, 5, 8, 13])
def test_strided_matches_the_paper_sets(stride):
    n = 17
    assert torch.equal(single(strided_mask(stride), n)[0], oracle(n, sparse_transformer_strided(stride)))


@pytest.mark.parametrize("stride", [1, 2, 3, 5, 8])
def test_strided_is_the_union_of_its_factor_heads(stride):
    n = 15
    union = or_masks(strided_local_mask(stride), strided_column_mask(stride))
    assert torch.equal(single(strided_mask(stride), n), single(union, n))
    assert torch.equal(single(strided_local_mask(stride), n), single(sliding_window_mask(stride), n))


@pytest.mark.parametrize("block, n_summary", [(1, 1), (2, 1), (2, 2), (3, 1), (4, 1), (4, 3), (5, 2), (8, 8)])
def test_fixed_matches_the_paper_sets(block, n_summary):
    n = 19
    expected = oracle(n, sparse_transformer_fixed(block, n_summary))
    assert torch.equal(single(fixed_mask(block, n_summary), n)[0], expected)
    union = or_masks(fixed_local_mask(block), fixed_summary_mask(block, n_summary))
    assert torch.equal(single(fixed_mask(block, n_summary), n), single(union, n))


@pytest.mark.parametrize("block_size, local_blocks, vertical_stride", [
    (1, 1, 1), (1, 2, 3), (2, 1, 2), (2, 2, 3), (3, 1, 4), (3, 2, 2), (4, 3, 2), (5, 1, 3), (2, 20, 5),
])
def test_block_sparse_matches_the_kernel_construction(block_size, local_blocks, vertical_stride):
    n = 23  # not a multiple of any block size: the last block is partial
    expected = phi3_block_sparse_kron(n, block_size, local_blocks, vertical_stride)
    assert torch.equal(single(block_sparse_mask(block_size, local_blocks, vertical_stride), n)[0], expected)


@pytest.mark.parametrize("step", [1, 2, 3])
def test_block_sparse_per_head_shift_matches_the_kernel_construction(step):
    n, heads = 20, 4
    keep = single(block_sparse_mask(2, 2, 4, head_sliding_step=step), n, heads=heads)
    for h in range(heads):
        assert torch.equal(keep[h], phi3_block_sparse_kron(n, 2, 2, 4, shift=h * step))


@pytest.mark.parametrize("mask_mod, looks_ahead", [
    (strided_mask(3), False),
    (fixed_mask(4, 2), False),
    (block_sparse_mask(2, 1, 3), False),
    (glm_blank_infilling_mask(4), True),  # Part A is bidirectional
], ids=["strided", "fixed", "block_sparse", "glm"])
def test_sparse_masks_are_causal_and_never_hide_the_diagonal(mask_mod, looks_ahead):
    keep = single(mask_mod, 16)[0]
    assert keep.diagonal().all()
    assert bool(keep.triu(1).any()) == looks_ahead


def test_degenerate_parameters_give_the_causal_mask():
    n = 12
    causal = single(causal_mask, n)
    assert torch.equal(single(strided_mask(1), n), causal)
    assert torch.equal(single(strided_mask(n), n), causal)
    assert torch.equal(single(fixed_mask(5, 5), n), causal)
    assert torch.equal(single(block_sparse_mask(3, 1, 1), n), causal)
    assert torch.equal(single(block_sparse_mask(3, 4, 7), n), causal)
    assert torch.equal(single(glm_blank_infilling_mask(0), n), causal)


@pytest.mark.parametrize("mask_mod", [
    strided_mask(3), fixed_mask(4, 1), block_sparse_mask(2, 2, 3), glm_blank_infilling_mask(3),
], ids=["strided", "fixed", "block_sparse", "glm"])
def test_q_offset_gives_the_bottom_rows_of_the_full_mask(mask_mod):
    full = single(mask_mod, 11)
    assert torch.equal(single(mask_mod, 11, q_offset=7, q_len=4), full[:, 7:])


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("factory", [strided_mask, strided_local_mask, strided_column_mask])
@pytest.mark.parametrize("stride", [0, -2, 2.0, None, True])
def test_strided_rejects_non_positive_stride(factory, stride):
    with pytest.raises(ValueError, match="stride"):
        factory(stride)


@pytest.mark.parametrize("factory", [fixed_mask, fixed_local_mask, fixed_summary_mask])
@pytest.mark.parametrize("block", [0, -1, 3.0])
def test_fixed_rejects_non_positive_block(factory, block):
    with pytest.raises(ValueError, match="block"):
        factory(block)


@pytest.mark.parametrize("factory", [fixed_mask, fixed_summary_mask])
@pytest.mark.parametrize("n_summary", [0, -1, 5, 1.0])
def test_fixed_rejects_n_summary_outside_1_to_block(factory, n_summary):
    with pytest.raises(ValueError, match="n_summary"):
        factory(4, n_summary)


@pytest.mark.parametrize("field, args", [
    ("block_size", (0, 1, 1)),
    ("block_size", (-4, 1, 1)),
    ("local_blocks", (2, 0, 1)),
    ("local_blocks", (2, 1.5, 1)),
    ("vertical_stride", (2, 1, 0)),
    ("vertical_stride", (2, 1, -3)),
])
def test_block_sparse_rejects_non_positive_arguments_naming_them(field, args):
    with pytest.raises(ValueError, match=field):
        block_sparse_mask(*args)


@pytest.mark.parametrize("step", [-1, 0.5])
def test_block_sparse_rejects_bad_head_sliding_step(step):
    with pytest.raises(ValueError, match="head_sliding_step"):
        block_sparse_mask(2, 1, 2, head_sliding_step=step)


@pytest.mark.parametrize("part_a", [-1, 1.5, torch.tensor([2, -1]), torch.tensor([[1, 2]]), torch.tensor([1.0])])
def test_glm_rejects_bad_part_a_lengths(part_a):
    with pytest.raises(ValueError, match="part_a_length"):
        glm_blank_infilling_mask(part_a)


# --------------------------------------------------------------------------------------------------
# vmap and FlexAttention
# --------------------------------------------------------------------------------------------------

SPARSE_MASKS = {
    "strided": lambda: strided_mask(3),
    "strided_local": lambda: strided_local_mask(4),
    "strided_column": lambda: strided_column_mask(4),
    "fixed": lambda: fixed_mask(4, 1),
    "fixed_summary2": lambda: fixed_mask(5, 2),
    "fixed_local": lambda: fixed_local_mask(4),
    "block_sparse": lambda: block_sparse_mask(2, 2, 3),
    "block_sparse_heads": lambda: block_sparse_mask(2, 1, 4, head_sliding_step=2),
    "glm_per_row": lambda: glm_blank_infilling_mask(torch.tensor([3, 10])),
}


@pytest.mark.parametrize("name", sorted(SPARSE_MASKS))
def test_mask_mod_works_under_nested_vmap(name):
    # The same nesting as FlexAttention's create_block_mask: vmap over kv, then q, then h, then b.
    mask_mod = SPARSE_MASKS[name]()
    batch, heads, length = 2, 2, 12
    fn = mask_mod
    for in_dims in [(None, None, None, 0), (None, None, 0, None), (None, 0, None, None), (0, None, None, None)]:
        fn = torch.vmap(fn, in_dims=in_dims)
    b, h, pos = torch.arange(batch), torch.arange(heads), torch.arange(length)
    assert torch.equal(fn(b, h, pos, pos), dense_mask(mask_mod, batch, heads, length, length))


FLEX_B, FLEX_H, FLEX_L, FLEX_D = 2, 2, 16, 8


@pytest.mark.filterwarnings("ignore:flex_attention called without torch.compile")
@pytest.mark.parametrize("name", sorted(SPARSE_MASKS))
def test_mask_mod_works_in_flex_attention(name):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    mask_mod = SPARSE_MASKS[name]()
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(FLEX_B, FLEX_H, FLEX_L, FLEX_D, generator=generator) for _ in range(3))
    block_mask = flex.create_block_mask(mask_mod, FLEX_B, FLEX_H, FLEX_L, FLEX_L, device="cpu")
    expected = flex.flex_attention(q, k, v, block_mask=block_mask)
    actual = scaled_dot_product_attention(q, k, v, dense_mask(mask_mod, FLEX_B, FLEX_H, FLEX_L, FLEX_L))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=1e-5)
