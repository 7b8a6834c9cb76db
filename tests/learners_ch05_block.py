"""Learner code for the exercises of notebook 01_llama_block, written as learners write it (never llmcore's
implementation of the exercise itself).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import llmcore

# ---------------------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RMSNormWithNorm(RMSNorm):
    """The root mean square from torch.linalg.vector_norm, everything in float64, the weight applied before the cast."""

    def forward(self, x):
        h = x.double()
        rms = torch.linalg.vector_norm(h, dim=-1, keepdim=True) / math.sqrt(x.shape[-1])
        return (self.weight.double() * h / torch.sqrt(rms**2 + self.eps)).to(x.dtype)


class RMSNormEinsum(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.d_model = d_model
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        upcast = x.to(torch.float32) if x.element_size() < 4 else x
        mean_square = torch.einsum("...d,...d->...", upcast, upcast).unsqueeze(-1) / self.d_model
        normalised = upcast / (mean_square + self.eps).sqrt()
        return (normalised * self.weight.to(upcast.dtype)).to(x.dtype)


class RMSNormCentred(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h - h.mean(-1, keepdim=True)
        h = h / torch.sqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RMSNormEpsOutside(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h / (torch.sqrt(h.pow(2).mean(-1, keepdim=True)) + self.eps)
        return self.weight * h.to(x.dtype)


class RMSNormOverPositions(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * torch.rsqrt(h.pow(2).mean(dim=-2, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RMSNormWeightFirst(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        h = h * self.weight
        return (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


class RMSNormInInputDtype(RMSNorm):
    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class RMSNormL2(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        return self.weight * (h / h.norm(dim=-1, keepdim=True)).to(x.dtype)


class RMSNormAlwaysFloat32(nn.Module):
    """Hugging Face's LlamaRMSNorm as written: every input goes to float32, float64 too."""

    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


class RMSNormOnlyFloat16Upcast(RMSNorm):
    def forward(self, x):
        h = x.float() if x.dtype == torch.float16 else x
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RMSNormZeroInit(RMSNorm):
    """Gemma's habit: the gain starts at zero."""

    def __init__(self, d_model, eps=1e-6):
        super().__init__(d_model, eps)
        self.weight = nn.Parameter(torch.zeros(d_model))


class RMSNormPromoted(nn.Module):
    """float32 at least, via torch.promote_types (float64 stays float64), the weight applied in that dtype."""

    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps

    def forward(self, x):
        h = x.to(torch.promote_types(x.dtype, torch.float32))
        rms = torch.sqrt(torch.mean(torch.square(h), dim=-1, keepdim=True) + self.eps)
        return ((h / rms) * self.weight.to(h.dtype)).to(x.dtype)


# ---------------------------------------------------------------------------------------------------
# SwiGLU
# ---------------------------------------------------------------------------------------------------


class SwiGLU(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class SwiGLUByHand(nn.Module):
    """Sigmoid written out, weights used as matrices."""

    def __init__(self, d_model, d_ff):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        gate = x @ self.gate_proj.weight.T
        up = x @ self.up_proj.weight.T
        hidden = gate / (1 + torch.exp(-gate)) * up
        return hidden @ self.down_proj.weight.T


class SwiGLUFused(SwiGLU):
    """Gate and up projections in one matmul, then split (how some codebases fuse w1 and w3)."""

    def forward(self, x):
        both = F.linear(x, torch.cat([self.gate_proj.weight, self.up_proj.weight]))
        gate, up = both.chunk(2, dim=-1)
        return self.down_proj(gate * torch.sigmoid(gate) * up)


class SwiGLUSiluOnUp(SwiGLU):
    def forward(self, x):
        return self.down_proj(self.gate_proj(x) * F.silu(self.up_proj(x)))


class SwiGLUSiluOnBoth(SwiGLU):
    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * F.silu(self.up_proj(x)))


class SwiGLUSiluAfterProduct(SwiGLU):
    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x) * self.up_proj(x)))


class SwiGLUSigmoid(SwiGLU):
    def forward(self, x):
        return self.down_proj(torch.sigmoid(self.gate_proj(x)) * self.up_proj(x))


class SwiGLUGelu(SwiGLU):
    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x)) * self.up_proj(x))


class SwiGLUGeluTanh(SwiGLU):
    def forward(self, x):
        return self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x))


# ---------------------------------------------------------------------------------------------------
# swiglu_hidden_size
# ---------------------------------------------------------------------------------------------------


def swiglu_hidden_size(d_model, multiple_of=256, multiplier=None):
    hidden = int(2 * 4 * d_model / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def hidden_size_with_ceil(d_model, multiple_of=256, multiplier=None):
    hidden = 8 * d_model // 3
    if multiplier:
        hidden = int(hidden * multiplier)
    return math.ceil(hidden / multiple_of) * multiple_of


def hidden_size_with_remainder(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    hidden = hidden if multiplier is None else int(multiplier * hidden)
    _, remainder = divmod(hidden, multiple_of)
    return hidden if remainder == 0 else hidden + multiple_of - remainder


def hidden_size_nearest(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return round(hidden / multiple_of) * multiple_of


def hidden_size_floor(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return hidden // multiple_of * multiple_of


def hidden_size_always_next(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return (hidden // multiple_of + 1) * multiple_of


def hidden_size_integer_eight_thirds(d_model, multiple_of=256, multiplier=None):
    hidden = 8 // 3 * d_model
    if multiplier is not None:
        hidden = int(multiplier * hidden)
    return math.ceil(hidden / multiple_of) * multiple_of


def hidden_size_round_first(d_model, multiple_of=256, multiplier=None):
    hidden = 4 * d_model
    hidden = math.ceil(hidden / multiple_of) * multiple_of
    return int(2 * hidden / 3)


def hidden_size_no_multiplier(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    return math.ceil(hidden / multiple_of) * multiple_of


def hidden_size_multiplier_not_truncated(d_model, multiple_of=256, multiplier=None):
    hidden = int(8 * d_model / 3)
    if multiplier is not None:
        hidden = hidden * multiplier
    return math.ceil(hidden / multiple_of) * multiple_of


def hidden_size_numpy_float(d_model, multiple_of=256, multiplier=None):
    """numpy's ceil returns a numpy float: the value is right, the type is not."""
    hidden = np.floor(8 * d_model / 3)
    if multiplier is not None:
        hidden = np.floor(multiplier * hidden)
    return np.ceil(hidden / multiple_of) * multiple_of


def hidden_size_numpy_int(d_model, multiple_of=256, multiplier=None):
    """Correct: a numpy integer is an int."""
    hidden = np.int64(8 * d_model) // 3
    if multiplier is not None:
        hidden = np.int64(multiplier * hidden)
    return -(-hidden // multiple_of) * multiple_of


def hidden_size_multiplier_last(d_model, multiple_of=256, multiplier=None):
    hidden = math.ceil(int(8 * d_model / 3) / multiple_of) * multiple_of
    if multiplier is not None:
        hidden = int(hidden * multiplier)
    return hidden


# ---------------------------------------------------------------------------------------------------
# grouped_query_attention
# ---------------------------------------------------------------------------------------------------


def grouped_query_attention(q, k, v, mask=None):
    n_heads, n_kv_heads = q.shape[1], k.shape[1]
    if n_heads % n_kv_heads != 0:
        raise ValueError(f"n_heads={n_heads} is not a multiple of n_kv_heads={n_kv_heads}")
    group = n_heads // n_kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    return llmcore.scaled_dot_product_attention(q, k, v, mask)


def gqa_grouped_einsum(q, k, v, mask=None):
    """No copies: the query heads are reshaped into [B, H_kv, g, L, D] groups and attend to their KV head."""
    batch, n_heads, length, dim = q.shape
    n_kv_heads = k.shape[1]
    if n_heads % n_kv_heads:
        raise ValueError("the number of query heads must be a multiple of the number of KV heads")
    groups = q.view(batch, n_kv_heads, n_heads // n_kv_heads, length, dim)
    scores = torch.einsum("bhgld,bhsd->bhgls", groups, k) / math.sqrt(dim)
    if mask is not None:
        mask = mask.expand(batch, n_heads, length, k.shape[2]).reshape(batch, n_kv_heads, -1, length, k.shape[2])
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return torch.einsum("bhgls,bhsd->bhgld", weights, v).reshape(batch, n_heads, length, dim)


def gqa_head_loop(q, k, v, mask=None):
    """One query head at a time, reading KV head i // group (expand + reshape would do the same)."""
    n_heads, n_kv_heads = q.shape[1], k.shape[1]
    if n_heads % n_kv_heads:
        raise ValueError(f"cannot share {n_kv_heads} KV heads among {n_heads} query heads")
    group = n_heads // n_kv_heads
    outputs = []
    for i in range(n_heads):
        scores = q[:, i] @ k[:, i // group].transpose(-1, -2) / q.shape[-1] ** 0.5
        if mask is not None:
            head_mask = mask if mask.dim() < 4 else mask[:, min(i, mask.shape[1] - 1)]
            scores = scores.masked_fill(head_mask.logical_not(), -math.inf)
        outputs.append(torch.softmax(scores, dim=-1) @ v[:, i // group])
    return torch.stack(outputs, dim=1)


def gqa_with_repeat(q, k, v, mask=None):
    if q.shape[1] % k.shape[1]:
        raise ValueError("heads do not divide")
    group = q.shape[1] // k.shape[1]
    return llmcore.scaled_dot_product_attention(q, k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1), mask)


def gqa_without_scale(q, k, v, mask=None):
    if q.shape[1] % k.shape[1]:
        raise ValueError("heads do not divide")
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def gqa_without_mask(q, k, v, mask=None):
    if q.shape[1] % k.shape[1]:
        raise ValueError("heads do not divide")
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v


def gqa_without_check(q, k, v, mask=None):
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    return llmcore.scaled_dot_product_attention(q, k, v, mask)


# ---------------------------------------------------------------------------------------------------
# kv_cache_memory
# ---------------------------------------------------------------------------------------------------


def kv_cache_memory(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads if config.n_kv_heads is not None else config.n_heads
    head_dim = config.head_dim if config.head_dim is not None else config.hidden_size // config.n_heads
    return 2 * config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_memory_per_token(config, seq_len, batch_size=1, bytes_per_value=2):
    """What one token costs in one layer, then scaled up."""
    per_token_per_layer = 2 * config.resolved_kv_heads * config.resolved_head_dim * bytes_per_value
    return per_token_per_layer * config.n_layers * seq_len * batch_size


def kv_cache_memory_from_shapes(config, seq_len, batch_size=1, bytes_per_value=2):
    """Counts the elements of the cache tensors' shapes, as the cache would allocate them."""
    kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    one_tensor = math.prod([batch_size, kv_heads, seq_len, head_dim])
    return config.n_layers * 2 * one_tensor * bytes_per_value


def kv_cache_no_factor_two(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_query_heads(config, seq_len, batch_size=1, bytes_per_value=2):
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * config.n_layers * config.n_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_head_dim_from_hidden(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.hidden_size // config.n_heads
    return 2 * config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_batch_ignored(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * config.n_layers * n_kv_heads * head_dim * seq_len * bytes_per_value


def kv_cache_one_layer(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_float16_always(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * 2


def kv_cache_none_is_one(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or 1
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * config.n_layers * n_kv_heads * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_group_size(config, seq_len, batch_size=1, bytes_per_value=2):
    n_kv_heads = config.n_kv_heads or config.n_heads
    group = config.n_heads // n_kv_heads
    head_dim = config.head_dim or config.hidden_size // config.n_heads
    return 2 * config.n_layers * group * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_head_dim_over_kv_heads(config, seq_len, batch_size=1, bytes_per_value=2):
    kv = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size // kv
    return 2 * config.n_layers * kv * head_dim * seq_len * batch_size * bytes_per_value


def kv_cache_true_division(config, seq_len, batch_size=1, bytes_per_value=2):
    kv = config.n_kv_heads or config.n_heads
    head_dim = config.head_dim or config.hidden_size / config.n_heads
    return 2 * config.n_layers * kv * head_dim * seq_len * batch_size * bytes_per_value


CORRECT = {
    "rms_norm": [RMSNorm, RMSNormWithNorm, RMSNormEinsum, RMSNormPromoted],
    "swiglu": [SwiGLU, SwiGLUByHand, SwiGLUFused],
    "swiglu_hidden_size": [swiglu_hidden_size, hidden_size_with_ceil, hidden_size_with_remainder,
                           hidden_size_numpy_int],
    "grouped_query_attention": [grouped_query_attention, gqa_grouped_einsum, gqa_head_loop],
    "kv_cache_memory": [kv_cache_memory, kv_cache_memory_per_token, kv_cache_memory_from_shapes],
}

MISTAKES = {
    "rms_norm": {
        "mean_subtracted": RMSNormCentred,
        "eps_outside_root": RMSNormEpsOutside,
        "wrong_dim": RMSNormOverPositions,
        "weight_before_norm": RMSNormWeightFirst,
        "downcast_to_float32": RMSNormAlwaysFloat32,
        "bfloat16_in_half": RMSNormOnlyFloat16Upcast,
        "half_precision": RMSNormInInputDtype,
        "l2_norm": RMSNormL2,
        "weight_zeros": RMSNormZeroInit,
    },
    "swiglu": {
        "silu_on_up": SwiGLUSiluOnUp,
        "silu_on_both": SwiGLUSiluOnBoth,
        "silu_after_product": SwiGLUSiluAfterProduct,
        "sigmoid_gate": SwiGLUSigmoid,
        "gelu_gate": SwiGLUGelu,
        "gelu_tanh_gate": SwiGLUGeluTanh,
    },
    "swiglu_hidden_size": {
        "round_nearest": hidden_size_nearest,
        "round_down": hidden_size_floor,
        "one_multiple_too_many": hidden_size_always_next,
        "integer_eight_thirds": hidden_size_integer_eight_thirds,
        "multiple_before_scaling": hidden_size_round_first,
        "multiplier_ignored": hidden_size_no_multiplier,
        "multiplier_after_rounding": hidden_size_multiplier_last,
        "multiplier_not_truncated": hidden_size_multiplier_not_truncated,
        "not_an_int": hidden_size_numpy_float,
    },
    "grouped_query_attention": {
        "repeat_not_interleave": gqa_with_repeat,
        "no_scale": gqa_without_scale,
        "mask_ignored": gqa_without_mask,
        "no_divisibility_error": gqa_without_check,
    },
    "kv_cache_memory": {
        "no_factor_two": kv_cache_no_factor_two,
        "query_heads": kv_cache_query_heads,
        "head_dim_from_hidden": kv_cache_head_dim_from_hidden,
        "batch_ignored": kv_cache_batch_ignored,
        "layers_ignored": kv_cache_one_layer,
        "bytes_ignored": kv_cache_float16_always,
        "kv_none_as_one": kv_cache_none_is_one,
        "group_size_as_kv_heads": kv_cache_group_size,
        "head_dim_from_kv_heads": kv_cache_head_dim_over_kv_heads,
        "not_an_int": kv_cache_true_division,
    },
}
