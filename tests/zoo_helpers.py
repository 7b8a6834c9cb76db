"""Shared tools of the model-zoo parity tests: large random weights, logits comparison, a report.

At the default init std of 0.02 attention is almost uniform, so RoPE layout, scale and theta bugs
change the logits by only ~1e-3. Weights drawn with std 0.2 (and norm weights around 1) make such
bugs glaring while honest float32 agreement stays near 1e-6 of the largest logit.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PARITY_RESULTS: list[tuple[str, str, float]] = []


def randomize_(model: nn.Module, *, std: float = 0.2, seed: int = 0) -> nn.Module:
    """Redraw every parameter: weights ~ N(0, std), 1-D weights (norm scales) ~ 1 + N(0, std)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float32) * std
            is_scale = parameter.dim() == 1 and name.endswith("weight") and "embed" not in name
            parameter.copy_(1.0 + noise if is_scale else noise)
    return model


def relative_error(ours: Tensor, reference: Tensor, keep: Tensor | None = None) -> float:
    """max |ours − reference| / max |reference| over the positions where ``keep`` ([B, L]) is true."""
    if ours.shape != reference.shape:
        raise AssertionError(f"logits shapes differ: ours {tuple(ours.shape)} vs reference {tuple(reference.shape)}")
    if keep is not None:
        ours, reference = ours[keep.bool()], reference[keep.bool()]
    return float((ours - reference).abs().max() / reference.abs().max())


def assert_parity(name: str, oracle: str, ours: Tensor, reference: Tensor, keep: Tensor | None = None, *, tol: float = 1e-5) -> float:
    """Assert relative agreement within ``tol`` and record the error for the end-of-run table."""
    error = relative_error(ours.detach().float(), reference.detach().float(), keep)
    PARITY_RESULTS.append((name, oracle, error))
    assert error < tol, f"{name}: logits differ from {oracle} by {error:.2e} of max |logit| (tolerance {tol:.0e})"
    return error


def padded_batch(vocab_size: int, lengths: list[int], *, seed: int = 0, left: bool = False) -> tuple[Tensor, Tensor]:
    """Random ids ``[B, max(lengths)]`` (ids ≥ 1) and the matching 0/1 attention mask, right- or left-padded."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(1, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        if left:
            mask[row, width - length :] = 1
        else:
            mask[row, :length] = 1
    return ids * mask, mask
