"""Special cases of the checks of notebook 03_mistral_sliding_window (the promises every exercise keeps are
generated from the registry in tests/test_exercise_contracts.py; the learners live in tests/learners_ch05_window.py)."""

from __future__ import annotations

import torch

from check_test_helpers import diagnosed, failure_message
from grader.checks.ch05 import window as checks
from learners_ch05_window import (
    RollingCacheVectorised,
    RollingCacheWritesFirst,
    receptive_field_from_the_mask,
    receptive_field_grows_by_window,
    receptive_field_paths_in_bytes,
)


def test_the_notebook_imports_every_check() -> None:
    import grader.checks.ch05 as chapter

    for name in checks.__all__:
        assert getattr(chapter, name) is getattr(checks, name)


# ---------------------------------------------------------------------------------------------------
# sliding_window_mask
# ---------------------------------------------------------------------------------------------------


def test_window_plus_one_names_the_case_and_the_extra_key() -> None:
    def eight_attends_nine(window):
        return lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx) & (kv_idx >= q_idx - window)

    message = failure_message(checks.check_sliding_window_mask, eight_attends_nine)
    assert "case 1 of 5 (W=3" in message and "expected False, got True" in message
    assert diagnosed(message, checks.SLIDING_WINDOW_MASK.mistake("window_plus_one").name)


def test_two_mistakes_at_once_still_name_the_band_that_looks_ahead() -> None:
    def two_sided_and_one_too_wide(window):
        return lambda b, h, q_idx, kv_idx: (q_idx - kv_idx).abs() <= window

    message = failure_message(checks.check_sliding_window_mask, two_sided_and_one_too_wide)
    assert diagnosed(message, checks.SLIDING_WINDOW_MASK.mistake("not_causal").name)


def test_a_factory_that_returns_nothing_and_python_logic_are_explained() -> None:
    def forgot_return(window):
        def mask_mod(b, h, q_idx, kv_idx):
            return (q_idx - kv_idx >= 0) & (q_idx - kv_idx < window)

    assert "must return a mask_mod" in failure_message(checks.check_sliding_window_mask, forgot_return)

    def python_and(window):
        return lambda b, h, q_idx, kv_idx: 0 <= q_idx - kv_idx < window

    assert "Python truth value" in failure_message(checks.check_sliding_window_mask, python_and)


# ---------------------------------------------------------------------------------------------------
# RollingKVCache
# ---------------------------------------------------------------------------------------------------


def test_writing_first_is_accepted_for_one_token_and_caught_on_a_long_chunk() -> None:
    message = failure_message(checks.check_rolling_kv_cache, RollingCacheWritesFirst)
    assert "case 2 of 3" in message and "the attention output" in message
    assert diagnosed(message, checks.ROLLING_KV_CACHE.mistake("write_before_read").name)


def test_update_returning_only_keys_and_values_is_explained() -> None:
    class TwoThings(RollingCacheVectorised):
        def update(self, keys, values):
            return super().update(keys, values)[:2]

    message = failure_message(checks.check_rolling_kv_cache, TwoThings)
    assert "must return three things, (keys, values, positions)" in message


def test_an_instance_is_refused_with_a_sentence() -> None:
    message = failure_message(checks.check_rolling_kv_cache, RollingCacheVectorised(4))
    assert "expected the class itself" in message


def test_positions_are_compared_before_the_buffers() -> None:
    class PositionsNeverUpdated(RollingCacheVectorised):
        def update(self, keys, values):
            result = super().update(keys, values)
            self.positions = torch.full((self.window,), -1)
            return result

    message = failure_message(checks.check_rolling_kv_cache, PositionsNeverUpdated)
    assert "after step 1: the positions in the slots" in message


def test_empty_slots_returned_are_named_at_the_first_step() -> None:
    class WholeBuffer(RollingCacheVectorised):
        def update(self, keys, values):
            if self.keys is None:
                self.keys = keys.new_zeros(keys.shape[0], keys.shape[1], self.window, keys.shape[3])
                self.values = torch.zeros_like(self.keys)
            old = (self.keys.clone(), self.values.clone(), self.positions.clone())  # all W slots, empty ones too
            new_keys, new_values, new_positions = super().update(keys, values)
            chunk = keys.shape[2]
            return (torch.cat([old[0], keys], 2), torch.cat([old[1], values], 2),
                    torch.cat([old[2], new_positions[-chunk:]]))

    message = failure_message(checks.check_rolling_kv_cache, WholeBuffer)
    assert "returned the position -1 at step 1" in message and "empty slot" in message
    assert "self.positions >= 0" in message


def test_the_old_part_taken_as_a_view_is_named() -> None:
    class OldPartIsAView(RollingCacheVectorised):
        def update(self, keys, values):
            if self.keys is None:
                self.keys = keys.new_zeros(keys.shape[0], keys.shape[1], self.window, keys.shape[3])
                self.values = torch.zeros_like(self.keys)
            chunk = keys.shape[2]
            new_positions = torch.arange(self.length, self.length + chunk)
            n = min(self.length, self.window)
            old_keys, old_values, old_positions = self.keys[:, :, :n], self.values[:, :, :n], self.positions[:n]
            kept = min(chunk, self.window)
            slots = new_positions[-kept:] % self.window
            self.keys[:, :, slots] = keys[:, :, -kept:]
            self.values[:, :, slots] = values[:, :, -kept:]
            self.positions[slots] = new_positions[-kept:]
            self.length += chunk
            return (torch.cat([old_keys, keys], 2), torch.cat([old_values, values], 2),
                    torch.cat([old_positions, new_positions]))

    message = failure_message(checks.check_rolling_kv_cache, OldPartIsAView)
    assert "returned the position 4 twice at step 5 (W=4" in message
    assert "a view" in message and ".clone()" in message


def test_a_length_advanced_by_one_is_not_called_a_view() -> None:
    class LengthByOne(RollingCacheVectorised):
        def update(self, keys, values):
            result = super().update(keys, values)
            self.length += 1 - keys.shape[2]
            return result

    message = failure_message(checks.check_rolling_kv_cache, LengthByOne)
    assert "twice" in message and "self.length counts every position fed so far" in message
    assert "a view" not in message


# ---------------------------------------------------------------------------------------------------
# sliding_receptive_field
# ---------------------------------------------------------------------------------------------------


def test_the_w_per_layer_reading_is_named_on_the_first_case() -> None:
    message = failure_message(checks.check_sliding_receptive_field, receptive_field_grows_by_window)
    assert "case 1 of 6" in message
    assert diagnosed(message, checks.SLIDING_RECEPTIVE_FIELD.mistake("grows_by_window").name)


def test_reference_reach_is_n_times_w_minus_one_back() -> None:
    """The closed form the notebook states: N layers of W keys reach N·(W−1) positions back, N·(W−1)+1 in all."""
    for window, n_layers in ((4, 3), (2, 5), (6, 1)):
        field = checks._reference_receptive_field(40, window, n_layers)
        assert int(field[-1].sum()) == n_layers * (window - 1) + 1
        assert int(field[-1].nonzero().min()) == 39 - n_layers * (window - 1)


def test_path_counts_wrapping_in_uint8_are_caught_by_a_visible_case() -> None:
    message = failure_message(checks.check_sliding_receptive_field, receptive_field_paths_in_bytes)
    assert "case 6 of 6 (S=20, W=8, N=6" in message
    assert diagnosed(message, checks.SLIDING_RECEPTIVE_FIELD.mistake("path_counts_overflow").name)


def test_zero_layers_from_the_mask_is_not_called_ignoring_the_layers() -> None:
    message = failure_message(checks.check_sliding_receptive_field, receptive_field_from_the_mask)
    assert "case 4 of 6 (S=7, W=3, N=0" in message
    assert diagnosed(message, checks.SLIDING_RECEPTIVE_FIELD.mistake("zero_layers_not_identity").name)
    assert "one layer's window whatever" not in message
