"""Learner-style implementations for notebook 06_glm_chatglm: correct ones written in different ways,
and one per known mistake, written as a learner would write the bug."""

from __future__ import annotations

import math

import torch


# --------------------------------------------------------------------------------------------------
# glm_blank_infilling(tokens, spans, mask_id, start_id, end_id, generator)
# --------------------------------------------------------------------------------------------------


def infilling_lists(tokens, spans, mask_id, start_id, end_id, generator):
    """Plain Python lists, torch.randperm for the order."""
    ids = tokens.tolist()
    part_a, mask_at, cursor = [], [], 0
    for start, end in spans:
        part_a += ids[cursor:start]
        mask_at.append(len(part_a))
        part_a.append(mask_id)
        cursor = end
    part_a += ids[cursor:]
    inputs, targets = list(part_a), [-100] * len(part_a)
    positions, blocks = list(range(len(part_a))), [0] * len(part_a)
    for number in torch.randperm(len(spans), generator=generator).tolist():
        start, end = spans[number]
        span = ids[start:end]
        inputs += [start_id] + span
        targets += span + [end_id]
        positions += [mask_at[number]] * (len(span) + 1)
        blocks += list(range(1, len(span) + 2))
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return as_tensor(inputs), as_tensor(targets), as_tensor(positions), as_tensor(blocks), len(part_a)


def infilling_tensors(tokens, spans, mask_id, start_id, end_id, generator):
    """Tensor pieces and torch.cat; the order from argsort of uniform draws; Part A built by a keep-mask."""
    keep = torch.ones(len(tokens), dtype=torch.bool)
    for start, end in spans:
        keep[start:end] = False
    keep_first = keep.clone()
    for start, _ in spans:
        keep_first[start] = True                      # the span's first slot becomes its [MASK]
    part_a = torch.where(keep, tokens, torch.full_like(tokens, mask_id))[keep_first]
    removed_before = torch.cumsum((~keep_first).long(), 0)
    mask_index = [start - int(removed_before[start]) for start, _ in spans]
    order = torch.rand(len(spans), generator=generator).argsort()
    inputs, targets, positions, blocks = [part_a], [torch.full_like(part_a, -100)], [torch.arange(len(part_a))], \
        [torch.zeros_like(part_a)]
    for number in order.tolist():
        start, end = spans[number]
        span = tokens[start:end]
        inputs.append(torch.cat([torch.tensor([start_id]), span]))
        targets.append(torch.cat([span, torch.tensor([end_id])]))
        positions.append(torch.full((len(span) + 1,), mask_index[number]))
        blocks.append(torch.arange(1, len(span) + 2))
    return torch.cat(inputs), torch.cat(targets), torch.cat(positions), torch.cat(blocks), len(part_a)


def infilling_fisher_yates(tokens, spans, mask_id, start_id, end_id, generator):
    """A hand-written Fisher–Yates shuffle with torch.randint; list of lists, then stacked."""
    order = list(range(len(spans)))
    for i in range(len(order) - 1, 0, -1):
        j = int(torch.randint(0, i + 1, (1,), generator=generator))
        order[i], order[j] = order[j], order[i]
    part_a, where, previous = [], {}, 0
    for number, (start, end) in enumerate(spans):
        part_a.extend(tokens[previous:start].tolist())
        where[number] = len(part_a)
        part_a.append(mask_id)
        previous = end
    part_a.extend(tokens[previous:].tolist())
    rows = [[t, -100, i, 0] for i, t in enumerate(part_a)]
    for number in order:
        start, end = spans[number]
        span = tokens[start:end].tolist()
        for k, (token, target) in enumerate(zip([start_id] + span, span + [end_id])):
            rows.append([token, target, where[number], k + 1])
    table = torch.tensor(rows, dtype=torch.long)
    return table[:, 0], table[:, 1], table[:, 2], table[:, 3], len(part_a)


def infilling_multinomial_sentinel(tokens, spans, mask_id, start_id, end_id, generator):
    """The order from torch.multinomial over equal weights; a sentinel span appended to the caller's list so the
    Part A loop also copies the tail (the check passes a copy, so this side effect is harmless)."""
    n = len(spans)
    order = torch.multinomial(torch.ones(n), n, replacement=False, generator=generator).tolist()
    spans.append((len(tokens), len(tokens)))
    ids = tokens.tolist()
    part_a, at, cursor = [], [], 0
    for i, (start, end) in enumerate(spans):
        part_a += ids[cursor:start]
        if i < n:
            at.append(len(part_a))
            part_a.append(mask_id)
        cursor = end
    inputs, targets, positions, blocks = list(part_a), [-100] * len(part_a), list(range(len(part_a))), \
        [0] * len(part_a)
    for k in order:
        start, end = spans[k]
        span = ids[start:end]
        inputs += [start_id] + span
        targets += span + [end_id]
        positions += [at[k]] * (len(span) + 1)
        blocks += list(range(1, len(span) + 2))
    spans.sort(reverse=True)                           # and reorders the caller's list as well
    return tuple(torch.tensor(v) for v in (inputs, targets, positions, blocks)) + (len(part_a),)


def _infilling_with(tokens, spans, mask_id, start_id, end_id, generator, *, positions="mask", block_start=1,
                    copy_inputs=False, with_start=True, mask_each_token=False, shuffle=True, order=None):
    """A learner's function written once; each mistake below flips what that learner got wrong. ``order`` fixes
    the Part B order instead of drawing it (for tests of the order check)."""
    ids = tokens.tolist()
    part_a, mask_at, cursor = [], [], 0
    for start, end in spans:
        part_a += ids[cursor:start]
        mask_at.append(len(part_a))
        part_a += [mask_id] * (end - start) if mask_each_token else [mask_id]
        cursor = end
    part_a += ids[cursor:]
    if order is None:
        order = torch.randperm(len(spans), generator=generator).tolist() if shuffle else list(range(len(spans)))
    inputs, targets = list(part_a), [-100] * len(part_a)
    pos, blocks = list(range(len(part_a))), [0] * len(part_a)
    for k, number in enumerate(order):
        start, end = spans[number]
        span = ids[start:end]
        block = ([start_id] if with_start else []) + span
        inputs += block
        targets += block if copy_inputs else (span[1:] + [end_id] if not with_start else span + [end_id])
        if positions == "continue":
            pos += list(range(len(pos), len(pos) + len(block)))
        elif positions == "original":
            pos += [start] * len(block)
        elif positions == "loop_counter":
            pos += [mask_at[k]] * len(block)
        elif positions == "count_up":
            pos += list(range(mask_at[number], mask_at[number] + len(block)))
        else:
            pos += [mask_at[number]] * len(block)
        blocks += list(range(block_start, block_start + len(block)))
    t = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return t(inputs), t(targets), t(pos), t(blocks), len(part_a)


def infilling_positions_continue(*args):
    return _infilling_with(*args, positions="continue")


def infilling_positions_original(*args):
    return _infilling_with(*args, positions="original")


def infilling_positions_loop_counter(*args):
    return _infilling_with(*args, positions="loop_counter")


def infilling_positions_count_up(*args):
    return _infilling_with(*args, positions="count_up")


def infilling_mask_index_by_subtraction(tokens, spans, mask_id, start_id, end_id, generator):
    """Computes each [MASK] index as start minus the tokens removed before it, counting whole spans as removed."""
    ids = tokens.tolist()
    keep = torch.ones(len(ids), dtype=torch.bool)
    mask_index, removed = [], 0
    for start, end in spans:
        mask_index.append(start - removed)
        removed += end - start
        keep[start + 1:end] = False
    part_a = [mask_id if any(s == i for s, _ in spans) else t for i, t in enumerate(ids) if keep[i]]
    inputs, targets = list(part_a), [-100] * len(part_a)
    pos, blocks = list(range(len(part_a))), [0] * len(part_a)
    for number in torch.randperm(len(spans), generator=generator).tolist():
        start, end = spans[number]
        span = ids[start:end]
        inputs += [start_id] + span
        targets += span + [end_id]
        pos += [mask_index[number]] * (len(span) + 1)
        blocks += list(range(1, len(span) + 2))
    t = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return t(inputs), t(targets), t(pos), t(blocks), len(part_a)


def infilling_blocks_from_zero(*args):
    return _infilling_with(*args, block_start=0)


def infilling_targets_copy_inputs(*args):
    return _infilling_with(*args, copy_inputs=True)


def infilling_no_start(*args):
    return _infilling_with(*args, with_start=False)


def infilling_bert_masks(tokens, spans, mask_id, start_id, end_id, generator):
    """BERT habits: mask every token in place, so a span keeps its original index."""
    part_a = tokens.clone()
    for start, end in spans:
        part_a[start:end] = mask_id
    inputs, targets = [part_a], [torch.full_like(part_a, -100)]
    positions, blocks = [torch.arange(len(part_a))], [torch.zeros_like(part_a)]
    for number in torch.randperm(len(spans), generator=generator).tolist():
        start, end = spans[number]
        span = tokens[start:end]
        inputs.append(torch.cat([torch.tensor([start_id]), span]))
        targets.append(torch.cat([span, torch.tensor([end_id])]))
        positions.append(torch.full((len(span) + 1,), start))
        blocks.append(torch.arange(1, len(span) + 2))
    return torch.cat(inputs), torch.cat(targets), torch.cat(positions), torch.cat(blocks), len(part_a)


def infilling_in_text_order(*args):
    return _infilling_with(*args, shuffle=False)


# --------------------------------------------------------------------------------------------------
# glm_attention_mask(part_a_lengths [B], length) -> [B, L, L], True = may attend
# --------------------------------------------------------------------------------------------------


def glm_mask_broadcast(part_a_lengths, length):
    q = torch.arange(length).view(1, length, 1)
    k = torch.arange(length).view(1, 1, length)
    return (k < part_a_lengths.view(-1, 1, 1)) | (k <= q)


def glm_mask_loop(part_a_lengths, length):
    """ChatGLM-6B's recipe per row: a lower triangle, then the Part A columns opened."""
    rows = []
    for a in part_a_lengths.tolist():
        mask = torch.ones(length, length).tril()
        mask[:, :a] = 1
        rows.append(mask.bool())
    return torch.stack(rows)


def glm_mask_chatglm_inverted(part_a_lengths, length):
    rows = []
    for a in part_a_lengths.tolist():
        mask = torch.ones(length, length).tril()
        mask[:, :a] = 1
        rows.append(mask < 0.5)                        # ChatGLM's code: True = masked
    return torch.stack(rows)


def glm_mask_block_and_tril(part_a_lengths, length):
    """A lower triangle, then the Part A square block opened (Part B rows already see Part A through the tril)."""
    out = torch.ones(len(part_a_lengths), length, length, dtype=torch.bool).tril()
    for b, a in enumerate(part_a_lengths.tolist()):
        out[b, :a, :a] = True
    return out


def glm_mask_transposed(part_a_lengths, length):
    """Upper triangle and Part A rows opened: the right pattern with rows and columns swapped."""
    rows = []
    for a in part_a_lengths.tolist():
        mask = torch.ones(length, length).triu()
        mask[:a, :] = 1
        rows.append(mask.bool())
    return torch.stack(rows)


def glm_mask_causal(part_a_lengths, length):
    return torch.ones(len(part_a_lengths), length, length, dtype=torch.bool).tril()


def glm_mask_part_b_sees_all(part_a_lengths, length):
    q = torch.arange(length).view(1, length, 1)
    k = torch.arange(length).view(1, 1, length)
    a = part_a_lengths.view(-1, 1, 1)
    in_part_b = q >= a
    return (k < a) | in_part_b


def glm_mask_part_a_sees_b(part_a_lengths, length):
    masks = torch.ones(len(part_a_lengths), length, length, dtype=torch.bool).tril()
    for row, a in enumerate(part_a_lengths.tolist()):
        masks[row, :a, :] = True                       # opened the Part A rows instead of the columns
        masks[row, :, :a] = True
    return masks


def glm_mask_prefix_inclusive(part_a_lengths, length):
    q = torch.arange(length).view(1, length, 1)
    k = torch.arange(length).view(1, 1, length)
    return (k <= part_a_lengths.view(-1, 1, 1)) | (k <= q)


def glm_mask_strict(part_a_lengths, length):
    q = torch.arange(length).view(1, length, 1)
    k = torch.arange(length).view(1, 1, length)
    return (k < part_a_lengths.view(-1, 1, 1)) | (k < q)


# --------------------------------------------------------------------------------------------------
# deepnorm_residual(x, sublayer, norm, n_layers)
# --------------------------------------------------------------------------------------------------


def deepnorm_once(x, sublayer, norm, n_layers):
    normed = norm(x)
    return math.sqrt(2 * n_layers) * normed + sublayer(normed)


def deepnorm_twice_normed(x, sublayer, norm, n_layers):
    """The norm called twice (as ChatGLM-6B's code reads the same tensor twice) and α as a power."""
    alpha = (2.0 * n_layers) ** 0.5
    return sublayer(norm(x)) + norm(x).mul(alpha)


def deepnorm_quarter(x, sublayer, norm, n_layers):
    alpha = (2 * n_layers) ** 0.25
    h = norm(x)
    return alpha * h + sublayer(h)


def deepnorm_torch_add(x, sublayer, norm, n_layers):
    h = norm(x)
    return torch.add(sublayer(h), h, alpha=math.sqrt(2 * n_layers))


def deepnorm_sqrt_n(x, sublayer, norm, n_layers):
    h = norm(x)
    return math.sqrt(n_layers) * h + sublayer(h)


def deepnorm_two_root_n(x, sublayer, norm, n_layers):
    alpha = 2 * n_layers ** 0.5
    h = norm(x)
    return alpha * h + sublayer(h)


def deepnorm_half_power(x, sublayer, norm, n_layers):
    alpha = (2 * n_layers) ** 1 / 2
    h = norm(x)
    return alpha * h + sublayer(h)


def deepnorm_sublayer_on_x(x, sublayer, norm, n_layers):
    return math.sqrt(2 * n_layers) * norm(x) + sublayer(x)


def deepnorm_raw_residual(x, sublayer, norm, n_layers):
    return math.sqrt(2 * n_layers) * x + sublayer(norm(x))


def deepnorm_alpha_on_output(x, sublayer, norm, n_layers):
    h = norm(x)
    return h + math.sqrt(2 * n_layers) * sublayer(h)


def deepnorm_deepnet_form(x, sublayer, norm, n_layers):
    return norm(math.sqrt(2 * n_layers) * x + sublayer(x))


def deepnorm_post_ln(x, sublayer, norm, n_layers):
    return norm(x + sublayer(x))


def deepnorm_pre_ln(x, sublayer, norm, n_layers):
    return x + sublayer(norm(x))


def deepnorm_no_root(x, sublayer, norm, n_layers):
    h = norm(x)
    return 2 * n_layers * h + sublayer(h)


# --------------------------------------------------------------------------------------------------
# shrink_embedding_gradient(x, alpha)
# --------------------------------------------------------------------------------------------------


def shrink_detach(x, alpha):
    return x * alpha + x.detach() * (1 - alpha)


def shrink_data(x, alpha):
    """x.data instead of detach(), and the forward written as x − (1−α)·(x − x.data)."""
    return x - (1 - alpha) * (x - x.data)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha):
        ctx.alpha = alpha
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.alpha, None


def shrink_autograd_function(x, alpha):
    return _ScaleGradient.apply(x, alpha)


def shrink_hook(x, alpha):
    y = x.clone()
    if y.requires_grad:
        y.register_hook(lambda grad: grad * alpha)
    return y


def shrink_lerp(x, alpha):
    return torch.lerp(x.detach(), x, alpha)


def shrink_hook_on_x(x, alpha):
    x.register_hook(lambda grad: grad * alpha)
    return x


def shrink_hook_always(x, alpha):
    y = x.clone()
    y.register_hook(lambda grad: grad * alpha)
    return y


def shrink_wrong_detach(x, alpha):
    return x.detach() * alpha + x * (1 - alpha)


def shrink_forward_scaled(x, alpha):
    return x * alpha


def shrink_no_detach(x, alpha):
    return x * alpha + x * (1 - alpha)


def shrink_all_detached(x, alpha):
    return (x * alpha + x * (1 - alpha)).detach()


CORRECT = {
    "glm_blank_infilling": [infilling_lists, infilling_tensors, infilling_fisher_yates, infilling_multinomial_sentinel],
    "glm_attention_mask": [glm_mask_broadcast, glm_mask_loop, glm_mask_block_and_tril],
    "deepnorm_residual": [deepnorm_once, deepnorm_twice_normed, deepnorm_torch_add],
    "embedding_grad_shrink": [shrink_detach, shrink_data, shrink_autograd_function, shrink_hook, shrink_lerp],
}

MISTAKES = {
    "glm_blank_infilling": {
        "positions_continue": infilling_positions_continue,
        "positions_in_original_text": infilling_positions_original,
        "positions_by_block_order": infilling_positions_loop_counter,
        "positions_count_up": infilling_positions_count_up,
        "mask_index_forgets_masks": infilling_mask_index_by_subtraction,
        "block_positions_from_zero": infilling_blocks_from_zero,
        "targets_not_shifted": infilling_targets_copy_inputs,
        "no_start_token": infilling_no_start,
        "mask_per_token": infilling_bert_masks,
        "not_shuffled": infilling_in_text_order,
    },
    "glm_attention_mask": {
        "inverted": glm_mask_chatglm_inverted,
        "transposed": glm_mask_transposed,
        "part_a_causal": glm_mask_causal,
        "part_b_bidirectional": glm_mask_part_b_sees_all,
        "part_a_sees_part_b": glm_mask_part_a_sees_b,
        "prefix_one_too_long": glm_mask_prefix_inclusive,
        "no_self_attention_in_part_b": glm_mask_strict,
    },
    "deepnorm_residual": {
        "deepnet_quarter_power": deepnorm_quarter,
        "alpha_sqrt_n": deepnorm_sqrt_n,
        "alpha_two_root_n": deepnorm_two_root_n,
        "alpha_is_n": deepnorm_half_power,
        "sublayer_on_raw_input": deepnorm_sublayer_on_x,
        "raw_input_residual": deepnorm_raw_residual,
        "alpha_on_sublayer": deepnorm_alpha_on_output,
        "deepnet_post_ln": deepnorm_deepnet_form,
        "post_ln": deepnorm_post_ln,
        "pre_ln": deepnorm_pre_ln,
        "alpha_without_root": deepnorm_no_root,
    },
    "embedding_grad_shrink": {
        "detach_on_wrong_term": shrink_wrong_detach,
        "forward_scaled": shrink_forward_scaled,
        "no_detach": shrink_no_detach,
        "fully_detached": shrink_all_detached,
        "hook_on_input": shrink_hook_on_x,
        "hook_without_grad": shrink_hook_always,
    },
}
