"""Special cases of the checks of notebook 07_alibi_baichuan_bloom (the promises every exercise keeps are
generated from the registry in tests/test_exercise_contracts.py; the learners live in
tests/learners_ch05_alibi_baichuan.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from check_test_helpers import diagnosed, failure_message
from grader.checks.ch05 import alibi_baichuan as checks
from learners_ch05_alibi_baichuan import _Head, alibi_slopes, slopes_naive, z_loss_logsumexp


def test_the_notebook_imports_every_check() -> None:
    import grader.checks.ch05 as chapter

    for name in checks.__all__:
        assert getattr(chapter, name) is getattr(checks, name)


def test_slopes_as_a_python_list_or_in_float64_are_accepted() -> None:
    checks.check_alibi_slopes(lambda n: alibi_slopes(n).tolist())
    checks.check_alibi_slopes(lambda n: alibi_slopes(n).double(), hidden=True)


def test_reversed_naive_slopes_name_the_order_first() -> None:
    # Both mistakes at once: the power-of-two case shows only the order, so that one is named.
    message = failure_message(checks.check_alibi_slopes, lambda n: slopes_naive(n).flip(0))
    assert "case 1 of 5 (n_heads=8" in message
    assert diagnosed(message, checks.ALIBI_SLOPES.mistake("reversed").name)


def test_a_bias_without_the_query_offset_is_correct_when_the_mask_has_it() -> None:
    """Leaving the queries' offset out of the bias only shifts each row by a constant: the softmax ignores it."""

    def bias_from_zero(q, k, v, slopes):
        L, S = q.shape[-2], k.shape[-2]
        bias = -slopes.view(-1, 1, 1) * (torch.arange(L).view(-1, 1) - torch.arange(S)).to(q.dtype)
        future = torch.arange(S).view(1, -1) > torch.arange(S - L, S).view(-1, 1)
        scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias).masked_fill(future, -torch.inf)
        return scores.softmax(-1) @ v

    checks.check_alibi_attention(bias_from_zero)
    checks.check_alibi_attention(bias_from_zero, hidden=True)


def test_a_mask_without_the_offset_is_named_on_the_kv_cache_case() -> None:
    def top_left(q, k, v, slopes):
        L, S = q.shape[-2], k.shape[-2]
        distance = (torch.arange(L).view(-1, 1) - torch.arange(S)).to(q.dtype)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - slopes.view(-1, 1, 1) * distance
        return scores.masked_fill(distance < 0, -torch.inf).softmax(-1) @ v

    message = failure_message(checks.check_alibi_attention, top_left)
    assert "case 2 of 4" in message and "KV cache" in message
    assert diagnosed(message, checks.ALIBI_ATTENTION.mistake("causal_mask_not_offset").name)


def test_a_norm_from_sqrt_of_the_sum_of_squares_is_named_by_its_nan_gradient() -> None:
    class SqrtHead(_Head):
        def forward(self, x):
            lengths = self.weight.pow(2).sum(-1, keepdim=True).sqrt().clamp(min=1e-12)
            return F.linear(x, self.weight / lengths)

    message = failure_message(checks.check_norm_head, SqrtHead)
    assert "the gradient with respect to weight" in message and "NaN" in message
    assert diagnosed(message, checks.NORM_HEAD.mistake("no_eps").name)


def test_a_head_with_a_bias_is_a_structure_error() -> None:
    class HeadWithBias(nn.Linear):
        def __init__(self, hidden_size, vocab_size):
            super().__init__(hidden_size, vocab_size)

        def forward(self, x):
            return F.linear(x, F.normalize(self.weight, dim=-1), self.bias)

    message = failure_message(checks.check_norm_head, HeadWithBias)
    assert "unexpected: bias" in message


def test_palm_z_loss_with_palm_weight_is_named_as_logsumexp_first() -> None:
    def palm(logits, weight=1e-4, mask=None):
        return z_loss_logsumexp(logits, weight, mask)

    message = failure_message(checks.check_max_z_loss, palm)
    assert diagnosed(message, checks.MAX_Z_LOSS.mistake("logsumexp").name)
