"""Special cases of the checks of notebook 03_training (the promises every exercise keeps are generated
from the registry in tests/test_exercise_contracts.py; the learners live in tests/learners_ch01_training.py),
and the milestone check of the trained model, which is not an exercise."""

from __future__ import annotations

from copy import deepcopy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import llmcore
from check_test_helpers import broken, failure_message
from grader.checks.ch01 import training as checks
from grader.checks.framework import CheckFailure
from learners_ch01_training import (
    Seq2Seq,
    greedy_decode_not_fed_back,
    log_of_softmax,
    make_greedy,
    not_shifted_full_length,
    smoothed_loss,
)
from llmcore.data import ToySeq2SeqTask

PAD, BOS, EOS = 0, 1, 2


# ---------------------------------------------------------------------------------------------------
# teacher_forcing_batch
# ---------------------------------------------------------------------------------------------------


def test_teacher_forcing_full_length_copy_is_not_shifted_on_the_first_case() -> None:
    with pytest.raises(CheckFailure) as info:
        checks.check_teacher_forcing_batch(not_shifted_full_length)
    assert info.value.mistake_id == "not_shifted" and info.value.case_number == 1, str(info.value)


def test_teacher_forcing_roll_to_the_right_is_named_too() -> None:
    """"Shifted right" read literally: the decoder input is tgt rolled right, the labels tgt itself."""
    with pytest.raises(CheckFailure) as info:
        checks.check_teacher_forcing_batch(lambda tgt: (torch.roll(tgt, 1, dims=1), tgt))
    assert info.value.mistake_id == "rolled" and info.value.case_number == 1, str(info.value)


def test_teacher_forcing_errors_name_the_case() -> None:
    message = failure_message(checks.check_teacher_forcing_batch, broken)
    assert "raised an error on case 1 of 4 (the batch <s> c b a </s>" in message
    assert "ValueError: an index went out of range" in message


# ---------------------------------------------------------------------------------------------------
# Seq2SeqTransformer
# ---------------------------------------------------------------------------------------------------


def test_the_variant_with_default_knobs_is_llmcore() -> None:
    for number, case in enumerate(checks.SEQ2SEQ_TRANSFORMER.build_cases(hidden=True), start=1):
        config = case.init["config"]
        torch.manual_seed(number)
        reference = llmcore.Transformer(config).to(case.dtype).eval()
        variant = checks._TransformerVariant(config).to(case.dtype).eval()
        variant.load_state_dict(reference.state_dict())
        expected = checks._seq2seq_forward(reference, *case.args, **case.kwargs)
        got = checks._seq2seq_forward(variant, *case.args, **case.kwargs)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, rtol=0, atol=0)


class OutputBias(Seq2Seq):
    def __init__(self, config):
        super().__init__(config)
        self.lm_head.bias = nn.Parameter(torch.zeros(config.tgt_vocab_size))


class RenamedHead(Seq2Seq):
    def __init__(self, config):
        super().__init__(config)
        self.generator = self.lm_head
        del self.lm_head

    def decode(self, tgt_ids, memory, src_ids):  # pragma: no cover - the names are refused first
        raise AssertionError("never reached")


@pytest.mark.parametrize(
    "learner, expected",
    [(OutputBias, "unexpected: lm_head.bias"), (RenamedHead, "missing: lm_head.weight")],
)
def test_seq2seq_wrong_parameters_are_named(learner: type, expected: str) -> None:
    message = failure_message(checks.check_seq2seq_transformer, learner)
    assert expected in message and "Seq2SeqTransformer: the parameters do not match" in message, message


class InheritsTheReference(llmcore.Transformer):
    pass


class CallsTheReferenceEncoder(Seq2Seq):
    def encode(self, src_ids):
        return llmcore.Transformer.encode(self, src_ids)


@pytest.mark.parametrize("learner", [InheritsTheReference, CallsTheReferenceEncoder])
def test_seq2seq_delegation_names_the_method(learner: type) -> None:
    message = failure_message(checks.check_seq2seq_transformer, learner)
    assert "calls llmcore.Transformer.encode" in message, message


def test_seq2seq_torch_transformer_is_refused() -> None:
    class WrapsTorchEncoder(Seq2Seq):
        def encode(self, src_ids):
            torch_encoder = nn.TransformerEncoder(
                nn.TransformerEncoderLayer(self.config.d_model, self.config.n_heads, batch_first=True), 1,
                enable_nested_tensor=False,
            ).to(self.lm_head.weight.dtype)
            torch_encoder(self.embed_source(src_ids))
            return super().encode(src_ids)

    message = failure_message(checks.check_seq2seq_transformer, WrapsTorchEncoder)
    assert "calls torch.nn.TransformerEncoder" in message, message


def test_seq2seq_stub_in_encode_reads_not_implemented() -> None:
    class StubEncode(Seq2Seq):
        def encode(self, src_ids):
            raise NotImplementedError()

    assert "Seq2SeqTransformer is not implemented yet" in failure_message(checks.check_seq2seq_transformer, StubEncode)


def test_seq2seq_other_errors_name_the_case() -> None:
    class BrokenDecode(Seq2Seq):
        def decode(self, tgt_ids, memory, src_ids):
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    message = failure_message(checks.check_seq2seq_transformer, BrokenDecode)
    assert "Seq2SeqTransformer raised an error on case 1 of 5 (d_model=16, 2 heads" in message
    assert "mat1 and mat2" in message


def test_seq2seq_refuses_an_instance() -> None:
    config = llmcore.TransformerConfig(11, 11, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32)
    message = failure_message(checks.check_seq2seq_transformer, Seq2Seq(config))
    assert "expected the class itself, got an instance of Seq2Seq" in message


# ---------------------------------------------------------------------------------------------------
# label_smoothed_cross_entropy
# ---------------------------------------------------------------------------------------------------


def test_log_of_softmax_passes_the_ordinary_cases() -> None:
    """log(softmax) is numerically fine until a probability underflows: only the confident case fails."""
    message = failure_message(checks.check_label_smoothed_cross_entropy, log_of_softmax)
    assert "case 4 of 4 (B=2, T=4, V=5, float32, smoothing 0.1, confident logits" in message, message
    assert "Diagnosis: log(softmax(…)) underflows" in message and "Also:" not in message, message


def test_every_loss_mistake_differs_from_the_reference_on_a_visible_case() -> None:
    cases = [case for case in checks.LABEL_SMOOTHED_CROSS_ENTROPY.build_cases(hidden=False) if case.args[3] >= 0]
    for mistake in checks.LOSS_MISTAKES:
        if mistake.output is not None:
            assert any(
                not torch.allclose(mistake.output(*case.args), checks._loss_reference(*case.args)) for case in cases
            ), mistake.name


@pytest.mark.parametrize(
    "learner, forbidden",
    [
        (lambda logits, targets, s, i: llmcore.cross_entropy(logits, targets, label_smoothing=s, ignore_index=i),
         "llmcore.cross_entropy"),
        (lambda logits, targets, s, i: F.cross_entropy(logits.flatten(0, -2), targets.flatten(), label_smoothing=s,
                                                       ignore_index=i), "torch.nn.functional.cross_entropy"),
        (lambda logits, targets, s, i: nn.CrossEntropyLoss(ignore_index=i, label_smoothing=s)(
            logits.flatten(0, -2), targets.flatten()), "torch.nn.CrossEntropyLoss"),
        (lambda logits, targets, s, i: F.nll_loss(logits.log_softmax(-1).flatten(0, -2), targets.flatten(),
                                                  ignore_index=i), "torch.nn.functional.nll_loss"),
    ],
    ids=["llmcore", "functional", "module", "nll_loss"],
)
def test_loss_delegation_names_what_was_called(learner, forbidden: str) -> None:
    message = failure_message(checks.check_label_smoothed_cross_entropy, learner)
    assert "calls" in message and forbidden in message, message


def test_loss_delegation_is_refused_at_operator_level() -> None:
    """torch.ops.aten.nll_loss_forward bypasses the Python-level watcher; the operator watcher sees it."""

    def delegate(logits, targets, smoothing, ignore_index):
        log_probs = logits.log_softmax(-1).flatten(0, -2)
        nll, _ = torch.ops.aten.nll_loss_forward(log_probs, targets.flatten(), None, 1, ignore_index)
        return (1 - smoothing) * nll + smoothing * smoothed_loss(logits, targets, 1.0, ignore_index)

    message = failure_message(checks.check_label_smoothed_cross_entropy, delegate)
    assert "implements this very exercise" in message and "aten::nll_loss_forward" in message, message


def test_loss_errors_name_the_case() -> None:
    message = failure_message(checks.check_label_smoothed_cross_entropy, broken)
    assert "raised an error on case 1 of 4 (N=5 tokens, V=3" in message


def test_loss_gradient_is_checked() -> None:
    def detached_smoothing(logits, targets, smoothing, ignore_index):
        log_probs = logits.log_softmax(dim=-1)
        keep = targets != ignore_index
        nll = -log_probs.gather(-1, targets.masked_fill(~keep, 0).unsqueeze(-1)).squeeze(-1)
        per_token = (1 - smoothing) * nll - smoothing * log_probs.detach().mean(dim=-1)
        return (per_token * keep).sum() / keep.sum()

    message = failure_message(checks.check_label_smoothed_cross_entropy, detached_smoothing)
    assert "the outputs match but the gradient with respect to logits differs on case 2 of 4" in message, message


# ---------------------------------------------------------------------------------------------------
# greedy_decode
# ---------------------------------------------------------------------------------------------------


def test_greedy_delegation_with_keywords_is_refused() -> None:
    def delegates(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
        return llmcore.greedy_decode(model, src_ids, bos_id=bos_id, eos_id=eos_id, pad_id=pad_id,
                                     max_new_tokens=max_new_tokens)

    assert "calls llmcore.greedy_decode" in failure_message(checks.check_greedy_decode, delegates)


def test_greedy_errors_name_the_case() -> None:
    message = failure_message(checks.check_greedy_decode, broken)
    assert "raised an error on case 1 of 4 (scripted model: 3 rows ending" in message


def test_greedy_one_step_too_many_is_explained() -> None:
    def one_step_too_many(model, src_ids, bos_id, eos_id, pad_id, max_new_tokens):
        tokens = torch.full((src_ids.shape[0], 1), bos_id)
        memory = model.encode(src_ids)
        for _ in range(max_new_tokens + 1):
            tokens = torch.cat([tokens, model.decode(tokens, memory, src_ids)[:, -1].argmax(-1, keepdim=True)], 1)
        return tokens[:, 1:]

    message = failure_message(checks.check_greedy_decode, one_step_too_many)
    assert "max_new_tokens allows at most 8" in message, message


@pytest.mark.parametrize("hidden", [False, True])
def test_rows_end_after_their_source_length(hidden: bool) -> None:
    """The wrapped random models really do finish rows at different, known steps."""
    for case in checks.GREEDY_DECODE.build_cases(hidden=hidden):
        model, src = case.args
        if not isinstance(model, checks._EndsAfterSourceLength) or case.kwargs["max_new_tokens"] <= 3:
            continue
        generated = checks._greedy_reference(model, src, **case.kwargs)
        source_lengths = (src != PAD).sum(1)
        ends = (generated == EOS).int().argmax(1)
        assert torch.equal(ends, source_lengths)
        assert len(set(ends.tolist())) == len(ends)


def test_greedy_tokens_not_fed_back_read_as_the_first_position() -> None:
    """Decoding only [<s>] at every step gives what reading logits[:, 0] gives (a causal decoder's first position
    sees <s> alone): one diagnosis names both."""
    with pytest.raises(CheckFailure) as info:
        checks.check_greedy_decode(greedy_decode_not_fed_back)
    assert info.value.mistake_id == "first_position", str(info.value)
    assert "never fed back to the decoder" in str(info.value)


def test_greedy_models_can_be_called_like_modules() -> None:
    """A learner may call model(src_ids, tokens) at every step; the scripted models answer like an nn.Module."""
    for case in checks.GREEDY_DECODE.build_cases(hidden=True):
        model, src = case.args
        tokens = torch.full((src.shape[0], 2), BOS)
        assert torch.equal(model(src, tokens), model.decode(tokens, model.encode(src), src))


def test_greedy_random_models_differ_between_cases() -> None:
    cases = checks.GREEDY_DECODE.build_cases(hidden=True)
    models = [case.args[0] for case in cases if not isinstance(case.args[0], checks._ScriptedModel)]
    models = [getattr(m, "model", m) for m in models]
    first = [m.src_embed.weight[PAD + 3, :5].float() for m in models]  # row 0 is the (zero) padding row
    assert all(not torch.equal(a, b) for i, a in enumerate(first) for b in first[i + 1:])


def test_greedy_reference_and_learner_agree_on_every_case() -> None:
    learner = make_greedy()
    for case in checks.GREEDY_DECODE.build_cases(hidden=True):
        assert torch.equal(learner(*case.args, **case.kwargs), checks._greedy_reference(*case.args, **case.kwargs))


# ---------------------------------------------------------------------------------------------------
# check_trained_model (a milestone, not a registered exercise)
# ---------------------------------------------------------------------------------------------------


class ReversingOracle(nn.Module):
    """Reverses its source exactly (memory = the source ids); ``wrong_lengths`` makes it fail on some."""

    def __init__(self, wrong_lengths: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.wrong_lengths = wrong_lengths
        self.vocab_size = ToySeq2SeqTask().vocab_size

    def encode(self, src_ids):
        return src_ids

    def decode(self, tgt_ids, memory, src_ids):
        batch, length = tgt_ids.shape
        letters = (src_ids != PAD) & (src_ids != EOS)
        n_letters = letters.sum(1)
        logits = torch.zeros(batch, length, self.vocab_size)
        for b in range(batch):
            reversed_letters = src_ids[b, : n_letters[b]].flip(0).tolist() + [EOS]
            if int(n_letters[b]) in self.wrong_lengths:
                reversed_letters = reversed_letters[1:] + [EOS]
            for t in range(length):
                logits[b, t, reversed_letters[min(t, len(reversed_letters) - 1)]] = 1.0
        return logits


class TrainedOnSwappedTeacherForcing(nn.Module):
    """What train_step with `labels, decoder_input = teacher_forcing_batch(tgt)` teaches: reading y[t+1], predict
    y[t], i.e. repeat the token read one position earlier (and <s> first). Its loss is low; it reverses nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size = ToySeq2SeqTask().vocab_size

    def encode(self, src_ids):
        return src_ids

    def decode(self, tgt_ids, memory, src_ids):
        previous = torch.cat([torch.full_like(tgt_ids[:, :1], BOS), tgt_ids[:, :-1]], dim=1)
        return 8.0 * F.one_hot(previous, self.vocab_size).float()


class TrainedWithoutShift(nn.Module):
    """What train_step learns when teacher_forcing_batch returns the same columns twice: to copy the token it
    reads. Its loss is low; greedy decoding repeats <s> and reverses nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size = ToySeq2SeqTask().vocab_size

    def encode(self, src_ids):
        return src_ids

    def decode(self, tgt_ids, memory, src_ids):
        return 8.0 * F.one_hot(tgt_ids, self.vocab_size).float()


def test_trained_model_passes_when_it_reverses() -> None:
    checks.check_trained_model(ReversingOracle())  # raises CheckFailure when wrong
    checks.check_trained_model(ReversingOracle(), hidden=True)  # raises CheckFailure when wrong


def test_trained_model_below_the_bar_fails_with_examples_and_hints() -> None:
    model = ReversingOracle(wrong_lengths=(3, 4, 5, 6))  # wrong on 4 of the 8 lengths 3…10
    with pytest.raises(CheckFailure) as info:
        checks.check_trained_model(model)
    message = str(info.value)
    assert "it needs at least 80%" in message and "(expected " in message and "Hint: look at the loss curve" in message
    assert info.value.mistake_id == "low_accuracy"


def test_trained_model_with_swapped_input_and_labels_is_diagnosed() -> None:
    """The issue: 'the loss looks fine (0.57) while 0% of strings are right'."""
    with pytest.raises(CheckFailure) as info:
        checks.check_trained_model(TrainedOnSwappedTeacherForcing())
    message = str(info.value)
    assert info.value.mistake_id == "inputs_and_labels_swapped", message
    assert "reverses 0.0% of 256" in message
    assert "decoder input and the labels may be swapped in train_step" in message
    assert "decoder_input, labels = teacher_forcing_batch(tgt)" in message


def test_trained_model_without_the_shift_gets_the_hint_that_names_it() -> None:
    """Not a diagnosis: an untrained model with a tied output copies the token it reads just as well (its loss
    reading labels equal to the input is 0.004–0.08 at d_model 64–128, a copy-trained one's about 0.09), so only
    the hint can point at the missing shift."""
    with pytest.raises(CheckFailure) as info:
        checks.check_trained_model(TrainedWithoutShift())
    message = str(info.value)
    assert info.value.mistake_id == "low_accuracy", message
    assert "teacher_forcing_batch passes its check" in message and "only learns to copy the token it reads" in message


def test_an_untrained_model_is_not_called_swapped() -> None:
    config = llmcore.TransformerConfig(13, 13, d_model=16, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=32,
                                       share_embeddings=True)
    torch.manual_seed(0)
    with pytest.raises(CheckFailure) as info:
        checks.check_trained_model(deepcopy(llmcore.Transformer(config)))
    assert info.value.mistake_id == "low_accuracy", str(info.value)


def test_trained_model_not_built_yet_reads_not_implemented() -> None:
    assert "not implemented yet" in failure_message(checks.check_trained_model, None)

    class StubbedDecode(ReversingOracle):
        def decode(self, tgt_ids, memory, src_ids):
            raise NotImplementedError()

    assert "not implemented yet" in failure_message(checks.check_trained_model, StubbedDecode())


def test_trained_model_errors_are_reported() -> None:
    class Broken(ReversingOracle):
        def decode(self, tgt_ids, memory, src_ids):
            raise IndexError("index 12 is out of bounds")

    message = failure_message(checks.check_trained_model, Broken())
    assert "raised IndexError: index 12 is out of bounds" in message
    assert "expected the trained Seq2SeqTransformer" in failure_message(checks.check_trained_model, "a model")


def test_trained_model_is_not_a_registered_exercise() -> None:
    from grader.checks.spec import REGISTRY

    assert "trained_model" not in REGISTRY and checks.check_trained_model not in [e.check for e in REGISTRY.values()]
    assert {"teacher_forcing_batch", "seq2seq_transformer", "label_smoothed_cross_entropy", "greedy_decode"} <= set(REGISTRY)
