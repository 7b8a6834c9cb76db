"""Learner code for the exercises of notebook 02_rope_and_long_context, written as learners write it (never
llmcore's implementation of the exercise itself; the attention step uses llmcore's attention, an earlier exercise).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import torch

import llmcore

# ---------------------------------------------------------------------------------------------------
# rope_frequencies
# ---------------------------------------------------------------------------------------------------


def frequencies_power(head_dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))


def frequencies_exp_log(head_dim, base=10000.0):
    i = torch.arange(head_dim // 2, dtype=torch.float32)
    return torch.exp(-math.log(base) * 2 * i / head_dim)


def frequencies_loop(head_dim, base=10000.0):
    return torch.tensor([base ** (-2 * i / head_dim) for i in range(head_dim // 2)], dtype=torch.float32)


def frequencies_i_over_d(head_dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(head_dim // 2).float() / head_dim))


def frequencies_not_inverted(head_dim, base=10000.0):
    return base ** (torch.arange(0, head_dim, 2).float() / head_dim)


def frequencies_every_dimension(head_dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(head_dim).float() / head_dim))


def frequencies_double(head_dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))


def frequencies_llama3_default(head_dim, base=500000.0):
    """LLaMA 3's base typed as the default."""
    return 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))


# ---------------------------------------------------------------------------------------------------
# apply_rope
# ---------------------------------------------------------------------------------------------------


def rope_rotate_half(x, positions, inv_freq, interleaved=False):
    angles = positions[:, None].float() * inv_freq
    if interleaved:
        angles = angles.repeat_interleave(2, dim=-1)
        x_even, x_odd = x[..., 0::2], x[..., 1::2]
        rotated = torch.stack((-x_odd, x_even), dim=-1).flatten(-2)
    else:
        angles = torch.cat((angles, angles), dim=-1)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * angles.cos().to(x.dtype) + rotated * angles.sin().to(x.dtype)


def rope_pairs_explicit(x, positions, inv_freq, interleaved=False):
    """Each pair written out as (a·cos − b·sin, b·cos + a·sin)."""
    angles = torch.outer(positions.to(inv_freq.dtype), inv_freq)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).reshape(x.shape)
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


def rope_complex(x, positions, inv_freq, interleaved=False):
    """Meta's way: pairs as complex numbers multiplied by e^{i·m·θ}."""
    angles = positions[:, None].to(inv_freq.dtype) * inv_freq
    rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex128 if x.dtype == torch.float64
                                                                 else torch.complex64)
    if interleaved:
        pairs = x.reshape(*x.shape[:-1], -1, 2)
    else:
        pairs = torch.stack(x.chunk(2, dim=-1), dim=-1)
    rotated = torch.view_as_real(torch.view_as_complex(pairs.contiguous()) * rotation)
    if interleaved:
        return rotated.flatten(-2)
    return torch.cat((rotated[..., 0], rotated[..., 1]), dim=-1)


def rope_always_half(x, positions, inv_freq, interleaved=False):
    angles = positions[:, None].float() * inv_freq
    cos = torch.cat((angles, angles), dim=-1).cos().to(x.dtype)
    sin = torch.cat((angles, angles), dim=-1).sin().to(x.dtype)
    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def rope_interleaved_with_cat_tables(x, positions, inv_freq, interleaved=False):
    angles = positions[:, None].float() * inv_freq
    cos = torch.cat((angles, angles), dim=-1).cos().to(x.dtype)
    sin = torch.cat((angles, angles), dim=-1).sin().to(x.dtype)
    if interleaved:
        rotated = torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)
    else:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def rope_clockwise(x, positions, inv_freq, interleaved=False):
    angles = positions[:, None].float() * inv_freq
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        return torch.stack((a * cos + b * sin, b * cos - a * sin), dim=-1).flatten(-2)
    a, b = x.chunk(2, dim=-1)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    return torch.cat((a * cos + b * sin, b * cos - a * sin), dim=-1)


def rope_pairs_concatenated(x, positions, inv_freq, interleaved=False):
    angles = positions[:, None].float() * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if interleaved:
        even, odd = x[..., ::2], x[..., 1::2]
    else:
        even, odd = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return torch.cat([even * cos - odd * sin, odd * cos + even * sin], dim=-1)


def rope_arange_positions(x, positions, inv_freq, interleaved=False):
    seq_len = x.shape[-2]
    return rope_rotate_half(x, torch.arange(seq_len), inv_freq, interleaved)


def rope_meta_default(x, positions, inv_freq, interleaved=True):
    """Both layouts right, but Meta's layout as the default."""
    angles = positions.to(inv_freq.dtype)[:, None] * inv_freq
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    if interleaved:
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    a, b = x.chunk(2, dim=-1)
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


# ---------------------------------------------------------------------------------------------------
# cached_rope_attention
# ---------------------------------------------------------------------------------------------------


def _rotate(x, positions, inv_freq):
    return rope_rotate_half(x, positions, inv_freq)


def cached_attention_matmul(q, k, v, cache_k, cache_v, inv_freq):
    past = cache_k.shape[-2]
    new = q.shape[-2]
    positions = torch.arange(past, past + new)
    q, k = _rotate(q, positions, inv_freq), _rotate(k, positions, inv_freq)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    scores = q @ keys.transpose(-2, -1) / math.sqrt(q.shape[-1])
    allowed = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ values, keys, values


def cached_attention_llmcore(q, k, v, cache_k, cache_v, inv_freq):
    """Rotates with its own complex-number RoPE, attends with llmcore's attention (an earlier exercise)."""
    start = cache_k.size(2)
    positions = start + torch.arange(q.size(2))
    rotated_q = rope_complex(q, positions, inv_freq)
    keys = torch.cat((cache_k, rope_complex(k, positions, inv_freq)), dim=2)
    values = torch.cat((cache_v, v), dim=2)
    mask = torch.arange(keys.size(2))[None, :] <= positions[:, None]
    return llmcore.scaled_dot_product_attention(rotated_q, keys, values, mask), keys, values


def cached_attention_positions_from_zero(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(new)
    q, k = _rotate(q, positions, inv_freq), _rotate(k, positions, inv_freq)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values


def cached_attention_rotates_values(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(past, past + new)
    q, k, v = (_rotate(t, positions, inv_freq) for t in (q, k, v))
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values


def cached_attention_tril_mask(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(past, past + new)
    q, k = _rotate(q, positions, inv_freq), _rotate(k, positions, inv_freq)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril()
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values


def cached_attention_unmasked(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(past, past + new)
    q, k = _rotate(q, positions, inv_freq), _rotate(k, positions, inv_freq)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    return llmcore.scaled_dot_product_attention(q, keys, values), keys, values


def cached_attention_caches_raw_keys(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(past, past + new)
    new_cache_k = torch.cat([cache_k, k], dim=-2)
    q, k = _rotate(q, positions, inv_freq), _rotate(k, positions, inv_freq)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), new_cache_k, values


def cached_attention_meta_layout(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    positions = torch.arange(past, past + new)
    q, k = rope_rotate_half(q, positions, inv_freq, True), rope_rotate_half(k, positions, inv_freq, True)
    keys, values = torch.cat([cache_k, k], dim=-2), torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values


def cached_attention_rotates_whole_cache(q, k, v, cache_k, cache_v, inv_freq):
    past, new = cache_k.shape[-2], q.shape[-2]
    keys = torch.cat([cache_k, k], dim=-2)
    keys = _rotate(keys, torch.arange(past + new), inv_freq)
    q = _rotate(q, torch.arange(past, past + new), inv_freq)
    values = torch.cat([cache_v, v], dim=-2)
    mask = torch.ones(new, past + new, dtype=torch.bool).tril(diagonal=past)
    return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values


# ---------------------------------------------------------------------------------------------------
# scaled_rope_angles
# ---------------------------------------------------------------------------------------------------


def scaled_angles_branches(positions, head_dim, base, method, factor, trained_length):
    positions = positions.float()
    if method == "linear":
        positions = positions / factor
    elif method == "ntk":
        base = base * factor ** (head_dim / (head_dim - 2))
    elif method == "dynamic":
        length = int(positions.max()) + 1
        if length > trained_length:
            scale = factor * length / trained_length - (factor - 1)
            base = base * scale ** (head_dim / (head_dim - 2))
    return positions[:, None] * frequencies_power(head_dim, base)


def scaled_angles_scale_first(positions, head_dim, base, method, factor, trained_length):
    """Computes one position scale and one base scale, then the angles with an outer product."""
    exponent = head_dim / (head_dim - 2)
    position_scale, base_scale = 1.0, 1.0
    if method == "linear":
        position_scale = 1.0 / factor
    if method == "ntk":
        base_scale = factor**exponent
    current = positions.max().item() + 1
    if method == "dynamic" and current > trained_length:
        base_scale = (factor * current / trained_length - factor + 1) ** exponent
    inv_freq = frequencies_exp_log(head_dim, base * base_scale)
    return torch.outer(positions.float() * position_scale, inv_freq)


def scaled_angles_linear_base(positions, head_dim, base, method, factor, trained_length):
    if method in ("linear", "ntk"):
        base = base * factor ** (1 if method == "linear" else head_dim / (head_dim - 2))
    elif method == "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    return positions[:, None].float() * frequencies_power(head_dim, base)


def scaled_angles_ntk_positions(positions, head_dim, base, method, factor, trained_length):
    if method in ("linear", "ntk"):
        return (positions.float() / factor)[:, None] * frequencies_power(head_dim, base)
    return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)


def scaled_angles_no_exponent(positions, head_dim, base, method, factor, trained_length):
    positions = positions.float()
    if method == "linear":
        positions = positions / factor
    elif method == "ntk":
        base = base * factor
    elif method == "dynamic":
        length = int(positions.max()) + 1
        if length > trained_length:
            base = base * (factor * length / trained_length - (factor - 1))
    return positions[:, None] * frequencies_power(head_dim, base)


def scaled_angles_inverted_exponent(positions, head_dim, base, method, factor, trained_length):
    positions = positions.float()
    exponent = (head_dim - 2) / head_dim
    if method == "linear":
        positions = positions / factor
    elif method == "ntk":
        base *= factor**exponent
    elif method == "dynamic" and positions.max() + 1 > trained_length:
        length = positions.max().item() + 1
        base *= (factor * length / trained_length - factor + 1) ** exponent
    return positions[:, None] * frequencies_power(head_dim, base)


def scaled_angles_dynamic_no_offset(positions, head_dim, base, method, factor, trained_length):
    if method != "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    seq_len = int(positions.max()) + 1
    if seq_len > trained_length:
        base = base * (factor * seq_len / trained_length) ** (head_dim / (head_dim - 2))
    return positions[:, None].float() * frequencies_power(head_dim, base)


def scaled_angles_dynamic_trained(positions, head_dim, base, method, factor, trained_length):
    if method != "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    scale = factor * trained_length / trained_length - (factor - 1)
    base = base * scale ** (head_dim / (head_dim - 2))
    return positions[:, None].float() * frequencies_power(head_dim, base)


def scaled_angles_dynamic_floor(positions, head_dim, base, method, factor, trained_length):
    if method != "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    seq_len = int(positions.max()) + 1
    if seq_len > trained_length:
        base = base * (factor * (seq_len // trained_length) - (factor - 1)) ** (head_dim / (head_dim - 2))
    return torch.outer(positions.float(), frequencies_power(head_dim, base))


def scaled_angles_dynamic_count(positions, head_dim, base, method, factor, trained_length):
    if method != "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    seq_len = len(positions)
    if seq_len > trained_length:
        base = base * (factor * seq_len / trained_length - (factor - 1)) ** (head_dim / (head_dim - 2))
    return positions[:, None].float() * frequencies_power(head_dim, base)


def scaled_angles_dynamic_always(positions, head_dim, base, method, factor, trained_length):
    if method != "dynamic":
        return scaled_angles_branches(positions, head_dim, base, method, factor, trained_length)
    seq_len = int(positions.max()) + 1
    base = base * (factor * seq_len / trained_length - (factor - 1)) ** (head_dim / (head_dim - 2))
    return positions[:, None].float() * frequencies_power(head_dim, base)


CORRECT = {
    "rope_frequencies": [frequencies_power, frequencies_exp_log, frequencies_loop],
    "apply_rope": [rope_rotate_half, rope_pairs_explicit, rope_complex],
    "cached_rope_attention": [cached_attention_matmul, cached_attention_llmcore],
    "scaled_rope_angles": [scaled_angles_branches, scaled_angles_scale_first],
}

MISTAKES = {
    "rope_frequencies": {
        "exponent_i_over_d": frequencies_i_over_d,
        "not_inverted": frequencies_not_inverted,
        "one_per_dimension": frequencies_every_dimension,
        "not_float32": frequencies_double,
        "another_base": frequencies_llama3_default,
    },
    "apply_rope": {
        "default_interleaved": rope_meta_default,
        "layouts_mixed": rope_always_half,
        "tables_in_other_layout": rope_interleaved_with_cat_tables,
        "direction_flipped": rope_clockwise,
        "positions_ignored": rope_arange_positions,
        "pairs_written_back_in_other_layout": rope_pairs_concatenated,
    },
    "cached_rope_attention": {
        "positions_not_offset": cached_attention_positions_from_zero,
        "rope_on_values": cached_attention_rotates_values,
        "mask_not_offset": cached_attention_tril_mask,
        "no_causal_mask": cached_attention_unmasked,
        "cache_stores_unrotated_keys": cached_attention_caches_raw_keys,
        "cache_rotated_again": cached_attention_rotates_whole_cache,
        "interleaved_layout": cached_attention_meta_layout,
    },
    "scaled_rope_angles": {
        "linear_scales_base": scaled_angles_linear_base,
        "ntk_scales_positions": scaled_angles_ntk_positions,
        "ntk_exponent_missing": scaled_angles_no_exponent,
        "ntk_exponent_inverted": scaled_angles_inverted_exponent,
        "dynamic_offset_missing": scaled_angles_dynamic_no_offset,
        "dynamic_uses_trained_length": scaled_angles_dynamic_trained,
        "dynamic_integer_division": scaled_angles_dynamic_floor,
        "dynamic_length_from_count": scaled_angles_dynamic_count,
        "dynamic_scales_short_sequences": scaled_angles_dynamic_always,
    },
}
