"""Learner code for the exercises of notebook 05_qwen, written as learners write it (never llmcore's implementation of
the exercise itself; RoPE's rotation and PyTorch's fused attention are earlier exercises and allowed).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmcore.rope import apply_rotary

# ---------------------------------------------------------------------------------------------------
# QwenAttention
# ---------------------------------------------------------------------------------------------------


def _rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


class AttentionWithSdpa(nn.Module):
    """Splits heads with view/transpose, rotates by hand, lets PyTorch's fused kernel do the causal softmax."""

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=False)

    def forward(self, x, cos, sin):
        b, length, _ = x.shape
        q = self.q_proj(x).view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class AttentionWithEinsum(nn.Module):
    """Keeps the heads as a separate axis through einsum, groups query heads under their KV head, uses
    llmcore's apply_rotary (an earlier exercise) and an explicit causal mask."""

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__()
        head_dim = d_model // n_heads
        self.shape = (n_heads, n_kv_heads, head_dim)
        self.q_proj = nn.Linear(d_model, n_heads * head_dim, bias=True)
        self.k_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=True)
        self.v_proj = nn.Linear(d_model, n_kv_heads * head_dim, bias=True)
        self.o_proj = nn.Linear(n_heads * head_dim, d_model, bias=False)

    def forward(self, x, cos, sin):
        heads, kv_heads, head_dim = self.shape
        b, length, _ = x.shape
        q = self.q_proj(x).reshape(b, length, heads, head_dim).permute(0, 2, 1, 3)
        k = self.k_proj(x).reshape(b, length, kv_heads, head_dim).permute(0, 2, 1, 3)
        v = self.v_proj(x).reshape(b, length, kv_heads, head_dim).permute(0, 2, 1, 3)
        q, k = apply_rotary(q, cos[None], sin[None]), apply_rotary(k, cos[None], sin[None])
        q = q.reshape(b, kv_heads, heads // kv_heads, length, head_dim)   # query heads grouped by KV head
        scores = torch.einsum("bgrqd,bgkd->bgrqk", q, k) / math.sqrt(head_dim)
        future = torch.triu(torch.ones(length, length, dtype=torch.bool), diagonal=1)
        weights = scores.masked_fill(future, float("-inf")).softmax(dim=-1)
        out = torch.einsum("bgrqk,bgkd->bgrqd", weights, v).reshape(b, heads, length, head_dim)
        return self.o_proj(out.permute(0, 2, 1, 3).reshape(b, length, heads * head_dim))


class _AttentionBug(AttentionWithSdpa):
    """The first correct version's layers, with a forward a learner got wrong in one place."""

    bias_after_rope = rope_on_values = not_causal = tiled = no_transpose = d_model_scale = False

    def forward(self, x, cos, sin):
        b, length, _ = x.shape
        heads, kv_heads, d = self.n_heads, self.n_kv_heads, self.head_dim

        def split(h, n):
            return h.view(b, n, length, d) if self.no_transpose else h.view(b, length, n, d).transpose(1, 2)

        if self.bias_after_rope:
            q = split(F.linear(x, self.q_proj.weight), heads)
            k = split(F.linear(x, self.k_proj.weight), kv_heads)
        else:
            q, k = split(self.q_proj(x), heads), split(self.k_proj(x), kv_heads)
        v = split(self.v_proj(x), kv_heads)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        if self.rope_on_values:
            v = v * cos + _rotate_half(v) * sin
        if self.bias_after_rope:
            q = q + self.q_proj.bias.view(heads, 1, d)
            k = k + self.k_proj.bias.view(kv_heads, 1, d)
        group = heads // kv_heads
        if self.tiled:
            k, v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
        else:
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scale = 1 / math.sqrt(x.shape[-1] if self.d_model_scale else d)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=not self.not_causal, scale=scale)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class AttentionBiasAfterRope(_AttentionBug):
    bias_after_rope = True


class AttentionRopeOnValues(_AttentionBug):
    rope_on_values = True


class AttentionNotCausal(_AttentionBug):
    not_causal = True


class AttentionTiledKv(_AttentionBug):
    tiled = True


class AttentionNoTranspose(_AttentionBug):
    no_transpose = True


class AttentionDModelScale(_AttentionBug):
    d_model_scale = True


class AttentionLoopOverHeads(nn.Module):
    """One query head at a time, its KV head found as h // group, a hand-written causal softmax."""

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__()
        self.h, self.kv, self.d = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.d)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d)
        self.o_proj = nn.Linear(n_heads * self.d, d_model, bias=False)

    def forward(self, x, cos, sin):
        length = x.shape[1]
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        group = self.h // self.kv
        future = torch.ones(length, length, dtype=torch.bool).triu(1)
        outs = []
        for h in range(self.h):
            g = h // group
            qh, kh = q[..., h * self.d:(h + 1) * self.d], k[..., g * self.d:(g + 1) * self.d]
            vh = v[..., g * self.d:(g + 1) * self.d]
            qh, kh = qh * cos + _rotate_half(qh) * sin, kh * cos + _rotate_half(kh) * sin
            scores = (qh @ kh.transpose(1, 2)) * self.d ** -0.5
            outs.append(torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1) @ vh)
        return self.o_proj(torch.cat(outs, dim=-1))


class _ManualAttention(AttentionWithSdpa):
    """Split, rotate and merge as in the first correct version, the attention written out; each subclass slips once."""

    def rope(self, t, cos, sin):
        return t * cos + _rotate_half(t) * sin

    def attend(self, q, k, v):
        length = q.shape[-2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
        return scores.softmax(dim=-1) @ v

    def merge(self, out):
        b, heads, length, d = out.shape
        return out.transpose(1, 2).reshape(b, length, heads * d)

    def tables(self, x, cos, sin):
        return cos, sin

    def forward(self, x, cos, sin):
        b, length, _ = x.shape
        cos, sin = self.tables(x, cos, sin)
        q = self.q_proj(x).view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = self.rope(q, cos, sin), self.rope_keys(k, cos, sin)
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        return self.o_proj(self.merge(self.attend(q, k, v)))

    def rope_keys(self, k, cos, sin):
        return self.rope(k, cos, sin)


class AttentionNoScale(AttentionWithSdpa):
    """The fused kernel told scale=1.0 ("the scale is in the weights anyway")."""

    def forward(self, x, cos, sin):
        b, length, _ = x.shape
        q = self.q_proj(x).view(b, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, length, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=1.0)
        return self.o_proj(out.transpose(1, 2).reshape(b, length, -1))


class AttentionSoftmaxOverQueries(_ManualAttention):
    def attend(self, q, k, v):
        length = q.shape[-2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
        return F.softmax(scores, dim=-2) @ v


class AttentionDiagonalMasked(_ManualAttention):
    """triu() with its default diagonal=0 used for the future: the first row is all -inf and turns into NaN."""

    def attend(self, q, k, v):
        length = q.shape[-2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        scores = scores.masked_fill(torch.triu(torch.ones(length, length, dtype=torch.bool)), float("-inf"))
        return scores.softmax(dim=-1) @ v


class AttentionInterleavedRope(_ManualAttention):
    """rotate_every_two of GPT-J with the half-split tables."""

    def rope(self, t, cos, sin):
        x1, x2 = t[..., ::2], t[..., 1::2]
        return t * cos + torch.stack((-x2, x1), dim=-1).flatten(-2) * sin


class AttentionRopeOnQueriesOnly(_ManualAttention):
    def rope_keys(self, k, cos, sin):
        return k


class AttentionMergeWithoutTranspose(_ManualAttention):
    def merge(self, out):
        b, heads, length, d = out.shape
        return out.reshape(b, length, heads * d)


class AttentionOwnTables(_ManualAttention):
    """Builds the tables for positions 0 … L−1 itself (base 10000) and ignores the ones given."""

    def tables(self, x, cos, sin):
        length, d = x.shape[1], self.head_dim
        inv_freq = 1.0 / 10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d)
        angles = torch.arange(length, dtype=torch.float32)[:, None] * inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos().to(x.dtype), angles.sin().to(x.dtype)


class AttentionBiasOnOutput(AttentionWithSdpa):
    """Every projection with nn.Linear's default bias, o_proj included (a structure error)."""

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model)


class AttentionNoBias(AttentionWithSdpa):
    """LLaMA's attention: no bias anywhere (a structure error)."""

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__(d_model, n_heads, n_kv_heads)
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)


# ---------------------------------------------------------------------------------------------------
# qwen_ntk_base
# ---------------------------------------------------------------------------------------------------


def ntk_base_log2(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_base_qwen_code(length, trained_length, head_dim, base=10000.0):
    """As Qwen's get_ntk_alpha: math.log(x, 2), the exponent kept in a variable."""
    context_value = math.log(length / trained_length, 2) + 1
    ntk_alpha = 2 ** math.ceil(context_value) - 1
    ntk_alpha = max(ntk_alpha, 1)
    exponent = head_dim / (head_dim - 2)
    return ntk_alpha, base * ntk_alpha**exponent


def ntk_base_loop(length, trained_length, head_dim, base=10000.0):
    """Doubles the covered length until it reaches L: α = 1 up to L₀, then 3, 7, 15 … (a loop, no logarithm)."""
    alpha, covered = 1, trained_length
    while covered < length:
        covered *= 2
        alpha = 2 * alpha + 1
    return alpha, math.exp(math.log(base) + head_dim / (head_dim - 2) * math.log(alpha))


def ntk_bit_length(length, trained_length, head_dim, base=10000.0):
    """Integers only: the number of doublings of L₀ needed to cover L is the bit length of ⌈L/L₀⌉ − 1."""
    if length <= trained_length:
        alpha = 1
    else:
        doublings = (-(-length // trained_length) - 1).bit_length()
        alpha = 2 ** (doublings + 1) - 1
    return alpha, float(base) * math.pow(alpha, head_dim / (head_dim - 2))


def ntk_exponent_precedence(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha ** head_dim / (head_dim - 2)


def ntk_log_difference(length, trained_length, head_dim, base=10000.0):
    """log₂(L/L₀) as (ln L − ln L₀)/ln 2: 2.0000000000000004 for 32768/8192."""
    alpha = max(2 ** math.ceil((math.log(length) - math.log(trained_length)) / math.log(2) + 1) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_natural_log(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_floor(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** int(math.log2(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_inverted(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(trained_length / length) + 1) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_no_plus_one(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length)) - 1, 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_no_minus_one(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1), 1)
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_not_clamped(length, trained_length, head_dim, base=10000.0):
    alpha = 2 ** math.ceil(math.log2(length / trained_length) + 1) - 1
    return alpha, base * alpha ** (head_dim / (head_dim - 2))


def ntk_no_exponent(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha


def ntk_exponent_inverted(length, trained_length, head_dim, base=10000.0):
    alpha = max(2 ** math.ceil(math.log2(length / trained_length) + 1) - 1, 1)
    return alpha, base * alpha ** ((head_dim - 2) / head_dim)


# ---------------------------------------------------------------------------------------------------
# logn_attention_scores
# ---------------------------------------------------------------------------------------------------


def logn_where(q, k, trained_length, training=False):
    if not training:
        one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
        factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length),
                             torch.ones_like(one_based))
        q = q * factor[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_table(q, k, trained_length, training=False):
    """Qwen's way: a table of factors by 1-based position, sliced at the chunk's positions; einsum for the scores."""
    key_length, query_length = k.shape[-2], q.shape[-2]
    table = [math.log(i, trained_length) if i > trained_length else 1.0 for i in range(1, key_length + 1)]
    factor = torch.tensor(table[key_length - query_length:], dtype=q.dtype)
    if training:
        factor = torch.ones_like(factor)
    scores = torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return scores * factor.view(-1, 1)


def logn_clamped_rows(q, k, trained_length, training=False):
    """The factor as clamp(log_{L₀}(p + 1), min=1), applied to the rows of the scores after the product."""
    scores = (q @ k.mT) * q.shape[-1] ** -0.5
    if training:
        return scores
    n = torch.arange(k.size(-2) - q.size(-2) + 1, k.size(-2) + 1).to(q.dtype)
    return scores * (n.log() / math.log(trained_length)).clamp(min=1.0).unsqueeze(-1)


def logn_plain(q, k, trained_length, training=False):
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_keys_too(q, k, trained_length, training=False):
    if not training:
        def scale(x, positions):
            one_based = (positions + 1).to(x.dtype)
            factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length), 1.0)
            return x * factor[:, None]
        q = scale(q, torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2]))
        k = scale(k, torch.arange(k.shape[-2]))
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_keys_instead(q, k, trained_length, training=False):
    if not training:
        one_based = torch.arange(1, k.shape[-2] + 1, dtype=k.dtype)
        factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length), 1.0)
        k = k * factor[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_everywhere(q, k, trained_length, training=False):
    if not training:
        one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
        q = q * (one_based.log() / math.log(trained_length))[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_in_training(q, k, trained_length, training=False):
    one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
    factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length), 1.0)
    return (q * factor[:, None]) @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_natural_log(q, k, trained_length, training=False):
    if not training:
        one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
        q = q * torch.where(one_based > trained_length, one_based.log(), 1.0)[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_zero_based(q, k, trained_length, training=False):
    if not training:
        positions = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype)
        factor = torch.where(positions > trained_length, positions.log() / math.log(trained_length), 1.0)
        q = q * factor[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_one_factor(q, k, trained_length, training=False):
    n = k.shape[-2]
    if not training and n > trained_length:
        q = q * math.log(n, trained_length)
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


def logn_chunk_from_zero(q, k, trained_length, training=False):
    if not training:
        one_based = torch.arange(1, q.shape[-2] + 1, dtype=q.dtype)
        factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length), 1.0)
        q = q * factor[:, None]
    return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])


# ---------------------------------------------------------------------------------------------------
# qwen2_layer_windows
# ---------------------------------------------------------------------------------------------------


def windows_comprehension(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return [sliding_window if use_sliding_window and i >= max_window_layers else None for i in range(n_layers)]


def windows_concatenated(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    if not use_sliding_window:
        return [None] * n_layers
    full = min(max_window_layers, n_layers)
    return [None] * full + [sliding_window] * (n_layers - full)


def windows_loop_tuple(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    windows = []
    for layer in range(n_layers):
        slides = use_sliding_window and layer >= max_window_layers
        windows.append(sliding_window if slides else None)
    return tuple(windows)


def windows_generator(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return (sliding_window if use_sliding_window and i >= max_window_layers else None for i in range(n_layers))


def windows_reversed(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return [sliding_window if use_sliding_window and i < max_window_layers else None for i in range(n_layers)]


def windows_off_by_one(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return [sliding_window if use_sliding_window and i > max_window_layers else None for i in range(n_layers)]


def windows_from_top(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    if not use_sliding_window:
        return [None] * n_layers
    return [None] * (n_layers - max_window_layers) + [sliding_window] * max_window_layers


def windows_everywhere(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return [sliding_window if use_sliding_window else None] * n_layers


def windows_flag_ignored(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
    return [sliding_window if i >= max_window_layers else None for i in range(n_layers)]


CORRECT = {
    "qwen_attention": [AttentionWithSdpa, AttentionWithEinsum, AttentionLoopOverHeads],
    "qwen_ntk_base": [ntk_base_log2, ntk_base_qwen_code, ntk_base_loop, ntk_bit_length],
    "logn_attention_scores": [logn_where, logn_table, logn_clamped_rows],
    "qwen2_layer_windows": [windows_comprehension, windows_concatenated, windows_loop_tuple],
}

MISTAKES = {
    "qwen_attention": {
        "bias_after_rope": AttentionBiasAfterRope,
        "rope_on_values": AttentionRopeOnValues,
        "not_causal": AttentionNotCausal,
        "kv_heads_tiled": AttentionTiledKv,
        "heads_without_transpose": AttentionNoTranspose,
        "scale_by_d_model": AttentionDModelScale,
        "scale_missing": AttentionNoScale,
        "softmax_over_queries": AttentionSoftmaxOverQueries,
        "diagonal_masked": AttentionDiagonalMasked,
        "rope_interleaved": AttentionInterleavedRope,
        "rope_on_queries_only": AttentionRopeOnQueriesOnly,
        "merge_without_transpose": AttentionMergeWithoutTranspose,
        "tables_ignored": AttentionOwnTables,
    },
    "qwen_ntk_base": {
        "natural_log": ntk_natural_log,
        "floor_instead_of_ceil": ntk_floor,
        "ratio_inverted": ntk_inverted,
        "plus_one_missing": ntk_no_plus_one,
        "minus_one_missing": ntk_no_minus_one,
        "not_clamped": ntk_not_clamped,
        "exponent_missing": ntk_no_exponent,
        "exponent_inverted": ntk_exponent_inverted,
        "exponent_precedence": ntk_exponent_precedence,
        "step_high_at_power_of_two": ntk_log_difference,
    },
    "logn_attention_scores": {
        "no_logn_at_inference": logn_plain,
        "keys_scaled_too": logn_keys_too,
        "keys_instead_of_queries": logn_keys_instead,
        "scaled_within_trained_length": logn_everywhere,
        "scaled_in_training": logn_in_training,
        "natural_log": logn_natural_log,
        "zero_based_position": logn_zero_based,
        "one_factor_from_length": logn_one_factor,
        "chunk_positions_from_zero": logn_chunk_from_zero,
    },
    "qwen2_layer_windows": {
        "lower_layers_slide": windows_reversed,
        "boundary_off_by_one": windows_off_by_one,
        "counted_from_the_top": windows_from_top,
        "every_layer_slides": windows_everywhere,
        "flag_ignored": windows_flag_ignored,
        "returned_iterator": windows_generator,
    },
}
