"""Learner code for the exercises of notebook 01_attention, written as learners write it (never llmcore's).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import llmcore

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


def sdpa_einsum(q, k, v, mask=None):
    scores = torch.einsum("...ld,...sd->...ls", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(float("-inf"), dtype=scores.dtype))
    weights = torch.exp(scores - scores.amax(dim=-1, keepdim=True))
    weights = torch.nan_to_num(weights / weights.sum(dim=-1, keepdim=True), nan=0.0)
    return torch.einsum("...ls,...sd->...ld", weights, v), weights


def sdpa_nan_on_empty_rows(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sdpa_minus_1e9(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask == 0, -1e9)
    weights = torch.softmax(scores, dim=-1)
    return torch.matmul(weights, v), weights


def _sdpa_scaled_by(divisor):
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


def sdpa_true_means_ignore(q, k, v, mask=None):
    """nn.MultiheadAttention's key_padding_mask habit: fill where the mask is True (with NaN on rows it fully covers)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    weights = scores.softmax(dim=-1)
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


def sdpa_k_dot_T(q, k, v, mask=None):
    scores = q @ k.T / math.sqrt(q.shape[-1])
    if mask is not None:
        sees_a_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


def sdpa_swapped(q, k, v, mask=None):
    output, weights = sdpa(q, k, v, mask)
    return weights, output


# ---------------------------------------------------------------------------------------------------
# masks
# ---------------------------------------------------------------------------------------------------


def causal_mask_mod(b, h, q_idx, kv_idx):
    return kv_idx <= q_idx


_TRIANGLE = torch.ones(64, 64, dtype=torch.bool).tril()


def causal_by_indexing(b, h, q_idx, kv_idx):
    """Indexing a precomputed triangle with the index tensors is a legitimate mask_mod."""
    return _TRIANGLE[q_idx, kv_idx]


def causal_plain_tril(b, h, q_idx, kv_idx):
    return torch.ones(q_idx.shape[-2], kv_idx.shape[-1], dtype=torch.bool).tril()


def dense_padding_mask(token_ids, pad_id):
    return (token_ids != pad_id)[:, None, None, :]


def dense_padding_mask_unsqueezed(token_ids, pad_id):
    return token_ids.ne(pad_id).unsqueeze(1).unsqueeze(2)


def decoder_self_attention_mask(tgt_ids, pad_id):
    length = tgt_ids.shape[1]
    sees_the_past = torch.ones(length, length, dtype=torch.bool).tril()
    real_keys = (tgt_ids != pad_id)[:, None, None, :]
    return sees_the_past & real_keys


def decoder_mask_with_mask_mods(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    mask_mod = llmcore.and_masks(llmcore.causal_mask, llmcore.padding_mask(tgt_ids != pad_id))
    return llmcore.dense_mask(mask_mod, batch, 1, length, length)


def _decoder_from_tensors(triangle, combine, keys):
    def learner(tgt_ids, pad_id):
        return combine(triangle(tgt_ids.shape[1]), keys(tgt_ids, pad_id))

    return learner


def _lower(length):
    return torch.ones(length, length, dtype=torch.bool).tril()


def _real_keys(ids, pad_id):
    return (ids != pad_id)[:, None, None, :]


def _causal_only(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    return llmcore.dense_mask(llmcore.causal_mask, batch, 1, length, length)


def _padding_only(tgt_ids, pad_id):
    batch, length = tgt_ids.shape
    return llmcore.dense_mask(llmcore.padding_mask(tgt_ids != pad_id), batch, 1, length, length)


# ---------------------------------------------------------------------------------------------------
# split_heads / merge_heads
# ---------------------------------------------------------------------------------------------------


def split_heads(x, n_heads):
    batch, length, width = x.shape
    return x.view(batch, length, n_heads, width // n_heads).transpose(1, 2)


def split_heads_unflatten(x, n_heads):
    return x.unflatten(-1, (n_heads, -1)).permute(0, 2, 1, 3)


def merge_heads(x):
    batch, n_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, n_heads * head_dim)


def merge_heads_cat(x):
    return torch.cat([x[:, h] for h in range(x.shape[1])], dim=-1)


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


class OnLlmcoreAttention(LearnerMHA):
    """The notebook's intended route: llmcore's split, attention and merge (earlier components)."""

    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        q = llmcore.split_heads(self.q_proj(x), self.n_heads)
        k = llmcore.split_heads(self.k_proj(source), self.n_heads)
        v = llmcore.split_heads(self.v_proj(source), self.n_heads)
        return self.o_proj(llmcore.merge_heads(llmcore.scaled_dot_product_attention(q, k, v, mask)))


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


CORRECT = {
    "scaled_dot_product_attention": [sdpa, sdpa_einsum],
    "causal_mask_mod": [causal_mask_mod, causal_by_indexing, lambda b, h, q_idx, kv_idx: (q_idx - kv_idx) >= 0],
    "dense_padding_mask": [dense_padding_mask, dense_padding_mask_unsqueezed],
    "decoder_self_attention_mask": [decoder_self_attention_mask, decoder_mask_with_mask_mods],
    "split_heads": [split_heads, split_heads_unflatten],
    "merge_heads": [merge_heads, merge_heads_cat],
    "multi_head_attention": [LearnerMHA, OnLlmcoreAttention],
}

MISTAKES = {
    "scaled_dot_product_attention": {
        "nan_on_empty_rows": sdpa_nan_on_empty_rows,
        "fill_large_negative": sdpa_minus_1e9,
        "no_scale": _sdpa_scaled_by(lambda q, k: 1.0),
        "scale_by_d": _sdpa_scaled_by(lambda q, k: q.shape[-1]),
        "scale_by_keys": _sdpa_scaled_by(lambda q, k: math.sqrt(k.shape[-2])),
        "mask_after_softmax": sdpa_mask_after_softmax,
        "fill_zero": sdpa_fill_zero,
        "mask_inverted": sdpa_true_means_ignore,
        "softmax_over_queries": sdpa_softmax_over_queries,
        "plain_transpose": sdpa_k_dot_T,
        "swapped_outputs": sdpa_swapped,
    },
    "causal_mask_mod": {
        "strict": lambda b, h, q_idx, kv_idx: kv_idx < q_idx,
        "sees_next_token": lambda b, h, q_idx, kv_idx: kv_idx < q_idx + 2,
        "transposed": lambda b, h, q_idx, kv_idx: q_idx <= kv_idx,
        "inverted": lambda b, h, q_idx, kv_idx: kv_idx > q_idx,
        "ignores_query_offset": causal_plain_tril,
    },
    "dense_padding_mask": {
        "inverted": lambda ids, pad_id: (ids == pad_id)[:, None, None, :],
        "pad_id_hard_coded": lambda ids, pad_id: (ids != 0)[:, None, None, :],
        "shape_b_s": lambda ids, pad_id: ids != pad_id,
        "shape_b_1_s": lambda ids, pad_id: (ids != pad_id).unsqueeze(1),
        "hides_queries": lambda ids, pad_id: (ids != pad_id)[:, None, :, None],
        "not_boolean": lambda ids, pad_id: (ids != pad_id).float()[:, None, None, :],
    },
    "decoder_self_attention_mask": {
        "or_instead_of_and": _decoder_from_tensors(_lower, torch.logical_or, _real_keys),
        "no_padding": _causal_only,
        "no_causal": _padding_only,
        "strict_causal": _decoder_from_tensors(
            lambda n: torch.ones(n, n, dtype=torch.bool).tril(diagonal=-1), torch.logical_and, _real_keys
        ),
        "transposed_causal": _decoder_from_tensors(
            lambda n: torch.ones(n, n, dtype=torch.bool).triu(), torch.logical_and, _real_keys
        ),
        "padding_hides_queries": _decoder_from_tensors(
            _lower, torch.logical_and, lambda ids, pad_id: (ids != pad_id)[:, None, :, None]
        ),
        "padding_inverted": _decoder_from_tensors(
            _lower, torch.logical_and, lambda ids, pad_id: (ids == pad_id)[:, None, None, :]
        ),
        "missing_head_dim": _decoder_from_tensors(
            _lower, torch.logical_and, lambda ids, pad_id: (ids != pad_id)[:, None, :]
        ),
    },
    "split_heads": {
        "view_without_transpose": lambda x, n: x.view(x.shape[0], n, x.shape[1], x.shape[2] // n),
        "missing_transpose": lambda x, n: x.view(x.shape[0], x.shape[1], n, x.shape[2] // n),
        "interleaved": lambda x, n: x.view(x.shape[0], x.shape[1], x.shape[2] // n, n).permute(0, 3, 1, 2),
    },
    "merge_heads": {
        "reshape_without_transpose": lambda x: x.reshape(x.shape[0], x.shape[2], x.shape[1] * x.shape[3]),
        "interleaved": lambda x: x.permute(0, 2, 3, 1).reshape(x.shape[0], x.shape[2], -1),
        "not_concatenated": lambda x: x.transpose(1, 2),
    },
    "multi_head_attention": {
        "split_without_transpose": SplitWithoutTranspose,
        "merge_without_transpose": MergeWithoutTranspose,
        "no_output_projection": ForgetsOutputProjection,
        "cross_keys_from_x": KeysFromX,
        "scale_by_d_model": ScalesByDModel,
        "one_head": OneHead,
        "mask_unused": IgnoresMask,
    },
}


def sdpa_softmax_dim_1(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        sees_a_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
    weights = torch.softmax(scores, dim=1)
    if mask is not None:
        weights = weights.masked_fill(~sees_a_key, 0.0)
    return weights @ v, weights


def sdpa_transpose_2_3(q, k, v, mask=None):
    scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(q.size(-1))
    if mask is not None:
        sees_a_key = mask.any(dim=-1, keepdim=True)
        scores = scores.masked_fill(~mask & sees_a_key, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~sees_a_key, 0.0)
    return torch.matmul(weights, v), weights


class ContextAsTruthValue(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        source = context if context else x
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(source)), self.split(self.v_proj(source))
        return self.o_proj(self.merge(self.attend(q, k, v, mask)))


MISTAKES["scaled_dot_product_attention"]["softmax_over_heads"] = sdpa_softmax_dim_1
MISTAKES["scaled_dot_product_attention"]["fixed_dims_transpose"] = sdpa_transpose_2_3
MISTAKES["merge_heads"]["view_after_transpose"] = lambda x: x.transpose(1, 2).view(x.shape[0], x.shape[2], -1)
MISTAKES["multi_head_attention"]["context_truth_value"] = ContextAsTruthValue
