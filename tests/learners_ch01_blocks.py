"""Learner code for the exercises of notebook 02_building_blocks, written as learners write it (never llmcore's
implementation of the exercise itself; the blocks are built from llmcore's earlier components, as the notebook asks).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import llmcore

# ---------------------------------------------------------------------------------------------------
# TokenEmbedding
# ---------------------------------------------------------------------------------------------------


class TokenEmbedding(nn.Module):
    def __init__(self, vocab_size, d_model):
        super().__init__()
        self.d_model = d_model
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model) / math.sqrt(d_model))

    def forward(self, ids):
        return self.weight[ids] * math.sqrt(self.d_model)


class EmbeddingOneHot(TokenEmbedding):
    def forward(self, ids):
        one_hot = F.one_hot(ids, self.weight.shape[0]).to(self.weight.dtype)
        return one_hot @ self.weight * math.sqrt(self.d_model)


class EmbeddingIndexSelect(nn.Module):
    def __init__(self, vocab_size, d_model):
        super().__init__()
        self.scale = d_model**0.5
        self.weight = nn.Parameter(torch.empty(vocab_size, d_model).normal_(std=d_model**-0.5))

    def forward(self, ids):
        rows = torch.index_select(self.weight, 0, ids.reshape(-1))
        return (rows * self.scale).reshape(*ids.shape, -1)


class EmbeddingNoScale(TokenEmbedding):
    def forward(self, ids):
        return self.weight[ids]


class EmbeddingTimesDModel(TokenEmbedding):
    def forward(self, ids):
        return self.weight[ids] * self.d_model


class EmbeddingDividedBySqrt(TokenEmbedding):
    def forward(self, ids):
        return self.weight[ids] / math.sqrt(self.d_model)


class EmbeddingColumns(TokenEmbedding):
    def forward(self, ids):
        return self.weight[:, ids] * math.sqrt(self.d_model)


class EmbeddingSqrtVocab(nn.Module):
    def __init__(self, vocab_size, d_model):
        super().__init__()
        self.vocab_size = vocab_size
        self.weight = nn.Parameter(torch.randn(vocab_size, d_model) / math.sqrt(d_model))

    def forward(self, ids):
        return self.weight[ids] * math.sqrt(self.vocab_size)


class EmbeddingPowerPrecedence(TokenEmbedding):
    def forward(self, ids):
        return self.weight[ids] * self.d_model ** 1/2


# ---------------------------------------------------------------------------------------------------
# sinusoidal_position_encoding
# ---------------------------------------------------------------------------------------------------


def sinusoidal_position_encoding(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=dtype)
    angles = position / 10000 ** (two_i / d_model)
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding


def pe_exp_log(n_positions, d_model, dtype=torch.float32):
    """The Annotated Transformer's formulation: frequencies as exp(−2i·ln(10000)/d)."""
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    frequencies = torch.exp(torch.arange(0, d_model, 2, dtype=dtype) * (-math.log(10000.0) / d_model))
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2] = torch.sin(position * frequencies)
    encoding[:, 1::2] = torch.cos(position * frequencies)
    return encoding


def pe_loops(n_positions, d_model, dtype=torch.float32):
    """Straight from the formula, one entry at a time, with Python's float64 math."""
    rows = []
    for pos in range(n_positions):
        row = []
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            row += [math.sin(angle), math.cos(angle)]
        rows.append(row)
    return torch.tensor(rows, dtype=dtype).reshape(n_positions, d_model)


def pe_with(*, base=10000.0, exponent="2i", layout="interleaved", swap=False, swap_pos_and_i=False, start=0):
    """A learner's vectorised encoding with one slip (the base, the exponent, the layout, sin/cos, the start)."""

    def learner(n_positions, d_model, dtype=torch.float32):
        position = torch.arange(start, start + n_positions, dtype=dtype).unsqueeze(1)
        i = torch.arange(0, d_model, 2, dtype=dtype)
        if exponent == "i":
            i = torch.arange(d_model // 2, dtype=dtype)
        if swap_pos_and_i:
            angles = i / base ** (position / d_model)
        else:
            angles = position / base ** (i / d_model)
        sin, cos = torch.sin(angles), torch.cos(angles)
        if swap:
            sin, cos = cos, sin
        if layout == "half":
            return torch.cat([sin, cos], dim=-1)
        encoding = torch.zeros(n_positions, d_model, dtype=dtype)
        encoding[:, 0::2], encoding[:, 1::2] = sin, cos
        return encoding

    return learner


def pe_own_index(n_positions, d_model, dtype=torch.float32):
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    position = torch.arange(n_positions, dtype=dtype)
    for j in range(d_model):
        angle = position / 10000 ** (j / d_model)
        encoding[:, j] = torch.sin(angle) if j % 2 == 0 else torch.cos(angle)
    return encoding


def pe_transposed(n_positions, d_model, dtype=torch.float32):
    return sinusoidal_position_encoding(n_positions, d_model, dtype).T


def pe_from_one(n_positions, d_model, dtype=torch.float32):
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    for pos in range(1, n_positions + 1):
        angles = pos / 10000 ** (torch.arange(0, d_model, 2, dtype=dtype) / d_model)
        encoding[pos - 1, 0::2] = torch.sin(angles)
        encoding[pos - 1, 1::2] = torch.cos(angles)
    return encoding


def pe_float32_then_cast(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions).unsqueeze(1)
    div_term = 10000 ** (torch.arange(0, d_model, 2) / d_model)
    encoding = torch.zeros(n_positions, d_model)
    encoding[:, 0::2] = torch.sin(position / div_term)
    encoding[:, 1::2] = torch.cos(position / div_term)
    return encoding.to(dtype)


def pe_two_i_doubled(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    i = torch.arange(0, d_model, 2, dtype=dtype)
    angles = position / 10000 ** (2 * i / d_model)   # "2i", with i already running 0, 2, 4, …
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding


def pe_exp_without_minus(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2, dtype=dtype) * (math.log(10000.0) / d_model))
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2] = torch.sin(position * div_term)
    encoding[:, 1::2] = torch.cos(position * div_term)
    return encoding


def pe_without_parentheses(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    two_i = torch.arange(0, d_model, 2, dtype=dtype)
    angles = position / 10000 ** two_i / d_model
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2] = torch.sin(angles)
    encoding[:, 1::2] = torch.cos(angles)
    return encoding


# ---------------------------------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------------------------------


class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def statistics(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        return mean, ((x - mean) ** 2).mean(dim=-1, keepdim=True)

    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias


class LayerNormVarMean(LayerNorm):
    def forward(self, x):
        variance, mean = torch.var_mean(x, dim=-1, keepdim=True, unbiased=False)
        return (x - mean) * torch.rsqrt(variance + self.eps) * self.weight + self.bias


class LayerNormMeanOfSquares(nn.Module):
    """var = E[x²] − E[x]², written with sums and the feature count."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.d_model, self.eps = d_model, eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean = x.sum(-1, keepdim=True) / self.d_model
        centred = x - mean
        variance = (centred * centred).sum(-1, keepdim=True) / self.d_model
        return torch.addcmul(self.bias, centred / (variance + self.eps).sqrt(), self.weight)


class LayerNormNoEps(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance) * self.weight + self.bias


class LayerNormEpsOutside(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / (torch.sqrt(variance) + self.eps) * self.weight + self.bias


class LayerNormUnbiased(LayerNorm):
    def forward(self, x):
        mean, variance = x.mean(dim=-1, keepdim=True), x.var(dim=-1, keepdim=True)
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias


class LayerNormTutorial(LayerNorm):
    def forward(self, x):
        mean, std = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


def layer_norm_over(dims) -> type:
    """A LayerNorm whose statistics are taken over ``dims`` (``None``: the whole tensor)."""

    class OverDims(LayerNorm):
        def forward(self, x):
            reduce = tuple(range(x.dim())) if dims is None else dims
            mean = x.mean(dim=reduce, keepdim=True)
            variance = ((x - mean) ** 2).mean(dim=reduce, keepdim=True)
            return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias

    return OverDims


class LayerNormNoAffine(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance + self.eps)


class LayerNormNoWeight(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance + self.eps) + self.bias


class LayerNormNoBias(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight


class LayerNormFixedEps(LayerNorm):
    def forward(self, x):
        mean, variance = self.statistics(x)
        return (x - mean) / torch.sqrt(variance + 1e-5) * self.weight + self.bias


class LayerNormNoKeepdim(LayerNorm):
    def forward(self, x):
        mean = x.mean(dim=-1)
        variance = x.var(dim=-1, unbiased=False)
        return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias


def add_and_norm_new_layer_norm(x, sublayer_output, norm):
    layer_norm = nn.LayerNorm(x.shape[-1])
    return layer_norm(x + sublayer_output)


# ---------------------------------------------------------------------------------------------------
# add_and_norm
# ---------------------------------------------------------------------------------------------------


def add_and_norm(x, sublayer_output, norm):
    return norm(x + sublayer_output)


def add_and_norm_in_steps(x, sublayer_output, norm):
    residual = torch.add(sublayer_output, x)
    normalised = norm(residual)
    return normalised


# ---------------------------------------------------------------------------------------------------
# FeedForward
# ---------------------------------------------------------------------------------------------------


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff)
        self.down_proj = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.down_proj(torch.relu(self.up_proj(x)))


class FeedForwardByHand(FeedForward):
    """The paper's formula max(0, xW₁ + b₁)W₂ + b₂ with the layers' matrices, as einsum."""

    def forward(self, x):
        hidden = torch.einsum("...d,fd->...f", x, self.up_proj.weight) + self.up_proj.bias
        hidden = hidden.clamp(min=0)
        return torch.einsum("...f,df->...d", hidden, self.down_proj.weight) + self.down_proj.bias


class FeedForwardSequential(nn.Module):
    """nn.Sequential would rename the layers; the named layers are kept and chained in a loop instead."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.up_proj = nn.Linear(d_model, d_ff)
        self.down_proj = nn.Linear(d_ff, d_model)
        self.activation = nn.ReLU()

    def forward(self, x):
        for layer in (self.up_proj, self.activation, self.down_proj):
            x = layer(x)
        return x


class FfnNoActivation(FeedForward):
    def forward(self, x):
        return self.down_proj(self.up_proj(x))


class FfnReluTwice(FeedForward):
    def forward(self, x):
        return torch.relu(self.down_proj(torch.relu(self.up_proj(x))))


class FfnReluAtTheEnd(FeedForward):
    def forward(self, x):
        return torch.relu(self.down_proj(self.up_proj(x)))


class FfnGelu(FeedForward):
    def forward(self, x):
        return self.down_proj(F.gelu(self.up_proj(x)))


class FfnPythonMax(FeedForward):
    def forward(self, x):
        return self.down_proj(max(0, self.up_proj(x)))   # max(0, xW1 + b1), as in the paper


class FfnWithResidual(FeedForward):
    def forward(self, x):
        return x + self.down_proj(torch.relu(self.up_proj(x)))


# ---------------------------------------------------------------------------------------------------
# EncoderBlock
# ---------------------------------------------------------------------------------------------------


class EncoderBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.self_attn = llmcore.MultiHeadAttention(d_model, n_heads)
        self.self_attn_norm = llmcore.LayerNorm(d_model)
        self.ffn = llmcore.FeedForward(d_model, d_ff)
        self.ffn_norm = llmcore.LayerNorm(d_model)

    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.self_attn(x, mask=mask))
        return self.ffn_norm(x + self.ffn(x))


class EncoderWithDropout(nn.Module):
    """The paper's block with P_drop = 0.1: the check compares in eval mode, where dropout is off."""

    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.self_attn = llmcore.MultiHeadAttention(d_model, n_heads, dropout=0.1)
        self.self_attn_norm = llmcore.LayerNorm(d_model)
        self.ffn = llmcore.FeedForward(d_model, d_ff, dropout=0.1)
        self.ffn_norm = llmcore.LayerNorm(d_model)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.dropout(self.self_attn(x, mask=mask)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class EncoderPreNorm(EncoderBlock):
    def forward(self, x, mask=None):
        x = x + self.self_attn(self.self_attn_norm(x), mask=mask)
        return x + self.ffn(self.ffn_norm(x))


class EncoderNoAttentionResidual(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.self_attn_norm(self.self_attn(x, mask=mask))
        return self.ffn_norm(x + self.ffn(x))


class EncoderNoFfnResidual(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.self_attn(x, mask=mask))
        return self.ffn_norm(self.ffn(x))


class EncoderNoMask(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.self_attn(x))
        return self.ffn_norm(x + self.ffn(x))


class EncoderFfnFirst(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.ffn_norm(x + self.ffn(x))
        return self.self_attn_norm(x + self.self_attn(x, mask=mask))


class EncoderNormsSwapped(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.ffn_norm(x + self.self_attn(x, mask=mask))
        return self.self_attn_norm(x + self.ffn(x))


class EncoderKeyPaddingMask(EncoderBlock):
    def forward(self, x, mask=None):
        key_padding_mask = ~mask   # True = padding, as nn.MultiheadAttention wants it
        x = self.self_attn_norm(x + self.self_attn(x, mask=key_padding_mask))
        return self.ffn_norm(x + self.ffn(x))


class EncoderMaskPositional(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.self_attn(x, mask))
        return self.ffn_norm(x + self.ffn(x))


class EncoderNormOnSublayer(EncoderBlock):
    def forward(self, x, mask=None):
        x = x + self.self_attn_norm(self.self_attn(x, mask=mask))
        return x + self.ffn_norm(self.ffn(x))


class EncoderOneNorm(EncoderBlock):
    def forward(self, x, mask=None):
        x = self.self_attn_norm(x + self.self_attn(x, mask=mask))
        return self.self_attn_norm(x + self.ffn(x))


class EncoderStaleResidual(EncoderBlock):
    def forward(self, x, mask=None):
        attended = self.self_attn_norm(x + self.self_attn(x, mask=mask))
        return self.ffn_norm(x + self.ffn(attended))


# ---------------------------------------------------------------------------------------------------
# DecoderBlock
# ---------------------------------------------------------------------------------------------------


class DecoderBlock(nn.Module):
    def __init__(self, d_model, n_heads, d_ff):
        super().__init__()
        self.self_attn = llmcore.MultiHeadAttention(d_model, n_heads)
        self.self_attn_norm = llmcore.LayerNorm(d_model)
        self.cross_attn = llmcore.MultiHeadAttention(d_model, n_heads)
        self.cross_attn_norm = llmcore.LayerNorm(d_model)
        self.ffn = llmcore.FeedForward(d_model, d_ff)
        self.ffn_norm = llmcore.LayerNorm(d_model)

    def forward(self, x, memory, self_mask=None, cross_mask=None):
        x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
        x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
        return self.ffn_norm(x + self.ffn(x))


class DecoderWithSublayerHelper(DecoderBlock):
    """The three sublayers as (function, norm) pairs run through one Add & Norm helper."""

    @staticmethod
    def add_and_norm(x, sublayer, norm):
        return norm(x + sublayer(x))

    def forward(self, x, memory, self_mask=None, cross_mask=None):
        steps = [
            (lambda h: self.self_attn(h, mask=self_mask), self.self_attn_norm),
            (lambda h: self.cross_attn(h, context=memory, mask=cross_mask), self.cross_attn_norm),
            (self.ffn, self.ffn_norm),
        ]
        for sublayer, norm in steps:
            x = self.add_and_norm(x, sublayer, norm)
        return x


def decoder_learner(forward) -> type:
    """A DecoderBlock whose forward is written as a learner with one slip would write it."""
    return type(forward.__name__, (DecoderBlock,), {"forward": forward})


def pre_norm(self, x, memory, self_mask=None, cross_mask=None):
    x = x + self.self_attn(self.self_attn_norm(x), mask=self_mask)
    x = x + self.cross_attn(self.cross_attn_norm(x), memory, mask=cross_mask)
    return x + self.ffn(self.ffn_norm(x))


def no_self_residual(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
    return self.ffn_norm(x + self.ffn(x))


def no_cross_residual(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(self.cross_attn(x, memory, mask=cross_mask))
    return self.ffn_norm(x + self.ffn(x))


def no_ffn_residual(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
    return self.ffn_norm(self.ffn(x))


def no_cross_attention(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    return self.ffn_norm(x + self.ffn(x))


def cross_attends_to_x(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(x + self.cross_attn(x, mask=cross_mask))
    return self.ffn_norm(x + self.ffn(x))


def cross_arguments_swapped(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(x + self.cross_attn(memory, x, mask=cross_mask))
    return self.ffn_norm(x + self.ffn(x))


def masks_swapped(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=cross_mask))
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=self_mask))
    return self.ffn_norm(x + self.ffn(x))


def no_self_mask(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x))
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
    return self.ffn_norm(x + self.ffn(x))


def no_cross_mask(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.cross_attn_norm(x + self.cross_attn(x, memory))
    return self.ffn_norm(x + self.ffn(x))


def ffn_before_cross(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.ffn_norm(x + self.ffn(x))
    return self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))


def cross_before_self(self, x, memory, self_mask=None, cross_mask=None):
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    return self.ffn_norm(x + self.ffn(x))


CORRECT = {
    "token_embedding": [TokenEmbedding, EmbeddingOneHot, EmbeddingIndexSelect],
    "sinusoidal_position_encoding": [sinusoidal_position_encoding, pe_exp_log, pe_loops],
    "layer_norm": [LayerNorm, LayerNormVarMean, LayerNormMeanOfSquares],
    "add_and_norm": [add_and_norm, add_and_norm_in_steps],
    "feed_forward": [FeedForward, FeedForwardByHand, FeedForwardSequential],
    "encoder_block": [EncoderBlock, EncoderWithDropout],
    "decoder_block": [DecoderBlock, DecoderWithSublayerHelper],
}

MISTAKES = {
    "token_embedding": {
        "no_scale": EmbeddingNoScale,
        "times_d_model": EmbeddingTimesDModel,
        "divided_by_sqrt": EmbeddingDividedBySqrt,
        "wrong_axis": EmbeddingColumns,
        "sqrt_vocab_size": EmbeddingSqrtVocab,
        "power_precedence": EmbeddingPowerPrecedence,
    },
    "sinusoidal_position_encoding": {
        "sin_cos_swapped": pe_with(swap=True),
        "halves_layout": pe_with(layout="half"),
        "exponent_pair_index": pe_with(exponent="i"),
        "exponent_own_index": pe_own_index,
        "positions_from_one": pe_from_one,
        "swapped_pos_and_2i": pe_with(swap_pos_and_i=True),
        "transposed": pe_transposed,
        "other_base": pe_with(base=1000.0),
        "computed_in_float32": pe_float32_then_cast,
        "exponent_doubled": pe_two_i_doubled,
        "frequencies_inverted": pe_exp_without_minus,
        "exponent_without_parentheses": pe_without_parentheses,
    },
    "layer_norm": {
        "no_eps": LayerNormNoEps,
        "eps_outside_root": LayerNormEpsOutside,
        "unbiased_variance": LayerNormUnbiased,
        "unbiased_std_eps_outside": LayerNormTutorial,
        "over_batch": layer_norm_over((0,)),
        "over_sequence": layer_norm_over((-2,)),
        "over_whole_tensor": layer_norm_over(None),
        "no_affine": LayerNormNoAffine,
        "no_weight": LayerNormNoWeight,
        "no_bias": LayerNormNoBias,
        "eps_argument_ignored": LayerNormFixedEps,
        "no_keepdim": LayerNormNoKeepdim,
    },
    "add_and_norm": {
        "pre_norm": lambda x, out, norm: x + norm(out),
        "no_residual": lambda x, out, norm: norm(out),
        "no_norm": lambda x, out, norm: x + out,
        "norm_x_only": lambda x, out, norm: norm(x) + out,
        "norm_argument_unused": add_and_norm_new_layer_norm,
        "residual_added_twice": lambda x, out, norm: x + norm(x + out),
    },
    "feed_forward": {
        "no_activation": FfnNoActivation,
        "relu_twice": FfnReluTwice,
        "relu_at_the_end": FfnReluAtTheEnd,
        "gelu": FfnGelu,
        "python_max": FfnPythonMax,
        "residual_inside": FfnWithResidual,
    },
    "encoder_block": {
        "pre_norm": EncoderPreNorm,
        "no_attention_residual": EncoderNoAttentionResidual,
        "no_ffn_residual": EncoderNoFfnResidual,
        "mask_unused": EncoderNoMask,
        "ffn_first": EncoderFfnFirst,
        "norms_swapped": EncoderNormsSwapped,
        "mask_inverted": EncoderKeyPaddingMask,
        "mask_passed_as_context": EncoderMaskPositional,
        "norm_on_sublayer_output": EncoderNormOnSublayer,
        "one_norm_twice": EncoderOneNorm,
        "ffn_residual_from_block_input": EncoderStaleResidual,
    },
    "decoder_block": {
        "pre_norm": decoder_learner(pre_norm),
        "no_self_attention_residual": decoder_learner(no_self_residual),
        "no_cross_attention_residual": decoder_learner(no_cross_residual),
        "no_ffn_residual": decoder_learner(no_ffn_residual),
        "no_cross_attention": decoder_learner(no_cross_attention),
        "cross_keys_from_x": decoder_learner(cross_attends_to_x),
        "cross_arguments_swapped": decoder_learner(cross_arguments_swapped),
        "masks_swapped": decoder_learner(masks_swapped),
        "self_mask_unused": decoder_learner(no_self_mask),
        "cross_mask_unused": decoder_learner(no_cross_mask),
        "ffn_before_cross_attention": decoder_learner(ffn_before_cross),
        "cross_before_self_attention": decoder_learner(cross_before_self),
    },
}
