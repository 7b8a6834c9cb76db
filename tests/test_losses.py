"""llmcore.losses against independent oracles: cross_entropy (label smoothing, ignore_index, values and gradients)
against torch.nn.functional.cross_entropy and a hand-computed vocabulary of three, and next_token_loss (position t
predicts token t+1; padding and ignore_index are not predicted) against a plain-Python loop over the pairs.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from llmcore import cross_entropy
from llmcore.losses import next_token_loss

TOLERANCE = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float64: dict(atol=1e-10, rtol=1e-10)}
DTYPES = [torch.float32, torch.float64]
PAD = 0


# --------------------------------------------------------------------------------------------------
# Cross-entropy
# --------------------------------------------------------------------------------------------------


def test_cross_entropy_hand_computed_vocab_of_three():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]], dtype=torch.float64)
    targets = torch.tensor([2, 0, -100])
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))          # 3.40760596...
    log_p = [1 - lse, 2 - lse, 3 - lse]
    row_0 = 0.9 * -log_p[2] + 0.1 * -(sum(log_p) / 3)                 # 0.9·0.4076 + 0.1·1.4076
    row_1 = math.log(3)                                               # uniform: nll = smooth = log 3
    expected = (row_0 + row_1) / 2                                    # the ignored row counts for nothing
    assert row_0 == pytest.approx(0.5076059644, abs=1e-9)
    assert cross_entropy(logits, targets, label_smoothing=0.1).item() == pytest.approx(expected, abs=1e-12)
    assert cross_entropy(logits[:1], targets[:1]).item() == pytest.approx(lse - 3, abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.35, 1.0])
@pytest.mark.parametrize("ignore_index", [-100, 0])
def test_cross_entropy_matches_torch_on_sequences(dtype, label_smoothing, ignore_index):
    logits = 2 * torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    targets = torch.randint(0, 7, (3, 5), generator=torch.Generator().manual_seed(1))
    targets[0, 3:] = ignore_index
    targets[2, 0] = ignore_index
    expected = F.cross_entropy(
        logits.transpose(1, 2), targets, label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    actual = cross_entropy(logits, targets, label_smoothing=label_smoothing, ignore_index=ignore_index)
    torch.testing.assert_close(actual, expected, **TOLERANCE[dtype])


def test_cross_entropy_gradient_matches_torch():
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 4, -100, 2, 2, -100])
    ours = torch.autograd.grad(cross_entropy(logits, targets, label_smoothing=0.2), logits)[0]
    theirs = torch.autograd.grad(F.cross_entropy(logits, targets, label_smoothing=0.2), logits)[0]
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-10)


def test_cross_entropy_half_precision_is_computed_in_float32():
    logits = torch.randn(4, 9, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    targets = torch.tensor([1, 2, 3, 8])
    loss = cross_entropy(logits, targets, label_smoothing=0.1)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(logits.float(), targets, label_smoothing=0.1))


def test_cross_entropy_of_an_all_ignored_batch_is_zero():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = cross_entropy(logits, torch.full((2, 3), PAD), ignore_index=PAD, label_smoothing=0.1)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 3, 4))


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="disagree"):
        cross_entropy(torch.zeros(6, 5), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), label_smoothing=1.5)


# --------------------------------------------------------------------------------------------------
# Next-token loss
# --------------------------------------------------------------------------------------------------


def _naive(logits: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Average of −log p(ids[b, t+1] | logits[b, t]) over pairs whose target is a real token."""
    terms = []
    for b in range(ids.shape[0]):
        for t in range(ids.shape[1] - 1):
            if keep[b, t + 1]:
                log_probs = logits[b, t].double().log_softmax(-1)
                terms.append(-log_probs[ids[b, t + 1]])
    return torch.stack(terms).mean()


def test_uniform_logits_give_log_vocab():
    ids = torch.tensor([[1, 2, 3, 4]])
    assert next_token_loss(torch.zeros(1, 4, 10), ids).item() == pytest.approx(math.log(10))


def test_hand_worked_two_token_case():
    # One prediction: from position 0 the target is token 1; p(1) = e² / (e² + 2).
    logits = torch.tensor([[[0.0, 2.0, 0.0], [5.0, 5.0, 5.0]]])
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))
    assert next_token_loss(logits, torch.tensor([[0, 1]])).item() == pytest.approx(expected, rel=1e-6)


def test_matches_a_loop_with_padding_and_ignored_targets():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 6, 11, generator=generator)
    ids = torch.randint(0, 11, (3, 6), generator=generator)
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 2:] = 0
    loss = next_token_loss(logits, ids, mask)
    assert loss.item() == pytest.approx(_naive(logits, ids, mask.bool()).item(), rel=1e-6)
    ignored = ids.clone()
    ignored[0, 3] = -100
    keep = ignored != -100
    assert next_token_loss(logits, ignored).item() == pytest.approx(_naive(logits, ids, keep).item(), rel=1e-6)


def test_half_precision_is_computed_in_float32():
    logits = torch.randn(2, 5, 7).to(torch.bfloat16)
    ids = torch.randint(0, 7, (2, 5))
    loss = next_token_loss(logits, ids)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_naive(logits.float(), ids, torch.ones(2, 5, dtype=torch.bool)).item(), rel=1e-6)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="logits"):
        next_token_loss(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        next_token_loss(torch.zeros(1, 4, 3), torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 3))
