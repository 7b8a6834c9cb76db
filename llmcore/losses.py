"""Training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cross_entropy", "next_token_loss", "max_z_loss"]


def cross_entropy(
    logits: Tensor, targets: Tensor, *, label_smoothing: float = 0.0, ignore_index: int = -100
) -> Tensor:
    """Token-level cross-entropy (交叉熵) with label smoothing (标签平滑), averaged over real tokens.

    With smoothing ε the target distribution puts ``1 − ε`` on the right token and spreads ``ε``
    uniformly over all ``V`` classes (the right one included), the convention of
    ``torch.nn.functional.cross_entropy``; the 2017 model used ε = 0.1. Positions whose target is
    ``ignore_index`` (padding) contribute nothing, neither to the sum nor to the count.

    Args:
        logits: ``[..., V]`` unnormalised scores.
        targets: ``[...]`` integer class ids.

    Returns:
        Scalar mean loss over non-ignored positions (0 if there are none). Computed in float32 or wider.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} disagree: expected logits [..., V] and targets [...]")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    log_probs = torch.log_softmax(logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits, dim=-1)
    keep = targets != ignore_index
    safe_targets = targets.masked_fill(~keep, 0)
    nll = -log_probs.gather(-1, safe_targets.unsqueeze(-1)).squeeze(-1)
    smooth = -log_probs.mean(dim=-1)
    per_token = (1.0 - label_smoothing) * nll + label_smoothing * smooth
    return (per_token * keep).sum() / keep.sum().clamp(min=1)


def next_token_loss(
    logits: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None, *, ignore_index: int = -100
) -> Tensor:
    """The language-modelling loss (下一个词预测): position ``t`` predicts token ``t + 1``.

    Mean cross-entropy over every position that has a real next token. The *targets* are shifted
    (``input_ids[:, 1:]``, then ``ignore_index`` for the last position) rather than the logits, so the
    ``[B, L, V]`` logits are never copied, and the product runs in PyTorch's fused cross-entropy.

    Args:
        logits: ``[B, L, V]`` from a causal language model.
        input_ids: ``[B, L]`` the model's input; tokens equal to ``ignore_index`` are not predicted.
        attention_mask: ``[B, L]``, 0/False at padding, which is not predicted either.

    Returns:
        Scalar mean loss (float32 or wider); ``nan`` when nothing is left to predict, as
        ``torch.nn.functional.cross_entropy`` gives.
    """
    if logits.dim() != 3 or logits.shape[:2] != input_ids.shape:
        raise ValueError(f"expected logits [B, L, V] and input_ids [B, L], got {tuple(logits.shape)} and {tuple(input_ids.shape)}")
    targets = input_ids
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
        targets = targets.masked_fill(~attention_mask.bool(), ignore_index)
    targets = F.pad(targets[:, 1:], (0, 1), value=ignore_index)
    wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    return F.cross_entropy(wide.reshape(-1, wide.shape[-1]), targets.reshape(-1), ignore_index=ignore_index)


def max_z_loss(logits: Tensor, weight: float = 2e-4, *, mask: Tensor | None = None) -> Tensor:
    """Baichuan 2's max-z loss (最大 z 损失; Baichuan 2 report §2.5): ``weight · mean((max_v logits)²)``.

    Added to the cross-entropy during pre-training, it keeps the largest logit near zero. The softmax
    ignores a shift of all logits, but a repetition penalty that divides logits by a constant does
    not, so very large logits made generation sensitive to that setting; small logits also stabilise
    training. It is a cousin of PaLM's z-loss, which squares the log-partition ``log Σ exp(logits)``
    instead of the maximum.

    Reduction: the mean over positions, as Baichuan's ``modeling_baichuan.py`` computes it
    (``shift_logits.max(-1).values ** 2`` then ``.mean()``, padding included). Pass ``mask`` (``[...]``,
    true = real token) to average over real tokens only; zero real tokens give 0.

    Args:
        logits: ``[..., V]`` unnormalised scores.
        weight: the coefficient, ``2e-4`` in the report.

    Returns:
        Scalar loss, computed in float32 or wider.
    """
    if mask is not None and mask.shape != logits.shape[:-1]:
        raise ValueError(f"mask {tuple(mask.shape)} must match logits {tuple(logits.shape)} without the last dim")
    wide = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    squared_max = wide.amax(dim=-1).square()
    if mask is None:
        return weight * squared_max.mean()
    keep = mask.bool()
    return weight * (squared_max * keep).sum() / keep.sum().clamp(min=1)
