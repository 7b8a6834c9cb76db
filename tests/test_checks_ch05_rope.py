"""Special cases of the checks of notebook 02_rope_and_long_context (the common promises are in
tests/test_exercise_contracts.py): which case first shows a mistake, what the message says, the
relative-position property of every accepted rotation, and what counts as delegation."""

from __future__ import annotations

import pytest
import torch

import llmcore
from grader.checks.ch05 import (
    check_apply_rope,
    check_cached_rope_attention,
    check_rope_frequencies,
    check_scaled_rope_angles,
)
from grader.checks.framework import CheckFailure
from llmcore import rope as reference_rope
from learners_ch05_rope import CORRECT, MISTAKES


def _failure(check, learner) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check(learner)
    return info.value


def test_a_layout_mixed_up_in_one_branch_shows_on_the_first_interleaved_case():
    failure = _failure(check_apply_rope, MISTAKES["apply_rope"]["layouts_mixed"])
    message = str(failure)
    assert failure.case_number == 2 and "case 2 of 5" in message and "interleaved" in message
    assert "expected" in message and "got" in message
    assert "Diagnosis: the layouts are mixed up" in message and "Idea:" in message


def test_positions_from_zero_pass_the_prefill_and_fail_the_first_decoding_step():
    failure = _failure(check_cached_rope_attention, MISTAKES["cached_rope_attention"]["positions_not_offset"])
    assert failure.case_number == 2 and "one decoding step" in str(failure)


def test_two_mistakes_at_once_the_one_visible_first_is_named():
    """Values rotated *and* positions from 0: the prefill case (S = 0) can only show the rotated values."""

    def both(q, k, v, cache_k, cache_v, inv_freq):
        positions = torch.arange(q.shape[-2])
        rotate = CORRECT["apply_rope"][0]
        q, k, v = (rotate(t, positions, inv_freq) for t in (q, k, v))
        keys, values = torch.cat([cache_k, k], -2), torch.cat([cache_v, v], -2)
        mask = torch.ones(q.shape[-2], keys.shape[-2], dtype=torch.bool).tril(diagonal=cache_k.shape[-2])
        return llmcore.scaled_dot_product_attention(q, keys, values, mask), keys, values

    failure = _failure(check_cached_rope_attention, both)
    assert failure.case_number == 1 and failure.mistake_id == "rope_on_values"


def test_dynamic_ntk_with_the_trained_length_passes_until_the_text_is_longer():
    failure = _failure(check_scaled_rope_angles, MISTAKES["scaled_rope_angles"]["dynamic_uses_trained_length"])
    assert failure.case_number == 3 and "current length 39" in str(failure)


@pytest.mark.parametrize("spelling", ["factor * (L // trained_length)", "(factor * L) // trained_length"])
def test_integer_division_in_dynamic_ntk_is_named_as_such(spelling):
    """With L = 16…31 both spellings give scale 1, the values of the trained length: case 3 (L = 39) separates them."""

    def floor_ratio(positions, head_dim, base, method, factor, trained_length):
        if method != "dynamic":
            return CORRECT["scaled_rope_angles"][0](positions, head_dim, base, method, factor, trained_length)
        length = int(positions.max()) + 1
        if length > trained_length:
            if spelling.startswith("factor *"):
                steps = factor * (length // trained_length)
            else:
                steps = (factor * length) // trained_length
            base = base * (steps - (factor - 1)) ** (head_dim / (head_dim - 2))
        return positions.float()[:, None] * CORRECT["rope_frequencies"][0](head_dim, base)

    failure = _failure(check_scaled_rope_angles, floor_ratio)
    assert failure.case_number == 3 and failure.mistake_id == "dynamic_integer_division", str(failure)
    assert "Diagnosis: dynamic NTK divides the lengths with // (integer division)" in str(failure)


def test_a_wrong_default_layout_shows_on_the_case_that_leaves_it_out():
    failure = _failure(check_apply_rope, MISTAKES["apply_rope"]["default_interleaved"])
    message = str(failure)
    assert failure.case_number == 5 and "interleaved left out" in message
    assert "Diagnosis: interleaved defaults to True" in message


def test_a_wrong_default_base_shows_on_the_case_that_leaves_it_out():
    failure = _failure(check_rope_frequencies, MISTAKES["rope_frequencies"]["another_base"])
    assert failure.case_number == 4 and "base left out" in str(failure)
    assert failure.mistake_id == "another_base"


def test_a_base_written_into_the_body_is_named_on_the_first_other_base():
    def fixed_base(head_dim, base=10000.0):
        return 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))

    failure = _failure(check_rope_frequencies, fixed_base)
    assert failure.case_number == 2 and failure.mistake_id == "another_base"


def test_an_exponent_over_d_minus_2_is_not_taken_for_another_base():
    """base^(−2i/(d−2)) is b'^(−2i/d) for b' = base^(d/(d−2)), a base nobody types: no diagnosis beats a wrong
    one."""

    def over_d_minus_2(head_dim, base=10000.0):
        return 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / (head_dim - 2)))

    failure = _failure(check_rope_frequencies, over_d_minus_2)
    assert failure.case_number == 1 and failure.mistake_id is None


def test_frequencies_in_float64_are_named_by_their_dtype():
    message = str(_failure(check_rope_frequencies, MISTAKES["rope_frequencies"]["not_float32"]))
    assert "expected dtype torch.float32" in message and "Diagnosis: the frequencies are float64" in message


@pytest.mark.parametrize("learner", CORRECT["apply_rope"], ids=lambda f: f.__name__)
@pytest.mark.parametrize("interleaved", [False, True])
def test_every_accepted_rotation_makes_scores_depend_only_on_the_distance(learner, interleaved):
    """⟨R_m q, R_n k⟩ is a function of m − n: shifting both positions by 1000 changes no score."""
    head_dim = 12
    inv_freq = reference_rope.rope_inverse_frequencies(head_dim).double()
    q, k = torch.randn(2, 1, 1, 6, head_dim, dtype=torch.float64).unbind(0)
    positions = torch.tensor([0, 1, 5, 9, 30, 31])
    scores = learner(q, positions, inv_freq, interleaved) @ learner(k, positions, inv_freq, interleaved).mT
    shifted = learner(q, positions + 1000, inv_freq, interleaved) @ learner(k, positions + 1000, inv_freq, interleaved).mT
    torch.testing.assert_close(shifted, scores)
    unrotated = q @ k.mT
    assert not torch.allclose(scores, unrotated), "the rotation must change the scores of tokens at different positions"


def test_scaled_angles_may_use_the_plain_frequencies_but_not_the_scaling_of_llmcore():
    def plain_frequencies(positions, head_dim, base, method, factor, trained_length):
        exponent = head_dim / (head_dim - 2)
        length = int(positions.max()) + 1
        if method == "ntk":
            base = base * factor**exponent
        if method == "dynamic" and length > trained_length:
            base = base * (factor * length / trained_length - (factor - 1)) ** exponent
        scaled_positions = positions.float() / (factor if method == "linear" else 1.0)
        return scaled_positions[:, None] * reference_rope.rope_inverse_frequencies(head_dim, base)

    check_scaled_rope_angles(plain_frequencies)  # the earlier exercise's reference, without its scaling, is allowed

    def with_rope_scaling(positions, head_dim, base, method, factor, trained_length):
        scaling = reference_rope.RopeScaling("ntk", factor) if method == "ntk" else None
        if method == "linear":
            positions = positions / factor
        inv_freq = reference_rope.rope_inverse_frequencies(head_dim, base, scaling)
        return positions.float()[:, None] * inv_freq

    failure = _failure(check_scaled_rope_angles, with_rope_scaling)
    assert failure.mistake_id == "delegation" and "llmcore.rope.RopeScaling" in str(failure)


def test_apply_rope_built_on_rotary_embedding_tables_is_refused():
    def with_tables(x, positions, inv_freq, interleaved=False):
        rotary = reference_rope.RotaryEmbedding(x.shape[-1], interleaved=interleaved)
        cos, sin = rotary(positions[None], x.dtype)
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), -1)
        return x * cos[:, None] + rotated * sin[:, None]

    failure = _failure(check_apply_rope, with_tables)
    assert failure.mistake_id == "delegation" and "RotaryEmbedding" in str(failure)
