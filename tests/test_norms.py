"""llmcore.norms against independent oracles: RMSNorm (and Gemma's unit-offset variant) against its closed form
x / sqrt(mean(x²) + eps) · w written out in float64 and against transformers' LlamaRMSNorm and GemmaRMSNorm, and
LayerNorm (function and module, values and gradients) against torch.nn.functional.layer_norm, torch.nn.LayerNorm with
copied weights, and a hand-computed case.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmcore.norms import LayerNorm, RMSNorm, layer_norm, rms_norm

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]


def randn(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------------
# RMSNorm
# --------------------------------------------------------------------------------------------------


def test_rms_norm_matches_the_formula():
    x = torch.randn(3, 5, 16, dtype=torch.float64)
    weight = torch.randn(16, dtype=torch.float64)
    expected = x / torch.sqrt((x**2).mean(-1, keepdim=True) + 1e-6) * weight
    torch.testing.assert_close(rms_norm(x, weight, 1e-6), expected)
    torch.testing.assert_close(rms_norm(x, weight, 1e-6, unit_offset=True), expected / weight * (1 + weight))


def test_rms_norm_keeps_eps_inside_the_root_and_does_not_centre():
    x = torch.full((1, 4), 1e-3, dtype=torch.float64)
    out = rms_norm(x, None, eps=1e-6)
    assert out[0, 0].item() == pytest.approx(1e-3 / math.sqrt(1e-6 + 1e-6))


def test_rms_norm_half_precision_computes_in_float32():
    x = torch.randn(4, 64) * 300
    out = RMSNorm(64).to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rms_norm(x, torch.ones(64)), atol=2e-2, rtol=1e-2)


def test_gemma_norm_is_identity_scaled_at_init():
    norm = RMSNorm(8, unit_offset=True)
    x = torch.randn(2, 8)
    torch.testing.assert_close(norm(x), rms_norm(x, None, norm.eps))


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


# --------------------------------------------------------------------------------------------------
# RMSNorm against transformers (the independent oracle of chapter 5's exercise)
# --------------------------------------------------------------------------------------------------

# LlamaRMSNorm normalises in float32 whatever the input, so a float64 input differs from ours (computed in float64)
# by float32 rounding; half inputs agree to the last bit because both compute in float32 and cast back.
ORACLE_TOLERANCE = {torch.float32: dict(atol=1e-6, rtol=1e-6), torch.float64: dict(atol=1e-6, rtol=1e-6),
                    torch.bfloat16: dict(atol=0, rtol=0), torch.float16: dict(atol=0, rtol=0)}


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1.0), (torch.float64, 1.0), (torch.bfloat16, 4.0),
                                          (torch.float16, 300.0)])
def test_rms_norm_matches_transformers_llama_rms_norm(dtype, scale):
    """float16 at scale 300: x² overflows float16, so only a float32 statistic gives finite, equal results."""
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    oracle = llama.LlamaRMSNorm(24, eps=1e-5)
    with torch.no_grad():
        oracle.weight.copy_(randn(24, seed=1) * 0.3 + 1.0)
    ours = RMSNorm(24, eps=1e-5)
    ours.load_state_dict(oracle.state_dict())
    oracle.to(dtype)
    ours.to(dtype)
    x = (randn(2, 7, 24, seed=2) * scale).to(dtype)
    with torch.no_grad():
        expected, got = oracle(x), ours(x)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected, **ORACLE_TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_unit_offset_rms_norm_matches_transformers_gemma_rms_norm(dtype):
    gemma = pytest.importorskip("transformers.models.gemma.modeling_gemma")
    oracle = gemma.GemmaRMSNorm(24, eps=1e-6)
    with torch.no_grad():
        oracle.weight.copy_(randn(24, seed=3) * 0.3)
    ours = RMSNorm(24, eps=1e-6, unit_offset=True)
    ours.load_state_dict(oracle.state_dict())
    oracle.to(dtype)
    ours.to(dtype)
    x = (randn(3, 5, 24, seed=4) * 3).to(dtype)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), oracle(x), **ORACLE_TOLERANCE[dtype])
