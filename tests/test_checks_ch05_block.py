"""Special cases of the checks of notebook 01_llama_block (the contract tests cover the common promises)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import learners_ch05_block as learners
from grader.checks.ch05 import (
    check_grouped_query_attention,
    check_kv_cache_memory,
    check_rms_norm,
    check_swiglu,
    check_swiglu_hidden_size,
)
from grader.checks.framework import CheckFailure


def _failure(check, learner) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check(learner)
    return info.value


def test_rms_norm_in_half_precision_shows_on_the_overflow_case_with_the_reason() -> None:
    failure = _failure(check_rms_norm, learners.RMSNormInInputDtype)
    assert failure.case_number == 4
    assert "float16" in str(failure) and "65,504" in str(failure)


def test_rms_norm_copied_from_hugging_face_is_named_on_the_float64_case_visible_and_hidden() -> None:
    # LlamaRMSNorm casts every input to float32: the float64 case whose x² overflows float32 names it in both
    # runs, before the gradient case (where float32 arithmetic would only show as a gradient difference).
    for hidden in (False, True):
        with pytest.raises(CheckFailure) as info:
            check_rms_norm(learners.RMSNormAlwaysFloat32, hidden=hidden)
        assert info.value.mistake_id == "downcast_to_float32" and info.value.case_number == 2, str(info.value)


@pytest.mark.parametrize("call", [
    lambda h, eps: torch.rms_norm(h, (h.shape[-1],), None, eps),
    lambda h, eps: torch.ops.aten.rms_norm(h, [h.shape[-1]], None, eps),
    lambda h, eps: torch.ops.aten.rms_norm.default(h, [h.shape[-1]], None, eps),
    lambda h, eps: torch.ops.aten._fused_rms_norm(h, [h.shape[-1]], None, eps)[0],
], ids=["torch.rms_norm", "aten.rms_norm", "aten.rms_norm.default", "aten._fused_rms_norm"])
def test_rms_norm_through_torch_builtins_is_refused(call) -> None:
    class Builtin(learners.RMSNorm):
        def forward(self, x):
            h = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
            return self.weight * call(h, self.eps).to(x.dtype)

    failure = _failure(check_rms_norm, Builtin)
    assert failure.mistake_id == "delegation", str(failure)


def test_rms_norm_with_a_random_initial_weight_fails_on_the_as_built_case_without_blaming_dropout() -> None:
    class RandomInit(learners.RMSNorm):
        def __init__(self, d_model, eps=1e-6):
            super().__init__(d_model, eps)
            self.weight = nn.Parameter(torch.randn(d_model))

    failure = _failure(check_rms_norm, RandomInit)
    assert failure.case_number == 6 and failure.mistake_id is None
    assert "as your class builds it (weight initialised to ones, default eps=1e-6)" in str(failure)


def test_rms_norm_with_another_default_eps_fails_on_the_as_built_case() -> None:
    class LlamaTwoDefault(learners.RMSNorm):
        def __init__(self, d_model, eps=1e-5):
            super().__init__(d_model, eps)

    failure = _failure(check_rms_norm, LlamaTwoDefault)
    assert failure.case_number == 6 and "default eps=1e-6" in str(failure)


def test_rms_norm_leaving_bfloat16_alone_is_named_on_the_bfloat16_case_visible_and_hidden() -> None:
    for hidden in (False, True):
        with pytest.raises(CheckFailure) as info:
            check_rms_norm(learners.RMSNormOnlyFloat16Upcast, hidden=hidden)
        assert info.value.mistake_id == "bfloat16_in_half" and info.value.case_number == 5, str(info.value)


def test_rms_norm_with_two_mistakes_names_the_one_visible_first() -> None:
    class CentredWithEpsOutside(learners.RMSNorm):
        def forward(self, x):
            h = x - x.mean(-1, keepdim=True)
            return self.weight * h / (h.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)

    failure = _failure(check_rms_norm, CentredWithEpsOutside)
    assert failure.mistake_id == "mean_subtracted"


def test_rms_norm_weight_as_a_plain_tensor_is_reported_as_structure() -> None:
    class PlainWeight(learners.RMSNorm):
        def __init__(self, d_model, eps=1e-6):
            super().__init__(d_model, eps)
            del self.weight
            self.weight = torch.ones(d_model)

    failure = _failure(check_rms_norm, PlainWeight)
    assert failure.mistake_id == "module_structure"
    assert "nn.Parameter" in str(failure)


def test_swiglu_with_biases_is_reported_as_unexpected_parameters() -> None:
    class WithBias(nn.Module):
        def __init__(self, d_model, d_ff):
            super().__init__()
            self.gate_proj = nn.Linear(d_model, d_ff)
            self.up_proj = nn.Linear(d_model, d_ff)
            self.down_proj = nn.Linear(d_ff, d_model)

        def forward(self, x):
            return self.down_proj(nn.functional.silu(self.gate_proj(x)) * self.up_proj(x))

    failure = _failure(check_swiglu, WithBias)
    assert failure.mistake_id == "module_structure"
    assert "unexpected: down_proj.bias, gate_proj.bias, up_proj.bias" in str(failure)


def test_hidden_size_rounded_to_nearest_first_fails_on_llama_13b() -> None:
    failure = _failure(check_swiglu_hidden_size, learners.hidden_size_nearest)
    assert failure.case_number == 2
    assert "expected 13824, got 13568" in str(failure)


def test_hidden_size_with_another_default_multiple_fails_on_the_first_case() -> None:
    def default_64(d_model, multiple_of=64, multiplier=None):
        return learners.swiglu_hidden_size(d_model, multiple_of, multiplier)

    failure = _failure(check_swiglu_hidden_size, default_64)
    assert failure.case_number == 1 and "multiple_of left at its default (256)" in str(failure)


def test_hidden_size_with_the_parameters_in_another_order_fails_on_the_positional_case() -> None:
    def swapped(d_model, multiplier=None, multiple_of=256):
        return learners.swiglu_hidden_size(d_model, multiple_of, multiplier)

    failure = _failure(check_swiglu_hidden_size, swapped)
    assert failure.case_number == 5 and "by position" in str(failure)


def test_hidden_size_as_a_float_shows_the_value_and_its_type() -> None:
    message = str(_failure(check_swiglu_hidden_size, learners.hidden_size_numpy_float))
    assert "expected 11008, got np.float64(11008.0) (a float64, not an int)" in message
    assert "Diagnosis: the width is returned as a float (or a tensor), not an int." in message


def test_hidden_size_as_a_tensor_is_not_an_int() -> None:
    def as_tensor(d_model, multiple_of=256, multiplier=None):
        return torch.tensor(learners.swiglu_hidden_size(d_model, multiple_of, multiplier))

    assert _failure(check_swiglu_hidden_size, as_tensor).mistake_id == "not_an_int"


def test_gqa_without_the_divisibility_check_says_what_happened_instead() -> None:
    message = str(_failure(check_grouped_query_attention, learners.gqa_without_check))
    assert "expected 'a ValueError raised', got 'RuntimeError:" in message
    assert "Diagnosis: no clear error when the number of query heads is not a multiple" in message


def test_gqa_reading_kv_head_i_mod_h_kv_is_named_as_the_tiled_layout() -> None:
    def modulo_heads(q, k, v, mask=None):
        heads = [learners.grouped_query_attention(q[:, i:i + 1], k[:, i % k.shape[1]:i % k.shape[1] + 1],
                                                  v[:, i % k.shape[1]:i % k.shape[1] + 1], mask)
                 for i in range(q.shape[1])]
        return torch.cat(heads, dim=1)

    failure = _failure(check_grouped_query_attention, modulo_heads)
    # Heads i % H_kv is the tiled layout: named on the first grouped case, before the error case is reached.
    assert failure.mistake_id == "repeat_not_interleave" and failure.case_number == 1


def test_gqa_returning_a_value_where_heads_do_not_divide_is_named() -> None:
    def crop_query_heads(q, k, v, mask=None):
        group = max(q.shape[1] // k.shape[1], 1)
        usable = k.shape[1] * group
        out = learners.grouped_query_attention(q[:, :usable], k, v, mask)
        return torch.cat([out, q[:, usable:]], dim=1)

    failure = _failure(check_grouped_query_attention, crop_query_heads)
    assert failure.mistake_id == "no_divisibility_error"
    assert "got 'no error: it returned a tensor of shape [1, 8, 3, 4]'" in str(failure)


def test_gqa_without_a_default_for_the_mask_fails_on_the_unmasked_case() -> None:
    def mask_required(q, k, v, mask):
        return learners.grouped_query_attention(q, k, v, mask)

    failure = _failure(check_grouped_query_attention, mask_required)
    assert failure.case_number == 3 and "mask=None by default" in str(failure)


def test_gqa_through_the_aten_operator_is_refused() -> None:
    def aten_attention(q, k, v, mask=None):
        if q.shape[1] % k.shape[1]:
            raise ValueError("heads do not divide")
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
        return torch.ops.aten.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    failure = _failure(check_grouped_query_attention, aten_attention)
    assert failure.mistake_id == "delegation"


def test_kv_cache_with_query_heads_first_fails_on_the_gqa_model() -> None:
    failure = _failure(check_kv_cache_memory, learners.kv_cache_query_heads)
    assert failure.case_number == 1 and "GLM-4-32B" in str(failure)


def test_kv_cache_in_gib_instead_of_bytes_shows_both_numbers() -> None:
    def in_gib(config, seq_len, batch_size=1, bytes_per_value=2):
        return learners.kv_cache_memory(config, seq_len, batch_size, bytes_per_value) / 2**30

    failure = _failure(check_kv_cache_memory, in_gib)
    assert "expected 511705088, got 0.4765625 (a float, not an int)" in str(failure)
    assert failure.mistake_id is None  # the number is wrong too: "not an int" alone would not help


def test_kv_cache_in_bits_is_not_mistaken_for_a_named_mistake() -> None:
    def in_bits(config, seq_len, batch_size=1, bytes_per_value=2):
        return 8 * learners.kv_cache_memory(config, seq_len, batch_size, bytes_per_value)

    failure = _failure(check_kv_cache_memory, in_bits)
    assert failure.case_number == 1 and failure.mistake_id is None, str(failure)


def test_kv_cache_with_another_default_fails_on_the_defaults_case() -> None:
    def float32_default(config, seq_len, batch_size=1, bytes_per_value=4):
        return learners.kv_cache_memory(config, seq_len, batch_size, bytes_per_value)

    failure = _failure(check_kv_cache_memory, float32_default)
    assert failure.case_number == 2 and "left at their defaults" in str(failure)
