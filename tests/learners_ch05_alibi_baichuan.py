"""Learner code for the exercises of notebook 07_alibi_baichuan_bloom, written as learners write it (never
llmcore's implementation of the exercise itself).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------------
# ALiBi slopes
# ---------------------------------------------------------------------------------------------------


def alibi_slopes(n_heads):
    def power_of_two_slopes(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two_slopes(closest)
    if closest < n_heads:
        slopes += power_of_two_slopes(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes)


def alibi_slopes_numpy(n_heads):
    """Exponents first, in numpy float64, then one power of two."""
    closest = 1 << (n_heads.bit_length() - 1)
    exponents = -8.0 * np.arange(1, closest + 1) / closest
    extra = -4.0 * np.arange(1, 2 * (n_heads - closest), 2) / closest
    return torch.from_numpy(np.exp2(np.concatenate([exponents, extra])))


def alibi_slopes_recursive(n_heads):
    """The original fairseq recursion, as a list."""
    def geometric(n):
        ratio = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [ratio * ratio**i for i in range(n)]

    if math.log2(n_heads).is_integer():
        return geometric(n_heads)
    closest = 2 ** math.floor(math.log2(n_heads))
    return geometric(closest) + alibi_slopes_recursive(2 * closest)[0::2][: n_heads - closest]


def slopes_naive(n_heads):
    return torch.tensor([2 ** (-8 * h / n_heads) for h in range(1, n_heads + 1)])


def slopes_extra_consecutive(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * h / closest) for h in range(1, closest + 1)]
    doubled = [2 ** (-8 * h / (2 * closest)) for h in range(1, 2 * closest + 1)]
    return torch.tensor(slopes + doubled[: n_heads - closest])


def slopes_extra_duplicates(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * h / closest) for h in range(1, closest + 1)]
    doubled = [2 ** (-8 * h / (2 * closest)) for h in range(1, 2 * closest + 1)]
    return torch.tensor(slopes + doubled[1::2][: n_heads - closest])


def slopes_extra_from_zero(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * h / closest) for h in range(1, closest + 1)]
    slopes += [2 ** (-4 * h / closest) for h in range(0, 2 * (n_heads - closest), 2)]
    return torch.tensor(slopes)


def slopes_extra_continued(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    return torch.tensor([2 ** (-8 * h / closest) for h in range(1, n_heads + 1)])


def slopes_ratio_from_n(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * h / n_heads) for h in range(1, closest + 1)]
    slopes += [2 ** (-4 * (2 * i + 1) / n_heads) for i in range(n_heads - closest)]
    return torch.tensor(slopes)


def slopes_starting_at_one(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    ratio = 2 ** (-8 / closest)
    slopes = [ratio**h for h in range(closest)]
    return torch.tensor(slopes + [2 ** (-4 * (2 * i + 1) / closest) for i in range(n_heads - closest)])


def slopes_sorted(n_heads):
    return alibi_slopes(n_heads).sort().values


def slopes_sorted_descending(n_heads):
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = [2 ** (-8 * h / closest) for h in range(1, closest + 1)]
    slopes += [2 ** (-4 * (2 * i + 1) / closest) for i in range(n_heads - closest)]
    return torch.tensor(sorted(slopes, reverse=True))


def alibi_slopes_as_numpy_array(n_heads):
    """numpy all the way, and the array returned as it is."""
    closest = 2 ** int(np.floor(np.log2(n_heads)))
    first = 2.0 ** (-8.0 * np.arange(1, closest + 1) / closest)
    extra = 2.0 ** (-4.0 * np.arange(1, 2 * (n_heads - closest), 2) / closest)
    return np.concatenate([first, extra])


# ---------------------------------------------------------------------------------------------------
# Causal attention with ALiBi
# ---------------------------------------------------------------------------------------------------


def alibi_attention_bias_without_grad(q, k, v, slopes):
    """The bias is a constant: built under no_grad, the causal mask folded into it."""
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    with torch.no_grad():
        q_pos, k_pos = torch.arange(S - L, S)[:, None], torch.arange(S)[None, :]
        bias = (-slopes.view(-1, 1, 1) * (q_pos - k_pos)).masked_fill(k_pos > q_pos, float("-inf"))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D) + bias, dim=-1) @ v


def alibi_attention_infinite_distance(q, k, v, slopes):
    """The future is infinitely far: −slopes · inf = −inf masks it (0 · inf would be NaN in a slopes gradient)."""
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    distance = (torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]).to(q.dtype)
    distance = distance.masked_fill(distance < 0, float("inf"))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D) - slopes.view(-1, 1, 1) * distance, -1) @ v


def alibi_attention(q, k, v, slopes):
    L, S, D = q.shape[-2], k.shape[-2], q.shape[-1]
    q_pos = torch.arange(S - L, S)
    k_pos = torch.arange(S)
    distance = q_pos[:, None] - k_pos[None, :]
    bias = -slopes[:, None, None] * distance
    scores = q @ k.transpose(-2, -1) / math.sqrt(D) + bias
    scores = scores.masked_fill(distance < 0, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def alibi_attention_einsum(q, k, v, slopes):
    """einsum, the bias from key positions only (BLOOM's form: a constant per row), a mask from triu."""
    L, S = q.shape[-2], k.shape[-2]
    scores = torch.einsum("bhld,bhsd->bhls", q, k) * q.shape[-1] ** -0.5
    scores = scores + slopes.view(1, -1, 1, 1) * torch.arange(S, dtype=q.dtype)
    future = torch.ones(L, S, dtype=torch.bool).triu(S - L + 1)
    weights = torch.where(future, torch.tensor(float("-inf"), dtype=q.dtype), scores).softmax(-1)
    return torch.einsum("bhls,bhsd->bhld", weights, v)


def alibi_attention_sdpa(q, k, v, slopes):
    """PyTorch's attention with the bias and the mask folded into one float mask."""
    L, S = q.shape[-2], k.shape[-2]
    rows = torch.arange(S - L, S, dtype=q.dtype).unsqueeze(-1)
    distance = rows - torch.arange(S, dtype=q.dtype)
    mask = (-distance * slopes.view(-1, 1, 1)).masked_fill(distance < 0, float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def attention_bias_positive(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + slopes[:, None, None] * distance
    return torch.softmax(scores.masked_fill(distance < 0, float("-inf")), dim=-1) @ v


def attention_bias_after_softmax(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(distance < 0, float("-inf")), dim=-1)
    weights = weights - slopes[:, None, None] * distance
    return weights @ v


def attention_mask_not_offset(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(L)[:, None] - torch.arange(S)[None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - slopes[:, None, None] * distance
    causal = torch.tril(torch.ones(L, S, dtype=torch.bool))
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1) @ v


def attention_no_mask(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - slopes[:, None, None] * distance
    return torch.softmax(scores, dim=-1) @ v


def attention_symmetric(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = (torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]).abs()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) - slopes[:, None, None] * distance
    return torch.softmax(scores, dim=-1) @ v


def attention_bias_scaled(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]
    scores = (q @ k.transpose(-2, -1) - slopes[:, None, None] * distance) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(distance < 0, float("-inf")), dim=-1) @ v


def attention_no_scale(q, k, v, slopes):
    L, S = q.shape[-2], k.shape[-2]
    distance = torch.arange(S - L, S)[:, None] - torch.arange(S)[None, :]
    scores = q @ k.transpose(-2, -1) - slopes[:, None, None] * distance
    return torch.softmax(scores.masked_fill(distance < 0, float("-inf")), dim=-1) @ v


# ---------------------------------------------------------------------------------------------------
# NormHead
# ---------------------------------------------------------------------------------------------------


class NormHead(nn.Module):
    """Baichuan 2's released head (Baichuan2-13B-Base/modeling_baichuan.py, class NormHead, 2023), the eval-mode
    overwrite included; tests/test_norm_head.py uses it as llmcore's oracle."""

    def __init__(self, hidden_size, vocab_size, bias=False):
        super().__init__()
        self.weight = nn.Parameter(torch.empty((vocab_size, hidden_size)))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.first_flag = True

    def forward(self, hidden_states):
        if self.training:
            norm_weight = nn.functional.normalize(self.weight)
            self.first_flag = True
        elif self.first_flag:
            self.first_flag = False
            self.weight.data = nn.functional.normalize(self.weight)
            norm_weight = self.weight
        else:
            norm_weight = self.weight
        return nn.functional.linear(hidden_states, norm_weight)


class NormHeadEinsum(nn.Module):
    """Row lengths from Tensor.norm, clamped, and an einsum."""

    def __init__(self, hidden_size, vocab_size):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(vocab_size, hidden_size) / hidden_size**0.5)

    def forward(self, hidden_states):
        lengths = self.weight.norm(p=2, dim=1, keepdim=True).clamp(min=1e-12)
        return torch.einsum("...d,vd->...v", hidden_states, self.weight / lengths)


class NormHeadMatmul(nn.Module):
    """vector_norm and a matmul with the transposed normalised weight."""

    def __init__(self, hidden_size, vocab_size):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(vocab_size, hidden_size))

    def forward(self, x):
        norms = torch.linalg.vector_norm(self.weight, dim=-1, keepdim=True)
        unit_rows = self.weight / torch.maximum(norms, torch.full_like(norms, 1e-12))
        return x @ unit_rows.T


class _Head(nn.Module):
    def __init__(self, hidden_size, vocab_size):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size))
        nn.init.normal_(self.weight, std=0.02)


class NormHeadColumns(_Head):
    def forward(self, x):
        return F.linear(x, F.normalize(self.weight, dim=0))


class NormHeadOnce(_Head):
    def __init__(self, hidden_size, vocab_size):
        super().__init__(hidden_size, vocab_size)
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight, dim=-1))

    def forward(self, x):
        return F.linear(x, self.weight)


class NormHeadWholeMatrix(_Head):
    def forward(self, x):
        return F.linear(x, self.weight / self.weight.norm())


class NormHeadCosine(_Head):
    def forward(self, x):
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))


class NormHeadNoGrad(_Head):
    def forward(self, x):
        with torch.no_grad():
            w = F.normalize(self.weight, dim=-1)
        return x @ w.t()


class NormHeadOverwrite(_Head):
    def forward(self, x):
        self.weight.data = F.normalize(self.weight.data, dim=-1)
        return F.linear(x, self.weight)


class NormHeadDetachedNorm(_Head):
    def forward(self, x):
        norm = self.weight.norm(dim=-1, keepdim=True).detach()
        return F.linear(x, self.weight / norm.clamp_min(1e-12))


class NormHeadNoEps(_Head):
    def forward(self, x):
        return F.linear(x, self.weight / self.weight.norm(dim=-1, keepdim=True))


# ---------------------------------------------------------------------------------------------------
# max-z loss
# ---------------------------------------------------------------------------------------------------


def max_z_loss(logits, weight=2e-4, mask=None):
    z = logits.max(dim=-1).values
    if mask is None:
        return weight * (z**2).mean()
    mask = mask.to(z.dtype)
    return weight * (z**2 * mask).sum() / mask.sum().clamp(min=1)


def z_loss_padding_minus_inf(logits, weight=2e-4, mask=None):
    if mask is not None:
        logits = logits.masked_fill(~mask.bool()[..., None], float("-inf"))
    z = logits.amax(dim=-1)
    if mask is None:
        return weight * (z**2).mean()
    return weight * (z**2 * mask).sum() / mask.sum().clamp(min=1)


def max_z_loss_where(logits, weight=2e-4, mask=None):
    """Padding selected away with boolean indexing; no real token at all returns a zero."""
    squared = logits.amax(-1).square()
    if mask is not None:
        squared = squared[mask.bool()]
    if squared.numel() == 0:
        return logits.sum() * 0.0
    return squared.mean() * weight


def max_z_loss_sorted(logits, weight=0.0002, mask=None):
    """The largest logit from a sort, the mean as a weighted average."""
    z = logits.sort(dim=-1).values[..., -1]
    keep = torch.ones_like(z) if mask is None else mask.to(z.dtype)
    return weight * torch.sum(keep * z * z) / max(keep.sum().item(), 1.0)


def z_loss_logsumexp(logits, weight=2e-4, mask=None):
    z = torch.logsumexp(logits, dim=-1)
    if mask is None:
        return weight * (z**2).mean()
    return weight * (z**2 * mask).sum() / mask.sum().clamp(min=1)


def z_loss_palm_weight(logits, weight=1e-4, mask=None):
    return max_z_loss(logits, weight, mask)


def z_loss_sum(logits, weight=2e-4, mask=None):
    z = logits.max(dim=-1).values
    if mask is not None:
        z = z * mask
    return weight * (z**2).sum()


def z_loss_ignores_mask(logits, weight=2e-4, mask=None):
    return weight * (logits.max(dim=-1).values ** 2).mean()


def z_loss_mean_over_everything(logits, weight=2e-4, mask=None):
    squared = logits.max(dim=-1).values ** 2
    if mask is not None:
        squared = squared * mask
    return weight * squared.mean()


def z_loss_not_squared(logits, weight=2e-4, mask=None):
    z = logits.max(dim=-1).values
    if mask is None:
        return weight * z.mean()
    return weight * (z * mask).sum() / mask.sum().clamp(min=1)


def z_loss_abs(logits, weight=2e-4, mask=None):
    z = logits.abs().max(dim=-1).values
    if mask is None:
        return weight * (z**2).mean()
    return weight * (z**2 * mask).sum() / mask.sum().clamp(min=1)


def z_loss_global_max(logits, weight=2e-4, mask=None):
    z = logits.max()
    return weight * z**2


def z_loss_max_dim1(logits, weight=2e-4, mask=None):
    z = logits.max(dim=1).values
    if mask is None:
        return weight * (z**2).mean()
    return weight * (z**2 * mask).sum() / mask.sum().clamp(min=1)


def z_loss_divides_by_zero(logits, weight=2e-4, mask=None):
    z = logits.max(dim=-1).values
    if mask is None:
        return weight * (z**2).mean()
    return weight * (z**2 * mask).sum() / mask.sum()


CORRECT = {
    "alibi_slopes": [alibi_slopes, alibi_slopes_numpy, alibi_slopes_recursive, alibi_slopes_as_numpy_array],
    "alibi_attention": [alibi_attention, alibi_attention_einsum, alibi_attention_sdpa,
                        alibi_attention_bias_without_grad, alibi_attention_infinite_distance],
    "norm_head": [NormHead, NormHeadEinsum, NormHeadMatmul],
    "max_z_loss": [max_z_loss, max_z_loss_where, max_z_loss_sorted],
}

MISTAKES = {
    "alibi_slopes": {
        "naive_geometric": slopes_naive,
        "extra_consecutive": slopes_extra_consecutive,
        "extra_duplicates": slopes_extra_duplicates,
        "extra_from_power_zero": slopes_extra_from_zero,
        "extra_continued": slopes_extra_continued,
        "ratio_from_n": slopes_ratio_from_n,
        "starts_at_one": slopes_starting_at_one,
        "reversed": slopes_sorted,
        "sorted_descending": slopes_sorted_descending,
    },
    "alibi_attention": {
        "bias_positive": attention_bias_positive,
        "bias_after_softmax": attention_bias_after_softmax,
        "causal_mask_not_offset": attention_mask_not_offset,
        "no_causal_mask": attention_no_mask,
        "symmetric_no_mask": attention_symmetric,
        "bias_scaled": attention_bias_scaled,
        "no_scale": attention_no_scale,
    },
    "norm_head": {
        "columns_normalised": NormHeadColumns,
        "normalised_once": NormHeadOnce,
        "whole_matrix_norm": NormHeadWholeMatrix,
        "hidden_normalised": NormHeadCosine,
        "normalised_without_grad": NormHeadNoGrad,
        "weight_overwritten": NormHeadOverwrite,
        "norm_detached": NormHeadDetachedNorm,
        "no_eps": NormHeadNoEps,
    },
    "max_z_loss": {
        "logsumexp": z_loss_logsumexp,
        "palm_weight": z_loss_palm_weight,
        "sum_not_mean": z_loss_sum,
        "padding_included": z_loss_ignores_mask,
        "divided_by_all_positions": z_loss_mean_over_everything,
        "not_squared": z_loss_not_squared,
        "abs_max": z_loss_abs,
        "global_max": z_loss_global_max,
        "max_over_positions": z_loss_max_dim1,
        "nan_without_real_tokens": z_loss_divides_by_zero,
        "padding_minus_inf": z_loss_padding_minus_inf,
    },
}
