"""Exercises of notebook 01_llama_block: RMSNorm, SwiGLU and its hidden size, grouped-query attention and
the KV-cache arithmetic (SYLLABUS L01, L02, L04).

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its
``check``. Every mistake is "the reference with one knob turned" (a ``*_variant`` function below) or, for
the missing divisibility error of grouped-query attention and a count returned as a float, a symptom.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import llmcore
import llmcore.models  # noqa: F401  (registers the presets the KV-cache cases are built from)
from llmcore import attention as reference_attention
from llmcore import ffn as reference_ffn
from llmcore import norms as reference_norms
from llmcore.models import sizing
from llmcore.models.config import ModelConfig
from llmcore.models.registry import preset_config

from ..cases import CaseRandom, causal, lengths_mask
from ..framework import Case, Mistake, describe_value
from ..spec import Exercise, ModuleExercise, register

__all__ = [
    "RMS_NORM",
    "SWIGLU",
    "SWIGLU_HIDDEN_SIZE",
    "GROUPED_QUERY_ATTENTION",
    "KV_CACHE_MEMORY",
    "check_rms_norm",
    "check_swiglu",
    "check_swiglu_hidden_size",
    "check_grouped_query_attention",
    "check_kv_cache_memory",
]


# --------------------------------------------------------------------------------------------------
# RMSNorm (SYLLABUS L01)
# --------------------------------------------------------------------------------------------------


def _rms_forward(module: nn.Module, x: Tensor, *, as_built: bool = False) -> Tensor:
    """``module(x)``; an ``as_built`` case calls instead a module the class builds from ``d_model`` alone, with its
    own initial weight and default eps, as the notebook's demos do (``RMSNorm(4)(x)``)."""
    if as_built:
        with torch.random.fork_rng(devices=[]):  # a random initial weight is the same on every call
            torch.manual_seed(0)
            module = type(module)(x.shape[-1]).to(x.dtype)
    return module(x)


def _rms_variant(build: Callable[[], nn.Module], x: Tensor, *, as_built: bool = False, centre: bool = False,
                 eps_outside: bool = False, dim: int = -1, weight_first: bool = False, in_half: bool = False,
                 bfloat16_in_half: bool = False, always_float32: bool = False, l2: bool = False,
                 zero_weight: bool = False) -> Tensor:
    """The reference with one knob turned: every mistake is one setting."""
    module = llmcore.RMSNorm(x.shape[-1]).to(x.dtype) if as_built else build()
    weight = torch.zeros_like(module.weight) if as_built and zero_weight else module.weight
    if always_float32:
        h = x.float()
    elif x.dtype == torch.bfloat16:
        h = x if in_half or bfloat16_in_half else x.float()
    else:
        h = x.float() if x.dtype == torch.float16 and not in_half else x
    if weight_first:
        h = weight.to(h.dtype) * h
    if centre:
        h = h - h.mean(dim, keepdim=True)
    if l2:
        h = h / (h.pow(2).sum(dim, keepdim=True) + module.eps).sqrt()
    else:
        mean_square = h.pow(2).mean(dim, keepdim=True)
        h = h / (mean_square.sqrt() + module.eps) if eps_outside else h * torch.rsqrt(mean_square + module.eps)
    return (h if weight_first else weight * h.to(x.dtype)).to(x.dtype)


def _rms_mistake(**knobs: Any) -> Callable[..., Tensor]:
    return lambda build, x, as_built=False: _rms_variant(build, x, as_built=as_built, **knobs)


RMS_MISTAKES = [
    Mistake("mean_subtracted", "the mean is subtracted (that is LayerNorm)",
            "RMSNorm only rescales: it divides by the root mean square and never centres the vector.",
            "h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps), with no `h - h.mean(...)` before it.",
            output=_rms_mistake(centre=True)),
    Mistake("eps_outside_root", "eps is added outside the square root",
            "eps keeps the root away from zero, so it goes under it: √(mean(x²) + eps).",
            "torch.rsqrt(ms + eps), not 1 / (ms.sqrt() + eps).",
            output=_rms_mistake(eps_outside=True)),
    Mistake("wrong_dim", "the mean square is taken over the positions (dim -2) instead of the features",
            "each token is normalised on its own, over its d_model features: the last dimension.",
            "h.pow(2).mean(dim=-1, keepdim=True): dim=-1, whatever the number of leading dimensions.",
            output=_rms_mistake(dim=-2)),
    Mistake("weight_before_norm", "the weight is applied before normalising",
            "normalise first, then scale: a weight inside the statistic is divided away again, so it would "
            "learn nothing useful.",
            "compute h * rsqrt(mean(h²) + eps) from the input itself, and multiply by self.weight last.",
            output=_rms_mistake(weight_first=True)),
    Mistake("downcast_to_float32", "float64 inputs are normalised in float32 (every input is cast to float32)",
            "the float32 detour is for float16 and bfloat16 only; it must never lower the precision. Cast to "
            "float32, x² of a float64 input overflows from about 1.8e19 on (float32 stops at 3.4e38) and loses "
            "float64's digits. (Hugging Face's LlamaRMSNorm casts every input to float32: copy it, and float64 "
            "goes wrong.)",
            "h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, not x.to(torch.float32) always.",
            output=_rms_mistake(always_float32=True)),
    # Before half_precision: on a bfloat16 case the two agree, and only this one also passes the float16 case.
    Mistake("bfloat16_in_half", "bfloat16 inputs are normalised in bfloat16 (only float16 is cast to float32)",
            "bfloat16 has float32's range, so nothing overflows, but only 8 significant bits: the mean square, "
            "its root and the product are each rounded to about 2 decimal digits. LLaMA computes the statistic in "
            "float32 for both half types.",
            "if x.dtype in (torch.float16, torch.bfloat16): h = x.float(); not x.dtype == torch.float16 alone.",
            output=_rms_mistake(bfloat16_in_half=True)),
    Mistake("half_precision", "the statistic is computed in float16, where x² overflows",
            "float16 stops at 65,504, so activations in the hundreds square to inf and the row becomes 0; "
            "LLaMA computes the norm in float32 and casts the result back.",
            "h = x.float() for float16/bfloat16 inputs; normalise h; cast back with .to(x.dtype).",
            output=_rms_mistake(in_half=True)),
    Mistake("l2_norm", "the vector is divided by its length ‖x‖ instead of its root mean square ‖x‖/√d",
            "the root *mean* square averages the squares (divides their sum by d), so a normalised token has "
            "entries of size about 1, not a length of 1.",
            "mean, not sum: h.pow(2).mean(-1, keepdim=True), or x.norm(dim=-1, keepdim=True) / math.sqrt(d).",
            output=_rms_mistake(l2=True)),
    Mistake("weight_zeros", "the weight is initialised to zeros, so a freshly built RMSNorm returns zeros",
            "RMSNorm's gain starts at ones, so that a new layer normalises and nothing more. Zeros belong to "
            "Gemma's 1 + w form (llmcore.RMSNorm(d, unit_offset=True)), which this exercise is not.",
            "self.weight = nn.Parameter(torch.ones(d_model)).",
            output=_rms_mistake(zero_weight=True)),
]


def _rms_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def gains(d_model: int) -> Tensor:  # large gains: the outputs are about 20, where the 1e-2 tolerance is relative
        return random.tensor((d_model,), torch.bfloat16, scale=5.0, shift=20.0)

    cases = [
        Case("x [B=2, L=3, d=8], float32", (random.tensor((2, 3, 8)),), init={"d_model": 8, "eps": 1e-6}),
        Case("x [B=2, L=3, d=8], float64 with entries around 1e20 (x² = 1e40 overflows float32; float64 is "
             "normalised in float64)", (random.tensor((2, 3, 8), torch.float64, scale=1e20),),
             init={"d_model": 8, "eps": 1e-6}),
        Case("x [B=1, L=4, d=16], float64, tiny values (eps matters), gradients",
             (random.tensor((1, 4, 16), torch.float64, scale=1e-3),), init={"d_model": 16, "eps": 1e-6},
             check_gradients=True),
        Case("x [B=2, L=5, d=32], float16 with activations in the hundreds (x² overflows float16's 65,504)",
             (random.tensor((2, 5, 32), torch.float16, scale=300.0),), init={"d_model": 32, "eps": 1e-5}),
        Case("x [B=2, L=4, d=256], bfloat16, weight around 20 (outputs of about 20, where bfloat16's rounding "
             "shows)", (random.tensor((2, 4, 256), torch.bfloat16, scale=4.0),), init={"d_model": 256, "eps": 1e-6},
             params={"weight": gains(256)}),
        Case("RMSNorm(16) as your class builds it (weight initialised to ones, default eps=1e-6), x [B=1, L=4, "
             "d=16], float32, tiny values (eps matters)", (random.tensor((1, 4, 16), scale=1e-3),),
             {"as_built": True}, init={"d_model": 16}),
    ]
    if hidden:
        cases += [
            Case("x [N=7, d=4096], float32", (random.tensor((7, 4096)),), init={"d_model": 4096, "eps": 1e-5}),
            Case("x [B=3, L=1, d=12] (one token), float64, gradients", (random.tensor((3, 1, 12), torch.float64),),
                 init={"d_model": 12, "eps": 1e-6}, check_gradients=True),
            Case("x [B=2, L=6, d=64], bfloat16", (random.tensor((2, 6, 64), torch.bfloat16, scale=4.0),),
                 init={"d_model": 64, "eps": 1e-6}),
            Case("x [N=3, d=512], bfloat16, weight around 20", (random.tensor((3, 512), torch.bfloat16),),
                 init={"d_model": 512, "eps": 1e-5}, params={"weight": gains(512)}),
            Case("RMSNorm(8) as your class builds it (weight initialised to ones, default eps=1e-6), x [N=5, d=8], "
                 "float64, tiny values", (random.tensor((5, 8), torch.float64, scale=1e-3),), {"as_built": True},
                 init={"d_model": 8}),
        ]
    return cases


def _aten_callables(name: str) -> list[Callable]:
    """What ``torch.ops.aten.<name>(...)`` and ``torch.ops.aten.<name>.<overload>(...)`` call at the Python level
    (the builtin behind each). On CPU these ops decompose into pow/mean/rsqrt before the ATen-level watcher sees
    them, so they are forbidden here, where the call is visible."""
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        return []
    callables = [getattr(packet, "_op", None)]
    callables += [getattr(getattr(packet, overload), "_op", None) for overload in packet.overloads()]
    return [c for c in callables if c is not None]


# cls(d_model, eps) with parameter weight [d_model] and forward(x [..., d_model]) -> [..., d_model].
RMS_NORM = register(ModuleExercise(
    id="rms_norm",
    title="RMSNorm",
    syllabus=("L01",),
    reference=llmcore.RMSNorm,
    forward=_rms_forward,
    prepare=lambda module: nn.init.normal_(module.weight, 1.0, 0.3),  # random weights, so a missing weight shows
    cases=_rms_cases,
    mistakes=RMS_MISTAKES,
    # torch's rms_norm runs as pow/mean/rsqrt on CPU (no fused ATen op reaches the dispatcher): forbidden at the
    # Python level, in every spelling (torch.rms_norm is a builtin, matched when it is called).
    forbidden={
        llmcore.RMSNorm: "llmcore.RMSNorm",
        reference_norms.rms_norm: "llmcore.norms.rms_norm",
        nn.RMSNorm: "torch.nn.RMSNorm",
        F.rms_norm: "torch.nn.functional.rms_norm",
        torch.rms_norm: "torch.rms_norm",
        **{op: "torch.ops.aten.rms_norm" for op in _aten_callables("rms_norm")},
        **{op: "torch.ops.aten._fused_rms_norm" for op in _aten_callables("_fused_rms_norm")},
    },
    delegation=llmcore.RMSNorm,
    output_names=("output",),
    fallback_hint="h = x in float32 for float16/bfloat16 (float32 and float64 as they are); h * rsqrt(mean(h², "
                  "last dim) + eps); cast back to x.dtype; times self.weight (initialised to ones).",
))
check_rms_norm = RMS_NORM.check


# --------------------------------------------------------------------------------------------------
# SwiGLU feed-forward network (SYLLABUS L02)
# --------------------------------------------------------------------------------------------------


def _swiglu_variant(build: Callable[[], nn.Module], x: Tensor, *, gate: Callable[[Tensor], Tensor] = F.silu,
                    linear: Callable[[Tensor], Tensor] = lambda h: h, after_product: bool = False) -> Tensor:
    """``down(gate_fn(gate_proj x) ⊙ linear_fn(up_proj x))`` with the knobs of the known mistakes."""
    module = build()
    if after_product:
        return module.down_proj(F.silu(module.gate_proj(x) * module.up_proj(x)))
    return module.down_proj(gate(module.gate_proj(x)) * linear(module.up_proj(x)))


def _swiglu_mistake(**knobs: Any) -> Callable[..., Tensor]:
    return lambda build, x: _swiglu_variant(build, x, **knobs)


SWIGLU_MISTAKES = [
    Mistake("silu_on_up", "SiLU is applied to up_proj instead of gate_proj (the two projections are swapped)",
            "the *gate* goes through SiLU and decides how much of the linear path up_proj(x) passes; the names "
            "match the checkpoints (Meta's w1 = gate_proj, w3 = up_proj).",
            "down_proj(F.silu(gate_proj(x)) * up_proj(x)).",
            output=_swiglu_mistake(gate=lambda h: h, linear=F.silu)),
    Mistake("silu_on_both", "SiLU is applied to both projections",
            "only the gate is activated; the other path stays linear, which is what makes it a gated *linear* unit.",
            "down_proj(F.silu(gate_proj(x)) * up_proj(x)): no activation on up_proj(x).",
            output=_swiglu_mistake(linear=F.silu)),
    Mistake("silu_after_product", "SiLU is applied after multiplying the two projections",
            "the activation acts on the gate alone, before the product: act(xW) ⊙ xV.",
            "hidden = F.silu(gate_proj(x)) * up_proj(x), then down_proj(hidden).",
            output=_swiglu_mistake(after_product=True)),
    Mistake("sigmoid_gate", "the gate is a sigmoid (the original GLU) instead of SiLU",
            "SiLU(z) = z·σ(z): the gate is multiplied by its own sigmoid, not replaced by it.",
            "F.silu(z), or z * torch.sigmoid(z), not torch.sigmoid(z).",
            output=_swiglu_mistake(gate=torch.sigmoid)),
    Mistake("gelu_gate", "the gate uses GELU (that is GeGLU, Gemma's variant) instead of SiLU",
            "LLaMA's FFN is SwiGLU: Swish with β = 1, which is SiLU; GELU makes GeGLU.",
            "F.silu(gate_proj(x)), not F.gelu(...).",
            output=_swiglu_mistake(gate=F.gelu)),
    Mistake("gelu_tanh_gate", "the gate uses GELU's tanh form (GeGLU as Gemma and T5 v1.1 compute it) instead of SiLU",
            "LLaMA's FFN is SwiGLU: Swish with β = 1, which is SiLU; GELU, exact or in its tanh approximation, makes "
            "GeGLU, the other curve of the figure.",
            "F.silu(gate_proj(x)), not F.gelu(..., approximate=\"tanh\").",
            output=_swiglu_mistake(gate=functools.partial(F.gelu, approximate="tanh"))),
]


def _swiglu_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("x [B=2, L=3, d_model=8], d_ff=20, float32", (random.tensor((2, 3, 8)),), init={"d_model": 8, "d_ff": 20}),
        Case("x [B=1, L=5, d_model=12], d_ff=32, float64, gradients", (random.tensor((1, 5, 12), torch.float64),),
             init={"d_model": 12, "d_ff": 32}, check_gradients=True),
        Case("x [B=3, L=1, d_model=16] (one token), d_ff=44, float32, large inputs (the SiLU tails matter)",
             (random.tensor((3, 1, 16), scale=4.0),), init={"d_model": 16, "d_ff": 44}),
    ]
    if hidden:
        cases += [
            Case("x [N=6, d_model=64] (no batch dim), d_ff=176, float64, gradients",
                 (random.tensor((6, 64), torch.float64),), init={"d_model": 64, "d_ff": 176}, check_gradients=True),
            Case("x [B=2, L=7, d_model=96], d_ff=256, float32", (random.tensor((2, 7, 96)),),
                 init={"d_model": 96, "d_ff": 256}),
        ]
    return cases


# cls(d_model, d_ff) with gate_proj/up_proj [d_ff, d_model] and down_proj [d_model, d_ff], no biases.
SWIGLU = register(ModuleExercise(
    id="swiglu",
    title="SwiGLU",
    syllabus=("L02",),
    reference=reference_ffn.GatedFeedForward,
    cases=_swiglu_cases,
    mistakes=SWIGLU_MISTAKES,
    forbidden={reference_ffn.GatedFeedForward: "llmcore.GatedFeedForward"},
    delegation=reference_ffn.GatedFeedForward,
    output_names=("output",),
    fallback_hint="three bias-free nn.Linear layers; forward: self.down_proj(F.silu(self.gate_proj(x)) * "
                  "self.up_proj(x)).",
))
check_swiglu = SWIGLU.check


# --------------------------------------------------------------------------------------------------
# The hidden size of a SwiGLU FFN (SYLLABUS L02)
# --------------------------------------------------------------------------------------------------


def _hidden_size_reference(d_model: int, multiple_of: int = 256, multiplier: float | None = None) -> int:
    return reference_ffn.gated_hidden_size(d_model, multiple_of=multiple_of, multiplier=multiplier)


def _hidden_size_variant(d_model: int, multiple_of: int = 256, multiplier: float | None = None, *,
                         rounding: str = "up", integer_eight_thirds: bool = False, round_first: bool = False,
                         multiplier_last: bool = False, use_multiplier: bool = True,
                         truncate_multiplied: bool = True) -> int:
    """LLaMA's rule with one knob turned: int(8d/3), times the multiplier, rounded up to a multiple."""
    if round_first:
        return int(2 * (multiple_of * math.ceil(4 * d_model / multiple_of)) / 3)
    hidden = 8 // 3 * d_model if integer_eight_thirds else int(8 * d_model / 3)
    if multiplier is not None and use_multiplier and not multiplier_last:
        hidden = int(multiplier * hidden) if truncate_multiplied else multiplier * hidden
    rounded = {
        "up": multiple_of * math.ceil(hidden / multiple_of),
        "down": multiple_of * (hidden // multiple_of),
        "nearest": multiple_of * round(hidden / multiple_of),
        "one_more": multiple_of * (hidden // multiple_of + 1),
    }[rounding]
    if multiplier is not None and multiplier_last:
        rounded = int(multiplier * rounded)
    return rounded


def _hidden_size_mistake(**knobs: Any) -> Callable[..., int]:
    return functools.partial(_hidden_size_variant, **knobs)


class NotAnInt:
    """What is compared when an exercise that returns a count (an ``int``) returned something else: never equal to
    the expected int, shown as the value and its type."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"{self.value!r} (a {type(self.value).__name__}, not an int)"

    def __eq__(self, other: object) -> bool:  # two calls that return the same non-int agree (no randomness)
        return isinstance(other, NotAnInt) and repr(other) == repr(self)

    __hash__ = None  # type: ignore[assignment]


def _require_int(learner: Callable[..., Any]) -> Callable[..., Any]:
    """The learner's function, with a result that is not an integer (a float, even a whole one; a tensor) turned
    into a :class:`NotAnInt`. numpy integers count as ints."""

    @functools.wraps(learner)
    def run(*args: Any, **kwargs: Any) -> Any:
        result = learner(*args, **kwargs)
        if isinstance(result, numbers.Integral) and not isinstance(result, bool):
            return int(result)
        if isinstance(result, (numbers.Real, Tensor)) and not isinstance(result, bool):
            return NotAnInt(result)
        return result

    return run


def _not_an_int(got: Any, expected: Any) -> bool:
    """The right number, but not an int. (A wrong number that is also not an int is shown as such, undiagnosed:
    int() around it would not make it right.)"""
    if not isinstance(got, NotAnInt):
        return False
    value = got.value
    if isinstance(value, Tensor):
        if value.numel() != 1:
            return False
        value = value.item()
    return value == expected


def _not_an_int_mistake(what: str) -> Mistake:
    return Mistake("not_an_int", f"{what} is returned as a float (or a tensor), not an int",
                   "it is a count, so the spec asks for a Python int: `/` always gives a float, even 4096 / 32 == "
                   "128.0, and numpy and torch return their own number types.",
                   "`//` for integer division, math.ceil (which returns an int), or int(...) around the result.",
                   detect=_not_an_int)


HIDDEN_SIZE_MISTAKES = [
    # Where two mistakes give the same number, the first declared names it: round_nearest before round_down
    # (LLaMA-13B), multiplier_ignored before integer_eight_thirds (LLaMA 3 8B: both give 11264),
    # multiplier_not_truncated before one_multiple_too_many (d_model=4800 with 1.1: both give 14144).
    Mistake("round_nearest", "8d/3 is rounded to the nearest multiple instead of up",
            "the rule rounds *up*, so the FFN never gets fewer units than 8d/3.",
            "multiple_of * math.ceil(hidden / multiple_of), or multiple_of * ((hidden + multiple_of - 1) // "
            "multiple_of).",
            output=_hidden_size_mistake(rounding="nearest")),
    Mistake("round_down", "8d/3 is rounded down to a multiple",
            "`//` truncates; the rule rounds up to the next multiple (LLaMA-7B: 10,922.67 → 11,008, not 10,752).",
            "(hidden + multiple_of - 1) // multiple_of * multiple_of rounds up with integers.",
            output=_hidden_size_mistake(rounding="down")),
    Mistake("multiplier_not_truncated", "the product with the multiplier is not truncated to an int before rounding up",
            "floating point makes 1.1 · 12,800 = 14,080.000000000002, which rounds up to the next multiple; Meta's "
            "code truncates with int() first, so a product that is a multiple up to rounding stays one.",
            "hidden = int(multiplier * hidden), then round up to multiple_of.",
            output=_hidden_size_mistake(truncate_multiplied=False)),
    Mistake("one_multiple_too_many", "one multiple is added even when 8d/3 is already a multiple",
            "rounding up leaves a value that is already a multiple unchanged.",
            "ceil(hidden / multiple_of) * multiple_of, not (hidden // multiple_of + 1) * multiple_of.",
            output=_hidden_size_mistake(rounding="one_more")),
    Mistake("multiplier_ignored", "the multiplier (ffn_dim_multiplier) is ignored",
            "LLaMA 2 70B and LLaMA 3 widen the FFN by 1.3 before rounding (Meta's ffn_dim_multiplier).",
            "if multiplier is not None: hidden = int(multiplier * hidden), before rounding up.",
            output=_hidden_size_mistake(use_multiplier=False)),
    Mistake("integer_eight_thirds", "8 // 3 is computed first, which is 2, so the width is 2d",
            "integer division truncates 8/3 to 2; multiply first and truncate once: int(8 * d_model / 3).",
            "hidden = int(8 * d_model / 3) (or 8 * d_model // 3), not 8 // 3 * d_model.",
            output=_hidden_size_mistake(integer_eight_thirds=True)),
    Mistake("multiple_before_scaling", "4d is rounded to the multiple before the 2/3 scaling",
            "the rounding comes last, so the width the matrices get is a multiple of multiple_of.",
            "first int(2 * 4 * d_model / 3) (times the multiplier), then round up to the multiple.",
            output=_hidden_size_mistake(round_first=True)),
    Mistake("multiplier_after_rounding", "the multiplier is applied after rounding",
            "scale int(8d/3) by the multiplier first, then round up once, so the result stays a multiple.",
            "hidden = int(multiplier * int(8 * d_model / 3)), then round up to multiple_of.",
            output=_hidden_size_mistake(multiplier_last=True)),
    _not_an_int_mistake("the width"),
]


def _hidden_size_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("LLaMA-7B: d_model=4096, multiple_of left at its default (256)", (4096,)),
        Case("LLaMA-13B: d_model=5120, multiple_of=256", (5120,), {"multiple_of": 256}),
        Case("Baichuan 2 13B: d_model=5120, multiple_of=128", (5120,), {"multiple_of": 128}),
        Case("d_model=384, multiple_of=256 (8d/3 = 1024 is already a multiple)", (384,), {"multiple_of": 256}),
        Case("LLaMA 3 8B: swiglu_hidden_size(4096, 1024, 1.3), the arguments by position (d_model, multiple_of, "
             "multiplier)", (4096, 1024, 1.3)),
        Case("LLaMA 2 70B: d_model=8192, multiple_of=4096, multiplier=1.3", (8192,),
             {"multiple_of": 4096, "multiplier": 1.3}),
        Case("d_model=4800, multiple_of=64, multiplier=1.1 (in floating point 1.1 · 12,800 = 14,080.000000000002)",
             (4800,), {"multiple_of": 64, "multiplier": 1.1}),
    ]
    if hidden:
        d_model = 64 * int(random.ids(100, (1,), low=2))
        cases += [
            Case("LLaMA-65B: d_model=8192, multiple_of=256", (8192,), {"multiple_of": 256}),
            Case(f"d_model={d_model}, multiple_of=64", (d_model,), {"multiple_of": 64}),
            Case("d_model=96, multiple_of=256 (8d/3 = 256, exactly one multiple)", (96,), {"multiple_of": 256}),
            Case("d_model=5120, multiple_of=512, multiplier=1.5", (5120,), {"multiple_of": 512, "multiplier": 1.5}),
            Case("d_model=9600, multiple_of=256, multiplier=1.1", (9600,), {"multiple_of": 256, "multiplier": 1.1}),
        ]
    return cases


def _library_hidden_size(d_model, multiple_of=256, multiplier=None):
    return reference_ffn.gated_hidden_size(d_model, multiple_of=multiple_of, multiplier=multiplier)


SWIGLU_HIDDEN_SIZE = register(Exercise(
    id="swiglu_hidden_size",
    title="swiglu_hidden_size",
    syllabus=("L02",),
    reference=_hidden_size_reference,
    cases=_hidden_size_cases,
    mistakes=HIDDEN_SIZE_MISTAKES,
    forbidden={reference_ffn.gated_hidden_size: "llmcore.ffn.gated_hidden_size"},
    delegation=_library_hidden_size,
    adapt=_require_int,
    output_names=("hidden size",),
    fallback_hint="hidden = int(8 * d_model / 3); if multiplier: hidden = int(multiplier * hidden); "
                  "return multiple_of * math.ceil(hidden / multiple_of).",
))
check_swiglu_hidden_size = SWIGLU_HIDDEN_SIZE.check


# --------------------------------------------------------------------------------------------------
# Grouped-query attention (SYLLABUS L04)
# --------------------------------------------------------------------------------------------------

RAISED_VALUE_ERROR = "a ValueError raised"
"""What the check expects when the query heads are not a multiple of the KV heads."""


def _heads_divide(q: Tensor, k: Tensor) -> bool:
    return q.shape[1] % k.shape[1] == 0


def _gqa_variant(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, *, interleave: bool = True,
                 scaled: bool = True, masked: bool = True) -> Tensor | str:
    """Grouped-query attention with the knobs of the known mistakes (the outcome string when heads do not divide)."""
    if not _heads_divide(q, k):
        return RAISED_VALUE_ERROR
    group = q.shape[1] // k.shape[1]
    if interleave:
        k, v = reference_attention.repeat_kv(k, group), reference_attention.repeat_kv(v, group)
    else:
        k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
    return reference_attention.scaled_dot_product_attention(q, k, v, mask if masked else None,
                                                             scale=None if scaled else 1.0)


def _gqa_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor | str:
    return _gqa_variant(q, k, v, mask)


def _outcome(learner: Callable[..., Tensor]) -> Callable[..., Tensor | str]:
    """The learner's function, turned into what is compared: its output where the heads divide, and what it
    did (raised a ValueError, raised something else, returned a value) where they do not. A case without a mask
    leaves the argument out, so the learner's default (None) is used."""

    @functools.wraps(learner)
    def run(q: Tensor, k: Tensor, v: Tensor, *mask: Tensor | None) -> Tensor | str:
        if _heads_divide(q, k):
            return learner(q, k, v, *mask)
        try:
            result = learner(q, k, v, *mask)
        except NotImplementedError:
            raise
        except ValueError:
            return RAISED_VALUE_ERROR
        except Exception as error:  # an error from deep inside (a shape mismatch) is not the clear one asked for
            return f"{type(error).__name__}: {error}"
        return f"no error: it returned {describe_value(result)}"

    return run


def _no_divisibility_error(got: Any, expected: Any) -> bool:
    return expected == RAISED_VALUE_ERROR and got != RAISED_VALUE_ERROR


GQA_MISTAKES = [
    Mistake("repeat_not_interleave", "the KV heads are tiled with .repeat, so query head i reads KV head i % H_kv",
            "query heads come in consecutive groups: heads 0 … g−1 share KV head 0, the next g share KV head 1 "
            "(i // g), which is repeat_interleave; .repeat tiles the whole stack instead.",
            "k.repeat_interleave(g, dim=1) with g = H // H_kv (or k[:, :, None].expand(B, H_kv, g, S, D)"
            ".reshape(B, H, S, D)), not k.repeat(1, g, 1, 1).",
            output=functools.partial(_gqa_variant, interleave=False)),
    Mistake("no_scale", "the scores are not divided by √D",
            "grouping the heads changes nothing in the attention itself: scores are still q·k / √D with D the "
            "head size.",
            "scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]).",
            output=functools.partial(_gqa_variant, scaled=False)),
    Mistake("mask_ignored", "the mask is not applied",
            "keys where the mask is False get −∞ before the softmax (True = may attend).",
            "scores = scores.masked_fill(~mask, float('-inf')) when a mask is given, before the softmax.",
            output=functools.partial(_gqa_variant, masked=False)),
    Mistake("no_divisibility_error",
            "no clear error when the number of query heads is not a multiple of the number of KV heads",
            "H query heads can only share H_kv KV heads in equal groups when H_kv divides H; say so before "
            "computing anything, instead of failing later with a shape error or returning a wrong result.",
            "if q.shape[1] % k.shape[1]: raise ValueError(f'{q.shape[1]} query heads cannot be grouped over "
            "{k.shape[1]} KV heads').",
            detect=_no_divisibility_error),
]


def _gqa_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def qkv(batch: int, heads: int, kv_heads: int, length: int, kv_length: int, dim: int,
            dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        return (random.tensor((batch, heads, length, dim), dtype),
                random.tensor((batch, kv_heads, kv_length, dim), dtype),
                random.tensor((batch, kv_heads, kv_length, dim), dtype))

    cases = [
        Case("GQA: q [B=3, H=6, L=5, D=8], k/v [B=3, H_kv=2, S=5, D=8] (3 query heads per KV head), causal mask, "
             "float32", (*qkv(3, 6, 2, 5, 5, 8, torch.float32), causal(5))),
        Case("MQA: q [B=2, H=4, L=3, D=16], k/v [B=2, H_kv=1, S=7, D=16], padding mask, float64, gradients",
             (*qkv(2, 4, 1, 3, 7, 16, torch.float64), lengths_mask([5, 7], 7)), check_gradients=True),
        Case("plain multi-head: q and k/v [B=2, H=H_kv=3, L=S=4, D=6], float32, no mask (the argument left out: "
             "mask=None by default)", qkv(2, 3, 3, 4, 4, 6, torch.float32)),
        Case("q with H=8 heads, k/v with H_kv=3 (8 is not a multiple of 3): expects a ValueError",
             (*qkv(1, 8, 3, 3, 3, 4, torch.float32), None)),
    ]
    if hidden:
        cases += [
            Case("LLaMA-3-like grouping: q [B=1, H=32, L=3, D=4], k/v [B=1, H_kv=8, S=3, D=4], causal mask, float64, "
                 "gradients", (*qkv(1, 32, 8, 3, 3, 4, torch.float64), causal(3)), check_gradients=True),
            Case("q [B=3, H=10, L=2, D=5], k/v [B=3, H_kv=5, S=6, D=5], padding mask, float32",
                 (*qkv(3, 10, 5, 2, 6, 5, torch.float32), lengths_mask([6, 4, 1], 6))),
            Case("q with H=6 heads, k/v with H_kv=4: expects a ValueError",
                 (*qkv(2, 6, 4, 2, 2, 3, torch.float32), None)),
        ]
    return cases


def _sdpa_with_grouped_heads(q, k, v, mask=None):
    if q.shape[1] % k.shape[1]:
        raise ValueError(f"{q.shape[1]} query heads cannot be grouped over {k.shape[1]} KV heads")
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)


# fn(q [B, H, L, D], k [B, H_kv, S, D], v [B, H_kv, S, D], mask [.., L, S] bool or None) -> [B, H, L, D].
GROUPED_QUERY_ATTENTION = register(Exercise(
    id="grouped_query_attention",
    title="grouped_query_attention",
    syllabus=("L04",),
    reference=_gqa_reference,
    cases=_gqa_cases,
    mistakes=GQA_MISTAKES,
    forbidden={
        reference_attention.repeat_kv: "llmcore.attention.repeat_kv",
        llmcore.MultiHeadAttention: "llmcore.MultiHeadAttention",
        F.scaled_dot_product_attention:
            "torch.nn.functional.scaled_dot_product_attention (enable_gqa groups the heads)",
    },
    forbidden_ops={
        "scaled_dot_product_attention": "PyTorch's scaled_dot_product_attention (aten::scaled_dot_product_attention)",
        "_scaled_dot_product_*": "PyTorch's fused attention kernel (aten::_scaled_dot_product_*)",
    },
    delegation=_sdpa_with_grouped_heads,
    adapt=_outcome,
    output_names=("output",),
    fallback_hint="g = H // H_kv (raise ValueError if H % H_kv); k and v .repeat_interleave(g, dim=1); then "
                  "attention as in chapter 1 (llmcore.scaled_dot_product_attention is allowed).",
))
check_grouped_query_attention = GROUPED_QUERY_ATTENTION.check


# --------------------------------------------------------------------------------------------------
# KV-cache memory (SYLLABUS L04)
# --------------------------------------------------------------------------------------------------


def _kv_cache_variant(config: ModelConfig, seq_len: int, batch_size: int = 1, bytes_per_value: int = 2, *,
                      tensors: int = 2, kv_heads: str = "kv", head_dim: str = "config", batch: bool = True,
                      layers: bool = True, use_bytes: bool = True) -> int:
    """``tensors · n_layers · n_kv_heads · head_dim · seq_len · batch · bytes``, with the knobs of the known
    mistakes."""
    heads = {
        "kv": config.resolved_kv_heads,
        "query": config.n_heads,
        "none_as_one": 1 if config.n_kv_heads is None else config.n_kv_heads,
        "group": config.n_heads // config.resolved_kv_heads,
    }[kv_heads]
    width = {
        "config": config.resolved_head_dim,
        "hidden": config.hidden_size // config.n_heads,
        "kv": config.head_dim or config.hidden_size // config.resolved_kv_heads,
    }[head_dim]
    return (tensors * (config.n_layers if layers else 1) * heads * width * seq_len * (batch_size if batch else 1)
            * (bytes_per_value if use_bytes else 2))


def _kv_cache_reference(config: ModelConfig, seq_len: int, batch_size: int = 1, bytes_per_value: int = 2) -> int:
    return sizing.kv_cache_bytes_for(config, seq_len, batch_size=batch_size, bytes_per_value=bytes_per_value)


def _kv_cache_mistake(**knobs: Any) -> Callable[..., int]:
    return functools.partial(_kv_cache_variant, **knobs)


KV_CACHE_MISTAKES = [
    # Where two mistakes give the same number, the first declared names it, and the cases are ordered so that
    # each mistake first fails where it is the first to match. GLM-4-32B (case 1: GQA with head_dim in its config,
    # 61 layers, groups of 24) separates the group size, the query heads and the layers, and a factor of 8 (bits)
    # matches none of them; LLaMA-2-7B (MHA, n_kv_heads=None) then names kv_none_as_one before layers_ignored
    # (32 layers, 32 heads); LLaMA-2-70B names head_dim_from_kv_heads before query_heads (hidden_size // 8 KV
    # heads is 8 × 128, as if all 64 query heads were cached).
    Mistake("no_factor_two", "the 2 for keys *and* values is missing",
            "every layer caches a key vector and a value vector per position and KV head: two tensors.",
            "2 * n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value.",
            output=_kv_cache_mistake(tensors=1)),
    Mistake("kv_none_as_one", "n_kv_heads=None is read as one KV head",
            "None means plain multi-head attention: one KV head per query head, so n_kv_heads = n_heads (one KV "
            "head is MQA, which a config says with n_kv_heads=1).",
            "n_kv_heads = config.n_kv_heads if config.n_kv_heads is not None else config.n_heads (not `or 1`).",
            output=_kv_cache_mistake(kv_heads="none_as_one")),
    Mistake("group_size_as_kv_heads", "the group size n_heads // n_kv_heads is used as the number of KV heads",
            "the cache holds one key and one value vector per *KV head*: n_kv_heads of them. The group size g = "
            "n_heads // n_kv_heads is how many query heads share each one, which the cache does not store.",
            "multiply by n_kv_heads itself (config.n_kv_heads, or config.n_heads when it is None).",
            output=_kv_cache_mistake(kv_heads="group")),
    Mistake("head_dim_from_kv_heads", "the head size is computed as hidden_size // n_kv_heads",
            "every head, query or key/value, has the same size head_dim = hidden_size // n_heads (the query heads "
            "split the width); hidden_size // n_kv_heads makes each KV head g times too wide, as if all query heads "
            "were cached.",
            "head_dim = config.head_dim if config.head_dim is not None else config.hidden_size // config.n_heads.",
            output=_kv_cache_mistake(head_dim="kv")),
    Mistake("query_heads", "n_heads (the query heads) is used instead of n_kv_heads",
            "only the key/value heads are cached: n_kv_heads × head_dim numbers per position and layer, not "
            "n_heads × head_dim (= hidden_size); with GQA and MQA they are fewer than the query heads.",
            "n_kv_heads = config.n_kv_heads or config.n_heads (None means one KV head per query head).",
            output=_kv_cache_mistake(kv_heads="query")),
    Mistake("head_dim_from_hidden", "the head size is computed as hidden_size // n_heads, ignoring config.head_dim",
            "a config may set head_dim explicitly (Gemma-7B: 16 heads of 256 on a width of 3072); hidden_size // "
            "n_heads is only the default.",
            "head_dim = config.head_dim if config.head_dim is not None else config.hidden_size // config.n_heads "
            "(ModelConfig.resolved_head_dim).",
            output=_kv_cache_mistake(head_dim="hidden")),
    Mistake("batch_ignored", "batch_size is not multiplied in",
            "each sequence of the batch has its own cache.",
            "multiply by batch_size.",
            output=_kv_cache_mistake(batch=False)),
    Mistake("layers_ignored", "the layers are not multiplied in (one layer's cache)",
            "every layer attends with its own keys and values, so every layer keeps its own cache.",
            "multiply by config.n_layers.",
            output=_kv_cache_mistake(layers=False)),
    Mistake("bytes_ignored", "bytes_per_value is ignored (2 bytes assumed)",
            "the cache's dtype sets the bytes per number: 2 for float16/bfloat16, 4 for float32, 1 for int8.",
            "multiply by bytes_per_value, the argument.",
            output=_kv_cache_mistake(use_bytes=False)),
    _not_an_int_mistake("the number of bytes"),
]


def _kv_cache_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("GLM-4-32B (61 layers, 48 query heads sharing 2 KV heads of 128, head_dim set in its config), "
             "seq_len=8192, batch 1, bfloat16", (preset_config("glm-4-32b-0414"), 8192),
             {"batch_size": 1, "bytes_per_value": 2}),
        Case("LLaMA-2-7B (32 layers, 32 heads, n_kv_heads=None, head_dim=None), seq_len=4096, batch_size and "
             "bytes_per_value left at their defaults (1 sequence, 2 bytes)", (preset_config("llama2-7b"), 4096)),
        Case("Gemma-7B (28 layers, 16 KV heads of 256 on hidden_size 3072), seq_len=8192, batch 1, bfloat16",
             (preset_config("gemma-7b"), 8192), {"batch_size": 1, "bytes_per_value": 2}),
        Case("LLaMA-2-70B (80 layers, 64 query heads, 8 KV heads of 128), seq_len=4096, batch 1, float16",
             (preset_config("llama2-70b"), 4096), {"batch_size": 1, "bytes_per_value": 2}),
        Case("Gemma-2B (18 layers, 8 query heads, 1 KV head of 256), seq_len=2048, batch 8, bfloat16",
             (preset_config("gemma-2b"), 2048), {"batch_size": 8, "bytes_per_value": 2}),
        Case("LLaMA-3-8B (32 layers, 32 query heads, 8 KV heads of 128), seq_len=8192, batch 1, 8-bit cache "
             "(1 byte per value)", (preset_config("llama3-8b"), 8192), {"batch_size": 1, "bytes_per_value": 1}),
    ]
    if hidden:
        batch = int(random.ids(16, (1,), low=2))
        cases += [
            Case(f"LLaMA-3-70B, seq_len=1 (one token), batch {batch}, float32",
                 (preset_config("llama3-70b"), 1), {"batch_size": batch, "bytes_per_value": 4}),
            Case("tiny-llama (2 layers, 4 query heads, 2 KV heads of 16), seq_len=100, batch 3, float32",
                 (preset_config("tiny-llama"), 100), {"batch_size": 3, "bytes_per_value": 4}),
            Case("LLaMA-13B, seq_len=0 (an empty cache), batch 1, float16",
                 (preset_config("llama-13b"), 0), {"batch_size": 1, "bytes_per_value": 2}),
        ]
    return cases


def _library_kv_cache_memory(config, seq_len, batch_size=1, bytes_per_value=2):
    return sizing.kv_cache_bytes_for(config, seq_len, batch_size=batch_size, bytes_per_value=bytes_per_value)


KV_CACHE_MEMORY = register(Exercise(
    id="kv_cache_memory",
    title="kv_cache_memory",
    syllabus=("L04",),
    reference=_kv_cache_reference,
    cases=_kv_cache_cases,
    mistakes=KV_CACHE_MISTAKES,
    forbidden={sizing.kv_cache_bytes: "llmcore.models.sizing.kv_cache_bytes",
               sizing.kv_cache_bytes_for: "llmcore.models.sizing.kv_cache_bytes_for"},
    delegation=_library_kv_cache_memory,
    adapt=_require_int,
    output_names=("bytes",),
    fallback_hint="2 * config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value, with "
                  "n_kv_heads = config.n_kv_heads or config.n_heads and head_dim = config.head_dim or "
                  "config.hidden_size // config.n_heads.",
))
check_kv_cache_memory = KV_CACHE_MEMORY.check
