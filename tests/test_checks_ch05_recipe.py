"""Special cases of the checks of notebook 04_recipe_and_scale (the contract tests cover the rest): exact counts,
two mistakes at once, messages that name the parameter, the forms a returned norm may take, building a model
refused for a closed-form exercise."""

from __future__ import annotations

import math

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


def test_whole_floats_and_tensors_are_accepted_as_counts():
    check_llama_parameter_count(lambda **params: float(count_by_pieces(**params)))
    check_llama_parameter_count(lambda **params: torch.tensor(count_by_pieces(**params)))


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
    assert error.case_number == 2 and "gradient of parameter 3" in str(error)


def test_a_warm_up_slip_and_a_floor_slip_together_are_named_one_at_a_time():
    def warmup_from_one_and_floor_zero(step, *, peak_lr, warmup_steps, total_steps, min_lr_ratio=0.1):
        if step < warmup_steps:
            return peak_lr * (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
        return peak_lr * 0.5 * (1 + math.cos(math.pi * progress))

    error = failure(check_cosine_lr, warmup_from_one_and_floor_zero)
    assert error.mistake_id == "floor_zero" and error.case_number == 1
