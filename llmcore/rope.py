"""Rotary position embedding, RoPE (旋转位置编码; Su et al., 2021, RoFormer).

Each pair of query/key dimensions is rotated by an angle ``position · θ_i`` with frequencies
``θ_i = base^(-2i/d)``. Because rotations compose, ``⟨R_m q, R_n k⟩ = ⟨q, R_{n-m} k⟩``: the score
depends only on the relative distance ``n − m``, while no position vector is ever added to the
residual stream.

Two layouts pair the dimensions differently, and mixing them silently scrambles a checkpoint:

* **half-split** (GPT-NeoX, Hugging Face LLaMA/Qwen/Mistral): dimension ``i`` pairs with
  ``i + d/2``; rotate with ``rotate_half``.
* **interleaved** (Meta's original LLaMA code, GPT-J, ChatGLM, GLM-4): dimension ``2i`` pairs with
  ``2i + 1``.

*Partial rotary* (GPT-NeoX, Phi, ChatGLM, GLM-4) rotates only the first ``rotary_dim`` dimensions of
each head and leaves the rest untouched.

Context extension rescales the positions or the base (RoPE scaling, 位置插值 / NTK):

* ``linear`` (position interpolation, Chen et al. 2023): positions are divided by ``factor``.
* ``ntk`` (NTK-aware, bloc97 2023): ``base' = base · factor^(d/(d−2))`` - high frequencies keep
  their resolution, low ones are interpolated.
* ``dynamic`` (dynamic NTK): like ``ntk`` but the factor grows with the current length ``L`` once it
  exceeds the trained length ``L₀``: ``base' = base · (factor·L/L₀ − (factor − 1))^(d/(d−2))``.
* ``llama3`` (LLaMA 3.1): frequencies with wavelengths longer than ``L₀/low_freq_factor`` are
  divided by ``factor``, shorter than ``L₀/high_freq_factor`` are kept, and the band between is
  blended smoothly.
* ``yarn`` (YaRN, Peng et al. 2023, §3.2-3.4): per pair, by how many turns ``r = L₀/wavelength`` it
  makes in the trained length: pairs with ``r > beta_fast`` (32) keep their frequency, pairs with
  ``r < beta_slow`` (1) are interpolated by ``factor``, and a linear ramp over the pair index blends
  the band between (dims 20…46 for ``d = 128``, base 10 000, ``L₀ = 4096``, following Hugging
  Face's rounding of the band outwards). ``cos`` and ``sin`` are multiplied by the attention factor
  ``0.1·ln(factor) + 1`` (1.0693 at ``factor = 2``), which scales every ``q·k`` by its square.
* ``qwen_dynamic`` (Qwen-1's dynamic NTK): each sequence of length ``L`` gets
  ``α = max(2^⌈log₂(L/L₀) + 1⌉ − 1, 1)`` and ``base' = base · α^(d/(d−2))``; ``α`` jumps
  1 → 3 → 7 → 15 as ``L`` passes ``L₀``, ``2L₀``, ``4L₀``, and ``factor`` is unused (keep 1).

Shapes: ``x [B, H, L, D]``; ``cos``/``sin`` ``[B, L, rotary_dim]`` (broadcast over heads).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .long_context import qwen_ntk_alpha, qwen_ntk_base

__all__ = ["RopeScaling", "rope_inverse_frequencies", "qwen_ntk_alpha", "yarn_attention_factor", "rotate_half", "rotate_interleaved", "apply_rotary", "RotaryEmbedding", "Rotary2D"]

SCALING_TYPES = ("linear", "ntk", "dynamic", "llama3", "yarn", "qwen_dynamic")


@dataclass(frozen=True)
class RopeScaling:
    """How RoPE is stretched beyond the trained context length (see the module docstring).

    ``original_max_positions`` is ``L₀`` for ``dynamic``, ``llama3``, ``yarn`` and ``qwen_dynamic``;
    ``low_freq_factor``/``high_freq_factor`` belong to ``llama3``, ``beta_fast``/``beta_slow`` (turns in
    ``L₀`` at the two ends of YaRN's ramp) to ``yarn``.
    """

    type: str
    factor: float
    original_max_positions: int | None = None
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0

    def __post_init__(self) -> None:
        if self.type not in SCALING_TYPES:
            raise ValueError(f"unknown RoPE scaling type {self.type!r}; known: {list(SCALING_TYPES)}")
        if self.factor < 1.0:
            raise ValueError(f"RoPE scaling factor must be >= 1, got {self.factor}")
        if self.type in ("dynamic", "llama3", "yarn", "qwen_dynamic") and not self.original_max_positions:
            raise ValueError(f"RoPE scaling {self.type!r} needs original_max_positions (the trained context length)")


def rope_inverse_frequencies(rotary_dim: int, base: float = 10000.0, scaling: RopeScaling | None = None) -> Tensor:
    """``θ_i = base^(-2i/rotary_dim)`` for ``i < rotary_dim/2``, in float32 (``[rotary_dim/2]``).

    Always float32: in bfloat16 the frequencies of a 4096-token context lose whole radians. The
    static scalings (``ntk``, ``llama3``) are applied here; ``linear`` and ``dynamic`` act on
    positions and lengths in :class:`RotaryEmbedding`; ``yarn``'s frequencies are set here and its
    attention factor (:func:`yarn_attention_factor`) by :class:`RotaryEmbedding`.
    """
    if rotary_dim <= 0 or rotary_dim % 2:
        raise ValueError(f"rotary_dim must be a positive even number, got {rotary_dim}")
    if scaling is not None and scaling.type == "ntk":
        base = base * scaling.factor ** (rotary_dim / (rotary_dim - 2))
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, dtype=torch.int64).float() / rotary_dim))
    if scaling is not None and scaling.type == "llama3":
        inv_freq = _llama3_frequencies(inv_freq, scaling)
    if scaling is not None and scaling.type == "yarn":
        inv_freq = _yarn_frequencies(inv_freq, rotary_dim, base, scaling)
    return inv_freq


def yarn_attention_factor(factor: float) -> float:
    """YaRN's ``cos``/``sin`` multiplier ``0.1·ln(factor) + 1`` (Peng et al. 2023, eq. 22; 1 for ``factor ≤ 1``).

    Both ``q`` and ``k`` are rotated with the scaled tables, so every ``q·k`` grows by its square:
    the softmax is sharpened back after the interpolated pairs blurred it.
    """
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0


def _llama3_frequencies(inv_freq: Tensor, scaling: RopeScaling) -> Tensor:
    assert scaling.original_max_positions is not None
    low_freq_wavelength = scaling.original_max_positions / scaling.low_freq_factor
    high_freq_wavelength = scaling.original_max_positions / scaling.high_freq_factor
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > low_freq_wavelength, inv_freq / scaling.factor, inv_freq)
    smooth = (scaling.original_max_positions / wavelength - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    blended = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    in_band = ~(wavelength < high_freq_wavelength) & ~(wavelength > low_freq_wavelength)
    return torch.where(in_band, blended, scaled)


def _yarn_frequencies(inv_freq: Tensor, rotary_dim: int, base: float, scaling: RopeScaling) -> Tensor:
    assert scaling.original_max_positions is not None
    trained = scaling.original_max_positions

    def pair_turning(turns: float) -> float:
        """The (fractional) pair index that turns ``turns`` full times over the trained length."""
        return rotary_dim * math.log(trained / (turns * 2 * math.pi)) / (2 * math.log(base))

    # Hugging Face widens the band to whole pairs (floor/ceil), as the YaRN reference code does.
    low = max(math.floor(pair_turning(scaling.beta_fast)), 0)
    high = min(math.ceil(pair_turning(scaling.beta_slow)), rotary_dim - 1)
    if low == high:
        high += 0.001
    interpolated = (torch.arange(rotary_dim // 2, dtype=torch.float32) - low) / (high - low)
    interpolated = interpolated.clamp(0, 1)  # 0: keep the frequency (fast pairs), 1: divide it by factor
    return inv_freq / scaling.factor * interpolated + inv_freq * (1 - interpolated)


def rotate_half(x: Tensor) -> Tensor:
    """Half-split layout: ``(x₁, x₂) → (−x₂, x₁)`` where ``x₁, x₂`` are the two halves of the last dim."""
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def rotate_interleaved(x: Tensor) -> Tensor:
    """Interleaved layout: each pair ``(x₂ᵢ, x₂ᵢ₊₁) → (−x₂ᵢ₊₁, x₂ᵢ)``."""
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((-odd, even), dim=-1).flatten(-2)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor, *, interleaved: bool = False) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of every head of ``x`` (``[B, H, L, D]``).

    ``cos``/``sin`` are ``[B, L, rotary_dim]`` in the layout's order: the angles repeated as two
    halves (half-split) or each angle twice in a row (interleaved) - see :meth:`RotaryEmbedding.forward`.
    Tables already shaped ``[B, 1, L, rotary_dim]`` (broadcast over heads) are used as they are, so a
    model can reshape them once for all its layers.
    """
    rotary_dim = cos.shape[-1]
    if rotary_dim > x.shape[-1]:
        raise ValueError(f"rotary_dim={rotary_dim} exceeds the head dim {x.shape[-1]}")
    if cos.dim() < x.dim():
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    rotate = rotate_interleaved if interleaved else rotate_half
    if rotary_dim == x.shape[-1]:
        return x * cos + rotate(x) * sin
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((rotated * cos + rotate(rotated) * sin, passed), dim=-1)


class RotaryEmbedding(nn.Module):
    """Computes the ``cos``/``sin`` tables for given positions (no parameters).

    Args:
        rotary_dim: how many dims of each head rotate (``head_dim`` for full rotary).
        base: the ``θ`` base (10 000 in RoFormer/LLaMA 1-2, 500 000 in LLaMA 3, 1 000 000 in Qwen2).
        interleaved: pair layout (see module docstring).
        scaling: optional context extension.
    """

    def __init__(
        self, rotary_dim: int, base: float = 10000.0, *, interleaved: bool = False, scaling: RopeScaling | None = None
    ) -> None:
        super().__init__()
        self.rotary_dim = rotary_dim
        self.base = base
        self.interleaved = interleaved
        self.scaling = scaling
        self.register_buffer("inv_freq", rope_inverse_frequencies(rotary_dim, base, scaling), persistent=False)
        self.attention_factor = yarn_attention_factor(scaling.factor) if scaling is not None and scaling.type == "yarn" else 1.0

    def _inverse_frequencies_for(self, length: int) -> Tensor:
        scaling = self.scaling
        if scaling is not None and scaling.type == "qwen_dynamic":
            assert scaling.original_max_positions is not None
            alpha, base = qwen_ntk_base(length, scaling.original_max_positions, self.rotary_dim, self.base)
            if alpha == 1:
                return self.inv_freq
            return rope_inverse_frequencies(self.rotary_dim, base).to(self.inv_freq.device)
        if scaling is None or scaling.type != "dynamic" or length <= (scaling.original_max_positions or 0):
            return self.inv_freq
        assert scaling.original_max_positions is not None
        stretch = scaling.factor * length / scaling.original_max_positions - (scaling.factor - 1)
        base = self.base * stretch ** (self.rotary_dim / (self.rotary_dim - 2))
        return rope_inverse_frequencies(self.rotary_dim, base).to(self.inv_freq.device)

    def angles(self, position_ids: Tensor) -> Tensor:
        """``position_ids [B, L]`` (integers) → the rotation angle of every pair, ``[B, L, rotary_dim/2]``, float32.

        Angle ``m·θ_i`` with the scaling applied: ``linear`` divides the positions, the NTK variants
        change the base. The dynamic variants read the current length as the largest position + 1
        (Hugging Face's convention); with ``qwen_dynamic`` each row's length is its largest
        position + 1 (pass ``cumsum(mask) − 1`` positions for a padded batch, as Qwen takes each
        sequence's true length).
        """
        positions = position_ids.float()
        if self.scaling is not None and self.scaling.type == "linear":
            positions = positions / self.scaling.factor
        if self.scaling is not None and self.scaling.type == "qwen_dynamic" and position_ids.numel():
            # Qwen picks α per sequence, so every row gets its own frequencies: [B, 1, rotary_dim/2].
            lengths = (position_ids.amax(dim=-1) + 1).tolist()
            inv_freq = torch.stack([self._inverse_frequencies_for(int(n)) for n in lengths]).unsqueeze(-2)
        elif self.scaling is not None and self.scaling.type == "dynamic" and position_ids.numel():
            # Only dynamic NTK depends on the length; reading it syncs with the device.
            inv_freq = self._inverse_frequencies_for(int(position_ids.max().item()) + 1)
        else:
            inv_freq = self.inv_freq
        return positions.unsqueeze(-1) * inv_freq

    def forward(self, position_ids: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """``position_ids [B, L]`` (integers) → ``(cos, sin)``, each ``[B, L, rotary_dim]`` in ``dtype``.

        Angles (:meth:`angles`) are computed in float32 and only the final tables are cast; with
        ``yarn`` both tables are multiplied by :attr:`attention_factor`.
        """
        angles = self.angles(position_ids)
        if self.interleaved:
            angles = angles.repeat_interleave(2, dim=-1)
        else:
            angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos.to(dtype), sin.to(dtype)


@dataclass(frozen=True)
class Rotary2D:
    """Tables of ChatGLM-6B's 2-D RoPE (二维旋转位置编码; GLM's 2-D positions made rotary).

    ``position`` (``(cos, sin)`` for ``position_ids``) rotates the first half of every head and
    ``block`` (for ``block_position_ids``) the second half, each table ``[B, L, head_dim/2]``
    covering its half in full. The score then sums a term that depends on the distance between the
    two tokens' positions and one that depends on the distance between their intra-span positions.
    """

    position: tuple[Tensor, Tensor]
    block: tuple[Tensor, Tensor]

    def apply(self, x: Tensor, *, interleaved: bool = False) -> Tensor:
        """Rotate ``x [B, H, L, D]``: dims ``[0, D/2)`` by ``position``, ``[D/2, D)`` by ``block``."""
        half = x.shape[-1] // 2
        if self.position[0].shape[-1] != half or self.block[0].shape[-1] != half:
            raise ValueError(f"Rotary2D tables must each cover head_dim/2 = {half} dims")
        first = apply_rotary(x[..., :half], *self.position, interleaved=interleaved)
        second = apply_rotary(x[..., half:], *self.block, interleaved=interleaved)
        return torch.cat((first, second), dim=-1)
