"""Special cases of the checks of notebook 02_building_blocks (the promises every exercise keeps are generated
from the registry in tests/test_exercise_contracts.py; the learners live in tests/learners_ch01_blocks.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import llmcore
from check_test_helpers import broken, failure_message
from grader.checks.ch01 import blocks as checks
from learners_ch01_blocks import (
    DecoderBlock,
    EncoderBlock,
    FeedForward,
    LayerNorm,
    TokenEmbedding,
    pe_float32_then_cast,
    pe_with,
    sinusoidal_position_encoding,
)


def test_the_notebook_imports_every_check() -> None:
    import grader.checks.ch01 as chapter

    for name in checks.__all__:
        assert getattr(chapter, name) is getattr(checks, name)
    assert chapter.check_token_embedding == checks.TOKEN_EMBEDDING.check


# ---------------------------------------------------------------------------------------------------
# TokenEmbedding
# ---------------------------------------------------------------------------------------------------


def test_embedding_gradient_of_the_table_is_checked() -> None:
    class Detached(TokenEmbedding):
        def forward(self, ids):
            return self.weight.detach()[ids] * math.sqrt(self.d_model)

    message = failure_message(checks.check_token_embedding, Detached)
    assert "no gradient reaches the parameter weight" in message and "case 2 of 3" in message, message


def test_embedding_wrong_parameter_name_is_reported() -> None:
    class Named(nn.Module):
        def __init__(self, vocab_size, d_model):
            super().__init__()
            self.table = nn.Parameter(torch.zeros(vocab_size, d_model))

        def forward(self, ids):
            return self.table[ids]

    message = failure_message(checks.check_token_embedding, Named)
    assert "missing: weight" in message and "unexpected: table" in message, message


def test_embedding_plain_tensor_weight_is_named_as_such() -> None:
    class PlainTensor(nn.Module):
        def __init__(self, vocab_size, d_model):
            super().__init__()
            self.d_model = d_model
            self.weight = torch.randn(vocab_size, d_model) / math.sqrt(d_model)

        def forward(self, ids):
            return self.weight[ids] * math.sqrt(self.d_model)

    message = failure_message(checks.check_token_embedding, PlainTensor)
    assert "`weight` is a plain tensor, not an nn.Parameter" in message, message


class EmbeddingFunctional(TokenEmbedding):
    def forward(self, ids):
        return F.embedding(ids, self.weight) * math.sqrt(self.d_model)


class EmbeddingBuiltin(TokenEmbedding):
    def forward(self, ids):
        return torch.embedding(self.weight, ids) * math.sqrt(self.d_model)


class EmbeddingAten(TokenEmbedding):
    def forward(self, ids):
        return torch.ops.aten.embedding(self.weight, ids) * math.sqrt(self.d_model)


@pytest.mark.parametrize("learner,label", [
    (EmbeddingFunctional, "calls torch.nn.functional.embedding"),
    (EmbeddingBuiltin, "calls torch.embedding"),
    (EmbeddingAten, "calls PyTorch's embedding lookup (aten::embedding)"),
])
def test_embedding_delegation_is_refused(learner: type, label: str) -> None:
    message = failure_message(checks.check_token_embedding, learner)
    assert label in message, message


# ---------------------------------------------------------------------------------------------------
# sinusoidal_position_encoding
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base", [500.0, 20000.0, 1e5])
def test_pe_any_other_base_is_diagnosed(base: float) -> None:
    """(Base 100 is not among them: 100^(2i/d) = 10000^(i/d), the exponent mistake, and is diagnosed as that.)"""
    message = failure_message(checks.check_sinusoidal_position_encoding, pe_with(base=base))
    assert "Diagnosis: the wavelengths use a base other than 10000." in message, message


def pe_multiplied(n_positions, d_model, dtype=torch.float32):
    position = torch.arange(n_positions, dtype=dtype).unsqueeze(1)
    angles = position * 10000 ** (torch.arange(0, d_model, 2, dtype=dtype) / d_model)
    encoding = torch.zeros(n_positions, d_model, dtype=dtype)
    encoding[:, 0::2], encoding[:, 1::2] = torch.sin(angles), torch.cos(angles)
    return encoding


@pytest.mark.parametrize("computed_in", [None, torch.float64])
def test_pe_inverted_frequencies_are_named_whatever_the_precision(computed_in: torch.dtype | None) -> None:
    """pos · 10000^(2i/d) reaches angles of tens of thousands, where a float32 result differs from the float64
    variant by about 1e-3: it is named all the same (case 1 is float32)."""
    def learner(n_positions, d_model, dtype=torch.float32):
        return pe_multiplied(n_positions, d_model, computed_in or dtype).to(dtype)

    message = failure_message(checks.check_sinusoidal_position_encoding, learner)
    assert "case 1 of 4" in message and "Diagnosis: the position is multiplied by 10000^(2i/d_model)" in message, message


def test_pe_float32_computation_passes_float32_and_is_named_on_float64() -> None:
    message = failure_message(checks.check_sinusoidal_position_encoding, pe_float32_then_cast)
    assert "case 2 of 4" in message and "dtype=torch.float64" in message, message
    assert "Diagnosis: the encoding is computed in float32" in message, message


def test_pe_float32_result_on_a_float64_case_is_a_dtype_error() -> None:
    def ignores_dtype(n_positions, d_model, dtype=torch.float32):
        return sinusoidal_position_encoding(n_positions, d_model)

    message = failure_message(checks.check_sinusoidal_position_encoding, ignores_dtype)
    assert "expected dtype torch.float64 (keep the input's dtype), got torch.float32" in message, message


def test_pe_delegation_through_the_module_is_refused() -> None:
    def module(n_positions, d_model, dtype=torch.float32):
        return llmcore.SinusoidalPositionalEncoding(n_positions, d_model)(torch.zeros(1, n_positions, d_model))[0]

    message = failure_message(checks.check_sinusoidal_position_encoding, module)
    assert "calls " in message and "llmcore.SinusoidalPositionalEncoding" in message, message


# ---------------------------------------------------------------------------------------------------
# LayerNorm
# ---------------------------------------------------------------------------------------------------


def test_layer_norm_ignoring_the_eps_argument_fails_on_that_case() -> None:
    class FixedEps(LayerNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model)

    message = failure_message(checks.check_layer_norm, FixedEps)
    assert "case 5 of 5" in message and "eps=0.1" in message, message
    # On that float32 case a fixed 1e-5 and no eps at all give the same numbers: the fixed eps is named.
    assert "Diagnosis: the eps given to the constructor is not used" in message, message


def test_layer_norm_a_negligible_fixed_eps_reads_as_no_eps() -> None:
    """eps = 1e-12 (BERT's) in place of the argument is, on float64 data of unit spread, no eps at all."""
    class BertEps(LayerNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model, eps=1e-12)

    message = failure_message(checks.check_layer_norm, BertEps)
    assert "case 1 of 5" in message and "Diagnosis: eps is missing" in message, message


def test_layer_norm_keepdim_missing_on_the_variance_only_is_named() -> None:
    class VarianceWithoutKeepdim(LayerNorm):
        def forward(self, x):
            mean = x.mean(dim=-1, keepdim=True)
            variance = ((x - mean) ** 2).mean(dim=-1)
            return (x - mean) / torch.sqrt(variance + self.eps) * self.weight + self.bias

    message = failure_message(checks.check_layer_norm, VarianceWithoutKeepdim)
    assert "raised an error on case 1 of 5" in message, message
    assert "Diagnosis: the mean or the variance is taken without keepdim=True" in message, message


def test_layer_norm_gradients_of_the_parameters_are_checked() -> None:
    class DetachedWeight(LayerNorm):
        def forward(self, x):
            mean, variance = self.statistics(x)
            return (x - mean) / torch.sqrt(variance + self.eps) * self.weight.detach() + self.bias

    message = failure_message(checks.check_layer_norm, DetachedWeight)
    assert "no gradient reaches the parameter weight" in message, message


class LayerNormTorchSubclass(nn.LayerNorm):
    def __init__(self, d_model, eps=1e-5):
        super().__init__(d_model, eps=eps)


class LayerNormFunctional(LayerNorm):
    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class LayerNormLlmcoreFunction(LayerNorm):
    def forward(self, x):
        return llmcore.layer_norm(x, self.weight, self.bias, self.eps)


class LayerNormAten(LayerNorm):
    def forward(self, x):
        return torch.ops.aten.native_layer_norm(x, [x.shape[-1]], self.weight, self.bias, self.eps)[0]


@pytest.mark.parametrize("learner,label", [
    (LayerNormTorchSubclass, "calls torch.nn.LayerNorm"),
    (LayerNormFunctional, "calls torch.nn.functional.layer_norm"),
    (LayerNormLlmcoreFunction, "calls llmcore.layer_norm"),
    (LayerNormAten, "calls PyTorch's layer-norm kernel (aten::native_layer_norm)"),
])
def test_layer_norm_delegation_is_refused(learner: type, label: str) -> None:
    message = failure_message(checks.check_layer_norm, learner)
    assert label in message, message


# ---------------------------------------------------------------------------------------------------
# FeedForward
# ---------------------------------------------------------------------------------------------------


def test_ffn_swapped_sizes_are_reported_by_the_weight_loader() -> None:
    class Swapped(FeedForward):
        def __init__(self, d_model, d_ff):
            super().__init__(d_ff, d_model)

    message = failure_message(checks.check_feed_forward, Swapped)
    assert "wrong shape: down_proj.weight: expected (8, 32), got (32, 8)" in message, message
    assert "wrong shape: up_proj.weight: expected (32, 8), got (8, 32)" in message, message


def test_ffn_layers_without_bias_are_named_as_such() -> None:
    class NoBias(FeedForward):
        def __init__(self, d_model, d_ff):
            super().__init__(d_model, d_ff)
            self.up_proj = nn.Linear(d_model, d_ff, bias=False)
            self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    message = failure_message(checks.check_feed_forward, NoBias)
    assert "missing: down_proj.bias, up_proj.bias" in message, message
    assert "`down_proj`, `up_proj` have no bias (built with bias=False?)" in message, message


# ---------------------------------------------------------------------------------------------------
# EncoderBlock and DecoderBlock
# ---------------------------------------------------------------------------------------------------


def test_encoder_gradient_of_x_is_checked() -> None:
    class Detached(EncoderBlock):
        def forward(self, x, mask=None):
            return super().forward(x.detach(), mask)

    message = failure_message(checks.check_encoder_block, Detached)
    assert "no gradient reaches x" in message and "case 2 of 3" in message, message


def test_encoder_wrong_submodule_names_are_reported() -> None:
    class Named(EncoderBlock):
        def __init__(self, d_model, n_heads, d_ff):
            super().__init__(d_model, n_heads, d_ff)
            self.norm1 = self.self_attn_norm
            del self.self_attn_norm

    message = failure_message(checks.check_encoder_block, Named)
    assert "missing: self_attn_norm.bias, self_attn_norm.weight" in message and "unexpected: norm1.bias" in message


def test_encoder_delegation_to_torch_is_refused() -> None:
    class Torch(EncoderBlock):
        def forward(self, x, mask=None):
            d_model = x.shape[-1]
            layer = nn.TransformerEncoderLayer(d_model, self.self_attn.n_heads, 4 * d_model, dropout=0.0, batch_first=True)
            return layer.to(x.dtype)(x)

    assert "calls torch.nn.TransformerEncoderLayer" in failure_message(checks.check_encoder_block, Torch)


def test_decoder_gradient_of_memory_is_checked() -> None:
    class Detached(DecoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            return super().forward(x, memory.detach(), self_mask, cross_mask)

    message = failure_message(checks.check_decoder_block, Detached)
    assert "no gradient reaches memory" in message and "case 2 of 3" in message, message


def test_decoder_without_cross_attention_module_is_reported() -> None:
    class NoCross(EncoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            return super().forward(x, self_mask)

    message = failure_message(checks.check_decoder_block, NoCross)
    assert "missing: cross_attn.k_proj.bias" in message and "cross_attn_norm.weight" in message, message


def test_decoder_delegation_to_torch_is_refused() -> None:
    class Torch(DecoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            d_model = x.shape[-1]
            layer = nn.TransformerDecoderLayer(d_model, self.self_attn.n_heads, 4 * d_model, dropout=0.0, batch_first=True)
            return layer.to(x.dtype)(x, memory)

    assert "calls torch.nn.TransformerDecoderLayer" in failure_message(checks.check_decoder_block, Torch)


# ---------------------------------------------------------------------------------------------------
# Errors and wrong objects
# ---------------------------------------------------------------------------------------------------


def module_broken(base: type) -> type:
    class Broken(base):
        def forward(self, *args, **kwargs):
            raise ValueError("an index went out of range")

    return Broken


@pytest.mark.parametrize("check,learner,case", [
    (checks.check_token_embedding, module_broken(TokenEmbedding), "vocab_size=10, d_model=16, ids [B=2, L=5], float32"),
    (checks.check_sinusoidal_position_encoding, broken, "n_positions=10, d_model=16, default dtype (float32)"),
    (checks.check_layer_norm, module_broken(LayerNorm), "x [B=2, L=5, d=4], float64, gradients of x, weight and bias"),
    (checks.check_add_and_norm, broken, "x and sublayer_output [B=2, L=3, d=8], float32"),
    (checks.check_feed_forward, module_broken(FeedForward), "x [B=2, L=3, d_model=8], d_ff=32, float32"),
    (checks.check_encoder_block, module_broken(EncoderBlock), "x [B=2, S=5, d_model=16], n_heads=4, d_ff=32, float32"),
    (checks.check_decoder_block, module_broken(DecoderBlock), "x [B=2, T=5, d_model=16], memory [B, S=5, d_model]"),
])
def test_errors_are_reported_with_the_case(check, learner, case: str) -> None:
    message = failure_message(check, learner)
    assert f"raised an error on case 1 of " in message and case in message, message
    assert "ValueError: an index went out of range" in message, message


def test_block_errors_name_the_learners_arguments() -> None:
    class ShapeSlip(DecoderBlock):
        def forward(self, x, memory, self_mask=None, cross_mask=None):
            return x @ memory

    message = failure_message(checks.check_decoder_block, ShapeSlip)
    assert "The inputs were: x [2, 5, 16] float32, memory [2, 5, 16] float32, self_mask [2, 1, 5, 5] bool" in message


def test_module_exercises_reject_an_instance() -> None:
    message = failure_message(checks.check_layer_norm, LayerNorm(4))
    assert "expected the class itself, got an instance of LayerNorm" in message, message
