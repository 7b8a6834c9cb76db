"""Learner code for the exercises of notebook 04_recipe_and_scale, written as learners write it (never llmcore's).

``CORRECT[exercise_id]``: correct implementations written differently. ``MISTAKES[exercise_id][mistake_id]``:
one wrong implementation per declared mistake, with the bug as a learner would make it.
Read by tests/test_exercise_contracts.py; tests/test_checks_ch05_recipe.py uses some of them too.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

# ---------------------------------------------------------------------------------------------------
# llama_parameter_count
# ---------------------------------------------------------------------------------------------------


def ffn_hidden(dim, multiple_of, ffn_dim_multiplier):
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def count_by_pieces(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                    tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads if n_kv_heads is not None else n_heads
    attention = dim * n_heads * head_dim + 2 * dim * kv * head_dim + n_heads * head_dim * dim
    ffn = 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier)
    per_layer = attention + ffn + 2 * dim
    embeddings = vocab_size * dim if tie_embeddings else 2 * vocab_size * dim
    return embeddings + n_layers * per_layer + dim


def count_as_shapes(*, dim, n_layers, n_heads, vocab_size, n_kv_heads=None, multiple_of=256,
                    ffn_dim_multiplier=None, tie_embeddings=False):
    """Lists every weight's shape, as in Meta's model.py, and multiplies them out."""
    kv_dim = (n_kv_heads or n_heads) * (dim // n_heads)
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier:
        hidden = int(hidden * ffn_dim_multiplier)
    hidden = math.ceil(hidden / multiple_of) * multiple_of
    layer = [(dim, dim), (kv_dim, dim), (kv_dim, dim), (dim, dim), (hidden, dim), (dim, hidden), (hidden, dim),
             (dim,), (dim,)]
    shapes = [(vocab_size, dim)] + layer * n_layers + [(dim,)]
    if not tie_embeddings:
        shapes.append((vocab_size, dim))
    return sum(math.prod(shape) for shape in shapes)


def count_with_numpy(**params):
    """Multiplies the shapes out with numpy: the sum is a numpy.int64, a count all the same."""
    dim, heads = params["dim"], params["n_heads"]
    kv_dim = (params["n_kv_heads"] or heads) * (dim // heads)
    hidden = 8 * dim // 3
    if params["ffn_dim_multiplier"] is not None:
        hidden = int(hidden * params["ffn_dim_multiplier"])
    while hidden % params["multiple_of"]:
        hidden += 1
    layer = [(dim, dim), (dim, kv_dim), (dim, kv_dim), (dim, dim), (dim, hidden), (dim, hidden), (hidden, dim),
             (dim,), (dim,)]
    shapes = [(params["vocab_size"], dim)] + layer * params["n_layers"] + [(dim,)]
    if not params["tie_embeddings"]:
        shapes.append((params["vocab_size"], dim))
    return sum(np.prod(shape) for shape in shapes)


def count_head_forgotten(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                         tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    ffn = 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier)
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + ffn + 2 * dim
    return vocab_size * dim + n_layers * layer + dim   # embedding, layers, final norm


def count_tied_twice(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                     tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    ffn = 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier)
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + ffn + 2 * dim
    embedding = vocab_size * dim
    lm_head = dim * vocab_size
    return embedding + n_layers * layer + dim + lm_head


def count_without_norms(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                        tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier)
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer


def count_without_final_norm(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                             tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier)
    layer += 2 * dim   # attention_norm, ffn_norm
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer


def count_unrounded(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                    tie_embeddings):
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * hidden + 2 * dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


def count_rounded_down(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                       tie_embeddings):
    hidden = int(8 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    hidden = hidden // multiple_of * multiple_of
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * hidden + 2 * dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


def count_multiplier_ignored(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                             tie_embeddings):
    hidden = math.ceil(int(8 * dim / 3) / multiple_of) * multiple_of
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * hidden + 2 * dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


def count_multiplier_on_4dim(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                             tie_embeddings):
    hidden = 4 * dim
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)   # scale the MLP width first …
    hidden = int(2 * hidden / 3)                    # … then shrink it for the gate
    hidden = multiple_of * math.ceil(hidden / multiple_of)
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 3 * dim * hidden + 2 * dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


def count_kv_heads_ignored(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                           tie_embeddings):
    attention = 4 * dim * dim   # q, k, v, o
    layer = attention + 3 * dim * ffn_hidden(dim, multiple_of, ffn_dim_multiplier) + 2 * dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


def count_gpt_ffn(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of, ffn_dim_multiplier,
                  tie_embeddings):
    head_dim = dim // n_heads
    kv = n_kv_heads or n_heads
    layer = 2 * dim * dim + 2 * dim * kv * head_dim + 8 * dim * dim + 2 * dim   # mlp: dim -> 4 dim -> dim
    return (1 if tie_embeddings else 2) * vocab_size * dim + n_layers * layer + dim


# ---------------------------------------------------------------------------------------------------
# parameter_groups
# ---------------------------------------------------------------------------------------------------

NORMS = (nn.LayerNorm, nn.RMSNorm)


def is_norm(module):
    # llmcore's LayerNorm and RMSNorm are not PyTorch's classes: recognise them by their class name too
    return isinstance(module, NORMS) or type(module).__name__ in ("LayerNorm", "RMSNorm")


def groups_by_module_type(model, weight_decay):
    no_decay = set()
    for module in model.modules():
        if is_norm(module) or isinstance(module, nn.Embedding):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in no_decay or name.endswith("bias"):
            rest.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def groups_by_dimension(model, weight_decay):
    """nanoGPT's rule (1-D tensors are norms and biases), with the embedding tables kept out of the decay."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2 and id(p) not in embeddings]
    no_decay = [p for p in params if p.dim() < 2 or id(p) in embeddings]
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def groups_all_decayed(model, weight_decay):
    return [{"params": list(model.parameters()), "weight_decay": weight_decay}]


def groups_norms_decayed(model, weight_decay):
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if "bias" in name or id(p) in embeddings:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def groups_biases_decayed(model, weight_decay):
    no_decay = set()
    for module in model.modules():
        if is_norm(module) or isinstance(module, nn.Embedding):
            for p in module.parameters(recurse=False):
                no_decay.add(p)
    decay = [p for p in model.parameters() if p not in no_decay]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": list(no_decay), "weight_decay": 0.0}]


def groups_embeddings_decayed(model, weight_decay):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def groups_without_zero_rate(model, weight_decay):
    groups = groups_by_module_type(model, weight_decay)
    return [groups[0], {"params": groups[1]["params"]}]


def groups_from_every_module(model, weight_decay):
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if is_norm(module) or isinstance(module, nn.Embedding) or name == "bias":
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def groups_from_every_module_deduplicated_by_type(model, weight_decay):
    """Walks the modules; the tied table is met by the embedding and by the head, and lands in no_decay twice."""
    tables = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters(recurse=False)}
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if is_norm(module) or id(p) in tables or name == "bias":
                no_decay.append(p)
            else:
                decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------------------------------
# cosine_lr
# ---------------------------------------------------------------------------------------------------


def cosine_lr_piecewise(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    min_lr = peak_lr * min_lr_ratio
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if step > total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + 0.5 * (peak_lr - min_lr) * (1 + math.cos(math.pi * progress))


def cosine_lr_as_multiplier(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    """A LambdaLR-style factor in [min_lr_ratio, 1], computed with torch and clamped progress."""
    warm = min(1.0, step / warmup_steps) if warmup_steps else 1.0
    progress = torch.tensor((step - warmup_steps) / (total_steps - warmup_steps), dtype=torch.float64).clamp(0, 1)
    decay = min_lr_ratio + (1 - min_lr_ratio) * (torch.cos(torch.pi * progress) + 1) / 2
    factor = warm if step < warmup_steps else float(decay)
    return peak_lr * factor


def cosine_lr_in_float32(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    """torch's default dtype throughout: the rate agrees with the float64 one to float32 precision only."""
    step = torch.tensor(step)
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = torch.clamp((step - warmup_steps) / (total_steps - warmup_steps), max=1.0)
    floor = min_lr_ratio * peak_lr
    return floor + (peak_lr - floor) * 0.5 * (1 + torch.cos(torch.pi * progress))


def cosine_floor_zero(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_warmup_from_one(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    floor = min_lr_ratio * peak_lr
    if step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return floor
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return floor + (peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_over_total(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    floor = min_lr_ratio * peak_lr
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    if step >= total_steps:
        return floor
    return floor + (peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / total_steps))


def cosine_floor_added(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return min_lr_ratio * peak_lr + peak_lr * 0.5 * (1 + math.cos(math.pi * progress))


def cosine_floor_clamped(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return max(min_lr_ratio * peak_lr, peak_lr * 0.5 * (1 + math.cos(math.pi * progress)))


def cosine_without_end(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
    floor = min_lr_ratio * peak_lr
    if step < warmup_steps:
        return peak_lr * step / warmup_steps
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return floor + (peak_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


# ---------------------------------------------------------------------------------------------------
# clip_grad_norm
# ---------------------------------------------------------------------------------------------------


def clip_with_a_loop(parameters, max_norm):
    params = [p for p in parameters if p.grad is not None]
    squares = 0.0
    for p in params:
        squares += (p.grad ** 2).sum()
    total = squares ** 0.5
    if total > max_norm:
        for p in params:
            p.grad.mul_(max_norm / (total + 1e-6))
    return total


def clip_with_a_flat_vector(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.copy_(g * scale)
    return total


def clip_per_parameter(parameters, max_norm):
    total = 0.0
    for p in parameters:
        if p.grad is None:
            continue
        norm = p.grad.norm()
        total += norm ** 2
        if norm > max_norm:
            p.grad *= max_norm / (norm + 1e-6)
    return total ** 0.5


def clip_sum_of_norms(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = sum(g.norm() for g in grads)
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    return total


def clip_squared_norm(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = sum((g * g).sum() for g in grads)
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    return total


def clip_always_rescaled(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    for g in grads:
        g.mul_(max_norm / (total + 1e-6))
    return total


def clip_returns_new_norm(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / (total + 1e-6))
    return torch.sqrt(sum(g.pow(2).sum() for g in grads))


def clip_twice_over_a_generator(parameters, max_norm):
    total = torch.sqrt(sum(p.grad.pow(2).sum() for p in parameters if p.grad is not None))
    factor = min(1.0, float(max_norm / (total + 1e-6)))
    for p in parameters:   # model.parameters() is a generator: already used up above
        if p.grad is not None:
            p.grad.mul_(factor)
    return total


CORRECT = {
    "llama_parameter_count": [count_by_pieces, count_as_shapes, count_with_numpy],
    "parameter_groups": [groups_by_module_type, groups_by_dimension],
    "cosine_lr": [cosine_lr_piecewise, cosine_lr_as_multiplier, cosine_lr_in_float32],
    "clip_grad_norm": [clip_with_a_loop, clip_with_a_flat_vector],
}

MISTAKES = {
    "llama_parameter_count": {
        "head_forgotten": count_head_forgotten,
        "tied_counted_twice": count_tied_twice,
        "norms_forgotten": count_without_norms,
        "final_norm_forgotten": count_without_final_norm,
        "ffn_not_rounded": count_unrounded,
        "ffn_rounded_down": count_rounded_down,
        "ffn_multiplier_ignored": count_multiplier_ignored,
        "ffn_multiplier_on_4dim": count_multiplier_on_4dim,
        "kv_heads_ignored": count_kv_heads_ignored,
        "gpt_ffn": count_gpt_ffn,
    },
    "parameter_groups": {
        "all_decayed": groups_all_decayed,
        "norms_decayed": groups_norms_decayed,
        "biases_decayed": groups_biases_decayed,
        "embeddings_decayed": groups_embeddings_decayed,
        "no_decay_group_without_rate": groups_without_zero_rate,
        "tied_weight_twice": groups_from_every_module,
        "tied_weight_twice_in_one_group": groups_from_every_module_deduplicated_by_type,
    },
    "cosine_lr": {
        "floor_zero": cosine_floor_zero,
        "warmup_off_by_one": cosine_warmup_from_one,
        "decay_over_total_steps": cosine_over_total,
        "floor_added": cosine_floor_added,
        "floor_as_clamp": cosine_floor_clamped,
        "cosine_rises_after_end": cosine_without_end,
    },
    "clip_grad_norm": {
        "per_parameter": clip_per_parameter,
        "sum_of_norms": clip_sum_of_norms,
        "squared_norm": clip_squared_norm,
        "always_rescaled": clip_always_rescaled,
        "returns_norm_after": clip_returns_new_norm,
        "gradients_unchanged": clip_twice_over_a_generator,
    },
}
