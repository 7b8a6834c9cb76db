"""GLM's span sampler and the DeepNorm residual (llmcore.data.glm_infilling.sample_glm_spans,
llmcore.deepnorm), against closed forms and scipy's Poisson distribution."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from llmcore.data.glm_infilling import blank_infilling, glm_span_length_probabilities, sample_glm_spans
from llmcore.deepnorm import deepnet_decoder_alpha, deepnorm_alpha, deepnorm_residual
from llmcore.models import build


def test_span_length_probabilities_are_scipys_truncated_poisson():
    k = list(range(1, 40))
    pmf = torch.tensor(stats.poisson.pmf(k, 3.0), dtype=torch.float64)
    torch.testing.assert_close(glm_span_length_probabilities(), pmf / pmf.sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("length", [1, 7, 40, 256])
def test_spans_cover_the_budget_without_overlap(length):
    generator = torch.Generator().manual_seed(length)
    for _ in range(50):
        spans = sample_glm_spans(length, generator)
        assert sum(end - start for start, end in spans) == max(1, round(0.15 * length))
        assert all(0 <= start < end <= length for start, end in spans)
        assert all(a_end < b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))  # a kept token between
        blank_infilling(list(range(length)), spans, mask_token_id=-1, start_token_id=-2, end_token_id=-3)


def test_span_lengths_follow_the_truncated_poisson_where_the_budget_does_not_cut_them():
    # With a budget of 150 tokens, a span is cut only when it is the last one; the others are raw draws.
    generator = torch.Generator().manual_seed(0)
    lengths = []
    for _ in range(300):
        lengths += [end - start for start, end in sample_glm_spans(1000, generator)][:-1]
    observed = torch.bincount(torch.tensor(lengths), minlength=40)[1:40].double()
    expected = glm_span_length_probabilities() * observed.sum()
    mean = sum(lengths) / len(lengths)
    truncated_mean = float((torch.arange(1, 40) * glm_span_length_probabilities()).sum())
    assert truncated_mean == pytest.approx(3 / (1 - math.exp(-3)), rel=1e-9)  # E[K | K ≥ 1], the tail is negligible
    assert mean == pytest.approx(truncated_mean, rel=0.05)
    pooled = torch.cat([observed[:7], observed[7:].sum(0, keepdim=True)])
    pooled_expected = torch.cat([expected[:7], expected[7:].sum(0, keepdim=True)])
    assert stats.chisquare(pooled.numpy(), pooled_expected.numpy()).pvalue > 1e-3


def test_span_sampling_is_reproducible_from_the_generator():
    first = sample_glm_spans(100, torch.Generator().manual_seed(3))
    assert sample_glm_spans(100, torch.Generator().manual_seed(3)) == first


def test_deepnorm_alphas_published_values():
    assert deepnorm_alpha(28) == pytest.approx(7.4833, abs=1e-4)     # ChatGLM-6B: (2 * 28) ** 0.5
    assert deepnorm_alpha(70) == pytest.approx(11.8322, abs=1e-4)    # GLM-130B
    assert deepnet_decoder_alpha(28) == pytest.approx(2.7356, abs=1e-4)


def test_deepnorm_residual_by_hand_and_inside_the_zoo_layer():
    x = torch.tensor([[1.0, 3.0]])
    # LayerNorm without affine maps [1, 3] to [-1, 1] (up to eps); the sublayer doubles its input.
    out = deepnorm_residual(x, lambda h: 2 * h, torch.nn.LayerNorm(2, elementwise_affine=False, eps=0.0), alpha=3.0)
    torch.testing.assert_close(out, torch.tensor([[-5.0, 5.0]]))
    # The zoo's ChatGLM layer (block="deepnorm") computes each sublayer by the same rule.
    model = build("tiny-chatglm").double().eval()
    layer = model.layers[0]
    h = torch.randn(1, 5, 64, dtype=torch.float64)
    attention = lambda n: layer.self_attn(n, is_causal=True)  # noqa: E731
    expected_after_attention = deepnorm_residual(h, attention, layer.self_attn_norm, model.config.residual_alpha)
    expected = deepnorm_residual(expected_after_attention, layer.ffn, layer.ffn_norm, model.config.residual_alpha)
    torch.testing.assert_close(layer(h, is_causal=True), expected, rtol=1e-12, atol=1e-12)
