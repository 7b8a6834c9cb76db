"""Exercises of notebook 05_qwen: Qwen's attention with biases on Q/K/V only, Qwen-1's dynamic NTK base, LogN
attention scaling, and Qwen2's layer-wise choice between full and sliding-window attention.

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its ``check``.
Every mistake is the reference with one knob turned (a ``*_variant`` function below). Conventions, as in
:mod:`llmcore.long_context` and Qwen's ``modeling_qwen.py``: lengths count tokens, positions are 0-based, a chunk
of ``L`` queries against ``S`` keys sits at positions ``S − L … S − 1``; Qwen2's ``max_window_layers`` counts the
*lowest* layers, which keep full attention (``Qwen2Config.layer_types``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from llmcore import long_context as reference_long_context
from llmcore import rope as reference_rope
from llmcore.attention import MultiHeadAttention
from llmcore.models.families import qwen as reference_qwen

from ..cases import CaseRandom
from ..framework import Case, Mistake
from ..spec import Exercise, ModuleExercise, register

__all__ = [
    "QWEN_ATTENTION",
    "QWEN_NTK_BASE",
    "LOGN_ATTENTION_SCORES",
    "QWEN2_LAYER_WINDOWS",
    "check_qwen_attention",
    "check_qwen_ntk_base",
    "check_logn_attention_scores",
    "check_qwen2_layer_windows",
]


# --------------------------------------------------------------------------------------------------
# Qwen's attention: biases on the query, key and value projections only (SYLLABUS L07)
# --------------------------------------------------------------------------------------------------


class QwenAttentionReference(MultiHeadAttention):
    """llmcore's attention built as Qwen's: ``q_proj``/``k_proj``/``v_proj`` with a bias, ``o_proj`` without;
    causal self-attention with half-split RoPE tables ``cos``/``sin`` ``[L, head_dim]``."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int) -> None:
        super().__init__(d_model, n_heads, n_kv_heads, bias=True, out_bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:  # type: ignore[override]
        return super().forward(x, rotary=(cos.unsqueeze(0), sin.unsqueeze(0)), is_causal=True)


def _random_biases(module: nn.Module) -> None:
    """Biases far from zero, so that a bias dropped or added at the wrong place changes the output."""
    for projection in (module.q_proj, module.k_proj, module.v_proj):
        nn.init.normal_(projection.bias, 0.0, 0.5)


def _interleaved_rotation(h: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """GPT-J's pairing (dims 2i, 2i + 1) applied with the half-split tables: the rotation of another layout."""
    rotated = torch.stack((-h[..., 1::2], h[..., ::2]), dim=-1).flatten(-2)
    return h * cos + rotated * sin


def _attention_variant(build: Callable[[], nn.Module], x: Tensor, cos: Tensor, sin: Tensor, *,
                       bias_after_rope: bool = False, rope_on_values: bool = False, causal: bool = True,
                       tile_kv_heads: bool = False, heads_without_transpose: bool = False,
                       scale_by_d_model: bool = False, softmax_dim: int = -1, unscaled: bool = False,
                       interleaved: bool = False, merge_without_transpose: bool = False, rope_on_keys: bool = True,
                       diagonal_masked: bool = False, own_tables: bool = False) -> Tensor:
    """Qwen's attention written out, with one knob turned."""
    module = build()
    batch, length, _ = x.shape
    heads, kv_heads, head_dim = module.n_heads, module.n_kv_heads, module.head_dim
    if own_tables:   # the tables given are ignored: positions 0 … L − 1 with the default base
        cos, sin = _rope_tables(length, head_dim, x.dtype)

    def project(linear: nn.Linear, n: int, rotate: bool) -> Tensor:
        h = F.linear(x, linear.weight, None if bias_after_rope and rotate else linear.bias)
        h = h.view(batch, n, length, head_dim) if heads_without_transpose else \
            h.view(batch, length, n, head_dim).transpose(1, 2)
        if rotate:
            h = _interleaved_rotation(h, cos, sin) if interleaved else \
                reference_rope.apply_rotary(h, cos.unsqueeze(0), sin.unsqueeze(0))
            if bias_after_rope:
                h = h + linear.bias.view(n, head_dim).unsqueeze(1)
        return h

    q = project(module.q_proj, heads, True)
    k = project(module.k_proj, kv_heads, rope_on_keys)
    v = project(module.v_proj, kv_heads, rope_on_values)
    group = heads // kv_heads
    expand = (lambda t: t.repeat(1, group, 1, 1)) if tile_kv_heads else (lambda t: t.repeat_interleave(group, dim=1))
    k, v = expand(k), expand(v)
    scale = 1.0 if unscaled else 1 / math.sqrt(heads * head_dim if scale_by_d_model else head_dim)
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        allowed = torch.ones(length, length, dtype=torch.bool).tril(-1 if diagonal_masked else 0)
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = scores.softmax(softmax_dim)
    out = (weights.nan_to_num(0.0) if diagonal_masked else weights) @ v
    merged = out.reshape(batch, length, heads * head_dim) if merge_without_transpose else \
        out.transpose(1, 2).reshape(batch, length, heads * head_dim)
    return module.o_proj(merged)


def _attention_mistake(**knobs: Any) -> Callable[..., Tensor]:
    return lambda build, x, cos, sin: _attention_variant(build, x, cos, sin, **knobs)


ATTENTION_MISTAKES = [
    Mistake("bias_after_rope", "the bias is added after RoPE instead of inside the projection",
            "the bias belongs to the linear projection: q = x·W_qᵀ + b_q first, then q is rotated. Added after the "
            "rotation it no longer turns with the position, and Qwen's checkpoints would compute other scores.",
            "q = self.q_proj(x) (bias included), split into heads, then rotate q and k.",
            output=_attention_mistake(bias_after_rope=True)),
    Mistake("rope_on_values", "RoPE rotates the values too",
            "RoPE encodes positions into the *scores* q·k only; the values carry content and stay as projected.",
            "rotate q and k; v = split_heads(self.v_proj(x)) without cos/sin.",
            output=_attention_mistake(rope_on_values=True)),
    Mistake("not_causal", "the attention is not causal: every token sees the future",
            "Qwen is a decoder: query i may attend to keys 0 … i only.",
            "mask the scores above the diagonal with -inf before the softmax (or is_causal=True in "
            "F.scaled_dot_product_attention).",
            output=_attention_mistake(causal=False)),
    Mistake("kv_heads_tiled", "the KV heads are repeated as a block (repeat) instead of each in turn (repeat_interleave)",
            "with grouped-query attention query head i reads KV head i // (H / H_kv): consecutive query heads share one "
            "KV head (01_llama_block.ipynb).",
            "k = k.repeat_interleave(n_heads // n_kv_heads, dim=1), not k.repeat(1, n_heads // n_kv_heads, 1, 1).",
            output=_attention_mistake(tile_kv_heads=True)),
    Mistake("heads_without_transpose", "the heads are split with view(B, H, L, D) without a transpose",
            "the projection's output is [B, L, H·D]: view it as [B, L, H, D], then transpose to [B, H, L, D]; a direct "
            "view mixes positions and heads.",
            "h.view(B, L, H, D).transpose(1, 2), and back with .transpose(1, 2).reshape(B, L, H * D).",
            output=_attention_mistake(heads_without_transpose=True)),
    Mistake("scale_by_d_model", "the scores are divided by √d_model instead of √head_dim",
            "each head is an attention of its own over head_dim dimensions, so its scores are scaled by 1/√head_dim.",
            "scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim).",
            output=_attention_mistake(scale_by_d_model=True)),
    Mistake("scale_missing", "the scores are not scaled by 1/√head_dim",
            "without the scale the logits grow with head_dim and the softmax saturates; attention divides q·k by "
            "√head_dim.",
            "scores = q @ k.transpose(-2, -1) / math.sqrt(head_dim) (F.scaled_dot_product_attention does it by "
            "default; scale=1.0 switches it off).",
            output=_attention_mistake(unscaled=True)),
    Mistake("softmax_over_queries", "the softmax runs over the queries (dim −2) instead of over the keys",
            "each query distributes its attention over the keys, so the weights of one *row* (the last axis of "
            "[B, H, L_q, L_k]) sum to 1.",
            "weights = scores.softmax(dim=-1).",
            output=_attention_mistake(softmax_dim=-2)),
    Mistake("diagonal_masked", "the mask hides the diagonal too: a query cannot attend to itself",
            "causal means keys 0 … i for query i, its own position included; masking the diagonal leaves the first "
            "query with nothing to attend to (a NaN or a zero row).",
            "future = torch.ones(L, L, dtype=torch.bool).triu(diagonal=1), or tril() (diagonal 0) for the allowed "
            "positions.",
            output=_attention_mistake(diagonal_masked=True)),
    Mistake("rope_interleaved", "RoPE pairs neighbouring dimensions (2i, 2i + 1, GPT-J / Meta's layout) instead of "
            "the two halves",
            "the tables given are in the half-split layout (Hugging Face, Qwen): dimension i turns with dimension "
            "i + head_dim/2, which is what rotate_half pairs.",
            "q * cos + rotate_half(q) * sin with rotate_half(x) = cat(-x[..., D//2:], x[..., :D//2]).",
            output=_attention_mistake(interleaved=True)),
    Mistake("rope_on_queries_only", "RoPE rotates the queries but not the keys",
            "the position enters the score through q_mᵀ·R_{n−m}·k_n only when *both* are rotated; rotating q alone "
            "makes the score depend on the query's absolute position.",
            "q = q * cos + rotate_half(q) * sin and the same for k.",
            output=_attention_mistake(rope_on_keys=False)),
    Mistake("merge_without_transpose", "the heads are merged with reshape(B, L, H·D) straight from [B, H, L, D]",
            "the attention's output is [B, H, L, D]: transpose it back to [B, L, H, D] before flattening the heads, "
            "or positions and heads are mixed.",
            "out.transpose(1, 2).reshape(B, L, H * D).",
            output=_attention_mistake(merge_without_transpose=True)),
    Mistake("tables_ignored", "the cos/sin tables given are ignored (tables for positions 0 … L−1 built inside)",
            "forward receives the tables the model chose: a chunk after a KV cache, or Qwen's dynamic NTK base, "
            "gives other angles than positions 0 … L−1 with base 10000. Use the cos and sin passed in.",
            "q = q * cos + rotate_half(q) * sin with the forward's own cos/sin arguments; build no RotaryEmbedding "
            "inside the module.",
            output=_attention_mistake(own_tables=True)),
]


def _rope_tables(length: int, head_dim: int, dtype: torch.dtype, start: int = 0,
                 base: float = 10000.0) -> tuple[Tensor, Tensor]:
    cos, sin = reference_rope.RotaryEmbedding(head_dim, base)(torch.arange(start, start + length).unsqueeze(0), dtype)
    return cos[0], sin[0]


def _attention_case(random: CaseRandom, description: str, batch: int, length: int, d_model: int, heads: int,
                    kv_heads: int, dtype: torch.dtype = torch.float32, *, start: int = 0, base: float = 10000.0,
                    gradients: bool = False) -> Case:
    cos, sin = _rope_tables(length, d_model // heads, dtype, start, base)
    return Case(description, (random.tensor((batch, length, d_model), dtype), cos, sin),
                init={"d_model": d_model, "n_heads": heads, "n_kv_heads": kv_heads}, check_gradients=gradients)


def _attention_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # Every query head has its own KV head in the first case, so a mistake in the attention itself is named there
    # even when the grouping of heads is wrong too; the grouping shows from the second case on. RoPE is relative: a
    # shift of every position leaves q·k as it is, so only tables of another base (the third case: Qwen's dynamic NTK
    # with α = 3) show a module that builds its own tables instead of using the ones given.
    ntk_base = 10000.0 * 3 ** (10 / 8)
    cases = [
        _attention_case(random, "x [B=3, L=4, d_model=18], 3 heads = 3 KV heads (head_dim 6), float32", 3, 4, 18, 3, 3),
        _attention_case(random, "x [B=2, L=5, d_model=24], 4 query heads sharing 2 KV heads (head_dim 6), float32",
                        2, 5, 24, 4, 2),
        _attention_case(random, "x [B=1, L=7, d_model=20], multi-query (2 heads, 1 KV head, head_dim 10), tables for "
                        "positions 4…10 with Qwen's dynamic-NTK base 10000·3^(10/8) (α = 3), float64, gradients",
                        1, 7, 20, 2, 1, torch.float64, start=4, base=ntk_base, gradients=True),
    ]
    if hidden:
        cases += [
            _attention_case(random, "x [B=2, L=9, d_model=48], 6 heads sharing 3 KV heads (head_dim 8), tables for "
                            "positions 100…108 with base 10000·7^(8/6) (α = 7), float64",
                            2, 9, 48, 6, 3, torch.float64, start=100, base=10000.0 * 7 ** (8 / 6)),
            _attention_case(random, "x [B=1, L=1, d_model=12], one token, 2 heads, 2 KV heads", 1, 1, 12, 2, 2),
        ]
    return cases


QWEN_ATTENTION = register(ModuleExercise(
    id="qwen_attention",
    title="QwenAttention",
    syllabus=("L07",),
    reference=QwenAttentionReference,
    prepare=_random_biases,
    cases=_attention_cases,
    mistakes=ATTENTION_MISTAKES,
    forbidden={MultiHeadAttention: "llmcore.attention.MultiHeadAttention",
               torch.nn.MultiheadAttention: "torch.nn.MultiheadAttention"},
    delegation=QwenAttentionReference,
    output_names=("output",),
    fallback_hint="q_proj, k_proj, v_proj = nn.Linear(..., bias=True), o_proj = nn.Linear(..., bias=False); in forward: "
                  "project, split heads [B, H, L, D], rotate q and k with cos/sin, repeat_interleave the KV heads, "
                  "causal softmax(q·kᵀ/√head_dim)·v, merge heads, o_proj.",
))
check_qwen_attention = QWEN_ATTENTION.check


# --------------------------------------------------------------------------------------------------
# Qwen-1's dynamic NTK: α and the scaled base (SYLLABUS L07)
# --------------------------------------------------------------------------------------------------


def _ntk_reference(length: int, trained_length: int, head_dim: int, base: float = 10000.0) -> tuple[int, float]:
    return reference_long_context.qwen_ntk_base(length, trained_length, head_dim, base)


def _ntk_variant(length: int, trained_length: int, head_dim: int, base: float = 10000.0, *,
                 rounding: Callable[[float], int] = math.ceil, log: Callable[[float], float] = math.log2,
                 inverted: bool = False, plus_one: bool = True, minus_one: bool = True, clamp: bool = True,
                 exponent: str = "d/(d-2)", step_high_at_powers: bool = False) -> tuple[float, float]:
    ratio = trained_length / length if inverted else length / trained_length
    if step_high_at_powers:   # ⌊x⌋ + 1: ⌈x⌉ everywhere except at an integer x, where it is one more
        rounding = lambda value: math.floor(value) + 1  # noqa: E731
    alpha = 2 ** rounding(log(ratio) + (1 if plus_one else 0)) - (1 if minus_one else 0)
    if clamp:
        alpha = max(alpha, 1)
    if exponent == "precedence":   # base * alpha ** head_dim / (head_dim - 2)
        return alpha, base * alpha ** head_dim / (head_dim - 2)
    power = {"d/(d-2)": head_dim / (head_dim - 2), "none": 1.0, "(d-2)/d": (head_dim - 2) / head_dim}[exponent]
    return alpha, base * alpha ** power


def _ntk_mistake(**knobs: Any) -> Callable[..., tuple[float, float]]:
    return lambda length, trained_length, head_dim, base=10000.0: _ntk_variant(
        length, trained_length, head_dim, base, **knobs)


NTK_MISTAKES = [
    # Several mistakes give the same α on some lengths (⌈ln r + 1⌉ = ⌊log₂ r + 1⌋ = ⌈log₂ r⌉ at r = 2.5). The visible
    # cases are ordered so that each mistake first fails where it is the first declared one that matches: the short
    # prompt (inverted ratio, no clamp), exactly 2L₀ (no + 1; floor is right there), 1.5L₀ (floor), 1.3L₀ (round(),
    # which is right at 1.5L₀ and, where it is wrong, rounds down), 2.5L₀ (ln). The last visible case, 4L₀ exactly, is
    # where (ln L − ln L₀)/ln 2 comes out 2.0000000000000004 and α one step high; ⌊x⌋ + 1 shows already at 2L₀.
    Mistake("natural_log", "the logarithm is natural (ln) instead of base 2",
            "α doubles (plus one) each time the length doubles: the exponent counts doublings, log₂(L/L₀).",
            "math.log2(length / trained_length) (or math.log(length / trained_length, 2)).",
            output=_ntk_mistake(log=math.log)),
    Mistake("floor_instead_of_ceil", "log₂(L/L₀) + 1 is rounded down (or to the nearest) instead of up",
            "Qwen rounds up, so any length past L₀ already gets α = 3 (2049 tokens with L₀ = 2048); rounded down, "
            "α stays 1 until 2L₀.",
            "alpha = 2 ** math.ceil(math.log2(length / trained_length) + 1) - 1.",
            output=_ntk_mistake(rounding=math.floor)),
    Mistake("plus_one_missing", "the + 1 inside the exponent is missing",
            "Qwen's exponent is ⌈log₂(L/L₀) + 1⌉: with it, α = 3 just past L₀ and 7 just past 2L₀.",
            "alpha = 2 ** math.ceil(math.log2(length / trained_length) + 1) - 1.",
            output=_ntk_mistake(plus_one=False)),
    Mistake("ratio_inverted", "the ratio is L₀/L instead of L/L₀",
            "α grows with the *current* length L relative to the trained one: log₂(L/L₀) is positive past L₀.",
            "math.log2(length / trained_length): the current length on top.",
            output=_ntk_mistake(inverted=True)),
    Mistake("minus_one_missing", "the − 1 after the power of two is missing (α = 2, 4, 8 … instead of 1, 3, 7 …)",
            "α = 2^k − 1, so that α = 1 (no change) for every length up to L₀.",
            "alpha = 2 ** math.ceil(...) - 1.",
            output=_ntk_mistake(minus_one=False)),
    Mistake("not_clamped", "α is not clamped at 1 for short sequences (it reaches 0 or less)",
            "below L₀/2 the formula gives α ≤ 0; Qwen keeps α at least 1, so a short prompt runs with the trained base.",
            "alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1).",
            output=_ntk_mistake(clamp=False)),
    Mistake("exponent_missing", "the base is multiplied by α itself, without the exponent d/(d−2)",
            "NTK-aware scaling raises the base by α^(d/(d−2)) so that the slowest pair slows by exactly α.",
            "new_base = base * alpha ** (head_dim / (head_dim - 2)).",
            output=_ntk_mistake(exponent="none")),
    Mistake("exponent_inverted", "the exponent is (d−2)/d instead of d/(d−2)",
            "the slowest pair's frequency is base^(−(d−2)/d); only base·α^(d/(d−2)) divides it by exactly α.",
            "new_base = base * alpha ** (head_dim / (head_dim - 2)).",
            output=_ntk_mistake(exponent="(d-2)/d")),
    Mistake("exponent_precedence", "the exponent is not in parentheses: base · α^d / (d − 2) instead of base · α^(d/(d−2))",
            "** binds tighter than /, so alpha ** head_dim / (head_dim - 2) raises α to head_dim and then divides the "
            "whole by head_dim − 2 (even α = 1 changes the base).",
            "base * alpha ** (head_dim / (head_dim - 2)), with the parentheses.",
            output=_ntk_mistake(exponent="precedence")),
    Mistake("step_high_at_power_of_two", "α is one step too high exactly at L = 2ᵏ·L₀ (e.g. 15 instead of 7 at 4 L₀)",
            "exact powers of two are the boundaries: there log₂(L/L₀) + 1 is a whole number and ⌈·⌉ must leave it "
            "as it is. A logarithm that comes out a hair too large, such as (ln L − ln L₀)/ln 2 = 2.0000000000000004 "
            "for 32768/8192, or a ceiling written as int(x) + 1 or floor(x) + 1, rounds one step up.",
            "math.ceil(math.log2(length / trained_length) + 1): math.log2 of the ratio is exact at powers of two "
            "(or count the doublings with integers: while covered < length: covered *= 2).",
            output=_ntk_mistake(step_high_at_powers=True)),
]


def _ntk_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("L₀ = 64, a 20-token prompt (shorter than L₀/2), head_dim 16, base 10000", (20, 64, 16)),
        Case("L₀ = 2048, L = 4096 = 2 L₀ exactly, head_dim 128, base 10000", (4096, 2048, 128)),
        Case("Qwen-7B (first release): L₀ = 2048, L = 3072 (1.5 L₀), head_dim 128, base 10000", (3072, 2048, 128)),
        Case("L₀ = 100, L = 130 (1.3 L₀), head_dim 32, base 10000", (130, 100, 32)),
        Case("L₀ = 64, L = 160 (2.5 L₀), head_dim 16, base 10000", (160, 64, 16), {"base": 10000.0}),
        Case("L₀ = 32, L = 40, head_dim 12, base 500000", (40, 32, 12), {"base": 500000.0}),
        Case("L₀ = 2048, L = 1500 (between L₀/2 and L₀), head_dim 64, base 10000", (1500, 2048, 64)),
        Case("L₀ = 8192 (Qwen-7B later release), L = 32768 = 4 L₀ exactly (a boundary: α = 7, not 15), head_dim 128, "
             "base 10000", (32768, 8192, 128)),
    ]
    if hidden:
        length = int(random.ids(4000, (1,), low=2200))
        cases += [
            Case("L₀ = 2048, L = 2049 (one token past L₀), head_dim 128", (2049, 2048, 128)),
            Case("L₀ = 2048, L = 4097, head_dim 128", (4097, 2048, 128)),
            Case(f"L₀ = 512, L = {length}, head_dim 32, base 10000", (length, 512, 32)),
            Case("L₀ = 1024, L = 8192 = 8 L₀ exactly, head_dim 64, base 10000", (8192, 1024, 64)),
            Case("L₀ = 8192, L = 32769 (one token past 4 L₀), head_dim 128, base 10000", (32769, 8192, 128)),
            Case("L₀ = 100, L = 1, head_dim 8", (1, 100, 8)),
        ]
    return cases


QWEN_NTK_BASE = register(Exercise(
    id="qwen_ntk_base",
    title="qwen_ntk_base",
    syllabus=("L07",),
    reference=_ntk_reference,
    cases=_ntk_cases,
    mistakes=NTK_MISTAKES,
    forbidden={reference_long_context.qwen_ntk_base: "llmcore.long_context.qwen_ntk_base",
               reference_long_context.qwen_ntk_alpha: "llmcore.long_context.qwen_ntk_alpha"},
    delegation=_ntk_reference,
    output_names=("alpha", "base"),
    fallback_hint="alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1); "
                  "return alpha, base * alpha ** (head_dim / (head_dim - 2)).",
))
check_qwen_ntk_base = QWEN_NTK_BASE.check


# --------------------------------------------------------------------------------------------------
# LogN attention scaling (SYLLABUS L07)
# --------------------------------------------------------------------------------------------------


def _logn_variant(q: Tensor, k: Tensor, trained_length: int, training: bool = False, *, on: str = "queries",
                  everywhere: bool = False, in_training: bool = False, log_base: str = "trained",
                  zero_based: bool = False, one_factor: bool = False, positions_from_zero: bool = False) -> Tensor:
    """q·kᵀ/√d with Qwen's LogN on the queries, with one knob turned."""
    query_length, key_length = q.shape[-2], k.shape[-2]

    def factors(positions: Tensor) -> Tensor:
        counted = positions.to(q.dtype) + (0 if zero_based else 1)
        if one_factor:
            counted = torch.full_like(counted, float(key_length))
        logs = torch.log(counted) if log_base == "e" else torch.log(counted) / math.log(trained_length)
        scaled = logs if everywhere else torch.where(counted > trained_length, logs, torch.ones_like(logs))
        return torch.ones_like(scaled) if training and not in_training else scaled

    start = 0 if positions_from_zero else key_length - query_length
    if on in ("queries", "both"):
        q = q * factors(torch.arange(start, start + query_length)).unsqueeze(-1)
    if on in ("keys", "both"):
        k = k * factors(torch.arange(key_length)).unsqueeze(-1)
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _logn_reference(q: Tensor, k: Tensor, trained_length: int, training: bool = False) -> Tensor:
    if not training:
        positions = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2])
        q = q * reference_long_context.logn_scale(positions, trained_length, q.dtype).unsqueeze(-1)
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def _logn_mistake(**knobs: Any) -> Callable[..., Tensor]:
    if "training" in knobs:   # the flag forced: training=True means no scaling at all
        forced = knobs.pop("training")
        return lambda q, k, trained_length, training=False: _logn_variant(q, k, trained_length, forced, **knobs)
    return lambda q, k, trained_length, training=False: _logn_variant(q, k, trained_length, training, **knobs)


LOGN_MISTAKES = [
    Mistake("no_logn_at_inference", "no LogN scaling at inference: the scores are the plain q·kᵀ/√d",
            "at inference (training=False) every query past the trained length is multiplied by log_{L₀}(p + 1); "
            "only training=True leaves the scores plain. Check that the flag is not read the wrong way round.",
            "if not training: q = q * factor[:, None], with factor = log(p + 1) / log(trained_length) where p + 1 > "
            "trained_length, else 1, for p in arange(S − L, S).",
            output=_logn_mistake(training=True)),
    Mistake("keys_scaled_too", "the keys are scaled as well as the queries",
            "one factor per query is enough: q·k grows by log_{L₀}(p + 1) once. Scaled on both sides it grows by the "
            "square; Qwen multiplies the queries only.",
            "q = q * factor[:, None]; leave k as it is.",
            output=_logn_mistake(on="both")),
    Mistake("keys_instead_of_queries", "the keys are scaled instead of the queries",
            "the factor depends on the position of the *query* (how many keys it competes over); Qwen multiplies q.",
            "q = q * factor[:, None] with one factor per query position.",
            output=_logn_mistake(on="keys")),
    Mistake("scaled_within_trained_length", "the factor is applied at every position, also up to the trained length",
            "up to L₀ the model must run exactly as trained (factor 1); log_{L₀}(p + 1) < 1 there would blur attention.",
            "factor = torch.where(p + 1 > trained_length, log(p + 1) / log(trained_length), 1).",
            output=_logn_mistake(everywhere=True)),
    Mistake("scaled_in_training", "the scaling is applied in training too",
            "LogN is an inference-time correction: Qwen multiplies the queries only when not self.training.",
            "if training: return q @ k.transpose(-2, -1) / math.sqrt(d) unscaled.",
            output=_logn_mistake(in_training=True)),
    Mistake("natural_log", "the factor is ln(p + 1) instead of log_{L₀}(p + 1)",
            "the base of the logarithm is the trained length, so the factor starts at exactly 1 at position L₀.",
            "math.log(p + 1) / math.log(trained_length), or torch.log(...) / math.log(trained_length).",
            output=_logn_mistake(log_base="e")),
    Mistake("zero_based_position", "the factor is log_{L₀}(p) of the 0-based position p instead of log_{L₀}(p + 1)",
            "the query at 0-based position p sees p + 1 keys (itself included); Qwen's table is log(i, L₀) for the "
            "1-based i = p + 1.",
            "one_based = positions + 1; factor = log(one_based) / log(L₀) where one_based > L₀.",
            output=_logn_mistake(zero_based=True)),
    Mistake("one_factor_from_length", "every query gets one factor, log_{L₀} of the key length",
            "the factor is per query: a query at position p competes over p + 1 keys, not over the whole sequence.",
            "positions = torch.arange(S - L, S); a factor for each of them.",
            output=_logn_mistake(one_factor=True)),
    Mistake("chunk_positions_from_zero", "the queries of a chunk are numbered 0 … L−1 instead of S−L … S−1",
            "with a KV cache the L new queries are the *last* L of the S positions (Qwen slices its table at "
            "[S − L : S]).",
            "positions = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2]).",
            output=_logn_mistake(positions_from_zero=True)),
]


def _logn_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def qk(batch: int, heads: int, queries: int, keys: int, dim: int, dtype: torch.dtype = torch.float32):
        return random.tensor((batch, heads, queries, dim), dtype), random.tensor((batch, heads, keys, dim), dtype)

    # The first chunk straddles L₀ and its first L positions do too (1-based 1 … 6 against L₀ = 5), so scores left
    # plain and a chunk numbered from 0 differ there.
    cases = [
        Case("q [B=2, H=3, L=6, D=4], k [2, 3, S=9, 4] (a chunk at positions 3…8), trained length 5, inference",
             (*qk(2, 3, 6, 9, 4), 5), {"training": False}),
        Case("q, k [B=1, H=2, L=S=11, D=6], trained length 4, float64, inference, gradients",
             (*qk(1, 2, 11, 11, 6, torch.float64), 4), {"training": False}, check_gradients=True),
        Case("q, k [B=2, H=4, L=S=13, D=3], trained length 5, training=True", (*qk(2, 4, 13, 13, 3), 5),
             {"training": True}),
        Case("q, k [B=3, H=2, L=S=7, D=5], trained length 16 (shorter than trained), inference",
             (*qk(3, 2, 7, 7, 5), 16), {"training": False}),
    ]
    if hidden:
        cases += [
            Case("one decoding step: q [1, 2, 1, 8], k [1, 2, 40, 8], trained length 8, float64",
                 (*qk(1, 2, 1, 40, 8, torch.float64), 8), {"training": False}, check_gradients=True),
            Case("q, k [B=2, H=1, L=S=30, D=7], trained length 12, inference", (*qk(2, 1, 30, 30, 7), 12),
                 {"training": False}),
            Case("q [1, 3, 4, 6], k [1, 3, 6, 6], trained length 3, training=True", (*qk(1, 3, 4, 6, 6), 3),
                 {"training": True}),
        ]
    return cases


LOGN_ATTENTION_SCORES = register(Exercise(
    id="logn_attention_scores",
    title="logn_attention_scores",
    syllabus=("L07",),
    reference=_logn_reference,
    cases=_logn_cases,
    mistakes=LOGN_MISTAKES,
    forbidden={reference_long_context.logn_scale: "llmcore.long_context.logn_scale"},
    delegation=_logn_reference,
    output_names=("scores",),
    fallback_hint="positions = arange(S − L, S); factor = log(p + 1) / log(trained_length) where p + 1 > "
                  "trained_length, else 1 (all 1 when training); scores = (q · factor[:, None]) @ kᵀ / √d.",
))
check_logn_attention_scores = LOGN_ATTENTION_SCORES.check


# --------------------------------------------------------------------------------------------------
# Layer-wise window attention, Qwen2's convention (SYLLABUS L07)
# --------------------------------------------------------------------------------------------------


class LayerWindows:
    """A list of per-layer windows (``None`` = full attention) compared as one value, so that a failure shows the
    whole list, expected and received."""

    def __init__(self, windows: Any) -> None:
        self.windows = windows

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerWindows) and _normalised(self.windows) == _normalised(other.windows)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self.windows)


def _normalised(windows: Any) -> Any:
    """Lists and tuples of ints (numpy and torch integers included) and None compare alike; anything else as is (a
    generator or map object by its type, so that two calls give equal values and it is named, not taken for
    randomness)."""
    if isinstance(windows, Iterator):
        return ("an iterator", type(windows).__name__)
    if not isinstance(windows, (list, tuple)):
        return ("not a list", repr(windows))
    items = []
    for window in windows:
        if isinstance(window, Tensor) and window.numel() == 1 and not window.is_floating_point():
            window = int(window.item())
        elif window is not None and not isinstance(window, bool) and hasattr(window, "__index__"):
            window = int(window)
        items.append(window)
    return items


def _windows_reference(n_layers: int, max_window_layers: int, sliding_window: int,
                       use_sliding_window: bool = True) -> LayerWindows:
    kinds, window = reference_qwen.qwen2_layer_kinds({
        "num_hidden_layers": n_layers, "max_window_layers": max_window_layers, "sliding_window": sliding_window,
        "use_sliding_window": use_sliding_window,
    })
    return LayerWindows([window if kind == "sliding" else None for kind in kinds or ["full"] * n_layers])


def _windows_variant(n_layers: int, max_window_layers: int, sliding_window: int, use_sliding_window: bool = True, *,
                     rule: str = "above", ignore_flag: bool = False) -> LayerWindows:
    slides = {
        "above": lambda i: i >= max_window_layers,
        "below": lambda i: i < max_window_layers,
        "strictly_above": lambda i: i > max_window_layers,
        "top_count": lambda i: i >= n_layers - max_window_layers,
        "all": lambda i: True,
    }[rule]
    on = use_sliding_window or ignore_flag
    return LayerWindows([sliding_window if on and slides(i) else None for i in range(n_layers)])


def _windows_mistake(**knobs: Any) -> Callable[..., LayerWindows]:
    return lambda n_layers, max_window_layers, sliding_window, use_sliding_window=True: _windows_variant(
        n_layers, max_window_layers, sliding_window, use_sliding_window, **knobs)


def _as_windows(learner: Callable[..., Any]) -> Callable[..., LayerWindows]:
    def run(*args: Any, **kwargs: Any) -> LayerWindows:
        return LayerWindows(learner(*args, **kwargs))
    return run


WINDOWS_MISTAKES = [
    Mistake("lower_layers_slide", "the lower layers slide and the upper layers see everything (the reverse)",
            "in Qwen2's config the first max_window_layers layers (0 … max_window_layers − 1) keep full attention and "
            "the layers above them slide. (The Qwen report's sentence about shorter windows in lower layers is about "
            "Qwen-1, not this config field.)",
            "window if i >= max_window_layers else None, for i in range(n_layers).",
            output=_windows_mistake(rule="below")),
    Mistake("boundary_off_by_one", "layer max_window_layers itself keeps full attention (i > max_window_layers)",
            "layers are numbered from 0, so max_window_layers full layers are 0 … max_window_layers − 1; layer "
            "max_window_layers is the first that slides.",
            "the test is i >= max_window_layers, not i > max_window_layers.",
            output=_windows_mistake(rule="strictly_above")),
    Mistake("counted_from_the_top", "max_window_layers is read as the number of sliding layers (counted from the top)",
            "despite its name, max_window_layers counts the lower layers with *full* attention; the window starts "
            "above them.",
            "window if i >= max_window_layers else None.",
            output=_windows_mistake(rule="top_count")),
    Mistake("every_layer_slides", "every layer gets the window (max_window_layers is ignored)",
            "Qwen2 mixes the two kinds (滑动窗口与全注意力混合): the lowest max_window_layers layers see everything.",
            "window if i >= max_window_layers else None.",
            output=_windows_mistake(rule="all")),
    Mistake("flag_ignored", "the window is used even when use_sliding_window is False",
            "use_sliding_window switches the window on at all; the released Qwen2 configs keep it off, and then every "
            "layer has full attention.",
            "if not use_sliding_window: return [None] * n_layers.",
            output=_windows_mistake(ignore_flag=True)),
    Mistake("returned_iterator", "a generator (or map object) is returned instead of a list",
            "the model indexes the result per layer (windows[i]) and may read it more than once; a generator has no "
            "len(), no indexing and is empty after one pass.",
            "return a list: [... for i in range(n_layers)] with square brackets, or list(map(...)).",
            detect=lambda got, expected: isinstance(getattr(got, "windows", None), Iterator)),
]


def _windows_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("n_layers=7, max_window_layers=2, sliding_window=16, use_sliding_window=True", (7, 2, 16, True)),
        Case("n_layers=5, max_window_layers=0 (every layer slides), sliding_window=8", (5, 0, 8),
             {"use_sliding_window": True}),
        Case("n_layers=6, max_window_layers=2, sliding_window=32, use_sliding_window=False", (6, 2, 32, False)),
        Case("n_layers=4, max_window_layers=4 (no layer slides), sliding_window=4, use_sliding_window=True",
             (4, 4, 4, True)),
        Case("n_layers=8, max_window_layers=6, sliding_window=64, use_sliding_window=True", (8, 6, 64, True)),
    ]
    if hidden:
        layers = int(random.ids(30, (1,), low=10))
        full = int(random.ids(layers, (1,), low=1))
        cases += [
            Case(f"n_layers={layers}, max_window_layers={full}, sliding_window=4096, use_sliding_window=True",
                 (layers, full, 4096, True)),
            Case("n_layers=28, max_window_layers=28, sliding_window=131072, use_sliding_window=False (a released "
                 "Qwen2-7B-style config)", (28, 28, 131072, False)),
            Case("n_layers=1, max_window_layers=0, sliding_window=2, use_sliding_window=True", (1, 0, 2, True)),
        ]
    return cases


QWEN2_LAYER_WINDOWS = register(Exercise(
    id="qwen2_layer_windows",
    title="qwen2_layer_windows",
    syllabus=("L07",),
    reference=_windows_reference,
    cases=_windows_cases,
    mistakes=WINDOWS_MISTAKES,
    forbidden={reference_qwen.qwen2_layer_kinds: "llmcore.models.families.qwen.qwen2_layer_kinds"},
    delegation=lambda n_layers, max_window_layers, sliding_window, use_sliding_window=True: _windows_reference(
        n_layers, max_window_layers, sliding_window, use_sliding_window).windows,
    adapt=_as_windows,
    output_names=("windows",),
    fallback_hint="[sliding_window if use_sliding_window and i >= max_window_layers else None for i in "
                  "range(n_layers)].",
))
check_qwen2_layer_windows = QWEN2_LAYER_WINDOWS.check
