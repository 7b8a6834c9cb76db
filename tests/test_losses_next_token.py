"""next_token_loss: position t predicts token t+1; padding and ignore_index are not predicted."""

from __future__ import annotations

import math

import pytest
import torch

from llmcore.losses import next_token_loss


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
