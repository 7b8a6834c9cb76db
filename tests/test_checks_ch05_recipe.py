"""Special cases of the checks of notebook 04_recipe_and_scale (the contract tests cover the rest): exact counts,
two mistakes at once, messages that name the parameter, the forms a returned norm may take, building a model
refused for a closed-form exercise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import llmcore
import llmcore.models
from grader.checks.ch05 import (
    check_clip_grad_norm,
    check_cosine_lr,
    check_llama_parameter_count,
    check_parameter_groups,
)
from grader.checks.framework import CheckFailure
from learners_ch05_recipe import (
    clip_with_a_loop,
    count_by_pieces,
    cosine_lr_in_float32,
    cosine_lr_piecewise,
    groups_by_module_type,
)


def failure(check, learner) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check(learner)
    return info.value


def test_a_count_off_by_one_fails_even_as_a_float():
    """Counts are compared exactly: a float tolerance would let a forgotten norm of 4096 pass at 6.7e9."""
    error = failure(check_llama_parameter_count, lambda **params: float(count_by_pieces(**params) + 1))
    assert "expected 6738415616, got 6738415617" in str(error)
    assert error.case_number == 1


def test_whole_floats_numpy_integers_and_tensors_are_accepted_as_counts():
    check_llama_parameter_count(lambda **params: float(count_by_pieces(**params)))
    check_llama_parameter_count(lambda **params: torch.tensor(count_by_pieces(**params)))
    check_llama_parameter_count(lambda **params: np.int64(count_by_pieces(**params)))


def test_two_count_mistakes_at_once_name_the_first_one_a_case_isolates():
    def head_forgotten_and_kv_heads_ignored(*, dim, n_layers, n_heads, vocab_size, n_kv_heads, multiple_of,
                                            ffn_dim_multiplier, tie_embeddings):
        hidden = int(8 * dim / 3)
        if ffn_dim_multiplier:
            hidden = int(ffn_dim_multiplier * hidden)
        hidden = -(-hidden // multiple_of) * multiple_of
        return vocab_size * dim + n_layers * (4 * dim * dim + 3 * dim * hidden + 2 * dim) + dim

    error = failure(check_llama_parameter_count, head_forgotten_and_kv_heads_ignored)
    assert error.mistake_id == "head_forgotten" and error.case_number == 1


@pytest.mark.parametrize("build", [
    lambda: llmcore.models.CausalLM(llmcore.models.ModelConfig(vocab_size=10, hidden_size=8, n_layers=1, n_heads=2,
                                                               intermediate_size=8)),
    lambda: torch.nn.Linear(3, 4),
])
def test_building_and_counting_a_model_is_refused(build):
    def count_a_built_model(**params):
        count_by_pieces(**params)
        return sum(p.numel() for p in build().parameters())

    error = failure(check_llama_parameter_count, count_a_built_model)
    assert error.mistake_id == "delegation"


def test_a_group_mistake_names_the_parameter():
    def layer_norm_biases_decayed(model, weight_decay):
        groups = groups_by_module_type(model, weight_decay)
        biases = [p for name, p in model.named_parameters() if name.endswith("bias")]
        return [{"params": groups[0]["params"] + biases, "weight_decay": weight_decay},
                {"params": [p for p in groups[1]["params"] if all(p is not b for b in biases)], "weight_decay": 0.0}]

    message = str(failure(check_parameter_groups, layer_norm_biases_decayed))
    assert "case 2 of 3" in message
    assert "bias: not decayed'" in message and "bias: decayed (0.1)'" in message


def test_a_forgotten_parameter_is_reported_as_in_no_group():
    def without_norms(model, weight_decay):
        groups = groups_by_module_type(model, weight_decay)
        return [groups[0], {"params": [p for p in groups[1]["params"] if p.dim() != 1], "weight_decay": 0.0}]

    assert "in no group" in str(failure(check_parameter_groups, without_norms))


def test_a_float_returned_by_the_schedule_or_a_tensor_both_pass():
    check_cosine_lr(cosine_lr_piecewise)
    check_cosine_lr(lambda step, **settings: torch.tensor(cosine_lr_piecewise(step, **settings)))


def test_the_returned_norm_may_be_a_float_and_must_not_be_missing():
    check_clip_grad_norm(lambda parameters, max_norm: float(clip_with_a_loop(parameters, max_norm)))

    def no_return(parameters, max_norm):
        clip_with_a_loop(parameters, max_norm)

    message = str(failure(check_clip_grad_norm, no_return))
    assert "returned norm: expected a torch.Tensor, got None" in message


def test_a_gradient_of_none_must_stay_none():
    def fills_missing_gradients(parameters, max_norm):
        parameters = list(parameters)
        for p in parameters:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        return clip_with_a_loop(parameters, max_norm)

    error = failure(check_clip_grad_norm, fills_missing_gradients)
    assert error.case_number == 3 and "gradient of parameter 3" in str(error)


def test_a_warm_up_slip_and_a_floor_slip_together_are_named_one_at_a_time():
    def warmup_from_one_and_floor_zero(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
        if step < warmup_steps:
            return peak_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))

    error = failure(check_cosine_lr, warmup_from_one_and_floor_zero)
    assert error.mistake_id == "floor_zero" and error.case_number == 1


def test_groups_returned_as_one_dict_are_refused_in_a_sentence():
    def as_a_dict(model, weight_decay):
        groups = groups_by_module_type(model, weight_decay)
        return {"decay": groups[0]["params"], "no_decay": groups[1]["params"]}

    error = failure(check_parameter_groups, as_a_dict)
    assert error.mistake_id == "wrong_return"
    assert "a list of group dicts" in str(error) and "'decay', 'no_decay'" in str(error)


def test_params_in_a_set_are_refused_as_adamw_refuses_them():
    def in_sets(model, weight_decay):
        return [{**group, "params": set(group["params"])} for group in groups_by_module_type(model, weight_decay)]

    error = failure(check_parameter_groups, in_sets)
    assert error.mistake_id == "wrong_return" and "is a set" in str(error)
    with pytest.raises(TypeError):  # what the check stands for
        torch.optim.AdamW(in_sets(torch.nn.Linear(2, 2), 0.1), lr=1e-3)


def test_what_adamw_itself_refuses_is_reported():
    def a_non_leaf(model, weight_decay):
        groups = groups_by_module_type(model, weight_decay)
        return [groups[0], {"params": [p * 1 for p in groups[1]["params"]], "weight_decay": 0.0}]

    error = failure(check_parameter_groups, a_non_leaf)
    assert error.mistake_id == "wrong_return" and "AdamW refuses the returned groups" in str(error)


def test_a_tied_weight_twice_in_one_group_is_not_said_to_be_in_two_groups():
    from learners_ch05_recipe import groups_from_every_module_deduplicated_by_type

    message = str(failure(check_parameter_groups, groups_from_every_module_deduplicated_by_type))
    assert "listed 2 times in one group" in message and "in 2 groups" not in message
    assert "only warns" in message


def test_a_schedule_computed_in_float32_passes():
    check_cosine_lr(cosine_lr_in_float32)
    check_cosine_lr(cosine_lr_in_float32, hidden=True)

    def only_the_cosine_in_float32(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
        low = peak_lr * min_lr_ratio
        if step < warmup_steps:
            return peak_lr * step / warmup_steps
        if step >= total_steps:
            return low
        x = torch.tensor((step - warmup_steps) / (total_steps - warmup_steps))
        return low + (peak_lr - low) * 0.5 * (1 + torch.cos(math.pi * x).item())

    check_cosine_lr(only_the_cosine_in_float32, hidden=True)


def test_a_factor_taken_with_max_instead_of_min_is_named_where_it_blows_gradients_up():
    def max_instead_of_min(parameters, max_norm):
        grads = [p.grad for p in parameters if p.grad is not None]
        total = torch.sqrt(sum(g.pow(2).sum() for g in grads))
        factor = max(1.0, float(max_norm / (total + 1e-6)))
        for g in grads:
            g.mul_(factor)
        return total

    error = failure(check_clip_grad_norm, max_instead_of_min)
    assert error.mistake_id == "always_rescaled" and error.case_number == 1
    assert "never max(1, …)" in str(error)


def test_an_error_in_clipping_lists_the_learners_own_inputs():
    def forgets_the_missing_gradient(parameters, max_norm):
        params = list(parameters)
        total = torch.sqrt(sum(p.grad.pow(2).sum() for p in params))
        for p in params:
            p.grad.mul_(min(1.0, float(max_norm / (total + 1e-6))))
        return total

    message = str(failure(check_clip_grad_norm, forgets_the_missing_gradient))
    assert "The inputs were: parameters: a Python list of 3 item(s), max_norm = 2.5, passed_as = 'a list'." in message
