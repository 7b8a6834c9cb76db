"""llmcore positions, norms, feed-forward, embeddings and encoder/decoder blocks against independent oracles:
closed forms written per element, torch.nn.functional, and torch's own Transformer layers with copied weights.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore.blocks import DecoderBlock, EncoderBlock, residual
from llmcore.embeddings import TokenEmbedding
from llmcore.ffn import FeedForward, get_activation
from llmcore.norms import LayerNorm, layer_norm
from llmcore.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding, sinusoidal_position_encoding

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def closed_form_sinusoid(n_positions, d_model, base=10000.0):
    """PE[pos, 2i] = sin(pos / base^(2i/d)), PE[pos, 2i+1] = cos(pos / base^(2i/d)), one element at a time."""
    rows = []
    for pos in range(n_positions):
        row = []
        for i in range(d_model // 2):
            angle = pos / base ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64).reshape(n_positions, d_model)


# --------------------------------------------------------------------------------------------------
# Sinusoidal positions
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_positions, d_model", [(1, 2), (7, 4), (50, 16), (3, 64), (0, 8)])
def test_sinusoid_matches_closed_form_in_float64(n_positions, d_model):
    encoding = sinusoidal_position_encoding(n_positions, d_model, dtype=torch.float64)
    assert encoding.dtype == torch.float64
    torch.testing.assert_close(encoding, closed_form_sinusoid(n_positions, d_model), atol=1e-12, rtol=0)


def test_sinusoid_default_dtype_is_float32_and_matches_closed_form():
    encoding = sinusoidal_position_encoding(20, 12)
    assert encoding.dtype == torch.float32
    torch.testing.assert_close(encoding, closed_form_sinusoid(20, 12).float(), atol=1e-6, rtol=0)


def test_sinusoid_first_values_written_out():
    encoding = sinusoidal_position_encoding(2, 4, dtype=torch.float64)
    # pos 0: sin 0, cos 0 on every pair; pos 1: angles 1 and 1/100 (10000^(2/4) = 100).
    expected = [[0.0, 1.0, 0.0, 1.0], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)]]
    assert encoding.tolist() == [pytest.approx(row, abs=1e-15) for row in expected]


def test_sinusoid_large_positions_stay_accurate_in_float32():
    # Angles computed in float32 would be off by ~1e-3 at position 20000.
    encoding = sinusoidal_position_encoding(20001, 8)
    torch.testing.assert_close(encoding[20000], closed_form_sinusoid(20001, 8)[20000].float(), atol=1e-6, rtol=0)


def test_sinusoid_custom_base():
    encoding = sinusoidal_position_encoding(5, 6, base=100.0, dtype=torch.float64)
    torch.testing.assert_close(encoding, closed_form_sinusoid(5, 6, base=100.0), atol=1e-12, rtol=0)


@pytest.mark.parametrize("offset", [1, 3, 17])
def test_sinusoid_shift_by_k_is_a_fixed_rotation(offset):
    d_model = 8
    encoding = sinusoidal_position_encoding(40, d_model, dtype=torch.float64)
    # Block-diagonal rotation built from the frequencies only: [sin(a+b), cos(a+b)] = R(b) [sin a, cos a].
    rotation = torch.zeros(d_model, d_model, dtype=torch.float64)
    for i in range(d_model // 2):
        b = offset / 10000 ** (2 * i / d_model)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor(
            [[math.cos(b), math.sin(b)], [-math.sin(b), math.cos(b)]], dtype=torch.float64
        )
    shifted = encoding[:-offset] @ rotation.T
    torch.testing.assert_close(shifted, encoding[offset:], atol=1e-12, rtol=0)


def test_sinusoid_rejects_odd_width_and_negative_positions():
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_position_encoding(4, 5)
    with pytest.raises(ValueError, match="n_positions"):
        sinusoidal_position_encoding(-1, 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 3])
def test_sinusoidal_module_adds_the_closed_form(dtype, offset):
    module = SinusoidalPositionalEncoding(16, 8).to(dtype)
    x = randn(2, 5, 8, dtype=dtype)
    expected = x + closed_form_sinusoid(16, 8)[offset : offset + 5].to(dtype)
    out = module(x, offset=offset)
    assert out.dtype == dtype
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


def test_sinusoidal_module_in_float64_is_exact_even_after_double():
    x = torch.zeros(1, 300, 16, dtype=torch.float64)
    out = SinusoidalPositionalEncoding(300, 16).double()(x)
    torch.testing.assert_close(out[0], closed_form_sinusoid(300, 16), atol=1e-13, rtol=0)


def test_sinusoidal_module_has_no_parameters_and_no_state():
    module = SinusoidalPositionalEncoding(10, 4)
    assert list(module.parameters()) == []
    assert module.state_dict() == {}


def test_sinusoidal_module_rejects_sequences_past_max_positions():
    module = SinusoidalPositionalEncoding(6, 4)
    module(torch.zeros(1, 6, 4))  # exactly max_positions is fine
    module(torch.zeros(1, 2, 4), offset=4)
    with pytest.raises(ValueError, match="max_positions=6"):
        module(torch.zeros(1, 7, 4))
    with pytest.raises(ValueError, match="max_positions=6"):
        module(torch.zeros(1, 3, 4), offset=4)


def test_learned_positions_add_table_rows_from_offset():
    module = LearnedPositionalEmbedding(10, 4)
    assert module.weight.shape == (10, 4)
    x = randn(2, 3, 4)
    torch.testing.assert_close(module(x, offset=2), x + module.weight.detach()[2:5])
    with pytest.raises(ValueError, match="max_positions=10"):
        module(randn(1, 4, 4), offset=7)


# --------------------------------------------------------------------------------------------------
# LayerNorm
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 8), (5, 16), (1, 1, 1, 4), (7,)])
@pytest.mark.parametrize("eps", [1e-5, 1e-12, 0.5])
def test_layer_norm_matches_torch(shape, dtype, eps):
    x = 3 * randn(*shape, dtype=dtype) + 1
    weight = randn(shape[-1], dtype=dtype, seed=1)
    bias = randn(shape[-1], dtype=dtype, seed=2)
    expected = F.layer_norm(x, (shape[-1],), weight, bias, eps)
    torch.testing.assert_close(layer_norm(x, weight, bias, eps), expected, **TOLERANCE[dtype])
    torch.testing.assert_close(layer_norm(x, None, None, eps), F.layer_norm(x, (shape[-1],), eps=eps), **TOLERANCE[dtype])


def test_layer_norm_uses_biased_variance_with_eps_inside_the_root():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    # mean 2.5, biased variance ((1.5² + 0.5²) · 2) / 4 = 1.25 (the unbiased one would be 5/3).
    for eps in (0.0, 0.75):
        expected = [(v - 2.5) / math.sqrt(1.25 + eps) for v in (1.0, 2.0, 3.0, 4.0)]
        assert layer_norm(x, None, None, eps).tolist() == pytest.approx(expected, abs=1e-14)


def test_layer_norm_eps_matters_for_small_variance():
    x = 1e-3 * randn(4, 8, dtype=torch.float64)
    large = layer_norm(x, None, None, eps=1.0)
    torch.testing.assert_close(large, F.layer_norm(x, (8,), eps=1.0), atol=1e-12, rtol=1e-12)
    assert not torch.allclose(large, F.layer_norm(x, (8,), eps=1e-5))


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_norm_module_matches_torch_module(dtype):
    torch.manual_seed(0)
    ours = LayerNorm(6, eps=1e-3).to(dtype)
    theirs = nn.LayerNorm(6, eps=1e-3).to(dtype)
    assert torch.equal(ours.weight, theirs.weight) and torch.equal(ours.bias, theirs.bias)  # ones and zeros
    with torch.no_grad():
        ours.weight.normal_()
        ours.bias.normal_()
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
    x = randn(3, 4, 6, dtype=dtype)
    torch.testing.assert_close(ours(x), theirs(x), **TOLERANCE[dtype])


def test_layer_norm_module_without_bias():
    norm = LayerNorm(4, bias=False)
    assert norm.bias is None and [p.shape for p in norm.parameters()] == [(4,)]
    x = randn(2, 4)
    torch.testing.assert_close(norm(x), F.layer_norm(x, (4,)))


def test_layer_norm_gradcheck_float64():
    x = randn(3, 5, dtype=torch.float64).requires_grad_()
    weight = randn(5, dtype=torch.float64, seed=1).requires_grad_()
    bias = randn(5, dtype=torch.float64, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: layer_norm(*a, eps=1e-5), (x, weight, bias))


def test_layer_norm_gradients_match_torch():
    x = randn(3, 5, dtype=torch.float64).requires_grad_()
    weight = randn(5, dtype=torch.float64, seed=1).requires_grad_()
    bias = randn(5, dtype=torch.float64, seed=2).requires_grad_()
    upstream = randn(3, 5, dtype=torch.float64, seed=3)
    ours = torch.autograd.grad((layer_norm(x, weight, bias) * upstream).sum(), (x, weight, bias))
    theirs = torch.autograd.grad((F.layer_norm(x, (5,), weight, bias) * upstream).sum(), (x, weight, bias))
    for mine, reference in zip(ours, theirs):
        torch.testing.assert_close(mine, reference, atol=1e-10, rtol=1e-10)


# --------------------------------------------------------------------------------------------------
# Feed-forward
# --------------------------------------------------------------------------------------------------

EXPLICIT_ACTIVATIONS = {
    "relu": lambda h: torch.where(h > 0, h, torch.zeros_like(h)),
    "gelu": lambda h: 0.5 * h * (1 + torch.erf(h / math.sqrt(2))),
    "gelu_tanh": lambda h: 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3))),
    "silu": lambda h: h / (1 + torch.exp(-h)),
}


@pytest.mark.parametrize("activation", sorted(EXPLICIT_ACTIVATIONS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_feed_forward_matches_explicit_formula(activation, dtype):
    torch.manual_seed(0)
    ffn = FeedForward(6, 10, activation=activation).to(dtype)
    x = randn(2, 3, 6, dtype=dtype)
    w1, b1 = ffn.up_proj.weight.detach(), ffn.up_proj.bias.detach()
    w2, b2 = ffn.down_proj.weight.detach(), ffn.down_proj.bias.detach()
    expected = EXPLICIT_ACTIVATIONS[activation](x @ w1.T + b1) @ w2.T + b2
    torch.testing.assert_close(ffn(x), expected, **TOLERANCE[dtype])


def test_feed_forward_shapes_and_no_bias():
    ffn = FeedForward(4, 16, bias=False)
    assert ffn.up_proj.weight.shape == (16, 4) and ffn.down_proj.weight.shape == (4, 16)
    assert ffn.up_proj.bias is None and ffn.down_proj.bias is None
    x = randn(5, 4)
    torch.testing.assert_close(ffn(x), torch.relu(x @ ffn.up_proj.weight.T) @ ffn.down_proj.weight.T)


def test_unknown_activation_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"'swish'.*relu"):
        FeedForward(4, 8, activation="swish")
    with pytest.raises(ValueError, match="unknown activation"):
        get_activation("tanh")


# --------------------------------------------------------------------------------------------------
# Token embedding
# --------------------------------------------------------------------------------------------------


def test_token_embedding_scales_rows_by_sqrt_d_model():
    embed = TokenEmbedding(10, 16)
    ids = torch.tensor([[3, 0, 9], [1, 1, 2]])
    table = embed.weight.detach()
    expected = torch.stack([torch.stack([table[i] * 4.0 for i in row]) for row in ids.tolist()])
    torch.testing.assert_close(embed(ids), expected)


def test_token_embedding_without_scale():
    embed = TokenEmbedding(5, 9, scale=False)
    torch.testing.assert_close(embed(torch.tensor([[4]])), embed.weight.detach()[4].view(1, 1, 9))


def test_token_embedding_padding_row_starts_at_zero_and_gets_no_gradient():
    embed = TokenEmbedding(6, 4, padding_idx=0)
    assert torch.equal(embed.weight[0], torch.zeros(4))
    embed(torch.tensor([[0, 2, 0]])).sum().backward()
    assert torch.equal(embed.weight.grad[0], torch.zeros(4))
    assert torch.equal(embed.weight.grad[2], torch.full((4,), 2.0))  # d(x·√4)/dx = 2


def test_token_embedding_initial_std_is_d_model_to_the_minus_half():
    torch.manual_seed(0)
    embed = TokenEmbedding(2000, 64)
    assert embed.weight.std().item() == pytest.approx(64**-0.5, rel=0.05)


def test_token_embedding_rejects_float_ids():
    with pytest.raises(TypeError, match="integers"):
        TokenEmbedding(5, 4)(torch.zeros(1, 2))


# --------------------------------------------------------------------------------------------------
# Blocks
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first, expected", [(False, (1 + 2) + 10), (True, 1 + 2 * (1 + 10))])
def test_residual_post_norm_and_pre_norm_order(norm_first, expected):
    out = residual(torch.tensor([1.0]), lambda h: 2 * h, lambda h: h + 10, nn.Identity(), norm_first)
    assert out.item() == expected


def copy_attention(theirs: nn.MultiheadAttention, ours) -> None:
    theirs.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
    theirs.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
    theirs.out_proj.weight.copy_(ours.o_proj.weight)
    theirs.out_proj.bias.copy_(ours.o_proj.bias)


def copy_linear_and_norm(theirs_linear, ours_linear, theirs_norm=None, ours_norm=None):
    theirs_linear.weight.copy_(ours_linear.weight)
    theirs_linear.bias.copy_(ours_linear.bias)
    if theirs_norm is not None:
        theirs_norm.weight.copy_(ours_norm.weight)
        theirs_norm.bias.copy_(ours_norm.bias)


def randomise_norms(module):
    # LayerNorms start at ones/zeros; random affine parameters make a swapped norm detectable.
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name:
                p.copy_(1 + 0.5 * torch.randn_like(p) if name.endswith("weight") else 0.5 * torch.randn_like(p))


def torch_encoder_layer_like(block: EncoderBlock, d_model, n_heads, d_ff, norm_first, eps):
    layer = nn.TransformerEncoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first, layer_norm_eps=eps
    )
    layer = layer.to(block.ffn_norm.weight.dtype)
    with torch.no_grad():
        copy_attention(layer.self_attn, block.self_attn)
        copy_linear_and_norm(layer.linear1, block.ffn.up_proj)
        copy_linear_and_norm(layer.linear2, block.ffn.down_proj, layer.norm2, block.ffn_norm)
        layer.norm1.weight.copy_(block.self_attn_norm.weight)
        layer.norm1.bias.copy_(block.self_attn_norm.bias)
    return layer.train()  # train mode with dropout 0 keeps torch off its fused inference fast path


def torch_decoder_layer_like(block: DecoderBlock, d_model, n_heads, d_ff, norm_first, eps):
    layer = nn.TransformerDecoderLayer(
        d_model, n_heads, d_ff, dropout=0.0, activation="relu", batch_first=True, norm_first=norm_first, layer_norm_eps=eps
    )
    layer = layer.to(block.ffn_norm.weight.dtype)
    with torch.no_grad():
        copy_attention(layer.self_attn, block.self_attn)
        copy_attention(layer.multihead_attn, block.cross_attn)
        copy_linear_and_norm(layer.linear1, block.ffn.up_proj)
        copy_linear_and_norm(layer.linear2, block.ffn.down_proj, layer.norm3, block.ffn_norm)
        for theirs, ours in ((layer.norm1, block.self_attn_norm), (layer.norm2, block.cross_attn_norm)):
            theirs.weight.copy_(ours.weight)
            theirs.bias.copy_(ours.bias)
    return layer.train()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_matches_torch_encoder_layer(dtype, norm_first):
    d_model, n_heads, d_ff, eps = 16, 4, 32, 1e-6
    torch.manual_seed(0)
    block = EncoderBlock(d_model, n_heads, d_ff, norm_first=norm_first, norm_eps=eps).to(dtype).eval()
    randomise_norms(block)
    layer = torch_encoder_layer_like(block, d_model, n_heads, d_ff, norm_first, eps)
    x = randn(3, 5, d_model, dtype=dtype, seed=1)
    key_keep = torch.arange(5) < torch.tensor([[5], [3], [1]])
    out = block(x, key_keep[:, None, None, :])
    expected = layer(x, src_key_padding_mask=~key_keep)
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_matches_torch_decoder_layer(dtype, norm_first):
    d_model, n_heads, d_ff, eps = 16, 2, 24, 1e-5
    torch.manual_seed(1)
    block = DecoderBlock(d_model, n_heads, d_ff, norm_first=norm_first, norm_eps=eps).to(dtype).eval()
    randomise_norms(block)
    layer = torch_decoder_layer_like(block, d_model, n_heads, d_ff, norm_first, eps)
    x = randn(2, 4, d_model, dtype=dtype, seed=2)
    memory = randn(2, 6, d_model, dtype=dtype, seed=3)
    tgt_keep = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    src_keep = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], dtype=torch.bool)
    causal_keep = torch.ones(4, 4, dtype=torch.bool).tril()
    out = block(x, memory, causal_keep & tgt_keep[:, None, None, :], src_keep[:, None, None, :])
    expected = layer(
        x, memory, tgt_mask=~causal_keep, tgt_key_padding_mask=~tgt_keep, memory_key_padding_mask=~src_keep
    )
    torch.testing.assert_close(out, expected, **TOLERANCE[dtype])


def test_block_activation_is_passed_to_the_feed_forward():
    block = EncoderBlock(8, 2, 16, activation="gelu")
    x = randn(3, 8)
    torch.testing.assert_close(block.ffn.activation(x), F.gelu(x))


@pytest.mark.parametrize("bias", [True, False])
def test_layer_norm_module_equals_the_readable_function(bias):
    """The module runs PyTorch's fused kernel; it must compute what ``layer_norm`` spells out."""
    norm = LayerNorm(16, eps=1e-5, bias=bias)
    with torch.no_grad():
        norm.weight.normal_()
        if bias:
            norm.bias.normal_()
    x = torch.randn(3, 7, 16, dtype=torch.float64) * 5 + 2
    norm = norm.double()
    torch.testing.assert_close(norm(x), layer_norm(x, norm.weight, norm.bias, 1e-5), rtol=1e-12, atol=1e-12)
