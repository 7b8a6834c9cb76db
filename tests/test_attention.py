"""llmcore.attention against a per-element Python loop, torch SDPA and torch.nn.MultiheadAttention.

Conventions to keep in mind: llmcore masks use True = may attend (like SDPA's boolean attn_mask);
nn.MultiheadAttention's boolean attn_mask and key_padding_mask use True = masked.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore.attention import (
    MultiHeadAttention,
    merge_heads,
    record_attention,
    repeat_kv,
    scaled_dot_product_attention,
    split_heads,
)

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_keep(*shape, seed=0, p_keep=0.6):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) < p_keep


def naive_attention(query, key, value, keep=None, bias=None, scale=None):
    """softmax(q·k·scale + bias) · v, one query/key pair at a time in plain Python floats.

    Masked keys are skipped; a query with no visible key returns zeros and zero weights.
    Returns float64 (output [..., L, Dv], weights [..., L, S]).
    """
    *batch_shape, q_len, head_dim = query.shape
    k_len, v_dim = key.shape[-2], value.shape[-1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    lead = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    q = query.expand(*lead, q_len, head_dim).reshape(-1, q_len, head_dim).tolist()
    k = key.expand(*lead, k_len, head_dim).reshape(-1, k_len, head_dim).tolist()
    v = value.expand(*lead, k_len, v_dim).reshape(-1, k_len, v_dim).tolist()
    full = (*lead, q_len, k_len)
    keep = torch.ones(full, dtype=torch.bool) if keep is None else torch.broadcast_to(keep, full)
    bias = torch.zeros(full) if bias is None else torch.broadcast_to(bias, full)
    keep, bias = keep.reshape(-1, q_len, k_len).tolist(), bias.reshape(-1, q_len, k_len).tolist()
    outputs, weights = [], []
    for n in range(len(q)):
        for i in range(q_len):
            scores = {}
            for j in range(k_len):
                if keep[n][i][j]:
                    scores[j] = sum(q[n][i][d] * k[n][j][d] for d in range(head_dim)) * scale + bias[n][i][j]
            row = [0.0] * k_len
            if scores:
                top = max(scores.values())
                exps = {j: math.exp(s - top) for j, s in scores.items()}
                total = sum(exps.values())
                for j, e in exps.items():
                    row[j] = e / total
            weights.append(row)
            outputs.append([sum(row[j] * v[n][j][d] for j in range(k_len)) for d in range(v_dim)])
    out = torch.tensor(outputs, dtype=torch.float64).reshape(*lead, q_len, v_dim)
    return out, torch.tensor(weights, dtype=torch.float64).reshape(*lead, q_len, k_len)


# (query shape, key length, value dim): batch-free, 3-D, 4-D, L != S both ways, single key.
SHAPES = [
    ((5, 4), 5, 4),
    ((2, 3, 8), 6, 8),
    ((2, 3, 4, 8), 4, 8),
    ((1, 2, 3, 4), 7, 5),
    ((2, 1, 6, 16), 2, 16),
    ((1, 1, 1, 2), 1, 3),
]


def qkv(q_shape, k_len, v_dim, dtype, seed=0):
    lead, head_dim = q_shape[:-2], q_shape[-1]
    return (
        randn(*q_shape, dtype=dtype, seed=seed),
        randn(*lead, k_len, head_dim, dtype=dtype, seed=seed + 1),
        randn(*lead, k_len, v_dim, dtype=dtype, seed=seed + 2),
    )


# --------------------------------------------------------------------------------------------------
# scaled_dot_product_attention against the per-element loop
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_shape, k_len, v_dim", SHAPES)
@pytest.mark.parametrize("mask_kind", ["none", "random", "causal"])
def test_sdpa_matches_naive_loop(q_shape, k_len, v_dim, dtype, mask_kind):
    q, k, v = qkv(q_shape, k_len, v_dim, dtype)
    q_len = q_shape[-2]
    keep = {
        "none": None,
        "random": random_keep(*q_shape[:-1], k_len, seed=3),  # may contain fully masked rows
        "causal": torch.ones(q_len, k_len, dtype=torch.bool).tril(),
    }[mask_kind]
    expected_out, expected_w = naive_attention(q, k, v, keep)
    out, weights = scaled_dot_product_attention(q, k, v, keep, return_weights=True)
    assert out.dtype == dtype and weights.dtype == dtype
    torch.testing.assert_close(out, expected_out.to(dtype), **TOLERANCE[dtype])
    torch.testing.assert_close(weights, expected_w.to(dtype), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_bias_and_mask_and_custom_scale_match_naive_loop(dtype):
    q, k, v = qkv((2, 2, 3, 4), 5, 4, dtype)
    bias = randn(1, 2, 3, 5, dtype=dtype, seed=7)
    keep = random_keep(2, 1, 3, 5, seed=8)
    expected_out, expected_w = naive_attention(q, k, v, keep, bias, scale=0.3)
    out, weights = scaled_dot_product_attention(q, k, v, keep, bias, scale=0.3, return_weights=True)
    torch.testing.assert_close(out, expected_out.to(dtype), **TOLERANCE[dtype])
    torch.testing.assert_close(weights, expected_w.to(dtype), **TOLERANCE[dtype])


def test_sdpa_hand_computed_two_keys():
    # One query, two keys: scores 1·1/√1 = 1 and 1·0 = 0 -> weights e/(e+1), 1/(e+1).
    q = torch.tensor([[1.0]], dtype=torch.float64)
    k = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    v = torch.tensor([[10.0], [20.0]], dtype=torch.float64)
    out, weights = scaled_dot_product_attention(q, k, v, return_weights=True)
    w0 = math.e / (math.e + 1)
    assert weights[0].tolist() == pytest.approx([w0, 1 - w0], abs=1e-15)
    assert out.item() == pytest.approx(10 * w0 + 20 * (1 - w0), abs=1e-12)


# --------------------------------------------------------------------------------------------------
# scaled_dot_product_attention against torch's SDPA
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_shape, k_len, v_dim", SHAPES)
def test_sdpa_matches_torch_with_boolean_mask(q_shape, k_len, v_dim, dtype):
    q, k, v = qkv(q_shape, k_len, v_dim, dtype, seed=10)
    keep = random_keep(*q_shape[:-1], k_len, seed=11)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, keep), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("q_shape, k_len, v_dim", SHAPES)
def test_sdpa_float_bias_matches_torch_additive_attn_mask(q_shape, k_len, v_dim, dtype):
    q, k, v = qkv(q_shape, k_len, v_dim, dtype, seed=20)
    bias = 3 * randn(*q_shape[:-1], k_len, dtype=dtype, seed=21)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, bias=bias), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sdpa_causal_and_scale_match_torch(dtype):
    q, k, v = qkv((2, 4, 6, 8), 6, 8, dtype, seed=30)
    keep = torch.ones(6, 6, dtype=torch.bool).tril()
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.5)
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, keep, scale=0.5), expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_fully_masked_rows_give_zero_output_like_torch_cpu(dtype):
    q, k, v = qkv((2, 2, 4, 8), 5, 8, dtype, seed=40)
    keep = random_keep(2, 2, 4, 5, seed=41)
    keep[0, 1, 2] = False
    keep[1, :, 0] = False
    out, weights = scaled_dot_product_attention(q, k, v, keep, return_weights=True)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 1, 2], torch.zeros(8, dtype=dtype))
    assert torch.equal(out[1, :, 0], torch.zeros(2, 8, dtype=dtype))
    assert torch.equal(weights[0, 1, 2], torch.zeros(5, dtype=dtype))
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_rows_sum_to_one_or_zero_and_masked_entries_are_exactly_zero(dtype):
    q, k, v = qkv((3, 2, 5, 4), 6, 4, dtype, seed=50)
    keep = random_keep(3, 2, 5, 6, seed=51, p_keep=0.4)
    out, weights = scaled_dot_product_attention(q, k, v, keep, return_weights=True)
    expected_sums = keep.any(dim=-1).to(dtype)
    assert (expected_sums == 0).any(), "the random mask should contain at least one fully masked row"
    torch.testing.assert_close(weights.sum(dim=-1), expected_sums, **TOLERANCE[dtype])
    assert (weights[~keep] == 0).all()
    assert (weights >= 0).all()
    torch.testing.assert_close(out, weights @ v, **TOLERANCE[dtype])


def test_return_weights_false_returns_only_the_output():
    q, k, v = qkv((1, 1, 3, 4), 3, 4, torch.float32)
    out = scaled_dot_product_attention(q, k, v)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1, 3, 4)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_match_torch_and_are_finite_for_fully_masked_rows(dtype):
    q, k, v = (t.requires_grad_() for t in qkv((2, 2, 4, 8), 5, 8, dtype, seed=60))
    keep = random_keep(2, 2, 4, 5, seed=61)
    keep[:, :, 0] = True  # every row has a visible key for the torch comparison
    upstream = randn(2, 2, 4, 8, dtype=dtype, seed=62)
    ours = torch.autograd.grad((scaled_dot_product_attention(q, k, v, keep) * upstream).sum(), (q, k, v))
    theirs = torch.autograd.grad((F.scaled_dot_product_attention(q, k, v, attn_mask=keep) * upstream).sum(), (q, k, v))
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, **TOLERANCE[dtype])

    keep[1, 0, 3] = False  # a fully masked query row
    grads = torch.autograd.grad((scaled_dot_product_attention(q, k, v, keep) * upstream).sum(), (q, k, v))
    assert all(torch.isfinite(g).all() for g in grads)
    assert torch.equal(grads[0][1, 0, 3], torch.zeros(8, dtype=dtype))


def test_gradcheck_with_mask_and_bias_in_float64():
    q, k, v = (t.requires_grad_() for t in qkv((1, 2, 3, 4), 4, 3, torch.float64, seed=70))
    keep = random_keep(1, 2, 3, 4, seed=71)
    keep[0, 0, 1] = False
    bias = randn(1, 2, 3, 4, dtype=torch.float64, seed=72).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: scaled_dot_product_attention(*a[:3], keep, a[3]), (q, k, v, bias))


def test_dropout_zeroes_weights_and_rescales_the_rest():
    q, k, v = qkv((2, 2, 6, 4), 6, 4, torch.float64, seed=80)
    _, plain = naive_attention(q, k, v)
    torch.manual_seed(0)
    out, dropped = scaled_dot_product_attention(q, k, v, dropout_p=0.5, return_weights=True)
    zeroed = dropped == 0
    assert 0 < zeroed.float().mean() < 1
    torch.testing.assert_close(dropped[~zeroed], 2 * plain[~zeroed], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(out, dropped @ v, atol=1e-12, rtol=1e-12)


def test_sdpa_input_errors():
    q, k, v = qkv((1, 3, 4), 5, 4, torch.float32)
    with pytest.raises(ValueError, match="head dims"):
        scaled_dot_product_attention(q, k[..., :3], v)
    with pytest.raises(ValueError, match="lengths"):
        scaled_dot_product_attention(q, k, v[:, :4])
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 5))


# --------------------------------------------------------------------------------------------------
# Head bookkeeping
# --------------------------------------------------------------------------------------------------


def test_split_heads_takes_consecutive_blocks_of_the_last_dim():
    x = torch.arange(2 * 3 * 12).reshape(2, 3, 12)
    heads = split_heads(x, 4)
    assert heads.shape == (2, 4, 3, 3)
    for b in range(2):
        for h in range(4):
            for pos in range(3):
                assert heads[b, h, pos].tolist() == x[b, pos, 3 * h : 3 * h + 3].tolist()


def test_merge_heads_inverts_split_heads():
    x = randn(2, 5, 12)
    assert torch.equal(merge_heads(split_heads(x, 3)), x)


def test_split_heads_rejects_indivisible_width():
    with pytest.raises(ValueError, match="n_heads=5"):
        split_heads(torch.zeros(1, 2, 12), 5)


def test_repeat_kv_serves_consecutive_query_heads_from_one_kv_head():
    x = randn(2, 3, 4, 5)
    repeated = repeat_kv(x, 2)
    assert repeated.shape == (2, 6, 4, 5)
    for h in range(6):
        assert torch.equal(repeated[:, h], x[:, h // 2])
    assert torch.equal(repeat_kv(x, 1), x)


# --------------------------------------------------------------------------------------------------
# MultiHeadAttention against torch.nn.MultiheadAttention
# --------------------------------------------------------------------------------------------------


def paired_mha(d_model, n_heads, dtype, bias=True, seed=0):
    torch.manual_seed(seed)
    ours = MultiHeadAttention(d_model, n_heads, bias=bias).to(dtype)
    theirs = nn.MultiheadAttention(d_model, n_heads, dropout=0.0, bias=bias, batch_first=True).to(dtype)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        theirs.out_proj.weight.copy_(ours.o_proj.weight)
        if bias:
            theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
            theirs.out_proj.bias.copy_(ours.o_proj.bias)
    return ours.eval(), theirs.eval()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d_model, n_heads, batch, length", [(16, 4, 2, 5), (12, 3, 3, 1), (8, 1, 1, 4)])
def test_mha_self_attention_matches_torch(d_model, n_heads, batch, length, dtype):
    ours, theirs = paired_mha(d_model, n_heads, dtype)
    x = randn(batch, length, d_model, dtype=dtype, seed=1)
    out, weights = ours(x, return_weights=True)
    expected, expected_weights = theirs(x, x, x, need_weights=True, average_attn_weights=True)
    assert weights.shape == (batch, n_heads, length, length)
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    torch.testing.assert_close(weights.mean(dim=1), expected_weights, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mha_causal_and_key_padding_masks_match_torch(dtype):
    ours, theirs = paired_mha(16, 4, dtype, seed=1)
    batch, length = 3, 6
    x = randn(batch, length, 16, dtype=dtype, seed=2)
    lengths = torch.tensor([6, 4, 1])
    key_keep = torch.arange(length) < lengths[:, None]             # [B, S], True = real token
    causal_keep = torch.ones(length, length, dtype=torch.bool).tril()
    keep = causal_keep & key_keep[:, None, None, :]                 # [B, 1, L, S]
    out, weights = ours(x, mask=keep, return_weights=True)
    expected, expected_weights = theirs(
        x, x, x, attn_mask=~causal_keep, key_padding_mask=~key_keep, need_weights=True, average_attn_weights=True
    )
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    torch.testing.assert_close(weights.mean(dim=1), expected_weights, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_mha_cross_attention_with_key_padding_matches_torch(dtype, bias):
    ours, theirs = paired_mha(16, 2, dtype, bias=bias, seed=3)
    x = randn(2, 3, 16, dtype=dtype, seed=4)
    memory = randn(2, 7, 16, dtype=dtype, seed=5)
    key_keep = torch.tensor([[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    out, weights = ours(x, memory, mask=key_keep[:, None, None, :], return_weights=True)
    expected, expected_weights = theirs(x, memory, memory, key_padding_mask=~key_keep, need_weights=True)
    assert weights.shape == (2, 2, 3, 7)
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])
    torch.testing.assert_close(weights.mean(dim=1), expected_weights, **TOLERANCE[dtype])


def test_mha_without_bias_has_no_bias_parameters():
    mha = MultiHeadAttention(8, 2, bias=False)
    assert all(proj.bias is None for proj in (mha.q_proj, mha.k_proj, mha.v_proj, mha.o_proj))
    assert sum(p.numel() for p in mha.parameters()) == 4 * 8 * 8


def test_mha_additive_bias_matches_sdpa_float_mask():
    mha = MultiHeadAttention(8, 2).eval()
    x = randn(2, 4, 8, seed=6)
    bias = randn(1, 2, 4, 4, seed=7)
    q = mha.q_proj(x).view(2, 4, 2, 4).transpose(1, 2)
    k = mha.k_proj(x).view(2, 4, 2, 4).transpose(1, 2)
    v = mha.v_proj(x).view(2, 4, 2, 4).transpose(1, 2)
    expected = mha.o_proj(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(2, 4, 8))
    torch.testing.assert_close(mha(x, bias=bias), expected, atol=1e-6, rtol=1e-5)


def test_mha_explicit_head_dim_allows_indivisible_width():
    mha = MultiHeadAttention(30, 4, head_dim=8)
    assert mha.q_proj.weight.shape == (32, 30) and mha.o_proj.weight.shape == (30, 32)
    assert mha(randn(2, 3, 30)).shape == (2, 3, 30)


# --------------------------------------------------------------------------------------------------
# Grouped-query attention
# --------------------------------------------------------------------------------------------------


def gqa_reference(mha, x, keep, n_heads, n_kv_heads):
    batch, length, _ = x.shape
    head_dim = mha.head_dim
    q = F.linear(x, mha.q_proj.weight, mha.q_proj.bias).view(batch, length, n_heads, head_dim).transpose(1, 2)
    k = F.linear(x, mha.k_proj.weight, mha.k_proj.bias).view(batch, length, n_kv_heads, head_dim).transpose(1, 2)
    v = F.linear(x, mha.v_proj.weight, mha.v_proj.bias).view(batch, length, n_kv_heads, head_dim).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=keep, enable_gqa=True)
    return F.linear(out.transpose(1, 2).reshape(batch, length, n_heads * head_dim), mha.o_proj.weight, mha.o_proj.bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_heads, n_kv_heads", [(8, 2), (8, 1), (4, 4), (6, 3)])
def test_gqa_matches_torch_sdpa_enable_gqa(n_heads, n_kv_heads, dtype):
    torch.manual_seed(0)
    mha = MultiHeadAttention(24, n_heads, n_kv_heads).to(dtype).eval()
    head_dim = 24 // n_heads
    assert mha.k_proj.weight.shape == (n_kv_heads * head_dim, 24)
    assert mha.v_proj.weight.shape == (n_kv_heads * head_dim, 24)
    x = randn(2, 5, 24, dtype=dtype, seed=1)
    keep = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(mha(x, mask=keep), gqa_reference(mha, x, keep, n_heads, n_kv_heads), **TOLERANCE[dtype])


@pytest.mark.parametrize("n_heads, n_kv_heads", [(8, 2), (4, 1)])
def test_gqa_equals_torch_mha_with_kv_weights_repeated_per_group(n_heads, n_kv_heads):
    d_model, n_rep = 16, n_heads // n_kv_heads
    head_dim = d_model // n_heads
    torch.manual_seed(2)
    gqa = MultiHeadAttention(d_model, n_heads, n_kv_heads).double().eval()
    full = nn.MultiheadAttention(d_model, n_heads, batch_first=True).double().eval()

    def expand(t):  # [H_kv * D, ...] -> [H * D, ...], kv head j serving query heads j*n_rep .. j*n_rep + n_rep - 1
        return t.reshape(n_kv_heads, head_dim, *t.shape[1:]).repeat_interleave(n_rep, dim=0).reshape(-1, *t.shape[1:])

    with torch.no_grad():
        full.in_proj_weight.copy_(torch.cat([gqa.q_proj.weight, expand(gqa.k_proj.weight), expand(gqa.v_proj.weight)]))
        full.in_proj_bias.copy_(torch.cat([gqa.q_proj.bias, expand(gqa.k_proj.bias), expand(gqa.v_proj.bias)]))
        full.out_proj.weight.copy_(gqa.o_proj.weight)
        full.out_proj.bias.copy_(gqa.o_proj.bias)
    x = randn(2, 4, d_model, dtype=torch.float64, seed=3)
    out, weights = gqa(x, return_weights=True)
    expected, expected_weights = full(x, x, x, average_attn_weights=False)
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(weights, expected_weights, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kwargs, field", [
    (dict(d_model=16, n_heads=4, n_kv_heads=3), "n_kv_heads"),
    (dict(d_model=16, n_heads=4, n_kv_heads=0), "n_kv_heads"),
    (dict(d_model=16, n_heads=0), "n_heads"),
    (dict(d_model=16, n_heads=-2), "n_heads"),
    (dict(d_model=18, n_heads=4), "d_model"),
])
def test_invalid_attention_configs_raise_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MultiHeadAttention(**kwargs)


# --------------------------------------------------------------------------------------------------
# record_attention
# --------------------------------------------------------------------------------------------------


class TwoAttentions(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = MultiHeadAttention(8, 2)
        self.inner = nn.ModuleDict({"second": MultiHeadAttention(8, 4)})

    def forward(self, x, memory):
        return self.inner["second"](self.first(x), memory)


def test_record_attention_collects_every_call_by_module_name():
    torch.manual_seed(0)
    model = TwoAttentions().eval()
    x, memory = randn(2, 3, 8, seed=1), randn(2, 5, 8, seed=2)
    with torch.no_grad(), record_attention(model) as maps:
        model(x, memory)
        model(x, memory)
    assert set(maps) == {"first", "inner.second"}
    assert [w.shape for w in maps["first"]] == [(2, 2, 3, 3)] * 2
    assert [w.shape for w in maps["inner.second"]] == [(2, 4, 3, 5)] * 2
    # The recorded map of the first module is softmax(q kᵀ / √D) computed here from its projections.
    q = model.first.q_proj(x).view(2, 3, 2, 4).transpose(1, 2)
    k = model.first.k_proj(x).view(2, 3, 2, 4).transpose(1, 2)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1)
    torch.testing.assert_close(maps["first"][0], expected.detach(), atol=1e-6, rtol=1e-5)


def test_record_attention_stops_recording_after_the_context():
    model = TwoAttentions()
    x, memory = randn(1, 2, 8), randn(1, 2, 8)
    with record_attention(model) as maps:
        model(x, memory)
    model(x, memory)
    assert len(maps["first"]) == 1 and len(maps["inner.second"]) == 1
    assert model.first.weight_sink is None and model.inner["second"].weight_sink is None


def test_record_attention_detaches_the_weights():
    model = TwoAttentions()
    with record_attention(model) as maps:
        model(randn(1, 2, 8), randn(1, 2, 8))
    assert not maps["first"][0].requires_grad


@pytest.mark.parametrize("n_rep", [1, 3, 4])
def test_repeat_kv_matches_transformers_llama_repeat_kv(n_rep):
    """Oracle: transformers' LLaMA repeat_kv (expand + reshape), the layout of the released checkpoints."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    x = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(n_rep))
    assert torch.equal(repeat_kv(x, n_rep), llama.repeat_kv(x, n_rep))
