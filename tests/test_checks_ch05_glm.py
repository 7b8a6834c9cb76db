"""Special cases of notebook 06_glm_chatglm's checks that the contract tests do not cover: the order
test of blank infilling (a generator ignored, a biased shuffle, the p-value) and messages."""

from __future__ import annotations

import random

import pytest
import torch
from scipy import stats

from grader.checks.ch05 import (check_deepnorm_residual, check_embedding_grad_shrink, check_glm_attention_mask,
                                check_glm_blank_infilling)
from grader.checks.ch05.glm import chi_square_p_value
from grader.checks.framework import CheckFailure
from learners_ch05_glm import (_infilling_with, deepnorm_sqrt_n, deepnorm_sublayer_on_x, glm_mask_chatglm_inverted,
                               infilling_lists)


def test_chi_square_p_value_matches_scipy():
    for counts in ([30, 30, 30, 30, 30, 30], [41, 22, 30, 35, 27, 25], [180, 0, 0, 0, 0, 0], [5, 9, 1]):
        statistic, p = chi_square_p_value(counts)
        expected = stats.chisquare(counts)
        assert statistic == pytest.approx(expected.statistic, rel=1e-12)
        assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-300)


def _python_random_order(tokens, spans, mask_id, start_id, end_id, generator):
    """Shuffles with Python's random module: every case passes, but a seed does not reproduce an example."""
    order = list(range(len(spans)))
    random.shuffle(order)
    return _ordered(tokens, spans, mask_id, start_id, end_id, order)


def _ordered(tokens, spans, mask_id, start_id, end_id, order):
    """Blank infilling with the Part B order given."""
    return _infilling_with(tokens, spans, mask_id, start_id, end_id, None, order=order)


def test_a_shuffle_that_ignores_the_generator_is_named():
    random.seed(0)
    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(_python_random_order)
    assert info.value.mistake_id == "ignores_generator"
    assert "every case is right" in str(info.value)
    assert "Diagnosis: two calls with generators seeded alike give different Part B orders." in str(info.value)


def test_a_biased_shuffle_fails_the_order_test_without_a_wrong_diagnosis():
    def swap_first_two_only(tokens, spans, mask_id, start_id, end_id, generator):
        order = list(range(len(spans)))
        if len(order) > 1 and torch.rand(1, generator=generator).item() < 0.5:
            order[0], order[1] = order[1], order[0]
        return _ordered(tokens, spans, mask_id, start_id, end_id, order)

    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(swap_first_two_only)
    message = str(info.value)
    assert "not uniformly random" in message and "chi-square" in message
    assert info.value.mistake_id is None and "Diagnosis" not in message


def test_the_text_order_reports_the_counts():
    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(lambda *args: _infilling_with(*args, shuffle=False))
    assert "[0, 1, 2, 3]: 1500" in str(info.value)


def test_the_order_is_read_from_part_b_so_any_permutation_passes_the_cases(capsys):
    check_glm_blank_infilling(infilling_lists, hidden=True)
    assert "all 4 cases passed" in capsys.readouterr().out


def test_inverted_mask_message_names_chatglm_convention():
    with pytest.raises(CheckFailure) as info:
        check_glm_attention_mask(glm_mask_chatglm_inverted)
    assert "ChatGLM-6B's own convention" in str(info.value)
    assert "case 1 of 3" in str(info.value)


def test_deepnorm_wrong_shape_sublayer_use_is_reported_with_inputs():
    def returns_the_norm_only(x, sublayer, norm, n_layers):
        return norm(x)[..., :-1]

    with pytest.raises(CheckFailure) as info:
        check_deepnorm_residual(returns_the_norm_only)
    assert "expected shape (2, 3, 8), got (2, 3, 7)" in str(info.value)


def test_two_mistakes_in_different_values_still_get_one_named():
    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(lambda *args: _infilling_with(*args, positions="continue", block_start=0))
    assert info.value.mistake_id == "positions_continue", str(info.value)
    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(lambda *args: _infilling_with(*args, copy_inputs=True, block_start=0))
    assert info.value.mistake_id in ("block_positions_from_zero", "targets_not_shifted"), str(info.value)


def test_the_classic_biased_shuffle_fails_the_order_test():
    """Swap each i with a uniform j in [0, n): n^n paths onto n! orders, not uniform."""
    def naive_shuffle(tokens, spans, mask_id, start_id, end_id, generator):
        order = list(range(len(spans)))
        for i in range(len(order)):
            j = int(torch.randint(0, len(order), (1,), generator=generator))
            order[i], order[j] = order[j], order[i]
        return _ordered(tokens, spans, mask_id, start_id, end_id, order)

    for hidden in (False, True):
        with pytest.raises(CheckFailure) as info:
            check_glm_blank_infilling(naive_shuffle, hidden=hidden)
        assert "not uniformly random" in str(info.value) and "23 degrees of freedom" in str(info.value)


def test_an_error_shows_the_generator_the_learner_received():
    def crashes(tokens, spans, mask_id, start_id, end_id, generator):
        return tokens[len(tokens)]

    with pytest.raises(CheckFailure) as info:
        check_glm_blank_infilling(crashes)
    message = str(info.value)
    assert "generator = torch.Generator().manual_seed(" in message and "seed =" not in message


def test_changing_the_callers_span_list_does_not_confuse_the_check(capsys):
    def sorts_and_extends(tokens, spans, mask_id, start_id, end_id, generator):
        output = infilling_lists(tokens, spans, mask_id, start_id, end_id, generator)
        spans.sort(reverse=True)
        spans.append((len(tokens), len(tokens)))
        return output

    check_glm_blank_infilling(sorts_and_extends)
    assert "all 4 cases passed" in capsys.readouterr().out


def test_deepnorm_names_the_alpha_the_output_implies():
    with pytest.raises(CheckFailure) as info:
        check_deepnorm_residual(deepnorm_sqrt_n)
    assert "with α = 5.292; it should be √(2N) = √56 ≈ 7.483 for N = 28" in str(info.value)
    with pytest.raises(CheckFailure) as info:                # another structure: no α line
        check_deepnorm_residual(deepnorm_sublayer_on_x)
    assert "your output is" not in str(info.value)


def test_a_hook_that_needs_grad_fails_on_the_no_grad_case():
    def clone_hook(x, alpha):
        y = x.clone()
        y.register_hook(lambda grad: grad * alpha)
        return y

    with pytest.raises(CheckFailure) as info:
        check_embedding_grad_shrink(clone_hook)
    assert info.value.mistake_id == "hook_without_grad"
    assert "torch.no_grad()" in str(info.value) and "requires_grad = False" in str(info.value)
