"""llmcore.models.NormHead against Baichuan 2's released head (``modeling_baichuan.py``, transcribed as
``learners_ch05_alibi_baichuan.NormHead``, the oracle here; Baichuan's remote code is not installed): the same
logits and weight gradient in training, the same logits in evaluation, and the one difference llmcore declares:
it never overwrites its weight.
"""
from __future__ import annotations

import torch

from learners_ch05_alibi_baichuan import NormHead as BaichuanNormHead
from llmcore.models import NormHead


def _pair(vocab=11, hidden=6):
    torch.manual_seed(0)
    ours = NormHead(hidden, vocab, bias=False).double()
    oracle = BaichuanNormHead(hidden, vocab).double()
    with torch.no_grad():
        ours.weight.copy_(torch.randn(vocab, hidden, dtype=torch.float64) * torch.logspace(-1, 1, vocab).view(-1, 1).double())
        ours.weight[3] = 0.0
        oracle.weight.copy_(ours.weight)
    return ours, oracle


def test_training_logits_and_weight_gradient_match_baichuan():
    ours, oracle = _pair()
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    upstream = torch.randn(2, 5, 11, dtype=torch.float64)
    for module in (ours, oracle):
        module.train()
        (module(x) * upstream).sum().backward()
    torch.testing.assert_close(ours(x), oracle(x), rtol=0, atol=1e-12)
    torch.testing.assert_close(ours.weight.grad, oracle.weight.grad, rtol=1e-12, atol=0)
    # A zero row (a token never trained) gives logits 0, not NaN.
    assert bool((ours(x)[..., 3] == 0).all())


def test_eval_logits_match_and_only_baichuan_overwrites_its_weight():
    ours, oracle = _pair()
    before = ours.weight.detach().clone()
    x = torch.randn(4, 6, dtype=torch.float64)
    ours.eval(), oracle.eval()
    torch.testing.assert_close(ours(x), oracle(x), rtol=0, atol=1e-12)
    assert torch.equal(ours.weight, before)
    assert not torch.allclose(oracle.weight, before)
    torch.testing.assert_close(oracle.weight.norm(dim=-1)[[0, 1, 2, 4]], torch.ones(4, dtype=torch.float64))
    # The quirk: a weight changed while in eval mode is used as it is by Baichuan's head, normalised by llmcore's.
    with torch.no_grad():
        ours.weight.mul_(3.0), oracle.weight.mul_(3.0)
    torch.testing.assert_close(oracle(x), 3.0 * ours(x), rtol=1e-12, atol=1e-12)
