"""The checks of notebook 02_building_blocks, exercised with learner code written here (never llmcore's
implementation of the exercise itself; the blocks are built from llmcore's earlier components, as the
notebook asks).

For every check: a correct implementation passes the visible and the hidden cases; each known
mistake, written as a learner would write it, is diagnosed by name; delegating to llmcore's or
PyTorch's implementation of the same exercise is refused; the release stub reads "not implemented
yet"; any other exception is reported with the case that raised it.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import llmcore
from grader.checks.ch01 import blocks as checks
from check_test_helpers import broken, diagnosed, failure_message, stub
from grader.checks.framework import CheckFailure










def module_stub(base: type) -> type:
    """The released skeleton of a module exercise: the constructor works, forward raises."""

    class Stub(base):
        def forward(self, *args, **kwargs):
            raise NotImplementedError()

    return Stub


def module_broken(base: type) -> type:
    class Broken(base):
        def forward(self, *args, **kwargs):
            raise ValueError("an index went out of range")

    return Broken


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


EMBEDDING_MISTAKE_LEARNERS = {
    "the embeddings are not multiplied by √d_model": EmbeddingNoScale,
    "the embeddings are multiplied by d_model instead of √d_model": EmbeddingTimesDModel,
    "the embeddings are divided by √d_model instead of multiplied": EmbeddingDividedBySqrt,
    "the ids index the wrong axis of the table (weight[:, ids])": EmbeddingColumns,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_embedding_correct_learner_passes(hidden: bool) -> None:
    checks.check_token_embedding(TokenEmbedding, hidden=hidden)  # raises CheckFailure when wrong


def test_embedding_one_hot_matmul_passes() -> None:
    class OneHot(TokenEmbedding):
        def forward(self, ids):
            one_hot = F.one_hot(ids, self.weight.shape[0]).to(self.weight.dtype)
            return one_hot @ self.weight * math.sqrt(self.d_model)

    checks.check_token_embedding(OneHot, hidden=True)  # raises CheckFailure when wrong


def test_every_embedding_mistake_has_a_learner() -> None:
    assert set(EMBEDDING_MISTAKE_LEARNERS) == {m.name for m in checks.EMBEDDING_MISTAKES}


@pytest.mark.parametrize("name", list(EMBEDDING_MISTAKE_LEARNERS))
def test_embedding_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_token_embedding, EMBEDDING_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_embedding_gradient_of_the_table_is_checked() -> None:
    class Detached(TokenEmbedding):
        def forward(self, ids):
            return self.weight.detach()[ids] * math.sqrt(self.d_model)

    message = failure_message(checks.check_token_embedding, Detached)
    assert "no gradient reaches input 0" in message and "gradient of the table (input 0)" in message, message


def test_embedding_wrong_parameter_name_is_reported() -> None:
    class Named(nn.Module):
        def __init__(self, vocab_size, d_model):
            super().__init__()
            self.table = nn.Parameter(torch.zeros(vocab_size, d_model))

        def forward(self, ids):
            return self.table[ids]

    message = failure_message(checks.check_token_embedding, Named)
    assert "missing: weight" in message and "unexpected: table" in message, message


def test_embedding_delegation_is_refused() -> None:
    class Subclass(llmcore.TokenEmbedding):
        pass

    assert "calls llmcore.TokenEmbedding" in failure_message(checks.check_token_embedding, Subclass)

    class Functional(TokenEmbedding):
        def forward(self, ids):
            return F.embedding(ids, self.weight) * math.sqrt(self.d_model)

    assert "calls torch.nn.functional.embedding" in failure_message(checks.check_token_embedding, Functional)

    class Builtin(TokenEmbedding):
        def forward(self, ids):
            return torch.embedding(self.weight, ids) * math.sqrt(self.d_model)

    assert "calls torch.embedding" in failure_message(checks.check_token_embedding, Builtin)


def test_embedding_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_token_embedding, module_stub(TokenEmbedding))
    message = failure_message(checks.check_token_embedding, module_broken(TokenEmbedding))
    assert "raised ValueError on the case vocab_size=10, d_model=16, ids [B=2, L=5], float32" in message
    assert "expected the class itself" in failure_message(checks.check_token_embedding, TokenEmbedding(3, 4))


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


def _pe_with(*, base=10000.0, exponent="2i", layout="interleaved", swap=False, swap_pos_and_i=False):
    def learner(n_positions, d_model, dtype=torch.float32):
        position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
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


PE_MISTAKE_LEARNERS = {
    "sin and cos are swapped": _pe_with(swap=True),
    "the sines fill the first half and the cosines the second half (the layout of some later libraries, e.g. Marian)": (
        _pe_with(layout="half")
    ),
    "the exponent is i/d_model with the pair index i instead of 2i/d_model": _pe_with(exponent="i"),
    "each dimension j uses its own exponent j/d_model, so the cosine of pair i gets (2i+1)/d_model": pe_own_index,
    "the wavelengths use a base other than 10000": _pe_with(base=1000.0),
    "the position and the dimension index are swapped in the formula (2i / 10000^(pos/d_model))": (
        _pe_with(swap_pos_and_i=True)
    ),
    "the result is transposed: [d_model, n_positions]": pe_transposed,
}


@pytest.mark.parametrize("learner", [sinusoidal_position_encoding, pe_exp_log, pe_loops])
@pytest.mark.parametrize("hidden", [False, True])
def test_pe_correct_learners_pass(learner: Callable, hidden: bool) -> None:
    checks.check_sinusoidal_position_encoding(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_every_pe_mistake_has_a_learner() -> None:
    assert set(PE_MISTAKE_LEARNERS) == {m.name for m in checks.PE_MISTAKES}


@pytest.mark.parametrize("name", list(PE_MISTAKE_LEARNERS))
def test_pe_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_sinusoidal_position_encoding, PE_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


@pytest.mark.parametrize("base", [500.0, 20000.0, 1e5])
def test_pe_any_other_base_is_diagnosed(base: float) -> None:
    """(Base 100 is not among them: 100^(2i/d) = 10000^(i/d), the exponent mistake, and is diagnosed as that.)"""
    message = failure_message(checks.check_sinusoidal_position_encoding, _pe_with(base=base))
    assert diagnosed(message, "the wavelengths use a base other than 10000"), message


def test_pe_float32_computation_fails_float64_with_the_dtype_hint() -> None:
    def float32_then_cast(n_positions, d_model, dtype=torch.float32):
        return sinusoidal_position_encoding(n_positions, d_model).to(dtype)

    message = failure_message(checks.check_sinusoidal_position_encoding, float32_then_cast)
    assert "case 2 of 4" in message and "requested dtype" in message and "Diagnosis" not in message, message


def test_pe_delegation_is_refused() -> None:
    def function(n_positions, d_model, dtype=torch.float32):
        return llmcore.sinusoidal_position_encoding(n_positions, d_model, dtype=dtype)

    message = failure_message(checks.check_sinusoidal_position_encoding, function)
    assert "calls llmcore.sinusoidal_position_encoding" in message

    def module(n_positions, d_model, dtype=torch.float32):
        return llmcore.SinusoidalPositionalEncoding(n_positions, d_model)(torch.zeros(1, n_positions, d_model))[0]

    message = failure_message(checks.check_sinusoidal_position_encoding, module)
    assert "calls " in message and "llmcore.SinusoidalPositionalEncoding" in message, message


def test_pe_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_sinusoidal_position_encoding, stub)
    message = failure_message(checks.check_sinusoidal_position_encoding, broken)
    assert "raised ValueError on the case n_positions=10, d_model=16, default dtype (float32)" in message


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


def _layer_norm_over(dims) -> type:
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


LAYER_NORM_MISTAKE_LEARNERS = {
    "eps is missing: a token whose features are all equal divides 0 by 0": LayerNormNoEps,
    "eps is added outside the square root (√var + eps)": LayerNormEpsOutside,
    "the variance is unbiased (divided by d − 1)": LayerNormUnbiased,
    "unbiased standard deviation with eps outside the root ((x − mean) / (x.std(-1) + eps), as in some tutorials)": (
        LayerNormTutorial
    ),
    "the statistics are computed over the batch dimension (dim 0)": _layer_norm_over((0,)),
    "the statistics are computed over the sequence dimension (dim -2)": _layer_norm_over((-2,)),
    "the statistics are computed over the whole tensor at once": _layer_norm_over(None),
    "the learned scale (weight) and shift (bias) are not applied": LayerNormNoAffine,
    "the learned scale (weight) is not applied": LayerNormNoWeight,
    "the learned shift (bias) is not added": LayerNormNoBias,
}


@pytest.mark.parametrize("learner", [LayerNorm, LayerNormVarMean])
@pytest.mark.parametrize("hidden", [False, True])
def test_layer_norm_correct_learners_pass(learner: type, hidden: bool) -> None:
    checks.check_layer_norm(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_every_layer_norm_mistake_has_a_learner() -> None:
    assert set(LAYER_NORM_MISTAKE_LEARNERS) == {m.name for m in checks.LAYER_NORM_MISTAKES}


@pytest.mark.parametrize("name", list(LAYER_NORM_MISTAKE_LEARNERS))
def test_layer_norm_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_layer_norm, LAYER_NORM_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_layer_norm_ignoring_the_eps_argument_fails_on_that_case() -> None:
    class FixedEps(LayerNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model)

    message = failure_message(checks.check_layer_norm, FixedEps)
    assert "case 5 of 5" in message and "eps=0.1" in message, message


def test_layer_norm_gradients_of_the_parameters_are_checked() -> None:
    class DetachedWeight(LayerNorm):
        def forward(self, x):
            mean, variance = self.statistics(x)
            return (x - mean) / torch.sqrt(variance + self.eps) * self.weight.detach() + self.bias

    message = failure_message(checks.check_layer_norm, DetachedWeight)
    assert "no gradient reaches input 1" in message, message


def test_layer_norm_delegation_is_refused() -> None:
    class TorchSubclass(nn.LayerNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model, eps=eps)

    assert "calls torch.nn.LayerNorm" in failure_message(checks.check_layer_norm, TorchSubclass)

    class Functional(LayerNorm):
        def forward(self, x):
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)

    assert "calls torch.nn.functional.layer_norm" in failure_message(checks.check_layer_norm, Functional)

    class LlmcoreSubclass(llmcore.LayerNorm):
        pass

    assert "calls llmcore.LayerNorm" in failure_message(checks.check_layer_norm, LlmcoreSubclass)

    class LlmcoreFunction(LayerNorm):
        def forward(self, x):
            return llmcore.layer_norm(x, self.weight, self.bias, self.eps)

    assert "calls llmcore.layer_norm" in failure_message(checks.check_layer_norm, LlmcoreFunction)


def test_layer_norm_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_layer_norm, module_stub(LayerNorm))
    message = failure_message(checks.check_layer_norm, module_broken(LayerNorm))
    assert "raised ValueError on the case x [B=2, L=5, d=4], float64, gradients of x, weight and bias" in message


# ---------------------------------------------------------------------------------------------------
# add_and_norm
# ---------------------------------------------------------------------------------------------------


def add_and_norm(x, sublayer_output, norm):
    return norm(x + sublayer_output)


ADD_AND_NORM_MISTAKE_LEARNERS = {
    "pre-norm instead of post-norm: x + norm(sublayer_output)": lambda x, out, norm: x + norm(out),
    "the residual connection is missing: norm(sublayer_output)": lambda x, out, norm: norm(out),
    "the norm is not applied: x + sublayer_output": lambda x, out, norm: x + out,
    "only x is normalised before the sum: norm(x) + sublayer_output": lambda x, out, norm: norm(x) + out,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_add_and_norm_correct_learner_passes(hidden: bool) -> None:
    checks.check_add_and_norm(add_and_norm, hidden=hidden)  # raises CheckFailure when wrong


def test_every_add_and_norm_mistake_has_a_learner() -> None:
    assert set(ADD_AND_NORM_MISTAKE_LEARNERS) == {m.name for m in checks.ADD_AND_NORM_MISTAKES}


@pytest.mark.parametrize("name", list(ADD_AND_NORM_MISTAKE_LEARNERS))
def test_add_and_norm_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_add_and_norm, ADD_AND_NORM_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_add_and_norm_delegation_is_refused() -> None:
    def delegate(x, sublayer_output, norm):
        return llmcore.residual(x, lambda h: sublayer_output, norm, nn.Identity(), norm_first=False)

    assert "calls llmcore.residual" in failure_message(checks.check_add_and_norm, delegate)


def test_add_and_norm_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_add_and_norm, stub)
    message = failure_message(checks.check_add_and_norm, broken)
    assert "raised ValueError on the case x and sublayer_output [B=2, L=3, d=8], float32" in message


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


FFN_MISTAKE_LEARNERS = {
    "the ReLU is missing": FfnNoActivation,
    "a ReLU is also applied after the second layer": FfnReluTwice,
    "the ReLU is applied after the second layer instead of the first": FfnReluAtTheEnd,
    "GELU is used instead of ReLU": FfnGelu,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_ffn_correct_learner_passes(hidden: bool) -> None:
    checks.check_feed_forward(FeedForward, hidden=hidden)  # raises CheckFailure when wrong


def test_every_ffn_mistake_has_a_learner() -> None:
    assert set(FFN_MISTAKE_LEARNERS) == {m.name for m in checks.FFN_MISTAKES}


@pytest.mark.parametrize("name", list(FFN_MISTAKE_LEARNERS))
def test_ffn_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_feed_forward, FFN_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_ffn_swapped_sizes_are_reported_by_the_weight_loader() -> None:
    class Swapped(FeedForward):
        def __init__(self, d_model, d_ff):
            super().__init__(d_ff, d_model)

    message = failure_message(checks.check_feed_forward, Swapped)
    assert "wrong shape: down_proj.weight: expected (8, 32), got (32, 8)" in message, message
    assert "wrong shape: up_proj.weight: expected (32, 8), got (8, 32)" in message, message


def test_ffn_delegation_is_refused() -> None:
    class Subclass(llmcore.FeedForward):
        def __init__(self, d_model, d_ff):
            super().__init__(d_model, d_ff)

    assert "calls llmcore.FeedForward" in failure_message(checks.check_feed_forward, Subclass)


def test_ffn_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_feed_forward, module_stub(FeedForward))
    message = failure_message(checks.check_feed_forward, module_broken(FeedForward))
    assert "raised ValueError on the case x [B=2, L=3, d_model=8], d_ff=32, float32" in message


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


ENCODER_MISTAKE_LEARNERS = {
    "pre-norm wiring: x + sublayer(norm(x))": EncoderPreNorm,
    "the residual connection around self-attention is missing": EncoderNoAttentionResidual,
    "the residual connection around the feed-forward network is missing": EncoderNoFfnResidual,
    "the mask is not passed to self-attention": EncoderNoMask,
    "the feed-forward network comes before self-attention": EncoderFfnFirst,
    "the two norms are swapped (ffn_norm after attention, self_attn_norm after the FFN)": EncoderNormsSwapped,
}


@pytest.mark.parametrize("learner", [EncoderBlock, EncoderWithDropout])
@pytest.mark.parametrize("hidden", [False, True])
def test_encoder_correct_learners_pass(learner: type, hidden: bool) -> None:
    checks.check_encoder_block(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_every_encoder_mistake_has_a_learner() -> None:
    assert set(ENCODER_MISTAKE_LEARNERS) == {m.name for m in checks.ENCODER_MISTAKES}


@pytest.mark.parametrize("name", list(ENCODER_MISTAKE_LEARNERS))
def test_encoder_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_encoder_block, ENCODER_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_encoder_gradient_of_x_is_checked() -> None:
    class Detached(EncoderBlock):
        def forward(self, x, mask=None):
            return super().forward(x.detach(), mask)

    assert "no gradient reaches input 0" in failure_message(checks.check_encoder_block, Detached)


def test_encoder_wrong_submodule_names_are_reported() -> None:
    class Named(EncoderBlock):
        def __init__(self, d_model, n_heads, d_ff):
            super().__init__(d_model, n_heads, d_ff)
            self.norm1 = self.self_attn_norm
            del self.self_attn_norm

    message = failure_message(checks.check_encoder_block, Named)
    assert "missing: self_attn_norm.bias, self_attn_norm.weight" in message and "unexpected: norm1.bias" in message


def test_encoder_delegation_is_refused() -> None:
    class Subclass(llmcore.EncoderBlock):
        def __init__(self, d_model, n_heads, d_ff):
            super().__init__(d_model, n_heads, d_ff)

    assert "calls llmcore.EncoderBlock" in failure_message(checks.check_encoder_block, Subclass)

    class Torch(EncoderBlock):
        def forward(self, x, mask=None):
            d_model = x.shape[-1]
            layer = nn.TransformerEncoderLayer(d_model, self.self_attn.n_heads, 4 * d_model, dropout=0.0, batch_first=True)
            return layer.to(x.dtype)(x)

    assert "calls torch.nn.TransformerEncoderLayer" in failure_message(checks.check_encoder_block, Torch)


def test_encoder_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_encoder_block, module_stub(EncoderBlock))
    message = failure_message(checks.check_encoder_block, module_broken(EncoderBlock))
    assert "raised ValueError on the case x [B=2, S=5, d_model=16], n_heads=4, d_ff=32, float32" in message


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


def _decoder_learner(forward: Callable) -> type:
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


def ffn_before_cross(self, x, memory, self_mask=None, cross_mask=None):
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    x = self.ffn_norm(x + self.ffn(x))
    return self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))


def cross_before_self(self, x, memory, self_mask=None, cross_mask=None):
    x = self.cross_attn_norm(x + self.cross_attn(x, memory, mask=cross_mask))
    x = self.self_attn_norm(x + self.self_attn(x, mask=self_mask))
    return self.ffn_norm(x + self.ffn(x))


DECODER_MISTAKE_LEARNERS = {
    "pre-norm wiring: x + sublayer(norm(x))": pre_norm,
    "the residual connection around self-attention is missing": no_self_residual,
    "the residual connection around cross-attention is missing": no_cross_residual,
    "the residual connection around the feed-forward network is missing": no_ffn_residual,
    "cross-attention is skipped: the block never reads the encoder output": no_cross_attention,
    "cross-attention takes its keys and values from x instead of memory": cross_attends_to_x,
    "cross-attention takes its queries from memory and its keys from x (arguments swapped)": cross_arguments_swapped,
    "the masks are swapped: self_mask goes to cross-attention and cross_mask to self-attention": masks_swapped,
    "the causal self_mask is not used: the decoder sees future target tokens": no_self_mask,
    "the feed-forward network comes before cross-attention": ffn_before_cross,
    "cross-attention comes before self-attention": cross_before_self,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_decoder_correct_learner_passes(hidden: bool) -> None:
    checks.check_decoder_block(DecoderBlock, hidden=hidden)  # raises CheckFailure when wrong


def test_every_decoder_mistake_has_a_learner() -> None:
    assert set(DECODER_MISTAKE_LEARNERS) == {m.name for m in checks.DECODER_MISTAKES}


@pytest.mark.parametrize("name", list(DECODER_MISTAKE_LEARNERS))
def test_decoder_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_decoder_block, _decoder_learner(DECODER_MISTAKE_LEARNERS[name]))
    assert diagnosed(message, name), message


def test_decoder_gradient_of_memory_is_checked() -> None:
    class Detached(DecoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            return super().forward(x, memory.detach(), self_mask, cross_mask)

    assert "no gradient reaches input 1" in failure_message(checks.check_decoder_block, Detached)


def test_decoder_without_cross_attention_module_is_reported() -> None:
    class NoCross(EncoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            return super().forward(x, self_mask)

    message = failure_message(checks.check_decoder_block, NoCross)
    assert "missing: cross_attn.k_proj.bias" in message and "cross_attn_norm.weight" in message, message


def test_decoder_delegation_is_refused() -> None:
    class Subclass(llmcore.DecoderBlock):
        def __init__(self, d_model, n_heads, d_ff):
            super().__init__(d_model, n_heads, d_ff)

    assert "calls llmcore.DecoderBlock" in failure_message(checks.check_decoder_block, Subclass)

    class Torch(DecoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            d_model = x.shape[-1]
            layer = nn.TransformerDecoderLayer(d_model, self.self_attn.n_heads, 4 * d_model, dropout=0.0, batch_first=True)
            return layer.to(x.dtype)(x, memory)

    assert "calls torch.nn.TransformerDecoderLayer" in failure_message(checks.check_decoder_block, Torch)


def test_decoder_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_decoder_block, module_stub(DecoderBlock))
    message = failure_message(checks.check_decoder_block, module_broken(DecoderBlock))
    assert "raised ValueError on the case x [B=2, T=5, d_model=16], memory [B, S=5, d_model]" in message
