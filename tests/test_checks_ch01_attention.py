"""The checks of notebook 01_attention, exercised with learner code written here (never llmcore's).

For every check: a correct implementation passes the visible and the hidden cases; each known
mistake, written as a learner would write it, is diagnosed by name; delegating to llmcore's or
PyTorch's implementation of the same exercise is refused; the release stub reads "not implemented
yet"; any other exception is reported with the case that raised it.
"""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from grader.checks.ch01 import attention as checks
from check_test_helpers import broken, diagnosed, failure_message, stub
from grader.checks.framework import CheckFailure










# ---------------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# ---------------------------------------------------------------------------------------------------


def sdpa(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        weights = scores.softmax(dim=-1)
    else:
        sees_a_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
        weights = scores.softmax(dim=-1).masked_fill(~sees_a_key, 0.0)
    return weights @ v, weights


def sdpa_nan_on_empty_rows(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def _sdpa_scaled_by(divisor: Callable[[Tensor, Tensor], float]):
    def learner(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / divisor(q, k)
        if mask is not None:
            sees_a_key = mask.any(dim=-1, keepdim=True)
            scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
        weights = scores.softmax(dim=-1)
        if mask is not None:
            weights = weights.masked_fill(~sees_a_key, 0.0)
        return weights @ v, weights

    return learner


def sdpa_mask_after_softmax(q, k, v, mask=None):
    weights = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


def sdpa_fill_zero(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, 0.0)
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sdpa_true_means_blocked(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        weights = scores.softmax(dim=-1)
    else:
        sees_a_key = (~mask).any(dim=-1, keepdim=True)
        scores = scores.masked_fill(mask & sees_a_key, float("-inf"))
        weights = scores.softmax(dim=-1).masked_fill(~sees_a_key, 0.0)
    return weights @ v, weights


def sdpa_softmax_over_queries(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is None:
        weights = scores.softmax(dim=-2)
    else:
        sees_a_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
        weights = scores.softmax(dim=-2).masked_fill(~sees_a_key, 0.0)
    return weights @ v, weights


def sdpa_swapped(q, k, v, mask=None):
    output, weights = sdpa(q, k, v, mask)
    return weights, output


SDPA_MISTAKE_LEARNERS = {
    "a query whose keys are all masked gives NaN": sdpa_nan_on_empty_rows,
    "the 1/√d_k scale is missing": _sdpa_scaled_by(lambda q, k: 1.0),
    "the scores are divided by d_k instead of √d_k": _sdpa_scaled_by(lambda q, k: q.shape[-1]),
    "the scores are scaled by √(number of keys) instead of √d_k": _sdpa_scaled_by(lambda q, k: math.sqrt(k.shape[-2])),
    "the mask is applied after the softmax": sdpa_mask_after_softmax,
    "masked scores are filled with 0 instead of −∞": sdpa_fill_zero,
    "the mask is inverted": sdpa_true_means_blocked,
    "the softmax runs over the wrong dimension": sdpa_softmax_over_queries,
    "output and weights are returned in the wrong order": sdpa_swapped,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_sdpa_correct_learner_passes(hidden: bool) -> None:
    checks.check_scaled_dot_product_attention(sdpa, hidden=hidden)  # raises CheckFailure when wrong


def test_every_sdpa_mistake_has_a_learner() -> None:
    assert set(SDPA_MISTAKE_LEARNERS) == {m.name for m in checks.SDPA_MISTAKES}


@pytest.mark.parametrize("name", list(SDPA_MISTAKE_LEARNERS))
def test_sdpa_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_scaled_dot_product_attention, SDPA_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_sdpa_delegation_to_llmcore_is_refused() -> None:
    def delegate(q, k, v, mask=None):
        return llmcore.scaled_dot_product_attention(q, k, v, mask, return_weights=True)

    message = failure_message(checks.check_scaled_dot_product_attention, delegate)
    assert "calls llmcore.scaled_dot_product_attention" in message


def test_sdpa_delegation_to_torch_is_refused() -> None:
    def delegate(q, k, v, mask=None):
        _, weights = sdpa(q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights

    message = failure_message(checks.check_scaled_dot_product_attention, delegate)
    assert "calls torch.nn.functional.scaled_dot_product_attention" in message


def test_sdpa_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_scaled_dot_product_attention, stub)
    message = failure_message(checks.check_scaled_dot_product_attention, broken)
    assert "raised ValueError on the case B=1, H=1, L=S=3, D=4, float64, no mask" in message


# ---------------------------------------------------------------------------------------------------
# causal_mask_mod
# ---------------------------------------------------------------------------------------------------


def causal_mask_mod(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


CAUSAL_MISTAKE_LEARNERS = {
    "the causal mask is strict: a token cannot see itself": lambda b, h, q_idx, kv_idx: kv_idx < q_idx,
    "the causal mask is transposed: each token sees the future instead of the past": (
        lambda b, h, q_idx, kv_idx: q_idx <= kv_idx
    ),
    "the causal mask is inverted (True where attention is forbidden)": lambda b, h, q_idx, kv_idx: kv_idx > q_idx,
}


@pytest.mark.parametrize("hidden", [False, True])
def test_causal_correct_learner_passes(hidden: bool) -> None:
    checks.check_causal_mask_mod(causal_mask_mod, hidden=hidden)  # raises CheckFailure when wrong


def test_causal_lower_triangle_by_indexing_passes() -> None:
    """Indexing a precomputed triangle with the index tensors is a legitimate mask_mod."""
    triangle = torch.ones(64, 64, dtype=torch.bool).tril()
    checks.check_causal_mask_mod(lambda b, h, q_idx, kv_idx: triangle[q_idx, kv_idx])  # raises CheckFailure when wrong


def test_every_causal_mistake_has_a_learner() -> None:
    assert set(CAUSAL_MISTAKE_LEARNERS) == {m.name for m in checks.CAUSAL_MISTAKES}


@pytest.mark.parametrize("name", list(CAUSAL_MISTAKE_LEARNERS))
def test_causal_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_causal_mask_mod, CAUSAL_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_causal_python_logic_gets_a_hint() -> None:
    def with_python_if(b, h, q_idx, kv_idx):
        if kv_idx <= q_idx:
            return torch.tensor(True)
        return torch.tensor(False)

    message = failure_message(checks.check_causal_mask_mod, with_python_if)
    assert "Python truth value" in message and "`&`" in message


def test_causal_integer_result_is_reported_with_the_case() -> None:
    message = failure_message(checks.check_causal_mask_mod, lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx).long())
    assert "raised TypeError on the case B=1, H=1, L=S=4" in message and "boolean" in message


@pytest.mark.parametrize(
    "delegate, label",
    [
        (lambda b, h, q_idx, kv_idx: llmcore.causal_mask(b, h, q_idx, kv_idx), "llmcore.causal_mask"),
        (
            lambda b, h, q_idx, kv_idx: nn.Transformer.generate_square_subsequent_mask(64)[q_idx, kv_idx] == 0,
            "torch.nn.Transformer.generate_square_subsequent_mask",
        ),
    ],
)
def test_causal_delegation_is_refused(delegate: Callable, label: str) -> None:
    assert f"calls {label}" in failure_message(checks.check_causal_mask_mod, delegate)


def test_causal_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_causal_mask_mod, stub)
    assert "raised ValueError on the case B=1, H=1, L=S=4" in failure_message(checks.check_causal_mask_mod, broken)


# ---------------------------------------------------------------------------------------------------
# padding_mask
# ---------------------------------------------------------------------------------------------------


def padding_mask(token_ids, pad_id):
    return (token_ids != pad_id)[:, None, None, :]


PADDING_MISTAKE_LEARNERS = {
    "the padding mask is inverted: True at the padding": lambda ids, pad_id: (ids == pad_id)[:, None, None, :],
    "the pad id is hard-coded as 0": lambda ids, pad_id: (ids != 0)[:, None, None, :],
    "the mask has shape [B, S], which does not broadcast over heads and queries": lambda ids, pad_id: ids != pad_id,
    "the mask has shape [B, 1, S], which does not broadcast over heads and queries": (
        lambda ids, pad_id: (ids != pad_id).unsqueeze(1)
    ),
    "the mask has shape [B, 1, S, 1]: it hides padded *queries* (rows) instead of padded *keys* (columns)": (
        lambda ids, pad_id: (ids != pad_id)[:, None, :, None]
    ),
    "the mask is not boolean": lambda ids, pad_id: (ids != pad_id).float()[:, None, None, :],
}


@pytest.mark.parametrize("hidden", [False, True])
def test_padding_correct_learner_passes(hidden: bool) -> None:
    checks.check_padding_mask(padding_mask, hidden=hidden)  # raises CheckFailure when wrong


def test_every_padding_mistake_has_a_learner() -> None:
    assert set(PADDING_MISTAKE_LEARNERS) == {m.name for m in checks.PADDING_MISTAKES}


@pytest.mark.parametrize("name", list(PADDING_MISTAKE_LEARNERS))
def test_padding_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_padding_mask, PADDING_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_padding_hard_coded_zero_is_caught_only_by_a_nonzero_pad_id() -> None:
    message = failure_message(checks.check_padding_mask, PADDING_MISTAKE_LEARNERS["the pad id is hard-coded as 0"])
    assert "case 2 of 4 (B=3, S=7, pad_id=1" in message


def test_padding_delegation_is_refused() -> None:
    def delegate(token_ids, pad_id):
        batch, length = token_ids.shape
        return llmcore.dense_mask(llmcore.padding_mask(token_ids != pad_id), batch, 1, 1, length)

    assert "calls llmcore.padding_mask" in failure_message(checks.check_padding_mask, delegate)


def test_padding_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_padding_mask, stub)
    assert "raised ValueError on the case B=2, S=5, pad_id=0" in failure_message(checks.check_padding_mask, broken)


# ---------------------------------------------------------------------------------------------------
# decoder_self_attention_mask
# ---------------------------------------------------------------------------------------------------


def decoder_self_attention_mask(tgt_ids, pad_id):
    length = tgt_ids.shape[1]
    sees_the_past = torch.ones(length, length, dtype=torch.bool).tril()
    real_keys = (tgt_ids != pad_id)[:, None, None, :]
    return sees_the_past & real_keys


def decoder_mask_with_mask_mods(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    mask_mod = llmcore.and_masks(llmcore.causal_mask, llmcore.padding_mask(tgt_ids != pad_id))
    return llmcore.dense_mask(mask_mod, batch, 1, length, length)


def _decoder_from_tensors(triangle: Callable[[int], Tensor], combine: Callable[[Tensor, Tensor], Tensor], keys: Callable):
    def learner(tgt_ids, pad_id):
        return combine(triangle(tgt_ids.shape[1]), keys(tgt_ids, pad_id))

    return learner


def _lower(length: int) -> Tensor:
    return torch.ones(length, length, dtype=torch.bool).tril()


def _real_keys(ids: Tensor, pad_id: int) -> Tensor:
    return (ids != pad_id)[:, None, None, :]


def _causal_only(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    return llmcore.dense_mask(llmcore.causal_mask, batch, 1, length, length)


def _padding_only(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    return llmcore.dense_mask(llmcore.padding_mask(tgt_ids != pad_id), batch, 1, length, length)


DECODER_MISTAKE_LEARNERS = {
    "the masks are combined with OR instead of AND": _decoder_from_tensors(_lower, torch.logical_or, _real_keys),
    "the padding mask is missing (causal mask only)": _causal_only,
    "the causal mask is missing (padding mask only)": _padding_only,
    "the causal part is strict: a token cannot see itself": _decoder_from_tensors(
        lambda n: torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1), torch.logical_and, _real_keys
    ),
    "the causal part is transposed: tokens see the future": _decoder_from_tensors(
        lambda n: torch.ones(n, n, dtype=torch.bool).triu(), torch.logical_and, _real_keys
    ),
    "the padding hides query rows instead of key columns": _decoder_from_tensors(
        _lower, torch.logical_and, lambda ids, pad_id: (ids != pad_id)[:, None, :, None]
    ),
    "the padding part is inverted: True at the padding": _decoder_from_tensors(
        _lower, torch.logical_and, lambda ids, pad_id: (ids == pad_id)[:, None, None, :]
    ),
    "the mask has shape [B, T, T], without the head dimension": _decoder_from_tensors(
        _lower, torch.logical_and, lambda ids, pad_id: (ids != pad_id)[:, None, :]
    ),
}


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("learner", [decoder_self_attention_mask, decoder_mask_with_mask_mods])
def test_decoder_mask_correct_learners_pass(learner: Callable, hidden: bool) -> None:
    """Both the tensor way and the mask_mod way pass: llmcore's earlier components are allowed."""
    checks.check_decoder_self_attention_mask(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_every_decoder_mask_mistake_has_a_learner() -> None:
    assert set(DECODER_MISTAKE_LEARNERS) == {m.name for m in checks.DECODER_MASK_MISTAKES}


@pytest.mark.parametrize("name", list(DECODER_MISTAKE_LEARNERS))
def test_decoder_mask_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_decoder_self_attention_mask, DECODER_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_decoder_mask_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_decoder_self_attention_mask, stub)
    message = failure_message(checks.check_decoder_self_attention_mask, broken)
    assert "raised ValueError on the case B=2, T=5, pad_id=0" in message


# ---------------------------------------------------------------------------------------------------
# split_heads / merge_heads
# ---------------------------------------------------------------------------------------------------


def split_heads(x, n_heads):
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def merge_heads(x):
    batch, n_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * head_dim)


SPLIT_MISTAKE_LEARNERS = {
    "the heads are split with x.view(B, n_heads, L, D), without the transpose": (
        lambda x, n: x.view(x.shape[0], n, x.shape[1], x.shape[2] // n)
    ),
    "the result is [B, L, H, D]: the transpose to [B, H, L, D] is missing": (
        lambda x, n: x.view(x.shape[0], x.shape[1], n, x.shape[2] // n)
    ),
    "the features of each head are interleaved (head h gets features h, h+H, h+2H, …)": (
        lambda x, n: x.view(x.shape[0], x.shape[1], x.shape[2] // n, n).permute(0, 3, 1, 2)
    ),
}

MERGE_MISTAKE_LEARNERS = {
    "the heads are merged without transposing back (x.reshape(B, L, H·D) straight from [B, H, L, D])": (
        lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3])
    ),
    "the heads are interleaved when merged (features ordered d·H + h instead of h·D + d)": (
        lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1)
    ),
    "the heads are transposed back but not concatenated ([B, L, H, D])": lambda x: x.transpose(1, 2),
}


@pytest.mark.parametrize("hidden", [False, True])
def test_split_and_merge_correct_learners_pass(hidden: bool) -> None:
    checks.check_split_heads(split_heads, hidden=hidden)  # raises CheckFailure when wrong
    checks.check_merge_heads(merge_heads, hidden=hidden)  # raises CheckFailure when wrong


def test_every_split_and_merge_mistake_has_a_learner() -> None:
    assert set(SPLIT_MISTAKE_LEARNERS) == {m.name for m in checks.SPLIT_MISTAKES}
    assert set(MERGE_MISTAKE_LEARNERS) == {m.name for m in checks.MERGE_MISTAKES}


@pytest.mark.parametrize("name", list(SPLIT_MISTAKE_LEARNERS))
def test_split_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_split_heads, SPLIT_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


@pytest.mark.parametrize("name", list(MERGE_MISTAKE_LEARNERS))
def test_merge_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_merge_heads, MERGE_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_merge_with_view_after_transpose_reports_the_case() -> None:
    def merge_with_view(x):
        return x.transpose(1, 2).view(x.shape[0], x.shape[2], -1)

    message = failure_message(checks.check_merge_heads, merge_with_view)
    assert "raised RuntimeError on the case B=2, H=2, L=3, D=4, float32" in message and "reshape" in message


def test_split_and_merge_delegation_is_refused() -> None:
    assert "calls llmcore.split_heads" in failure_message(checks.check_split_heads, lambda x, n: llmcore.split_heads(x, n))
    assert "calls llmcore.merge_heads" in failure_message(checks.check_merge_heads, lambda x: llmcore.merge_heads(x))


def test_split_and_merge_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_split_heads, stub)
    assert "not implemented yet" in failure_message(checks.check_merge_heads, stub)
    assert "raised ValueError on the case B=2, L=3, d_model=8, n_heads=2" in failure_message(checks.check_split_heads, broken)
    assert "raised ValueError on the case B=2, H=2, L=3, D=4" in failure_message(checks.check_merge_heads, broken)


# ---------------------------------------------------------------------------------------------------
# MultiHeadAttention
# ---------------------------------------------------------------------------------------------------


class LearnerMHA(nn.Module):
    """A learner's multi-head attention, all of it written out (no llmcore)."""

    def __init__(self, d_model, n_heads):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.o_proj = nn.Linear(d_model, d_model)

    def split(self, t):
        batch, length, width = t.shape
        return t.view(batch, length, self.n_heads, width // self.n_heads).transpose(1, 2)

    def merge(self, t):
        batch, n_heads, length, head_dim = t.shape
        return t.transpose(1, 2).reshape(batch, length, n_heads * head_dim)

    def attend(self, q, k, v, mask):
        return sdpa(q, k, v, mask)[0]

    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(source)), self.split(self.v_proj(source))
        return self.o_proj(self.merge(self.attend(q, k, v, mask)))


class SplitWithoutTranspose(LearnerMHA):
    def split(self, t):
        batch, length, width = t.shape
        return t.view(batch, self.n_heads, length, width // self.n_heads)


class MergeWithoutTranspose(LearnerMHA):
    def merge(self, t):
        batch, n_heads, length, head_dim = t.shape
        return t.reshape(batch, length, n_heads * head_dim)


class ForgetsOutputProjection(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(source)), self.split(self.v_proj(source))
        return self.merge(self.attend(q, k, v, mask))


class KeysFromX(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        return self.o_proj(self.merge(self.attend(q, k, v, mask)))


class ScalesByDModel(LearnerMHA):
    def attend(self, q, k, v, mask):
        d_model = q.shape[-1] * self.n_heads
        scores = q @ k.transpose(-2, -1) / math.sqrt(d_model)
        if mask is not None:
            sees_a_key = mask.any(dim=-1, keepdim=True)
            scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
            return scores.softmax(dim=-1).masked_fill(~sees_a_key, 0.0) @ v
        return scores.softmax(dim=-1) @ v


class OneHead(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        q, k, v = self.q_proj(x), self.k_proj(source), self.v_proj(source)
        out = self.attend(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), mask)
        return self.o_proj(out.squeeze(1))


class IgnoresMask(LearnerMHA):
    def attend(self, q, k, v, mask):
        return sdpa(q, k, v)[0]


MHA_MISTAKE_LEARNERS = {
    "the heads are split with .view(B, n_heads, L, D), without the transpose": SplitWithoutTranspose,
    "the heads are merged without transposing back to [B, L, H, D]": MergeWithoutTranspose,
    "the output projection o_proj is not applied": ForgetsOutputProjection,
    "in cross-attention the keys and values are projected from x instead of the context": KeysFromX,
    "the scores are scaled by √d_model instead of √d_head": ScalesByDModel,
    "attention runs as one head over the full d_model (the heads are never split)": OneHead,
    "the mask is not used": IgnoresMask,
}


class OnLlmcoreAttention(LearnerMHA):
    """The notebook's intended route: llmcore's split, attention and merge (earlier components)."""

    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        q = llmcore.split_heads(self.q_proj(x), self.n_heads)
        k = llmcore.split_heads(self.k_proj(source), self.n_heads)
        v = llmcore.split_heads(self.v_proj(source), self.n_heads)
        return self.o_proj(llmcore.merge_heads(llmcore.scaled_dot_product_attention(q, k, v, mask)))


@pytest.mark.parametrize("hidden", [False, True])
@pytest.mark.parametrize("learner", [LearnerMHA, OnLlmcoreAttention])
def test_mha_correct_learners_pass(learner: type, hidden: bool) -> None:
    checks.check_multi_head_attention(learner, hidden=hidden)  # raises CheckFailure when wrong


def test_every_mha_mistake_has_a_learner() -> None:
    assert set(MHA_MISTAKE_LEARNERS) == {m.name for m in checks.MHA_MISTAKES}


@pytest.mark.parametrize("name", list(MHA_MISTAKE_LEARNERS))
def test_mha_mistake_is_diagnosed(name: str) -> None:
    message = failure_message(checks.check_multi_head_attention, MHA_MISTAKE_LEARNERS[name])
    assert diagnosed(message, name), message


def test_mha_keys_from_x_is_caught_on_the_first_cross_attention_case() -> None:
    message = failure_message(checks.check_multi_head_attention, KeysFromX)
    assert "case 3 of 4 (cross-attention" in message


class NoBias(LearnerMHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)


class WrongName(LearnerMHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        del self.o_proj
        self.out_proj = nn.Linear(d_model, d_model)


def test_mha_parameter_names_are_reported() -> None:
    assert "missing: o_proj.bias" in failure_message(checks.check_multi_head_attention, NoBias)
    message = failure_message(checks.check_multi_head_attention, WrongName)
    assert "missing: o_proj.bias, o_proj.weight" in message and "unexpected: out_proj.bias, out_proj.weight" in message


class DelegatesToLlmcore(llmcore.MultiHeadAttention):
    """Same parameter names, llmcore's forward."""

    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)


class DelegatesToTorch(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        torch_mha = nn.MultiheadAttention(self.q_proj.in_features, self.n_heads, batch_first=True).to(x.dtype)
        with torch.no_grad():
            torch_mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            torch_mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            torch_mha.out_proj.load_state_dict(self.o_proj.state_dict())
        blocked = None if mask is None else ~mask.expand(x.shape[0], self.n_heads, x.shape[1], source.shape[1]).flatten(0, 1)
        return torch_mha(x, source, source, attn_mask=blocked, need_weights=False)[0]


@pytest.mark.parametrize(
    "learner, label",
    [(DelegatesToLlmcore, "llmcore.MultiHeadAttention"), (DelegatesToTorch, "torch.nn.MultiheadAttention")],
)
def test_mha_delegation_is_refused(learner: type, label: str) -> None:
    assert f"calls {label}" in failure_message(checks.check_multi_head_attention, learner)


class StubInInit(nn.Module):
    def __init__(self, d_model, n_heads):
        super().__init__()
        raise NotImplementedError()


class StubInForward(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        raise NotImplementedError()


class BrokenForward(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        raise ValueError("shapes do not line up")


def test_mha_stub_and_errors() -> None:
    assert "not implemented yet" in failure_message(checks.check_multi_head_attention, StubInInit)
    assert "not implemented yet" in failure_message(checks.check_multi_head_attention, StubInForward)
    message = failure_message(checks.check_multi_head_attention, BrokenForward)
    assert "raised ValueError on the case self-attention, B=2, L=5, d_model=16, n_heads=4" in message


def test_mha_rejects_an_instance() -> None:
    assert "expected the class itself" in failure_message(checks.check_multi_head_attention, LearnerMHA(8, 2))


def test_a_passing_check_returns_none_so_nbgrader_gives_full_marks(capsys: pytest.CaptureFixture) -> None:
    # nbgrader reads a number left as a test cell's result as partial credit (and errors above max points).
    def sdpa(q, k, v, mask=None):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            visible = mask.any(dim=-1, keepdim=True)
            scores = scores.masked_fill(~(mask | ~visible), float("-inf"))
            weights = scores.softmax(-1).masked_fill(~visible, 0.0)
        else:
            weights = scores.softmax(-1)
        return weights @ v, weights

    assert checks.check_scaled_dot_product_attention(sdpa) is None
    assert "all 4 cases passed" in capsys.readouterr().out
