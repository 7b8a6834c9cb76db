"""Checks for notebook 01_attention: scaled dot-product attention, masks, multi-head attention.

Every check compares the learner's code with llmcore on fixed seeds and names the known mistake
that reproduces a wrong answer. Each mistake is written as "the reference with one knob turned".
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.attention.bias as torch_attention_bias
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from llmcore import attention as reference_attention
from llmcore import masks as reference_masks

from ..framework import Case, CheckFailure, Mistake, check_function, load_reference_weights

__all__ = [
    "check_scaled_dot_product_attention",
    "check_causal_mask_mod",
    "check_padding_mask",
    "check_decoder_self_attention_mask",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
]


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
    mask_after_softmax: bool = False,
    invert_mask: bool = False,
    softmax_dim: int = -1,
) -> tuple[Tensor, Tensor]:
    """The reference with one knob turned: each known mistake is one setting of these arguments."""
    d = q.shape[-1]
    divisor = {"sqrt_d": math.sqrt(d), "none": 1.0, "d": float(d), "sqrt_len": math.sqrt(k.shape[-2])}[scale]
    scores = q @ k.transpose(-2, -1) / divisor
    if mask is not None and invert_mask:
        mask = ~mask
    if mask is not None:
        visible = mask.any(dim=-1, keepdim=True)
        if not mask_after_softmax:
            scores = scores.masked_fill(~(mask | ~visible), fill)
    weights = torch.softmax(scores, dim=softmax_dim)
    if mask is not None:
        weights = weights.masked_fill(~mask if mask_after_softmax else ~visible, 0.0)
    return weights @ v, weights


def _has_nan_where_expected_has_none(got: object, expected: object) -> bool:
    got_items = got if isinstance(got, (tuple, list)) else (got,)
    expected_items = expected if isinstance(expected, (tuple, list)) else (expected,)
    return any(
        isinstance(g, Tensor) and isinstance(e, Tensor) and g.shape == e.shape
        and bool(torch.isnan(g).any()) and not bool(torch.isnan(e).any())
        for g, e in zip(got_items, expected_items)
    )


SDPA_MISTAKES = [
    Mistake(
        "a query whose keys are all masked gives NaN",
        "softmax over a row that is all −∞ is 0/0. Find rows with no visible key "
        "(mask.any(dim=-1, keepdim=True)), keep them out of the −∞ fill, and set their weights to 0 after the softmax.",
        detect=_has_nan_where_expected_has_none,
    ),
    Mistake(
        "the 1/√d_k scale is missing",
        "divide the scores Q·Kᵀ by math.sqrt(d_k), with d_k = q.shape[-1], before the softmax.",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, scale="none"),
    ),
    Mistake(
        "the scores are divided by d_k instead of √d_k",
        "the paper scales by 1/√d_k: use math.sqrt(q.shape[-1]).",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, scale="d"),
    ),
    Mistake(
        "the scores are scaled by √(number of keys) instead of √d_k",
        "d_k is the size of each query/key vector, q.shape[-1], not the sequence length.",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, scale="sqrt_len"),
    ),
    Mistake(
        "the mask is applied after the softmax",
        "zeroing weights after the softmax leaves rows that no longer sum to 1. Fill masked scores with "
        "float('-inf') *before* the softmax.",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, mask_after_softmax=True),
    ),
    Mistake(
        "masked scores are filled with 0 instead of −∞",
        "a score of 0 still gets weight exp(0) = 1 after the softmax. Use float('-inf').",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, fill=0.0),
    ),
    Mistake(
        "the mask is inverted",
        "in this course (as in torch.nn.functional.scaled_dot_product_attention) True means *may attend*: "
        "fill where the mask is False, i.e. scores.masked_fill(~mask, float('-inf')).",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, invert_mask=True),
    ),
    Mistake(
        "the softmax runs over the wrong dimension",
        "each query's weights over the keys must sum to 1: softmax over the last dimension (dim=-1).",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask, softmax_dim=-2),
    ),
    Mistake(
        "output and weights are returned in the wrong order",
        "return the tuple (output, weights): the weighted sum of the values first, the attention weights second.",
        output=lambda q, k, v, mask=None: _sdpa_variant(q, k, v, mask)[::-1],
    ),
]


def _sdpa_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def qkv(shape_q: tuple, shape_kv: tuple, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        q = torch.randn(shape_q, generator=generator, dtype=dtype)
        k = torch.randn(shape_kv, generator=generator, dtype=dtype)
        v = torch.randn(shape_kv, generator=generator, dtype=dtype)
        return q, k, v

    def padding(batch: int, kv_len: int, lengths: list[int]) -> Tensor:
        return (torch.arange(kv_len) < torch.tensor(lengths).view(batch, 1)).view(batch, 1, 1, kv_len)

    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    with_empty_row = torch.rand((2, 1, 4, 5), generator=generator) > 0.4
    with_empty_row[:, :, 0, 0] = True
    with_empty_row[1, 0, 2] = False
    cases = [
        Case("B=1, H=1, L=S=3, D=4, float64, no mask", qkv((1, 1, 3, 4), (1, 1, 3, 4), torch.float64)),
        Case(
            "B=2, H=3, L=5, S=7, D=8, float32, padding mask [B,1,1,S] with key lengths 7 and 4",
            (*qkv((2, 3, 5, 8), (2, 3, 7, 8), torch.float32), padding(2, 7, [7, 4])),
        ),
        Case(
            "B=2, H=2, L=S=6, D=16, float64, causal mask [L,S], gradients checked",
            (*qkv((2, 2, 6, 16), (2, 2, 6, 16), torch.float64), causal),
            check_gradients=True,
        ),
        Case(
            "B=2, H=1, L=4, S=5, D=8, float32, random mask in which query 2 of batch row 1 sees no key",
            (*qkv((2, 1, 4, 8), (2, 1, 5, 8), torch.float32), with_empty_row),
            check_gradients=True,
        ),
    ]
    if hidden:
        cases += [
            Case("no batch dims: L=3, S=9, D=2, float64, no mask", qkv((3, 2), (9, 2), torch.float64), check_gradients=True),
            Case(
                "B=3, H=4, L=S=33, D=64, float32, causal mask",
                (*qkv((3, 4, 33, 64), (3, 4, 33, 64), torch.float32), torch.ones(33, 33, dtype=torch.bool).tril()),
            ),
            Case(
                "B=2, H=2, L=1, S=12, D=32, float64 (one decoding step), padding lengths 12 and 5",
                (*qkv((2, 2, 1, 32), (2, 2, 12, 32), torch.float64), padding(2, 12, [12, 5])),
                check_gradients=True,
            ),
        ]
    return cases


def check_scaled_dot_product_attention(fn, *, hidden: bool = False) -> None:
    """Check ``fn(q, k, v, mask=None) -> (output, weights)`` against llmcore (SYLLABUS T02, T03).

    ``q [..., L, D]``, ``k [..., S, D]``, ``v [..., S, D_v]``, boolean ``mask`` broadcastable to
    ``[..., L, S]`` with True = may attend; ``output [..., L, D_v]``, ``weights [..., L, S]``.
    """
    return check_function(
        "scaled_dot_product_attention",
        fn,
        _sdpa_reference,
        _sdpa_cases(seed=1 if hidden else 0, hidden=hidden),
        mistakes=SDPA_MISTAKES,
        forbidden={
            reference_attention.scaled_dot_product_attention: "llmcore.scaled_dot_product_attention",
            llmcore.MultiHeadAttention: "llmcore.MultiHeadAttention",
            F.scaled_dot_product_attention: "torch.nn.functional.scaled_dot_product_attention",
            F.multi_head_attention_forward: "torch.nn.functional.multi_head_attention_forward",
        },
        output_names=("output", "weights"),
        fallback_hint="scores = q @ k.transpose(-2, -1) / √d_k; fill masked scores with −∞; softmax over the keys; "
        "weights @ v. Return (output, weights).",
    )


# --------------------------------------------------------------------------------------------------
# Masks (SYLLABUS T03). Every mask is boolean with True = may attend.
# --------------------------------------------------------------------------------------------------

MaskMod = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]

_PYTHON_LOGIC_HINT = (
    "a mask_mod receives whole tensors of indices, not single numbers: Python `and`/`or`/`not`/`if` on them "
    "fails. Use element-wise tensor operations: comparisons, `&`, `|`, `~`."
)


def _evaluate_mask_mod(mask_mod: MaskMod) -> Callable[..., Tensor]:
    """``(B, H, L, S, q_offset) -> [B, H, L, S]``: the mask_mod evaluated by llmcore.dense_mask.

    Python ``and``/``if`` on the index tensors fails inside dense_mask; that error is turned into a hint.
    """

    def evaluate(batch: int, heads: int, q_len: int, kv_len: int, q_offset: int = 0) -> Tensor:
        try:
            return reference_masks.dense_mask(mask_mod, batch, heads, q_len, kv_len, q_offset=q_offset)
        except RuntimeError as error:
            if "Boolean value of Tensor" in str(error):
                raise CheckFailure(
                    f"✘ causal_mask_mod used a tensor as a Python truth value (with q_len={q_len}, kv_len={kv_len}):\n"
                    f"    {error}\nHint: {_PYTHON_LOGIC_HINT}"
                ) from None
            raise

    return evaluate


def _causal_cases(hidden: bool) -> list[Case]:
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


CAUSAL_MISTAKES = [
    Mistake(
        "the causal mask is strict: a token cannot see itself",
        "position i may attend to every j <= i, itself included: use kv_idx <= q_idx, not kv_idx < q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx < q_idx),
    ),
    Mistake(
        "the causal mask is transposed: each token sees the future instead of the past",
        "the row is the query, the column the key; a query sees keys at or *before* it: kv_idx <= q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx >= q_idx),
    ),
    Mistake(
        "the causal mask is inverted (True where attention is forbidden)",
        "in this course True means *may attend*; return kv_idx <= q_idx.",
        output=_evaluate_mask_mod(lambda b, h, q_idx, kv_idx: kv_idx > q_idx),
    ),
]


def check_causal_mask_mod(mask_mod: MaskMod, *, hidden: bool = False) -> None:
    """Check the predicate ``mask_mod(b, h, q_idx, kv_idx) -> bool tensor`` against llmcore.causal_mask (T03).

    The predicate is evaluated by ``llmcore.dense_mask`` on every (b, h, q, kv), with absolute query
    positions (``q_offset``) as in decoding with a KV cache.
    """
    if not callable(mask_mod):
        raise CheckFailure(f"✘ causal_mask_mod: expected a function, got {type(mask_mod).__name__}")
    return check_function(
        "causal_mask_mod",
        _evaluate_mask_mod(mask_mod),
        _evaluate_mask_mod(reference_masks.causal_mask),
        _causal_cases(hidden),
        mistakes=CAUSAL_MISTAKES,
        forbidden={
            reference_masks.causal_mask: "llmcore.causal_mask",
            nn.Transformer.generate_square_subsequent_mask: "torch.nn.Transformer.generate_square_subsequent_mask",
            torch_attention_bias.causal_lower_right: "torch.nn.attention.bias.causal_lower_right",
            torch_attention_bias.causal_upper_left: "torch.nn.attention.bias.causal_upper_left",
        },
        output_names=("mask",),
        fallback_hint="query q_idx may attend to key kv_idx exactly when kv_idx <= q_idx; return that boolean tensor.",
    )


def _padding_reference(token_ids: Tensor, pad_id: int) -> Tensor:
    batch, length = token_ids.shape
    return reference_masks.dense_mask(reference_masks.padding_mask(token_ids != pad_id), batch, 1, 1, length)


def _is_not_boolean(got: object, expected: object) -> bool:
    return isinstance(got, Tensor) and isinstance(expected, Tensor) and got.dtype != torch.bool


PADDING_MISTAKES = [
    Mistake(
        "the padding mask is inverted: True at the padding",
        "True means *may attend*, so the mask is True at real tokens: token_ids != pad_id.",
        output=lambda ids, pad_id: ~_padding_reference(ids, pad_id),
    ),
    Mistake(
        "the pad id is hard-coded as 0",
        "compare with the pad_id argument; vocabularies put padding at different ids.",
        output=lambda ids, pad_id: _padding_reference(ids, 0),
    ),
    Mistake(
        "the mask has shape [B, S], which does not broadcast over heads and queries",
        "scores are [B, H, L, S]; a [B, S] mask would line B up with L. Add the two singleton dims: "
        "(token_ids != pad_id)[:, None, None, :].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape),
    ),
    Mistake(
        "the mask has shape [B, 1, S], which does not broadcast over heads and queries",
        "against scores [B, H, L, S], a 3-d mask [B, 1, S] lines B up with H. Return [B, 1, 1, S].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape[0], 1, ids.shape[1]),
    ),
    Mistake(
        "the mask has shape [B, 1, S, 1]: it hides padded *queries* (rows) instead of padded *keys* (columns)",
        "padding must hide keys, the last dimension of the scores: return [B, 1, 1, S].",
        output=lambda ids, pad_id: _padding_reference(ids, pad_id).view(ids.shape[0], 1, ids.shape[1], 1),
    ),
    Mistake(
        "the mask is not boolean",
        "masked_fill and ~ need a torch.bool mask (on integers ~ is a bitwise not: ~1 = -2). "
        "A comparison such as token_ids != pad_id is already boolean: do not convert it.",
        detect=_is_not_boolean,
    ),
]


def _padding_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def padded(lengths: list[int], length: int, pad_id: int, vocab: int = 50, left: bool = False) -> Tensor:
        # Real tokens are drawn from ids other than pad_id.
        ids = torch.randint(0, vocab - 1, (len(lengths), length), generator=generator)
        ids = ids + (ids >= pad_id).long()
        positions = torch.arange(length)
        for row, n in enumerate(lengths):
            pads = positions < length - n if left else positions >= n
            ids[row, pads] = pad_id
        return ids

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
                 (padded([9, 4, 6, 2], 9, 31999, vocab=32000), 31999)),
        ]
    return cases


def check_padding_mask(fn: Callable[[Tensor, int], Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(token_ids [B, S], pad_id) -> [B, 1, 1, S]`` boolean, True at real tokens (T03)."""
    return check_function(
        "padding_mask",
        fn,
        _padding_reference,
        _padding_cases(seed=11 if hidden else 10, hidden=hidden),
        mistakes=PADDING_MISTAKES,
        forbidden={reference_masks.padding_mask: "llmcore.padding_mask"},
        output_names=("mask",),
        fallback_hint="(token_ids != pad_id) is [B, S] and True at real tokens; reshape it to [B, 1, 1, S].",
    )


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


DECODER_MASK_MISTAKES = [
    Mistake(
        "the masks are combined with OR instead of AND",
        "a key is visible only if it is in the past *and* a real token: causal & padding (llmcore.and_masks).",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, combine="or"),
    ),
    Mistake(
        "the padding mask is missing (causal mask only)",
        "padded target positions must be hidden too: AND the causal mask with the padding mask of tgt_ids.",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, combine="causal_only"),
    ),
    Mistake(
        "the causal mask is missing (padding mask only)",
        "the decoder must not see the tokens it is trained to predict: AND the padding mask with the causal mask.",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, combine="padding_only"),
    ),
    Mistake(
        "the causal part is strict: a token cannot see itself",
        "position i may attend to every j <= i, itself included (kv_idx <= q_idx).",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, causal="strict"),
    ),
    Mistake(
        "the causal part is transposed: tokens see the future",
        "rows are queries, columns are keys; keep the lower triangle (kv_idx <= q_idx).",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, causal="transposed"),
    ),
    Mistake(
        "the padding hides query rows instead of key columns",
        "index the padding with the *key* position: keep[b, kv_idx] (a [B, 1, 1, T] mask), not keep[b, q_idx].",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, padding="queries"),
    ),
    Mistake(
        "the padding part is inverted: True at the padding",
        "real tokens are tgt_ids != pad_id.",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id, padding="inverted"),
    ),
    Mistake(
        "the mask has shape [B, T, T], without the head dimension",
        "against scores [B, H, T, T] a 3-d mask lines B up with H. Return [B, 1, T, T].",
        output=lambda ids, pad_id: _decoder_mask_variant(ids, pad_id)[:, 0],
    ),
]


def _decoder_mask_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def padded(lengths: list[int], length: int, pad_id: int, left: bool = False) -> Tensor:
        ids = torch.randint(0, 30, (len(lengths), length), generator=generator)
        ids = ids + (ids >= pad_id).long()
        positions = torch.arange(length)
        for row, n in enumerate(lengths):
            ids[row, positions < length - n if left else positions >= n] = pad_id
        return ids

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


def check_decoder_self_attention_mask(fn: Callable[[Tensor, int], Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(tgt_ids [B, T], pad_id) -> [B, 1, T, T]``: causal AND key padding (T03).

    llmcore's causal_mask, padding_mask, and_masks and dense_mask are earlier components and may be
    used; the exercise is combining them.
    """
    return check_function(
        "decoder_self_attention_mask",
        fn,
        _decoder_mask_variant,
        _decoder_mask_cases(seed=21 if hidden else 20, hidden=hidden),
        mistakes=DECODER_MASK_MISTAKES,
        output_names=("mask",),
        fallback_hint="dense_mask(and_masks(causal, padding of the keys), B, 1, T, T): "
        "a [B, 1, T, T] boolean tensor, True where query i may see key j.",
    )


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
        "the heads are split with x.view(B, n_heads, L, D), without the transpose",
        "memory is laid out [B, L, H·D]: first view(B, L, n_heads, D) so each token's features split into heads, "
        "then .transpose(1, 2) to get [B, H, L, D]. Viewing straight to [B, H, L, D] mixes tokens across heads.",
        output=lambda x, n_heads: _split_variant(x, n_heads, layout="no_transpose"),
    ),
    Mistake(
        "the result is [B, L, H, D]: the transpose to [B, H, L, D] is missing",
        "after view(B, L, n_heads, D) swap dims 1 and 2 with .transpose(1, 2).",
        output=lambda x, n_heads: _split_variant(x, n_heads, layout="blh"),
    ),
    Mistake(
        "the features of each head are interleaved (head h gets features h, h+H, h+2H, …)",
        "head h owns the contiguous block of features h·D … (h+1)·D − 1: view(B, L, n_heads, D), not view(B, L, D, n_heads).",
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
    return reference_attention.merge_heads(x)


MERGE_MISTAKES = [
    Mistake(
        "the heads are merged without transposing back (x.reshape(B, L, H·D) straight from [B, H, L, D])",
        "first .transpose(1, 2) to [B, L, H, D], then .reshape(B, L, H·D), so each token gets its own heads back.",
        output=lambda x: _merge_variant(x, layout="no_transpose"),
    ),
    Mistake(
        "the heads are interleaved when merged (features ordered d·H + h instead of h·D + d)",
        "concatenate whole heads: transpose(1, 2) to [B, L, H, D], then reshape; do not move D before H.",
        output=lambda x: _merge_variant(x, layout="interleaved"),
    ),
    Mistake(
        "the heads are transposed back but not concatenated ([B, L, H, D])",
        "finish with .reshape(B, L, H·D) (reshape, not view: the transposed tensor is not contiguous).",
        output=lambda x: _merge_variant(x, layout="not_merged"),
    ),
]


def _split_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

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


def _merge_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

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


def check_split_heads(fn: Callable[[Tensor, int], Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(x [B, L, H·D], n_heads) -> [B, H, L, D]`` against llmcore.split_heads (T04)."""
    return check_function(
        "split_heads",
        fn,
        reference_attention.split_heads,
        _split_cases(seed=31 if hidden else 30, hidden=hidden),
        mistakes=SPLIT_MISTAKES,
        forbidden={reference_attention.split_heads: "llmcore.split_heads"},
        output_names=("heads",),
        fallback_hint="x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2).",
    )


def check_merge_heads(fn: Callable[[Tensor], Tensor], *, hidden: bool = False) -> None:
    """Check ``fn(x [B, H, L, D]) -> [B, L, H·D]`` against llmcore.merge_heads (T04)."""
    return check_function(
        "merge_heads",
        fn,
        reference_attention.merge_heads,
        _merge_cases(seed=41 if hidden else 40, hidden=hidden),
        mistakes=MERGE_MISTAKES,
        forbidden={reference_attention.merge_heads: "llmcore.merge_heads"},
        output_names=("merged",),
        fallback_hint="x.transpose(1, 2).reshape(B, L, H * D): the inverse of split_heads.",
    )


def _reference_module(d_model: int, n_heads: int, seed: int, dtype: torch.dtype) -> llmcore.MultiHeadAttention:
    """llmcore's module with weights drawn from ``seed`` (biases included, so a missing bias shows)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = llmcore.MultiHeadAttention(d_model, n_heads)
    return module.to(dtype)


def _mha_reference(x: Tensor, context: Tensor | None, mask: Tensor | None, *, d_model: int, n_heads: int, seed: int) -> Tensor:
    return _reference_module(d_model, n_heads, seed, x.dtype)(x, context, mask)


def _mha_variant(
    x: Tensor,
    context: Tensor | None,
    mask: Tensor | None,
    *,
    d_model: int,
    n_heads: int,
    seed: int,
    split: str = "reference",
    merge: str = "reference",
    output_projection: bool = True,
    keys_from_x: bool = False,
    scale_by_d_model: bool = False,
    use_mask: bool = True,
) -> Tensor:
    """The reference with one knob turned, computed with the reference module's weights."""
    module = _reference_module(d_model, n_heads, seed, x.dtype)
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


MHA_MISTAKES = [
    Mistake(
        "the heads are split with .view(B, n_heads, L, D), without the transpose",
        "split each projection with view(B, L, n_heads, D).transpose(1, 2) (or llmcore.split_heads).",
        output=lambda *args, **kw: _mha_variant(*args, **kw, split="no_transpose"),
    ),
    Mistake(
        "the heads are merged without transposing back to [B, L, H, D]",
        "after attention, out.transpose(1, 2).reshape(B, L, d_model) (or llmcore.merge_heads).",
        output=lambda *args, **kw: _mha_variant(*args, **kw, merge="no_transpose"),
    ),
    Mistake(
        "the output projection o_proj is not applied",
        "the concatenated heads go through self.o_proj before they are returned: it mixes the heads (W^O).",
        output=lambda *args, **kw: _mha_variant(*args, **kw, output_projection=False),
    ),
    Mistake(
        "in cross-attention the keys and values are projected from x instead of the context",
        "queries come from x; keys and values come from context (the encoder output) when it is given.",
        output=lambda *args, **kw: _mha_variant(*args, **kw, keys_from_x=True),
    ),
    Mistake(
        "the scores are scaled by √d_model instead of √d_head",
        "each head is a dot product of d_head = d_model / n_heads numbers: scale by 1/√d_head "
        "(llmcore.scaled_dot_product_attention does this when given [B, H, L, d_head] tensors).",
        output=lambda *args, **kw: _mha_variant(*args, **kw, scale_by_d_model=True),
    ),
    Mistake(
        "attention runs as one head over the full d_model (the heads are never split)",
        "split q, k and v into n_heads heads of d_model / n_heads before attention, and merge them after.",
        output=lambda *args, **kw: _mha_variant(*args, **kw, split="one_head"),
    ),
    Mistake(
        "the mask is not used",
        "pass mask to the attention function: scaled_dot_product_attention(q, k, v, mask).",
        output=lambda *args, **kw: _mha_variant(*args, **kw, use_mask=False),
    ),
]


def _mha_cases(seed: int, hidden: bool) -> list[Case]:
    generator = torch.Generator().manual_seed(seed)

    def x(shape: tuple, dtype: torch.dtype) -> Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype)

    def lengths_mask(lengths: list[int], length: int) -> Tensor:
        return (torch.arange(length) < torch.tensor(lengths).view(-1, 1)).view(len(lengths), 1, 1, length)

    def causal(length: int) -> Tensor:
        return torch.ones(length, length, dtype=torch.bool).tril()

    def config(d_model: int, n_heads: int, offset: int) -> dict:
        return dict(d_model=d_model, n_heads=n_heads, seed=seed * 100 + offset)

    cases = [
        Case("self-attention, B=2, L=5, d_model=16, n_heads=4, float32, no mask",
             (x((2, 5, 16), torch.float32), None, None), config(16, 4, 1)),
        Case("self-attention, B=2, L=6, d_model=24, n_heads=3, float64, causal mask [L, L], gradients",
             (x((2, 6, 24), torch.float64), None, causal(6)), config(24, 3, 2), check_gradients=True),
        Case("cross-attention, B=1, L=3, S=5, d_model=32, n_heads=8 (head dim 4), float64, no mask, gradients",
             (x((1, 3, 32), torch.float64), x((1, 5, 32), torch.float64), None), config(32, 8, 4),
             check_gradients=True),
        Case("cross-attention, B=2, L=4 queries, S=7 context positions, d_model=16, n_heads=2, float32, "
             "padding mask [B, 1, 1, S] with lengths 7 and 3",
             (x((2, 4, 16), torch.float32), x((2, 7, 16), torch.float32), lengths_mask([7, 3], 7)), config(16, 2, 3)),
    ]
    if hidden:
        cases += [
            Case("self-attention, B=3, L=7, d_model=12, n_heads=1, float64",
                 (x((3, 7, 12), torch.float64), None, None), config(12, 1, 5)),
            Case("cross-attention, B=2, L=1 (one decoding step), S=9, d_model=64, n_heads=8, float32, "
                 "padding lengths 9 and 4, gradients",
                 (x((2, 1, 64), torch.float32), x((2, 9, 64), torch.float32), lengths_mask([9, 4], 9)),
                 config(64, 8, 6), check_gradients=True),
            Case("self-attention, B=2, L=5, d_model=20, n_heads=5, float64, causal AND padding (row 1 has 2 real tokens)",
                 (x((2, 5, 20), torch.float64), None, causal(5) & lengths_mask([5, 2], 5)), config(20, 5, 7),
                 check_gradients=True),
        ]
    return cases


def check_multi_head_attention(cls: type, *, hidden: bool = False) -> None:
    """Check ``cls(d_model, n_heads)`` with ``q_proj, k_proj, v_proj, o_proj`` and
    ``forward(x, context=None, mask=None) -> [B, L, d_model]`` against llmcore.MultiHeadAttention (T04).

    The learner's module gets llmcore's weights by name (``load_reference_weights``), is cast to the
    case's dtype, and is called as ``module(x, context=context, mask=mask)``.
    """
    if not isinstance(cls, type):
        raise CheckFailure(f"✘ MultiHeadAttention: expected the class itself, got {type(cls).__name__}")

    def run_learner(x: Tensor, context: Tensor | None, mask: Tensor | None, *, d_model: int, n_heads: int, seed: int):
        module = cls(d_model, n_heads)
        load_reference_weights("MultiHeadAttention", module, _reference_module(d_model, n_heads, seed, torch.float32))
        return module.to(x.dtype)(x, context=context, mask=mask)

    return check_function(
        "MultiHeadAttention",
        run_learner,
        _mha_reference,
        _mha_cases(seed=51 if hidden else 50, hidden=hidden),
        mistakes=MHA_MISTAKES,
        forbidden={
            llmcore.MultiHeadAttention: "llmcore.MultiHeadAttention",
            nn.MultiheadAttention: "torch.nn.MultiheadAttention",
            F.multi_head_attention_forward: "torch.nn.functional.multi_head_attention_forward",
        },
        output_names=("output",),
        fallback_hint="q = split(q_proj(x)), k = split(k_proj(context)), v = split(v_proj(context)); "
        "attend with the mask; return o_proj(merge(out)).",
    )
