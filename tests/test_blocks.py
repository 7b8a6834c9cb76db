"""llmcore.blocks against independent oracles: the residual wrapper's post-norm and pre-norm order on scalars, and
EncoderBlock/DecoderBlock against torch's own nn.TransformerEncoderLayer/nn.TransformerDecoderLayer with copied
weights (both norm placements, padding and causal masks, float32 and float64).
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore.blocks import DecoderBlock, EncoderBlock, residual

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


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
