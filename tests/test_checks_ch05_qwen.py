"""Special cases of the checks of notebook 05_qwen (the common promises are in tests/test_exercise_contracts.py):
structure messages for biases in the wrong places, which case first shows a mistake, two mistakes at once, and
what the comparisons accept."""

from __future__ import annotations

import math

import pytest
import torch

from grader.checks.ch05 import (
    check_logn_attention_scores,
    check_qwen2_layer_windows,
    check_qwen_attention,
    check_qwen_ntk_base,
)
from grader.checks.framework import CheckFailure
from learners_ch05_qwen import AttentionBiasOnOutput, AttentionNoBias, AttentionWithSdpa, MISTAKES


def _failure(check, learner) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check(learner)
    return info.value


def test_a_bias_on_the_output_projection_is_named_as_a_structure_error():
    failure = _failure(check_qwen_attention, AttentionBiasOnOutput)
    message = str(failure)
    assert failure.mistake_id == "module_structure"
    assert "unexpected: o_proj.bias" in message and "`o_proj` has a bias" in message and "bias=False" in message


def test_projections_without_any_bias_are_named_as_a_structure_error():
    failure = _failure(check_qwen_attention, AttentionNoBias)
    message = str(failure)
    assert failure.mistake_id == "module_structure"
    assert "missing: k_proj.bias, q_proj.bias, v_proj.bias" in message and "have no bias" in message


def test_a_bias_missing_on_v_only_is_named_for_v():
    class NoValueBias(AttentionWithSdpa):
        def __init__(self, d_model, n_heads, n_kv_heads):
            super().__init__(d_model, n_heads, n_kv_heads)
            self.v_proj = torch.nn.Linear(d_model, n_kv_heads * self.head_dim, bias=False)

    message = str(_failure(check_qwen_attention, NoValueBias))
    assert "missing: v_proj.bias" in message and "`v_proj` has no bias" in message


def test_tiled_kv_heads_pass_where_every_query_head_has_its_own_kv_head_and_fail_on_the_first_grouped_case():
    failure = _failure(check_qwen_attention, MISTAKES["qwen_attention"]["kv_heads_tiled"])
    assert failure.case_number == 2 and "4 query heads sharing 2 KV heads" in str(failure)


def test_attention_two_mistakes_at_once_the_one_the_first_case_shows_is_named():
    """Not causal *and* KV heads tiled: the first case has one KV head per query head, so only the mask shows."""

    class Both(MISTAKES["qwen_attention"]["kv_heads_tiled"]):
        not_causal = True

    failure = _failure(check_qwen_attention, Both)
    assert failure.case_number == 1 and failure.mistake_id == "not_causal"


def test_ntk_the_short_prompt_case_shows_the_clamp_with_alpha_zero():
    failure = _failure(check_qwen_ntk_base, MISTAKES["qwen_ntk_base"]["not_clamped"])
    message = str(failure)
    assert failure.case_number == 1 and "alpha: expected 1, got 0" in message


def test_ntk_floor_is_right_at_exactly_twice_the_trained_length_and_named_at_one_and_a_half():
    failure = _failure(check_qwen_ntk_base, MISTAKES["qwen_ntk_base"]["floor_instead_of_ceil"])
    assert failure.case_number == 3 and "3072" in str(failure)


def test_ntk_round_to_nearest_passes_at_one_and_a_half_and_is_named_as_rounding_down_at_one_point_three():
    def rounded(length, trained_length, head_dim, base=10000.0):
        alpha = max(2 ** round(math.log2(length / trained_length) + 1) - 1, 1)
        return alpha, base * alpha ** (head_dim / (head_dim - 2))

    failure = _failure(check_qwen_ntk_base, rounded)
    assert failure.case_number == 4 and failure.mistake_id == "floor_instead_of_ceil" and "L = 130" in str(failure)


def test_ntk_accepts_a_float_alpha_and_a_tensor_base():
    def float_alpha(length, trained_length, head_dim, base=10000.0):
        alpha = max(2.0 ** math.ceil(math.log2(length / trained_length) + 1) - 1.0, 1.0)
        return alpha, torch.tensor(base, dtype=torch.float64) * alpha ** (head_dim / (head_dim - 2))

    check_qwen_ntk_base(float_alpha)


def test_logn_two_mistakes_at_once_the_one_the_first_case_shows_is_named():
    """Natural log *and* scaled in training: the first case (inference) can only show the natural log."""

    def both(q, k, trained_length, training=False):
        one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
        q = q * torch.where(one_based > trained_length, one_based.log(), 1.0)[:, None]
        return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

    failure = _failure(check_logn_attention_scores, both)
    assert failure.case_number == 1 and failure.mistake_id == "natural_log"


def test_logn_factor_in_float32_for_float64_queries_is_caught_with_the_precision_named():
    def float32_factor(q, k, trained_length, training=False):
        if not training:
            one_based = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2]).float() + 1
            factor = torch.where(one_based > trained_length, one_based.log() / math.log(trained_length), 1.0)
            q = q * factor.to(q.dtype)[:, None]
        return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

    failure = _failure(check_logn_attention_scores, float32_factor)
    assert failure.case_number == 2 and "float32 precision" in str(failure)


def test_layer_windows_show_the_whole_list():
    message = str(_failure(check_qwen2_layer_windows, MISTAKES["qwen2_layer_windows"]["lower_layers_slide"]))
    assert "expected [None, None, 16, 16, 16, 16, 16], got [16, 16, None, None, None, None, None]" in message


def test_layer_windows_accept_numpy_integers_and_refuse_a_string():
    numpy = pytest.importorskip("numpy")

    def numpy_windows(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
        return [numpy.int64(sliding_window) if use_sliding_window and i >= max_window_layers else None
                for i in range(n_layers)]

    check_qwen2_layer_windows(numpy_windows)

    def kinds(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
        return ["sliding" if use_sliding_window and i >= max_window_layers else "full" for i in range(n_layers)]

    assert _failure(check_qwen2_layer_windows, kinds).mistake_id is None


def test_ntk_a_logarithm_a_hair_too_large_is_named_at_the_visible_power_of_two():
    """(ln L − ln L₀)/ln 2 is 2.0000000000000004 for 32768/8192: α one step high there, and only there."""
    failure = _failure(check_qwen_ntk_base, MISTAKES["qwen_ntk_base"]["step_high_at_power_of_two"])
    assert failure.case_number == 8 and failure.mistake_id == "step_high_at_power_of_two"
    assert "alpha: expected 7, got 15" in str(failure)


def test_ntk_a_ceiling_written_as_floor_plus_one_is_named_at_exactly_twice_the_trained_length():
    def floor_plus_one(length, trained_length, head_dim, base=10000.0):
        alpha = max(2 ** (int(math.log2(length / trained_length) + 1) + 1) - 1, 1)
        return alpha, base * alpha ** (head_dim / (head_dim - 2))

    failure = _failure(check_qwen_ntk_base, floor_plus_one)
    assert failure.case_number == 2 and failure.mistake_id == "step_high_at_power_of_two"


def test_logn_forgotten_or_the_training_flag_inverted_is_named_as_no_scaling_on_the_first_case():
    def inverted_flag(q, k, trained_length, training=False):
        if training:
            n = torch.arange(k.shape[-2] - q.shape[-2], k.shape[-2], dtype=q.dtype) + 1
            q = q * torch.where(n > trained_length, n.log() / math.log(trained_length), 1.0)[:, None]
        return q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])

    for learner in (MISTAKES["logn_attention_scores"]["no_logn_at_inference"], inverted_flag):
        failure = _failure(check_logn_attention_scores, learner)
        assert failure.case_number == 1 and failure.mistake_id == "no_logn_at_inference"


def test_attention_tables_built_inside_the_module_are_named_on_the_ntk_base_case():
    failure = _failure(check_qwen_attention, MISTAKES["qwen_attention"]["tables_ignored"])
    assert failure.case_number == 3 and failure.mistake_id == "tables_ignored" and "float32 precision" not in str(failure)


def test_layer_windows_name_a_generator_and_a_map_object_instead_of_randomness():
    def mapped(n_layers, max_window_layers, sliding_window, use_sliding_window=True):
        return map(lambda i: sliding_window if use_sliding_window and i >= max_window_layers else None, range(n_layers))

    for learner in (MISTAKES["qwen2_layer_windows"]["returned_iterator"], mapped):
        failure = _failure(check_qwen2_layer_windows, learner)
        assert failure.case_number == 1 and failure.mistake_id == "returned_iterator"
