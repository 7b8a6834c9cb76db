"""Exercises of notebook 07_alibi_baichuan_bloom: ALiBi's slopes and attention (SYLLABUS L11; Press et al.,
2022; BLOOM), Baichuan 2's NormHead and max-z loss (L12; Yang et al., 2023).

Conventions, as in llmcore: the slopes of ``n`` heads are BLOOM's (``build_alibi_tensor``): the
``P = 2^⌊log₂ n⌋`` slopes ``2^(−8h/P)``, ``h = 1 … P``, then every other slope of the ``2P`` sequence,
starting with its first (``2^(−4/P)``, ``2^(−12/P)``, …). The bias is ``−m_h · (q − kv)``, added to the
scaled scores before the causal mask and the softmax; the ``L`` queries are the last ``L`` of the ``S``
positions (a KV cache). NormHead divides each vocabulary row of ``weight [V, d]`` by
``max(‖row‖, 1e-12)`` (``F.normalize``) on every forward. The max-z loss is ``weight · mean(max_v z²)``
over the real tokens (``mask`` true), 0 when there are none.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
from llmcore import alibi as reference_alibi
from llmcore import losses as reference_losses
from llmcore.models import NormHead as LibraryNormHead

from ..cases import CaseRandom
from ..framework import Case, Mistake, is_numpy
from ..spec import Exercise, ModuleExercise, register

__all__ = [
    "ALIBI_SLOPES",
    "ALIBI_ATTENTION",
    "NORM_HEAD",
    "MAX_Z_LOSS",
    "check_alibi_slopes",
    "check_alibi_attention",
    "check_norm_head",
    "check_max_z_loss",
]


# --------------------------------------------------------------------------------------------------
# ALiBi slopes for any number of heads: alibi_slopes(n_heads) -> [n_heads]
# --------------------------------------------------------------------------------------------------

def _as_float32(learner: Callable[[int], Any]) -> Callable[[int], Any]:
    """Slopes computed in float64 or returned as a list are fine: compare them as float32 tensors."""

    def slopes(n_heads: int) -> Any:
        result = learner(n_heads)
        if is_numpy(result) and result.dtype.kind in "fiu":
            return torch.as_tensor(result).to(torch.float32)
        if isinstance(result, Tensor) and result.is_floating_point():
            return result.float()
        if isinstance(result, (list, tuple)) and all(
                isinstance(s, numbers.Real) and not isinstance(s, bool)
                or (isinstance(s, Tensor) or is_numpy(s)) and s.ndim == 0 for s in result):
            return torch.tensor([float(s) for s in result], dtype=torch.float32)
        return result

    return slopes


def _slopes_variant(*, naive: bool = False, extra: str = "every_other", first_power: int = 1,
                    ratio_from_n: bool = False, reverse: bool = False,
                    sort_descending: bool = False) -> Callable[[int], Tensor]:
    """BLOOM's slopes with one knob turned; every mistake is one setting."""

    def slopes(n_heads: int) -> Tensor:
        if naive:
            values = [2.0 ** (-8.0 * h / n_heads) for h in range(1, n_heads + 1)]
        else:
            closest = 2 ** math.floor(math.log2(n_heads))
            denominator = n_heads if ratio_from_n else closest
            ratio = 2.0 ** (-8.0 / denominator)
            values = [ratio ** (h + first_power) for h in range(closest)]
            doubled = [(2.0 ** (-4.0 / denominator)) ** h for h in range(1, 2 * closest + 1)]
            remaining = n_heads - closest
            values += {
                "every_other": doubled[0::2],
                "every_other_from_second": doubled[1::2],
                "even_powers_from_zero": [1.0, *doubled[1::2]],
                "consecutive": doubled,
                "continued": [ratio ** (closest + h + first_power) for h in range(remaining)],
            }[extra][:remaining]
        if reverse:
            values = values[::-1]
        if sort_descending:
            values = sorted(values, reverse=True)
        return torch.tensor(values, dtype=torch.float32)

    return slopes


def _slopes_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    if not hidden:
        return [
            Case("n_heads=8 (a power of two: 1/2, 1/4, …, 1/256)", (8,)),
            Case("n_heads=12 (not a power of two: 8 slopes, then 4 more)", (12,)),
            Case("n_heads=40 (Baichuan 2-13B)", (40,)),
            Case("n_heads=1", (1,)),
            Case("n_heads=6", (6,)),
        ]
    return [
        Case("n_heads=112 (BLOOM-176B)", (112,)),
        Case("n_heads=32", (32,)),
        Case("n_heads=3", (3,)),
        Case("n_heads=20", (20,)),
        Case("n_heads=71 (a lone head past 64)", (71,)),
    ]


ALIBI_SLOPES_MISTAKES = [
    Mistake(
        "naive_geometric",
        "every head count uses the geometric sequence 2^(−8h/n)",
        "the sequence 2^(−8h/n) is ALiBi's only for a power of two; otherwise take the P = 2^⌊log₂ n⌋ slopes of P "
        "heads, then the missing n − P from the sequence of 2P heads (every other one), as BLOOM does.",
        "closest = 2 ** math.floor(math.log2(n)); slopes of closest heads, then "
        "[2 ** (-4 / closest * (2 * i + 1)) for i in range(n - closest)].",
        output=_slopes_variant(naive=True),
    ),
    Mistake(
        "extra_consecutive",
        "the extra slopes are the first ones of the 2P sequence, not every other one",
        "half of the 2P sequence is already among the P slopes (2^(−8h/2P) with h even); the new ones are those "
        "with h odd: 2^(−4/P), 2^(−12/P), …",
        "extra = doubled[0::2][:n - closest], i.e. powers 1, 3, 5, … of 2 ** (-4 / closest).",
        output=_slopes_variant(extra="consecutive"),
    ),
    Mistake(
        "extra_duplicates",
        "the extra slopes repeat slopes the first P heads already have (every other slope, from the second)",
        "the even powers of the 2P sequence are exactly the P slopes; the extra heads take the odd powers "
        "(1, 3, 5, …), which lie between them.",
        "extra = doubled[0::2], not doubled[1::2]: powers 2 ** (-4 / closest) ** (2 * i + 1).",
        output=_slopes_variant(extra="every_other_from_second"),
    ),
    Mistake(
        "extra_from_power_zero",
        "the extra slopes start at power 0 (a slope of 1), then repeat slopes the first P heads have",
        "the extra heads take the odd powers 1, 3, 5, … of 2^(−4/P); the even powers 0, 2, 4, … give 1 and then "
        "slopes already taken.",
        "range(1, 2 * (n - closest), 2) for the extra exponents, not range(0, 2 * (n - closest), 2).",
        output=_slopes_variant(extra="even_powers_from_zero"),
    ),
    Mistake(
        "extra_continued",
        "the extra slopes continue the P sequence below its smallest slope",
        "continuing to 2^(−8(P+1)/P), … makes ever flatter heads; ALiBi instead fills the gaps between the P slopes "
        "with every other slope of the 2P sequence.",
        "extra = [2 ** (-4 / closest * (2 * i + 1)) for i in range(n - closest)].",
        output=_slopes_variant(extra="continued"),
    ),
    Mistake(
        "ratio_from_n",
        "the ratio is computed from n, the head count, instead of P = 2^⌊log₂ n⌋",
        "the P first slopes are those of a P-head model, 2^(−8h/P), and the extra ones those of a 2P-head model.",
        "ratio = 2 ** (-8 / closest) and extra ratio 2 ** (-4 / closest), with closest = 2 ** floor(log2(n)).",
        output=_slopes_variant(ratio_from_n=True),
    ),
    Mistake(
        "starts_at_one",
        "the powers start at 0: the first head's slope is 1",
        "head h = 1 … n gets 2^(−8h/n): the steepest slope of 8 heads is 1/2, the flattest 1/256.",
        "range(1, closest + 1) for the exponents (or ratio ** (h + 1) with h from 0).",
        output=_slopes_variant(first_power=0),
    ),
    Mistake(
        "reversed",
        "the slopes are in increasing order",
        "head 0 has the steepest slope (the most local head) and the slopes decrease from there.",
        "return the slopes as computed, steepest first; do not sort or flip them.",
        output=_slopes_variant(reverse=True),
    ),
    Mistake(
        "sorted_descending",
        "all the slopes are sorted in decreasing order: the extra heads' slopes are moved between the first P",
        "the P slopes of a P-head model come first, in their order, and the n − P extra slopes are appended after "
        "them (they lie between the first ones, so the whole list is not sorted when n is not a power of two).",
        "return the P slopes followed by the extra ones, as computed; no sorted(...).",
        output=_slopes_variant(sort_descending=True),
    ),
]


ALIBI_SLOPES = register(Exercise(
    id="alibi_slopes",
    syllabus=("L11",),
    reference=reference_alibi.alibi_slopes,
    cases=_slopes_cases,
    adapt=_as_float32,
    mistakes=ALIBI_SLOPES_MISTAKES,
    forbidden={reference_alibi.alibi_slopes: "llmcore.alibi_slopes"},
    delegation=reference_alibi.alibi_slopes,
    output_names=("slopes",),
    fallback_hint="closest = 2 ** floor(log2(n)); slopes = [2 ** (-8 * h / closest) for h in 1..closest]; if n > closest "
                  "append [2 ** (-4 * (2 * i + 1) / closest) for i in range(n - closest)].",
))
check_alibi_slopes = ALIBI_SLOPES.check


# --------------------------------------------------------------------------------------------------
# Causal attention with ALiBi: alibi_attention(q [B, H, L, D], k, v [B, H, S, D], slopes [H]) -> [B, H, L, D]
# --------------------------------------------------------------------------------------------------

def _reference_alibi_attention(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) -> Tensor:
    """llmcore's attention with llmcore's bias; the queries are the last L of the S positions. The slopes are
    constants (no gradient is checked for them)."""
    slopes = slopes.detach()
    q_len, kv_len = q.shape[-2], k.shape[-2]
    bias = reference_alibi.alibi_bias(slopes, q_len, kv_len, q_offset=kv_len - q_len).to(q.dtype)
    mask = llmcore.dense_mask(llmcore.causal_mask, 1, 1, q_len, kv_len, q_offset=kv_len - q_len)
    return llmcore.scaled_dot_product_attention(q, k, v, mask, bias)


def _constant_slopes(learner: Callable[..., Any]) -> Callable[..., Any]:
    """ALiBi's slopes are constants, not parameters: the learner gets them detached, so that a bias built under
    no_grad, or with −inf distances (0 · inf = NaN in a slopes gradient), is fine; only q, k and v's gradients
    are compared."""

    def attend(q: Tensor, k: Tensor, v: Tensor, slopes: Any) -> Any:
        return learner(q, k, v, slopes.detach() if isinstance(slopes, Tensor) else slopes)

    return attend


def _attention_variant(*, sign: float = -1.0, after_softmax: bool = False, mask: str = "offset",
                       symmetric: bool = False, scale_scores: bool = True, scale_bias: bool = False):
    """Attention with a hand-built bias and one knob turned; ``mask`` is "offset", "top_left" or "none"."""

    def attend(q: Tensor, k: Tensor, v: Tensor, slopes: Tensor) -> Tensor:
        q_len, kv_len = q.shape[-2], k.shape[-2]
        q_positions = torch.arange(kv_len - q_len, kv_len).view(-1, 1)
        distance = (q_positions - torch.arange(kv_len).view(1, -1)).to(q.dtype)
        if symmetric:
            distance = distance.abs()
        bias = sign * slopes.to(q.dtype).view(-1, 1, 1) * distance
        scores = q @ k.transpose(-2, -1)
        if scale_bias:
            scores = (scores + bias) / math.sqrt(q.shape[-1])
        else:
            scores = scores / math.sqrt(q.shape[-1]) if scale_scores else scores
            scores = scores if after_softmax else scores + bias
        if mask != "none":
            rows = q_positions if mask == "offset" else torch.arange(q_len).view(-1, 1)
            scores = scores.masked_fill(torch.arange(kv_len).view(1, -1) > rows, float("-inf"))
        weights = scores.softmax(dim=-1)
        if after_softmax:
            weights = weights + bias
        return weights @ v

    return attend


def _attention_case(random: CaseRandom, description: str, batch: int, heads: int, q_len: int, kv_len: int, dim: int,
                    dtype: torch.dtype, gradients: bool = False) -> Case:
    q = random.tensor((batch, heads, q_len, dim), dtype)
    k = random.tensor((batch, heads, kv_len, dim), dtype)
    v = random.tensor((batch, heads, kv_len, dim), dtype)
    slopes = reference_alibi.alibi_slopes(heads).to(dtype)
    return Case(description, (q, k, v, slopes), check_gradients=gradients)


def _attention_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    if not hidden:
        return [
            _attention_case(random, "q [B=2, H=3, L=5, D=4], k/v [S=5], float32 (a prompt)", 2, 3, 5, 5, 4, torch.float32),
            _attention_case(random, "q [B=1, H=4, L=3, D=6] at positions 4…6, k/v [S=7] (a KV cache), float32",
                            1, 4, 3, 7, 6, torch.float32),
            _attention_case(random, "q [B=2, H=5, L=4, D=3] at positions 2…5, k/v [S=6], float64, gradients of q, k, v",
                            2, 5, 4, 6, 3, torch.float64, gradients=True),
            _attention_case(random, "one decoding step: q [B=3, H=2, L=1, D=8] at position 8, k/v [S=9], float32",
                            3, 2, 1, 9, 8, torch.float32),
        ]
    return [
        _attention_case(random, "q [B=2, H=12, L=10, D=16], k/v [S=10], float32", 2, 12, 10, 10, 16, torch.float32),
        _attention_case(random, "q [B=1, H=6, L=5, D=7] at positions 15…19, k/v [S=20], float64, gradients of q, k, v",
                        1, 6, 5, 20, 7, torch.float64, gradients=True),
        _attention_case(random, "one decoding step: q [B=2, H=8, L=1, D=4] at position 30, k/v [S=31], float64",
                        2, 8, 1, 31, 4, torch.float64),
    ]


ALIBI_ATTENTION_MISTAKES = [
    Mistake(
        "bias_positive",
        "the bias has the wrong sign: distant keys are favoured",
        "ALiBi penalises distance: the bias is −m·(q − k), zero on the diagonal and more negative the further back "
        "the key is.",
        "bias = -slopes.view(-1, 1, 1) * (q_pos.view(-1, 1) - k_pos.view(1, -1)).",
        output=_attention_variant(sign=1.0),
    ),
    Mistake(
        "bias_after_softmax",
        "the bias is added to the attention weights after the softmax",
        "the bias is a score: it goes into the logits before the softmax, so the weights still sum to 1.",
        "scores = q @ k.transpose(-2, -1) / sqrt(D) + bias; mask; then softmax.",
        output=_attention_variant(after_softmax=True),
    ),
    Mistake(
        "causal_mask_not_offset",
        "the causal mask ignores the cached positions: query i is treated as position i, not S − L + i",
        "with a KV cache the L queries are the last L positions; query i may see keys 0 … S − L + i. (The bias alone "
        "would not show it: shifting a row of the bias by a constant changes no softmax.)",
        "q_pos = torch.arange(S - L, S); keep kv_pos <= q_pos, for the mask and the bias.",
        output=_attention_variant(mask="top_left"),
    ),
    Mistake(
        "no_causal_mask",
        "the causal mask is missing: future keys get a positive bias",
        "the bias −m·(q − k) grows positive for k > q; ALiBi relies on the causal mask to remove the future.",
        "scores.masked_fill(k_pos.view(1, -1) > q_pos.view(-1, 1), float('-inf')) before the softmax.",
        output=_attention_variant(mask="none"),
    ),
    Mistake(
        "symmetric_no_mask",
        "the bias is −m·|q − k| and nothing is masked: attention looks both ways",
        "a decoder is causal: the bias penalises the past, and the mask removes the future.",
        "signed distance q_pos - k_pos with a causal mask, not its absolute value.",
        output=_attention_variant(symmetric=True, mask="none"),
    ),
    Mistake(
        "bias_scaled",
        "the bias is divided by √D together with the scores",
        "the slopes are meant for the scaled scores: add the bias after dividing q·k by √D (as BLOOM's "
        "baddbmm(alibi, q, k, alpha=1/√D) does).",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(D) + bias, not (q @ kᵀ + bias) / math.sqrt(D).",
        output=_attention_variant(scale_bias=True),
    ),
    Mistake(
        "no_scale",
        "the scores are not divided by √D",
        "the dot products grow like √D; scaled dot-product attention divides them by √D before adding the bias.",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]) + bias.",
        output=_attention_variant(scale_scores=False),
    ),
]


ALIBI_ATTENTION = register(Exercise(
    id="alibi_attention",
    syllabus=("L11",),
    reference=_reference_alibi_attention,
    adapt=_constant_slopes,
    cases=_attention_cases,
    mistakes=ALIBI_ATTENTION_MISTAKES,
    forbidden={reference_alibi.alibi_bias: "llmcore.alibi_bias"},
    delegation=_reference_alibi_attention,
    output_names=("output",),
    fallback_hint="q_pos = arange(S - L, S); k_pos = arange(S); bias = -slopes.view(-1, 1, 1) * (q_pos[:, None] - "
                  "k_pos[None, :]); scores = q @ kᵀ / √D + bias; mask k_pos > q_pos with -inf; softmax; @ v.",
))
check_alibi_attention = ALIBI_ATTENTION.check


# --------------------------------------------------------------------------------------------------
# Baichuan 2's NormHead: a module NormHead(hidden_size, vocab_size) with weight [V, d]
# --------------------------------------------------------------------------------------------------

class _LibraryNormHead(LibraryNormHead):
    """llmcore's NormHead with the exercise's signature (Baichuan's head has no bias)."""

    def __init__(self, hidden_size: int, vocab_size: int) -> None:
        super().__init__(hidden_size, vocab_size, bias=False)


def _rows_of_every_size(module: nn.Module) -> None:
    """Rows of very different lengths (so that normalising them matters) and one zero row: a vocabulary
    entry never trained, whose normalisation needs the eps."""
    with torch.no_grad():
        weight = module.weight
        weight.normal_()
        weight.mul_(torch.logspace(-1, 1, weight.shape[0]).view(-1, 1))
        weight[weight.shape[0] // 2] = 0.0


def _logits_and_weight_gradient(module: nn.Module, hidden: Tensor, upstream: Tensor) -> tuple[Tensor, Tensor]:
    """The logits, and the gradient of ``(logits · upstream).sum()`` with respect to ``module.weight``
    (zeros when none reaches it), so that a normalisation hidden from autograd shows."""
    logits = module(hidden)
    weight = module.weight
    gradient = None
    if isinstance(logits, Tensor) and logits.requires_grad and weight.requires_grad:
        (gradient,) = torch.autograd.grad(logits, weight, upstream, allow_unused=True)
    return logits, torch.zeros_like(weight) if gradient is None else gradient


def _norm_head_variant(*, rows_dim: int = -1, normalise: str = "rows", gradient: str = "full",
                       normalise_hidden: bool = False) -> Callable[..., tuple[Tensor, Tensor]]:
    """Logits and weight gradient of a mistaken head. ``normalise``: "rows", "whole" (Frobenius) or "none";
    ``gradient``: "full", "none" (normalised under no_grad), "plain" (the normalised weight used as a constant
    weight: .data overwritten) or "norm_detached"."""

    def run(build: Callable[..., nn.Module], hidden: Tensor, upstream: Tensor) -> tuple[Tensor, Tensor]:
        weight = build().weight.detach().clone().requires_grad_(True)
        if normalise == "whole":
            norm = weight.norm()
        elif normalise == "rows":
            norm = weight.norm(dim=rows_dim, keepdim=True).clamp_min(1e-12)
        else:
            norm = torch.ones((), dtype=weight.dtype)
        if gradient == "norm_detached":
            norm = norm.detach()
        normalised = weight / norm
        if gradient in ("none", "plain"):
            normalised = normalised.detach()
        if gradient == "plain":
            normalised.requires_grad_(True)
        inputs = F.normalize(hidden, dim=-1) if normalise_hidden else hidden
        logits = inputs @ normalised.transpose(0, 1)
        if gradient == "none":
            return logits, torch.zeros_like(weight)
        (grad,) = torch.autograd.grad(logits, normalised if gradient == "plain" else weight, upstream)
        return logits.detach(), grad

    return run


def _nan_in_output(got: Any, expected: Any) -> bool:
    if not (isinstance(got, (tuple, list)) and isinstance(expected, (tuple, list))):
        return False
    return any(isinstance(g, Tensor) and isinstance(e, Tensor) and g.is_floating_point() and bool(g.isnan().any())
               and not bool(e.isnan().any()) for g, e in zip(got, expected))


def _norm_head_case(random: CaseRandom, description: str, shape: tuple[int, ...], hidden: int, vocab: int,
                    dtype: torch.dtype) -> Case:
    states = random.tensor((*shape, hidden), dtype)
    upstream = random.tensor((*shape, vocab), dtype)
    return Case(description, (states, upstream), init={"hidden_size": hidden, "vocab_size": vocab})


def _norm_head_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    if not hidden:
        return [
            _norm_head_case(random, "hidden [B=2, L=3, d=8], V=11, float32", (2, 3), 8, 11, torch.float32),
            _norm_head_case(random, "hidden [B=1, L=4, d=6], V=13, float64", (1, 4), 6, 13, torch.float64),
            _norm_head_case(random, "hidden [N=5, d=16] (no batch dim), V=7, float32", (5,), 16, 7, torch.float32),
        ]
    return [
        _norm_head_case(random, "hidden [B=3, L=7, d=32], V=100, float64", (3, 7), 32, 100, torch.float64),
        _norm_head_case(random, "hidden [B=2, L=1, d=24], V=257, float32", (2, 1), 24, 257, torch.float32),
    ]


NORM_HEAD_MISTAKES = [
    Mistake(
        "columns_normalised",
        "the columns of weight are normalised, not its rows",
        "weight is [V, d]: each row is one vocabulary entry's output vector, and NormHead gives every row length 1 "
        "(normalise along d, the last dim).",
        "F.normalize(self.weight, dim=-1) (dim=1), not dim=0.",
        output=_norm_head_variant(rows_dim=0),
    ),
    Mistake(
        "normalised_once",
        "the weight is normalised once (in __init__), not on every forward",
        "training changes the weight at every step, and a loaded checkpoint replaces it; Baichuan 2 normalises "
        "inside forward, so the logits always use unit rows.",
        "in forward: norm_weight = F.normalize(self.weight, dim=-1); return F.linear(hidden, norm_weight).",
        output=_norm_head_variant(normalise="none"),
    ),
    Mistake(
        "whole_matrix_norm",
        "the whole matrix is divided by one norm (its Frobenius norm)",
        "each row gets its own length: rare tokens' rows must not keep a larger norm than frequent ones'.",
        "self.weight / self.weight.norm(dim=-1, keepdim=True), one norm per row.",
        output=_norm_head_variant(normalise="whole"),
    ),
    Mistake(
        "hidden_normalised",
        "the hidden states are normalised too (a cosine classifier)",
        "NormHead normalises only the output embedding rows; the hidden state keeps its length (the final RMSNorm "
        "already sets its scale).",
        "F.linear(hidden_states, F.normalize(self.weight, dim=-1)); leave hidden_states as they are.",
        output=_norm_head_variant(normalise_hidden=True),
    ),
    Mistake(
        "normalised_without_grad",
        "the normalisation runs under torch.no_grad(): no gradient reaches weight",
        "the head is trained through the normalisation: autograd must see weight → normalised weight → logits.",
        "compute norm_weight = F.normalize(self.weight, dim=-1) outside torch.no_grad(), without .detach().",
        output=_norm_head_variant(gradient="none"),
    ),
    Mistake(
        "weight_overwritten",
        "the weight is overwritten with its normalised copy (.data): the gradient skips the normalisation",
        "assigning self.weight.data is what Baichuan's code does once, in eval mode; in training the normalisation "
        "is part of the graph, so the gradient is projected (the part along each row is removed).",
        "in training: norm_weight = F.normalize(self.weight, dim=-1) as a new tensor; never assign to .data.",
        output=_norm_head_variant(gradient="plain"),
    ),
    Mistake(
        "norm_detached",
        "the norm is detached: the gradient treats each row's length as a constant",
        "the length of a row depends on the row, and the gradient of w/‖w‖ has a second term through ‖w‖.",
        "self.weight / self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-12), without .detach().",
        output=_norm_head_variant(gradient="norm_detached"),
    ),
    Mistake(
        "no_eps",
        "a zero row of weight gives NaN: a division by its zero norm, or the gradient of sqrt at 0",
        "a vocabulary entry never trained can have an all-zero row. F.normalize divides by max(‖row‖, 1e-12), "
        "so that row gives logits 0, and its backward is finite; torch.sqrt(sum of squares) has an infinite "
        "derivative at 0, which gives NaN in the gradient even behind a clamp.",
        "F.normalize(self.weight, dim=-1), or self.weight / self.weight.norm(dim=-1, keepdim=True).clamp_min(1e-12).",
        detect=_nan_in_output,
    ),
]


NORM_HEAD = register(ModuleExercise(
    id="norm_head",
    title="NormHead",
    syllabus=("L12",),
    reference=_LibraryNormHead,
    prepare=_rows_of_every_size,
    train_mode=True,
    forward=_logits_and_weight_gradient,
    cases=_norm_head_cases,
    mistakes=NORM_HEAD_MISTAKES,
    forbidden={LibraryNormHead: "llmcore.models.NormHead"},
    delegation=_LibraryNormHead,
    output_names=("logits", "the gradient with respect to weight"),
    fallback_hint="self.weight = nn.Parameter(torch.empty(vocab_size, hidden_size)); in forward: "
                  "F.linear(hidden_states, F.normalize(self.weight, dim=-1)).",
))
check_norm_head = NORM_HEAD.check


# --------------------------------------------------------------------------------------------------
# Baichuan 2's max-z loss: max_z_loss(logits [..., V], weight=2e-4, mask=None) -> scalar
# --------------------------------------------------------------------------------------------------

def _reference_max_z_loss(logits: Tensor, weight: float = 2e-4, mask: Tensor | None = None) -> Tensor:
    return reference_losses.max_z_loss(logits, weight, mask=mask)


def _z_loss_variant(*, z: str = "max", default_weight: float = 2e-4, reduce: str = "mean_real",
                    square: bool = True, max_dim: int = -1) -> Callable[..., Tensor]:
    """The loss with one knob turned. ``z``: "max", "logsumexp", "abs_max" or "global_max"; ``reduce``: "mean_real",
    "sum", "mean_all" (padding counted), "over_all_positions" (the masked sum over every position) or "nan_if_empty"."""

    def loss(logits: Tensor, weight: float = default_weight, mask: Tensor | None = None) -> Tensor:
        if z == "logsumexp":
            values = logits.logsumexp(dim=-1)
        elif z == "abs_max":
            values = logits.abs().amax(dim=max_dim)
        elif z == "global_max":
            values = logits.amax()
        else:
            values = logits.amax(dim=max_dim)
        per_position = values.square() if square else values
        if reduce == "sum":
            return weight * (per_position if mask is None else per_position * mask).sum()
        if mask is None or reduce == "mean_all":
            return weight * per_position.mean()
        kept = per_position * mask
        if reduce == "over_all_positions":
            return weight * kept.sum() / mask.numel()
        count = mask.sum() if reduce == "nan_if_empty" else mask.sum().clamp(min=1)
        return weight * kept.sum() / count

    return loss


def _is_nan_where_finite(got: Any, expected: Any) -> bool:
    return isinstance(got, Tensor) and bool(got.isnan().any()) and isinstance(expected, Tensor) \
        and not bool(expected.isnan().any())


def _nan_where_zero(got: Any, expected: Any) -> bool:
    """NaN where the loss is 0: only a batch without real tokens gives 0, so 0 / 0 is the cause."""
    return _is_nan_where_finite(got, expected) and bool((expected == 0).all())


def _nan_where_nonzero(got: Any, expected: Any) -> bool:
    """NaN where the loss is a finite non-zero number: the padding was filled with −inf (inf · 0 = NaN)."""
    return _is_nan_where_finite(got, expected) and bool((expected != 0).any())


def _padding_mask(lengths: list[int], length: int) -> Tensor:
    return torch.arange(length).view(1, -1) < torch.tensor(lengths).view(-1, 1)


def _max_z_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    # Logits with a spread of a few units, as a trained model's: the largest one and log Σ exp differ clearly.
    # Most cases pass a large weight, so that the comparison is sharp and a wrong default (checked by the case
    # that omits it) does not hide another mistake.
    if not hidden:
        return [
            Case("logits [B=2, L=3, V=11], float32, weight=0.5", (random.tensor((2, 3, 11), scale=3.0), 0.5)),
            Case("logits [B=2, L=5, V=7], float64, weight=0.25, padding: row lengths 3 and 5, gradients",
                 (random.tensor((2, 5, 7), torch.float64, scale=3.0), 0.25),
                 {"mask": _padding_mask([3, 5], 5)}, check_gradients=True),
            Case("logits [N=4, V=13] (no batch dim), float32, the default weight",
                 (random.tensor((4, 13), scale=3.0, shift=-2.0),)),
            Case("logits [B=1, L=3, V=6], float32, weight=1.0, every position padding (the loss is 0)",
                 (random.tensor((1, 3, 6), scale=3.0), 1.0), {"mask": torch.zeros(1, 3, dtype=torch.bool)}),
        ]
    return [
        Case("logits [B=3, L=6, V=500], float32, weight=0.1, padding: row lengths 6, 2 and 4",
             (random.tensor((3, 6, 500), scale=4.0), 0.1), {"mask": _padding_mask([6, 2, 4], 6)}),
        Case("logits [B=2, L=9, V=31], float64, weight=1.0, gradients",
             (random.tensor((2, 9, 31), torch.float64, scale=2.0, shift=1.0), 1.0), check_gradients=True),
        Case("logits [B=2, L=1, V=5], float32, the default weight, mask of ones",
             (random.tensor((2, 1, 5), scale=3.0),), {"mask": torch.ones(2, 1, dtype=torch.bool)}),
    ]


MAX_Z_MISTAKES = [
    Mistake(
        "logsumexp",
        "z is log Σ exp(logits): that is PaLM's z-loss, not Baichuan 2's max-z loss",
        "Baichuan 2 squares the largest logit of each position, z = max_v logits; PaLM squares log Z, the "
        "log-partition.",
        "z = logits.max(dim=-1).values (or logits.amax(-1)), not torch.logsumexp(logits, -1).",
        output=_z_loss_variant(z="logsumexp"),
    ),
    Mistake(
        "palm_weight",
        "the default weight is PaLM's 1e-4; Baichuan 2 uses 2e-4",
        "the report sets the max-z coefficient to 2e-4 (PaLM's z-loss used 1e-4).",
        "def max_z_loss(logits, weight=2e-4, mask=None).",
        output=_z_loss_variant(default_weight=1e-4),
    ),
    Mistake(
        "sum_not_mean",
        "the squared maxima are summed, not averaged",
        "the loss is a mean over positions, so its size does not depend on the batch size or the sequence length.",
        "weight * (z ** 2).mean() without a mask; with one, (z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
        output=_z_loss_variant(reduce="sum"),
    ),
    Mistake(
        "padding_included",
        "padding positions are counted: the mask is ignored",
        "positions where mask is False are not tokens; they must change neither the sum nor the count.",
        "(z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
        output=_z_loss_variant(reduce="mean_all"),
    ),
    Mistake(
        "divided_by_all_positions",
        "padding is zeroed but the mean still divides by every position",
        "the mean over real tokens divides by their number, mask.sum(), not by mask.numel().",
        "(z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
        output=_z_loss_variant(reduce="over_all_positions"),
    ),
    Mistake(
        "not_squared",
        "z is not squared",
        "the penalty is z²: it pushes the largest logit towards 0 from both sides, and harder the larger it is.",
        "z.square() (or z ** 2) before the mean.",
        output=_z_loss_variant(square=False),
    ),
    Mistake(
        "abs_max",
        "z is the largest |logit|, not the largest logit",
        "z is the maximum of the logits themselves; a very negative logit is not what makes the softmax peaky.",
        "z = logits.amax(dim=-1), without .abs().",
        output=_z_loss_variant(z="abs_max"),
    ),
    Mistake(
        "global_max",
        "z is the single largest logit of the whole batch",
        "every position has its own z, the largest of its V logits; the loss averages z² over the positions.",
        "z = logits.amax(dim=-1) (shape [...]), not logits.max() (one number).",
        output=_z_loss_variant(z="global_max"),
    ),
    Mistake(
        "max_over_positions",
        "the maximum is taken over the positions (dim=1), not over the vocabulary",
        "each position has its own largest logit: reduce the last dim, V.",
        "logits.amax(dim=-1) (or logits.max(-1).values).",
        output=_z_loss_variant(max_dim=1),
    ),
    Mistake(
        "nan_without_real_tokens",
        "a batch without real tokens gives NaN (0 / 0)",
        "when the mask holds no real token the loss is 0: divide by mask.sum().clamp(min=1).",
        "(z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
        detect=_nan_where_zero,
    ),
    Mistake(
        "padding_minus_inf",
        "the padding is filled with −inf before the square: inf · 0 (or inf − inf) gives NaN",
        "(−inf)² is inf, and inf times a mask 0 is NaN, not 0: masking with −inf works before a softmax, not here. "
        "Leave the padding logits as they are and weight their z² by 0, or select the real positions.",
        "z = logits.amax(dim=-1); weight * (z ** 2)[mask].mean() (0 when mask has no True), or "
        "(z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
        detect=_nan_where_nonzero,
    ),
]


MAX_Z_LOSS = register(Exercise(
    id="max_z_loss",
    syllabus=("L12",),
    reference=_reference_max_z_loss,
    cases=_max_z_cases,
    mistakes=MAX_Z_MISTAKES,
    forbidden={reference_losses.max_z_loss: "llmcore.losses.max_z_loss"},
    delegation=_reference_max_z_loss,
    output_names=("loss",),
    fallback_hint="z = logits.amax(dim=-1); without a mask weight * (z ** 2).mean(); with one, "
                  "weight * (z ** 2 * mask).sum() / mask.sum().clamp(min=1).",
))
check_max_z_loss = MAX_Z_LOSS.check
