"""Exercises of notebook 01_attention: scaled dot-product attention, masks, multi-head attention.

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its
``check``. Every mistake is "the reference with one knob turned" (a ``*_variant`` function below) or
a symptom recognised in the output.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.attention.bias as torch_attention_bias
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from llmcore import attention as reference_attention
from llmcore import masks as reference_masks
from llmcore.masks import MaskMod

from ..cases import CaseRandom, causal, lengths_mask
from ..framework import Case, CheckFailure, Mistake, non_finite_where_expected_is_finite
from ..mask_mods import evaluate_mask_mod
from ..spec import Exercise, ModuleExercise, register

__all__ = [
    "SCALED_DOT_PRODUCT_ATTENTION",
    "CAUSAL_MASK_MOD",
    "DENSE_PADDING_MASK",
    "DECODER_SELF_ATTENTION_MASK",
    "SPLIT_HEADS",
    "MERGE_HEADS",
    "MULTI_HEAD_ATTENTION",
    "check_scaled_dot_product_attention",
    "check_causal_mask_mod",
    "check_dense_padding_mask",
    "check_decoder_self_attention_mask",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
]


# --------------------------------------------------------------------------------------------------
# Scaled dot-product attention (SYLLABUS T02, T03)
# --------------------------------------------------------------------------------------------------


def _sdpa_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    return reference_attention.scaled_dot_product_attention(q, k, v, mask, return_weights=True)


def _sdpa_variant(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None = None,
    *,
    scale: str = "sqrt_d",
    fill: float = float("-inf"),
    guard_empty_rows: bool = True,
    mask_after_softmax: bool = False,
    invert_mask: bool = False,
    softmax_dim: int = -1,
    plain_transpose: bool = False,
    fixed_dims_transpose: bool = False,
) -> tuple[Tensor, Tensor]:
    """The reference with one knob turned: each known mistake is one setting of these arguments."""
    d = q.shape[-1]
    divisor = {"sqrt_d": math.sqrt(d), "none": 1.0, "d": float(d), "sqrt_len": math.sqrt(k.shape[-2])}[scale]
    with warnings.catch_warnings():  # k.T on a batched tensor is deprecated, and exactly the mistake modelled
        warnings.simplefilter("ignore", UserWarning)
        keys_t = k.T if plain_transpose else k.transpose(2, 3) if fixed_dims_transpose else k.transpose(-2, -1)
        scores = q @ keys_t / divisor
    if mask is not None and invert_mask:
        mask = ~mask
    if mask is None:
        return torch.softmax(scores, dim=softmax_dim) @ v, torch.softmax(scores, dim=softmax_dim)
    visible = mask.any(dim=-1, keepdim=True) if guard_empty_rows else torch.ones_like(mask[..., :1])
    if not mask_after_softmax:
        scores = scores.masked_fill(~(mask | ~visible), fill)
    weights = torch.softmax(scores, dim=softmax_dim)
    weights = weights.masked_fill(~mask if mask_after_softmax else ~visible, 0.0)
    return weights @ v, weights


def _sdpa_mistake(**knobs) -> Callable[..., tuple[Tensor, Tensor]]:
    return lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, **knobs)


SDPA_MISTAKES = [
    Mistake(
        "nan_on_empty_rows",
        "a query whose keys are all masked gives NaN",
        "a softmax over a row that is entirely −∞ is 0/0; a query that may see no key should get all-zero weights.",
        "find rows with no visible key (mask.any(dim=-1, keepdim=True)), keep them out of the −∞ fill, and set their "
        "weights to 0 after the softmax.",
        detect=non_finite_where_expected_is_finite,
    ),
    Mistake(
        "fill_large_negative",
        "masked scores are filled with a large negative number (such as −1e9) instead of −∞, so a query that sees "
        "no key spreads its weight uniformly over the masked keys",
        "a finite fill leaves exp(fill − max) > 0 on a row where every key is masked; that row must get zero "
        "weights, which only −∞ plus an explicit zero for empty rows gives.",
        "fill with float('-inf'); find rows with no visible key (mask.any(dim=-1, keepdim=True)), keep them out of "
        "the fill and set their weights to 0 after the softmax.",
        output=_sdpa_mistake(fill=-1e9, guard_empty_rows=False),
    ),
    Mistake(
        "no_scale",
        "the 1/√d_k scale is missing",
        "the dot product of two d_k-dimensional vectors grows like √d_k; unscaled scores push the softmax into "
        "saturation, so they are divided by √d_k before it.",
        "divide the scores Q·Kᵀ by math.sqrt(d_k), with d_k = q.shape[-1], before the softmax.",
        output=_sdpa_mistake(scale="none"),
    ),
    Mistake(
        "scale_by_d",
        "the scores are divided by d_k instead of √d_k",
        "the spread of a dot product grows with the square root of its length, so the scale is 1/√d_k.",
        "the paper scales by 1/√d_k: use math.sqrt(q.shape[-1]).",
        output=_sdpa_mistake(scale="d"),
    ),
    Mistake(
        "scale_by_keys",
        "the scores are scaled by √(number of keys) instead of √d_k",
        "the scale depends on the size of each query/key vector, not on how many keys there are.",
        "d_k is the size of each query/key vector, q.shape[-1], not the sequence length.",
        output=_sdpa_mistake(scale="sqrt_len"),
    ),
    Mistake(
        "mask_after_softmax",
        "the mask is applied after the softmax",
        "zeroing weights after the softmax leaves rows that no longer sum to 1; the mask has to act on the scores.",
        "fill masked scores with float('-inf') *before* the softmax.",
        output=_sdpa_mistake(mask_after_softmax=True),
    ),
    Mistake(
        "fill_zero",
        "masked scores are filled with 0 instead of −∞",
        "a score of 0 still gets weight exp(0) = 1 after the softmax; a masked key needs a score whose exponential is 0.",
        "use scores.masked_fill(~mask, float('-inf')).",
        output=_sdpa_mistake(fill=0.0),
    ),
    Mistake(
        "mask_inverted",
        "the mask is read as True = ignore (the convention of nn.MultiheadAttention's key_padding_mask), but in this "
        "course True means *may attend*",
        "this course follows torch.nn.functional.scaled_dot_product_attention: True marks the keys a query may see, "
        "so the −∞ goes where the mask is False.",
        "fill where the mask is False: scores.masked_fill(~mask, float('-inf')).",
        output=_sdpa_mistake(invert_mask=True),
    ),
    Mistake(
        "softmax_over_queries",
        "the softmax runs over the wrong dimension",
        "each query distributes one unit of attention over the keys, so its weights sum to 1 along the key axis.",
        "softmax over the last dimension (dim=-1).",
        output=_sdpa_mistake(softmax_dim=-2),
    ),
    Mistake(
        "plain_transpose",
        "k.T reverses *all* dimensions of a batched tensor, so Q·Kᵀ multiplies the wrong axes",
        "only the last two dimensions of k (keys × features) are swapped; the batch and head dimensions stay in place.",
        "use k.transpose(-2, -1) (or k.mT), not k.T.",
        output=_sdpa_mistake(plain_transpose=True),
    ),
    Mistake(
        "softmax_over_heads",
        "the softmax runs over dimension 1 (the heads), not over the keys",
        "each query distributes one unit of attention over the keys, so its weights sum to 1 along the key axis, "
        "whatever the number of leading dimensions.",
        "softmax over the last dimension (dim=-1); counting dimensions from the end keeps it right for any batch shape.",
        output=_sdpa_mistake(softmax_dim=1),
    ),
    Mistake(
        "fixed_dims_transpose",
        "k.transpose(2, 3) assumes exactly four dimensions ([B, H, S, D])",
        "the function takes any number of leading dimensions, so the key and feature axes are counted from the end.",
        "use k.transpose(-2, -1).",
        output=_sdpa_mistake(fixed_dims_transpose=True),
    ),
    Mistake(
        "swapped_outputs",
        "output and weights are returned in the wrong order",
        "the function returns the weighted sum of the values first, then the attention weights.",
        "return (weights @ v, weights).",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask)[::-1],
    ),
]


def _sdpa_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def qkv(shape_q: tuple, shape_kv: tuple, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return random.tensor(shape_q, dtype), random.tensor(shape_kv, dtype), random.tensor(shape_kv, dtype)

    def padding(lengths: list[int], kv_len: int) -> Tensor:
        return lengths_mask(lengths, kv_len)

    with_empty_row = random.uniform((2, 1, 4, 5)) > 0.4
    with_empty_row[:, :, 0, 0] = True
    with_empty_row[1, 0, 2] = False
    cases = [
        Case("B=1, H=1, L=S=3, D=4, float64, no mask", qkv((1, 1, 3, 4), (1, 1, 3, 4), torch.float64)),
        Case(
            "B=2, H=3, L=5, S=7, D=8, float32, padding mask [B,1,1,S] with key lengths 7 and 4",
            (*qkv((2, 3, 5, 8), (2, 3, 7, 8), torch.float32), padding([7, 4], 7)),
        ),
        Case(
            "B=2, H=2, L=S=6, D=16, float64, causal mask [L,S], gradients checked",
            (*qkv((2, 2, 6, 16), (2, 2, 6, 16), torch.float64), causal(6)),
            check_gradients=True,
        ),
        Case(
            "B=2, H=1, L=4, S=5, D=8, float32, random mask in which query 2 of batch row 1 sees no key",
            (*qkv((2, 1, 4, 8), (2, 1, 5, 8), torch.float32), with_empty_row),
            check_gradients=True,
        ),
        Case("no batch dims: q [L=2, D=4], k and v [S=3, D=4], float32, no mask",
             qkv((2, 4), (3, 4), torch.float32)),
    ]
    if hidden:
        cases += [
            Case("no batch dims: L=3, S=9, D=2, float64, no mask", qkv((3, 2), (9, 2), torch.float64), check_gradients=True),
            Case(
                "B=3, H=4, L=S=33, D=64, float32, causal mask",
                (*qkv((3, 4, 33, 64), (3, 4, 33, 64), torch.float32), causal(33)),
            ),
            Case(
                "B=2, H=2, L=1, S=12, D=32, float64 (one decoding step), padding lengths 12 and 5",
                (*qkv((2, 2, 1, 32), (2, 2, 12, 32), torch.float64), padding([12, 5], 12)),
                check_gradients=True,
            ),
        ]
    return cases


# fn(q [..., L, D], k [..., S, D], v [..., S, D_v], mask=None) -> (output [..., L, D_v], weights [..., L, S]);
# the boolean mask broadcasts to [..., L, S], True = may attend.
SCALED_DOT_PRODUCT_ATTENTION = register(Exercise(
    id="scaled_dot_product_attention",
    syllabus=("T02", "T03"),
    reference=_sdpa_reference,
    cases=_sdpa_cases,
    mistakes=SDPA_MISTAKES,
    forbidden={
        reference_attention.scaled_dot_product_attention: "llmcore.scaled_dot_product_attention",
        llmcore.MultiHeadAttention: "llmcore.MultiHeadAttention",
        F.scaled_dot_product_attention: "torch.nn.functional.scaled_dot_product_attention",
        F.multi_head_attention_forward: "torch.nn.functional.multi_head_attention_forward",
    },
    forbidden_ops={
        "scaled_dot_product_attention": "PyTorch's scaled_dot_product_attention (aten::scaled_dot_product_attention)",
        "_scaled_dot_product_*": "PyTorch's fused attention kernel (aten::_scaled_dot_product_*)",
    },
    delegation=_sdpa_reference,
    output_names=("output", "weights"),
    fallback_hint="scores = q @ k.transpose(-2, -1) / √d_k; fill masked scores with −∞ (except in rows with no visible "
    "key); softmax over the keys; zero the weights of rows with no visible key; weights @ v. Return (output, weights).",
))
check_scaled_dot_product_attention = SCALED_DOT_PRODUCT_ATTENTION.check


# --------------------------------------------------------------------------------------------------
# Masks (SYLLABUS T03). Every mask is boolean with True = may attend.
# --------------------------------------------------------------------------------------------------


def _evaluate_mask_mod(mask_mod: MaskMod) -> Callable[..., Tensor]:
    """``(B, H, L, S, q_offset) -> [B, H, L, S]``: the learner's mask_mod evaluated by llmcore.dense_mask."""

    def evaluate(batch: int, heads: int, q_len: int, kv_len: int, q_offset: int = 0) -> Tensor:
        return evaluate_mask_mod(mask_mod, described="causal_mask_mod", exercise="causal_mask_mod", batch=batch,
                                 heads=heads, q_len=q_len, kv_len=kv_len, q_offset=q_offset)

    return evaluate


def _causal_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # args: (B, H, L, S, q_offset); q_offset is the absolute position of the first query.
    if not hidden:
        return [
            Case("B=1, H=1, L=S=4 (a 4-token sentence)", (1, 1, 4, 4, 0)),
            Case("B=2, H=3, L=S=6: the predicate must broadcast over batch rows and heads", (2, 3, 6, 6, 0)),
            Case("B=1, H=1, L=3 queries at positions 5, 6, 7 over S=8 keys (q_offset=5, a KV cache)", (1, 1, 3, 8, 5)),
            Case("B=1, H=1, L=1 query at position 6 over S=7 keys (one decoding step)", (1, 1, 1, 7, 6)),
        ]
    return [
        Case("B=1, H=1, L=S=33", (1, 1, 33, 33, 0)),
        Case("B=3, H=2, L=4 queries at positions 9..12 over S=13 keys", (3, 2, 4, 13, 9)),
        Case("B=1, H=1, L=5, S=2 (more queries than keys)", (1, 1, 5, 2, 0)),
        Case("B=2, H=1, L=S=2", (2, 1, 2, 2, 0)),
    ]


def _first_query_at_zero(b: Tensor, h: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    """A lower triangle laid out from the first query, whatever its absolute position (a plain tril)."""
    return kv_idx <= q_idx - q_idx.min()


CAUSAL_MISTAKES = [
    Mistake(
        "strict",
        "the causal mask is strict: a token cannot see itself",
        "causality forbids only the future; a token's own position is its present and stays visible.",
        "position i may attend to every j <= i, itself included: use kv_idx <= q_idx, not kv_idx < q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx < q_idx),
    ),
    Mistake(
        "sees_next_token",
        "the causal mask is off by one: each token also sees the next one",
        "a query at position i may see keys 0 … i and nothing after; one extra column lets it read the token it "
        "has to predict.",
        "use kv_idx <= q_idx, not kv_idx <= q_idx + 1 (or tril(diagonal=1)).",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx <= q_idx + 1),
    ),
    Mistake(
        "transposed",
        "the causal mask is transposed: each token sees the future instead of the past",
        "rows are queries and columns are keys; a query sees the keys at or before its own position.",
        "a query sees keys at or *before* it: kv_idx <= q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx >= q_idx),
    ),
    Mistake(
        "inverted",
        "the causal mask is inverted (True where attention is forbidden)",
        "in this course True means *may attend*, so True marks the past and the present.",
        "return kv_idx <= q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx > q_idx),
    ),
    Mistake(
        "ignores_query_offset",
        "the triangle starts at the first query: with a KV cache the L queries are the *last* L positions, not the first",
        "q_idx holds absolute positions (5, 6, 7 after a cache of 5 tokens); compare them with kv_idx directly "
        "instead of building a triangle from the top-left corner.",
        "return kv_idx <= q_idx; do not build torch.ones(L, S).tril() from the shapes.",
        output=_evaluate_mask_mod(_first_query_at_zero),
    ),
]


# mask_mod(b, h, q_idx, kv_idx) -> bool tensor, evaluated by llmcore.dense_mask on every (b, h, q, kv) with
# absolute query positions (q_offset), as in decoding with a KV cache.
CAUSAL_MASK_MOD = register(Exercise(
    id="causal_mask_mod",
    syllabus=("T03",),
    reference=_evaluate_mask_mod(reference_masks.causal_mask),
    cases=_causal_cases,
    adapt=_evaluate_mask_mod,
    mistakes=CAUSAL_MISTAKES,
    forbidden={
        reference_masks.causal_mask: "llmcore.causal_mask",
        nn.Transformer.generate_square_subsequent_mask: "torch.nn.Transformer.generate_square_subsequent_mask",
        torch_attention_bias.causal_lower_right: "torch.nn.attention.bias.causal_lower_right",
        torch_attention_bias.causal_upper_left: "torch.nn.attention.bias.causal_upper_left",
    },
    delegation=reference_masks.causal_mask,
    output_names=("mask",),
    fallback_hint="query q_idx may attend to key kv_idx exactly when kv_idx <= q_idx; return that boolean tensor.",
))
check_causal_mask_mod = CAUSAL_MASK_MOD.check


def _padding_reference(token_ids: Tensor, pad_id: int) -> Tensor:
    batch, length = token_ids.shape
    return reference_masks.dense_mask(reference_masks.padding_mask(token_ids != pad_id), batch, 1, 1, length)


def _is_not_boolean(got: object, expected: object) -> bool:
    return isinstance(got, Tensor) and isinstance(expected, Tensor) and got.dtype != torch.bool


PADDING_MISTAKES = [
    Mistake(
        "inverted",
        "the padding mask is inverted: True at the padding",
        "True means *may attend*: real tokens are the ones to keep.",
        "the mask is True at real tokens: token_ids != pad_id.",
        output=lambda ids, pad_id: ~_padding_reference(ids, pad_id),
    ),
    Mistake(
        "pad_id_hard_coded",
        "the pad id is hard-coded as 0",
        "vocabularies put padding at different ids; the function receives the one to use.",
        "compare with the pad_id argument: token_ids != pad_id.",
        output=lambda ids, pad_id: _padding_reference(ids, 0),
    ),
    Mistake(
        "shape_b_s",
        "the mask has shape [B, S], which does not broadcast over heads and queries",
        "the mask meets scores of shape [B, H, L, S]; broadcasting lines dimensions up from the right, so the mask "
        "needs singleton head and query dimensions.",
        "add the two singleton dims: (token_ids != pad_id)[:, None, None, :].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape),
    ),
    Mistake(
        "shape_b_1_s",
        "the mask has shape [B, 1, S], which does not broadcast over heads and queries",
        "against scores [B, H, L, S], a 3-d mask [B, 1, S] lines B up with H.",
        "return [B, 1, 1, S]: (token_ids != pad_id)[:, None, None, :].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape[0], 1, ids.shape[1]),
    ),
    Mistake(
        "hides_queries",
        "the mask has shape [B, 1, S, 1]: it hides padded *queries* (rows) instead of padded *keys* (columns)",
        "padding must never be *looked at*, so it is the keys (the last dimension of the scores) that are masked.",
        "put the sequence in the last dimension: (token_ids != pad_id)[:, None, None, :].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape[0], 1, ids.shape[1], 1),
    ),
    Mistake(
        "not_boolean",
        "the mask is not boolean",
        "masked_fill and ~ need a torch.bool mask (on integers ~ is a bitwise not: ~1 = -2).",
        "a comparison such as token_ids != pad_id is already boolean: do not convert it.",
        detect=_is_not_boolean,
    ),
]


def _padding_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    padded = random.padded_ids
    cases = [
        Case("B=2, S=5, pad_id=0, right padding (lengths 5 and 3)", (padded([5, 3], 5, 0), 0)),
        Case("B=3, S=7, pad_id=1, lengths 7, 2 and 5", (padded([7, 2, 5], 7, 1), 1)),
        Case("B=2, S=4, pad_id=0, row 1 is all padding", (padded([3, 0], 4, 0), 0)),
        Case("B=1, S=6, pad_id=0, no padding", (padded([6], 6, 0), 0)),
    ]
    if hidden:
        cases += [
            Case("B=3, S=8, pad_id=3, left padding (lengths 8, 5, 1)", (padded([8, 5, 1], 8, 3, left=True), 3)),
            Case("B=2, S=1, pad_id=0, lengths 1 and 0", (padded([1, 0], 1, 0), 0)),
            Case("B=4, S=9, pad_id=31999 (the last id of a 32,000-token vocabulary)",
                 (padded([9, 4, 6, 2], 9, 31999, vocab_size=32000), 31999)),
        ]
    return cases


# fn(token_ids [B, S], pad_id) -> [B, 1, 1, S] boolean, True at real tokens: the tensor of the rule
# llmcore.padding_mask (a mask_mod), hence "dense".
DENSE_PADDING_MASK = register(Exercise(
    id="dense_padding_mask",
    syllabus=("T03",),
    reference=_padding_reference,
    cases=_padding_cases,
    mistakes=PADDING_MISTAKES,
    forbidden={reference_masks.padding_mask: "llmcore.padding_mask"},
    delegation=_padding_reference,
    output_names=("mask",),
    fallback_hint="(token_ids != pad_id) is [B, S] and True at real tokens; reshape it to [B, 1, 1, S].",
))
check_dense_padding_mask = DENSE_PADDING_MASK.check


def _decoder_mask_variant(
    tgt_ids: Tensor,
    pad_id: int,
    *,
    combine: str = "and",
    causal: str = "causal",
    padding: str = "keys",
) -> Tensor:
    """The reference with one knob turned (combine: and/or/causal_only/padding_only)."""
    batch, length = tgt_ids.shape
    keep = tgt_ids != pad_id
    causal_mod = {
        "causal": reference_masks.causal_mask,
        "strict": lambda b, h, q_idx, kv_idx: kv_idx < q_idx,
        "transposed": lambda b, h, q_idx, kv_idx: kv_idx >= q_idx,
    }[causal]
    padding_mod = {
        "keys": lambda b, h, q_idx, kv_idx: keep[b, kv_idx],
        "queries": lambda b, h, q_idx, kv_idx: keep[b, q_idx],
        "inverted": lambda b, h, q_idx, kv_idx: ~keep[b, kv_idx],
    }[padding]
    mask_mod = {
        "and": reference_masks.and_masks(causal_mod, padding_mod),
        "or": reference_masks.or_masks(causal_mod, padding_mod),
        "causal_only": causal_mod,
        "padding_only": padding_mod,
    }[combine]
    return reference_masks.dense_mask(mask_mod, batch, 1, length, length)


def _decoder_mask_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, **knobs)


DECODER_MASK_MISTAKES = [
    Mistake(
        "or_instead_of_and",
        "the masks are combined with OR instead of AND",
        "a key is visible only if both rules allow it: it is in the past *and* it is a real token.",
        "causal & padding (llmcore.and_masks), not |.",
        output=_decoder_mask_mistake(combine="or"),
    ),
    Mistake(
        "no_padding",
        "the padding mask is missing (causal mask only)",
        "padded target positions must be hidden from every query too.",
        "AND the causal mask with the padding mask of tgt_ids.",
        output=_decoder_mask_mistake(combine="causal_only"),
    ),
    Mistake(
        "no_causal",
        "the causal mask is missing (padding mask only)",
        "the decoder must not see the tokens it is trained to predict.",
        "AND the padding mask with the causal mask.",
        output=_decoder_mask_mistake(combine="padding_only"),
    ),
    Mistake(
        "strict_causal",
        "the causal part is strict: a token cannot see itself",
        "causality forbids only the future; a token's own position stays visible.",
        "position i may attend to every j <= i, itself included (kv_idx <= q_idx).",
        output=_decoder_mask_mistake(causal="strict"),
    ),
    Mistake(
        "transposed_causal",
        "the causal part is transposed: tokens see the future",
        "rows are queries, columns are keys; each query keeps the keys at or before it.",
        "keep the lower triangle (kv_idx <= q_idx).",
        output=_decoder_mask_mistake(causal="transposed"),
    ),
    Mistake(
        "padding_hides_queries",
        "the padding hides query rows instead of key columns",
        "padding must never be looked at, so it is masked as a *key* (a column of the mask).",
        "index the padding with the key position: keep[b, kv_idx] (a [B, 1, 1, T] mask), not keep[b, q_idx].",
        output=_decoder_mask_mistake(padding="queries"),
    ),
    Mistake(
        "padding_inverted",
        "the padding part is inverted: True at the padding",
        "True means *may attend*: the real tokens are the visible ones.",
        "real tokens are tgt_ids != pad_id.",
        output=_decoder_mask_mistake(padding="inverted"),
    ),
    Mistake(
        "missing_head_dim",
        "the mask has shape [B, T, T], without the head dimension",
        "against scores [B, H, T, T] a 3-d mask lines B up with H.",
        "return [B, 1, T, T] (dense_mask(..., B, 1, T, T) or mask[:, None]).",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id)[:, 0],
    ),
]


def _decoder_mask_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def padded(lengths: list[int], length: int, pad_id: int, left: bool = False) -> Tensor:
        return random.padded_ids(lengths, length, pad_id, vocab_size=31, left=left)

    cases = [
        Case("B=2, T=5, pad_id=0, right padding (lengths 5 and 3)", (padded([5, 3], 5, 0), 0)),
        Case("B=3, T=6, pad_id=2, lengths 6, 1 and 4", (padded([6, 1, 4], 6, 2), 2)),
        Case("B=2, T=4, pad_id=0, left padding (lengths 4 and 2): query 0 of row 1 sees no key",
             (padded([4, 2], 4, 0, left=True), 0)),
    ]
    if hidden:
        cases += [
            Case("B=1, T=1, pad_id=0, no padding", (padded([1], 1, 0), 0)),
            Case("B=4, T=9, pad_id=5, lengths 9, 7, 3, 8", (padded([9, 7, 3, 8], 9, 5), 5)),
            Case("B=2, T=7, pad_id=1, left padding (lengths 7 and 3)", (padded([7, 3], 7, 1, left=True), 1)),
        ]
    return cases


# fn(tgt_ids [B, T], pad_id) -> [B, 1, T, T]: causal AND key padding. llmcore's causal_mask, padding_mask,
# and_masks and dense_mask are earlier components and may be used; the exercise is combining them.
DECODER_SELF_ATTENTION_MASK = register(Exercise(
    id="decoder_self_attention_mask",
    syllabus=("T03",),
    reference=_decoder_mask_variant,
    cases=_decoder_mask_cases,
    mistakes=DECODER_MASK_MISTAKES,
    output_names=("mask",),
    fallback_hint="dense_mask(and_masks(causal, padding of the keys), B, 1, T, T): "
    "a [B, 1, T, T] boolean tensor, True where query i may see key j.",
))
check_decoder_self_attention_mask = DECODER_SELF_ATTENTION_MASK.check


# --------------------------------------------------------------------------------------------------
# Multi-head attention (SYLLABUS T04)
# --------------------------------------------------------------------------------------------------


def _split_variant(x: Tensor, n_heads: int, *, layout: str = "reference") -> Tensor:
    batch, length, width = x.shape
    head_dim = width // n_heads
    if layout == "no_transpose":  # x.view(B, H, L, D): chops the sequence, not the features
        return x.reshape(batch, n_heads, length, head_dim)
    if layout == "blh":  # [B, L, H, D], forgot the transpose
        return x.reshape(batch, length, n_heads, head_dim)
    if layout == "interleaved":  # head h takes features h, h+H, h+2H, ...
        return x.reshape(batch, length, head_dim, n_heads).permute(0, 3, 1, 2)
    return reference_attention.split_heads(x, n_heads)


SPLIT_MISTAKES = [
    Mistake(
        "view_without_transpose",
        "the heads are split with x.view(B, n_heads, L, D), without the transpose",
        "memory is laid out token by token ([B, L, H·D]); each token's features are cut into heads first, and only "
        "then are the head and sequence axes swapped.",
        "first view(B, L, n_heads, D) so each token's features split into heads, then .transpose(1, 2) to get "
        "[B, H, L, D]. Viewing straight to [B, H, L, D] mixes tokens across heads.",
        output=lambda x, n_heads: _split_variant(x, n_heads, layout="no_transpose"),
    ),
    Mistake(
        "missing_transpose",
        "the result is [B, L, H, D]: the transpose to [B, H, L, D] is missing",
        "attention works per head over the sequence, so the head axis comes before the sequence axis.",
        "after view(B, L, n_heads, D) swap dims 1 and 2 with .transpose(1, 2).",
        output=lambda x, n_heads: _split_variant(x, n_heads, layout="blh"),
    ),
    Mistake(
        "interleaved",
        "the features of each head are interleaved (head h gets features h, h+H, h+2H, …)",
        "head h owns one contiguous block of d_head features.",
        "view(B, L, n_heads, D), not view(B, L, D, n_heads): head h gets features h·D … (h+1)·D − 1.",
        output=lambda x, n_heads: _split_variant(x, n_heads, layout="interleaved"),
    ),
]


def _merge_variant(x: Tensor, *, layout: str = "reference") -> Tensor:
    batch, n_heads, length, head_dim = x.shape
    if layout == "no_transpose":
        return x.reshape(batch, length, n_heads * head_dim)
    if layout == "interleaved":
        return x.permute(0, 2, 3, 1).reshape(batch, length, n_heads * head_dim)
    if layout == "not_merged":
        return x.transpose(1, 2)
    if layout == "view_after_transpose":
        return x.transpose(1, 2).view(batch, length, n_heads * head_dim)
    return reference_attention.merge_heads(x)


MERGE_MISTAKES = [
    Mistake(
        "reshape_without_transpose",
        "the heads are merged without transposing back (x.reshape(B, L, H·D) straight from [B, H, L, D])",
        "merging is split_heads backwards: bring each token's heads together first, then flatten them.",
        "first .transpose(1, 2) to [B, L, H, D], then .reshape(B, L, H·D), so each token gets its own heads back.",
        output=lambda x: _merge_variant(x, layout="no_transpose"),
    ),
    Mistake(
        "interleaved",
        "the heads are interleaved when merged (features ordered d·H + h instead of h·D + d)",
        "whole heads are concatenated one after the other.",
        "transpose(1, 2) to [B, L, H, D], then reshape; do not move D before H.",
        output=lambda x: _merge_variant(x, layout="interleaved"),
    ),
    Mistake(
        "not_concatenated",
        "the heads are transposed back but not concatenated ([B, L, H, D])",
        "the result has one feature vector of H·D numbers per token.",
        "finish with .reshape(B, L, H·D) (reshape, not view: the transposed tensor is not contiguous).",
        output=lambda x: _merge_variant(x, layout="not_merged"),
    ),
    Mistake(
        "view_after_transpose",
        ".view on the transposed tensor: transpose only changes strides, so the memory is no longer in [B, L, H, D] order",
        "a view can only reinterpret memory that is laid out in the new order; after a transpose it is not.",
        "use .reshape(B, L, H·D) (it copies when it must), or .contiguous().view(...).",
        output=lambda x: _merge_variant(x, layout="view_after_transpose"),
    ),
]


def _split_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    x = random.tensor
    cases = [
        Case("B=2, L=3, d_model=8, n_heads=2, float32", (x((2, 3, 8), torch.float32), 2)),
        Case("B=1, L=5, d_model=12, n_heads=3, float64", (x((1, 5, 12), torch.float64), 3)),
        Case("B=3, L=4, d_model=16, n_heads=4 (L = n_heads: wrong layouts keep the shape), float32, gradients",
             (x((3, 4, 16), torch.float32), 4), check_gradients=True),
        Case("B=2, L=3, d_model=6, n_heads=1, float64", (x((2, 3, 6), torch.float64), 1)),
    ]
    if hidden:
        cases += [
            Case("B=2, L=7, d_model=64, n_heads=8, float64, gradients", (x((2, 7, 64), torch.float64), 8),
                 check_gradients=True),
            Case("B=1, L=1, d_model=10, n_heads=5, float32", (x((1, 1, 10), torch.float32), 5)),
            Case("B=2, L=6, d_model=6, n_heads=6 (head dim 1), float32", (x((2, 6, 6), torch.float32), 6)),
        ]
    return cases


def _merge_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    x = random.tensor
    cases = [
        Case("B=2, H=2, L=3, D=4, float32", (x((2, 2, 3, 4), torch.float32),)),
        Case("B=1, H=3, L=5, D=4, float64", (x((1, 3, 5, 4), torch.float64),)),
        Case("B=3, H=4, L=4, D=4 (H = L = D), float32, gradients", (x((3, 4, 4, 4), torch.float32),),
             check_gradients=True),
        Case("B=2, H=1, L=3, D=6, float64", (x((2, 1, 3, 6), torch.float64),)),
    ]
    if hidden:
        cases += [
            Case("B=2, H=8, L=7, D=8, float64, gradients", (x((2, 8, 7, 8), torch.float64),), check_gradients=True),
            Case("B=1, H=5, L=1, D=2, float32", (x((1, 5, 1, 2), torch.float32),)),
            # A non-contiguous input, as attention outputs often are.
            Case("B=2, H=3, L=4, D=5, float32, non-contiguous input",
                 (x((2, 4, 3, 5), torch.float32).transpose(1, 2),)),
        ]
    return cases


# fn(x [B, L, H·D], n_heads) -> [B, H, L, D]
SPLIT_HEADS = register(Exercise(
    id="split_heads",
    syllabus=("T04",),
    reference=reference_attention.split_heads,
    cases=_split_cases,
    mistakes=SPLIT_MISTAKES,
    forbidden={reference_attention.split_heads: "llmcore.split_heads"},
    delegation=reference_attention.split_heads,
    output_names=("heads",),
    fallback_hint="x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2).",
))
check_split_heads = SPLIT_HEADS.check

# fn(x [B, H, L, D]) -> [B, L, H·D]
MERGE_HEADS = register(Exercise(
    id="merge_heads",
    syllabus=("T04",),
    reference=reference_attention.merge_heads,
    cases=_merge_cases,
    mistakes=MERGE_MISTAKES,
    forbidden={reference_attention.merge_heads: "llmcore.merge_heads"},
    delegation=reference_attention.merge_heads,
    output_names=("merged",),
    fallback_hint="x.transpose(1, 2).reshape(B, L, H * D): the inverse of split_heads.",
))
check_merge_heads = MERGE_HEADS.check


def _mha_forward(module: nn.Module, x: Tensor, context: Tensor | None, mask: Tensor | None) -> Tensor:
    return module(x, context=context, mask=mask)


def _mha_variant(
    module: llmcore.MultiHeadAttention,
    x: Tensor,
    context: Tensor | None,
    mask: Tensor | None,
    *,
    split: str = "reference",
    merge: str = "reference",
    output_projection: bool = True,
    keys_from_x: bool = False,
    scale_by_d_model: bool = False,
    use_mask: bool = True,
    context_as_truth_value: bool = False,
) -> Tensor:
    """The reference with one knob turned, computed with the reference module's weights."""
    n_heads, d_model = module.n_heads, x.shape[-1]
    if context_as_truth_value:
        source = context if context else x
    else:
        source = x if context is None or keys_from_x else context
    q, k, v = module.q_proj(x), module.k_proj(source), module.v_proj(source)
    if split == "one_head":
        q, k, v = q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)
    else:
        q, k, v = (_split_variant(t, n_heads, layout=split) for t in (q, k, v))
    scale = 1.0 / math.sqrt(d_model) if scale_by_d_model else None
    out = reference_attention.scaled_dot_product_attention(q, k, v, mask if use_mask else None, scale=scale)
    out = _merge_variant(out, layout=merge)
    return module.o_proj(out) if output_projection else out


def _mha_mistake(**knobs) -> Callable[..., Tensor]:
    return lambda build, x, context, mask: _mha_variant(build(), x, context, mask, **knobs)


MHA_MISTAKES = [
    Mistake(
        "split_without_transpose",
        "the heads are split with .view(B, n_heads, L, D), without the transpose",
        "each token's features are cut into heads first; only then are the head and sequence axes swapped.",
        "split each projection with view(B, L, n_heads, D).transpose(1, 2) (or llmcore.split_heads).",
        output=_mha_mistake(split="no_transpose"),
    ),
    Mistake(
        "merge_without_transpose",
        "the heads are merged without transposing back to [B, L, H, D]",
        "merging undoes the split: bring each token's heads together before flattening them.",
        "after attention, out.transpose(1, 2).reshape(B, L, d_model) (or llmcore.merge_heads).",
        output=_mha_mistake(merge="no_transpose"),
    ),
    Mistake(
        "no_output_projection",
        "the output projection o_proj is not applied",
        "the concatenated heads are mixed by one more linear map, W^O, before they leave the layer.",
        "return self.o_proj(merged).",
        output=_mha_mistake(output_projection=False),
    ),
    Mistake(
        "cross_keys_from_x",
        "in cross-attention the keys and values are projected from x instead of the context",
        "in cross-attention the queries come from the decoder and the keys and values from the encoder output.",
        "k = self.k_proj(context) and v = self.v_proj(context) when context is given (x otherwise).",
        output=_mha_mistake(keys_from_x=True),
    ),
    Mistake(
        "scale_by_d_model",
        "the scores are scaled by √d_model instead of √d_head",
        "each head's score is a dot product of d_head = d_model / n_heads numbers, so its scale is 1/√d_head.",
        "call scaled_dot_product_attention on the split [B, H, L, d_head] tensors; it scales by their last dimension.",
        output=_mha_mistake(scale_by_d_model=True),
    ),
    Mistake(
        "one_head",
        "attention runs as one head over the full d_model (the heads are never split)",
        "multi-head attention runs n_heads independent attentions over d_model / n_heads features each.",
        "split q, k and v into n_heads heads before attention, and merge them after.",
        output=_mha_mistake(split="one_head"),
    ),
    Mistake(
        "mask_unused",
        "the mask is not used",
        "the mask decides which keys each query may see; it has to reach the attention function.",
        "pass mask to the attention function: scaled_dot_product_attention(q, k, v, mask).",
        output=_mha_mistake(use_mask=False),
    ),
    Mistake(
        "context_truth_value",
        "`if context` asks a tensor for its truth value, which fails as soon as a context is given",
        "whether cross-attention is wanted is a question about None, not about the tensor's values.",
        "source = x if context is None else context.",
        output=_mha_mistake(context_as_truth_value=True),
    ),
]


def _mha_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    x = random.tensor

    def init(d_model: int, n_heads: int) -> dict:
        return {"d_model": d_model, "n_heads": n_heads}

    cases = [
        Case("self-attention, B=2, L=5, d_model=16, n_heads=4, float32, no mask",
             (x((2, 5, 16), torch.float32), None, None), init=init(16, 4)),
        Case("self-attention, B=2, L=6, d_model=24, n_heads=3, float64, causal mask [L, L], gradients",
             (x((2, 6, 24), torch.float64), None, causal(6)), init=init(24, 3), check_gradients=True),
        Case("cross-attention, B=1, L=3, S=5, d_model=32, n_heads=8 (head dim 4), float64, no mask, gradients",
             (x((1, 3, 32), torch.float64), x((1, 5, 32), torch.float64), None), init=init(32, 8),
             check_gradients=True),
        Case("cross-attention, B=2, L=4 queries, S=7 context positions, d_model=16, n_heads=2, float32, "
             "padding mask [B, 1, 1, S] with lengths 7 and 3",
             (x((2, 4, 16), torch.float32), x((2, 7, 16), torch.float32), lengths_mask([7, 3], 7)), init=init(16, 2)),
    ]
    if hidden:
        cases += [
            Case("self-attention, B=3, L=7, d_model=12, n_heads=1, float64",
                 (x((3, 7, 12), torch.float64), None, None), init=init(12, 1)),
            Case("cross-attention, B=2, L=1 (one decoding step), S=9, d_model=64, n_heads=8, float32, "
                 "padding lengths 9 and 4, gradients",
                 (x((2, 1, 64), torch.float32), x((2, 9, 64), torch.float32), lengths_mask([9, 4], 9)),
                 init=init(64, 8), check_gradients=True),
            Case("self-attention, B=2, L=5, d_model=20, n_heads=5, float64, causal AND padding (row 1 has 2 real tokens)",
                 (x((2, 5, 20), torch.float64), None, causal(5) & lengths_mask([5, 2], 5)), init=init(20, 5),
                 check_gradients=True),
        ]
    return cases


# cls(d_model, n_heads) with q_proj, k_proj, v_proj, o_proj (biases included) and
# forward(x, context=None, mask=None) -> [B, L, d_model].
MULTI_HEAD_ATTENTION = register(ModuleExercise(
    id="multi_head_attention",
    title="MultiHeadAttention",
    syllabus=("T04",),
    reference=llmcore.MultiHeadAttention,
    forward=_mha_forward,
    cases=_mha_cases,
    mistakes=MHA_MISTAKES,
    forbidden={
        llmcore.MultiHeadAttention: "llmcore.MultiHeadAttention",
        nn.MultiheadAttention: "torch.nn.MultiheadAttention",
        F.multi_head_attention_forward: "torch.nn.functional.multi_head_attention_forward",
    },
    forbidden_ops={"_native_multi_head_attention": "PyTorch's fused multi-head attention kernel"},
    delegation=llmcore.MultiHeadAttention,
    output_names=("output",),
    fallback_hint="q = split(q_proj(x)), k = split(k_proj(context)), v = split(v_proj(context)); "
    "attend with the mask; return o_proj(merge(out)).",
))
check_multi_head_attention = MULTI_HEAD_ATTENTION.check
