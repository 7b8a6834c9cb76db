"""Checks for notebook 01_attention: scaled dot-product attention, masks, multi-head attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

import llmcore
from llmcore import attention as reference_attention

from ..framework import Case, Mistake, check_function

__all__ = ["check_scaled_dot_product_attention"]


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


def check_scaled_dot_product_attention(fn, *, hidden: bool = False) -> int:
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
