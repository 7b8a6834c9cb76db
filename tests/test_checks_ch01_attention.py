"""Special cases of the checks of notebook 01_attention (the promises every exercise keeps are generated
from the registry in tests/test_exercise_contracts.py; the learners live in tests/learners_ch01_attention.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from check_test_helpers import broken, failure_message
from grader.checks import hint
from grader.checks.ch01 import attention as checks
from grader.checks.framework import CheckFailure
from learners_ch01_attention import (
    LearnerMHA,
    KeysFromX,
    causal_mask_mod,
    sdpa,
    sdpa_k_dot_T,
    sdpa_minus_1e9,
    sdpa_nan_on_empty_rows,
    sdpa_true_means_ignore,
)


def test_sdpa_true_means_ignore_is_named_before_its_nan() -> None:
    """The key_padding_mask habit gives NaN on fully visible rows, but the inversion is the information."""
    message = failure_message(checks.check_scaled_dot_product_attention, sdpa_true_means_ignore)
    assert "Diagnosis: the mask is read as True = ignore" in message
    assert "Also: a query whose keys are all masked gives NaN." in message
    assert "True means *may attend*" in message


def test_sdpa_nan_alone_is_named_alone() -> None:
    message = failure_message(checks.check_scaled_dot_product_attention, sdpa_nan_on_empty_rows)
    assert "Diagnosis: a query whose keys are all masked gives NaN." in message and "Also:" not in message


def test_sdpa_minus_1e9_passes_until_a_row_sees_no_key() -> None:
    message = failure_message(checks.check_scaled_dot_product_attention, sdpa_minus_1e9)
    assert "case 4 of 5" in message and "uniformly" in message


def test_sdpa_raw_error_is_explained_with_the_case_shapes() -> None:
    message = failure_message(checks.check_scaled_dot_product_attention, sdpa_k_dot_T)
    assert "raised an error on case 1 of 5" in message
    assert "The inputs were: q [1, 1, 3, 4] float64, k [1, 1, 3, 4] float64, v [1, 1, 3, 4] float64." in message
    assert "Diagnosis: k.T reverses *all* dimensions" in message


def test_sdpa_delegation_to_torch_is_refused_at_python_level() -> None:
    def delegate(q, k, v, mask=None):
        _, weights = sdpa(q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights

    message = failure_message(checks.check_scaled_dot_product_attention, delegate)
    assert "calls torch.nn.functional.scaled_dot_product_attention" in message


@pytest.mark.parametrize("spelling", ["aten", "C"])
def test_sdpa_delegation_is_refused_at_operator_level(spelling: str) -> None:
    """torch.ops.aten.* and torch._C spellings bypass the Python-level watcher; the operator watcher sees them."""
    fused = torch.ops.aten.scaled_dot_product_attention if spelling == "aten" else torch._C._nn.scaled_dot_product_attention

    def delegate(q, k, v, mask=None):
        _, weights = sdpa(q, k, v, mask)
        return fused(q, k, v, attn_mask=mask), weights

    message = failure_message(checks.check_scaled_dot_product_attention, delegate)
    assert "implements this very exercise" in message and "PyTorch's" in message


def test_errors_are_reported_with_the_case() -> None:
    message = failure_message(checks.check_scaled_dot_product_attention, broken)
    assert "raised an error on case 1 of 5 (B=1, H=1, L=S=3, D=4, float64, no mask)" in message
    assert "ValueError: an index went out of range" in message


def test_a_failure_shows_only_its_message_in_jupyter() -> None:
    with pytest.raises(CheckFailure) as info:
        checks.check_scaled_dot_product_attention(sdpa_nan_on_empty_rows)
    shown = info.value._render_traceback_()
    assert all(len(line) <= 82 for line in shown), "Validate does not wrap; nbgrader's command line cuts at 90"
    assert " ".join(" ".join(shown).split()) == " ".join(str(info.value).split()), "wrapped, nothing lost"
    assert info.value.exercise == "scaled_dot_product_attention" and info.value.case_number == 4


def test_hints_come_in_tiers(capsys: pytest.CaptureFixture) -> None:
    wrong_scale = lambda b, h, q_idx, kv_idx: kv_idx < q_idx  # noqa: E731
    checks.check_causal_mask_mod(causal_mask_mod)  # a pass does not change the tiers
    first = failure_message(checks.check_causal_mask_mod, lambda b, h, q_idx, kv_idx: kv_idx > q_idx)
    assert "Idea: " in first and "Hint: " not in first and 'hint("causal_mask_mod")' in first
    hint("causal_mask_mod")
    assert "return kv_idx <= q_idx" in capsys.readouterr().out
    second = failure_message(checks.check_causal_mask_mod, wrong_scale)
    assert "Hint: " not in second, "a different mistake starts again at the idea"
    again = failure_message(checks.check_causal_mask_mod, wrong_scale)
    assert "Hint: position i may attend to every j <= i" in again
    hint(checks.check_causal_mask_mod)
    assert "kv_idx <= q_idx" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no exercise called"):
        hint("causal_mask")


def test_causal_python_logic_gets_a_hint() -> None:
    def with_python_if(b, h, q_idx, kv_idx):
        if kv_idx <= q_idx:
            return torch.tensor(True)
        return torch.tensor(False)

    message = failure_message(checks.check_causal_mask_mod, with_python_if)
    assert "Python truth value" in message and "`&`" in message


def test_causal_none_and_python_values_get_a_sentence() -> None:
    def forgot_return(b, h, q_idx, kv_idx):
        kv_idx <= q_idx

    assert "returned None" in failure_message(checks.check_causal_mask_mod, forgot_return)
    assert "returned a list, not a tensor" in failure_message(
        checks.check_causal_mask_mod, lambda b, h, q_idx, kv_idx: [[True, False], [True, True]]
    )


def test_causal_integer_result_is_reported_with_the_case() -> None:
    message = failure_message(checks.check_causal_mask_mod, lambda b, h, q_idx, kv_idx: (kv_idx <= q_idx).long())
    assert "raised an error on case 1 of 4 (B=1, H=1, L=S=4" in message and "boolean" in message


def test_causal_delegation_through_torch_is_refused() -> None:
    def delegate(b, h, q_idx, kv_idx):
        return nn.Transformer.generate_square_subsequent_mask(64)[q_idx, kv_idx] == 0

    assert "calls torch.nn.Transformer.generate_square_subsequent_mask" in failure_message(
        checks.check_causal_mask_mod, delegate)


def test_padding_hard_coded_zero_is_caught_only_by_a_nonzero_pad_id() -> None:
    message = failure_message(checks.check_dense_padding_mask, lambda ids, pad_id: (ids != 0)[:, None, None, :])
    assert "case 2 of 4 (B=3, S=7, pad_id=1" in message


def test_wrong_return_types_get_a_sentence() -> None:
    assert "got None: is the `return` statement missing?" in failure_message(
        checks.check_dense_padding_mask, lambda ids, pad_id: None)
    message = failure_message(checks.check_dense_padding_mask, lambda ids, pad_id: (ids != pad_id).tolist())
    assert "got a Python list of 2 item(s)" in message and "tensor operations" in message
    assert "expected 2 returned values (output, weights), got a tensor" in failure_message(
        checks.check_scaled_dot_product_attention, lambda q, k, v, mask=None: sdpa(q, k, v, mask)[0])


def test_merge_with_view_after_transpose_reports_the_case() -> None:
    def merge_with_view(x):
        return x.transpose(1, 2).view(x.shape[0], x.shape[2], -1)

    message = failure_message(checks.check_merge_heads, merge_with_view)
    assert "raised an error on case 1 of 4 (B=2, H=2, L=3, D=4, float32)" in message and "reshape" in message


def test_mha_keys_from_x_is_caught_on_the_first_cross_attention_case() -> None:
    assert "case 3 of 4 (cross-attention" in failure_message(checks.check_multi_head_attention, KeysFromX)


class NoBias(LearnerMHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)


class WrongName(LearnerMHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        del self.o_proj
        self.out_proj = nn.Linear(d_model, d_model)


def test_mha_structure_is_explained() -> None:
    message = failure_message(checks.check_multi_head_attention, NoBias)
    assert "missing: o_proj.bias" in message and "`o_proj` has no bias (built with bias=False?)" in message
    message = failure_message(checks.check_multi_head_attention, WrongName)
    assert "missing: o_proj.bias, o_proj.weight" in message and "unexpected: out_proj.bias, out_proj.weight" in message
    assert "use exactly the submodule names" in message


class DelegatesToTorch(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        source = x if context is None else context
        torch_mha = nn.MultiheadAttention(self.q_proj.in_features, self.n_heads, batch_first=True).to(x.dtype)
        with torch.no_grad():
            torch_mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            torch_mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
            torch_mha.out_proj.load_state_dict(self.o_proj.state_dict())
        blocked = None if mask is None else ~mask.expand(x.shape[0], self.n_heads, x.shape[1], source.shape[1]).flatten(0, 1)
        return torch_mha(x, source, source, attn_mask=blocked, need_weights=False)[0]


def test_mha_delegation_to_torch_is_refused() -> None:
    assert "calls torch.nn.MultiheadAttention" in failure_message(checks.check_multi_head_attention, DelegatesToTorch)


class StubInForward(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        raise NotImplementedError()


class TakesOneArgument(LearnerMHA):
    def __init__(self, d_model):
        super().__init__(d_model, 1)


def test_mha_stub_in_forward_and_a_changed_signature() -> None:
    assert "not implemented yet" in failure_message(checks.check_multi_head_attention, StubInForward)
    message = failure_message(checks.check_multi_head_attention, TakesOneArgument)
    assert "MultiHeadAttention(16, 4) could not be constructed" in message and "__init__ signature" in message


def test_mha_rejects_an_instance_and_a_function() -> None:
    assert "expected the class itself, got an instance of LearnerMHA" in failure_message(
        checks.check_multi_head_attention, LearnerMHA(8, 2))
    assert "got the function sdpa" in failure_message(checks.check_multi_head_attention, sdpa)


def test_a_passing_check_returns_none_so_nbgrader_gives_full_marks(capsys: pytest.CaptureFixture) -> None:
    # nbgrader reads a number left as a test cell's result as partial credit (and errors above max points).
    assert checks.check_scaled_dot_product_attention(sdpa) is None
    assert "all 5 cases passed" in capsys.readouterr().out


def test_hidden_cases_follow_the_course_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = checks.SCALED_DOT_PRODUCT_ATTENTION
    monkeypatch.delenv("GRADER_COURSE_SECRET", raising=False)
    at_home = spec.build_cases(hidden=True)[0].args[0]
    monkeypatch.setenv("GRADER_COURSE_SECRET", "graded")
    graded = spec.build_cases(hidden=True)[0].args[0]
    assert at_home.shape == graded.shape and not torch.equal(at_home, graded)
    assert torch.equal(spec.build_cases(hidden=False)[0].args[0], spec.build_cases(hidden=False)[0].args[0])
    checks.check_scaled_dot_product_attention(sdpa, hidden=True)



class DetachesTheInput(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        return super().forward(x.detach(), context, mask)


def test_gradient_failures_name_the_argument() -> None:
    message = failure_message(checks.check_multi_head_attention, DetachesTheInput)
    assert "no gradient reaches x." in message and "case 2 of 4" in message


def test_structure_failures_carry_the_exercise_id() -> None:
    with pytest.raises(CheckFailure) as info:
        checks.check_multi_head_attention(NoBias)
    assert info.value.exercise == "multi_head_attention" and info.value.mistake_id == "module_structure"


def test_checks_run_under_cprofile() -> None:
    """The call watcher hands a C-level profiler back instead of installing it as a Python hook."""
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        checks.check_scaled_dot_product_attention(sdpa)
        after = sum(range(3))
    finally:
        profiler.disable()
    assert after == 3 and profiler.getstats()


class DropoutAlwaysOn(LearnerMHA):
    def forward(self, x, context=None, mask=None):
        return torch.nn.functional.dropout(super().forward(x, context, mask), p=0.1)


class ScaleAsBuffer(LearnerMHA):
    def __init__(self, d_model, n_heads):
        super().__init__(d_model, n_heads)
        self.register_buffer("scale", torch.tensor(d_model / n_heads) ** -0.5)


def test_dropout_left_on_in_eval_mode_is_named() -> None:
    with pytest.raises(CheckFailure) as info:
        checks.check_multi_head_attention(DropoutAlwaysOn)
    assert info.value.mistake_id == "random_in_eval" and "training=self.training" in str(info.value)


def test_a_persistent_buffer_is_explained() -> None:
    message = failure_message(checks.check_multi_head_attention, ScaleAsBuffer)
    assert "unexpected: scale" in message and "persistent=False" in message
