"""Exercises of notebook 02_rope_and_long_context: RoPE's frequencies, the rotation in both layouts, an
attention step with a KV cache, and the scalings that stretch RoPE past its trained length.

Each exercise is declared once (:mod:`grader.checks.spec`) and registered; ``check_<name>`` is its
``check``. Every mistake is the reference with one knob turned (a ``*_variant`` function below).
Conventions, as in :mod:`llmcore.rope` and Hugging Face: inverse frequencies in float32, angles in
the dtype of the frequencies (float32, or float64 where a case passes float64 frequencies), cos/sin
cast to the input's dtype afterwards; positions as int64; the current length of a dynamic scaling =
largest position + 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from llmcore import rope as reference_rope
from llmcore.attention import scaled_dot_product_attention

from ..cases import CaseRandom
from ..framework import Case, Mistake
from ..spec import Exercise, register

__all__ = [
    "ROPE_FREQUENCIES",
    "APPLY_ROPE",
    "CACHED_ROPE_ATTENTION",
    "SCALED_ROPE_ANGLES",
    "check_rope_frequencies",
    "check_apply_rope",
    "check_cached_rope_attention",
    "check_scaled_rope_angles",
]


# --------------------------------------------------------------------------------------------------
# Inverse frequencies θ_i = base^(−2i/d) (SYLLABUS L03)
# --------------------------------------------------------------------------------------------------


DEFAULT_BASE = 10000.0
"""The default of ``rope_frequencies(head_dim, base=10000.0)`` in the notebook's signature."""


def _frequencies_reference(head_dim: int, base: float = DEFAULT_BASE) -> Tensor:
    return reference_rope.rope_inverse_frequencies(head_dim, base)


def _recovered_base(inv_freq: Tensor) -> float | None:
    """The base b with inv_freq = b^(−2i/d), read off the slowest pair (b = θ_{d/2−1}^(−d/(d−2))); None if the
    values are not frequencies of the form b^(−2i/d) for one base b > 1."""
    if not isinstance(inv_freq, Tensor) or inv_freq.dim() != 1 or inv_freq.numel() < 2 \
            or not inv_freq.is_floating_point() or not torch.isfinite(inv_freq).all() or (inv_freq <= 0).any():
        return None
    head_dim = 2 * inv_freq.numel()
    logs = inv_freq.double().log()
    if abs(float(logs[0])) > 1e-5:  # θ_0 = 1 for every base
        return None
    log_base = -float(logs[-1]) * head_dim / (head_dim - 2)
    if log_base <= 0:
        return None
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    if not torch.allclose(logs, -exponents * log_base, rtol=1e-4, atol=1e-5):
        return None
    return float(torch.tensor(log_base, dtype=torch.float64).exp())


def _is_round(value: float) -> bool:
    """True for bases a person types: 10000, 500000, 1e6, 2.5e5 (two significant digits at most)."""
    scale = 10.0 ** (len(str(int(value))) - 2) if value >= 10 else 1.0
    mantissa = value / scale
    return abs(mantissa - round(mantissa)) <= 1e-3 * mantissa


def _another_base(got, expected) -> bool:
    """The frequencies of a round base other than the one asked for (e.g. 500000 where the default 10000 was
    meant). An exponent with another denominator also gives b'^(−2i/d), but for a base that is not round."""
    got_base, expected_base = _recovered_base(got), _recovered_base(expected)
    if got_base is None or expected_base is None or got.dtype != expected.dtype:
        return False
    return abs(got_base / expected_base - 1) > 1e-3 and _is_round(got_base)


def _frequencies_variant(head_dim: int, base: float, *, exponent_step: int = 2, sign: float = -1.0,
                         per_dimension: bool = False, dtype: torch.dtype = torch.float32) -> Tensor:
    """The reference with one knob turned: ``base^(sign · step·i / d)`` for the pairs (or every dimension)."""
    count = head_dim if per_dimension else head_dim // 2
    step = 1 if per_dimension else exponent_step
    exponents = torch.arange(count, dtype=torch.float64) * step / head_dim
    return (float(base) ** (sign * exponents)).to(dtype)


FREQUENCY_MISTAKES = [
    Mistake(
        "exponent_i_over_d",
        "the exponent is i/d instead of 2i/d, so the slowest pair turns far too fast",
        "pair i holds dimensions 2i and 2i+1 (or i and i + d/2): its exponent is 2i/d, which runs from 0 to almost 1, "
        "so the wavelengths span 2π … 2π·base.",
        "torch.arange(0, head_dim, 2).float() / head_dim, not torch.arange(head_dim // 2) / head_dim.",
        output=lambda head_dim, base=DEFAULT_BASE: _frequencies_variant(head_dim, base, exponent_step=1),
    ),
    Mistake(
        "not_inverted",
        "the result is base^(2i/d), a wavelength, instead of its inverse base^(−2i/d)",
        "θ_i is an angle per token, 1 for the first pair and smaller for the others: one over base^(2i/d).",
        "1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim)).",
        output=lambda head_dim, base=DEFAULT_BASE: _frequencies_variant(head_dim, base, sign=1.0),
    ),
    Mistake(
        "one_per_dimension",
        "one frequency per dimension (d values) instead of one per pair (d/2 values)",
        "RoPE rotates pairs of dimensions; both dimensions of a pair share one frequency, so there are head_dim/2 of "
        "them.",
        "use torch.arange(0, head_dim, 2): the even indices 0, 2, …, d−2 give the d/2 exponents 2i/d.",
        output=lambda head_dim, base=DEFAULT_BASE: _frequencies_variant(head_dim, base, per_dimension=True),
    ),
    Mistake(
        "not_float32",
        "the frequencies are float64, not float32",
        "the course (like Hugging Face and Qwen) keeps the inverse frequencies in float32 whatever the model's dtype, "
        "so that the same angles are computed everywhere.",
        "build the exponents with .float() (or dtype=torch.float32) and keep the result in float32.",
        output=lambda head_dim, base=DEFAULT_BASE: _frequencies_variant(head_dim, base, dtype=torch.float64),
    ),
    Mistake(
        "another_base",
        "the frequencies are those of another base than the one asked for: a wrong default for base (the "
        "signature says base=10000.0), or the base argument ignored",
        "rope_frequencies(head_dim) uses the default base 10000 (RoFormer, LLaMA 1–2), and the notebook's demos call "
        "it that way; rope_frequencies(head_dim, 500000.0) must use the base it is given.",
        "def rope_frequencies(head_dim, base=10000.0): ... 1.0 / (base ** exponents), with the argument base, not a "
        "number written into the body.",
        detect=_another_base,
    ),
]


def _frequencies_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("head_dim=8, base=10000 (RoFormer, LLaMA 1-2)", (8, 10000.0)),
        Case("head_dim=6, base=500000 (LLaMA 3's base)", (6, 500000.0)),
        Case("head_dim=128, base=10000 (LLaMA-7B's head)", (128, 10000.0)),
        Case("head_dim=16, base left out (the signature's default, base=10000.0)", (16,)),
    ]
    if hidden:
        cases += [
            Case("head_dim=2 (a single pair), base=10000", (2, 10000.0)),
            Case("head_dim=64, base=1000000 (Qwen2's base)", (64, 1000000.0)),
        ]
    return cases


# fn(head_dim: int, base: float = 10000.0) -> inv_freq [head_dim/2], float32
ROPE_FREQUENCIES = register(Exercise(
    id="rope_frequencies",
    title="rope_frequencies",
    syllabus=("L03",),
    reference=_frequencies_reference,
    cases=_frequencies_cases,
    mistakes=FREQUENCY_MISTAKES,
    forbidden={reference_rope.rope_inverse_frequencies: "llmcore.rope.rope_inverse_frequencies",
               reference_rope.RotaryEmbedding: "llmcore.rope.RotaryEmbedding"},
    delegation=lambda head_dim, base=DEFAULT_BASE: reference_rope.rope_inverse_frequencies(head_dim, base),
    output_names=("inv_freq",),
    fallback_hint="1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim)): d/2 values, float32.",
))
check_rope_frequencies = ROPE_FREQUENCIES.check


# --------------------------------------------------------------------------------------------------
# The rotation, in both layouts (SYLLABUS L03)
# --------------------------------------------------------------------------------------------------


def _rotation_tables(positions: Tensor, inv_freq: Tensor, dtype: torch.dtype, interleaved: bool,
                     ) -> tuple[Tensor, Tensor]:
    """cos/sin ``[1, L, D]`` in the layout's order; angles in ``inv_freq``'s dtype, tables cast to ``dtype``."""
    angles = positions.to(inv_freq.dtype).unsqueeze(-1) * inv_freq
    angles = angles.repeat_interleave(2, dim=-1) if interleaved else torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype).unsqueeze(0), angles.sin().to(dtype).unsqueeze(0)


def _apply_rope_reference(x: Tensor, positions: Tensor, inv_freq: Tensor, interleaved: bool = False) -> Tensor:
    cos, sin = _rotation_tables(positions, inv_freq, x.dtype, interleaved)
    return reference_rope.apply_rotary(x, cos, sin, interleaved=interleaved)


def _apply_rope_variant(x: Tensor, positions: Tensor, inv_freq: Tensor, interleaved: bool = False, *,
                        pairing_interleaved: bool | None = None, tables_interleaved: bool | None = None,
                        direction: float = 1.0, ignore_positions: bool = False, written_back_swapped: bool = False,
                        ) -> Tensor:
    """The reference with one knob turned: which pairs rotate, in which table order, which way, at which positions,
    and where the rotated pairs are written back."""
    if written_back_swapped:  # the right rotation, each pair's two results stored in the other layout's places
        rotated = _apply_rope_reference(x, positions, inv_freq, interleaved)
        if interleaved:
            return torch.cat((rotated[..., 0::2], rotated[..., 1::2]), dim=-1)
        return torch.stack(rotated.chunk(2, dim=-1), dim=-1).flatten(-2)
    pairing = interleaved if pairing_interleaved is None else pairing_interleaved
    tables = interleaved if tables_interleaved is None else tables_interleaved
    if ignore_positions:
        positions = torch.arange(x.shape[-2])
    cos, sin = _rotation_tables(positions, inv_freq, x.dtype, tables)
    rotate = reference_rope.rotate_interleaved if pairing else reference_rope.rotate_half
    return x * cos.unsqueeze(1) + direction * rotate(x) * sin.unsqueeze(1)


def _default_layout_variant(x: Tensor, positions: Tensor, inv_freq: Tensor, interleaved: bool | None = None,
                            ) -> Tensor:
    """interleaved=True as the default: the reference wherever the layout is passed, interleaved pairs where it is
    left out."""
    return _apply_rope_reference(x, positions, inv_freq, True if interleaved is None else interleaved)


APPLY_ROPE_MISTAKES = [
    Mistake(  # first: where the layout is left out, it gives the same values as layouts_mixed, and it is the cause
        "default_interleaved",
        "interleaved defaults to True: called without it, apply_rope rotates interleaved pairs (2i, 2i+1), but the "
        "default is the half-split layout",
        "the signature is apply_rope(x, positions, inv_freq, interleaved=False): Hugging Face's half-split pairs "
        "unless told otherwise. The attention step with a KV cache and the demos call apply_rope without interleaved "
        "and rely on that default.",
        "def apply_rope(x, positions, inv_freq, interleaved=False):",
        output=_default_layout_variant,
    ),
    Mistake(
        "layouts_mixed",
        "the layouts are mixed up: half-split pairs (i, i + d/2) where interleaved pairs (2i, 2i+1) were asked, or "
        "the other way round",
        "interleaved=True (Meta's original code) rotates neighbours (x₀, x₁), (x₂, x₃), …; interleaved=False "
        "(Hugging Face) rotates x_i with x_{i+d/2}. A checkpoint only works with the layout it was trained in.",
        "interleaved: rotated[..., 0::2] = x₀·cos − x₁·sin, rotated[..., 1::2] = x₁·cos + x₀·sin with x₀ = x[..., 0::2], "
        "x₁ = x[..., 1::2]; half-split: cat(−x[..., d/2:], x[..., :d/2]) times sin.",
        output=lambda x, positions, inv_freq, interleaved=False: _apply_rope_variant(
            x, positions, inv_freq, interleaved, pairing_interleaved=not interleaved, tables_interleaved=not interleaved),
    ),
    Mistake(
        "tables_in_other_layout",
        "the pairs are right but the cos/sin tables are laid out for the other layout (torch.cat((angles, angles)) "
        "with interleaved pairs, or repeat_interleave with half-split pairs)",
        "the angle of pair i must sit on both dimensions of that pair: at 2i and 2i+1 for interleaved "
        "(repeat_interleave(2)), at i and i + d/2 for half-split (torch.cat((angles, angles))).",
        "interleaved: angles.repeat_interleave(2, dim=-1); half-split: torch.cat((angles, angles), dim=-1).",
        output=lambda x, positions, inv_freq, interleaved=False: _apply_rope_variant(
            x, positions, inv_freq, interleaved, tables_interleaved=not interleaved),
    ),
    Mistake(
        "direction_flipped",
        "the rotation turns the wrong way (by −m·θ): the sign of the sin term is flipped",
        "RoPE rotates counter-clockwise: (x₀, x₁) → (x₀·cos − x₁·sin, x₁·cos + x₀·sin), like multiplying "
        "x₀ + i·x₁ by e^{i·m·θ}.",
        "x * cos + rotate(x) * sin with rotate((x₀, x₁)) = (−x₁, x₀), not (x₁, −x₀).",
        output=lambda x, positions, inv_freq, interleaved=False: _apply_rope_variant(
            x, positions, inv_freq, interleaved, direction=-1.0),
    ),
    Mistake(
        "positions_ignored",
        "the positions argument is ignored: token j is rotated by j·θ (torch.arange(L)) instead of positions[j]·θ",
        "with a KV cache or packed sequences the tokens of x do not start at position 0; the angle comes from the "
        "positions you are given.",
        "angles = positions[:, None].float() * inv_freq, not torch.arange(x.shape[-2]).",
        output=lambda x, positions, inv_freq, interleaved=False: _apply_rope_variant(
            x, positions, inv_freq, interleaved, ignore_positions=True),
    ),
    Mistake(
        "pairs_written_back_in_other_layout",
        "each pair is rotated correctly but the results are written back in the other layout's order (for "
        "interleaved: torch.cat of the rotated even and odd parts instead of putting them back at 2i and 2i+1)",
        "the output keeps x's layout: the rotated pair i goes back to the dimensions it came from.",
        "interleaved: torch.stack((new_even, new_odd), dim=-1).flatten(-2); half-split: torch.cat((new_first, "
        "new_second), dim=-1).",
        output=lambda x, positions, inv_freq, interleaved=False: _apply_rope_variant(
            x, positions, inv_freq, interleaved, written_back_swapped=True),
    ),
]


def _apply_rope_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def frequencies(head_dim: int, base: float, dtype: torch.dtype = torch.float32) -> Tensor:
        return reference_rope.rope_inverse_frequencies(head_dim, base).to(dtype)

    cases = [
        Case("x [B=2, H=3, L=5, D=8], float32, positions 0…4, half-split",
             (random.tensor((2, 3, 5, 8)), torch.arange(5), frequencies(8, 10000.0), False)),
        Case("x [B=1, H=2, L=4, D=6], float64 (inv_freq float64 too), positions 7…10, interleaved, gradients",
             (random.tensor((1, 2, 4, 6), torch.float64), torch.arange(7, 11), frequencies(6, 10000.0, torch.float64),
              True), check_gradients=True),
        Case("x [B=2, H=1, L=7, D=10], float32, positions [0, 3, 9, 20, 21, 40, 1000], base 500000, half-split, "
             "gradients",
             (random.tensor((2, 1, 7, 10)), torch.tensor([0, 3, 9, 20, 21, 40, 1000]), frequencies(10, 500000.0),
              False), check_gradients=True),
        Case("x [B=3, H=2, L=1, D=4], float32, one token at position 12, interleaved",
             (random.tensor((3, 2, 1, 4)), torch.tensor([12]), frequencies(4, 10000.0), True)),
        Case("x [B=1, H=2, L=6, D=8], float32, positions 3…8, interleaved left out (the signature's default, "
             "interleaved=False: half-split)",
             (random.tensor((1, 2, 6, 8)), torch.arange(3, 9), frequencies(8, 10000.0))),
    ]
    if hidden:
        cases += [
            Case("x [B=2, H=4, L=9, D=64], float32, positions 100…108, half-split",
                 (random.tensor((2, 4, 9, 64)), torch.arange(100, 109), frequencies(64, 10000.0), False)),
            Case("x [B=1, H=3, L=6, D=16], float64, positions 0…5, interleaved, base 500000, gradients",
                 (random.tensor((1, 3, 6, 16), torch.float64), torch.arange(6),
                  frequencies(16, 500000.0, torch.float64), True), check_gradients=True),
        ]
    return cases


# fn(x [B, H, L, D], positions [L] int64, inv_freq [D/2], interleaved: bool = False) -> [B, H, L, D] in x's dtype
APPLY_ROPE = register(Exercise(
    id="apply_rope",
    title="apply_rope",
    syllabus=("L03",),
    reference=_apply_rope_reference,
    cases=_apply_rope_cases,
    mistakes=APPLY_ROPE_MISTAKES,
    forbidden={reference_rope.apply_rotary: "llmcore.rope.apply_rotary",
               reference_rope.rotate_half: "llmcore.rope.rotate_half",
               reference_rope.rotate_interleaved: "llmcore.rope.rotate_interleaved",
               reference_rope.RotaryEmbedding: "llmcore.rope.RotaryEmbedding",
               reference_rope.RotaryEmbedding.angles: "llmcore.rope.RotaryEmbedding.angles"},
    delegation=_apply_rope_reference,
    output_names=("rotated",),
    fallback_hint="angles = positions[:, None].float() * inv_freq ([L, D/2]); lay them out for the layout "
                  "(cat for half-split, repeat_interleave(2) for interleaved); return x * cos + rotate(x) * sin, "
                  "cos/sin cast to x.dtype.",
))
check_apply_rope = APPLY_ROPE.check


# --------------------------------------------------------------------------------------------------
# One attention step with a KV cache: rotate q and k (not v) at their true positions (SYLLABUS L03)
# --------------------------------------------------------------------------------------------------


def _cached_variant(q: Tensor, k: Tensor, v: Tensor, cache_k: Tensor, cache_v: Tensor, inv_freq: Tensor, *,
                    offset_positions: bool = True, rotate_values: bool = False, offset_mask: bool = True,
                    causal: bool = True, cache_rotated_keys: bool = True, rotate_cache_again: bool = False,
                    interleaved: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """The reference (half-split layout) with one knob turned."""
    cached, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(cached, cached + new) if offset_positions else torch.arange(new)
    rotated_q = _apply_rope_reference(q, positions, inv_freq, interleaved)
    rotated_k = _apply_rope_reference(k, positions, inv_freq, interleaved)
    values = _apply_rope_reference(v, positions, inv_freq) if rotate_values else v
    keys = torch.cat((cache_k, rotated_k), dim=-2)
    if rotate_cache_again:  # cached keys turned once more, by their own positions 0 … S−1
        keys = _apply_rope_reference(torch.cat((cache_k, k), dim=-2), torch.arange(cached + new), inv_freq)
    all_values = torch.cat((cache_v, values), dim=-2)
    query_positions = torch.arange(new).unsqueeze(-1) + (cached if offset_mask else 0)
    mask = torch.arange(cached + new) <= query_positions if causal else None
    output = scaled_dot_product_attention(rotated_q, keys, all_values, mask)
    stored_keys = keys if cache_rotated_keys else torch.cat((cache_k, k), dim=-2)
    return output, stored_keys, all_values


def _cached_reference(q: Tensor, k: Tensor, v: Tensor, cache_k: Tensor, cache_v: Tensor,
                      inv_freq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return _cached_variant(q, k, v, cache_k, cache_v, inv_freq)


def _cached_mistake(**knobs):
    return lambda q, k, v, cache_k, cache_v, inv_freq: _cached_variant(q, k, v, cache_k, cache_v, inv_freq, **knobs)


CACHED_MISTAKES = [
    Mistake(
        "positions_not_offset",
        "the new tokens are rotated as if they started at position 0, not after the S cached tokens",
        "with S tokens in the cache the new tokens sit at positions S, S+1, …, S+L−1; rotating them at 0…L−1 makes "
        "every query believe it is at the start of the text.",
        "positions = torch.arange(S, S + L) with S = cache_k.shape[-2].",
        output=_cached_mistake(offset_positions=False),
    ),
    Mistake(
        "rope_on_values",
        "RoPE is applied to the values too",
        "RoPE encodes position in the score q·k only; the values carry content and are mixed as they are.",
        "rotate q and k; concatenate v to the cache unrotated.",
        output=_cached_mistake(rotate_values=True),
    ),
    Mistake(
        "mask_not_offset",
        "the causal mask is aligned at the top left (torch.ones(L, S + L).tril()), so the new tokens cannot see "
        "most of the cache",
        "query j (at position S+j) may see every key up to and including position S+j: the whole cache and the new "
        "tokens up to itself.",
        "mask = torch.arange(S + L) <= (S + torch.arange(L))[:, None], or .tril(diagonal=S).",
        output=_cached_mistake(offset_mask=False),
    ),
    Mistake(
        "no_causal_mask",
        "there is no causal mask: a new token sees the new tokens after it",
        "when several tokens arrive at once (a prompt, a chunk), each may only see the keys up to its own position.",
        "mask = torch.arange(S + L) <= (S + torch.arange(L))[:, None] (True = may attend).",
        output=_cached_mistake(causal=False),
    ),
    Mistake(
        "cache_stores_unrotated_keys",
        "the returned cache holds the new keys before rotation",
        "the cache holds keys exactly as attention used them, rotated at their positions, so that the next step can "
        "use them without knowing where they were.",
        "return torch.cat((cache_k, rotated_k), dim=-2), the rotated keys.",
        output=_cached_mistake(cache_rotated_keys=False),
    ),
    Mistake(
        "cache_rotated_again",
        "the cached keys are rotated a second time",
        "the keys in the cache were rotated when they were computed; only the new keys need their rotation.",
        "rotate k alone at positions S…S+L−1, then torch.cat((cache_k, rotated_k), dim=-2).",
        output=_cached_mistake(rotate_cache_again=True),
    ),
    Mistake(
        "interleaved_layout",
        "q and k are rotated in the interleaved layout (pairs 2i, 2i+1); this step uses the half-split layout",
        "the cache, like Hugging Face's LLaMA, uses half-split pairs (i, i + D/2): apply_rope's default "
        "interleaved=False. If your apply_rope is called without interleaved, check that its default is False.",
        "apply_rope(q, positions, inv_freq) and apply_rope(k, positions, inv_freq), with interleaved=False (the "
        "default of the signature).",
        output=_cached_mistake(interleaved=True),
    ),
]


def _cached_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    def step(batch: int, heads: int, cached: int, new: int, head_dim: int, dtype: torch.dtype,
             base: float = 10000.0) -> tuple:
        inv_freq = reference_rope.rope_inverse_frequencies(head_dim, base).to(dtype)
        return (random.tensor((batch, heads, new, head_dim), dtype), random.tensor((batch, heads, new, head_dim), dtype),
                random.tensor((batch, heads, new, head_dim), dtype),
                random.tensor((batch, heads, cached, head_dim), dtype),
                random.tensor((batch, heads, cached, head_dim), dtype), inv_freq)

    cases = [
        Case("prefill: empty cache (S=0), q/k/v [B=2, H=3, L=5, D=8], float32", step(2, 3, 0, 5, 8, torch.float32)),
        Case("one decoding step: S=6 cached, L=1 new, [B=1, H=2, D=4], float64", step(1, 2, 6, 1, 4, torch.float64)),
        Case("a chunk: S=4 cached, L=3 new, [B=2, H=1, D=10], float32, gradients", step(2, 1, 4, 3, 10, torch.float32),
             check_gradients=True),
    ]
    if hidden:
        cases += [
            Case("one decoding step after 40 tokens: [B=3, H=2, D=16], float64, base 500000, gradients",
                 step(3, 2, 40, 1, 16, torch.float64, 500000.0), check_gradients=True),
            Case("a chunk: S=9 cached, L=5 new, [B=1, H=4, D=32], float32", step(1, 4, 9, 5, 32, torch.float32)),
        ]
    return cases


# fn(q, k, v [B, H, L, D] new tokens, cache_k, cache_v [B, H, S, D] (keys already rotated), inv_freq [D/2])
#   -> (output [B, H, L, D], new cache_k [B, H, S+L, D], new cache_v [B, H, S+L, D]); half-split layout.
CACHED_ROPE_ATTENTION = register(Exercise(
    id="cached_rope_attention",
    title="cached_rope_attention",
    syllabus=("L03",),
    reference=_cached_reference,
    cases=_cached_cases,
    mistakes=CACHED_MISTAKES,
    output_names=("output", "new cache_k", "new cache_v"),
    fallback_hint="S = cache_k.shape[-2]; positions = arange(S, S+L); rotate q and k with apply_rope; keys = "
                  "cat(cache_k, rotated k), values = cat(cache_v, v); causal mask arange(S+L) <= S + arange(L)[:, None]; "
                  "softmax(q·kᵀ/√D) · values; return (output, keys, values).",
))
check_cached_rope_attention = CACHED_ROPE_ATTENTION.check


# --------------------------------------------------------------------------------------------------
# Context extension: position interpolation, NTK-aware and dynamic NTK (SYLLABUS L08)
# --------------------------------------------------------------------------------------------------


def _scaled_reference(positions: Tensor, head_dim: int, base: float, method: str, factor: float,
                      trained_length: int) -> Tensor:
    scaling = reference_rope.RopeScaling(method, factor, original_max_positions=trained_length)
    return reference_rope.RotaryEmbedding(head_dim, base, scaling=scaling).angles(positions.unsqueeze(0))[0]


def _scaled_variant(positions: Tensor, head_dim: int, base: float, method: str, factor: float, trained_length: int,
                    *, linear_on_base: bool = False, ntk_on_positions: bool = False, ntk_exponent: str = "d/(d-2)",
                    dynamic_length: str = "current", clamp_dynamic: bool = True, dynamic_offset: bool = True,
                    floor_ratio: bool = False) -> Tensor:
    """The reference with one knob turned: where the factor acts, with which exponent, at which length."""
    exponent = {"d/(d-2)": head_dim / (head_dim - 2), "none": 1.0, "(d-2)/d": (head_dim - 2) / head_dim}[ntk_exponent]
    scaled_positions = positions.float()
    if method == "linear":
        if linear_on_base:
            base = base * factor
        else:
            scaled_positions = scaled_positions / factor
    elif method == "ntk":
        if ntk_on_positions:
            scaled_positions = scaled_positions / factor
        else:
            base = base * factor**exponent
    elif method == "dynamic":
        length = {"current": int(positions.max()) + 1, "trained": trained_length, "count": positions.numel()}[
            dynamic_length]
        if length > trained_length or not clamp_dynamic:
            ratio = length // trained_length if floor_ratio else length / trained_length
            scale = factor * ratio - ((factor - 1) if dynamic_offset else 0.0)
            base = base * scale**exponent
    inv_freq = reference_rope.rope_inverse_frequencies(head_dim, base)
    return scaled_positions.unsqueeze(-1) * inv_freq


def _scaled_mistake(**knobs):
    return lambda positions, head_dim, base, method, factor, trained_length: _scaled_variant(
        positions, head_dim, base, method, factor, trained_length, **knobs)


SCALED_MISTAKES = [
    Mistake(
        "linear_scales_base",
        "position interpolation multiplies the base by the factor instead of dividing the positions",
        "linear interpolation (Chen et al. 2023) squeezes the positions: m → m/s, the same slowdown for every pair. "
        "Changing the base is what NTK-aware scaling does, and it slows each pair by a different amount.",
        "linear: angles = (positions.float() / factor)[:, None] * inv_freq, with the base unchanged.",
        output=_scaled_mistake(linear_on_base=True),
    ),
    Mistake(
        "ntk_scales_positions",
        "NTK-aware scaling divides the positions by the factor (that is linear interpolation) instead of raising "
        "the base",
        "NTK-aware scaling keeps the positions and raises the base to base·s^(d/(d−2)): the fastest pair keeps its "
        "frequency, the slowest is slowed by exactly s.",
        "ntk: inv_freq from base * factor ** (head_dim / (head_dim - 2)); positions unchanged.",
        output=_scaled_mistake(ntk_on_positions=True),
    ),
    Mistake(
        "ntk_exponent_missing",
        "the base is multiplied by the factor itself, without the exponent d/(d−2)",
        "the exponent makes the slowest pair (exponent (d−2)/d) slow down by exactly s: (base·s^(d/(d−2)))^((d−2)/d) "
        "= base^((d−2)/d)·s. Without it the slowest pair is slowed by only s^((d−2)/d).",
        "new_base = base * scale ** (head_dim / (head_dim - 2)), for NTK (scale = factor) and dynamic NTK.",
        output=_scaled_mistake(ntk_exponent="none"),
    ),
    Mistake(
        "ntk_exponent_inverted",
        "the exponent is (d−2)/d instead of d/(d−2)",
        "the slowest pair's frequency is base^(−(d−2)/d); raising the base by s^(d/(d−2)) divides it by exactly s. "
        "With the inverted exponent it is divided by only s^(((d−2)/d)²).",
        "new_base = base * scale ** (head_dim / (head_dim - 2)): the larger exponent, slightly above 1.",
        output=_scaled_mistake(ntk_exponent="(d-2)/d"),
    ),
    Mistake(
        "dynamic_uses_trained_length",
        "dynamic NTK uses the trained length where the current length belongs, so it never scales",
        "dynamic NTK grows the base with the sequence: scale = s·L/L₀ − (s−1) with L the current length (largest "
        "position + 1). With L = L₀ the scale is always 1.",
        "L = int(positions.max()) + 1; if L > trained_length: base * (factor * L / trained_length - (factor - 1)) ** "
        "(head_dim / (head_dim - 2)).",
        output=_scaled_mistake(dynamic_length="trained"),
    ),
    Mistake(
        "dynamic_integer_division",
        "dynamic NTK divides the lengths with // (integer division), so the scale grows in whole steps of L₀ "
        "instead of with every token",
        "L/L₀ is a fraction: rounded down, the base stays put from L₀ to 2L₀ − 1 (scale 1, no scaling at all) and "
        "then jumps. Dynamic NTK lets the base grow smoothly with the current length.",
        "scale = factor * L / trained_length - (factor - 1), with the true division /, not L // trained_length (or "
        "(factor * L) // trained_length).",
        output=_scaled_mistake(floor_ratio=True),
    ),
    Mistake(
        "dynamic_length_from_count",
        "dynamic NTK takes the current length from the number of positions given, not from the largest position",
        "a chunk or a decoding step passes only the new positions; the length the model has reached is the largest "
        "position + 1 (Hugging Face's convention).",
        "L = int(positions.max()) + 1, not len(positions).",
        output=_scaled_mistake(dynamic_length="count"),
    ),
    Mistake(
        "dynamic_scales_short_sequences",
        "dynamic NTK also changes the base for sequences shorter than the trained length (it shrinks the base)",
        "up to the trained length the model runs exactly as trained; the formula only takes over when L > L₀ (for "
        "L < L₀ it would give a scale below 1).",
        "apply the new base only if L > trained_length; otherwise use the plain base.",
        output=_scaled_mistake(clamp_dynamic=False),
    ),
    Mistake(
        "dynamic_offset_missing",
        "dynamic NTK's scale is s·L/L₀, without the − (s − 1)",
        "the − (s − 1) makes the scale start at exactly 1 when L reaches L₀, so the base grows continuously from the "
        "trained one instead of jumping by s.",
        "scale = factor * L / trained_length - (factor - 1).",
        output=_scaled_mistake(dynamic_offset=False),
    ),
]


def _scaled_cases(random: CaseRandom, hidden: bool) -> list[Case]:
    cases = [
        Case("linear (position interpolation), factor 4, trained 16, positions 0…39, head_dim 8, base 10000",
             (torch.arange(40), 8, 10000.0, "linear", 4.0, 16)),
        Case("ntk, factor 2, trained 32, positions 0…63, head_dim 16, base 10000",
             (torch.arange(64), 16, 10000.0, "ntk", 2.0, 32)),
        # L = 39: L/L₀ = 2.44 is not a whole number, and L > 2L₀, so // (scale 3) differs from the trained length
        # (scale 1), from len(positions) = 29 (scale 2.625) and from the true scale 3.875.
        Case("dynamic, factor 2, trained 16, a chunk at positions 10…38 (current length 39), head_dim 12, base 500000",
             (torch.arange(10, 39), 12, 500000.0, "dynamic", 2.0, 16)),
        Case("dynamic, factor 4, trained 64, positions 0…19 (shorter than trained), head_dim 6, base 10000",
             (torch.arange(20), 6, 10000.0, "dynamic", 4.0, 64)),
    ]
    if hidden:
        cases += [
            Case("dynamic, factor 2, one decoding step at position 8191, trained 4096, head_dim 128, base 10000",
                 (torch.tensor([8191]), 128, 10000.0, "dynamic", 2.0, 4096)),
            Case("ntk, factor 8, trained 8, positions 0…5 and 60…63, head_dim 10, base 10000",
                 (torch.cat((torch.arange(6), torch.arange(60, 64))), 10, 10000.0, "ntk", 8.0, 8)),
            Case("linear, factor 2.5, trained 20, positions 0…49, head_dim 4, base 500000",
                 (torch.arange(50), 4, 500000.0, "linear", 2.5, 20)),
        ]
    return cases


# fn(positions [L] int64, head_dim, base, method in {"linear", "ntk", "dynamic"}, factor, trained_length)
#   -> angles [L, head_dim/2], float32
SCALED_ROPE_ANGLES = register(Exercise(
    id="scaled_rope_angles",
    title="scaled_rope_angles",
    syllabus=("L08",),
    reference=_scaled_reference,
    cases=_scaled_cases,
    mistakes=SCALED_MISTAKES,
    forbidden={reference_rope.RotaryEmbedding.angles: "llmcore.rope.RotaryEmbedding",
               reference_rope.RopeScaling.__post_init__: "llmcore.rope.RopeScaling"},
    delegation=_scaled_reference,
    output_names=("angles",),
    fallback_hint="linear: positions / factor; ntk: base * factor ** (d / (d - 2)); dynamic: L = positions.max() + 1 "
                  "and, if L > trained_length, base * (factor * L / trained_length - (factor - 1)) ** (d / (d - 2)); "
                  "then angles = positions[:, None] * inv_freq.",
))
check_scaled_rope_angles = SCALED_ROPE_ANGLES.check

